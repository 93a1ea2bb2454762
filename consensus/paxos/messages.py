"""Multi-Paxos's ballots, messages (Lamport's phases 1a/1b/2a/2b) and durable records.

Every message carries the ballot it belongs to: a proposer's request carries the proposer's
ballot, a reply carries the ballot of the request it answers, so a stale reply is recognised
by its ballot alone. Slots are 1-based like Raft's log indexes; ``None`` as a command is a
no-op (a gap a new leader filled).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from consensus.messages import Command, Message, NodeId, Phase


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A ballot ``(round, rank, node)``, totally ordered in that order.

    ``rank`` is the proposer's position in the initial cluster (``PaxosNode.rank_of``), so
    among those it decides before the id does (a string order would put "n10" before "n2").
    ``node``, the proposer's id, breaks the ties ranks leave: nodes added later all rank
    alike, and nodes that disagree about the initial cluster may even compute one rank. As
    ids are unique, no two proposers ever share a ballot, whatever their ranks.
    """

    round: int
    rank: int
    node: NodeId = ""

    def __str__(self) -> str:
        return f"{self.round}.{self.node}" if self.node else f"{self.round}"


# Below every real ballot (rounds start at 1): what an acceptor has promised before anything.
ZERO_BALLOT = Ballot(0, -1)


@dataclass(frozen=True, slots=True)
class AcceptedValue:
    """One acceptor's accepted ``(ballot, value)`` for one slot, as reported in a Promise."""

    slot: int
    ballot: Ballot
    command: Command | None


