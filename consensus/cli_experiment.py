"""`consensus-lab` commands for experiments: run, check, experiments (the library)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consensus import variants
from consensus.algorithms import get_algorithm
from consensus.cli import VARIANT_HELP, app, bad_parameter, console, err, fail
from consensus.executor import EXECUTOR_HELP, ExecutorSpec, parallel, parse_executor, started


def executor_for(spec: Any, executor: str, workers: int | None) -> ExecutorSpec | None:
    """The executor for a simulated experiment's runs, or None to run them one after another
    here (one worker, or runs on the bus). Raises ValueError for a bad ``--executor``."""
    parsed = parse_executor(executor, workers)
    if spec.transport != "sim":
        return None
    return parallel(parsed, workers, spec.run_count)


def _parse_seeds(text: str, json_out: bool = False) -> list[int]:
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if "-" in part[1:]:  # a range; a leading "-" is a negative seed's sign
                cut = part.index("-", 1)
                lo, hi = int(part[:cut]), int(part[cut + 1:])
                if lo > hi:
                    raise bad_parameter(f"the range {part} is reversed (write {hi}-{lo})",
                                        param_hint="--seeds", json_out=json_out)
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise bad_parameter(f"expected seeds like 1,2,3 or 1-10, got {text!r}",
                                param_hint="--seeds", json_out=json_out) from None
    if not seeds:
        raise bad_parameter("no seeds given", param_hint="--seeds", json_out=json_out)
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
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the run folder given with --out if it holds a previous "
                        "run (without it, such a folder is refused: seeds would mix).")]
        = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out (simulator): its runs already complete "
                         "are kept, the rest run, then the summary and report are written. "
                         "Refused if that folder holds another spec.")] = False,
    executor: Annotated[str, typer.Option(help=EXECUTOR_HELP + " Simulator runs only: "
                                          "mqtt experiments run here, one run at a time "
                                          "(they start real node processes and a broker each).")]
        = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1,
        help="Simulator runs in parallel (default: one per core, at most one per run); 1 "
             "runs them one after another in this process.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json.")] = False,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", metavar="KEY=VALUE",
        help=VARIANT_HELP + " Added to the file's variant: block.")] = None,
) -> None:
    """Run an experiment on every algorithm and seed; check, measure and write a run folder.

    Exits 1 if any check failed (invariants, liveness after healing, linearizability),
    130 on Ctrl-C (after saving the runs that finished: `report` draws them, and
    `--resume --out DIR` continues).
    """
    from consensus.experiment import results as res
    from consensus.experiment.execute import RunInterrupted, run_experiment
    from consensus.experiment.spec import SpecError, load_spec, with_variant

    try:
        spec = load_spec(_experiment_file(spec_path))
    except SpecError as exc:
        if json_out:
            print(json.dumps({"error": str(exc), "kind": "invalid-experiment",
                              "errors": exc.errors}))
        err.print(f"[bold red]invalid experiment[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    updates: dict[str, Any] = {}
    if transport:
        if transport not in ("sim", "mqtt"):
            raise bad_parameter("expected sim or mqtt", param_hint="--transport",
                                json_out=json_out)
        updates["transport"] = transport
    if seeds:
        updates["seeds"] = _parse_seeds(seeds, json_out)
    if broker:
        key = "prefer" if broker in ("mosquitto", "amqtt", "auto") else "broker"
        updates["mqtt"] = spec.mqtt.model_copy(update={key: broker})
    spec = spec.model_copy(update=updates)
    try:
        pool = executor_for(spec, executor, workers)
    except ValueError as exc:
        raise bad_parameter(str(exc), param_hint="--executor", json_out=json_out) from None
    if spec.transport == "mqtt" and (executor != "local" or (workers or 1) > 1) \
            and not json_out:
        err.print("[dim]mqtt runs execute here, one at a time (real node processes, a "
                  "broker each): --executor and --workers apply to simulator runs only")
    if variant:
        try:
            spec = with_variant(spec, variants.parse_pairs(variant))
        except variants.VariantError as exc:
            raise bad_parameter(str(exc), param_hint="--variant", json_out=json_out) from None
    if resume and (out is None or force or spec.transport != "sim"):
        why = ("needs the folder of the run to continue (--out DIR)" if out is None else
               "keeps the runs in --out and --force replaces them: choose one" if force else
               "continues simulator runs only (a run on the bus is not repeatable)")
        raise bad_parameter(f"--resume {why}", param_hint="--resume", json_out=json_out)
    run_dir = out or res.default_run_dir(spec)
    if resume:
        refusal = res.resume_refusal(run_dir, spec)
        if refusal is not None:
            raise fail(refusal, kind="run-folder-other-spec", code=2, json_out=json_out)
    elif res.existing_run(run_dir):
        if not force:
            raise fail(f"{run_dir} already holds a run (its seeds would mix with this one's); "
                       f"choose another --out, or add --force to replace it",
                       kind="run-folder-exists", code=2, json_out=json_out)
        shutil.rmtree(run_dir)
    columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=json_out) as progress:

        def track(label: str) -> Any:
            task = progress.add_task(label, total=1.0)
            return lambda fraction: progress.update(task, completed=fraction)

        try:
            with started(pool) as running:
                summary = run_experiment(spec, run_dir, progress=track, executor=running,
                                         resume=resume)
        except (RuntimeError, OSError) as exc:  # a broker or a node that would not start
            raise fail(str(exc), json_out=json_out) from None
        except RunInterrupted as stop:
            summary = stop.summary
            interrupted = True
        else:
            interrupted = False
    if interrupted:
        note = next((f for f in summary["failures"] if f.startswith("interrupted")),
                    "interrupted")
        resume_hint = (f"; continue with the same command and --resume --out {run_dir}"
                       if spec.transport == "sim" else "")
        raise fail(f"{note}; they are saved in {run_dir} (`consensus-lab report {run_dir}` "
                   f"draws them{resume_hint})", kind="interrupted", code=130,
                   json_out=json_out)
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        if spec.load_sweep:
            print_sweep(summary)
        else:
            print_summary(summary)
        console.print(f"\nresults: [bold]{escape(str(run_dir))}[/] (summary.json, histories, "
                      f"metrics, report.html)")
    if not summary["passed"]:
        for failure in summary["failures"]:
            err.print(f"[bold red]CHECK FAILED[/] {escape(failure)}")
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
    chosen = summary.get("variant") or {}
    shown = f" (variant {variants.label(chosen)})" if chosen else ""
    table = Table(title=f"{summary['experiment']}{shown}: median across seeds")
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
        raise fail(str(exc), code=2) from None
    result = check_history(ops, time_budget_s=budget)
    # Plain text: the explanation's "[ok, T=...]" notes and the commands' own values are
    # not rich markup, and its lines are laid out already (no re-wrapping).
    typer.echo(format_result(result))
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
