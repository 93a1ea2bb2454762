"""The run pipeline: one plan, run on any :class:`~consensus.experiment.cluster.Cluster`.

An experiment file is replayed on every algorithm with the same seeds. For each (algorithm,
seed) the same clients (same ids, same random streams, so the same commands at the same times
as long as the clusters answer alike) and the same fault schedule run against that
algorithm's cluster; targets such as ``leader`` are resolved in each cluster at that moment.
After the workload, every fault is healed and the cluster gets ``settle_s`` of quiet, then
the checks run: the cluster's invariants (the shared checkers), liveness after healing, and
per-key linearizability of the client history. A run whose checks fail says so in its
result, and the command exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.experiment.cluster import Cluster, Observed, SimCluster
from consensus.experiment.metrics import compute_metrics
from consensus.experiment.nemesis import Fault, MembershipEvent, Nemesis
from consensus.experiment.spec import ExperimentSpec, FaultSpec
from consensus.experiment.workload import Workload
from consensus.history import Operation, unanswered
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
    if action == "links":
        assert f.links is not None
        return Fault(at, "links", links=tuple((a, b) for a, b in f.links.cut or []),
                     one_way=tuple((a, b) for a, b in f.links.one_way or []))
    if action == "heal":
        return Fault(at, "heal")
    if action in ("loss", "delay", "duplicate"):
        return Fault(at, action, amount=float(getattr(f, action)),
                     duration_ms=(f.duration or 0) * 1000)
    if action == "clock":
        return Fault(at, "clock", target=f.clock, amount=float(f.rate or 1.0))
    if action == "add":
        return Fault(at, "add", node=f.add)
    if action == "replace":
        assert f.replace is not None
        return Fault(at, "replace", target=f.replace.remove, node=f.replace.add)
    return Fault(at, action, target=getattr(f, action))


def workload_of(spec: ExperimentSpec) -> Workload:
    w = spec.workload
    return Workload(clients=w.clients, think_ms=w.think_ms, read_ratio=w.read_ratio,
                    keys=w.keys, request_timeout_ms=w.request_timeout_ms, rate=w.rate,
                    key_distribution=w.key_distribution)


def network_of(spec: ExperimentSpec) -> Network:
    n = spec.network
    return Network(latency_ms=(n.latency_ms.min, n.latency_ms.max),
                   distribution=n.latency_ms.distribution, loss=n.loss, duplicate=n.duplicate,
                   reorder=False)  # FIFO links, as the bus's (sim.Network.reorder)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run does, whatever the cluster: built from an experiment file
    (:func:`plan_of`) or from ``simulate``'s flags.

    ``clock_from_leader``: the experiment's clock starts once a first leader is in place (as
    on the real bus), so the initial election counts against neither algorithm's latency.
    """

    schedule: tuple[Fault, ...]
    workload: Workload
    duration_s: float
    settle_s: float
    clock_from_leader: bool = True
    linearizability: bool = True

    @property
    def duration_ms(self) -> float:
        return self.duration_s * 1000

    @property
    def end_ms(self) -> float:
        return self.duration_ms + self.settle_s * 1000


def plan_of(spec: ExperimentSpec) -> RunPlan:
    return RunPlan(tuple(fault_schedule(spec)), workload_of(spec), spec.workload.duration_s,
                   spec.settle_s)


async def run(cluster: Cluster, plan: RunPlan, seed: int,
              progress: Callable[[float], None] | None = None) -> RunResult:
    """One run of ``plan`` on ``cluster``: the same steps for the simulator and the bus.

    Start the cluster (and wait for a leader); schedule the faults; start the clients;
    after the workload stop them, heal everything and let the cluster settle; then the
    checks: the cluster's invariants, liveness after healing, linearizability.
    """
    await cluster.start()
    try:
        return await _run(cluster, plan, seed, progress)
    finally:
        await cluster.close()


