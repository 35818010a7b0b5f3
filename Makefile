# speechvq: `make test` and `make demo` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speechvq-installed
PYTEST_ARGS ?=

.PHONY: install test lint demo system-deps browser-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.11.0 torchaudio==2.11.0
	$(PY) -m pip install -q -e '.[dev,metrics]'
	$(PY) -m pip install -q --no-deps resemblyzer==0.1.4
	@touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@tools/install_system_deps.sh espeak-ng:espeak-ng

# Debian's chromium for tests/test_browser.py (the test is skipped when chromium is absent).
browser-deps:
	@tools/install_system_deps.sh chromium:chromium || echo "warning: chromium is not installed; the browser test will be skipped" >&2

test: install browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" recipes/vctk/run.sh --demo --out exp/demo

clean:
	rm -rf $(VENV) exp
