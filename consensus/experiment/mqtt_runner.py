"""Experiments on the real message bus: node processes, the broker, real signals.

The same spec that runs in the simulator runs here: one OS process per node (``consensus-lab
node``), talking only through the MQTT broker; clients are asyncio tasks with their own MQTT
connections; the nemesis crashes a node with SIGKILL, pauses it with SIGSTOP/SIGCONT, and
partitions, drops or delays traffic through each node's control topic. Targets like ``leader``
are resolved from the nodes' published status.

What the real bus cannot honour is reported in the manifest, not silently ignored: latency is
the network's own (the spec's latency model is not applied), and duplication is not injected.

Checks: per-key linearizability of the client history; and the invariants, from what the nodes
published while running (one leader per term, terms never going backwards) and from their
write-ahead logs afterwards (every node restored from its WAL must agree on the committed
prefix, and every acknowledged request must be in the final state).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from consensus.algorithms import get_algorithm
from consensus.client import ClusterClient, ClusterUnavailable
from consensus.cluster import ClusterState, is_ours, spawn_node
from consensus.experiment.history import Operation, unanswered
from consensus.experiment.metrics import compute_metrics
from consensus.experiment.nemesis import Nemesis
from consensus.experiment.runner import Check, RunResult, fault_schedule, linearizability_check
from consensus.experiment.spec import ExperimentSpec
from consensus.experiment.workload import KeyChooser
from consensus.messages import ReplyStatus
from consensus.node import Node
from consensus.storage import FileStorage
from consensus.transport import topics
from consensus.transport.mqtt import make_client

STATUS_INTERVAL_MS = 50.0
LEADER_WAIT_S = 15.0


class MqttExperiment:
    """Runs each (algorithm, seed) of a spec on real processes; one broker for all runs."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.broker_url = spec.mqtt.broker
        self.broker_handle: Any = None
        self.not_honoured: list[str] = []
        net = spec.network
        if (net.latency_ms.distribution, net.latency_ms.min, net.latency_ms.max) != (
                "uniform", 1.0, 5.0):
            self.not_honoured.append("network.latency_ms: the real network's latency applies")
        if net.duplicate:
            self.not_honoured.append("network.duplicate: the bus does not duplicate messages")
        if spec.cluster.processing.per_message_ms or spec.cluster.processing.per_entry_ms:
            self.not_honoured.append("cluster.processing: real processes take real CPU time")
        if any(f.duplicate is not None for f in spec.faults):
            self.not_honoured.append("duplicate windows: the bus does not duplicate messages")

    def start(self) -> dict[str, Any]:
        """Start the broker unless the spec names one; return what the manifest records."""
        from consensus.broker import start_broker

        kind = "external"
        if self.broker_url is None:
            self.broker_handle = start_broker(prefer=self.spec.mqtt.prefer)
            self.broker_url = self.broker_handle.url
            kind = self.broker_handle.kind
        return {"broker": kind, "broker_url": self.broker_url,
                "mqtt_client": self.spec.mqtt.library, "fsync": self.spec.mqtt.fsync,
                "not_honoured": self.not_honoured}

    def stop(self) -> None:
        if self.broker_handle is not None:
            self.broker_handle.stop()
            self.broker_handle = None

    def run(self, algorithm: str, seed: int,
            progress: Callable[[float], None] | None = None) -> RunResult:
        assert self.broker_url is not None, "start() first"
        return asyncio.run(_Run(self, algorithm, seed, progress).go())


