"""Assemble reports from saved run folders: one run (``build_report``) or several
(``compare_runs``). Nothing is re-run: everything comes from the files the runner wrote."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus import variants
from consensus.report import charts, membership
from consensus.report.data import (
    RunData,
    SeedRun,
    load,
    parse_faults,
    sweep_runs,
    title,
    unavailability,
    verdict_tally,
)
from consensus.report.render import Figure, Report, Table, write
from consensus.report.stats import (
    MIN_FINDING_SEEDS,
    Interval,
    chance_note,
    fmt_number,
    paired_by_seed,
    paired_t,
    verdict,
    welch_t,
)

FIGURES_DIR = "figures"
UNAVAILABLE_MIN_MS = 100.0  # shorter gaps are invisible at 100 ms bins anyway

CAPTIONS = {
    "latency": "Each line is the fraction of operations (answered ok, all seeds pooled) that "
               "completed within a given latency; further left is faster, and the top of the "
               "curve is the tail. Open-loop latency counts from the operation's scheduled "
               "arrival, so time spent queued behind an outage is included.",
    "throughput": "Operations answered ok per second in 100 ms bins, one panel per algorithm "
                  "on the same time axis (bold: median of seeds; thin: each seed). Vertical "
                  "lines are crashes and restarts, shaded bands are loss/delay/duplicate "
                  "windows and partitions (until healed); the thick black bars at the bottom "
                  "mark each seed's longest stretch without an answer after a fault "
                  "(>= 100 ms). The chart ends with the workload: a last bin only partly "
                  "inside it is not drawn (it would look like an outage).",
    "messages": "Protocol messages sent per committed operation (median across seeds), "
                "stacked by message type; analogous messages share a colour (RequestVote and "
                "Prepare, AppendEntries and Accept, ...); empty AppendEntries/Accept are "
                "heartbeats (hatched). Client requests and replies are excluded. Both "
                "algorithms use the same flow control and a compact wire form, so what "
                "differs is the algorithms': the Commit catch-up against Raft's "
                "AppendEntries, a Promise's accepted values against a yes/no vote "
                "(docs/comparison.md in the package's repository breaks it down).",
    "failover": "For every fault after which a new leader was elected, on every seed: time "
                "from the fault to the first node campaigning (detect), to a new leader "
                "(elect), to the first write answered ok after that (commit), and each "
                "client's wait from its last answer before the fault to its first after "
                "(client gap, the median over clients); see 'What each figure includes'.",
    "load": "Each point is one run at an offered rate (label, ops/s): the throughput it "
            "achieved (median of seeds) against its median and p99 latency. Both axes are "
            "logarithmic, since rates and latencies span decades. A curve bending up marks "
            "saturation; the table above gives each rate's spread over seeds.",
    "sequence": "A lifeline per node, time flowing down from just before the first fault. "
                "Each arrow is one message from its sender (at the send time) to its "
                "receiver (at the delivery time), coloured by role; an x marks a message "
                "that was dropped. Triangles mark nodes that start campaigning, stars the new "
                "leader. The time axis is broken (zig-zag marks) so that each window shows "
                "what matters at a readable scale: the fault, the first campaign and the "
                "election; quiet stretches between them are cut out.",
    "sequence-bus": "On the MQTT bus the runner sees each message when the broker hands it "
                    "to the runner's own subscriber (times are arrivals at the runner's "
                    "subscriber), so an arrow is drawn flat at that time: send and delivery "
                    "times are not known. A message to a crashed node is drawn as dropped; "
                    "one a partition drops at its sender never reaches the broker and is not "
                    "shown, nor is a loss window's drop at the receiver. Role changes come "
                    "from the nodes' published status (every 50 ms), so they may trail the "
                    "messages that caused them.",
}


# -- pieces shared by single-run and comparison reports ----------------------------------------

def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _latencies(runs: Sequence[SeedRun]) -> dict[str, list[float]]:
    pooled: dict[str, list[float]] = {}
    for run in runs:
        for kind, values in run.latencies().items():
            pooled.setdefault(kind, []).extend(values)
    return pooled


def _timeline(data: RunData, algorithm: str, variant: str | None = None) -> charts.Timeline:
    runs = data.runs.get(algorithm, [])
    bins = {r.seed: r.metrics.get("throughput_bins") or [] for r in runs}
    bin_ms = float(runs[0].metrics.get("bin_ms", 100.0)) if runs else 100.0
    faults = data.faults(algorithm)
    unavailable = {}
    for r in runs:
        end = data.end_ms(r)
        unavailable[r.seed] = unavailability(r.answers(), parse_faults(r.events, end), end,
                                             UNAVAILABLE_MIN_MS)
    duration = (data.spec.get("workload") or {}).get("duration_s")
    end = float(duration) * 1000 if duration else None
    return charts.Timeline(algorithm, bin_ms, bins, faults, unavailable, variant, end)


def _messages_by_kind(runs: Sequence[SeedRun]) -> dict[str, float]:
    kinds = sorted({k for r in runs for k in r.metrics.get("messages_per_op_by_kind", {})})
    out = {}
    for k in kinds:
        m = _median([r.metrics.get("messages_per_op_by_kind", {}).get(k, 0.0) for r in runs])
        if m:
            out[k] = m
    return out


def _failover(runs: Sequence[SeedRun]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in runs:
        for key, values in (r.metrics.get("failover") or {}).items():
            out.setdefault(key, []).extend(float(v) for v in values if v is not None)
    return out


def _sequence(data: RunData, algorithm: str) -> charts.SequenceData | None:
    runs = data.runs.get(algorithm, [])
    if not runs or not runs[0].trace:
        return None
    run = runs[0]
    faults = parse_faults(run.events, data.end_ms(run))
    if not faults:
        return None
    nodes = sorted({m["src"] for m in run.trace} | {m["dst"] for m in run.trace}
                   | {e["node"] for e in run.events if "node" in e}, key=_node_order)
    n = int((data.spec.get("cluster") or {}).get("nodes") or 0)
    nodes = [f"n{i}" for i in range(1, n + 1)] if n else [x for x in nodes if x.startswith("n")]
    return charts.SequenceData(algorithm, run.seed, nodes, run.trace, run.events, faults)


def _node_order(node: str) -> tuple[str, int]:
    digits = "".join(ch for ch in node if ch.isdigit())
    return node.rstrip("0123456789"), int(digits or 0)


def _save(fig: Any, folder: Path, name: str, heading: str, caption: str,
          figures: list[Figure]) -> None:
    if fig is None:
        return
    png, svg = charts.save_figure(fig, folder / FIGURES_DIR, name)
    figures.append(Figure(png, heading, caption, svg))


def _figure_paths(figures: Sequence[Figure]) -> list[Path]:
    return [p for f in figures for p in (f.path, f.svg) if p is not None]


def _sequence_caption(data: RunData) -> str:
    if data.manifest.get("transport") == "mqtt":
        return f"{CAPTIONS['sequence']} {CAPTIONS['sequence-bus']}"
    return CAPTIONS["sequence"]


def _sequence_notes(data: RunData, algos: Sequence[str],
                    seqs: Sequence[charts.SequenceData]) -> list[str]:
    """Say why a run with faults has no message-sequence diagram (or not for every algorithm)
    instead of leaving it out silently."""
    if not any(data.faults(a) for a in algos):
        return []
    missing = [a for a in algos if a not in {s.algorithm for s in seqs}]
    if not missing:
        return []
    names = ", ".join(title(a) for a in missing)
    if data.manifest.get("transport") == "mqtt":
        why = ("the run folder holds no message trace for it (runs on the bus written before "
               "the runner traced the inboxes, or no message crossed the bus in the window)")
    else:
        why = "no message was traced around its first fault"
    return [f"No message-sequence diagram for {names}: {why}."]


def _checks(data: RunData) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for algorithm, info in data.summary.get("algorithms", {}).items():
        for seed_label, checks in info.get("checks", {}).items():
            column = f"{title(algorithm)} {seed_label.replace('-', ' ')}"
            for name, v in checks.items():
                out.setdefault(name, {})[column] = str(v)
    return out


def _failures(data: RunData) -> list[str]:
    failures = list(data.summary.get("failures") or [])
    if not failures:  # older or hand-made summaries: derive them from the verdicts
        for algorithm, info in data.summary.get("algorithms", {}).items():
            for seed_label, checks in info.get("checks", {}).items():
                failures += [f"{algorithm} {seed_label}: {name}: {v}"
                             for name, v in checks.items() if v != "pass"]
    return failures


def _fault_lines(data: RunData) -> list[str]:
    out = []
    for f in data.spec.get("faults") or []:
        f = dict(f)
        at = f.pop("at", None)
        duration = f.pop("duration", None)
        text = ", ".join(f"{k} {_plain(v)}".strip() for k, v in f.items())
        if duration:
            text += f" for {duration:g} s"
        out.append(f"at {at:g} s: {text}" if isinstance(at, int | float) else text)
    return out


def _plain(value: Any) -> str:
    if value is True:
        return ""
    if isinstance(value, list):
        return " | ".join(",".join(map(str, g)) if isinstance(g, list) else str(g) for g in value)
    if isinstance(value, dict):
        return " ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


def _spec_text(folder: Path) -> str:
    path = folder / "spec.yaml"
    return path.read_text() if path.exists() else ""


# -- one run -----------------------------------------------------------------------------------

INTERVAL_NOTE = (
    "Difference: the mean over seeds of the paired per-seed difference; 95% CI: Student's t "
    "interval on those differences (n - 1 degrees of freedom), n: the paired seeds behind it. "
    f"A difference is worded as a finding only when the interval excludes zero and n >= "
    f"{MIN_FINDING_SEEDS}; with fewer seeds the comparison is exploratory (run more, e.g. "
    "--seeds 1-10). Failover metrics are per-seed medians over faults.")


def summary_rows(data: RunData) -> tuple[Table, list[str], list[Interval | None]]:
    """The summary table (median per algorithm, paired difference, 95% t-interval, n,
    verdict), the verdicts worded for the findings list, and every interval computed."""
    algos = data.algorithms
    info = data.summary.get("algorithms", {})
    headers = ["metric", *(f"{title(a)} (median)" for a in algos)]
    pair = len(algos) == 2
    if pair:
        a, b = algos
        headers += [f"difference {title(b)} - {title(a)} (mean of seeds)", "95% CI", "n",
                    "verdict"]
    rows, findings, intervals = [], [], []
    for metric in data.summary.get("metrics", []):
        label, unit = metric["label"], metric.get("unit", "")
        row = [f"{label} ({unit})" if unit else label]
        row += [fmt_number(info[x]["median"].get(label)) for x in algos]
        if pair:
            xa, xb = paired_by_seed(info[a]["seeds"], info[a]["per_seed"][label],
                                    info[b]["seeds"], info[b]["per_seed"][label])
            interval = paired_t(xa, xb)
            intervals.append(interval)
            words = verdict(label, unit, title(a), title(b), interval)
            row += [_signed(interval), _ci(interval), _n(interval),
                    words or _no_verdict(interval)]
            if words:
                findings.append(words)
        rows.append(row)
    return Table(headers, rows, INTERVAL_NOTE if pair else ""), findings, intervals


def _signed(interval: Interval | None) -> str:
    if interval is None:
        return "-"
    sign = "+" if interval.estimate > 0 else "-" if interval.estimate < 0 else ""
    return sign + fmt_number(abs(interval.estimate))


def _ci(interval: Interval | None) -> str:
    if interval is None or interval.lo is None or interval.hi is None:
        return "-"
    return f"{_num(interval.lo)} to {_num(interval.hi)}"


def _n(interval: Interval | None) -> str:
    return "0" if interval is None else str(interval.n)


def _num(x: float) -> str:
    return ("-" if x < 0 else "") + fmt_number(abs(x))


def _no_verdict(interval: Interval | None) -> str:
    if interval is None:
        return "no data"
    if interval.lo is None:
        return f"no interval ({interval.n} seed{'s' if interval.n != 1 else ''})"
    if interval.exploratory:
        return (f"exploratory (n = {interval.n} < {MIN_FINDING_SEEDS})"
                + (": interval excludes zero" if interval.excludes_zero else ""))
    return "no clear difference"


def _exploratory(intervals: Sequence[Interval | None]) -> str:
    """Why no finding can be worded, when every comparison has too few seeds."""
    ns = [i.n for i in intervals if i is not None]
    if not ns or max(ns) >= MIN_FINDING_SEEDS:
        return ""
    n = max(ns)
    return (f"only {n} paired seed{'s' if n != 1 else ''} per comparison (a finding needs at "
            f"least {MIN_FINDING_SEEDS}), so no difference here is worded as a finding. Run "
            "more seeds (--seeds 1-10) before drawing a conclusion.")


def figure_definitions() -> Table | None:
    """What each headline figure includes, from ``consensus.experiment.metrics``'s
    ``FIGURE_DEFINITIONS`` (figure -> definition) when that module has one."""
    from consensus.experiment import metrics

    definitions: dict[str, str] = getattr(metrics, "FIGURE_DEFINITIONS", None) or {}
    if not definitions:
        return None
    return Table(["figure", "what it includes"], [[k, str(v)] for k, v in definitions.items()])


def _membership_section(data: RunData) -> list[tuple[str, Table]]:
    table = membership.membership_table(data)
    return [("Membership changes: dip, recovery and catch-up", table)] if table else []


def _definitions_section() -> list[tuple[str, Table]]:
    table = figure_definitions()
    return [("What each figure includes", table)] if table is not None else []


def build_report(run_dir: Path) -> list[Path]:
    """Write report.html, report.md and figures/*.png and *.svg into ``run_dir``; return the
    paths."""
    run_dir = Path(run_dir)
    data = load(run_dir)
    if "load_sweep" in data.summary:
        return build_sweep_report(run_dir, data)
    algos = [a for a in data.algorithms if data.runs.get(a)]
    figures: list[Figure] = []
    _save(charts.latency_ecdf({a: _latencies(data.runs[a]) for a in algos}), run_dir,
          "latency-ecdf", "Latency distribution", CAPTIONS["latency"], figures)
    _save(charts.throughput_timeline([_timeline(data, a) for a in algos]), run_dir,
          "throughput", "Throughput over time", CAPTIONS["throughput"], figures)
    _save(charts.change_windows(membership.change_windows(data)), run_dir, "membership",
          "Membership changes", membership.CAPTION, figures)
    _save(charts.messages_per_op({a: _messages_by_kind(data.runs[a]) for a in algos}),
          run_dir, "messages-per-op", "Messages per committed operation",
          CAPTIONS["messages"], figures)
    _save(charts.failover({a: _failover(data.runs[a]) for a in algos}), run_dir, "failover",
          "Failover", CAPTIONS["failover"], figures)
    sweep = load_points(_sweep_folders(run_dir))
    _save(charts.load_curve(sweep), run_dir, "load-curve", "Throughput vs latency",
          CAPTIONS["load"], figures)
    seqs = [s for s in (_sequence(data, a) for a in algos) if s is not None]
    _save(charts.sequence_diagram(seqs), run_dir, "sequence", "Messages around the first "
          "fault", _sequence_caption(data), figures)
    table, findings, intervals = summary_rows(data)
    notes = _sequence_notes(data, algos, seqs)
    if data.manifest.get("note"):
        notes.append(str(data.manifest["note"]))
    chosen = data.summary.get("variant") or {}
    shown = f" (variant {variants.label(chosen)})" if chosen else ""
    report = Report(
        title=f"{data.name}: {' vs '.join(title(a) for a in data.algorithms)}{shown}",
        description=str(data.summary.get("description") or "").strip(),
        checks=_checks(data), failures=_failures(data), findings=findings, summary=table,
        figures=figures, faults=_fault_lines(data), manifest=data.manifest,
        spec_text=_spec_text(run_dir), notes=notes,
        extra_tables=_membership_section(data) + _definitions_section(),
        chance=chance_note(intervals) if len(data.algorithms) == 2 else "",
        exploratory=_exploratory(intervals))
    return [*write(report, run_dir), *_figure_paths(figures)]


# -- load sweeps and comparisons ---------------------------------------------------------------

def _sweep_folders(run_dir: Path) -> list[Path]:
    """Sub-runs of a load sweep: child folders that are run folders themselves."""
    return sorted(p.parent for p in run_dir.glob("*/summary.json"))


