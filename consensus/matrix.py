"""The differences matrix: every experiment file x algorithm x named variant, over seeds.

A *named variant* is a set of design choices under a name, written
``NAME[@FILE,...]:key=value,...`` (``plain:pre_vote=false,check_quorum=false``; ``default:``
runs the file as it is; ``lease@stale-lease-read:read_path=lease`` runs only on that file).
Each (file, variant, algorithm) is a *cell*: the file with the variant on top of its own
``variant:`` block, run on that algorithm for every seed. A variant the algorithm does not
offer, or that does not go with the file (``read_path: lease`` without check-quorum), makes
its cell "n/a" with the reason, and the rest of the matrix runs.

Runs go through the :mod:`~consensus.executor` like ``run``'s, and each comes back reduced to
what the matrix shows: the fault window's figures (:func:`~consensus.experiment.metrics.
window_metrics`) and the check verdicts. Every check must pass in every cell (safety, and
liveness once the faults are healed); how the cluster fared *during* a fault is the
measurement, never a failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consensus import variants
from consensus.algorithms import NAMES, get_algorithm
from consensus.experiment.execute import RunJob, run_job
from consensus.experiment.metrics import OUTCOMES
from consensus.experiment.spec import ExperimentSpec, with_variant
from consensus.report.stats import t_interval
from consensus.sweep import canonical_hash, load_keyed, write_json

if TYPE_CHECKING:
    from consensus.executor import Executor
    from consensus.experiment.runner import RunResult

# The figures of a cell, from metrics["fault_window"]: (key, label, short label, unit shown,
# scale from the metric to that unit).
MEASURES: tuple[tuple[str, str, str, str, float], ...] = (
    ("leaderless_ms", "time without a leader", "no leader", "s", 1e-3),
    ("outage_ms", "time without commits", "no commits", "s", 1e-3),
    ("leader_changes", "leader changes in fault", "new leaders", "", 1.0),
    ("throughput_ops_s", "throughput in fault", "ops/s in fault", "ops/s", 1.0),
)
SAFETY_CHECKS = ("invariants", "linearizability")


class MatrixError(ValueError):
    """A matrix that cannot be planned: a variant that does not parse, a file it names that
    is not in the matrix, two variants of one name."""


@dataclass(frozen=True, slots=True)
class NamedVariant:
    name: str
    settings: dict[str, Any]  # Config field -> value (parsed to the field's type)
    files: tuple[str, ...] = ()  # the experiments it applies to (by name); () for all

    def applies_to(self, experiment: str) -> bool:
        return not self.files or experiment in self.files

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "settings": variants.as_json(self.settings),
                "label": variants.label(self.settings), "files": list(self.files)}


def parse_variant(text: str) -> NamedVariant:
    """``NAME[@FILE,FILE]:key=value,key=value`` -> :class:`NamedVariant` (no pairs after the
    colon: the file's own settings)."""
    head, sep, pairs = text.partition(":")
    name, _, files = head.partition("@")
    name = name.strip()
    if not sep or not name:
        raise MatrixError(f"a variant is NAME:key=value,... (e.g. plain:pre_vote=false,"
                          f"check_quorum=false, or default: for the file as it is); got "
                          f"{text!r}")
    try:
        settings = variants.parse_pairs(p for p in pairs.split(",") if p.strip())
    except variants.VariantError as exc:
        raise MatrixError(f"variant {name}: {exc}") from None
    for key, value in settings.items():  # a typo is an error, not a column of n/a
        refusals = []
        for algorithm in NAMES:
            try:
                variants.check(algorithm, {key: value})
                break
            except variants.VariantError as exc:
                refusals.append(str(exc))
        else:
            raise MatrixError(f"variant {name}: no algorithm offers it: {refusals[0]}")
    return NamedVariant(name, settings, tuple(f.strip() for f in files.split(",") if f.strip()))


def parse_variants(texts: Iterable[str]) -> list[NamedVariant]:
    """Every variant in ``texts`` (each may hold several, separated by spaces)."""
    out = [parse_variant(t) for text in texts for t in text.split()]
    seen = Counter(v.name for v in out)
    twice = sorted(n for n, k in seen.items() if k > 1)
    if twice:
        raise MatrixError(f"two variants are named {', '.join(twice)}")
    return out or [NamedVariant("default", {})]


@dataclass(frozen=True, slots=True)
class Cell:
    """One experiment, variant and algorithm: its spec, or why it cannot run (n/a)."""

    experiment: str
    variant: NamedVariant
    algorithm: str
    spec: ExperimentSpec | None
    refused: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.experiment, self.variant.name, self.algorithm)


def respec(spec: ExperimentSpec, **changes: Any) -> ExperimentSpec:
    """``spec`` with top-level ``changes`` (``workload`` merged key by key), validated again."""
    data = spec.model_dump(by_alias=True, exclude_unset=True)
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ExperimentSpec.model_validate(data)


