"""NumPy references of the matrix-state cells and of causal attention, written from the papers' equations
(float64, one head at a time, explicit loops), not from the cells' code.

Each ``fn(params, carry, x)`` takes the float64 parameter tree of ``cell.init(...)['params']``, the carry
(same structure as the cell's) and one step's input ``[batch, in]`` and returns ``(new carry, y)``. The
papers write the DeltaNet memory as :math:`d_v \\times d_k` (``S k`` reads it); the cells store its
transpose, so these references transpose in and out, which also checks the layout.
"""

import numpy as np


def _split_heads(x, heads):
  return x.reshape(x.shape[0], heads, -1)


def _rmsnorm(x, scale, eps):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _silu(x):
  return x / (1.0 + np.exp(-x))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
  return np.log1p(np.exp(x))


def np_linear_attention(p, carry, x, eps=1e-6):
  """Katharopoulos et al. 2020, eqs. (16)-(20): S_i = S_{i-1} + phi(K_i) V_i^T, Z_i = Z_{i-1} + phi(K_i),
  V'_i = phi(Q_i)^T S_i / (phi(Q_i)^T Z_i), phi = elu + 1."""
  s, z = carry
  batch, heads = s.shape[:2]
  H = heads * s.shape[-1]
  proj = x @ p['input_proj']['kernel']
  phi = lambda a: np.where(a > 0, a + 1.0, np.exp(a))  # elu(a) + 1
  q, k, v = (_split_heads(proj[:, i * H : (i + 1) * H], heads) for i in range(3))
  s, z = s.copy(), z.copy()
  out = np.zeros((batch, heads, s.shape[-1]))
  for b in range(batch):
    for h in range(heads):
      s[b, h] = s[b, h] + np.outer(phi(k[b, h]), v[b, h])
      z[b, h] = z[b, h] + phi(k[b, h])
      out[b, h] = phi(q[b, h]) @ s[b, h] / (phi(q[b, h]) @ z[b, h] + eps)
  return (s, z), out.reshape(batch, H) @ p['output_proj']['kernel']


def _delta(p, s, x, gated, norm_eps=1e-5):
  """Yang et al. 2024 (DeltaNet): S_t = S_{t-1} - beta_t (S_{t-1} k_t - v_t) k_t^T, o_t = S_t q_t;
  Gated DeltaNet: S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T. S is d_v x d_k here."""
  batch, heads, dk, dv = s.shape
  H = heads * dv
  proj = x @ p['input_proj']['kernel']
  q, k, v = (_split_heads(proj[:, i * H : (i + 1) * H], heads) for i in range(3))
  beta = _sigmoid(proj[:, 3 * H : 3 * H + heads])
  if gated:
    a = proj[:, 3 * H + heads : 3 * H + 2 * heads]
    alpha = np.exp(-np.exp(p['A_log']) * _softplus(a + p['dt_bias']))
    gate = _split_heads(proj[:, 3 * H + 2 * heads :], heads)
  new_s = np.zeros_like(s)
  out = np.zeros((batch, heads, dv))
  for b in range(batch):
    for h in range(heads):
      qn = q[b, h] / np.sqrt(q[b, h] @ q[b, h] + 1e-6) / np.sqrt(dk)
      kn = k[b, h] / np.sqrt(k[b, h] @ k[b, h] + 1e-6)
      S = s[b, h].T  # the paper's d_v x d_k memory
      if gated:
        S = alpha[b, h] * S @ (np.eye(dk) - beta[b, h] * np.outer(kn, kn)) + beta[b, h] * np.outer(v[b, h], kn)
      else:
        S = S - beta[b, h] * np.outer(S @ kn - v[b, h], kn)
      new_s[b, h] = S.T
      o = _rmsnorm(S @ qn, p['output_norm']['scale'], norm_eps)
      out[b, h] = o * _silu(gate[b, h]) if gated else o
  return new_s, out.reshape(batch, H) @ p['output_proj']['kernel']


def np_deltanet(p, s, x):
  return _delta(p, s, x, gated=False)


def np_gated_deltanet(p, s, x):
  return _delta(p, s, x, gated=True)


def rope_matrix(m, d, base=10000.0):
  """Su et al. 2021, eq. (15): the block-diagonal rotation R^d_{Theta,m}, theta_i = base^{-2(i-1)/d}."""
  R = np.zeros((d, d))
  for i in range(d // 2):
    angle = m * base ** (-2.0 * i / d)
    R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
  return R


def np_attention(p, carry, x):
  """Causal softmax attention (Vaswani et al. 2017) with RoPE on q and k (Su et al. 2021): the step at
  absolute position m appends R_m k, v to the cache and attends over positions 0..m."""
  keys, values = carry['keys'].copy(), carry['values'].copy()
  position = np.asarray(carry['position']).astype(np.int64)
  batch, _, heads, d = keys.shape
  H = heads * d
  proj = x @ p['input_proj']['kernel']
  q, k, v = (_split_heads(proj[:, i * H : (i + 1) * H], heads) for i in range(3))
  out = np.zeros((batch, heads, d))
  for b in range(batch):
    m = position[b]
    R = rope_matrix(m, d)
    for h in range(heads):
      keys[b, m, h] = R @ k[b, h]
      values[b, m, h] = v[b, h]
      scores = np.array([(R @ q[b, h]) @ keys[b, n, h] for n in range(m + 1)]) / np.sqrt(d)
      weights = np.exp(scores - scores.max())
      weights /= weights.sum()
      out[b, h] = weights @ values[b, : m + 1, h]
  new_carry = {'keys': keys, 'values': values, 'position': position + 1}
  return new_carry, out.reshape(batch, H) @ p['output_proj']['kernel']


REFERENCES = {
  'linear_attention': np_linear_attention,
  'deltanet': np_deltanet,
  'gated_deltanet': np_gated_deltanet,
  'attention': np_attention,
}
