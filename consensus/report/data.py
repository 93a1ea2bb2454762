"""Read a saved run folder into what the charts and tables need (nothing is re-run).

The layout is the one :mod:`consensus.experiment.results` writes; histories are read lazily
because they are the only large files.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import yaml

from consensus.algorithms import get_algorithm


def title(algorithm: str) -> str:
    """The algorithm's display name; an old run folder's unknown name as it is."""
    try:
        return get_algorithm(algorithm).title
    except ValueError:
        return algorithm


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


@dataclass
class SeedRun:
    """One algorithm on one seed: its metrics document and (lazily) its raw files."""

    algorithm: str
    seed: int
    folder: Path
    doc: dict[str, Any]  # metrics.json: algorithm, seed, metrics, checks, info

    @property
    def metrics(self) -> dict[str, Any]:
        return self.doc.get("metrics", {})

    @property
    def checks(self) -> list[dict[str, str]]:
        return self.doc.get("checks", [])

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        return _jsonl(self.folder / "events.jsonl")

    @cached_property
    def trace(self) -> list[dict[str, Any]]:
        return _jsonl(self.folder / "trace.jsonl")

    def latencies(self) -> dict[str, list[float]]:
        """Latency (ms) of every operation answered ok, by operation type (GET, SET, ...)."""
        out: dict[str, list[float]] = defaultdict(list)
        for op in _jsonl(self.folder / "history.jsonl"):
            if op.get("outcome") != "ok" or op.get("complete_ms") is None:
                continue
            start = op.get("scheduled_ms")
            if start is None:
                start = op["invoke_ms"]
            command = str(op.get("command", "")).strip()
            kind = command.split(None, 1)[0].upper() if command else "?"
            out[kind].append(op["complete_ms"] - start)
        return dict(out)

    def answers(self) -> list[float]:
        """Completion times (ms) of every operation answered ok, sorted."""
        return sorted(op["complete_ms"] for op in _jsonl(self.folder / "history.jsonl")
                      if op.get("outcome") == "ok" and op.get("complete_ms") is not None)


@dataclass
class RunData:
    """A run folder: summary, manifest, spec, and one :class:`SeedRun` per algorithm and seed."""

    folder: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    spec: dict[str, Any]
    runs: dict[str, list[SeedRun]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.summary.get("experiment") or self.spec.get("name") or self.folder.name)

    @property
    def algorithms(self) -> list[str]:
        names = list(self.summary.get("algorithms", {}))
        return names or list(self.runs)

    def faults(self, algorithm: str | None = None) -> list[Fault]:
        """The faults as applied on the first seed of ``algorithm`` (default: the first one)."""
        algorithm = algorithm or (self.algorithms[0] if self.algorithms else None)
        runs = self.runs.get(algorithm or "", [])
        if not runs:
            return []
        return parse_faults(runs[0].events, self.end_ms(runs[0]))

    def end_ms(self, run: SeedRun) -> float:
        bins = run.metrics.get("throughput_bins") or []
        return len(bins) * float(run.metrics.get("bin_ms", 100.0))


def verdict_tally(summary: dict[str, Any]) -> tuple[int, int]:
    """(verdicts recorded, verdicts that are not "pass") in one run summary."""
    verdicts = [v for info in summary.get("algorithms", {}).values()
                for checks in info.get("checks", {}).values() for v in checks.values()]
    return len(verdicts), sum(v != "pass" for v in verdicts)


def folder_verdicts(folder: Path) -> tuple[int, int]:
    """:func:`verdict_tally` of a run folder, a load sweep's per-rate runs included."""
    total = bad = 0
    for path in [Path(folder) / "summary.json", *sorted(Path(folder).glob("*/summary.json"))]:
        if path.exists():
            n, b = verdict_tally(json.loads(path.read_text()))
            total, bad = total + n, bad + b
    return total, bad


def passed(folder: Path) -> bool:
    """A run passes when it recorded at least one verdict, all "pass", and no failure:
    zero verdicts is never a pass."""
    total, bad = folder_verdicts(folder)
    summary_path = Path(folder) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return total > 0 and bad == 0 and not summary.get("failures") and bool(
        summary.get("passed", True))


