"""A :class:`~consensus.experiment.cluster.Cluster` of real node processes on the MQTT bus.

One OS process per node (``consensus-lab node``), talking only through the broker; clients
are asyncio tasks with their own MQTT connections; a crash is SIGKILL, a pause SIGSTOP /
SIGCONT, and partitions, loss and delay are :class:`~consensus.telemetry.Control` commands on
each node's control topic. Who leads comes from the nodes' published
:class:`~consensus.telemetry.StatusReport` s.

Checks at the end: every node is restored from its write-ahead log and fed to the
:class:`~consensus.check.invariants.SharedChecker` (applied-prefix agreement, no acknowledged
write lost), as the simulator's nodes are; and what the nodes published while running must
show one leader per term or ballot and terms never going backwards.

A cluster started elsewhere (``consensus-lab cluster up``) is driven through the same calls
without owning its processes: :meth:`BusCluster.attach` (the dashboard's live mode).

The bus is authenticated when the cluster has a broker of its own (``BusOptions.broker``
None): :meth:`BusCluster.start` makes per-run credentials (:class:`~consensus.auth.Realm`)
and starts a broker that accepts only them; the nodes connect as themselves, the workload's
clients as ``client``, the runner and the tracer as ``control``. On a broker given by URL
the run is in open mode, as that broker is.

Membership faults (``add``, ``remove``, ``replace``, ``transfer``) are made as
``consensus-lab cluster add/remove`` makes them (:meth:`BusCluster.reconfigure`): a new
member gets a broker user (the run's broker reloads its files) and a process started
joining; the change goes as a ConfigChange from the control user to the leader, retried
until answered; a removed member stops on its own, is waited for, and its user revoked. Each
change is a :class:`~consensus.experiment.nemesis.MembershipEvent` on the run's clock, with
the new member's catch-up (its applied index reaching the commit index when the change was
asked for, and the bytes published to its inbox until then, seen by the runner's
connection).

What the real bus cannot honour is said by :func:`not_honoured` (the run's manifest lists
it): latency is the network's own, and duplication is not injected.

Messages around the first fault are traced for the sequence diagram by a second connection
that subscribes to every node's inbox for the trace window only (see :meth:`measure`). It sees
each message when the broker hands it to that subscriber: one time per message (recorded as
both send and delivery, ``"observed": "broker"``); messages a sender's partition drops never
reach the broker, and a receiver's loss window is not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus import variants
from consensus.algorithms import get_algorithm
from consensus.auth import CLIENT_USER, CONTROL_USER, Identity, new_incarnation
from consensus.check.invariants import SharedChecker
from consensus.client import ClientConnection, ClientResult, ClusterClient, ClusterUnavailable
from consensus.cluster import ClusterState, broker_realm, is_ours, restart_node, spawn_node
from consensus.cluster_change import exit_wait_s, retire, start_member
from consensus.codec import DecodeError, decode, decode_message, encode
from consensus.experiment.cluster import Observed
from consensus.experiment.nemesis import MembershipEvent
from consensus.experiment.spec import ExperimentSpec
from consensus.experiment.workload import KeyChooser, Workload
from consensus.history import Operation
from consensus.membership import Change
from consensus.messages import ClientReply, Command, NodeId, ReplyStatus, traffic_kind
from consensus.node import Config, Node
from consensus.storage import FileStorage
from consensus.telemetry import Control, ControlOp, StatusReport, leader_of
from consensus.transport import topics
from consensus.transport.mqtt import MqttClient, TransportError, make_client

STATUS_INTERVAL_MS = 50.0
LEADER_WAIT_S = 15.0
CHANGE_DEADLINE_S = 60.0  # how long the operator asks for one membership change
# An attached cluster: a status older than this is not believed (its process is gone or
# stopped), and who runs is re-read from the record and /proc at most this often.
STALE_STATUS_MS = 1500.0
RECHECK_MS = 500.0
TRACE_CONNECT_MS = 150.0  # the tracer connects this long before its window opens


def not_honoured(spec: ExperimentSpec) -> list[str]:
    """The parts of ``spec`` that real processes on a real network cannot honour."""
    out = []
    net = spec.network
    if (net.latency_ms.distribution, net.latency_ms.min, net.latency_ms.max) != (
            "uniform", 1.0, 5.0):
        out.append("network.latency_ms: the real network's latency applies")
    if net.duplicate:
        out.append("network.duplicate: the bus does not duplicate messages")
    if spec.cluster.processing.per_message_ms or spec.cluster.processing.per_entry_ms:
        out.append("cluster.processing: real processes take real CPU time")
    if any(f.duplicate is not None for f in spec.faults):
        out.append("duplicate windows: the bus does not duplicate messages")
    return out


@dataclass(frozen=True, slots=True)
class BusOptions:
    """How the node processes run: the broker, the MQTT library, the WAL's fsync.

    ``broker`` None: each cluster starts its own authenticated broker (``prefer`` says
    which kind; ``tls``: TLS with per-run client certificates, see consensus.tls); a URL:
    that broker, open (it knows none of the run's users)."""

    broker: str | None
    library: str = "gmqtt"
    fsync: bool = True
    base_loss: float = 0.0  # the network's own loss rate, restored when a loss window ends
    status_interval_ms: float = STATUS_INTERVAL_MS
    prefer: str = "auto"
    tls: bool = False


class BusCluster:
    """Real node processes of one algorithm; a :class:`Cluster`. See the module docstring."""

    def __init__(self, algorithm: str, ids: tuple[NodeId, ...], config: Config,
                 directory: Path, opts: BusOptions, name: str | None = None) -> None:
        self.algorithm = algorithm
        self.ids = tuple(ids)
        self.config = config
        self.opts = opts
        self.name = name or f"{algorithm}-{uuid.uuid4().hex[:6]}"
        directory.mkdir(parents=True, exist_ok=True)
        self.state = ClusterState(
            self.name, algorithm, dict.fromkeys(self.ids, 0), opts.broker or "", None,
            "external", opts.library, opts.fsync, config.heartbeat_ms,
            config.election_timeout_ms, str(directory.resolve()),
            insecure=opts.broker is not None, incarnation=new_incarnation(),
            variant=variants.of_config(config, algorithm), initial=list(self.ids),
            snapshot_entries=config.snapshot_entries,
            alpha=None if config.alpha == Config().alpha else config.alpha)
        # Membership changes (reconfigure): each change asked for, the nodes that left.
        self.membership_events: list[MembershipEvent] = []
        self.gone: set[NodeId] = set()
        self._operator: ClusterClient | None = None
        self._changes: list[asyncio.Task[None]] = []
        self._catching_up: dict[NodeId, MembershipEvent] = {}  # new node -> its change
        self.broker: Any = None  # the BrokerHandle of a broker this cluster started
        self.origin = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.mqtt: Any = None
        self.status: dict[NodeId, StatusReport] = {}
        self.role_events: list[tuple[float, NodeId, str, int]] = []  # (t, node, role, term)
        self.leader_events: list[tuple[float, NodeId, int]] = []
        # A leader's commit index when it was elected; its first rise above it (seen in the
        # 50 ms statuses, so up to one interval late) is its first commit in its term.
        self._commit_at_election: dict[tuple[NodeId, int], int] = {}
        self.commit_events: list[tuple[float, NodeId, int]] = []
        self.leader_ballots: list[tuple[float, NodeId, str]] = []  # (t, node, term or ballot)
        self.crashed: set[NodeId] = set()
        self.paused: set[NodeId] = set()
        self.sent: Counter[str] = Counter()
        self.sent_bytes: Counter[str] = Counter()
        self.ops: list[Operation] = []
        self.sessions: dict[str, str] = {}  # history client name -> its session id on the bus
        self._stop = asyncio.Event()
        self._clients: list[asyncio.Task[None]] = []
        self._fed: dict[NodeId, StatusReport] = {}  # the clients' status feed (status_feed)
        self.owned = True  # started its processes (and stops them); False: attached
        self.client_owned = True  # False: the connection is the caller's (see attach)
        self.seen: dict[NodeId, float] = {}  # when each node's latest status arrived
        self.rechecked = -RECHECK_MS
        self.trace: list[dict[str, Any]] = []  # inbox messages seen in the trace window
        self.trace_error: str | None = None
        self._tracer: asyncio.Task[None] | None = None

    @classmethod
    def attach(cls, state: ClusterState, config: Config | None = None,
               client: MqttClient | None = None) -> BusCluster:
        """A running cluster started elsewhere (``consensus-lab cluster up``): :meth:`start`
        only subscribes to its statuses and :meth:`close` leaves its processes running.

        With ``client``, a connection the caller owns (the dashboard's, which also watches
        the inboxes): controls go out on it, and the caller hands each status it receives
        to :meth:`on_status`. Call :meth:`refresh` before reading who is up or leads."""
        config = config or variants.apply(
            Config(heartbeat_ms=state.heartbeat_ms, election_timeout_ms=state.election_timeout_ms),
            state.algorithm, state.variant)
        cluster = cls(state.algorithm, tuple(sorted(state.nodes)), config,
                      Path(state.directory),
                      BusOptions(state.broker, state.library, state.fsync),
                      name=state.name)
        cluster.state = state
        cluster.owned = False
        if client is not None:
            cluster.mqtt, cluster.client_owned = client, False
        return cluster

    # -- FaultTarget ---------------------------------------------------------------------

    @property
    def now(self) -> float:
        return (time.monotonic() - self.origin) * 1000.0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        assert self.loop is not None, "start() first"
        self.loop.call_at(self.origin + t / 1000.0, fn)

    def leader(self) -> NodeId | None:
        return leader_of(self.status, down=self.paused | self.crashed)

    def is_up(self, nid: NodeId) -> bool:
        return nid not in self.crashed and nid not in self.gone

    def applied(self, nid: NodeId) -> int | None:
        """The applied index in the node's latest status (``most-lagging``); None if down."""
        st = self.status.get(nid) if nid not in self.crashed else None
        return st.applied_index if st is not None else None

    def crash(self, nid: NodeId) -> None:
        self._harvest_counts(nid)
        if not self.owned:
            self._reload()  # `cluster restart` elsewhere may have changed the pid
        pid = self.state.nodes[nid]
        if is_ours(pid):  # never signal a recycled pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.loop is not None:  # a node we restarted is our child: no zombie left
                self.loop.call_later(0.2, _reap, pid)
        self.crashed.add(nid)
        self.status.pop(nid, None)

    def restart(self, nid: NodeId) -> None:
        """Start a crashed node again; it recovers from its WAL. An attached cluster's node
        starts as `cluster restart` starts it, and its record gets the new pid (so that
        `cluster down` stops it); RuntimeError if it still runs."""
        if self.owned:
            self._spawn(nid)
        else:
            restart_node(self.name, nid, self._root)
            self._reload()
        self.crashed.discard(nid)

    def campaign(self, nid: NodeId) -> None:
        """Make a node start an election now."""
        self.control(nid, Control(ControlOp.CAMPAIGN))

    def pause(self, nid: NodeId) -> None:
        os.kill(self.state.nodes[nid], signal.SIGSTOP)
        self.paused.add(nid)

    def resume(self, nid: NodeId) -> None:
        os.kill(self.state.nodes[nid], signal.SIGCONT)
        self.paused.discard(nid)

    def set_blocked(self, pairs: set[tuple[NodeId, NodeId]], label: str) -> None:
        for nid in self.ids:
            self.control(nid, Control(ControlOp.DROP_TO,
                                      peers=tuple(sorted(b for a, b in pairs if a == nid))))
            self.control(nid, Control(ControlOp.DROP_FROM,
                                      peers=tuple(sorted(a for a, b in pairs if b == nid))))

    def set_clock_rate(self, nid: NodeId, rate: float) -> None:
        """Real processes read the host's clock: a drifting clock is simulated only (the
        spec refuses a ``clock`` fault on the bus before a run starts)."""
        raise ValueError(f"cannot set {nid}'s clock rate to {rate:g} on the bus: clock drift "
                         "is simulated only (transport: sim)")

    def set_window(self, *, loss: float | None = None, duplicate: float | None = None,
                   delay: float = 0.0) -> None:
        rate = self.opts.base_loss if loss is None else loss
        for nid in self.ids:
            self.control(nid, Control(ControlOp.LOSS, rate=rate))
            self.control(nid, Control(ControlOp.DELAY, ms=delay))

    # -- membership ----------------------------------------------------------------------

    def reconfigure(self, change: str) -> None:
        """Ask for a membership change as ``consensus-lab cluster add/remove`` does (see the
        module docstring); returns at once, the event is filled in as the change ends."""
        assert self.loop is not None, "start() first"
        event = MembershipEvent(change, self.now)
        self.membership_events.append(event)
        self._changes.append(self.loop.create_task(self._reconfigure(event)))

    async def _reconfigure(self, event: MembershipEvent) -> None:
        try:
            parsed = Change.parse(event.change)
            for nid in parsed.add:
                await self._start_member(nid, event)
            operator = await self._operator_client()
            result = await operator.change(event.change)
        except ClusterUnavailable as exc:  # never answered: done_ms stays None
            event.result = str(exc)
            if self._operator is not None:
                event.attempts = len(self._operator.last_path)
            return
        except Exception as exc:  # the run goes on; the event says what went wrong
            event.done_ms, event.result = self.now, f"{type(exc).__name__}: {exc}"
            return
        reply = result.reply
        event.attempts = result.attempts
        event.done_ms, event.result = self.now, reply.result
        event.ok = reply.status == ReplyStatus.OK
        if event.ok:
            for nid in parsed.remove:
                await self._retire(nid)

    async def _operator_client(self) -> ClusterClient:
        """The run's operator: one control-user connection for every change."""
        from consensus.client import CHANGE_POLICY

        if self._operator is None:
            operator = ClusterClient(
                self.state.broker, self.name, library=self.opts.library,
                client_id=f"op-{uuid.uuid4().hex[:6]}", deadline_s=CHANGE_DEADLINE_S,
                watch_status=False, policy=CHANGE_POLICY, status_feed=self.status_feed,
                identity=self.identity(CONTROL_USER))
            await operator.__aenter__()
            self._operator = operator
        self._operator.nodes = sorted(n for n in self.ids if n not in self.gone)
        self._operator.last_leader = self.leader()
        return self._operator

    async def _start_member(self, nid: NodeId, event: MembershipEvent) -> None:
        """A broker user for ``nid`` (the broker reloads it), then its process, started
        joining (:func:`consensus.cluster_change.start_member`); its catch-up is timed from
        now. An attached cluster's record gets the new member, so `cluster down` stops it."""
        topics.check_name("node", nid)
        if nid in self.state.nodes:
            raise ValueError(f"{nid} is already a node of this cluster")
        leader = self.leader()
        event.node = nid
        event.catch_up_index = (self.status[leader].commit_index if leader in self.status
                                else max((s.commit_index for s in self.status.values()),
                                         default=0))
        self._catching_up[nid] = event
        self.ids = tuple(sorted({*self.ids, nid}))
        if self.mqtt is not None:
            await self.mqtt.subscribe(topics.peer_prefix(self.name, nid) + "+")
        await asyncio.to_thread(start_member, self.state, nid,
                                status_interval_ms=self.opts.status_interval_ms,
                                save=not self.owned)

    async def _retire(self, nid: NodeId) -> None:
        """``nid`` left the configuration: wait for its process to stop on its own (stop it
        if it lingers), then revoke its broker user (:func:`consensus.cluster_change.retire`).
        A run keeps it in its record: its WAL is checked with the others at the end."""
        self._harvest_counts(nid)
        self.gone.add(nid)
        self.status.pop(nid, None)
        pid = self.state.nodes.get(nid, 0)
        await asyncio.to_thread(retire, self.state, nid, wait_s=exit_wait_s(self.state),
                                save=not self.owned, forget=not self.owned)
        _reap(pid)

    def _count_catch_up(self, topic: str, payload: bytes) -> None:
        """Bytes published to a catching-up member's inbox by the other nodes."""
        pair = topics.sender_of(topic)
        if pair is not None and pair[0] in self._catching_up:
            self._catching_up[pair[0]].catch_up_bytes += len(payload)

    def _check_caught_up(self, st: StatusReport) -> None:
        event = self._catching_up.get(st.id)
        if event is not None and st.applied_index >= (event.catch_up_index or 0):
            event.caught_up_ms = self.now
            del self._catching_up[st.id]

    def control(self, nid: NodeId, cmd: Control) -> None:
        """Send one fault-hook command to a node process."""
        self.mqtt.publish(topics.control(self.name, nid), encode(cmd))

    # -- an attached cluster's processes live and die outside this object ----------------

    @property
    def _root(self) -> Path:
        return Path(self.state.directory).parent  # `cluster up` keeps <root>/<name>/

    def _reload(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            self.state = ClusterState.load(self.name, self._root)

    def refresh(self) -> None:
        """An attached cluster: who runs, from the record and /proc (`cluster restart` or a
        kill in another terminal), and no belief in a status older than STALE_STATUS_MS (a
        stopped process). Owned clusters know this already; nothing changes for them."""
        if self.owned:
            return
        now = self.now
        if now - self.rechecked >= RECHECK_MS:
            self.rechecked = now
            self._reload()
            for nid in self.ids:
                if is_ours(self.state.nodes.get(nid, 0)):
                    self.crashed.discard(nid)
                else:
                    self.crashed.add(nid)
        for nid in list(self.status):
            if nid in self.crashed or now - self.seen.get(nid, -math.inf) > STALE_STATUS_MS:
                del self.status[nid]

    # -- life ----------------------------------------------------------------------------

    def identity(self, user: str) -> Identity | None:
        """What a connection of this run presents as ``user`` (None: an open broker)."""
        return self.state.identity(user)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.owned and self.opts.broker is None and self.broker is None:
            await asyncio.to_thread(self._start_broker)
        if self.client_owned:
            self.mqtt = make_client(self.opts.library, self.state.broker,
                                    f"{self.name}-runner", self._on_message,
                                    self.identity(CONTROL_USER))
            await self.mqtt.connect()
            await self.mqtt.subscribe(topics.status(self.name))
        self.origin = time.monotonic()
        if self.owned:
            for nid in self.ids:
                self._spawn(nid)

    def _start_broker(self) -> None:
        """Per-run credentials, and a broker that accepts only them."""
        from consensus.broker import start_broker

        realm = broker_realm(self.name, list(self.ids), Path(self.state.directory),
                             self.opts.prefer, self.opts.tls)
        self.broker = start_broker(prefer=self.opts.prefer, realm=realm, tls=self.opts.tls)
        self.state.broker, self.state.broker_kind = self.broker.url, self.broker.kind
        self.state.tls = self.opts.tls
        # What a membership change needs to make this broker reload the realm's files.
        self.state.broker_pid = self.broker.pid
        self.state.broker_dir = (None if self.broker.log_path is None
                                 else str(self.broker.log_path.parent))

    def _spawn(self, nid: NodeId) -> None:
        """Start one node process, detached, logging to <dir>/<id>.log."""
        spawn_node(self.state, nid, status_interval_ms=self.opts.status_interval_ms)

    async def close(self) -> None:
        for task in [*self._clients, *self._changes]:
            task.cancel()
        await asyncio.gather(*self._clients, *self._changes, return_exceptions=True)
        if self._operator is not None:
            with contextlib.suppress(Exception):
                await self._operator.__aexit__(None, None, None)
            self._operator = None
        await self._stop_tracer()
        if self.owned:
            await self._stop_nodes()
        if self.mqtt is not None and self.client_owned:
            await self.mqtt.close()
        self.mqtt = None
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
            # The run's credentials die with its broker; none stays in the run folder.
            shutil.rmtree(self.state.secrets, ignore_errors=True)

    async def _stop_nodes(self) -> None:
        for nid in self.ids:
            pid = self.state.nodes[nid]
            if is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        for pid in self.state.nodes.values():
            if is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def wait_for_leader(self, within_s: float = LEADER_WAIT_S) -> float:
        end = time.monotonic() + within_s
        while self.leader() is None:
            if time.monotonic() > end:
                raise RuntimeError(f"{self.algorithm}: no leader within {within_s:g}s; "
                                   f"see the node logs in {self.state.directory}")
            await asyncio.sleep(0.02)
        if self.opts.base_loss:
            self.set_window()
        return self.now

    async def run_until(self, t: float) -> None:
        while self.now < t:
            await asyncio.sleep(min(0.1, (t - self.now) / 1000))

    def statuses(self) -> Mapping[NodeId, StatusReport]:
        return self.status

    def measure(self, trace_window: tuple[float, float] | None) -> None:
        """Traffic counts come from the nodes' own counters; the messages in ``trace_window``
        from a tracer connection subscribed to every inbox for that window only (so the rest
        of the run carries no extra subscriber)."""
        if trace_window is None or self.loop is None or self._tracer is not None:
            return
        self._tracer = self.loop.create_task(self._trace_inboxes(trace_window))

    async def _trace_inboxes(self, window: tuple[float, float]) -> None:
        lo, hi = window
        await asyncio.sleep(max(0.0, (lo - TRACE_CONNECT_MS - self.now) / 1000))
        members = set(self.ids)

        def on_message(topic: str, payload: bytes) -> None:
            t = self.now
            if not lo <= t <= hi:
                return
            try:
                msg = decode_message(payload, cluster=self.name)
            except DecodeError:
                return
            if msg.src not in members or msg.dst not in members:
                return  # client requests: the sequence diagram shows protocol messages
            # A crashed node has no session on the broker: the message is lost.
            delivered = None if msg.dst in self.crashed else t
            self.trace.append({"sent": t, "delivered": delivered, "src": msg.src,
                               "dst": msg.dst, "kind": traffic_kind(msg),
                               "observed": "broker"})

        tracer = make_client(self.opts.library, self.state.broker, f"{self.name}-tracer",
                             on_message, self.identity(CONTROL_USER))
        try:
            await tracer.connect()
            await tracer.subscribe(topics.all_inboxes(self.name))
            await asyncio.sleep(max(0.0, (hi - self.now) / 1000))
        except TransportError as exc:
            self.trace_error = str(exc)
        finally:
            await tracer.close()

    async def _stop_tracer(self) -> None:
        if self._tracer is not None and not self._tracer.done():
            self._tracer.cancel()
            await asyncio.gather(self._tracer, return_exceptions=True)

    def _on_message(self, topic: str, payload: bytes) -> None:
        """The runner's connection: statuses, and a new member's inbox while it catches up."""
        if topic.endswith("/status"):
            self._on_status(topic, payload)
        else:
            self._count_catch_up(topic, payload)

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            st = decode(StatusReport, payload)
        except DecodeError:
            return
        self.on_status(st)

    def on_status(self, st: StatusReport) -> None:
        """A node's published status (decoded)."""
        nid = st.id
        if nid not in self.ids or nid in self.crashed or nid in self.gone:
            return
        previous = self.status.get(nid)
        self.status[nid] = st
        self.seen[nid] = self.now
        if self._catching_up:
            self._check_caught_up(st)
        if previous is None or previous.role != st.role:
            now = self.now
            self.role_events.append((now, nid, st.role, st.term))
            if st.role == "leader":
                self.leader_events.append((now, nid, st.term))
                # Raft: one leader per term. Paxos: rounds repeat across nodes, ballots don't.
                self.leader_ballots.append((now, nid, st.ballot or str(st.term)))
                self._commit_at_election[(nid, st.term)] = st.commit_index
        elif st.role == "leader":
            base = self._commit_at_election.get((nid, st.term))
            if base is not None and st.commit_index > base:
                del self._commit_at_election[(nid, st.term)]
                self.commit_events.append((self.now, nid, st.term))

    def _harvest_counts(self, nid: NodeId) -> None:
        """Add a node's traffic counters (they restart at zero with the process)."""
        st = self.status.get(nid)
        if st is not None:
            self.sent.update(st.sent_by_kind)
            self.sent_bytes.update(st.bytes_by_kind)

    # -- the workload ----------------------------------------------------------------------

    def start_workload(self, workload: Workload, seed: int, at: float, end: float) -> None:
        self._stop.clear()
        self._clients = [asyncio.create_task(self._workload(workload, seed, end))]

    async def _workload(self, w: Workload, seed: int, end_ms: float) -> None:
        """The workload's clients, on one shared connection: what they send in one turn of
        the event loop leaves as one batch, and the leader answers them in batches."""
        async with ClientConnection(
                self.state.broker, self.name, library=self.opts.library,
                conn=f"{self.name}-clients-{uuid.uuid4().hex[:6]}",
                identity=self.identity(CLIENT_USER)) as connection:
            await asyncio.gather(*(self._client(f"c{i}", w, seed, end_ms, connection)
                                   for i in range(1, w.clients + 1)), return_exceptions=True)

    def stop_workload(self) -> None:
        self._stop.set()

    async def history(self) -> list[Operation]:
        for task in self._clients:
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        self._clients = []
        return list(self.ops)

    def status_feed(self) -> list[tuple[float, StatusReport]]:
        """The statuses this cluster watched, with their age (the clients' leader hints and
        down detection, without every client subscribing to the status topic)."""
        # A crashed node's status is dropped at once (the harness knows it killed it); a real
        # client only sees its statuses stop, so the feed keeps the last one, growing older.
        self._fed.update(self.status)
        now = self.now
        return [(now - self.seen[nid], st) for nid, st in sorted(self._fed.items())
                if nid in self.seen]

    async def _client(self, name: str, w: Workload, seed: int, end_ms: float,
                      connection: ClientConnection) -> None:
        """One client: one command in flight, retried with the same seq (the retries are
        :class:`ClusterClient`'s, as for `consensus-lab client`), given up as unknown at the
        request deadline while the workload runs, and at the run's end after it."""
        rng = random.Random(f"{seed}/client/{name}")
        keys = KeyChooser(w.keys, w.key_distribution, rng)
        per_client = (w.rate / w.clients) if w.rate else None
        next_arrival = self.now + (rng.expovariate(per_client / 1000) if per_client else 0)
        # A fresh session id per run: a node's dedup table remembers the last one's seqs.
        session = f"{name}-{uuid.uuid4().hex[:6]}"
        self.sessions[name] = session
        async with ClusterClient(
                self.state.broker, self.name, library=self.opts.library, nodes=list(self.ids),
                client_id=session, watch_status=False, policy=w.retry,
                status_feed=self.status_feed, connection=connection) as client:
            client.last_leader = self.leader()
            while not self._stop.is_set():
                if per_client:
                    await asyncio.sleep(max(0.0, (next_arrival - self.now) / 1000))
                    if self._stop.is_set():
                        break
                    scheduled: float | None = next_arrival
                    next_arrival += rng.expovariate(per_client / 1000)
                else:
                    scheduled = None
                seq = client.seq + 1  # the seq request() is about to use
                key = keys()
                text = (f"GET {key}" if rng.random() < w.read_ratio
                        else f"SET {key} = {name}-{seq}")
                op = Operation(name, seq, text, self.now, attempts=0, scheduled_ms=scheduled)
                self.ops.append(op)
                result = await self._request(client, op, w, end_ms)
                if result is None:
                    if self.now >= end_ms:
                        break  # the run ended with it in flight: its outcome stays unknown
                    continue  # given up at the deadline: unknown (info); the next command
                op.complete_ms = self.now
                op.attempts += result.attempts
                op.outcome = "ok" if result.reply.status == ReplyStatus.OK else "fail"
                op.result = result.reply.result
                if not per_client and w.think_ms:
                    await asyncio.sleep(w.think_ms / 1000)

    async def _request(self, client: ClusterClient, op: Operation, w: Workload,
                       end_ms: float) -> ClientResult | None:
        """One command: None if given up (``op`` then says so) or the run ended first."""
        again = False
        while True:
            until_end = max(0.0, (end_ms - self.now) / 1000)
            # After the workload the command retries until the end, for the liveness check.
            client.deadline_s = (until_end if self._stop.is_set()
                                 else min(until_end, w.request_timeout_ms / 1000))
            try:
                return await client.request(op.command, again=again)
            except ClusterUnavailable:
                op.attempts += len(client.last_path)
                if self.now >= end_ms:
                    return None
                if not self._stop.is_set():
                    op.complete_ms = self.now  # outcome stays info
                    return None
                again = True

    # -- the end ---------------------------------------------------------------------------

    async def finish(self, ops: list[Operation]) -> Observed:
        await asyncio.sleep(3 * self.opts.status_interval_ms / 1000)  # the last counters
        for nid in self.ids:
            if nid not in self.crashed:
                self._harvest_counts(nid)
        checker = SharedChecker()
        checker.reads_off_log = self.config.read_path != "log"
        now = self.now
        for op in ops:  # what the clients were told, as the simulator's clients report it
            if op.outcome in ("ok", "fail"):
                status = ReplyStatus.OK if op.outcome == "ok" else ReplyStatus.ERROR
                command = Command(self.sessions.get(op.client, op.client), op.seq, op.command)
                checker.on_client_reply(op.complete_ms or now, ClientReply(
                    src="", dst=command.client_id, seq=op.seq, status=status), command)
        # Each node as it restarts from its log: what it re-applies is checked like a drain.
        # (The algorithms' own checkers follow durable records in the order the cluster made
        # them; separate logs have no such order, so the bus runs the shared checks.)
        nodes = self.restored_nodes()
        for node in nodes.values():
            assert node is not None
            checker.after_ready(now, node, node.ready(), node.status())
        checker.finish(now, nodes)
        violations = self._published_violations() + [str(v) for v in checker.violations]
        agreed = getattr(checker, "agreed", {})
        # A node restored from a compacted log holds only the entries after its snapshot, so
        # the agreed entries undercount the commands once compaction is on; every command a
        # client was answered for was committed, which bounds the count from below.
        answered = sum(1 for op in ops if op.outcome in ("ok", "fail"))
        committed = max(len({(c.client_id, c.seq) for c in agreed.values() if c is not None}),
                        answered)
        await self._stop_tracer()
        info: dict[str, Any] = {"cluster": self.name, "nodes_dir": self.state.directory,
                                "violations": violations}
        if self.trace_error:
            info["trace_error"] = self.trace_error
        return Observed(self.role_events, self.leader_events, violations,
                        committed, self.sent, self.sent_bytes,
                        sorted(self.trace, key=lambda m: m["sent"]), info,
                        self.commit_events)

    def restored_nodes(self) -> dict[NodeId, Node | None]:
        """Each node as it comes back from its write-ahead log (its committed prefix
        re-applied), as a restart would bring it back."""
        algo = get_algorithm(self.algorithm)
        out: dict[NodeId, Node | None] = {}
        initial = tuple(self.state.initial or self.ids)
        for nid in self.ids:
            wal = FileStorage(Path(self.state.directory) / f"{nid}.wal", fsync=False)
            records = wal.load()
            wal.close()
            # A member added during the run comes back as it ran: joining, from its WAL.
            extra = {"joining": True} if nid in self.state.joined else {}
            node: Node = algo.node_class(nid, initial, self.config, random.Random(0), **extra)
            node.restore(records)
            out[nid] = node
        return out

    def _published_violations(self) -> list[str]:
        """One leader per term or ballot, terms never backwards, as the nodes published."""
        problems: list[str] = []
        leaders: dict[str, str] = {}
        for t, nid, ballot in self.leader_ballots:
            other = leaders.setdefault(ballot, nid)
            if other != nid:
                problems.append(f"two leaders in term/ballot {ballot}: {other} and {nid} "
                                f"(T={t / 1000:.3f}s)")
        last_term: dict[str, int] = {}
        for t, nid, _, term in self.role_events:
            if term < last_term.get(nid, 0):
                problems.append(f"{nid}'s term went back from {last_term[nid]} to {term} "
                                f"(T={t / 1000:.3f}s)")
            last_term[nid] = max(term, last_term.get(nid, 0))
        return problems


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
