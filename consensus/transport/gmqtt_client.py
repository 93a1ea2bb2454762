"""The gmqtt implementation of :class:`consensus.transport.mqtt.MqttClient` (the default).

gmqtt is asyncio-native: its ``publish`` writes straight into the transport, and received
PUBLISHes are handed to a plain callback without a queue or a task per message, which is
why it is the fast one. Two of its defaults do not suit us and are overridden here:

- it speaks MQTT 5 unless told otherwise (amqtt only speaks 3.1.1): ``version=MQTTv311``;
- it reconnects after 6 s: we use RECONNECT_DELAY. It does not resubscribe after a
  reconnect (its reconnect uses clean_session=0 under the same client id, but a broker
  that restarted has no session to resume), so we resubscribe on every reconnect.

TCP_NODELAY: asyncio sets it on every TCP transport it creates, gmqtt's included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from gmqtt import Client, Message, Subscription
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv311
from gmqtt.mqtt.package import PublishPacket

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


class GmqttClient:
    library = "gmqtt"

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
        self._client: Client | None = None
        self._topics: dict[str, int] = {}  # topic -> qos, resubscribed after a reconnect
        self._suback: dict[int, asyncio.Future[None]] = {}
        self._connects = 0
        self._closed = False
        self._warned_offline = False
        self._out: list[bytes] = []  # QoS 0 packets held while corked
        self._corked = False

    # -- the interface --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._closed and self._client.is_connected

    async def connect(self) -> None:
        if self._client is not None:
            raise TransportError(f"{self.client_id}: already connected; make a new client")
        client = Client(self.client_id, clean_session=True, logger=log)
        client.set_config({"reconnect_retries": UNLIMITED_RECONNECTS,
                           "reconnect_delay": RECONNECT_DELAY})
        client.on_message = self._handle_message
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        credentials = credentials_of(self.identity)
        if credentials is not None:
            client.set_auth_credentials(*credentials)
        try:
            await asyncio.wait_for(
                client.connect(self.host, self.port, ssl=self.ssl_context or False,
                               keepalive=KEEPALIVE, version=MQTTv311),
                CONNECT_TIMEOUT)
        except Exception as exc:  # OSError, TimeoutError, gmqtt.MQTTConnectError
            # Stop the reconnect loop gmqtt may have started for a refused CONNACK.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 1.0)
            raise TransportError(f"cannot connect to the MQTT broker at {self.url} as "
                                 f"{self.client_id!r}: {_describe(exc)}") from exc
        self._client = client

    async def subscribe(self, *topics: str, qos: int = 0) -> None:
        if not topics:
            return
        client = self._require()
        for topic in topics:
            self._topics[topic] = qos
        await self._send_subscribe(client, {t: qos for t in topics})

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        client = self._client
        if client is None or self._closed or not client.is_connected:
            self._drop(topic)
            return
        protocol = getattr(client._connection, "_protocol", None)
        if self._corked and qos == 0 and protocol is not None:
            # Corked (a node's drain): the burst's packets leave in one write, in call order.
            _, pkg = PublishPacket.build_package(Message(topic, payload, qos=0, retain=False),
                                                 protocol)
            self._out.append(pkg)
        else:
            self._flush()
            client.publish(topic, payload, qos=qos, retain=False)
        self.stats.published += 1

    def cork(self) -> None:
        """Hold QoS 0 publishes until :meth:`flush` (one write, one syscall, for a burst)."""
        self._corked = True

    def flush(self) -> None:
        """Send what :meth:`cork` held and stop holding."""
        self._corked = False
        self._flush()

    def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        client = self._client
        protocol = getattr(getattr(client, "_connection", None), "_protocol", None)
        if protocol is None:
            return
        protocol.write_data(data)  # what gmqtt's own publish does, once for the burst

    async def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        client = self._client
        for fut in self._suback.values():
            if not fut.done():
                fut.set_exception(TransportError(f"{self.client_id}: closed"))
        self._suback.clear()
        if client is not None:
            # disconnect() also stops gmqtt's reconnect loop; a dead broker must not hang us.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)

    def tcp_nodelay(self) -> bool | None:
        conn = getattr(self._client, "_connection", None)
        transport = getattr(conn, "_transport", None)
        if transport is None or transport.is_closing():
            return None
        return socket_nodelay(transport.get_extra_info("socket"))

    # -- internals ------------------------------------------------------------------------

    def _require(self) -> Client:
        if self._client is None or self._closed:
            raise TransportError(f"{self.client_id}: not connected (call connect() first)")
        return self._client

    def _drop(self, topic: str) -> None:
        self.stats.dropped_disconnected += 1
        if not self._warned_offline:
            self._warned_offline = True
            log.warning("%s: not connected to %s; dropping messages (first on %r)",
                        self.client_id, self.url, topic)

    async def _send_subscribe(self, client: Client, topics: dict[str, int]) -> None:
        subs = [Subscription(t, qos=q) for t, q in topics.items()]
        mid = client.subscribe(subs)
        fut = asyncio.get_running_loop().create_future()
        self._suback[mid] = fut
        try:
            await asyncio.wait_for(fut, CONNECT_TIMEOUT)
        except TimeoutError:
            raise TransportError(f"{self.client_id}: no SUBACK from {self.url} for "
                                 f"{', '.join(topics)} within {CONNECT_TIMEOUT} s") from None
        finally:
            self._suback.pop(mid, None)
        # gmqtt keeps every Subscription it sent; we track topics ourselves.
        client.subscriptions.clear()

    def _handle_message(self, client: Client, topic: str, payload: bytes, qos: int,
                        properties: dict[str, Any]) -> int:
        deliver(self._on_message, self.stats, topic, payload, bool(properties.get("retain")))
        return 0  # PUBACK reason code for QoS 1 (success)

    def _handle_connect(self, client: Client, flags: int, rc: int, properties: Any) -> None:
        self._connects += 1
        self._warned_offline = False
        if self._closed:
            # gmqtt checks whether to reconnect before its delay, not after: a close()
            # during that delay still gets a connection. Drop it (no reconnect follows,
            # as the client is no longer active).
            task = asyncio.ensure_future(client.disconnect())
            task.add_done_callback(_log_failure)
            return
        if self._connects == 1:
            return
        self.stats.reconnects += 1
        log.warning("%s: reconnected to %s", self.client_id, self.url)
        if self._topics:
            task = asyncio.ensure_future(self._resubscribe(client))
            task.add_done_callback(_log_failure)

    async def _resubscribe(self, client: Client) -> None:
        with contextlib.suppress(TransportError):
            await self._send_subscribe(client, dict(self._topics))

    def _handle_disconnect(self, client: Client, packet: Any, exc: Any = None) -> None:
        if not self._closed:
            log.warning("%s: lost the broker at %s; reconnecting every %.1f s",
                        self.client_id, self.url, RECONNECT_DELAY)

    def _handle_subscribe(self, client: Client, mid: int, granted: tuple[int, ...],
                          properties: Any) -> None:
        fut = self._suback.get(mid)
        if fut is None or fut.done():
            return
        if any(q >= 0x80 for q in granted):
            fut.set_exception(TransportError(f"{self.client_id}: broker refused a "
                                             f"subscription (SUBACK {granted})"))
        else:
            fut.set_result(None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no CONNACK within {CONNECT_TIMEOUT} s"
    return str(exc) or type(exc).__name__


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("gmqtt background task failed: %s", task.exception())
