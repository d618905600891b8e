# Two commands for a new user: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: this version is a CPU wheel; a looser spec pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: venv demo test reference clean browser-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/hybrid-retriever demo

# Two pytest-xdist workers (CI has 2 cores; the suite is mostly one-threaded model and subprocess work).
# --dist loadfile keeps a file's tests on one worker, so its module fixtures (indexes, servers) are built once.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Debian's chromium for the demo page's browser test (tests/test_server_browser.py); CI runs this
# before `make test`. Without it that test skips locally and fails under CI=true.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Regenerate README.md's configuration reference from RetrieverConfig and its --explain sample from a
# real run (tests check both are current).
reference: venv
	$(BIN)/python scripts/config_reference.py
	$(BIN)/python scripts/explain_sample.py

clean:
	rm -rf $(VENV) .demo-index .pytest_cache
