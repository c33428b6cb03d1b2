"""Text datasets from files the researcher already has, in their standard layouts: no TFDS, no TensorFlow.

Readers only: each returns texts and labels, and the task families build the tasks from them with
the rules of the TFDS tasks (``tfds_text.py`` for classification, ``shakespeare.py`` for character
language modelling). The layouts:

* **IMDB** (Maas et al. 2011) as its authors distribute it: the ``aclImdb/`` folder, or the
  ``aclImdb_v1.tar.gz`` archive itself (read without unpacking). Reviews are the UTF-8 files
  ``{train,test}/{neg,pos}/<id>_<rating>.txt``; ``neg`` is label 0 and ``pos`` label 1, as in TFDS's
  ``imdb_reviews``. ``train/unsup`` (unlabelled) and the bag-of-words files are not read.
* **SST-2** from GLUE: the ``SST-2/`` folder with ``train.tsv`` and ``dev.tsv``: tab-separated, no
  quoting, header ``sentence<TAB>label``, labels 0/1. GLUE's ``test.tsv`` has no labels: not read.
* **A table of labelled texts**: CSV (``.csv``, with a header row), TSV (``.tsv``) or JSON Lines
  (``.jsonl``; ``.json`` holds JSON Lines or one array of objects). Labels are strings or integers.
* **Plain text** (UTF-8) for character language modelling.

Files are read as UTF-8 (a byte-order mark is skipped); examples keep the order of the files, and
folders are read in the numeric order of their file names, so a dataset read twice, or once from
the folder and once from the archive, gives the same examples in the same order.

Every problem with the files is a one-line error naming the file (and line) and what to do:
``FileNotFoundError`` for a missing file or folder, ``ValueError`` for a malformed one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import tarfile
import zlib
from typing import Any, Iterable, Sequence

IMDB_URL = 'https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz'
SST2_URL = 'https://dl.fbaipublicfiles.com/glue/data/SST-2.zip'
IMDB_LABELS = ('neg', 'pos')  # folder name -> label id, as in TFDS imdb_reviews
TABLE_FORMATS = {'.csv': 'csv', '.tsv': 'tsv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.json': 'json'}
SPLIT_NAMES = {'train': 'train', 'test': 'test', 'val': 'val', 'valid': 'val', 'validation': 'val', 'dev': 'val'}

_IMDB_MEMBER = re.compile(r'^(?:\./)?(?:[^/]+/)?(train|test)/(neg|pos)/([^/]+\.txt)$')
_INT = re.compile(r'^[+-]?\d+$')


@dataclasses.dataclass
class Examples:
  """Labelled texts read from files; ``where[i]`` says where example ``i`` came from (for errors)."""

  texts: list[str] = dataclasses.field(default_factory=list)
  labels: list[Any] = dataclasses.field(default_factory=list)
  where: list[str] = dataclasses.field(default_factory=list)

  def add(self, text: str, label: Any, where: str) -> None:
    self.texts.append(text)
    self.labels.append(label)
    self.where.append(where)


def resolve(path: str | os.PathLike, what: str) -> str:
  """``path`` made absolute (``~`` expanded); FileNotFoundError naming ``what`` was expected there."""
  if not isinstance(path, (str, os.PathLike)) or not str(path):
    raise ValueError(f'path must be a file or folder name, got {path!r}')
  full = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.exists(full):
    raise FileNotFoundError(f'{full}: no such file or folder; path should name {what}')
  return full


def decode(data: bytes, where: str) -> str:
  """``data`` as UTF-8 text (a byte-order mark dropped); a one-line ValueError names the bad byte."""
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = data[: e.start].count(b'\n') + 1
    raise ValueError(
      f'{where}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); re-save the file as '
      f'UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > NEW` if it is Latin-1'
    ) from None


def _read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _name_order(name: str) -> tuple[int, str]:
  """IMDB's ``<id>_<rating>.txt`` in numeric id order (names without a number last, by name)."""
  head = re.match(r'\d+', os.path.basename(name))
  return (int(head.group()) if head else 1 << 62, os.path.basename(name))


# ----------------------------------------------------------------------------------------------- IMDB