def _rate(data: RunData) -> float | None:
    rate = (data.spec.get("workload") or {}).get("rate")
    return float(rate) if rate is not None else None


def load_points(folders: Sequence[Path]) -> list[charts.LoadPoint]:
    """One throughput/latency point per algorithm per run folder with a fixed offered rate."""
    points = []
    for folder in folders:
        data = load(folder)
        rate = _rate(data)
        if rate is None:
            continue
        for a, info in data.summary.get("algorithms", {}).items():
            med = info.get("median", {})
            if None in (med.get("throughput"), med.get("latency p50"), med.get("latency p99")):
                continue
            points.append(charts.LoadPoint(a, rate, med["throughput"], med["latency p50"],
                                           med["latency p99"]))
    return points


SWEEP_METRICS = (("throughput", "achieved (ops/s)"), ("latency p50", "p50 (ms)"),
                 ("latency p99", "p99 (ms)"))


def _spread(values: Sequence[float | None]) -> str:
    """``median (min-max)`` over seeds, or the one value."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return "-"
    med = fmt_number(statistics.median(present))
    if len(present) == 1:
        return med
    return f"{med} ({fmt_number(present[0])}\u2013{fmt_number(present[-1])})"


def sweep_table(rates: Sequence[tuple[float, RunData]]) -> Table:
    """One row per offered rate and algorithm: achieved throughput, p50 and p99 latency,
    each as the median over seeds with the range across seeds, and how many seeds."""
    headers = ["offered (ops/s)", "algorithm", *(h for _, h in SWEEP_METRICS),
               "achieved / offered", "seeds"]
    rows = []
    for rate, data in rates:
        for a, info in data.summary.get("algorithms", {}).items():
            per_seed = info.get("per_seed", {})
            cells = [_spread(per_seed.get(label, [])) for label, _ in SWEEP_METRICS]
            achieved = info.get("median", {}).get("throughput")
            ratio = "-" if achieved is None or not rate else f"{achieved / rate:.0%}"
            rows.append([f"{rate:g}", title(a), *cells, ratio, str(len(info.get("seeds", [])))])
    note = ("Each cell: the median over seeds, with the range across seeds (min\u2013max) in "
            "brackets. Latency counts from each operation's scheduled arrival, so queueing "
            "behind a saturated leader is included. Each rate is a complete run with its own "
            "report (rate-<r>/report.html in the run folder).")
    return Table(headers, rows, note)


def _sweep_checks(rates: Sequence[tuple[float, RunData]]) -> dict[str, dict[str, str]]:
    """Check -> "<algorithm> @ <rate>/s" -> the worst verdict over that rate's seeds."""
    rank = {"pass": 0, "unknown": 1, "fail": 2}
    out: dict[str, dict[str, str]] = {}
    for rate, data in rates:
        for a, info in data.summary.get("algorithms", {}).items():
            column = f"{title(a)} @ {rate:g}/s"
            for checks in info.get("checks", {}).values():
                for name, v in checks.items():
                    old = out.setdefault(name, {}).get(column, "pass")
                    out[name][column] = max(old, str(v), key=lambda x: rank.get(x, 2))
    return out


