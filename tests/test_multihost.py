"""A cluster spread over "hosts": each node process in its own network namespace, over TLS.

The broker (mosquitto, started by ``consensus.broker.start_broker`` as `consensus-lab broker
--listen 10.77.0.1 --tls` starts it) listens on the bridge address 10.77.0.1 only, TLS with
client certificates; nodes n1..n3 run in namespaces 10.77.0.11..13 and a client in
10.77.0.14, each reaching the broker over the bridge as from another machine
(tests/netns.py). As docs/multihost.md tells real hosts to, each host gets only its own
files (ca.crt, its certificate and key) and names them with ``--tls-dir``. The cluster elects
a leader, commits a write from the client's host, and after the leader's process is killed
elects another leader that still serves the write; a client without a certificate, or
without TLS, is refused from another namespace. Root only (skipped with the reason
elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from consensus import cluster as cl
from consensus.auth import CLIENT_USER, Realm
from consensus.broker import BrokerHandle, broker_address, find_mosquitto, mosquitto_config
from consensus.broker import start_broker as start_real_broker
from consensus.broker_tls import with_listener
from tests import netns
from tests.mosquitto_proc import accepts, free_port, mosquitto

REPO = Path(__file__).resolve().parent.parent
NODES = ("n1", "n2", "n3")

pytestmark = [
    pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable())),
    pytest.mark.skipif(find_mosquitto() is None,
                       reason="mosquitto is not installed (apt-get install mosquitto)"),
]


@dataclass
class Bus:
    """How every process of the test reaches the broker."""

    url: str
    broker: BrokerHandle
    node_options: dict[str, list[str]] = field(default_factory=dict)  # per node id
    client_options: list[str] = field(default_factory=list)
    host_files: dict[str, Path] = field(default_factory=dict)  # user -> its host's folder


def bus_for(cluster: str, address: str, directory: Path) -> Bus:
    """The authenticated bus on ``address``: the cluster's realm with TLS material in
    ``directory/secrets`` (the broker's certificate names ``address``), mosquitto's TLS
    listener there, and for each user a "host" folder holding only its own files, as
    docs/multihost.md says to copy them."""
    realm = Realm.create(cluster, NODES, directory, brokers=("mosquitto",),
                         tls_addresses=[address])
    assert realm.tls_dir is not None
    broker = start_real_broker(prefer="mosquitto", realm=realm, listen=address, tls=True)
    bus = Bus(url=broker.url, broker=broker)
    for user in (*NODES, CLIENT_USER):
        host = directory / "hosts" / user
        host.mkdir(parents=True, mode=0o700)
        for name in ("ca.crt", f"{user}.crt", f"{user}.key"):
            shutil.copy2(realm.tls_dir / name, host / name)
        bus.host_files[user] = host
    bus.node_options = {n: ["--tls-dir", str(bus.host_files[n])] for n in NODES}
    bus.client_options = ["--tls-dir", str(bus.host_files[CLIENT_USER])]
    return bus


@pytest.fixture
def hosts() -> Iterator[netns.Hosts]:
    with netns.Hosts(len(NODES) + 1) as made:
        yield made


def _env() -> dict[str, str]:
    # The node processes import this checkout's consensus package, whatever their cwd.
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _node_argv(state: cl.ClusterState, bus: Bus, node_id: str) -> list[str]:
    return [*cl.node_command(state, node_id, status_interval_ms=100),
            *bus.node_options.get(node_id, [])]


def _client(hosts: netns.Hosts, host: netns.Host, state: cl.ClusterState, bus: Bus,
            command: str) -> dict:
    """Run ``consensus client`` in ``host``'s namespace; its JSON answer."""
    argv = [sys.executable, "-m", "consensus", "client", "--cluster", state.name,
            "--broker", bus.url, "--timeout", "15", "--json", *bus.client_options, command]
    done = hosts.run(host, argv, timeout=30, env=_env(), cwd=state.directory)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}\n{_logs(state)}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _logs(state: cl.ClusterState) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted(Path(state.directory).glob("*.log")))


