# Two commands: `make run` sets everything up and opens the console on the
# built-in demo market; `make test` runs lint, type checks, the audit and the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck audit pytest system-deps bench snapshots lock lock-upgrade clean

# The venv gets exactly the pinned, hash-checked set of requirements-dev.lock, then the
# project itself with nothing resolved (--no-deps); `pip check` then catches a
# pyproject.toml that asks for a package the lock lacks (run `make lock`).
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cma needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip>=25,<27'
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
	  echo "requirements-dev.lock does not cover pyproject.toml: run make lock"; exit 1; }
	@# An editable install leaves the project uncompiled; where PYTHONDONTWRITEBYTECODE
	@# is set, every start would compile it again (about 30 ms of the console's start).
	$(BIN)/python -m compileall -q engine optimize persistence tui themes reports
	@touch $(STAMP)

# The lock files, made by uv from pyproject.toml for CPython 3.11 on Linux x86_64, with
# every file's hash: requirements-dev.lock has every extra (what `make` installs),
# requirements.lock the runtime set alone, at the same versions. `make lock` keeps the
# pins there are and only adds, drops or moves what pyproject.toml changed;
# `make lock-upgrade` takes the newest releases within pyproject.toml's bounds.
UV        := uv>=0.13.8,<0.14
LOCK_ARGS := --quiet --generate-hashes --python-version 3.11 \
             --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
lock:
	@[ -x $(BIN)/pip ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet '$(UV)'
	$(BIN)/uv pip compile $(LOCK_ARGS) $(LOCK_UPGRADE) --all-extras pyproject.toml \
	  -o requirements-dev.lock
	$(BIN)/uv pip compile $(LOCK_ARGS) -c requirements-dev.lock pyproject.toml \
	  -o requirements.lock

lock-upgrade:
	$(MAKE) lock LOCK_UPGRADE=--upgrade

run: $(STAMP)
	$(BIN)/cma

# The end-to-end tests drive the real console in tmux; the report tests open the HTML
# report in a headless Chromium (tests/browser.py); the optimization tests share Optuna
# studies through a throwaway PostgreSQL server they start themselves (tests/postgres.py),
# so they need only the server's programs, not the cluster the package may set up; the
# keyring tests run gnome-keyring's Secret Service on a private D-Bus session bus
# (dbus-run-session), as a desktop has it.
# One apt-get installs whichever is missing; `sudo env` because sudo drops the caller's
# environment.
system-deps:
	@missing=; \
	command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v gnome-keyring-daemon >/dev/null 2>&1 || missing="$$missing gnome-keyring"; \
	command -v dbus-run-session >/dev/null 2>&1 || missing="$$missing dbus"; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing (needed by the end-to-end, browser, PostgreSQL and keyring tests)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq || echo "apt-get update failed: installing from the package lists there are"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }

# lint-imports checks the layer contracts in pyproject.toml ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# Branch coverage of engine, persistence and tui, with the `cma` processes the tests
# start counted too (pyproject.toml, [tool.coverage.*]); each process writes its own
# .coverage.* file, combined before the report. The report is printed even when a test
# failed; the exit status is the tests' first, then the coverage floor's.
pytest: $(STAMP) system-deps
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q -p no:cacheprovider; tests=$$?; \
	$(BIN)/coverage combine -q && $(BIN)/coverage report; report=$$?; \
	if [ $$tests -ne 0 ]; then exit $$tests; fi; exit $$report

# pip-audit --strict over the pinned set when its vulnerability service answers, else
# `audit skipped: service unreachable` (.ci/audit.py); AUDIT_ARGS go to pip-audit.
audit: $(STAMP)
	$(BIN)/python .ci/audit.py requirements-dev.lock $(AUDIT_ARGS)

test: lint typecheck audit pytest

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

snapshots: $(STAMP)
	$(BIN)/pytest -q tests/tui --snapshot-update

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .import_linter_cache .pytest_cache .hypothesis .coverage .coverage.*
