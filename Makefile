# The two commands: `make run` serves the app, `make test` runs every test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-quick lint bench bench-index clean

# One venv, filled as far as the command needs: `make run` installs what
# serving needs; the test, lint and bench tools go in when those commands
# first need them. Each step is redone only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable .
	touch $@

$(VENV)/.test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@

$(VENV)/.lint: $(VENV)/.test
	$(BIN)/python -m pip install --quiet --editable '.[test,lint]'
	touch $@

$(VENV)/.bench: $(VENV)/.test
	$(BIN)/python -m pip install --quiet --editable '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/asgilook serve --host $(HOST) --port $(PORT)

# The Debian packages the tests drive (curl, chromium, chromium-driver,
# PostgreSQL's binaries) are installed first when missing: see the script.
test: $(VENV)/.test
	bash scripts/system-packages.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A minute or two, while working: every test that starts no server process
# (no Redis, uvicorn, PostgreSQL, SeaweedFS or Chromium), without coverage.
# `make test` runs them all, as CI does.
test-quick: $(VENV)/.test
	$(BIN)/python -m pytest -q --no-cov -m 'not e2e and not postgres and not s3 and not slow' $(PYTEST_ARGS)

# ruff, strict mypy, and the layers and cycles of import-linter's contracts
# (pyproject.toml, [tool.importlinter]).
lint: $(VENV)/.lint
	$(BIN)/ruff check asgilook tests bench
	$(BIN)/ruff format --check asgilook tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The benchmarks: serving, against Falcon's tutorial app (real Redis, uvicorn,
# wrk); the index, against the journal of the previous release (SQLite, and
# PostgreSQL if it is installed); the thumbnail formats, bytes against SSIM
# (NumPy, from the bench extra); the disk one picture takes; Lighthouse's
# scores of the gallery and a picture's page (Chromium; Lighthouse from npm,
# installed into bench/.lighthouse on the first run). `make bench
# BENCH_ARGS=--quick` to try the first three out; they get BENCH_ARGS, so give
# --json to one target at a time.
bench: $(VENV)/.bench
	$(BIN)/python bench/serving.py $(BENCH_ARGS)
	$(BIN)/python bench/index.py $(BENCH_ARGS)
	$(BIN)/python bench/storage.py $(BENCH_ARGS)
	$(BIN)/python bench/formats.py
	$(BIN)/python bench/disk.py
	$(BIN)/python bench/lighthouse.py

bench-index: $(VENV)/.bench
	$(BIN)/python bench/index.py $(BENCH_ARGS)

# The soak test: a few minutes of mixed load on uvicorn --workers 2 with
# Redis restarted and a worker killed midway (see bench/soak.py); exit 1 on a
# failure. `make soak SOAK_ARGS='--duration 600 --json soak.json'`.
SOAK_ARGS ?= --duration 240

.PHONY: soak
soak: $(VENV)/.test
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .coverage .coverage.* *.egg-info
