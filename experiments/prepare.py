"""``python -m experiments.prepare NAME [NAME ...] [--data-dir DIR]``: prepares TFDS datasets once.

Downloads each dataset and writes it in the ``array_record`` format, the one the tasks read without
TensorFlow (``deeprnn_jax/tasks/tfds_source.py``), into the TFDS data dir the tasks read: ``--data-dir``,
else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (a task reads another one with
``--config.task.options.data_dir=DIR``). The datasets of the built-in tasks:

  python -m experiments.prepare imdb_reviews glue/sst2 mnist tiny_shakespeare

Preparing goes through the TFDS Python API (``tfds.builder(name).download_and_prepare(...)``), not
the ``tfds build`` command, which imports Apache Beam even for datasets that do not use it. The
builders of these datasets read their downloads with TensorFlow: install the ``prepare`` extra first
(``pip install -e '.[prepare]'``, or ``make data``, which does both). Training never imports
TensorFlow. Downloads are kept in ``DATA_DIR/downloads``, so running the command again after a
failure does not download twice; a dataset already prepared is left as it is.

``--manual-dir DIR`` holds the files of datasets that must be downloaded by hand; ``--import MODULE``
imports a module that defines a TFDS builder of your own first, so its name can be prepared too.

Exit codes: 0 every dataset is ready, 2 a mistake or a problem the message says how to fix (an
unknown dataset, no network, a missing module), 130 interrupted (run the command again to resume).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import os
import re
import socket
import sys
import textwrap
import urllib.error
from typing import Any, Sequence

from deeprnn_jax.tasks import tfds_source
from experiments import cli

INSTALL = "pip install -e '.[prepare]'"
# What the `prepare` extra installs, by module name: the builders of the built-in tasks' datasets need them.
PREPARE_EXTRA_MODULES = ('tensorflow', 'importlib_resources')


class PrepareError(ValueError):
  """A dataset cannot be prepared; the message is one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A dataset ready to be read: where it is and how many examples each split holds."""

  name: str
  path: str
  splits: dict[str, int]
  reused: bool  # it was prepared before (as array_record) and left as it was


def _one_line(text: str, limit: int = 240) -> str:
  text = ' '.join(str(text).split())
  return text if len(text) <= limit else text[: limit - 3] + '...'


def _network_error(e: BaseException) -> BaseException | None:
  """The error in ``e``'s chain that says the network could not be reached, if any."""
  import requests  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import util as download_util  # pylint: disable=g-import-not-at-top

  kinds = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib.error.URLError,
    socket.gaierror,
    socket.timeout,
    ConnectionError,
    TimeoutError,
    download_util.DownloadError,
  )
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, kinds):
      return e
    e = e.__cause__ or e.__context__
  return None


@contextlib.contextmanager
def _few_retries(retries: int = 3):
  """TFDS retries a failed connection 10 times with exponential backoff: an offline machine waits 3.4
  minutes for the error. 3 retries still ride out a brief outage (1.2 s of waiting in all)."""
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top

  before = getattr(downloader, 'MAX_RETRIES', None)
  if before is None:  # a TFDS without this setting: leave its retries as they are
    yield
    return
  downloader.MAX_RETRIES = min(before, retries)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = before


def _describe_network_error(e: BaseException) -> str:
  """``'<url>: <reason>'`` from a download error, short enough for one line."""
  request = getattr(e, 'request', None)
  url = getattr(request, 'url', None) or getattr(e, 'url', None) or getattr(e, 'filename', None)
  text = ' '.join(str(e).split())
  # urllib3 wraps the reason: '... (Caused by NameResolutionError("...: Failed to resolve \'host\'"))'
  caused = re.search(r'Caused by \w+\((.*)$', text)
  if caused:
    reason = re.sub(r'["\']\)+$', '', caused.group(1)).lstrip('"\'')
    # The connection object's repr ('<...HTTPSConnection object at 0x...>: ', 'HTTPSConnection(host=...): ').
    reason = re.sub(r'^(<[^>]*>|\w+\([^)]*\)): ', '', reason)
  else:
    reason = f'{type(e).__name__}: {text}'
  return _one_line(f'{url}: {reason}' if url else reason, 220)


