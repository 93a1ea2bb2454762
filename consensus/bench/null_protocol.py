"""A null protocol for the benchmark: the leader applies and replies without replicating.

It runs on the same runtime, codec, bus and client path as Raft and Multi-Paxos, so the
difference between its figures and theirs is the cost of consensus (replication, the WAL's
fsync, the followers' round trip). It persists nothing, so it also pays no fsync.

It is in the algorithm registry (``consensus/algorithms.py``) but not listed: the runtime
starts it like any algorithm, and experiments, comparisons and the dashboard do not offer it.
The benchmark starts it as ``python -m consensus.bench.null_protocol --id n1 --peers ...``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
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


def node_command(python: str, node_id: str, peers: Sequence[str], cluster: str, broker: str,
                 data_dir: str, status_interval_ms: float = 50.0) -> list[str]:
    return [python, "-m", "consensus.bench.null_protocol", "--id", node_id,
            "--peers", ",".join(peers), "--cluster", cluster, "--broker", broker,
            "--data-dir", data_dir, "--status-interval-ms", str(status_interval_ms)]


def main(argv: list[str] | None = None) -> None:
    from consensus.runtime import NodeOptions, run_node

    p = argparse.ArgumentParser(prog="python -m consensus.bench.null_protocol")
    p.add_argument("--id", required=True)
    p.add_argument("--peers", required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--mqtt-client", default="gmqtt")
    p.add_argument("--status-interval-ms", type=float, default=50.0)
    a = p.parse_args(argv)
    opts = NodeOptions("null", a.id, tuple(sorted(a.peers.split(","))), a.cluster, a.broker,
                       a.data_dir, False, a.mqtt_client, status_interval_ms=a.status_interval_ms)
    run_node(opts)  # the registry names NullNode


if __name__ == "__main__":
    main()
