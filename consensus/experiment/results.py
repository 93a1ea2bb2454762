"""The run folder: spec, manifest, per-run histories/events/metrics, and the summary.

    <run>/spec.yaml                  the spec as run
    <run>/manifest.json              versions, git commit, Python, transport, broker, seeds...
    <run>/<algorithm>/seed-<n>/history.jsonl   invoke/complete/outcome per client operation
    <run>/<algorithm>/seed-<n>/events.jsonl    faults, leader and role changes
    <run>/<algorithm>/seed-<n>/metrics.json    metrics and check verdicts
    <run>/<algorithm>/seed-<n>/trace.jsonl     messages around the first fault
    <run>/summary.json               per algorithm: medians across seeds, checks, differences
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import yaml

from consensus import variants
from consensus.experiment.runner import Check, RunResult
from consensus.experiment.spec import MEMBERSHIP_ACTIONS, ExperimentSpec
from consensus.sweep import canonical_hash

# The headline metrics of the summary table: (label, path into metrics.json, unit, better).
HEADLINE = [
    ("throughput", ("throughput_ops_s",), "ops/s", "higher"),
    ("latency p50", ("latency_ms", "all", "p50"), "ms", "lower"),
    ("latency p99", ("latency_ms", "all", "p99"), "ms", "lower"),
    ("latency max", ("latency_ms", "all", "max"), "ms", "lower"),
    ("messages per op", ("messages_per_op",), "", "lower"),
    ("bytes per op", ("bytes_per_op",), "B", "lower"),
    ("leader changes", ("leader_changes",), "", "lower"),
    ("elections started", ("elections_started",), "", "lower"),
    ("failover: elect", ("failover", "elect_ms"), "ms", "lower"),
    ("failover: commit", ("failover", "commit_ms"), "ms", "lower"),
    ("failover: client gap", ("failover", "client_gap_ms"), "ms", "lower"),
    ("operations unknown", ("operations", "info"), "", "lower"),
]
# Added to the headline when the spec changes the membership (medians over its changes).
MEMBERSHIP_HEADLINE = [
    ("change: dip", ("reconfiguration", "dip_pct"), "%", "lower"),
    ("change: recovery", ("reconfiguration", "recovery_ms"), "ms", "lower"),
    ("change: duration", ("reconfiguration", "change_ms"), "ms", "lower"),
    ("change: catch-up", ("reconfiguration", "catch_up_ms"), "ms", "lower"),
    ("change: catch-up bytes", ("reconfiguration", "catch_up_bytes"), "B", "lower"),
]


def headline(spec: ExperimentSpec) -> list[tuple[str, tuple[str, ...], str, str]]:
    """The summary's metrics for ``spec``: :data:`HEADLINE`, and the membership rows when
    its schedule changes the membership."""
    changes = any(f.action in MEMBERSHIP_ACTIONS for f in spec.faults)
    return HEADLINE + MEMBERSHIP_HEADLINE if changes else HEADLINE


def manifest(spec: ExperimentSpec, seeds: Sequence[int], transport: str,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "experiment": spec.name,
        "package": "consensus-lab",
        "version": _version(),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "transport": transport,
        "seeds": list(seeds),
        "algorithms": list(spec.algorithms),
        "variant": variants.as_json(spec.variant),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        **(extra or {}),
    }


def _version() -> str:
    try:
        return metadata.version("consensus-lab")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def default_run_dir(spec: ExperimentSpec, root: Path = Path("reports/runs")) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{spec.name}-{stamp}"


def write_run_result(run_dir: Path, result: RunResult) -> None:
    """Write one run's files; metrics.json last and atomically (temp file, then rename), so
    its presence means the run is complete (what ``run --resume`` keeps)."""
    d = run_dir / result.algorithm / f"seed-{result.seed}"
    d.mkdir(parents=True, exist_ok=True)
    _write_jsonl(d / "history.jsonl", (op.to_json() for op in result.ops))
    _write_jsonl(d / "events.jsonl", result.events)
    _write_jsonl(d / "trace.jsonl", result.trace)
    tmp = d / ".metrics.json.tmp"
    tmp.write_bytes(orjson.dumps(
        {"algorithm": result.algorithm, "seed": result.seed, "metrics": result.metrics,
         "checks": [c.to_json() for c in result.checks], "info": result.info},
        option=orjson.OPT_INDENT_2))
    tmp.replace(d / "metrics.json")


def load_run_result(run_dir: Path, algorithm: str, seed: int) -> RunResult | None:
    """A complete run saved by :func:`write_run_result`, as far as the summary needs it (its
    metrics, checks, info and events; not the history or trace, which stay on disk), or None
    when that run is missing or unreadable."""
    d = run_dir / algorithm / f"seed-{seed}"
    try:
        doc = orjson.loads((d / "metrics.json").read_bytes())
        events = [orjson.loads(line) for line in (d / "events.jsonl").read_bytes().splitlines()
                  if line.strip()]
    except (OSError, ValueError):
        return None
    if doc.get("algorithm") != algorithm or doc.get("seed") != seed:
        return None
    return RunResult(algorithm, seed, [], events, doc["metrics"],
                     [Check(c["name"], c["verdict"], c.get("detail", "")) for c in doc["checks"]],
                     info=doc.get("info", {}))


def spec_hash(spec: ExperimentSpec) -> str:
    """The hash of the spec as spec.yaml records it: a run folder resumes only this spec."""
    return canonical_hash(spec.model_dump(mode="json", by_alias=True, exclude_none=True))


def resume_refusal(run_dir: Path, spec: ExperimentSpec) -> str | None:
    """Why ``spec`` cannot continue the run in ``run_dir`` (None: it can; a folder without
    a run simply starts one). Another spec (file, seeds, variant, transport) would mix."""
    path = run_dir / "spec.yaml"
    if not existing_run(run_dir):
        return None
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"{run_dir} has no readable spec.yaml to resume ({exc})"
    if not isinstance(saved, dict) or canonical_hash(saved) != spec_hash(spec):
        return (f"{run_dir} holds a run of another spec (the experiment file, --seeds, "
                f"--variant or --transport differ); resume it with the same ones, or choose "
                f"another --out")
    return None


def write_spec_and_manifest(run_dir: Path, spec: ExperimentSpec, man: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(
        spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False))
    (run_dir / "manifest.json").write_text(json.dumps(man, indent=2))


def _write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    with open(path, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row))
            f.write(b"\n")


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, list):  # per-event values (failovers): the median over events
        return statistics.median(value) if value else None
    return float(value) if isinstance(value, int | float) else None


def summarise(results: Sequence[RunResult], spec: ExperimentSpec,
              interrupted: bool = False) -> dict[str, Any]:
    """Per algorithm: each headline metric's median across seeds, and every check verdict.

    ``interrupted``: the run was stopped (Ctrl-C) and ``results`` are the runs that finished;
    an interrupted run never passes.
    """
    rows = headline(spec)
    by_algo: dict[str, list[RunResult]] = {}
    for r in results:
        by_algo.setdefault(r.algorithm, []).append(r)
    algorithms: dict[str, Any] = {}
    for algo, runs in by_algo.items():
        runs.sort(key=lambda r: r.seed)
        medians = {}
        per_seed = {}
        for label, path, _, _ in rows:
            values = [_get(r.metrics, path) for r in runs]
            present = [v for v in values if v is not None]
            medians[label] = statistics.median(present) if present else None
            per_seed[label] = values
        algorithms[algo] = {
            "seeds": [r.seed for r in runs],
            "median": medians,
            "per_seed": per_seed,
            "checks": {f"seed-{r.seed}": {c.name: c.verdict for c in r.checks} for r in runs},
            "passed": all(r.passed and r.checks for r in runs),  # no verdict is no pass
            "committed": sum(r.metrics["committed"] for r in runs),
        }
    return {
        "experiment": spec.name,
        "description": spec.description,
        "variant": variants.as_json(spec.variant),
        "metrics": [{"label": label, "unit": unit, "better": better}
                    for label, _, unit, better in rows],
        "algorithms": algorithms,
        "passed": (bool(algorithms) and all(a["passed"] for a in algorithms.values())
                   and not interrupted),
        "failures": [f"{r.algorithm} seed {r.seed}: {c.name}: {c.detail or c.verdict}"
                     for r in results for c in r.checks if c.verdict != "pass"]
                    + [f"{r.algorithm} seed {r.seed}: no checks ran" for r in results
                       if not r.checks]
                    + ([_interrupted_note(results, spec)] if interrupted else []),
        **({"interrupted": True} if interrupted else {}),
    }


def _interrupted_note(results: Sequence[RunResult], spec: ExperimentSpec) -> str:
    return f"interrupted: {len(results)} of {spec.run_count} runs finished"


def mark_interrupted(run_dir: Path, summary: dict[str, Any],
                     man: dict[str, Any] | None = None) -> None:
    """Record in manifest.json that the run was interrupted (Ctrl-C), when, and what finished
    (as a note, which the report prints)."""
    path = run_dir / "manifest.json"
    if man is None:
        man = json.loads(path.read_text()) if path.exists() else {}
    done = next((f.removeprefix("interrupted: ") for f in summary.get("failures", [])
                 if f.startswith("interrupted: ")), "")
    note = f"Interrupted (Ctrl-C): {done}; this report shows only those."
    man = {**man, "interrupted": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "note": " ".join(filter(None, (man.get("note"), note)))}
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(man, indent=2))


def existing_run(run_dir: Path) -> bool:
    """True if ``run_dir`` holds (part of) a run folder: a new run there would mix seeds."""
    return any((run_dir / name).exists() for name in ("manifest.json", "summary.json",
                                                      "spec.yaml"))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(summary, manifest, per-run metrics documents) of a saved run folder."""
    summary = json.loads((run_dir / "summary.json").read_text())
    man = json.loads((run_dir / "manifest.json").read_text())
    runs = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/seed-*/metrics.json"))]
    return summary, man, runs


def summarise_sweep(spec: ExperimentSpec, points: list[dict[str, Any]],
                    failures: list[str], interrupted: bool = False) -> dict[str, Any]:
    """The summary of a load sweep: one (rate, algorithm) point per run, and the verdict."""
    if interrupted:
        done = len({p["rate"] for p in points})
        failures = [*failures, f"interrupted: {done} of {len(spec.load_sweep or [])} rates "
                               f"finished"]
    return {
        "experiment": spec.name,
        "description": spec.description,
        "load_sweep": points,
        "rates": list(spec.load_sweep or []),
        "passed": bool(points) and not failures,  # a sweep with no run checked nothing
        "failures": failures,
        **({"interrupted": True} if interrupted else {}),
    }
