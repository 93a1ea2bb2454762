"""Drive one node on the wall clock over MQTT, with a write-ahead log: `consensus-lab node`.

Theory of operation
-------------------
The node code is the same object the simulator drives; only the driver differs (as SimPy's
RealtimeEnvironment differs from its Environment only in how it waits). Every inbound payload
is decoded strictly by the codec, then ``tick(now)`` + ``step(msg)``; a timer armed at
``next_deadline()`` calls ``tick`` when nothing arrives. The node's ``Ready`` is drained in the
one safe order: append ``persist`` to the WAL and fsync, *then* publish the messages and client
replies that depend on it. A node process drains once per burst (group commit): every message
the MQTT client has already received is stepped first, then one drain persists all their
records with one fsync and sends all their output in one socket write.

Hostile input (not JSON, unknown type, wrong field types, negative indexes, a sender outside
the cluster, another cluster, too large, misrouted) is dropped before it reaches the node,
logged once per kind and counted in the published status; it never changes the node's state.
So is a protocol message whose claimed sender differs from the sender in its topic
(``sender-mismatch``: on an authenticated broker the topic's sender is the publisher's user
name, vouched for by the ACL), one of another incarnation of the cluster
(``stale-incarnation``), a client request on a peer topic or a protocol message on the
client request topic (``wrong-topic``). Client requests arrive on
``<node>/request/<connection>``; their replies go back to that connection's reply topic.

The control topic carries fault hooks for experiments on the real bus (a
:class:`~consensus.telemetry.Control`, decoded as strictly as a protocol message): drop
traffic to or from given peers (partitions, one-way cuts), drop a fraction of inbound
messages, delay inbound messages, heal, or campaign now. A malformed one is dropped and
counted like hostile protocol input. Crash and pause are real signals (SIGKILL,
SIGSTOP/SIGCONT) sent by the runner to the process. The node publishes a
:class:`~consensus.telemetry.StatusReport` on its status topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus.algorithms import get_algorithm
from consensus.auth import AuthError, Identity
from consensus.codec import (
    MAX_PAYLOAD,
    DecodeError,
    decode,
    decode_message,
    encode,
    encode_message,
)
from consensus.group_commit import GroupCommitter
from consensus.messages import ClientReply, ClientRequest, Message, NodeId, traffic_kind
from consensus.node import Config, Node, Ready, Status
from consensus.storage import FileStorage
from consensus.telemetry import Control, ControlOp, FaultSettings, StatusReport
from consensus.transport import topics
from consensus.transport.mqtt import DEFAULT_LIBRARY, MqttClient, make_client

log = logging.getLogger("consensus.node")

REPLY_ROUTES = 4096  # client id -> reply connection, the most recently heard from


@dataclass(frozen=True, slots=True)
class NodeOptions:
    algorithm: str
    node_id: NodeId
    peers: tuple[NodeId, ...]
    cluster: str
    broker: str
    data_dir: Path
    fsync: bool = True
    library: str = DEFAULT_LIBRARY
    config: Config = field(default_factory=Config)
    status_interval_ms: float = 200.0
    # The file holding this node's broker credentials (never the password itself: argv is
    # visible to everyone in `ps`); None connects anonymously (an --insecure broker).
    credentials: Path | None = None
    # This `cluster up`'s id: peer messages of any other one are refused. None: not checked.
    incarnation: str | None = None
    # The folder with this node's certificate (ca.crt, <id>.crt, <id>.key) for an mqtts://
    # broker; overrides a folder the credentials file names. The certificate alone
    # authenticates: credentials are then optional.
    tls_dir: Path | None = None
    # The benchmark's in-process load generator (consensus.bench.inprocess) takes commands
    # on <data_dir>/<id>.load.sock: requests issued inside this process, as PySyncObj's own
    # benchmark issues them. Off outside the benchmark.
    bench_load: bool = False

    def __post_init__(self) -> None:
        topics.check_name("cluster", self.cluster)
        for peer in self.peers:
            topics.check_name("node", peer)
        if self.node_id not in self.peers:
            raise ValueError(f"--id {self.node_id!r} must be one of --peers {','.join(self.peers)}")

    @property
    def wal_path(self) -> Path:
        return self.data_dir / f"{self.node_id}.wal"


class NodeRuntime:
    """One node process; see the module docstring."""

    def __init__(self, options: NodeOptions,
                 client_factory: Callable[..., MqttClient] = make_client,
                 node_class: type[Node] | None = None, group_commit: bool = False) -> None:
        # ``node_class`` overrides the registry (the benchmark's null protocol uses it; it is
        # deliberately not a selectable algorithm). ``group_commit``: see `_drain_soon`; the
        # node process turns it on, while a runtime driven by hand drains after every message.
        self.opts = options
        self.group_commit = group_commit
        if node_class is None:
            node_class = get_algorithm(options.algorithm).node_class
        self.storage = FileStorage(options.wal_path, fsync=options.fsync)
        records = self.storage.load()
        self.committer: GroupCommitter[Ready] = GroupCommitter(
            self.storage, self.release, threaded=group_commit, on_failure=self._write_failed)
        # Wall-clock randomness is fine here: the runtime is not meant to be replayed.
        self.node: Node = node_class(options.node_id, options.peers, options.config,
                                     random.Random())
        self._t0 = time.monotonic()
        self.node.tick(self.now())
        if records:
            self.node.restore(records)
        # Records are written on the committer's thread while the node goes on.
        self.node.async_persist = group_commit
        self.faults = FaultSettings()  # replaced (never mutated) by each control command
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # protocol messages sent, by kind
        self.sent_bytes: Counter[str] = Counter()
        self._rng = random.Random()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")
        self._last_role: tuple[str, int] | None = None
        self._drain_scheduled = False
        self._flush_scheduled = False
        self._stop = asyncio.Event()
        self._from = topics.peer_prefix(options.cluster, options.node_id)
        self._requests = topics.request_prefix(options.cluster, options.node_id)
        self._control = topics.control(options.cluster, options.node_id)
        self._reply_to: OrderedDict[str, str] = OrderedDict()  # client id -> connection
        # Takes the replies of clients living in this process (True: taken, not published).
        self.local_replies: Callable[[ClientReply], bool] | None = None
        self.client = client_factory(
            options.library, options.broker,
            f"{options.cluster}-{options.node_id}-{uuid.uuid4().hex[:8]}", self.on_message,
            identity=node_identity(options))
        log.info("%s %s starting (pid %d): %d records restored from %s, peers %s, broker %s "
                 "via %s", options.algorithm, options.node_id, os.getpid(), len(records),
                 options.wal_path, ",".join(options.peers), options.broker, options.library)

    def now(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        await self.client.connect()
        await self.client.subscribe(self._from + "+", self._requests + "+", self._control)
        self.drain()
        tasks = [asyncio.create_task(self._publish_status_forever())]
        if self.opts.bench_load:
            from consensus.bench.inprocess import serve

            tasks.append(asyncio.create_task(serve(self)))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            if self._timer:
                self._timer.cancel()
            await self.committer.flush()
            self.committer.close()
            await self.client.close()
            self.storage.close()
            log.info("%s stopped", self.opts.node_id)

    def stop(self) -> None:
        self._stop.set()

    def _write_failed(self, exc: BaseException) -> None:
        self.rejected["wal-write-failed"] += 1
        self.stop()

    # -- inbound -------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self._control:
            self.handle_control(payload)
            return
        self.counts["in"] += 1
        try:
            msg = self.check_inbound(topic, payload)
        except DecodeError as exc:
            self.reject(exc.reason, exc.detail)
            return
        f = self.faults
        if msg.src in f.drop_from or (f.loss and self._rng.random() < f.loss):
            self.counts["dropped"] += 1
            return
        if f.delay_ms > 0:
            asyncio.get_running_loop().call_later(f.delay_ms / 1000, self.deliver, msg)
        else:
            self.deliver(msg)

    def check_inbound(self, topic: str, payload: bytes) -> Message:
        """Decode one message and check it against its topic; raise DecodeError if refused.

        On a peer topic the sender in the topic (on an authenticated broker, the publisher's
        own user name) must be the message's claimed sender, and the message must be of this
        incarnation; on the request topic only a client request is taken, and the
        connection it came from is remembered as where its replies go.
        """
        opts = self.opts
        if topic.startswith(self._from):
            msg = decode_message(payload, cluster=opts.cluster, members=opts.peers,
                                 incarnation=opts.incarnation)
            sender = topic[len(self._from):]
            if isinstance(msg, ClientRequest):
                raise DecodeError("wrong-topic", f"a client request on peer topic {topic}")
            if msg.src != sender:
                raise DecodeError("sender-mismatch",
                                  f"{msg.kind} claims to be from {msg.src!r}, published as "
                                  f"{sender!r}")
        elif topic.startswith(self._requests):
            msg = decode_message(payload, cluster=opts.cluster, members=opts.peers)
            if not isinstance(msg, ClientRequest):
                raise DecodeError("wrong-topic", f"{msg.kind} on client topic {topic}")
            routes = self._reply_to
            routes[msg.src] = topic[len(self._requests):]
            routes.move_to_end(msg.src)
            if len(routes) > REPLY_ROUTES:
                routes.popitem(last=False)
        else:
            raise DecodeError("misrouted", f"unexpected topic {topic}")
        if msg.dst != opts.node_id:
            raise DecodeError("misrouted", f"addressed to {msg.dst!r}")
        return msg

    def reject(self, reason: str, detail: str) -> None:
        if not self.rejected[reason]:
            log.warning("dropping malformed input (%s): %s -- further ones of this kind are "
                        "only counted", reason, detail)
        self.rejected[reason] += 1

    def deliver(self, msg: Message) -> None:
        self.node.tick(self.now())
        try:
            self.node.step(msg)
        except Exception:  # a bug must not take the node down silently, nor loop forever
            log.exception("error handling %s from %s", msg.kind, msg.src)
            self.rejected["handler-error"] += 1
        if self.group_commit:
            self._drain_soon()
        else:
            self.drain()

    def _drain_soon(self) -> None:
        """Group commit: drain once after every message already received has been stepped.

        The MQTT client hands over every message it has buffered before the event loop runs
        the next callback, so a burst of requests and acknowledgements is stepped as one
        batch and persisted with one fsync. Nothing is sent before that drain, and the drain
        persists the whole batch's records before any of its messages or replies leave, so
        the rule "durable before the messages that depend on it" holds for the batch.
        """
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain_now)

    def _drain_now(self) -> None:
        self._drain_scheduled = False
        self.drain()

    def on_timer(self) -> None:
        self._timer, self._timer_due = None, float("inf")
        self.node.tick(self.now())
        self.drain()

    def handle_control(self, payload: bytes) -> None:
        """Apply one :class:`Control`; anything the codec refuses is counted as bad-control."""
        try:
            cmd = decode(Control, payload)
        except DecodeError as exc:
            self.reject("bad-control", str(exc))
            return
        if cmd.op is ControlOp.CAMPAIGN:
            self.node.tick(self.now())
            self.node.campaign()
            self.drain()
        else:
            self.faults = self.faults.apply(cmd)
        log.info("control: %s -> %s", cmd.op.value, self.faults)

    # -- outbound ------------------------------------------------------------------------

    def drain(self) -> None:
        """Persist, then send, then answer clients (the order that makes promises binding).

        The records go to the group committer; the messages and replies leave once they (and
        everything persisted before them) are durable: see :mod:`consensus.group_commit`.
        """
        ready = self.node.ready()
        if ready.early:
            self.publish_messages(ready.early)  # the leader's log, in parallel with replication
        if ready.persist or ready.messages or ready.replies:
            # A leader writes on the committer's thread while its replication is under way
            # and client requests keep arriving; anyone else (a follower's acknowledgements
            # need its write first anyway) writes here, saving two thread wake-ups.
            self.committer.submit(ready.persist, ready, background=bool(ready.early))
        self.counts["applied"] += len(ready.applied)
        self._log_role_change()
        self._arm_timer()

    def release(self, ready: Ready) -> None:
        """A drain's records are durable: tell the node, then send what waited for them."""
        if self.node.async_persist:
            self.node.persisted(ready.seq)
            if self.node.has_output():
                self._drain_soon()  # e.g. our own copy completed a majority: commit, reply
        self.publish_messages(ready.messages, ready.replies)

    def publish_messages(self, messages: list[Message],
                         replies: Sequence[ClientReply] = ()) -> None:
        if not messages and not replies:
            return
        cluster = self.opts.cluster
        publish = self.client.publish
        # gmqtt: everything published in one turn of the event loop (every drain and release
        # in it) leaves in one socket write, at the end of the turn; driven by hand, per call.
        cork = getattr(self.client, "cork", None)
        if cork is not None and self.group_commit:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                cork()
                asyncio.get_running_loop().call_soon(self._flush_out)
            cork = None
        elif cork is not None and (len(messages) + len(replies)) > 1:
            cork()
        drop_to = self.faults.drop_to
        sent, sent_bytes, counts = self.sent, self.sent_bytes, self.counts
        me, incarnation = self.opts.node_id, self.opts.incarnation
        for msg in messages:
            if msg.dst in drop_to:
                counts["dropped"] += 1
                continue
            payload = encode_message(msg, cluster, incarnation)
            publish(topics.peer(cluster, msg.dst, me), payload)
            kind = traffic_kind(msg)
            sent[kind] += 1
            sent_bytes[kind] += len(payload)
            counts["out"] += 1
        local = self.local_replies
        for reply in replies:
            if local is not None and local(reply):
                continue
            conn = self._reply_to.get(reply.dst)
            if conn is None:  # its request came before a restart, or the route was evicted
                counts["reply-unroutable"] += 1
                continue
            publish(topics.client(cluster, conn), encode_message(reply, cluster))
        if cork is not None:
            self.client.flush()  # type: ignore[attr-defined]

    def _flush_out(self) -> None:
        self._flush_scheduled = False
        self.client.flush()  # type: ignore[attr-defined]

    def _arm_timer(self) -> None:
        due = self.node.next_deadline()
        if due >= self._timer_due:
            return
        if self._timer:
            self._timer.cancel()
        self._timer_due = due
        if due != float("inf"):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self._t0 + due / 1000.0, self.on_timer)

    def _log_role_change(self) -> None:
        key = self.node.role_term()
        if key != self._last_role:
            self._last_role = key
            st = self.node.status()
            log.info("now %s in term %d (leader %s, commit %d)", st.role, st.term, st.leader,
                     st.commit_index)
            # Published at once, so watchers see even a brief candidacy.
            self.publish_status()

    # -- status --------------------------------------------------------------------------

    def status_report(self) -> StatusReport:
        """The core's status plus this process's counters and fault hooks."""
        st: Status = self.node.status()
        deadline = st.election_deadline_ms
        return StatusReport(
            id=st.id, algorithm=st.algorithm, role=st.role, term=st.term, ballot=st.ballot,
            leader=st.leader, commit_index=st.commit_index, last_index=st.last_index,
            applied_index=st.applied_index,
            election_timeout_in_ms=(None if deadline is None or deadline == float("inf")
                                    else max(0.0, deadline - self.now())),
            pid=os.getpid(), cluster=self.opts.cluster, library=self.opts.library,
            broker=self.opts.broker, fsync=self.opts.fsync, messages_in=self.counts["in"],
            messages_out=self.counts["out"], wal_fsyncs=self.committer.writes,
            wal_fsynced_records=self.committer.records, dropped=self.counts["dropped"],
            rejected=dict(self.rejected), sent_by_kind=dict(self.sent),
            bytes_by_kind=dict(self.sent_bytes), faults=self.faults, time=time.time())

    def publish_status(self) -> None:
        self.client.publish(topics.status(self.opts.cluster, self.opts.node_id),
                            encode(self.status_report()))

    async def _publish_status_forever(self) -> None:
        while True:
            self.publish_status()
            await asyncio.sleep(self.opts.status_interval_ms / 1000)


