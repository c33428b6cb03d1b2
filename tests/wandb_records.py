"""Reads what wandb wrote offline: the records of a ``run-<id>.wandb`` file, parsed with wandb's own
protobuf messages (``wandb_internal_pb2.Record``).

The file is a LevelDB-style log (wandb's transaction log): a 7-byte header (``:W&B``, a 2-byte magic,
a version byte), then 32 KiB blocks of chunks, each ``crc32c (4) | length (2, little-endian) | type
(1: full, 2: first, 3: middle, 4: last)`` and its bytes; a block's last < 7 bytes are padding.
"""

from __future__ import annotations

import glob
import json
import os
import struct

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7


def records(path: str) -> list:
  data = open(path, 'rb').read()
  assert data[:4] == b':W&B', f'{path} is not a wandb transaction log'
  out, pos, pending = [], _HEADER, b''
  while pos + _HEADER <= len(data):
    left_in_block = _BLOCK - pos % _BLOCK
    if left_in_block < _HEADER:
      pos += left_in_block
      continue
    length, kind = struct.unpack('<HB', data[pos + 4 : pos + 7])
    chunk = data[pos + 7 : pos + 7 + length]
    pos += 7 + length
    if kind == 0 and length == 0:
      break
    pending += chunk
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      out.append(record)
      pending = b''
  return out


def segments(run_dir: str) -> list[str]:
  """The offline-run files of a run folder, oldest first (a resumed run has one per start)."""
  return sorted(glob.glob(os.path.join(run_dir, 'wandb', 'offline-run-*', 'run-*.wandb')))


def summary(recs) -> dict:
  """The run's summary as wandb would show it (later updates win)."""
  out = {}
  for r in recs:
    if r.WhichOneof('record_type') == 'summary':
      for item in r.summary.update:
        out[item.key or '/'.join(item.nested_key)] = json.loads(item.value_json)
  return out


def history_steps(recs) -> list[int]:
  """The ``step`` value of every history row (our step metric)."""
  steps = []
  for r in recs:
    if r.WhichOneof('record_type') == 'history':
      for item in r.history.item:
        if (item.key or '/'.join(item.nested_key)) == 'step':
          steps.append(json.loads(item.value_json))
  return steps


def history(recs) -> list[dict]:
  """Every history row as a dict (``step`` and the metrics sent with it), in the order wandb wrote them."""
  rows = []
  for r in recs:
    if r.WhichOneof('record_type') == 'history':
      rows.append({(item.key or '/'.join(item.nested_key)): json.loads(item.value_json) for item in r.history.item})
  return rows


def run_record(recs):
  (run,) = [r.run for r in recs if r.WhichOneof('record_type') == 'run'][:1]
  return run


def config(recs) -> dict:
  out = {}
  for r in recs:
    kind = r.WhichOneof('record_type')
    items = r.run.config.update if kind == 'run' else r.config.update if kind == 'config' else ()
    for item in items:
      out[item.key or '/'.join(item.nested_key)] = json.loads(item.value_json)
  return out
