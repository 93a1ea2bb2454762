"""Same seed, same trace -- bit for bit, whatever PYTHONHASHSEED is; and a seeded sweep."""

import json
import os
import subprocess
import sys

import pytest

from consensus.simulate import simulate, sweep_run
from tests.helpers import available_algorithms

ALGORITHMS = available_algorithms()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_trace_different_seed_different_trace(algorithm):
    a = simulate(algorithm, 5, 8, seed=11)
    b = simulate(algorithm, 5, 8, seed=11)
    c = simulate(algorithm, 5, 8, seed=12)
    assert a.trace_sha256 == b.trace_sha256
    assert (a.committed, a.events, a.fault_log) == (b.committed, b.events, b.fault_log)
    assert a.trace_sha256 != c.trace_sha256


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trace_does_not_depend_on_pythonhashseed(algorithm):
    def run(hashseed: str) -> dict:
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run(
            [sys.executable, "-m", "consensus", "simulate", "--algorithm", algorithm,
             "--duration", "5", "--seed", "3", "--json"],
            env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    first, second = run("1"), run("2024")
    assert first["trace_sha256"] == second["trace_sha256"]
    assert first["committed"] == second["committed"] > 0


# 200 seeds in the normal suite (8 chunks of 25 so `pytest -n` spreads them); `make sweep`
# runs thousands.
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("chunk", range(8))
def test_random_fault_sweep_has_no_violation(algorithm, chunk):
    for seed in range(chunk * 25 + 1, chunk * 25 + 26):
        r = sweep_run(algorithm, seed, nodes=5, duration_s=6)
        assert r.violations == [], f"seed {seed}: {r.violations[:3]}"
        assert r.stalled == [], f"seed {seed} did not recover after healing: {r.stalled[:3]}"
        assert r.committed > 0
