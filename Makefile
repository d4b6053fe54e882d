# The two set-up commands: `make demo` and `make test`. Each creates or reuses
# .venv, installs what it needs from the package registries, and runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vecdr-installed

.PHONY: demo test test-all bench bench-quick reliability docs lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m vecdr.demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Also the long cases marked `slow`.
test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

# The fault matrix of docs/reliability.md: every test marked `fault`, then a table of
# fault, store, cases and cases survived (also written to reliability-report.md).
reliability: $(STAMP)
	$(BIN)/python -m pytest -q -m fault --reliability=reliability-report.md

bench: $(STAMP)
	$(BIN)/python -m benchmarks rebuild
	$(BIN)/python -m benchmarks core

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks rebuild --quick
	$(BIN)/python -m benchmarks core --quick

# The documentation site (mkdocs.yml) into site/. Strict: a broken link or anchor, or a
# page missing from the nav, fails the build. The CLI reference is generated from the CLI.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis
