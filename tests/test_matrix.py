"""The differences matrix: the fault window's outcome on synthetic histories, named variants
and their n/a cells, and the command end to end on a tiny experiment in the simulator."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from consensus import variants
from consensus.cli import app
from consensus.experiment.metrics import leaderless_ms, window_metrics
from consensus.experiment.spec import parse_spec
from consensus.history import Operation
from consensus.matrix import (
    MatrixError,
    MatrixRun,
    parse_variant,
    parse_variants,
    plan_cells,
    run_matrix,
    summarise,
)
from consensus.report.matrix_report import build_matrix_report

TINY = """\
name: tiny
description: a leader crash in a three-node cluster, healed a second later
seeds: [1, 2]
cluster: {nodes: 3}
workload: {clients: 4, rate: 100, duration_s: 2.5, read_ratio: 0.5, keys: 10}
faults:
  - {at: 0.8, crash: leader}
  - {at: 1.8, heal: true}
  - {at: 1.8, restart: crashed}
"""


def _writes(times, client="c1"):
    return [Operation(client, i, f"SET k = {i}", invoke_ms=t - 2, complete_ms=t, outcome="ok")
            for i, t in enumerate(times)]


def _every(start, stop, step=10.0):
    return [start + i * step for i in range(int((stop - start) // step))]


FAULTS = [(1_000.0, "crash n1"), (3_000.0, "heal")]


@pytest.mark.parametrize("answered, outcome, outage", [
    (_every(0, 5_000), "held", 0.0),  # a write every 10 ms throughout
    (_every(0, 1_000) + _every(1_500, 5_000), "recovered", 500.0),
    # Three outages, each over quickly: the leader kept being lost.
    (_every(0, 1_000) + _every(1_300, 1_500) + _every(1_800, 2_000) + _every(2_300, 5_000),
     "unstable", 920.0),  # 300 + 310 + 310: each from the last write before it
    (_every(0, 1_000) + _every(3_400, 5_000), "after heal", 2_000.0),
    (_every(0, 1_000), "never", 2_000.0),
])
def test_outcome_of_the_fault_window(answered, outcome, outage):
    m = window_metrics(_writes(answered), FAULTS, [], [], duration_ms=5_000, end_ms=8_000)
    assert m is not None
    assert (m["start_ms"], m["end_ms"]) == (1_000.0, 3_000.0)
    assert m["outcome"] == outcome
    assert m["outage_ms"] == pytest.approx(outage, abs=10.0)
    assert m["outage_threshold_ms"] == 200.0  # 10 x a 10 ms gap is below the floor


def test_reads_do_not_hide_an_outage_and_silences_scale_with_the_write_rate():
    reads = [Operation("c2", i, "GET k", invoke_ms=t - 2, complete_ms=t, outcome="ok")
             for i, t in enumerate(_every(0, 5_000))]  # a lease keeps answering reads
    writes = _writes(_every(0, 1_000) + _every(1_600, 5_000))
    m = window_metrics(reads + writes, FAULTS, [], [], duration_ms=5_000, end_ms=8_000)
    assert m["outcome"] == "recovered" and m["outage_ms"] == pytest.approx(600, abs=10)
    assert m["throughput_ops_s"] == pytest.approx(100 + 1_400 / 10 / 2, abs=1)  # reads too
    sparse = _writes(_every(0, 1_000, 50) + _every(1_400, 5_000, 50))
    m = window_metrics(sparse, FAULTS, [], [], duration_ms=5_000, end_ms=8_000)
    assert m["outcome"] == "held"  # 400 ms < 10 x the 50 ms between writes
    assert m["outage_threshold_ms"] == 500.0
    assert window_metrics(sparse, [], [], [], duration_ms=5_000, end_ms=8_000) is None


def test_time_without_a_leader_counts_crashed_and_paused_leaders_out():
    roles = [(0.0, "n1", "leader", 1), (0.0, "n2", "follower", 1),
             (1_300.0, "n2", "candidate", 2), (1_400.0, "n2", "leader", 2)]
    # n1 crashes at 1000; n2 leads from 1400 but is paused from 2000 to 2500.
    faults = [(1_000.0, "crash n1"), (2_000.0, "pause n2"), (2_500.0, "resume n2")]
    assert leaderless_ms(roles, faults, 500.0, 3_000.0) == pytest.approx(400 + 500)
    # Before its restart's first status, a crashed leader is not counted as leading again.
    restart = [(1_000.0, "crash n1"), (1_200.0, "restart n1")]
    assert leaderless_ms(roles[:2], restart, 0.0, 2_000.0) == pytest.approx(1_000)


def test_named_variants_parse_and_bad_ones_are_refused():
    v = parse_variant("plain@quorum-loss,chained:pre_vote=false,check_quorum=false")
    assert (v.name, v.files) == ("plain", ("quorum-loss", "chained"))
    assert v.settings == {"pre_vote": False, "check_quorum": False}
    assert parse_variant("default:").settings == {}
    assert [x.name for x in parse_variants(["a:election=any b:", "c:pre_vote=true"])] == [
        "a", "b", "c"]
    for bad, words in [("plain", "NAME:key=value"), ("x:nope=1", "unknown variant 'nope'"),
                       ("x:election=sometimes", "election=sometimes")]:
        with pytest.raises(MatrixError, match=words):
            parse_variant(bad)
    with pytest.raises(MatrixError, match="two variants are named a"):
        parse_variants(["a: a:election=any"])
    with pytest.raises(MatrixError, match="names nowhere, which is not in the matrix"):
        plan_cells([parse_spec(TINY)], [parse_variant("x@nowhere:election=any")])


def test_a_variant_an_algorithm_lacks_is_an_na_cell_and_the_rest_runs(monkeypatch, tmp_path):
    real = variants.get_algorithm

    def without_election(name):  # a Multi-Paxos that offers no election switch
        algo = real(name)
        if name != "paxos":
            return algo
        return dataclasses.replace(algo, variants={k: v for k, v in algo.variants.items()
                                                   if k != "election"})

    monkeypatch.setattr(variants, "get_algorithm", without_election)
    spec = parse_spec(TINY.replace("seeds: [1, 2]", "seeds: [1]"))
    named = parse_variants(["any:election=any", "lease-alone:read_path=lease,check_quorum=false"])
    cells = plan_cells([spec], named)
    refused = {(c.variant.name, c.algorithm): c.refused for c in cells if c.spec is None}
    assert "paxos has no variant 'election'" in refused[("any", "paxos")]
    assert "only raft" in refused[("any", "paxos")]
    # Config's own rule: a lease needs check-quorum, on either algorithm.
    assert "needs check_quorum" in refused[("lease-alone", "raft")]
    run = run_matrix(cells, {"tiny": [1]})
    summary = summarise(run, [spec], named)
    status = {(c["variant"], c["algorithm"]): c["status"] for c in summary["cells"]}
    assert status == {("any", "raft"): "ran", ("any", "paxos"): "n/a",
                      ("lease-alone", "raft"): "n/a", ("lease-alone", "paxos"): "n/a"}
    assert summary["passed"] and summary["runs"] == 1
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    build_matrix_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| tiny | any | Multi-Paxos | n/a |" in md
    assert "n/a: tiny · any · Multi-Paxos: paxos has no variant 'election'" in md
    assert "- **lease-alone**: check_quorum=false,read_path=lease" in md


def test_a_failed_check_in_any_cell_fails_the_matrix():
    spec = parse_spec(TINY)
    named = parse_variants(["default:"])
    cells = plan_cells([spec], named)
    record = {"seed": 1, "outcome": "recovered", "recovery_ms": 300.0, "outages": 1,
              "leaderless_ms": 200.0, "outage_ms": 250.0, "leader_changes": 1,
              "throughput_ops_s": 90.0, "checks": {"invariants": "pass",
                                                   "linearizability": "pass"}, "failures": []}
    bad = {**record, "checks": {"invariants": "pass", "linearizability": "fail"},
           "failures": ["linearizability: stale read of k"]}
    run = MatrixRun(cells, {"tiny": [1]}, {cells[0].key: [record], cells[1].key: [bad]})
    summary = summarise(run, [spec], named)
    assert not summary["passed"]
    assert summary["failures"] == [
        "tiny · default · Multi-Paxos seed 1: linearizability: stale read of k"]


def test_the_matrix_command_writes_the_table_and_the_heat_map(tmp_path):
    # Two workers: the runs go through the executor (a local process pool), as in `run`.
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY)
    out = tmp_path / "matrix"
    result = CliRunner().invoke(app, [
        "matrix", str(spec_file), "--variants", "plain:pre_vote=false,check_quorum=false",
        "--variants", "any:election=any", "--seeds", "1-2", "--duration", "2.2",
        "--workers", "2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [(c["variant"], c["algorithm"]) for c in summary["cells"]] == [
        ("plain", "raft"), ("plain", "paxos"), ("any", "raft"), ("any", "paxos")]
    assert summary["runs"] == 8 and summary["passed"]
    assert summary["experiments"][0]["duration_s"] == 2.2
    for cell in summary["cells"]:
        assert cell["seeds"] == [1, 2]
        assert cell["outcome"] in ("held", "recovered")  # healed long before the end
        assert cell["measures"]["leaderless_ms"]["n"] == 2
    md = (out / "report.md").read_text()
    assert "All checks passed" in md
    assert "| tiny | plain | Raft |" in md
    assert "- **plain**: check_quorum=false,pre_vote=false" in md
    assert "![Heat-map](figures/matrix.png)" in md
    assert (out / "figures" / "matrix.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and "Definitions" in html
    assert "consensus-lab matrix" in json.loads((out / "manifest.json").read_text())["command"]
    # The report again, from summary.json alone, with a hand-written explanation.
    notes = tmp_path / "notes.md"
    notes.write_text("Raft's *plain* cell: **why** it differs.\n")
    again = CliRunner().invoke(app, ["matrix", "--rebuild", "--out", str(out),
                                     "--notes", str(notes)])
    assert again.exit_code == 0, again.output
    assert "## What each difference means\n\nRaft's *plain* cell" in (out / "report.md").read_text()
    assert "<strong>why</strong>" in (out / "report.html").read_text()


def test_the_matrix_command_refuses_a_bad_variant_and_a_fault_outside_the_duration(tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY)
    runner = CliRunner()
    bad = runner.invoke(app, ["matrix", str(spec_file), "--variants", "x:election=maybe",
                              "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "election=maybe" in bad.output
    short = runner.invoke(app, ["matrix", str(spec_file), "--duration", "1",
                                "--out", str(tmp_path / "b")])
    assert short.exit_code == 2 and "not before the end of the workload" in short.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_gallery_index_links_the_matrix_only_when_its_report_is_there(tmp_path):
    from consensus.report.gallery import differences_section

    assert differences_section(tmp_path) == ""
    (tmp_path / "differences").mkdir()
    (tmp_path / "differences" / "report.md").write_text("# Differences matrix\n")
    assert "[differences/report.md](differences/report.md)" in differences_section(tmp_path)


# -- resuming ---------------------------------------------------------------------------------

def _counting_run_job(monkeypatch, stop_after: int | None = None):
    """Count the runs the matrix really makes; Ctrl-C (KeyboardInterrupt) on run stop_after+1."""
    import consensus.matrix as matrix_module

    real, ran = matrix_module.run_job, []

    def counted(job):
        if stop_after is not None and len(ran) == stop_after:
            raise KeyboardInterrupt
        ran.append((job.algorithm, job.seed))
        return real(job)

    monkeypatch.setattr(matrix_module, "run_job", counted)
    return ran


def test_an_interrupted_matrix_resumes_with_only_the_missing_runs(monkeypatch, tmp_path):
    from consensus.matrix import MatrixFolder, MatrixInterrupted

    spec = parse_spec(TINY)
    named = parse_variants(["default:"])
    cells = plan_cells([spec], named)
    whole = summarise(run_matrix(cells, {"tiny": [1, 2]}), [spec], named)
    folder = MatrixFolder(tmp_path)
    ran = _counting_run_job(monkeypatch, stop_after=3)
    with pytest.raises(MatrixInterrupted) as stop:
        run_matrix(cells, {"tiny": [1, 2]}, folder=folder)
    assert (stop.value.done, stop.value.total) == (3, 4)
    assert len(list((tmp_path / "runs").rglob("seed-*.json"))) == 3
    first = list(ran)
    ran.clear()
    monkeypatch.undo()
    ran = _counting_run_job(monkeypatch)
    resumed = summarise(run_matrix(cells, {"tiny": [1, 2]}, folder=folder), [spec], named)
    assert len(ran) == 1 and ran[0] not in first
    assert resumed == whole
    # A changed experiment file has another spec hash: its runs are not taken from the folder.
    changed = parse_spec(TINY.replace("rate: 100", "rate: 80"))
    ran.clear()
    run_matrix(plan_cells([changed], named), {"tiny": [1]}, folder=folder)
    assert sorted(ran) == [("paxos", 1), ("raft", 1)]


def test_the_matrix_command_refuses_its_folder_and_resumes_after_ctrl_c(monkeypatch, tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY)
    out = tmp_path / "matrix"
    args = ["matrix", str(spec_file), "--seeds", "1-2", "--workers", "1", "--out", str(out),
            "--json"]
    runner = CliRunner()
    _counting_run_job(monkeypatch, stop_after=2)
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert "--resume --out" in stopped.output and not (out / "summary.json").exists()
    monkeypatch.undo()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--resume" in refused.output
    ran = _counting_run_job(monkeypatch)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(ran) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 4 and summary["passed"]
    ran.clear()
    again = runner.invoke(app, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert len(ran) == 4
    assert json.loads((out / "summary.json").read_text())["cells"] == summary["cells"]
