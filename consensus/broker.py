"""Start the MQTT broker the nodes talk through: mosquitto when installed, else amqtt.

Mosquitto is the real broker; it runs with ``mosquitto/mosquitto.conf`` (loopback only,
anonymous, no persistence, 1 MiB payload limit, Nagle off). Mosquitto ignores ``-p`` when
its config file declares a listener, so every start writes a temporary config: the shared
settings from that file minus its ``listener`` lines, plus ``listener <port> 127.0.0.1``.

When no ``mosquitto`` binary is installed, the embedded pure-Python broker (amqtt) runs in
a child process (``python -m consensus.broker --embedded --port P``) so that the project
works on a fresh machine. It is an order of magnitude slower than mosquitto; results
record which broker was used.

With a :class:`~consensus.auth.Realm` (``start_broker(realm=...)``) the broker is
authenticated: mosquitto gets ``allow_anonymous false`` and the realm's password and ACL
files (copied into its private directory, owned by the user mosquitto drops privileges to),
amqtt its FileAuthPlugin and :class:`~consensus.broker_acl.ClusterAclPlugin`. Without one it
is open (the ``--insecure`` teaching mode); :func:`warn_insecure` says so loudly.

With ``tls=True`` (and a realm that holds TLS material, :meth:`Realm.create` with
``tls_addresses``) the only listener is TLS: a client must present a certificate signed by
the cluster's CA and its CN is its user name (mosquitto's ``require_certificate`` and
``use_identity_as_username``; :mod:`consensus.amqtt_plugins` for amqtt); the URL is
``mqtts://``. See :mod:`consensus.broker_tls`.

Either way the broker is a child process in its own session (so a terminal's Ctrl-C
reaches us, not it, and we stop it cleanly), and logs to a file in its private temporary
directory, whose tail is shown when it fails to start. It listens on 127.0.0.1 unless given
another ``listen`` address; one that other hosts can reach (anything but loopback, 0.0.0.0
included) is refused without a realm: an open broker there would let anyone on the network
speak for a node (:func:`check_listen`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from consensus.codec import MAX_PAYLOAD

if TYPE_CHECKING:
    from consensus.auth import Realm
    from consensus.tls import TlsFiles

log = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
PREFERENCES = ("auto", "mosquitto", "amqtt")
HOST = "127.0.0.1"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
MOSQUITTO_CONF = Path(__file__).resolve().parent.parent / "mosquitto" / "mosquitto.conf"

# Used only when the package is installed without the repository's mosquitto/ folder.
_FALLBACK_SETTINGS = f"""\
allow_anonymous true
set_tcp_nodelay true
persistence false
message_size_limit {MAX_PAYLOAD}
max_queued_messages 10000
max_inflight_messages 100
persistent_client_expiration 1h
log_dest stderr
log_type error
log_type warning
log_type notice
"""


class BrokerError(RuntimeError):
    """The broker could not be started, or a broker URL is unusable."""


# -- URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker is and whether it speaks TLS (``mqtts://``)."""

    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def broker_address(url: str) -> BrokerAddress:
    """``mqtt://host:port`` (or ``tcp://``, or a bare ``host:port``): plain TCP, port 1883 by
    default; ``mqtts://host:port`` (or ``ssl://``): TLS, port 8883 by default.

    Raises :class:`BrokerError` naming what is wrong.
    """
    if not isinstance(url, str) or not url.strip():
        raise BrokerError(f"broker URL must be a non-empty string like mqtt://{HOST}:1883, "
                          f"got {url!r}")
    text = url.strip()
    if "://" not in text:
        text = "mqtt://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise BrokerError(f"broker URL {url!r}: scheme must be mqtt:// (plain TCP) or "
                          f"mqtts:// (TLS); got {parts.scheme}://")
    tls = parts.scheme in ("mqtts", "ssl")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerError(f"broker URL {url!r}: expected only host and port, like "
                          f"mqtt://{HOST}:1883")
    if parts.username or parts.password:
        raise BrokerError(f"broker URL {url!r}: credentials are not supported")
    try:
        port = parts.port
    except ValueError:
        raise BrokerError(f"broker URL {url!r}: port must be a number in 1..65535") from None
    host = parts.hostname
    if not host:
        raise BrokerError(f"broker URL {url!r} has no host")
    if port == 0:
        raise BrokerError(f"broker URL {url!r}: port must be in 1..65535")
    return BrokerAddress(host, (DEFAULT_TLS_PORT if tls else DEFAULT_PORT) if port is None
                         else port, tls)


