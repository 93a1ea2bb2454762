"""The sending half of the batching client protocol: requests ready together leave together.

A client connection hands each request to :meth:`RequestBatcher.send`; nothing waits for
more (linger 0, like a Kafka producer with ``linger.ms=0`` or etcd's proposal batching):
whatever the connection's clients send in one turn of the event loop is published at the end
of that turn, one publish per target node -- a plain ClientRequest when it is alone, a
ClientBatch when there are several (framing: docs/protocol.md). Each request keeps its own
``(client, seq)``, so retries, exactly-once and per-request latency are as without batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from consensus.codec import MAX_PAYLOAD, encode_client_batch, encode_message
from consensus.messages import ClientBatch, ClientRequest, NodeId
from consensus.transport import topics

# Below this many characters a request always fits in MAX_PAYLOAD, even if every character
# were escaped as \uXXXX (6 bytes) and the client id were as long as allowed.
_ALWAYS_FITS = MAX_PAYLOAD // 8

Publish = Callable[[str, bytes], None]


class RequestBatcher:
    """Per client connection ``conn``: coalesce requests into one publish per node per turn.

    ``publish(topic, payload)`` is the connection's (non-blocking) publish. :meth:`flush`
    sends at once; a caller that issues a burst from a loop of its own may call it after
    the burst instead of waiting for the end of the turn.
    """

    def __init__(self, cluster: str, conn: str, publish: Publish) -> None:
        self.cluster = cluster
        self.conn = conn
        self.publish = publish
        self._queued: dict[NodeId, list[ClientRequest]] = {}
        self._scheduled = False
        self.publishes = 0  # payloads sent, and the requests in them (batching at work)
        self.requests = 0

    def send(self, request: ClientRequest) -> None:
        """Queue ``request`` for its ``dst``; raise ValueError if it could never be sent."""
        if len(request.command) > _ALWAYS_FITS or len(request.src) > _ALWAYS_FITS:
            size = len(encode_message(request, self.cluster))
            if size > MAX_PAYLOAD:
                raise ValueError(f"a request of {size} bytes exceeds the {MAX_PAYLOAD}-byte "
                                 f"message limit")
        queue = self._queued.get(request.dst)
        if queue is None:
            self._queued[request.dst] = [request]
        else:
            queue.append(request)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Publish everything queued: one payload per node (split only past MAX_PAYLOAD)."""
        self._scheduled = False
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        for dst, requests in queued.items():
            topic = topics.request(self.cluster, dst, self.conn)
            for payload in encode_client_batch(ClientBatch(dst, tuple(requests)), self.cluster):
                self.publish(topic, payload)
                self.publishes += 1
            self.requests += len(requests)


__all__ = ["RequestBatcher"]
