"""A sweep as jobs: keys, the worker's function, the shortest failing prefix, the result folder.

A sweep runs :func:`consensus.simulate.sweep_run`'s simulation for many (algorithm, seed)
pairs. Each job is keyed by (spec hash, algorithm, variant, seed): the spec is the sweep's
settings (nodes, duration, settle time, node class) hashed as canonical JSON, and the variant is
the leader-stability knobs the seed picks (``prevote+cq``, ``cq+disk6ms``...). The worker gets
a :class:`SeedJob` and returns a plain dict; the client writes it to
``runs/<algorithm>/<variant>/seed-<N>.json``. A key whose file exists is done, so an
interrupted sweep resumes where it stopped and no key runs twice.

A failing seed (a safety violation, or a stall after healing) also comes back with everything
needed to rerun it on one machine (the ``simulate`` command line, the expanded options, the
fault schedule) and the shortest prefix of its fault schedule that still fails the same way,
found on the worker by bisection; the client writes that to ``failures/<algorithm>-seed-<N>.json``
for ``consensus-lab replay``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from consensus.experiment.nemesis import Fault
from consensus.simulate import (
    SWEEP_SETTLE_S,
    SimOptions,
    SimResult,
    fault_from_json,
    fault_to_json,
    sweep_knobs,
)

SPEC_VERSION = 1  # bump when the meaning of a sweep's settings changes


@dataclass(frozen=True, slots=True)
class SweepSettings:
    """What every seed of a sweep shares; its hash is the spec part of each job's key."""

    nodes: int = 5
    duration: float = 10.0
    settle: float = SWEEP_SETTLE_S
    node_class: str | None = None
    # Random membership changes (and compaction on some seeds) in every schedule. Left out of
    # the settings' JSON when off, so the hashes of sweeps made before it stay the same.
    membership: bool = False

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.membership:
            del out["membership"]
        return out

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the settings (first 16 hex digits)."""
        return canonical_hash({"kind": "sweep", "version": SPEC_VERSION, **self.to_json()})

    def options(self, algorithm: str, seed: int) -> SimOptions:
        return SimOptions.for_sweep(algorithm, seed, self.nodes, self.duration,
                                    self.node_class, self.settle, self.membership)


def canonical_hash(data: Any) -> str:
    """sha256 of ``data`` as canonical JSON (sorted keys, no spaces), first 16 hex digits:
    the spec part of a job key (sweeps, the matrix, ``run --resume``)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_keyed(path: Path, key: str) -> dict[str, Any] | None:
    """The record in ``path`` if it is the result of ``key``; None when missing, unreadable
    or written for another key (another spec hash: that job runs again, nothing mixes)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def variant(seed: int) -> str:
    return sweep_knobs(seed).variant()


@dataclass(frozen=True, slots=True)
class SeedJob:
    """One job as a worker receives it: the settings, not the folder."""

    settings: SweepSettings
    algorithm: str
    seed: int

    def key(self) -> str:
        return job_key(self.settings.spec_hash(), self.algorithm, self.seed)


def job_key(spec_hash: str, algorithm: str, seed: int) -> str:
    return f"{spec_hash}/{algorithm}/{variant(seed)}/{seed}"


def failed(result: SimResult) -> bool:
    return bool(result.violations or result.stalled)


def run_seed(job: SeedJob) -> dict[str, Any]:
    """Run one seed (on a worker) and return its record; a failing seed's carries a replay."""
    opts = job.settings.options(job.algorithm, job.seed)
    result = opts.run()
    record = {
        "key": job.key(), "spec_hash": job.settings.spec_hash(),
        "algorithm": job.algorithm, "variant": variant(job.seed), "seed": job.seed,
        "trace_sha256": result.trace_sha256, "committed": result.committed,
        "violations": result.violations, "stalled": result.stalled,
        "leader_changes": result.leader_changes, "events": result.events,
        "simulated_s": result.simulated_s, "wall_s": result.wall_s,
        "worker": f"{os.uname().nodename}:{os.getpid()}",
    }
    if opts.snapshot_entries:
        record["snapshot_entries"] = opts.snapshot_entries
    if failed(result):
        record["failure"] = failure_record(opts, result)
    return record


