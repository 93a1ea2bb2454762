"""`consensus-lab` commands for reports: report, compare, gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consensus.cli import app, console, err


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `consensus-lab run`.")],
) -> None:
    """Rebuild report.html and report.md of a run folder from its saved data (no re-run)."""
    from consensus.report import build_report

    try:
        written = build_report(run_dir)
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"report: [bold]{written[0]}[/] ({len(written)} files)")


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
    try:
        written = compare_runs(run_a, run_b, out_dir, *(more or []))
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"comparison: [bold]{written[0]}[/] ({len(written)} files)")


@app.command()
def gallery(
    out: Annotated[Path, typer.Option(help="Gallery folder.")] = Path("reports"),
    experiments: Annotated[Path, typer.Option(help="Folder of experiment files.")]
        = Path("experiments"),
    only: Annotated[list[str] | None, typer.Option(help="Only these experiment names.")]
        = None,
    jobs: Annotated[int, typer.Option(min=1, help="Experiments run in parallel.")] = 2,
    rerun: Annotated[bool, typer.Option(help="--no-rerun: rebuild the reports from the run "
                                             "data kept in <out>/runs/gallery.")] = True,
) -> None:
    """Run every experiment on the simulator (default seeds) and write the report gallery."""
    from consensus.report.gallery import build_gallery

    build_gallery(experiments, out, only=only, jobs=jobs, rerun=rerun, log=console.print)
