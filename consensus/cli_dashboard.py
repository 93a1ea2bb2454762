"""`consensus-lab dashboard`: Raft and Multi-Paxos side by side in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from consensus.cli import app, console, fail


@app.command()
def dashboard(
    nodes: Annotated[int, typer.Option(min=1, max=9, help="Nodes per cluster (sim mode).")] = 5,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    transport: Annotated[str, typer.Option(
        help="sim: two simulated clusters on a scaled clock; mqtt: watch clusters started "
             "with `consensus-lab cluster up`.")] = "sim",
    seed: Annotated[int, typer.Option(help="Seed for both simulated clusters.")] = 1,
    speed: Annotated[float, typer.Option(
        help="Simulated ms per wall ms at start (0.1 = 10x slow motion).")] = 0.1,
    snapshot_entries: Annotated[int, typer.Option(
        min=0, help="sim mode: log compaction, each node snapshots after this many applied "
                    "entries (0: never); the page then shows each node's snapshot index, and a "
                    "node added later catches up from a snapshot.")] = 0,
    cluster: Annotated[list[str] | None, typer.Option(
        "--cluster", help="mqtt mode: a cluster name to watch (repeat for a second one, e.g. "
                          "one Raft and one Multi-Paxos cluster).")] = None,
) -> None:
    """Serve the live dashboard on 127.0.0.1 until Ctrl-C."""
    import asyncio

    from consensus.dashboard.server import serve

    if transport == "sim":
        from consensus.dashboard.sim_backend import SimBackend
        from consensus.node import Config

        backend = SimBackend(nodes=nodes, seed=seed, speed=speed,
                             config=Config(snapshot_entries=snapshot_entries))
    elif transport == "mqtt":
        from consensus.dashboard.mqtt_backend import MqttBackend

        try:
            backend = MqttBackend.from_clusters(cluster or ["demo"])  # type: ignore[assignment]
        except (FileNotFoundError, ValueError) as exc:
            raise fail(str(exc)) from None
    else:
        raise typer.BadParameter("expected sim or mqtt", param_hint="--transport")

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(serve(backend, "127.0.0.1", port, started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # raises the bind error
        console.print(f"dashboard ({transport}): [bold]http://127.0.0.1:{port}/[/]  "
                      "(Ctrl-C to stop)")
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("stopped")
    except OSError as exc:
        raise fail(f"cannot serve on 127.0.0.1:{port}: {exc}") from None