def read_imdb(path: str | os.PathLike) -> dict[str, Examples]:
  """IMDB's ``train`` and ``test`` reviews from the ``aclImdb/`` folder (or a folder holding it) or
  from the ``aclImdb_v1.tar.gz`` archive."""
  what = f'the aclImdb/ folder or the aclImdb_v1.tar.gz archive (from {IMDB_URL})'
  root = resolve(path, what)
  if os.path.isfile(root):
    return _read_imdb_archive(root)
  if not os.path.isdir(os.path.join(root, 'train')) and os.path.isdir(os.path.join(root, 'aclImdb')):
    root = os.path.join(root, 'aclImdb')
  out = {}
  for split in ('train', 'test'):
    examples = Examples()
    for label, sub in enumerate(IMDB_LABELS):
      folder = os.path.join(root, split, sub)
      if not os.path.isdir(folder):
        raise FileNotFoundError(
          f'{root}: no {split}/{sub}/ folder; path should name {what}, laid out as {{train,test}}/{{neg,pos}}/*.txt'
        )
      names = sorted((n for n in os.listdir(folder) if n.endswith('.txt')), key=_name_order)
      if not names:
        raise ValueError(f'{folder}: no reviews (*.txt files); restore the folder from aclImdb_v1.tar.gz')
      for name in names:
        file = os.path.join(folder, name)
        examples.add(_review(_read_bytes(file), file), label, file)
    out[split] = examples
  return out


def _review(data: bytes, where: str) -> str:
  text = decode(data, where).strip()  # stripped as TFDS imdb_reviews does
  if not text:
    raise ValueError(f'{where}: empty review file; delete it or restore it from aclImdb_v1.tar.gz')
  return text


def _read_imdb_archive(archive: str) -> dict[str, Examples]:
  found: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
  try:
    with tarfile.open(archive, 'r:*') as tar:
      for member in tar:  # streamed: the 84 MB archive is read once, never unpacked to disk
        match = _IMDB_MEMBER.match(member.name)
        if match and member.isfile():
          found.setdefault(match.group(1, 2), []).append((member.name, tar.extractfile(member).read()))
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise ValueError(
      f'{archive}: not a readable tar archive ({type(e).__name__}: {e}); download '
      f'aclImdb_v1.tar.gz again from {IMDB_URL}, or pass the unpacked aclImdb/ folder'
    ) from None
  out = {}
  for split in ('train', 'test'):
    examples = Examples()
    for label, sub in enumerate(IMDB_LABELS):
      members = found.get((split, sub))
      if not members:
        raise ValueError(
          f'{archive}: no aclImdb/{split}/{sub}/*.txt reviews in the archive; it should be '
          f'aclImdb_v1.tar.gz as distributed at {IMDB_URL}'
        )
      for name, data in sorted(members, key=lambda m: _name_order(m[0])):
        where = f'{archive}:{name}'
        examples.add(_review(data, where), label, where)
    out[split] = examples
  return out


# ---------------------------------------------------------------------------------------------- SST-2


def read_sst2(path: str | os.PathLike) -> dict[str, Examples]:
  """GLUE SST-2's ``train`` and ``dev`` sentences from the ``SST-2/`` folder (or a folder holding it);
  labels are the integers 0 (negative) and 1 (positive)."""
  what = f'the GLUE SST-2/ folder holding train.tsv and dev.tsv (from {SST2_URL})'
  root = resolve(path, what)
  if os.path.isfile(root):
    raise ValueError(f'{root}: a file; path should name {what}')
  if not os.path.isfile(os.path.join(root, 'train.tsv')) and os.path.isdir(os.path.join(root, 'SST-2')):
    root = os.path.join(root, 'SST-2')
  out = {}
  for split in ('train', 'dev'):
    file = os.path.join(root, f'{split}.tsv')
    if not os.path.isfile(file):
      raise FileNotFoundError(f'{root}: no {split}.tsv; path should name {what}')
    examples = read_table(file, text_column='sentence', label_column='label')
    for i, (label, where) in enumerate(zip(examples.labels, examples.where)):
      if label not in ('0', '1'):
        raise ValueError(f'{where}: label {label!r} is not 0 or 1; SST-2 labels are 0 (negative) and 1 (positive)')
      examples.labels[i] = int(label)
    out[split] = examples
  return out


# ------------------------------------------------------------------------------------ CSV / JSON Lines


def table_format(file: str) -> str:
  """``'csv'``, ``'tsv'``, ``'jsonl'`` or ``'json'`` from the file name's extension."""
  ext = os.path.splitext(file)[1].lower()
  if ext not in TABLE_FORMATS:
    raise ValueError(
      f'{file}: unknown table format {ext or "(no extension)"!r}; name the file .csv, .tsv, .jsonl or .json'
    )
  return TABLE_FORMATS[ext]


