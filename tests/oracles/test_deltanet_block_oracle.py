"""DeltaNet and Gated DeltaNet with their short convolutions against flash-linear-attention's layers (PyTorch).

FLA's layers need Triton (a GPU), so the reference here is FLA's ``GatedDeltaNet.forward`` and
``DeltaNet.forward`` (``fla/layers/gated_deltanet.py``, ``fla/layers/delta_net.py``; the per-q/k/v
``ShortConvolution`` branch, which the fused no-cache branch equals) rebuilt from FLA's own pure-PyTorch
references, copied below with their sources: the causal short convolution and its one-step update
(``tests/modules/test_conv.py``), the naive recurrences (``fla/ops/gated_delta_rule/naive.py``,
``fla/ops/delta_rule/naive.py``), the decay gate (``fla/ops/gated_delta_rule/gate.py``) and the RMSNorm
(``fla/modules/layernorm.py``). What the Triton kernels do in between is written out from their code:
the in-kernel l2 normalization ``x / sqrt(sum(x^2) + 1e-6)`` (``use_qk_l2norm_in_kernel``,
``fla/ops/gated_delta_rule/fused_recurrent.py``), the in-kernel sigmoid of beta and the SiLU-gated
RMSNorm (``FusedRMSNormGated``: ``rmsnorm(o) * w * silu(g)``, ``fla/modules/fused_norm_gate.py``).

The layer: q, k, v projections -> ``ShortConvolution`` (k = 4, no bias, SiLU) on each -> l2-normalized q, k
-> ``beta = sigmoid(b_proj(h))``, ``g = -exp(A_log) * softplus(a_proj(h) + dt_bias)`` (gated) -> the delta
rule with q scaled by ``d^-1/2`` -> per-head RMSNorm (gated by ``silu(g_proj(h))``) -> ``o_proj``.
Ours: ``DeepRNN(cell=..., block='classic', short_conv='authors')``, i.e. ``Mixer(cell, conv_width=4)`` with
nothing around it, whose ``input_proj`` packs ``[q, k, v, beta(, alpha, gate)]`` and ``conv_kernel``
``[4, 3H]`` the three convolutions' ``weight[:, 0, :].T``.

Compared, on the three execution paths (the chunkwise one over several chunks): outputs and final states
(the conv buffer against FLA's final conv states, the memory ``[B, H, K, V]`` against the naive
reference's) from zero states and from nonzero ones (FLA's ``initial_state`` of each piece); our
``method='step'`` streaming against FLA's decoding (``causal_conv1d_update`` on a ``[B, D, K]`` cache, the
recurrence one token at a time); gradients with respect to the inputs and every parameter.

Not compared: FLA's actual layer code path (Triton), ``cu_seqlens``/padding (unpadding), FLA's
``head_dim``/``expand_v``/``num_v_heads`` choices (here ``hidden = H``, ``d_k = d_v = H / heads``), the
layer's ``state_v_first`` cache layout, and initializations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="FLA's reference code needs the oracles extra: make test-oracles")
F = torch.nn.functional

import deeprnn_jax as dr  # noqa: E402

BATCH, TIME, HIDDEN, HEADS, WIDTH, CHUNK = 2, 7, 8, 2, 4, 3
D = HIDDEN // HEADS
EXECUTIONS = ['time', 'layer', 'parallel']
CELLS = ['deltanet', 'gated_deltanet']

# -- flash-linear-attention's references -------------------------------------------------------------------
# Copied from https://github.com/fla-org/flash-linear-attention at commit
# bc3b101dcb713ddc5bd8924b66754eb68b5ccf89 (MIT license, Copyright (c) 2023-2026 Songlin Yang, Yu Zhang,
# Zhiyuan Li), unchanged but for formatting and the unused arguments left out.

_CONV_REF_FP32_DTYPES = (torch.float16, torch.bfloat16)


def _conv_ref_compute_dtype(*tensors):
  # tests/modules/test_conv.py
  if any(t is not None and t.dtype in _CONV_REF_FP32_DTYPES for t in tensors):
    return torch.float32
  return tensors[0].dtype


def causal_conv1d_ref_torch(x, weight, bias=None, initial_state=None, output_final_state=False, activation=None):
  """tests/modules/test_conv.py. x: (batch, dim, seqlen); weight: (dim, width); bias: (dim,);
  initial_state: (batch, dim, width - 1). out: (batch, dim, seqlen)."""
  if activation not in [None, 'silu', 'swish']:
    raise NotImplementedError('activation must be None, silu, or swish')
  dtype_in = x.dtype
  compute_dtype = _conv_ref_compute_dtype(x, weight, bias, initial_state)
  seqlen = x.shape[-1]
  dim, width = weight.shape
  weight_conv = weight.to(compute_dtype)
  bias_conv = bias.to(compute_dtype) if bias is not None else None
  if initial_state is None:
    x_full = x
    out = F.conv1d(x_full.to(compute_dtype), weight_conv.unsqueeze(1), bias_conv, padding=width - 1, groups=dim)
  else:
    x_full = torch.cat([initial_state, x], dim=-1)
    out = F.conv1d(x_full.to(compute_dtype), weight_conv.unsqueeze(1), bias_conv, padding=0, groups=dim)
  out = out[..., :seqlen]
  if output_final_state:
    final_states_out = F.pad(x_full, (width - 1 - x_full.shape[-1], 0)).to(dtype_in)  # (batch, dim, width - 1)
  out = (out if activation is None else F.silu(out)).to(dtype=dtype_in)
  return out if not output_final_state else (out, final_states_out)


def causal_conv1d_update_ref_torch(x, conv_state, weight, bias=None, activation=None):
  """tests/modules/test_conv.py (without ``cache_seqlens``). x: (batch, dim); conv_state: (batch, dim,
  state_len), state_len >= width - 1, updated in place; weight: (dim, width). out: (batch, dim)."""
  if activation not in [None, 'silu', 'swish']:
    raise NotImplementedError('activation must be None, silu, or swish')
  dtype_in = x.dtype
  unsqueeze = x.dim() == 2
  if unsqueeze:
    x = x.unsqueeze(-1)
  compute_dtype = _conv_ref_compute_dtype(x, weight, bias, conv_state)
  batch, dim, seqlen = x.shape
  width = weight.shape[1]
  state_len = conv_state.shape[-1]
  assert conv_state.shape == (batch, dim, state_len)
  assert weight.shape == (dim, width)
  x_new = torch.cat([conv_state, x], dim=-1)  # (batch, dim, state_len + seqlen)
  conv_state.copy_(x_new[:, :, -state_len:])
  weight_conv = weight.to(compute_dtype)
  bias_conv = bias.to(compute_dtype) if bias is not None else None
  out = F.conv1d(x_new.to(compute_dtype), weight_conv.unsqueeze(1), bias_conv, padding=0, groups=dim)[:, :, -seqlen:]
  if unsqueeze:
    out = out.squeeze(-1)
  return (out if activation is None else F.silu(out)).to(dtype=dtype_in)


def naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=None, initial_state=None, output_final_state=False):
  """fla/ops/gated_delta_rule/naive.py. q, k: [B, T, H, K]; v: [B, T, H, V]; beta, g: [B, T, H];
  initial_state: [B, H, K, V]. Returns o [B, T, H, V], final_state [B, H, K, V]."""
  q, k, v, beta, g = map(lambda x: x.transpose(1, 2).contiguous().to(torch.float32), [q, k, v, beta, g])
  B, H, T, K, V = *k.shape, v.shape[-1]
  o = torch.zeros(B, H, T, V).to(v)
  h = torch.zeros(B, H, K, V).to(v)
  if initial_state is not None:
    h = initial_state.to(torch.float32)
  if scale is None:
    scale = 1 / (q.shape[-1] ** 0.5)
  q = q * scale

  for i in range(T):
    b_q = q[:, :, i]
    b_k = k[:, :, i]
    b_v = v[:, :, i].clone()
    h = h.clone() * g[:, :, i].exp()[..., None, None]
    b_beta = beta[:, :, i]
    b_v = b_v - (h.clone() * b_k[..., None]).sum(-2)
    b_v = b_v * b_beta[..., None]
    h = h.clone() + b_k.unsqueeze(-1) * b_v.unsqueeze(-2)
    o[:, :, i] = torch.einsum('bhd,bhdm->bhm', b_q, h)

  if not output_final_state:
    h = None
  o = o.transpose(1, 2).contiguous()
  return o, h


def naive_gdn_gate(g, A_log, dt_bias=None, output_dtype=torch.float32):
  """fla/ops/gated_delta_rule/gate.py: ``g = -A_log.exp() * softplus(g + dt_bias)``."""
  g = g.float()
  if dt_bias is not None:
    g = g + dt_bias.float()
  return (-A_log.float().exp() * F.softplus(g)).to(output_dtype)


def delta_rule_recurrence(q, k, v, beta, initial_state=None, output_final_state=True):
  """fla/ops/delta_rule/naive.py; head-major: q, k, v [b, h, l, d], beta [b, h, l]."""
  orig_dtype = q.dtype
  b, h, l, d_k = q.shape
  q, k, v, beta = map(lambda x: x.float(), [q, k, v, beta])
  d_v = v.shape[-1]
  o = torch.zeros_like(v)
  S = torch.zeros(b, h, d_k, d_v).to(v)
  q = q * (d_k**-0.5)

  if beta.ndim < v.ndim:
    beta = beta[..., None]

  if initial_state is not None:
    S += initial_state

  for i in range(l):
    _k = k[:, :, i]
    _q = q[:, :, i]
    _v = v[:, :, i].clone()
    beta_i = beta[:, :, i]
    _v = _v - (S.clone() * _k[..., None]).sum(-2)
    _v = _v * beta_i
    S = S.clone() + _k.unsqueeze(-1) * _v.unsqueeze(-2)
    o[:, :, i] = torch.einsum('bhd,bhdm->bhm', _q, S)
  S = None if output_final_state is False else S
  return o.to(orig_dtype), S


def rms_norm_ref(x, weight, bias, eps=1e-5):
  """fla/modules/layernorm.py (no residual, no upcast)."""
  dtype = x.dtype
  rstd = 1 / torch.sqrt((x.square()).mean(dim=-1, keepdim=True) + eps)
  out = (x * rstd * weight) + bias if bias is not None else (x * rstd * weight)
  return out.to(dtype)


# -- the layers' forward, from fla/layers/{gated_deltanet,delta_net}.py (same commit) ----------------------


def _l2norm(x):
  # The kernels' use_qk_l2norm_in_kernel (fla/ops/gated_delta_rule/fused_recurrent.py, l2norm_fwd).
  return x / torch.sqrt(torch.sum(x * x, dim=-1, keepdim=True) + 1e-6)


def _heads(x):
  return x.reshape(x.shape[:-1] + (HEADS, D))  # rearrange '... (h d) -> ... h d'


def fla_layer(gated, w, h, conv_states=None, recurrent_state=None):
  """``GatedDeltaNet.forward`` / ``DeltaNet.forward`` (defaults: short convs without bias, SiLU on q, k, v,
  l2 q/k norm, sigmoid beta) over ``h`` ``[B, T, hidden]`` from the given caches (None: zeros). Returns
  ``o``, the final ``(q, k, v)`` conv states ``[B, dim, K - 1]`` and the final memory ``[B, H, K, V]``."""
  qkv, final_conv = [], []
  for name, state in zip('qkv', conv_states or (None, None, None), strict=True):
    out, final = causal_conv1d_ref_torch(
      (h @ w[f'{name}_proj'].T).transpose(1, 2),
      w[f'{name}_conv1d'][:, 0, :],  # rearrange 'd 1 w -> d w'
      None,
      initial_state=state,
      output_final_state=True,
      activation='silu',
    )
    qkv.append(out.transpose(1, 2))
    final_conv.append(final)
  q, k, v = (_heads(a) for a in qkv)
  q, k = _l2norm(q), _l2norm(k)
  beta = torch.sigmoid(h @ w['b_proj'].T)
  if gated:
    g = naive_gdn_gate(h @ w['a_proj'].T, w['A_log'], w['dt_bias'])
    o, state = naive_recurrent_gated_delta_rule(q, k, v, beta, g, None, recurrent_state, output_final_state=True)
    o = rms_norm_ref(o, w['o_norm'], None) * F.silu(_heads(h @ w['g_proj'].T))
  else:
    head_major = lambda a: a.transpose(1, 2)
    o, state = delta_rule_recurrence(*map(head_major, (q, k, v, beta)), recurrent_state, output_final_state=True)
    o = rms_norm_ref(head_major(o), w['o_norm'], None)
  o = o.reshape(o.shape[:2] + (HIDDEN,)) @ w['o_proj'].T
  return o, tuple(final_conv), state


def fla_layer_decoding(gated, w, h, conv_caches, recurrent_state):
  """The layers with ``use_cache`` one token at a time: ``ShortConvolution.step`` (``causal_conv1d_update``
  on a ``[B, dim, K]`` cache) and the recurrence from the previous token's state."""
  caches = [c.clone() for c in conv_caches]
  outputs = []
  for t in range(h.shape[1]):
    h_t = h[:, t]
    qkv = [
      causal_conv1d_update_ref_torch(h_t @ w[f'{name}_proj'].T, cache, w[f'{name}_conv1d'][:, 0, :], None, 'silu')
      for name, cache in zip('qkv', caches, strict=True)
    ]
    q, k, v = (_heads(a)[:, None] for a in qkv)
    q, k = _l2norm(q), _l2norm(k)
    beta = torch.sigmoid(h_t @ w['b_proj'].T)[:, None]
    if gated:
      g = naive_gdn_gate(h_t @ w['a_proj'].T, w['A_log'], w['dt_bias'])[:, None]
      o, recurrent_state = naive_recurrent_gated_delta_rule(q, k, v, beta, g, None, recurrent_state, True)
      o = rms_norm_ref(o, w['o_norm'], None) * F.silu(_heads(h_t @ w['g_proj'].T)[:, None])
    else:
      head_major = lambda a: a.transpose(1, 2)
      o, recurrent_state = delta_rule_recurrence(*map(head_major, (q, k, v, beta)), recurrent_state, True)
      o = rms_norm_ref(head_major(o), w['o_norm'], None)
    outputs.append(o.reshape(o.shape[0], HIDDEN) @ w['o_proj'].T)
  return torch.stack(outputs, dim=1), caches, recurrent_state


