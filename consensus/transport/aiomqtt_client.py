"""The aiomqtt implementation of :class:`consensus.transport.mqtt.MqttClient`.

aiomqtt (v2, on paho-mqtt 2) is the maintained successor of asyncio-mqtt. It is slower than
gmqtt here: every received message goes through a queue and a fresh task. Its ``publish``
is a coroutine that hands the message to paho and then waits for paho to report it
written, which takes one loop iteration per message (about 5k msgs/s). Our ``publish``
instead calls the underlying paho client's ``publish`` directly: synchronous, in order,
non-blocking (paho queues the packet and aiomqtt's writer callback flushes the queue in
batches); QoS 1/2 acknowledgements are still handled by paho. That client is aiomqtt's
private ``_client``; should a future aiomqtt hide it, we fall back to an outbox drained
in order by one sender task through aiomqtt's public ``publish``.

What aiomqtt does not do for us, and this class does:

- TCP_NODELAY: paho creates its own socket and leaves Nagle on; aiomqtt applies
  ``socket_options`` right after the TCP connect (before the CONNACK).
- reconnecting: aiomqtt's message iterator raises on disconnect and that is the end of
  it. A reader task notices, reconnects every RECONNECT_DELAY (a fresh aiomqtt client,
  same id, clean session) and subscribes to the same topics again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque

import aiomqtt
import paho.mqtt.client as paho_mqtt

from consensus.auth import Identity
from consensus.transport.mqtt import (
    CONNECT_TIMEOUT,
    KEEPALIVE,
    RECONNECT_DELAY,
    ClientStats,
    OnMessage,
    TransportError,
    credentials_of,
    deliver,
    socket_nodelay,
)

log = logging.getLogger(__name__)

_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
_FAIRNESS = 256  # yield to the loop after this many sends in one burst


class AiomqttClient:
    library = "aiomqtt"

    def __init__(self, host: str, port: int, client_id: str, on_message: OnMessage,
                 identity: Identity | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.identity = identity
        self.ssl_context = ssl_context
        self.port = port
        self.client_id = client_id
        self.url = f"{'mqtts' if ssl_context else 'mqtt'}://{host}:{port}"
        self.stats = ClientStats()
        self._on_message = on_message
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._up = False  # the current aiomqtt client is connected
        self._closed = False
        self._started = False
        self._topics: dict[str, int] = {}
        self._outbox: deque[tuple[str, bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Task[None]] = set()  # QoS 1/2 publishes awaiting acks
        self._paho: paho_mqtt.Client | None = None  # set while connected, if reachable
        self._warned_offline = False

    # -- the interface --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up and not self._closed

    async def connect(self) -> None:
        if self._started:
            raise TransportError(f"{self.client_id}: already connected; make a new client")
        await self._open()
        self._started = True
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"{self.client_id}-read"),
                       asyncio.create_task(self._send_loop(), name=f"{self.client_id}-send")]

    async def subscribe(self, *topics: str, qos: int = 0) -> None:
        if not topics:
            return
        if self._client is None or self._closed:
            raise TransportError(f"{self.client_id}: not connected (call connect() first)")
        for topic in topics:
            self._topics[topic] = qos
        await self._send_subscribe(self._client, {t: qos for t in topics})

    # False forces the public-API outbox path (tests exercise both).
    use_paho_directly = True

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        if not self._up or self._closed:
            self._drop(topic)
            return
        paho = self._paho
        if paho is not None and not self._outbox:
            info = paho.publish(topic, payload, qos, False)
            if info.rc == paho_mqtt.MQTT_ERR_SUCCESS:
                self.stats.published += 1
            else:
                self._drop(topic)
            return
        self._outbox.append((topic, payload, qos))
        self._wake.set()

    async def close(self) -> None:
        if self._closed:
            return
        # Let already-queued messages go first (a node's last reply before it exits).
        if self._up and self._outbox:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained(), 1.0)
        self._closed = True
        self._up = False
        for task in [*self._tasks, *self._acks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._acks, return_exceptions=True)
        await self._release()

    def tcp_nodelay(self) -> bool | None:
        if self._client is None or not self._up:
            return None
        # aiomqtt exposes no socket; paho's client (its ``_client``) does.
        paho = getattr(self._client, "_client", None)
        sock = paho.socket() if paho is not None else None
        return socket_nodelay(sock if isinstance(sock, socket.socket) else None)

    # -- connection -----------------------------------------------------------------------

    async def _open(self) -> None:
        credentials = credentials_of(self.identity)
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V311, clean_session=True,
            keepalive=KEEPALIVE, timeout=CONNECT_TIMEOUT, socket_options=[_NODELAY],
            logger=log, username=credentials[0] if credentials else None,
            password=credentials[1] if credentials else None, tls_context=self.ssl_context)
        stack = contextlib.AsyncExitStack()
        try:
            await asyncio.wait_for(stack.enter_async_context(client), CONNECT_TIMEOUT + 1)
        except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
            detail = (f"no CONNACK within {CONNECT_TIMEOUT} s"
                      if isinstance(exc, asyncio.TimeoutError) else str(exc))
            raise TransportError(f"cannot connect to the MQTT broker at {self.url} as "
                                 f"{self.client_id!r}: {detail}") from exc
        self._client, self._stack = client, stack
        paho = getattr(client, "_client", None)
        self._paho = (paho if self.use_paho_directly and isinstance(paho, paho_mqtt.Client)
                      else None)
        self._up = True
        self._warned_offline = False

    async def _release(self) -> None:
        self._paho = None
        stack, self._stack = self._stack, None
        if stack is not None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(stack.aclose(), 2.0)

    async def _send_subscribe(self, client: aiomqtt.Client, topics: dict[str, int]) -> None:
        try:
            granted = await client.subscribe(list(topics.items()))
        except aiomqtt.MqttError as exc:
            raise TransportError(f"{self.client_id}: subscribing to {', '.join(topics)} at "
                                 f"{self.url} failed: {exc}") from exc
        codes = [int(getattr(g, "value", g)) for g in granted]
        if any(code >= 0x80 for code in codes):
            raise TransportError(f"{self.client_id}: broker refused a subscription "
                                 f"(SUBACK {codes})")

    async def _read_loop(self) -> None:
        while not self._closed:
            client = self._client
            assert client is not None
            try:
                async for m in client.messages:
                    payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload)
                    deliver(self._on_message, self.stats, m.topic.value, payload, m.retain)
            except aiomqtt.MqttError as exc:
                if self._closed:
                    return
                log.warning("%s: lost the broker at %s (%s); reconnecting every %.1f s",
                            self.client_id, self.url, exc, RECONNECT_DELAY)
            self._up = False
            await self._release()
            await self._reconnect()

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                await self._open()
                if self._topics:
                    assert self._client is not None
                    await self._send_subscribe(self._client, dict(self._topics))
            except TransportError as exc:
                self._up = False
                await self._release()
                log.debug("%s: reconnect failed: %s", self.client_id, exc)
                continue
            self.stats.reconnects += 1
            log.warning("%s: reconnected to %s", self.client_id, self.url)
            return

    # -- sending --------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            sent = 0
            while self._outbox:
                client = self._client
                if not self._up or client is None:
                    for topic, _, _ in self._outbox:
                        self._drop(topic)
                    self._outbox.clear()
                    break
                topic, payload, qos = self._outbox.popleft()
                if qos == 0:
                    try:
                        await client.publish(topic, payload, qos=0, retain=False)
                    except aiomqtt.MqttError:
                        self._drop(topic)
                        continue
                else:
                    task = loop.create_task(self._publish_acked(client, topic, payload, qos))
                    self._acks.add(task)
                    task.add_done_callback(self._acks.discard)
                    # The task hands the message to paho in its first step; let it run
                    # now so that a later QoS 0 message cannot overtake it.
                    await asyncio.sleep(0)
                self.stats.published += 1
                sent += 1
                if sent % _FAIRNESS == 0:
                    await asyncio.sleep(0)

    async def _publish_acked(self, client: aiomqtt.Client, topic: str, payload: bytes,
                             qos: int) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=False)
        except aiomqtt.MqttError as exc:
            log.debug("%s: QoS %d publish on %r not acknowledged: %s",
                      self.client_id, qos, topic, exc)

    async def _drained(self) -> None:
        while self._outbox:
            await asyncio.sleep(0.005)

    def _drop(self, topic: str) -> None:
        self.stats.dropped_disconnected += 1
        if not self._warned_offline:
            self._warned_offline = True
            log.warning("%s: not connected to %s; dropping messages (first on %r)",
                        self.client_id, self.url, topic)