def read_table(file: str, *, text_column: str, label_column: str, extra_columns: Sequence[str] = ()) -> Examples:
  """Texts and labels (as written: strings, or integers in JSON) of one CSV / TSV / JSON Lines file.

  CSV follows the usual quoting rules (RFC 4180, as Excel and pandas write it); TSV is read as GLUE
  writes it: tab-separated and unquoted. ``extra_columns`` are read too and returned per example in
  ``labels`` as ``(label, {column: value})`` pairs. Blank lines are skipped.
  """
  fmt = table_format(file)
  if not os.path.isfile(file):
    raise FileNotFoundError(f'{file}: no such file')
  text = decode(_read_bytes(file), file)
  if not text.strip():
    raise ValueError(f'{file}: empty file; expected a header line and one example per line')
  columns = (text_column, label_column, *extra_columns)
  rows = _json_rows(text, file, fmt) if fmt in ('jsonl', 'json') else _delimited_rows(text, file, fmt, columns)
  out = Examples()
  for where, row in rows:
    missing = [c for c in columns if c not in row]
    if missing:
      have = ', '.join(map(repr, row)) or 'none'
      raise ValueError(
        f'{where}: no {missing[0]!r} field (fields: {have}); name the right one with the '
        f'task option {_option_of(missing[0], columns)}=...'
      )
    value = row[text_column]
    if not isinstance(value, str):
      raise ValueError(f'{where}: the text {text_column!r} is {type(value).__name__}, not a string')
    label = row[label_column]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
      raise ValueError(f'{where}: label {label!r} is {type(label).__name__}; labels are strings or integers')
    if isinstance(label, str):
      label = label.strip()
    if label == '':
      raise ValueError(f'{where}: empty label; every example needs one')
    extra = {c: row[c] for c in extra_columns}
    out.add(value, (label, extra) if extra_columns else label, where)
  if not out.texts:
    raise ValueError(f'{file}: no examples (only a header); expected one example per line')
  return out


def _option_of(column: str, columns: Sequence[str]) -> str:
  return ('text_column', 'label_column', 'split_column')[min(list(columns).index(column), 2)]


def _delimited_rows(text: str, file: str, fmt: str, columns: Sequence[str]) -> Iterable[tuple[str, dict]]:
  if fmt == 'tsv':
    reader = csv.reader(io.StringIO(text, newline=''), delimiter='\t', quoting=csv.QUOTE_NONE)
  else:
    reader = csv.reader(io.StringIO(text, newline=''), strict=True)  # an unclosed quote is an error
  try:
    header = next(reader)
    header = [h.strip() for h in header]
    for c in columns:
      if c not in header:
        raise ValueError(
          f'{file}: no column {c!r} in the header (columns: {", ".join(map(repr, header))}); '
          f'name the right one with the task option {_option_of(c, columns)}=...'
        )
    for row in reader:
      if not row or (len(row) == 1 and not row[0].strip()):
        continue
      where = f'{file} line {reader.line_num}'
      if len(row) != len(header):
        raise ValueError(
          f'{where}: {len(row)} field{"s" * (len(row) != 1)}, the header has {len(header)}'
          + ('; a tab inside a text?' if fmt == 'tsv' else '; an unquoted comma inside a text?')
        )
      yield where, dict(zip(header, row))
  except csv.Error as e:
    raise ValueError(f'{file} line {reader.line_num}: not valid {fmt.upper()} ({e})') from None


def _json_rows(text: str, file: str, fmt: str) -> Iterable[tuple[str, dict]]:
  if fmt == 'json' and text.lstrip().startswith('['):
    try:
      rows = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f'{file} line {e.lineno}: not valid JSON ({e.msg})') from None
    for i, row in enumerate(rows):
      where = f'{file} item {i}'
      if not isinstance(row, dict):
        raise ValueError(f'{where}: not a JSON object; expected one object per example')
      yield where, row
    return
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    where = f'{file} line {n}'
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f'{where}: not valid JSON ({e.msg}); JSON Lines holds one object per line') from None
    if not isinstance(row, dict):
      raise ValueError(f'{where}: not a JSON object; JSON Lines holds one object per line')
    yield where, row


