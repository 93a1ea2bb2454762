"""One simulated run end to end: cluster, clients, faults, settle, checks, summary.

This is what ``consensus-lab simulate`` runs. After the workload's duration every fault is
healed and crashed nodes restart; the cluster then gets ``settle_s`` of quiet time so that
in-flight commands finish and every node catches up before the final checks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from consensus.algorithms import get_algorithm
from consensus.experiment.history import Operation, unanswered
from consensus.experiment.metrics import latency_summary
from consensus.experiment.nemesis import Fault, Nemesis, random_schedule
from consensus.experiment.workload import SimClient, Workload
from consensus.node import Config
from consensus.sim import Network, Simulation


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
    settle_s: float = 5.0,
    node_class: type | None = None,
    disk_ms: float = 0.0,
) -> SimResult:
    """Run one seeded simulation and check it; see the module docstring."""
    algo = get_algorithm(algorithm)
    workload = workload or Workload()
    sim = Simulation(algo, nodes, seed=seed, config=config, network=network,
                     node_class=node_class, disk_ms=disk_ms)
    duration_ms = duration_s * 1000
    if faults == "random":
        schedule = random_schedule(sim.ids, duration_ms, seed)
    elif faults == "none":
        schedule = []
    elif isinstance(faults, str):
        raise ValueError(f"unknown fault mode {faults!r} (choose random or none)")
    else:
        schedule = list(faults)
    nemesis = Nemesis(sim, schedule, seed)
    clients = [SimClient(f"c{i}", sim, workload)
               for i in range(1, workload.clients + 1)]
    for client in clients:
        client.start(0.0)

    started = time.perf_counter()
    sim.run(duration_ms)
    for client in clients:
        client.stop()
    nemesis.heal_all()
    sim.run(duration_ms + settle_s * 1000)
    wall = time.perf_counter() - started
    violations = sim.finish()

    history: list[Operation] = [op for c in clients for op in c.history]
    stalled = unanswered(history, settle_s)
    applied = {node.id: node.kv.applied for node in sim.live_nodes()}
    furthest = max(applied.values(), default=0)
    stalled += [f"{nid} applied {n} of {furthest} entries {settle_s:g}s after healing"
                for nid, n in sorted(applied.items()) if n < furthest]
    done = [op.latency_ms for op in history if op.latency_ms is not None]
    agreed = getattr(sim.checker, "agreed", {})
    committed = len({(c.client_id, c.seq) for c in agreed.values() if c is not None})
    simulated = sim.now / 1000
    return SimResult(
        algorithm=algo.name,
        nodes=len(sim.ids),
        seed=seed,
        faults=faults if isinstance(faults, str) else "schedule",
        simulated_s=simulated,
        wall_s=wall,
        speedup=simulated / wall if wall > 0 else float("inf"),
        committed=committed,
        acknowledged=sum(1 for op in history if op.outcome in ("ok", "fail")),
        unknown=sum(1 for op in history if op.outcome == "info"),
        leader_changes=len(sim.leaders_seen),
        events=sim.stats.events,
        messages=sim.stats.sent,
        messages_by_kind=dict(sorted(sim.stats.by_kind.items())),
        violations=[str(v) for v in violations],
        stalled=stalled,
        trace_sha256=sim.trace_sha256,
        fault_log=[f"T={t / 1000:.3f}s {what}" for t, what in nemesis.applied],
        latency_ms=_latency(done),
    )


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