# -- the comparison ----------------------------------------------------------------------------------------


def _close(got, want, rtol=1e-4, atol=1e-5):
  # Float32 rounding, scaled to the reference's magnitude.
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(want)))))


def _np(t):
  return t.detach().numpy()


def _weights(gated):
  gen = torch.Generator().manual_seed(0)
  randn = lambda *shape: torch.randn(*shape, generator=gen)
  w = {name: randn(HIDDEN, HIDDEN) * HIDDEN**-0.5 for name in ['q_proj', 'k_proj', 'v_proj', 'o_proj']}
  w['b_proj'] = randn(HEADS, HIDDEN) * HIDDEN**-0.5
  for name in ['q_conv1d', 'k_conv1d', 'v_conv1d']:
    w[name] = 0.5 * randn(HIDDEN, 1, WIDTH)  # nn.Conv1d(groups=dim).weight [dim, 1, K]
  w['o_norm'] = 1.0 + 0.3 * randn(D)
  if gated:
    w['a_proj'] = randn(HEADS, HIDDEN) * HIDDEN**-0.5
    w['g_proj'] = randn(HIDDEN, HIDDEN) * HIDDEN**-0.5
    w['A_log'] = torch.log(torch.rand(HEADS, generator=gen) * 15.0 + 1.0)
    w['dt_bias'] = randn(HEADS)
  return {name: a.requires_grad_(True) for name, a in w.items()}