async def _run(cluster: Cluster, plan: RunPlan, seed: int,
               progress: Callable[[float], None] | None) -> RunResult:
    t0 = await cluster.wait_for_leader() if plan.clock_from_leader else cluster.now
    first_fault = t0 + plan.schedule[0].at_ms if plan.schedule else None
    cluster.measure(None if first_fault is None else
                    (first_fault - TRACE_BEFORE_MS, first_fault + TRACE_AFTER_MS))
    nemesis = Nemesis(cluster, [dataclasses.replace(f, at_ms=f.at_ms + t0)
                                for f in plan.schedule], seed)
    duration_ms, end_ms = plan.duration_ms, plan.end_ms
    cluster.start_workload(plan.workload, seed, t0, t0 + end_ms)
    if progress is None:
        await cluster.run_until(t0 + duration_ms)
    else:
        step = max(100.0, duration_ms / 50)
        t = 0.0
        while t < duration_ms:
            t = min(duration_ms, t + step)
            await cluster.run_until(t0 + t)
            progress(t / end_ms)
    cluster.stop_workload()
    nemesis.heal_all()
    await cluster.run_until(t0 + end_ms)
    if progress:
        progress(1.0)
    ops = await cluster.history()
    seen = await cluster.finish(ops)
    # Building the result allocates an object or more per operation and event while the
    # cluster still holds millions (logs, checker state): the cyclic collector's passes over
    # them found nothing and took a tenth of a simulate run, so it waits until we are done.
    with _gc_paused():
        result = _result(cluster.algorithm, plan, seed, t0, nemesis, ops, seen,
                         getattr(cluster, "membership_events", ()))
    if plan.linearizability:
        result.checks.append(linearizability_check(result.ops))
    return result


def _result(algorithm: str, plan: RunPlan, seed: int, t0: float, nemesis: Nemesis,
            ops: list[Operation], seen: Observed,
            membership_events: Sequence[MembershipEvent] = ()) -> RunResult:
    duration_ms, end_ms = plan.duration_ms, plan.end_ms
    if t0:
        ops = [_shift(op, t0) for op in ops]
    ops.sort(key=lambda op: (op.invoke_ms, op.client, op.seq))
    faults = [f for f in nemesis.applied if not f.final]
    changes = [e.to_json(t0) for e in membership_events]
    leader_events = [(t - t0, n, term) for t, n, term in seen.leader_events]
    role_events = [(t - t0, n, role, term) for t, n, role, term in seen.role_events]
    commit_events = [(t - t0, n, term) for t, n, term in seen.commit_events]
    metrics = compute_metrics(
        ops, end_ms=end_ms, duration_ms=duration_ms, committed=seen.committed,
        messages=seen.messages, message_bytes=seen.message_bytes,
        faults=[(f.t - t0, f.label) for f in faults], role_events=role_events,
        leader_events=leader_events, commit_events=commit_events, membership=changes)
    stalled = unanswered(ops, plan.settle_s)
    checks = [
        Check("invariants", "fail" if seen.violations else "pass",
              "; ".join(seen.violations[:5])),
        Check("liveness after healing", "fail" if stalled else "pass", "; ".join(stalled[:5])),
    ]
    events = ([f.to_json(t0) for f in nemesis.applied] + changes
              + [{"t": t, "type": "leader", "node": n, "term": term}
                 for t, n, term in leader_events]
              + [{"t": t, "type": "role", "node": n, "role": role, "term": term}
                 for t, n, role, term in role_events])
    events.sort(key=lambda e: e["t"])
    trace = [{**m, "sent": m["sent"] - t0,
              "delivered": None if m["delivered"] is None else m["delivered"] - t0}
             for m in seen.trace]
    return RunResult(algorithm, seed, ops, events, metrics, checks, trace, seen.info)


def sim_cluster(spec: ExperimentSpec, algorithm: str, seed: int) -> SimCluster:
    """The simulated cluster an experiment file describes."""
    proc = spec.cluster.processing
    return SimCluster(Simulation(algorithm, spec.cluster.nodes, seed=seed,
                                 config=spec.config(algorithm), network=network_of(spec),
                                 processing=Processing(proc.per_message_ms,
                                                       proc.per_entry_ms),
                                 clock_rates=spec.timing.clock_drift))


def run_sim(spec: ExperimentSpec, algorithm: str, seed: int,
            progress: Callable[[float], None] | None = None) -> RunResult:
    """One algorithm, one seed of ``spec``, in the simulator."""
    return asyncio.run(run(sim_cluster(spec, algorithm, seed), plan_of(spec), seed, progress))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
