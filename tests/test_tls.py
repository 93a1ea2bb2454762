"""TLS material (consensus.tls) and the brokers' TLS listeners (consensus.broker_tls).

The handshakes are real: asyncio servers and clients over loopback sockets, mosquitto started
with the generated listener block, the embedded amqtt broker in this process. A client with a
certificate from another CA, or none, is refused; a broker certificate for another address
is refused by the client; the certificate's CN is the user name the broker sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
import tempfile
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consensus import tls
from consensus.broker import find_mosquitto, mosquitto_config
from consensus.broker_tls import (
    amqtt_tls_config,
    mosquitto_tls_listener,
    stage_for_mosquitto,
    with_listener,
)
from consensus.tls import TlsError, TlsFiles, client_context, server_context
from tests.mosquitto_proc import free_port, log_of, mosquitto

HOST = "127.0.0.1"
USERS = ("n1", "n2", "n3", "client", "control")
needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None,
                                     reason="mosquitto is not installed (apt-get install "
                                            "mosquitto)")


@pytest.fixture
def material(tmp_path: Path) -> tuple[TlsFiles, dict[str, TlsFiles]]:
    return tls.ensure_cluster(tmp_path / "tls", USERS, ["10.77.0.1"], name="t")


def _cert(files: TlsFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files.cert.read_bytes())


# -- the material -----------------------------------------------------------------------------


def test_material_is_a_ca_a_server_and_one_client_per_user(material):
    server, clients = material
    ca = x509.load_pem_x509_certificate(server.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign

    san = _cert(server).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1",
                                                                           "10.77.0.1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]

    assert sorted(clients) == sorted(USERS)
    for user, files in clients.items():
        cert = _cert(files)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_keys_are_owner_only_in_an_owner_only_folder(material):
    server, clients = material
    folder = server.ca.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for files in [server, *clients.values()]:
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600, files.key
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    assert not list(folder.glob(".*.tmp"))


def test_ensuring_again_reuses_what_is_valid_and_reissues_what_is_not(tmp_path, material):
    server, _ = material
    folder = server.ca.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    tls.ensure_cluster(folder, USERS, ["10.77.0.1"], name="t")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    # A new address: only the broker's certificate changes.
    tls.ensure_server(folder, ["10.77.0.1", "broker.example"])
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(n for n in before if before[n] != after[n]) == ["server.crt", "server.key"]

    # A new CA (the old one lost): every certificate it did not sign is reissued.
    (folder / "ca.key").unlink()
    tls.ensure_ca(folder)
    n1 = tls.ensure_client(folder, "n1")
    assert n1.cert.read_bytes() != before["n1.crt"]
    _cert(n1).verify_directly_issued_by(x509.load_pem_x509_certificate(n1.ca.read_bytes()))


def test_a_host_loads_only_its_own_files_and_never_makes_a_ca(tmp_path, material):
    server, clients = material
    host = tmp_path / "host"
    host.mkdir()
    for path in (server.ca, clients["n1"].cert, clients["n1"].key):
        (host / path.name).write_bytes(path.read_bytes())
    files = tls.load(host, "n1")
    assert files == TlsFiles(host / "ca.crt", host / "n1.crt", host / "n1.key")
    assert sorted(p.name for p in host.iterdir()) == ["ca.crt", "n1.crt", "n1.key"]
    assert tls.load(server.ca.parent, "server") == server

    with pytest.raises(TlsError, match="missing"):
        tls.load(host, "n2")
    (host / "n2.crt").write_bytes(clients["n2"].cert.read_bytes())
    (host / "n2.key").write_bytes(clients["n1"].key.read_bytes())
    with pytest.raises(TlsError, match="is not the key of"):
        tls.load(host, "n2")
    (host / "n3.crt").write_bytes(clients["n1"].cert.read_bytes())
    (host / "n3.key").write_bytes(clients["n1"].key.read_bytes())
    with pytest.raises(TlsError, match="certificate, not 'n3'"):
        tls.load(host, "n3")
    _, strangers = tls.ensure_cluster(tmp_path / "other", ["n1"])
    (host / "ca.crt").write_bytes(strangers["n1"].ca.read_bytes())
    with pytest.raises(TlsError, match="not signed by the CA"):
        tls.load(host, "n1")


@pytest.mark.parametrize("user", ["", "ca", "server", "../n1", "a b", "x" * 65])
def test_a_user_name_that_cannot_name_a_certificate_is_refused(tmp_path, user):
    with pytest.raises(TlsError):
        tls.ensure_client(tmp_path, user)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "not a host"])
def test_a_broker_address_clients_cannot_dial_is_refused(tmp_path, address):
    with pytest.raises(TlsError):
        tls.ensure_server(tmp_path, [address])


def test_contexts_need_their_files(tmp_path):
    with pytest.raises(TlsError, match="missing"):
        client_context(TlsFiles(tmp_path / "ca.crt", tmp_path / "n1.crt", tmp_path / "n1.key"))


# -- handshakes over loopback -----------------------------------------------------------------


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                     host: str = HOST) -> tuple[list[str | None], bytes | BaseException]:
    """Serve once on ``host``; what the server saw (peer users) and what the client read."""
    seen: list[str | None] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tls.peer_user(writer.get_extra_info("ssl_object")))
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, host, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    outcome: bytes | BaseException
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=client_ctx), 5)
        try:
            outcome = await asyncio.wait_for(reader.read(), 5)
        except (OSError, ssl.SSLError) as exc:  # TLS 1.3: the refusal arrives after "done"
            outcome = exc
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    except (OSError, ssl.SSLError) as exc:
        outcome = exc
    finally:
        server.close()
        await server.wait_closed()
    return seen, outcome


def test_mutual_tls_handshake_names_the_client(material):
    server, clients = material
    seen, got = asyncio.run(_handshake(server_context(server), client_context(clients["n2"])))
    assert (seen, got) == (["n2"], b"hello")


def test_a_client_certificate_from_another_ca_is_refused(tmp_path, material):
    server, _ = material
    _, strangers = tls.ensure_cluster(tmp_path / "other", ["n1"])
    seen, got = asyncio.run(_handshake(server_context(server),
                                       client_context(strangers["n1"])))
    assert seen == [] and got != b"hello", got


def test_a_client_without_a_certificate_is_refused(material):
    server, _ = material
    bare = ssl.create_default_context(cafile=str(server.ca))
    seen, got = asyncio.run(_handshake(server_context(server), bare))
    assert seen == [] and got != b"hello", got
    # Unless the server does not require one: then it knows no user.
    seen, got = asyncio.run(_handshake(server_context(server, require_certificate=False),
                                       bare))
    assert (seen, got) == ([None], b"hello")


def test_a_broker_certificate_for_another_address_is_refused(material):
    server, clients = material
    # The certificate covers 127.0.0.1, localhost and 10.77.0.1, not 127.0.0.2.
    seen, got = asyncio.run(_handshake(server_context(server), client_context(clients["n1"]),
                                       host="127.0.0.2"))
    assert seen == [] and isinstance(got, ssl.SSLCertVerificationError), got
    assert "127.0.0.2" in str(got)


def test_a_broker_certificate_from_another_ca_is_refused(tmp_path, material):
    _, clients = material
    impostor, _ = tls.ensure_cluster(tmp_path / "impostor", [])
    seen, got = asyncio.run(_handshake(server_context(impostor, require_certificate=False),
                                       client_context(clients["n1"])))
    assert seen == [] and isinstance(got, ssl.SSLCertVerificationError), got


# -- the brokers ------------------------------------------------------------------------------


async def _mqtt_roundtrip(port: int, ctx: ssl.SSLContext, topic: str,
                          username: str | None = None) -> bytes | None:
    """Connect with gmqtt over TLS, subscribe to ``topic``, publish to it: what came back
    (None when nothing did within a second). Raises when the connection is refused."""
    from gmqtt import Client
    from gmqtt.mqtt.constants import MQTTv311

    got: asyncio.Queue[bytes] = asyncio.Queue()
    client = Client(f"tls-{uuid.uuid4().hex[:8]}", clean_session=True)
    client.set_config({"reconnect_retries": 0})
    if username is not None:
        client.set_auth_credentials(username, "not-checked")
    client.on_message = lambda c, t, payload, qos, props: got.put_nowait(payload) or 0
    subscribed = asyncio.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    await asyncio.wait_for(client.connect(HOST, port, ssl=ctx, version=MQTTv311), 5)
    try:
        client.subscribe(topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        client.publish(topic, b"ping", qos=1)
        try:
            return await asyncio.wait_for(got.get(), 1.0)
        except TimeoutError:
            return None
    finally:
        # Over TLS a late PUBACK can cross our close_notify; Python then raises from the
        # shutdown (APPLICATION_DATA_AFTER_CLOSE_NOTIFY). The transport's close() ignores it too.
        with contextlib.suppress(ssl.SSLError):
            await client.disconnect()


async def _refused(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        await _mqtt_roundtrip(port, ctx, "t/x")
    except Exception:  # ssl.SSLError, ConnectionError, gmqtt's MQTTConnectError, timeout
        return True
    return False


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _reachable_folder(tmp_path: Path) -> Path:
    """``tmp_path`` made traversable (not listable) by others: mosquitto started as root
    reads its TLS and ACL files after dropping to its own user."""
    for folder in [tmp_path, *tmp_path.parents]:  # pytest's tmp_path sits in 0700 folders
        if folder == Path(tempfile.gettempdir()):
            break
        folder.chmod(folder.stat().st_mode | 0o001)
    return tmp_path


def _acl(folder: Path) -> Path:
    """Each user may use only topics under its own name: proof that the CN is the user name."""
    folder = _reachable_folder(folder) / "acl.d"
    folder.mkdir()
    folder.chmod(0o755)
    path = folder / "acl"
    path.write_text("pattern readwrite users/%u/#\n")
    path.chmod(0o644)
    return path


@needs_mosquitto
@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_mosquitto_listener_block_requires_and_uses_client_certificates(tmp_path, material,
                                                                        version):
    server, clients = material
    port = free_port()
    staged = stage_for_mosquitto(server, _reachable_folder(tmp_path) / "broker-tls")
    assert stat.S_IMODE(staged.key.stat().st_mode) == 0o600
    assert staged.key.read_bytes() == server.key.read_bytes()
    if os.geteuid() == 0 and _has_user("mosquitto"):
        assert staged.key.owner() == "mosquitto"  # it reads the key after dropping root
    block = mosquitto_tls_listener(port, HOST, staged, tls_version=version)
    assert "require_certificate true" in block and "use_identity_as_username true" in block
    config = with_listener(mosquitto_config(port), block)
    config = config.replace("allow_anonymous true", "allow_anonymous false")
    config += f"acl_file {_acl(tmp_path)}\n"
    assert [ln for ln in config.splitlines() if ln.startswith("listener")] == \
        [f"listener {port} {HOST}"]
    with mosquitto(config, HOST, port, tmp_path):
        n1 = client_context(clients["n1"])
        # Claiming another user name changes nothing: the certificate says n1.
        assert asyncio.run(_mqtt_roundtrip(port, n1, "users/n1/x", username="n2")) == b"ping"
        assert asyncio.run(_mqtt_roundtrip(port, n1, "users/n2/x")) is None
        bare = ssl.create_default_context(cafile=str(server.ca))
        assert asyncio.run(_refused(port, bare))
        _, strangers = tls.ensure_cluster(tmp_path / "other", ["n1"])
        assert asyncio.run(_refused(port, client_context(strangers["n1"])))
    assert "Error" not in log_of(tmp_path).replace("OpenSSL Error", ""), log_of(tmp_path)


@needs_mosquitto
def test_mosquitto_listener_refuses_bad_settings(material, tmp_path):
    server, _ = material
    with pytest.raises(TlsError):
        mosquitto_tls_listener(0, HOST, server)
    with pytest.raises(TlsError):
        mosquitto_tls_listener(1883, "localhost", server)
    with pytest.raises(TlsError):
        mosquitto_tls_listener(1883, HOST, server, tls_version="tlsv1.0")  # type: ignore[arg-type]
    with pytest.raises(TlsError, match="does not exist"):
        mosquitto_tls_listener(1883, HOST, TlsFiles(server.ca, tmp_path / "x", server.key))


async def _with_amqtt(config: dict, body, broker_class=None):
    from amqtt.broker import Broker

    from consensus.amqtt_plugins import RequireClientCertificate

    if broker_class is None:
        class broker_class(RequireClientCertificate, Broker):  # type: ignore[no-redef]
            pass
    broker = broker_class(config)
    await broker.start()
    try:
        return await body(broker)
    finally:
        await broker.shutdown()


def _users(broker) -> set[str | None]:
    return {session.username for session, _ in broker._sessions.values()}


# amqtt 0.12's ACL plugin reads its subscribe ACL only from the option it calls deprecated.
@pytest.mark.filterwarnings("ignore:The 'acl' option is deprecated:DeprecationWarning")
def test_embedded_broker_requires_a_client_certificate_and_uses_its_cn(material):
    server, clients = material
    port = free_port()
    config = amqtt_tls_config(port, HOST, server)
    # amqtt's own topic ACL, keyed by user name: it sees the CN, as the cluster's ACL will.
    acl = {user: [f"users/{user}/#"] for user in USERS}
    config["plugins"]["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
        "acl": acl, "publish_acl": acl}
    users_seen: set[str | None] = set()

    async def body(broker) -> tuple[bytes | None, bool, bool]:
        n3 = client_context(clients["n3"])
        echoed = await _mqtt_roundtrip(port, n3, "users/n3/x", username="control")
        assert await _mqtt_roundtrip(port, n3, "users/control/x", username="control") is None
        users_seen.update(_users(broker))
        bare = ssl.create_default_context(cafile=str(server.ca))
        _, strangers = tls.ensure_cluster(material[0].ca.parent.parent / "other", ["n3"])
        return echoed, await _refused(port, bare), await _refused(
            port, client_context(strangers["n3"]))

    echoed, bare_refused, stranger_refused = asyncio.run(_with_amqtt(config, body))
    assert echoed == b"ping"
    assert users_seen == {"n3"}  # the CN, not the "control" the client claimed
    assert bare_refused and stranger_refused


def test_embedded_broker_plugin_alone_refuses_certificate_less_clients(material):
    """amqtt's own TLS context only asks for a certificate; the plugin still refuses."""
    from amqtt.broker import Broker

    server, clients = material
    port = free_port()

    async def body(broker) -> tuple[bool, bool]:
        bare = ssl.create_default_context(cafile=str(server.ca))
        ok = await _mqtt_roundtrip(port, client_context(clients["n1"]), "t/x") == b"ping"
        return ok, await _refused(port, bare)

    ok, refused = asyncio.run(_with_amqtt(amqtt_tls_config(port, HOST, server), body,
                                          broker_class=Broker))
    assert ok and refused
