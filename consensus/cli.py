"""The ``consensus-lab`` command line."""

from __future__ import annotations

import inspect
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consensus import variants
from consensus.algorithms import NAMES, get_algorithm
from consensus.node import Config
from consensus.sim import Network
from consensus.simulate import SETTLE_S, SimResult, load_node_class, simulate

# Plain (click) help: rich's option table squeezes long option names and unbreakable words
# into "…" on an 80-column terminal; click wraps them instead (up to 120 columns).
HELP_SETTINGS = {"max_content_width": 120}
app = typer.Typer(
    help="Study Multi-Paxos and Raft side by side: simulate, check and compare.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)
console = Console()
err = Console(stderr=True)


def fail(message: str, *, kind: str = "error", code: int = 1,
         json_out: bool = False) -> typer.Exit:
    """Say what went wrong in one line on stderr (and, for ``--json``, as a JSON object on
    stdout, so a script reading stdout always gets JSON); return the Exit to raise."""
    if json_out:
        print(json.dumps({"error": message, "kind": kind}))
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def bad_parameter(message: str, *, param_hint: str | None = None,
                  json_out: bool = False) -> Exception:
    """A usage error (exit 2): click's usual message, or a JSON error object for ``--json``."""
    if json_out:
        return fail(message if param_hint is None else f"{param_hint}: {message}",
                    kind="usage", code=2, json_out=True)
    return typer.BadParameter(message, param_hint=param_hint)

ALGORITHM_HELP = f"Algorithm to run: {', '.join(NAMES)}, or 'both' (same seed and faults)."


def _algorithms(name: str, json_out: bool = False) -> list[str]:
    names = list(NAMES) if name == "both" else [name]
    for n in names:
        try:
            get_algorithm(n)
        except (ValueError, ImportError) as exc:
            raise bad_parameter(str(exc), param_hint="--algorithm", json_out=json_out) from None
    return names


VARIANT_HELP = ("Switch a design choice, as KEY=VALUE (repeatable): "
                + "; ".join(variants.describe_support(NAMES))
                + ". A choice an algorithm lacks is refused.")


def variant_configs(names: list[str], config: Config, pairs: list[str],
                    json_out: bool = False) -> dict[str, Config]:
    """``config`` with the ``--variant`` pairs applied, per algorithm; a usage error (exit
    2) naming the algorithm and key when one does not offer it."""
    try:
        chosen = variants.parse_pairs(pairs)
        return {name: variants.apply(config, name, chosen) for name in names}
    except variants.VariantError as exc:
        raise bad_parameter(str(exc), param_hint="--variant", json_out=json_out) from None


def _timeouts(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split("-")]
    except ValueError:
        raise typer.BadParameter(f"expected MIN-MAX in ms, e.g. 150-300, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise typer.BadParameter(f"expected MIN-MAX in ms, e.g. 150-300, got {text!r}")
    return parts[0], parts[1]


@app.command("simulate")
def simulate_cmd(
    algorithm: Annotated[str, typer.Option(help=ALGORITHM_HELP)] = "raft",
    nodes: Annotated[int, typer.Option(min=1, max=99, help="Cluster size.")] = 5,
    duration: Annotated[float, typer.Option(min=0.1, help=(
        "Simulated seconds of workload. A settle period follows (--settle: faults healed, "
        "no new requests) before the checks, so the run lasts that much longer."))] = 60,
    seed: Annotated[int, typer.Option(help="Seed for network, clients and faults.")] = 7,
    faults: Annotated[str, typer.Option(
        help="'random': a seeded schedule of crashes, restarts, pauses, partitions, one-way "
             "cuts, loss, delay and duplication; 'none': a healthy network.")] = "random",
    clients: Annotated[int, typer.Option(min=0, help="Closed-loop clients.")] = 4,
    heartbeat_ms: Annotated[float, typer.Option(help="Leader heartbeat interval.")] = 50,
    election_timeout_ms: Annotated[str, typer.Option(
        help="Election timeout range MIN-MAX (randomised), or one value for a fixed one.")]
        = "150-300",
    latency_ms: Annotated[str, typer.Option(help="Network latency range MIN-MAX.")] = "1-5",
    loss: Annotated[float, typer.Option(min=0, max=1, help="Base message loss rate.")] = 0.0,
    disk_ms: Annotated[float, typer.Option(min=0, help=(
        "Time one write-ahead-log write takes. 0 writes at once; above 0, writes overlap "
        "with the run as in the node runtime (group commit, a leader replicating while it "
        "writes) and a crash loses what was not written yet."))] = 0.0,
    settle: Annotated[float, typer.Option(min=0, help=(
        "Quiet seconds after the workload (faults healed, crashed nodes restarted, no new "
        "requests) before the final checks."))] = SETTLE_S,
    pre_vote: Annotated[bool, typer.Option(help="Pre-vote round before a real election.")]
        = True,
    check_quorum: Annotated[bool, typer.Option(
        help="A leader steps down when it has not heard from a majority for an election "
             "timeout.")] = True,
    node_class: Annotated[str | None, typer.Option(
        metavar="MODULE:CLASS",
        help="Run this node class instead of the algorithm's (e.g. a deliberately broken "
             "variant: tests.scenario_driver:UnsafeRaftNode).")] = None,
    snapshot_entries: Annotated[int, typer.Option(min=0, help=(
        "Log compaction: each node snapshots its state after this many applied entries or "
        "slots beyond its last snapshot (0: never). The JSON reports snapshots taken and "
        "max_log_entries, the most entries any node held."))] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    show_faults: Annotated[bool, typer.Option(help="List the faults as applied.")] = False,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", metavar="KEY=VALUE", help=VARIANT_HELP)] = None,
) -> None:
    """Run a simulated cluster under a closed-loop workload and check its safety.

    Deterministic: the same seed gives the same trace (see trace_sha256), bit for bit.
    Exits 1 when any safety check is violated.
    """
    from consensus.experiment.workload import Workload

    names = _algorithms(algorithm, json_out)
    try:
        config = Config(heartbeat_ms=heartbeat_ms,
                        election_timeout_ms=_timeouts(election_timeout_ms),
                        pre_vote=pre_vote, check_quorum=check_quorum,
                        snapshot_entries=snapshot_entries)
        network = Network(latency_ms=_timeouts(latency_ms), loss=loss)
    except typer.BadParameter as exc:  # from _timeouts
        raise bad_parameter(exc.message, json_out=json_out) from None
    except ValueError as exc:
        raise bad_parameter(str(exc), json_out=json_out) from None
    try:
        cls = load_node_class(node_class) if node_class else None
    except ValueError as exc:
        raise bad_parameter(str(exc), param_hint="--node-class", json_out=json_out) from None
    configs = variant_configs(names, config, variant or [], json_out)
    results = []
    for name in names:
        if not json_out:
            err.print(f"[dim]simulating {name}: {nodes} nodes, {duration:g}s + {settle:g}s "
                      f"settle, seed {seed}...")
        try:
            results.append(simulate(name, nodes, duration, seed, faults, config=configs[name],
                                    network=network, workload=Workload(clients=clients),
                                    settle_s=settle, disk_ms=disk_ms, node_class=cls))
        except ValueError as exc:
            raise bad_parameter(str(exc), json_out=json_out) from None
    if json_out:
        chosen = variants.as_json(variants.parse_pairs(variant or []))
        payload = [{**r.to_json(), "variant": chosen} if chosen else r.to_json()
                   for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        _print_results(results, show_faults)
    if any(not r.safe for r in results):
        raise typer.Exit(1)


def _print_results(results: list[SimResult], show_faults: bool) -> None:
    settle = results[0].settle_s
    table = Table(title=f"seed {results[0].seed}, {results[0].nodes} nodes, "
                        f"faults: {results[0].faults}",
                  caption=f"simulated time includes a {settle:g} s settle period at the end: "
                          f"faults healed, crashed nodes restarted, no new requests")
    table.add_column("")
    for r in results:
        table.add_column(get_algorithm(r.algorithm).title, justify="right")
    rows = [
        ("simulated", lambda r: f"{r.simulated_s:.1f} s "
                                f"({r.simulated_s - r.settle_s:g} + {r.settle_s:g} settle)"),
        ("wall clock", lambda r: f"{r.wall_s:.2f} s"),
        ("speed", lambda r: f"{r.speedup:.0f}x real time"),
        ("commands committed", lambda r: f"{r.committed:,}"),
        ("operations answered", lambda r: f"{r.acknowledged:,}"),
        ("outcome unknown", lambda r: f"{r.unknown:,}"),
        ("latency p50 / p99",
         lambda r: f"{r.latency_ms['p50']:.1f} / {r.latency_ms['p99']:.1f} ms"),
        ("leader changes", lambda r: f"{r.leader_changes}"),
        ("messages", lambda r: f"{r.messages:,}"),
        ("snapshots / most held", lambda r: f"{r.snapshots:,} / {r.max_log_entries:,}"),
        ("safety", lambda r: "[green]all checks passed" if r.safe
            else f"[bold red]{len(r.violations)} VIOLATIONS"),
        ("after healing", lambda r: "[green]all caught up" if not r.stalled
            else f"[yellow]{len(r.stalled)} stalled"),
        ("trace sha256", lambda r: r.trace_sha256[:16]),
    ]
    for label, fmt in rows:
        table.add_row(label, *(fmt(r) for r in results))
    console.print(table)
    for r in results:
        for v in r.violations[:20]:
            console.print(f"[bold red]{r.algorithm} VIOLATION[/] {escape(v)}")
        for line in r.stalled[:10]:
            console.print(f"[yellow]{r.algorithm} stalled[/] {escape(line)}")
        if show_faults:
            console.print(f"[bold]{r.algorithm} faults:[/]")
            for line in r.fault_log:
                console.print(f"  {escape(line)}")


def _register_subcommands() -> None:
    # Imported here: each module adds its commands to `app` (they import this module).
    from consensus import (  # noqa: F401
        cli_bench,
        cli_bus,
        cli_code,
        cli_dashboard,
        cli_experiment,
        cli_matrix,
        cli_report,
        cli_sweep,
    )


def _full_short_help(typer_app: typer.Typer) -> None:
    """List each command with its docstring's whole first paragraph (wrapped): click's default
    cuts it at the first ". " or at the terminal width with "..."."""
    for info in typer_app.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            first = inspect.cleandoc(info.callback.__doc__).split("\n\n", 1)[0]
            info.short_help = " ".join(first.split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _full_short_help(group.typer_instance)


_register_subcommands()
_full_short_help(app)


def main() -> None:  # pragma: no cover - console entry point
    app()
