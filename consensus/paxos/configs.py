"""Which configuration governs a Multi-Paxos slot: the one chosen in slot ``i`` governs every
slot from ``i + alpha`` on (Lamport, "Paxos Made Simple" §3, last paragraphs).

A configuration is a command chosen in a slot like any other, so every node that knows the
chosen prefix through slot ``s - alpha`` knows the configuration of slot ``s``: all agree on it
without any further agreement. The initial configuration counts as chosen in slot
``1 - alpha``, so it governs from slot 1. This module only keeps the list; what it means for
proposing, Phase 1 and counting is in ``paxos/node.py``'s module doc.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from consensus.membership import Membership

_NEVER = float("inf")


class ConfigWindow:
    """Configurations by the slot they were chosen in. Invariant: ``slots`` is increasing and
    ``configs[k]`` governs slots ``slots[k] + alpha`` up to the next one's start - 1."""

    __slots__ = ("alpha", "configs", "initial", "slots")

    def __init__(self, alpha: int, initial: Membership | None) -> None:
        self.alpha = alpha
        self.initial = initial
        self.slots: list[int] = []
        self.configs: list[Membership] = []
        if initial is not None:
            self.add(1 - alpha, initial)

    def add(self, slot: int, membership: Membership) -> None:
        """``membership`` was chosen in ``slot`` (an observer may learn them out of order)."""
        k = bisect.bisect_left(self.slots, slot)
        if k < len(self.slots) and self.slots[k] == slot:
            return  # learned again (a restart replays its log, a snapshot repeats it)
        self.slots.insert(k, slot)
        self.configs.insert(k, membership)

    def first_slot(self, k: int) -> int:
        """The first slot configuration number ``k`` governs."""
        return self.slots[k] + self.alpha

    def at(self, slot: int) -> Membership | None:
        """The configuration governing ``slot``, or None if none known governs it (a joining
        node before it learnt one)."""
        k = bisect.bisect_right(self.slots, slot - self.alpha) - 1
        return self.configs[k] if k >= 0 else None

    def governs_from(self, slot: int) -> int:
        """The first slot of the configuration governing ``slot`` (1 for the initial one)."""
        k = bisect.bisect_right(self.slots, slot - self.alpha) - 1
        return max(1, self.first_slot(k)) if k >= 0 else 1

    def span(self, slot: int) -> tuple[Membership | None, float]:
        """The configuration governing ``slot`` and the last slot it governs as far as is
        known (infinite while no later configuration is chosen)."""
        k = bisect.bisect_right(self.slots, slot - self.alpha) - 1
        last = self.first_slot(k + 1) - 1 if k + 1 < len(self.slots) else _NEVER
        return (self.configs[k] if k >= 0 else None), last

    def governing(self, first: int, last: int) -> list[Membership]:
        """Every configuration that governs a slot in ``first..last``, in slot order."""
        out: list[Membership] = []
        for k, m in enumerate(self.configs):
            start = self.first_slot(k)
            end = self.first_slot(k + 1) - 1 if k + 1 < len(self.slots) else _NEVER
            if start <= last and end >= first and m not in out:
                out.append(m)
        return out

    def latest(self) -> Membership | None:
        """The last configuration chosen (perhaps not in force yet)."""
        return self.configs[-1] if self.configs else None

    def needed_from(self, slot: int) -> list[tuple[int, Membership]]:
        """What a snapshot through ``slot`` must keep: the configuration in force at the slot
        after it, and every later one (chosen within the last ``alpha`` slots)."""
        k = max(0, bisect.bisect_right(self.slots, slot + 1 - self.alpha) - 1)
        return list(zip(self.slots[k:], self.configs[k:], strict=True))

    def replace(self, items: Iterable[tuple[int, Membership]]) -> None:
        """Start over from a snapshot's configurations."""
        self.slots, self.configs = [], []
        for slot, m in items:
            self.add(slot, m)

    @property
    def changed(self) -> bool:
        """Whether anything but the initial configuration (all voters) is known: the node
        keeps its plain-majority fast paths, and its traces, until it is."""
        return (len(self.slots) != 1 or self.slots[0] != 1 - self.alpha
                or self.configs[0] != self.initial)
