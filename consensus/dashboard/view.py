"""What both dashboard backends show, and how: shared by the simulated and the MQTT backend.

The page draws any algorithm from what the registry and the messages say about themselves:
:func:`algorithm_json` (title, colour, term label, message legend), :func:`message_json` (a
dot: heartbeat, batch or refusal), :func:`log_slot_json` (a log chip) and :func:`refusal`
(the event a refused vote, append or promise becomes). The event log, the message queue a
frame empties, and the checks on a partition or a link cut the page asks for are the same in
both modes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consensus.algorithms import Algorithm
from consensus.experiment.nemesis import FaultTarget, link_pairs, links_text, resolve_links
from consensus.membership import ChangeError, Membership
from consensus.messages import ClientReply, Command, Message, NodeId
from consensus.node import LogSlot

LOG_TAIL = 3  # log chips per node
MAX_NODES = 9  # nodes a cluster may have started (removed ones that still run count too)
EVENT_HISTORY = 300
MAX_MESSAGES_PER_FRAME = 400


class CommandError(ValueError):
    """A command the page sent that cannot be applied (unknown node, bad groups...)."""


class _HasTerm(Protocol):
    @property
    def term(self) -> int: ...
    @property
    def ballot(self) -> str | None: ...


def command_text(command: Command | None) -> str:
    return "no-op" if command is None else command.text


def algorithm_json(algorithm: Algorithm) -> dict[str, Any]:
    """What the page needs to draw an algorithm it does not know: its names, colour and the
    legend of its messages."""
    return {"title": algorithm.title, "short": algorithm.short, "term_label": algorithm.term_label,
            "palette": algorithm.palette,
            "messages": [{"kind": m.kind, "label": m.label or m.kind, "phase": str(m.phase)}
                         for m in algorithm.messages]}


def term_text(st: _HasTerm) -> str:
    """The term as the algorithm shows it (a Status or a StatusReport): Raft's number,
    Multi-Paxos's full ballot."""
    return str(st.term) if st.ballot is None else st.ballot


def message_json(cluster: str, msg: Message, sent: float, deliver: float | None,
                 src: NodeId | None = None, dst: NodeId | None = None) -> dict[str, Any]:
    """One message as the page animates it: a dot from ``s`` to ``d`` between ``t0`` and
    ``t1`` (None: dropped), small for a heartbeat, large for a batch, ringed for a refusal.
    ``src`` and ``dst`` override where the dot starts and ends (a client the page draws as its
    one client box, the operator as its box: :func:`message_ends`)."""
    m: dict[str, Any] = {"c": cluster, "k": msg.kind, "s": src or msg.src,
                         "d": dst or msg.dst,
                         "t0": round(sent, 3),
                         "t1": None if deliver is None else round(deliver, 3)}
    if msg.carries_entries:
        n = len(msg.carried_entries())
        if n:
            m["n"] = n
        else:
            m["hb"] = True
    if msg.is_rejection():
        m["neg"] = True
    return m


def message_ends(msg: Message, nodes: Iterable[NodeId], client: NodeId
                 ) -> tuple[NodeId, NodeId]:
    """Where a dot starts and ends: a node, the page's client box, or ``op`` (the operator
    box) for an end that is neither, i.e. the membership operator sending ConfigChange and
    getting its replies (whatever id the cluster gives it)."""
    known = set(nodes) | {client}
    return (msg.src if msg.src in known else "op", msg.dst if msg.dst in known else "op")


def refusal(msg: Message) -> str | None:
    """The event log line for a message that refuses something, or None. A redirect to the
    client is not logged: the client's answer says how many attempts it took."""
    return None if isinstance(msg, ClientReply) else msg.rejection()


def log_slot_json(slot: LogSlot) -> dict[str, Any]:
    """One chip of a node's log tail: index, term label, command, committed."""
    cmd = "(empty)" if slot.empty else "no-op" if slot.command is None else slot.command
    return {"i": slot.index, "b": slot.label, "cmd": cmd, "ok": slot.committed}


def next_node_id(ids: Iterable[NodeId]) -> NodeId:
    """The id an added node gets: ``n<k+1>`` after the highest ``n<k>`` ever started (a removed
    node's id is not reused, so a page never confuses the old node with the new one)."""
    numbers = [int(i[1:]) for i in ids if i[:1] == "n" and i[1:].isdigit()]
    return f"n{max(numbers, default=0) + 1}"


