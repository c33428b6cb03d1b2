"""NumPy references of xLSTM's sLSTM and mLSTM steps (Beck et al. 2024, section 2 and appendix A,
the stabilized forms) and of the mLSTM layer around the step (xlstm/blocks/mlstm/layer.py), written
from the equations in float64: loops over heads and rows, block-diagonal matrices built in full.
Merged into tests/test_cells.py's REFERENCES."""

import numpy as np


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def block_diagonal_recurrence(r):
  """``[heads, d, 4, d]`` head blocks -> the full ``[H, 4H]`` matrix (gate-major columns)."""
  heads, d, gates, _ = r.shape
  hidden = heads * d
  full = np.zeros((hidden, gates * hidden))
  for n in range(heads):
    for g in range(gates):
      full[n * d : (n + 1) * d, g * hidden + n * d : g * hidden + (n + 1) * d] = r[n, :, g, :]
  return full


def np_slstm(p, carry, x, forget_gate='sigmoid'):
  c, n, m, h = carry
  hidden = h.shape[-1]
  raw = x @ p['input_proj']['kernel'] + p['input_proj']['bias'] + h @ block_diagonal_recurrence(p['recurrent_kernel'])
  i_raw, f_raw, z_raw, o_raw = (raw[:, g * hidden : (g + 1) * hidden] for g in range(4))
  log_f = log_sigmoid(f_raw) if forget_gate == 'sigmoid' else f_raw
  # Stabilizer (appendix A.2); an empty normalizer (the zero start) takes m = i~ and f <= 1, as xlstm.
  m_new = np.where(n == 0.0, i_raw, np.maximum(log_f + m, i_raw))
  i = np.exp(i_raw - m_new)
  f = np.minimum(np.exp(log_f + m - m_new), 1.0)
  c = f * c + i * np.tanh(z_raw)
  n = f * n + i
  h = sigmoid(o_raw) * c / n
  return (c, n, m_new, h), h


def np_mlstm(p, carry, x, forget_gate='sigmoid', eps=1e-6):
  C, n, m = carry
  batch, heads, d, _ = C.shape
  hidden = heads * d
  proj = x @ p['input_proj']['kernel'] + p['input_proj']['bias']
  gates = x @ p['gate_proj']['kernel'] + p['gate_proj']['bias']
  C, n, m = C.copy(), n.copy(), m.copy()
  y = np.zeros((batch, hidden))
  for b in range(batch):
    for a in range(heads):
      cols = slice(a * d, (a + 1) * d)
      q = proj[b, 0 * hidden :][cols]
      k = proj[b, 1 * hidden :][cols] / np.sqrt(d)
      v = proj[b, 2 * hidden :][cols]
      o = sigmoid(proj[b, 3 * hidden :][cols])
      i_raw, f_raw = gates[b, a], gates[b, heads + a]
      log_f = log_sigmoid(f_raw) if forget_gate == 'sigmoid' else f_raw
      m_new = max(log_f + m[b, a], i_raw)
      i = np.exp(i_raw - m_new)
      f = np.exp(log_f + m[b, a] - m_new)
      C[b, a] = f * C[b, a] + i * np.outer(k, v)
      n[b, a] = f * n[b, a] + i * k
      h_tilde = C[b, a].T @ q / (max(abs(n[b, a] @ q), np.exp(-m_new)) + eps)
      m[b, a] = m_new
      y[b, cols] = o * h_tilde
  return (C, n, m), y


def block_diagonal(blocks):
  """``[n, out, in]`` blocks -> the full ``[n * in, n * out]`` matrix that right-multiplies a row."""
  n, out, inp = blocks.shape
  full = np.zeros((n * inp, n * out))
  for j in range(n):
    full[j * inp : (j + 1) * inp, j * out : (j + 1) * out] = blocks[j].T
  return full


def silu(x):
  return x * sigmoid(x)


def np_mlstm_layer(p, carry, x, eps=1e-6):
  """Up-projection, causal conv + SiLU, block-diagonal q/k/v, gates from [q; k; v], the stabilized
  mLSTM step, per-head group norm with scale 1 + gamma, learnable skip, SiLU(z) gate, down-projection."""
  buffer, (C, n, m) = carry
  batch, heads, d, _ = C.shape
  inner = heads * d
  up = x @ p['proj_up']['kernel']
  x_m, z = up[:, :inner], up[:, inner:]
  window = np.concatenate([buffer, x_m[:, None, :]], axis=1)  # [batch, k, inner], oldest first
  u = silu(np.sum(window * p['conv_kernel'][None], axis=1) + p['conv_bias'])
  q, k, v = (a @ block_diagonal(p[name]) for a, name in ((u, 'q_proj'), (u, 'k_proj'), (x_m, 'v_proj')))
  gates = np.concatenate([q, k, v], axis=-1) @ p['gate_proj']['kernel'] + p['gate_proj']['bias']
  C, n, m = C.copy(), n.copy(), m.copy()
  h = np.zeros((batch, inner))
  for b in range(batch):
    for a in range(heads):
      cols = slice(a * d, (a + 1) * d)
      i_raw, log_f = gates[b, a], log_sigmoid(gates[b, heads + a])
      m_new = max(log_f + m[b, a], i_raw)
      i, f = np.exp(i_raw - m_new), np.exp(log_f + m[b, a] - m_new)
      kk = k[b, cols] / np.sqrt(d)
      C[b, a] = f * C[b, a] + i * np.outer(kk, v[b, cols])
      n[b, a] = f * n[b, a] + i * kk
      h_tilde = C[b, a].T @ q[b, cols] / (max(abs(n[b, a] @ q[b, cols]), np.exp(-m_new)) + eps)
      m[b, a] = m_new
      centered = h_tilde - h_tilde.mean()
      h[b, cols] = centered / np.sqrt(np.mean(centered**2) + 1e-5)
  out = (h * (1 + p['norm_scale']) + p['skip'] * u) * silu(z)
  return (window[:, 1:], (C, n, m)), out @ p['proj_down']['kernel']


REFERENCES = {'slstm': np_slstm, 'mlstm': np_mlstm, 'mlstm_layer': np_mlstm_layer}
