# Two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench plan clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23.2" "setuptools==80.9.0" "wheel==0.45.1"
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

run: $(STAMP)
	$(BIN)/python -m bucketrnn $(ARGS)

# The suite in three pytest-xdist worker processes: on a 2-core machine shared with CPU-bound
# jobs, workers get the suite a larger share of the CPU (beside three busy loops: 16 min 27 s
# with two, 13 min 36 s with three, README). `make test ARGS="-n0 ..."` runs in one process (a
# debugger needs that); `make test TEST_WORKERS=N` chooses another count.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(ARGS)

plan: $(STAMP)
	$(BIN)/python -m bucketrnn.app.plan $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .hypothesis
