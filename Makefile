# shrinkflow: `make run` runs the pipeline, `make test` runs the tests.
# Both create .venv and install the pinned dependencies first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The IDX folder when params.yaml reads Fashion-MNIST's IDX files (data.path, as steps/config reads it: the old
# name raw_dir included; an invalid section is left for `shrinkflow run` to explain); empty for any other source,
# whose files are the team's own and not ours to fetch.
DATA_PATH = $(shell $(BIN)/python -c "import yaml; from steps.config.data import DataConfig; d = DataConfig.model_validate(yaml.safe_load(open('params.yaml'))['data']); print(d.path if d.source == 'idx' else '')" 2>/dev/null)
RAW_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz

.PHONY: run test check install data repro lock dvc-yaml clean

run: install data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/shrinkflow run

# Two pytest-xdist workers: a serial run kept about one of the two cores busy (servers starting, subprocesses
# importing). A module runs on one worker (its module fixtures are built once); slow tiers go first
# (tests/conftest.py). Not --dist loadgroup: with pytest 9.2 it silently stops grouping (pytest-xdist #1386).
TEST_WORKERS ?= 2

test: install data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The edit-test loop: unit tests of the stages, the libraries and the rules, on tiny data (no pipeline runs,
# no servers, no benchmarks).
check: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not integration" \
		tests/compression tests/core tests/config tests/sources tests/steps tests/registry tests/architecture \
		tests/flows/test_pipeline_definition.py

install: $(STAMP)

# pip byte-compiles what it installs one file at a time (50 of the install's 80 s here); compileall does it on every
# core (24 s), skipping the packages' own test suites (4,004 of 23,588 files), which nothing imports. The compiled
# files must be there: this machine sets PYTHONDONTWRITEBYTECODE=1, so Python would not cache what it compiles,
# and every process of the suite would compile torch and the rest from source again.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.lock
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/' \
		$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
		>/dev/null || true  # a few files are for newer Pythons (whenever's _typing_312.py); pip skips them too
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m flows.runtime  # a migrated empty Prefect database: a new checkout's first run skips migrating
	touch $@

# Fashion-MNIST's IDX files: Debian's dataset-fashion-mnist package when apt-get is here,
# otherwise say where to put them.
data: install
	@if [ -z "$(DATA_PATH)" ]; then exit 0; fi; \
	missing=""; for f in $(RAW_FILES); do test -f "$(DATA_PATH)/$$f" || missing="$$missing $$f"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$(DATA_PATH)" = "/usr/share/datasets/fashion-mnist" ] && command -v apt-get >/dev/null; then \
		echo "Fashion-MNIST not found: installing Debian's dataset-fashion-mnist"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST files missing in $(DATA_PATH):$$missing"; \
		echo "Download them from github.com/zalandoresearch/fashion-mnist (data/fashion) into that folder,"; \
		echo "or point data.path in params.yaml at where they are."; \
		exit 1; \
	fi

# The second runner: the same stages through DVC, under the project run lock (shrinkflow repro).
repro: install data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/shrinkflow repro

dvc-yaml: install
	$(BIN)/shrinkflow dvc-yaml

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock.new
	(head -2 requirements.lock; cat requirements.lock.new) > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock && rm requirements.lock.new

clean:
	rm -rf data/processed models metrics plots mlflow.db mlartifacts .shrinkflow .dvc/cache .dvcstore