def build_sweep_report(run_dir: Path, data: RunData) -> list[Path]:
    """A load sweep's report: every rate's checks, the per-rate table and the load curve."""
    rates = sweep_runs(run_dir)
    algos = list(dict.fromkeys(a for _, d in rates for a in d.algorithms))
    figures: list[Figure] = []
    _save(charts.load_curve(load_points([d.folder for _, d in rates])), run_dir, "load-curve",
          "Throughput vs latency", CAPTIONS["load"], figures)
    failures = list(data.summary.get("failures") or [])
    for rate, d in rates:
        prefix = f"rate {rate:g}: "
        failures += [prefix + f for f in _failures(d) if prefix + f not in failures]
    seeds = sorted({len(info.get("seeds", [])) for _, d in rates
                    for info in d.summary.get("algorithms", {}).values()})
    notes = [str(data.manifest["note"])] if data.manifest.get("note") else []
    report = Report(
        title=f"{data.name}: {' vs '.join(title(a) for a in algos) or 'no runs'} "
              "by offered load",
        description=str(data.summary.get("description") or "").strip(),
        checks=_sweep_checks(rates), failures=failures, findings=[],
        summary=sweep_table(rates), summary_heading="Throughput and latency by offered load",
        chance="No differences are tested in this report: it shows each algorithm's spread "
               "over seeds at every rate.",
        exploratory=(f"{max(seeds)} seed{'s' if max(seeds) != 1 else ''} per rate: the spread "
                     "over seeds is a rough guide only." if seeds and max(seeds) <
                     MIN_FINDING_SEEDS else ""),
        verdicts=sum(verdict_tally(d.summary)[0] for _, d in rates),
        figures=figures, faults=_fault_lines(data), manifest=data.manifest,
        spec_text=_spec_text(run_dir), notes=notes, extra_tables=_definitions_section())
    return [*write(report, run_dir), *(f.path for f in figures)]


