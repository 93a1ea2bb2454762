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
records with one fsync and sends all their output in one socket write. A leader's
replication messages leave in a write of their own before its WAL append, so the followers'
work overlaps the leader's.

Hostile input (not JSON, unknown type, wrong field types, negative indexes, a sender outside
the cluster, another cluster, too large, misrouted) is dropped before it reaches the node,
logged once per kind and counted in the published status; it never changes the node's state.
So is a protocol message whose claimed sender differs from the sender in its topic
(``sender-mismatch``: on an authenticated broker the topic's sender is the publisher's user
name, vouched for by the ACL), one of another incarnation of the cluster
(``stale-incarnation``), a client request on a peer topic or a protocol message on the
client request topic (``wrong-topic``). Client requests arrive on
``<node>/request/<connection>``, one ClientRequest or a ClientBatch of them per publish; their
replies go back to that connection's reply topic, one publish per connection per drain (a
ClientReplies batch when there are several). A batch is stepped as the requests
it carries, each with its own (client, seq); a bad item in it is dropped and counted
(``bad-item``) while the others go on, a bad envelope drops the whole publish.

Membership changes (:class:`~consensus.messages.ConfigChange`) arrive only on
``<node>/config/<connection>``, which only the ``control`` user may write (the ACL); the
node answers them on that connection's reply topic like a client request, and a
ConfigChange on any other topic, or anything else on that one, is ``wrong-topic``. Which
peers are heard follows the node's configuration (:class:`Senders`): a member added later is
heard at once, a removed one no longer once its removal is committed (after a short grace,
for its last hand-over messages). A node started with ``joining`` (a new member, empty)
hears the members it was told of until it learns its configuration from the leader. A node
that knows it was removed (``node.removed()``) lingers one election timeout, so that its
last messages (a leader's TimeoutNow) go out, then stops on its own.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus.algorithms import get_algorithm
from consensus.auth import AuthError, Identity
from consensus.codec import (
    MAX_PAYLOAD,
    DecodeError,
    decode,
    decode_client_batch,
    decode_message,
    encode,
    encode_client_batch,
    encode_messages,
)
from consensus.group_commit import GroupCommitter
from consensus.long_lived import keep_long_lived_out_of_gc
from consensus.membership import Membership, is_config_text
from consensus.messages import (
    ClientReplies,
    ClientReply,
    ClientRequest,
    ConfigChange,
    Message,
    NodeId,
    traffic_kind,
)
from consensus.node import Applied, Config, Node, Ready, Status
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
    # A new member started empty (``cluster add``): ``peers`` are the members it is told of;
    # it learns its configuration from the leader's log or snapshot.
    joining: bool = False
    # The benchmark's in-process load generator (consensus.bench.inprocess) takes commands
    # on <data_dir>/<id>.load.sock: requests issued inside this process, as PySyncObj's own
    # benchmark issues them. Off outside the benchmark.
    bench_load: bool = False

    def __post_init__(self) -> None:
        topics.check_name("cluster", self.cluster)
        topics.check_name("node", self.node_id)
        for peer in self.peers:
            topics.check_name("node", peer)
        if not self.joining and self.node_id not in self.peers:
            raise ValueError(f"--id {self.node_id!r} must be one of --peers "
                             f"{','.join(self.peers)} (or --joining, for a new member)")
        if self.joining and not set(self.peers) - {self.node_id}:
            raise ValueError("a joining node needs --peers: the members it catches up from")

    @property
    def wal_path(self) -> Path:
        return self.data_dir / f"{self.node_id}.wal"


class Senders:
    """The node ids whose protocol messages a node accepts, following its configuration.

    Members of the configuration it acts on are accepted at once (a learner being added must
    be heard before the change completes). One drops out when it is in neither that
    configuration nor the last one the node applied (committed), and has been out for
    ``grace_ms``: a removed leader's last messages (the commit of its removal, TimeoutNow)
    still arrive, a removed server that keeps running is refused afterwards. While the node
    has no configuration (joining) nobody drops out.
    """

    def __init__(self, initial: Iterable[NodeId], grace_ms: float) -> None:
        self.accepted: set[NodeId] = set(initial)
        self.grace_ms = grace_ms
        self.committed: frozenset[NodeId] | None = None  # the last applied configuration's
        self._out_since: dict[NodeId, float] = {}
        self._seen: Membership | None = None  # the configuration of the last update

    def __contains__(self, nid: object) -> bool:
        return nid in self.accepted

    def update(self, now: float, membership: Membership | None,
               applied: Sequence[Applied] = ()) -> None:
        applied_config = False
        for entry in applied:
            if entry.command is not None and is_config_text(entry.command.text):
                self.committed = Membership.from_text(entry.command.text).members
                applied_config = True
        if membership is None:
            return
        # Called on every drain: nothing to do unless something changed or a grace runs.
        if membership is self._seen and not applied_config and not self._out_since:
            return
        self._seen = membership
        current = membership.members
        self.accepted |= current
        for nid in current:
            self._out_since.pop(nid, None)
        for nid in sorted(self.accepted - current):
            if self.committed is not None and nid in self.committed:
                self._out_since.pop(nid, None)  # the grace starts once the removal commits
                continue
            since = self._out_since.setdefault(nid, now)
            if now - since >= self.grace_ms:
                self.accepted.discard(nid)
                del self._out_since[nid]
                log.info("%s left the configuration: its messages are refused from now on",
                         nid)


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
        # The writer thread exists to overlap fsyncs with the loop's work; without fsync a
        # write only copies into the page cache, cheaper than the two thread wake-ups.
        self.committer: GroupCommitter[Ready] = GroupCommitter(
            self.storage, self.release, threaded=group_commit and options.fsync,
            on_failure=self._write_failed)
        # Wall-clock randomness is fine here: the runtime is not meant to be replayed.
        # ``joining`` only when set: the benchmark's null protocol has no such parameter.
        extra = {"joining": True} if options.joining else {}
        self.node: Node = node_class(options.node_id, options.peers, options.config,
                                     random.Random(), **extra)
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
        self._pending_replies: dict[str, list[ClientReply]] = {}  # connection -> this burst's
        self._burst_depth = 0
        self._stop = asyncio.Event()
        self._from = topics.peer_prefix(options.cluster, options.node_id)
        self._requests = topics.request_prefix(options.cluster, options.node_id)
        self._control = topics.control(options.cluster, options.node_id)
        self._changes = topics.config_prefix(options.cluster, options.node_id)
        self.senders = Senders((*options.peers, options.node_id),
                               grace_ms=2 * options.config.election_timeout_ms[1])
        self._leaving = False  # set once the node knows it was removed
        # A joining node may install a snapshot taken before it was added, whose configuration
        # does not list it: it only counts as removed once it has been a member.
        self._reply_to: OrderedDict[str, str] = OrderedDict()  # client id -> connection
        # Takes the replies of clients living in this process (True: taken, not published).
        self.local_replies: Callable[[ClientReply], bool] | None = None
        self.client = client_factory(
            options.library, options.broker,
            f"{options.cluster}-{options.node_id}-{uuid.uuid4().hex[:8]}", self.on_message,
            identity=node_identity(options))
        # gmqtt can hold a burst's publishes for one socket write; aiomqtt cannot.
        self._cork: Callable[[], None] | None = getattr(self.client, "cork", None)
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
        await self.client.subscribe(self._from + "+", self._requests + "+", self._control,
                                    self._changes + "+")
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
            if topic.startswith(self._requests):
                msgs: Sequence[Message] = self.check_requests(topic, payload)
            else:
                msgs = (self.check_inbound(topic, payload),)
        except DecodeError as exc:
            self.reject(exc.reason, exc.detail)
            return
        f = self.faults
        if f.drop_from:
            kept = [m for m in msgs if m.src not in f.drop_from]
            self.counts["dropped"] += len(msgs) - len(kept)
            msgs = kept
        if not msgs:
            return
        if f.loss and self._rng.random() < f.loss:  # one publish lost, as on a lossy link
            self.counts["dropped"] += len(msgs)
            return
        if f.delay_ms > 0:
            asyncio.get_running_loop().call_later(f.delay_ms / 1000, self.deliver_all, msgs)
        else:
            self.deliver_all(msgs)

    def check_inbound(self, topic: str, payload: bytes) -> Message:
        """Decode one message from a peer or membership topic; raise DecodeError if refused.

        On a peer topic the sender in the topic (on an authenticated broker, the publisher's
        own user name) must be the message's claimed sender, and the message must be of this
        incarnation; on the membership topic only a ConfigChange is taken, and the connection
        it came from is remembered as where its answer goes. (Client requests come on the
        request topic: :meth:`check_requests`.)
        """
        opts = self.opts
        if topic.startswith(self._from):
            msg = decode_message(payload, cluster=opts.cluster, members=self.senders.accepted,
                                 incarnation=opts.incarnation)
            sender = topic[len(self._from):]
            if isinstance(msg, (ClientRequest, ConfigChange)):
                raise DecodeError("wrong-topic", f"a {msg.kind} on peer topic {topic}")
            if msg.src != sender:
                raise DecodeError("sender-mismatch",
                                  f"{msg.kind} claims to be from {msg.src!r}, published as "
                                  f"{sender!r}")
        elif topic.startswith(self._changes):
            # Only the control user may publish here (the ACL); the operator's id is its own,
            # like a client's, and is not a member.
            msg = decode_message(payload, cluster=opts.cluster)
            if not isinstance(msg, ConfigChange):
                raise DecodeError("wrong-topic", f"{msg.kind} on membership topic {topic}")
            _check_client_id(msg.src)
            self._route_replies(msg.src, topic[len(self._changes):])
        else:
            raise DecodeError("misrouted", f"unexpected topic {topic}")
        if msg.dst != opts.node_id:
            raise DecodeError("misrouted", f"addressed to {msg.dst!r}")
        return msg

    def check_requests(self, topic: str, payload: bytes) -> tuple[ClientRequest, ...]:
        """Decode a publish on the request topic (a ClientRequest or a ClientBatch); raise
        DecodeError if it is refused as a whole, count each bad item and leave it out.

        The connection it came from is remembered as where each client's replies go.
        """
        try:
            batch, bad = decode_client_batch(payload, cluster=self.opts.cluster)
        except DecodeError as exc:
            if exc.reason == "wrong-topic":
                raise DecodeError("wrong-topic", f"{exc.detail}, on client topic {topic}"
                                  ) from None
            raise
        if batch.dst != self.opts.node_id:
            raise DecodeError("misrouted", f"addressed to {batch.dst!r}")
        for exc in bad:
            self.reject(exc.reason, exc.detail)
        conn = topic[len(self._requests):]
        for req in batch.requests:
            self._route_replies(req.src, conn)
        return batch.requests

    def _route_replies(self, client_id: str, conn: str) -> None:
        """Remember that ``client_id``'s replies go to MQTT connection ``conn``."""
        routes = self._reply_to
        routes[client_id] = conn
        routes.move_to_end(client_id)
        if len(routes) > REPLY_ROUTES:
            routes.popitem(last=False)

    def reject(self, reason: str, detail: str) -> None:
        if not self.rejected[reason]:
            log.warning("dropping malformed input (%s): %s -- further ones of this kind are "
                        "only counted", reason, detail)
        self.rejected[reason] += 1

    def deliver(self, msg: Message) -> None:
        self.deliver_all((msg,))

    def deliver_all(self, msgs: Sequence[Message]) -> None:
        """Step messages that arrived together (a client batch: one tick for all of them),
        then drain, or have a drain scheduled (group commit)."""
        node = self.node
        node.tick(self.now())
        for msg in msgs:
            try:
                node.step(msg)
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
        self._open_burst()
        try:
            if ready.early:
                # The leader's log leaves before its own WAL write (they run in parallel:
                # Raft §10.2.1): flushed now, not at the end of the drain, so the followers
                # start while this process is still writing.
                self.publish_messages(ready.early)
                self._flush()
            if ready.persist or ready.messages or ready.replies:
                # A leader writes on the committer's thread while its replication is under
                # way and client requests keep arriving; anyone else (a follower's
                # acknowledgements need its write first anyway) writes here, saving two
                # thread wake-ups.
                self.committer.submit(ready.persist, ready, background=bool(ready.early))
        finally:
            self._close_burst()
        self.counts["applied"] += len(ready.applied)
        self.senders.update(self.now(), getattr(self.node, "membership", None), ready.applied)
        self._log_role_change()
        self._maybe_leave()
        self._arm_timer()

    def _maybe_leave(self) -> None:
        """A node that knows it was removed stops after one election timeout (in which its
        last messages, a leader's hand-over included, go out)."""
        removed = getattr(self.node, "removed", None)  # the null protocol has none
        if self._leaving or removed is None or not removed():
            return
        self._leaving = True
        linger_ms = self.opts.config.election_timeout_ms[1]
        log.info("removed from the configuration (%s): stopping in %.0f ms",
                 self.node.status().config, linger_ms)
        self.publish_status()
        asyncio.get_running_loop().call_later(linger_ms / 1000, self.stop)

    def release(self, ready: Ready) -> None:
        """A drain's records are durable: tell the node, then send what waited for them."""
        self._open_burst()
        try:
            if self.node.async_persist:
                self.node.persisted(ready.seq)
                if self.node.has_output():
                    self._drain_soon()  # e.g. our own copy completed a majority: commit, reply
            self.publish_messages(ready.messages, ready.replies)
        finally:
            self._close_burst()

    # A burst is one drain or one release: its publishes leave in one socket write (gmqtt,
    # corked) and its replies in one ClientReplies per client connection, at its end. Not
    # held for the end of the event-loop turn: that would add the rest of the turn (the WAL
    # write, other callbacks) to every message's latency, for no fewer writes under load,
    # where one drain per turn already gathers everything received.

    def _open_burst(self) -> None:
        self._burst_depth += 1
        if self._burst_depth == 1 and self._cork is not None:
            self._cork()

    def _close_burst(self) -> None:
        self._burst_depth -= 1
        if self._burst_depth == 0:
            self._publish_replies()
            self._flush()

    def _flush(self) -> None:
        """Send what the burst has published so far (and keep corking until it ends)."""
        if self._cork is not None:
            self.client.flush()  # type: ignore[attr-defined]
            if self._burst_depth:
                self._cork()

    def publish_messages(self, messages: list[Message],
                         replies: Sequence[ClientReply] = ()) -> None:
        """Within a burst (a drain or a release): publish protocol messages, and queue the
        replies for the burst's end."""
        cluster = self.opts.cluster
        publish = self.client.publish
        drop_to = self.faults.drop_to
        sent, sent_bytes, counts = self.sent, self.sent_bytes, self.counts
        me, incarnation = self.opts.node_id, self.opts.incarnation
        if drop_to:
            kept = [m for m in messages if m.dst not in drop_to]
            counts["dropped"] += len(messages) - len(kept)
            messages = kept
        # One drain's entries for every follower are serialised once (codec.encode_messages).
        for msg, payload in zip(messages, encode_messages(messages, cluster, incarnation),
                                strict=True):
            publish(topics.peer(cluster, msg.dst, me), payload)
            kind = traffic_kind(msg)
            sent[kind] += 1
            sent_bytes[kind] += len(payload)
            counts["out"] += 1
        pending, routes = self._pending_replies, self._reply_to
        local = self.local_replies
        for reply in replies:
            if local is not None and local(reply):
                continue
            conn = routes.get(reply.dst)
            if conn is None:  # its request came before a restart, or the route was evicted
                counts["reply-unroutable"] += 1
                continue
            group = pending.get(conn)
            if group is None:
                pending[conn] = [reply]
            else:
                group.append(reply)

    def _publish_replies(self) -> None:
        """One publish per client connection for the replies gathered (split only if a batch
        would exceed MAX_PAYLOAD)."""
        if not self._pending_replies:
            return
        pending, self._pending_replies = self._pending_replies, {}
        cluster, me, publish = self.opts.cluster, self.opts.node_id, self.client.publish
        for conn, group in pending.items():
            try:
                payloads = encode_client_batch(ClientReplies(me, tuple(group)), cluster)
            except ValueError as exc:
                self.reject("reply-too-large", str(exc))
                continue
            topic = topics.client(cluster, conn)
            for payload in payloads:
                publish(topic, payload)

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
            bytes_by_kind=dict(self.sent_bytes), faults=self.faults, time=time.time(),
            config=st.config, snapshot_index=st.snapshot_index, removed=self._leaving)

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


def _check_client_id(client_id: str) -> None:
    """A client's or operator's id (not a member: it only has to be sensible)."""
    if not client_id or len(client_id) > 128:
        raise DecodeError("bad-field", "client id must be 1..128 characters")


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
    keep_long_lived_out_of_gc()  # the log's objects out of the collector's full scans
    asyncio.run(runtime.run())


__all__ = ["MAX_PAYLOAD", "NodeOptions", "NodeRuntime", "run_node"]
