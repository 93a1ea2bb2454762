"""Per-cluster credentials and topic ACLs, so the broker vouches for who sent what.

Theory of operation
-------------------
Each ``cluster up`` (or ``broker --cluster``) makes a *realm*: one MQTT user per node (its
user name is its node id), one ``client`` user shared by clients, one ``control`` user for
the experiment runner, the dashboard and the CLI's status reads, each with a fresh random
password (:mod:`secrets`). A new realm replaces the old one, so credentials of a previous
incarnation are refused by the broker. The realm lives in ``<cluster folder>/secrets/``
(mode 0700; every file 0600): ``<user>.json`` per user (what one connection presents, read
by :meth:`Identity.load`; a node process gets the path, never the password on its command
line), the mosquitto password file (hashed by ``mosquitto_passwd``) and ACL file, and the
embedded broker's equivalents (argon2 hashes via pwdlib, as amqtt's FileAuthPlugin reads
them; the ACL as JSON for :class:`consensus.broker_acl.ClusterAclPlugin`).

The ACL (see :func:`acl_rules`) follows the topic tree of :mod:`consensus.transport.topics`:
a node may publish protocol messages only on ``consensus/<c>/+/from/<itself>`` and read only
its own inbox, request, control and membership-change topics; any cluster user may send
client requests only on ``consensus/<c>/+/request/<its MQTT client id>`` and read replies
only on ``consensus/<c>/client/<its MQTT client id>`` (``%c``: one load-generator connection
carries many logical clients, so the *connection* is what the broker can vouch for); only
``control`` writes control and membership-change (``config``) topics; nodes publish their
own status, which every cluster user may read. Node rules are per user (``user`` blocks)
rather than ``pattern ... %u`` lines, because a mosquitto pattern applies to every user:
``client`` could then publish on ``.../from/client``. The explicit per-user lines are
exactly those patterns expanded.

A running cluster's membership changes (``cluster add`` / ``remove``): :meth:`Realm.add_node`
gives a new node a user of its own and :meth:`Realm.remove_node` revokes a removed one's; both
rewrite the password and ACL files, which the broker then reloads
(:func:`consensus.broker.reload_broker`).

Nothing here logs or prints a password; :class:`Identity` hides it from ``repr``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from consensus.transport import topics

if TYPE_CHECKING:
    from consensus.tls import TlsFiles

CLIENT_USER = "client"
CONTROL_USER = "control"
RESERVED_USERS = (CLIENT_USER, CONTROL_USER)
SECRETS_DIR = "secrets"
TLS_DIR = "tls"  # inside SECRETS_DIR: the cluster's CA and certificates (consensus.tls)
MOSQUITTO_PASSWD = "mosquitto.passwd"
MOSQUITTO_ACL = "mosquitto.acl"
AMQTT_PASSWD = "amqtt.passwd"
AMQTT_ACL = "amqtt-acl.json"
PASSWORD_BYTES = 24

Access = Literal["read", "write"]


class AuthError(RuntimeError):
    """Credentials that cannot be made, read or trusted."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What one MQTT connection presents to the broker.

    ``tls``: the client certificate (CA, certificate, key paths) for an ``mqtts://`` broker.
    With it the certificate is the credential (the broker takes its CN as the user name)
    and the transport sends no password.
    """

    username: str
    password: str = field(repr=False)
    tls: TlsFiles | None = None

    @classmethod
    def load(cls, path: Path | str, tls_dir: Path | str | None = None) -> Identity:
        """Read a ``{"username", "password"}`` file that only its owner may read.

        The file may also name a ``"tls_dir"`` (relative to the file's folder) holding the
        user's certificate; ``tls_dir`` given here takes precedence. Either way the
        certificate must be the user's own (:func:`consensus.tls.load`).
        """
        path = Path(path)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise AuthError(f"cannot read credentials file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthError(f"credentials file {path} is readable by others (mode "
                            f"{stat.S_IMODE(mode):o}); chmod 600 it")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise AuthError(f"credentials file {path} is not valid JSON: {exc}") from None
        if (not isinstance(data, dict) or not isinstance(data.get("username"), str)
                or not isinstance(data.get("password"), str) or not data["username"]):
            raise AuthError(f"credentials file {path} must hold {{\"username\": ..., "
                            f"\"password\": ...}}")
        named = data.get("tls_dir")
        if tls_dir is None and isinstance(named, str):
            tls_dir = path.parent / named
        return cls(data["username"], data["password"],
                   None if tls_dir is None else certificate(tls_dir, data["username"]))

    @classmethod
    def from_certificate(cls, tls_dir: Path | str, user: str) -> Identity:
        """``user`` authenticated by its certificate alone (no password: on a TLS broker the
        certificate's CN is the user name)."""
        return cls(user, "", certificate(tls_dir, user))


def certificate(tls_dir: Path | str, user: str) -> TlsFiles:
    """``user``'s TLS files in ``tls_dir``, checked (signed by its CA, valid now, CN = user);
    :class:`AuthError` saying what is wrong otherwise."""
    from consensus.tls import TlsError, load

    try:
        return load(tls_dir, user)
    except TlsError as exc:
        raise AuthError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class AclRule:
    """One permission: ``user`` None means every authenticated user (a mosquitto
    ``pattern``); ``topic`` may hold ``%c`` (the MQTT client id) and ``%u``."""

    user: str | None
    access: Access
    topic: str


def acl_rules(cluster: str, nodes: Iterable[str]) -> list[AclRule]:
    """The cluster's ACL; see the module docstring for why each line exists."""
    c = f"{topics.PREFIX}/{cluster}"
    rules: list[AclRule] = []
    for node in sorted(nodes):
        rules += [AclRule(node, "write", topics.peer(cluster, "+", node)),
                  AclRule(node, "read", topics.peer(cluster, node, "+")),
                  AclRule(node, "read", topics.request(cluster, node, "+")),
                  AclRule(node, "read", topics.control(cluster, node)),
                  AclRule(node, "read", topics.config(cluster, node, "+")),
                  AclRule(node, "write", topics.status(cluster, node)),
                  AclRule(node, "write", topics.client(cluster, "+"))]
    rules += [AclRule(CONTROL_USER, "write", topics.control(cluster, "+")),
              AclRule(CONTROL_USER, "write", topics.config(cluster, "+", "+")),
              AclRule(CONTROL_USER, "read", f"{c}/#"),
              AclRule(CLIENT_USER, "read", topics.status(cluster, "+")),
              AclRule(None, "write", topics.request(cluster, "+", "%c")),
              AclRule(None, "read", topics.client(cluster, "%c"))]
    return rules


def mosquitto_acl(rules: Iterable[AclRule]) -> str:
    """``rules`` as a mosquitto ``acl_file``: patterns first, then one block per user."""
    rules = list(rules)
    lines = ["# generated by consensus-lab; see consensus/auth.py"]
    lines += [f"pattern {r.access} {r.topic}" for r in rules if r.user is None]
    for user in dict.fromkeys(r.user for r in rules if r.user is not None):
        lines += ["", f"user {user}"]
        lines += [f"topic {r.access} {r.topic}" for r in rules if r.user == user]
    return "\n".join(lines) + "\n"


def amqtt_acl(rules: Iterable[AclRule]) -> dict[str, dict[str, list[str]]]:
    """``rules`` as ClusterAclPlugin's ``{"publish": {user: [...]}, "subscribe": ...}``;
    ``*`` stands for every user."""
    out: dict[str, dict[str, list[str]]] = {"publish": {}, "subscribe": {}}
    for r in rules:
        side = out["publish" if r.access == "write" else "subscribe"]
        side.setdefault(r.user or "*", []).append(r.topic)
    return out


# -- files ----------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 before anything is written to it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter (created if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def _mosquitto_passwd_file(path: Path, passwords: dict[str, str]) -> None:
    """Hash ``passwords`` into a mosquitto password file with ``mosquitto_passwd -U``.

    The plain file is written owner-only and hashed in place, so no password appears on
    a command line (where ``ps`` would show it).
    """
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        raise AuthError("mosquitto_passwd is not installed (it comes with mosquitto)")
    _write_private(path, "".join(f"{u}:{p}\n" for u, p in passwords.items()))
    done = subprocess.run([binary, "-U", str(path)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise AuthError(f"mosquitto_passwd -U failed: {done.stderr.strip() or done.stdout}")


def _amqtt_passwd_file(path: Path, passwords: dict[str, str]) -> None:
    """argon2 hashes as amqtt's FileAuthPlugin reads them (pwdlib comes with amqtt)."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(),))
    _write_private(path, "".join(f"{u}:{hasher.hash(p)}\n" for u, p in passwords.items()))


@dataclass(frozen=True, slots=True)
class Realm:
    """One cluster incarnation's users and the files the brokers and clients read."""

    cluster: str
    nodes: tuple[str, ...]
    directory: Path  # the 0700 secrets folder

    @property
    def users(self) -> tuple[str, ...]:
        return (*self.nodes, CLIENT_USER, CONTROL_USER)

    def identity_path(self, user: str) -> Path:
        if user not in self.users:
            raise AuthError(f"{user!r} is not a user of cluster {self.cluster!r} "
                            f"({', '.join(self.users)})")
        return self.directory / f"{user}.json"

    def identity(self, user: str) -> Identity:
        return Identity.load(self.identity_path(user))

    @property
    def mosquitto_passwd(self) -> Path:
        return self.directory / MOSQUITTO_PASSWD

    @property
    def mosquitto_acl(self) -> Path:
        return self.directory / MOSQUITTO_ACL

    @property
    def amqtt_passwd(self) -> Path:
        return self.directory / AMQTT_PASSWD

    @property
    def amqtt_acl(self) -> Path:
        return self.directory / AMQTT_ACL

    @property
    def tls_dir(self) -> Path | None:
        """The folder of the cluster's TLS material, when the realm has one."""
        folder = self.directory / TLS_DIR
        return folder if folder.is_dir() else None

    @classmethod
    def create(cls, cluster: str, nodes: Iterable[str], folder: Path,
               brokers: Iterable[str] = ("mosquitto", "amqtt"),
               tls_addresses: Iterable[str] | None = None) -> Realm:
        """New users with new passwords in ``folder/secrets`` (replacing any older ones),
        and the password and ACL files for each broker kind in ``brokers``.

        With ``tls_addresses`` (the addresses clients dial, loopback always included), also
        the TLS material in ``secrets/tls``: the CA is kept from a previous realm while
        valid, certificates are reissued only when no longer valid, and each user's
        credentials file names its certificate's folder. Without, no TLS material is kept.
        """
        topics.check_name("cluster", cluster)
        nodes = tuple(sorted(nodes))
        for node in nodes:
            topics.check_name("node", node)
            if node in RESERVED_USERS:
                raise AuthError(f"node id {node!r} is reserved for a user of its own")
        directory = folder / SECRETS_DIR
        for old in directory.glob("*") if directory.is_dir() else ():
            if old.name == TLS_DIR and tls_addresses is not None:
                continue  # the CA outlives an incarnation; passwords never do
            if old.is_dir():
                shutil.rmtree(old)  # the previous incarnation's credentials die here
            else:
                old.unlink()
        realm = cls(cluster, nodes, private_dir(directory))
        extra: dict[str, str] = {}
        if tls_addresses is not None:
            from consensus.tls import TlsError, ensure_cluster

            try:
                ensure_cluster(directory / TLS_DIR, realm.users, tls_addresses, name=cluster)
            except TlsError as exc:
                raise AuthError(str(exc)) from None
            extra = {"tls_dir": TLS_DIR}
        passwords = {u: secrets.token_urlsafe(PASSWORD_BYTES) for u in realm.users}
        for user, password in passwords.items():
            _write_private(realm.identity_path(user),
                           json.dumps({"username": user, "password": password, **extra}))
        rules = acl_rules(cluster, nodes)
        kinds = set(brokers)
        if "mosquitto" in kinds:
            _mosquitto_passwd_file(realm.mosquitto_passwd, passwords)
            _write_private(realm.mosquitto_acl, mosquitto_acl(rules))
        if "amqtt" in kinds:
            _amqtt_passwd_file(realm.amqtt_passwd, passwords)
            _write_private(realm.amqtt_acl, json.dumps(amqtt_acl(rules), indent=1))
        return realm

    def add_node(self, node: str) -> Realm:
        """This realm with a new node user (a fresh password; a certificate when the realm
        has TLS material), its broker files rewritten. An existing node keeps its password."""
        topics.check_name("node", node)
        if node in RESERVED_USERS:
            raise AuthError(f"node id {node!r} is reserved for a user of its own")
        realm = Realm(self.cluster, tuple(sorted({*self.nodes, node})), self.directory)
        if node not in self.nodes:
            extra: dict[str, str] = {}
            if self.tls_dir is not None:
                from consensus.tls import TlsError, ensure_client

                try:
                    ensure_client(self.tls_dir, node)
                except TlsError as exc:
                    raise AuthError(str(exc)) from None
                extra = {"tls_dir": TLS_DIR}
            _write_private(realm.identity_path(node), json.dumps(
                {"username": node, "password": secrets.token_urlsafe(PASSWORD_BYTES), **extra}))
        realm.write_broker_files()
        return realm

    def remove_node(self, node: str) -> Realm:
        """This realm without ``node``'s user: its credentials file, password, ACL lines and
        certificate are gone once the broker reloads the rewritten files."""
        if node not in self.nodes:
            raise AuthError(f"{node!r} is not a node user of cluster {self.cluster!r}")
        realm = Realm(self.cluster, tuple(n for n in self.nodes if n != node), self.directory)
        self.identity_path(node).unlink(missing_ok=True)
        if self.tls_dir is not None:
            for suffix in (".crt", ".key"):
                (self.tls_dir / f"{node}{suffix}").unlink(missing_ok=True)
        realm.write_broker_files()
        return realm

    def write_broker_files(self) -> None:
        """Rewrite the password and ACL files of each broker kind the realm was made for,
        from the users' credentials files (the passwords stay the same)."""
        passwords = {u: self.identity(u).password for u in self.users}
        rules = acl_rules(self.cluster, self.nodes)
        if self.mosquitto_acl.exists():
            _mosquitto_passwd_file(self.mosquitto_passwd, passwords)
            _write_private(self.mosquitto_acl, mosquitto_acl(rules))
        if self.amqtt_acl.exists():
            _amqtt_passwd_file(self.amqtt_passwd, passwords)
            _write_private(self.amqtt_acl, json.dumps(amqtt_acl(rules), indent=1))

    @classmethod
    def open(cls, cluster: str, folder: Path) -> Realm | None:
        """The realm ``create`` left in ``folder/secrets``, or None when there is none."""
        directory = folder / SECRETS_DIR
        if not directory.is_dir():
            return None
        users = sorted(p.stem for p in directory.glob("*.json") if p.name != AMQTT_ACL)
        nodes = tuple(u for u in users if u not in RESERVED_USERS)
        return cls(cluster, nodes, directory)


def new_incarnation() -> str:
    """A random id for one `cluster up`: nodes refuse peer messages of another one."""
    return secrets.token_hex(6)


__all__ = ["CLIENT_USER", "CONTROL_USER", "AclRule", "AuthError", "Identity", "Realm",
           "acl_rules", "amqtt_acl", "mosquitto_acl", "new_incarnation"]
