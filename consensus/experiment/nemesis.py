"""Fault schedules: timed crashes, restarts, pauses, partitions, cuts, link faults and lossy
windows.

A schedule is a list of :class:`Fault` s fixed in advance from a seed, so both algorithms face
the same one. Targets that only mean something at the moment (``leader``, ``crashed``,
``paused``) are resolved then, in each algorithm's own cluster, by the same rule.

Role tokens name a node by the part it plays when the fault fires, by one rule for both
algorithms (:func:`resolve_role`): ``leader``; ``follower1`` .. ``followerK``, the current
leader's followers in id order; ``most-lagging``, the follower with the lowest applied index
(ties go to the lower id). A link fault (``links``) cuts pairs of nodes both ways (``cut``) or
one way (``one_way``), adding to the links already cut, so partial connectivity can be built in
steps (OmniPaxos's quorum-loss, constrained-election and chained scenarios); ``heal`` restores
every link.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consensus.membership import ChangeError, Membership
from consensus.messages import NodeId

MEMBERSHIP_ACTIONS = ("add", "remove", "replace", "transfer")


@dataclass(frozen=True, slots=True)
class Fault:
    at_ms: float
    # crash restart pause resume partition cut heal loss delay duplicate clock, and the
    # membership changes add remove replace transfer
    action: str
    target: str | None = None  # a node id, or leader | crashed | paused; replace: the old node
    groups: tuple[tuple[NodeId, ...], ...] = ()  # partition groups; cut: (from, to)
    shape: str | None = None  # partition: majorities-ring | bridge | random-halves
    # loss/duplicate probability, extra delay in ms, or a clock's rate (simulator only)
    amount: float = 0.0
    duration_ms: float = 0.0  # for loss/delay/duplicate windows
    # links: pairs cut both ways, and (from, to) pairs cut one way; names or role tokens
    links: tuple[tuple[str, str], ...] = ()
    one_way: tuple[tuple[str, str], ...] = ()
    node: NodeId | None = None  # add/replace: the new node's id

    def label(self) -> str:
        """What the schedule asks for, in words: ``crash leader``, ``loss 20% for 1.5s``."""
        what = self.action
        if self.target:
            what += f" {self.target}"
        if self.action == "links":
            what += links_text(self.links, self.one_way)
        if self.action == "partition":
            what += " " + (self.shape or " | ".join(",".join(g) for g in self.groups))
        if self.action == "cut":
            what += f" {','.join(self.groups[0])} -> {','.join(self.groups[1])}"
        if self.action in ("loss", "duplicate"):
            what += f" {self.amount:.0%} for {self.duration_ms / 1000:.1f}s"
        if self.action == "delay":
            what += f" +{self.amount:.0f}ms for {self.duration_ms / 1000:.1f}s"
        if self.action == "clock":
            what += f" rate {self.amount:g}"
        if self.node is not None:
            what += f" {self.node}"
        return what

    def describe(self) -> str:
        """The label stamped with the scheduled time (the simulator's trace line)."""
        return f"T={self.at_ms / 1000:.1f}s {self.label()}"


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault as it was applied: what a run folder's ``events.jsonl`` records for it.

    ``nodes`` are the ids the target resolved to at that moment; ``skipped`` marks a fault
    that could not fire (no leader to crash, nothing paused to resume); ``final`` marks the
    heal-all at the end of the workload.
    """

    t: float
    action: str
    label: str
    nodes: tuple[NodeId, ...] = ()
    duration_ms: float | None = None
    skipped: bool = False
    final: bool = False
    # links: the resolved pairs it cut both ways and one way (ids, not role tokens)
    links: tuple[tuple[NodeId, NodeId], ...] = ()
    one_way: tuple[tuple[NodeId, NodeId], ...] = ()

    def to_json(self, t0: float = 0.0) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "fault", "t": self.t - t0, "action": self.action, "label": self.label,
            "nodes": list(self.nodes), "duration_ms": self.duration_ms,
            "skipped": self.skipped, "final": self.final}
        if self.action == "links":
            out["cut"] = [list(p) for p in self.links]
            out["one_way"] = [list(p) for p in self.one_way]
        return out

    def line(self, t0: float = 0.0) -> str:
        """One readable line: ``T=1.234s crash n3`` (``simulate --show-faults``)."""
        note = " (skipped: no such node now)" if self.skipped else ""
        return f"T={(self.t - t0) / 1000:.3f}s {self.label}{note}"


@dataclass(slots=True)
class MembershipEvent:
    """One membership change a schedule asked for (``add n6``, ``remove n2``, ``replace n2
    n7``, ``transfer n3``; role tokens already resolved), and how it ended: what the
    metrics measure a change's dip, recovery and catch-up from."""

    change: str
    requested_ms: float
    done_ms: float | None = None  # when the leader answered OK or with an error; None: never
    ok: bool = False
    result: str | None = None  # the configuration reached, or the error
    attempts: int = 0  # ConfigChange requests sent (retries after redirect/busy/timeout)
    # A new member's catch-up (add/replace): the leader's commit index when the change was
    # asked for, when the new node's applied index first reached it, and the protocol bytes
    # sent to the new node until then (as encoded for the bus).
    node: NodeId | None = None
    catch_up_index: int | None = None
    caught_up_ms: float | None = None
    catch_up_bytes: int = 0

    def to_json(self, t0: float = 0.0) -> dict[str, Any]:
        """The event on the experiment's clock (``t0``: its zero on the cluster's clock)."""
        return {"type": "membership", "t": self.requested_ms - t0, "change": self.change,
                "done_ms": None if self.done_ms is None else self.done_ms - t0,
                "ok": self.ok, "result": self.result, "attempts": self.attempts,
                # "added", not "node": an event with a "node" is that node's (leader, role)
                "added": self.node, "catch_up_index": self.catch_up_index,
                "caught_up_ms": None if self.caught_up_ms is None else self.caught_up_ms - t0,
                "catch_up_bytes": self.catch_up_bytes}


@dataclass(slots=True)
class _Model:
    """What the planner knows of the cluster: how many nodes it has taken down, and (with
    membership changes) how many members the configuration has and the next new id."""

    down: int = 0
    paused: int = 0
    split: bool = False
    members: int = 0
    next_id: int = 0


MAX_MEMBERS = 7  # random schedules grow a cluster no further than this
MIN_MEMBERS = 3  # ... and shrink it no further than this


def random_schedule(ids: Sequence[NodeId], duration_ms: float, seed: int,
                    mean_gap_ms: float = 1500.0, *, membership: bool = False) -> list[Fault]:
    """A seeded schedule mixing every fault kind, never taking down more than a minority.

    Nodes down (crashed or paused) never exceed ``(n - 1) // 2``, so once the network heals a
    majority can always make progress; partitions and cuts may still leave no majority for a
    while, which is the point.

    ``membership`` adds membership changes (add, remove, replace, transfer) to the mix, keeping
    3 to 7 members and a majority of the configuration up (a removal only while that leaves
    one). Nodes are then named by what they are when the fault fires (``random``, ``leader``,
    ``followerK``, ``random-halves``), since which ids are members depends on how the changes
    went. Without it the schedule is exactly the one earlier versions drew for the seed.
    """
    rng = random.Random(f"{seed}/faults")
    ids = sorted(ids)
    model = _Model(members=len(ids), next_id=len(ids) + 1)
    out: list[Fault] = []
    t = rng.uniform(0.5, 1.5) * mean_gap_ms
    while t < duration_ms:
        max_down = (model.members - 1) // 2
        choices = []
        if model.down + model.paused < max_down:
            choices += ["crash-leader", "crash-node", "pause-node"]
        if model.down:
            choices += ["restart", "restart"]
        if model.paused:
            choices += ["resume", "resume"]
        choices += ["heal", "heal"] if model.split else ["partition", "isolate", "cut"]
        choices += ["loss", "delay", "duplicate"]
        if membership:
            choices += _membership_choices(model)
        pick = rng.choice(choices)
        if pick in ("add", "remove", "replace", "transfer"):
            out.append(_membership_fault(pick, t, rng, model))
        elif membership and pick in ("crash-node", "pause-node", "partition", "isolate", "cut"):
            out.append(_by_role(pick, t, rng, model))
        else:
            out.append(_fault(pick, t, rng, ids, model))
        t += rng.uniform(0.3, 1.7) * mean_gap_ms
    return out


def _fault(pick: str, t: float, rng: random.Random, ids: list[NodeId], model: _Model) -> Fault:
    """One fault of a random schedule, naming nodes by id (the schedule without membership)."""
    if pick == "crash-leader":
        model.down += 1
        return Fault(t, "crash", "leader")
    if pick == "crash-node":
        model.down += 1
        return Fault(t, "crash", rng.choice(ids))
    if pick == "pause-node":
        model.paused += 1
        return Fault(t, "pause", rng.choice(ids))
    if pick == "restart":
        model.down = 0
        return Fault(t, "restart", "crashed")
    if pick == "resume":
        model.paused = 0
        return Fault(t, "resume", "paused")
    if pick == "heal":
        model.split = False
        return Fault(t, "heal")
    if pick in ("partition", "isolate"):
        shuffled = list(ids)
        rng.shuffle(shuffled)
        k = 1 if pick == "isolate" else rng.randrange(1, len(ids))
        model.split = True
        return Fault(t, "partition", groups=(tuple(sorted(shuffled[:k])),
                                             tuple(sorted(shuffled[k:]))))
    if pick == "cut":
        shuffled = list(ids)
        rng.shuffle(shuffled)
        k = rng.randrange(1, len(ids))
        model.split = True
        return Fault(t, "cut", groups=(tuple(sorted(shuffled[:k])),
                                       tuple(sorted(shuffled[k:]))))
    if pick == "loss":
        return Fault(t, "loss", amount=rng.uniform(0.05, 0.4), duration_ms=rng.uniform(500, 2500))
    if pick == "delay":
        return Fault(t, "delay", amount=rng.uniform(5, 60), duration_ms=rng.uniform(500, 2500))
    return Fault(t, "duplicate", amount=rng.uniform(0.05, 0.3),
                 duration_ms=rng.uniform(500, 2500))


def _membership_choices(model: _Model) -> list[str]:
    """The membership changes a random schedule may make now (see :func:`random_schedule`)."""
    out = ["transfer", "replace"]
    if model.members < MAX_MEMBERS:
        out.append("add")
    # After a removal (of a live node) a majority of the smaller configuration must be up.
    if model.members > MIN_MEMBERS and model.down + model.paused <= (model.members - 2) // 2:
        out.append("remove")
    return out


def _follower(rng: random.Random, model: _Model) -> str:
    return f"follower{rng.randrange(1, model.members)}"


def _membership_fault(pick: str, t: float, rng: random.Random, model: _Model) -> Fault:
    """A membership change of a random schedule; its target a role token resolved when it
    fires. The planner assumes each change goes through (the operator retries until it
    does)."""
    if pick == "add":
        node = f"n{model.next_id}"
        model.next_id += 1
        model.members += 1
        return Fault(t, "add", node=node)
    target = rng.choice(["leader", "random", _follower(rng, model)])
    if pick == "remove":
        model.members -= 1
        return Fault(t, "remove", target)
    if pick == "replace":
        node = f"n{model.next_id}"
        model.next_id += 1
        return Fault(t, "replace", target, node=node)
    return Fault(t, "transfer", _follower(rng, model))


def _by_role(pick: str, t: float, rng: random.Random, model: _Model) -> Fault:
    """A node or link fault naming nodes by role (which ids are members is not known when
    the schedule is drawn)."""
    if pick == "crash-node":
        model.down += 1
        return Fault(t, "crash", "random")
    if pick == "pause-node":
        model.paused += 1
        return Fault(t, "pause", "random")
    model.split = True
    if pick == "partition":
        return Fault(t, "partition", shape="random-halves")
    if pick == "isolate":
        return Fault(t, "isolate", rng.choice(["leader", _follower(rng, model)]))
    return Fault(t, "links", one_way=(("leader", _follower(rng, model)),
                                      (_follower(rng, model), "leader")))


class FaultTarget(Protocol):
    """What the nemesis needs of a cluster (the fault hooks of every
    :class:`~consensus.experiment.cluster.Cluster`, simulated or on the bus)."""

    ids: tuple[NodeId, ...]
    now: float

    def at(self, t: float, fn: Callable[[], None]) -> None: ...
    def leader(self) -> NodeId | None: ...
    def applied(self, nid: NodeId) -> int | None: ...  # applied index; None if unknown/down
    def is_up(self, nid: NodeId) -> bool: ...
    def crash(self, nid: NodeId) -> None: ...
    def restart(self, nid: NodeId) -> None: ...
    def pause(self, nid: NodeId) -> None: ...
    def resume(self, nid: NodeId) -> None: ...
    def set_blocked(self, pairs: set[tuple[NodeId, NodeId]], label: str) -> None: ...
    def set_window(self, *, loss: float | None = None, duplicate: float | None = None,
                   delay: float = 0.0) -> None: ...
    def set_clock_rate(self, nid: NodeId, rate: float) -> None: ...
    # Membership (issue 13). ``reconfigure`` starts an added node empty (``add``/``replace``),
    # then sends a ConfigChange to the leader and retries it, same seq, after a redirect, a
    # busy answer or a timeout, until it is answered OK or with an error; it returns at once
    # and appends a MembershipEvent to ``membership_events``, filled in as the change ends.
    membership_events: list[MembershipEvent]

    def reconfigure(self, change: str) -> None: ...


def links_text(both: Sequence[tuple[str, str]], one_way: Sequence[tuple[str, str]]) -> str:
    """`` cut a-b, c-d; one_way e->f``: a link fault's pairs, for labels."""
    text = ""
    if both:
        text += " cut " + ", ".join(f"{a}-{b}" for a, b in both)
    if one_way:
        text += (";" if both else "") + " one_way " + ", ".join(f"{a}->{b}" for a, b in one_way)
    return text


ROLE_TOKENS = ("leader", "most-lagging", "follower1..followerK")
_FOLLOWER = re.compile(r"follower([1-9][0-9]*)")


def id_order(ids: Iterable[NodeId]) -> list[NodeId]:
    """Ids in their natural order (``n2`` before ``n10``)."""
    return sorted(ids, key=lambda n: [int(p) if p.isdigit() else p
                                      for p in re.split(r"(\d+)", n)])


def is_role_token(name: str, nodes: int) -> bool:
    """Whether ``name`` is a role token that can name a node in a cluster of ``nodes``."""
    m = _FOLLOWER.fullmatch(name)
    return name in ("leader", "most-lagging") or (m is not None and int(m[1]) < nodes)


def resolve_role(name: str, ids: Sequence[NodeId], leader: NodeId | None,
                 applied: Callable[[NodeId], int | None]) -> NodeId | None:
    """The node ``name`` stands for now: a node id is itself; ``leader``, ``followerK`` and
    ``most-lagging`` follow the current leader (None while there is none, or when there is no
    such follower). ``applied(nid)`` is a node's applied index (None: down or not known)."""
    if name in ids:
        return name
    m = _FOLLOWER.fullmatch(name)
    if name not in ("leader", "most-lagging") and m is None:
        raise ValueError(f"{name!r} is neither a node ({', '.join(ids)}) nor a role token "
                         f"({', '.join(ROLE_TOKENS)})")
    if leader is None:
        return None
    if name == "leader":
        return leader
    followers = [n for n in id_order(ids) if n != leader]
    if m is not None:
        k = int(m[1])
        return followers[k - 1] if k <= len(followers) else None
    known = [(index, i, n) for i, n in enumerate(followers)
             if (index := applied(n)) is not None]
    return min(known)[2] if known else None


Pairs = list[tuple[NodeId, NodeId]]


def resolve_links(both: Iterable[Sequence[str]], one_way: Iterable[Sequence[str]],
                  ids: Sequence[NodeId], leader: NodeId | None,
                  applied: Callable[[NodeId], int | None]) -> tuple[Pairs, Pairs] | None:
    """A link fault's pairs as node ids now: (pairs cut both ways, pairs cut one way); None if
    a name cannot be resolved (no leader yet). A pair of one node with itself is dropped."""
    out: tuple[Pairs, Pairs] = ([], [])
    for kind, pairs in enumerate((both, one_way)):
        for a, b in pairs:
            ra = resolve_role(a, ids, leader, applied)
            rb = resolve_role(b, ids, leader, applied)
            if ra is None or rb is None:
                return None
            if ra != rb:
                out[kind].append((ra, rb))
    return out


def link_pairs(both: Iterable[tuple[NodeId, NodeId]],
               one_way: Iterable[tuple[NodeId, NodeId]]) -> set[tuple[NodeId, NodeId]]:
    """The (from, to) links a link fault cuts: each ``both`` pair in both directions."""
    return {*one_way, *(p for a, b in both for p in ((a, b), (b, a)))}


def majorities_ring(ids: Sequence[NodeId]) -> set[tuple[NodeId, NodeId]]:
    """Jepsen's majorities ring: each node reaches a majority (itself and its nearest ring
    neighbours), but no two nodes see the same majority."""
    n = len(ids)
    reach = (n // 2) // 2 + (n // 2) % 2  # neighbours on each side so 1 + 2*reach >= majority
    blocked = set()
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            dist = min((i - j) % n, (j - i) % n)
            if a != b and dist > reach:
                blocked.add((a, b))
    return blocked


def bridge(ids: Sequence[NodeId]) -> set[tuple[NodeId, NodeId]]:
    """Two halves that only the middle node can reach both of."""
    mid = len(ids) // 2
    left, right = ids[:mid], ids[mid + 1:]
    return {(a, b) for a in left for b in right} | {(b, a) for a in left for b in right}


def split(groups: Sequence[Sequence[NodeId]], ids: Sequence[NodeId]) -> set[tuple[str, str]]:
    """Block every pair of nodes in different groups (a node in no group is cut from all)."""
    where = {n: i for i, g in enumerate(groups) for n in g}
    return {(a, b) for a in ids for b in ids if a != b and where.get(a, -1) != where.get(b, -2)}


class Nemesis:
    """Applies a schedule to a cluster, resolving moment-bound targets as it goes.

    Targets: a node id; ``leader``; ``followers``; ``random`` (one live node);
    ``random-minority`` (``(n - 1) // 2`` live nodes); ``crashed`` and ``paused`` (every node
    the nemesis crashed or paused and has not brought back); the role tokens ``followerK`` and
    ``most-lagging`` (:func:`resolve_role`). The random picks use the run's own stream, so a
    seed gives the same choices whenever the clusters are in the same state.

    ``blocked`` is the set of cut (from, to) links in force: partitions, isolation and cuts
    replace it, a link fault adds to it, a heal empties it.
    """

    def __init__(self, cluster: FaultTarget, schedule: Sequence[Fault], seed: int = 0) -> None:
        self.cluster = cluster
        self.schedule = list(schedule)
        self.rng = random.Random(f"{seed}/nemesis")
        self.crashed: list[NodeId] = []
        self.paused: list[NodeId] = []
        self.clocked: list[NodeId] = []  # nodes whose clock rate a fault changed
        self.applied: list[FaultEvent] = []  # what actually happened, in order
        self.window: dict[str, float | None] = {"loss": None, "duplicate": None, "delay": None}
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        # The configuration's nodes before any change (the cluster's ids grow as nodes join).
        self._initial: tuple[NodeId, ...] = tuple(cluster.ids)
        for fault in self.schedule:
            cluster.at(fault.at_ms, lambda f=fault: self.apply(f))

    def members(self) -> tuple[NodeId, ...]:
        """The nodes of the configuration in force as far as the operator knows (the last
        change answered OK; the starting nodes before any), in the cluster's id order. Role
        tokens, ``random`` and ``followers`` pick among them, not among removed nodes."""
        c = self.cluster
        for event in reversed(getattr(c, "membership_events", ())):
            if not event.ok or not event.result or event.change.startswith("transfer"):
                continue
            try:
                config = Membership.from_text(event.result)
            except ChangeError:  # an answer that names no configuration
                continue
            return tuple(n for n in c.ids if n in config.members)
        return self._initial

    def resolve(self, target: str | None) -> list[NodeId]:
        c = self.cluster
        members = self.members()
        live = [n for n in members if c.is_up(n) and n not in self.paused]
        if target == "leader":
            leader = c.leader()
            return [leader] if leader is not None else []
        if target == "followers":
            return [n for n in live if n != c.leader()]
        if target == "crashed":
            return list(self.crashed)
        if target == "paused":
            return list(self.paused)
        if target == "random":
            return [self.rng.choice(live)] if live else []
        if target == "random-minority":
            return sorted(self.rng.sample(live, min(len(live), (len(members) - 1) // 2)))
        if target and target not in c.ids:
            nid = resolve_role(target, members, c.leader(), c.applied)
            return [nid] if nid is not None else []
        return [target] if target else []

    def resolve_links(self, fault: Fault) -> tuple[list[tuple[NodeId, NodeId]],
                                                   list[tuple[NodeId, NodeId]]] | None:
        """A link fault's pairs as node ids now; see :func:`resolve_links`."""
        c = self.cluster
        return resolve_links(fault.links, fault.one_way, c.ids, c.leader(), c.applied)

    def apply(self, fault: Fault) -> None:
        c = self.cluster
        action = fault.action
        nodes = self.resolve(fault.target)
        label = fault.label()
        if action == "crash":
            nodes = [n for n in nodes if c.is_up(n)]
            for n in nodes:
                c.crash(n)
                self.crashed.append(n)
                if n in self.paused:
                    self.paused.remove(n)
        elif action == "restart":
            nodes = [n for n in nodes if not c.is_up(n)]
            for n in nodes:
                c.restart(n)
                if n in self.crashed:
                    self.crashed.remove(n)
        elif action == "pause":
            nodes = [n for n in nodes if c.is_up(n) and n not in self.paused]
            for n in nodes:
                c.pause(n)
                self.paused.append(n)
        elif action == "resume":
            nodes = [n for n in nodes if n in self.paused]
            for n in nodes:
                c.resume(n)
                self.paused.remove(n)
        elif action == "isolate":
            nodes = nodes[:1]
            if nodes:
                self._block(_isolate(nodes[0], c.ids), f"isolate {nodes[0]}")
        elif action == "partition":
            nodes, label = self._partition(fault)
        elif action == "cut":
            src, dst = fault.groups
            # The simulator's trace line keeps the scheduled-time stamp (trace hashes).
            self._block({(a, b) for a in src for b in dst if a != b}, fault.describe())
            nodes = sorted({*src, *dst})
        elif action == "links":
            resolved = self.resolve_links(fault)
            if resolved is not None:
                both, one_way = resolved
                label = "links" + links_text(both, one_way)
                self._block(self.blocked | link_pairs(both, one_way), label)
                nodes = id_order({n for pair in (*both, *one_way) for n in pair})
                self.applied.append(FaultEvent(c.now, action, label, tuple(nodes),
                                               links=tuple(both), one_way=tuple(one_way)))
                return
        elif action == "heal":
            self._block(set(), "heal")
            nodes = list(c.ids)
        elif action == "clock":
            nodes = nodes[:1]
            for n in nodes:
                c.set_clock_rate(n, fault.amount)
                if n not in self.clocked:
                    self.clocked.append(n)
        elif action in ("loss", "duplicate", "delay"):
            nodes = list(c.ids)  # every link between nodes
            self._set_window(action, fault.amount)
            c.at(c.now + fault.duration_ms, lambda a=action: self._set_window(a, None))
        elif action in MEMBERSHIP_ACTIONS:
            change = self._change(fault, nodes)
            if change is not None:
                c.reconfigure(change)
                self.applied.append(FaultEvent(c.now, action, change, tuple(
                    n for n in (nodes[0] if nodes else None, fault.node) if n)))
                return
            nodes = []
        targeted = action in ("crash", "restart", "pause", "resume", "isolate", "clock",
                              *MEMBERSHIP_ACTIONS)
        skipped = (targeted or action == "links") and not nodes
        if targeted and nodes:
            label = f"{action} {','.join(nodes)}"
            if action == "clock":
                label += f" rate {fault.amount:g}"
        windowed = action in ("loss", "duplicate", "delay")
        self.applied.append(FaultEvent(c.now, action, label, tuple(nodes),
                                       fault.duration_ms if windowed else None, skipped))

    def _change(self, fault: Fault, nodes: list[NodeId]) -> str | None:
        """The change text an operator sends for a membership fault (its target resolved to
        ``nodes``), or None when the target names no node now (no leader yet)."""
        if fault.action == "add":
            return f"add {fault.node}"
        if not nodes:
            return None
        if fault.action == "replace":
            return f"replace {nodes[0]} {fault.node}"
        return f"{fault.action} {nodes[0]}"

    def _partition(self, fault: Fault) -> tuple[list[NodeId], str]:
        """Block the partition's pairs; the nodes it split and its label."""
        c = self.cluster
        if fault.shape == "majorities-ring":
            self._block(majorities_ring(c.ids), "majorities-ring")
            return list(c.ids), fault.label()
        if fault.shape == "bridge":
            self._block(bridge(c.ids), "bridge")
            return list(c.ids), fault.label()
        if fault.shape == "random-halves":
            shuffled = list(self.members())
            self.rng.shuffle(shuffled)
            half = len(shuffled) // 2
            groups = (sorted(shuffled[:half]), sorted(shuffled[half:]))
            label = "partition " + " | ".join(",".join(g) for g in groups)
            self._block(split(groups, c.ids), label)
            return sorted(shuffled), label
        # The simulator's trace line keeps the scheduled-time stamp (trace hashes).
        self._block(split(fault.groups, c.ids), fault.describe())
        return sorted(n for g in fault.groups for n in g), fault.label()

    def _block(self, pairs: set[tuple[NodeId, NodeId]], label: str) -> None:
        """Make ``pairs`` the cut links (the simulator's trace records ``label``)."""
        self.blocked = set(pairs)
        self.cluster.set_blocked(self.blocked, label)

    def _set_window(self, action: str, amount: float | None) -> None:
        """Start or end one window; overlapping windows of other kinds stay in force."""
        self.window[action] = amount
        self.cluster.set_window(loss=self.window["loss"], duplicate=self.window["duplicate"],
                                delay=self.window["delay"] or 0.0)

    def heal_all(self) -> None:
        """End every fault: heal the network, resume and restart every node."""
        c = self.cluster
        self._block(set(), "heal")
        self.window = dict.fromkeys(self.window)
        c.set_window()
        for node in list(self.paused):
            c.resume(node)
        for node in list(self.crashed):
            c.restart(node)
        for node in self.clocked:  # true time again, so liveness is judged on honest clocks
            c.set_clock_rate(node, 1.0)
        self.paused.clear()
        self.crashed.clear()
        self.clocked.clear()
        self.applied.append(FaultEvent(c.now, "heal", "heal all, resume and restart every node",
                                       tuple(c.ids), final=True))


def _isolate(node: NodeId, ids: Sequence[NodeId]) -> set[tuple[NodeId, NodeId]]:
    return {(node, b) for b in ids if b != node} | {(b, node) for b in ids if b != node}