def parse_broker_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a broker URL (see :func:`broker_address`, which also says TLS)."""
    address = broker_address(url)
    return address.host, address.port


def broker_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the broker URL (no MQTT handshake)."""
    host, port = parse_broker_url(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# -- the handle -----------------------------------------------------------------------------


@dataclass
class BrokerHandle:
    """A broker this process started; :meth:`stop` ends it (and only it)."""

    url: str
    kind: BrokerKind
    pid: int | None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    _workdir: Path | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return parse_broker_url(self.url)[1]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the broker wrote to stderr (empty when there is no log)."""
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("broker pid %s ignored SIGTERM for %.1f s; killing it",
                            proc.pid, timeout)
                proc.kill()
                proc.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self.log_path = None

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- starting -------------------------------------------------------------------------------


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, if installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def chosen_kind(prefer: str = "auto") -> BrokerKind:
    """The broker :func:`start_broker` would start for ``prefer`` (credentials are made
    for it before it starts)."""
    if prefer == "amqtt" or (prefer == "auto" and find_mosquitto() is None):
        return "amqtt"
    return "mosquitto"


def _free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mosquitto_config(port: int, base: Path | None = None,
                     auth_files: tuple[Path, Path] | None = None, *, listen: str = HOST,
                     tls_files: TlsFiles | None = None) -> str:
    """The shared settings of ``base`` (default ``mosquitto/mosquitto.conf``), on
    ``listen:port``; with ``auth_files`` (password file, ACL file), authenticated and without
    anonymous access whatever ``base`` says; with ``tls_files`` (the broker's, readable by
    mosquitto), a TLS listener that requires client certificates instead of a plain one."""
    path = base or MOSQUITTO_CONF
    try:
        text = path.read_text()
    except FileNotFoundError:
        if base is not None:
            raise BrokerError(f"mosquitto config {path} does not exist") from None
        log.warning("%s not found; using built-in mosquitto settings", path)
        text = _FALLBACK_SETTINGS
    dropped = [["listener"], ["port"], ["bind_address"]]
    if auth_files is not None:
        dropped += [["allow_anonymous"], ["password_file"], ["acl_file"]]
    kept = [line for line in text.splitlines() if line.split(maxsplit=1)[:1] not in dropped]
    if auth_files is not None:
        # Over TLS the certificate is the credential (use_identity_as_username): no passwords.
        passwords = [] if tls_files is not None else [f"password_file {auth_files[0]}"]
        kept += ["", "allow_anonymous false", *passwords, f"acl_file {auth_files[1]}"]
    if tls_files is not None:
        from consensus.broker_tls import mosquitto_tls_listener

        return "\n".join([*kept, "", mosquitto_tls_listener(port, listen, tls_files)])
    return "\n".join([*kept, "", f"listener {port} {listen}", ""])


def check_listen(listen: str, authenticated: bool) -> None:
    """Refuse a listen address that is not an IP address, and an open broker on an address
    other hosts can reach (anything but loopback: 0.0.0.0 too)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(listen)
    except ValueError:
        raise BrokerError(f"listen address must be an IP address (such as 127.0.0.1 or "
                          f"10.0.0.5), got {listen!r}") from None
    if not authenticated and not address.is_loopback:
        raise BrokerError(f"refusing to listen on {listen} without authentication: any host "
                          f"that reaches it could forge protocol and control messages. Drop "
                          f"--insecure (per-cluster credentials), and add --tls so that "
                          f"nothing crosses the network in clear text")


def dial_host(listen: str) -> str:
    """The address a local client dials for a broker listening on ``listen``."""
    return HOST if listen in ("0.0.0.0", "::") else listen


def start_broker(port: int | None = None, prefer: str = "auto", *,
                 config: Path | None = None, timeout: float = 10.0,
                 realm: Realm | None = None, listen: str = HOST,
                 tls: bool = False) -> BrokerHandle:
    """Start a broker on ``listen`` (127.0.0.1) and return once it accepts TCP connections.

    ``prefer``: ``"auto"`` (mosquitto when installed, else amqtt), ``"mosquitto"`` (an
    error when it is not installed) or ``"amqtt"``. With no ``port``, a free one is chosen
    (and, should another process grab it first, another). ``config`` overrides
    ``mosquitto/mosquitto.conf``. ``realm``: accept only its users, under its ACL (else
    anyone, anonymously; refused on an address other hosts reach). ``tls``: a TLS listener
    requiring the realm's client certificates. Raises :class:`BrokerError` with the broker's
    own error output when it does not come up within ``timeout`` seconds.
    """
    if prefer not in PREFERENCES:
        raise BrokerError(f"unknown broker {prefer!r}; choose one of {', '.join(PREFERENCES)}")
    check_listen(listen, realm is not None)
    if tls and (realm is None or realm.tls_dir is None):
        raise BrokerError("a TLS broker needs the cluster's certificates: make the realm "
                          "with TLS material (consensus-lab broker/cluster up --tls)")
    host = dial_host(listen)
    mosquitto = find_mosquitto() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and mosquitto is None:
        raise BrokerError("mosquitto is not installed (no 'mosquitto' on PATH or in /usr/sbin);"
                          " install it (Debian/Ubuntu: apt-get install mosquitto) or use the "
                          "embedded broker (amqtt)")
    if port is not None:
        if not 1 <= port <= 65535:
            raise BrokerError(f"port must be in 1..65535, got {port}")
        # Otherwise the readiness probe would succeed against whatever holds the port.
        if broker_reachable(f"mqtt://{host}:{port}", timeout=0.5):
            raise BrokerError(f"port {port} on {host} is already in use; pick another "
                              f"(or pass --broker mqtt://{host}:{port} to use that broker)")
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else _free_port(host)
        where = BrokerAddress(host, chosen, tls)
        try:
            if mosquitto is not None:
                return _start_mosquitto(mosquitto, where, listen, config, timeout, realm)
            return _start_amqtt(where, listen, timeout, realm)
        except _PortTaken:
            if attempt == attempts:
                raise BrokerError(f"port {chosen} on {host} is already in use") from None
    raise AssertionError("unreachable")


class _PortTaken(BrokerError):
    pass


def _start_mosquitto(binary: str, where: BrokerAddress, listen: str, config: Path | None,
                     timeout: float, realm: Realm | None = None) -> BrokerHandle:
    from consensus.tls import TlsError

    workdir = Path(tempfile.mkdtemp(prefix="consensus-mosquitto-"))
    conf = workdir / "mosquitto.conf"
    try:
        auth_files = None if realm is None else _mosquitto_auth_files(realm, workdir)
        tls_files = None
        if where.tls:
            from consensus.broker_tls import stage_for_mosquitto

            assert realm is not None  # start_broker checked
            tls_files = stage_for_mosquitto(_server_files(realm, listen), workdir / "tls")
        conf.write_text(mosquitto_config(where.port, config, auth_files, listen=listen,
                                         tls_files=tls_files))
    except (BrokerError, OSError, TlsError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, TlsError):
            raise BrokerError(str(exc)) from None
        raise
    # Mosquitto run as root drops privileges to user 'mosquitto'; the config is read before.
    conf.chmod(0o644)
    return _spawn("mosquitto", [binary, "-c", str(conf)], where, workdir, timeout)


def _server_files(realm: Realm, listen: str) -> TlsFiles:
    """The broker's certificate in the realm, (re)issued if it does not name ``listen`` (a
    wildcard is refused by ensure_server: clients must dial an address the certificate
    names)."""
    from consensus.tls import TlsError, ensure_server

    assert realm.tls_dir is not None
    try:
        return ensure_server(realm.tls_dir, [listen])
    except TlsError as exc:
        raise BrokerError(str(exc)) from None


def _mosquitto_auth_files(realm: Realm, workdir: Path) -> tuple[Path, Path]:
    """Copies of the realm's password and ACL files that mosquitto can read after it drops
    root privileges to its own user: owned by that user, still mode 0600 (hashes only)."""
    if not realm.mosquitto_passwd.exists():
        raise BrokerError(f"{realm.directory} has no mosquitto password file; the realm was "
                          f"made for another broker")
    copies = (workdir / "passwd", workdir / "acl")
    for src, dst in zip((realm.mosquitto_passwd, realm.mosquitto_acl), copies, strict=True):
        shutil.copyfile(src, dst)
        dst.chmod(0o600)
    if os.geteuid() == 0:
        import pwd

        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("mosquitto")
            for path in (workdir, *copies):
                os.chown(path, owner.pw_uid, owner.pw_gid)
    return copies


def _start_amqtt(where: BrokerAddress, listen: str, timeout: float,
                 realm: Realm | None = None) -> BrokerHandle:
    try:
        import amqtt  # noqa: F401
    except ImportError:
        raise BrokerError("neither mosquitto nor amqtt is installed: install mosquitto "
                          "(apt-get install mosquitto) or the Python package amqtt") from None
    workdir = Path(tempfile.mkdtemp(prefix="consensus-amqtt-"))
    argv = [sys.executable, "-m", "consensus.broker", "--embedded", "--port", str(where.port),
            "--listen", listen]
    if where.tls:
        assert realm is not None  # start_broker checked
        _server_files(realm, listen)
        argv += ["--tls"]
    if realm is not None:
        if not realm.amqtt_passwd.exists():
            raise BrokerError(f"{realm.directory} has no amqtt password file; the realm was "
                              f"made for another broker")
        argv += ["--realm", str(realm.directory)]
    return _spawn("amqtt", argv, where, workdir, timeout)


def _spawn(kind: BrokerKind, argv: list[str], where: BrokerAddress, workdir: Path,
           timeout: float) -> BrokerHandle:
    log_path = workdir / "broker.log"
    # stderr goes to a file, not a pipe: nobody drains a pipe, and a full one would
    # block the broker.
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    handle = BrokerHandle(url=where.url, kind=kind, pid=proc.pid, process=proc,
                          log_path=log_path, _workdir=workdir)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = handle.log_tail()
            handle.stop()
            if "Address already in use" in tail or "address already in use" in tail:
                raise _PortTaken(tail)
            raise BrokerError(f"{kind} exited with status {proc.returncode} before accepting "
                              f"connections on {where.host}:{where.port}:\n"
                              f"{tail or '(no output)'}")
        if broker_reachable(handle.url, timeout=0.2):
            log.info("started %s (pid %s) at %s", kind, proc.pid, handle.url)
            return handle
        if time.monotonic() > deadline:
            tail = handle.log_tail()
            handle.stop()
            raise BrokerError(f"{kind} did not accept connections on {where.host}:{where.port} "
                              f"within {timeout:.0f} s; its output:\n"
                              f"{tail or '(no output)'}")
        time.sleep(0.02)


def reload_broker(kind: str, pid: int, realm: Realm, workdir: Path | None = None) -> None:
    """Make a running broker this package started take the realm's rewritten password and
    ACL files (a node was added or removed): mosquitto rereads them on SIGHUP, from the
    copies in its ``workdir`` (refreshed here first); the embedded amqtt broker rereads the
    realm's own files on SIGHUP (:func:`serve_embedded`). Raises :class:`BrokerError` when
    the broker cannot be told."""
    if kind == "mosquitto":
        if workdir is None or not workdir.is_dir():
            raise BrokerError(f"the mosquitto broker's folder {workdir} is gone; cannot "
                              f"update its password and ACL files")
        _mosquitto_auth_files(realm, workdir)
    elif kind != "amqtt":
        raise BrokerError(f"cannot reload a {kind} broker")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BrokerError(f"the {kind} broker (pid {pid}) is not running") from None


@contextlib.contextmanager
def broker(url: str | None = None, prefer: str = "auto") -> Iterator[str]:
    """Yield ``url`` when given, else start a broker for the duration and yield its URL."""
    if url is not None:
        parse_broker_url(url)
        yield url
        return
    handle = start_broker(prefer=prefer)
    try:
        yield handle.url
    finally:
        handle.stop()


def run_broker_foreground(port: int | None = None, prefer: str = "auto",
                          realm: Realm | None = None, listen: str = HOST,
                          tls: bool = False) -> None:
    """Start a broker, say where and which, and keep it up until Ctrl-C or SIGTERM."""
    handle = start_broker(port, prefer, realm=realm, listen=listen, tls=tls)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_term)
    record = None
    if realm is not None and handle.pid is not None:
        # What `cluster add/remove` needs to make this broker reload the realm's files.
        from consensus.cluster_change import BROKER_RECORD

        record = realm.directory / BROKER_RECORD
        record.write_text(json.dumps({"kind": handle.kind, "pid": handle.pid,
                                      "workdir": str(handle.log_path.parent
                                                     if handle.log_path else "")}))
    print(f"{handle.kind} broker (pid {handle.pid}) listening at {handle.url}", flush=True)
    print(f"  log: {handle.log_path}", flush=True)
    if realm is not None:
        print(f"  authenticated: users of cluster {realm.cluster!r}, credentials in "
              f"{realm.directory}", flush=True)
        if tls:
            print(f"  TLS: client certificates required (CN = user name), CA and "
                  f"certificates in {realm.tls_dir}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop:
            if not handle.running():
                code = handle.process.returncode if handle.process else None
                raise BrokerError(f"{handle.kind} exited unexpectedly (status {code}):\n"
                                  f"{handle.log_tail()}")
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if record is not None:
            record.unlink(missing_ok=True)
        handle.stop()
        print(f"{handle.kind} broker stopped.", flush=True)


# -- the embedded broker (child process) --------------------------------------------------


def amqtt_config(port: int, realm_dir: Path | None = None, listen: str = HOST,
                 tls: bool = False) -> dict[str, Any]:
    """amqtt 0.12 broker config: one TCP listener on ``listen``, no plugins that write files
    or publish $SYS. Without ``realm_dir``, anonymous (the auth plugin is still needed: without
    one amqtt refuses every client); with it, the realm's users and ACL only; with ``tls``
    too, a TLS listener with the realm's broker certificate, and the client certificate's CN
    as the user name instead of a password (:mod:`consensus.amqtt_plugins`)."""
    host = f"[{listen}]" if ":" in listen else listen
    listeners = {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}}
    if realm_dir is None:
        return {"listeners": listeners,
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                            {"allow_anonymous": True}}}
    from consensus.auth import AMQTT_ACL, AMQTT_PASSWD, TLS_DIR

    acl = json.loads((realm_dir / AMQTT_ACL).read_text())
    if tls:
        from consensus.broker_tls import amqtt_tls_listener, amqtt_tls_plugins
        from consensus.tls import SERVER_NAME, load

        server = load(realm_dir / TLS_DIR, SERVER_NAME)
        return {"listeners": {"default": amqtt_tls_listener(port, listen, server)},
                "plugins": {**amqtt_tls_plugins(), "consensus.broker_acl.ClusterAclPlugin": acl}}
    return {"listeners": listeners,
            "plugins": {"amqtt.plugins.authentication.FileAuthPlugin":
                        {"password_file": str(realm_dir / AMQTT_PASSWD)},
                        "consensus.broker_acl.ClusterAclPlugin": acl}}


