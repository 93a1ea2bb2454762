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
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from consensus.bench.search import percentile
from consensus.bench.throughput import ELECTION_TIMEOUT_MS, HEARTBEAT_MS
from consensus.cluster import ClusterState, spawn_node, stop_process
from consensus.transport import topics
from consensus.transport.mqtt import make_client

RESEND_S = 0.005


class _Failover:
    def __init__(self, algorithm: str, broker: str, nodes: int) -> None:
        self.ids = [f"n{i}" for i in range(1, nodes + 1)]
        self.name = f"fail-{algorithm}-{uuid.uuid4().hex[:6]}"
        self.dir = Path(tempfile.mkdtemp(prefix="consensus-bench-"))
        self.state = ClusterState(self.name, algorithm, dict.fromkeys(self.ids, 0), broker, None,
                                  "external", "gmqtt", True, HEARTBEAT_MS, ELECTION_TIMEOUT_MS,
                                  str(self.dir))
        self.statuses: dict[str, dict[str, Any]] = {}
        self.client_id = f"failover-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.ok: asyncio.Future[float] | None = None
        self.dead: set[str] = set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            d = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if topic.endswith("/status"):
            if d.get("id") not in self.dead:
                self.statuses[d["id"]] = d
            return
        if (d.get("seq") == self.seq and d.get("status") == "ok" and self.ok is not None
                and not self.ok.done()):
            self.ok.set_result(now)

    def leader(self) -> str | None:
        live = [(st.get("term", 0), n) for n, st in self.statuses.items()
                if st.get("role") == "leader" and n not in self.dead]
        return max(live)[1] if live else None

    async def write(self, targets: list[str], timeout: float = 10.0) -> float:
        """Send one write to ``targets`` every RESEND_S until acknowledged; the ack time."""
        self.seq += 1
        self.ok = asyncio.get_running_loop().create_future()
        payload = {"type": "ClientRequest", "cluster": self.name, "src": self.client_id,
                   "seq": self.seq, "command": f"SET failover = {self.seq}"}
        end = time.perf_counter() + timeout
        while not self.ok.done() and time.perf_counter() < end:
            for nid in targets:
                self.mqtt.publish(topics.node_in(self.name, nid),
                                  orjson.dumps({**payload, "dst": nid}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.ok), RESEND_S)
        if not self.ok.done():
            raise TimeoutError("no acknowledged write")
        return self.ok.result()

    async def wait_leader(self, timeout: float = 15.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            leader = self.leader()
            if leader and len(self.statuses) == len(self.ids):
                return leader
            await asyncio.sleep(0.02)
        raise TimeoutError("no leader")

    async def run(self, rounds: int, log: Any = None) -> list[float]:
        self.mqtt = make_client("gmqtt", self.state.broker, f"{self.name}-bench",
                                self._on_message)
        await self.mqtt.connect()
        await self.mqtt.subscribe(topics.status(self.name),
                                  topics.client(self.name, self.client_id))
        for nid in self.ids:
            spawn_node(self.state, nid, status_interval_ms=20)
        times: list[float] = []
        try:
            for i in range(rounds):
                leader = await self.wait_leader()
                await self.write([leader])
                await asyncio.sleep(0.3)
                leader = self.leader() or leader
                alive = [n for n in self.ids if n != leader]
                self.dead.add(leader)
                self.statuses.pop(leader, None)
                t_kill = time.perf_counter()
                os.kill(self.state.nodes[leader], signal.SIGKILL)
                t_ok = await self.write(alive)
                times.append((t_ok - t_kill) * 1000)
                if log:
                    log(f"  failover {self.state.algorithm} round {i + 1}: killed {leader}, "
                        f"write acknowledged after {times[-1]:.0f} ms")
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.state.nodes[leader], os.WNOHANG)
                spawn_node(self.state, leader, status_interval_ms=20)
                self.dead.discard(leader)
                # Let the restarted node rejoin and catch up before the next kill.
                end = time.monotonic() + 10
                while leader not in self.statuses and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
        finally:
            await self.mqtt.close()
            for pid in self.state.nodes.values():
                stop_process(pid)
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
