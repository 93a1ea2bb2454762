"""Majority arithmetic shared by Raft and Multi-Paxos. Pure functions, no state."""

from __future__ import annotations

from collections.abc import Iterable


def majority(n: int) -> int:
    """Votes needed out of ``n`` voters: ``n // 2 + 1`` (3 of 5, 2 of 3, 3 of 4)."""
    if n < 1:
        raise ValueError(f"a cluster needs at least one node, got {n}")
    return n // 2 + 1


def has_quorum(granted: int, n: int) -> bool:
    """True when ``granted`` votes out of ``n`` voters are a majority."""
    return granted >= majority(n)


def committed_index(acked: Iterable[int], n: int) -> int:
    """The highest index that a majority of the ``n`` voters hold.

    ``acked`` is each voter's highest acknowledged index (missing voters count as 0). Sorting
    descending, the majority-th value is held by at least a majority: that is the quorum index.
    """
    values = sorted(acked, reverse=True)
    need = majority(n)
    if len(values) < need:
        return 0
    return values[need - 1]