def builder(name: str, data_dir: str | None = None) -> Any:
  """TFDS's builder of ``name`` (``dataset[/config][:version]``); an unknown name is a PrepareError
  that suggests the closest known names."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds_source.import_builder(name)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    base = name.split('/')[0].split(':')[0]
    known = sorted(set(tfds.list_builders(with_community_datasets=False)))
    close = difflib.get_close_matches(base, known, n=3)
    hint = f'did you mean {" or ".join(close)}? ' if close else ''
    raise PrepareError(
      f'unknown TFDS dataset {name!r}; {hint}the names are listed at '
      f'https://www.tensorflow.org/datasets/catalog/overview (for a builder of your own, '
      f'pass --import MODULE, the module that defines it)'
    ) from e
  except Exception as e:  # pylint: disable=broad-except  # a bad config or version of a known dataset
    base = name.split('/')[0].split(':')[0]
    try:
      configs = [c.name for c in tfds.builder_cls(base).BUILDER_CONFIGS]
    except Exception:  # pylint: disable=broad-except
      configs = []
    valid = f'; the configs of {base} are {", ".join(configs)}' if configs and '/' in name else ''
    why = re.sub(r'\s*Here are \d+ BuilderConfigs.*$', '', _one_line(str(e) or type(e).__name__, 1000))
    raise PrepareError(f'TFDS dataset {name!r} cannot be built: {_one_line(why, 200)}{valid}') from e


def prepare(name: str, *, data_dir: str | None = None, manual_dir: str | None = None, force: bool = False) -> Prepared:
  """Downloads and prepares TFDS dataset ``name`` as array_record in ``data_dir`` and checks that every
  split reads back through ``tfds.data_source`` (the tasks' reader).

  Args:
    name: a TFDS name, e.g. ``'imdb_reviews'``, ``'glue/sst2'``, ``'mnist:3.0.1'``.
    data_dir: the TFDS data dir (None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    manual_dir: the folder of files downloaded by hand, for datasets that need them.
    force: regenerate a dataset that exists already (its downloads are reused).

  Raises:
    PrepareError: one line naming the dataset, the problem and what to do.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  b = builder(name, data_dir)
  array_record = tfds.core.file_adapters.FileFormat.ARRAY_RECORD
  exists = b.data_path.exists()
  if exists and not force and b.info.file_format != array_record:
    fmt = getattr(b.info.file_format, 'value', 'tfrecord')
    raise PrepareError(
      f'{name!r} is prepared in {b.data_path} as {fmt}, which the tasks cannot read '
      f'without TensorFlow; run again with --force to regenerate it as array_record (downloads are reused)'
    )
  if exists and force:
    # Removed here rather than by TFDS's overwrite mode: the builder has read the old dataset's info
    # (its file format included), and TFDS refuses to change the format of an info it has read.
    b.data_path.rmtree()
    b = builder(name, data_dir)
  # No GCS mirror: TFDS's prepared copies there are tfrecord, and asking for one needs TensorFlow's
  # GCS client (which retries for minutes offline).
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  try:
    with _few_retries():
      b.download_and_prepare(file_format=array_record, download_config=config)
  except ModuleNotFoundError as e:
    if e.name in PREPARE_EXTRA_MODULES:
      how = f'install the prepare extra with `{INSTALL}` (or run `make data DATASETS={name}`)'
    else:  # a builder that needs more than the built-in tasks' datasets do
      how = f'install it (pip install {e.name}; the prepare extra `{INSTALL}` covers the built-in tasks)'
    raise PrepareError(
      f'preparing {name!r} needs the Python module {e.name!r}, which is not installed; {how}, then run this again'
    ) from e
  except AssertionError as e:
    if 'Manual directory' not in str(e):
      raise
    how = _one_line(textwrap.dedent(getattr(b, 'MANUAL_DOWNLOAD_INSTRUCTIONS', '') or ''), 160)
    looked = manual_dir or os.path.join(str(b.data_dir_root), 'downloads', 'manual')
    raise PrepareError(
      f'{name!r} must be downloaded by hand{f" ({how})" if how else ""}; put the files '
      f'in a folder and pass --manual-dir DIR (looked in {looked})'
    ) from e
  except Exception as e:  # pylint: disable=broad-except
    cause = _network_error(e)
    if cause is None:
      raise
    from tensorflow_datasets.core.download import util as download_util  # pylint: disable=g-import-not-at-top

    if isinstance(cause, download_util.DownloadError):  # the server answered, but not with the file
      raise PrepareError(
        f'cannot download {name!r}: {_one_line(cause, 200)}; its files are not where this version of '
        f'tensorflow-datasets looks: try a newer one (pip install -U tensorflow-datasets)'
      ) from e
    raise PrepareError(
      f'cannot download {name!r}: {_describe_network_error(cause)}; this needs a '
      f'network connection once: connect and run the command again (downloads finished so far are kept '
      f'in {os.path.join(str(b.data_dir_root), "downloads")}), or prepare it on a machine that has one '
      f'and copy {b.data_dir_root}/{b.name} here'
    ) from e
  splits = {}
  for split in b.info.splits:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    splits[split] = len(source)
  return Prepared(name=name, path=str(b.data_path), splits=splits, reused=exists and not force)


def main(argv: Sequence[str] | None = None) -> int:
  parser = cli.make_parser(cli.command('prepare'), __doc__.split('\n')[0].strip('`'))
  parser.add_argument(
    'names', nargs='+', metavar='NAME', help='TFDS dataset names, e.g. imdb_reviews glue/sst2 mnist tiny_shakespeare'
  )
  parser.add_argument(
    '--data-dir', default=None, help='TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)'
  )
  parser.add_argument('--manual-dir', default=None, help='files downloaded by hand, where a dataset needs them')
  parser.add_argument('--force', action='store_true', help='regenerate datasets that exist (downloads are reused)')
  parser.add_argument(
    '--import',
    dest='modules',
    action='append',
    default=[],
    metavar='MODULE',
    help='import MODULE first (a module that defines a TFDS builder of your own)',
  )
  parser.add_argument('--no-progress', action='store_true', help='no progress bars')
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # the parser has printed a one-line usage error (or --help)
    return e.code
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds.display_progress_bar(not args.no_progress)
  data_dir = os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir else None
  manual_dir = os.path.abspath(os.path.expanduser(args.manual_dir)) if args.manual_dir else None
  try:
    for module in args.modules:
      try:
        importlib.import_module(module)
      except ImportError as e:
        raise PrepareError(
          f'--import {module}: the module cannot be imported ({_one_line(e, 160)}); '
          f'run from the folder that holds it, or add that folder to PYTHONPATH'
        ) from e
    for name in args.names:  # every name is checked before anything is downloaded
      builder(name, data_dir)
    for name in args.names:
      print(f'{name}: preparing as array_record in {data_dir or tfds_source.default_data_dir()}', flush=True)
      done = prepare(name, data_dir=data_dir, manual_dir=manual_dir, force=args.force)
      sizes = ', '.join(f'{split} {n}' for split, n in done.splits.items())
      print(f'{name}: {"already prepared" if done.reused else "ready"} in {done.path} ({sizes} examples)', flush=True)
  except PrepareError as e:
    print(f'error: {e}', file=sys.stderr)
    return cli.EXIT_USAGE
  except KeyboardInterrupt:
    print('stopped; run the same command again to resume (finished downloads are kept)', file=sys.stderr)
    return cli.EXIT_INTERRUPTED
  if data_dir:
    print(f'tasks read it with --config.task.options.data_dir={data_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
