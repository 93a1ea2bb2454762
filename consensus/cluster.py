"""Start, inspect and stop a local cluster of node processes: `consensus-lab cluster ...`.

``up`` starts a broker when none is given, then one OS process per node, each with its own
WAL and log file under ``.consensus-lab/<cluster>/``, and records what it started in
``cluster.json`` there. Unless ``insecure``, the broker is authenticated: ``up`` makes a new
:class:`~consensus.auth.Realm` (users, passwords, ACL) in ``.consensus-lab/<cluster>/secrets``
for the broker it starts (with ``--broker``, the realm ``consensus-lab broker --cluster``
made for that broker is used), and a new incarnation id the nodes check on every peer
message. With ``tls`` the started broker's only listener is TLS with client certificates
(the cluster's CA and certificates in ``secrets/tls``, reused while valid), and every
connection of the cluster presents its user's certificate; ``listen`` puts the broker on an
address other hosts reach (refused when ``insecure``). ``status`` reads the nodes' status
topic; ``down`` stops exactly the processes recorded (checking each pid still runs a
consensus-lab node before signalling it). The membership of a running cluster changes with
:mod:`consensus.cluster_change` (``cluster add/remove/replace/transfer``); the record follows
it: ``nodes`` holds the members' processes, ``initial`` the configuration ``up`` started
with (what a restarted original member is told), ``joined`` the members added since (they
start, and restart, as joining nodes), ``config`` the configuration last reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consensus import variants
from consensus.auth import CONTROL_USER, AuthError, Identity, Realm, new_incarnation
from consensus.telemetry import StatusReport, leader_of
from consensus.transport import topics

STATE_ROOT = Path(".consensus-lab")


@dataclass(slots=True)
class ClusterState:
    name: str
    algorithm: str
    nodes: dict[str, int]  # node id -> pid
    broker: str
    broker_pid: int | None  # set when `up` started the broker itself
    broker_kind: str
    library: str
    fsync: bool
    heartbeat_ms: float
    election_timeout_ms: tuple[float, float]
    directory: str
    broker_dir: str | None = None  # the started broker's config and log, removed on `down`
    started: float = field(default_factory=time.time)
    insecure: bool = False  # an open broker: anyone may connect (teaching mode)
    incarnation: str | None = None  # this `up`'s id; nodes refuse peer messages of others
    tls: bool = False  # the broker speaks TLS and wants client certificates (mqtts://)

    @property
    def secrets(self) -> Path:
        return Path(self.directory) / "secrets"

    def credentials_path(self, user: str) -> Path | None:
        """Where ``user``'s credentials file is, or None on an insecure cluster."""
        if self.insecure:
            return None
        realm = Realm.open(self.name, Path(self.directory))
        if realm is None:
            raise AuthError(f"cluster {self.name!r} has no credentials in {self.secrets}; "
                            f"start it again with `consensus-lab cluster up`")
        return realm.identity_path(user)

    def identity(self, user: str = CONTROL_USER) -> Identity | None:
        """What a connection as ``user`` presents (None: anonymous, insecure cluster)."""
        path = self.credentials_path(user)
        return None if path is None else Identity.load(path)
    # Design choices switched on every node (consensus/variants.py), e.g. {"election": "any"}.
    variant: dict[str, Any] = field(default_factory=dict)
    initial: list[str] = field(default_factory=list)  # `up`'s configuration ([]: all nodes)
    joined: list[str] = field(default_factory=list)  # members added by `cluster add/replace`
    config: str | None = None  # the configuration the last change reached (Membership text)
    snapshot_entries: int = 0  # each node snapshots after this many applied entries (0: never)
    alpha: int | None = None  # Multi-Paxos's alpha window (None: the default)

    @property
    def path(self) -> Path:
        return Path(self.directory) / "cluster.json"

    def save(self) -> None:
        self.path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, name: str, root: Path = STATE_ROOT) -> ClusterState:
        path = root / name / "cluster.json"
        if not path.exists():
            raise FileNotFoundError(f"no cluster {name!r} was started from here ({path} is "
                                    f"missing); start one with `consensus-lab cluster up`")
        data = json.loads(path.read_text())
        data["election_timeout_ms"] = tuple(data["election_timeout_ms"])
        # A record without the field predates authentication: its broker was open.
        data.setdefault("insecure", True)
        return cls(**data)


