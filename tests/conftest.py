"""Shared test setup: strict rank promotion, float32 everywhere, small CPU-only runs."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('WANDB_MODE', 'disabled')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')
