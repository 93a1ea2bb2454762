"""Raft's log: 1-based entries after a sentinel, which is index 0 (term 0) until the log is
compacted, and then the last entry the snapshot covers (its index and term, thesis §5.1)."""

from __future__ import annotations

from consensus.membership import CONFIG_VERB
from consensus.raft.messages import Entry

_SENTINEL = Entry(0, 0, None)


class RaftLog:
    """The entries a node holds. Invariant: ``entries[i - offset].index == i`` for every
    position, ``entries[0]`` standing for the entry at ``offset`` (0, or the last one a
    snapshot covers: only its index and term are known); and ``configs`` lists, in order, the
    indexes after ``offset`` of the entries that carry a configuration (membership.py): the
    latest of them is the one in force (thesis §4.1)."""

    __slots__ = ("configs", "entries", "offset")

    def __init__(self) -> None:
        self.entries: list[Entry] = [_SENTINEL]
        self.offset = 0
        self.configs: list[int] = []

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries) - 1

    @property
    def last_term(self) -> int:
        return self.entries[-1].term

    def term_at(self, index: int) -> int:
        """Term of the entry at ``index``; -1 when the log has no such entry (beyond its end,
        or compacted into the snapshot)."""
        i = index - self.offset
        if 0 <= i < len(self.entries):
            return self.entries[i].term
        return -1

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (offset < index <= last_index)."""
        return self.entries[index - self.offset]

    def slice(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Entries ``lo..hi`` inclusive (clipped to the log; ``lo`` > offset)."""
        offset = self.offset
        return tuple(self.entries[lo - offset:hi - offset + 1])

    def truncate_from(self, index: int) -> bool:
        """Drop the entries at ``index`` and after (a conflicting suffix, §5.3); True if a
        configuration went with them."""
        del self.entries[index - self.offset:]
        configs = self.configs
        dropped = False
        while configs and configs[-1] >= index:
            configs.pop()
            dropped = True
        return dropped

    def first_index_of_term(self, index: int) -> int:
        """The first index of the run of entries with the same term as the one at ``index``
        (not before the first entry after the snapshot)."""
        entries, offset = self.entries, self.offset
        term = entries[index - offset].term
        while index > offset + 1 and entries[index - 1 - offset].term == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int) -> int:
        """The last index holding ``term``, or 0 if this log has none (terms only grow)."""
        i = self.last_index
        entries, offset = self.entries, self.offset
        while i > offset and entries[i - offset].term > term:
            i -= 1
        return i if i > offset and entries[i - offset].term == term else 0

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def write(self, entries: tuple[Entry, ...]) -> bool:
        """Place ``entries`` at their indexes, dropping whatever was there and after; True if
        that dropped or added a configuration."""
        if not entries:
            return False
        changed = self.truncate_from(entries[0].index)
        self.entries.extend(entries)
        for entry in entries:
            command = entry.command
            if command is not None and command.text.startswith(CONFIG_VERB):
                self.configs.append(entry.index)
                changed = True
        return changed

    def compact(self, index: int, term: int) -> None:
        """Forget the entries up to ``index`` (term ``term``), which a snapshot now covers;
        keep the ones after it if they follow on from it, else start empty after it (the
        thesis's InstallSnapshot rule: a log that disagrees there is discarded whole)."""
        tail = self.entries[index - self.offset + 1:] if self.term_at(index) == term else []
        self.entries = [Entry(term, index, None), *tail]
        self.offset = index
        self.configs = [i for i in self.configs if i > index and self.term_at(i) >= 0]
