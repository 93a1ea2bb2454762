"""`run --resume`: an interrupted simulator experiment continues in its folder, running only
the runs that are missing, and ends with the summary an uninterrupted run writes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from consensus.cli import app
from consensus.experiment import execute
from tests.helpers import crash_spec, load_sweep_spec

runner = CliRunner()

SMALL = crash_spec("small", 2)


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def _run(spec: Path, out: Path, *args: str):
    return runner.invoke(app, ["run", str(spec), "--out", str(out), "--json", *args])


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_an_interrupted_run_resumes_with_only_the_missing_runs(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    whole = tmp_path / "whole"
    assert _run(spec, whole, "--workers", "1").exit_code == 0
    real_run_one, calls = execute.run_one, []

    def counted(*args, stop_at=None, **kwargs):
        calls.append(args[1:3])  # (algorithm, seed)
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return real_run_one(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(execute, "run_one", lambda *a, **k: counted(*a, stop_at=3, **k))
    stopped = _run(spec, out, "--workers", "1")
    assert stopped.exit_code == 130
    assert f"--resume --out {out}" in json.loads(stopped.stdout)["error"]
    assert _summary(out)["interrupted"] is True
    calls.clear()
    monkeypatch.setattr(execute, "run_one", counted)
    resumed = _run(spec, out, "--workers", "1", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert calls == [("paxos", 1), ("paxos", 2)]  # raft 1 and 2 finished and were kept
    assert _summary(out) == _summary(whole)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "interrupted" not in manifest  # complete now: the report says nothing of Ctrl-C
    calls.clear()
    again = _run(spec, out, "--workers", "1", "--resume")
    assert again.exit_code == 0 and calls == []


def test_resume_on_the_executor_runs_only_the_missing_runs(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    whole = tmp_path / "whole"
    assert _run(spec, whole, "--workers", "2").exit_code == 0
    real_write, writes = execute.res.write_run_result, []

    def interrupted_second(*args, **kwargs):
        writes.append(1)
        if len(writes) == 2:  # Ctrl-C while the client writes the second result
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(execute.res, "write_run_result", interrupted_second)
    assert _run(spec, out, "--workers", "2").exit_code == 130
    monkeypatch.undo()
    kept = len(list(out.rglob("metrics.json")))
    assert 1 <= kept < 4
    real_execute, asked = execute.execute_runs, []

    def counted(jobs, *args, **kwargs):
        asked.extend((j.algorithm, j.seed) for j in jobs)
        return real_execute(jobs, *args, **kwargs)

    monkeypatch.setattr(execute, "execute_runs", counted)
    resumed = _run(spec, out, "--workers", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(asked) == 4 - kept
    assert _summary(out) == _summary(whole)


def test_resume_refuses_a_folder_of_another_spec_and_needs_out(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "run"
    assert _run(spec, out, "--workers", "1", "--seeds", "1").exit_code == 0
    other = _run(spec, out, "--workers", "1", "--resume")  # seeds [1, 2] now
    assert other.exit_code == 2
    assert json.loads(other.stdout)["kind"] == "run-folder-other-spec"
    no_out = runner.invoke(app, ["run", str(spec), "--resume"])
    assert no_out.exit_code == 2 and "--out" in no_out.output
    both = _run(spec, out, "--resume", "--force")
    assert both.exit_code == 2
    same = _run(spec, out, "--workers", "1", "--seeds", "1", "--resume")
    assert same.exit_code == 0, same.output


LOAD_SWEEP = load_sweep_spec("tiny-load-sweep", 2)


def test_a_load_sweep_resumes_the_one_run_it_lacks(tmp_path, monkeypatch):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(LOAD_SWEEP)
    out = tmp_path / "run"
    assert _run(spec, out, "--workers", "2").exit_code == 0
    whole = _summary(out)
    (out / "rate-80" / "paxos" / "seed-2" / "metrics.json").unlink()  # as if never finished
    real_execute, asked = execute.execute_runs, []

    def counted(jobs, *args, **kwargs):
        asked.extend((j.spec.workload.rate, j.algorithm, j.seed) for j in jobs)
        return real_execute(jobs, *args, **kwargs)

    monkeypatch.setattr(execute, "execute_runs", counted)
    resumed = _run(spec, out, "--workers", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert asked == [(80, "paxos", 2)]
    assert _summary(out) == whole
