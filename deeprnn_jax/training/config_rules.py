"""The rules a config key is checked by, and ``ConfigError``: the building blocks of ``config.SCHEMA``.

Each rule takes ``(key, value)`` and returns the normalized value or raises ``ConfigError`` with a one-line
message naming the key. They live apart from the schema so that a section with rules of its own (the
``tune`` section: ``tune_config.py``) can use them without importing the schema that lists it.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable, Mapping

import ml_collections


class ConfigError(ValueError):
  """A config mistake, with a one-line message that names the key and says how to fix it."""

  def __init__(self, key: str, message: str):
    self.key = key
    super().__init__(f'config key {key!r}: {message}' if key else message)


# ----------------------------------------------------------------------------------------------
# Rules: each takes (key, value) and returns the normalized value or raises ConfigError.


def _typename(v):
  return type(v).__name__


def _int(lo: int | None = None, optional: bool = False):
  def rule(key, v):
    if v is None and optional:
      return None
    if isinstance(v, bool) or not isinstance(v, int):
      raise ConfigError(key, f'must be an int{" or None" if optional else ""}, got {_typename(v)} {v!r}')
    if lo is not None and v < lo:
      raise ConfigError(key, f'must be >= {lo}, got {v}')
    return v

  return rule


def _float(lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
  def rule(key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      raise ConfigError(key, f'must be a number, got {_typename(v)} {v!r}')
    try:
      v = float(v)
    except OverflowError:  # an int too large for a float
      raise ConfigError(key, f'must be a number a float can hold, got an int of {len(str(abs(v)))} digits') from None
    if v != v:
      raise ConfigError(key, 'must be a number, got nan')
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
      lb = '(' if lo_open else '['
      rb = ')' if hi_open else ']'
      raise ConfigError(
        key, f'must be in {lb}{lo if lo is not None else "-inf"}, {hi if hi is not None else "inf"}{rb}, got {v}'
      )
    return v

  return rule


def _bool(key, v):
  if not isinstance(v, bool):
    raise ConfigError(key, f'must be True or False, got {_typename(v)} {v!r}')
  return v


def _str(optional: bool = False):
  def rule(key, v):
    if v is None and optional:
      return None
    if not isinstance(v, str) or not v:
      raise ConfigError(key, f'must be a non-empty string{" or None" if optional else ""}, got {v!r}')
    return v

  return rule


def _choice(choices: Iterable[str] | Callable[[], Iterable[str]], optional: bool = False):
  def rule(key, v):
    valid = sorted(choices() if callable(choices) else choices)
    if v is None and optional:
      return None
    if not isinstance(v, str) or v not in valid:
      close = difflib.get_close_matches(v, valid, n=3) if isinstance(v, str) else []
      hint = f'did you mean {" or ".join(map(repr, close))}? ' if close else ''
      raise ConfigError(key, f'unknown value {v!r}; {hint}valid: {", ".join(valid)}')
    return v

  return rule


def _tuple_of(item_rule):
  def rule(key, v):
    if not isinstance(v, (list, tuple)):
      raise ConfigError(key, f'must be a list or tuple, got {_typename(v)} {v!r}')
    return tuple(item_rule(key, x) for x in v)

  return rule


def _mapping(key, v):
  if not isinstance(v, (Mapping, ml_collections.ConfigDict)):
    raise ConfigError(key, f'must be a mapping, got {_typename(v)} {v!r}')
  return v
