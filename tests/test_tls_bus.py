"""TLS wired into the bus, end to end, and the listen address rules.

A real `cluster up --tls` per broker (mosquitto and the embedded amqtt): every connection of
the cluster presents its user's certificate; `consensus-lab client` writes and reads through
it; a client without a certificate (even with the right password), a plain-TCP client and a
certificate from another CA are refused; a forged AppendEntries and a node impersonating
another change nothing. A broker other hosts could reach refuses to start without
authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

import consensus
from consensus import cluster as cl
from consensus import tls
from consensus.auth import CLIENT_USER, Identity, Realm
from consensus.broker import (
    BrokerAddress,
    BrokerError,
    broker_address,
    chosen_kind,
    start_broker,
)
from consensus.transport import topics
from consensus.transport.mqtt import TransportError, make_client
from tests.test_bus_auth import (
    BROKERS,
    _assert_unchanged,
    _forged_append_entries,
    _leader_and_follower,
    _logs,
    _publish_as,
    _rejected,
    _request,
    _snapshot,
)

REPO = Path(consensus.__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=BROKERS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def secure(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[cl.ClusterState]:
    """A Raft cluster as `cluster up --tls` makes it, in ``<tmp>/.consensus-lab``."""
    work = tmp_path_factory.mktemp(f"tls-{kind}")
    root = work / ".consensus-lab"
    state = cl.up("raft", 3, "tlsc", None, "gmqtt", False, 50, (500, 900), root=root,
                  prefer=kind, tls=True)
    try:
        assert asyncio.run(cl.wait_for_leader(state, 20)) is not None, _logs(state)
        assert _request(state, "SET x = 100") == "OK"
        yield state
    finally:
        cl.down(state.name, root=root)


def _cli(state: cl.ClusterState, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "consensus", *args], capture_output=True,
                          text=True, timeout=30, env=env,
                          cwd=Path(state.directory).parent.parent)


def test_cluster_up_tls_serves_the_cli_client(secure: cl.ClusterState) -> None:
    assert secure.tls and secure.broker.startswith("mqtts://127.0.0.1:")
    tls_dir = secure.secrets / "tls"
    assert oct(tls_dir.stat().st_mode & 0o777) == "0o700"
    assert all(oct(k.stat().st_mode & 0o777) == "0o600" for k in tls_dir.glob("*.key"))
    wrote = _cli(secure, "client", "--cluster", secure.name, "SET y = 7")
    assert (wrote.returncode, wrote.stdout.strip()) == (0, "OK"), wrote.stderr
    read = _cli(secure, "client", "--cluster", secure.name, "GET y")
    assert (read.returncode, read.stdout.strip()) == (0, "7"), read.stderr
    # As from another host: only the client's files, named on the command line.
    read = _cli(secure, "client", "--cluster", secure.name, "--broker", secure.broker,
                "--tls-dir", str(tls_dir), "GET y")
    assert (read.returncode, read.stdout.strip()) == (0, "7"), read.stderr


def _connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session), written out by hand: the point is to see
    exactly what the broker answers, with no client library's retries in between."""
    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = field("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big") + field(client_id)
    body += b"".join(field(x) for x in (username, password) if x is not None)
    assert len(body) < 128  # one-byte remaining length
    return bytes([0x10, len(body)]) + body


