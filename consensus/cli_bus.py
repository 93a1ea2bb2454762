"""`consensus-lab` commands for the real message bus: broker, node, cluster, client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from consensus import variants
from consensus.cli import (
    HELP_SETTINGS,
    VARIANT_HELP,
    _algorithms,
    _timeouts,
    app,
    console,
    err,
    fail,
    variant_configs,
)
from consensus.node import Config

cluster_app = typer.Typer(help="Run a local cluster of node processes over MQTT.",
                          no_args_is_help=True, rich_markup_mode=None,
                          context_settings=HELP_SETTINGS)
app.add_typer(cluster_app, name="cluster")

BROKER_HELP = "Broker URL (mqtt://127.0.0.1:1883). Omitted: start one (mosquitto if installed)."
CLIENT_LIB_HELP = "MQTT client library: gmqtt (faster) or aiomqtt."
LISTEN_HELP = ("Address the broker listens on (127.0.0.1). Any other, 0.0.0.0 included, lets "
               "other hosts connect and is refused with --insecure.")
TLS_HELP = ("TLS with client certificates: a CA and one certificate per user in "
            ".consensus-lab/<cluster>/secrets/tls (reused while valid); the broker takes each "
            "certificate's CN as the user name. URL mqtts://HOST:8883.")
ALPHA_HELP = ("Multi-Paxos: a configuration chosen in slot i governs from slot i + alpha (and "
              "the leader proposes at most alpha slots past the chosen prefix).")
INSECURE_HELP = ("Open broker: anyone who reaches it may connect and publish anything "
                 "(for teaching with mosquitto_pub only).")


def warn_insecure(what: str) -> None:
    """The loud line every open-broker start prints (stderr, red)."""
    err.print(f"[bold red]WARNING: {what} runs with an OPEN broker (--insecure): anyone who "
              f"can reach it can forge protocol messages, control commands and client "
              f"requests.[/]")


def _fail(message: str, code: int = 1, *, kind: str = "error",
          json_out: bool = False) -> typer.Exit:
    return fail(message, kind=kind, code=code, json_out=json_out)


@app.command()
def broker(
    port: Annotated[int | None, typer.Option(
        help="Port (default 1883, 8883 with --tls; 0: pick a free one).")] = None,
    prefer: Annotated[str, typer.Option(help="auto | mosquitto | amqtt")] = "auto",
    cluster: Annotated[str, typer.Option(
        help="Make new credentials for this cluster (for `cluster up --broker`).")] = "demo",
    nodes: Annotated[int, typer.Option(min=1, max=15, help="Its number of nodes.")] = 3,
    listen: Annotated[str, typer.Option(help=LISTEN_HELP)] = "127.0.0.1",
    tls: Annotated[bool, typer.Option("--tls", help=TLS_HELP)] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help=INSECURE_HELP)] = False,
) -> None:
    """Start an MQTT broker: mosquitto if installed, else the embedded amqtt.

    Authenticated by default: new credentials for --cluster's nodes, clients and control
    are written (owner-only) to .consensus-lab/<cluster>/secrets; run `cluster up --broker
    URL --cluster <cluster>` against it. See docs/multihost.md for other hosts.
    """
    from consensus import cluster as cl
    from consensus.broker import (
        DEFAULT_PORT,
        DEFAULT_TLS_PORT,
        PREFERENCES,
        check_listen,
        run_broker_foreground,
    )

    if prefer not in PREFERENCES:
        raise _fail(f"unknown broker {prefer!r}; choose one of {', '.join(PREFERENCES)}")
    if port is None:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    try:
        cl.check_modes(insecure, tls)
        check_listen(listen, authenticated=not insecure)
        realm = None
        if insecure:
            warn_insecure("this broker")
        else:
            realm = cl.broker_realm(cluster, [f"n{i}" for i in range(1, nodes + 1)],
                                    cl.STATE_ROOT / cluster, prefer, tls, listen)
            _warn_cleartext(listen, tls)
        run_broker_foreground(port or None, prefer, realm, listen, tls)
    except (RuntimeError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None


def _warn_cleartext(listen: str, tls: bool) -> None:
    import ipaddress

    if not tls and not ipaddress.ip_address(listen).is_loopback:
        err.print(f"[yellow]note: without --tls, passwords and messages cross the network "
                  f"to {escape(listen)} in clear text[/]")


@app.command()
def node(
    algorithm: Annotated[str, typer.Option(help="raft or paxos.")],
    node_id: Annotated[str, typer.Option("--id", help="This node's id, e.g. n1.")],
    peers: Annotated[str, typer.Option(help="All members, comma-separated: n1,n2,n3.")],
    broker_url: Annotated[str, typer.Option("--broker", help="Broker URL.")],
    data_dir: Annotated[Path, typer.Option(help="Where the write-ahead log lives.")],
    cluster: Annotated[str, typer.Option(help="Cluster name (topic prefix).")] = "demo",
    fsync: Annotated[str, typer.Option(help="always | never: fsync the WAL before replies.")]
        = "always",
    mqtt_client: Annotated[str, typer.Option(help=CLIENT_LIB_HELP)] = "gmqtt",
    heartbeat_ms: Annotated[float, typer.Option()] = 50,
    election_timeout_ms: Annotated[str, typer.Option(help="MIN-MAX in ms.")] = "150-300",
    status_interval_ms: Annotated[float, typer.Option(help="How often to publish status.")]
        = 200,
    credentials: Annotated[Path | None, typer.Option(
        help="File with this node's broker user name and password (JSON, mode 0600). "
             "Omitted: connect anonymously (an --insecure broker).")] = None,
    incarnation: Annotated[str | None, typer.Option(
        help="The cluster incarnation's id; peer messages of another one are refused.")]
        = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", metavar="KEY=VALUE", help=VARIANT_HELP)] = None,
    tls_dir: Annotated[Path | None, typer.Option(
        help="Folder with ca.crt, <id>.crt and <id>.key, for an mqtts:// broker (the "
             "certificate is then the credential; --credentials is optional).")] = None,
    joining: Annotated[bool, typer.Option(
        "--joining", help="A new member, started empty: it learns its configuration from "
                          "the leader (--peers: the members it catches up from).")] = False,
    snapshot_entries: Annotated[int, typer.Option(
        min=0, help="Snapshot and compact the log after this many applied entries (0: "
                    "never).")] = 0,
    alpha: Annotated[int, typer.Option(min=1, help=ALPHA_HELP)] = Config().alpha,
    bench_load: Annotated[bool, typer.Option(
        "--bench-load", envvar="CONSENSUS_BENCH_LOAD",
        help="Benchmark only: serve an in-process load generator on "
             "<data-dir>/<id>.load.sock (consensus-lab bench sets it).")] = False,
) -> None:
    """Run one node on the wall clock, over MQTT, until SIGTERM (one OS process per node).

    It stops on its own once it knows a committed configuration without it (removed)."""
    from consensus.runtime import NodeOptions, run_node

    _algorithms(algorithm)
    if fsync not in ("always", "never"):
        raise typer.BadParameter("expected always or never", param_hint="--fsync")
    try:
        options = NodeOptions(
            algorithm, node_id, tuple(sorted(p.strip() for p in peers.split(",") if p.strip())),
            cluster, broker_url, data_dir, fsync == "always", mqtt_client,
            variant_configs([algorithm], Config(
                heartbeat_ms=heartbeat_ms, election_timeout_ms=_timeouts(election_timeout_ms),
                snapshot_entries=snapshot_entries, alpha=alpha), variant or [])[algorithm],
            status_interval_ms, credentials, incarnation, tls_dir, joining,
            bench_load=bench_load)
        from consensus.broker import broker_address
        from consensus.runtime import node_identity
        from consensus.transport.mqtt import tls_context

        # A clear error now rather than in the node's log.
        tls_context(broker_address(broker_url).tls, node_identity(options), broker_url)
    except (ValueError, RuntimeError) as exc:
        raise typer.BadParameter(str(exc)) from None
    run_node(options)


@cluster_app.command("up")
def cluster_up(
    algorithm: Annotated[str, typer.Option(help="raft or paxos.")] = "raft",
    nodes: Annotated[int, typer.Option(min=1, max=15)] = 3,
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    broker_url: Annotated[str | None, typer.Option("--broker", help=BROKER_HELP)] = None,
    mqtt_client: Annotated[str, typer.Option(help=CLIENT_LIB_HELP)] = "gmqtt",
    fsync: Annotated[str, typer.Option(help="always | never")] = "always",
    heartbeat_ms: Annotated[float, typer.Option()] = 50,
    election_timeout_ms: Annotated[str, typer.Option(help="MIN-MAX in ms.")] = "150-300",
    listen: Annotated[str, typer.Option(help=LISTEN_HELP)] = "127.0.0.1",
    tls: Annotated[bool, typer.Option("--tls", help=TLS_HELP)] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help=INSECURE_HELP)] = False,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", metavar="KEY=VALUE", help=VARIANT_HELP)] = None,
    snapshot_entries: Annotated[int, typer.Option(
        min=0, help="Each node snapshots and compacts its log after this many applied "
                    "entries (0: never); a new member then catches up from a snapshot.")] = 0,
    alpha: Annotated[int | None, typer.Option(min=1, help=ALPHA_HELP)] = None,
) -> None:
    """Start a broker (unless --broker) and one process per node; wait for a leader.

    The broker is authenticated with new per-cluster credentials (in
    .consensus-lab/<cluster>/secrets, owner-only) unless --insecure; with --tls, by client
    certificates over TLS.
    """
    import asyncio

    from consensus import cluster as cl

    _algorithms(algorithm)
    try:
        chosen = variants.parse_pairs(variant or [])
        variants.check(algorithm, chosen)
    except variants.VariantError as exc:
        raise typer.BadParameter(str(exc), param_hint="--variant") from None
    if insecure:
        warn_insecure(f"cluster {cluster}")
    try:
        state = cl.up(algorithm, nodes, cluster, broker_url, mqtt_client, fsync == "always",
                      heartbeat_ms, _timeouts(election_timeout_ms), insecure=insecure,
                      listen=listen, tls=tls, variant=chosen,
                      snapshot_entries=snapshot_entries, alpha=alpha)
    except (RuntimeError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    security = ("[red]OPEN (insecure)[/]" if state.insecure else
                f"authenticated{' by TLS client certificates' if state.tls else ''}, "
                f"credentials in {escape(str(state.secrets))}")
    if not insecure:
        _warn_cleartext(listen, tls)
    console.print(f"broker: {escape(state.broker)} ({state.broker_kind}, {security}), client "
                  f"library {state.library}"
                  + (f", variant {variants.label(chosen)}" if chosen else ""))
    for nid, pid in state.nodes.items():
        console.print(f"  {nid}: pid {pid}, log {escape(state.directory)}/{nid}.log")
    leader = asyncio.run(cl.wait_for_leader(state))
    if leader is None:
        raise _fail(f"no leader elected within 15 s; see the logs in {state.directory}")
    console.print(f"[green]leader: {leader}[/]. Try:\n"
                  f"  consensus-lab client --cluster {cluster} 'SET x = 100'\n"
                  f"  consensus-lab cluster status --cluster {cluster}\n"
                  f"  consensus-lab cluster add n{nodes + 1} --cluster {cluster}\n"
                  f"  consensus-lab cluster down --cluster {cluster}")


@cluster_app.command("status")
def cluster_status(
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each node's id, pid, role, term or ballot, commit, applied and snapshot index, leader,
    configuration and refused input, as last published; the cluster's configuration."""
    import asyncio

    from consensus import cluster as cl
    from consensus.codec import to_jsonable

    try:
        state = cl.ClusterState.load(cluster)
    except FileNotFoundError as exc:
        raise _fail(str(exc), kind="no-cluster", json_out=json_out) from None
    from consensus.auth import AuthError

    try:
        nodes = asyncio.run(cl.fetch_status(state))
    except AuthError as exc:
        raise _fail(str(exc), kind="no-credentials", json_out=json_out) from None
    except (OSError, ValueError) as exc:  # the broker is gone (TransportError is an OSError)
        raise _fail(f"cannot reach broker {state.broker}: {exc}", kind="broker-unreachable",
                    json_out=json_out) from None
    if json_out:
        # The status as published, with the recorded pid and whether it still runs.
        print(json.dumps({nid: {**(to_jsonable(p.status) if p.status else {}), "pid": p.pid,
                                "alive": p.alive} for nid, p in nodes.items()}, indent=2))
        return
    config = _cluster_config(nodes)
    # Ten columns: a simple box keeps them readable in an 80-column terminal; a process that
    # no longer runs shows as "down" in place of a role it no longer has.
    table = Table(title=f"cluster {cluster} ({state.algorithm}, broker {state.broker})",
                  caption=None if config is None else f"configuration: {_config_text(config)}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("node", "pid", "role", "term", "commit", "applied", "snap", "leader",
                "config", "rej."):
        table.add_column(col)
    for nid, p in nodes.items():
        st = p.status
        shown = ("?", "?", "?", "?", "?", "-", "?", "?") if st is None else (
            st.role, str(st.ballot or st.term), str(st.commit_index), str(st.applied_index),
            str(st.snapshot_index), st.leader or "-",
            # Only where it differs from the cluster's: a node behind, or one still joining.
            "=" if st.config == config else ("joining" if st.config is None
                                             else _config_text(st.config)),
            str(sum(st.rejected.values())))
        if not p.alive:
            shown = ("[red]down", *shown[1:])
        table.add_row(nid, str(p.pid), *shown)
    console.print(table)


