# deeprnn-jax: `make test` is the one command CI and a fresh clone need.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-fast test-oracles install lint docs docs-check demo bench clean mutants dist

# (Re)install whenever pyproject.toml changes: the library with every extra the tests use
# (`all`: experiments, text, speech, cluster) and `dev`. Not `oracles`/`bench` (torch) nor `prepare` (TensorFlow).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --dist loadfile

# The cells against their authors' reference code (PyTorch, mambapy, xlstm, recurrentgemma) with copied
# weights, in a venv of their own so torch never enters .venv (the `oracles` extra pins the versions checked).
ORACLES_VENV ?= .venv-oracles
$(ORACLES_VENV)/.installed: pyproject.toml
	@test -x $(ORACLES_VENV)/bin/python || $(PYTHON) -m venv $(ORACLES_VENV)
	$(ORACLES_VENV)/bin/python -m pip install --quiet -e '.[dev,oracles]'
	@touch $@

test-oracles: $(ORACLES_VENV)/.installed
	$(ORACLES_VENV)/bin/python -m pytest -q -p no:xdist tests/oracles

# Ruff's lint and format check (settings in pyproject.toml); `ruff format .` applies the format.
lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The documentation site (Sphinx + MyST guides + the API reference from the docstrings), warnings as
# errors: docs/_build/html/index.html. Needs only the core and the `docs` extra (autodoc imports the
# modules; the extras' packages are imported where they are used, never at import time).
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	$(PY) -m pip install --quiet -e '.[docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The built site in a real browser (headless Chromium, Debian's `chromium` package, not in the venv, so
# not part of `make test`): screenshots of the index, a guide and an API page into docs/_build/check/,
# and a failure when an equation is left as raw LaTeX (MathJax did not run, e.g. it was not bundled).
docs-check: docs
	$(PY) docs/check_site.py docs/_build/html --out docs/_build/check

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Plants a list of known bugs in the core paths (scripts/mutants.py), one at a time in a copy of the
# tree, runs the tests each one needs, and reports which the suite catches (MISSED = a hole).
mutants: $(STAMP)
	$(PY) scripts/mutants.py

# The quickstart sweep (depth x cell on bracket counting) and its report: runs/quickstart/report.md.
# One worker process per core (the 5-seed grid of the previous round: 106 s on 2 CPU cores from an empty compilation cache, 118 s with
# WORKERS=1: BENCHMARKS.md). Running it again resumes (finished runs are skipped).
WORKERS ?= auto
demo: $(STAMP)
	$(PY) -m experiments.run --config configs/quickstart.py --workdir runs/quickstart --workers $(WORKERS)

# PyTorch is the speed anchor. The default is the CPU build; on a GPU machine pass e.g. TORCH=torch.
TORCH ?= torch==2.13.0
bench: $(STAMP)
	$(PY) -m pip install --quiet '$(TORCH)'
	$(PY) -m benchmarks.bench --output BENCHMARKS.md
	$(PY) -m benchmarks.cells_bench --output BENCHMARKS.md   # every cell at equal parameters, parallel vs sequential
	$(PY) -m benchmarks.quickstart --workers 2 --output BENCHMARKS.md   # the quickstart vs plain PyTorch
	$(PY) -m benchmarks.packing --output BENCHMARKS.md   # packed vs padded batches on PTB's sentence lengths
	$(PY) -m benchmarks.lm --output BENCHMARKS.md   # the PTB word LM's train step vs plain PyTorch (2 threads)
	$(PY) -m benchmarks.trials --output BENCHMARKS.md   # tuning trials: compiled once, or one population

# Prepares TFDS datasets once, as the array_record files the tasks read (needs the network once).
# Installs the `prepare` extra (TensorFlow: the dataset builders need it; training never does).
# DATA_DIR=... prepares into another TFDS data dir (tasks: --config.task.options.data_dir=...).
DATASETS ?= imdb_reviews glue/sst2 mnist tiny_shakespeare
.PHONY: data
data: $(STAMP)
	$(PY) -m pip install --quiet -e '.[prepare]'
	$(PY) -m experiments.prepare $(DATASETS) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# The release: the sdist and the wheel (the library only; the runner runs from a checkout) into dist/,
# built offline with the venv's setuptools, then checked by twine (metadata, README rendering).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

clean:
	rm -rf $(VENV) .pytest_cache docs/_build dist
