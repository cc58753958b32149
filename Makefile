# Two commands on a fresh machine: `make run` and `make test`. Each bootstraps .venv as needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
ARGS ?=

.PHONY: run test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,ray,mlflow,prefect]'
	$(PY) -m qpipe.cli.versions
	rm -f $(VENV)/.installed-*; touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,ray,mlflow,prefect,bench]'
	touch $@

run: $(STAMP)
	$(PY) runner.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(VENV)/.bench-installed
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-group-by=group -q -rxs

lint: $(STAMP)
	$(VENV)/bin/ruff check qpipe tests benchmarks runner.py
	$(VENV)/bin/mypy qpipe

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
