"""A load generator process: requests over the bus, open loop, many clients.

``python -m consensus.bench.loadgen --broker URL --cluster C --name g1 --connections 4
--ids 64`` connects ``connections`` MQTT clients; each owns ``ids`` logical client ids (a
node's dedup table allows one outstanding seq per client id, so concurrency comes from many
ids). It then reads one JSON command per line on stdin::

    {"rate": 2000, "duration": 3.0, "start_at": <time.time()>, "target": "n1", "grace": 1.0}

and answers one JSON line on stdout: how many operations were scheduled and two latencies of
each acknowledged one. Arrivals are scheduled at a fixed rate (open loop). ``latencies_ms``
run from an operation's *scheduled* time, so a generator that falls behind, or runs out of
free client ids, shows up as latency rather than hiding it (no coordinated omission): the
"acknowledged within 1 s" criterion uses these. ``service_ms`` run from the request's first
publish to its reply: what the p50/p99 columns show, without the generator's own wake-up
lag (asyncio timers fire up to ~1 ms late). Where a redirected or unanswered request goes next
is :class:`~consensus.retry.Retrier`'s choice, as for every client: a redirect naming a live
leader is followed after 5 ms, one naming nobody after a jittered backoff; an operation
unanswered for 1 s is resent, same seq and command, to the next node.

Each connection publishes requests on its own request topic and reads replies on its own
reply topic (``topics.request`` / ``topics.client`` keyed by its MQTT client id, as the
broker's ACL requires); the ``dst`` of a reply names the logical client. ``--credentials``
(a 0600 JSON file, as ``cluster up`` writes for the ``client`` user) authenticates them.

It speaks the batching client protocol like every client: the requests a connection issues
in one burst leave as one ClientBatch (:class:`~consensus.client_batch.RequestBatcher`), and
a leader's ClientReplies batch answers many of them in one message.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from collections import deque
from dataclasses import dataclass

import orjson

from consensus.auth import Identity
from consensus.client_batch import RequestBatcher
from consensus.codec import DecodeError, decode_client_replies
from consensus.messages import ClientReply, ClientRequest, ReplyStatus
from consensus.retry import Retrier
from consensus.transport import topics
from consensus.transport.mqtt import make_client

RESEND_AFTER_S = 1.0


@dataclass(slots=True)
class _Op:
    scheduled: float
    seq: int
    client_id: str
    conn: int
    sent: float  # last (re)send
    target: str
    first_sent: float = 0.0
    command: str = ""  # the same text on every resend: exactly-once needs (client, seq, command)
    retries: int = 0


@dataclass(slots=True)
class OpenLoop:
    """An open-loop step's schedule: request ``i`` is due at ``t0 + i / rate``, whether or not
    earlier ones were answered (what a load generator offers does not wait for the cluster).
    Shared by the bus generators and the in-process one, so both offer the same load."""

    t0: float
    rate: float
    total: int
    issued: int = 0

    def release(self, now: float, backlog: deque[float]) -> None:
        """Append to ``backlog`` the scheduled times of the requests due by ``now``."""
        due = min(self.total, int((now - self.t0) * self.rate) + 1)
        while self.issued < due:
            backlog.append(self.t0 + self.issued / self.rate)
            self.issued += 1

    @property
    def all_issued(self) -> bool:
        return self.issued >= self.total


class LoadGen:
    def __init__(self, broker: str, cluster: str, name: str, connections: int, ids: int,
                 nodes: list[str], library: str = "gmqtt",
                 identity: Identity | None = None) -> None:
        self.broker, self.cluster, self.name = broker, cluster, name
        self.nodes = nodes
        self.ids = {c: [f"{name}c{c}k{i}" for i in range(ids)] for c in range(connections)}
        self.free: deque[tuple[int, str]] = deque(
            (c, cid) for i in range(ids) for c in range(connections) for cid in [self.ids[c][i]])
        self.seqs: dict[str, int] = {}
        self.outstanding: dict[str, _Op] = {}  # client id -> its one outstanding op
        # (scheduled, ms from the scheduled time, ms from the first publish)
        self.latencies: list[tuple[float, float, float]] = []
        self.target = nodes[0]
        # Target choice (redirect hints, the next node after a silent one, backoff when no
        # leader is known) is the shared client policy's; the hot path stays here.
        self.retry = Retrier(nodes, random.Random(name))
        self.conns = [f"{cluster}-{name}-{c}" for c in range(connections)]
        self.clients = [make_client(library, broker, conn, self._on_replies, identity)
                        for conn in self.conns]
        self.batchers = [RequestBatcher(cluster, conn, client.publish)
                         for conn, client in zip(self.conns, self.clients, strict=True)]
        self.redirects = 0
        self.resends = 0
        self.counter = itertools.count()

    async def connect(self) -> None:
        for c, client in enumerate(self.clients):
            await client.connect()
            await client.subscribe(topics.client(self.cluster, self.conns[c]))

    def _send(self, op: _Op) -> None:
        self.batchers[op.conn].send(ClientRequest(src=op.client_id, dst=op.target, seq=op.seq,
                                                  command=op.command))

    def _issue(self, scheduled: float) -> bool:
        if not self.free:
            return False
        conn, cid = self.free.popleft()
        seq = self.seqs.get(cid, 0) + 1
        self.seqs[cid] = seq
        now = time.perf_counter()
        n = next(self.counter)
        op = _Op(scheduled, seq, cid, conn, now, self.target, now, f"SET k{n % 100} = {n}")
        self.outstanding[cid] = op
        self._send(op)
        return True

    def _on_replies(self, _topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            batch, _ = decode_client_replies(payload, cluster=self.cluster)
        except DecodeError:
            return
        for reply in batch.replies:
            self._on_reply(reply, now)

    def _on_reply(self, reply: ClientReply, now: float) -> None:
        cid = reply.dst
        op = self.outstanding.get(cid)
        if op is None or op.seq != reply.seq:
            return
        if reply.status is ReplyStatus.REDIRECT:
            self.redirects += 1
            leader = reply.leader if reply.leader in self.nodes else None
            self.target, back_off = self.retry.on_redirect(now * 1000, reply.src, leader)
            op.retries += 1
            op.target, op.sent = self.target, now
            delay = self.retry.backoff(op.retries) / 1000 if back_off else 0.005
            asyncio.get_running_loop().call_later(delay, self._send, op)
            return
        if self.retry.leader_hint != reply.src:
            self.retry.leader_hint = reply.src
        del self.outstanding[cid]
        self.free.append((op.conn, cid))
        self.latencies.append((op.scheduled, (now - op.scheduled) * 1000,
                               (now - op.first_sent) * 1000))

    async def run(self, rate: float, duration: float, start_at: float, target: str,
                  grace: float) -> dict[str, object]:
        if target in self.nodes:
            self.target = self.retry.leader_hint = target
        self.latencies = []
        t0 = time.perf_counter() + max(0.0, start_at - time.time())
        t_end = t0 + duration
        total = int(rate * duration)
        schedule = OpenLoop(t0, rate, total)
        backlog: deque[float] = deque()
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        next_resend_scan = t0 + 0.25
        while True:
            now = time.perf_counter()
            schedule.release(now, backlog)
            while backlog and self._issue(backlog[0]):
                backlog.popleft()
            for batcher in self.batchers:
                batcher.flush()  # the burst: one ClientBatch per connection
            if now >= next_resend_scan:
                next_resend_scan = now + 0.25
                for op in self.outstanding.values():
                    if now - op.sent > RESEND_AFTER_S:
                        self.target = self.retry.on_timeout(now * 1000, op.target)
                        op.sent, op.target = now, self.target
                        self.resends += 1
                        self._send(op)
            if schedule.all_issued and (not backlog) and now >= t_end:
                break
            if now > t_end + grace:
                break
            await asyncio.sleep(0.0005)
        # Let the stragglers of this step arrive (they count only if within 1 s anyway).
        while self.outstanding and time.perf_counter() < t_end + grace:
            await asyncio.sleep(0.01)
        mine = [(v, w) for s, v, w in self.latencies if t0 <= s < t_end]
        return {"name": self.name, "offered": total,
                "latencies_ms": [round(v, 3) for v, _ in mine],
                "service_ms": [round(w, 3) for _, w in mine],
                "unanswered": len(self.outstanding) + len(backlog),
                "redirects": self.redirects, "resends": self.resends,
                "seconds": duration}


async def _main(args: argparse.Namespace) -> None:
    identity = None if args.credentials is None else Identity.load(args.credentials)
    gen = LoadGen(args.broker, args.cluster, args.name, args.connections, args.ids,
                  args.nodes.split(","), args.library, identity)
    await gen.connect()
    loop = asyncio.get_running_loop()
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = orjson.loads(line)
        if cmd.get("stop"):
            break
        out = await gen.run(cmd["rate"], cmd["duration"], cmd["start_at"], cmd["target"],
                            cmd.get("grace", 1.0))
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        sys.stdout.flush()
    for client in gen.clients:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m consensus.bench.loadgen")
    p.add_argument("--broker", required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--nodes", required=True, help="n1,n2,n3")
    p.add_argument("--name", default="g1")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--ids", type=int, default=64, help="client ids per connection")
    p.add_argument("--library", default="gmqtt")
    p.add_argument("--credentials", default=None,
                   help="broker credentials file (JSON, mode 0600); omitted: anonymous")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
