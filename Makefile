# Two commands on a fresh machine: `make run` and `make test`. Each bootstraps .venv as needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
ARGS ?=

.PHONY: run test bench lint clean chromium

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

# The report's browser tests need Chromium (Debian's package); install it when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "warning: could not install chromium; the browser tests will skip (and fail under CI)"

test: $(STAMP) chromium
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q tests

bench: $(VENV)/.bench-installed
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-group-by=group -q -rxs

lint: $(STAMP)
	$(VENV)/bin/ruff check qpipe tests benchmarks runner.py
	$(VENV)/bin/mypy qpipe
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