def plan_cells(specs: Sequence[ExperimentSpec], named: Sequence[NamedVariant],
               algorithms: Sequence[str] | None = None) -> list[Cell]:
    """Every (file, variant, algorithm) cell, in that order; n/a cells carry the reason.
    ``algorithms``: these instead of each file's own list."""
    names = {s.name for s in specs}
    for v in named:
        unknown = sorted(set(v.files) - names)
        if unknown:
            raise MatrixError(f"variant {v.name} names {', '.join(unknown)}, which is not in "
                              f"the matrix ({', '.join(sorted(names))})")
    cells = []
    for spec in specs:
        for v in (v for v in named if v.applies_to(spec.name)):
            for algorithm in algorithms or spec.algorithms:
                cells.append(_cell(spec, v, algorithm))
    return cells


def _cell(spec: ExperimentSpec, v: NamedVariant, algorithm: str) -> Cell:
    try:
        variants.check(algorithm, v.settings)
        one = respec(spec, algorithms=[algorithm])
        one = with_variant(one, v.settings) if v.settings else one
        one.config(algorithm)  # Config's own check of how the fields go together
    except variants.VariantError as exc:
        return Cell(spec.name, v, algorithm, None, str(exc))
    except ValidationError as exc:
        why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        return Cell(spec.name, v, algorithm, None, why)
    return Cell(spec.name, v, algorithm, one)


# -- running ----------------------------------------------------------------------------------

def run_record(result: RunResult) -> dict[str, Any]:
    """What the matrix keeps of one run: the fault window's figures and the verdicts."""
    window = result.metrics.get("fault_window") or {}
    return {"seed": result.seed,
            **{k: window.get(k) for k in ("outcome", "recovery_ms", "outages",
                                          *(m[0] for m in MEASURES))},
            "checks": {c.name: c.verdict for c in result.checks},
            "failures": [f"{c.name}: {c.detail or c.verdict}" for c in result.checks
                         if c.verdict != "pass"]}


@dataclass(slots=True)
class MatrixRun:
    """The cells and, per runnable cell, its runs' records (in seed order)."""

    cells: list[Cell]
    seeds: dict[str, list[int]]  # experiment -> its seeds
    records: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)


class MatrixInterrupted(KeyboardInterrupt):
    """Ctrl-C during a matrix, after the runs that finished were written to its folder."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted: {done} of {total} runs finished")
        self.done = done
        self.total = total


def cell_spec_hash(spec: ExperimentSpec) -> str:
    """The spec part of a run's key: the cell's spec (file, variant and algorithm applied)
    without its seed list, which the key names run by run."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("seeds", None)
    return canonical_hash({"kind": "matrix-run", **data})


