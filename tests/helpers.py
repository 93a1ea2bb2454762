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

