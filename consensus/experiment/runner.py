"""The experiment runner: one spec, replayed on every algorithm with the same seeds, checked.

For each (algorithm, seed) the same clients (same ids, same random streams, so the same
commands at the same times as long as the clusters answer alike) and the same fault schedule
run against that algorithm's cluster; targets such as ``leader`` are resolved in each cluster
at that moment. After the workload, every fault is healed and the cluster gets ``settle_s``
of quiet, then the checks run: the simulator's continuous invariants, liveness after healing,
and per-key linearizability of the client history. A run whose checks fail says so in its
result, and the command exits non-zero.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.codec import encode_message
from consensus.experiment.history import Operation, unanswered
from consensus.experiment.metrics import compute_metrics
from consensus.experiment.nemesis import Fault, Nemesis
from consensus.experiment.spec import ExperimentSpec, FaultSpec
from consensus.experiment.workload import SimClient, Workload
from consensus.messages import Message, traffic_kind
from consensus.sim import Network, Processing, Simulation

TRACE_BEFORE_MS = 200.0  # message trace kept around the first fault (Lamport diagrams)
TRACE_AFTER_MS = 800.0


@dataclass(slots=True)
class Check:
    name: str
    verdict: str  # pass | fail | unknown
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail}


@dataclass(slots=True)
class RunResult:
    algorithm: str
    seed: int
    ops: list[Operation]
    events: list[dict[str, Any]]
    metrics: dict[str, Any]
    checks: list[Check]
    trace: list[dict[str, Any]] = field(default_factory=list)  # messages around the 1st fault
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.verdict == "pass" for c in self.checks)


def fault_schedule(spec: ExperimentSpec) -> list[Fault]:
    return [to_fault(f) for f in spec.faults]


def to_fault(f: FaultSpec) -> Fault:
    at = f.at * 1000
    action = f.action
    if action == "partition":
        if isinstance(f.partition, str):
            return Fault(at, "partition", shape=f.partition)
        return Fault(at, "partition", groups=tuple(tuple(g) for g in f.partition or ()))
    if action == "cut":
        assert f.cut is not None
        return Fault(at, "cut", groups=(tuple(f.cut.from_), tuple(f.cut.to)))
    if action == "heal":
        return Fault(at, "heal")
    if action in ("loss", "delay", "duplicate"):
        return Fault(at, action, amount=float(getattr(f, action)),
                     duration_ms=(f.duration or 0) * 1000)
    return Fault(at, action, target=getattr(f, action))


def workload_of(spec: ExperimentSpec) -> Workload:
    w = spec.workload
    return Workload(clients=w.clients, think_ms=w.think_ms, read_ratio=w.read_ratio,
                    keys=w.keys, request_timeout_ms=w.request_timeout_ms, rate=w.rate,
                    key_distribution=w.key_distribution)


def network_of(spec: ExperimentSpec) -> Network:
    n = spec.network
    return Network(latency_ms=(n.latency_ms.min, n.latency_ms.max),
                   distribution=n.latency_ms.distribution, loss=n.loss, duplicate=n.duplicate)


def run_sim(spec: ExperimentSpec, algorithm: str, seed: int,
            progress: Callable[[float], None] | None = None) -> RunResult:
    """One algorithm, one seed, in the simulator."""
    proc = spec.cluster.processing
    sim = Simulation(algorithm, spec.cluster.nodes, seed=seed, config=spec.timing.config(),
                     network=network_of(spec),
                     processing=Processing(proc.per_message_ms, proc.per_entry_ms))
    messages: Counter[str] = Counter()
    message_bytes: Counter[str] = Counter()
    trace: list[dict[str, Any]] = []
    # The experiment's clock starts once a first leader is in place (as on the real bus), so
    # the initial election does not count against either algorithm's latency.
    t0 = _first_leader(sim)
    first_fault = t0 + spec.faults[0].at * 1000 if spec.faults else None

    def observe(sent: float, msg: Message, delivered: float | None) -> None:
        kind = traffic_kind(msg)
        messages[kind] += 1
        message_bytes[kind] += len(encode_message(msg))  # as it would cross the bus
        if (first_fault is not None
                and first_fault - TRACE_BEFORE_MS <= sent <= first_fault + TRACE_AFTER_MS):
            trace.append({"sent": sent - t0, "delivered": None if delivered is None
                          else delivered - t0, "src": msg.src, "dst": msg.dst, "kind": kind})

    sim.observers.append(observe)
    workload = workload_of(spec)
    clients = [SimClient(f"c{i}", sim, workload) for i in range(1, workload.clients + 1)]
    nemesis = Nemesis(sim, [dataclasses.replace(f, at_ms=f.at_ms + t0)
                            for f in fault_schedule(spec)], seed)
    for client in clients:
        client.start(t0)
    duration_ms = spec.workload.duration_s * 1000
    end_ms = duration_ms + spec.settle_s * 1000
    step = max(100.0, duration_ms / 50)
    t = 0.0
    while t < duration_ms:
        t = min(duration_ms, t + step)
        sim.run(t0 + t)
        if progress:
            progress(t / end_ms)
    for client in clients:
        client.stop()
    nemesis.heal_all()
    sim.run(t0 + end_ms)
    if progress:
        progress(1.0)
    violations = sim.finish()

    ops = [_shift(op, t0) for c in clients for op in c.history]
    ops.sort(key=lambda op: (op.invoke_ms, op.client, op.seq))
    applied = [(t - t0, what) for t, what in nemesis.applied]
    leader_events = [(t - t0, n, term) for t, n, term in sim.leader_events]
    role_events = [(t - t0, n, role, term) for t, n, role, term in sim.role_events]
    agreed = getattr(sim.checker, "agreed", {})
    committed = len({(c.client_id, c.seq) for c in agreed.values() if c is not None})
    metrics = compute_metrics(
        ops, end_ms=end_ms, duration_ms=duration_ms, committed=committed, messages=messages,
        message_bytes=message_bytes, faults=applied[:-1], role_events=role_events,
        leader_events=leader_events)
    stalled = unanswered(ops, spec.settle_s)
    checks = [
        Check("invariants", "fail" if violations else "pass",
              "; ".join(str(v) for v in violations[:5])),
        Check("liveness after healing", "fail" if stalled else "pass", "; ".join(stalled[:5])),
        linearizability_check(ops),
    ]
    events = ([{"t": t, "type": "fault", "what": what} for t, what in applied]
              + [{"t": t, "type": "leader", "node": n, "term": term}
                 for t, n, term in leader_events]
              + [{"t": t, "type": "role", "node": n, "role": role, "term": term}
                 for t, n, role, term in role_events])
    events.sort(key=lambda e: e["t"])
    return RunResult(algorithm, seed, ops, events, metrics, checks, trace,
                     {"trace_sha256": sim.trace_sha256, "events": sim.stats.events,
                      "violations": [str(v) for v in violations]})


def _first_leader(sim: Simulation, within_ms: float = 10_000.0) -> float:
    """Run until some node leads (or ``within_ms`` passed); the time it took."""
    while sim.leader() is None and sim.now < within_ms:
        sim.run(sim.now + 5.0)
    return sim.now


def _shift(op: Operation, t0: float) -> Operation:
    """``op`` with its times on the experiment's clock (0 = the first leader in place)."""
    return dataclasses.replace(
        op, invoke_ms=op.invoke_ms - t0,
        complete_ms=None if op.complete_ms is None else op.complete_ms - t0,
        scheduled_ms=None if op.scheduled_ms is None else op.scheduled_ms - t0)


def linearizability_check(ops: list[Operation], budget_s: float = 60.0) -> Check:
    from consensus.check.linearizability import check_history, format_result

    result = check_history(ops, time_budget_s=budget_s)
    verdict = {"ok": "pass", "violation": "fail"}.get(result.verdict, "unknown")
    return Check("linearizability", verdict, format_result(result))
