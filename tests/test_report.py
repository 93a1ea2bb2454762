"""Reports from a small saved run: files, images, self-containment, the numbers, the CI."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("seaborn")

from consensus.experiment import results as res
from consensus.experiment.runner import run_sim
from consensus.experiment.spec import parse_spec
from consensus.report import build_report, compare_runs
from consensus.report.data import Fault, load, parse_faults
from consensus.report.stats import (
    bootstrap_mean,
    fmt_number,
    paired_bootstrap,
    verdict,
)

PNG = b"\x89PNG\r\n\x1a\n"

SPEC = """
name: tiny-crash
description: Three nodes, one leader crash, two seeds.
seeds: [1, 2]
cluster: {nodes: 3}
workload: {clients: 2, rate: 60, duration_s: 2.5, read_ratio: 0.5, keys: 5}
faults:
  - {at: 1, crash: leader}
settle_s: 1
"""


def _make_run(run_dir: Path, spec_text: str = SPEC) -> Path:
    spec = parse_spec(spec_text)
    res.write_spec_and_manifest(run_dir, spec, res.manifest(spec, spec.seeds, "sim"))
    results = []
    for algorithm in spec.algorithms:
        for seed in spec.seeds:
            result = run_sim(spec, algorithm, seed)
            res.write_run_result(run_dir, result)
            results.append(result)
    res.write_summary(run_dir, res.summarise(results, spec))
    return run_dir


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_run(tmp_path_factory.mktemp("run") / "tiny-crash")


@pytest.fixture(scope="module")
def report_files(saved_run: Path) -> list[Path]:
    return build_report(saved_run)


def test_report_files_exist_and_images_are_pngs(saved_run: Path,
                                                report_files: list[Path]) -> None:
    assert saved_run / "report.html" in report_files
    assert saved_run / "report.md" in report_files
    pngs = [p for p in report_files if p.suffix == ".png"]
    names = {p.stem for p in pngs}
    assert {"latency-ecdf", "throughput", "messages-per-op", "sequence"} <= names
    for p in report_files:
        assert p.exists() and p.stat().st_size > 0
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 2000, p


def test_html_is_self_contained(saved_run: Path, report_files: list[Path]) -> None:
    text = (saved_run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "<script" not in text
    images = re.findall(r'<img[^>]+src="([^"]+)"', text)
    # Figures are embedded as SVG (sharp at any zoom); the SVG itself fetches nothing either.
    assert images and all(src.startswith("data:image/svg+xml;base64,") for src in images)
    for src in images:
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert not re.search(r"""(src|href)\s*=\s*["']\s*(https?:)?//""", svg, re.I)