def read_splits(
  path: str | os.PathLike, *, text_column: str, label_column: str, split_column: str
) -> dict[str, Examples]:
  """``train``, ``test`` and (if given) ``val`` examples of a table dataset.

  ``path`` is either a folder with one file per split, ``train.*``, ``test.*`` and optionally
  ``val.*`` (or ``validation.*`` / ``dev.*``), each ``.csv``, ``.tsv``, ``.jsonl`` or ``.json``; or one
  file whose ``split_column`` says each example's split (``train``, ``test``, ``val`` / ``validation``
  / ``dev``).
  """
  what = (
    f'a folder with train and test files (.csv, .tsv, .jsonl or .json), or one such file with a {split_column!r} column'
  )
  root = resolve(path, what)
  if os.path.isdir(root):
    files: dict[str, str] = {}
    for name in sorted(os.listdir(root)):
      stem, ext = os.path.splitext(name)
      split = SPLIT_NAMES.get(stem.lower())
      if split is None or ext.lower() not in TABLE_FORMATS:
        continue
      if split in files:
        raise ValueError(f'{root}: two {split} files ({files[split]} and {name}); keep one')
      files[split] = name
    for split in ('train', 'test'):
      if split not in files:
        raise FileNotFoundError(
          f'{root}: no {split} file ({split}.csv, {split}.tsv, {split}.jsonl or {split}.json); path should name {what}'
        )
    return {
      split: read_table(os.path.join(root, name), text_column=text_column, label_column=label_column)
      for split, name in files.items()
    }
  table = read_table(root, text_column=text_column, label_column=label_column, extra_columns=(split_column,))
  out: dict[str, Examples] = {}
  for text, (label, extra), where in zip(table.texts, table.labels, table.where):
    value = extra[split_column]
    split = SPLIT_NAMES.get(str(value).strip().lower())
    if split is None:
      raise ValueError(f'{where}: split {value!r} is not one of train, val, test (or validation, dev)')
    out.setdefault(split, Examples()).add(text, label, where)
  for split in ('train', 'test'):
    if split not in out:
      raise ValueError(f'{root}: no example has {split_column} = {split!r}; every dataset needs train and test')
  return out


def label_ids(splits: dict[str, Examples], *, train: str = 'train') -> tuple[dict[str, list[int]], list[str]]:
  """Class ids of every split's labels, from the training labels in sorted order (numeric order if
  every label is an integer, else string order), and the label names in id order.

  A label of another split that no training example has is a one-line ValueError.
  """
  key = lambda label: str(label)  # '3' in a CSV and 3 in JSON are one label
  names = sorted({key(x) for x in splits[train].labels})
  if all(_INT.match(n) for n in names):
    names.sort(key=int)
  if len(names) < 2:
    file = re.sub(r' (line|item) \d+$', '', splits[train].where[0])
    raise ValueError(f'{file}: every training example has label {names[0]!r}; a classifier needs at least 2 classes')
  ids = {n: i for i, n in enumerate(names)}
  out = {}
  for split, examples in splits.items():
    out[split] = []
    for label, where in zip(examples.labels, examples.where):
      if key(label) not in ids:
        shown = ', '.join(names[:10]) + (', ...' if len(names) > 10 else '')
        raise ValueError(
          f'{where}: label {label!r} does not occur in the training data (its labels: '
          f'{shown}); fix the label or add training examples of it'
        )
      out[split].append(ids[key(label)])
  return out, names


# ------------------------------------------------------------------------------------------ plain text


def read_text(path: str | os.PathLike) -> str:
  """The whole of a UTF-8 text file, line endings as they are."""
  file = resolve(path, 'a plain text file (UTF-8)')
  if os.path.isdir(file):
    raise ValueError(f'{file}: a folder; path should name a plain text file (UTF-8)')
  text = decode(_read_bytes(file), file)
  if not text:
    raise ValueError(f'{file}: empty file; character language modelling needs text')
  return text


def split_text(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
  """Contiguous ``(train, val, test)`` parts of ``text``: the first ``1 - val - test`` of the
  characters, then the next ``val_fraction``, then the rest. With 0.05 / 0.05 this is TFDS
  ``tiny_shakespeare``'s 90/5/5 split to the character."""
  if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
    raise ValueError(
      f'val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and add up to less than 1'
    )
  # 1 - (v + t), not 1 - v - t: with 0.05 / 0.05 the latter is 0.8999..., one character off TFDS.
  i = int(len(text) * (1 - (val_fraction + test_fraction)))
  rest = text[i:]
  j = int(len(rest) * val_fraction / (val_fraction + test_fraction))
  return text[:i], rest[:j], rest[j:]
