# Every target creates what it needs. The development environment is uv.lock, installed
# exactly (`uv sync --locked`); `make lock` refreshes it. uv and nox themselves come from
# PyPI into .venv-tools at the versions pinned here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
UV_VERSION := 0.13.10
NOX_VERSION := 2026.10.20
UV := $(TOOLS)/bin/uv
NOX := $(TOOLS)/bin/nox
# the machine's interpreters (pyenv), never a downloaded one
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# nox's uv backend finds uv on PATH
export PATH := $(abspath $(TOOLS))/bin:$(PATH)

.PHONY: demo test lint typecheck matrix lock bench serve compat compat-floor clean

$(UV):
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q "uv==$(UV_VERSION)" "nox==$(NOX_VERSION)"

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --extra dev --python "$$($(PY) -c 'import sys; print(sys.executable)')"
	touch $(STAMP)

demo: $(STAMP)  ## record a chat and an agent run into an embedded local collector
	$(BIN)/gf-integrations demo

serve: $(STAMP)  ## run the local collector and viewer on http://127.0.0.1:8787
	$(BIN)/gf-integrations serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench noxfile.py
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck  ## lint, type-check and run the whole suite on the locked versions
	$(BIN)/python -m pytest -q

# every integration at its declared floor (Python 3.10) and at the newest releases
# (Python 3.13, resolved now): see noxfile.py and the README's support matrix
matrix: $(UV)  ## run every cell of the support matrix
	$(NOX) $(if $(CELL),-s "tests($(CELL))",)

lock: $(UV)  ## re-resolve uv.lock to the newest releases our requirements allow
	$(UV) lock --upgrade
	$(MAKE) test

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# langchain-core's own unit suite (from its sdist), bare and with instrument() attached;
# builds .venv-compat-<version> with the suite's test dependencies (see tests/compat/run.py)
compat: $(STAMP)  ## fail on any framework test that fails only with our instrumentation
	$(BIN)/python tests/compat/run.py

compat-floor: $(STAMP)  ## the same at the langchain-core floor we declare
	$(BIN)/python tests/compat/run.py --floor

clean:
	rm -rf $(VENV) $(TOOLS) .nox .venv-compat* .compat .pytest_cache .mypy_cache .ruff_cache
