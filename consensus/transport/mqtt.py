"""The MQTT client interface the runtime uses, with gmqtt and aiomqtt behind it.

Both implementations behave the same way, which is what the rest of the package relies on:

- MQTT 3.1.1 (gmqtt would otherwise speak MQTT 5, which the embedded amqtt broker lacks),
  a clean session and the caller's client id, so a restarted node gets no backlog from its
  previous life (give it a fresh id, e.g. :func:`fresh_client_id`).
- TCP_NODELAY on the client socket: with Nagle's algorithm on, a request/reply over the
  broker took 44-88 ms instead of well under 1 ms. (gmqtt gets it from asyncio, which sets
  it on every TCP transport; aiomqtt's paho socket needs it as a socket option.)
- ``publish`` is synchronous and non-blocking, keeps the caller's order, and never sets
  the retain flag. Publishing while disconnected drops the message (QoS 0 semantics; the
  protocols retransmit) and counts it in ``stats``.
- ``on_message(topic, payload)`` runs on the asyncio loop for every message received,
  except retained ones: a retained message is stale state from some earlier publisher
  and is discarded (counted in ``stats``).
- With an :class:`~consensus.auth.Identity`, the CONNECT carries its user name and
  password; a broker that refuses them fails :meth:`connect` with a TransportError.
- ``mqtts://`` URLs: TLS with the identity's client certificate
  (:func:`consensus.tls.client_context`: only the cluster's CA is trusted, the broker's
  certificate must name the URL's host). The certificate is then the credential, so no
  password is sent. A failed handshake fails :meth:`connect` like a refused CONNECT.
- A lost broker does not end the client: it reconnects with a short delay, forever, and
  subscribes again to everything it had subscribed to, until :meth:`close`.

Choose with :func:`make_client`; :data:`DEFAULT_LIBRARY` is the faster one as measured by
``python -m consensus.transport.bench``.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from consensus.auth import Identity

log = logging.getLogger(__name__)

LIBRARIES = ("gmqtt", "aiomqtt")
# gmqtt moved ~8x more messages/s than aiomqtt with half the round-trip time here.
DEFAULT_LIBRARY = "gmqtt"

CONNECT_TIMEOUT = 5.0  # s, for the TCP connection and the CONNACK
KEEPALIVE = 15  # s; the broker drops a silent (e.g. SIGSTOPped) client after 1.5x this
RECONNECT_DELAY = 0.5  # s between attempts after losing the broker

OnMessage = Callable[[str, bytes], None]


class TransportError(ConnectionError):
    """The MQTT client could not do what was asked (connect, subscribe)."""


@dataclass
class ClientStats:
    """Counters a node can show in ``status()`` and experiments can record."""

    received: int = 0
    published: int = 0
    dropped_disconnected: int = 0  # publish() calls while not connected
    retained_discarded: int = 0
    reconnects: int = 0
    callback_errors: int = 0  # exceptions raised by on_message (logged, not raised)


@runtime_checkable
class MqttClient(Protocol):
    """One connection to the broker. Not thread-safe: use it from its event loop only."""

    library: str
    client_id: str
    url: str
    stats: ClientStats

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect (clean session, MQTT 3.1.1, TCP_NODELAY); raise TransportError if the
        broker is unreachable or refuses within CONNECT_TIMEOUT."""

    async def subscribe(self, *topics: str, qos: int = 0) -> None:
        """Subscribe and wait for the broker's SUBACK; resubscribed after reconnects."""

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Queue a message for sending, in call order; never retained."""

    async def close(self) -> None:
        """Disconnect and stop reconnecting. Idempotent."""

    def tcp_nodelay(self) -> bool | None:
        """Whether Nagle is off on the current socket (None when not connected)."""


def make_client(library: str, url: str, client_id: str, on_message: OnMessage,
                identity: Identity | None = None) -> MqttClient:
    """A client for ``url`` (``mqtt://host:port``) using ``library`` ("gmqtt" or
    "aiomqtt"), presenting ``identity`` (user name, password, TLS material) when given,
    else anonymous. Nothing happens on the network until :meth:`MqttClient.connect`.

    An ``mqtts://`` URL needs an identity with TLS material, and TLS material needs an
    ``mqtts://`` URL: a mismatch is a ValueError saying which is missing."""
    from consensus.broker import broker_address

    address = broker_address(url)
    host, port = address.host, address.port
    if not client_id or len(client_id.encode()) > 65535:
        raise ValueError(f"client id must be 1..65535 bytes, got {client_id!r}")
    context = tls_context(address.tls, identity, url)
    if library == "gmqtt":
        from consensus.transport.gmqtt_client import GmqttClient

        return GmqttClient(host, port, client_id, on_message, identity, context)
    if library == "aiomqtt":
        from consensus.transport.aiomqtt_client import AiomqttClient

        return AiomqttClient(host, port, client_id, on_message, identity, context)
    raise ValueError(f"unknown MQTT client library {library!r}; choose one of "
                     f"{', '.join(LIBRARIES)}")


def tls_context(tls: bool, identity: Identity | None, url: str) -> ssl.SSLContext | None:
    """The client TLS context for a broker URL (None for plain ``mqtt://``)."""
    material = identity.tls if identity is not None else None
    if tls and material is None:
        raise ValueError(f"broker {url} speaks TLS and asks for a client certificate: give "
                         f"this connection one (--tls-dir, or credentials that name one)")
    if not tls and material is not None:
        raise ValueError(f"a client certificate was given but broker {url} is plain TCP: "
                         f"use its mqtts:// URL")
    if material is None:
        return None
    from consensus.tls import TlsError, client_context

    try:
        return client_context(material)
    except (TlsError, ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot use the client certificate {material.cert}: {exc}") from None


def credentials_of(identity: Identity | None) -> tuple[str, str | None] | None:
    """User name and password for the CONNECT: none when anonymous; the user name only when
    a certificate is the credential (so no password travels)."""
    if identity is None:
        return None
    return identity.username, (None if identity.tls is not None else identity.password)


def fresh_client_id(prefix: str) -> str:
    """``<prefix>-<pid>-<random>``: unique per process start, so a restarted node never
    resumes its previous session, and readable in broker logs. (MQTT 3.1.1 only promises
    23 characters; mosquitto and amqtt accept longer ids.)"""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def socket_nodelay(sock: socket.socket | None) -> bool | None:
    if sock is None or sock.fileno() < 0:
        return None
    try:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    except OSError:
        return None


def deliver(on_message: OnMessage, stats: ClientStats, topic: str, payload: bytes,
            retained: bool) -> None:
    """Hand one received message to the application, shared by both implementations."""
    if retained:
        stats.retained_discarded += 1
        if stats.retained_discarded == 1:
            log.warning("discarding retained message on %r (and any later ones)", topic)
        return
    stats.received += 1
    try:
        on_message(topic, payload)
    except Exception:
        # One bad message must not take the connection down with it.
        stats.callback_errors += 1
        log.exception("on_message raised for a message on %r", topic)


__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_LIBRARY",
    "LIBRARIES",
    "ClientStats",
    "MqttClient",
    "OnMessage",
    "TransportError",
    "credentials_of",
    "fresh_client_id",
    "make_client",
    "tls_context",
]