def _net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def _connections(hosts: netns.Hosts, host: netns.Host, port: int) -> str:
    return hosts.run(host, ["ss", "-Htn", "state", "established", "dst",
                            f"{netns.BRIDGE_ADDRESS}:{port}"]).stdout


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_a_cluster_spread_over_namespaces_elects_commits_and_survives_a_leader_kill(
        hosts: netns.Hosts, tmp_path: Path, algorithm: str) -> None:
    directory = tmp_path / "cluster"
    directory.mkdir()
    name = f"mh-{algorithm}"
    bus = bus_for(name, netns.BRIDGE_ADDRESS, directory)
    port = broker_address(bus.url).port
    state = cl.ClusterState(name, algorithm, dict.fromkeys(NODES, 0), bus.url, None,
                            "external", "gmqtt", False, 50, (150, 300), str(directory),
                            tls=True)
    node_hosts = dict(zip(NODES, hosts.hosts, strict=False))
    client_host = hosts[len(NODES)]
    procs: dict[str, subprocess.Popen[bytes]] = {}

    with bus.broker:
        assert bus.url == f"mqtts://{netns.BRIDGE_ADDRESS}:{port}"
        assert not accepts("127.0.0.1", port), "the broker must listen on the bridge only"
        try:
            for nid, host in node_hosts.items():
                with open(directory / f"{nid}.log", "ab") as out:
                    procs[nid] = subprocess.Popen(
                        hosts.exec_argv(host, _node_argv(state, bus, nid)), stdout=out,
                        stderr=out, stdin=subprocess.DEVNULL, env=_env(), cwd=directory,
                        start_new_session=True)
                state.nodes[nid] = procs[nid].pid
            state.save()

            leader = asyncio.run(cl.wait_for_leader(state, 15))
            assert leader is not None, _logs(state)
            # A majority elects; wait for the third node too (it may start last).
            everyone = _until(lambda: True if all(
                p.status for p in asyncio.run(cl.fetch_status(state, 0.5)).values()) else None,
                15)
            assert everyone, _logs(state)
            # Each node is in its own namespace and reaches the broker from its own address.
            mine = _net_namespace(os.getpid())
            spaces = {_net_namespace(p.pid) for p in procs.values()}
            assert len(spaces) == len(NODES) and mine not in spaces
            for nid, host in node_hosts.items():
                assert f"{host.address}:" in _connections(hosts, host, port), nid

            wrote = _client(hosts, client_host, state, bus, "SET x = 100")
            assert (wrote["status"], wrote["result"]) == ("ok", "OK"), wrote
            # From the client's host, without a certificate or without TLS: refused.
            assert _probe(hosts, client_host, port, bus.host_files[CLIENT_USER],
                          CLIENT_USER) == "connected"
            assert _probe(hosts, client_host, port, bus.host_files[CLIENT_USER],
                          "-").startswith("refused")
            anonymous = hosts.run(client_host, [
                sys.executable, "-m", "consensus", "client", "--cluster", name, "--broker",
                f"mqtt://{netns.BRIDGE_ADDRESS}:{port}", "--timeout", "5", "GET x"],
                env=_env(), cwd=state.directory)
            assert anonymous.returncode != 0 and "100" not in anonymous.stdout

            procs[leader].send_signal(signal.SIGKILL)
            procs[leader].wait(5)
            survivors = {nid: p for nid, p in procs.items() if nid != leader}

            def new_leader() -> str | None:
                st = asyncio.run(cl.fetch_status(state, 0.5))
                leaders = [n for n, p in st.items() if n != leader and p.status
                           and p.status.role == "leader" and p.alive]
                return leaders[0] if leaders else None

            successor = _until(new_leader, 15)
            assert successor is not None and successor != leader, _logs(state)
            read = _client(hosts, client_host, state, bus, "GET x")
            assert (read["status"], read["result"]) == ("ok", "100"), read
            assert all(p.poll() is None for p in survivors.values()), _logs(state)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait(5)


