"""Membership changes on real node processes over an authenticated broker (issue 13).

`cluster add/remove/transfer` against mosquitto: the new member gets a broker user (the broker
reloads its files on SIGHUP), starts empty and catches up, from a snapshot when the cluster
compacts; a removed leader hands over and its process exits, its user revoked; `cluster
status` shows the configuration. A ConfigChange is the control user's alone. The embedded
broker's reload is tested too. Waits are bounded ("until it happens, or give up after N
seconds"); nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consensus import cluster as cl
from consensus.auth import CLIENT_USER, CONTROL_USER, Realm
from consensus.broker import find_mosquitto, reload_broker, start_broker
from consensus.client import ClusterClient
from consensus.cluster_change import MembershipChangeError, await_login, change_cluster
from consensus.codec import encode_message
from consensus.messages import ClientRequest, ConfigChange
from consensus.transport import topics
from consensus.transport.mqtt import TransportError, make_client

HAVE_MOSQUITTO = find_mosquitto() is not None
needs_mosquitto = pytest.mark.skipif(not HAVE_MOSQUITTO, reason="mosquitto is not installed")
BROKERS = [pytest.param("mosquitto", marks=needs_mosquitto), "amqtt"]
SETTLE_S = 0.6  # how long a refused message is given to (not) arrive
# Multi-Paxos's window: small, as in the simulator's membership tests, so that a change
# takes effect within a few writes (Raft ignores it).
ALPHA = 8


@pytest.fixture
def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[Callable[..., cl.ClusterState]]:
    """Start authenticated clusters on their own mosquitto, recorded where the CLI looks
    (``.consensus-lab/`` in the working directory, here a fresh one)."""
    monkeypatch.chdir(tmp_path)
    started: list[str] = []

    def start(algorithm: str, name: str, snapshot_entries: int = 0) -> cl.ClusterState:
        # Election timeouts well above the heartbeat: no election from a slow shared CPU.
        state = cl.up(algorithm, 3, name, None, "gmqtt", False, 50, (500, 900),
                      prefer="mosquitto", snapshot_entries=snapshot_entries, alpha=ALPHA)
        started.append(name)
        assert asyncio.run(cl.wait_for_leader(state, 20)) is not None, _logs(state)
        return state

    yield start
    for name in started:
        cl.down(name)


def _logs(state: cl.ClusterState) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted(Path(state.directory).glob("*.log")))


def _until(predicate: Callable[[], object], within_s: float) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _statuses(state: cl.ClusterState) -> dict[str, cl.NodeProcess]:
    return asyncio.run(cl.fetch_status(state, 1.5))


def _leader(state: cl.ClusterState) -> str:
    leader = asyncio.run(cl.wait_for_leader(state, 20))
    assert leader is not None, _logs(state)
    return leader


def _write(state: cl.ClusterState, commands: list[str]) -> list[str | None]:
    async def go() -> list[str | None]:
        async with ClusterClient(state.broker, state.name, deadline_s=20,
                                 identity=state.identity(CLIENT_USER)) as c:
            out = []
            for command in commands:
                result = await c.request(command)
                assert result.reply.status.value == "ok", result.reply
                out.append(result.reply.result)
            return out
    return asyncio.run(go())


@contextlib.contextmanager
def _writing(state: cl.ClusterState) -> Iterator[None]:
    """A client writing one key after another while the block runs (its own thread)."""
    stop = threading.Event()

    def writer() -> None:
        async def go() -> None:
            async with ClusterClient(state.broker, state.name, deadline_s=20,
                                     identity=state.identity(CLIENT_USER)) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    await c.request(f"SET load = {i}")
                    await asyncio.sleep(0.02)
        asyncio.run(go())

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _cli(*args: str) -> tuple[int, str]:
    """Run `consensus-lab cluster ...` (in the working directory the fixture chose)."""
    from consensus.cli import app

    result = CliRunner().invoke(app, ["cluster", *args])
    return result.exit_code, result.output


# -- the broker takes new users and revokes old ones while it runs ----------------------


@pytest.mark.parametrize("kind", BROKERS)
def test_the_running_broker_takes_an_added_user_and_drops_a_revoked_one(kind, tmp_path):
    realm = Realm.create("grow", ["n1", "n2", "n3"], tmp_path, brokers=(kind,))
    handle = start_broker(prefer=kind, realm=realm)
    workdir = handle.log_path.parent if handle.log_path else None
    state = cl.ClusterState("grow", "raft", {}, handle.url, handle.pid, handle.kind, "gmqtt",
                            False, 50, (150, 300), str(tmp_path))
    try:
        realm = realm.add_node("n4")
        reload_broker(kind, handle.pid, realm, workdir)
        asyncio.run(await_login(state, "n4"))  # the new user is accepted
        # ... and may speak as itself: the ACL was reloaded too.
        got: list[bytes] = []

        async def n4_to_n1() -> None:
            spy = make_client("gmqtt", handle.url, "spy", lambda t, p: got.append(p),
                              realm.identity(CONTROL_USER))
            await spy.connect()
            await spy.subscribe(topics.peer(state.name, "n1", "n4"))
            n4 = make_client("gmqtt", handle.url, "n4-conn", lambda t, p: None,
                             realm.identity("n4"))
            await n4.connect()
            n4.publish(topics.peer(state.name, "n1", "n4"), b"hello")
            await asyncio.sleep(SETTLE_S)
            await n4.close()
            await spy.close()

        asyncio.run(n4_to_n1())
        assert got == [b"hello"]
        old = realm.identity("n2")
        realm = realm.remove_node("n2")
        reload_broker(kind, handle.pid, realm, workdir)
        assert not realm.identity_path("n4").parent.joinpath("n2.json").exists()

        async def connect_as_n2() -> None:
            client = make_client("gmqtt", handle.url, "n2-again", lambda t, p: None, old)
            await client.connect()
            await client.close()

        assert _until(lambda: _refused(connect_as_n2), 5), "n2's password still works"
    finally:
        handle.stop()


def _refused(connect: Callable[[], object]) -> bool:
    try:
        asyncio.run(connect())  # type: ignore[arg-type]
    except TransportError:
        return True
    return False


# -- a ConfigChange is the control user's alone -------------------------------------------


@needs_mosquitto
def test_a_client_cannot_change_the_membership(up):
    state = up("raft", "guarded")
    leader = _leader(state)
    before = {nid: p.status.config for nid, p in _statuses(state).items() if p.status}
    change = ConfigChange(src="mallory", dst=leader, seq=1, change="remove n1")
    conn = f"{state.name}-mallory"

    async def attempt() -> None:
        client = make_client("gmqtt", state.broker, conn, lambda t, p: None,
                             state.identity(CLIENT_USER))
        await client.connect()
        payload = encode_message(change, state.name)
        # The membership topic: the broker's ACL drops a client's publish there ...
        client.publish(topics.config(state.name, leader, conn), payload)
        # ... and on the client request topic, which it may use, the node refuses it.
        client.publish(topics.request(state.name, leader, conn), payload)
        await asyncio.sleep(SETTLE_S)
        await client.close()

    asyncio.run(attempt())
    # The control user may use the membership topic, but for a ConfigChange only.
    request = ClientRequest(src="op", dst=leader, seq=1, command="SET x = 1")

    async def control_sends_a_command() -> None:
        client = make_client("gmqtt", state.broker, f"{state.name}-op", lambda t, p: None,
                             state.identity(CONTROL_USER))
        await client.connect()
        client.publish(topics.config(state.name, leader, f"{state.name}-op"),
                       encode_message(request, state.name))
        await asyncio.sleep(SETTLE_S)
        await client.close()

    asyncio.run(control_sends_a_command())
    nodes = _statuses(state)
    assert nodes[leader].status is not None
    assert nodes[leader].status.rejected.get("wrong-topic") == 2, nodes[leader].status.rejected
    after = {nid: p.status.config for nid, p in nodes.items() if p.status}
    assert after == before and all(p.alive for p in nodes.values())
    assert sorted(state.nodes) == ["n1", "n2", "n3"]


def test_a_change_naming_no_member_is_refused_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = cl.ClusterState("c", "raft", {"n1": 0, "n2": 0, "n3": 0}, "mqtt://127.0.0.1:1",
                            None, "external", "gmqtt", False, 50, (150, 300),
                            str(tmp_path / ".consensus-lab" / "c"), insecure=True)
    Path(state.directory).mkdir(parents=True)
    state.save()
    for text, said in (("remove n9", "n9 is not a member"), ("add n2", "already a member"),
                       ("transfer n7", "n7 is not a member"), ("grow n4", "unknown change"),
                       ("add control", "invalid node name")):
        with pytest.raises((MembershipChangeError, ValueError), match=said):
            change_cluster("c", text)
    assert cl.ClusterState.load("c").nodes == {"n1": 0, "n2": 0, "n3": 0}


# -- add, remove, transfer on running clusters --------------------------------------------


@needs_mosquitto
@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_cluster_add_a_member_that_catches_up(up, algorithm):
    """`cluster add n4` on a cluster that compacts its log: n4 catches up (from a snapshot:
    the log it needs is gone) and becomes a voter; status shows the new configuration."""
    state = up(algorithm, f"add-{algorithm}", snapshot_entries=20)
    _write(state, [f"SET k{i} = {i}" for i in range(60)])
    with _writing(state):  # under load, as a change usually is
        code, out = _cli("add", "n4", "--cluster", state.name)
    assert code == 0, out + _logs(state)
    assert "n4: started joining" in out and "add n4: done" in out, out
    state = cl.ClusterState.load(state.name)
    assert state.joined == ["n4"] and "n4" in state.nodes
    assert state.config is not None and "n4" in state.config.split()[0], state.config

    def caught_up() -> bool:
        nodes = _statuses(state)
        leader = next((p.status for p in nodes.values()
                       if p.status and p.status.role == "leader"), None)
        n4 = nodes["n4"].status
        return (leader is not None and n4 is not None
                and n4.applied_index >= leader.commit_index - 1 and n4.config == leader.config)

    assert _until(caught_up, 20), _logs(state)
    nodes = _statuses(state)
    assert nodes["n4"].status.snapshot_index > 0, "n4 caught up from a snapshot"
    assert _write(state, ["GET k59"]) == ["59"]
    code, out = _cli("status", "--cluster", state.name, "--json")
    shown = json.loads(out)
    assert "n4" in shown and all("n4" in s["config"] for s in shown.values()), shown
    code, out = _cli("status", "--cluster", state.name)
    assert "configuration: n1,n2,n3,n4" in out.replace("\n", " ").replace("  ", " ") or \
        "n1,n2,n3,n4" in out, out


@needs_mosquitto
def test_cluster_remove_the_leader_hands_over_and_its_process_exits(up):
    state = up("raft", "shrink")
    _write(state, ["SET x = 1"])
    leader = _leader(state)
    pid = state.nodes[leader]
    lines: list[str] = []
    outcome = change_cluster(state.name, f"remove {leader}", progress=lines.append)
    assert leader not in (outcome.config or ""), outcome
    assert not cl.is_ours(pid), f"{leader} still runs\n{_logs(state)}"
    assert any("stopped on its own" in line for line in lines), lines
    assert "removed from the configuration" in (Path(state.directory) /
                                                f"{leader}.log").read_text()
    state = cl.ClusterState.load(state.name)
    assert leader not in state.nodes
    assert not (state.secrets / f"{leader}.json").exists(), "its credentials are revoked"
    new = _leader(state)
    assert new != leader and new in state.nodes
    assert _write(state, ["SET x = 2", "GET x"]) == ["OK", "2"]


@needs_mosquitto
def test_cluster_transfer_hands_leadership_over(up):
    state = up("raft", "handover")
    leader = _leader(state)
    target = next(n for n in sorted(state.nodes) if n != leader)
    code, out = _cli("transfer", target, "--cluster", state.name, "--json")
    assert code == 0, out + _logs(state)
    assert json.loads(out)["change"] == f"transfer {target}"
    assert _until(lambda: asyncio.run(cl.wait_for_leader(state, 2)) == target, 10), \
        _logs(state)
    assert sorted(state.nodes) == ["n1", "n2", "n3"]


# -- a membership fault in a `--transport mqtt` experiment --------------------------------


@needs_mosquitto
def test_an_mqtt_experiment_that_adds_a_node_passes_its_checks(tmp_path):
    from consensus.cli import app

    spec = tmp_path / "grow.yaml"
    spec.write_text(
        "name: grow\ntransport: mqtt\nseeds: [1]\ncluster: {nodes: 3}\n"
        "workload: {clients: 4, rate: 60, duration_s: 3, keys: 5, request_timeout_ms: 800}\n"
        "faults:\n  - {at: 1, add: n4}\nsettle_s: 2\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--json",
                                      "--broker", "mosquitto"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"], summary.get("failures")
    for algo in ("raft", "paxos"):
        events = [json.loads(line) for line in
                  (out / algo / "seed-1" / "events.jsonl").read_text().splitlines()]
        change = next(e for e in events if e["type"] == "membership")
        assert change["ok"] and "n4" in change["result"], (algo, change)
        assert change["caught_up_ms"] is not None and change["catch_up_bytes"] > 0, change


# -- who a node hears follows its configuration (no broker) -------------------------------


def _config_entry(index: int, text: str):
    from consensus.membership import Membership
    from consensus.messages import Command
    from consensus.node import Applied

    return Applied(index, Command("op", index, Membership.from_text(text).command_text()), None)


def test_the_senders_a_node_hears_follow_its_configuration():
    from consensus.membership import Membership
    from consensus.runtime import Senders

    senders = Senders(["n1", "n2", "n3"], grace_ms=600)
    senders.update(0, None)  # joining: it knows no configuration, and drops nobody
    assert sorted(senders.accepted) == ["n1", "n2", "n3"]
    senders.update(10, Membership.from_text("voters=n1,n2,n3 learners=n4"))
    assert "n4" in senders  # a learner is heard at once: it must acknowledge its catch-up
    removing = Membership.from_text("voters=n2,n3,n4")
    senders.update(20, removing)  # n1 is out of the latest configuration, not yet committed
    senders.update(2000, removing, [_config_entry(5, "voters=n1,n2,n3,n4")])
    assert "n1" in senders, "the committed configuration still lists n1"
    senders.update(2010, removing, [_config_entry(6, "voters=n2,n3,n4")])
    assert "n1" in senders, "a removed leader's last messages still arrive (grace)"
    senders.update(2609, removing)
    assert "n1" in senders
    senders.update(2610, removing)
    assert "n1" not in senders and sorted(senders.accepted) == ["n2", "n3", "n4"]
    senders.update(3000, Membership.from_text("voters=n1,n2,n3,n4"))
    assert "n1" in senders, "a member added again is heard again"


@needs_mosquitto
def test_cluster_replace_swaps_a_follower_for_a_new_member(up):
    state = up("raft", "swap")
    leader = _leader(state)
    old = next(n for n in sorted(state.nodes) if n != leader)
    pid = state.nodes[old]
    with _writing(state):
        code, out = _cli("replace", old, "n7", "--cluster", state.name, "--json")
    assert code == 0, out + _logs(state)
    config = json.loads(out.splitlines()[-1])["config"]
    assert config.startswith("voters=") and "n7" in config and old not in config, config
    state = cl.ClusterState.load(state.name)
    assert old not in state.nodes and "n7" in state.nodes and state.joined == ["n7"]
    assert not cl.is_ours(pid) and not (state.secrets / f"{old}.json").exists()
    assert _write(state, ["SET y = 7", "GET y"]) == ["OK", "7"]


def test_a_config_change_on_its_topic_is_answered_on_the_operators_connection(tmp_path):
    """The runtime routes a ConfigChange from the membership topic to the node and its
    answer to the operator's connection (a follower redirects); the same change on a peer
    topic is refused (its sender is no member; from a member, it is on the wrong topic)."""
    from consensus.codec import decode_message
    from consensus.messages import ClientReply, ReplyStatus
    from consensus.runtime import NodeOptions, NodeRuntime
    from tests.test_runtime_input import FakeMqtt

    async def go() -> None:
        opts = NodeOptions("raft", "n2", ("n1", "n2", "n3"), "demo", "mqtt://127.0.0.1:1",
                           tmp_path, fsync=False)
        rt = NodeRuntime(opts, client_factory=FakeMqtt)
        rt.drain()
        change = encode_message(ConfigChange(src="op-1", dst="n2", seq=1, change="add n4"),
                                "demo")
        rt.on_message(topics.peer("demo", "n2", "n1"), change)  # the operator is no member
        from_member = ConfigChange(src="n1", dst="n2", seq=1, change="add n4")
        rt.on_message(topics.peer("demo", "n2", "n1"), encode_message(from_member, "demo"))
        assert dict(rt.rejected) == {"foreign-sender": 1, "wrong-topic": 1}
        assert not [t for t, _ in rt.client.published if "/client/" in t], "nothing answered"
        rt.on_message(topics.config("demo", "n2", "demo-op-conn"), change)
        replies = [(t, decode_message(p)) for t, p in rt.client.published
                   if t == topics.client("demo", "demo-op-conn")]
        assert len(replies) == 1
        reply = replies[0][1]
        assert isinstance(reply, ClientReply) and reply.dst == "op-1" and reply.seq == 1
        assert reply.status == ReplyStatus.REDIRECT  # n2 follows; nobody leads yet
        rt.storage.close()

    asyncio.run(go())