def _labels(datas: Sequence[RunData]) -> list[str]:
    """Short, distinct labels for compared runs: the experiment name, else the folder."""
    names = [d.name for d in datas]
    if len(set(names)) == len(names):
        return names
    rates = [_rate(d) for d in datas]
    if None not in rates and len(set(rates)) == len(rates):
        return [f"{d.name} @ {r:g} ops/s" for d, r in zip(datas, rates, strict=True)]
    return [d.folder.name for d in datas]


def _flatten(spec: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(spec, dict):
        out: dict[str, str] = {}
        for k, v in spec.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: str(spec)}


def compare_runs(run_a: Path, run_b: Path, out_dir: Path,
                 *more: Path) -> list[Path]:
    """Put two (or more) runs side by side in ``out_dir``/compare.html and compare.md.

    Per algorithm and headline metric: each run's median, the difference to the first run
    with a 95% t-interval (paired by seed when the runs share seeds, else Welch's), and a
    verdict only when the interval excludes zero from at least 5 seeds. Runs of one
    experiment at different ``workload.rate`` also get the throughput-vs-latency chart.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datas = [load(Path(p)) for p in (run_a, run_b, *more)]
    labels = _labels(datas)
    algos = list(dict.fromkeys(a for d in datas for a in d.algorithms if d.runs.get(a)))
    keyed = [(a, label, d) for a in algos for label, d in zip(labels, datas, strict=True)
             if d.runs.get(a)]
    figures: list[Figure] = []
    _save(charts.latency_ecdf({(a, lb): _latencies(d.runs[a]) for a, lb, d in keyed}), out_dir,
          "latency-ecdf", "Latency distribution", CAPTIONS["latency"], figures)
    _save(charts.throughput_timeline([_timeline(d, a, lb) for a, lb, d in keyed]), out_dir,
          "throughput", "Throughput over time", CAPTIONS["throughput"], figures)
    _save(charts.messages_per_op({(a, lb): _messages_by_kind(d.runs[a]) for a, lb, d in keyed}),
          out_dir, "messages-per-op", "Messages per committed operation",
          CAPTIONS["messages"], figures)
    _save(charts.failover({(a, lb): _failover(d.runs[a]) for a, lb, d in keyed}), out_dir,
          "failover", "Failover", CAPTIONS["failover"], figures)
    same_experiment = len({d.name for d in datas}) == 1
    if same_experiment:
        _save(charts.load_curve(load_points([d.folder for d in datas])), out_dir, "load-curve",
              "Throughput vs latency", CAPTIONS["load"], figures)

    base = datas[0]
    rows, findings = [], []
    headers = ["algorithm", "metric", *(f"{lb} (median)" for lb in labels)]
    for lb in labels[1:]:
        headers += [f"{lb} - {labels[0]}", "95% CI", "n"]
    headers.append("verdict")
    intervals: list[Interval | None] = []
    for a in algos:
        if not all(a in d.summary.get("algorithms", {}) for d in datas):
            continue
        for metric in base.summary.get("metrics", []):
            label, unit = metric["label"], metric.get("unit", "")
            infos = [d.summary["algorithms"][a] for d in datas]
            row = [title(a), f"{label} ({unit})" if unit else label]
            row += [fmt_number(i["median"].get(label)) for i in infos]
            words_all, others = [], []
            for lb, info in zip(labels[1:], infos[1:], strict=True):
                ref = infos[0]
                if sorted(ref["seeds"]) == sorted(info["seeds"]):
                    xa, xb = paired_by_seed(ref["seeds"], ref["per_seed"][label],
                                            info["seeds"], info["per_seed"][label])
                    interval = paired_t(xa, xb)
                else:
                    interval = welch_t(ref["per_seed"][label], info["per_seed"][label])
                intervals.append(interval)
                row += [_signed(interval), _ci(interval), _n(interval)]
                words = verdict(label, unit, f"{title(a)} in {labels[0]}",
                                f"{title(a)} in {lb}", interval)
                if words:
                    words_all.append(words)
                else:
                    others.append(_no_verdict(interval))
            row.append("; ".join(words_all) or "; ".join(dict.fromkeys(others)))
            findings += words_all
            rows.append(row)
    table = Table(headers, rows, "Differences are to the first run. When the runs share "
                  "their seeds: the mean paired per-seed difference with Student's t interval; "
                  "otherwise the difference of means with Welch's t interval (n: the smaller "
                  f"run's seeds). A finding needs an interval excluding zero and n >= "
                  f"{MIN_FINDING_SEEDS}.")
    spec_rows = []
    flat = [_flatten({k: v for k, v in d.spec.items() if k not in ("description",)})
            for d in datas]
    for key in sorted(set().union(*flat)):
        values = [f.get(key, "-") for f in flat]
        if len(set(values)) > 1:
            spec_rows.append([key, *values])
    checks: dict[str, dict[str, str]] = {}
    failures: list[str] = []
    for lb, d in zip(labels, datas, strict=True):
        for name, per in _checks(d).items():
            for column, v in per.items():
                checks.setdefault(name, {})[f"{lb}: {column}"] = v
        failures += [f"{lb}: {f}" for f in _failures(d)]
    report = Report(
        title=f"Comparison: {' vs '.join(labels)}",
        description="Runs compared: " + "; ".join(f"{lb} ({d.folder})" for lb, d in zip(
            labels, datas, strict=True)),
        checks=checks, failures=failures, findings=findings, summary=table, figures=figures,
        chance=chance_note(intervals), exploratory=_exploratory(intervals), faults=[],
        manifest={f"{lb}: {k}": v for lb, d in zip(labels, datas, strict=True)
                  for k, v in d.manifest.items()
                  if k in ("experiment", "version", "git_commit", "transport", "seeds",
                           "started")},
        extra_tables=[("What differs between the runs", Table(["setting", *labels],
                                                                spec_rows))]
        if spec_rows else [])
    return [*write(report, out_dir, "compare"), *_figure_paths(figures)]
