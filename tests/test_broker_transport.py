"""The broker starter and the MQTT clients, against real brokers (mosquitto and amqtt).

No timing assertions: waits are bounded "until it happens" loops. pytest-asyncio is not a
dependency, so each test drives its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import paho.mqtt.client as paho
import pytest

from consensus import broker as broker_mod
from consensus.broker import (
    BrokerError,
    BrokerHandle,
    broker_reachable,
    mosquitto_config,
    parse_broker_url,
    start_broker,
)
from consensus.codec import MAX_PAYLOAD
from consensus.transport.mqtt import (
    LIBRARIES,
    MqttClient,
    TransportError,
    fresh_client_id,
    make_client,
)

HAVE_MOSQUITTO = broker_mod.find_mosquitto() is not None
NO_MOSQUITTO = "mosquitto is not installed (apt-get install mosquitto)"
BROKERS = [pytest.param("mosquitto", marks=pytest.mark.skipif(not HAVE_MOSQUITTO,
                                                              reason=NO_MOSQUITTO)),
           "amqtt"]


@pytest.fixture(scope="module", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerHandle]:
    handle = start_broker(prefer=request.param)
    assert handle.kind == request.param
    yield handle
    handle.stop()


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return request.param


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.messages)} of {count} messages: "
                                     f"{self.messages[:5]}")
            await asyncio.sleep(0.01)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def topic_for(name: str) -> str:
    return f"test/{name}/{os.getpid()}/{time.monotonic_ns()}"


def raw_publish(url: str, topic: str, payload: bytes, *, retain: bool) -> None:
    """Publish with plain paho (not our clients), as any outside MQTT client might."""
    host, port = parse_broker_url(url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=fresh_client_id("raw"),
                         protocol=paho.MQTTv311)
    client.connect(host, port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


# -- URLs and starting ------------------------------------------------------------------


def test_parse_broker_url() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_broker_url("tcp://example.org") == ("example.org", 1883)
    assert parse_broker_url("localhost:2000") == ("localhost", 2000)
    for bad in ("", "http://x:1", "mqtt://:1883", "mqtt://h:99999", "mqtt://h:abc",
                "mqtt://h:1/path", "mqtt://u:p@h:1"):
        with pytest.raises(BrokerError):
            parse_broker_url(bad)


def test_mosquitto_config_replaces_listener() -> None:
    text = mosquitto_config(4567)
    listeners = [line for line in text.splitlines() if line.startswith("listener")]
    assert listeners == ["listener 4567 127.0.0.1"]
    assert "set_tcp_nodelay true" in text
    assert f"message_size_limit {MAX_PAYLOAD}" in text
    assert "persistence false" in text


def test_prefer_mosquitto_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    with pytest.raises(BrokerError, match="mosquitto is not installed"):
        start_broker(prefer="mosquitto")
    with pytest.raises(BrokerError, match="unknown broker"):
        start_broker(prefer="rabbitmq")


def test_port_in_use_is_refused(broker: BrokerHandle) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        start_broker(broker.port, prefer=broker.kind)


@pytest.mark.parametrize("kind", BROKERS)
def test_stop_leaves_no_process(kind: str) -> None:
    handle = start_broker(prefer=kind)
    assert handle.pid is not None and handle.running()
    assert broker_reachable(handle.url)
    handle.stop()
    handle.stop()  # idempotent
    assert not handle.running()
    with pytest.raises(ProcessLookupError):  # reaped, not a zombie
        os.kill(handle.pid, 0)
    assert not broker_reachable(handle.url, timeout=0.2)


# -- the clients ------------------------------------------------------------------------


def test_connect_refused_is_clear(library: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed

    async def go() -> None:
        client = make_client(library, f"mqtt://127.0.0.1:{port}", "nobody", lambda t, p: None)
        with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
            await client.connect()
        await client.close()

    run(go())


def test_make_client_rejects_unknown_library() -> None:
    with pytest.raises(ValueError, match="unknown MQTT client library"):
        make_client("paho", "mqtt://127.0.0.1:1883", "x", lambda t, p: None)


def test_publish_subscribe_round_trip(broker: BrokerHandle, library: str) -> None:
    topic = topic_for("rt")

    async def go() -> None:
        inbox, replies = Inbox(), Inbox()
        server: MqttClient = make_client(library, broker.url, fresh_client_id("srv"),
                                         lambda t, p: server.publish(t + "/reply", p.upper()))
        caller = make_client(library, broker.url, fresh_client_id("cli"), replies)
        watcher = make_client(library, broker.url, fresh_client_id("w"), inbox)
        for c in (server, caller, watcher):
            await c.connect()
            assert c.connected and c.library == library
            assert c.tcp_nodelay() is True  # Nagle off on our side
        await server.subscribe(topic)
        await caller.subscribe(topic + "/reply")
        await watcher.subscribe(topic, topic + "/reply")
        for i in range(20):
            caller.publish(topic, b"ping %d" % i, qos=i % 2)
        await replies.wait_for(20)
        assert [p for _, p in replies.messages] == [b"PING %d" % i for i in range(20)]
        await inbox.wait_for(40)
        assert caller.stats.published == 20 and replies.messages[0][0] == topic + "/reply"
        for c in (server, caller, watcher):
            await c.close()
        assert not caller.connected
        caller.publish(topic, b"late")  # after close: dropped, not raised
        assert caller.stats.dropped_disconnected == 1

    run(go())


def test_retained_messages_are_discarded(broker: BrokerHandle, library: str) -> None:
    topic = topic_for("retained")
    raw_publish(broker.url, topic, b"stale state", retain=True)

    async def go() -> None:
        inbox = Inbox()
        client = make_client(library, broker.url, fresh_client_id("sub"), inbox)
        await client.connect()
        await client.subscribe(topic)
        # Our own publish is never retained: a later subscriber must not see it.
        client.publish(topic, b"live")
        await inbox.wait_for(1)
        # >= 1: amqtt sometimes delivers one retained message more than once.
        await until(lambda: client.stats.retained_discarded >= 1)
        assert inbox.messages == [(topic, b"live")]
        late = Inbox()
        other = make_client(library, broker.url, fresh_client_id("late"), late)
        await other.connect()
        await other.subscribe(topic)
        await until(lambda: other.stats.retained_discarded >= 1)  # the raw one, not ours
        assert late.messages == []
        await client.close()
        await other.close()

    run(go())
    raw_publish(broker.url, topic, b"", retain=True)  # clear it


def test_oversized_payload_refused(broker: BrokerHandle) -> None:
    topic = topic_for("big")

    async def go() -> None:
        inbox = Inbox()
        client = make_client("gmqtt", broker.url, fresh_client_id("sub"), inbox)
        await client.connect()
        await client.subscribe(topic)
        await asyncio.to_thread(raw_publish, broker.url, topic, b"x" * (MAX_PAYLOAD + 1),
                                retain=False)
        await asyncio.to_thread(raw_publish, broker.url, topic, b"x" * MAX_PAYLOAD,
                                retain=False)
        await inbox.wait_for(1)
        await asyncio.sleep(0.1)
        # The limit holds, and the largest allowed payload passes.
        assert [len(p) for _, p in inbox.messages] == [MAX_PAYLOAD]
        await client.close()

    run(go())


def test_aiomqtt_outbox_path_keeps_order(broker: BrokerHandle,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from consensus.transport.aiomqtt_client import AiomqttClient

    monkeypatch.setattr(AiomqttClient, "use_paho_directly", False)
    topic = topic_for("outbox")

    async def go() -> None:
        inbox = Inbox()
        sub = make_client("aiomqtt", broker.url, fresh_client_id("sub"), inbox)
        pub = make_client("aiomqtt", broker.url, fresh_client_id("pub"), lambda t, p: None)
        await sub.connect()
        await pub.connect()
        await sub.subscribe(topic, qos=1)
        for i in range(50):
            pub.publish(topic, b"%d" % i, qos=1 if i % 7 == 0 else 0)
        await inbox.wait_for(50)
        assert [int(p) for _, p in inbox.messages] == list(range(50))
        await pub.close()
        await sub.close()

    run(go())


def test_reconnects_and_resubscribes_after_broker_restart(library: str) -> None:
    kind = "mosquitto" if HAVE_MOSQUITTO else "amqtt"
    first = start_broker(prefer=kind)
    port = first.port
    topic = topic_for("restart")
    handles = [first]

    async def go() -> None:
        inbox = Inbox()
        sub = make_client(library, first.url, fresh_client_id("sub"), inbox)
        pub = make_client(library, first.url, fresh_client_id("pub"), lambda t, p: None)
        await sub.connect()
        await pub.connect()
        await sub.subscribe(topic)
        pub.publish(topic, b"before")
        await inbox.wait_for(1)
        first.stop()
        await until(lambda: not sub.connected and not pub.connected)
        pub.publish(topic, b"into the void")  # dropped and counted, never raises
        assert pub.stats.dropped_disconnected >= 1
        handles.append(await asyncio.to_thread(start_broker, port, kind))
        await until(lambda: sub.connected and pub.connected and sub.stats.reconnects >= 1)
        # Resubscription is asynchronous after a reconnect: publish until one gets through.
        deadline = time.monotonic() + 10
        while len(inbox.messages) < 2 and time.monotonic() < deadline:
            pub.publish(topic, b"after")
            await asyncio.sleep(0.1)
        assert inbox.messages[0] == (topic, b"before")
        assert inbox.messages[1] == (topic, b"after")
        await pub.close()
        await sub.close()

    try:
        run(go())
    finally:
        for h in handles:
            h.stop()


def test_bench_smoke(broker: BrokerHandle) -> None:
    from consensus.transport.bench import bench_transport

    result = asyncio.run(bench_transport(broker.url, "gmqtt", messages=500, rtt_samples=20,
                                         idle_samples=5))
    assert result["received"] == 500 and result["lost"] == 0
    assert result["rtt_samples"] == 20 and result["rtt_p50_us"] > 0
    # The idle round trips: their own samples, each after a 10 ms pause (a figure, not judged).
    assert result["rtt_idle_samples"] == 5 and result["rtt_idle_lost"] == 0
    assert result["rtt_idle_p50_us"] > 0


def test_broker_main_help() -> None:
    with pytest.raises(SystemExit) as exit_info:
        broker_mod.main(["--help"])
    assert exit_info.value.code == 0
