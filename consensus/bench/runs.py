"""Several throughput runs as one result: each figure's median and range.

On a 2-core machine that runs the broker, the nodes and the load generators together, one
run's maximum moves by several per cent (and did by +-25% before the search settled between
steps), so the README quotes ranges. Two ways to get them, both ending here:

- ``consensus-lab bench --runs 3`` repeats the throughput section in one benchmark,
  alternating the order of the systems (so no system always runs first);
- ``consensus-lab bench --merge a/bench.json b/bench.json ...`` merges earlier runs' files
  (their ``throughput_runs``, or the one ``throughput`` of an older file) into one result,
  whose other sections (bus, failover, memory...) are the first file's.

A row's identity is its label (``raft 3n in-process no-fsync``); the medians are what the
ratios and the goals use, and every run's figures stay in ``throughput_runs``.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any


def all_runs(result: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The result's throughput runs (an older bench.json has one, as ``throughput``)."""
    return list(result.get("throughput_runs") or ([result["throughput"]]
                                                   if result.get("throughput") else []))


def _light_p50(row: dict[str, Any]) -> float | None:
    return ((row.get("latency") or {}).get("light") or {}).get("p50_ms")


def _spread(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    mid = statistics.median(values)
    return {"median": round(mid, 3), "min": min(values), "max": max(values), "n": len(values),
            "spread": round((max(values) - min(values)) / mid, 4) if mid else None}


def summarize(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per system (in the first run's order): its maximum and light-load p50 over the runs."""
    labels: list[str] = []
    maxes: dict[str, list[float]] = {}
    p50s: dict[str, list[float]] = {}
    for rows in runs:
        for row in rows:
            label = row.get("label", "?")
            if label not in labels:
                labels.append(label)
            if "error" not in row and row.get("max_sustained_ops_s") is not None:
                maxes.setdefault(label, []).append(row["max_sustained_ops_s"])
            p50 = _light_p50(row)
            if "error" not in row and p50 is not None:
                p50s.setdefault(label, []).append(p50)
    return [{"label": label, "max_sustained_ops_s": _spread(maxes.get(label, [])),
             "light_p50_ms": _spread(p50s.get(label, []))} for label in labels]


def representative(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The first run's rows with each figure replaced by its median over the runs: what the
    ratios and goals are computed from."""
    if not runs:
        return []
    by_label = {s["label"]: s for s in summarize(runs)}
    out = []
    for row in copy.deepcopy(runs[0]):
        s = by_label.get(row.get("label", "?"), {})
        if s.get("max_sustained_ops_s") and "max_sustained_ops_s" in row:
            row["max_sustained_ops_s"] = s["max_sustained_ops_s"]["median"]
        if s.get("light_p50_ms") and _light_p50(row) is not None:
            row["latency"]["light"]["p50_ms"] = s["light_p50_ms"]["median"]
        out.append(row)
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several bench.json results as one: every throughput run of each, the first one's other
    sections, and where each run came from (``merged_from``)."""
    if not results:
        raise ValueError("nothing to merge: give at least one bench.json")
    base = copy.deepcopy(results[0])
    base["throughput_runs"] = [rows for r in results for rows in all_runs(r)]
    if not base["throughput_runs"]:
        raise ValueError("none of the results has a throughput section")
    base["throughput"] = base["throughput_runs"][0]
    base["merged_from"] = [{"commit": ((r.get("manifest") or {}).get("git") or {}).get("commit"),
                            "runs": len(all_runs(r)),
                            "wall_s": (r.get("manifest") or {}).get("wall_s")} for r in results]
    return base
