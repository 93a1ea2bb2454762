"""One simulated run end to end: cluster, clients, faults, settle, checks, summary.

This is what ``consensus-lab simulate`` runs: an experiment built from its flags (a seeded
random fault schedule, closed-loop clients from time 0) run through the same pipeline as
``consensus-lab run`` (:func:`consensus.experiment.runner.run`) on a simulated cluster, then
summarised with what only the simulator knows (events, messages, the trace hash).

After the workload's duration every fault is healed and crashed nodes restart; the cluster
then gets ``settle_s`` of quiet time so that in-flight commands finish and every node catches
up before the final checks.

Log compaction (``Config.snapshot_entries``) shows in two figures: ``snapshots``, how many
snapshots the nodes took (all nodes, all lives), and ``max_log_entries``, the most log entries
or slots any node held in memory (``held_entries()``), sampled whenever a node sends: every
drain that hands out replication does, and a log only grows by replication.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from consensus.algorithms import get_algorithm
from consensus.experiment.cluster import SimCluster
from consensus.experiment.metrics import latency_summary
from consensus.experiment.nemesis import Fault, random_schedule
from consensus.experiment.runner import RunPlan, run
from consensus.experiment.workload import Workload
from consensus.history import unanswered
from consensus.membership import Membership
from consensus.node import Config, Node
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
    snapshots: int = 0  # snapshots taken, all nodes and lives (0 without snapshot_entries)
    max_log_entries: int = 0  # the most entries / slots any node held (see the module doc)

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
    log_size = LogSizeSampler(sim)
    started = time.perf_counter()
    result = asyncio.run(run(SimCluster(sim, measure=False), plan, seed))
    wall = time.perf_counter() - started

    history = result.ops
    stalled = unanswered(history, settle_s)
    members = _final_members(sim)
    applied = {node.id: node.kv.applied for node in sim.live_nodes()
               if members is None or node.id in members}
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
        snapshots=log_size.snapshots(),
        max_log_entries=log_size.max_held,
    )


class LogSizeSampler:
    """Watches a simulation's nodes for the two compaction figures (see the module doc).

    Nodes are sampled as they send (a simulator observer, so the run itself is untouched);
    the snapshots of a life that ended are counted when a later message shows a new node
    object under the same id."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.max_held = 0
        self._lives: dict[str, Node] = {}  # the node object last seen per id
        self._ended_snapshots = 0  # taken by node lives that have ended
        sim.observers.append(self._observe)

    def _observe(self, _t: float, msg: Any, _at: float | None) -> None:
        node = self.sim.nodes.get(msg.src)
        if node is None:
            return
        last = self._lives.get(msg.src)
        if last is not node:
            if last is not None:
                self._ended_snapshots += getattr(last, "snapshots_taken", 0)
            self._lives[msg.src] = node
        held = getattr(node, "held_entries", None)
        if held is not None:
            n = held()
            if n > self.max_held:
                self.max_held = n

    def snapshots(self) -> int:
        """Snapshots taken so far: the ended lives' and the current ones'."""
        current = sum(getattr(n, "snapshots_taken", 0) for n in self._lives.values())
        return self._ended_snapshots + current


def _final_members(sim: Simulation) -> frozenset[str] | None:
    """The members of the configuration the leader acts on at the end: a node removed from
    it, or added by a change that failed, is not expected to keep up. Without a leader (an
    election at the very end), the furthest committed node's configuration: counting every
    node would count a server removed while it was down, which never learns it was removed.
    None when that node reports no configuration."""
    leader = sim.leader()
    status = sim.statuses.get(leader) if leader is not None else None
    if status is None:
        live = [st for nid, st in sorted(sim.statuses.items()) if sim.nodes.get(nid) is not None]
        status = max(live, key=lambda st: (st.commit_index, st.term), default=None)
    if status is None or not status.config:
        return None
    return Membership.from_text(status.config).members


FAULT_MODES = ("random", "random+membership", "none")


def _schedule(faults: str | list[Fault], ids: tuple[str, ...], duration_ms: float,
              seed: int) -> list[Fault]:
    if faults == "random":
        return random_schedule(ids, duration_ms, seed)
    if faults == "random+membership":
        return random_schedule(ids, duration_ms, seed, membership=True)
    if faults == "none":
        return []
    if isinstance(faults, str):
        raise ValueError(f"unknown fault mode {faults!r} (choose {', '.join(FAULT_MODES)})")
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


@dataclass(frozen=True, slots=True)
class SweepKnobs:
    """The leader-stability knobs a sweep seed picks (see :func:`sweep_run`)."""

    pre_vote: bool
    check_quorum: bool
    disk_ms: float

    def variant(self) -> str:
        """A short name for the combination: ``prevote+cq``, ``cq+disk6ms``, ``plain``."""
        parts = [name for name, on in (("prevote", self.pre_vote),
                                       ("cq", self.check_quorum)) if on]
        if self.disk_ms:
            parts.append(f"disk{self.disk_ms:g}ms")
        return "+".join(parts) or "plain"


def sweep_snapshot_entries(seed: int, membership: bool) -> int:
    """Compaction in a membership sweep: a snapshot every 50-400 entries on two seeds in
    three (so new members often catch up by snapshot); off in the plain sweep."""
    return 50 * (1 + seed % 8) if membership and seed % 3 != 1 else 0


def sweep_knobs(seed: int) -> SweepKnobs:
    """PreVote on even seeds, CheckQuorum off on multiples of 3, a 1-7 ms disk on one in four."""
    return SweepKnobs(seed % 2 == 0, seed % 3 != 0, sweep_disk_ms(seed))


