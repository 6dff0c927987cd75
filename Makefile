# Set-up and everyday commands. Every target creates the virtual environment
# on first use, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build that these machines carry; a GPU user says `make install TORCH=torch`
# (the default PyPI wheel on Linux is the CUDA build) or installs their own first.
TORCH  ?= torch==2.13.0

.PHONY: install demo test docs lint benchmark scarcity speed peers peers-install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Prints the table, writes it to ./c3tl-results/lincs_demo/lincs_demo.md (not the committed
# copy, and ignored by git) and prints that path
demo: install
	$(PY) examples/lincs_demo.py

test: install
	$(PY) -m pytest -q

# The API reference and the getting-started page into docs/_build/html, warnings
# as errors; then the page's examples and every docstring example run as doctests
docs: install
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	$(PY) -m sphinx -W --keep-going -q -b doctest docs docs/_build/doctest
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules c3tl_sklearn

# The paper's held-out-context protocol on LINCS, every model tuned with 20 Optuna trials.
# Regenerates the committed files under benchmarks/results/lincs-heldout.
benchmark: install
	$(VENV)/bin/c3tl-benchmark --data lincs --protocol heldout --models all --n-trials 20 \
		--threads 1 --out benchmarks/results/lincs-heldout

# The paper's data-scarcity protocol on LINCS (5, 3, 2 training contexts x 5 fractions).
# Regenerates the committed files under benchmarks/results/lincs-scarcity.
scarcity: install
	$(VENV)/bin/c3tl-benchmark --data lincs --protocol scarcity --models all --n-trials 0 \
		--threads 1 --out benchmarks/results/lincs-scarcity

# Seconds per epoch, fit, predict and memory at the paper's data shapes.
# Regenerates the committed benchmarks/results/speed.md.
speed: install
	$(PY) benchmarks/speed.py --threads 2 --full-fit --epochs 15 --out benchmarks/results

# The head-to-head with the paper's peers, State and CellFlow, on the shipped glioblastoma cells
# and a synthetic set at the Parse shape (24 x 90 x 2,000), every model in a measured
# subprocess. The peers (non-commercial licences) are never dependencies of the package:
# `make peers INSTALL=1` (or `make peers-install`) first creates their environments under
# PEERS_DIR with `c3tl peers install`; without it they must exist there already.
# Writes PEERS_OUT (default ./c3tl-results/peers, ignored by git); the committed copy is
# regenerated explicitly with `make peers PEERS_OUT=benchmarks/results/peers
# PEERS_DATA=/tmp/c3tl-peers-data` (the .h5ad inputs, 400 MB, stay out of the repository).
# About 30 minutes on one CPU core.
PEERS_DIR  ?= $(HOME)/.cache/c3tl/peers
PEERS_OUT  ?= c3tl-results/peers
PEERS_DATA ?= $(PEERS_OUT)/data
INSTALL    ?=

peers-install: install
	$(VENV)/bin/c3tl peers install state --prefix $(PEERS_DIR)/state
	$(VENV)/bin/c3tl peers install cellflow --prefix $(PEERS_DIR)/cellflow

peers: install $(if $(INSTALL),peers-install)
	OMP_NUM_THREADS=1 $(PY) benchmarks/peers.py --out $(PEERS_OUT) --data-dir $(PEERS_DATA) \
		--state-python $(PEERS_DIR)/state --cellflow-python $(PEERS_DIR)/cellflow

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info docs/_build docs/generated
