"""`consensus-lab` commands for experiments: run, check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consensus.algorithms import get_algorithm
from consensus.cli import app, console, err


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = []
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part.strip():
                seeds.append(int(part))
    except ValueError:
        raise typer.BadParameter(f"expected seeds like 1,2,3 or 1-10, got {text!r}") from None
    if not seeds:
        raise typer.BadParameter("no seeds given")
    return seeds


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(help="An experiment file, e.g. "
                                                   "experiments/leader-crash.yaml.")],
    transport: Annotated[str | None, typer.Option(help="sim | mqtt (overrides the file).")]
        = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds, e.g. 1,2,3 or 1-10 "
                                                   "(overrides the file).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default reports/runs/"
                                                  "<name>-<timestamp>).")] = None,
    broker: Annotated[str | None, typer.Option(
        help="mqtt transport: a broker URL to use, or 'mosquitto' / 'amqtt' to start that one "
             "(default: start mosquitto if installed, else the embedded amqtt).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json.")] = False,
) -> None:
    """Run an experiment on every algorithm and seed; check, measure and write a run folder.

    Exits 1 if any check failed (invariants, liveness after healing, linearizability).
    """
    from consensus.experiment import results as res
    from consensus.experiment.spec import SpecError, load_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        err.print(f"[bold red]invalid experiment[/] {exc}")
        raise typer.Exit(2) from None
    updates: dict[str, Any] = {}
    if transport:
        if transport not in ("sim", "mqtt"):
            raise typer.BadParameter("expected sim or mqtt", param_hint="--transport")
        updates["transport"] = transport
    if seeds:
        updates["seeds"] = _parse_seeds(seeds)
    if broker:
        key = "prefer" if broker in ("mosquitto", "amqtt", "auto") else "broker"
        updates["mqtt"] = spec.mqtt.model_copy(update={key: broker})
    spec = spec.model_copy(update=updates)
    run_dir = out or res.default_run_dir(spec)
    extra: dict[str, Any] = {}
    if spec.transport == "mqtt":
        from consensus.experiment.mqtt_runner import MqttExperiment

        runner_ctx: Any = MqttExperiment(spec, run_dir)
    else:
        runner_ctx = None
    columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        if runner_ctx is not None:
            extra = runner_ctx.start()
        res.write_spec_and_manifest(run_dir, spec, res.manifest(spec, spec.seeds,
                                                                spec.transport, extra))
        with Progress(*columns, console=err, transient=json_out) as progress:
            if spec.load_sweep:
                summary = _load_sweep(spec, run_dir, runner_ctx, progress, extra)
            else:
                summary = _execute(spec, run_dir, runner_ctx, progress)
    finally:
        if runner_ctx is not None:
            runner_ctx.stop()
    _render_reports(run_dir)
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        if spec.load_sweep:
            print_sweep(summary)
        else:
            print_summary(summary)
        console.print(f"\nresults: [bold]{run_dir}[/] (summary.json, histories, metrics"
                      f"{', report.html' if (run_dir / 'report.html').exists() else ''})")
    if not summary["passed"]:
        for failure in summary["failures"]:
            err.print(f"[bold red]CHECK FAILED[/] {failure}")
        raise typer.Exit(1)


def _execute(spec: Any, run_dir: Path, runner_ctx: Any, progress: Progress,
             label: str = "") -> dict[str, Any]:
    """Every algorithm on every seed of ``spec``, written into ``run_dir``; the summary."""
    from consensus.experiment import results as res

    results = []
    for algorithm in spec.algorithms:
        for seed in spec.seeds:
            task = progress.add_task(f"{label}{get_algorithm(algorithm).title} seed {seed}",
                                     total=1.0)

            def advance(fraction: float, task: Any = task) -> None:
                progress.update(task, completed=fraction)

            if runner_ctx is not None:
                runner_ctx.spec, runner_ctx.run_dir = spec, run_dir
                result = runner_ctx.run(algorithm, seed, advance)
            else:
                from consensus.experiment.runner import run_sim

                result = run_sim(spec, algorithm, seed, advance)
            res.write_run_result(run_dir, result)
            results.append(result)
    summary = res.summarise(results, spec)
    res.write_summary(run_dir, summary)
    return summary


def _load_sweep(spec: Any, run_dir: Path, runner_ctx: Any, progress: Progress,
                extra: dict[str, Any]) -> dict[str, Any]:
    """One complete run per offered rate, each in ``rate-<r>/``; the summary of the curve."""
    from consensus.experiment import results as res

    points = []
    failures: list[str] = []
    for rate in spec.load_sweep:
        sub = spec.model_copy(update={
            "workload": spec.workload.model_copy(update={"rate": rate}), "load_sweep": None})
        sub_dir = run_dir / f"rate-{rate:g}"
        res.write_spec_and_manifest(sub_dir, sub, res.manifest(sub, sub.seeds, sub.transport,
                                                               extra))
        summary = _execute(sub, sub_dir, runner_ctx, progress, f"{rate:g}/s ")
        _render_reports(sub_dir)
        failures += [f"rate {rate:g}: {f}" for f in summary["failures"]]
        for algo, info in summary["algorithms"].items():
            points.append({"rate": rate, "algorithm": algo, **{
                k: info["median"][k] for k in ("throughput", "latency p50", "latency p99")}})
    summary = res.summarise_sweep(spec, points, failures)
    res.write_summary(run_dir, summary)
    return summary


def print_sweep(summary: dict[str, Any]) -> None:
    algos = list(dict.fromkeys(p["algorithm"] for p in summary["load_sweep"]))
    table = Table(title=f"{summary['experiment']}: throughput and latency by offered load")
    table.add_column("offered", justify="right")
    for a in algos:
        t = get_algorithm(a).title
        for col in ("ops/s", "p50 ms", "p99 ms"):
            table.add_column(f"{t} {col}", justify="right")
    for rate in dict.fromkeys(p["rate"] for p in summary["load_sweep"]):
        row = [f"{rate:g}/s"]
        for a in algos:
            p = next(p for p in summary["load_sweep"] if p["rate"] == rate
                     and p["algorithm"] == a)
            row += [_fmt(p["throughput"], ""), _fmt(p["latency p50"], ""),
                    _fmt(p["latency p99"], "")]
        table.add_row(*row)
    console.print(table)
    console.print("[green]all checks passed" if summary["passed"] else "[bold red]CHECKS FAILED")


def _render_reports(run_dir: Path) -> None:
    try:
        from consensus.report import build_report
    except ImportError:
        return
    build_report(run_dir)


def print_summary(summary: dict[str, Any]) -> None:
    algos = list(summary["algorithms"])
    table = Table(title=f"{summary['experiment']}: median across seeds")
    table.add_column("")
    for a in algos:
        table.add_column(get_algorithm(a).title, justify="right")
    if len(algos) == 2:
        table.add_column("difference", justify="right")
    for m in summary["metrics"]:
        label, unit = m["label"], m["unit"]
        values = [summary["algorithms"][a]["median"][label] for a in algos]
        row = [_fmt(v, unit) for v in values]
        if len(algos) == 2:
            a, b = values
            row.append("" if a is None or b is None else _fmt(b - a, unit, signed=True))
        table.add_row(label, *row)
    verdicts = []
    for a in algos:
        failed = [f"{seed}: {name}" for seed, checks in summary["algorithms"][a]["checks"].items()
                  for name, v in checks.items() if v != "pass"]
        verdicts.append("[green]all checks passed" if not failed
                        else f"[bold red]FAILED ({', '.join(failed)})")
    table.add_row("checks", *verdicts, *([""] if len(algos) == 2 else []))
    console.print(table)


def _fmt(v: float | None, unit: str, signed: bool = False) -> str:
    if v is None:
        return "-"
    text = f"{v:+,.1f}" if signed else f"{v:,.1f}"
    return f"{text} {unit}".strip()


@app.command()
def check(
    history: Annotated[Path, typer.Argument(help="A history.jsonl from a run folder.")],
    budget: Annotated[float, typer.Option(help="Time budget in seconds; past it the "
                                               "verdict is UNKNOWN, never a pass.")] = 60.0,
) -> None:
    """Check a saved client history for per-key linearizability (Wing-Gong-Lowe)."""
    from consensus.check.linearizability import check_history, format_result, load_history

    try:
        ops = load_history(history)
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    result = check_history(ops, time_budget_s=budget)
    console.print(format_result(result))
    if result.verdict != "ok":
        raise typer.Exit(1)
