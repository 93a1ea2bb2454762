# consensus-lab: `make run` (the main job) and `make test` (the whole suite) are the quick start.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test lint sweep reports bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

## The main job: Raft vs Multi-Paxos on real node processes over MQTT (mosquitto if installed,
## else the embedded broker), the leader killed mid-run; checked, measured, reported.
run: $(STAMP)
	$(BIN)/consensus-lab run experiments/quickstart.yaml

## The whole test suite (deterministic; the long sweeps are `make sweep`).
test: $(DEV_STAMP)
	$(BIN)/ruff check consensus tests
	$(BIN)/pytest -n 2

lint: $(DEV_STAMP)
	$(BIN)/ruff check consensus tests

## Thousands of seeds of random fault schedules, on both cores.
sweep: $(STAMP)
	$(BIN)/consensus-lab sweep --algorithm both --seeds 2000 --duration 10

## Regenerate the committed report gallery (every experiment, simulator, default seeds).
reports: $(STAMP)
	$(BIN)/consensus-lab gallery

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(STAMP)

## Both algorithms vs the bus limit, a null protocol and PySyncObj, on a real mosquitto.
bench: $(BENCH_STAMP)
	$(BIN)/consensus-lab bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