def failure_record(opts: SimOptions, result: SimResult) -> dict[str, Any]:
    """Everything needed to replay a failing run, with its shortest failing fault prefix."""
    schedule = opts.schedule()
    k, prefix_result = shortest_failing_prefix(opts, schedule, _same_failure(result), result)
    return {
        "command": opts.command(),
        "options": opts.to_json(),
        "trace_sha256": result.trace_sha256,
        "violations": result.violations,
        "stalled": result.stalled,
        "faults": [fault_to_json(f) for f in schedule],
        "fault_log": result.fault_log,
        "shortest_prefix": {
            "k": k,
            "of": len(schedule),
            "faults": [fault_to_json(f) for f in schedule[:k]],
            "trace_sha256": prefix_result.trace_sha256,
            "violations": prefix_result.violations,
            "stalled": prefix_result.stalled,
        },
    }


def _same_failure(original: SimResult) -> Callable[[SimResult], bool]:
    """A rerun fails 'the same way' with a violation if the original had one, else a stall."""
    if original.violations:
        return lambda r: bool(r.violations)
    return lambda r: bool(r.stalled)


def shortest_failing_prefix(opts: SimOptions, schedule: list[Fault],
                            fails: Callable[[SimResult], bool],
                            full: SimResult) -> tuple[int, SimResult]:
    """The fewest leading faults of ``schedule`` with which the run still fails, by bisection
    over k (assumes more faults never cure a failure; the k returned was seen failing).
    ``full`` is the failing run with the whole schedule. Each probe is a full rerun with
    ``schedule[:k]``; the run is otherwise identical."""
    best_k, best = len(schedule), full
    lo = -1  # largest k seen passing (-1: none tried)
    while lo + 1 < best_k:
        mid = (lo + best_k) // 2
        probe = opts.run(schedule[:mid])
        if fails(probe):
            best_k, best = mid, probe
        else:
            lo = mid
    return best_k, best


def prefix_faults(failure: dict[str, Any]) -> list[Fault]:
    return [fault_from_json(f) for f in failure["shortest_prefix"]["faults"]]


