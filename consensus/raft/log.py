"""Raft's log: 1-based entries with a sentinel at index 0 (term 0)."""

from __future__ import annotations

from consensus.membership import CONFIG_VERB
from consensus.raft.messages import Entry

_SENTINEL = Entry(0, 0, None)


class RaftLog:
    """The entries a node holds. Invariant: ``entries[i].index == i`` for every position,
    and ``configs`` lists, in order, the indexes of the entries that carry a configuration
    (membership.py): the latest of them is the one in force (thesis §4.1)."""

    __slots__ = ("configs", "entries")

    def __init__(self) -> None:
        self.entries: list[Entry] = [_SENTINEL]
        self.configs: list[int] = []

    @property
    def last_index(self) -> int:
        return len(self.entries) - 1

    @property
    def last_term(self) -> int:
        return self.entries[-1].term

    def term_at(self, index: int) -> int:
        """Term of the entry at ``index``; -1 when the log has no such entry."""
        if 0 <= index < len(self.entries):
            return self.entries[index].term
        return -1

    def slice(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Entries ``lo..hi`` inclusive (clipped to the log)."""
        return tuple(self.entries[lo:hi + 1])

    def truncate_from(self, index: int) -> bool:
        """Drop the entries at ``index`` and after (a conflicting suffix, §5.3); True if a
        configuration went with them."""
        del self.entries[index:]
        configs = self.configs
        dropped = False
        while configs and configs[-1] >= index:
            configs.pop()
            dropped = True
        return dropped

    def first_index_of_term(self, index: int) -> int:
        """The first index of the run of entries with the same term as the one at ``index``."""
        term = self.entries[index].term
        while index > 1 and self.entries[index - 1].term == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int) -> int:
        """The last index holding ``term``, or 0 if this log has none (terms only grow)."""
        i = self.last_index
        entries = self.entries
        while i > 0 and entries[i].term > term:
            i -= 1
        return i if i > 0 and entries[i].term == term else 0

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