class _Run:
    """One algorithm and seed on real processes; a :class:`FaultTarget` for the nemesis."""

    def __init__(self, exp: MqttExperiment, algorithm: str, seed: int,
                 progress: Callable[[float], None] | None) -> None:
        spec = exp.spec
        self.spec = spec
        self.algorithm = algorithm
        self.seed = seed
        self.progress = progress
        self.ids = tuple(spec.cluster.ids)
        self.cluster = f"{spec.name}-{algorithm}-s{seed}-{uuid.uuid4().hex[:6]}"
        directory = exp.run_dir / algorithm / f"seed-{seed}" / "nodes"
        directory.mkdir(parents=True, exist_ok=True)
        timing = spec.timing
        self.state = ClusterState(
            self.cluster, algorithm, dict.fromkeys(self.ids, 0), exp.broker_url or "", None,
            "external", spec.mqtt.library, spec.mqtt.fsync, timing.heartbeat_ms,
            timing.election_timeout_ms, str(directory.resolve()))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.t0 = 0.0
        self.statuses: dict[str, dict[str, Any]] = {}
        self.status_history: list[tuple[float, str, str, int]] = []  # (t, node, role, term)
        self.leader_events: list[tuple[float, str, int]] = []
        self.leader_ballots: list[tuple[float, str, str]] = []  # (t, node, term or ballot)
        self.crashed: set[str] = set()
        self.paused: set[str] = set()
        self.history: list[Operation] = []
        self.faults_log: list[tuple[float, str]] = []
        self.sent: Counter[str] = Counter()
        self.sent_bytes: Counter[str] = Counter()

    # -- FaultTarget ---------------------------------------------------------------------

    @property
    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        assert self.loop is not None
        self.loop.call_at(self.t0 + t / 1000.0, fn)

    def leader(self) -> str | None:
        fresh = [(st.get("term", 0), n) for n, st in self.statuses.items()
                 if st.get("role") == "leader" and self.is_up(n) and n not in self.paused]
        return max(fresh)[1] if fresh else None

    def is_up(self, nid: str) -> bool:
        return nid not in self.crashed

    def crash(self, nid: str) -> None:
        pid = self.state.nodes[nid]
        self._harvest_counts(nid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.crashed.add(nid)
        self.statuses.pop(nid, None)

    def restart(self, nid: str) -> None:
        spawn_node(self.state, nid, status_interval_ms=STATUS_INTERVAL_MS)
        self.crashed.discard(nid)

    def pause(self, nid: str) -> None:
        os.kill(self.state.nodes[nid], signal.SIGSTOP)
        self.paused.add(nid)

    def resume(self, nid: str) -> None:
        os.kill(self.state.nodes[nid], signal.SIGCONT)
        self.paused.discard(nid)

    def set_blocked(self, pairs: set[tuple[str, str]], label: str) -> None:
        for nid in self.ids:
            self._control(nid, {"op": "drop_to", "peers": sorted(b for a, b in pairs if a == nid)})
            self._control(nid, {"op": "drop_from",
                                "peers": sorted(a for a, b in pairs if b == nid)})

    def set_window(self, *, loss: float | None = None, duplicate: float | None = None,
                   delay: float = 0.0) -> None:
        base = self.spec.network.loss
        for nid in self.ids:
            self._control(nid, {"op": "loss", "rate": base if loss is None else loss})
            self._control(nid, {"op": "delay", "ms": delay})

    def _control(self, nid: str, cmd: dict[str, Any]) -> None:
        self.mqtt.publish(topics.control(self.cluster, nid), orjson.dumps(cmd))

    # -- the run -------------------------------------------------------------------------

    async def go(self) -> RunResult:
        self.loop = asyncio.get_running_loop()
        self.mqtt = make_client(self.spec.mqtt.library, self.state.broker,
                                f"{self.cluster}-runner", self._on_status)
        await self.mqtt.connect()
        await self.mqtt.subscribe(topics.status(self.cluster))
        self.t0 = time.monotonic()
        try:
            for nid in self.ids:
                spawn_node(self.state, nid, status_interval_ms=STATUS_INTERVAL_MS)
            await self._wait_for_leader()
            if self.spec.network.loss:
                self.set_window()
            return await self._workload_and_checks()
        finally:
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
            await self.mqtt.close()

    async def _wait_for_leader(self) -> None:
        end = time.monotonic() + LEADER_WAIT_S
        while self.leader() is None:
            if time.monotonic() > end:
                raise RuntimeError(f"{self.algorithm}: no leader within {LEADER_WAIT_S:g}s; "
                                   f"see the node logs in {self.state.directory}")
            await asyncio.sleep(0.02)
        self.t0 = time.monotonic()  # the experiment's clock starts with a leader in place

    def _on_status(self, topic: str, payload: bytes) -> None:
        try:
            st = orjson.loads(payload)
            nid, role, term = st["id"], st["role"], int(st["term"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if nid not in self.ids or nid in self.crashed:
            return
        previous = self.statuses.get(nid)
        self.statuses[nid] = st
        now = self.now
        if previous is None or previous.get("role") != role:
            self.status_history.append((now, nid, role, term))
            if role == "leader":
                self.leader_events.append((now, nid, term))
                # Raft: one leader per term. Paxos: rounds repeat across nodes, ballots don't.
                self.leader_ballots.append((now, nid, st.get("ballot") or str(term)))

    def _harvest_counts(self, nid: str) -> None:
        """Add a node's traffic counters (they restart at zero with the process)."""
        st = self.statuses.get(nid, {})
        self.sent.update(st.get("sent_by_kind", {}))
        self.sent_bytes.update(st.get("bytes_by_kind", {}))

    async def _workload_and_checks(self) -> RunResult:
        spec = self.spec
        duration_ms = spec.workload.duration_s * 1000
        end_ms = duration_ms + spec.settle_s * 1000
        nemesis = Nemesis(self, fault_schedule(spec), self.seed)
        stop = asyncio.Event()
        clients = [asyncio.create_task(self._client(f"c{i}", stop, end_ms))
                   for i in range(1, spec.workload.clients + 1)]
        while self.now < duration_ms:
            await asyncio.sleep(0.1)
            if self.progress:
                self.progress(min(1.0, self.now / end_ms))
        stop.set()
        nemesis.heal_all()
        while self.now < end_ms:
            await asyncio.sleep(0.1)
            if self.progress:
                self.progress(min(1.0, self.now / end_ms))
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await asyncio.sleep(3 * STATUS_INTERVAL_MS / 1000)  # the last statuses, with counters
        for nid in self.ids:
            if nid not in self.crashed:
                self._harvest_counts(nid)
        return self._result(nemesis, end_ms)

    async def _client(self, client_id: str, stop: asyncio.Event, end_ms: float) -> None:
        """One client: one command in flight, retried with the same seq until answered (the
        redirects and retries are :class:`ClusterClient`'s, as for `consensus-lab client`)."""
        w = self.spec.workload
        rng = random.Random(f"{self.seed}/client/{client_id}")
        keys = KeyChooser(w.keys, w.key_distribution, rng)
        per_client = (w.rate / w.clients) if w.rate else None
        next_arrival = self.now + (rng.expovariate(per_client / 1000) if per_client else 0)
        async with ClusterClient(
                self.state.broker, self.cluster, library=self.spec.mqtt.library,
                nodes=list(self.ids), client_id=f"{client_id}-{uuid.uuid4().hex[:6]}",
                attempt_timeout_s=w.request_timeout_ms / 1000, watch_status=False) as client:
            client.last_leader = self.leader()
            while not stop.is_set():
                if per_client:
                    await asyncio.sleep(max(0.0, (next_arrival - self.now) / 1000))
                    if stop.is_set():
                        break
                    scheduled: float | None = next_arrival
                    next_arrival += rng.expovariate(per_client / 1000)
                else:
                    scheduled = None
                seq = client.seq + 1  # the seq request() is about to use
                key = keys()
                text = (f"GET {key}" if rng.random() < w.read_ratio
                        else f"SET {key} = {client_id}-{seq}")
                op = Operation(client_id, seq, text, self.now, attempts=0, scheduled_ms=scheduled)
                self.history.append(op)
                client.deadline_s = max(0.0, (end_ms - self.now) / 1000)
                try:
                    result = await client.request(text)
                except ClusterUnavailable:
                    break  # the run ended with it in flight: its outcome stays unknown
                op.complete_ms = self.now
                op.attempts = result.attempts
                op.outcome = "ok" if result.reply.status == ReplyStatus.OK else "fail"
                op.result = result.reply.result
                if not per_client and w.think_ms:
                    await asyncio.sleep(w.think_ms / 1000)

    # -- results and checks --------------------------------------------------------------

    def _result(self, nemesis: Nemesis, end_ms: float) -> RunResult:
        ops = sorted(self.history, key=lambda op: (op.invoke_ms, op.client, op.seq))
        sequences = self._applied_from_wals()
        invariants = self._check_invariants(ops, sequences)
        longest = max(sequences.values(), key=len, default=[])
        committed = len({(c.client_id, c.seq) for c in longest if c is not None})
        stalled = unanswered(ops, self.spec.settle_s)
        checks = [
            Check("invariants", "fail" if invariants else "pass", "; ".join(invariants[:5])),
            Check("liveness after healing", "fail" if stalled else "pass",
                  "; ".join(stalled[:5])),
            linearizability_check(ops),
        ]
        client_cmds = sum(1 for op in ops if op.outcome in ("ok", "fail"))
        metrics = compute_metrics(
            ops, end_ms=end_ms, duration_ms=self.spec.workload.duration_s * 1000,
            committed=committed or client_cmds,
            messages=self.sent, message_bytes=self.sent_bytes,
            faults=nemesis.applied[:-1] if nemesis.applied else [],
            role_events=self.status_history, leader_events=self.leader_events)
        events = ([{"t": t, "type": "fault", "what": what} for t, what in nemesis.applied]
                  + [{"t": t, "type": "leader", "node": n, "term": term}
                     for t, n, term in self.leader_events]
                  + [{"t": t, "type": "role", "node": n, "role": role, "term": term}
                     for t, n, role, term in self.status_history])
        events.sort(key=lambda e: e["t"])
        return RunResult(self.algorithm, self.seed, ops, events, metrics, checks, [],
                         {"cluster": self.cluster, "nodes_dir": self.state.directory,
                          "violations": invariants})

    def _applied_from_wals(self) -> dict[str, list[Any]]:
        """Each node restored from its write-ahead log: the commands it re-applies, in order."""
        algo = get_algorithm(self.algorithm)
        out: dict[str, list[Any]] = {}
        for nid in self.ids:
            wal = FileStorage(Path(self.state.directory) / f"{nid}.wal", fsync=False)
            records = wal.load()
            wal.close()
            node: Node = algo.node_class(nid, self.ids, self.spec.timing.config(),
                                         random.Random(0))
            node.restore(records)
            out[nid] = [a.command for a in node.ready().applied]
        return out

    def _check_invariants(self, ops: list[Operation],
                          sequences: dict[str, list[Any]]) -> list[str]:
        problems: list[str] = []
        # One leader per term or ballot, terms never backwards (as published while running).
        leaders: dict[str, str] = {}
        for t, nid, ballot in self.leader_ballots:
            other = leaders.setdefault(ballot, nid)
            if other != nid:
                problems.append(f"two leaders in term/ballot {ballot}: {other} and {nid} "
                                f"(T={t / 1000:.3f}s)")
        last_term: dict[str, int] = {}
        for t, nid, _, term in self.status_history:
            if term < last_term.get(nid, 0):
                problems.append(f"{nid}'s term went back from {last_term[nid]} to {term} "
                                f"(T={t / 1000:.3f}s)")
            last_term[nid] = max(term, last_term.get(nid, 0))
        # Applied-prefix agreement, from every node's WAL.
        longest = max(sequences.values(), key=len, default=[])
        for nid, seq in sorted(sequences.items()):
            if seq != longest[:len(seq)]:
                i = next(i for i, (a, b) in enumerate(zip(seq, longest, strict=False)) if a != b)
                problems.append(f"{nid} applied {seq[i]} at index {i + 1} where another node "
                                f"applied {longest[i]}")
        # No acknowledged request lost: every answered one is in the committed log. (Clients
        # connect as "<client>-<suffix>"; the history names them by "<client>".)
        applied = {(c.client_id.rsplit("-", 1)[0], c.seq) for c in longest if c is not None}
        lost = [op for op in ops
                if op.outcome in ("ok", "fail") and (op.client, op.seq) not in applied]
        problems += [f"{op.client}#{op.seq} {op.command!r} was acknowledged but is not in the "
                     f"committed log" for op in lost[:5]]
        return problems
