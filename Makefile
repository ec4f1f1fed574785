# Two commands do everything on a fresh machine:
#   make run   - create .venv, install, launch local peers on the bundled digits data
#   make test  - create .venv, install, run the test suite (what CI runs)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := node protocols aggregation topology scripts

.PHONY: run test test-all test-tools lint typecheck bench bench-gossipy simulate clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	# byzfl is the test oracle for the aggregation rules; --no-deps keeps pip from
	# pulling torchvision (a multi-GB CUDA build) next to our CPU torch
	$(BIN)/pip install --quiet --no-deps byzfl==0.0.11
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/rumor launch --peers 8 --rounds 20 --out runs/launch

simulate: $(STAMP)
	$(BIN)/rumor simulate --peers 50 --rounds 40 --topology regular:8 --aggregator variance-corrected --out runs/simulate

# test-only system tools (chromium, chromedriver, iproute2, iptables); see .ci/install-test-tools
test-tools:
	@./.ci/install-test-tools

# the net tier (real processes on loopback and in namespaces) on two xdist workers, each
# file on one worker (a file's tests share swarm names and seeded identities)
NET_TIER := -m "net and not slow" -n 2 --dist loadfile

test: $(STAMP) test-tools
	$(BIN)/python -m pytest -q -m "not slow and not net" tests
	$(BIN)/python -m pytest -q $(NET_TIER) tests
	$(MAKE) --no-print-directory lint

test-all: $(STAMP) test-tools
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check rumor $(PKGS) tests benchmarks
	$(BIN)/mypy --strict -p rumor

bench: $(STAMP)
	$(BIN)/python -m benchmarks.codec
	$(BIN)/python -m benchmarks.simulator

# gossipy-dfl 0.0.1 side by side with the simulator (installs the bench-only extra)
bench-gossipy: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.gossipy_vs_rumor

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache .ruff_cache
