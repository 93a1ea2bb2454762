"""The differences matrix's report: one table, one heat-map, the differences in words.

Reads only the matrix's ``summary.json`` (:func:`consensus.matrix.summarise`), so a report can
be rebuilt without running anything. Rows are (experiment, variant), columns the algorithms;
per cell the outcome of the fault window over the seeds (the most frequent one, with the
count when the seeds disagree) and each measure's mean with its 95% Student-t interval over
seeds (:mod:`consensus.report.stats`). Differences between variants of one algorithm, and
between the algorithms under one variant, are worded only when the paired per-seed interval
excludes zero from enough seeds, as in every other report.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from consensus.experiment.metrics import FIGURE_DEFINITIONS, OUTCOMES
from consensus.report import render
from consensus.report.charts import _styled, save_figure
from consensus.report.stats import chance_note, fmt_number, paired_by_seed, paired_t, verdict

# Outcome colours, best to worst (colour-blind-safe greens to vermilion), and n/a's grey.
OUTCOME_COLOURS = ("#1b7837", "#a6dba0", "#fee08b", "#f4a582", "#b2182b")
NA_COLOUR = "#d9d9d9"
# Per measure: whether lower is better (the colour map runs light = better).
LOWER_IS_BETTER = {"leaderless_ms": True, "outage_ms": True, "leader_changes": True,
                   "throughput_ops_s": False}


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def rows_of(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(experiment, variant) rows in the matrix's order."""
    return list(dict.fromkeys((c["experiment"], c["variant"]) for c in summary["cells"]))


def algorithms_of(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, title) of the algorithms, in the matrix's order."""
    return list(dict.fromkeys((c["algorithm"], c["title"]) for c in summary["cells"]))


def _cell(summary: dict[str, Any], experiment: str, variant: str,
          algorithm: str) -> dict[str, Any] | None:
    return next((c for c in summary["cells"] if c["experiment"] == experiment
                 and c["variant"] == variant and c["algorithm"] == algorithm), None)


def outcome_text(cell: dict[str, Any]) -> str:
    """"recovered", or "recovered 3/5 (after heal 2)" when the seeds disagree; "n/a"."""
    if cell["status"] == "n/a":
        return "n/a"
    counts = cell["outcomes"]
    n = sum(counts.values())
    main = cell["outcome"] or "-"
    if len(counts) <= 1:
        return main
    others = ", ".join(f"{o} {k}" for o, k in counts.items() if o != main)
    return f"{main} {counts[main]}/{n} ({others})"


def interval_text(m: dict[str, Any] | None, unit: str) -> str:
    """"1.7 s [1.2, 2.1]": the mean and its 95% interval over seeds."""
    if m is None:
        return "-"
    text = fmt_number(m["mean"], unit)
    if m["lo"] is not None and m["hi"] is not None and m["hi"] - m["lo"] > 1e-9:
        # Every measure is a count, a time or a rate: an interval's end below 0 says only
        # that the seeds spread widely, so it is shown as 0.
        text += f" [{fmt_number(max(0.0, m['lo']))}, {fmt_number(m['hi'])}]"
    return text


def summary_table(summary: dict[str, Any]) -> render.Table:
    headers = ["experiment", "variant", "algorithm", "outcome",
               *(f"{m['label']} ({m['unit']})" if m["unit"] else m["label"]
                 for m in summary["measures"]), "checks"]
    rows = []
    for c in summary["cells"]:
        head = [c["experiment"], c["variant"], c["title"]]
        if c["status"] == "n/a":
            rows.append([*head, "n/a", *(["-"] * len(summary["measures"])),
                         "not run (see the notes)"])
            continue
        checks = c["checks"]
        bad = [f"{k}: {v}" for k, v in checks.items() if v != "pass"]
        rows.append([*head, outcome_text(c),
                     *(interval_text(c["measures"][m["key"]], m["unit"])
                       for m in summary["measures"]),
                     "pass" if checks and not bad else "; ".join(bad) or "no verdicts"])
    return render.Table(headers, rows, note=(
        "Each measure: mean over the seeds [95% Student-t interval]. outcome: the most "
        "frequent over the seeds, with the others when they disagree. Measured over the fault "
        "window (first fault to the heal); the variants and the definitions are below."))


