"""Sphinx configuration: the guides are Markdown (MyST), the API reference comes from the docstrings.

The site builds offline: MathJax is copied into it (``sphinx-mathjax-offline``), and nothing is read
from the network. ``make docs`` builds it with warnings as errors; ``make docs-check`` opens it in
headless Chromium and fails if an equation is left unrendered (``docs/check_site.py``).
"""

import inspect
import os
import re
import sys

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

sys.path.insert(0, os.path.abspath('..'))

import deeprnn_jax  # noqa: E402  (after the path: the docs build from a checkout)

project = 'deeprnn-jax'
author = 'deeprnn-jax authors'
copyright = '2026, deeprnn-jax authors'  # noqa: A001
release = deeprnn_jax.__version__
version = release

extensions = [
  'myst_parser',
  'sphinx.ext.autodoc',
  'sphinx.ext.napoleon',  # the docstrings are Google style (Args:, Returns:, Attributes:)
  'sphinx.ext.mathjax',  # their equations (.. math::)
  'sphinx-mathjax-offline',  # MathJax 3 copied into the site: equations render without the network
  'sphinx.ext.viewcode',
]
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'none'  # the signatures carry them; repeating them in the text is noise
# Members defined here, each with its own docstring: nothing inherited from Flax (Module.setup, ...).
autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = 'furo'
html_title = f'deeprnn-jax {release}'
html_static_path = ['_static']
html_css_files = ['custom.css']  # a wider content column: the examples' 120-column lines fit at 1280 px


def _foreign(obj) -> bool:
  """A class or function defined outside this package: a Flax dataclass field whose default is jax's
  initializer (``kernel_init``) or a dtype (``param_dtype = jnp.float32``), or a Flax method."""
  if not (inspect.isclass(obj) or inspect.isroutine(obj) or callable(obj)):
    return False
  module = getattr(obj, '__module__', None) or getattr(type(obj), '__module__', '') or ''
  return not module.startswith('deeprnn_jax')


def skip_member(app, what, name, obj, skip, options):
  """Hides what Flax and JAX bring: dataclass fields whose value is one of their objects (each would print
  "alias of float32" or an initializer's docstring), ``setup``, ``parent`` and ``name``."""
  del app, options
  if what in ('class', 'exception') and (name in ('setup', 'parent', 'name', 'scope') or _foreign(obj)):
    return True
  return skip


_FLAX_FIELDS = re.compile(r',?\s*\b(parent|name)=[^,)]*(?=[,)])')


def process_signature(app, what, name, obj, options, signature, return_annotation):
  """Drops Flax's ``parent=<flax.linen.module._Sentinel object>`` and ``name=None`` from a module's
  signature; the other defaults stay."""
  del app, name, options
  if signature and what == 'class' and inspect.isclass(obj) and 'parent=' in signature:
    signature = _FLAX_FIELDS.sub('', signature).replace('(, ', '(')
  if signature:  # defaults that are objects: <class 'jax.numpy.float32'> -> float32, <function zeros at 0x..> -> zeros
    signature = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r'\1', signature)
    signature = re.sub(r'<function ([\w.]+)[^>]*>', r'\1', signature)
  return signature, return_annotation


def _task_rows() -> list[tuple[str, str, str]]:
  """(name, the factory as a cross-reference, its options with their defaults) for every built-in task."""
  import functools  # noqa: PLC0415

  from deeprnn_jax import tasks  # noqa: PLC0415

  rows = []
  for name in sorted(tasks.BUILTIN_TASKS):
    factory = tasks.TASKS[name]
    fixed = ''
    if isinstance(factory, functools.partial):
      fixed = ' with ' + ', '.join(f'``{k}={v!r}``' for k, v in factory.keywords.items())
      factory = factory.func
    ref = f':func:`~{factory.__module__}.{factory.__qualname__}`{fixed}'
    options = ', '.join(f'``{k}={v!r}``' for k, v in tasks.task_options(name).items())
    rows.append((name, ref, options or '(none)'))
  return rows


class TaskTable(Directive):
  """``.. task-table::``: every built-in task, its factory and its options with their defaults, read
  from ``deeprnn_jax.tasks.TASKS`` when the site is built (it cannot drift from the code)."""

  def run(self):
    lines = ['.. list-table::', '   :header-rows: 1', '   :widths: 18 30 52', '']
    lines += ['   * - task', '     - factory', '     - options (``task.options``) and their defaults']
    for name, ref, options in _task_rows():
      lines += [f'   * - ``{name}``', f'     - {ref}', f'     - {options}']
    node = nodes.container()
    self.state.nested_parse(StringList(lines, source='task-table'), self.content_offset, node)
    return node.children


def setup(app):
  app.connect('autodoc-skip-member', skip_member)
  app.connect('autodoc-process-signature', process_signature)
  app.add_directive('task-table', TaskTable)