def node_command(state: ClusterState, node_id: str,
                 status_interval_ms: float | None = None) -> list[str]:
    """The command line of one node process. An original member is told `up`'s configuration
    (its WAL holds any change since); a member added later starts as a joining node, told
    the members it may catch up from."""
    lo, hi = state.election_timeout_ms
    extra = [] if status_interval_ms is None else ["--status-interval-ms", str(status_interval_ms)]
    if node_id in state.joined:
        peers = sorted(state.nodes)
        extra.append("--joining")
    else:
        peers = sorted(state.initial or state.nodes)
    credentials = state.credentials_path(node_id)
    if credentials is not None:
        extra += ["--credentials", str(credentials)]
    if state.incarnation is not None:
        extra += ["--incarnation", state.incarnation]
    if state.snapshot_entries:
        extra += ["--snapshot-entries", str(state.snapshot_entries)]
    if state.alpha is not None:
        extra += ["--alpha", str(state.alpha)]
    return [sys.executable, "-m", "consensus", "node", "--algorithm", state.algorithm,
            "--id", node_id, "--peers", ",".join(peers), "--cluster", state.name,
            "--broker", state.broker, "--data-dir", state.directory,
            "--mqtt-client", state.library, "--fsync", "always" if state.fsync else "never",
            "--heartbeat-ms", str(state.heartbeat_ms),
            "--election-timeout-ms", f"{lo}-{hi}", *extra,
            *(arg for pair in variants.as_pairs(state.variant) for arg in ("--variant", pair))]


def spawn_node(state: ClusterState, node_id: str,
               status_interval_ms: float | None = None) -> int:
    """Start one node process, detached from this terminal, logging to <dir>/<id>.log."""
    log_path = Path(state.directory) / f"{node_id}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(node_command(state, node_id, status_interval_ms),
                                stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    state.nodes[node_id] = proc.pid
    return proc.pid


def up(algorithm: str, nodes: int, name: str, broker: str | None, library: str, fsync: bool,
       heartbeat_ms: float, election_timeout_ms: tuple[float, float],
       root: Path = STATE_ROOT, *, insecure: bool = False,
       prefer: str = "auto", listen: str = "127.0.0.1", tls: bool = False,
       variant: dict[str, Any] | None = None, snapshot_entries: int = 0,
       alpha: int | None = None) -> ClusterState:
    """Start the broker (if no URL is given) and the node processes; return what started.

    ``variant``: design choices switched on every node (``consensus/variants.py``, checked).
    ``snapshot_entries``: each node compacts its log after this many applied entries;
    ``alpha``: Multi-Paxos's window (how far past the chosen prefix a configuration takes
    effect; None: the default).

    Unless ``insecure``: a new realm for a started broker (with TLS material when ``tls``);
    with ``broker`` given, the realm `consensus-lab broker --cluster` left for it (an error
    when there is none; a TLS broker's realm holds the certificates). ``listen``: where a
    started broker listens.
    """
    from consensus.broker import broker_address, check_listen, start_broker

    topics.check_name("cluster", name)
    variants.check(algorithm, variant or {})
    if snapshot_entries < 0:
        raise ValueError(f"snapshot_entries must be >= 0, got {snapshot_entries}")
    if alpha is not None and alpha < 1:
        raise ValueError(f"alpha must be >= 1, got {alpha}")
    check_modes(insecure, tls)
    if broker is not None and (tls or listen != "127.0.0.1"):
        raise ValueError("--tls and --listen configure a broker `cluster up` starts; with "
                         "--broker, start that broker with them (consensus-lab broker)")
    if broker is None:
        # Refuse an open broker on the network before anything is made or started.
        check_listen(listen, authenticated=not insecure)
    directory = root / name
    if (directory / "cluster.json").exists():
        old = ClusterState.load(name, root)
        if any(is_ours(pid) for pid in old.nodes.values()):
            raise RuntimeError(f"cluster {name!r} is already up (pids "
                               f"{', '.join(map(str, old.nodes.values()))}); "
                               f"`consensus-lab cluster down --cluster {name}` first")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.wal"):
        stale.unlink()  # a new cluster starts empty; `restart` keeps a node's WAL
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    realm = None
    if insecure:
        shutil.rmtree(directory / "secrets", ignore_errors=True)
    elif broker is None:
        realm = broker_realm(name, ids, directory, prefer, tls, listen)
    else:
        realm = Realm.open(name, directory)
        if realm is None or set(realm.nodes) != set(ids):
            raise AuthError(f"broker {broker} needs credentials for cluster {name!r} with "
                            f"nodes {','.join(ids)}: start it with `consensus-lab broker "
                            f"--cluster {name} --nodes {nodes}`, or pass --insecure for an "
                            f"open broker")
    broker_pid, kind, broker_dir = None, "external", None
    if broker is None:
        # The broker runs in its own session: it outlives this command, like the nodes.
        handle = start_broker(prefer=prefer, realm=realm, listen=listen, tls=tls)
        broker, broker_pid, kind = handle.url, handle.pid, handle.kind
        broker_dir = str(handle.log_path.parent) if handle.log_path else None
    state = ClusterState(name, algorithm, dict.fromkeys(ids, 0), broker, broker_pid, kind,
                         library, fsync, heartbeat_ms, election_timeout_ms,
                         str(directory.resolve()), broker_dir, insecure=insecure,
                         incarnation=new_incarnation(), tls=broker_address(broker).tls,
                         variant=dict(variant or {}), initial=list(ids),
                         snapshot_entries=snapshot_entries, alpha=alpha)
    for nid in ids:
        spawn_node(state, nid)
    state.save()
    return state


