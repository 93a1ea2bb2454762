"""Same seed, same trace -- bit for bit, whatever PYTHONHASHSEED is; and a seeded sweep."""

import json
import os
import shlex
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from consensus.cli import app
from consensus.node import Config
from consensus.simulate import SimOptions, simulate, sweep_run
from consensus.sweep import SeedJob, SweepSettings, run_seed, variant
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


def _sweep_run_as_before_the_executor(algorithm: str, seed: int, nodes: int,
                                      duration_s: float):
    """``sweep_run`` as it was written before sweeps became keyed jobs (the reference)."""
    config = Config(pre_vote=seed % 2 == 0, check_quorum=seed % 3 != 0)
    disk_ms = float(1 + seed % 7) if seed % 4 == 1 else 0.0
    return simulate(algorithm, nodes, duration_s, seed, "random", config=config,
                    settle_s=5.0, disk_ms=disk_ms)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_sweep_job_runs_the_same_simulation_as_before(algorithm):
    """Seeds 1-4 cover PreVote on and off, CheckQuorum on and off, and a slow disk."""
    settings = SweepSettings(nodes=5, duration=3.0)
    for seed in range(1, 5):
        before = _sweep_run_as_before_the_executor(algorithm, seed, 5, 3.0)
        record = run_seed(SeedJob(settings, algorithm, seed))
        assert record["trace_sha256"] == before.trace_sha256, f"seed {seed}"
        assert record["committed"] == before.committed
        assert sweep_run(algorithm, seed, 5, 3.0).trace_sha256 == before.trace_sha256
        assert record["key"] == f"{settings.spec_hash()}/{algorithm}/{variant(seed)}/{seed}"


def test_variants_name_the_knobs_each_seed_picks():
    assert [variant(s) for s in range(1, 7)] == [
        "cq+disk2ms", "prevote+cq", "plain", "prevote+cq", "cq+disk6ms", "prevote"]


def test_the_spec_hash_is_stable_and_covers_every_setting():
    base = SweepSettings(nodes=5, duration=10.0)
    assert base.spec_hash() == SweepSettings(5, 10.0).spec_hash()
    others = {SweepSettings(3, 10.0).spec_hash(), SweepSettings(5, 11.0).spec_hash(),
              SweepSettings(5, 10.0, settle=2.0).spec_hash(),
              SweepSettings(5, 10.0, node_class="tests.scenario_driver:UnsafeRaftNode")
              .spec_hash()}
    assert base.spec_hash() not in others and len(others) == 4


def test_the_simulate_command_of_a_sweep_seed_reproduces_it():
    opts = SimOptions.for_sweep("raft", 5, 3, 2.0)
    result = CliRunner().invoke(app, [*shlex.split(opts.command())[1:], "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trace_sha256"] == opts.run().trace_sha256
    assert SimOptions.from_json(json.loads(json.dumps(opts.to_json()))) == opts
