# Two commands for a fresh machine (see README):  make run   |   make test
# Each creates .venv and installs what it needs. torch comes from the CPU build on this
# machine's disk (`pip install torch==2.13.0`); never an unpinned torch (CUDA, GBs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= hf,server,retrieval,eval,train,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: install run demo test lint bench-quick clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

# Main job: serve the X-ray Interpreter on the embedded store (http://127.0.0.1:8000).
run: install
	$(BIN)/medlens serve

# Same, with the built-in test models (output is meaningless; shown under a banner).
demo: install
	$(BIN)/medlens serve --demo

# Tests: installs system packages when missing (chromium, postgresql), starts a
# throwaway PostgreSQL on 127.0.0.1:55432, lints, runs pytest.
test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check .

# Benchmark smoke run (small shapes, < 2 min); the full-size run is documented in
# docs/benchmarks.md. Results go to .cache/ (the committed ones: benchmarks/results/).
bench-quick: install
	$(BIN)/python benchmarks/run.py --quick --out .cache/bench-quick

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
