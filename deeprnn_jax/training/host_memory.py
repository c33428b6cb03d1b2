"""Host memory for training on CPU: keep freed blocks for reuse instead of handing them back to the OS.

XLA:CPU allocates each execution's buffers and temporaries with ``malloc`` and frees them when the
step returns. glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB, rising to at most 32 MiB
as blocks are freed) with a fresh ``mmap`` and returns it with ``munmap``, and gives the top of the heap
back once more than ``M_TRIM_THRESHOLD`` is free there. Either way the next step's buffers are new
pages, and the kernel zero-fills every page on its first touch: the word LM's step
(``configs/reproduce/ptb_lm.py``) spent about a third of its time so (11-13 vs 16-17 steps/s on 2 AMD
EPYC cores, BENCHMARKS.md). With both thresholds at their maximum, freed blocks stay in the heap and
the next step reuses pages that are already mapped.

The cost: the process keeps the most it has used until it exits, which a training process reaches at
every step anyway. ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or
``GLIBC_TUNABLES`` in the environment mean someone tuned the allocator on purpose: then nothing is
changed. Only glibc has ``mallopt``'s knobs; other C libraries (musl, macOS) are left alone.

The trainer calls ``keep_freed_memory`` before it builds a grid point's programs; a loop of your own
around ``steps.train_step`` can call it first.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_LARGEST = 2**31 - 1  # mallopt takes an int
_SETTINGS = ((M_MMAP_THRESHOLD, _LARGEST), (M_TRIM_THRESHOLD, _LARGEST), (M_TOP_PAD, 512 << 20))
# Where glibc reads the same knobs from the environment.
_ENVIRONMENT = ('GLIBC_TUNABLES', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_')


def keep_freed_memory() -> bool:
  """Tells glibc's ``malloc`` to keep freed memory for reuse (module docstring). Returns whether it
  did: False off Linux/glibc or where the environment already tunes the allocator. Idempotent."""
  if not sys.platform.startswith('linux') or _tuned_by_environment():
    return False
  libc = ctypes.CDLL(None)  # the C library this process already runs on
  if not hasattr(libc, 'gnu_get_libc_version'):  # musl has a mallopt that does nothing
    return False
  return all(libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)) == 1 for option, value in _SETTINGS)


def _tuned_by_environment() -> bool:
  return any(k in os.environ for k in _ENVIRONMENT)
