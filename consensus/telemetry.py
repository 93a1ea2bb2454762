"""What a node process says about itself and what an operator may tell it, as wire types.

A node process publishes a :class:`StatusReport` on its status topic (on every role change
and every ``status_interval_ms``): the core's :class:`~consensus.node.Status` plus what only
the process knows (pid, broker, counters, fault hooks). Experiments, the dashboard and the
benchmark inject faults with a :class:`Control` on a node's control topic. Both are plain
dataclasses that go through :mod:`consensus.codec` like every protocol message, so every
reader gets a validated object instead of parsing a dict its own way.

:func:`leader_of` is the one rule for "who leads" from a set of statuses, used by the
simulator, the runners, the client, the dashboard and the benchmark alike.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from consensus.messages import NodeId


class ControlOp(StrEnum):
    DROP_TO = "drop_to"  # drop every message this node sends to ``peers``
    DROP_FROM = "drop_from"  # drop every message this node receives from ``peers``
    LOSS = "loss"  # drop each inbound message with probability ``rate``
    DELAY = "delay"  # hold each inbound message ``ms`` before the node sees it
    HEAL = "heal"  # clear every fault hook
    CAMPAIGN = "campaign"  # start an election now (the dashboard's "time out a node")


# The one field each op takes; the other fields must be left out (or null).
_OP_FIELD: dict[ControlOp, str | None] = {
    ControlOp.DROP_TO: "peers", ControlOp.DROP_FROM: "peers", ControlOp.LOSS: "rate",
    ControlOp.DELAY: "ms", ControlOp.HEAL: None, ControlOp.CAMPAIGN: None,
}


@dataclass(frozen=True, slots=True)
class Control:
    """One operator command to a node process: ``{"op": "loss", "rate": 0.3}``.

    Each op takes exactly its own field (``peers``, ``rate`` or ``ms``; heal and campaign
    none), which must be given; the others default to null. A ``{"op": "loss"}`` without a
    rate, or a ``{"op": "delay", "rate": 0.3}`` that meant loss, is refused rather than
    guessed at, as are a rate outside 0..1 and a negative delay.
    """

    op: ControlOp
    peers: tuple[NodeId, ...] | None = None  # drop_to / drop_from; [] clears that hook
    rate: float | None = None  # loss
    ms: float | None = None  # delay

    def validate(self) -> None:
        wanted = _OP_FIELD[self.op]
        for name in ("peers", "rate", "ms"):
            given = getattr(self, name) is not None
            if name == wanted and not given:
                raise ValueError(f"{self.op} needs {name}")
            if name != wanted and given:
                raise ValueError(f"{self.op} takes no {name}")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, got {self.rate}")
        if self.ms is not None and not 0.0 <= self.ms < float("inf"):
            raise ValueError(f"ms must be a finite number >= 0, got {self.ms}")


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The fault hooks a node process has in force (as its status reports them)."""

    drop_to: tuple[NodeId, ...] = ()
    drop_from: tuple[NodeId, ...] = ()
    loss: float = 0.0
    delay_ms: float = 0.0

    def apply(self, cmd: Control) -> FaultSettings:
        """These settings with ``cmd`` applied (a campaign leaves them as they are)."""
        match cmd.op:
            case ControlOp.DROP_TO:
                return replace(self, drop_to=tuple(sorted(set(cmd.peers or ()))))
            case ControlOp.DROP_FROM:
                return replace(self, drop_from=tuple(sorted(set(cmd.peers or ()))))
            case ControlOp.LOSS:
                return replace(self, loss=cmd.rate or 0.0)
            case ControlOp.DELAY:
                return replace(self, delay_ms=cmd.ms or 0.0)
            case ControlOp.HEAL:
                return FaultSettings()
        return self


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A node process's published status: the core's Status, flat, plus the process's own."""

    id: NodeId
    algorithm: str
    role: str
    term: int
    ballot: str | None
    leader: NodeId | None
    commit_index: int
    last_index: int
    applied_index: int
    # Relative, since each process has its own clock: ms until it would campaign.
    election_timeout_in_ms: float | None
    pid: int
    cluster: str
    library: str
    broker: str
    fsync: bool
    messages_in: int
    messages_out: int
    wal_fsyncs: int
    wal_fsynced_records: int
    dropped: int
    rejected: dict[str, int] = field(default_factory=dict)
    sent_by_kind: dict[str, int] = field(default_factory=dict)
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    faults: FaultSettings = field(default_factory=FaultSettings)
    time: float = 0.0  # the publisher's wall clock (seconds since the epoch)
    # The configuration the node acts on (Membership.to_text(): voters, the old voters while
    # a joint one is in force, learners); None while a new node is still joining.
    config: str | None = None
    snapshot_index: int = 0  # the last index / slot its latest snapshot covers (0: none)
    removed: bool = False  # it knows a committed configuration without it; about to stop


class _HasRole(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def term(self) -> int: ...


def leader_of(statuses: Mapping[NodeId, _HasRole], down: Container[NodeId] = ()) -> NodeId | None:
    """The node that reports itself leader with the highest term, ignoring ``down`` nodes.

    Two nodes can both believe they lead (a deposed leader that has not heard yet); the one
    with the higher term (Raft) or ballot round (Multi-Paxos) is the real one. Within one
    Paxos round the higher rank wins, and ranks follow the sorted node ids, hence the id as
    the tie-break.
    """
    best: tuple[int, NodeId] | None = None
    for nid, st in statuses.items():
        if st.role != "leader" or nid in down:
            continue
        key = (st.term, nid)
        if best is None or key > best:
            best = key
    return best[1] if best else None


__all__ = ["Control", "ControlOp", "FaultSettings", "StatusReport", "leader_of"]
