"""One training step (forward + backward + Adam update) of each implementation under test.

Every builder takes a ``Shape`` and a cell name and returns a ``Bench``: a zero-argument ``step()``
that runs one full update and waits for it (so a timer around it measures real work), and the
seconds the first call spent compiling. All implementations use the same loss (mean square of the
top layer's outputs), the same optimizer (Adam, lr 1e-3) and float32.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import deeprnn_jax as dr
from deeprnn_jax.training.parallel import over_seeds


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  batch: int
  time: int
  inputs: int
  hidden: int
  layers: int

  @property
  def tokens(self) -> int:
    return self.batch * self.time


@dataclasses.dataclass
class Bench:
  step: Callable[[], None]
  compile_seconds: float


GATES = {'lstm': 4, 'gru': 3, 'rnn': 1, 'mingru': 2}
FLAX_CELLS = {'lstm': nn.OptimizedLSTMCell, 'gru': nn.GRUCell, 'rnn': nn.SimpleCell}
TORCH_MODULES = {'lstm': 'LSTM', 'gru': 'GRU', 'rnn': 'RNN'}


def train_flops(shape: Shape, cell: str) -> float:
  """Matmul FLOPs of one training step: forward ``2 * tokens * (in + H) * gates * H`` per layer,
  backward twice that (gradients of inputs and of weights)."""
  gates = GATES[cell]
  forward = 0.0
  for layer in range(shape.layers):
    fan_in = shape.inputs if layer == 0 else shape.hidden
    forward += 2.0 * shape.tokens * (fan_in + shape.hidden) * gates * shape.hidden
  return 3.0 * forward


class FlaxStack(nn.Module):
  """What a researcher writes in plain Flax: L ``nn.RNN`` layers of a Flax cell."""

  cell: str
  hidden: int
  layers: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.layers):
      x = nn.RNN(FLAX_CELLS[self.cell](self.hidden))(x)
    return x


def _inputs(shape: Shape) -> jax.Array:
  return jax.random.normal(jax.random.key(0), (shape.batch, shape.time, shape.inputs))


def jax_train_step(apply_fn: Callable, params, x, *, seeds: int | None = None, seed_program: str = 'vmap') -> Bench:
  """A jitted, buffer-donating train step closed over its state.

  With ``seeds``, ``params`` carries a leading seed axis and one program updates every seed, as the
  runner trains the seeds of a grid point: batched (``seed_program='vmap'``) or one after another
  inside the program (``'loop'``).
  """
  opt = optax.adam(1e-3)

  def update(params, opt_state, x):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(jnp.square(apply_fn(p, x))))(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  init = opt.init
  if seeds is not None:
    update = over_seeds(update, (0, 0, None), seed_program)
    init = jax.vmap(opt.init)
  opt_state = init(params)
  start = time.perf_counter()
  compiled = jax.jit(update, donate_argnums=(0, 1)).lower(params, opt_state, x).compile()
  compile_seconds = time.perf_counter() - start
  state = [params, opt_state]

  def step():
    state[0], state[1], loss = compiled(state[0], state[1], x)
    loss.block_until_ready()

  return Bench(step, compile_seconds)


def ours(shape: Shape, cell: str, *, seeds: int | None = None, seed_program: str = 'vmap', **options) -> Bench:
  x = _inputs(shape)
  model = dr.DeepRNN(cell=cell, features=shape.hidden, num_layers=shape.layers, **options)
  if seeds is None:
    params = model.init(jax.random.key(1), x)
  else:
    params = jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(1), seeds))
  return jax_train_step(lambda p, x: model.apply(p, x)[1], params, x, seeds=seeds, seed_program=seed_program)


def flax_stack(shape: Shape, cell: str) -> Bench:
  x = _inputs(shape)
  model = FlaxStack(cell, shape.hidden, shape.layers)
  return jax_train_step(model.apply, model.init(jax.random.key(1), x), x)


def torch_module(shape: Shape, cell: str) -> Bench:
  import torch  # optional: the `bench` extra

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  module = getattr(torch.nn, TORCH_MODULES[cell])(shape.inputs, shape.hidden, shape.layers, batch_first=True)
  module = module.to(device)
  opt = torch.optim.Adam(module.parameters(), lr=1e-3)
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.standard_normal((shape.batch, shape.time, shape.inputs), np.float32)).to(device)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = module(x)[0].square().mean()
    loss.backward()
    opt.step()
    if device == 'cuda':
      torch.cuda.synchronize()

  start = time.perf_counter()
  step()  # PyTorch has no compile step; its first call is its warm-up
  return Bench(step, time.perf_counter() - start)


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
  """The machine's large-matmul float32 FLOP/s under JAX: the ceiling for achieved FLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n**3 / best
