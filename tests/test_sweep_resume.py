"""`sweep` writes one file per key and resumes without rerunning a finished key; a failing seed
(the broken Raft variant) is recorded with a replay that reproduces its trace hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consensus.cli import app
from consensus.raft.node import RaftNode

runner = CliRunner()
UNSAFE = "tests.scenario_driver:UnsafeRaftNode"


def sweep(out: Path, *args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["sweep", "--duration", "2", "--nodes", "3", "--workers", "2",
                                 "--out", str(out), "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def run_files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.glob("runs/*/*/*.json"))}


def test_resuming_with_more_seeds_runs_only_the_new_keys(tmp_path):
    out = tmp_path / "sweep"
    code, first = sweep(out, "--seeds", "3")
    assert code == 0, first
    assert first["runs"] == {"requested": 6, "done": 6, "ran_now": 6, "resumed": 0}
    before = run_files(out)  # each file carries the worker's pid and wall time: a rerun shows
    assert len(before) == 6 and all("seed-" in k for k in before)

    code, again = sweep(out, "--seeds", "3")
    assert code == 2 and again["kind"] == "sweep-folder-exists"

    code, resumed = sweep(out, "--seeds", "5", "--resume")
    assert code == 0, resumed
    assert resumed["runs"] == {"requested": 10, "done": 10, "ran_now": 4, "resumed": 6}
    after = run_files(out)
    assert {k: after[k] for k in before} == before  # finished keys untouched
    assert len(after) == 10
    assert [(r["algorithm"], r["seed"]) for r in resumed["run_list"]] == [
        (a, s) for s in range(1, 6) for a in ("raft", "paxos")]  # seed by seed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_algorithm"]["raft"]["seeds"] == 5
    assert sum(summary["per_algorithm"]["paxos"]["variants"].values()) == 5
    assert summary["violations"] == [] and summary["liveness_failures"] == []
    assert "--out" in summary["command"] and summary["interrupted"] is False

    code, differ = sweep(out, "--seeds", "5", "--resume", "--nodes", "5")
    assert code == 2 and differ["kind"] == "sweep-settings-differ"


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory) -> tuple[Path, int, dict]:
    """The broken Raft, stopped after its first failing seed, then resumed to the end."""
    out = tmp_path_factory.mktemp("unsafe") / "sweep"
    code, stopped = sweep(out, "--algorithm", "raft", "--seeds", "40", "--node-class", UNSAFE,
                          "--max-failures", "1", "--workers", "1")
    return out, code, stopped


def test_max_failures_stops_early_and_resume_finishes_without_rerunning(failing_sweep):
    out, code, stopped = failing_sweep
    assert code == 1
    assert stopped["stopped_early"] is True
    assert stopped["per_algorithm"]["raft"]["violations"] >= 1
    assert stopped["runs"]["done"] < stopped["runs"]["requested"] == 40
    before = run_files(out)
    code, rest = sweep(out, "--algorithm", "raft", "--seeds", "40", "--node-class", UNSAFE,
                       "--resume")
    assert code == 1
    assert rest["runs"]["resumed"] == stopped["runs"]["done"]
    assert rest["runs"]["ran_now"] == 40 - stopped["runs"]["done"]
    assert {k: v for k, v in run_files(out).items() if k in before} == before


def test_a_failing_seed_replays_to_the_same_trace_hash(failing_sweep):
    out, _, stopped = failing_sweep
    failure = stopped["violations"][0]
    path = out / failure["failure_file"]
    record = json.loads(path.read_text())
    assert record["options"]["node_class"] == UNSAFE
    assert record["command"].startswith("consensus-lab simulate --algorithm raft --seed ")
    assert record["violations"] and record["faults"] is not None
    prefix = record["shortest_prefix"]
    assert 0 <= prefix["k"] <= prefix["of"] == len(record["faults"])
    assert prefix["violations"]

    result = runner.invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.stdout)
    assert replayed["trace_sha256"] == record["trace_sha256"] and replayed["reproduced"]

    result = runner.invoke(app, ["replay", str(path), "--prefix", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trace_sha256"] == prefix["trace_sha256"]

    # The recorded command line itself reproduces the run.
    argv = record["command"].split()[1:]
    result = runner.invoke(app, [*argv, "--json"])
    assert result.exit_code == 1  # a violation
    assert json.loads(result.stdout)["trace_sha256"] == record["trace_sha256"]


def test_replay_exits_1_when_the_run_does_not_reproduce(failing_sweep, tmp_path):
    out, _, stopped = failing_sweep
    record = json.loads((out / stopped["violations"][0]["failure_file"]).read_text())
    record["trace_sha256"] = "0" * 64
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(record))
    result = runner.invoke(app, ["replay", str(tampered), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reproduced"] is False


def test_replay_of_a_file_that_is_not_a_failure_record_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = runner.invoke(app, ["replay", str(bad)])
    assert result.exit_code == 2
    assert "cannot read failure file" in result.output


class ExplodingRaftNode(RaftNode):
    """A node class with a bug: its first tick raises (a job that fails on a worker)."""

    def tick(self, now: float) -> None:
        raise RuntimeError("boom in tick")


def test_a_job_that_raises_stops_the_sweep_with_a_clear_error(tmp_path):
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--algorithm", "raft", "--seeds", "3",
                                 "--duration", "1", "--workers", "1", "--out", str(out),
                                 "--json", "--node-class",
                                 "tests.test_sweep_resume:ExplodingRaftNode"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["error"] == "RuntimeError: boom in tick"
    assert "the sweep stopped after 0 of 3 seeds: RuntimeError: boom in tick" in result.stderr
    assert json.loads((out / "summary.json").read_text())["error"] == summary["error"]
