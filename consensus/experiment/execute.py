"""Run a whole experiment into a run folder: every algorithm, seed and (load sweep) rate.

Used by ``consensus-lab run`` and by the report gallery, so both produce the same folders.
A run is a function of (spec, algorithm, seed, cluster factory): the factory builds the
simulated cluster, or real node processes on a broker that lives as long as the experiment.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from consensus.algorithms import get_algorithm
from consensus.experiment import results as res
from consensus.experiment.cluster import Cluster
from consensus.experiment.runner import RunResult, plan_of, run, sim_cluster
from consensus.experiment.spec import ExperimentSpec

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
    """A broker for the whole experiment (started unless the spec names one), a factory of
    node-process clusters on it, and what the manifest records about them."""
    from consensus.broker import start_broker
    from consensus.experiment.bus import BusCluster, BusOptions, not_honoured

    handle = None
    url, kind = spec.mqtt.broker, "external"
    if url is None:
        handle = start_broker(prefer=spec.mqtt.prefer)
        url, kind = handle.url, handle.kind
    opts = BusOptions(url, spec.mqtt.library, spec.mqtt.fsync, spec.network.loss)

    def factory(spec: ExperimentSpec, algorithm: str, seed: int, run_dir: Path) -> Cluster:
        return BusCluster(algorithm, tuple(spec.cluster.ids), spec.config(algorithm),
                          run_dir / algorithm / f"seed-{seed}" / "nodes", opts,
                          name=f"{spec.name}-{algorithm}-s{seed}-{uuid.uuid4().hex[:6]}")

    try:
        yield factory, {"broker": kind, "broker_url": url, "mqtt_client": spec.mqtt.library,
                        "fsync": spec.mqtt.fsync, "not_honoured": not_honoured(spec)}
    finally:
        if handle is not None:
            handle.stop()


def run_one(spec: ExperimentSpec, algorithm: str, seed: int, factory: ClusterFactory,
            run_dir: Path, progress: Callable[[float], None] | None = None) -> RunResult:
    """One algorithm and seed of ``spec`` on the cluster ``factory`` builds."""
    cluster = factory(spec, algorithm, seed, run_dir)
    return asyncio.run(run(cluster, plan_of(spec), seed, progress))


def run_experiment(spec: ExperimentSpec, run_dir: Path, *,
                   progress: ProgressFactory = _no_progress,
                   manifest_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``spec`` into ``run_dir`` (reports included); return its summary."""
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
                summary = _load_sweep(spec, run_dir, factory, progress, extra)
            else:
                summary = _runs(spec, run_dir, factory, progress)
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
          progress: ProgressFactory, label: str = "") -> dict[str, Any]:
    """Every algorithm on every seed of ``spec``, written into ``run_dir``; the summary."""
    results = []
    try:
        for algorithm in spec.algorithms:
            for seed in spec.seeds:
                advance = progress(f"{label}{get_algorithm(algorithm).title} seed {seed}")
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
                progress: ProgressFactory, extra: dict[str, Any]) -> dict[str, Any]:
    """One complete run per offered rate, each in ``rate-<r>/``; the summary of the curve."""
    points = []
    failures: list[str] = []
    for rate in spec.load_sweep or []:
        sub = spec.model_copy(update={
            "workload": spec.workload.model_copy(update={"rate": rate}), "load_sweep": None})
        sub_dir = run_dir / f"rate-{rate:g}"
        res.write_spec_and_manifest(sub_dir, sub, res.manifest(sub, sub.seeds, sub.transport,
                                                               extra))
        try:
            summary = _runs(sub, sub_dir, factory, progress, f"{rate:g}/s ")
        except RunInterrupted as stop:
            res.mark_interrupted(sub_dir, stop.summary)
            render_report(sub_dir)
            summary = res.summarise_sweep(spec, points, failures, interrupted=True)
            res.write_summary(run_dir, summary)
            raise RunInterrupted(run_dir, summary) from None
        render_report(sub_dir)
        failures += [f"rate {rate:g}: {f}" for f in summary["failures"]]
        for algo, info in summary["algorithms"].items():
            points.append({"rate": rate, "algorithm": algo, **{
                k: info["median"][k] for k in ("throughput", "latency p50", "latency p99")}})
    summary = res.summarise_sweep(spec, points, failures)
    res.write_summary(run_dir, summary)
    return summary


def render_report(run_dir: Path) -> None:
    from consensus.report import build_report

    build_report(run_dir)
