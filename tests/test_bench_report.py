"""The benchmark's Markdown page: the tables the terminal shows, CPU per operation included,
and the committed reports/bench/README.md is what its bench.json gives."""

from __future__ import annotations

import json
from pathlib import Path

from consensus.bench import report
from consensus.bench.run import write_outputs

BENCH = Path(__file__).resolve().parent.parent / "reports" / "bench"


def _result() -> dict:
    step = {"offered": 100, "throughput": 100, "sustained": True, "p50_ms": 3.0, "p99_ms": 5.0}
    return {
        "manifest": {"broker": {"kind": "mosquitto", "version": "2.0.11"},
                     "mqtt_client": "gmqtt", "git": {"commit": "0123456789abcdef"},
                     "machine": {"cpus": 2, "cpu": "test"}, "wall_s": 12.0},
        "throughput": [{
            "label": "raft 3n", "system": "raft", "nodes": 3, "fsync": True,
            "max_sustained_ops_s": 8000,
            "search": {"steps": [step]},
            "latency": {"light": step, "50%": {**step, "extra": {"cpu_us_per_op": {
                "leader": 40.0, "follower": 15.0, "broker": 20.0, "clients": 30.0}}}},
        }],
        "failover": [{"algorithm": "raft", "rounds": 3, "p50_ms": 150.0, "p99_ms": 200.0,
                      "max_ms": 210.0}],
    }


def test_the_markdown_page_has_the_cpu_table_and_every_terminal_table():
    result = _result()
    page = report.markdown(result)
    titles = [s.title for s in report.sections(result)]
    assert [t.title for t in report.tables(result)] == titles
    for title in titles:
        assert f"## {title}" in page
    # 40 (leader) + 2 x 15 (followers) + 20 (broker) + 30 (clients) = 120 µs per operation.
    assert "| system | leader | follower | broker | clients | total |" in page
    assert "| raft 3n | 40 | 15 | 20 | 30 | 120 |" in page
    assert "Commit 0123456789ab; 2 CPUs (test); broker mosquitto 2.0.11" in page
    assert "(throughput_latency.png)" in page


def test_the_bench_writes_the_page_beside_bench_json(tmp_path):
    paths = write_outputs(_result(), tmp_path)
    assert tmp_path / "README.md" in paths
    report.main([str(tmp_path / "bench.json")])  # rebuilt from the JSON alone: the same page
    assert (tmp_path / "README.md").read_text() == report.markdown(_result())


def test_the_committed_page_is_the_committed_bench_json():
    result = json.loads((BENCH / "bench.json").read_text())
    assert (BENCH / "README.md").read_text() == report.markdown(result), (
        "regenerate it: python -m consensus.bench.report reports/bench/bench.json")
    assert "Where the CPU goes" in report.markdown(result)


def test_merge_on_the_command_line_quotes_ranges_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from consensus.cli import app

    runner = CliRunner()
    first, second = tmp_path / "a", tmp_path / "b"
    write_outputs(_result(), first)
    faster = _result()
    faster["throughput"][0]["max_sustained_ops_s"] = 10000
    write_outputs(faster, second)
    out = tmp_path / "merged"
    res = runner.invoke(app, ["bench", "--merge", str(first / "bench.json"), "--merge",
                              str(second / "bench.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    merged = json.loads((out / "bench.json").read_text())
    assert len(merged["throughput_runs"]) == 2
    assert merged["summary"][0]["max_sustained_ops_s"]["median"] == 9000
    page = (out / "README.md").read_text()
    assert "| raft 3n | 2 | 9,000 | 8,000-10,000 | 22% |" in page
    (tmp_path / "broken.json").write_text("{not json")
    res = runner.invoke(app, ["bench", "--merge", str(tmp_path / "broken.json"), "--out",
                              str(out)])
    assert res.exit_code == 2 and "cannot read" in res.output
    (tmp_path / "empty.json").write_text("{}")
    res = runner.invoke(app, ["bench", "--merge", str(tmp_path / "empty.json"), "--out",
                              str(out)])
    assert res.exit_code == 2 and "has a throughput section" in res.output


RECORDED = Path(__file__).resolve().parent / "data" / "bench_quick.json"


def test_a_recorded_quick_run_renders_the_issue_15_tables():
    """A real `consensus-lab bench --quick` recorded on a loaded 2-core machine (its figures
    mean nothing; its shape is what the report must render)."""
    result = json.loads(RECORDED.read_text())
    page = report.markdown(result)
    titles = [s.title for s in report.sections(result)]
    for start in ("2/5/6. Max sustained", "Where the CPU goes", "Memory:", "Bytes on the wire",
                  "Goals (issue 15"):
        assert any(t.startswith(start) for t in titles), start
    labels = {s["label"] for s in result["throughput"]}
    assert {"raft 3n", "paxos 3n in-process no-fsync", "null 3n", "pysyncobj 3n"} <= labels
    # The in-process rows are in the CPU table, with no load generator processes.
    cpu = next(s for s in report.sections(result) if s.title.startswith("Where the CPU"))
    inproc = [r for r in cpu.rows if "in-process" in r[0]]
    assert inproc and all(r[4] == "-" for r in inproc)
    # Every issue-15 goal has a measured value and a verdict (or is a figure shown).
    goals = {g["goal"]: g for g in result["goals"]}
    for algorithm in ("raft", "paxos"):
        for suffix in ("no-fsync", "in-process no-fsync"):
            assert f"{algorithm} 3n {suffix} >= 1.5x PySyncObj sustained" in goals
        assert goals[f"{algorithm} failover p99 < 400 ms"]["met"] in (True, False)
    assert "(shown)" in page
    # Memory: a figure where the run had one, "n/a" and the reason where compaction is absent.
    memory = next(s for s in report.sections(result) if s.title.startswith("Memory"))
    assert any(r[1] == "off" and r[2] != "n/a" for r in memory.rows)
    assert all(r[2] == "n/a" or r[3].count("->") == 1 for r in memory.rows)
    # Bytes per operation by kind: client traffic counted at the broker, protocol by kind.
    wire = next(s for s in report.sections(result) if s.title.startswith("Bytes"))
    kinds = {r[1] for r in wire.rows}
    assert {"client request", "client reply", "total"} <= kinds
    assert kinds & {"AppendEntries", "Accept"}
