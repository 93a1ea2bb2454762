"""Failover on the real bus: kill -9 the leader, time until the first acknowledged write.

One cluster per algorithm (3 node processes, fsync on, default timing: 50 ms heartbeat,
150-300 ms election timeout). Each round: wait for a leader and one acknowledged write, then
SIGKILL the leader; from that instant a writer sends one request (fixed ``(client, seq)``, so
retries are applied at most once) to every surviving node every 5 ms until one answers
``ok``; the time from the kill to that answer is the failover time. The killed node is
restarted from its WAL before the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from consensus.bench.search import percentile
from consensus.bench.throughput import ELECTION_TIMEOUT_MS, HEARTBEAT_MS
from consensus.codec import DecodeError, decode_message, encode_message
from consensus.experiment.bus import BusCluster, BusOptions
from consensus.messages import ClientReply, ClientRequest, ReplyStatus
from consensus.node import Config
from consensus.transport import topics
from consensus.transport.mqtt import make_client

RESEND_S = 0.005
STATUS_INTERVAL_MS = 20.0


class _Failover:
    """The rounds on one cluster: the experiment's bus cluster starts, kills and restarts
    the nodes and says who leads; a writer of its own sends the timed requests."""

    def __init__(self, algorithm: str, broker: str, nodes: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="consensus-bench-"))
        self.cluster = BusCluster(
            algorithm, tuple(f"n{i}" for i in range(1, nodes + 1)),
            Config(heartbeat_ms=HEARTBEAT_MS, election_timeout_ms=ELECTION_TIMEOUT_MS),
            self.dir, BusOptions(broker, status_interval_ms=STATUS_INTERVAL_MS),
            name=f"fail-{algorithm}-{uuid.uuid4().hex[:6]}")
        self.client_id = f"failover-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.ok: asyncio.Future[float] | None = None

    def _on_reply(self, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            reply = decode_message(payload, cluster=self.cluster.name)
        except DecodeError:
            return
        if (isinstance(reply, ClientReply) and reply.seq == self.seq
                and reply.status == ReplyStatus.OK and self.ok is not None
                and not self.ok.done()):
            self.ok.set_result(now)

    async def write(self, targets: list[str], timeout: float = 10.0) -> float:
        """Send one write to ``targets`` every RESEND_S until acknowledged; the ack time."""
        self.seq += 1
        self.ok = asyncio.get_running_loop().create_future()
        name = self.cluster.name
        payloads = {nid: encode_message(ClientRequest(
            src=self.client_id, dst=nid, seq=self.seq, command=f"SET failover = {self.seq}"),
            cluster=name) for nid in targets}
        end = time.perf_counter() + timeout
        while not self.ok.done() and time.perf_counter() < end:
            for nid, payload in payloads.items():
                self.writer.publish(topics.node_in(name, nid), payload)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.ok), RESEND_S)
        if not self.ok.done():
            raise TimeoutError("no acknowledged write")
        return self.ok.result()

    async def wait_leader(self, timeout: float = 15.0) -> str:
        """A leader, once every live node has published its status."""
        c = self.cluster
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            leader = c.leader()
            if leader and len(c.statuses()) == len(c.ids):
                return leader
            await asyncio.sleep(0.02)
        raise TimeoutError("no leader")

    async def run(self, rounds: int, log: Any = None) -> list[float]:
        c = self.cluster
        self.writer = make_client("gmqtt", c.opts.broker, f"{c.name}-bench", self._on_reply)
        await self.writer.connect()
        await self.writer.subscribe(topics.client(c.name, self.client_id))
        times: list[float] = []
        try:
            await c.start()
            for i in range(rounds):
                leader = await self.wait_leader()
                await self.write([leader])
                await asyncio.sleep(0.3)
                leader = c.leader() or leader
                alive = [n for n in c.ids if n != leader]
                t_kill = time.perf_counter()
                c.crash(leader)
                t_ok = await self.write(alive)
                times.append((t_ok - t_kill) * 1000)
                if log:
                    log(f"  failover {c.algorithm} round {i + 1}: killed {leader}, "
                        f"write acknowledged after {times[-1]:.0f} ms")
                c.restart(leader)
                # Let the restarted node rejoin and catch up before the next kill.
                end = time.monotonic() + 10
                while leader not in c.statuses() and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
        finally:
            await self.writer.close()
            await c.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        return times


def measure_failover(algorithm: str, broker: str, rounds: int = 10, nodes: int = 3,
                     log: Any = None) -> dict[str, Any]:
    times = asyncio.run(_Failover(algorithm, broker, nodes).run(rounds, log))
    ordered = sorted(times)
    return {"algorithm": algorithm, "nodes": nodes, "rounds": len(times),
            "p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1] if ordered else None,
            "times_ms": [round(t, 1) for t in times],
            "election_timeout_ms": list(ELECTION_TIMEOUT_MS), "heartbeat_ms": HEARTBEAT_MS}
