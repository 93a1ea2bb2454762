"""`consensus-lab bench`: both algorithms against the bus limit, a null protocol and PySyncObj."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from consensus.cli import app, console, err, fail


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer points, shorter steps, "
                                        "50,000 operations for memory (about 8 minutes "
                                        "on a loaded 2-core machine).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print bench.json to stdout.")]
        = False,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("reports/bench"),
    runs: Annotated[int, typer.Option(
        "--runs", min=1, max=20,
        help="Repeat the throughput section this many times, alternating the order of the "
             "systems; the report quotes each figure's median and range.")] = 1,
    order: Annotated[str, typer.Option(
        "--order", help="forward | reverse: the order the throughput systems run in "
                        "(reverse: PySyncObj first). Shows the search is not order-bound.")]
        = "forward",
    merge: Annotated[list[Path] | None, typer.Option(
        "--merge", metavar="BENCH_JSON",
        help="Run nothing: merge earlier bench.json files (repeat the option) into one "
             "report with ranges over all their runs, written to --out.")] = None,
    security: Annotated[bool, typer.Option(
        "--security", help="Instead: what the bus's protection costs, 3 nodes of each "
                           "algorithm on an open, an authenticated (passwords and ACLs) and a "
                           "TLS mosquitto (client certificates): max sustained ops/s and p50 "
                           "at 100 ops/s; writes security.json.")] = False,
) -> None:
    """Benchmark on a real mosquitto: bus ceiling, throughput and latency of both algorithms
    (3 and 5 nodes), over the broker and with the load inside the leader's process, memory
    and bytes per operation, failover, simulator and checker speed, PySyncObj and a null
    protocol."""
    from consensus.bench import report
    from consensus.bench.run import NoMosquitto, run_bench, write_outputs

    def log(line: str) -> None:
        err.print(line, highlight=False)

    if security:
        _security(quick, as_json, out, log)
        return
    if order not in ("forward", "reverse"):
        raise typer.BadParameter("expected forward or reverse", param_hint="--order")
    if merge:
        result = _merge(merge, as_json)
    else:
        try:
            result = run_bench(quick=quick, log=log, order=order, runs=runs)
        except NoMosquitto as exc:
            raise fail(str(exc), kind="no-mosquitto", code=2, json_out=as_json) from None
    paths = write_outputs(result, out)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        from rich.console import Console

        wide = Console(width=max(console.width, 120)) if not console.is_terminal else console
        for table in report.tables(result):
            wide.print(table)
    err.print("wrote " + ", ".join(str(p) for p in paths))


def _merge(paths: list[Path], as_json: bool) -> dict:
    from consensus.bench.run import finish
    from consensus.bench.runs import merge

    results = []
    for path in paths:
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {path}: {exc}", kind="bad-input", code=2,
                       json_out=as_json) from None
    try:
        return finish(merge(results))
    except (ValueError, KeyError, TypeError) as exc:
        raise fail(f"cannot merge {', '.join(map(str, paths))}: {exc}", kind="bad-input",
                   code=2, json_out=as_json) from None


def _security(quick: bool, as_json: bool, out: Path, log: Callable[[str], None]) -> None:
    from consensus.bench.run import NoMosquitto
    from consensus.bench.security import markdown, run_security_bench, table

    try:
        rows = run_security_bench(quick=quick, log=log)
    except NoMosquitto as exc:
        raise fail(str(exc), kind="no-mosquitto", code=2, json_out=as_json) from None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "security.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    (out / "security.md").write_text(markdown(rows))
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        console.print(table(rows))
    err.print(f"wrote {path} and security.md")