def _ours_params(gated, w):
  """FLA's weights (torch [out, in]) -> our parameter tree; also maps their gradients (it is linear)."""
  w = {name: a.detach().numpy() if hasattr(a, 'detach') else a for name, a in w.items()}
  rows = ['q_proj', 'k_proj', 'v_proj', 'b_proj'] + (['a_proj', 'g_proj'] if gated else [])
  cell = {
    'input_proj': {'kernel': np.concatenate([w[name] for name in rows], axis=0).T},
    'output_norm': {'scale': w['o_norm']},
    'output_proj': {'kernel': w['o_proj'].T},
  }
  if gated:
    cell.update(A_log=w['A_log'], dt_bias=w['dt_bias'])
  conv = np.concatenate([w[f'{name}_conv1d'][:, 0, :] for name in 'qkv'], axis=0).T  # [K, 3H]
  return {'layer_0': {'cell': {'cell': cell, 'conv_kernel': conv}}}


def _ours_module(cell, execution):
  return dr.DeepRNN(
    cell=cell,
    features=HIDDEN,
    block='classic',
    short_conv='authors',
    conv_width=WIDTH,
    cell_kwargs={'num_heads': HEADS, 'chunk_size': CHUNK},
    execution=execution,
  )


def _ours(cell, execution, params, x, carries=None):
  finals, y = _ours_module(cell, execution).apply({'params': params}, x, initial_carries=carries)
  ((buffer, memory),) = finals
  return y, buffer, memory


