"""Run a whole experiment into a run folder: every algorithm, seed and (load sweep) rate.

Used by ``consensus-lab run`` and by the report gallery, so both produce the same folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensus.algorithms import get_algorithm
from consensus.experiment import results as res
from consensus.experiment.runner import run_sim
from consensus.experiment.spec import ExperimentSpec

# Given a label ("Raft seed 1"), returns the callback that reports that run's progress (0..1).
ProgressFactory = Callable[[str], Callable[[float], None]]


def _no_progress(label: str) -> Callable[[float], None]:
    return lambda fraction: None


def run_experiment(spec: ExperimentSpec, run_dir: Path, *,
                   progress: ProgressFactory = _no_progress,
                   manifest_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``spec`` into ``run_dir`` (reports included); return its summary."""
    runner: Any = None
    extra = dict(manifest_extra or {})
    try:
        if spec.transport == "mqtt":
            from consensus.experiment.mqtt_runner import MqttExperiment

            runner = MqttExperiment(spec, run_dir)
            extra.update(runner.start())
        res.write_spec_and_manifest(run_dir, spec, res.manifest(spec, spec.seeds,
                                                                spec.transport, extra))
        if spec.load_sweep:
            summary = _load_sweep(spec, run_dir, runner, progress, extra)
        else:
            summary = _runs(spec, run_dir, runner, progress)
    finally:
        if runner is not None:
            runner.stop()
    render_report(run_dir)
    return summary


def _runs(spec: ExperimentSpec, run_dir: Path, runner: Any, progress: ProgressFactory,
          label: str = "") -> dict[str, Any]:
    """Every algorithm on every seed of ``spec``, written into ``run_dir``; the summary."""
    results = []
    for algorithm in spec.algorithms:
        for seed in spec.seeds:
            advance = progress(f"{label}{get_algorithm(algorithm).title} seed {seed}")
            if runner is not None:
                runner.spec, runner.run_dir = spec, run_dir
                result = runner.run(algorithm, seed, advance)
            else:
                result = run_sim(spec, algorithm, seed, advance)
            res.write_run_result(run_dir, result)
            results.append(result)
    summary = res.summarise(results, spec)
    res.write_summary(run_dir, summary)
    return summary


def _load_sweep(spec: ExperimentSpec, run_dir: Path, runner: Any, progress: ProgressFactory,
                extra: dict[str, Any]) -> dict[str, Any]:
    """One complete run per offered rate, each in ``rate-<r>/``; the summary of the curve."""
    points = []
    failures: list[str] = []
    for rate in spec.load_sweep or []:
        sub = spec.model_copy(update={
            "workload": spec.workload.model_copy(update={"rate": rate}), "load_sweep": None})
        sub_dir = run_dir / f"rate-{rate:g}"
        res.write_spec_and_manifest(sub_dir, sub, res.manifest(sub, sub.seeds, sub.transport,
                                                               extra))
        summary = _runs(sub, sub_dir, runner, progress, f"{rate:g}/s ")
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
