"""`consensus-lab` commands for experiments: run, check, experiments (the library)."""

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


def _experiment_file(arg: Path) -> Path:
    """A path as given (it wins), else the library experiment of that name."""
    from consensus import library

    path = library.resolve(arg)
    if not path.exists() and "/" not in str(arg):
        names = ", ".join(e.name for e in library.entries()) or "none installed"
        raise typer.BadParameter(f"no file {str(arg)!r} and no library experiment of that "
                                 f"name (library: {names})", param_hint="SPEC_PATH")
    return path


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(help="An experiment file, e.g. "
                                                   "experiments/leader-crash.yaml, or the name "
                                                   "of one in the library (`consensus-lab "
                                                   "experiments`), e.g. leader-crash.")],
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
    from consensus.experiment.execute import run_experiment
    from consensus.experiment.spec import SpecError, load_spec

    try:
        spec = load_spec(_experiment_file(spec_path))
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
    columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=json_out) as progress:

        def track(label: str) -> Any:
            task = progress.add_task(label, total=1.0)
            return lambda fraction: progress.update(task, completed=fraction)

        try:
            summary = run_experiment(spec, run_dir, progress=track)
        except (RuntimeError, OSError) as exc:  # a broker or a node that would not start
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        if spec.load_sweep:
            print_sweep(summary)
        else:
            print_summary(summary)
        console.print(f"\nresults: [bold]{run_dir}[/] (summary.json, histories, metrics, "
                      f"report.html)")
    if not summary["passed"]:
        for failure in summary["failures"]:
            err.print(f"[bold red]CHECK FAILED[/] {failure}")
        raise typer.Exit(1)


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


@app.command()
def experiments(
    json_out: Annotated[bool, typer.Option("--json", help="Print name, path and question of "
                                                          "each as JSON.")] = False,
) -> None:
    """List the experiment library with the question each experiment answers.

    Run one by name: `consensus-lab run leader-crash` (a file path works too, and wins).
    """
    from consensus import library

    found = library.entries()
    if json_out:
        print(json.dumps([{"name": e.name, "path": str(e.path), "description": e.description}
                          for e in found], indent=2))
        return
    if not found:
        err.print("[bold red]error:[/] no experiment library found (neither the package's "
                  "copy nor a checkout's experiments/ folder)")
        raise typer.Exit(1)
    table = Table(title=f"experiment library ({library.library_dir()})", show_lines=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("the question it answers")
    for e in found:
        table.add_row(e.name, e.description)
    console.print(table)
    console.print("run one: [bold]consensus-lab run NAME[/] (e.g. leader-crash; "
                  "--transport sim|mqtt, --seeds 1-5)")
