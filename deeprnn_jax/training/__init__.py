"""Training: from a config to trained, logged and checkpointed runs.

===============  ==============================================================================
module           responsibility
===============  ==============================================================================
``config``       the one config schema: defaults, validation, overrides, sweep axes
``identity``     when two configs describe the same runs (resume, extend, or another sweep)
``build``        a task, a model and an optimizer from a config (``model_from_config``, ...)
``steps``        the public step functions: ``init_state``, ``train_step``, ``eval_step``
``train``        the loop of one grid point: ``train(config, workdir)``, ``train_seeds``
``seed_run``     everything one seed keeps on the host: its folder, records, checkpoints, cadence
``parallel``     seed programs (``vmap`` / ``loop`` / ``single``) and the device mesh
``host_memory``  glibc's malloc told to keep freed blocks (XLA:CPU's per-step buffers) for reuse
``checkpoint``   orbax checkpoints (the only module that imports orbax)
``runlog``       the run folder and wandb (the only module that imports wandb)
``load``         ``load_run``: a trained run back, to evaluate or infer
``progress``     the progress bar and the plain log line
===============  ==============================================================================

Modules import on use (``from deeprnn_jax.training import train``): importing this package loads none.
"""
