"""Cluster membership, the same for both algorithms: who votes, who only learns, and what a
quorum is while a configuration changes. Pure values and functions, no state.

A :class:`Membership` is one configuration: its ``voters``, the ``learners`` that receive
the log but neither vote nor count towards a quorum (new members catching up before they are
promoted), and, while a joint configuration is in force (Raft's C_old,new, thesis §4.3),
the ``old`` voters: a quorum is then a majority of ``voters`` *and* a majority of ``old``, so
no decision can be taken by either configuration alone.

Configurations travel in the replicated log as commands whose text starts with ``CONFIG``
(:meth:`Membership.command_text`). The key-value store applies such a command as a no-op that
answers with the configuration, so it keeps the exactly-once bookkeeping of any command; a
client cannot forge one, because the node's front door refuses client commands that begin
with the verb (:func:`is_config_text`), and only a :class:`~consensus.messages.ConfigChange`
request puts one in the log.

A change an operator asks for is a :class:`Change`: ``add n4``, ``remove n2``,
``replace n2 n7`` (remove n2 and add n7), or ``transfer n3`` (hand leadership to n3, the
membership unchanged). :meth:`Membership.target` says which voters a change leads to.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from consensus import quorum
from consensus.messages import NodeId

CONFIG_VERB = "CONFIG"
# How a leader already running a change starts its ERROR answer; operators retry on it.
BUSY = "busy"
CHANGE_KINDS = ("add", "remove", "replace", "transfer")


class ChangeError(ValueError):
    """A membership change that cannot be made; the message says why."""


def _ids(text: str) -> frozenset[NodeId]:
    return frozenset(p for p in text.split(",") if p)


def _show(ids: Iterable[NodeId]) -> str:
    return ",".join(sorted(ids))


@dataclass(frozen=True, slots=True)
class Membership:
    """One configuration; see the module doc. Invariant: ``voters`` is never empty, and
    ``learners`` shares no node with ``voters`` or ``old``."""

    voters: frozenset[NodeId]
    old: frozenset[NodeId] = frozenset()  # non-empty only while joint (C_old,new)
    learners: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        if not self.voters:
            raise ChangeError("a configuration needs at least one voter")
        if self.learners & (self.voters | self.old):
            raise ChangeError(f"{_show(self.learners & (self.voters | self.old))} cannot be "
                              "a voter and a learner at once")

    @classmethod
    def of(cls, voters: Iterable[NodeId]) -> Membership:
        """A simple (not joint) configuration of ``voters`` and no learners."""
        return cls(frozenset(voters))

    @property
    def joint(self) -> bool:
        return bool(self.old)

    @property
    def voting(self) -> frozenset[NodeId]:
        """Every node whose vote counts in this configuration (both halves while joint)."""
        return self.voters | self.old

    @property
    def members(self) -> frozenset[NodeId]:
        """Every node the log is replicated to: the voters of both halves and the learners."""
        return self.voters | self.old | self.learners

    def is_voter(self, nid: NodeId) -> bool:
        return nid in self.voters or nid in self.old

    def has_quorum(self, granted: Collection[NodeId]) -> bool:
        """Whether the nodes in ``granted`` form a quorum: a majority of the voters, and while
        joint a majority of the old voters as well. Learners never count."""
        if not quorum.has_quorum(len(self.voters & set(granted)), len(self.voters)):
            return False
        return not self.old or quorum.has_quorum(len(self.old & set(granted)), len(self.old))

    def committed_index(self, match: Mapping[NodeId, int]) -> int:
        """The highest index a quorum holds, given each node's highest held index (missing
        nodes hold nothing): the lower of the two halves' while joint."""
        index = quorum.committed_index([match.get(v, 0) for v in self.voters],
                                       len(self.voters))
        if self.old:
            index = min(index, quorum.committed_index([match.get(v, 0) for v in self.old],
                                                      len(self.old)))
        return index

    # -- changes -------------------------------------------------------------------------

    def target(self, change: Change) -> frozenset[NodeId]:
        """The voters ``change`` leads to from this (simple) configuration; raises
        :class:`ChangeError` when it cannot be made."""
        if self.joint:
            raise ChangeError("a joint configuration is still in force")
        for nid in change.remove:
            if nid not in self.voters:
                raise ChangeError(f"{nid} is not a voter (voters: {_show(self.voters)})")
        for nid in change.add:
            if nid in self.voters:
                raise ChangeError(f"{nid} is already a voter")
        voters = (self.voters - set(change.remove)) | set(change.add)
        if not voters:
            raise ChangeError("the change would leave no voter")
        return voters

    # -- in the log ------------------------------------------------------------------------

    def to_text(self) -> str:
        """``voters=n1,n2,n3`` plus `` old=...`` while joint and `` learners=...`` if any."""
        text = f"voters={_show(self.voters)}"
        if self.old:
            text += f" old={_show(self.old)}"
        if self.learners:
            text += f" learners={_show(self.learners)}"
        return text

    def command_text(self) -> str:
        """The command that carries this configuration in the log."""
        return f"{CONFIG_VERB} {self.to_text()}"

    @classmethod
    def from_text(cls, text: str) -> Membership:
        """Parse :meth:`to_text` (or :meth:`command_text`) back; raises ``ChangeError``."""
        words = text.split()
        if words and words[0].upper() == CONFIG_VERB:
            words = words[1:]
        parts: dict[str, frozenset[NodeId]] = {}
        for word in words:
            name, eq, value = word.partition("=")
            if not eq or name not in ("voters", "old", "learners") or name in parts:
                raise ChangeError(f"malformed configuration {text!r}: unexpected {word!r}")
            parts[name] = _ids(value)
        if "voters" not in parts:
            raise ChangeError(f"malformed configuration {text!r}: no voters")
        return cls(parts["voters"], parts.get("old", frozenset()),
                   parts.get("learners", frozenset()))

    def __str__(self) -> str:
        return self.to_text()


def is_config_text(text: str) -> bool:
    """Whether a command's text is a configuration (which only the leader may write)."""
    words = text.split(None, 1)
    return bool(words) and words[0].upper() == CONFIG_VERB


@dataclass(frozen=True, slots=True)
class Change:
    """A membership change an operator asks for; see the module doc."""

    kind: str  # one of CHANGE_KINDS
    add: tuple[NodeId, ...] = ()
    remove: tuple[NodeId, ...] = ()
    target: NodeId | None = None  # transfer: the node that should lead

    @classmethod
    def parse(cls, text: str) -> Change:
        """``add n4`` | ``remove n2`` | ``replace n2 n7`` | ``transfer n3``."""
        words = text.split()
        if not words or words[0].lower() not in CHANGE_KINDS:
            raise ChangeError(f"unknown change {text!r} (expected add NODE, remove NODE, "
                              "replace OLD NEW or transfer NODE)")
        kind, args = words[0].lower(), words[1:]
        want = 2 if kind == "replace" else 1
        if len(args) != want:
            raise ChangeError(f"{kind} takes {want} node id{'s' if want > 1 else ''}, "
                              f"got {text!r}")
        if kind == "add":
            return cls(kind, add=(args[0],))
        if kind == "remove":
            return cls(kind, remove=(args[0],))
        if kind == "replace":
            if args[0] == args[1]:
                raise ChangeError(f"replace needs two different nodes, got {text!r}")
            return cls(kind, remove=(args[0],), add=(args[1],))
        return cls(kind, target=args[0])

    def __str__(self) -> str:
        if self.kind == "transfer":
            return f"transfer {self.target}"
        return " ".join([self.kind, *self.remove, *self.add])
