"""Broker configuration for TLS listeners: mosquitto's config text, amqtt's config pieces.

Both make the broker do the same thing: listen on one address and port with the cluster's
broker certificate (:mod:`consensus.tls`), require every client to present a certificate
signed by the cluster's CA, and take that certificate's CN as the client's MQTT user name (so
topic ACLs written for user names apply to certificate identities). ``consensus.broker``
calls these when it starts a broker with TLS.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
from pathlib import Path
from typing import Any, Literal

from consensus.tls import TlsError, TlsFiles

TlsVersion = Literal["tlsv1.2", "tlsv1.3"]
TLS_VERSIONS: tuple[TlsVersion, ...] = ("tlsv1.2", "tlsv1.3")
# Lines that open or configure a listener in a mosquitto config: a TLS config drops them from
# the shared settings so the only listener is the TLS one.
_LISTENER_KEYS = {"listener", "port", "bind_address", "cafile", "capath", "certfile",
                  "keyfile", "require_certificate", "use_identity_as_username",
                  "use_subject_as_username", "tls_version", "ciphers", "ciphers_tls1.3",
                  "psk_hint", "crlfile"}
CERTIFICATE_PLUGIN = "consensus.amqtt_plugins.CertificateUserPlugin"


def mosquitto_tls_listener(port: int, address: str, files: TlsFiles,
                           tls_version: TlsVersion = "tlsv1.2") -> str:
    """A mosquitto ``listener`` block: TLS on ``address:port``, client certificates required,
    the certificate's CN used as the user name. ``tls_version`` is the oldest TLS accepted."""
    _check_listen(port, address)
    if tls_version not in TLS_VERSIONS:
        raise TlsError(f"tls_version must be one of {', '.join(TLS_VERSIONS)}, "
                       f"got {tls_version!r}")
    for path in (files.ca, files.cert, files.key):
        if not path.is_file():
            raise TlsError(f"{path} does not exist (generate it with consensus.tls)")
        if any(c.isspace() for c in str(path)):
            # mosquitto splits a config line at whitespace; such a path would be cut short.
            raise TlsError(f"mosquitto cannot read a path with whitespace: {path}")
    return "\n".join([
        f"listener {port} {address}",
        f"cafile {files.ca}",
        f"certfile {files.cert}",
        f"keyfile {files.key}",
        "require_certificate true",
        "use_identity_as_username true",
        f"tls_version {tls_version}",
        "",
    ])


def stage_for_mosquitto(files: TlsFiles, folder: Path, user: str = "mosquitto") -> TlsFiles:
    """Copies of the broker's TLS files in ``folder`` that mosquitto can read, for
    :func:`mosquitto_tls_listener`.

    Mosquitto started as root drops to ``user`` (its ``user`` setting, by default
    ``mosquitto``) *before* it loads certificates, so it cannot read the cluster's 0600 root
    key in its 0700 folder. The copies are owned by that user (0600 key, 0700 folder); only
    the CA certificate, the broker's certificate and key are copied, never a client's key.
    Every parent of ``folder`` must let ``user`` through (mode o+x, e.g. 0711). Not root: the
    broker runs as us and the copies are simply ours.
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    staged = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    for src, dst, mode in ((files.ca, staged.ca, 0o644), (files.cert, staged.cert, 0o644),
                           (files.key, staged.key, 0o600)):
        if not src.is_file():
            raise TlsError(f"{src} does not exist (generate it with consensus.tls)")
        dst.unlink(missing_ok=True)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        dst.chmod(mode)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            # No such user: mosquitto then keeps running as root and reads the copies anyway.
            return staged
        for path in (folder, staged.ca, staged.cert, staged.key):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    return staged


def with_listener(settings: str, listener_block: str) -> str:
    """``settings`` (a mosquitto config) with its listeners, and their TLS settings, replaced
    by ``listener_block`` (from :func:`mosquitto_tls_listener`, or a plain ``listener``)."""
    kept = [line for line in settings.splitlines()
            if line.split(maxsplit=1)[:1] == [] or line.split()[0] not in _LISTENER_KEYS]
    return "\n".join([*kept, "", listener_block])


def amqtt_tls_listener(port: int, address: str, files: TlsFiles) -> dict[str, Any]:
    """An amqtt 0.12 listener: TLS on ``address:port`` with the cluster's broker certificate
    and CA. Pair it with :func:`amqtt_tls_plugins` and a broker class that mixes in
    :class:`consensus.amqtt_plugins.RequireClientCertificate`."""
    _check_listen(port, address)
    for path in (files.ca, files.cert, files.key):
        if not path.is_file():
            raise TlsError(f"{path} does not exist (generate it with consensus.tls)")
    host = f"[{address}]" if ":" in address else address
    return {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0, "ssl": True,
            "cafile": str(files.ca), "certfile": str(files.cert), "keyfile": str(files.key)}


def amqtt_tls_plugins() -> dict[str, Any]:
    """The amqtt plugin that authenticates by client certificate (CN = user name); it takes
    the place of ``AnonymousAuthPlugin`` (and of a password plugin: as with mosquitto's
    ``use_identity_as_username``, the certificate is the credential)."""
    return {CERTIFICATE_PLUGIN: {}}


def amqtt_tls_config(port: int, address: str, files: TlsFiles) -> dict[str, Any]:
    """A whole amqtt config: the TLS listener only, certificate authentication only."""
    return {"listeners": {"default": amqtt_tls_listener(port, address, files)},
            "plugins": amqtt_tls_plugins()}


def _check_listen(port: int, address: str) -> None:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise TlsError(f"port must be in 1..65535, got {port!r}")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise TlsError(f"listen address must be an IP address, got {address!r}") from None
