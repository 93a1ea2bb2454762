"""Multi-Paxos's slot store: what this acceptor accepted in each slot, beside ``raft/log.py``.

A Raft log is a list that a new leader may truncate; Paxos slots are independent instances,
so this is a map ``slot -> (ballot, value)``, possibly with holes (a lost Accept). A slot's
ballot is the one it was last accepted at; learning that the value is chosen keeps it, so
every claim the store makes about a ballot is one this acceptor made durably.

Compaction drops the slots a snapshot covers (``compact``); ``first_index`` is then the
first slot the store can still answer for, and ``last_index`` never goes below the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.messages import Command
from consensus.paxos.messages import ZERO_BALLOT, AcceptedValue, Ballot

# One slot's accepted state: (ballot, value). At or below the commit index, the chosen value.
SlotState = tuple[Ballot, Command | None]


class Slots:
    """Accepted values per slot. Invariant: ``last_index`` is the highest slot held."""

    __slots__ = ("_through_ballot", "_through_slot", "entries", "first_index", "last_index",
                 "top_ballot")

    def __init__(self) -> None:
        self.entries: dict[int, SlotState] = {}
        self.first_index = 1  # slots below it were compacted into a snapshot
        self.last_index = 0
        # The highest ballot anything was accepted at here (election "up-to-date" ranks logs
        # by it, as Raft by its last term).
        self.top_ballot = ZERO_BALLOT
        # accepted_through's cache: every slot above the caller's floor up to
        # ``_through_slot`` is accepted at ``_through_ballot``, so a scan resumes there.
        self._through_ballot: Ballot | None = None
        self._through_slot = 0

    def get(self, slot: int) -> SlotState | None:
        return self.entries.get(slot)

    def __contains__(self, slot: int) -> bool:
        return slot in self.entries

    def __getitem__(self, slot: int) -> SlotState:
        return self.entries[slot]

    def commands(self, first: int, last: int) -> tuple[Command | None, ...]:
        """The values of slots ``first..last``, every one of which must be held."""
        entries = self.entries
        return tuple(entries[s][1] for s in range(first, last + 1))

    def accepted(self, first: int) -> tuple[AcceptedValue, ...]:
        """What a Promise reports from ``first`` on: every held slot's (ballot, value)."""
        entries = self.entries
        return tuple(AcceptedValue(s, entries[s][0], entries[s][1])
                     for s in range(first, self.last_index + 1) if s in entries)

    def accept_run(self, first: int, ballot: Ballot,
                   commands: Sequence[Command | None]) -> bool:
        """Accept ``commands`` at ``ballot`` in consecutive slots from ``first`` (Phase 2b).

        True if anything changed, i.e. there is something new to persist."""
        entries = self.entries
        changed = False
        for i, command in enumerate(commands):
            state = (ballot, command)
            if entries.get(first + i) != state:
                entries[first + i] = state
                changed = True
        if commands:
            self.last_index = max(self.last_index, first + len(commands) - 1)
            self.top_ballot = max(self.top_ballot, ballot)
        return changed

    def learn_chosen(self, first: int, commands: Sequence[Command | None]) -> None:
        """Record chosen values from ``first`` on, keeping each slot's accepted ballot."""
        entries = self.entries
        for i, command in enumerate(commands):
            prev = entries.get(first + i)
            entries[first + i] = (ZERO_BALLOT if prev is None else prev[0], command)
        if commands:
            self.last_index = max(self.last_index, first + len(commands) - 1)

    def compact(self, through: int) -> None:
        """Forget slots up to ``through``: a snapshot holds what they decided."""
        entries = self.entries
        if through - self.first_index < len(entries):
            for slot in range(self.first_index, through + 1):
                entries.pop(slot, None)
        else:  # a snapshot far ahead (installed from the leader): fewer slots held than skipped
            self.entries = {s: v for s, v in entries.items() if s > through}
        self.first_index = max(self.first_index, through + 1)
        self.last_index = max(self.last_index, through)

    def restore(self, values: Sequence[AcceptedValue]) -> None:
        """Put back slots a snapshot record kept, each at the ballot it was accepted at."""
        for av in values:
            self.entries[av.slot] = (av.ballot, av.command)
            self.last_index = max(self.last_index, av.slot)
            self.top_ballot = max(self.top_ballot, av.ballot)

    def accepted_through(self, ballot: Ballot, floor: int) -> int:
        """The highest slot ``t`` such that every slot in ``floor + 1 .. t`` holds a value
        accepted at ``ballot``.

        Within one ballot the run only grows: a slot accepted at it changes only on accepting
        a higher ballot, after which this ballot's Accepts are refused. So the scan resumes
        where it stopped last time instead of starting over.
        """
        if self._through_ballot != ballot:
            self._through_ballot, self._through_slot = ballot, floor
        t = max(self._through_slot, floor)
        entries = self.entries
        while (state := entries.get(t + 1)) is not None and state[0] == ballot:
            t += 1
        self._through_slot = t
        return t
