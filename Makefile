# Everything the project needs is installed by these targets into ignored folders:
# the virtualenv in .venv/ and DynamoDB Local in ~/.cache/ddbstreams (shared by clones).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: all install engine test check lint typecheck demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

engine: $(STAMP)
	$(PY) -m ddbstreams.local install

test: $(STAMP) engine
	$(PY) -m pytest -q -p no:cacheprovider

check: lint typecheck

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

demo: $(STAMP) engine
	$(VENV)/bin/ddbstreams demo

bench: $(STAMP) engine
	$(PY) bench/decode.py
	$(PY) bench/pass.py
	$(PY) bench/latency.py
	$(PY) bench/memory.py
	$(PY) bench/shards.py
	$(PY) bench/budget.py
	$(PY) bench/workers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