def _inputs():
  gen = torch.Generator().manual_seed(1)
  x = torch.randn(BATCH, TIME, HIDDEN, generator=gen)
  conv_states = tuple(torch.randn(BATCH, HIDDEN, WIDTH - 1, generator=gen) for _ in range(3))
  memory = 0.5 * torch.randn(BATCH, HEADS, D, D, generator=gen)
  return x, conv_states, memory


def _buffer(conv_states):
  """FLA's (q, k, v) conv states ``[B, dim, K - 1]`` -> our buffer ``[B, K - 1, 3H]``."""
  return np.concatenate([_np(s).transpose(0, 2, 1) for s in conv_states], axis=-1)


@pytest.mark.parametrize('cell', CELLS)
def test_parameter_tree_is_ours(cell):
  gated = cell == 'gated_deltanet'
  x = jnp.zeros((BATCH, TIME, HIDDEN))
  want = jax.eval_shape(_ours_module(cell, 'time').init, jax.random.key(0), x)['params']
  got = _ours_params(gated, _weights(gated))
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert jax.tree.map(np.shape, got) == jax.tree.map(lambda a: a.shape, want)


@pytest.mark.parametrize('nonzero_state', [False, True], ids=['zero_state', 'nonzero_state'])
@pytest.mark.parametrize('execution', EXECUTIONS)
@pytest.mark.parametrize('cell', CELLS)
def test_layer_equals_fla_reference(cell, execution, nonzero_state):
  gated = cell == 'gated_deltanet'
  w = _weights(gated)
  x, conv_states, memory = _inputs()
  with torch.no_grad():
    if nonzero_state:
      want_y, want_conv, want_memory = fla_layer(gated, w, x, conv_states, memory)
      carries = ((jnp.asarray(_buffer(conv_states)), jnp.asarray(_np(memory))),)
      assert float(torch.max(torch.abs(want_y - fla_layer(gated, w, x)[0]))) > 1e-2  # the state matters
    else:
      want_y, want_conv, want_memory = fla_layer(gated, w, x)
      carries = None
  got_y, got_buffer, got_memory = _ours(cell, execution, _ours_params(gated, w), jnp.asarray(_np(x)), carries)
  assert float(torch.std(want_y)) > 0.05
  _close(got_y, _np(want_y))
  _close(got_buffer, _buffer(want_conv))
  _close(got_memory, _np(want_memory))


