"""Cross-configuration quorum maths for the safety checkers: which configurations govern an
index, and whether two configurations can ever decide without hearing of each other.

Consensus is safe because any two quorums that could decide conflicting things share a node.
Within one configuration majorities always intersect; across a change they need not: a
quorum of ``{n1,n2,n3}`` (``{n1,n2}``) and one of ``{n1,n2,n3,n4,n5}`` (``{n3,n4,n5}``) are
disjoint, which is why Raft never switches two voters at once without a joint configuration
(thesis §4.3) and why single-server steps (§4.1) only ever add or remove one voter.
:func:`quorums_intersect` answers the question exactly, for simple and joint configurations
alike, by enumerating the smallest quorums (clusters are small; results are cached).

:class:`ConfigHistory` is the sequence of configurations an observer has seen decided (the
``CONFIG`` entries of the agreed, applied sequence, the same for Raft's log and Multi-Paxos's
slots), by index, starting from the initial cluster. ``governing(i, delay)`` is the
configuration in force at index ``i`` when a configuration decided at index ``c`` takes
effect at ``c + delay``: Raft's configurations take effect as soon as they are in the log,
so the one governing an entry is the latest before it (``delay=1``); Multi-Paxos's take
effect ``alpha`` slots later.
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from itertools import combinations

from consensus.membership import Membership, is_config_text
from consensus.messages import NodeId
from consensus.quorum import majority


def _minimal_quorums(config: Membership) -> tuple[frozenset[NodeId], ...]:
    """Every quorum of ``config`` that has no smaller quorum inside it (a majority of the
    voters, joined while joint with a majority of the old voters)."""
    new = [frozenset(c) for c in combinations(sorted(config.voters), majority(len(config.voters)))]
    if not config.old:
        return tuple(new)
    old = [frozenset(c) for c in combinations(sorted(config.old), majority(len(config.old)))]
    unions = {a | b for a in new for b in old}
    return tuple(q for q in unions if not any(p < q for p in unions))


@lru_cache(maxsize=1024)
def quorums_intersect(a: Membership, b: Membership) -> bool:
    """Whether every quorum of ``a`` shares a node with every quorum of ``b``.

    False means two groups of nodes can decide, one under each configuration, without any
    node taking part in both decisions: the split brain a membership change must never allow.
    Learners take no part (they never count towards a quorum).
    """
    if a.voting == b.voting and a.voters == b.voters and a.old == b.old:
        return True
    return all(not b.has_quorum(b.voting - q) for q in _minimal_quorums(a))


class ConfigHistory:
    """Decided configurations by the index they were decided at; see the module doc."""

    __slots__ = ("_configs", "_indexes", "changed")

    def __init__(self, initial: Membership) -> None:
        self._indexes: list[int] = [0]
        self._configs: list[Membership] = [initial]
        # Whether any configuration beyond the initial one was decided (the checkers keep
        # their plain majority arithmetic, and their speed, until one is).
        self.changed = False

    @property
    def initial(self) -> Membership:
        return self._configs[0]

    @property
    def latest(self) -> tuple[int, Membership]:
        """The last decided configuration and its index (0 for the initial one)."""
        return self._indexes[-1], self._configs[-1]

    def decided(self, index: int, text: str) -> tuple[Membership, Membership] | None:
        """Record the configuration ``text`` decided at ``index`` (in index order: a later one
        than every recorded index). Returns ``(previous, new)`` if it is new, else None (the
        same index seen again, from another replica)."""
        if index <= self._indexes[-1]:
            return None
        config = Membership.from_text(text)
        previous = self._configs[-1]
        self._indexes.append(index)
        self._configs.append(config)
        self.changed = True
        return previous, config

    def governing(self, index: int, delay: int = 1) -> Membership:
        """The configuration in force at ``index``: the latest decided at ``index - delay`` or
        before."""
        return self._configs[self.position(index, delay)]

    def position(self, index: int, delay: int = 1) -> int:
        """Which configuration (0: the initial one, 1: the first decided...) governs ``index``."""
        return max(bisect.bisect_right(self._indexes, index - delay) - 1, 0)

    def at_position(self, position: int) -> Membership:
        return self._configs[position]


def config_text(command: object) -> str | None:
    """The configuration a log command carries, or None for any other command."""
    text = getattr(command, "text", None)
    return text if text is not None and is_config_text(text) else None