async def _connack(state: cl.ClusterState, context: ssl.SSLContext | None,
                   password: bool) -> bool:
    """Whether the broker accepts a CONNECT over ``context`` (None: plain TCP), optionally
    carrying the client user's real password. A failed handshake, a closed connection or a
    refusing CONNACK is a refusal."""
    address = broker_address(state.broker)
    credentials = ((CLIENT_USER, state.identity(CLIENT_USER).password) if password
                   else (None, None))
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            address.host, address.port, ssl=context,
            server_hostname=address.host if context else None), 5)
    except (OSError, ssl.SSLError):
        return False
    try:
        writer.write(_connect_packet("intruder", *credentials))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4), 5)
    except (OSError, ssl.SSLError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return len(answer) == 4 and answer[0] == 0x20 and answer[3] == 0


def _refused(state: cl.ClusterState, context: ssl.SSLContext | None,
             password: bool = True) -> bool:
    return not asyncio.run(_connack(state, context, password))


def test_a_client_without_the_clusters_certificate_is_refused(
        secure: cl.ClusterState, tmp_path: Path) -> None:
    ca = secure.secrets / "tls" / "ca.crt"
    no_cert = ssl.create_default_context(cafile=str(ca))
    assert _refused(secure, no_cert), "TLS with the right password but no certificate"
    assert _refused(secure, None), "plain TCP to the TLS port"
    _, strangers = tls.ensure_cluster(tmp_path / "other", [CLIENT_USER])
    other_ca = tls.client_context(strangers[CLIENT_USER])
    other_ca.check_hostname = False
    other_ca.load_verify_locations(str(ca))  # trusts the broker; its own cert is foreign
    assert _refused(secure, other_ca, password=False), "a certificate from another CA"
    mine = tls.client_context(secure.identity(CLIENT_USER).tls)
    assert not _refused(secure, mine, password=False), "the control case connects"
    # And the transport says what is missing rather than trying without a certificate.
    with pytest.raises(ValueError, match="client certificate"):
        make_client("gmqtt", secure.broker, "x", lambda t, p: None,
                    Identity(CLIENT_USER, secure.identity(CLIENT_USER).password))


def test_a_forged_append_entries_is_refused_on_a_tls_cluster(secure: cl.ClusterState) -> None:
    before = _snapshot(secure)
    leader, follower = _leader_and_follower(before)
    forged = _forged_append_entries(secure, leader, follower)
    _publish_as(secure, secure.identity(CLIENT_USER), [
        (topics.peer(secure.name, follower, leader), forged),  # the ACL refuses
        (topics.request(secure.name, follower, "mallory"), forged)])  # the node drops
    _assert_unchanged(secure, before)
    assert _rejected(secure)[follower].get("wrong-topic", 0) >= 1


def test_a_node_certificate_cannot_speak_for_another_node(secure: cl.ClusterState) -> None:
    """A user name claimed in CONNECT is ignored: the certificate's CN is the identity."""
    before = _snapshot(secure)
    leader, follower = _leader_and_follower(before)
    third = next(n for n in sorted(before) if n not in (leader, follower))
    real = secure.identity(third)
    claims_leader = Identity(leader, "", real.tls)
    _publish_as(secure, claims_leader, [
        (topics.peer(secure.name, follower, leader),
         _forged_append_entries(secure, leader, follower))], conn=f"{third}-as-{leader}")
    _assert_unchanged(secure, before)


# -- URLs and listen addresses ------------------------------------------------------------


def test_mqtts_urls_default_to_port_8883() -> None:
    assert broker_address("mqtts://10.0.0.5") == BrokerAddress("10.0.0.5", 8883, True)
    assert broker_address("mqtts://10.0.0.5:9999").url == "mqtts://10.0.0.5:9999"
    assert broker_address("mqtt://h") == BrokerAddress("h", 1883, False)
    with pytest.raises(BrokerError, match="mqtts://"):
        broker_address("https://h")


def test_a_certificate_needs_an_mqtts_url_and_the_reverse(tmp_path: Path) -> None:
    _, clients = tls.ensure_cluster(tmp_path, [CLIENT_USER])
    with pytest.raises(ValueError, match="mqtts://"):
        make_client("gmqtt", "mqtt://127.0.0.1:1", "x", lambda t, p: None,
                    Identity(CLIENT_USER, "", clients[CLIENT_USER]))
    with pytest.raises(ValueError, match="certificate"):
        make_client("aiomqtt", "mqtts://127.0.0.1:1", "x", lambda t, p: None, None)


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.10", "::"])
def test_an_open_broker_reachable_from_other_hosts_refuses_to_start(address: str) -> None:
    with pytest.raises(BrokerError, match="without authentication"):
        start_broker(prefer="amqtt", listen=address)


def test_a_listen_address_must_be_an_ip_address() -> None:
    with pytest.raises(BrokerError, match="must be an IP address"):
        start_broker(prefer="amqtt", listen="example.org")


def test_the_cli_refuses_an_open_broker_on_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from consensus.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for argv in (["broker", "--listen", "0.0.0.0", "--insecure"],
                 ["cluster", "up", "--cluster", "net", "--listen", "192.0.2.10",
                  "--insecure"]):
        result = runner.invoke(app, argv)
        assert result.exit_code != 0, result.output
        assert "refusing to listen" in result.output and "without authentication" in \
            " ".join(result.output.split()), result.output
    assert not (tmp_path / ".consensus-lab" / "net").exists()  # refused before anything
    result = runner.invoke(app, ["cluster", "up", "--tls", "--insecure"])
    assert result.exit_code != 0 and "contradict" in result.output


def test_an_authenticated_broker_may_listen_on_every_address(kind: str,
                                                             tmp_path: Path) -> None:
    realm = Realm.create("wide", ["n1"], tmp_path, brokers=(chosen_kind(kind),))
    with start_broker(prefer=kind, realm=realm, listen="0.0.0.0") as handle:
        assert handle.url.startswith("mqtt://127.0.0.1:")  # local clients dial loopback

        async def go() -> None:
            client = make_client("gmqtt", handle.url, "wide-1", lambda t, p: None,
                                 realm.identity(CLIENT_USER))
            await client.connect()
            await client.close()
        asyncio.run(go())
        with pytest.raises(TransportError):
            asyncio.run(_anonymous(handle.url))


async def _anonymous(url: str) -> None:
    client = make_client("gmqtt", url, "anon", lambda t, p: None)
    await client.connect()


def test_the_brokers_certificate_names_its_listen_address(tmp_path: Path) -> None:
    realm = Realm.create("named", ["n1"], tmp_path, brokers=("amqtt",),
                         tls_addresses=["10.0.0.5"])
    assert realm.tls_dir is not None
    cert = x509.load_pem_x509_certificate((realm.tls_dir / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.5",
                                                                           "127.0.0.1"}
    # A new incarnation keeps the CA (certificates copied to other hosts stay valid) and
    # makes new passwords; without TLS the material goes.
    ca = (realm.tls_dir / "ca.crt").read_bytes()
    password = realm.identity("n1").password
    again = Realm.create("named", ["n1"], tmp_path, brokers=("amqtt",),
                         tls_addresses=["10.0.0.5"])
    assert again.tls_dir is not None and (again.tls_dir / "ca.crt").read_bytes() == ca
    assert again.identity("n1").password != password
    assert again.identity("n1").tls is not None
    plain = Realm.create("named", ["n1"], tmp_path, brokers=("amqtt",))
    assert plain.tls_dir is None and plain.identity("n1").tls is None


def test_cluster_up_against_a_tls_broker_started_apart(kind: str, tmp_path: Path) -> None:
    """`consensus-lab broker --tls --cluster c` then `cluster up --broker mqtts://...`: the
    realm the broker made names each user's certificate, and the nodes present it."""
    realm = Realm.create("apart", ["n1", "n2", "n3"], tmp_path / "apart",
                         brokers=(chosen_kind(kind),), tls_addresses=[])
    with start_broker(prefer=kind, realm=realm, tls=True) as handle:
        assert handle.url.startswith("mqtts://")
        with pytest.raises(ValueError, match="--tls and --listen"):
            cl.up("raft", 3, "apart", handle.url, "gmqtt", False, 50, (500, 900),
                  root=tmp_path, tls=True)
        state = cl.up("raft", 3, "apart", handle.url, "gmqtt", False, 50, (500, 900),
                      root=tmp_path)
        try:
            assert state.tls
            assert asyncio.run(cl.wait_for_leader(state, 20)) is not None, _logs(state)
            assert _request(state, "SET z = 3") == "OK"
        finally:
            cl.down("apart", root=tmp_path)


def test_tls_on_a_wildcard_address_is_refused_with_the_reason(tmp_path: Path) -> None:
    """No certificate can name 0.0.0.0, and one for loopback alone fails every other host."""
    from consensus.auth import AuthError

    with pytest.raises(AuthError, match="wildcard"):
        Realm.create("wild", ["n1"], tmp_path, brokers=("amqtt",),
                     tls_addresses=["0.0.0.0"])
    realm = Realm.create("wild", ["n1"], tmp_path, brokers=("amqtt",), tls_addresses=[])
    with pytest.raises(BrokerError, match="wildcard"):
        start_broker(prefer="amqtt", realm=realm, listen="0.0.0.0", tls=True)


@pytest.mark.parametrize("library", ["gmqtt", "aiomqtt"])
def test_both_client_libraries_speak_tls_with_a_certificate(secure: cl.ClusterState,
                                                            library: str) -> None:
    async def go() -> str:
        got: asyncio.Queue[str] = asyncio.Queue()
        client = make_client(library, secure.broker, f"tls-{library}",
                             lambda topic, payload: got.put_nowait(topic),
                             secure.identity(CLIENT_USER))
        await client.connect()
        try:
            assert client.connected and client.url.startswith("mqtts://")
            await client.subscribe(topics.status(secure.name))
            return await asyncio.wait_for(got.get(), 10)  # nodes publish every 200 ms
        finally:
            await client.close()

    assert asyncio.run(go()).endswith("/status")