@pytest.mark.parametrize('cell', CELLS)
def test_streaming_step_equals_fla_decoding(cell):
  gated = cell == 'gated_deltanet'
  w = _weights(gated)
  x, conv_states, memory = _inputs()
  # FLA's layer cache holds the last K inputs [B, dim, K]; the update never reads its oldest column.
  garbage = torch.randn(BATCH, HIDDEN, 1, generator=torch.Generator().manual_seed(2))
  caches = [torch.cat([garbage, s], dim=-1) for s in conv_states]
  with torch.no_grad():
    want_y, want_caches, want_memory = fla_layer_decoding(gated, w, x, caches, memory)
  model, params = _ours_module(cell, 'time'), _ours_params(gated, w)
  step = jax.jit(lambda c, x_t: model.apply({'params': params}, c, x_t, method='step'))
  carries = ((jnp.asarray(_buffer(conv_states)), jnp.asarray(_np(memory))),)
  ys = []
  for t in range(TIME):
    carries, y_t = step(carries, jnp.asarray(_np(x[:, t])))
    ys.append(y_t)
  _close(jnp.stack(ys, axis=1), _np(want_y))
  ((buffer, got_memory),) = carries
  _close(buffer, _buffer([c[:, :, 1:] for c in want_caches]))
  _close(got_memory, _np(want_memory))


