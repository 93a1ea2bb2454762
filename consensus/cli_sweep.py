"""`consensus-lab sweep` (many seeds of random faults, on an executor) and `replay` (one
failing seed again, on this machine)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from consensus.cli import ALGORITHM_HELP, _algorithms, app, bad_parameter, console, err, fail
from consensus.executor import EXECUTOR_HELP, Executor, ExecutorError, parse_executor
from consensus.simulate import SimOptions, load_node_class
from consensus.sweep import (
    RUN_FIELDS,
    SeedJob,
    SweepFolder,
    SweepSettings,
    markdown,
    prefix_faults,
    run_seed,
    summarize,
)


class SpeedColumn(ProgressColumn):
    """Seeds per second over the bar's recent progress."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} seeds/s", style="progress.data.speed")


def progress_bar(json_out: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    SpeedColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=err, transient=json_out)


def _sweep_command(names: list[str], first_seed: int, seeds: int, nodes: int, duration: float,
                   node_class: str | None, executor: str, workers: int | None,
                   out: Path, membership: bool = False) -> str:
    argv = ["consensus-lab", "sweep", "--algorithm", "both" if len(names) > 1 else names[0],
            "--seeds", str(seeds), "--first-seed", str(first_seed), "--nodes", str(nodes),
            "--duration", f"{duration:g}", "--executor", executor]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if node_class:
        argv += ["--node-class", node_class]
    if membership:
        argv.append("--membership")
    argv += ["--out", str(out)]
    return shlex.join(argv)