def check_modes(insecure: bool, tls: bool) -> None:
    if insecure and tls:
        raise ValueError("--tls and --insecure contradict each other: TLS here means client "
                         "certificates, which is authentication")


def broker_realm(name: str, ids: list[str], directory: Path, prefer: str, tls: bool,
                 listen: str = "127.0.0.1") -> Realm:
    """Fresh credentials for a broker about to be started: for the kind ``prefer`` picks,
    with TLS material whose broker certificate names ``listen`` when ``tls``."""
    from consensus.broker import chosen_kind

    return Realm.create(name, ids, directory, brokers=(chosen_kind(prefer),),
                        tls_addresses=certificate_names(listen) if tls else None)


def certificate_names(listen: str) -> list[str]:
    """What the broker's certificate names besides loopback: the listen address. A wildcard
    (0.0.0.0) is passed on so that tls.ensure_server refuses it, saying why: no client dials
    it, and a certificate for loopback alone would fail every other host's check."""
    return [] if listen == "127.0.0.1" else [listen]


def restart_node(name: str, node_id: str, root: Path = STATE_ROOT) -> int:
    state = ClusterState.load(name, root)
    if node_id not in state.nodes:
        raise ValueError(f"{node_id!r} is not in cluster {name!r} ({', '.join(state.nodes)})")
    if is_ours(state.nodes[node_id]):
        raise RuntimeError(f"{node_id} is still running (pid {state.nodes[node_id]})")
    pid = spawn_node(state, node_id)
    state.save()
    return pid


def down(name: str, keep_data: bool = False, root: Path = STATE_ROOT) -> list[str]:
    """Stop the recorded processes (nodes, then the broker if `up` started it)."""
    state = ClusterState.load(name, root)
    stopped = []
    pids = [(f"node {n}", p) for n, p in sorted(state.nodes.items())]
    if state.broker_pid:
        pids.append((f"{state.broker_kind} broker", state.broker_pid))
    for label, pid in pids:
        if stop_process(pid):
            stopped.append(f"{label} (pid {pid})")
    if state.broker_dir and Path(state.broker_dir).name.startswith("consensus-"):
        shutil.rmtree(state.broker_dir, ignore_errors=True)
    if state.broker_pid:
        # The credentials die with the broker `up` started. A broker started apart
        # (`consensus-lab broker --cluster`) outlives the cluster and keeps its users.
        shutil.rmtree(state.secrets, ignore_errors=True)
    if keep_data:
        state.path.unlink(missing_ok=True)
    else:
        for path in Path(state.directory).glob("*"):
            if path.suffix in (".wal", ".log", ".json"):
                path.unlink()
        with contextlib.suppress(OSError):
            Path(state.directory).rmdir()
    return stopped


def is_ours(pid: int) -> bool:
    """True if ``pid`` is alive and runs something of ours (never signal a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"consensus" not in cmdline and b"mosquitto" not in cmdline:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie: dead, only waiting to be reaped
    return True


def stop_process(pid: int, grace_s: float = 3.0) -> bool:
    if not is_ours(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and is_ours(pid):
        time.sleep(0.05)
    if is_ours(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


@dataclass(frozen=True, slots=True)
class NodeProcess:
    """One recorded node process: its pid, whether it runs, and its latest status if any."""

    id: str
    pid: int
    alive: bool
    status: StatusReport | None  # None: nothing published within the wait


async def fetch_status(state: ClusterState, wait_s: float = 1.0) -> dict[str, NodeProcess]:
    """Each recorded node with the latest status it published within ``wait_s``."""
    from consensus.client import ClusterClient

    async with ClusterClient(state.broker, state.name, library=state.library,
                             identity=state.identity()) as client:
        end = time.monotonic() + wait_s
        while time.monotonic() < end and len(client.statuses) < len(state.nodes):
            await asyncio.sleep(0.05)
        statuses = dict(client.statuses)
    return {nid: NodeProcess(nid, pid, is_ours(pid), statuses.get(nid))
            for nid, pid in sorted(state.nodes.items())}


async def wait_for_leader(state: ClusterState, timeout_s: float = 15.0) -> str | None:
    """The leader once some node reports itself leader, or None after ``timeout_s``."""
    from consensus.client import ClusterClient

    async with ClusterClient(state.broker, state.name, library=state.library,
                             identity=state.identity()) as client:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            leader = leader_of(client.statuses)
            if leader is not None:
                return leader
            await asyncio.sleep(0.05)
    return None
