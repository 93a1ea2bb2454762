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
from consensus.report.build import figure_definitions
from consensus.report.data import Fault, load, parse_faults
from consensus.report.gallery import checks_word, index_checks
from consensus.report.render import Report, Table, to_html, to_markdown
from consensus.report.stats import (
    Interval,
    chance_note,
    fmt_number,
    paired_t,
    t_cdf,
    t_interval,
    t_quantile,
    verdict,
    welch_t,
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

@pytest.mark.parametrize(("df", "q975", "q995"), [
    (1, 12.7062, 63.6567), (2, 4.3027, 9.9248), (3, 3.1824, 5.8409), (4, 2.7764, 4.6041),
    (5, 2.5706, 4.0321), (9, 2.2622, 3.2498), (10, 2.2281, 3.1693), (30, 2.0423, 2.7500),
    (100, 1.9840, 2.6259)])
def test_t_quantiles_match_the_printed_table(df: int, q975: float, q995: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=1e-4)
    assert t_quantile(0.995, df) == pytest.approx(q995, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q975, abs=1e-4)  # symmetric
    assert t_cdf(t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_t_tends_to_the_normal_and_df1_is_cauchy() -> None:
    assert t_quantile(0.975, 5000) == pytest.approx(1.95996, abs=1e-3)
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/pi
    assert t_cdf(0.0, 7) == 0.5


def test_t_interval_against_a_hand_computed_value() -> None:
    # diffs 1..5: mean 3, sd sqrt(2.5), se sqrt(2.5/5) = 0.70711; t(0.975, 4) = 2.77645
    # half-width 2.77645 * 0.70711 = 1.96324
    interval = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (interval.estimate, interval.n) == (3.0, 5)
    assert interval.lo == pytest.approx(1.03676, abs=1e-4)
    assert interval.hi == pytest.approx(4.96324, abs=1e-4)
    assert interval.is_finding


def test_paired_t_on_a_hand_made_paired_sample() -> None:
    raft = [9.0, 8.8, 9.3, 9.1, 8.9, 9.2]
    paxos = [7.4, 7.3, 7.6, 7.5, 7.2, 7.6]  # 1.6 fewer each time, give or take 0.1
    interval = paired_t(raft, paxos)
    assert interval is not None and interval.n == 6
    # diffs -1.6 -1.5 -1.7 -1.6 -1.7 -1.6: mean -1.61667, sd 0.075277, se 0.030732,
    # t(0.975, 5) = 2.57058: half-width 0.078999
    assert interval.estimate == pytest.approx(-1.61667, abs=1e-4)
    assert interval.lo == pytest.approx(-1.69567, abs=1e-4)
    assert interval.hi == pytest.approx(-1.53767, abs=1e-4)
    words = verdict("messages per op", "", "Raft", "Multi-Paxos", interval)
    assert words == ("Multi-Paxos sends 1.6 fewer messages per operation than Raft "
                     "(95% CI 1.5\u20131.7, n = 6 seeds)")


def test_welch_interval_for_runs_that_do_not_share_seeds() -> None:
    # means 2 and 5.5; se^2 = 1/3 + (5/3)/4 = 0.75; Welch df = 4.96, rounded down to 4
    interval = welch_t([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    assert interval is not None and interval.n == 3
    assert interval.estimate == pytest.approx(3.5)
    half = 2.776445 * 0.75 ** 0.5
    assert (interval.lo, interval.hi) == (pytest.approx(3.5 - half, abs=1e-4),
                                          pytest.approx(3.5 + half, abs=1e-4))


def test_two_identical_differences_are_exploratory_not_a_finding() -> None:
    # The "95% CI 1.0-1.0": two seeds that happen to agree prove nothing.
    interval = paired_t([1.0, 2.0], [2.0, 3.0])
    assert interval is not None and interval.excludes_zero and interval.exploratory
    assert not interval.is_finding
    assert verdict("leader changes", "", "Raft", "Multi-Paxos", interval) is None
    # Three seeds excluding zero: still fewer than five, still no finding.
    three = paired_t([10.0, 11.0, 12.0], [20.0, 22.0, 21.0])
    assert three is not None and three.excludes_zero and three.exploratory
    assert verdict("failover: elect", "ms", "Raft", "Multi-Paxos", three) is None


def test_no_verdict_when_the_interval_includes_zero() -> None:
    interval = paired_t([200.0, 210.0, 190.0, 205.0, 195.0], [150.0, 260.0, 170.0, 250.0, 180.0])
    assert interval is not None and not interval.excludes_zero and not interval.exploratory
    assert verdict("failover: elect", "ms", "Raft", "Multi-Paxos", interval) is None


def test_an_interval_needs_two_values() -> None:
    one = t_interval([3.0])
    assert one.lo is None and not one.excludes_zero
    assert paired_t([1.0, None], [2.0, 5.0]) == t_interval([1.0])
    assert paired_t([None], [1.0]) is None


def test_chance_note_counts_comparisons() -> None:
    intervals = [Interval(1.0, -1.0, 3.0, 5)] * 15 + [Interval(2.0, 1.0, 3.0, 6)]
    note = chance_note([*intervals, None, Interval(1.0, None, None, 1)])
    assert note.startswith("16 comparisons, each with a 95% interval")
    assert "about 0.8 would exclude zero by chance alone" in note
    assert "1 worded as finding;" in note


# -- what the reports say about their statistics ----------------------------------------------

def test_few_seeds_make_an_exploratory_report_with_n_beside_each_interval(
        saved_run: Path, report_files: list[Path]) -> None:
    md = (saved_run / "report.md").read_text()
    html = (saved_run / "report.html").read_text()
    assert "**Exploratory:** only 2 paired seeds" in md and "Exploratory: only 2" in html
    assert "## Findings" not in md  # nothing is worded from two seeds
    header = next(line for line in md.splitlines() if line.startswith("| metric"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("95% CI") + 1] == "n"
    assert "<th>95% CI</th>\n<th>n</th>" in html.replace("</th><th>", "</th>\n<th>")
    rows = [line for line in md.splitlines() if line.startswith("| failover: elect")]
    assert rows and "| 2 | exploratory (n = 2 < 5)" in rows[0]
    k = len(json.loads((saved_run / "summary.json").read_text())["metrics"])
    chance = f"{k} comparisons, each with a 95% interval: even with no real difference about "
    assert f"{chance}{k * 0.05:.1f} would exclude zero by chance alone" in md
    assert md.index(chance) > md.index("## Summary")  # beside the table it is about
    assert "bootstrap" not in md.lower()


def _bare_report(**kw: object) -> Report:
    fields = {"title": "t", "description": "", "checks": {}, "failures": [], "findings": [],
              "summary": Table(["metric"], []), "figures": [], "faults": [], "manifest": {}}
    fields.update(kw)
    return Report(**fields)  # type: ignore[arg-type]


def test_zero_verdicts_is_never_passed(tmp_path: Path) -> None:
    report = _bare_report()
    assert not report.passed and report.unchecked
    md, html = to_markdown(report, tmp_path), to_html(report)
    for text in (md, html):
        assert "All checks passed" not in text and "No checks ran: 0 verdicts" in text
        assert "<table><thead><tr><th>check</th>" not in text  # no empty correctness table
    assert "## Summary" not in md  # no empty summary table either
    assert index_checks(md) == "⚠️ **no verdicts** (not passed)"
    ok = _bare_report(checks={"linearizability": {"Raft seed 1": "pass"}})
    assert ok.passed and index_checks(to_markdown(ok, tmp_path)) == "✅ passed (1 verdicts)"


def test_a_summary_with_nothing_run_does_not_pass() -> None:
    spec = parse_spec(SPEC)
    assert res.summarise([], spec)["passed"] is False
    assert res.summarise_sweep(spec, [], [])["passed"] is False


def test_figure_definitions_are_rendered_when_metrics_has_them(
        saved_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from consensus.experiment import metrics

    monkeypatch.delattr(metrics, "FIGURE_DEFINITIONS", raising=False)
    assert figure_definitions() is None
    monkeypatch.setattr(metrics, "FIGURE_DEFINITIONS", {
        "failover: elect": "from the fault to the first node that becomes leader",
        "latency p99": "99th percentile of ok operations, from scheduled arrival"},
        raising=False)
    run = tmp_path / "run"
    shutil.copytree(saved_run, run, ignore=shutil.ignore_patterns("report.*", "figures"))
    build_report(run)
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert "## What each figure includes" in md
    assert "| failover: elect | from the fault to the first node that becomes leader |" in md
    assert "<h2>What each figure includes</h2>" in html
    assert "99th percentile of ok operations, from scheduled arrival" in html


# -- load sweeps --------------------------------------------------------------------------------

SWEEP = """
name: tiny-sweep
description: Two offered rates, no faults.
seeds: [1]
cluster: {nodes: 3}
workload: {clients: 4, duration_s: 1, read_ratio: 0.5, keys: 5}
load_sweep: [40, 80]
settle_s: 0.5
"""


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from consensus.experiment.execute import run_experiment

    run_dir = tmp_path_factory.mktemp("sweep") / "tiny-sweep"
    run_experiment(parse_spec(SWEEP), run_dir)
    return run_dir


def test_load_sweep_report_has_title_checks_and_a_per_rate_table(sweep_run: Path) -> None:
    md = (sweep_run / "report.md").read_text()
    html = (sweep_run / "report.html").read_text()
    assert md.startswith("# tiny-sweep: Raft vs Multi-Paxos by offered load\n")
    # every rate's verdicts counted: 2 rates x 2 algorithms x 1 seed x every check
    data = load(sweep_run / "rate-40")
    per_run = len(next(iter(data.summary["algorithms"].values()))["checks"]["seed-1"])
    assert f"All checks passed**: {4 * per_run} verdicts" in md
    assert "| check | Raft @ 40/s | Multi-Paxos @ 40/s | Raft @ 80/s | Multi-Paxos @ 80/s |" in md
    assert "## Throughput and latency by offered load" in md
    rows = [line for line in md.splitlines() if re.match(r"\| (40|80) \| ", line)]
    assert len(rows) == 4  # 2 rates x 2 algorithms
    assert all(row.rstrip(" |").endswith("| 1") for row in rows)  # seeds column
    assert "## Summary" not in md and "load-curve" in md
    assert "<h2>Throughput and latency by offered load</h2>" in html
    assert checks_word(sweep_run) == "passed"
    assert index_checks(md).startswith("✅ passed")


def test_load_sweep_with_a_failing_rate_is_not_passed(sweep_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "sweep"
    shutil.copytree(sweep_run, run)
    sub = run / "rate-80" / "summary.json"
    summary = json.loads(sub.read_text())
    algorithm = next(iter(summary["algorithms"]))
    summary["algorithms"][algorithm]["checks"]["seed-1"]["linearizability"] = "fail"
    sub.write_text(json.dumps(summary))
    build_report(run)
    md = (run / "report.md").read_text()
    assert "CHECK FAILED" in md and checks_word(run) == "failed"


def test_gallery_gives_an_mqtt_experiment_five_seeds_on_the_simulator(tmp_path: Path) -> None:
    from consensus.report.gallery import run_experiment

    spec_path = tmp_path / "tiny-mqtt.yaml"
    spec_path.write_text(SPEC.replace("name: tiny-crash", "name: tiny-mqtt").replace(
        "seeds: [1, 2]", "seeds: [1]\ntransport: mqtt").replace("duration_s: 2.5",
                                                               "duration_s: 1.5"))
    summary = run_experiment(spec_path, tmp_path / "run")
    assert all(info["seeds"] == [1, 2, 3, 4, 5] for info in summary["algorithms"].values())
    note = json.loads((tmp_path / "run" / "manifest.json").read_text())["note"]
    assert "raised to 5" in note and "Exploratory" not in (tmp_path / "run" / "report.md"
                                                           ).read_text()
