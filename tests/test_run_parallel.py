"""`run` on the executor: two workers write the run folder one worker writes (same summary,
metrics and trace hashes), for plain experiments and load sweeps alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consensus.cli import app
from consensus.cli_experiment import executor_for
from consensus.experiment.spec import parse_spec
from tests.helpers import crash_spec, load_sweep_spec

runner = CliRunner()

SMALL = crash_spec("small", 3)

LOAD_SWEEP = load_sweep_spec("tiny-load-sweep", 2)


def _run(tmp_path: Path, text: str, name: str, *args: str) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    out = tmp_path / name
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return out


def _runs(out: Path) -> dict[str, dict]:
    """Every run's metrics and trace hash (not check details: they carry the checker's time)."""
    found = {}
    for path in sorted(out.rglob("metrics.json")):
        data = json.loads(path.read_text())
        found[str(path.relative_to(out))] = {"metrics": data["metrics"],
                                             "trace": data["info"]["trace_sha256"],
                                             "verdicts": [c["verdict"] for c in data["checks"]]}
    return found


@pytest.mark.parametrize(("text", "runs"), [(SMALL, 6), (LOAD_SWEEP, 8)])
def test_two_workers_write_what_one_writes(tmp_path, text, runs):
    one = _run(tmp_path, text, "one", "--workers", "1")
    two = _run(tmp_path, text, "two", "--workers", "2")
    assert len(_runs(one)) == runs
    assert _runs(one) == _runs(two)
    summaries = sorted(p.relative_to(one) for p in one.rglob("summary.json"))
    assert summaries == sorted(p.relative_to(two) for p in two.rglob("summary.json"))
    for rel in summaries:
        assert (one / rel).read_text() == (two / rel).read_text()
    assert sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["executor"] == "local process pool (2 workers)"
    assert "executor" not in json.loads((one / "manifest.json").read_text())


def test_the_default_worker_count_fits_the_runs_and_mqtt_stays_serial():
    small = parse_spec(SMALL)
    assert executor_for(small, "local", 1) is None  # today's path: in this process
    chosen = executor_for(small, "dask", None)
    assert chosen is not None and chosen.kind == "dask" and 1 <= chosen.workers <= 6
    one_run = small.model_copy(update={"seeds": [1], "algorithms": ["raft"]})
    assert executor_for(one_run, "local", None) is None
    mqtt = small.model_copy(update={"transport": "mqtt"})
    assert executor_for(mqtt, "dask", 4) is None


def test_run_rejects_a_bad_executor(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    result = runner.invoke(app, ["run", str(spec), "--executor", "threads"])
    assert result.exit_code == 2
    assert "unknown executor 'threads'" in result.output


def test_ctrl_c_with_workers_keeps_the_finished_runs_and_exits_130(tmp_path, monkeypatch):
    from consensus.experiment import execute

    real_write = execute.res.write_run_result
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C while the client writes the second result
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(execute.res, "write_run_result", interrupted_second)
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--json",
                                 "--workers", "2"])
    assert result.exit_code == 130
    assert json.loads(result.stdout)["kind"] == "interrupted"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["passed"] is False
    kept = sorted(p.parent.relative_to(out) for p in out.rglob("metrics.json"))
    assert 1 <= len(kept) < 6
    assert sum(len(a["seeds"]) for a in summary["algorithms"].values()) == len(kept)
    assert (out / "report.md").is_file()
