"""Sphinx configuration: the guides are Markdown (MyST), the API reference comes from the docstrings."""

import os
import sys

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
  'sphinx.ext.viewcode',
]
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'none'  # the signatures carry them; repeating them in the text is noise
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = 'furo'
html_title = f'deeprnn-jax {release}'