def _make_amqtt_broker(config: dict[str, Any], tls: bool = False) -> Any:
    from amqtt.broker import Broker

    base: type[Any] = Broker
    if tls:
        from consensus.amqtt_plugins import RequireClientCertificate

        class CertificateBroker(RequireClientCertificate, Broker):  # type: ignore[misc]
            """Certificate-less clients fail the TLS handshake (see amqtt_plugins)."""

        base = CertificateBroker

    class LimitedBroker(base):  # type: ignore[misc,valid-type]
        """amqtt has no packet size limit setting; drop oversized PUBLISHes like mosquitto's
        message_size_limit does (the publisher stays connected). This hooks a private
        method; if a later amqtt renames it the limit silently lapses, and the test
        ``test_oversized_payload_refused`` says so."""

        async def _handle_message_delivery(self, client_session: Any, handler: Any,
                                           wait_deliver: asyncio.Future[Any]) -> bool:
            message = wait_deliver.result()
            data = getattr(message, "data", None)
            if data is not None and len(data) > MAX_PAYLOAD:
                log.warning("dropping %d-byte PUBLISH from %s to %r (limit %d)", len(data),
                            client_session.client_id, message.topic, MAX_PAYLOAD)
                return True
            return await super()._handle_message_delivery(client_session, handler,
                                                           wait_deliver)

    return LimitedBroker(config)


