"""Speed comparisons of deeprnn_jax against PyTorch and plain Flax (``make bench``)."""
