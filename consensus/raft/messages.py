"""Raft's messages (extended Raft paper, Figure 2) and its durable records.

Field names follow the paper and the tutorial's AppendEntries payload: ``prev_log_index``,
``prev_log_term``, ``entries``, ``leader_commit``; the leader's id is the message's ``src``
and the leader's term its ``term``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from consensus.messages import Command, Message, NodeId, Phase


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: the term it was created in, its index, and the command (None = no-op)."""

    term: int
    index: int
    command: Command | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote(Message):
    """RequestVote RPC (§5.2, §5.4.1); with ``pre_vote`` the thesis's PreVote (§9.6).

    ``commit_index`` is the candidate's: with ``election: any`` a voter whose log is ahead
    sends its entries from a point both logs are known to share (see RequestVoteReply).
    ``transfer``: the leader asked for this election (TimeoutNow), so a voter answers even
    while it hears from that leader (thesis §3.10, etcd's campaignTransfer)."""

    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    commit_index: int = 0
    transfer: bool = False
    kind: ClassVar[str] = "RequestVote"
    phase: ClassVar[Phase] = Phase.ASK_FOR_VOTES
    label: ClassVar[str] = "RequestVote"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteReply(Message):
    """The vote. With ``election: any`` a granted vote from a voter whose log is ahead of the
    candidate's carries the voter's entries after ``prev_log_index`` (where both logs hold
    the entry of term ``prev_log_term``), so the candidate can adopt that log before leading."""

    term: int
    granted: bool
    pre_vote: bool = False
    prev_log_index: int = 0
    prev_log_term: int = 0
    entries: tuple[Entry, ...] = ()
    kind: ClassVar[str] = "RequestVoteReply"
    phase: ClassVar[Phase] = Phase.VOTE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "vote reply"

    def rejection(self) -> str | None:
        if self.granted:
            return None
        return f"{self.src} refused {'pre-vote' if self.pre_vote else 'vote'} to {self.dst}"

    def validate(self) -> None:
        """Entries numbered from prev_log_index + 1, their terms never falling, none from a
        later term than the vote's."""
        last = self.prev_log_term
        for i, entry in enumerate(self.entries, self.prev_log_index + 1):
            if entry.index != i:
                raise ValueError(f"entry index {entry.index} where {i} was expected")
            if not last <= entry.term <= self.term or entry.term < 1:
                raise ValueError(f"entry term {entry.term} outside {max(last, 1)}..{self.term}")
            last = entry.term


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries(Message):
    """AppendEntries RPC (§5.3); with no entries it is the leader's heartbeat."""

    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    beat: int = 0  # the leader's heartbeat round, echoed in the reply (reads, the lease)
    kind: ClassVar[str] = "AppendEntries"
    phase: ClassVar[Phase] = Phase.REPLICATE
    carries_entries: ClassVar[bool] = True
    label: ClassVar[str] = "AppendEntries"

    def carried_entries(self) -> Sequence[Entry]:
        return self.entries

    def carried_slots(self) -> Iterator[tuple[int, str, Command | None]]:
        return ((e.index, str(e.term), e.command) for e in self.entries)

    def validate(self) -> None:
        """Entries numbered from prev_log_index + 1, none from a later term than the leader's."""
        for i, entry in enumerate(self.entries, self.prev_log_index + 1):
            if entry.index != i:
                raise ValueError(f"entry index {entry.index} where {i} was expected")
            if entry.term > self.term or entry.term < 1:
                raise ValueError(f"entry term {entry.term} outside 1..{self.term}")
        if self.prev_log_term > self.term:
            raise ValueError(f"prev_log_term {self.prev_log_term} is after term {self.term}")


