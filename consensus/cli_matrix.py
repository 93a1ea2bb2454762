"""`consensus-lab matrix`: experiment files x algorithms x named variants, in one report."""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consensus.cli import app, bad_parameter, console, err, fail
from consensus.cli_experiment import _experiment_file, _parse_seeds
from consensus.executor import EXECUTOR_HELP, ExecutorError, parallel, parse_executor, started

VARIANTS_HELP = (
    "Named variants, NAME:key=value,... (repeatable, or several in one quoted value separated "
    "by spaces): e.g. 'plain:pre_vote=false,check_quorum=false stable:pre_vote=true,"
    "check_quorum=true'. 'default:' runs each file as it is. NAME@FILE,FILE:... runs the "
    "variant on those experiments only (by name), e.g. lease@stale-lease-read:read_path=lease. "
    "A variant an algorithm does not offer makes that cell n/a. Default: default:.")


@app.command()
def matrix(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Experiment files or library names, e.g. quorum-loss chained.")] = None,
    variant_specs: Annotated[list[str] | None, typer.Option(
        "--variants", metavar="NAME:KEY=VALUE,...", help=VARIANTS_HELP)] = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds for every file, e.g. 1-5 (default: "
                                                   "each file's own).")] = None,
    duration: Annotated[float | None, typer.Option(
        min=0.1, help="Seconds of workload for every file instead of its own (its faults "
                      "must fall inside).")] = None,
    executor: Annotated[str, typer.Option(help=EXECUTOR_HELP)] = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1, help="Runs in parallel (default: one per core); 1 runs "
                                       "them one after another here.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Report folder (default reports/runs/matrix-<timestamp>): report.md, "
             "report.html, figures/, summary.json, and runs/ (one small file per run, which "
             "--resume keeps).")] = None,
    notes: Annotated[Path | None, typer.Option(
        help="A Markdown file explaining the cells, put into the report.")] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Run nothing: rewrite the report in --out from its summary.json "
                          "(say with new --notes).")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the matrix in --out: runs whose file is in its runs/ "
                         "(same experiment, variant, algorithm and seed, unchanged spec) are "
                         "kept, the rest run, then the report is written.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the matrix in --out (without it, or --resume, a folder "
                        "holding one is refused).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json.")] = False,
) -> None:
    """Run every file x algorithm x variant over seeds; one report with a table and a heat-map.

    Per cell: the outcome of the fault window (held, recovered during the fault, unstable,
    only after the heal, never), time without a leader, time without commits, leader changes and
    throughput during the fault, with 95% intervals over seeds. Exits 1 if any check failed
    in any cell (safety, or liveness after the heal); a fault that blocks progress while it
    lasts is measured, not failed. Each run's result is its own file under runs/ as it
    finishes; 130 on Ctrl-C (the finished runs are kept; --resume continues).
    """
    from consensus.experiment.spec import SpecError
    from consensus.matrix import (
        MatrixError,
        MatrixFolder,
        MatrixInterrupted,
        load_specs,
        parse_variants,
        plan_cells,
        run_matrix,
        summarise,
    )
    from consensus.report.matrix_report import build_matrix_report

    notes_text = ""
    if notes is not None:
        try:
            notes_text = notes.read_text()
        except OSError as exc:
            raise bad_parameter(str(exc), param_hint="--notes", json_out=json_out) from None
    if rebuild:
        _rebuild(out, notes_text, json_out)
        return
    if not files:
        raise bad_parameter("name at least one experiment file", param_hint="FILES",
                            json_out=json_out)
    if resume and out is None:
        raise bad_parameter("--resume needs the folder of the matrix to continue (--out DIR)",
                            param_hint="--resume", json_out=json_out)
    if resume and force:
        raise bad_parameter("--resume keeps the runs in --out and --force replaces them: "
                            "choose one", param_hint="--force", json_out=json_out)
    paths = [_experiment_file(f) for f in files]
    chosen = _parse_seeds(seeds, json_out) if seeds else None
    try:
        specs = load_specs(paths, seeds=chosen, duration_s=duration)
        named = parse_variants(variant_specs or [])
        cells = plan_cells(specs, named)
    except SpecError as exc:
        raise fail(f"invalid experiment {exc}", kind="invalid-experiment", code=2,
                   json_out=json_out) from None
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise bad_parameter(why, param_hint="--duration" if duration else None,
                            json_out=json_out) from None
    except MatrixError as exc:
        raise bad_parameter(str(exc), param_hint="--variants", json_out=json_out) from None
    seeds_of = {s.name: list(s.seeds) for s in specs}
    total = sum(len(seeds_of[c.experiment]) for c in cells if c.spec is not None)
    try:
        pool = parallel(parse_executor(executor, workers), workers, total)
    except ValueError as exc:
        raise bad_parameter(str(exc), param_hint="--executor", json_out=json_out) from None
    folder = out or Path("reports/runs") / f"matrix-{dt.datetime.now():%Y%m%d-%H%M%S}"
    store = MatrixFolder(folder)
    if not resume and (store.has_runs() or (folder / "summary.json").exists()):
        if not force:
            raise fail(f"{folder} already holds a matrix; add --resume to continue it, "
                       f"--force to replace it, or choose another --out",
                       kind="matrix-folder-exists", code=2, json_out=json_out)
        shutil.rmtree(folder / "runs", ignore_errors=True)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with started(pool) as running, Progress(*columns, console=err,
                                                transient=json_out) as progress:
            where = running.describe() if running is not None else "this process"
            bar = progress.add_task(f"matrix: {total} runs on {where}", total=total)
            result = run_matrix(cells, seeds_of, running,
                                lambda done, _: progress.update(bar, completed=done), store)
    except ExecutorError as exc:
        raise fail(str(exc), kind="executor", json_out=json_out) from None
    except MatrixInterrupted as stop:
        raise fail(f"interrupted: {stop.done} of {stop.total} runs are saved in "
                   f"{folder / 'runs'}; continue with the same command and --resume --out "
                   f"{folder}", kind="interrupted", code=130, json_out=json_out) from None
    summary = summarise(result, specs, named)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "manifest.json").write_text(json.dumps(_manifest(
        specs, named, where, started_at, files or [], variant_specs or [], seeds, duration,
        notes, [*_executor_args(executor, workers), "--out", str(folder)]),
        indent=2) + "\n")
    build_matrix_report(folder, notes_text)
    if json_out:
        print(json.dumps({**summary, "folder": str(folder)}, indent=2))
    else:
        _print(summary)
        console.print(f"\nreport: [bold]{escape(str(folder / 'report.html'))}[/] "
                      f"(report.md, figures/, summary.json)")
    if not summary["passed"]:
        for failure in summary["failures"] or ["no checks ran"]:
            err.print(f"[bold red]CHECK FAILED[/] {escape(failure)}")
        raise typer.Exit(1)


