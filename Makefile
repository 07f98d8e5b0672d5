# Every target creates the virtualenv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench serve compat clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## record a chat and an agent run into an embedded local collector
	$(BIN)/gf-integrations demo

serve: $(STAMP)  ## run the local collector and viewer on http://127.0.0.1:8787
	$(BIN)/gf-integrations serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck  ## lint, type-check and run the whole suite
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# langchain-core's own unit suite (from its sdist), bare and with instrument() attached;
# builds .venv-compat with the suite's test dependencies (see tests/compat/run.py)
compat: $(STAMP)  ## fail on any framework test that fails only with our instrumentation
	$(BIN)/python tests/compat/run.py

clean:
	rm -rf $(VENV) .venv-compat .compat .pytest_cache .mypy_cache .ruff_cache