# -- protocol messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare(Message):
    """Phase 1a for every slot from ``first_slot`` on (the proposer's first unchosen slot).

    With ``pre_vote`` it only asks whether the acceptor *would* promise ``ballot`` (no one
    promises anything, no one's state changes), like Raft's pre-vote (thesis §9.6).
    ``log_ballot`` and ``last_slot`` rank the proposer's log (election "up-to-date").
    """

    ballot: Ballot
    first_slot: int
    pre_vote: bool = False
    # How complete the proposer's log is, for election "up-to-date": the highest ballot it
    # accepted anything at, and its highest slot holding a value.
    log_ballot: Ballot = ZERO_BALLOT
    last_slot: int = 0
    # Asked for by the leader (TimeoutNow, a leadership transfer): acceptors answer it even
    # while they hear a live leader (check-quorum's lease), like etcd's campaignTransfer.
    transfer: bool = False
    kind: ClassVar[str] = "Prepare"
    phase: ClassVar[Phase] = Phase.ASK_FOR_VOTES
    label: ClassVar[str] = "Prepare (1a)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise(Message):
    """Phase 1b: the acceptor promised ``ballot`` and reports what it knows from ``first_slot``.

    ``chosen`` holds the values the acceptor knows are chosen for slots ``first_slot`` ..
    ``commit_index`` (a new leader adopts them as they are); ``accepted`` holds its accepted
    ``(ballot, value)`` for every later slot it has accepted anything in. With ``pre_vote`` it
    answers a pre-vote Prepare: the acceptor would promise, has not, and reports nothing.
    """

    ballot: Ballot
    first_slot: int
    chosen: tuple[Command | None, ...]
    accepted: tuple[AcceptedValue, ...]
    commit_index: int
    pre_vote: bool = False
    kind: ClassVar[str] = "Promise"
    phase: ClassVar[Phase] = Phase.VOTE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "Promise (1b)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept(Message):
    """Phase 2a for the run of slots ``first_slot`` .. ``first_slot + len(commands) - 1``.

    With no commands it is the leader's heartbeat. ``commit_index`` is the leader's highest
    contiguously chosen slot: an acceptor that accepted a slot at this same ballot learns from
    it that its value is chosen.
    """

    ballot: Ballot
    first_slot: int
    commands: tuple[Command | None, ...]
    commit_index: int
    beat: int = 0  # the leader's heartbeat round, echoed in the Accepted (reads, the lease)
    kind: ClassVar[str] = "Accept"
    phase: ClassVar[Phase] = Phase.REPLICATE
    carries_entries: ClassVar[bool] = True
    label: ClassVar[str] = "Accept (2a)"

    def carried_entries(self) -> Sequence[Command | None]:
        return self.commands

    def carried_slots(self) -> Iterator[tuple[int, str, Command | None]]:
        return ((self.first_slot + i, str(self.ballot), c) for i, c in enumerate(self.commands))


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Message):
    """Phase 2b: the acceptor accepted ``count`` slots from ``first_slot`` at ``ballot``.

    ``count == 0`` answers a heartbeat or a Commit. ``commit_index`` is the acceptor's highest
    contiguously chosen slot and ``leader_commit`` echoes the commit index of the request: when
    the first is below the second, the acceptor missed values it cannot learn from the
    piggybacked commit index, and the leader sends them in a :class:`Commit`.

    ``accepted_through`` acknowledges cumulatively, like Raft's match index: the acceptor has
    accepted at ``ballot`` every slot from ``leader_commit + 1`` to it. So the next Accepted
    makes up for one lost on the way, and an Accepted whose ``first_slot`` lies above
    ``accepted_through + 1`` shows the leader the gap a lost Accept left.
    """

    ballot: Ballot
    first_slot: int
    count: int
    commit_index: int
    leader_commit: int
    accepted_through: int = 0
    beat: int = 0  # echoes the Accept's heartbeat round (0 answering a Commit)
    kind: ClassVar[str] = "Accepted"
    phase: ClassVar[Phase] = Phase.ACKNOWLEDGE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "Accepted (2b)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(Message):
    """Catch-up: the chosen values of slots ``first_slot`` onwards, for a lagging acceptor."""

    ballot: Ballot
    first_slot: int
    commands: tuple[Command | None, ...]
    commit_index: int
    kind: ClassVar[str] = "Commit"
    phase: ClassVar[Phase] = Phase.COMMIT
    carries_entries: ClassVar[bool] = True
    label: ClassVar[str] = "Commit"

    def carried_entries(self) -> Sequence[Command | None]:
        return self.commands

    def carried_slots(self) -> Iterator[tuple[int, str, Command | None]]:
        return ((self.first_slot + i, str(self.ballot), c) for i, c in enumerate(self.commands))


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack(Message):
    """A refused Prepare or Accept at ``ballot``: the acceptor has promised ``promised``.

    With ``behind`` it refuses a Prepare for another reason (election "up-to-date"): the
    proposer's log is less complete than the acceptor's; it preempts nothing."""

    ballot: Ballot
    promised: Ballot
    behind: bool = False
    kind: ClassVar[str] = "Nack"
    phase: ClassVar[Phase] = Phase.REJECT
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "Nack"

    def rejection(self) -> str | None:
        if self.behind:
            return f"{self.src} Nack to {self.dst}: its log is behind {self.src}'s"
        return f"{self.src} Nack to {self.dst}: ballot {self.ballot} < promised {self.promised}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Learn(Message):
    """Catch-up past compaction: one chunk of the state after every slot up to
    ``snapshot_slot`` is chosen (the key-value store and the configurations; see
    :mod:`consensus.paxos.snapshot`), for a learner whose first unknown slot was compacted
    away. Raft's InstallSnapshot: it is to a snapshot what :class:`Commit` is to chosen values.

    ``data`` is the text from byte ``offset`` of a snapshot of ``total`` bytes. The sender is
    the leader (``ballot`` is its ballot), or an acceptor answering a Prepare whose first
    slot it has compacted (``ballot`` is the Prepare's). Only chosen values are in it, so it
    is safe to install whatever the ballot.
    """

    ballot: Ballot
    snapshot_slot: int
    offset: int
    total: int
    data: str
    kind: ClassVar[str] = "Learn"
    phase: ClassVar[Phase] = Phase.COMMIT
    label: ClassVar[str] = "Learn (snapshot)"

    def validate(self) -> None:
        if self.offset + len(self.data) > self.total:
            raise ValueError(f"chunk {self.offset}+{len(self.data)} runs past {self.total}")
        if not self.data and self.offset < self.total:
            raise ValueError(f"empty chunk at {self.offset} of {self.total}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Learned(Message):
    """The answer to a :class:`Learn` chunk: the learner wants the snapshot of
    ``snapshot_slot`` from byte ``offset`` on; once its ``commit_index`` reaches the slot
    (installed, or it knew those slots already) the transfer is over and the leader goes on
    with :class:`Commit` and :class:`Accept` from there."""

    ballot: Ballot
    snapshot_slot: int
    offset: int
    commit_index: int
    kind: ClassVar[str] = "Learned"
    phase: ClassVar[Phase] = Phase.ACKNOWLEDGE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "Learned (snapshot ack)"


PaxosMessage = Prepare | Promise | Accept | Accepted | Commit | Nack | Learn | Learned


# -- durable records (persisted before any message that depends on them leaves) ----------------


@dataclass(frozen=True, slots=True)
class Promised:
    """The acceptor's promise: it will accept nothing below ``ballot``."""

    ballot: Ballot
    kind: ClassVar[str] = "Promised"


@dataclass(frozen=True, slots=True)
class RoundUsed:
    """The highest round this node proposed with, so a ballot is never used twice."""

    round: int
    kind: ClassVar[str] = "RoundUsed"


@dataclass(frozen=True, slots=True)
class AcceptedRun:
    """Accepted ``(ballot, commands[i])`` for slot ``first_slot + i``."""

    first_slot: int
    ballot: Ballot
    commands: tuple[Command | None, ...]
    kind: ClassVar[str] = "AcceptedRun"

    def continues(self, previous: AcceptedRun) -> bool:
        """The next slots at the same ballot: the two are one write (storage.coalesce)."""
        return (self.ballot == previous.ballot
                and self.first_slot == previous.first_slot + len(previous.commands))

    @staticmethod
    def joined(run: list[AcceptedRun]) -> AcceptedRun:
        first = run[0]
        return AcceptedRun(first.first_slot, first.ballot,
                           tuple(c for r in run for c in r.commands))


@dataclass(frozen=True, slots=True)
class ChosenRun:
    """Learned that ``commands[i]`` is chosen for slot ``first_slot + i`` (catch-up)."""

    first_slot: int
    commands: tuple[Command | None, ...]
    kind: ClassVar[str] = "ChosenRun"


@dataclass(frozen=True, slots=True)
class Committed:
    """Slots up to ``index`` are chosen and known here, so the commit index never goes back."""

    index: int
    kind: ClassVar[str] = "Committed"
    # Volatile state, re-learnable from the acceptors: written, but no fsync of its own.
    sync: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """Log compaction: everything an acceptor needs from before it, in one record that
    replaces every earlier one (``compacts``, storage.py). ``state`` is the snapshot of the
    chosen prefix through ``slot`` (:mod:`consensus.paxos.snapshot`); ``promised`` and
    ``round_used`` are the acceptor's and proposer's durable state; ``accepted`` is every
    slot above ``slot`` this acceptor holds, chosen or not, with the ballot it accepted at."""

    slot: int
    state: str
    promised: Ballot
    round_used: int
    accepted: tuple[AcceptedValue, ...]
    kind: ClassVar[str] = "SlotSnapshot"
    compacts: ClassVar[bool] = True
