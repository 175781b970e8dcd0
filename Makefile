# The two commands: `make run` serves the app, `make test` runs every test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench clean

# The venv is rebuilt only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/asgilook serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --editable '.[test,lint]'
	$(BIN)/ruff check asgilook tests bench
	$(BIN)/ruff format --check asgilook tests bench
	$(BIN)/mypy

# The serving benchmark against Falcon's tutorial app: real Redis, uvicorn, wrk.
# `make bench BENCH_ARGS=--quick` to try it out.
bench: $(VENV)/.installed
	$(BIN)/python bench/serving.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .coverage .coverage.* *.egg-info
