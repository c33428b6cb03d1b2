"""Orchestration on top of deeprnn_jax: configs -> sweeps of runs -> comparison reports."""
