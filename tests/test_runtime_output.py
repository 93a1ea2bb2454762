"""The node runtime's output path: what leaves in which socket write, and when.

Three runtimes as the node process runs them (group commit on, no fsync), joined by an
in-memory bus whose clients cork like gmqtt's: a corked publish is held until ``flush``,
which is one socket write. The test reads the writes and the WAL appends in the order they
happened.
"""

import asyncio
from collections import deque
from typing import Any

from consensus.codec import encode_message
from consensus.messages import ClientRequest
from consensus.runtime import NodeOptions, NodeRuntime
from consensus.transport import topics

IDS = ("n1", "n2", "n3")


class Net:
    """Delivers every written publish to its addressee; logs writes and WAL appends."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (node, "write" | "wal", detail)
        self.queue: deque[tuple[str, bytes]] = deque()
        self.runtimes: dict[str, NodeRuntime] = {}

    def client_for(self, node: str) -> Any:
        net = self

        class CorkingClient:
            library = "fake"

            def __init__(self, library, url, client_id, on_message, identity=None):
                self.held: list[tuple[str, bytes]] = []
                self.corked = False

            def cork(self) -> None:
                self.corked = True

            def flush(self) -> None:
                self.corked = False
                if self.held:
                    net.events.append((node, "write", [t for t, _ in self.held]))
                    net.queue.extend(self.held)
                    self.held = []

            def publish(self, topic, payload, qos=0) -> None:
                self.held.append((topic, payload))
                if not self.corked:
                    self.flush()

            async def connect(self) -> None:
                pass

            async def subscribe(self, *t, qos=0) -> None:
                pass

            async def close(self) -> None:
                pass

        return CorkingClient

    async def pump(self) -> None:
        """Deliver until nothing moves (each delivery's drain runs a loop turn later)."""
        for _ in range(50):
            await asyncio.sleep(0)
            while self.queue:
                topic, payload = self.queue.popleft()
                parts = topic.split("/")
                if parts[2] in self.runtimes and parts[3] == "from":
                    self.runtimes[parts[2]].on_message(topic, payload)


async def started(tmp_path) -> Net:
    """The three runtimes, n1 elected."""
    net = Net()
    for node in IDS:
        opts = NodeOptions("raft", node, IDS, "demo", "mqtt://127.0.0.1:1", tmp_path,
                           fsync=False)
        rt = NodeRuntime(opts, client_factory=net.client_for(node), group_commit=True)
        append = rt.storage.append

        def logged(records, sync=True, node=node, append=append):
            net.events.append((node, "wal", [type(r).__name__ for r in records]))
            return append(records, sync=sync)

        rt.storage.append = logged  # type: ignore[method-assign]
        net.runtimes[node] = rt
    leader = net.runtimes["n1"]
    leader.node.tick(leader.now())
    leader.node.campaign()
    leader.drain()
    await net.pump()
    assert leader.node.status().role == "leader"
    return net


def request(seq: int) -> bytes:
    return encode_message(ClientRequest(src="c1", dst="n1", seq=seq, command=f"SET x = {seq}"),
                          "demo")


def leader_takes(tmp_path, *payloads: bytes) -> Net:
    """Elect n1, then hand it ``payloads`` on one client connection in one loop turn and let
    everything settle; the events from the hand-over on."""

    async def go() -> Net:
        cluster = await started(tmp_path)
        cluster.events.clear()
        for payload in payloads:
            cluster.runtimes["n1"].on_message(topics.request("demo", "n1", "conn1"), payload)
        await cluster.pump()
        return cluster

    return asyncio.run(go())


def of(cluster: Net, node: str) -> list[tuple[str, Any]]:
    return [(kind, detail) for who, kind, detail in cluster.events if who == node]


def test_the_leaders_entries_leave_before_its_own_wal_write(tmp_path):
    mine = of(leader_takes(tmp_path, request(1)), "n1")
    kind, first = mine[0]
    # One write carries the entry to both followers, and it goes before the WAL append:
    # replication overlaps the leader's own write instead of waiting for it.
    assert kind == "write"
    assert sorted(first) == [topics.peer("demo", "n2", "n1"), topics.peer("demo", "n3", "n1")]
    assert mine[1][0] == "wal"
    # ... and the client is answered once a follower's copy and the leader's make a majority.
    replies = [t for kind, d in mine if kind == "write" for t in d
               if t == topics.client("demo", "conn1")]
    assert replies == [topics.client("demo", "conn1")]


def test_a_followers_acknowledgement_leaves_after_its_wal_write(tmp_path):
    follower = of(leader_takes(tmp_path, request(1)), "n2")
    assert follower[0] == ("wal", ["LogAppend", "CommitMark"])
    assert follower[1] == ("write", [topics.peer("demo", "n1", "n2")])


def test_replies_of_one_drain_leave_as_one_publish_per_connection(tmp_path):
    # Five clients' requests arrive in one loop turn: one drain, one reply batch.
    cluster = leader_takes(tmp_path, *(
        encode_message(ClientRequest(src=f"c{i}", dst="n1", seq=1, command=f"SET k{i} = {i}"),
                       "demo") for i in range(5)))
    writes = [d for kind, d in of(cluster, "n1") if kind == "write"]
    to_client = [t for d in writes for t in d if t == topics.client("demo", "conn1")]
    assert to_client == [topics.client("demo", "conn1")]
