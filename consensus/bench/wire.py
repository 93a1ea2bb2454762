"""Bytes on the wire per operation, by message kind, counted at the broker.

A counting connection subscribes to the whole cluster tree (``consensus/<cluster>/#``) for
one step of bus load and sees every publish as the broker hands it on: protocol messages
(named by their decoded kind, an empty AppendEntries or Accept as a heartbeat, as
:func:`consensus.messages.traffic_kind` names them), client requests and client replies
(named by their topic, so a batch counts once, as one publish), statuses and controls.
Bytes are the payload as published; MQTT adds the topic and 4-7 bytes of framing to each
message, which the topic bytes column shows. The subscriber itself doubles the broker's
deliveries of that traffic, so the step runs at a moderate rate and is not a throughput
figure.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from consensus.codec import DecodeError, decode_message
from consensus.messages import traffic_kind
from consensus.transport import topics
from consensus.transport.mqtt import make_client

if TYPE_CHECKING:
    from consensus.bench.throughput import BusCluster


def classify(topic: str, payload: bytes, cluster: str) -> str:
    """The kind a publish on ``topic`` counts as."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[3] == "from":
        try:
            return traffic_kind(decode_message(payload, cluster=cluster))
        except DecodeError:
            return "undecodable"
    if len(parts) == 5 and parts[3] == "request":
        return "client request"
    if len(parts) == 4 and parts[2] == "client":
        return "client reply"
    if len(parts) == 4 and parts[3] in ("status", "control"):
        return parts[3]
    return "other"


class WireCounter:
    """Counts messages, payload bytes and topic bytes by kind."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.messages: Counter[str] = Counter()
        self.payload: Counter[str] = Counter()
        self.topic: Counter[str] = Counter()

    def on_message(self, topic: str, payload: bytes) -> None:
        kind = classify(topic, payload, self.cluster)
        self.messages[kind] += 1
        self.payload[kind] += len(payload)
        self.topic[kind] += len(topic)

    def per_op(self, ops: int) -> list[dict[str, Any]]:
        """One row per kind, most bytes first: messages, payload and topic bytes per op."""
        if ops <= 0:
            return []
        return [{"kind": kind, "messages_per_op": round(self.messages[kind] / ops, 3),
                 "bytes_per_op": round(self.payload[kind] / ops, 1),
                 "topic_bytes_per_op": round(self.topic[kind] / ops, 1),
                 "bytes_per_message": round(self.payload[kind] / self.messages[kind], 1)}
                for kind in sorted(self.payload, key=lambda k: -self.payload[k])]


def measure_wire(cluster: BusCluster, rate: float, seconds: float) -> dict[str, Any]:
    """One step of ``cluster`` 's load at ``rate`` with the counter subscribed."""
    counter = WireCounter(cluster.name)
    client = make_client("gmqtt", cluster.state.broker,
                         f"{cluster.name}-wire-{uuid.uuid4().hex[:6]}", counter.on_message,
                         cluster.cluster.identity("control"))

    async def connect() -> None:
        await client.connect()
        await client.subscribe(f"{topics.PREFIX}/{cluster.name}/#")
        await asyncio.sleep(0.2)  # the subscription is in place before the load starts

    cluster.loop.call(connect())
    cluster.settle()
    counter.messages.clear()
    counter.payload.clear()
    counter.topic.clear()
    try:
        step = cluster.step(rate, seconds)
        cluster.loop.call(asyncio.sleep(0.3))  # the step's last replies and acknowledgements
    finally:
        cluster.loop.call(client.close())
    ops = step.acked
    rows = [r for r in counter.per_op(ops) if r["kind"] not in ("status", "control")]
    return {"label": cluster.label, "rate": rate, "seconds": seconds, "acked": ops,
            "counted_at": "broker (a subscriber to the cluster's topics)",
            "by_kind": rows,
            "total_bytes_per_op": round(sum(r["bytes_per_op"] for r in rows), 1),
            "total_messages_per_op": round(sum(r["messages_per_op"] for r in rows), 3)}
