"""``host_memory.keep_freed_memory``: after it, glibc serves a large block from the heap (whose freed
pages the next step reuses) instead of a fresh ``mmap``; a tuned environment is left alone."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from deeprnn_jax.training import host_memory

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

# Where a 64 MiB malloc lands, before and after: inside the [heap] mapping (brk) or not (its own mmap).
SCRIPT = textwrap.dedent("""
    import ctypes, ctypes.util, json
    from deeprnn_jax.training import host_memory

    libc = ctypes.CDLL(ctypes.util.find_library('c'))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def in_heap():
      p = libc.malloc(64 << 20)
      heap = [l.split()[0] for l in open('/proc/self/maps') if l.rstrip().endswith('[heap]')]
      inside = any(int(lo, 16) <= p < int(hi, 16) for lo, hi in (r.split('-') for r in heap))
      libc.free(p)
      return inside

    before = in_heap()
    kept = host_memory.keep_freed_memory()
    print(json.dumps([before, kept, in_heap(), host_memory.keep_freed_memory()]))
""")


def _run(**env) -> list:
  environ = {k: v for k, v in os.environ.items() if k not in host_memory._ENVIRONMENT}
  environ.update(PYTHONPATH=ROOT, **env)
  done = subprocess.run([sys.executable, '-c', SCRIPT], env=environ, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


needs_glibc = pytest.mark.skipif(
  not sys.platform.startswith('linux') or os.confstr('CS_GNU_LIBC_VERSION') is None, reason='glibc only'
)


@needs_glibc
def test_a_large_block_comes_from_the_heap_after_the_call():
  before, kept, after, again = _run()
  assert not before, 'glibc served 64 MiB from the heap by default: the check below would tell nothing'
  assert kept and after and again


@needs_glibc
def test_an_allocator_tuned_in_the_environment_is_left_alone():
  before, kept, after, _ = _run(MALLOC_TRIM_THRESHOLD_='1000000')
  assert (before, kept, after) == (False, False, False)


def test_mallopt_is_called_with_the_intended_settings(monkeypatch):
  """The three settings themselves, as glibc's malloc.h numbers them (M_TRIM_THRESHOLD -1, M_TOP_PAD -2,
  M_MMAP_THRESHOLD -3): both thresholds at their maximum (no block is ever served by a fresh mmap, the
  heap is never trimmed) and a 512 MiB top pad. With two values swapped the heap would reserve 2 GiB
  at a time and blocks over 512 MiB would get fresh pages again, which the 64 MiB block above cannot
  see. A stand-in C library records the calls, so this holds on any CPU and any libc."""
  calls = []

  class FakeLibc:
    def gnu_get_libc_version(self):
      return b'2.99'

    def mallopt(self, option, value):
      calls.append((option.value, value.value))
      return 1

  for name in host_memory._ENVIRONMENT:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(sys, 'platform', 'linux')
  monkeypatch.setattr(host_memory.ctypes, 'CDLL', lambda name: FakeLibc())
  assert host_memory.keep_freed_memory()
  assert sorted(calls) == [(-3, 2**31 - 1), (-2, 512 << 20), (-1, 2**31 - 1)]
