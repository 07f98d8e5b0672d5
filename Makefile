# Every target creates the virtualenv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# wrap_openai on the newest openai: the dev extra resolves to openai 2.x (the Agents SDK and
# llama-index-llms-openai pin openai<3), users of the `openai` extra get 3.x
LATEST := .venv-openai-latest
LATEST_STAMP := $(LATEST)/.installed

.PHONY: demo test test-openai-latest lint typecheck bench serve compat clean

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

test: $(STAMP) lint typecheck  ## lint, type-check and run the whole suite (both openai majors)
	$(BIN)/python -m pytest -q
	$(MAKE) test-openai-latest

$(LATEST_STAMP): pyproject.toml
	test -x $(LATEST)/bin/python || $(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade -e ".[openai]" openai langchain-openai \
		"pytest>=8" "pytest-timeout>=2.3"
	touch $(LATEST_STAMP)

test-openai-latest: $(LATEST_STAMP)  ## wrap_openai tests on the newest openai release
	$(LATEST)/bin/python -c "import openai; print('wrap_openai on openai', openai.__version__)"
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider tests/test_openai.py \
		tests/test_providers_openai.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# langchain-core's own unit suite (from its sdist), bare and with instrument() attached;
# builds .venv-compat with the suite's test dependencies (see tests/compat/run.py)
compat: $(STAMP)  ## fail on any framework test that fails only with our instrumentation
	$(BIN)/python tests/compat/run.py

clean:
	rm -rf $(VENV) $(LATEST) .venv-compat .compat .pytest_cache .mypy_cache .ruff_cache