# One run on the wire: a term and the commands of consecutive entries created in it.
EntryRun = tuple[int, tuple[Command | None, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesWire:
    """AppendEntries as it crosses the wire: the entries as runs of one term.

    In memory an entry carries its own term and index (what the log and the handlers want);
    on the wire the first index is implied (``prev_log_index + 1``, as Paxos's Accept names a
    first slot) and consecutive entries of one term share it: ``[[term, [command, ...]], ...]``.
    A batch is almost always one run, so its bytes are the commands plus a constant, not a
    term and an index repeated per entry (which made Raft's traffic look dearer than
    Multi-Paxos's for no reason of the algorithm's). Only the codec uses this class; it is
    not a :class:`Message` (no node or observer ever sees one).
    """

    src: NodeId
    dst: NodeId
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[EntryRun, ...]
    leader_commit: int
    beat: int = 0
    kind: ClassVar[str] = "AppendEntries"

    @classmethod
    def from_message(cls, msg: AppendEntries) -> AppendEntriesWire:
        runs: list[EntryRun] = []
        term = 0
        commands: list[Command | None] = []
        for entry in msg.entries:
            if entry.term != term:
                if commands:
                    runs.append((term, tuple(commands)))
                term, commands = entry.term, []
            commands.append(entry.command)
        if commands:
            runs.append((term, tuple(commands)))
        return cls(src=msg.src, dst=msg.dst, term=msg.term, prev_log_index=msg.prev_log_index,
                   prev_log_term=msg.prev_log_term, entries=tuple(runs),
                   leader_commit=msg.leader_commit, beat=msg.beat)

    def to_message(self) -> AppendEntries:
        index = self.prev_log_index
        entries = []
        for term, commands in self.entries:
            for command in commands:
                index += 1
                entries.append(Entry(term, index, command))
        return AppendEntries(src=self.src, dst=self.dst, term=self.term,
                             prev_log_index=self.prev_log_index,
                             prev_log_term=self.prev_log_term, entries=tuple(entries),
                             leader_commit=self.leader_commit, beat=self.beat)

    def validate(self) -> None:
        """Runs not empty, their terms rising from prev_log_term (a log's terms never fall,
        and one term is one run), none after the leader's term, nor prev_log_term."""
        last = 0
        for term, commands in self.entries:
            if not commands:
                raise ValueError(f"the run of term {term} has no commands")
            if term <= last or term < self.prev_log_term:
                raise ValueError(f"run term {term} does not follow term "
                                 f"{max(last, self.prev_log_term)}")
            if term > self.term:
                raise ValueError(f"entry term {term} outside 1..{self.term}")
            last = term
        if self.prev_log_term > self.term:
            raise ValueError(f"prev_log_term {self.prev_log_term} is after term {self.term}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesReply(Message):
    """The follower's answer.

    On success ``match_index`` is the last index known to match the leader's log. On
    rejection, ``reject_index`` is the ``prev_log_index`` refused, and the conflict hint
    (``conflict_term``, ``conflict_index``: the term of the follower's entry there and the first
    index it holds of that term, or 0 and its last index + 1 when its log is too short) lets the
    leader skip a whole term per round trip instead of one entry (§5.3, "fast back-off").
    """

    term: int
    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0
    beat: int = 0  # echoes the AppendEntries' heartbeat round
    kind: ClassVar[str] = "AppendEntriesReply"
    phase: ClassVar[Phase] = Phase.ACKNOWLEDGE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "append reply"

    def rejection(self) -> str | None:
        if self.success:
            return None
        # A refusal for a log mismatch always carries a conflict hint (conflict_index >= 1);
        # one without answers a leader whose term is stale.
        why = (f"no matching entry at {self.reject_index}" if self.conflict_index
               else "its term is newer")
        return f"{self.src} refused AppendEntries from {self.dst}: {why}"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(Message):
    """InstallSnapshot RPC (paper §7, thesis §5.3), one chunk: the leader's snapshot of the
    state machine up to ``last_included_index`` (term ``last_included_term``), ``data`` being
    the bytes from ``offset`` on (the key-value store's canonical JSON); ``done`` on the last
    chunk. ``config`` is the configuration in force at that index (Membership.to_text(); None
    before any), ``config_key`` the (operator, seq) of the change that made it, so the
    follower knows its membership without the compacted entries."""

    term: int
    last_included_index: int
    last_included_term: int
    offset: int
    data: str
    done: bool
    config: str | None = None
    config_key: tuple[str, int] | None = None
    kind: ClassVar[str] = "InstallSnapshot"
    phase: ClassVar[Phase] = Phase.REPLICATE
    label: ClassVar[str] = "InstallSnapshot"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotReply(Message):
    """The follower's answer: how many bytes of snapshot ``last_included_index`` it holds
    (``received``: the leader sends on from there), and ``done`` once it installed it (or
    already held everything it covers)."""

    term: int
    last_included_index: int
    received: int
    done: bool = False
    kind: ClassVar[str] = "InstallSnapshotReply"
    phase: ClassVar[Phase] = Phase.ACKNOWLEDGE
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "snapshot reply"


# -- durable records (what Raft persists; Figure 2's "persistent state on all servers") -----


@dataclass(frozen=True, slots=True)
class HardState:
    """``currentTerm`` and ``votedFor``: must be durable before a vote is sent."""

    term: int
    voted_for: NodeId | None


@dataclass(frozen=True, slots=True)
class LogAppend:
    """Entries written at ``entries[0].index`` onwards; any older suffix from there is dropped."""

    entries: tuple[Entry, ...]

    def continues(self, previous: LogAppend) -> bool:
        """Starts right after ``previous`` ends: the two are one write (storage.coalesce)."""
        return self.entries[0].index == previous.entries[-1].index + 1

    @staticmethod
    def joined(run: list[LogAppend]) -> LogAppend:
        return LogAppend(tuple(e for r in run for e in r.entries))


@dataclass(frozen=True, slots=True)
class CommitMark:
    """The commit index, persisted so it never goes backwards across a restart (as etcd does)."""

    index: int
    # Volatile state (Figure 2): written, but no fsync of its own (etcd's MustSync neither).
    sync: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RaftSnapshot:
    """A snapshot, as the record that replaces every record before it (storage.py's
    ``compacts``): so it holds all the node needs from them: ``currentTerm`` and
    ``votedFor``, the state machine up to ``index`` (term ``last_term``; ``data`` is
    KVStore.snapshot() as text) with the configuration in force there (``config``, None before
    any, and the change ``config_key`` that made it), the entries after it that the log still
    holds, and the commit index."""

    term: int
    voted_for: NodeId | None
    index: int
    last_term: int
    data: str
    config: str | None
    config_key: tuple[str, int] | None
    entries: tuple[Entry, ...]
    commit: int
    compacts: ClassVar[bool] = True
