"""One simulated run end to end: cluster, clients, faults, settle, checks, summary.

This is what ``consensus-lab simulate`` runs: an experiment built from its flags (a seeded
random fault schedule, closed-loop clients from time 0) run through the same pipeline as
``consensus-lab run`` (:func:`consensus.experiment.runner.run`) on a simulated cluster, then
summarised with what only the simulator knows (events, messages, the trace hash).

After the workload's duration every fault is healed and crashed nodes restart; the cluster
then gets ``settle_s`` of quiet time so that in-flight commands finish and every node catches
up before the final checks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from consensus.algorithms import get_algorithm
from consensus.experiment.cluster import SimCluster
from consensus.experiment.metrics import latency_summary
from consensus.experiment.nemesis import Fault, random_schedule
from consensus.experiment.runner import RunPlan, run
from consensus.experiment.workload import Workload
from consensus.history import unanswered
from consensus.node import Config
from consensus.sim import Network, Simulation

# Quiet time after the workload (faults healed, no new requests) before the final checks.
SETTLE_S = 5.0


@dataclass(slots=True)
class SimResult:
    algorithm: str
    nodes: int
    seed: int
    faults: str
    simulated_s: float
    wall_s: float
    speedup: float  # simulated seconds per wall second
    committed: int  # client commands committed (each (client, seq) once)
    acknowledged: int  # client operations answered ok or fail
    unknown: int  # operations still in flight at the end (outcome unknown)
    leader_changes: int
    events: int
    messages: int
    messages_by_kind: dict[str, int]
    violations: list[str]
    # Liveness after the network healed: requests left unanswered, nodes left behind. Not a
    # safety violation, but on a healed network with a settle period it points at a bug.
    stalled: list[str]
    trace_sha256: str
    fault_log: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    # The last settle_s of simulated_s: faults healed, crashed nodes back, no new requests.
    settle_s: float = 0.0

    @property
    def safe(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def simulate(
    algorithm: str = "raft",
    nodes: int = 5,
    duration_s: float = 60.0,
    seed: int = 0,
    faults: str | list[Fault] = "random",
    config: Config | None = None,
    network: Network | None = None,
    workload: Workload | None = None,
    settle_s: float = SETTLE_S,
    node_class: type | None = None,
    disk_ms: float = 0.0,
) -> SimResult:
    """Run one seeded simulation and check it; see the module docstring."""
    algo = get_algorithm(algorithm)
    sim = Simulation(algo, nodes, seed=seed, config=config, network=network,
                     node_class=node_class, disk_ms=disk_ms)
    plan = RunPlan(tuple(_schedule(faults, sim.ids, duration_s * 1000, seed)),
                   workload or Workload(), duration_s, settle_s,
                   clock_from_leader=False, linearizability=False)
    started = time.perf_counter()
    result = asyncio.run(run(SimCluster(sim, measure=False), plan, seed))
    wall = time.perf_counter() - started

    history = result.ops
    stalled = unanswered(history, settle_s)
    applied = {node.id: node.kv.applied for node in sim.live_nodes()}
    furthest = max(applied.values(), default=0)
    stalled += [f"{nid} applied {n} of {furthest} entries {settle_s:g}s after healing"
                for nid, n in sorted(applied.items()) if n < furthest]
    done = [op.latency_ms for op in history if op.latency_ms is not None]
    simulated = sim.now / 1000
    return SimResult(
        algorithm=algo.name,
        nodes=len(sim.ids),
        seed=seed,
        faults=faults if isinstance(faults, str) else "schedule",
        simulated_s=simulated,
        wall_s=wall,
        speedup=simulated / wall if wall > 0 else float("inf"),
        committed=result.metrics["committed"],
        acknowledged=sum(1 for op in history if op.outcome in ("ok", "fail")),
        unknown=sum(1 for op in history if op.outcome == "info"),
        leader_changes=result.metrics["leader_changes"],
        events=sim.stats.events,
        messages=sim.stats.sent,
        messages_by_kind=dict(sorted(sim.stats.by_kind.items())),
        violations=result.info["violations"],
        stalled=stalled,
        trace_sha256=result.info["trace_sha256"],
        fault_log=[_fault_line(e) for e in result.events if e["type"] == "fault"],
        latency_ms=_latency(done),
        settle_s=settle_s,
    )


def _schedule(faults: str | list[Fault], ids: tuple[str, ...], duration_ms: float,
              seed: int) -> list[Fault]:
    if faults == "random":
        return random_schedule(ids, duration_ms, seed)
    if faults == "none":
        return []
    if isinstance(faults, str):
        raise ValueError(f"unknown fault mode {faults!r} (choose random or none)")
    return list(faults)


def _fault_line(event: dict[str, Any]) -> str:
    """One fault event as ``--show-faults`` prints it: ``T=1.234s crash n3``."""
    note = " (skipped: no such node now)" if event["skipped"] else ""
    return f"T={event['t'] / 1000:.3f}s {event['label']}{note}"


def _latency(done: list[float]) -> dict[str, float]:
    """p50/p99/max in ms (NaN when nothing was answered), as the experiment metrics do."""
    summary = latency_summary(done)
    if not done:
        return dict.fromkeys(("p50", "p99", "max"), float("nan"))
    return {"p50": summary["p50"], "p99": summary["p99"], "max": summary["max"]}


SWEEP_SETTLE_S = 5.0


def sweep_run(algorithm: str, seed: int, nodes: int = 5, duration_s: float = 10.0) -> SimResult:
    """One seed of a randomised sweep: the seed picks the faults *and* the leader-stability
    knobs (PreVote and CheckQuorum on or off), so every combination gets exercised; one seed
    in four gives the disk 1-7 ms per write, so leaders write their logs in parallel with
    replicating them and crashes lose unwritten records (the node runtime's path)."""
    config = Config(pre_vote=seed % 2 == 0, check_quorum=seed % 3 != 0)
    return simulate(algorithm, nodes, duration_s, seed, "random", config=config,
                    settle_s=SWEEP_SETTLE_S, disk_ms=sweep_disk_ms(seed))


def sweep_disk_ms(seed: int) -> float:
    return float(1 + seed % 7) if seed % 4 == 1 else 0.0
