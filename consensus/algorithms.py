"""The registry of algorithms: a name -> its node class and its safety checker."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from consensus.check.invariants import Checker
from consensus.node import Node


@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str
    title: str
    node_class: type[Node]
    checker_class: type[Checker]


# name -> (title, node class path, checker class path); imported on first use.
_REGISTRY = {
    "raft": ("Raft", "consensus.raft.node:RaftNode", "consensus.check.raft:RaftChecker"),
    "paxos": ("Multi-Paxos", "consensus.paxos.node:PaxosNode",
              "consensus.check.paxos:PaxosChecker"),
}
NAMES = tuple(_REGISTRY)


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def get_algorithm(name: str) -> Algorithm:
    """Look an algorithm up by name; a clear error names the ones that exist."""
    try:
        title, node_path, checker_path = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r} (choose from {', '.join(NAMES)})") from None
    return Algorithm(name, title, _load(node_path), _load(checker_path))
