"""`consensus-lab` commands for reports: report, compare, gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from consensus.algorithms import get_algorithm
from consensus.cli import app, console, fail
from consensus.executor import EXECUTOR_HELP


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `consensus-lab run`.")],
) -> None:
    """Rebuild report.html and report.md of a run folder from its saved data (no re-run)."""
    from consensus.report import build_report

    try:
        written = build_report(run_dir)
    except FileNotFoundError as exc:
        raise fail(str(exc), code=2) from None
    console.print(f"report: [bold]{escape(str(written[0]))}[/] ({len(written)} files)")


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="The reference run folder.")],
    run_b: Annotated[Path, typer.Argument(help="The run folder to compare with it.")],
    more: Annotated[list[Path] | None, typer.Argument(
        help="More run folders (e.g. the other rates of a load sweep).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: "
                                                  "<RUN_A's parent>/compare-<a>-vs-<b>).")]
        = None,
) -> None:
    """Put two or more runs side by side (e.g. two timing settings): compare.html and .md."""
    from consensus.report import compare_runs

    out_dir = out or run_a.parent / f"compare-{run_a.name}-vs-{run_b.name}"
    runs = [run_a, run_b, *(more or [])]
    try:
        written = compare_runs(run_a, run_b, out_dir, *(more or []))
    except FileNotFoundError as exc:
        raise fail(str(exc), code=2) from None
    table = comparison_table(runs)
    if table is not None:
        console.print(table)
    console.print(f"comparison: [bold]{escape(str(written[0]))}[/] ({len(written)} files, "
                  f"with intervals, verdicts and figures)")


def comparison_table(runs: list[Path]) -> Table | None:
    """Per algorithm and headline metric: each run's median across seeds and its difference
    to the first run, read from the runs' summary.json (None for load sweeps: no medians)."""
    summaries: list[dict[str, Any]] = [json.loads((r / "summary.json").read_text())
                                       for r in runs]
    if any("algorithms" not in s for s in summaries):
        return None
    names = [r.name for r in runs]
    table = Table(title="median across seeds; difference to " + names[0])
    for col in ("algorithm", "metric", *names, *(f"{n} - {names[0]}" for n in names[1:])):
        table.add_column(escape(col), justify="left" if col in ("algorithm", "metric")
                         else "right")
    algos = list(dict.fromkeys(a for s in summaries for a in s["algorithms"]))
    for a in algos:
        if not all(a in s["algorithms"] for s in summaries):
            continue
        for m in summaries[0].get("metrics", []):
            values = [s["algorithms"][a]["median"].get(m["label"]) for s in summaries]
            diffs = ["-" if v is None or values[0] is None else _num(v - values[0], m["unit"],
                                                                     signed=True)
                     for v in values[1:]]
            table.add_row(get_algorithm(a).title, m["label"],
                          *(_num(v, m["unit"]) for v in values), *diffs)
        table.add_section()
    return table


def _num(v: float | None, unit: str, signed: bool = False) -> str:
    if v is None:
        return "-"
    return (f"{v:+,.1f}" if signed else f"{v:,.1f}") + (f" {unit}" if unit else "")


@app.command()
def gallery(
    out: Annotated[Path, typer.Option(help="Gallery folder.")] = Path("reports"),
    experiments: Annotated[Path, typer.Option(help="Folder of experiment files.")]
        = Path("experiments"),
    only: Annotated[list[str] | None, typer.Option(help="Only these experiment names.")]
        = None,
    executor: Annotated[str, typer.Option(help=EXECUTOR_HELP)] = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", "--jobs", "-j", min=1,
        help="Runs in parallel (default: one per core); 1 runs them one after another in "
             "this process.")] = None,
    rerun: Annotated[bool, typer.Option(help="--no-rerun: rebuild the reports from the run "
                                             "data kept in <out>/runs/gallery.")] = True,
) -> None:
    """Run every experiment on the simulator (default seeds) and write the report gallery.

    Every experiment's runs go to the executor together; each report is written as soon as
    its experiment's runs are in.
    """
    from consensus.executor import ExecutorError, parse_executor
    from consensus.report.gallery import build_gallery

    try:
        parse_executor(executor, workers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--executor") from None
    try:
        build_gallery(experiments, out, only=only, executor=executor, workers=workers,
                      rerun=rerun, log=console.print)
    except ExecutorError as exc:
        raise fail(str(exc)) from None