@_styled
def heatmap(summary: dict[str, Any]) -> Figure | None:
    """Rows (experiment · variant) x columns (algorithm), one panel per measure, coloured
    per panel (light = better), the outcome panel by category; n/a cells grey."""
    rows = rows_of(summary)
    algos = algorithms_of(summary)
    if not rows or not algos:
        return None
    panels = [("outcome", "outcome", "")] + [(m["key"], m["label"], m["unit"])
                                             for m in summary["measures"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.1 * len(panels) + 2.6,
                                                     0.42 * len(rows) + 1.6), sharey=True)
    labels = [f"{e} · {v}" for e, v in rows]
    for p, (key, label, unit) in enumerate(panels):
        ax = axes[p]
        values = np.full((len(rows), len(algos)), np.nan)
        texts = [["n/a"] * len(algos) for _ in rows]
        for i, (e, v) in enumerate(rows):
            for j, (a, _) in enumerate(algos):
                c = _cell(summary, e, v, a)
                if c is None or c["status"] == "n/a":
                    if c is None:
                        texts[i][j] = ""
                    continue
                if key == "outcome":
                    if c["outcome"] in OUTCOMES:
                        values[i, j] = OUTCOMES.index(c["outcome"])
                    counts = c["outcomes"]
                    main = c["outcome"] or "-"
                    n = sum(counts.values())
                    texts[i][j] = main if len(counts) <= 1 else f"{main} {counts[main]}/{n}"
                else:
                    m = c["measures"][key]
                    if m is not None:
                        values[i, j] = m["mean"]
                        texts[i][j] = fmt_number(m["mean"])
        if key == "outcome":
            cmap = ListedColormap(OUTCOME_COLOURS)
            vmin, vmax = -0.5, len(OUTCOMES) - 0.5
        else:
            cmap = plt.get_cmap("rocket_r" if LOWER_IS_BETTER[key] else "rocket").copy()
            finite = values[np.isfinite(values)]
            vmin = float(finite.min()) if finite.size else 0.0
            vmax = float(finite.max()) if finite.size else 1.0
            if math.isclose(vmin, vmax):
                vmin, vmax = vmin - 1, vmax + 1
        cmap = cmap.with_extremes(bad=NA_COLOUR)
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                  aspect="auto", interpolation="nearest")
        for i in range(len(rows)):
            for j in range(len(algos)):
                shade = values[i, j]
                dark = False
                if np.isfinite(shade):
                    r, g, b, _ = cmap((shade - vmin) / (vmax - vmin))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=8.5,
                        color="white" if dark else "#1d1d1f")
        ax.set_xticks(range(len(algos)), [t for _, t in algos])
        ax.xaxis.tick_top()
        ax.set_title(f"{label} ({unit})" if unit else label, fontsize=10.5, pad=22)
        ax.set_yticks(range(len(rows)), labels)
        ax.tick_params(length=0)
        ax.grid(False)
        for edge in range(1, len(rows)):  # a rule between experiments
            if rows[edge][0] != rows[edge - 1][0]:
                ax.axhline(edge - 0.5, color="white", lw=3)
    fig.tight_layout()
    return fig


def differences(summary: dict[str, Any]) -> tuple[list[str], list[Any], list[str]]:
    """Worded findings (paired t over the seeds both sides ran: each variant of an experiment
    against its first, and the algorithms under each variant), their intervals (for the
    chance note), and per experiment and algorithm the outcome of each variant where they
    differ, as Markdown bullets."""
    findings: list[str] = []
    intervals: list[Any] = []
    by_row = rows_of(summary)
    algos = algorithms_of(summary)
    measures = summary["measures"]
    experiments = list(dict.fromkeys(e for e, _ in by_row))
    outcome_lines = []
    for e in experiments:
        names = [v for x, v in by_row if x == e]
        for a, title in algos:
            cells = [c for v in names if (c := _cell(summary, e, v, a)) is not None
                     and c["status"] == "ran"]
            if len({c["outcome"] for c in cells}) > 1:
                parts = ", ".join(f"{c['variant']} → {outcome_text(c)}" for c in cells)
                outcome_lines.append(f"- **{e}**, {title}: {parts}")
            for other in cells[1:]:  # each variant against the experiment's first
                base = cells[0]
                intervals += _compare(base, other, measures, f"{title} · {base['variant']}",
                                      f"{title} · {other['variant']}", e, findings)
        for v in names:  # the algorithms under one variant
            cells = [c for a, _ in algos if (c := _cell(summary, e, v, a)) is not None
                     and c["status"] == "ran"]
            for base, other in itertools.pairwise(cells):
                intervals += _compare(base, other, measures, f"{base['title']} · {v}",
                                      f"{other['title']} · {v}", e, findings)
    return findings, intervals, outcome_lines


