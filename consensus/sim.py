"""A deterministic discrete-event simulator that drives unchanged node code.

Theory of operation
-------------------
Events sit in a heap keyed ``(time, seq)``: ``seq`` is a global counter, so ties are broken by
the order events were scheduled, never by object identity or set order. Handling an event
means: advance the node's clock (``tick``), hand it the message (``step``), drain its
``ready()`` (persist, then send, then answer clients), let the safety checker look, and schedule
the node's next tick at exactly ``next_deadline()`` -- no polling, which is why thousands of
simulated seconds pass per wall second.

Randomness comes from independent streams seeded from the run's seed (network, clients,
faults, and one per node life), so the workload and the fault schedule are the same whichever
algorithm runs, and the same seed gives the same trace bit for bit whatever ``PYTHONHASHSEED``
is. Every delivery (time, type, sender, receiver), fault, leader change and applied command is
folded into ``trace_sha256``.

The network model: a latency distribution, independent loss and duplication, reordering (from
the latency spread; off with ``Network(reorder=False)``, which makes every link FIFO as the
MQTT bus is, and which the experiment runner uses), partitions and one-way cuts between
nodes, and message filters for scenario tests (etcd's ``deliver-msgs drop=...``). A crash
loses everything but what the node persisted; a paused node keeps its state but hears nothing
until resumed (like SIGSTOP).
Clients are outside the cluster: partitions and loss apply between nodes only.

Clocks: each node reads its own clock, by default the simulated one. ``clock_rates`` (or
``set_clock_rate`` during a run) makes a node's clock run at another rate from then on (0.5:
half as fast), so its timers fire later or sooner in simulated time. That is how an
assumption about clock drift, such as the leader lease's ``lease_drift``, is broken on purpose.

What a simulated millisecond is: a millisecond of wall time on a network whose one-way delay
per message is the spec's ``latency_ms`` (client to node as well as node to node), with nodes
that take no CPU time (unless ``processing`` charges some per message) and a disk that takes
no time (unless ``disk_ms``). Time passes only in the links, so a client's latency is the sum
of its path's link delays: client -> leader, leader -> followers and back (the majority's
slower half), leader -> client; with the library's 1-5 ms links that is about 11.5 ms at the
median (measured 12.1 ms on FIFO links). Loopback MQTT, where the real bus runs, is more like
0.2-0.6 ms per hop: the simulator with those links gives a median of 1.6 ms, as the bus's
2-3 ms. The rest of a simulated open-loop latency is the client's own queue: each workload
client has one command in flight (a Jepsen-style process), so at 400 ops/s over 8 clients a
command arriving every 20 ms on average waits behind one served in 12.1 ms (60% busy), which
adds about 5 ms at the median (docs/comparison.md).
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.algorithms import Algorithm, get_algorithm
from consensus.check.invariants import Checker, Violation
from consensus.group_commit import GroupCommitter
from consensus.messages import ClientReply, ClientRequest, Message, NodeId
from consensus.node import Config, Node, Ready, Status
from consensus.storage import MemoryStorage
from consensus.telemetry import leader_of

_DELIVER, _TICK, _CALL = 0, 1, 2
_INF = float("inf")
# Trace lines are hashed in batches (one sha256 update per batch is the same digest as one per
# line, at a fraction of the calls); this bounds the memory the pending lines take.
_HASH_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Network:
    """The simulated network between nodes (and, for latency only, to clients)."""

    latency_ms: tuple[float, float] = (1.0, 5.0)
    distribution: str = "uniform"  # uniform | constant (min) | exponential (min + exp(mean-min))
    loss: float = 0.0
    duplicate: float = 0.0
    # Whether messages on one link (sender -> receiver) may overtake each other. Off, each
    # link is FIFO, as TCP and the MQTT broker are (a message is delivered no earlier than the
    # one sent before it on its link): the real bus never reorders a link, and reordering
    # costs Raft refusals and resends (its log must arrive in order) that Multi-Paxos's
    # independent slots do not pay. On, it is a stress test (the safety sweep).
    reorder: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.latency_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"latency_ms must be 0 <= min <= max, got {(lo, hi)}")
        if self.distribution not in ("uniform", "constant", "exponential"):
            raise ValueError(f"unknown latency distribution {self.distribution!r}")
        for name in ("loss", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")

    def sample(self, rng: random.Random) -> float:
        lo, hi = self.latency_ms
        if self.distribution == "constant" or lo == hi:
            return lo
        if self.distribution == "uniform":
            return rng.uniform(lo, hi)
        return lo + rng.expovariate(1.0 / (hi - lo))


@dataclass(frozen=True, slots=True)
class Processing:
    """The CPU time a node spends on each inbound message (off by default).

    A node handles one message at a time: a message that arrives while the node is busy waits
    its turn. Without it the simulated cluster has no service time, so throughput only ever
    stops growing for lack of clients; with it, load sweeps show a real saturation point.
    """

    per_message_ms: float = 0.0
    per_entry_ms: float = 0.0  # per command carried (AppendEntries entries, Accept commands)

    def cost(self, msg: Message) -> float:
        entries = getattr(msg, "entries", getattr(msg, "commands", ()))
        return self.per_message_ms + self.per_entry_ms * len(entries)

    @property
    def enabled(self) -> bool:
        return self.per_message_ms > 0 or self.per_entry_ms > 0


@dataclass(slots=True)
class Stats:
    events: int = 0
    sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Simulation:
    """One cluster of one algorithm on a virtual clock. See the module docstring."""

    def __init__(
        self,
        algorithm: str | Algorithm = "raft",
        nodes: int | Sequence[NodeId] = 3,
        seed: int = 0,
        config: Config | None = None,
        network: Network | None = None,
        checker: Checker | None = None,
        node_class: type[Node] | None = None,
        record_trace: bool = False,
        processing: Processing | None = None,
        disk_ms: float = 0.0,
        clock_rates: dict[NodeId, float] | None = None,
    ) -> None:
        self.algorithm = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
        self.ids: tuple[NodeId, ...] = (
            tuple(f"n{i}" for i in range(1, nodes + 1)) if isinstance(nodes, int)
            else tuple(sorted(nodes)))
        # The initial configuration every node starts from (ids grows with add_node), and
        # the nodes added since, which start (and restart) as joining nodes.
        self.initial_ids = self.ids
        self.joined: set[NodeId] = set()
        self.seed = seed
        self.config = config or Config()
        self.network = network or Network()  # a property, like processing: see below
        self.processing = processing or Processing()
        self._busy_until: dict[NodeId, float] = {}
        self.node_class = node_class or self.algorithm.node_class
        self.checker = checker if checker is not None else self.algorithm.checker_class()
        # The disk: 0 writes records at once (before anything leaves, as the node runtime's
        # rule says). Above 0, a write takes 0.5-1.5x that long (fsyncs vary, so a leader's
        # own write may finish after a follower's), as in the node runtime's group
        # committer: one write in flight per node, the next one gathered meanwhile, output
        # held until its records are written, a leader's replication sent at once
        # (Node.async_persist), and a crash loses what was not written yet.
        self.disk_ms = disk_ms
        self._disk_rng = random.Random(f"{seed}/disk")
        self._committers: dict[NodeId, GroupCommitter[Ready]] = {}  # per node life
        if disk_ms > 0:
            self.checker.records_when_durable = True
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._net_rng = random.Random(f"{seed}/network")
        self.nodes: dict[NodeId, Node | None] = {}
        self.storage: dict[NodeId, list[Any]] = {i: [] for i in self.ids}
        self.lives: dict[NodeId, int] = dict.fromkeys(self.ids, 0)
        self.paused: dict[NodeId, list[Message]] = {}
        self.blocked: set[tuple[NodeId, NodeId]] = set()  # (src, dst) pairs that drop
        self.filters: list[Callable[[Message], bool]] = []  # True = drop this message
        self.loss_override: float | None = None
        self.delay_extra = 0.0
        self.duplicate_override: float | None = None
        self.clients: dict[str, Any] = {}
        self._tick_due: dict[NodeId, float] = {}
        self._hash = hashlib.sha256()
        self._pending_hash: list[str] = []  # trace lines not yet folded into _hash, in order
        self.trace: list[str] | None = [] if record_trace else None
        self.stats = Stats()
        self.leaders_seen: set[tuple[int, NodeId]] = set()
        self.leader_events: list[tuple[float, NodeId, int]] = []  # (time, leader, term)
        # (time, leader, term): a leader's first commit of a client command in its term.
        self.commit_events: list[tuple[float, NodeId, int]] = []
        self._leaders_committed: set[tuple[int, NodeId]] = set()
        self.statuses: dict[NodeId, Status] = {}
        self.role_events: list[tuple[float, NodeId, str, int]] = []  # (time, node, role, term)
        # Called for every message sent: (send time, message, delivery time or None if dropped).
        self.observers: list[Callable[[float, Message, float | None], None]] = []
        # Nodes whose clock runs at another rate: nid -> (simulated t0, its clock at t0, rate).
        self._clocks: dict[NodeId, tuple[float, float, float]] = {}
        for nid, rate in sorted((clock_rates or {}).items()):
            if nid not in self.ids:
                raise ValueError(f"clock rate for {nid!r}, which is not a node "
                                 f"({', '.join(self.ids)})")
            self.set_clock_rate(nid, rate)
        # Reads answered off the log are checked for linearizability, not as log entries.
        self.checker.reads_off_log = self.config.read_path != "log"
        for nid in self.ids:
            self._start(nid)

    # The network model and the CPU model are read for every message: what the hot path needs
    # is derived once here, when they are set (the dashboard swaps the network mid-run).

    @property
    def network(self) -> Network:
        return self._network

    @network.setter
    def network(self, network: Network) -> None:
        self._network = network
        lo, hi = network.latency_ms
        self._lat_lo = lo
        self._lat_span = hi - lo
        # 0: constant, 1: uniform, 2: exponential, exactly as Network.sample draws them;
        # 3: a subclass's own sample().
        self._reorder = network.reorder
        self._link_last: dict[tuple[NodeId, NodeId], float] = {}  # FIFO links: last delivery
        self._lat_mode = (3 if type(network).sample is not Network.sample
                          else 0 if network.distribution == "constant" or lo == hi
                          else 1 if network.distribution == "uniform" else 2)

    @property
    def processing(self) -> Processing:
        return self._processing

    @processing.setter
    def processing(self, processing: Processing) -> None:
        self._processing = processing
        self._processing_on = processing.enabled

    # -- nodes ---------------------------------------------------------------------------

    def add_node(self, nid: NodeId) -> None:
        """Start a new, empty node that joins the cluster: it has no configuration until the
        leader adds it (a ConfigChange) and replicates to it. Routing to and from it works
        like any node's."""
        if nid in self.storage:
            raise ValueError(f"node {nid!r} already exists ({', '.join(self.ids)})")
        if not nid or any(c.isspace() or c in ",=" for c in nid):
            raise ValueError(f"bad node id {nid!r}: no spaces, commas or '='")
        self.ids = tuple(sorted((*self.ids, nid)))
        self.joined.add(nid)
        self.storage[nid] = []
        self.lives[nid] = 0
        self._record(f"add {nid}")
        self._start(nid)

    def _start(self, nid: NodeId) -> None:
        life = self.lives[nid]
        rng = random.Random(f"{self.seed}/{nid}/{life}")
        if nid in self.joined:
            node = self.node_class(nid, self.initial_ids, self.config, rng, joining=True)
        else:
            node = self.node_class(nid, self.initial_ids, self.config, rng)
        node.async_persist = self.disk_ms > 0
        if self.disk_ms:
            self._committers[nid] = GroupCommitter(
                MemoryStorage(self.storage[nid]),
                lambda ready: self._disk_release(nid, ready),
                start_write=lambda records, done: self._disk_start(nid, life, records, done))
        node.tick(self.clock(nid))
        if self.storage[nid]:
            node.restore(list(self.storage[nid]))
        self.nodes[nid] = node
        self._drain(node)

    def live_nodes(self) -> list[Node]:
        return [n for n in (self.nodes[i] for i in self.ids) if n is not None]

    def crash(self, nid: NodeId) -> None:
        """Kill a node: its volatile state is gone; only ``storage[nid]`` survives."""
        if self.nodes.get(nid) is None:
            return
        self._record(f"crash {nid}")
        self.nodes[nid] = None
        self.paused.pop(nid, None)
        self._busy_until.pop(nid, None)
        self._tick_due.pop(nid, None)
        self.statuses.pop(nid, None)
        self._committers.pop(nid, None)  # unwritten records are lost, their output unsent
        self.checker.on_crash(self.now, nid)

    def restart(self, nid: NodeId) -> None:
        """Bring a crashed node back from what it persisted."""
        if self.nodes.get(nid) is not None:
            return
        self._record(f"restart {nid}")
        self.lives[nid] += 1
        self._start(nid)

    def pause(self, nid: NodeId) -> None:
        if self.nodes.get(nid) is not None and nid not in self.paused:
            self._record(f"pause {nid}")
            self.paused[nid] = []
            self._tick_due.pop(nid, None)

    def resume(self, nid: NodeId) -> None:
        held = self.paused.pop(nid, None)
        if held is None:
            return
        self._record(f"resume {nid}")
        node = self.nodes[nid]
        assert node is not None
        node.tick(self.clock(nid))
        self._drain(node)
        for msg in held:
            self._deliver(msg)

    def campaign(self, nid: NodeId) -> None:
        """Make a node start an election now (etcd's ``campaign``, the dashboard's button)."""
        node = self.nodes[nid]
        if node is None:
            return
        self._record(f"campaign {nid}")
        node.tick(self.clock(nid))
        node.campaign()
        self._drain(node)

    # -- clocks --------------------------------------------------------------------------

    def clock(self, nid: NodeId) -> float:
        """What ``nid``'s own clock reads now (the simulated time unless its rate was set)."""
        c = self._clocks.get(nid)
        return self.now if c is None else c[1] + c[2] * (self.now - c[0])

    def set_clock_rate(self, nid: NodeId, rate: float) -> None:
        """From now on ``nid``'s clock advances ``rate`` ms per simulated ms (clock drift)."""
        if not 0 < rate <= 1000:
            raise ValueError(f"a clock rate must be above 0 (and at most 1000), got {rate}")
        self._record(f"clock {nid} rate {rate!r}")
        self._clocks[nid] = (self.now, self.clock(nid), rate)
        node = self.nodes.get(nid)
        if node is not None and nid not in self.paused:
            # Its next timer falls at another simulated time now.
            self._tick_due.pop(nid, None)
            node.tick(self.clock(nid))
            self._drain(node)

    def _sim_time(self, nid: NodeId, local: float) -> float:
        """The simulated time at which ``nid``'s clock reads ``local`` (or just after it, so
        the node's timer is due when its tick comes: no tick spins on rounding)."""
        if local == _INF:
            return _INF
        t0, l0, rate = self._clocks[nid]
        t = t0 + (local - l0) / rate
        step = math.ulp(t)
        while l0 + rate * (t - t0) < local:  # a few rounding steps at most (step doubles)
            t += step
            step *= 2
        return t

    # -- network faults ------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[NodeId]]) -> None:
        """Split the nodes into groups that cannot reach each other (replaces older cuts)."""
        groups = [sorted(g) for g in groups]
        self._record(f"partition {groups}")
        where = {n: i for i, g in enumerate(groups) for n in g}
        self.blocked = {(a, b) for a in self.ids for b in self.ids
                        if a != b and where.get(a, -1) != where.get(b, -2)}

    def cut(self, src: Iterable[NodeId], dst: Iterable[NodeId]) -> None:
        """One-way cut: messages from any of ``src`` to any of ``dst`` are dropped."""
        src, dst = sorted(src), sorted(dst)
        self._record(f"cut {src}->{dst}")
        self.blocked |= {(a, b) for a in src for b in dst if a != b}

    def isolate(self, nid: NodeId) -> None:
        self.partition([[nid], [n for n in self.ids if n != nid]])

    def set_blocked(self, pairs: set[tuple[NodeId, NodeId]], label: str) -> None:
        """Drop every message from ``a`` to ``b`` for each ``(a, b)`` (replaces older cuts)."""
        self._record(label)
        self.blocked = set(pairs)

    def is_up(self, nid: NodeId) -> bool:
        return self.nodes.get(nid) is not None

    def heal(self) -> None:
        """Remove every partition and cut (loss/delay/duplicate windows end on their own)."""
        self._record("heal")
        self.blocked = set()

    def set_window(self, *, loss: float | None = None, duplicate: float | None = None,
                   delay: float = 0.0) -> None:
        """Override the network's loss/duplication and add up to ``delay`` ms of jitter to every
        message; ``None`` restores the model's rate."""
        self._record(f"network loss={loss} duplicate={duplicate} delay={delay}")
        self.loss_override, self.duplicate_override, self.delay_extra = loss, duplicate, delay

    # -- time ----------------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at simulated time ``t`` (ms)."""
        self._push(max(t, self.now), _CALL, fn)

    def run(self, until: float) -> None:
        """Process every event up to simulated time ``until`` (ms)."""
        # The loop allocates millions of short-lived, acyclic objects, and the cyclic garbage
        # collector's passes over the ever larger heap (logs, checker state) took 8-17% of the
        # run while finding nothing: events make no reference cycles. So it pauses here; a
        # finished simulation's cycles (sim <-> clients) are collected as usual afterwards.
        if not gc.isenabled():
            self._run(until)
            return
        gc.disable()
        try:
            self._run(until)
        finally:
            gc.enable()

    def _run(self, until: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        stats = self.stats
        nodes = self.nodes
        tick_due = self._tick_due
        deliver = self._deliver
        drain = self._drain
        pending_hash = self._pending_hash
        while heap and heap[0][0] <= until:
            t, _, kind, payload = pop(heap)
            self.now = t
            stats.events += 1
            if kind == _DELIVER:
                deliver(payload)
            elif kind == _TICK:
                node = nodes.get(payload)
                if node is not None and tick_due.get(payload) == t:
                    del tick_due[payload]
                    node.tick(t if payload not in self._clocks else self.clock(payload))
                    drain(node)
            else:
                payload()
            if len(pending_hash) >= _HASH_BATCH:
                self._fold_hash()
        self.now = max(self.now, until)

    def run_for(self, ms: float) -> None:
        self.run(self.now + ms)

    def _push(self, t: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    # -- message flow --------------------------------------------------------------------

    def _drain(self, node: Node) -> None:
        ready = node.ready()
        nid = node.id
        now = self.now
        if self.disk_ms:
            for msg in ready.early:
                self._transmit(msg)
            if ready.persist or ready.messages or ready.replies:
                self._committers[nid].submit(ready.persist, ready)
        else:
            if ready.persist:  # durable before anything leaves; a snapshot replaces the rest
                MemoryStorage(self.storage[nid]).append(ready.persist)
            if ready.messages or ready.replies:
                transmit = self._transmit
                for msg in ready.messages:
                    transmit(msg)
                for reply in ready.replies:
                    transmit(reply)
        if ready.applied:
            pending_hash = self._pending_hash
            for a in ready.applied:
                pending_hash.append(f"{nid}@{a.index}={a.command}")
        status = node.status()
        statuses = self.statuses
        previous = statuses.get(nid)
        statuses[nid] = status
        role = status.role
        if previous is None or previous.role != role:
            self.role_events.append((now, nid, role, status.term))
        if role == "leader" and (status.term, nid) not in self.leaders_seen:
            self.leaders_seen.add((status.term, nid))
            self.leader_events.append((now, nid, status.term))
            self._record(f"leader {nid} term {status.term}")
        if (role == "leader" and ready.applied
                and (status.term, nid) not in self._leaders_committed
                and any(a.command is not None for a in ready.applied)):
            self._leaders_committed.add((status.term, nid))
            self.commit_events.append((now, nid, status.term))
        self.checker.after_ready(now, node, ready, status)
        if nid not in self.paused:
            due = node.next_deadline()
            if nid in self._clocks:
                due = self._sim_time(nid, due)
            tick_due = self._tick_due
            if due < tick_due.get(nid, _INF):
                if due < now:
                    due = now
                tick_due[nid] = due
                self._seq += 1
                heapq.heappush(self._heap, (due, self._seq, _TICK, nid))

    # -- the disk (disk_ms > 0) -----------------------------------------------------------
    # Each node life has the node runtime's GroupCommitter; its background writes are events
    # here, each taking 0.5-1.5x disk_ms.

    def _disk_start(self, nid: NodeId, life: int, records: list[Any],
                    done: Callable[[BaseException | None], None]) -> None:
        took = self.disk_ms * (0.5 + self._disk_rng.random())
        self._push(self.now + took, _CALL, lambda: self._disk_done(nid, life, records, done))

    def _disk_done(self, nid: NodeId, life: int, records: list[Any],
                   done: Callable[[BaseException | None], None]) -> None:
        node = self.nodes.get(nid)
        if node is None or self.lives[nid] != life:
            return  # crashed meanwhile: the write never finished
        if nid in self.paused:  # a stopped process cannot act on its finished write yet
            self._push(self.now + self.disk_ms, _CALL,
                       lambda: self._disk_done(nid, life, records, done))
            return
        MemoryStorage(self.storage[nid]).append(records)
        done(None)
        if node.has_output():
            node.tick(self.clock(nid))
            self._drain(node)

    def _disk_release(self, nid: NodeId, ready: Ready) -> None:
        """A drain's records are durable: tell the checker and the node, send what waited."""
        node = self.nodes[nid]
        assert node is not None
        if ready.persist:
            self.checker.after_durable(self.now, node, ready.persist)
        node.persisted(ready.seq)
        for msg in ready.messages:
            self._transmit(msg)
        for reply in ready.replies:
            self._transmit(reply)

    def _transmit(self, msg: Message) -> None:
        stats = self.stats
        stats.sent += 1
        kind = msg.kind
        by_kind = stats.by_kind
        by_kind[kind] = by_kind.get(kind, 0) + 1
        rng = self._net_rng
        now = self.now
        storage = self.storage
        between_nodes = msg.src in storage and msg.dst in storage
        if between_nodes:
            loss = self._network.loss if self.loss_override is None else self.loss_override
            if ((msg.src, msg.dst) in self.blocked or (loss and rng.random() < loss)
                    or (self.filters and any(f(msg) for f in self.filters))):
                for observe in self.observers:
                    observe(now, msg, None)
                return
        # _latency, inlined for the common case (no delay window): one call per message fewer.
        mode = self._lat_mode
        if self.delay_extra or mode == 3:
            latency = self._latency(rng)
        elif mode == 1:
            latency = self._lat_lo + self._lat_span * rng.random()  # = rng.uniform(lo, hi)
        elif mode == 0:
            latency = self._lat_lo
        else:
            latency = self._lat_lo + rng.expovariate(1.0 / self._lat_span)
        at = now + latency
        if not self._reorder:
            link = (msg.src, msg.dst)
            last = self._link_last.get(link, 0.0)
            if at < last:
                at = last  # FIFO link: not before the message sent ahead of it
            self._link_last[link] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, _DELIVER, msg))
        if self.observers:
            for observe in self.observers:
                observe(now, msg, at)
        if between_nodes:
            dup = (self._network.duplicate if self.duplicate_override is None
                   else self.duplicate_override)
            if dup and rng.random() < dup:
                self._push(now + self._latency(rng), _DELIVER, msg)

    def _latency(self, rng: random.Random) -> float:
        """The model's latency, plus a delay window's jitter: uniform in [0, delay] ms."""
        latency = self._network.sample(rng)
        if self.delay_extra:
            latency += rng.uniform(0.0, self.delay_extra)
        return latency

    def _deliver(self, msg: Message) -> None:
        dst = msg.dst
        now = self.now
        # Type, ends and time of each delivery (full reprs cost a third of the run time); what
        # the messages carried shows up in the applied commands and role changes hashed too.
        self._pending_hash.append(f"{now!r} {msg.kind} {msg.src}>{dst}")
        if self.trace is not None:
            self.trace.append(f"{now!r} {msg!r}")
        client = self.clients.get(dst)
        if client is not None:
            client.on_reply(msg)
            return
        node = self.nodes.get(dst)
        if node is None:
            return
        if self.paused:
            held = self.paused.get(dst)
            if held is not None:
                held.append(msg)
                return
        if self._processing_on:
            busy = self._busy_until.get(dst, 0.0)
            if busy > now:
                self._push(busy, _DELIVER, msg)  # still busy: wait in the node's queue
                return
            self._busy_until[dst] = now + self._processing.cost(msg)
        node.tick(now if dst not in self._clocks else self.clock(dst))
        node.step(msg)
        self._drain(node)

    def send_client_request(self, req: ClientRequest) -> None:
        """Used by clients: a request travels to its node with the network's latency."""
        self._transmit(req)

    def on_client_reply(self, reply: ClientReply, command: Any) -> None:
        self.checker.on_client_reply(self.now, reply, command)

    # -- trace ---------------------------------------------------------------------------

    def _record(self, what: str) -> None:
        line = f"{self.now!r} {what}"
        self._pending_hash.append(line)
        if self.trace is not None:
            self.trace.append(line)

    def _fold_hash(self) -> None:
        """Hash the pending trace lines: sha256 of their concatenation, as line by line."""
        self._hash.update("".join(self._pending_hash).encode())
        self._pending_hash.clear()

    @property
    def trace_sha256(self) -> str:
        self._fold_hash()
        return self._hash.hexdigest()

    # -- observation ---------------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The live, unpaused node that leads with the highest (term, id) (telemetry's rule)."""
        return leader_of(self.statuses, down=self.paused)

    def status(self, nid: NodeId) -> Status | None:
        return self.statuses.get(nid)

    def finish(self) -> list[Violation]:
        """Run the end-of-run checks and return every violation found."""
        self.checker.finish(self.now, dict(self.nodes))
        return self.checker.violations

    @property
    def violations(self) -> list[Violation]:
        return self.checker.violations
