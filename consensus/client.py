"""A client of a running cluster over MQTT: `consensus-lab client 'SET x = 100'`.

It learns the members and the leader from the nodes' status topic (each status a
:class:`~consensus.telemetry.StatusReport`, the leader :func:`~consensus.telemetry.leader_of`
them), sends the command to the leader, and retries as :mod:`consensus.retry` decides (short
attempt timeouts, jittered backoff, redirects and status as leader hints, the next node when
one is known down) with the *same* ``(client_id, seq)`` -- so a retried write is applied once.
When no node answers within the overall deadline (no majority reachable, or no cluster at
all), it says so clearly.

Requests leave through a :class:`ClientConnection`, which batches what its clients send in
one turn of the event loop (:mod:`consensus.client_batch`) and hands each reply in a reply
batch to the client it names. A client makes a connection of its own, or many clients share
one (``connection=``): the experiment runner's workload clients do, so their requests and
the leader's replies travel in batches while each keeps its own id, seq and latency.

An operator's membership change (:meth:`ClusterClient.change`, ``cluster add/remove/...``)
goes the same way as a :class:`~consensus.messages.ConfigChange` on the membership topic
(only the ``control`` user may publish there), with one more retry: a leader busy with
another change answers ERROR "busy", and the change is asked again, under a new seq, after a
back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus.auth import Identity
from consensus.client_batch import RequestBatcher
from consensus.codec import DecodeError, decode, decode_client_replies, encode_message
from consensus.membership import BUSY
from consensus.messages import ClientReply, ClientRequest, ConfigChange, NodeId, ReplyStatus
from consensus.retry import Retrier, RetryPolicy
from consensus.telemetry import StatusReport, leader_of
from consensus.transport import topics
from consensus.transport.mqtt import DEFAULT_LIBRARY, MqttClient, make_client

log = logging.getLogger("consensus.client")

# What a caller that watches the status topic itself can feed a client: (age in ms, status).
StatusFeed = Callable[[], Iterable[tuple[float, StatusReport]]]
# A change completes only when the new member has caught up and the configuration is
# committed: an attempt waits seconds, not the milliseconds a command takes.
CHANGE_POLICY = RetryPolicy(min_attempt_ms=2000.0, max_attempt_ms=5000.0,
                            backoff_base_ms=100.0, backoff_max_ms=1000.0)



class ClusterUnavailable(RuntimeError):
    """No answer within the deadline: no majority reachable, or no such cluster."""


@dataclass(slots=True)
class ClientResult:
    command: str
    reply: ClientReply
    attempts: int
    latency_ms: float
    path: list[NodeId] = field(default_factory=list)  # nodes tried, in order


class ClientConnection:
    """One MQTT connection that any number of clients send through, as batches; replies are
    handed to the client each names (its ``dst``). Use as ``async with``.

    ``conn`` is the MQTT client id, which the broker's ACL ties to the request and reply
    topics; with ``watch_status`` the connection also reads the nodes' status topic and
    hands each status payload to ``on_status``.
    """

    def __init__(self, broker: str, cluster: str, *, library: str = DEFAULT_LIBRARY,
                 conn: str | None = None, identity: Identity | None = None,
                 watch_status: bool = False,
                 on_status: Callable[[str, bytes], None] | None = None) -> None:
        self.cluster = topics.check_name("cluster", cluster)
        self.conn = conn or f"{cluster}-cli-{uuid.uuid4().hex[:12]}"
        if any(c in self.conn for c in "/+#"):
            raise ValueError(f"connection id {self.conn!r} must be one topic segment")
        self.watch_status = watch_status
        self.on_status = on_status
        self.rejected: Counter[str] = Counter()  # reply payloads or items refused, by reason
        self._clients: dict[str, Callable[[ClientReply], None]] = {}
        self._mqtt: MqttClient = make_client(library, broker, self.conn, self._on_message,
                                             identity)
        self.batcher = RequestBatcher(self.cluster, self.conn, self._mqtt.publish)

    async def __aenter__(self) -> ClientConnection:
        await self._mqtt.connect()
        wanted = [topics.client(self.cluster, self.conn)]
        if self.watch_status:
            wanted.append(topics.status(self.cluster))
        await self._mqtt.subscribe(*wanted)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.batcher.flush()
        await self._mqtt.close()

    def attach(self, client_id: str, on_reply: Callable[[ClientReply], None]) -> None:
        """Hand replies addressed to ``client_id`` to ``on_reply``."""
        if client_id in self._clients:
            raise ValueError(f"client id {client_id!r} is already on connection {self.conn}")
        self._clients[client_id] = on_reply

    def detach(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    def send(self, request: ClientRequest) -> None:
        """Queue ``request``; it leaves at the end of this turn of the event loop, batched
        with whatever else this connection's clients send in the same turn."""
        self.batcher.send(request)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish one payload at once, outside the batches (a membership change goes on
        its own topic)."""
        self._mqtt.publish(topic, payload)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/status"):
            if self.on_status is not None:
                self.on_status(topic, payload)
            return
        try:
            batch, bad = decode_client_replies(payload, cluster=self.cluster)
        except DecodeError as exc:
            self.rejected[exc.reason] += 1
            return
        for exc in bad:
            self.rejected[exc.reason] += 1
        clients = self._clients
        for reply in batch.replies:
            on_reply = clients.get(reply.dst)
            if on_reply is not None:
                on_reply(reply)


class ClusterClient:
    """Send commands to a cluster; use as ``async with ClusterClient(...) as c``.

    It sends through a connection of its own, or through ``connection`` shared with other
    clients (then opened and closed by the caller, and ``library``, ``identity`` and
    ``watch_status`` are the connection's business)."""

    def __init__(self, broker: str, cluster: str, *, library: str = DEFAULT_LIBRARY,
                 nodes: list[NodeId] | None = None, client_id: str | None = None,
                 deadline_s: float = 10.0, watch_status: bool = True,
                 policy: RetryPolicy | None = None,
                 status_feed: StatusFeed | None = None,
                 identity: Identity | None = None,
                 connection: ClientConnection | None = None) -> None:
        self.cluster = topics.check_name("cluster", cluster)
        self.id = topics.check_name("client", client_id or f"cli-{uuid.uuid4().hex[:12]}")
        self.nodes: list[NodeId] = sorted(nodes or [])
        self.statuses: dict[NodeId, StatusReport] = {}  # the latest one from each node
        self.rejected: Counter[str] = Counter()  # status payloads refused, by reason
        self.deadline_s = deadline_s  # overall, per command
        self.seq = 0
        self.last_path: list[NodeId] = []  # the nodes the last request tried, in order
        self.retry = Retrier(self.nodes, random.Random(), policy)
        # Without the status topic (``watch_status=False``: load generators that know the
        # members) a caller may feed statuses it watches itself, as (age in ms, status).
        self.watch_status = watch_status
        self.status_feed = status_feed
        self._replies: asyncio.Queue[ClientReply] = asyncio.Queue()
        self._status_seen = asyncio.Event()
        # Replies come to the connection's topic (the broker lets only it read there).
        self._owns_connection = connection is None
        self.connection = connection or ClientConnection(
            broker, cluster, library=library, conn=f"{cluster}-{self.id}", identity=identity,
            watch_status=watch_status, on_status=self._on_status)
        self.conn = self.connection.conn

    async def __aenter__(self) -> ClusterClient:
        if self._owns_connection:
            await self.connection.__aenter__()
        self.connection.attach(self.id, self._replies.put_nowait)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.connection.detach(self.id)
        if self._owns_connection:
            await self.connection.__aexit__(*exc)

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            st = decode(StatusReport, payload)
            if st.cluster != self.cluster or topic != topics.status(self.cluster, st.id):
                raise DecodeError("misrouted", f"status of {st.id!r} in {st.cluster!r} on "
                                  f"{topic}")
        except DecodeError as exc:
            if not self.rejected[exc.reason]:
                log.warning("ignoring a malformed status (%s) -- further ones of this kind "
                            "are only counted", exc)
            self.rejected[exc.reason] += 1
            return
        self.statuses[st.id] = st
        self.retry.observe_status(_now_ms(), st.id, st.role, st.term, st.leader)
        if st.id not in self.nodes:
            self.nodes = sorted({*self.nodes, st.id})
        self._status_seen.set()

    async def discover(self, wait_s: float = 1.5) -> list[NodeId]:
        """Wait until some node's status was seen (or ``wait_s`` passed); return members."""
        if not self.nodes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_seen.wait(), wait_s)
        return self.nodes

    @property
    def last_leader(self) -> NodeId | None:
        """The node the retry policy would try first (the last that answered, or a hint)."""
        return self.retry.leader_hint

    @last_leader.setter
    def last_leader(self, nid: NodeId | None) -> None:
        self.retry.leader_hint = nid

    def leader_guess(self) -> NodeId | None:
        """The leader by the statuses seen, else the leader some node names, else None."""
        leader = leader_of(self.statuses)
        if leader is not None:
            return leader
        hinted = [st.leader for st in self.statuses.values() if st.leader]
        return hinted[0] if hinted else None

    async def request(self, command: str, *, again: bool = False) -> ClientResult:
        """Run one command to completion; raise :class:`ClusterUnavailable` on the deadline.

        Where to send, how long to wait per attempt and between attempts is
        :class:`~consensus.retry.Retrier`'s decision, as for the simulator's clients; every
        attempt carries the same ``(client, seq)`` and command; ``again`` sends the previous
        command's seq once more (its deadline passed, the caller still wants an answer).
        """
        def ask(target: NodeId, seq: int) -> None:
            self.connection.send(ClientRequest(src=self.id, dst=target, seq=seq,
                                               command=command))

        return await self._call(command, ask, again=again)

    async def change(self, change: str, *, again: bool = False) -> ClientResult:
        """Ask the leader for one membership change (``add n4``, ``remove n2``, ``replace n2
        n7``, ``transfer n3``) and wait until it is complete: the reply is OK with the
        configuration reached, or ERROR with why it cannot be made. Redirects and timeouts
        retry with the same seq; a "busy" leader is asked again under a new seq. Only a
        connection of the ``control`` user may send one (the broker refuses anyone else's)."""
        def ask(target: NodeId, seq: int) -> None:
            msg = ConfigChange(src=self.id, dst=target, seq=seq, change=change)
            self.connection.publish(topics.config(self.cluster, target, self.conn),
                                    encode_message(msg, self.cluster))

        return await self._call(change, ask, again=again, retry_busy=True)

    async def _call(self, command: str, ask: Callable[[NodeId, int], None], *,
                    again: bool, retry_busy: bool = False) -> ClientResult:
        """The retry loop of :meth:`request` and :meth:`change`: ``ask(target, seq)`` sends
        one attempt."""
        await self.discover()
        if not self.nodes:
            raise ClusterUnavailable(f"no node of cluster {self.cluster!r} is publishing its "
                                     f"status on this broker (is the cluster up?)")
        retry = self.retry
        retry.add_nodes(self.nodes)
        if not again:
            self.seq += 1
        seq = self.seq
        started = time.monotonic()
        deadline = started + self.deadline_s
        self._refresh()
        target = retry.first_target(_now_ms())
        path: list[NodeId] = []
        self.last_path = path
        retries = 0
        last_error = "no attempt fitted in the deadline"
        while (left := deadline - time.monotonic()) > 0:
            path.append(target)
            sent = time.monotonic()
            ask(target, seq)
            reply = await self._await_reply(seq, retry.attempt_timeout(left * 1000) / 1000)
            self._refresh()
            if (retry_busy and reply is not None and reply.status == ReplyStatus.ERROR
                    and (reply.result or "").startswith(BUSY)):
                last_error = f"{reply.src} is busy with another change"
                self.seq += 1  # a new request: the busy answer closed this one
                seq = self.seq
                target = reply.src
                retries += 1
                await asyncio.sleep(max(0.0, min(retry.backoff(retries) / 1000,
                                                  deadline - time.monotonic())))
                continue
            if reply is not None and reply.status != ReplyStatus.REDIRECT:
                retry.on_reply_from(reply.src, (time.monotonic() - sent) * 1000)
                return ClientResult(command, reply, len(path),
                                    (time.monotonic() - started) * 1000, path)
            if reply is None:  # no answer in time: the next node, same seq
                last_error = f"{target} did not answer in time"
                target, back_off = retry.on_timeout(_now_ms(), target), True
            else:
                if not reply.leader or reply.leader == reply.src:
                    last_error = f"{reply.src} knew no leader"
                target, back_off = retry.on_redirect(_now_ms(), reply.src, reply.leader)
            if back_off:
                retries += 1
                await asyncio.sleep(max(0.0, min(retry.backoff(retries) / 1000,
                                                  deadline - time.monotonic())))
        # One sentence: what failed, how often over how long, and the last error.
        raise ClusterUnavailable(
            f"no majority answered {command!r}: {len(path)} attempts at "
            f"{', '.join(sorted(set(path))) or 'no node'} over {self.deadline_s:g}s "
            f"(last: {last_error})")

    def _refresh(self) -> None:
        """Feed the retry policy what the status feed (if any) knows now."""
        if self.status_feed is None:
            return
        now = _now_ms()
        for age_ms, st in self.status_feed():
            self.retry.observe_status(now - age_ms, st.id, st.role, st.term, st.leader)

    async def _await_reply(self, seq: int, timeout: float) -> ClientReply | None:
        end = time.monotonic() + max(0.0, timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                reply = await asyncio.wait_for(self._replies.get(), left)
            except TimeoutError:
                return None
            if reply.seq == seq:
                return reply


def _now_ms() -> float:
    return time.monotonic() * 1000
