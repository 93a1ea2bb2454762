"""Errors and interruptions as a user meets them (issue 18, item 5): one clean line, JSON
for --json, nothing lost on Ctrl-C, no silent mixing of runs."""

import asyncio
import json
import re
import shutil
import socket

import pytest
from typer.testing import CliRunner

from consensus.cli import app
from consensus.experiment import execute
from consensus.experiment.execute import RunInterrupted, run_experiment
from consensus.experiment.spec import parse_spec

runner = CliRunner()

TINY = """\
name: tiny
description: a small healthy run for the CLI tests
algorithms: [raft, paxos]
seeds: [1, 2]
cluster: {nodes: 3}
workload: {clients: 2, duration_s: 1, keys: 3}
settle_s: 0.5
"""


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- help and simulate --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["simulate"], ["run"], ["cluster", "up"], ["client"],
                                     ["sweep"], ["compare"], ["bench"]])
def test_help_wraps_at_80_columns_and_never_truncates(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    if command == ["simulate"]:
        assert "--election-timeout-ms" in result.output
    if command == ["cluster", "up"]:
        assert "mqtt://127.0.0.1:1883" in result.output


@pytest.mark.parametrize("group", [[], ["cluster"]])
def test_command_lists_show_each_first_paragraph_whole(group):
    result = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:", 1)[1]
    assert "..." not in commands and "…" not in commands
    flat = " ".join(commands.split())
    if not group:
        assert "compare.html and .md" in flat and "(3 and 5 nodes)" in flat
    else:
        assert "as last published" in flat


def test_simulate_says_the_last_seconds_are_a_settle_period():
    help_text = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"}).output
    assert "settle period" in " ".join(help_text.split())
    result = runner.invoke(app, ["simulate", "--duration", "2", "--nodes", "3"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "7.0 s (2 + 5 settle)" in result.stdout
    assert "5 s settle period" in result.stdout
    data = json.loads(runner.invoke(app, ["simulate", "--duration", "2", "--nodes", "3",
                                          "--json"]).stdout)
    assert data["settle_s"] == 5 and data["simulated_s"] == pytest.approx(7.0)


def test_simulate_json_errors_are_json_on_stdout():
    result = runner.invoke(app, ["simulate", "--algorithm", "zab", "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["kind"] == "usage" and "unknown algorithm 'zab'" in error["error"]
    result = runner.invoke(app, ["simulate", "--election-timeout-ms", "x-y", "--json"])
    assert result.exit_code == 2 and "MIN-MAX" in json.loads(result.stdout)["error"]


# -- check ---------------------------------------------------------------------------------------

def test_check_prints_explanations_as_plain_text(tmp_path):
    long_value = "[bold]" + "a value long enough to be wrapped at eighty columns " * 2
    ops = [
        {"client": "c1", "seq": 1, "command": "SET x = [/b]", "invoke_ms": 0,
         "complete_ms": 10, "outcome": "ok", "result": "OK"},
        {"client": "c2", "seq": 1, "command": "GET x", "invoke_ms": 20, "complete_ms": 30,
         "outcome": "ok", "result": long_value},
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(op) + "\n" for op in ops))
    result = runner.invoke(app, ["check", str(path)], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 1, result.output
    assert "NOT LINEARIZABLE" in result.stdout
    assert "c1#1 SET x = [/b]  [ok, T=0.000s..0.010s]" in result.stdout
    # The explanation's own line, not re-wrapped: the whole value and its annotation.
    assert f"c2#1 GET x -> {long_value!r}  [ok, T=0.020s..0.030s]" in result.stdout


# -- run: seeds, --out, Ctrl-C -------------------------------------------------------------------

def test_a_reversed_seed_range_is_named(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    result = runner.invoke(app, ["run", str(spec), "--seeds", "5-1"])
    assert result.exit_code == 2
    assert "5-1 is reversed" in result.output and "no seeds" not in result.output
    result = runner.invoke(app, ["run", str(spec), "--seeds", "5-1", "--json"])
    assert result.exit_code == 2 and "reversed" in json.loads(result.stdout)["error"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished run folder of TINY (seeds 1, 2), made once for the tests that read it."""
    root = tmp_path_factory.mktemp("tiny")
    spec = root / "tiny.yaml"
    spec.write_text(TINY)
    out = root / "run"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return spec, out


def test_out_into_an_existing_run_is_refused_unless_forced(tiny_run, tmp_path):
    spec, done = tiny_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--seeds", "3"])
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--force" in result.output
    assert sorted(p.name for p in (out / "raft").iterdir()) == ["seed-1", "seed-2"]
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--seeds", "3", "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["kind"] == "run-folder-exists"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--seeds", "3",
                                 "--force", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "raft").iterdir()) == ["seed-3"]
    assert json.loads(result.stdout)["algorithms"]["raft"]["seeds"] == [3]


def _stop_at(label_part: str):
    """A progress factory that raises KeyboardInterrupt (Ctrl-C) inside the run it names."""
    def factory(label: str):
        def advance(fraction: float) -> None:
            if label_part in label and fraction > 0.2:
                raise KeyboardInterrupt
        return advance
    return factory


def test_ctrl_c_keeps_the_finished_runs_and_the_report_draws_them(tmp_path):
    spec = parse_spec(TINY)
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as info:
        run_experiment(spec, out, progress=_stop_at("Raft seed 2"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary == info.value.summary
    assert summary["interrupted"] is True and summary["passed"] is False
    assert summary["algorithms"]["raft"]["seeds"] == [1]
    assert "interrupted: 1 of 4 runs finished" in summary["failures"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["interrupted"] and "Interrupted (Ctrl-C)" in manifest["note"]
    assert not (out / "raft" / "seed-2").exists()
    assert (out / "report.md").is_file()
    rebuilt = runner.invoke(app, ["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "Interrupted (Ctrl-C)" in (out / "report.md").read_text()


def test_ctrl_c_in_the_run_command_says_so_and_exits_130(tmp_path, monkeypatch):
    real_run_one = execute.run_one
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_one(*args, **kwargs)

    monkeypatch.setattr(execute, "run_one", interrupted_second)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    # One worker: the runs go one after another through run_one, in this process.
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--json",
                                 "--workers", "1"])
    assert result.exit_code == 130
    error = json.loads(result.stdout)
    assert error["kind"] == "interrupted" and "1 of 4 runs finished" in error["error"]
    assert f"consensus-lab report {out}" in result.stderr
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


def test_compare_prints_the_table(tiny_run, tmp_path):
    _, done = tiny_run
    other = tmp_path / "again"
    shutil.copytree(done, other)
    result = runner.invoke(app, ["compare", str(done), str(other), "--out",
                                 str(tmp_path / "cmp")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "median across seeds" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "latency p50" in line)
    assert "Raft" in row and "+0.0 ms" in row
    assert "compare" in result.stdout and (tmp_path / "cmp").is_dir()


# -- the bus commands without a broker or a cluster ----------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record_cluster(root, broker: str) -> None:
    d = root / ".consensus-lab" / "demo"
    d.mkdir(parents=True)
    (d / "cluster.json").write_text(json.dumps({
        "name": "demo", "algorithm": "raft", "nodes": {"n1": 2**22 + 7}, "broker": broker,
        "broker_pid": None, "broker_kind": "external", "library": "gmqtt", "fsync": True,
        "heartbeat_ms": 50, "election_timeout_ms": [150, 300], "directory": str(d)}))


def test_cluster_status_with_the_broker_gone_is_one_clean_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"mqtt://127.0.0.1:{_closed_port()}"
    _record_cluster(tmp_path, url)
    result = runner.invoke(app, ["cluster", "status"])
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert line.startswith(f"error: cannot reach broker {url}") and "Traceback" not in line
    result = runner.invoke(app, ["cluster", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["kind"] == "broker-unreachable"


def test_client_json_errors_are_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["client", "GET x", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["kind"] == "no-cluster"


def test_cluster_down_twice_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _record_cluster(tmp_path, "mqtt://127.0.0.1:1")
    first = runner.invoke(app, ["cluster", "down"])
    assert first.exit_code == 0, first.output
    assert "nothing was running" in first.stdout  # the recorded pid is long gone
    second = runner.invoke(app, ["cluster", "down"])
    assert second.exit_code == 0, second.output
    assert "nothing to stop" in second.stdout


def test_the_no_majority_error_is_one_short_sentence():
    from consensus.client import ClusterClient, ClusterUnavailable

    class Silent:  # a broker connection on which no node ever answers
        def publish(self, topic: str, payload: bytes) -> None:
            pass

    from consensus.retry import RetryPolicy

    client = ClusterClient("mqtt://127.0.0.1:1", "demo", nodes=["n1", "n2", "n3", "n4", "n5"],
                           deadline_s=0.2, policy=RetryPolicy(min_attempt_ms=10.0,
                                                              max_attempt_ms=10.0))
    client._mqtt = Silent()  # type: ignore[assignment]
    with pytest.raises(ClusterUnavailable) as info:
        asyncio.run(client.request("SET x = 100"))
    message = str(info.value)
    assert len(message) < 160, message
    assert re.fullmatch(r"no majority answered 'SET x = 100': \d+ attempts at n1, n2, n3, n4, "
                        r"n5 over 0\.2s \(last: n\d did not answer in time\)", message), message
