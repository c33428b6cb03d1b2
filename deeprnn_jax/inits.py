"""Named initializers, so an initialization scheme is a string and can be a sweep axis.

``get_initializer('orthogonal')`` returns a ``jax.nn.initializers`` function; a callable passes
through unchanged, so cells accept either, like Flax's own ``kernel_init`` attributes.

Fused gate kernels (``[in, gates * features]``) are initialized gate by gate (``per_gate``): an
orthogonal or identity recurrent matrix means each gate's ``[features, features]`` block is
orthogonal or the identity, as in an unfused cell, not one wide matrix with orthonormal rows.

Whole-model schemes (``TREE_INITS``, ``init_tree``) replace every parameter a model's modules drew, for
recipes that initialize all weights alike: ``'uniform_0.1'`` is Zaremba et al.'s (2014) U(-0.1, 0.1)
for every embedding, kernel and bias (``model.init`` in a config).
"""

from __future__ import annotations

from typing import Callable, Union

import re

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]
InitLike = Union[str, Initializer]


def identity(key, shape, dtype=jnp.float32):
  """The identity matrix (Le et al. 2015, IRNN); a vector of ones for a diagonal recurrence."""
  del key
  if len(shape) == 1:
    return jnp.ones(shape, dtype)
  if len(shape) != 2 or shape[0] != shape[1]:
    raise ValueError(f"the 'identity' initializer needs a square matrix or a vector; got shape {shape}")
  return jnp.eye(shape[0], dtype=dtype)


def unit_uniform(key, shape, dtype=jnp.float32):
  """U(0, 1): the IndRNN recurrent weights of Li et al. 2018."""
  return jax.random.uniform(key, shape, dtype)


INITIALIZERS: dict[str, Callable[[], Initializer]] = {
  'orthogonal': jinit.orthogonal,
  'identity': lambda: identity,
  'lecun_normal': jinit.lecun_normal,
  'glorot_uniform': jinit.glorot_uniform,
  'glorot_normal': jinit.glorot_normal,
  'he_normal': jinit.he_normal,
  'normal_0.001': lambda: jinit.normal(1e-3),
  'unit_uniform': lambda: unit_uniform,
  'zeros': lambda: jinit.zeros,
  'ones': lambda: jinit.ones,
}


def get_initializer(init: InitLike) -> Initializer:
  """A name from ``INITIALIZERS`` or an initializer function -> an initializer function."""
  if callable(init):
    return init
  try:
    return INITIALIZERS[init]()
  except KeyError:
    raise ValueError(f'unknown initializer {init!r}; choose one of {sorted(INITIALIZERS)} or pass a function') from None


def per_gate(init: Initializer, num_gates: int) -> Initializer:
  """Initializes ``[rows, num_gates * n]`` as ``num_gates`` independent ``[rows, n]`` blocks."""
  if num_gates == 1:
    return init

  def gate_init(key, shape, dtype=jnp.float32):
    *lead, width = shape
    if width % num_gates:
      raise ValueError(f'kernel width {width} is not divisible by {num_gates} gates')
    keys = jax.random.split(key, num_gates)
    blocks = [init(k, (*lead, width // num_gates), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)

  return gate_init


TREE_INITS = ('uniform_<a>',)  # the whole-model schemes ``init_tree`` reads, e.g. 'uniform_0.1'
_UNIFORM = re.compile(r'uniform_(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)')


def tree_init_scale(name: str) -> float:
  """``'uniform_<a>'`` -> :math:`a > 0`, the half-width of U(-a, a); any other name is a ValueError."""
  match = _UNIFORM.fullmatch(name) if isinstance(name, str) else None
  if match is None or float(match.group(1)) <= 0:
    raise ValueError(
      f"unknown whole-model init {name!r}; use 'uniform_<a>' with a > 0 (every parameter U(-a, a), "
      "e.g. 'uniform_0.1'), or None for each module's own initializers"
    )
  return float(match.group(1))


def init_tree(params, key: jax.Array, name: str):
  r"""Every leaf of ``params`` redrawn by the whole-model scheme ``name``: ``'uniform_<a>'`` gives
  :math:`\theta_i \sim U(-a, a)` i.i.d. for every scalar parameter (a complex leaf draws its real and
  imaginary parts so), one key per leaf in the tree's flattening order. Shapes and dtypes are kept.
  """
  a = tree_init_scale(name)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))

  def draw(k, x):
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
      real = jnp.finfo(x.dtype).dtype
      kr, ki = jax.random.split(k)
      re_, im = (jax.random.uniform(kk, x.shape, real, -a, a) for kk in (kr, ki))
      return jax.lax.complex(re_, im).astype(x.dtype)
    return jax.random.uniform(k, x.shape, x.dtype, -a, a)

  return jax.tree.unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])