def test_markdown_links_images_beside_it(saved_run: Path, report_files: list[Path]) -> None:
    text = (saved_run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert (saved_run / link).exists(), link


def test_summary_table_matches_summary_json(saved_run: Path, report_files: list[Path]) -> None:
    summary = json.loads((saved_run / "summary.json").read_text())
    text = (saved_run / "report.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3:
            rows[cells[0]] = cells
    algos = list(summary["algorithms"])
    for metric in summary["metrics"]:
        label, unit = metric["label"], metric["unit"]
        row = rows[f"{label} ({unit})" if unit else label]
        for i, algorithm in enumerate(algos, start=1):
            expected = summary["algorithms"][algorithm]["median"][label]
            assert row[i] == fmt_number(expected), (label, algorithm, row[i], expected)


def test_passing_run_shows_green_banner(saved_run: Path, report_files: list[Path]) -> None:
    html = (saved_run / "report.html").read_text()
    assert "All checks passed" in html
    assert "CHECK FAILED" not in html


def test_failed_check_is_impossible_to_miss(saved_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "failed"
    shutil.copytree(saved_run, run, ignore=shutil.ignore_patterns("report.*", "figures"))
    summary = json.loads((run / "summary.json").read_text())
    algorithm = next(iter(summary["algorithms"]))
    summary["algorithms"][algorithm]["checks"]["seed-1"]["linearizability"] = "fail"
    summary["algorithms"][algorithm]["passed"] = False
    summary["passed"] = False
    summary["failures"] = [f"{algorithm} seed 1: linearizability: stale read of k1"]
    (run / "summary.json").write_text(json.dumps(summary))
    metrics_path = run / algorithm / "seed-1" / "metrics.json"
    doc = json.loads(metrics_path.read_text())
    doc["checks"] = [c if c["name"] != "linearizability" else
                     {**c, "verdict": "fail", "detail": "stale read of k1"} for c in doc["checks"]]
    metrics_path.write_text(json.dumps(doc))
    build_report(run)
    html = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    banner = html.index('class="banner bad"')
    assert banner < html.index("<h2>Correctness</h2>")  # at the top, before everything
    assert "CHECK FAILED" in html and "stale read of k1" in html
    assert '<td class="fail">FAIL</td>' in html
    assert "All checks passed" not in html
    assert md.index("CHECK FAILED") < md.index("## Correctness")


def test_compare_two_runs(saved_run: Path, tmp_path: Path) -> None:
    other = _make_run(tmp_path / "tiny-crash-slow",
                      SPEC.replace("name: tiny-crash", "name: tiny-crash-slow").replace(
                          "seeds: [1, 2]", "seeds: [1, 2]\ntiming: {heartbeat_ms: 100}"))
    written = compare_runs(saved_run, other, tmp_path / "cmp")
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "timing.heartbeat_ms" in html  # what differs between the runs
    assert all(p.exists() for p in written)


# -- faults, as the runners record them --------------------------------------------------------

def _fault(t: float, action: str, label: str, nodes: tuple[str, ...] = (),
           duration_ms: float | None = None, *, skipped: bool = False,
           final: bool = False) -> dict:
    return {"type": "fault", "t": t, "action": action, "label": label, "nodes": list(nodes),
            "duration_ms": duration_ms, "skipped": skipped, "final": final}


def test_parse_faults_reads_structured_events() -> None:
    ids = ("n1", "n2", "n3", "n4", "n5")
    events = [
        {"type": "role", "t": 500.0, "node": "n1", "role": "leader", "term": 1},
        _fault(1000.0, "crash", "crash n3", ("n3",)),
        _fault(1500.0, "resume", "resume paused", skipped=True),  # could not fire: not drawn
        _fault(2000.0, "partition", "partition n1,n2 | n3,n4,n5", ids),
        _fault(2500.0, "isolate", "isolate n1", ("n1",)),  # a new split ends the old one
        _fault(3000.0, "heal", "heal", ids),
        _fault(3500.0, "loss", "loss 30% for 1.0s", ids, 1000.0),
        _fault(4000.0, "restart", "restart n3", ("n3",)),
        _fault(5000.0, "cut", "cut n1 -> n2", ("n1", "n2")),
        _fault(6000.0, "heal", "heal all, resume and restart every node", ids, final=True),
    ]
    assert parse_faults(events, end_ms=7000.0) == [
        Fault(1000.0, "crash", "crash n3", nodes=("n3",)),
        Fault(2000.0, "partition", "partition n1,n2 | n3,n4,n5", 2500.0, ids),
        Fault(2500.0, "isolate", "isolate n1", 3000.0, ("n1",)),
        Fault(3000.0, "heal", "heal"),
        Fault(3500.0, "loss", "loss 30% for 1.0s", 4500.0, ids),
        Fault(4000.0, "restart", "restart n3", nodes=("n3",)),
        Fault(5000.0, "cut", "cut n1 -> n2", 6000.0, ("n1", "n2")),  # closed by the final heal
    ]
    # A split still in force at the end lasts until the end of the run.
    assert parse_faults(events[:4], end_ms=7000.0)[-1].end_ms == 7000.0


def test_saved_run_records_its_faults(saved_run: Path) -> None:
    data = load(saved_run)
    for algorithm in data.algorithms:
        (crash,) = data.faults(algorithm)
        assert crash.action == "crash" and crash.at_ms == pytest.approx(1000.0)
        assert len(crash.nodes) == 1 and crash.label == f"crash {crash.nodes[0]}"


def test_charts_line_messages_up_by_their_declared_phase() -> None:
    from consensus.report.charts import PALETTE, algorithm_colour, is_reply, phase_of

    for a, b in (("RequestVote", "Prepare"), ("RequestVoteReply", "Promise"),
                 ("AppendEntries", "Accept"), ("AppendEntriesReply", "Accepted"),
                 ("AppendEntries (heartbeat)", "Accept (heartbeat)")):
        assert phase_of(a) == phase_of(b), (a, b)
    assert phase_of("Commit")[0] == "commit notice" and phase_of("Nack")[0] == "rejection"
    assert phase_of("NoSuchMessage")[0] == "other"
    assert is_reply("Promise") and is_reply("Nack") and not is_reply("Commit")
    assert (algorithm_colour("raft"), algorithm_colour("paxos")) == (PALETTE[0], PALETTE[1])


# -- the statistics ----------------------------------------------------------------------------

def test_bootstrap_on_a_hand_made_paired_sample() -> None:
    raft = [9.0, 8.8, 9.3, 9.1, 8.9, 9.2]
    paxos = [7.4, 7.3, 7.6, 7.5, 7.2, 7.6]  # 1.6 fewer each time, give or take 0.1
    interval = paired_bootstrap(raft, paxos)
    assert interval is not None and interval.n == 6
    assert interval.estimate == pytest.approx(-1.6166, abs=1e-3)
    assert interval.lo is not None and interval.hi is not None
    assert -1.75 < interval.lo < interval.estimate < interval.hi < -1.5
    assert interval.excludes_zero
    assert paired_bootstrap(raft, paxos) == interval  # seeded: reproducible
    words = verdict("messages per op", "", "Raft", "Multi-Paxos", interval)
    assert words is not None
    assert words.startswith("Multi-Paxos sends 1.6 fewer messages per operation than Raft")
    assert "95% CI 1.5" in words or "95% CI 1.6" in words


def test_no_verdict_when_the_interval_includes_zero() -> None:
    interval = paired_bootstrap([200.0, 210.0, 190.0], [150.0, 260.0, 170.0])
    assert interval is not None and not interval.excludes_zero
    assert verdict("failover: elect", "ms", "Raft", "Multi-Paxos", interval) is None


def test_bootstrap_needs_two_values_for_an_interval() -> None:
    one = bootstrap_mean([3.0])
    assert one.lo is None and not one.excludes_zero
    assert paired_bootstrap([1.0, None], [2.0, 5.0]) == bootstrap_mean([1.0])
    assert paired_bootstrap([None], [1.0]) is None
