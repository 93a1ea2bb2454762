"""TLS material for a cluster: a small CA, a broker certificate, one client certificate per user.

Mutual TLS is how the broker knows who is speaking: each node, the ``client`` user and the
experiment runner's ``control`` user present a certificate whose subject CN is their MQTT
user name, signed by a CA made for this one cluster. The broker (mosquitto with
``use_identity_as_username``, or the embedded amqtt broker with
:mod:`consensus.amqtt_plugins`) takes that CN as the user name, so the topic ACLs apply to the
certificate's identity and no password travels.

Everything lives in one folder (mode 0700; private keys 0600)::

    ca.crt ca.key            the cluster's CA (EC P-256, basicConstraints CA, keyCertSign)
    server.crt server.key    the broker: subjectAltName = the addresses clients dial
    <user>.crt <user>.key    one per MQTT user: CN = user name, extendedKeyUsage clientAuth

:func:`ensure_ca`, :func:`ensure_server` and :func:`ensure_client` are idempotent: what is on
disk is reused while it is still valid for the request (signed by the CA on disk, not near
expiry, the addresses covered), and replaced otherwise. :func:`client_context` and
:func:`server_context` turn a :class:`TlsFiles` into an ``ssl.SSLContext``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=397)  # the CA/Browser Forum's ceiling for leaf certificates
RENEW_BEFORE = dt.timedelta(days=30)  # a certificate this close to expiry is reissued
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore is backdated: hosts' clocks differ a little
ALWAYS_SERVED = ("127.0.0.1", "localhost")  # the broker's certificate always covers loopback
CA_NAME = "ca"
SERVER_NAME = "server"
_RESERVED = {CA_NAME, SERVER_NAME}
# A user name is also a file name and an MQTT user: keep it to what is safe as both.
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TlsError(ValueError):
    """TLS material that cannot be made or used as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of one party's TLS material: the CA to trust, its certificate and private key."""

    ca: Path
    cert: Path
    key: Path

    def exist(self) -> bool:
        return self.ca.is_file() and self.cert.is_file() and self.key.is_file()


# -- making and loading material -----------------------------------------------------------


def ensure_ca(folder: Path | str, name: str = "consensus-lab") -> TlsFiles:
    """The CA in ``folder``, created when absent, unreadable or close to expiry.

    ``name`` goes into the CA's CN (for example the cluster name), so that a reader of a
    certificate can tell which cluster's CA issued it. A new CA invalidates every certificate
    it did not sign; :func:`ensure_server` and :func:`ensure_client` then reissue them.
    The result's ``cert`` is the CA's own certificate (same as ``ca``), its ``key`` the CA key.
    """
    folder = _private_folder(folder)
    files = TlsFiles(folder / f"{CA_NAME}.crt", folder / f"{CA_NAME}.crt",
                     folder / f"{CA_NAME}.key")
    if files.exist():
        try:
            cert, key = _load_pair(files)
            if _fresh(cert) and _is_ca(cert) and _matches(cert, key):
                return files
        except (ValueError, TypeError, OSError):
            pass  # unreadable or not ours: make a new one
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consensus-lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files


def ensure_server(folder: Path | str, addresses: Iterable[str] = ()) -> TlsFiles:
    """The broker's certificate, valid for ``addresses`` plus 127.0.0.1 and localhost.

    ``addresses`` are what clients put in the broker URL: IP addresses or host names. A
    wildcard bind address (0.0.0.0, ::) is refused: a certificate must name the address that
    clients dial, which a wildcard is not.
    """
    names = _server_names(addresses)
    ca = ensure_ca(folder)
    wanted = TlsFiles(ca.ca, ca.cert.parent / f"{SERVER_NAME}.crt",
                      ca.cert.parent / f"{SERVER_NAME}.key")
    if _reusable(wanted, ca, lambda cert: set(names) <= _san_names(cert)):
        return wanted
    san = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n)
           for n in names]
    _issue(ca, wanted, "consensus-lab broker", ExtendedKeyUsageOID.SERVER_AUTH,
           x509.SubjectAlternativeName(san))
    return wanted


