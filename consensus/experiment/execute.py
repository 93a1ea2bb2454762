"""Run a whole experiment into a run folder: every algorithm, seed and (load sweep) rate.

Used by ``consensus-lab run`` and by the report gallery, so both produce the same folders.
A run is a function of (spec, algorithm, seed, cluster factory): the factory builds the
simulated cluster, or real node processes on a broker that lives as long as the experiment.

Simulated runs may go to an :class:`~consensus.executor.Executor` (a process pool or Dask):
each worker gets (spec, algorithm, seed) and returns the :class:`RunResult`; this process
writes the run folder from the results, so it is the same files as one run after another.
Runs on the bus stay here, one at a time: they start real node processes on one broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consensus.algorithms import get_algorithm
from consensus.experiment import results as res
from consensus.experiment.cluster import Cluster
from consensus.experiment.runner import RunResult, plan_of, run, run_sim, sim_cluster
from consensus.experiment.spec import ExperimentSpec

if TYPE_CHECKING:
    from consensus.executor import Executor

# Given a label ("Raft seed 1"), returns the callback that reports that run's progress (0..1).
ProgressFactory = Callable[[str], Callable[[float], None]]
# Builds the cluster for one run: (spec, algorithm, seed, run folder) -> cluster.
ClusterFactory = Callable[[ExperimentSpec, str, int, Path], Cluster]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during an experiment, after what finished was saved: ``summary`` covers the
    completed runs and says ``"interrupted": true``, and the report draws them."""

    def __init__(self, run_dir: Path, summary: dict[str, Any]) -> None:
        super().__init__(f"interrupted; the finished runs are in {run_dir}")
        self.run_dir = run_dir
        self.summary = summary


def _no_progress(label: str) -> Callable[[float], None]:
    return lambda fraction: None


def simulated(spec: ExperimentSpec, algorithm: str, seed: int, run_dir: Path) -> Cluster:
    return sim_cluster(spec, algorithm, seed)


@contextlib.contextmanager
def on_the_bus(spec: ExperimentSpec) -> Iterator[tuple[ClusterFactory, dict[str, Any]]]:
    """A factory of node-process clusters and what the manifest records about them.

    Unless the spec names a broker, each cluster starts its own broker with a fresh realm
    (per-run users, passwords and ACLs: :mod:`consensus.auth`), so no run can hear or speak
    for another and nothing outside the run can speak for its nodes. A broker named by URL
    knows none of the run's users, so the nodes use it in open mode (the manifest says so).
    """
    from consensus.broker import chosen_kind
    from consensus.experiment.bus import BusCluster, BusOptions, not_honoured

    url = spec.mqtt.broker
    opts = BusOptions(url, spec.mqtt.library, spec.mqtt.fsync, spec.network.loss,
                      prefer=spec.mqtt.prefer, tls=spec.mqtt.tls)

    def factory(spec: ExperimentSpec, algorithm: str, seed: int, run_dir: Path) -> Cluster:
        return BusCluster(algorithm, tuple(spec.cluster.ids), spec.config(algorithm),
                          run_dir / algorithm / f"seed-{seed}" / "nodes", opts,
                          name=f"{spec.name}-{algorithm}-s{seed}-{uuid.uuid4().hex[:6]}")

    yield factory, {
        "broker": chosen_kind(spec.mqtt.prefer) if url is None else "external",
        "broker_url": url or "one per run, on 127.0.0.1",
        "authenticated": url is None, "tls": spec.mqtt.tls,
        "mqtt_client": spec.mqtt.library, "fsync": spec.mqtt.fsync,
        "not_honoured": not_honoured(spec)}


def run_one(spec: ExperimentSpec, algorithm: str, seed: int, factory: ClusterFactory,
            run_dir: Path, progress: Callable[[float], None] | None = None) -> RunResult:
    """One algorithm and seed of ``spec`` on the cluster ``factory`` builds."""
    cluster = factory(spec, algorithm, seed, run_dir)
    return asyncio.run(run(cluster, plan_of(spec), seed, progress))