class _NodeContext(logging.Filter):
    """Stamps every log line with the node's id, term (or ballot) and role."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id
        self.runtime: NodeRuntime | None = None  # set once the node exists

    def filter(self, record: logging.LogRecord) -> bool:
        if self.runtime is None:
            record.context = self.node_id
        else:
            st = self.runtime.node.status()
            record.context = f"{st.id} [{st.ballot or f'term {st.term}'} {st.role}]"
        return True


def node_identity(options: NodeOptions) -> Identity | None:
    """The node's credentials file and/or certificate folder as one :class:`Identity`."""
    if options.credentials is not None:
        identity = Identity.load(options.credentials, options.tls_dir)
    elif options.tls_dir is not None:
        identity = Identity.from_certificate(options.tls_dir, options.node_id)
    else:
        return None
    if identity.username != options.node_id:
        raise AuthError(f"the credentials given to node {options.node_id} belong to "
                        f"user {identity.username!r}")
    return identity


def run_node(options: NodeOptions, node_class: type[Node] | None = None) -> None:
    """Run one node until SIGTERM/SIGINT (the ``consensus-lab node`` command)."""
    context = _NodeContext(options.node_id)
    handler = logging.StreamHandler()
    handler.addFilter(context)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(context)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    runtime = NodeRuntime(options, node_class=node_class, group_commit=True)
    context.runtime = runtime
    asyncio.run(runtime.run())


__all__ = ["MAX_PAYLOAD", "NodeOptions", "NodeRuntime", "run_node"]
