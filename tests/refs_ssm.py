"""NumPy references (float64) of minLSTM, RG-LRU, S6 and Mamba, one step each, from the papers' equations:
Feng et al. 2024 (minLSTM, Sec. 3.2), De et al. 2024 (RG-LRU, Eqs. 1-4), Gu & Dao 2023 (S6: Algorithm 2 with
Mamba's discretization; Mamba: Fig. 3). Signature: (params, carry, x [batch, in]) -> (carry, y)."""

import numpy as np


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
  return np.log1p(np.exp(x))


def silu(x):
  return x * sigmoid(x)


def dense(p, x):
  y = x @ p['kernel']
  return y + p['bias'] if 'bias' in p else y


def np_minlstm(p, h, x):
  H = h.shape[-1]
  k = dense(p['input_proj'], x)
  f, i, h_tilde = sigmoid(k[:, :H]), sigmoid(k[:, H : 2 * H]), k[:, 2 * H :]
  h = f / (f + i) * h + i / (f + i) * h_tilde
  return h, h


def block_diagonal(p, x):
  heads, size, _ = p['w'].shape
  xs = x.reshape(x.shape[0], heads, size)
  return np.stack([xs[:, k] @ p['w'][k] + p['b'][k] for k in range(heads)], axis=1).reshape(x.shape[0], -1)


def np_rglru(p, h, x, c=8.0):
  x = dense(p['input_proj'], x)
  r = sigmoid(block_diagonal(p['a_gate'], x))
  i = sigmoid(block_diagonal(p['input_gate'], x))
  # The paper's a = sigmoid(Lambda) with Lambda = -a_param: log a = -softplus(a_param).
  log_a = -c * r * softplus(p['a_param'])
  a = np.exp(log_a)
  h = a * h + np.sqrt(1.0 - a**2) * (i * x)
  return h, h


def rms_norm(p, x, eps=1e-5):
  return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * p['scale']


def s6_step(p, h, u, inner_norms=False):
  """h [batch, D, N], u [batch, D] -> (h, y [batch, D]); inner_norms: Jamba's RMSNorms of the Delta-rank
  input, B and C (mambapy's inner_layernorms)."""
  N = p['A_log'].shape[1]
  R = p['dt_proj']['kernel'].shape[0]
  dbc = u @ p['x_proj']['kernel']
  delta_r, B, C = dbc[:, :R], dbc[:, R : R + N], dbc[:, R + N :]  # [batch, R], [batch, N], [batch, N]
  if inner_norms:
    delta_r, B, C = rms_norm(p['dt_norm'], delta_r), rms_norm(p['B_norm'], B), rms_norm(p['C_norm'], C)
  delta = softplus(dense(p['dt_proj'], delta_r))  # [batch, D]
  A = -np.exp(p['A_log'])  # [D, N]
  A_bar = np.exp(delta[:, :, None] * A[None])
  B_bar = delta[:, :, None] * B[:, None, :]
  h = A_bar * h + B_bar * u[:, :, None]
  y = np.einsum('bdn,bn->bd', h, C) + p['D'] * u
  return h, y


def np_s6(p, h, x):
  return s6_step(p, h, dense(p['input_proj'], x), inner_norms=True)


def np_mamba(p, carry, x):
  conv, h = carry  # [batch, d_conv - 1, D] oldest first, [batch, D, N]
  xz = dense(p['input_proj'], x)
  D = xz.shape[-1] // 2
  xb, z = xz[:, :D], xz[:, D:]
  window = np.concatenate([conv, xb[:, None]], axis=1)
  u = silu(np.einsum('bkd,kd->bd', window, p['conv_kernel']) + p['conv_bias'])
  h, s = s6_step(p, h, u)
  y = (s * silu(z)) @ p['output_proj']['kernel']
  return (window[:, 1:], h), y


REFERENCES = {'minlstm': np_minlstm, 'rglru': np_rglru, 's6': np_s6, 'mamba': np_mamba}
