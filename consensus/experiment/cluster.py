"""The cluster a run drives: one interface, two implementations.

:class:`Cluster` is what the run pipeline (``experiment/runner.py``), the nemesis, the
workload, metrics, settle and checks need of a cluster, whichever way it runs:
:class:`SimCluster` over the deterministic simulator, and
:class:`~consensus.experiment.bus.BusCluster` over real node processes on the MQTT bus.

Times are the cluster's own clock in ms (the simulator's virtual clock; wall time since the
bus cluster started); the pipeline puts them on the experiment's clock (0 = first leader).
The methods that take time are coroutines so that one pipeline drives both: the simulator's
return at once, having run the events; the bus's sleep while the processes work.

A dashboard backend drives a cluster through the same calls: the fault hooks
(:class:`~consensus.experiment.nemesis.FaultTarget`), ``campaign``, ``leader()`` and
``statuses()`` for the picture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensus.codec import encode_message
from consensus.experiment.nemesis import FaultTarget, MembershipEvent
from consensus.experiment.operator import OPERATOR_ID, SimOperator
from consensus.experiment.workload import SimClient, Workload
from consensus.history import Operation
from consensus.membership import Change
from consensus.messages import Message, NodeId, traffic_kind
from consensus.sim import Simulation

CATCH_UP_POLL_MS = 10.0  # how often a new member's applied index is read while it catches up


@dataclass(slots=True)
class Observed:
    """What a cluster saw during a run, on its own clock, and its verdict at the end."""

    role_events: list[tuple[float, NodeId, str, int]]  # (t, node, role, term)
    leader_events: list[tuple[float, NodeId, int]]  # (t, new leader, term)
    violations: list[str]  # safety invariants broken (the shared checkers' findings)
    committed: int  # distinct client commands in the agreed sequence
    messages: Counter[str] = field(default_factory=Counter)  # sent, by traffic kind
    message_bytes: Counter[str] = field(default_factory=Counter)
    trace: list[dict[str, Any]] = field(default_factory=list)  # messages in the trace window
    info: dict[str, Any] = field(default_factory=dict)  # goes into the run's metrics.json
    # (t, leader, term): a leader's first commit of a client command in its term/ballot.
    commit_events: list[tuple[float, NodeId, int]] = field(default_factory=list)


class Cluster(FaultTarget, Protocol):
    """A cluster of one algorithm that a run drives; see the module docstring."""

    algorithm: str

    async def start(self) -> None:
        """Bring the nodes up (the simulator's are up from the start)."""

    async def close(self) -> None:
        """Stop everything the cluster started."""

    async def wait_for_leader(self) -> float:
        """Let time pass until some node leads; the time (raises if none within a bound)."""

    async def run_until(self, t: float) -> None:
        """Let the cluster run until its clock reads ``t`` ms."""

    def statuses(self) -> Mapping[NodeId, Any]:
        """The latest status of every live node (``role`` and ``term`` at least)."""

    def measure(self, trace_window: tuple[float, float] | None) -> None:
        """Count traffic from now on, and keep the messages sent within ``trace_window``."""

    def start_workload(self, workload: Workload, seed: int, at: float, end: float) -> None:
        """Start the workload's clients at ``at``; ``end`` bounds their last request."""

    def stop_workload(self) -> None:
        """No new commands; commands in flight may still be answered until :meth:`history`."""

    async def history(self) -> list[Operation]:
        """End the clients; every operation they invoked, in the cluster's clock."""

    async def finish(self, ops: list[Operation]) -> Observed:
        """Run the end-of-run checks (``ops`` is the client history); what was observed."""


class SimCluster:
    """A :class:`Cluster` over :class:`~consensus.sim.Simulation`.

    With ``measure`` every message sent after :meth:`measure` is seen by an observer that
    counts it by traffic kind and encodes it once (as it would cross the bus) to count bytes:
    the experiment's charts want that; ``simulate`` wants its speed, and counts by kind from
    the simulator's own stats.
    """

    LEADER_WITHIN_MS = 10_000.0

    def __init__(self, sim: Simulation, *, measure: bool = True) -> None:
        self.sim = sim
        self.algorithm = sim.algorithm.name
        self.measuring = measure
        self.membership_events: list[MembershipEvent] = []
        self._operator: SimOperator | None = None
        self._catching_up: dict[NodeId, MembershipEvent] = {}  # new node -> its change
        self.clients: list[SimClient] = []
        self._messages: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()
        self._trace: list[dict[str, Any]] = []

    # -- FaultTarget: the simulator's own hooks -------------------------------------------

    @property
    def ids(self) -> tuple[NodeId, ...]:
        """Every node the simulation runs, those added by membership changes included."""
        return self.sim.ids

    @property
    def now(self) -> float:
        return self.sim.now

    def at(self, t: float, fn: Any) -> None:
        self.sim.at(t, fn)

    def leader(self) -> NodeId | None:
        return self.sim.leader()

    def is_up(self, nid: NodeId) -> bool:
        return self.sim.is_up(nid)

    def applied(self, nid: NodeId) -> int | None:
        st = self.sim.statuses.get(nid) if self.sim.is_up(nid) else None
        return st.applied_index if st is not None else None

    def crash(self, nid: NodeId) -> None:
        self.sim.crash(nid)

    def restart(self, nid: NodeId) -> None:
        self.sim.restart(nid)

    def pause(self, nid: NodeId) -> None:
        self.sim.pause(nid)

    def resume(self, nid: NodeId) -> None:
        self.sim.resume(nid)

    def set_blocked(self, pairs: set[tuple[NodeId, NodeId]], label: str) -> None:
        self.sim.set_blocked(pairs, label)

    def set_window(self, *, loss: float | None = None, duplicate: float | None = None,
                   delay: float = 0.0) -> None:
        self.sim.set_window(loss=loss, duplicate=duplicate, delay=delay)

    def set_clock_rate(self, nid: NodeId, rate: float) -> None:
        self.sim.set_clock_rate(nid, rate)

    def reconfigure(self, change: str) -> None:
        """Ask for a membership change as an operator would (:mod:`.operator`); an added node
        starts empty first, and its catch-up is timed and its bytes counted."""
        parsed = Change.parse(change)
        sim = self.sim
        new = parsed.add[0] if parsed.add else None
        if new is not None and new not in sim.ids:
            sim.add_node(new)
        if self._operator is None:
            self._operator = SimOperator(sim)
        event = self._operator.request(change)
        self.membership_events.append(event)
        if new is not None:
            self._watch_catch_up(event, new)

    def _watch_catch_up(self, event: MembershipEvent, new: NodeId) -> None:
        """Time the new node until its applied index reaches what the cluster had committed
        when the change was asked for, counting the bytes sent to it meanwhile."""
        sim = self.sim
        leader = sim.leader()
        statuses = sim.statuses
        event.node = new
        event.catch_up_index = (statuses[leader].commit_index if leader in statuses else
                                max((s.commit_index for s in statuses.values()), default=0))
        if not self._catching_up:
            sim.observers.append(self._count_catch_up)
        self._catching_up[new] = event

        def check() -> None:
            st = sim.statuses.get(new)
            if st is not None and st.applied_index >= (event.catch_up_index or 0):
                event.caught_up_ms = sim.now
                self._catching_up.pop(new, None)
            else:
                sim.at(sim.now + CATCH_UP_POLL_MS, check)

        check()

    def _count_catch_up(self, sent: float, msg: Message, delivered: float | None) -> None:
        event = self._catching_up.get(msg.dst)
        if event is not None and msg.src in self.sim.nodes:
            event.catch_up_bytes += len(encode_message(msg))

    def campaign(self, nid: NodeId) -> None:
        """Make a node start an election now (the dashboard's "time out")."""
        self.sim.campaign(nid)

    # -- Cluster ---------------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def wait_for_leader(self) -> float:
        # Small steps, so the clock starts within 5 ms of the election (as on the bus).
        sim = self.sim
        while sim.leader() is None and sim.now < self.LEADER_WITHIN_MS:
            sim.run(sim.now + 5.0)
        return sim.now

    async def run_until(self, t: float) -> None:
        self.sim.run(t)

    def statuses(self) -> Mapping[NodeId, Any]:
        return self.sim.statuses

    def measure(self, trace_window: tuple[float, float] | None) -> None:
        if not self.measuring:
            return
        messages, sizes, trace = self._messages, self._bytes, self._trace

        def observe(sent: float, msg: Message, delivered: float | None) -> None:
            kind = traffic_kind(msg)
            messages[kind] += 1
            sizes[kind] += len(encode_message(msg))
            if trace_window is not None and trace_window[0] <= sent <= trace_window[1]:
                trace.append({"sent": sent, "delivered": delivered, "src": msg.src,
                              "dst": msg.dst, "kind": kind})

        self.sim.observers.append(observe)

    def start_workload(self, workload: Workload, seed: int, at: float, end: float) -> None:
        # The clients' random streams derive from the simulation's seed (Simulation.seed).
        self.clients = [SimClient(f"c{i}", self.sim, workload)
                        for i in range(1, workload.clients + 1)]
        for client in self.clients:
            client.start(at)

    def stop_workload(self) -> None:
        for client in self.clients:
            client.stop()

    async def history(self) -> list[Operation]:
        return [op for c in self.clients for op in c.history]

    async def finish(self, ops: list[Operation]) -> Observed:
        sim = self.sim
        violations = [str(v) for v in sim.finish()]
        agreed = getattr(sim.checker, "agreed", {})
        committed = len({(c.client_id, c.seq) for c in agreed.values()
                         if c is not None and c.client_id != OPERATOR_ID})  # clients' only
        messages = self._messages if self.measuring else Counter(sim.stats.by_kind)
        return Observed(sim.role_events, sim.leader_events, violations, committed,
                        messages, self._bytes, self._trace,
                        {"trace_sha256": sim.trace_sha256, "events": sim.stats.events,
                         "violations": violations}, sim.commit_events)