async def serve_embedded(port: int, realm_dir: Path | None = None, listen: str = HOST,
                         tls: bool = False) -> None:
    """Run amqtt on ``listen:port`` until SIGTERM or SIGINT (see :func:`amqtt_config`)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = _make_amqtt_broker(amqtt_config(port, realm_dir, listen, tls), tls)
    if realm_dir is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_embedded, server, realm_dir)
    await server.start()
    log.warning("amqtt broker listening on %s:%d%s", listen, port, " (TLS)" if tls else "")
    await stopping.wait()
    await server.shutdown()


def _reload_embedded(server: Any, realm_dir: Path) -> None:
    """SIGHUP: reread the realm's password file and ACL (see :func:`reload_broker`).

    amqtt has no reload of its own; its FileAuthPlugin reads the password file in its
    constructor (``_read_password_file``, private: if a later amqtt renames it, the new
    node cannot connect and test_mqtt_membership says so)."""
    from amqtt.plugins.authentication import FileAuthPlugin

    from consensus.auth import AMQTT_ACL
    from consensus.broker_acl import ClusterAclPlugin

    try:
        acl = json.loads((realm_dir / AMQTT_ACL).read_text())
        for plugin in server.plugins_manager.plugins:
            if isinstance(plugin, FileAuthPlugin):
                plugin._users = {}
                plugin._read_password_file()
            elif isinstance(plugin, ClusterAclPlugin):
                plugin.replace_rules(acl)
    except Exception:  # a bad file must not take the broker down; the old rules stay
        log.exception("reloading the realm in %s failed", realm_dir)
        return
    log.warning("reloaded the users and ACL of %s", realm_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consensus.broker",
        description="Run an MQTT broker for consensus-lab in the foreground.")
    parser.add_argument("--embedded", action="store_true",
                        help="run the embedded amqtt broker in this process")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port on 127.0.0.1 (default: 1883 embedded, else a free one)")
    parser.add_argument("--listen", default=HOST,
                        help="with --embedded: the address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls", action="store_true",
                        help="with --embedded and --realm: TLS with the realm's certificates")
    parser.add_argument("--realm", type=Path, default=None,
                        help="with --embedded: the realm's secrets folder (authenticated)")
    parser.add_argument("--prefer", choices=PREFERENCES, default="auto",
                        help="which broker to start (without --embedded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.embedded:
        # amqtt logs every connection at INFO and more at DEBUG; keep to warnings.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        try:
            if args.realm is None and (args.tls or args.listen != HOST):
                raise BrokerError("--tls and --listen need --realm (authentication)")
            asyncio.run(serve_embedded(args.port or DEFAULT_PORT, args.realm, args.listen,
                                       args.tls))
        except Exception as exc:  # amqtt wraps bind errors in its own BrokerError
            print(f"amqtt: cannot serve on {args.listen}:{args.port or DEFAULT_PORT}: {exc}",
                  file=sys.stderr)
            return 1
        return 0
    try:
        run_broker_foreground(args.port, args.prefer)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
