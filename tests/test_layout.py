"""The layout shows the architecture: imports point one way between the layers, there is no cycle,
and no module or class grows past the size a reader takes in (DESIGN.md: one responsibility each)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Lower layers first; a module may import its own layer or any lower one, never a higher one.
LAYERS = [
  # ctc.py is CTC decoding and error rates in NumPy (no model): the tasks score with it.
  (
    'helpers',
    ['deeprnn_jax._extras', 'deeprnn_jax.inits', 'deeprnn_jax._moved', 'deeprnn_jax.ctc', 'deeprnn_jax.sequences'],
  ),
  ('tasks', ['deeprnn_jax.tasks']),
  ('cells', ['deeprnn_jax.cells']),
  ('stack', ['deeprnn_jax.stack']),
  ('models', ['deeprnn_jax.models', 'deeprnn_jax.seq2seq']),
  ('training', ['deeprnn_jax.training']),
  ('package', ['deeprnn_jax']),  # the public face imports everything
  ('experiments', ['experiments']),
]


def _layer(module: str) -> int:
  best = None
  for i, (_, prefixes) in enumerate(LAYERS):
    for p in prefixes:
      if module == p or module.startswith(p + '.'):
        if best is None or len(p) > best[1]:
          best = (i, len(p))
  assert best is not None, module
  return best[0]


def _modules():
  for top in ('deeprnn_jax', 'experiments'):
    for path in sorted((ROOT / top).rglob('*.py')):
      rel = path.relative_to(ROOT).with_suffix('')
      parts = list(rel.parts)
      if parts[-1] == '__init__':
        parts = parts[:-1]
      yield '.'.join(parts), path


def _imports(name: str, path: pathlib.Path) -> set[str]:
  """The project modules ``name`` imports (at any depth of the file: lazy imports count too)."""
  known = {m for m, _ in _modules()}
  out = set()
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[: len(package.split('.')) - node.level + 1] + ([base] if base else []))
      for a in node.names:  # `from pkg import module` imports the module; `from module import name`, the module
        out.add(f'{base}.{a.name}' if f'{base}.{a.name}' in known else base)
  return {m for m in out if m in known and m != name}


MODULES = dict(_modules())
GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m.startswith('deeprnn_jax')))
def test_no_import_runs_up_a_layer(module):
  up = sorted(d for d in GRAPH[module] if _layer(d) > _layer(module))
  assert not up, f'{module} (layer {LAYERS[_layer(module)][0]}) imports a higher layer: {up}'


def test_library_never_imports_experiments():
  bad = {m: sorted(d for d in deps if d.startswith('experiments')) for m, deps in GRAPH.items()}
  assert not {m: d for m, d in bad.items() if d and m.startswith('deeprnn_jax')}


def test_no_import_cycles():
  """Module-level cycles among the project's modules (a package importing its own submodules is not one)."""
  graph = {m: {d for d in deps if not m.startswith(d + '.') and not d.startswith(m + '.')} for m, deps in GRAPH.items()}
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for d in graph.get(m, ()):
      if state.get(d) == 1:
        cycles.append(stack[stack.index(d) :] + [d])
      elif d not in state:
        visit(d)
    stack.pop()
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m)
  assert not cycles, cycles[:3]


MAX_MODULE_LINES = 650
MAX_CLASS_LINES = 150


def test_no_module_is_over_650_lines():
  sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
  over = sorted((n, m) for m, n in sizes.items() if n > MAX_MODULE_LINES)
  assert not over, f'modules over {MAX_MODULE_LINES} lines (split by responsibility): ' + ', '.join(
    f'{m} ({n})' for n, m in reversed(over)
  )


def test_no_class_in_the_library_is_over_150_lines():
  """A class's size is ``end_lineno - lineno + 1`` (docstring and nested definitions included)."""
  over = []
  for module, path in MODULES.items():
    if module.startswith('deeprnn_jax'):
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
          over.append((node.end_lineno - node.lineno + 1, f'{module}.{node.name}'))
  assert not over, f'classes over {MAX_CLASS_LINES} lines (split by responsibility): ' + ', '.join(
    f'{name} ({n})' for n, name in sorted(over, reverse=True)
  )


def test_old_module_paths_import_with_a_deprecation_warning():
  import importlib
  import sys

  sys.modules.pop('deeprnn_jax.ssm', None)
  with pytest.warns(DeprecationWarning, match='deeprnn_jax.cells.ssm'):
    old = importlib.import_module('deeprnn_jax.ssm')
  from deeprnn_jax.cells import ssm

  assert old.MambaCell is ssm.MambaCell