class MatrixFolder:
    """A matrix's folder: one small file per finished run, keyed by (spec hash, algorithm,
    variant, seed), at ``runs/<experiment>/<variant>/<algorithm>/seed-<N>.json``. A file
    whose key carries another spec hash (the experiment file changed) is not this run's."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_path(self, cell: Cell, seed: int) -> Path:
        return (self.root / "runs" / cell.experiment / cell.variant.name / cell.algorithm
                / f"seed-{seed}.json")

    @staticmethod
    def key(cell: Cell, seed: int) -> str:
        assert cell.spec is not None
        return f"{cell_spec_hash(cell.spec)}/{cell.algorithm}/{cell.variant.name}/{seed}"

    def has_runs(self) -> bool:
        return self.root.exists() and any((self.root / "runs").rglob("seed-*.json"))

    def load(self, cell: Cell, seed: int) -> dict[str, Any] | None:
        return load_keyed(self.run_path(cell, seed), self.key(cell, seed))

    def write(self, cell: Cell, record: dict[str, Any]) -> None:
        write_json(self.run_path(cell, record["seed"]),
                   {"key": self.key(cell, record["seed"]), **record})


def run_matrix(cells: Sequence[Cell], seeds: dict[str, list[int]],
               executor: Executor | None = None,
               advance: Callable[[int, int], None] | None = None,
               folder: MatrixFolder | None = None) -> MatrixRun:
    """Run every runnable cell on every seed of its experiment (on ``executor``, or one after
    another here); ``advance(done, total)`` after each run. With a ``folder``, runs whose
    file is there are taken from it and each new run is written as it finishes, so Ctrl-C
    (raised as :class:`MatrixInterrupted`) or a crash loses only the runs under way."""
    jobs: list[RunJob] = []
    where: list[int] = []  # index into planned of each job to run
    planned: list[tuple[Cell, int]] = [(c, seed) for c in cells if c.spec is not None
                                       for seed in seeds[c.experiment]]
    found: list[dict[str, Any] | None] = [None] * len(planned)
    for i, (cell, seed) in enumerate(planned):
        found[i] = folder.load(cell, seed) if folder is not None else None
        if found[i] is None:
            assert cell.spec is not None
            jobs.append(RunJob(cell.spec, cell.algorithm, seed))
            where.append(i)
    done = len(planned) - len(jobs)
    if advance and done:
        advance(done, len(planned))

    def take(j: int, result: RunResult) -> None:
        nonlocal done
        record = run_record(result)
        if folder is not None:
            folder.write(planned[where[j]][0], record)
        found[where[j]] = record
        done += 1
        if advance:
            advance(done, len(planned))

    if executor is not None:
        interrupted = executor.map_into(run_job, jobs, take, chunk=1)
    else:
        try:
            for j, job in enumerate(jobs):
                take(j, run_job(job))
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
    if interrupted:
        raise MatrixInterrupted(done, len(planned))
    out = MatrixRun(list(cells), seeds)
    for (cell, _), record in zip(planned, found, strict=True):
        assert record is not None
        out.records.setdefault(cell.key, []).append(
            {k: v for k, v in record.items() if k != "key"})
    for runs in out.records.values():
        runs.sort(key=lambda r: r["seed"])
    return out


# -- summary ----------------------------------------------------------------------------------

def interval_json(values: Sequence[float | None], scale: float = 1.0) -> dict[str, Any] | None:
    """Mean and 95% Student-t interval over seeds (``lo``/``hi`` None below two seeds)."""
    present = [v * scale for v in values if v is not None]
    if not present:
        return None
    i = t_interval(present)
    return {"mean": i.estimate, "lo": i.lo, "hi": i.hi, "n": i.n}


def modal_outcome(outcomes: Sequence[str]) -> str:
    """The most frequent outcome; a tie goes to the worse one."""
    counts = Counter(outcomes)
    return max(counts, key=lambda o: (counts[o], OUTCOMES.index(o) if o in OUTCOMES else -1))


def cell_summary(cell: Cell, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    base = {"experiment": cell.experiment, "variant": cell.variant.name,
            "variant_label": variants.label(cell.variant.settings),
            "algorithm": cell.algorithm, "title": get_algorithm(cell.algorithm).title}
    if cell.spec is None:
        return {**base, "status": "n/a", "reason": cell.refused}
    outcomes = [r["outcome"] for r in runs if r["outcome"] is not None]
    failures = [f"{cell.experiment} · {cell.variant.name} · {base['title']} seed {r['seed']}: "
                f"{f}" for r in runs for f in r["failures"]]
    return {
        **base, "status": "ran",
        "seeds": [r["seed"] for r in runs],
        "outcome": modal_outcome(outcomes) if outcomes else None,
        "outcomes": {o: outcomes.count(o) for o in OUTCOMES if o in outcomes},
        "measures": {key: interval_json([r[key] for r in runs], scale)
                     for key, _, _, _, scale in MEASURES},
        "per_seed": {key: [r[key] for r in runs] for key, *_ in MEASURES}
                    | {k: [r[k] for r in runs] for k in ("outcome", "outages", "recovery_ms")},
        "checks": _check_verdicts(runs),
        "failures": failures,
    }


def _check_verdicts(runs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per check, over the seeds: fail if any failed, unknown if any was unknown, else pass."""
    names = list(dict.fromkeys(n for r in runs for n in r["checks"]))
    out = {}
    for name in names:
        got = {r["checks"].get(name, "unknown") for r in runs}
        out[name] = "fail" if "fail" in got else "unknown" if "unknown" in got else "pass"
    return out


def summarise(run: MatrixRun, specs: Sequence[ExperimentSpec],
              named: Sequence[NamedVariant]) -> dict[str, Any]:
    """The matrix's summary.json: experiments, variants, one entry per cell, the verdict."""
    cells = [cell_summary(c, run.records.get(c.key, [])) for c in run.cells]
    failures = [f for c in cells for f in c.get("failures", [])]
    ran = [c for c in cells if c["status"] == "ran"]
    verdicts = sum(len(r["checks"]) for rs in run.records.values() for r in rs)
    return {
        "kind": "matrix",
        "experiments": [{"name": s.name, "description": s.description,
                         "seeds": run.seeds[s.name],
                         "duration_s": s.workload.duration_s,
                         "faults": [f.describe() for f in s.faults]} for s in specs],
        "variants": [v.to_json() for v in named],
        "measures": [{"key": k, "label": label, "short": short, "unit": unit}
                     for k, label, short, unit, _ in MEASURES],
        "outcomes": list(OUTCOMES),
        "cells": cells,
        "runs": sum(len(rs) for rs in run.records.values()),
        "verdicts": verdicts,
        "not_applicable": sum(1 for c in cells if c["status"] == "n/a"),
        "failures": failures,
        "passed": bool(ran) and verdicts > 0 and not failures,
    }


def load_specs(paths: Sequence[Path], *, seeds: list[int] | None = None,
               duration_s: float | None = None) -> list[ExperimentSpec]:
    """The experiment files, on the simulator, with ``seeds`` / the workload's ``duration_s``
    in place of theirs when given; raises SpecError / ValidationError / MatrixError."""
    from consensus.experiment.spec import load_spec

    specs = []
    for path in paths:
        spec = load_spec(path)
        changes: dict[str, Any] = {"transport": "sim"}
        if seeds:
            changes["seeds"] = seeds
        if duration_s is not None:
            changes["workload"] = {"duration_s": duration_s}
        specs.append(respec(spec, **changes))
    names = Counter(s.name for s in specs)
    twice = sorted(n for n, k in names.items() if k > 1)
    if twice:
        raise MatrixError(f"the experiment {', '.join(twice)} is given twice")
    return specs
