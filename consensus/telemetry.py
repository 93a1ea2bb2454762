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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from consensus.messages import NodeId


class ControlOp(StrEnum):
    DROP_TO = "drop_to"  # drop every message this node sends to ``peers``
    DROP_FROM = "drop_from"  # drop every message this node receives from ``peers``
    LOSS = "loss"  # drop each outgoing message with probability ``rate``
    DELAY = "delay"  # hold each outgoing message ``ms`` before it leaves
    HEAL = "heal"  # clear every fault hook
    CAMPAIGN = "campaign"  # start an election now (the dashboard's "time out a node")


@dataclass(frozen=True, slots=True)
class Control:
    """One operator command to a node process: ``{"op": "loss", "rate": 0.3}``.

    Fields an op does not use may be left out on the wire; they take their defaults.
    """

    op: ControlOp
    peers: tuple[NodeId, ...] = ()
    rate: float = 0.0
    ms: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, got {self.rate}")
        if self.ms < 0:
            raise ValueError(f"ms must not be negative, got {self.ms}")


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """The fault hooks a node process has in force (as its status reports them)."""

    drop_to: tuple[NodeId, ...] = ()
    drop_from: tuple[NodeId, ...] = ()
    loss: float = 0.0
    delay_ms: float = 0.0


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