def sweep_run(algorithm: str, seed: int, nodes: int = 5, duration_s: float = 10.0,
              node_class: type | None = None) -> SimResult:
    """One seed of a randomised sweep: the seed picks the faults *and* the leader-stability
    knobs (PreVote and CheckQuorum on or off), so every combination gets exercised; one seed
    in four gives the disk 1-7 ms per write, so leaders write their logs in parallel with
    replicating them and crashes lose unwritten records (the node runtime's path)."""
    knobs = sweep_knobs(seed)
    config = Config(pre_vote=knobs.pre_vote, check_quorum=knobs.check_quorum)
    return simulate(algorithm, nodes, duration_s, seed, "random", config=config,
                    settle_s=SWEEP_SETTLE_S, disk_ms=knobs.disk_ms, node_class=node_class)


def sweep_disk_ms(seed: int) -> float:
    return float(1 + seed % 7) if seed % 4 == 1 else 0.0


def load_node_class(path: str) -> type[Node]:
    """``module:Class`` -> the class, importable by whoever runs it (workers too); a clear
    ValueError when it is not a node class."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"a node class is module:Class, e.g. "
                         f"tests.scenario_driver:UnsafeRaftNode; got {path!r}")
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        # First, as `python -m` would: the console script puts only its own folder there, and
        # a node class usually comes from the checkout one stands in (tests.scenario_driver;
        # some installed packages ship a top-level `tests` that would shadow it otherwise).
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for node class {path!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise ValueError(f"{path!r} is not a node class (a subclass of consensus.node.Node)")
    return cls


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Every ``consensus-lab simulate`` option that changes a run, expanded: what a failing
    sweep seed records so that it can be rerun on one machine, by :meth:`run` or by the
    command line :meth:`command` prints (the two give the same trace)."""

    algorithm: str
    seed: int
    nodes: int = 5
    duration: float = 60.0
    settle: float = SETTLE_S
    faults: str = "random"
    clients: int = 4
    heartbeat_ms: float = 50.0
    election_timeout_ms: tuple[float, float] = (150.0, 300.0)
    latency_ms: tuple[float, float] = (1.0, 5.0)
    loss: float = 0.0
    disk_ms: float = 0.0
    pre_vote: bool = True
    check_quorum: bool = True
    node_class: str | None = None
    snapshot_entries: int = 0

    @classmethod
    def for_sweep(cls, algorithm: str, seed: int, nodes: int, duration: float,
                  node_class: str | None = None, settle: float = SWEEP_SETTLE_S,
                  membership: bool = False) -> SimOptions:
        """The options :func:`sweep_run` uses for this seed (``membership``: the schedule
        also changes the membership, and two seeds in three compact their logs)."""
        knobs = sweep_knobs(seed)
        return cls(algorithm, seed, nodes, duration, settle,
                   faults="random+membership" if membership else "random",
                   disk_ms=knobs.disk_ms, pre_vote=knobs.pre_vote,
                   check_quorum=knobs.check_quorum, node_class=node_class,
                   snapshot_entries=sweep_snapshot_entries(seed, membership))

    def run(self, faults: list[Fault] | None = None) -> SimResult:
        """Simulate with these options; ``faults`` replaces the seeded schedule (a prefix)."""
        config = Config(heartbeat_ms=self.heartbeat_ms,
                        election_timeout_ms=self.election_timeout_ms,
                        pre_vote=self.pre_vote, check_quorum=self.check_quorum,
                        snapshot_entries=self.snapshot_entries)
        network = Network(latency_ms=self.latency_ms, loss=self.loss)
        node_class = load_node_class(self.node_class) if self.node_class else None
        return simulate(self.algorithm, self.nodes, self.duration, self.seed,
                        self.faults if faults is None else faults, config=config,
                        network=network, workload=Workload(clients=self.clients),
                        settle_s=self.settle, node_class=node_class, disk_ms=self.disk_ms)

    def schedule(self) -> list[Fault]:
        """The fault schedule this run applies (the seeded one for ``faults=random``)."""
        ids = tuple(f"n{i}" for i in range(1, self.nodes + 1))
        return _schedule(self.faults, ids, self.duration * 1000, self.seed)

    def command(self) -> str:
        """The shell command that runs exactly this simulation."""
        argv = ["consensus-lab", "simulate", "--algorithm", self.algorithm,
                "--seed", str(self.seed), "--nodes", str(self.nodes),
                "--duration", f"{self.duration:g}", "--settle", f"{self.settle:g}",
                "--faults", self.faults, "--clients", str(self.clients),
                "--heartbeat-ms", f"{self.heartbeat_ms:g}",
                "--election-timeout-ms", _range(self.election_timeout_ms),
                "--latency-ms", _range(self.latency_ms), "--loss", f"{self.loss:g}",
                "--disk-ms", f"{self.disk_ms:g}",
                "--pre-vote" if self.pre_vote else "--no-pre-vote",
                "--check-quorum" if self.check_quorum else "--no-check-quorum"]
        if self.node_class:
            argv += ["--node-class", self.node_class]
        if self.snapshot_entries:
            argv += ["--snapshot-entries", str(self.snapshot_entries)]
        return shlex.join(argv)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown simulate options: {', '.join(unknown)}")
        values = dict(data)
        for name in ("election_timeout_ms", "latency_ms"):
            if name in values:
                values[name] = tuple(float(x) for x in values[name])
        return cls(**values)


def _range(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}-{bounds[1]:g}"


def fault_to_json(fault: Fault) -> dict[str, Any]:
    return asdict(fault)


def fault_from_json(data: dict[str, Any]) -> Fault:
    values = dict(data)
    for name in ("groups", "links", "one_way"):
        values[name] = tuple(tuple(g) for g in values.get(name, ()))
    return Fault(**values)