@app.command()
def sweep(
    algorithm: Annotated[str, typer.Option(help=ALGORITHM_HELP)] = "both",
    seeds: Annotated[int, typer.Option(min=1, help="How many seeds (first-seed onwards).")]
        = 1000,
    first_seed: Annotated[int, typer.Option(help="First seed.")] = 1,
    nodes: Annotated[int, typer.Option(min=1, max=99)] = 5,
    duration: Annotated[float, typer.Option(min=0.1, help="Simulated seconds of faults and "
                                                          "workload per seed.")] = 10,
    executor: Annotated[str, typer.Option(help=EXECUTOR_HELP)] = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", "--jobs", "-j", min=1,
        help="Worker processes for local and dask (default: one per core); a scheduler "
             "brings its own workers.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Sweep folder (default reports/runs/sweep-<timestamp>): one JSON file per "
             "seed under runs/, a replay file per failing seed under failures/, "
             "summary.json.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the sweep in --out: seeds whose result file exists are "
                         "not run again.")] = False,
    max_failures: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many failing seeds (violations or stalls); the seeds "
                    "not started are cancelled.")] = None,
    node_class: Annotated[str | None, typer.Option(
        metavar="MODULE:CLASS",
        help="Run this node class instead of the algorithm's, importable by the workers "
             "(e.g. tests.scenario_driver:UnsafeRaftNode, a broken Raft).")] = None,
    membership: Annotated[bool, typer.Option(
        "--membership", help="Random membership changes too (add, remove, replace, transfer, "
                             "a majority of the configuration kept up), and log compaction "
                             "on two seeds in three. A sweep of its own: its seeds draw "
                             "other schedules than a plain sweep's.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the summary and every run as one JSON object.")] = False,
) -> None:
    """Run many seeds of random fault schedules, on a process pool or Dask; report violations.

    Each seed also picks the leader-stability knobs (pre-vote, check-quorum, a slow disk):
    its variant. Every run is checked for safety and for liveness after the network heals.
    Exits 1 on any violation or stall (each has a replay file: `consensus-lab replay FILE`),
    130 on Ctrl-C (finished seeds are kept; --resume continues).
    """
    names = _algorithms(algorithm, json_out)
    try:
        spec = parse_executor(executor, workers)
    except ValueError as exc:
        raise bad_parameter(str(exc), param_hint="--executor", json_out=json_out) from None
    if node_class:
        try:
            load_node_class(node_class)
        except ValueError as exc:
            raise bad_parameter(str(exc), param_hint="--node-class", json_out=json_out) from None
    if resume and out is None:
        raise bad_parameter("--resume needs the folder of the sweep to continue (--out DIR)",
                            param_hint="--resume", json_out=json_out)
    root = out or Path("reports/runs") / f"sweep-{dt.datetime.now():%Y%m%d-%H%M%S}"
    settings = SweepSettings(nodes, duration, node_class=node_class, membership=membership)
    spec_hash = settings.spec_hash()
    folder = SweepFolder(root)
    previous = folder.settings_hash()
    if folder.has_runs():
        if not resume:
            raise fail(f"{root} already holds a sweep; add --resume to continue it, or choose "
                       f"another --out", kind="sweep-folder-exists", code=2, json_out=json_out)
        if previous != spec_hash:
            raise fail(f"{root} holds a sweep with other settings (spec {previous}, this one "
                       f"{spec_hash}: nodes, duration or node class differ)",
                       kind="sweep-settings-differ", code=2, json_out=json_out)

    # Seed by seed, every algorithm in turn: a sweep stopped early stays balanced.
    wanted = [(n, s) for s in range(first_seed, first_seed + seeds) for n in names]
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for key in wanted:
        found = folder.load(spec_hash, *key)
        if found is not None:
            records[key] = found
    jobs = [SeedJob(settings, n, s) for n, s in wanted if (n, s) not in records]
    resumed = len(records)
    command = _sweep_command(names, first_seed, seeds, nodes, duration, node_class,
                             spec.to_option(), workers, root, membership)
    failing = sum(1 for r in records.values() if r["violations"] or r["stalled"])
    interrupted = stopped_early = False
    error: str | None = None
    ran = 0
    started = time.perf_counter()

    def take(record: dict[str, Any]) -> None:
        nonlocal ran, failing, stopped_early
        folder.write(record)
        records[(record["algorithm"], record["seed"])] = record
        ran += 1
        progress.advance(bar)
        if record["violations"] or record["stalled"]:
            failing += 1
            what = (record["violations"] or [f"liveness: {s}" for s in record["stalled"]])[0]
            err.print(f"[bold red]{record['algorithm']} seed {record['seed']} "
                      f"({record['variant']}):[/] {escape(what)}")
            if max_failures is not None and failing >= max_failures and not stopped_early:
                stopped_early = True
                ex.cancel()  # what already runs still finishes and is written

    try:
        with Executor(spec) as ex, progress_bar(json_out) as progress:
            folder.write_settings(settings)  # once the executor is up: no empty folders
            bar = progress.add_task(f"sweep {'+'.join(names)}", total=len(jobs))
            if resumed and not json_out:
                err.print(f"[dim]resuming {root}: {resumed} of {len(wanted)} seeds done")
            def notice() -> None:
                if not json_out:
                    err.print("[yellow]interrupted: keeping the seeds already running "
                              "(Ctrl-C again to drop them)")

            try:
                interrupted = ex.map_into(run_seed, jobs, lambda _, record: take(record),
                                          on_interrupt=notice)
            except Exception as exc:  # a job that raised; a worker or scheduler that failed
                error = f"{type(exc).__name__}: {exc}"
                ex.cancel()
            workers_used = ex.workers
            executor_desc = ex.describe()
    except ExecutorError as exc:
        raise fail(str(exc), kind="executor", json_out=json_out) from None
    except KeyboardInterrupt:  # while starting or stopping the workers
        interrupted = True
        workers_used, executor_desc = spec.workers, spec.describe()
    wall = time.perf_counter() - started

    done = [records[k] for k in wanted if k in records]
    summary = {
        "kind": "sweep",
        "settings": {**settings.to_json(), "spec_hash": spec_hash},
        "algorithms": names,
        "seeds": {"first": first_seed, "count": seeds},
        "command": command,
        "invoked_as": shlex.join(["consensus-lab", *sys.argv[1:]]),
        "executor": executor_desc,
        "workers": workers_used,
        "runs": {"requested": len(wanted), "done": len(done), "ran_now": ran,
                 "resumed": resumed},
        "wall_s": round(wall, 3),
        "seeds_per_s": round(ran / wall, 3) if wall > 0 else None,
        "seeds_per_s_per_worker": round(ran / wall / workers_used, 3) if wall > 0 else None,
        **summarize(done, names),
        "max_failures": max_failures,
        "stopped_early": stopped_early,
        "interrupted": interrupted,
        "error": error,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (root / "summary.md").write_text(markdown(summary))
    if json_out:
        print(json.dumps({**summary, "folder": str(root),
                          "run_list": [{f: r[f] for f in RUN_FIELDS} for r in done]}, indent=2))
    else:
        _print_sweep(summary, root)
    if error is not None:
        raise fail(f"the sweep stopped after {len(done)} of {len(wanted)} seeds: {error} "
                   f"(the finished seeds are kept; continue with --resume --out {root})",
                   kind="executor", json_out=False)
    if interrupted:
        raise fail(f"interrupted after {len(done)} of {len(wanted)} seeds; continue with "
                   f"--resume --out {root}", kind="interrupted", code=130)
    if summary["violations"] or summary["liveness_failures"]:
        raise typer.Exit(1)


def _print_sweep(summary: dict[str, Any], root: Path) -> None:
    table = Table(title=f"sweep: {summary['runs']['done']} of {summary['runs']['requested']} "
                        f"runs, {summary['settings']['nodes']} nodes, "
                        f"{summary['settings']['duration']:g} s each")
    table.add_column("")
    per = summary["per_algorithm"]
    for name in per:
        table.add_column(name, justify="right")
    table.add_row("seeds", *(f"{p['seeds']:,}" for p in per.values()))
    variants = sorted({v for p in per.values() for v in p["variants"]})
    for v in variants:
        table.add_row(f"  {v}", *(f"{p['variants'].get(v, 0):,}" for p in per.values()))
    table.add_row("violations", *(_count(p["violations"], "bold red") for p in per.values()))
    table.add_row("stalls", *(_count(p["stalls"], "yellow") for p in per.values()))
    table.add_row("committed", *(f"{p['committed']:,}" for p in per.values()))
    console.print(table)
    rate = summary["seeds_per_s"]
    console.print(f"{summary['runs']['ran_now']} run now ({summary['runs']['resumed']} "
                  f"resumed) in {summary['wall_s']:.1f} s on {summary['executor']}"
                  + (f": {rate:.1f} seeds/s, {summary['seeds_per_s_per_worker']:.2f} per "
                     f"worker" if rate else ""))
    if summary["stopped_early"]:
        console.print(f"[yellow]stopped early after {summary['max_failures']} failing seeds")
    for f in summary["violations"][:10] + summary["liveness_failures"][:10]:
        replay_file = escape(str(root / f["failure_file"]))
        console.print(f"replay: [bold]consensus-lab replay {replay_file}")
    console.print(f"results: [bold]{escape(str(root))}[/] "
                  f"(summary.json, summary.md, runs/, failures/)")


def _count(n: int, style: str) -> str:
    return f"[{style}]{n:,}" if n else "0"


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A failure file from a sweep "
                                              "(DIR/failures/<algorithm>-seed-<N>.json).")],
    prefix: Annotated[bool, typer.Option(
        "--prefix", help="Replay only the shortest failing prefix of the fault schedule.")]
        = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
        = False,
) -> None:
    """Rerun a failing sweep seed on this machine and check that it fails the same way.

    Exits 0 when the rerun gives the recorded trace hash and the recorded failure, 1 when it
    does not.
    """
    try:
        record = json.loads(file.read_text())
        opts = SimOptions.from_json(record["options"])
        expected = record["shortest_prefix"] if prefix else record
        faults = prefix_faults(record) if prefix else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"cannot read failure file {file}: {exc}", kind="bad-failure-file", code=2,
                   json_out=json_out) from None
    if not json_out:
        what = (f"the first {expected['k']} of {record['shortest_prefix']['of']} faults"
                if prefix else "the full fault schedule")
        err.print(f"[dim]replaying {opts.algorithm} seed {opts.seed} with {what}: "
                  f"{escape(record['command'])}")
    try:
        result = opts.run(faults)
    except ValueError as exc:
        raise fail(str(exc), json_out=json_out) from None
    same_hash = result.trace_sha256 == expected["trace_sha256"]
    same_failure = (result.violations == expected["violations"]
                    and result.stalled == expected["stalled"])
    outcome = {"file": str(file), "prefix": prefix, "algorithm": opts.algorithm,
               "seed": opts.seed, "expected_trace_sha256": expected["trace_sha256"],
               "trace_sha256": result.trace_sha256, "same_trace": same_hash,
               "same_failure": same_failure, "violations": result.violations,
               "stalled": result.stalled, "reproduced": same_hash and same_failure}
    if json_out:
        print(json.dumps(outcome, indent=2))
    else:
        mark = "[green]same" if same_hash else "[bold red]DIFFERENT"
        console.print(f"trace sha256 {result.trace_sha256[:16]}: {mark}[/] "
                      f"(recorded {expected['trace_sha256'][:16]})")
        for v in result.violations[:10]:
            console.print(f"[bold red]VIOLATION[/] {escape(v)}")
        for s in result.stalled[:10]:
            console.print(f"[yellow]stalled[/] {escape(s)}")
        console.print("[green]reproduced" if outcome["reproduced"]
                      else "[bold red]NOT reproduced")
    if not outcome["reproduced"]:
        raise typer.Exit(1)