class SweepFolder:
    """A sweep's folder: ``sweep.json`` (settings and spec hash), one file per finished key
    under ``runs/``, a replay file per failing seed under ``failures/``, ``summary.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_path(self, algorithm: str, seed: int) -> Path:
        return self.root / "runs" / algorithm / variant(seed) / f"seed-{seed}.json"

    def failure_path(self, algorithm: str, seed: int) -> Path:
        return self.root / "failures" / f"{algorithm}-seed-{seed}.json"

    def settings_hash(self) -> str | None:
        path = self.root / "sweep.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())["spec_hash"]

    def has_runs(self) -> bool:
        return any((self.root / "runs").rglob("seed-*.json")) if self.root.exists() else False

    def write_settings(self, settings: SweepSettings) -> None:
        write_json(self.root / "sweep.json",
                    {"settings": settings.to_json(), "spec_hash": settings.spec_hash(),
                     "spec_version": SPEC_VERSION})

    def load(self, spec_hash: str, algorithm: str, seed: int) -> dict[str, Any] | None:
        """The finished record for this key, or None (missing, unreadable or another spec)."""
        return load_keyed(self.run_path(algorithm, seed), job_key(spec_hash, algorithm, seed))

    def write(self, record: dict[str, Any]) -> None:
        """Write a returned record: the failure file first, then the run file that marks the
        key done (so a crash in between reruns the seed rather than losing its replay)."""
        failure = record.pop("failure", None)
        if failure is not None:
            replay = {"algorithm": record["algorithm"], "seed": record["seed"],
                      "variant": record["variant"], "key": record["key"], **failure}
            write_json(self.failure_path(record["algorithm"], record["seed"]), replay)
            record["failure_file"] = str(self.failure_path(record["algorithm"], record["seed"])
                                         .relative_to(self.root))
        write_json(self.run_path(record["algorithm"], record["seed"]), record)


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file, then rename): a killed sweep leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


RUN_FIELDS = ("algorithm", "variant", "seed", "trace_sha256", "committed", "violations",
              "stalled")


def summarize(records: Iterable[dict[str, Any]], algorithms: list[str]) -> dict[str, Any]:
    """Per algorithm: seeds run (and per variant), violations, stalls, commands committed;
    and the failing seeds with their replay files."""
    per: dict[str, dict[str, Any]] = {
        a: {"seeds": 0, "variants": {}, "violations": 0, "stalls": 0, "committed": 0}
        for a in algorithms}
    violations: list[dict[str, Any]] = []
    stalls: list[dict[str, Any]] = []
    worker_s = 0.0
    for r in records:
        worker_s += r.get("wall_s", 0.0)
        entry = per[r["algorithm"]]
        entry["seeds"] += 1
        entry["variants"][r["variant"]] = entry["variants"].get(r["variant"], 0) + 1
        entry["committed"] += r["committed"]
        brief = {"algorithm": r["algorithm"], "seed": r["seed"], "variant": r["variant"],
                 "failure_file": r.get("failure_file")}
        if r["violations"]:
            entry["violations"] += 1
            violations.append({**brief, "violations": r["violations"][:5]})
        elif r["stalled"]:
            entry["stalls"] += 1
            stalls.append({**brief, "stalled": r["stalled"][:5]})
    for entry in per.values():
        entry["variants"] = dict(sorted(entry["variants"].items()))
    # Worker time summed over every run on record, resumed ones included: what the sweep cost,
    # however many sittings and machines it took.
    return {"per_algorithm": per, "violations": violations, "liveness_failures": stalls,
            "worker_s": worker_s}


def markdown(summary: dict[str, Any]) -> str:
    """A short page for a sweep: settings, the command that reproduces it, the figures."""
    s, runs, per = summary["settings"], summary["runs"], summary["per_algorithm"]
    names = list(per)
    state = (" (interrupted)" if summary["interrupted"] else
             " (stopped early)" if summary["stopped_early"] else "")
    lines = [
        f"# Sweep: {runs['done']:,} of {runs['requested']:,} runs{state}", "",
        f"Random fault schedules (crashes, restarts, pauses, partitions, one-way cuts, loss, "
        f"delay, duplication), {s['nodes']} nodes, {s['duration']:g} s of faults and "
        f"workload, then {s['settle']:g} s healed before the final checks. Each seed also "
        f"picks its variant: pre-vote, check-quorum, a 1-7 ms disk."
        + (" Membership changes too (add, remove, replace, transfer; 3 to 7 members, a "
           "majority of the configuration kept up), and log compaction on two seeds in three "
           "(a snapshot every 50-400 entries)." if s.get("membership") else "")
        + (f" Node class: `{s['node_class']}`." if s["node_class"] else ""), "",
        "Reproduce (or continue, with `--resume`):", "", "```",
        summary["command"], "```", "",
        _row("", names),
        "|---|" + "---:|" * len(names),
        _row("seeds", [f"{per[n]['seeds']:,}" for n in names]),
    ]
    for v in sorted({v for n in names for v in per[n]["variants"]}):
        lines.append(_row(v, [f"{per[n]['variants'].get(v, 0):,}" for n in names]))
    for label, key in (("safety violations", "violations"),
                       ("stalls after healing", "stalls"),
                       ("commands committed", "committed")):
        lines.append(_row(label, [f"{per[n][key]:,}" for n in names]))
    rate = summary["seeds_per_s"]
    lines += ["", f"{runs['ran_now']:,} runs in {summary['wall_s']:,.0f} s on "
                  f"{summary['executor']}"
                  + (f": {rate:.1f} seeds/s, {summary['seeds_per_s_per_worker']:.2f} per "
                     f"worker." if rate else ".")]
    total = sum(per[n]["seeds"] for n in names)
    if total and summary.get("worker_s"):
        lines += ["", f"All {total:,} runs on record took {summary['worker_s']:,.0f} s of "
                      f"worker time ({summary['worker_s'] / total:.2f} s per run), resumed "
                      f"sittings included."]
    failures = summary["violations"] + summary["liveness_failures"]
    if failures:
        lines += ["", "## Failing seeds", ""]
        lines += [f"- {f['algorithm']} seed {f['seed']} ({f['variant']}): "
                  f"`consensus-lab replay {f['failure_file']}`" for f in failures[:50]]
    return "\n".join(lines) + "\n"


def _row(label: str, cells: list[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"