def _cluster_config(nodes: dict) -> str | None:
    """The configuration the leader acts on (else the one most nodes report)."""
    from collections import Counter

    from consensus.telemetry import leader_of

    statuses = {nid: p.status for nid, p in nodes.items() if p.status is not None}
    leader = leader_of(statuses)
    if leader is not None and statuses[leader].config is not None:
        return statuses[leader].config
    seen = Counter(st.config for st in statuses.values() if st.config is not None)
    return seen.most_common(1)[0][0] if seen else None


def _config_text(config: str) -> str:
    """A configuration for people: the joint one spelled out while a change is in flight."""
    from consensus.membership import ChangeError, Membership

    try:
        m = Membership.from_text(config)
    except ChangeError:
        return config
    text = ",".join(sorted(m.voters))
    if m.joint:
        text = f"joint (old {','.join(sorted(m.old))} + new {text})"
    if m.learners:
        text += f", learners {','.join(sorted(m.learners))}"
    return text


def _change(cluster: str, text: str, timeout: float, json_out: bool) -> None:
    """Run one membership change, printing its progress; see consensus/cluster_change.py."""
    from consensus.auth import AuthError
    from consensus.client import ClusterUnavailable
    from consensus.cluster_change import MembershipChangeError, change_cluster

    def progress(line: str) -> None:
        if not json_out:
            console.print(f"  {escape(line)}")

    try:
        outcome = change_cluster(cluster, text, deadline_s=timeout, progress=progress)
    except FileNotFoundError as exc:
        raise _fail(str(exc), kind="no-cluster", json_out=json_out) from None
    except MembershipChangeError as exc:
        raise _fail(str(exc), 4, kind="refused", json_out=json_out) from None
    except ClusterUnavailable as exc:
        raise _fail(f"{exc}; the change may still complete: see `consensus-lab cluster "
                    f"status --cluster {cluster}`", 3, kind="unavailable",
                    json_out=json_out) from None
    except AuthError as exc:
        raise _fail(str(exc), kind="no-credentials", json_out=json_out) from None
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot reach broker: {exc}", kind="broker-unreachable",
                    json_out=json_out) from None
    if json_out:
        print(json.dumps({"change": outcome.change, "config": outcome.config,
                          "leader": outcome.leader, "attempts": outcome.attempts,
                          "seconds": round(outcome.seconds, 3)}))
    else:
        console.print(f"[green]{escape(outcome.change)}: done[/]; configuration "
                      f"{escape(_config_text(outcome.config or '?'))}")


