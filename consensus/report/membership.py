"""The report's membership section (issue 13): each change's dip, recovery and catch-up for
every algorithm side by side, as a table, and the throughput around each change as a chart.

Everything comes from the runs' ``metrics.json`` (``membership``: one entry per change, in the
order the schedule asked for them) and their throughput bins; nothing is re-run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from consensus.report import charts
from consensus.report.data import RunData, title
from consensus.report.render import Table
from consensus.report.stats import fmt_number

MEMBERSHIP_ACTIONS = ("add", "remove", "replace", "transfer")
# (label, key in a change's metrics, unit): the table's measures, in order.
MEASURES = (
    ("dip", "dip_pct", "%"),
    ("recovery", "recovery_ms", "ms"),
    ("change took", "change_ms", "ms"),
    ("new member caught up", "catch_up_ms", "ms"),
    ("bytes sent to catch up", "catch_up_bytes", "B"),
)
WINDOW_BEFORE_MS = 2000.0  # the chart shows each change from 2 s before it ...
WINDOW_AFTER_MS = 8000.0  # ... to 8 s after (or the next change)
SMOOTH_BINS = 5  # 100 ms bins averaged into 500 ms, so a dip reads against Poisson noise

CAPTION = (
    "One panel per membership change, time measured from the operator's request (the "
    "vertical line). Each line is an algorithm's throughput (ok answers per second, 100 ms "
    "bins averaged over 500 ms, median of seeds); the dotted line is 90% of its rate in the "
    "2 s before the request (the recovery time waits for that level less counting noise, "
    "over 1 s windows). The table above gives each change's dip, recovery and catch-up; "
    "'What each figure includes' defines them.")


def _changes(data: RunData, algorithm: str) -> list[list[dict[str, Any]]]:
    """Per seed, the changes of ``algorithm``'s run (each a metrics dict)."""
    return [list(r.metrics.get("membership") or []) for r in data.runs.get(algorithm, [])]


def scheduled_labels(data: RunData) -> list[str]:
    """The changes as the spec asks for them (``T=5s replace follower1 n6``), in firing
    order; role tokens are resolved per run, so the runs' own labels may differ."""
    faults = [f for f in data.spec.get("faults") or [] if isinstance(f, dict)
              and any(a in f for a in MEMBERSHIP_ACTIONS)]
    out = []
    for f in sorted(faults, key=lambda f: float(f.get("at", 0))):
        action = next(a for a in MEMBERSHIP_ACTIONS if a in f)
        value = f[action]
        what = (f"{value.get('remove')} -> {value.get('add')}" if isinstance(value, dict)
                else str(value))
        out.append(f"T={float(f['at']):g}s {action} {what}")
    return out


def _count(data: RunData) -> int:
    return max((len(c) for a in data.algorithms for c in _changes(data, a)), default=0)


def _label(data: RunData, i: int) -> str:
    labels = scheduled_labels(data)
    return labels[i] if i < len(labels) else f"change {i + 1}"


def _median(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def membership_table(data: RunData) -> Table | None:
    """Rows: each change and measure; columns: each algorithm's median over seeds (with how
    many seeds had a value) -- the changes' dip and recovery side by side."""
    count = _count(data)
    if not count:
        return None
    algos = data.algorithms
    rows = []
    for i in range(count):
        for label, key, unit in MEASURES:
            row = [_label(data, i) if label == MEASURES[0][0] else "",
                   f"{label} ({unit})"]
            present = False
            for a in algos:
                values = [seed[i].get(key) for seed in _changes(data, a) if i < len(seed)]
                median = _median(values)
                n = sum(v is not None for v in values)
                present |= n > 0
                row.append("-" if median is None else f"{fmt_number(median)} (n={n})")
            if present or key in ("dip_pct", "recovery_ms", "change_ms"):
                rows.append(row)
        done = []
        for a in algos:
            runs = [seed[i] for seed in _changes(data, a) if i < len(seed)]
            ok = sum(1 for c in runs if c.get("ok"))
            done.append(f"{ok} of {len(runs)} seeds")
        rows.append(["", "answered OK", *done])
    note = ("Median over seeds (n: seeds with a value). A change that was not answered OK "
            "before the run ended has no duration; a dip that never recovered before the next "
            "change or the end of the workload has no recovery time.")
    return Table(["change", "measure", *(title(a) for a in algos)], rows, note)


def _smoothed(bins: Sequence[int], bin_ms: float) -> list[float]:
    rate = [b * 1000.0 / bin_ms for b in bins]
    out = []
    for k in range(len(rate)):
        window = rate[max(0, k - SMOOTH_BINS + 1):k + 1]
        out.append(sum(window) / len(window))
    return out


def change_windows(data: RunData) -> list[charts.ChangeWindow]:
    """For each change, each algorithm's throughput around it (median of seeds, each seed
    aligned on its own request time) and its rate before the change."""
    count = _count(data)
    out = []
    duration = float((data.spec.get("workload") or {}).get("duration_s") or 0) * 1000
    for i in range(count):
        series: dict[str, tuple[list[float], list[float]]] = {}
        before: dict[str, float] = {}
        for a in data.algorithms:
            per_seed: list[dict[float, float]] = []
            rates_before = []
            for run, changes in zip(data.runs.get(a, []), _changes(data, a), strict=True):
                if i >= len(changes):
                    continue
                t = float(changes[i]["at_ms"])
                nxt = float(changes[i + 1]["at_ms"]) if i + 1 < len(changes) else duration
                bin_ms = float(run.metrics.get("bin_ms", 100.0))
                rate = _smoothed(run.metrics.get("throughput_bins") or [], bin_ms)
                points = {}
                for k, r in enumerate(rate):
                    end = (k + 1) * bin_ms
                    if t - WINDOW_BEFORE_MS <= end <= min(t + WINDOW_AFTER_MS, nxt,
                                                          duration or end):
                        points[round((end - t) / bin_ms) * bin_ms / 1000] = r
                per_seed.append(points)
                if changes[i].get("before_ops_s"):
                    rates_before.append(float(changes[i]["before_ops_s"]))
            xs = sorted({x for p in per_seed for x in p})
            if not xs:
                continue
            series[a] = (xs, [statistics.median([p[x] for p in per_seed if x in p])
                              for x in xs])
            if rates_before:
                before[a] = statistics.median(rates_before)
        if series:
            out.append(charts.ChangeWindow(_label(data, i), series, before))
    return out