def _rebuild(out: Path | None, notes_text: str, json_out: bool) -> None:
    from consensus.report.matrix_report import build_matrix_report

    if out is None or not (out / "summary.json").exists():
        raise bad_parameter("--rebuild needs --out DIR holding a matrix's summary.json",
                            param_hint="--out", json_out=json_out)
    build_matrix_report(out, notes_text)
    summary = json.loads((out / "summary.json").read_text())
    if json_out:
        print(json.dumps({**summary, "folder": str(out)}, indent=2))
    else:
        console.print(f"report: [bold]{escape(str(out / 'report.html'))}[/] (rebuilt from "
                      f"summary.json)")


def _executor_args(executor: str, workers: int | None) -> list[str]:
    return ["--executor", executor, *(["--workers", str(workers)] if workers else [])]


def _manifest(specs: list[Any], named: list[Any], where: str, started_at: str,
              files: list[Path], variant_specs: list[str], seeds: str | None,
              duration: float | None, notes: Path | None,
              rest: list[str]) -> dict[str, Any]:
    from consensus.experiment.results import _git_commit, _version

    argv = ["consensus-lab", "matrix", *map(str, files)]
    for v in variant_specs:
        argv += ["--variants", v]
    if seeds:
        argv += ["--seeds", seeds]
    if duration is not None:
        argv += ["--duration", f"{duration:g}"]
    if notes is not None:
        argv += ["--notes", str(notes)]
    argv += rest
    return {"experiments": [s.name for s in specs], "version": _version(),
            "git_commit": _git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "transport": "sim",
            "variants": [v.name for v in named], "executor": where, "started": started_at,
            "command": shlex.join(argv)}


def _print(summary: dict[str, Any]) -> None:
    from consensus.report.matrix_report import interval_text, outcome_text

    table = Table(title="differences matrix (mean over seeds [95% interval])")
    for col in ("experiment", "variant", "algorithm", "outcome"):
        table.add_column(col)
    for m in summary["measures"]:
        unit = f" ({m['unit']})" if m["unit"] and m["unit"] not in m["short"] else ""
        table.add_column(m["short"] + unit, justify="right")
    for c in summary["cells"]:
        values = ([interval_text(c["measures"][m["key"]], "") for m in summary["measures"]]
                  if c["status"] == "ran" else ["-"] * len(summary["measures"]))
        table.add_row(c["experiment"], c["variant"], c["title"], outcome_text(c), *values)
    console.print(table)
    na = summary["not_applicable"]
    console.print(f"{summary['runs']} runs, {summary['verdicts']} verdicts"
                  + (f", {na} cell(s) n/a" if na else "") + ": "
                  + ("[green]all checks passed" if summary["passed"] else "[bold red]FAILED"))