CHANGE_TIMEOUT_HELP = "Give up waiting for the leader's answer after this many seconds."


@cluster_app.command("add")
def cluster_add(
    node_id: Annotated[str, typer.Argument(help="The new member's id, e.g. n4.")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    timeout: Annotated[float, typer.Option(help=CHANGE_TIMEOUT_HELP)] = 60,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Add a member: its broker user, its process (started empty, it catches up from the
    leader, from a snapshot when the log was compacted), then the change; OK once it votes."""
    _change(cluster, f"add {node_id}", timeout, json_out)


@cluster_app.command("remove")
def cluster_remove(
    node_id: Annotated[str, typer.Argument(help="The member to remove, e.g. n2.")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    timeout: Annotated[float, typer.Option(help=CHANGE_TIMEOUT_HELP)] = 60,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove a member (the leader too: it hands over first); the removed process stops on
    its own once the change is committed, and its broker user is revoked."""
    _change(cluster, f"remove {node_id}", timeout, json_out)


@cluster_app.command("replace")
def cluster_replace(
    old: Annotated[str, typer.Argument(help="The member to remove, e.g. n2.")],
    new: Annotated[str, typer.Argument(help="The new member's id, e.g. n7.")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    timeout: Annotated[float, typer.Option(help=CHANGE_TIMEOUT_HELP)] = 60,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replace a member by a new one in one change (add and remove together)."""
    _change(cluster, f"replace {old} {new}", timeout, json_out)


@cluster_app.command("transfer")
def cluster_transfer(
    node_id: Annotated[str, typer.Argument(help="The member that should lead, e.g. n3.")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    timeout: Annotated[float, typer.Option(help=CHANGE_TIMEOUT_HELP)] = 30,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hand leadership to a member (TimeoutNow); the membership stays as it is."""
    _change(cluster, f"transfer {node_id}", timeout, json_out)


@cluster_app.command("restart")
def cluster_restart(
    node_id: Annotated[str, typer.Argument(help="The node to start again, e.g. n2.")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
) -> None:
    """Start a stopped or killed node again; it recovers from its write-ahead log."""
    from consensus import cluster as cl

    try:
        pid = cl.restart_node(cluster, node_id)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{node_id} restarted: pid {pid}")


@cluster_app.command("down")
def cluster_down(
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    keep_data: Annotated[bool, typer.Option(help="Keep the WALs and logs.")] = False,
) -> None:
    """Stop the processes `cluster up` started (and only those)."""
    from consensus import cluster as cl

    try:
        stopped = cl.down(cluster, keep_data)
    except FileNotFoundError:
        # Already down (or never up): the wanted state holds, so this is not an error.
        console.print(f"nothing to stop: no cluster {cluster!r} is recorded in "
                      f"{cl.STATE_ROOT / cluster}")
        return
    console.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@app.command()
def client(
    command: Annotated[str, typer.Argument(help="SET x = 100 | GET x | DEL x | CAS x 100 200")],
    cluster: Annotated[str, typer.Option(help="Cluster name.")] = "demo",
    broker_url: Annotated[str | None, typer.Option(
        "--broker", help="Broker URL; default: the one `cluster up` recorded.")] = None,
    mqtt_client: Annotated[str, typer.Option(help=CLIENT_LIB_HELP)] = "gmqtt",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    credentials: Annotated[Path | None, typer.Option(
        help="Credentials file (JSON, mode 0600); default: the client user's of the cluster "
             "`cluster up` recorded here.")] = None,
    tls_dir: Annotated[Path | None, typer.Option(
        help="Folder with ca.crt, client.crt, client.key for an mqtts:// broker.")] = None,
) -> None:
    """Send one command to a cluster: follows redirects, retries safely, prints the result."""
    import asyncio

    from consensus import cluster as cl
    from consensus.auth import CLIENT_USER, AuthError, Identity
    from consensus.client import ClusterClient, ClusterUnavailable

    identity: Identity | None = None
    try:
        if credentials is not None:
            identity = Identity.load(credentials, tls_dir)
        elif tls_dir is not None:
            identity = Identity.from_certificate(tls_dir, CLIENT_USER)
    except AuthError as exc:
        raise _fail(str(exc), kind="no-credentials", json_out=json_out) from None
    try:
        state = cl.ClusterState.load(cluster)
    except FileNotFoundError as exc:
        if broker_url is None:
            raise _fail(f"{exc}, or pass --broker", kind="no-cluster",
                        json_out=json_out) from None
    else:
        try:
            if identity is None:
                identity = state.identity(CLIENT_USER)
        except AuthError as exc:
            raise _fail(str(exc), kind="no-credentials", json_out=json_out) from None
        broker_url = broker_url or state.broker

    async def go():
        async with ClusterClient(broker_url, cluster, library=mqtt_client,
                                 deadline_s=timeout, identity=identity) as c:
            return await c.request(command)

    try:
        result = asyncio.run(go())
    except ClusterUnavailable as exc:
        raise _fail(str(exc), 3, kind="unavailable", json_out=json_out) from None
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot reach broker {broker_url}: {exc}", kind="broker-unreachable",
                    json_out=json_out) from None
    reply = result.reply
    if json_out:
        print(json.dumps({"command": command, "status": reply.status.value,
                          "result": reply.result, "node": reply.src,
                          "attempts": result.attempts, "latency_ms": result.latency_ms}))
    elif reply.status.value == "ok":
        # A stored value is data, not rich markup ("SET x = [/b]" must print as is).
        console.print(reply.result if reply.result is not None else "(nil)", markup=False,
                      highlight=False)
    else:
        err.print(f"[red]{escape(str(reply.result))}")
    if reply.status.value != "ok":
        raise typer.Exit(4)