def parse_config(text: str | None) -> Membership | None:
    """A status's configuration text, or None (no configuration known, or one this page
    cannot read: the page then shows no membership rather than failing)."""
    if not text:
        return None
    try:
        return Membership.from_text(text)
    except ChangeError:
        return None


def member_role(nid: NodeId, config: Membership | None, own: str | None) -> str | None:
    """What ``nid`` is in the cluster's configuration ``config`` (the one its leader acts on):
    ``voter``; while joint, ``voter (new)`` / ``voter (old)`` for the voters only one half
    has; ``learner`` (catching up, does not vote); ``joining`` (started empty, not in the
    configuration yet: ``own``, its own configuration, is None); or ``removed``. None when no
    configuration is known (no leader yet)."""
    if config is None:
        return None
    if nid in config.voters:
        return "voter (new)" if config.joint and nid not in config.old else "voter"
    if nid in config.old:
        return "voter (old)"
    if nid in config.learners:
        return "learner"
    return "joining" if own is None else "removed"


def partition_groups(ids: Sequence[NodeId],
                     groups: Iterable[Iterable[NodeId]]) -> list[list[NodeId]]:
    """The page's groups, checked (disjoint, known nodes, two or more), sorted, and with the
    nodes it named in none as one more group."""
    groups = [sorted(str(n) for n in g) for g in groups]
    named = [n for g in groups for n in g]
    if len(named) != len(set(named)) or not set(named) <= set(ids) or len(groups) < 2:
        raise CommandError("partition needs two or more disjoint groups of known nodes")
    rest = sorted(set(ids) - set(named))
    return [g for g in groups if g] + ([rest] if rest else [])


@dataclass(slots=True)
class Event:
    """One line of the page's event log, stamped with simulated (or wall) time in ms."""

    seq: int
    t: float
    cluster: str | None
    kind: str  # election | leader | commit | reject | fault | client | member | info
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": round(self.t, 3), "cluster": self.cluster,
                "kind": self.kind, "text": self.text}


class EventLog:
    """A bounded history of events plus a cursor for what the last frame already sent."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.seq = 0
        self.sent = 0  # seq of the last event a frame carried

    def add(self, t: float, cluster: str | None, kind: str, text: str) -> None:
        self.seq += 1
        self.events.append(Event(self.seq, t, cluster, kind, text))
        if len(self.events) > EVENT_HISTORY:
            del self.events[: len(self.events) - EVENT_HISTORY]

    def recent(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]

    def unsent(self) -> list[dict[str, Any]]:
        out = [e.to_json() for e in self.events if e.seq > self.sent]
        self.sent = self.seq
        return out


def take_messages(clusters: Iterable[Any],
                  limit: int = MAX_MESSAGES_PER_FRAME) -> list[dict[str, Any]]:
    """Every cluster's messages queued since the last frame (emptying the queues); when there
    are more than a frame can animate, the latest ones (too fast to watch anyway)."""
    messages: list[dict[str, Any]] = []
    for c in clusters:
        messages.extend(c.messages)
        c.messages = []
    return messages[-limit:]


def cut_links(cluster: FaultTarget, blocked: set[tuple[NodeId, NodeId]],
              cut: Iterable[Iterable[str]], one_way: Iterable[Iterable[str]]
              ) -> tuple[set[tuple[NodeId, NodeId]], str] | None:
    """``blocked`` plus a link command's pairs, resolved in ``cluster`` (a FaultTarget), and
    the label to log; None while a role token cannot be resolved (no leader)."""
    both_in, one_in = [_pair(p) for p in cut], [_pair(p) for p in one_way]
    if not both_in and not one_in:
        raise CommandError("links needs 'cut' and/or 'one_way' pairs [a, b]")
    try:
        resolved = resolve_links(both_in, one_in, cluster.ids, cluster.leader(),
                                 cluster.applied)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if resolved is None:
        return None
    both, one = resolved
    return set(blocked) | link_pairs(both, one), "links" + links_text(both, one)


def _pair(p: Iterable[str]) -> tuple[str, str]:
    pair = tuple(str(n) for n in p)
    if len(pair) != 2:
        raise CommandError(f"a link is a pair [a, b], not {list(pair)}")
    return pair[0], pair[1]
