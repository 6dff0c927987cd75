# Set-up and everyday commands. Every target creates the virtual environment
# on first use, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build that these machines carry; a GPU user says `make install TORCH=torch`
# (the default PyPI wheel on Linux is the CUDA build) or installs their own first.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint benchmark speed clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) examples/lincs_demo.py

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