@pytest.mark.parametrize('execution', ['time', 'parallel'])
@pytest.mark.parametrize('cell', CELLS)
def test_gradients_equal_fla_reference(cell, execution):
  gated = cell == 'gated_deltanet'
  w = _weights(gated)
  x, conv_states, memory = _inputs()
  x.requires_grad_(True)
  weight = torch.randn(BATCH, TIME, HIDDEN, generator=torch.Generator().manual_seed(3))

  want_y, want_conv, want_memory = fla_layer(gated, w, x, conv_states, memory)
  want_conv = torch.cat([s.transpose(1, 2) for s in want_conv], dim=-1)
  loss = torch.sum(weight * want_y) + torch.sum(torch.sin(want_memory)) + torch.sum(torch.sin(want_conv))
  names = list(w)
  grads = torch.autograd.grad(loss, [x] + [w[name] for name in names])
  want_dx, want_dw = _np(grads[0]), _ours_params(gated, dict(zip(names, map(_np, grads[1:]), strict=True)))

  carries = ((jnp.asarray(_buffer(conv_states)), jnp.asarray(_np(memory))),)
  weight = jnp.asarray(_np(weight))

  def ours_loss(params, x):
    y, buffer, memory = _ours(cell, execution, params, x, carries)
    return jnp.sum(weight * y) + jnp.sum(jnp.sin(memory)) + jnp.sum(jnp.sin(buffer))

  params = jax.tree.map(jnp.asarray, _ours_params(gated, w))
  got_dw, got_dx = jax.grad(ours_loss, argnums=(0, 1))(params, jnp.asarray(_np(x)))
  _close(got_dx, want_dx)
  flat_got = jax.tree_util.tree_flatten_with_path(got_dw)[0]
  for (path, g), t in zip(flat_got, jax.tree.leaves(want_dw), strict=True):
    assert float(np.max(np.abs(t))) > 0, path
    _close(g, t)