def ensure_client(folder: Path | str, user: str) -> TlsFiles:
    """The certificate of MQTT user ``user`` (a node id, ``client``, ``control``): CN = user."""
    check_user(user)
    ca = ensure_ca(folder)
    wanted = TlsFiles(ca.ca, ca.cert.parent / f"{user}.crt", ca.cert.parent / f"{user}.key")
    if _reusable(wanted, ca, lambda cert: certificate_user(cert) == user):
        return wanted
    _issue(ca, wanted, user, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    return wanted


def ensure_cluster(folder: Path | str, users: Iterable[str], addresses: Iterable[str] = (),
                   name: str = "consensus-lab") -> tuple[TlsFiles, dict[str, TlsFiles]]:
    """All of a cluster's material: ``(broker files, {user: files})``. Idempotent."""
    ensure_ca(folder, name)
    server = ensure_server(folder, addresses)
    return server, {user: ensure_client(folder, user) for user in sorted(set(users))}


def load(folder: Path | str, name: str) -> TlsFiles:
    """The existing material of ``name`` (a user, or ``"server"``) in ``folder``; never makes
    anything. For a host that was given only its own files (``ca.crt``, ``<name>.crt``,
    ``<name>.key``, and no CA key, which the ``ensure_*`` functions would take as a reason to
    make a new CA). Raises :class:`TlsError` saying what is wrong with them.
    """
    if name != SERVER_NAME:
        check_user(name)
    folder = Path(folder)
    files = TlsFiles(folder / f"{CA_NAME}.crt", folder / f"{name}.crt", folder / f"{name}.key")
    _require(files)
    try:
        cert, key = _load_pair(files)
        ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{files.cert} or {files.key} is not a PEM certificate and EC key: "
                       f"{exc}") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(f"{files.cert} was not signed by the CA in {files.ca}") from None
    if not _matches(cert, key):
        raise TlsError(f"{files.key} is not the key of {files.cert}")
    now = _now()
    if not cert.not_valid_before_utc <= now + CLOCK_SKEW < cert.not_valid_after_utc + CLOCK_SKEW:
        raise TlsError(f"{files.cert} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                       f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now (is this "
                       f"host's clock right?)")
    if name != SERVER_NAME and certificate_user(cert) != name:
        raise TlsError(f"{files.cert} is {certificate_user(cert)!r}'s certificate, not {name!r}'s")
    return files


def check_user(user: str) -> str:
    """``user`` when it can name a certificate and a file, else :class:`TlsError`."""
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise TlsError(f"user name {user!r} cannot name a certificate: use 1-64 letters, "
                       f"digits, '_', '.' or '-', starting with a letter or digit")
    if user in _RESERVED:
        raise TlsError(f"user name {user!r} is reserved for the {user} certificate's files")
    return user


# -- using material ---------------------------------------------------------------------------


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A context that trusts only the cluster's CA, checks the broker's address against its
    certificate, and presents ``files``' certificate (mutual TLS). TLS 1.2 at least."""
    _require(files)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def server_context(files: TlsFiles, require_certificate: bool = True) -> ssl.SSLContext:
    """A broker-side context: its certificate, clients verified against the cluster's CA.

    With ``require_certificate`` (the default) a client without a valid certificate fails the
    handshake; without it, a client may connect with none (and is then anonymous to TLS).
    """
    _require(files)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_certificate else ssl.CERT_OPTIONAL
    return ctx


def certificate_user(cert: x509.Certificate) -> str | None:
    """The subject CN of ``cert`` (the MQTT user name it stands for), or None."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        return None
    value = cns[0].value
    return value if isinstance(value, str) else value.decode()


def peer_user(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The CN of the certificate the peer of a TLS connection presented, or None.

    Only meaningful on a context that verifies peers (:func:`server_context`): the handshake
    has then checked the certificate against the CA, so its CN can be trusted as the user.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return certificate_user(x509.load_der_x509_certificate(der))


# -- internals --------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _private_folder(folder: Path | str) -> Path:
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is masked by the umask, and an existing folder kept its own
    return path


def _server_names(addresses: Iterable[str]) -> list[str]:
    names: list[str] = []
    for raw in [*ALWAYS_SERVED, *addresses]:
        if not isinstance(raw, str) or not raw.strip():
            raise TlsError(f"broker address {raw!r} must be a non-empty IP address or host name")
        name = raw.strip().lower()
        if _is_ip(name):
            ip = ipaddress.ip_address(name)
            if ip.is_unspecified:
                raise TlsError(f"{raw} is a wildcard bind address, not one clients can dial: "
                               f"name the broker's real addresses (e.g. 10.0.0.5) instead")
            name = str(ip)
        elif not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}"
                              r"[a-z0-9])?)*", name):
            raise TlsError(f"broker address {raw!r} is neither an IP address nor a host name")
        if name not in names:
            names.append(name)
    return names


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
            | {name.lower() for name in san.get_values_for_type(x509.DNSName)})


def _issue(ca: TlsFiles, files: TlsFiles, common_name: str, purpose: x509.ObjectIdentifier,
           san: x509.SubjectAlternativeName | None) -> None:
    ca_cert, ca_key = _load_pair(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consensus-lab"),
                   x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW)
               .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=True, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(files.key, key)
    _write_cert(files.cert, cert)


def _reusable(files: TlsFiles, ca: TlsFiles,
              fits: Callable[[x509.Certificate], bool]) -> bool:
    """Whether ``files`` exist, belong together, were signed by ``ca`` and still fit."""
    if not (files.cert.is_file() and files.key.is_file()):
        return False
    try:
        cert, key = _load_pair(files)
        ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, OSError, InvalidSignature):
        return False
    return _fresh(cert) and _matches(cert, key) and fits(cert)


def _load_pair(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{files.key} does not hold an EC private key")
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now + CLOCK_SKEW and \
        cert.not_valid_after_utc - RENEW_BEFORE > now


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    # Certificates are public, but they sit in the private folder anyway.
    _write_private(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file created with ``mode`` (never briefly readable by
    others), then rename it over ``path`` so a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # os.open's mode is masked by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _require(files: TlsFiles) -> None:
    missing = [str(p) for p in (files.ca, files.cert, files.key) if not p.is_file()]
    if missing:
        raise TlsError(f"TLS files missing: {', '.join(missing)} (generate them with "
                       f"consensus.tls.ensure_cluster)")