def sweep_runs(folder: Path) -> list[tuple[float, RunData]]:
    """A load sweep's per-rate runs (child run folders with a ``workload.rate``), by rate."""
    out = []
    for child in sorted(p.parent for p in Path(folder).glob("*/summary.json")):
        data = load(child)
        rate = (data.spec.get("workload") or {}).get("rate")
        if rate is not None:
            out.append((float(rate), data))
    return sorted(out, key=lambda item: item[0])


def load(folder: Path) -> RunData:
    """Load a run folder; a clear error when it is not one."""
    folder = Path(folder)
    if not (folder / "summary.json").exists():
        raise FileNotFoundError(f"{folder} is not a run folder (no summary.json)")
    summary = json.loads((folder / "summary.json").read_text())
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    spec_path = folder / "spec.yaml"
    spec = (yaml.safe_load(spec_path.read_text()) or {}) if spec_path.exists() else {}
    data = RunData(folder, summary, manifest, spec)
    for path in sorted(folder.glob("*/seed-*/metrics.json")):
        doc = json.loads(path.read_text())
        algorithm = doc.get("algorithm") or path.parent.parent.name
        seed = int(doc.get("seed", path.parent.name.removeprefix("seed-")))
        data.runs.setdefault(algorithm, []).append(SeedRun(algorithm, seed, path.parent, doc))
    for runs in data.runs.values():
        runs.sort(key=lambda r: r.seed)
    order = {a: i for i, a in enumerate(summary.get("algorithms", {}))}
    data.runs = dict(sorted(data.runs.items(), key=lambda kv: order.get(kv[0], len(order))))
    return data


# -- faults ------------------------------------------------------------------------------------

WINDOW_ACTIONS = ("loss", "delay", "duplicate")
SPLIT_ACTIONS = ("partition", "isolate", "cut", "links")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault as drawn: a moment (``end_ms`` None) or a window (loss, delay, a partition...)."""

    at_ms: float
    action: str
    label: str
    end_ms: float | None = None
    nodes: tuple[str, ...] = ()  # the nodes it acted on (crash, restart, pause, resume...)


def parse_faults(events: list[dict[str, Any]], end_ms: float) -> list[Fault]:
    """Faults from events.jsonl: windows get their duration, splits last until the next heal.

    Each fault event is ``{"type": "fault", "t", "action", "label", "nodes", "duration_ms",
    "skipped", "final"}``: ``duration_ms`` is set for windows, ``skipped`` for a fault that
    could not fire, ``final`` for the heal-all that ends every run (it closes an open split
    and is not drawn itself).
    """
    out: list[Fault] = []
    split: Fault | None = None  # the partition in force, until a heal or a new split
    for e in events:
        if e.get("type") != "fault" or e.get("skipped"):
            continue
        t, action, label = float(e["t"]), str(e["action"]), str(e["label"])
        nodes = tuple(e.get("nodes") or ())
        if action == "heal" or e.get("final"):
            if split is not None:
                out.append(replace(split, end_ms=t))
                split = None
            if not e.get("final"):
                out.append(Fault(t, "heal", label))
        elif action in SPLIT_ACTIONS:
            if split is not None:  # a new split replaces the old one
                out.append(replace(split, end_ms=t))
            split = Fault(t, action, label, nodes=nodes)
        elif action in WINDOW_ACTIONS:
            out.append(Fault(t, action, label, t + float(e.get("duration_ms") or 0.0), nodes))
        else:
            out.append(Fault(t, action, label, nodes=nodes))
    if split is not None:
        out.append(replace(split, end_ms=end_ms))
    out.sort(key=lambda f: f.at_ms)
    return out


def unavailability(answers: list[float], faults: list[Fault], end_ms: float,
                   min_ms: float = 0.0) -> list[tuple[float, float]]:
    """For each fault, the longest stretch without an ok answer until the next fault
    (the metric's unavailability window), as (start, end) in ms; shorter than ``min_ms``
    dropped."""
    import bisect

    times = sorted({f.at_ms for f in faults})
    out = []
    for i, t in enumerate(times):
        horizon = times[i + 1] if i + 1 < len(times) else end_ms
        k = bisect.bisect_right(answers, t)
        window = answers[max(0, k - 1):bisect.bisect_right(answers, horizon)]
        best: tuple[float, float] | None = None
        for a, b in itertools.pairwise(window):
            if best is None or b - a > best[1] - best[0]:
                best = (a, b)
        if best is not None and best[1] - best[0] >= min_ms:
            out.append(best)
    return out
