"""A null protocol for the benchmark: the leader applies and replies without replicating.

It runs on the same runtime, codec, bus and client path as Raft and Multi-Paxos, so the
difference between its figures and theirs is the cost of consensus (replication, the WAL's
fsync, the followers' round trip). It persists nothing, so it also pays no fsync.

It is in the algorithm registry (``consensus/algorithms.py``) but not listed: the benchmark
starts it like any algorithm (``consensus-lab node --algorithm null``), and experiments,
comparisons and the dashboard do not offer it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensus.messages import ClientRequest, Message
from consensus.node import LogSlot, Node, Status


class NullNode(Node):
    """The lowest id is the leader forever; it applies each request at once."""

    algorithm = "null"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leader = self.peers[0]
        self.index = 0

    def tick(self, now: float) -> None:
        self.now = now

    def step(self, msg: Message) -> None:
        if not isinstance(msg, ClientRequest):
            return  # there are no protocol messages
        if self.id != self.leader:
            self.redirect(msg, self.leader)
            return
        if self.maybe_answer_from_cache(msg):
            return
        self.index += 1
        self.pending[(msg.src, msg.seq)] = self.index
        self.apply_entry(self.index, msg.as_command())

    def restore(self, records: Sequence[Any]) -> None:
        pass

    def status(self) -> Status:
        return Status(self.id, self.algorithm, "leader" if self.id == self.leader else
                      "follower", 1, self.leader, self.index, self.index, self.index)

    def next_deadline(self) -> float:
        return float("inf")

    def log_tail(self, count: int) -> list[LogSlot]:
        return []  # it keeps no log: requests are applied as they come

