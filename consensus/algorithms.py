"""The registry of algorithms: a name -> everything the rest of the package asks about it.

The simulator, the runtime, the reports and the dashboard know an algorithm only through
this table and the classes it names: its node class, its safety checker, its message classes
(which describe themselves: phase, rejection, entries carried; see :class:`Message`) and how
to show it (title, colour, what its term is called). A new algorithm is a package of its own
plus one entry here.

Each entry also declares its *variants*: the :class:`~consensus.node.Config` fields that are
design choices a user may switch for it, and the values each accepts (``consensus/variants.py``
applies them and refuses the rest).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from consensus.check.invariants import Checker
from consensus.messages import ClientReply, ClientRequest, ConfigChange, Message, TimeoutNow
from consensus.node import ELECTIONS, MEMBERSHIP_CHANGES, READ_PATHS, Node


@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str
    title: str
    short: str  # a tag's worth of title: "Paxos"
    node_class: type[Node]
    checker_class: type[Checker]
    messages: tuple[type[Message], ...]  # its protocol messages, in the order they are defined
    palette: int  # its colour everywhere: an index into the reports' and dashboard's palettes
    term_label: str  # what Status.term counts, in words: "term", "ballot"
    # How the dashboard words a campaign; fields from the node's Status (term, ballot) plus
    # next_term and term_label.
    campaign: str
    pre_vote: str
    listed: bool  # offered by default (the CLI's "both", comparisons, the dashboard)
    # Config field -> the values it accepts as a variant (None: any value Config accepts).
    variants: Mapping[str, tuple[Any, ...] | None]


@dataclass(frozen=True, slots=True)
class _Entry:
    title: str
    short: str
    node: str  # "module:Class", imported on first use
    checker: str
    messages: str  # the module defining its message classes
    palette: int
    term_label: str = "term"
    campaign: str = "{term_label} {term}"
    pre_vote: str = "{term_label} {next_term}"
    listed: bool = True
    variants: Mapping[str, tuple[Any, ...] | None] = field(default_factory=dict)


# The switches Raft and Multi-Paxos both offer (where the idea exists for both, it is here).
_ON_OFF = (True, False)
_SHARED_VARIANTS: dict[str, tuple[Any, ...] | None] = {
    "pre_vote": _ON_OFF,
    "check_quorum": _ON_OFF,
    "election": ELECTIONS,
    # How GETs are answered; implemented once in ConsensusNode (node.py's module doc).
    "read_path": READ_PATHS,
    "lease_drift": None,
    # Log compaction: snapshot after this many applied entries / slots (0: never).
    "snapshot_entries": None,
}


_REGISTRY = {
    "raft": _Entry("Raft", "Raft", "consensus.raft.node:RaftNode",
                   "consensus.check.raft:RaftChecker", "consensus.raft.messages", palette=0,
                   campaign="term {term}, votes for itself", pre_vote="term {next_term}",
                   variants={**_SHARED_VARIANTS,
                             # joint consensus or one voter per step (thesis ch. 4)
                             "membership_change": MEMBERSHIP_CHANGES}),
    "paxos": _Entry("Multi-Paxos", "Paxos", "consensus.paxos.node:PaxosNode",
                    "consensus.check.paxos:PaxosChecker", "consensus.paxos.messages", palette=1,
                    term_label="ballot", campaign="Prepare with ballot {ballot}",
                    pre_vote="a new ballot",
                    # Lamport's alpha: a configuration chosen in slot i governs from i + alpha
                    variants={**_SHARED_VARIANTS, "alpha": None}),
    # The benchmark's baseline (no replication: its figures against the others' are the cost
    # of consensus). Registered so that the runtime starts it like any algorithm, which also
    # shows what a new algorithm takes; unlisted, because it is not consensus and has nothing
    # to compare in experiments or on the dashboard.
    "null": _Entry("Null protocol", "Null", "consensus.bench.null_protocol:NullNode",
                   "consensus.check.invariants:SharedChecker", "consensus.bench.null_protocol",
                   palette=2, listed=False),
}
NAMES = tuple(name for name, entry in _REGISTRY.items() if entry.listed)  # the listed ones
ALL_NAMES = tuple(_REGISTRY)


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _message_classes(module: str) -> tuple[type[Message], ...]:
    """The message classes a module defines (not the ones it imports)."""
    found = vars(importlib.import_module(module)).values()
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, Message)
                 and c.__module__ == module)


@cache
def get_algorithm(name: str) -> Algorithm:
    """Look an algorithm up by name; a clear error names the ones that exist."""
    try:
        e = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r} (choose from {', '.join(NAMES)})") from None
    return Algorithm(name, e.title, e.short, _load(e.node), _load(e.checker),
                     _message_classes(e.messages), e.palette, e.term_label, e.campaign,
                     e.pre_vote, e.listed, e.variants)


@cache
def message_classes() -> dict[str, type[Message]]:
    """Every registered message class by kind (the client's too), for reading saved traces."""
    out: dict[str, type[Message]] = {
        c.kind: c for c in (ClientRequest, ClientReply, ConfigChange, TimeoutNow)}
    for name in ALL_NAMES:
        out.update((c.kind, c) for c in get_algorithm(name).messages)
    return out
