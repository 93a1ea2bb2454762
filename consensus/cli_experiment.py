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
    results = []
    columns = (TextColumn("{task.description:<24}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        if runner_ctx is not None:
            extra = runner_ctx.start()
        res.write_spec_and_manifest(run_dir, spec, res.manifest(spec, spec.seeds,
                                                                spec.transport, extra))
        with Progress(*columns, console=err, transient=json_out) as progress:
            for algorithm in spec.algorithms:
                for seed in spec.seeds:
                    task = progress.add_task(f"{get_algorithm(algorithm).title} seed {seed}",
                                             total=1.0)

                    def advance(fraction: float, task: Any = task) -> None:
                        progress.update(task, completed=fraction)

                    if runner_ctx is not None:
                        result = runner_ctx.run(algorithm, seed, advance)
                    else:
                        from consensus.experiment.runner import run_sim

                        result = run_sim(spec, algorithm, seed, advance)
                    res.write_run_result(run_dir, result)
                    results.append(result)
    finally:
        if runner_ctx is not None:
            runner_ctx.stop()
    summary = res.summarise(results, spec)
    res.write_summary(run_dir, summary)
    _render_reports(run_dir)
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
        console.print(f"\nresults: [bold]{run_dir}[/] (summary.json, histories, metrics"
                      f"{', report.html' if (run_dir / 'report.html').exists() else ''})")
    if not summary["passed"]:
        for failure in summary["failures"]:
            err.print(f"[bold red]CHECK FAILED[/] {failure}")
        raise typer.Exit(1)


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
