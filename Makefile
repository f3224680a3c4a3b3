# Two commands for a fresh machine: `make run` and `make test`.
#
# Both install from the lock files in requirements/ (exact versions, each file checked
# against its hash), never from a fresh resolution: run.txt holds what running needs,
# dev.txt adds the test and lint tools. `make lock` rewrites both after a change to
# pyproject.toml's dependency lists; `make lock-upgrade` moves every pin to the newest
# version pyproject.toml allows. Commit the lock files with the change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
RUN_LOCK := requirements/run.txt
DEV_LOCK := requirements/dev.txt
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed
# One lock for every platform and Python >= 3.11 (markers choose), with every file's hash.
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'

.PHONY: run test lint bench lock lock-upgrade clean

run: $(RUN_STAMP)
	$(BIN)/klingbot run

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold info Dockerfile
	$(BIN)/python -m pytest -q -n auto

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold info Dockerfile

bench: $(DEV_STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

# What running needs: the runtime lock, then klingbot itself, editable, with no
# dependencies of its own and no build isolation (its build backend is in the lock too).
# -qq: setuptools' notice about editable installs is not for the person typing `make run`.
$(RUN_STAMP): $(RUN_LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing what klingbot needs to run, from $(RUN_LOCK)"
	@$(PIP) install --quiet --require-hashes --requirement $(RUN_LOCK)
	@$(PIP) install -qq --no-deps --no-build-isolation --editable .
	@touch $@

# Then the test and lint tools (the runtime pins in dev.txt are the same as in run.txt).
$(DEV_STAMP): $(RUN_STAMP) $(DEV_LOCK)
	@echo "Installing the test and lint tools, from $(DEV_LOCK)"
	@$(PIP) install --quiet --require-hashes --requirement $(DEV_LOCK)
	@touch $@

# dev.txt first (everything), then run.txt constrained by it, so both pin the same versions.
# Pins already in the files are kept where pyproject.toml still allows them.
lock: $(DEV_STAMP)
	$(COMPILE) $(UPGRADE) --output-file $(DEV_LOCK) pyproject.toml --extra dev requirements/build.in
	$(COMPILE) --constraint $(DEV_LOCK) --output-file $(RUN_LOCK) pyproject.toml requirements/build.in

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
