"""Property-based tests (hypothesis): random data against two contracts the example tests pin one case of.

1. Packing. For a few cell families and execution paths, a random batch of packed rows (random lengths,
   random segments, resets at each segment's start, junk inputs and stray resets on the padding) equals
   each of its sequences run alone, in its own right-padded row without resets; padding outputs are
   zero, and each packed row's final carries are its last sequence's (an empty row's, its initial ones).
2. Config validation. A random override (a schema key or a near miss of one, with a random value; or a
   random ``key=value`` string) either gives a valid config (which validates again to itself) or raises a
   ``ConfigError`` whose message is one line, starting ``config key '<key>':`` where the error has a key:
   never another exception. Through the command line, a few bad overrides exit with status 2, one line on
   stderr and nothing written. The failures they found (an int too large for a float, a line break in a
   mapping key, a plain value for a mapping key) are fixed and pinned by tests of their own.

Shapes are fixed per test and only data is drawn, so one jitted program serves every example
(``functools.cache``); examples are few and derandomized, so CI runs the same ones every time.
"""

import functools
import os
import subprocess
import sys

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax.training import config as config_lib

SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

# -- 1. packed rows against each sequence alone ------------------------------------------------------

TIME, IN, HIDDEN = 8, 3, 4
PACKED, ALONE = 2, 6  # rows: PACKED packed rows, then ALONE rows of one sequence each (unused: length 0)
MAX_SEGMENTS = ALONE - 1  # so at least one alone row is empty: the reference for an empty packed row

# (cell, execution, DeepRNN options): a per-step scan, an associative scan, two chunkwise forms (the delta
# rule and mLSTM, chunks of 4, so resets fall inside chunks and at their borders), attention (a
# segment-masked cache), the modern block's RG-LRU, whose carry holds the short convolution's buffer, and
# a bidirectional layer (each segment reversed within its row).
CASES = {
  'lstm-time': ('lstm', 'time', {}),
  'mingru-parallel': ('mingru', 'parallel', {}),
  'gated_deltanet-parallel': ('gated_deltanet', 'parallel', dict(cell_kwargs={'chunk_size': 4})),
  'mlstm-parallel': ('mlstm', 'parallel', dict(cell_kwargs={'chunk_size': 4})),
  'attention-parallel': ('attention', 'parallel', dict(cell_kwargs={'max_length': TIME}, initial_carry='zeros')),
  'rglru-modern-layer': ('rglru', 'layer', dict(block='modern')),
  'gru-bidirectional-layer': ('gru', 'layer', dict(bidirectional=True)),
}
# The chunkwise forms round differently at different chunk offsets (tests/test_stack.py, test_mixer.py).
TOLERANCE = {'gated_deltanet': 1e-4, 'mlstm': 1e-4}


def model(case):
  cell, execution, options = CASES[case]
  return dr.DeepRNN(
    cell=cell, features=HIDDEN, num_layers=2, execution=execution, **({'initial_carry': 'learned'} | options)
  )


@functools.cache
def program(case):
  """The case's parameters (every leaf random, the learned initial carries included, so a reset must
  restart from them) and one jitted ``(x, lengths, resets) -> (final carries, outputs, initial carries)``."""
  net = model(case)
  params = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 2, IN)))  # one program, not one per operation
  rng = np.random.default_rng(1)  # the noise on the host: jax.random over every leaf compiles for seconds
  params = jax.tree.map(lambda p: np.asarray(p) + 0.3 * rng.standard_normal(p.shape).astype(p.dtype), params)
  rows = PACKED + ALONE
  initial = lambda: net.apply(params, rows, method='initialize_carries')
  return jax.jit(lambda x, lengths, resets: (*net.apply(params, x, lengths, resets=resets), initial()))


@st.composite
def packings(draw):
  """Per packed row, its segments' lengths (they sum to the row's length, at most TIME), at most
  MAX_SEGMENTS in all; whether a row's first segment has its (optional) reset at step 0; stray resets
  on padding steps (ignored by contract); the input seed and scale."""
  rows, budget = [], MAX_SEGMENTS
  for _ in range(PACKED):
    length = draw(st.integers(0, TIME))
    cuts = draw(st.sets(st.integers(1, length - 1), max_size=budget - 1)) if length > 1 and budget > 0 else set()
    bounds = [0, *sorted(cuts), length] if length and budget > 0 else [0]
    segments = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    budget -= len(segments)
    rows.append(segments)
  first_reset = draw(st.lists(st.booleans(), min_size=PACKED, max_size=PACKED))
  stray = draw(st.lists(st.integers(0, TIME - 1), max_size=4))
  seed = draw(st.integers(0, 2**31 - 1))
  scale = draw(st.sampled_from([0.3, 1.0, 2.0]))
  return rows, first_reset, stray, seed, scale