def run_experiment(spec: ExperimentSpec, run_dir: Path, *,
                   progress: ProgressFactory = _no_progress,
                   manifest_extra: dict[str, Any] | None = None,
                   executor: Executor | None = None, resume: bool = False) -> dict[str, Any]:
    """Run ``spec`` into ``run_dir`` (reports included); return its summary.

    With an ``executor`` (already started), a simulated experiment's runs execute there in
    parallel; without one, or on the bus, one after another in this process. ``resume``:
    runs already complete in ``run_dir`` (the caller checked it holds this spec) are kept,
    not run again."""
    if executor is not None and spec.transport == "sim":
        planned = plan_experiment(spec, run_dir, executor, manifest_extra)
        jobs, dirs = planned.jobs, planned.dirs
        kept = [res.load_run_result(d, j.algorithm, j.seed) if resume else None
                for j, d in zip(jobs, dirs, strict=True)]
        todo = [i for i, k in enumerate(kept) if k is None]
        fresh, interrupted = execute_runs([jobs[i] for i in todo], [dirs[i] for i in todo],
                                          executor, progress, planned.label)
        for i, result in zip(todo, fresh, strict=True):
            kept[i] = result
        return finish_experiment(planned, kept, interrupted)
    with contextlib.ExitStack() as stack:
        extra = dict(manifest_extra or {})
        factory: ClusterFactory = simulated
        if spec.transport == "mqtt":
            factory, bus_info = stack.enter_context(on_the_bus(spec))
            extra.update(bus_info)
        man = res.manifest(spec, spec.seeds, spec.transport, extra)
        res.write_spec_and_manifest(run_dir, spec, man)
        try:
            if spec.load_sweep:
                summary = _load_sweep(spec, run_dir, factory, progress, extra, resume)
            else:
                summary = _runs(spec, run_dir, factory, progress, resume=resume)
        except RunInterrupted as stop:
            res.mark_interrupted(run_dir, stop.summary, man)
            interrupted = stop
        else:
            interrupted = None
    render_report(run_dir)
    if interrupted is not None:
        raise interrupted
    return summary


def _runs(spec: ExperimentSpec, run_dir: Path, factory: ClusterFactory,
          progress: ProgressFactory, label: str = "", resume: bool = False) -> dict[str, Any]:
    """Every algorithm on every seed of ``spec``, written into ``run_dir``; the summary.
    ``resume``: a run already complete in ``run_dir`` is kept instead of run again."""
    results = []
    try:
        for algorithm in spec.algorithms:
            for seed in spec.seeds:
                advance = progress(f"{label}{get_algorithm(algorithm).title} seed {seed}")
                kept = res.load_run_result(run_dir, algorithm, seed) if resume else None
                if kept is not None:
                    advance(1.0)
                    results.append(kept)
                    continue
                result = run_one(spec, algorithm, seed, factory, run_dir, advance)
                res.write_run_result(run_dir, result)
                results.append(result)
    except KeyboardInterrupt:
        # Keep what finished: a summary of the completed runs, marked interrupted.
        summary = res.summarise(results, spec, interrupted=True)
        res.write_summary(run_dir, summary)
        raise RunInterrupted(run_dir, summary) from None
    summary = res.summarise(results, spec)
    res.write_summary(run_dir, summary)
    return summary


def _load_sweep(spec: ExperimentSpec, run_dir: Path, factory: ClusterFactory,
                progress: ProgressFactory, extra: dict[str, Any],
                resume: bool = False) -> dict[str, Any]:
    """One complete run per offered rate, each in ``rate-<r>/``; the summary of the curve."""
    points = []
    failures: list[str] = []
    for rate in spec.load_sweep or []:
        sub = _rate_spec(spec, rate)
        sub_dir = run_dir / f"rate-{rate:g}"
        res.write_spec_and_manifest(sub_dir, sub, res.manifest(sub, sub.seeds, sub.transport,
                                                               extra))
        try:
            summary = _runs(sub, sub_dir, factory, progress, f"{rate:g}/s ", resume)
        except RunInterrupted as stop:
            res.mark_interrupted(sub_dir, stop.summary)
            render_report(sub_dir)
            summary = res.summarise_sweep(spec, points, failures, interrupted=True)
            res.write_summary(run_dir, summary)
            raise RunInterrupted(run_dir, summary) from None
        render_report(sub_dir)
        _add_points(rate, summary, points, failures)
    summary = res.summarise_sweep(spec, points, failures)
    res.write_summary(run_dir, summary)
    return summary


@dataclass(frozen=True, slots=True)
class RunJob:
    """One simulated run as a worker receives it: the spec, not the run folder."""

    spec: ExperimentSpec
    algorithm: str
    seed: int


def run_job(job: RunJob) -> RunResult:
    """A worker's side of a parallel experiment: run it, return the result (pickled back)."""
    return run_sim(job.spec, job.algorithm, job.seed)


def _jobs(spec: ExperimentSpec) -> list[RunJob]:
    """Every run of ``spec`` in the order :func:`_runs` makes them (the summary's order)."""
    return [RunJob(spec, a, s) for a in spec.algorithms for s in spec.seeds]


