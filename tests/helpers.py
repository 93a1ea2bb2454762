"""Small drivers for scenario tests: run a simulation until something is true."""

from __future__ import annotations

from collections.abc import Callable

from consensus.algorithms import NAMES
from consensus.experiment.workload import SimClient, Workload
from consensus.history import Operation
from consensus.sim import Simulation


def available_algorithms() -> list[str]:
    """Every registered algorithm. None is skipped: a renamed or missing module must fail."""
    return list(NAMES)


def run_until(sim: Simulation, predicate: Callable[[], bool], within_ms: float,
              step_ms: float = 5.0) -> bool:
    """Advance the simulation until ``predicate()`` holds; False if it never did in time."""
    end = sim.now + within_ms
    while sim.now < end:
        if predicate():
            return True
        sim.run(min(end, sim.now + step_ms))
    return predicate()


def wait_for_leader(sim: Simulation, within_ms: float = 3000) -> str:
    assert run_until(sim, lambda: sim.leader() is not None, within_ms), "no leader elected"
    leader = sim.leader()
    assert leader is not None
    return leader


def client(sim: Simulation, name: str = "c1", timeout_ms: float = 300) -> SimClient:
    return SimClient(name, sim, Workload(request_timeout_ms=timeout_ms))


def settle(op: Operation, sim: Simulation, within_ms: float) -> bool:
    """Run until ``op`` is answered; True if it was."""
    return run_until(sim, lambda: op.complete_ms is not None, within_ms)


def applied_commands(sim: Simulation, node: str) -> list[str]:
    """The client commands node applied, in order (from the shared checker's record)."""
    agreed = sim.checker.agreed  # type: ignore[attr-defined]
    upto = sim.checker.applied_upto.get(node, 0)  # type: ignore[attr-defined]
    return [agreed[i].text for i in range(1, upto + 1) if agreed[i] is not None]



def crash_spec(name: str, seeds: int) -> str:
    """A small simulator experiment (3 nodes, 2 s): a leader crash and its restart."""
    return f"""
name: {name}
description: A leader crash and its restart, {seeds} seeds.
seeds: {list(range(1, seeds + 1))}
cluster: {{nodes: 3}}
workload: {{clients: 4, duration_s: 2}}
faults:
  - {{at: 0.8, crash: leader}}
  - {{at: 1.5, restart: crashed}}
settle_s: 1
"""


def load_sweep_spec(name: str, seeds: int) -> str:
    """A tiny load sweep (3 nodes, 1 s per rate): two offered rates, no faults."""
    return f"""
name: {name}
description: Two offered rates, no faults.
seeds: {list(range(1, seeds + 1))}
cluster: {{nodes: 3}}
workload: {{clients: 4, duration_s: 1, read_ratio: 0.5, keys: 5}}
load_sweep: [40, 80]
settle_s: 0.5
"""