def packed_batch(rows, first_reset, stray, seed, scale):
  """``x``, lengths and resets of PACKED + ALONE rows with junk on every padding step, and ``where``:
  ``(packed row, start, alone row, length)`` per sequence."""
  x = scale * np.random.default_rng(seed).standard_normal((PACKED + ALONE, TIME, IN)).astype(np.float32)
  lengths = np.zeros(PACKED + ALONE, np.int32)
  resets = np.zeros((PACKED + ALONE, TIME), bool)
  where, alone = [], PACKED
  for row, segments in enumerate(rows):
    start = 0
    for i, n in enumerate(segments):
      resets[row, start] = i > 0 or first_reset[row]
      x[alone, :n] = x[row, start : start + n]
      lengths[alone] = n
      where.append((row, start, alone, n))
      start, alone = start + n, alone + 1
    lengths[row] = start
    for t in stray:  # resets on padding steps change nothing
      resets[row, t] |= t >= start
  return x, lengths, resets, where


@pytest.mark.parametrize('case', sorted(CASES))
@settings(max_examples=25, **SETTINGS)  # about 10 ms each: the compile is the cost
@given(drawn=packings())
def test_random_packing_equals_each_sequence_alone(case, drawn):
  cell = CASES[case][0]
  x, lengths, resets, where = packed_batch(*drawn)
  finals, y, initial = jax.device_get(program(case)(x, lengths, resets))
  tol = TOLERANCE.get(cell, 2e-5)
  msg = f'{case}: segments {drawn[0]}, reset at 0 {drawn[1]}'
  for row, start, alone, n in where:
    np.testing.assert_allclose(y[row, start : start + n], y[alone, :n], rtol=tol, atol=tol, err_msg=msg)
  for row, n in enumerate(lengths):
    np.testing.assert_array_equal(y[row, n:], 0.0, err_msg=f'{msg}: padding of row {row}')
  # A packed row ends with its last sequence's carries; an empty row (packed or alone) keeps its initial ones.
  empty = int(np.flatnonzero(lengths[PACKED:] == 0)[0]) + PACKED
  for row in range(PACKED):
    last = max((w[2] for w in where if w[0] == row), default=empty)
    for leaf in jax.tree.leaves(finals):
      np.testing.assert_allclose(leaf[row], leaf[last], rtol=tol, atol=tol, err_msg=f'{msg}: carry of row {row}')
  assert jax.tree.structure(finals) == jax.tree.structure(initial)
  for row in np.flatnonzero(lengths == 0):
    for leaf, start in zip(jax.tree.leaves(finals), jax.tree.leaves(initial)):
      np.testing.assert_array_equal(leaf[row], start[row], err_msg=f'{msg}: carry of empty row {row}')


# -- 2. random overrides against the config validator ------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, 'configs', 'quickstart.py')
KEYS = sorted(config_lib.SCHEMA)
GROUPS = sorted({k.split('.')[0] for k in KEYS})
MAPPINGS = sorted(k for k, (default, _) in config_lib.SCHEMA.items() if default == {})  # task.options, ...
# Values that reach past the type checks: names of cells, tasks and options, choices of the stack,
# storage URLs and metric names, and numbers at the edges of the rules.
NAMES = sorted(dr.CELLS) + ['adding', 'parentheses', 'modern', 'classic', 'parallel', 'layer', 'time', 'learned']
NAMES += ['skip', 'residual', 'authors', 'cosine', 'adamw', 'sgd', 'val/accuracy', 'test/loss', 'sqlite:///t.db']
NAMES += ['postgresql://u:pw@h/db', 'chunk_size', 'num_heads', 'max_length', 'seq_len', 'uniform_0.1', '']
EDGES = [0, 1, -1, 2, 2**31, 2**63, 0.0, -0.0, 0.5, 1.0, 1e-320, 1e308, float('inf'), float('-inf'), float('nan')]
TEXT = st.text(max_size=10)  # line breaks included: a key holding one once gave a two-line error (pinned below)

scalars = st.one_of(
  st.none(),
  st.booleans(),
  st.integers() | st.sampled_from([10**400, -(10**400)]),  # too large for a float: once a traceback
  st.floats(),
  st.text(max_size=10),
  st.sampled_from(NAMES + KEYS),
  st.sampled_from(EDGES),
)
values = st.recursive(
  scalars,
  lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.one_of(st.sampled_from(NAMES + KEYS), TEXT), inner, max_size=3),
  ),
  max_leaves=6,
)


@st.composite
def near_misses(draw):
  """A schema key with one slip: a character dropped, doubled, swapped or changed, a case change, another
  group, a part too many or too few."""
  key = draw(st.sampled_from(KEYS))
  i = draw(st.integers(0, len(key) - 1))
  group, name = key.split('.', 1)
  return draw(
    st.sampled_from(
      [
        key[:i] + key[i + 1 :],
        key[:i] + key[i] + key[i:],
        key[:i] + key[i + 1 : i + 2] + key[i : i + 1] + key[i + 2 :],
        key[:i] + draw(st.characters(codec='ascii')) + key[i + 1 :],
        key.upper(),
        f'{draw(st.sampled_from(GROUPS))}.{name}',
        f'{key}.{draw(st.sampled_from(NAMES))}',
        name,
        key.replace('.', '_'),
        '',
      ]
    )
  )