@dataclass(frozen=True, slots=True)
class PlannedExperiment:
    """A simulated experiment laid out for an executor: its folder (spec and manifest
    written), and per part (the experiment, or each rate of a load sweep) the spec and
    folder. ``jobs`` and ``dirs`` list every run in :func:`_runs`'s order, and each run's
    folder."""

    spec: ExperimentSpec
    run_dir: Path
    manifest: dict[str, Any]
    parts: tuple[tuple[float | None, ExperimentSpec, Path], ...]
    jobs: tuple[RunJob, ...]
    dirs: tuple[Path, ...]

    @property
    def label(self) -> str:
        return "load sweep: " if self.spec.load_sweep else ""


def plan_experiment(spec: ExperimentSpec, run_dir: Path, executor: Executor,
                    manifest_extra: dict[str, Any] | None = None) -> PlannedExperiment:
    """Write the folders' spec and manifest (as :func:`run_experiment` does) and lay out the
    runs of a simulated ``spec`` for ``executor``."""
    extra = {**(manifest_extra or {}), "executor": executor.describe()}
    man = res.manifest(spec, spec.seeds, spec.transport, extra)
    res.write_spec_and_manifest(run_dir, spec, man)
    parts: list[tuple[float | None, ExperimentSpec, Path]] = []
    for rate in spec.load_sweep or []:
        sub, sub_dir = _rate_spec(spec, rate), run_dir / f"rate-{rate:g}"
        res.write_spec_and_manifest(sub_dir, sub, res.manifest(sub, sub.seeds, sub.transport,
                                                               extra))
        parts.append((rate, sub, sub_dir))
    laid = tuple(parts or [(None, spec, run_dir)])
    runs = [(job, sub_dir) for _, sub, sub_dir in laid for job in _jobs(sub)]
    return PlannedExperiment(spec, run_dir, man, laid, tuple(job for job, _ in runs),
                             tuple(sub_dir for _, sub_dir in runs))


def execute_runs(jobs: list[RunJob], dirs: list[Path], executor: Executor,
                 progress: ProgressFactory = _no_progress,
                 label: str = "") -> tuple[list[RunResult | None], bool]:
    """Run ``jobs`` on ``executor``, writing each result into its folder as it arrives; the
    results in job order (None for a run that did not finish) and whether Ctrl-C came."""
    results: list[RunResult | None] = [None] * len(jobs)
    advance = progress(f"{label}{len(jobs)} runs on {executor.describe()}")
    done = 0

    def take(i: int, result: RunResult) -> None:
        nonlocal done
        res.write_run_result(dirs[i], result)
        results[i] = result
        done += 1
        advance(done / len(jobs))

    return results, executor.map_into(run_job, jobs, take, chunk=1)


def finish_experiment(planned: PlannedExperiment, results: list[RunResult | None],
                      interrupted: bool = False) -> dict[str, Any]:
    """Summaries and reports from the runs' results (in ``planned.jobs`` order): the same
    files as :func:`run_experiment` running them one after another. After Ctrl-C
    (``interrupted``), what finished is summarised, marked interrupted, and raised as
    :class:`RunInterrupted`."""
    spec, run_dir = planned.spec, planned.run_dir
    points: list[dict[str, Any]] = []
    failures: list[str] = []
    summary: dict[str, Any] = {}
    start = 0
    for rate, sub, sub_dir in planned.parts:
        n = sub.run_count
        finished = [r for r in results[start:start + n] if r is not None]
        start += n
        if rate is None:  # a plain experiment: its one part is the run folder
            summary = res.summarise(finished, sub, interrupted=interrupted)
            res.write_summary(run_dir, summary)
        elif finished:  # a load sweep's rate: its own folder, summary and report
            part = res.summarise(finished, sub, interrupted=len(finished) < n)
            res.write_summary(sub_dir, part)
            if len(finished) < n:
                res.mark_interrupted(sub_dir, part)
            else:
                _add_points(rate, part, points, failures)
            render_report(sub_dir)
    if spec.load_sweep:
        summary = res.summarise_sweep(spec, points, failures, interrupted=interrupted)
        res.write_summary(run_dir, summary)
    if interrupted:
        res.mark_interrupted(run_dir, summary, planned.manifest)
    render_report(run_dir)
    if interrupted:
        raise RunInterrupted(run_dir, summary)
    return summary


def _rate_spec(spec: ExperimentSpec, rate: float) -> ExperimentSpec:
    return spec.model_copy(update={
        "workload": spec.workload.model_copy(update={"rate": rate}), "load_sweep": None})


def _add_points(rate: float, summary: dict[str, Any], points: list[dict[str, Any]],
                failures: list[str]) -> None:
    failures += [f"rate {rate:g}: {f}" for f in summary["failures"]]
    for algo, info in summary["algorithms"].items():
        points.append({"rate": rate, "algorithm": algo, **{
            k: info["median"][k] for k in ("throughput", "latency p50", "latency p99")}})


def render_report(run_dir: Path) -> None:
    from consensus.report import build_report

    build_report(run_dir)
