"""Every ```python example in README.md and docs/**/*.md runs as it stands, so no example drifts from the code.

The tutorials (docs/tutorials/) are such examples end to end: a model trained with optax, the CSV
template run to its report, an offline wandb sweep; each must have examples that run.

Each Markdown file runs in one fresh interpreter (JAX is imported once per file), each of its examples in a
namespace of its own. An example is skipped only with a marker on the line right above its fence that gives
the reason: ``<!-- no-test: needs a trained run folder -->``.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKER = re.compile(r'^<!--\s*no-test:(.*?)-->\s*$')


def markdown_files() -> list[pathlib.Path]:
  return [ROOT / 'README.md'] + sorted(p for p in (ROOT / 'docs').rglob('*.md') if '_build' not in p.parts)


def examples(path: pathlib.Path) -> list[dict]:
  """The ```python blocks of ``path``: ``line`` (of the fence), ``code``, ``skip`` (the marker's reason, or None)."""
  lines = path.read_text().split('\n')
  blocks, i = [], 0
  while i < len(lines):
    fence = re.match(r'^(\s*)```(\S*)', lines[i])
    if not fence:
      i += 1
      continue
    indent, lang = fence.group(1), fence.group(2)
    end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith('```'))
    if lang == 'python':
      above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), '')
      marker = MARKER.match(above.strip())
      code = textwrap.dedent('\n'.join(l[len(indent) :] if l.startswith(indent) else l for l in lines[i + 1 : end]))
      blocks.append({'line': i + 1, 'code': code, 'skip': marker.group(1).strip() if marker else None})
    i = end + 1
  return blocks


def markers(path: pathlib.Path) -> list[tuple[int, str]]:
  return [(n + 1, line) for n, line in enumerate(path.read_text().split('\n')) if 'no-test' in line]


RUNNER = textwrap.dedent("""
    import json, sys, traceback
    blocks = json.load(sys.stdin)
    for b in blocks:
      namespace = {'__name__': '__main__'}
      try:
        exec(compile(b['code'], f"{b['file']}:{b['line']}", 'exec'), namespace)
      except BaseException:
        print(json.dumps({'failed': b['line'], 'error': traceback.format_exc()[-4000:]}))
        sys.exit(0)
    print(json.dumps({'failed': None}))
""")


@pytest.mark.slow  # one interpreter per file: JAX's import and the examples' compilations
@pytest.mark.parametrize('path', markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(path, tmp_path):
  blocks = [dict(b, file=str(path.relative_to(ROOT))) for b in examples(path) if b['skip'] is None]
  if not blocks:
    pytest.skip(f'{path.name} has no Python example to run')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))
  # wandb only where an example asks for it (the dashboards tutorial: offline), its files in the scratch folder.
  env.setdefault('WANDB_MODE', 'disabled')
  for var in ('WANDB_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_DATA_DIR'):
    env[var] = str(tmp_path / var.lower())
  # The examples run in a scratch folder (they may write files) with the checkout importable.
  proc = subprocess.run(
    [sys.executable, '-c', RUNNER],
    input=json.dumps(blocks),
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['failed'] is None, f'{path.name}:{result["failed"]}: the example fails:\n{result["error"]}'


@pytest.mark.parametrize('path', markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_skip_marker_gives_a_reason_and_sits_above_an_example(path):
  lines = path.read_text().split('\n')
  for n, line in markers(path):
    m = MARKER.match(line.strip())
    assert m, f'{path.name}:{n}: write the marker as <!-- no-test: <reason> -->'
    assert len(m.group(1).split()) >= 3, f'{path.name}:{n}: say why the example cannot run (a few words)'
    below = next((l for l in lines[n:] if l.strip()), '')
    assert below.strip() == '```python', f'{path.name}:{n}: a no-test marker must sit right above a ```python block'


def test_the_extractor_finds_blocks_and_markers(tmp_path):
  doc = tmp_path / 'x.md'
  doc.write_text(
    'text\n\n```python\na = 1\n```\n\n<!-- no-test: needs a prepared TFDS dataset -->\n'
    '```python\nb = 2\n```\n\n```bash\nmake test\n```\n\n- item\n\n  ```python\n  c = 3\n  ```\n'
  )
  got = examples(doc)
  assert [(b['line'], b['code'].strip(), b['skip']) for b in got] == [
    (3, 'a = 1', None),
    (8, 'b = 2', 'needs a prepared TFDS dataset'),
    (18, 'c = 3', None),
  ]


def test_the_docs_have_examples():
  # A regex that stopped matching would make every file above "pass" with nothing run.
  total = sum(1 for p in markdown_files() for b in examples(p) if b['skip'] is None)
  assert total >= 8, total


def test_every_tutorial_has_examples_that_run():
  tutorials = sorted((ROOT / 'docs' / 'tutorials').glob('*.md'))
  assert {p.stem for p in tutorials} >= {'your_model', 'your_csv', 'dashboards'}
  for path in tutorials:
    runnable = [b for b in examples(path) if b['skip'] is None]
    assert runnable, f'{path.name}: a tutorial whose examples do not run can drift from the code'