keys = st.one_of(
  st.sampled_from(KEYS),
  near_misses(),
  # Inside a mapping: a task option or cell keyword, a sweep axis or a tuned key (new ones allowed).
  st.builds('{}.{}'.format, st.sampled_from(MAPPINGS), st.one_of(st.sampled_from(NAMES + KEYS), TEXT)),
)


@functools.cache
def base_config(name):
  return config_lib.load(QUICKSTART) if name == 'quickstart' else config_lib.default_config()


def assert_one_line_config_error(error, what):
  message = str(error)
  assert len(message.splitlines()) == 1, f'{what}: a message of {len(message.splitlines())} lines: {message!r}'
  if error.key:
    assert message.startswith(f'config key {error.key!r}: '), f'{what}: {message!r}'


def validated(base, overrides):
  """``validate(apply_overrides(...))``, or the one-line ConfigError (any other exception fails the test);
  a valid config validates again to itself."""
  try:
    config = config_lib.validate(config_lib.apply_overrides(base_config(base), overrides))
  except config_lib.ConfigError as e:
    assert_one_line_config_error(e, overrides)
    return None
  assert config_lib.to_dict(config_lib.validate(config)) == config_lib.to_dict(config), overrides
  return config


@settings(max_examples=300, **SETTINGS)
@given(base=st.sampled_from(['default', 'quickstart']), key=keys, value=values)
def test_a_random_override_validates_or_fails_in_one_line(base, key, value):
  validated(base, [(key, value)])


# Override strings: random text, or key=value with a value written as Python (repr) or as free text.
override_texts = st.one_of(
  st.text(max_size=30),
  st.builds(
    '{}{}{}{}'.format,
    st.sampled_from(['', 'config.', ' ']),
    keys,
    st.sampled_from(['=', ' = ', '==']),
    st.one_of(values.map(repr), st.text(max_size=20)),
  ),
)


@settings(max_examples=300, **SETTINGS)
@given(text=override_texts)
def test_a_random_override_string_parses_and_validates_or_fails_in_one_line(text):
  try:
    key, _ = config_lib.parse_override(text)
  except config_lib.ConfigError as e:
    assert '=' not in text
    assert_one_line_config_error(e, text)
    return
  assert key == text.split('=', 1)[0].strip().removeprefix('config.')
  validated('default', [text])


def test_an_int_too_large_for_a_float_is_a_config_error():
  # Found by the property above: --config.optim.learning_rate=1000...0 (401 digits) ended in a traceback.
  with pytest.raises(config_lib.ConfigError, match="config key 'optim.learning_rate'"):
    config_lib.validate(config_lib.apply_overrides(config_lib.default_config(), ['optim.learning_rate=1' + '0' * 400]))


@pytest.mark.parametrize('key', ['sweep.axes', 'task.options', 'model.cell_kwargs', 'optim.kwargs'])
def test_a_mapping_key_given_a_plain_value_is_a_config_error(key):
  # Found by the property above: --config.sweep.axes=True ended in an AttributeError traceback.
  with pytest.raises(config_lib.ConfigError, match=f"config key '{key}': must be a mapping"):
    config_lib.apply_overrides(config_lib.default_config(), [(key, True)])


def test_a_line_break_in_a_dotted_mapping_key_is_a_one_line_error():
  # Found by the property above: --config.model.cell_kwargs='{"a.\\nb": 1}' printed a message of two lines.
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.apply_overrides(config_lib.default_config(), ['model.cell_kwargs={"a.\\nb": 1}'])
  assert len(str(e.value).splitlines()) == 1, str(e.value)


# -- through the command line: a few bad overrides --------------------------------------------------


def invalid(override):
  try:
    config_lib.validate(config_lib.apply_overrides(base_config('quickstart'), [override]))
  except config_lib.ConfigError:
    return True
  return False


@settings(max_examples=3, **SETTINGS)
@given(override=st.builds('{}={!r}'.format, keys, values).filter(lambda o: '\x00' not in o and invalid(o)))
def test_a_bad_override_on_the_command_line_exits_2_in_one_line_writing_nothing(tmp_path_factory, override):
  """A subprocess per example (about 3 s each), so only three."""
  workdir = tmp_path_factory.mktemp('cli') / 'run'
  command = [sys.executable, '-m', 'experiments.run', '--config', QUICKSTART, '--workdir', str(workdir)]
  command += ['--dry-run', f'--config.{override}']
  done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
  assert done.returncode == 2, done.stderr
  assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith('error: '), done.stderr
  assert not workdir.exists()
