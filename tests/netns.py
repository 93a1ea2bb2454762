"""Several "hosts" on one machine: network namespaces on a bridge, for the multi-host tests.

Each host is a network namespace with its own loopback and one veth into a bridge in the root
namespace; the bridge has 10.77.0.1/24 (where a broker listens), the hosts 10.77.0.11,
10.77.0.12, ... A process started with :meth:`Hosts.exec_argv` sees only its namespace's
interfaces, so it reaches the broker over the bridge from its own address, as from another
machine. Needs root and iproute2's ``ip netns``; :func:`unavailable` says why not, for a skip.

Everything made is deleted when the ``with`` block ends, and again at interpreter exit should
that be skipped; names carry the creating pid, so a later run removes what a killed run left
(only when that pid is gone).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

SUBNET = ipaddress.ip_network("10.77.0.0/24")
BRIDGE_ADDRESS = "10.77.0.1"
FIRST_HOST = 11  # hosts get 10.77.0.11, .12, ...
_STALE = re.compile(r"^(?:clns|clbr|clv)(\d+)")
_live: list[Hosts] = []


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has the command and its output."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise :class:`NetnsError` with its stderr when it fails and ``check``."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be made here (a skip reason), or None when they can."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (run the suite as root, as .ci/run does)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    probe = f"clns{os.getpid()}probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


@dataclass
class Host:
    """One namespace: its name (for ``ip netns exec``) and its address on the bridge."""

    name: str
    address: str
    veth: str  # the root namespace's end of its link


@dataclass
class Hosts:
    """``count`` namespaces on a bridge; use as ``with Hosts(3) as hosts: ...``."""

    count: int
    bridge: str = field(init=False)
    hosts: list[Host] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 200:
            raise ValueError(f"between 1 and 200 hosts fit in {SUBNET}, not {self.count}")
        tag = str(os.getpid())
        # Link names are at most 15 characters: "clv" + pid (<= 7 digits) + "x" + index.
        self.bridge = f"clbr{tag}"
        self._planned = [Host(f"clns{tag}-{i}", str(SUBNET[FIRST_HOST + i]), f"clv{tag}x{i}")
                         for i in range(self.count)]

    def __enter__(self) -> Hosts:
        remove_stale()
        _live.append(self)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def exec_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", host.name, *argv]

    def run(self, host: Host, argv: Sequence[str], timeout: float = 30,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host`` to completion, capturing its output as text."""
        return subprocess.run(self.exec_argv(host, argv), capture_output=True, text=True,
                              timeout=timeout, **kwargs)  # type: ignore[call-overload]

    def _create(self) -> None:
        if ip("-4", "addr", "show", "to", f"{BRIDGE_ADDRESS}/32").stdout.strip():
            raise NetnsError(f"{BRIDGE_ADDRESS} is already in use on this machine (another "
                             f"test run?); not touching it")
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_ADDRESS}/{SUBNET.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self._planned:
            inner = "eth0"
            ip("netns", "add", host.name)
            self.hosts.append(host)
            ip("link", "add", host.veth, "type", "veth", "peer", "name", f"{host.veth}p")
            ip("link", "set", f"{host.veth}p", "netns", host.name)
            ip("link", "set", host.veth, "master", self.bridge, "up")
            inside = ("-n", host.name)
            ip(*inside, "link", "set", "lo", "up")
            ip(*inside, "link", "set", f"{host.veth}p", "name", inner)
            ip(*inside, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", inner)
            ip(*inside, "link", "set", inner, "up")

    def close(self) -> None:
        """Delete every namespace and link this made (idempotent; never raises)."""
        for host in self._planned:
            # Deleting a namespace destroys the veth end in it, hence the pair; the explicit
            # link delete covers a failure between creating the pair and moving its end.
            ip("netns", "delete", host.name, check=False)
            ip("link", "delete", host.veth, check=False)
        ip("link", "delete", self.bridge, check=False)
        self.hosts.clear()
        with contextlib.suppress(ValueError):
            _live.remove(self)


def remove_stale() -> None:
    """Delete namespaces and links named by this module for a process that no longer runs."""
    def dead(name: str) -> bool:
        match = _STALE.match(name)
        return bool(match) and not os.path.exists(f"/proc/{match.group(1)}")

    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if dead(name):
            ip("netns", "delete", name, check=False)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":", 2)
        name = parts[1].strip().split("@")[0] if len(parts) > 2 else ""
        if dead(name):
            ip("link", "delete", name, check=False)


@atexit.register
def _close_all() -> None:
    for hosts in list(_live):
        hosts.close()