def _probe(hosts: netns.Hosts, host: netns.Host, port: int, folder: Path, user: str) -> str:
    """Run :data:`_TLS_PROBE` in ``host``: "connected" or "refused ..." ("-": no cert)."""
    done = hosts.run(host, [sys.executable, "-c", _TLS_PROBE, netns.BRIDGE_ADDRESS,
                            str(port), str(folder), user], env=_env())
    return done.stdout.strip() or done.stderr


def _until(probe, within_s: float):
    end = time.monotonic() + within_s
    while True:
        found = probe()
        if found is not None or time.monotonic() > end:
            return found
        time.sleep(0.1)


# -- the harness itself and TLS across namespaces ------------------------------------------


def _ours() -> tuple[set[str], set[str]]:
    spaces = {line.split()[0] for line in netns.ip("netns", "list").stdout.splitlines()
              if line.strip()}
    links = {line.split(":", 2)[1].strip().split("@")[0]
             for line in netns.ip("-o", "link", "show").stdout.splitlines()}
    tag = str(os.getpid())
    return ({s for s in spaces if tag in s}, {n for n in links if tag in n})


def test_hosts_are_removed_even_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), netns.Hosts(2) as made:
        assert _ours()[0] == {h.name for h in made.hosts}
        raise RuntimeError("boom")
    assert _ours() == (set(), set())


def test_what_a_killed_run_left_is_removed_by_the_next() -> None:
    script = ("import os, sys; sys.path.insert(0, sys.argv[1]); from tests import netns; "
              "h = netns.Hosts(1).__enter__(); print(h.bridge, flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True,
                          text=True, timeout=30)
    bridge = done.stdout.strip()
    assert done.returncode == 0 and bridge, done.stderr
    assert netns.ip("link", "show", bridge, check=False).returncode == 0  # left behind
    netns.remove_stale()
    assert netns.ip("link", "show", bridge, check=False).returncode != 0
    assert not [s for s in netns.ip("netns", "list").stdout.split() if
                s.startswith(bridge.replace("clbr", "clns"))]


_TLS_PROBE = """
import asyncio, sys
from pathlib import Path
from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311
from consensus.tls import TlsFiles, client_context
import ssl

async def main(host, port, folder, user):
    if user == "-":
        ctx = ssl.create_default_context(cafile=str(Path(folder) / "ca.crt"))
    else:
        f = Path(folder)
        ctx = client_context(TlsFiles(f / "ca.crt", f / f"{user}.crt", f / f"{user}.key"))
    c = Client(f"probe-{user}-x", clean_session=True)
    c.set_config({"reconnect_retries": 0})
    try:
        await asyncio.wait_for(c.connect(host, int(port), ssl=ctx, version=MQTTv311), 5)
    except Exception as exc:
        print("refused", type(exc).__name__)
        return
    print("connected", flush=True)
    try:
        await c.disconnect()
    except ssl.SSLError:
        pass  # a late packet crossing close_notify

asyncio.run(main(*sys.argv[1:]))
"""


def test_a_host_reaches_the_tls_broker_with_its_certificate_and_not_without(
        hosts: netns.Hosts, tmp_path: Path) -> None:
    from consensus import tls
    from consensus.broker_tls import mosquitto_tls_listener, stage_for_mosquitto

    for folder in [tmp_path, *tmp_path.parents]:  # mosquitto reads its files as its own user
        if folder == Path(tempfile.gettempdir()) or folder == folder.parent:
            break
        folder.chmod(folder.stat().st_mode | 0o001)  # traversable, not listable
    port = free_port(netns.BRIDGE_ADDRESS)
    server, _ = tls.ensure_cluster(tmp_path / "tls", ["n1"], [netns.BRIDGE_ADDRESS])
    staged = stage_for_mosquitto(server, tmp_path / "broker-tls")
    config = with_listener(mosquitto_config(port),
                           mosquitto_tls_listener(port, netns.BRIDGE_ADDRESS, staged))
    with mosquitto(config, netns.BRIDGE_ADDRESS, port, tmp_path):
        assert _probe(hosts, hosts[0], port, tmp_path / "tls", "n1") == "connected"
        assert _probe(hosts, hosts[0], port, tmp_path / "tls", "-").startswith("refused")
