"""Failover on the real bus: kill -9 the leader, time until the first acknowledged write.

One cluster per algorithm (3 node processes, fsync on, default timing: 50 ms heartbeat,
150-300 ms election timeout). Each round: wait for a leader and one acknowledged write, then
SIGKILL the leader; from that instant a client sends one write and retries it as every client
of the package does (:mod:`consensus.retry`: short attempt timeouts, backoff, leader hints from
redirects and from the statuses the cluster watches, the next node when one is known down),
with one ``(client, seq)`` so retries are applied at most once. The time from the kill to its
acknowledgement is the failover time *a real client sees*. The killed node is restarted from
its WAL before the next round.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from consensus.auth import CLIENT_USER
from consensus.bench.search import percentile
from consensus.bench.throughput import ELECTION_TIMEOUT_MS, HEARTBEAT_MS
from consensus.client import ClusterClient
from consensus.experiment.bus import BusCluster, BusOptions
from consensus.messages import ReplyStatus
from consensus.node import Config

STATUS_INTERVAL_MS = 20.0


class _Failover:
    """The rounds on one cluster: the experiment's bus cluster starts, kills and restarts
    the nodes and says who leads (and feeds its statuses to the client)."""

    def __init__(self, algorithm: str, broker: str, nodes: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="consensus-bench-"))
        self.cluster = BusCluster(
            algorithm, tuple(f"n{i}" for i in range(1, nodes + 1)),
            Config(heartbeat_ms=HEARTBEAT_MS, election_timeout_ms=ELECTION_TIMEOUT_MS),
            self.dir, BusOptions(broker, status_interval_ms=STATUS_INTERVAL_MS),
            name=f"fail-{algorithm}-{uuid.uuid4().hex[:6]}")
        self.client_id = f"failover-{uuid.uuid4().hex[:6]}"
        self.seq = 0

    async def write(self, client: ClusterClient) -> float:
        """One write through the shared client; the time it was acknowledged."""
        self.seq += 1
        result = await client.request(f"SET failover = {self.seq}")
        if result.reply.status != ReplyStatus.OK:
            raise RuntimeError(f"write refused: {result.reply}")
        return time.perf_counter()

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
        times: list[float] = []
        try:
            await c.start()
            async with ClusterClient(c.state.broker, c.name, library="gmqtt",
                                     nodes=list(c.ids), client_id=self.client_id,
                                     deadline_s=10.0, watch_status=False,
                                     status_feed=c.status_feed,
                                     identity=c.identity(CLIENT_USER)) as client:
                for i in range(rounds):
                    leader = await self.wait_leader()
                    client.last_leader = leader
                    await self.write(client)
                    await asyncio.sleep(0.3)
                    leader = c.leader() or leader
                    t_kill = time.perf_counter()
                    c.crash(leader)
                    t_ok = await self.write(client)
                    times.append((t_ok - t_kill) * 1000)
                    if log:
                        log(f"  failover {c.algorithm} round {i + 1}: killed {leader}, write "
                            f"acknowledged after {times[-1]:.0f} ms "
                            f"({' -> '.join(client.last_path)})")
                    c.restart(leader)
                    # Let the restarted node rejoin and catch up before the next kill.
                    end = time.monotonic() + 10
                    while leader not in c.statuses() and time.monotonic() < end:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.5)
        finally:
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
