"""What securing the bus costs: the 3-node throughput and latency section in three bus modes.

``python -m consensus.bench.security [--quick] [--modes open,auth,tls]`` runs, for Raft and
Multi-Paxos (3 nodes, fsync on, as the main benchmark's default), the max-throughput search
and the light-load (100 ops/s) latency of :func:`consensus.bench.throughput.measure` with
the bus in each mode, and prints the figures side by side:

- ``open``: one anonymous mosquitto for every cluster (``--insecure``; the main benchmark's
  setting);
- ``auth``: each cluster's own mosquitto with per-cluster users, passwords and topic ACLs
  (the default ``cluster up``);
- ``tls``: the same with TLS and client certificates instead of passwords
  (``cluster up --tls``).

The broker's CPU per operation is taken at 90% of each row's maximum (at 100 ops/s the
kernel's clock ticks are too coarse for it).

Everything else is equal: the same node processes, load generators (each with its own
credentials in the secured modes), client library and search.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

MODES = ("open", "auth", "tls")
TITLE = "bus security cost (3 nodes, fsync on, mosquitto)"
ALGORITHMS = ("raft", "paxos")


def run_security_bench(modes: Iterable[str] = MODES, algorithms: Iterable[str] = ALGORITHMS,
                       quick: bool = True,
                       log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (mode, algorithm): max sustained ops/s and the light-load latency."""
    from consensus.bench.run import NoMosquitto, Plan
    from consensus.bench.throughput import BusCluster, measure
    from consensus.broker import find_mosquitto, start_broker

    modes, algorithms = list(modes), list(algorithms)
    unknown = sorted(set(modes) - set(MODES)) + sorted(set(algorithms) - set(ALGORITHMS))
    if unknown:
        raise ValueError(f"unknown mode or algorithm {', '.join(unknown)}: modes are "
                         f"{', '.join(MODES)}; algorithms {', '.join(ALGORITHMS)}")
    if find_mosquitto() is None:
        raise NoMosquitto("the security bench runs on mosquitto (apt-get install mosquitto)")
    plan = Plan.make(quick)
    rows = []
    for mode in modes:
        shared = start_broker(prefer="mosquitto") if mode == "open" else None
        try:
            for algorithm in algorithms:
                cluster = BusCluster(
                    algorithm, 3, shared.url if shared else None, fsync=True,
                    generators=plan.generators, connections=plan.connections, ids=plan.ids,
                    broker_pid=shared.pid if shared else None, tls=mode == "tls")
                cluster.label = f"{algorithm} 3n {mode}"
                try:
                    res = measure(cluster, step_s=plan.step_s, start=plan.start_rate,
                                  bisections=plan.bisections, repeats=plan.repeats, log=log)
                finally:
                    cluster.close()
                light = res["latency"]["light"]
                # CPU per op is read in clock ticks: only a loaded step resolves it well.
                heavy = res["latency"].get("90%", {})
                row = {"mode": mode, "algorithm": algorithm,
                       "max_sustained_ops_s": res["max_sustained_ops_s"],
                       "light_p50_ms": light.get("p50_ms"), "light_p99_ms": light.get("p99_ms"),
                       "broker_cpu_us_per_op": heavy.get("extra", {}).get("cpu_us_per_op", {})
                       .get("broker")}
                log(f"{cluster.label}: max sustained {row['max_sustained_ops_s'] or 0:,.0f} "
                    f"ops/s, p50 at 100 ops/s {row['light_p50_ms'] or float('nan'):.2f} ms")
                rows.append(row)
        finally:
            if shared is not None:
                shared.stop()
    return rows


COLUMNS = ("algorithm", "mode", "max sustained ops/s", "vs open", "p50 @100 ops/s",
           "p99 @100 ops/s", "broker CPU µs/op @90%")


def cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line of text cells per row (``COLUMNS``), each mode's peak relative to open mode."""
    base = {r["algorithm"]: r for r in rows if r["mode"] == "open"}
    out = []
    for r in sorted(rows, key=lambda r: (ALGORITHMS.index(r["algorithm"]),
                                         MODES.index(r["mode"]))):
        top, ref = r["max_sustained_ops_s"], base.get(r["algorithm"], {})
        ratio = (f"{top / ref['max_sustained_ops_s']:.0%}"
                 if top and ref.get("max_sustained_ops_s") else "-")
        out.append([r["algorithm"], r["mode"], f"{top:,.0f}" if top else "-", ratio,
                    _ms(r["light_p50_ms"]), _ms(r["light_p99_ms"]),
                    "-" if r["broker_cpu_us_per_op"] is None
                    else f"{r['broker_cpu_us_per_op']:.0f}"])
    return out


def table(rows: list[dict[str, Any]]) -> Any:
    """The rows as a rich table."""
    from rich.table import Table

    out = Table(title=TITLE)
    for col in COLUMNS:
        out.add_column(col, justify="left" if col in ("algorithm", "mode") else "right")
    for line in cells(rows):
        out.add_row(*line)
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown page (``security.md`` beside ``security.json``)."""
    lines = [f"# The {TITLE}", "",
             "Written by `consensus-lab bench --security`: the benchmark's max-throughput "
             "search and light-load latency with the bus open, authenticated (per-cluster "
             "users, passwords and topic ACLs) and over TLS with client certificates. One "
             "run; the mode measured first tends to come out lowest, so compare runs in "
             "both orders (`python -m consensus.bench.security --full --modes tls,auth,open`) "
             "before reading a throughput difference.", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join(":--" if c in ("algorithm", "mode") else "--:" for c in COLUMNS)
             + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in cells(rows)]
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m consensus.bench.security",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated, of open, auth, tls (default: all)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--full", action="store_true",
                        help="the main benchmark's full settings (default: --quick's)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        rows = run_security_bench(
            [m for m in args.modes.split(",") if m], [a for a in args.algorithms.split(",") if a],
            quick=not args.full, log=lambda line: err.print(line, highlight=False))
    except (ValueError, RuntimeError) as exc:
        err.print(f"[red]error: {exc}")
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        Console().print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
