"""The docs site's own checks, without a browser or a Sphinx build: docs/check_site.py's math and anchor
rules on small pages, and docs/conf.py's hooks that hide what Flax brings (they need Sphinx: the `docs`
extra; skipped without it). `make docs-check` runs the browser part on the built site."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name: str, path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


check_site = _load('check_site', ROOT / 'docs' / 'check_site.py')

SOURCE = '<p>x</p><span class="math notranslate nohighlight">\\(h_t = a h_{t-1}\\)</span>'


def test_math_left_as_latex_is_found():
  # MathJax never ran: the page comes back as built.
  assert 'MathJax did not run' in check_site.unrendered_math(SOURCE, SOURCE)
  # MathJax ran on one equation and left another raw.
  dom = SOURCE + '<mjx-container class="MathJax"></mjx-container>'
  assert 'left as raw LaTeX' in check_site.unrendered_math(SOURCE + SOURCE, dom)


def test_rendered_math_and_pages_without_math_pass():
  dom = '<p>x</p><span class="math notranslate nohighlight"><mjx-container class="MathJax"></mjx-container></span>'
  assert check_site.unrendered_math(SOURCE, dom) is None
  assert check_site.unrendered_math('<p>no equations</p>', '<p>no equations</p>') is None


def test_broken_anchors_are_found(tmp_path):
  (tmp_path / 'api').mkdir()
  (tmp_path / 'api' / 'cells.html').write_text('<h1 id="top">x</h1><a href="#top">ok</a><a href="#gone">bad</a>')
  (tmp_path / 'index.html').write_text('<a href="api/cells.html#top">ok</a><a href="api/cells.html#lost">bad</a>')
  assert sorted(check_site.broken_anchors(str(tmp_path))) == [
    'api/cells.html: broken link to #gone',
    'index.html: broken link to api/cells.html#lost',
  ]


def test_conf_hides_flax_members_and_sentinel_defaults():
  pytest.importorskip('sphinx', reason='the docs extra is not installed (pip install ".[docs]")')
  import jax.numpy as jnp
  import flax.linen as nn

  import deeprnn_jax as dr

  conf = _load('docs_conf', ROOT / 'docs' / 'conf.py')
  skip = lambda name, obj: conf.skip_member(None, 'class', name, obj, False, {})
  assert skip('setup', nn.Module.setup)  # Flax's docstring, once per cell otherwise
  assert skip('param_dtype', jnp.float32)  # "alias of float32"
  assert skip('kernel_init', nn.initializers.lecun_normal())  # jax's initializer docstring
  assert not skip('project_inputs', dr.MambaCell.project_inputs)  # ours stays
  assert not skip('features', 8)
  signature = "(features, dtype=None, param_dtype=<class 'jax.numpy.float32'>, carry_init=<function zeros at 0x7f>, "
  signature += 'parent=<flax.linen.module._Sentinel object>, name=None)'
  got, _ = conf.process_signature(None, 'class', 'X', dr.MambaCell, {}, signature, None)
  assert got == '(features, dtype=None, param_dtype=float32, carry_init=zeros)'


def test_every_task_module_has_a_section_in_the_api_reference():
  import functools

  from deeprnn_jax import tasks

  page = (ROOT / 'docs' / 'api' / 'tasks.md').read_text()
  for name in sorted(tasks.BUILTIN_TASKS):
    factory = tasks.TASKS[name]
    module = (factory.func if isinstance(factory, functools.partial) else factory).__module__
    assert f'.. automodule:: {module}\n' in page, f'task {name!r}: no section for {module} in docs/api/tasks.md'