def _compare(a: dict[str, Any], b: dict[str, Any], measures: Sequence[dict[str, Any]],
             name_a: str, name_b: str, experiment: str, findings: list[str]) -> list[Any]:
    out = []
    for m in measures:
        scale = 1e-3 if m["key"].endswith("_ms") else 1.0
        xs, ys = paired_by_seed(a["seeds"], [_scaled(v, scale) for v in a["per_seed"][m["key"]]],
                                b["seeds"], [_scaled(v, scale) for v in b["per_seed"][m["key"]]])
        interval = paired_t(xs, ys)
        out.append(interval)
        words = verdict(m["label"], m["unit"], name_a, name_b, interval)
        if words:
            findings.append(f"{experiment}: {words}")
    return out


def _scaled(v: float | None, scale: float) -> float | None:
    return None if v is None else v * scale


def definitions() -> str:
    keys = ("fault window", "outcome", "time without a leader", "time without commits",
            "leader changes in fault", "throughput in fault")
    return "\n".join(f"- **{k}**: {FIGURE_DEFINITIONS[k]}" for k in keys)


def build_matrix_report(folder: Path, notes: str = "") -> list[Path]:
    """Write ``report.html``, ``report.md`` and ``figures/`` into ``folder`` from its
    ``summary.json``; ``notes`` (Markdown) is the hand-written explanation of the cells."""
    summary = load(folder)
    manifest = json.loads((folder / "manifest.json").read_text()) \
        if (folder / "manifest.json").exists() else {}
    figures = []
    fig = heatmap(summary)
    if fig is not None:
        png, svg = save_figure(fig, folder / "figures", "matrix")
        figures.append(render.Figure(png, "Heat-map", (
            "Rows: experiment · variant; columns: algorithm. The outcome panel is coloured by "
            "category (green held, light green recovered during the fault, yellow unstable, "
            "orange only after the heal, red never); every other panel by its own scale, "
            "lighter is better. Grey: n/a (the variant cannot run there; the notes say why)."),
            svg))
    findings, intervals, outcome_lines = differences(summary)
    checks: dict[str, dict[str, str]] = {}
    for c in summary["cells"]:
        for name, v in c.get("checks", {}).items():
            column = checks.setdefault(name, {})
            prev = column.get(c["experiment"], "pass")
            column[c["experiment"]] = ("fail" if "fail" in (prev, v) else
                                       "unknown" if "unknown" in (prev, v) else "pass")
    na = [c for c in summary["cells"] if c["status"] == "n/a"]
    sections = []
    if outcome_lines:
        sections.append(("Where the outcome depends on the variant", "\n".join(outcome_lines)))
    if notes.strip():
        sections.append(("What each difference means", notes))
    if findings:  # after the explanation: the long list backs it, it does not lead
        sections.append(("Differences the intervals support", "\n".join(
            [f"_{render.FINDINGS_RULE}_", "", *(f"- {f}" for f in findings)])))
    sections.append(("Variants", "\n".join(
        f"- **{v['name']}**: {v['label']}"
        + (f" (only on {', '.join(v['files'])})" if v["files"] else "")
        for v in summary["variants"])))
    sections.append(("Definitions", definitions()))
    report = render.Report(
        title="Differences matrix: " + ", ".join(e["name"] for e in summary["experiments"]),
        description=("Every experiment file run on every algorithm under every named "
                     "variant (listed below), over the same seeds in the simulator: how each "
                     "cluster fared from the first fault to the heal."),
        checks=checks, failures=summary["failures"], findings=[],
        summary=summary_table(summary), figures=figures,
        faults=[f"{e['name']}: " + "; ".join(e["faults"]) for e in summary["experiments"]],
        manifest=manifest, notes=[f"n/a: {c['experiment']} · {c['variant']} · {c['title']}: "
                                  f"{c['reason']}" for c in na],
        summary_heading="The matrix", chance=chance_note(intervals),
        verdicts=summary["verdicts"], sections=sections)
    return render.write(report, folder)
