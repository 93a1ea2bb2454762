"""The authenticated bus: attacks on a running cluster are refused, and change nothing.

Each cluster is a real `cluster up` (its own broker, new per-cluster credentials), against
mosquitto and the embedded amqtt broker. Every attack is followed by the same check: the
nodes' terms or ballots, log lengths and commit indexes are what they were, the fault hooks
are untouched, and a client reads the value written before. A refused publish has no
reply to wait for, so the check waits a short fixed time for anything to have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus import cluster as cl
from consensus.auth import CLIENT_USER, CONTROL_USER, Identity
from consensus.broker import find_mosquitto, parse_broker_url
from consensus.client import ClusterClient
from consensus.codec import encode, encode_message
from consensus.messages import Command
from consensus.paxos.messages import Accept, Ballot, Prepare
from consensus.raft.messages import AppendEntries, Entry
from consensus.telemetry import Control, ControlOp, FaultSettings
from consensus.transport import topics
from consensus.transport.mqtt import TransportError, make_client

HAVE_MOSQUITTO = find_mosquitto() is not None
BROKERS = [pytest.param("mosquitto", marks=pytest.mark.skipif(
    not HAVE_MOSQUITTO, reason="mosquitto is not installed (apt-get install mosquitto)")),
    "amqtt"]
SETTLE_S = 0.6  # how long a refused message is given to (not) arrive


def _up(root: Path, algorithm: str, name: str, kind: str) -> cl.ClusterState:
    # Election timeouts well above the heartbeat: no election from a slow shared CPU.
    state = cl.up(algorithm, 3, name, None, "gmqtt", False, 50, (500, 900), root=root,
                  prefer=kind)
    leader = asyncio.run(cl.wait_for_leader(state, 20))
    assert leader is not None, _logs(state)
    return state


def _logs(state: cl.ClusterState) -> str:
    return "\n".join(p.read_text()[-2000:] for p in Path(state.directory).glob("*.log"))


@pytest.fixture(scope="module", params=BROKERS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _written_cluster(algorithm: str, kind: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[cl.ClusterState]:
    """An authenticated cluster of ``algorithm`` on a ``kind`` broker, holding x = 100."""
    root = tmp_path_factory.mktemp(f"{algorithm}-{kind}")
    state = _up(root, algorithm, f"secure-{algorithm}", kind)
    assert _request(state, "SET x = 100") == "OK"
    yield state
    cl.down(state.name, root=root)


@pytest.fixture(scope="module")
def raft(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[cl.ClusterState]:
    yield from _written_cluster("raft", kind, tmp_path_factory)


@pytest.fixture(scope="module")
def paxos(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[cl.ClusterState]:
    yield from _written_cluster("paxos", kind, tmp_path_factory)


def _request(state: cl.ClusterState, command: str) -> str | None:
    async def go() -> str | None:
        async with ClusterClient(state.broker, state.name, deadline_s=15,
                                 identity=state.identity(CLIENT_USER)) as c:
            result = await c.request(command)
            assert result.reply.status.value == "ok", result.reply
            return result.reply.result
    return asyncio.run(go())


def _snapshot(state: cl.ClusterState) -> dict[str, tuple]:
    """What an attack must not change: each node's term or ballot, log, commit, faults;
    taken once the followers have heard of the last commit (the next heartbeat)."""
    end = time.monotonic() + 5
    while True:
        nodes = asyncio.run(cl.fetch_status(state, 1.5))
        out = {}
        for nid, p in nodes.items():
            st = p.status
            assert p.alive and st is not None, f"{nid} is down or silent\n{_logs(state)}"
            out[nid] = (st.term, st.ballot, st.leader, st.last_index, st.commit_index,
                        st.faults)
        if len({v[3:5] for v in out.values()}) == 1 or time.monotonic() > end:
            return out
        time.sleep(0.1)


def _rejected(state: cl.ClusterState) -> dict[str, dict[str, int]]:
    nodes = asyncio.run(cl.fetch_status(state, 1.5))
    return {nid: dict(p.status.rejected) for nid, p in nodes.items() if p.status}


def _leader_and_follower(snap: dict[str, tuple]) -> tuple[str, str]:
    leader = next(iter(snap.values()))[2]
    assert leader in snap, snap
    return leader, next(n for n in sorted(snap) if n != leader)


def _publish_as(state: cl.ClusterState, identity: Identity | None,
                messages: list[tuple[str, bytes]], conn: str = "mallory") -> None:
    """Connect as ``identity`` and publish; raises TransportError if the broker refuses."""
    async def go() -> None:
        client = make_client("gmqtt", state.broker, conn, lambda t, p: None, identity)
        await client.connect()
        try:
            for topic, payload in messages:
                client.publish(topic, payload)
            await asyncio.sleep(SETTLE_S)
        finally:
            await client.close()
    asyncio.run(go())


def _forged_append_entries(state: cl.ClusterState, leader: str, follower: str) -> bytes:
    """The issue's attack: a real member's name, a high term, one entry the commit covers."""
    return encode_message(AppendEntries(
        src=leader, dst=follower, term=99, prev_log_index=0, prev_log_term=0,
        entries=(Entry(99, 1, Command("mallory", 1, "SET x = 666")),), leader_commit=1),
        state.name, state.incarnation)


def _assert_unchanged(state: cl.ClusterState, before: dict[str, tuple]) -> None:
    assert _snapshot(state) == before, "terms, logs, commits and fault hooks are unchanged"
    assert _request(state, "GET x") == "100"


# -- without credentials -----------------------------------------------------------------------


def test_an_unauthenticated_client_is_refused(raft: cl.ClusterState) -> None:
    before = _snapshot(raft)
    leader, follower = _leader_and_follower(before)
    forged = _forged_append_entries(raft, leader, follower)
    with pytest.raises(TransportError, match="cannot connect"):
        _publish_as(raft, None, [(topics.peer(raft.name, follower, leader), forged)])
    wrong = Identity(CLIENT_USER, "not-the-password")
    with pytest.raises(TransportError, match="cannot connect"):
        _publish_as(raft, wrong, [(topics.peer(raft.name, follower, leader), forged)])
    _assert_unchanged(raft, before)


@pytest.mark.skipif(not shutil.which("mosquitto_pub"),
                    reason="needs mosquitto-clients (apt-get install mosquitto-clients)")
def test_the_issues_anonymous_mosquitto_pub_append_entries_is_refused(
        raft: cl.ClusterState) -> None:
    before = _snapshot(raft)
    leader, follower = _leader_and_follower(before)
    host, port = parse_broker_url(raft.broker)
    done = subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", str(port), "-t",
         topics.peer(raft.name, follower, leader), "-m",
         _forged_append_entries(raft, leader, follower).decode()],
        capture_output=True, text=True, timeout=10)
    assert done.returncode != 0 and "refused" in (done.stderr + done.stdout).lower()
    _assert_unchanged(raft, before)


# -- with the client's credentials ---------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("mosquitto_rr"),
                    reason="needs mosquitto-clients (apt-get install mosquitto-clients)")
def test_mosquitto_rr_with_the_client_credentials_as_docs_show(raft: cl.ClusterState) -> None:
    """docs/protocol.md: one connection (-i me) asks on its request topic and reads its
    reply topic; the control user's mosquitto_pub sets a fault hook."""
    if raft.broker_kind != "mosquitto":
        pytest.skip("mosquitto_rr speaks MQTT 5, which the embedded broker lacks")
    before = _snapshot(raft)
    leader, _ = _leader_and_follower(before)
    host, port = parse_broker_url(raft.broker)
    auth = ["-h", host, "-p", str(port), "-u", CLIENT_USER, "-P",
            raft.identity(CLIENT_USER).password]
    request = json.dumps({"type": "ClientRequest", "cluster": raft.name, "src": "me",
                          "dst": leader, "seq": 1, "command": "GET x"})
    done = subprocess.run(["mosquitto_rr", *auth, "-i", "me", "-W", "10",
                           "-t", topics.request(raft.name, leader, "me"),
                           "-e", topics.client(raft.name, "me"), "-m", request],
                          capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert (reply["status"], reply["result"], reply["dst"]) == ("ok", "100", "me")

    control = ["-h", host, "-p", str(port), "-u", CONTROL_USER, "-P",
               raft.identity(CONTROL_USER).password, "-t", topics.control(raft.name, leader)]
    subprocess.run(["mosquitto_pub", *control, "-m", '{"op": "delay", "ms": 5}'], check=True,
                   timeout=10)
    end = time.monotonic() + 5
    while _snapshot(raft)[leader][5] != FaultSettings(delay_ms=5.0):
        assert time.monotonic() < end, "the control user's command took effect"
    subprocess.run(["mosquitto_pub", *control, "-m", '{"op": "heal"}'], check=True,
                   timeout=10)
    end = time.monotonic() + 5
    while _snapshot(raft)[leader][5] != FaultSettings():
        assert time.monotonic() < end


def test_a_client_cannot_publish_on_a_peer_topic(raft: cl.ClusterState) -> None:
    before = _snapshot(raft)
    leader, follower = _leader_and_follower(before)
    forged = _forged_append_entries(raft, leader, follower)
    _publish_as(raft, raft.identity(CLIENT_USER), [
        (topics.peer(raft.name, follower, leader), forged),  # the broker's ACL refuses
        (topics.request(raft.name, follower, "someone-else"), forged),  # likewise
        # Its own request topic is allowed, but a node takes only client requests there.
        (topics.request(raft.name, follower, "mallory"), forged)])
    _assert_unchanged(raft, before)
    assert _rejected(raft)[follower].get("wrong-topic", 0) >= 1


def test_a_client_cannot_send_control_commands(raft: cl.ClusterState) -> None:
    before = _snapshot(raft)
    leader, _ = _leader_and_follower(before)
    cut = encode(Control(ControlOp.DROP_TO, peers=tuple(n for n in before if n != leader)))
    _publish_as(raft, raft.identity(CLIENT_USER),
                [(topics.control(raft.name, leader), cut),
                 (topics.control(raft.name, leader), encode(Control(ControlOp.CAMPAIGN)))])
    _assert_unchanged(raft, before)
    assert before[leader][5] == FaultSettings()


def test_a_client_reads_only_its_own_reply_topic(raft: cl.ClusterState) -> None:
    """Another connection's replies never reach a client, even when it subscribes."""
    async def go() -> list[str]:
        seen: list[str] = []
        spy = make_client("gmqtt", raft.broker, "spy", lambda t, p: seen.append(t),
                          raft.identity(CLIENT_USER))
        await spy.connect()
        # mosquitto grants the SUBACK and filters deliveries; amqtt refuses the SUBACK.
        with contextlib.suppress(TransportError):
            await spy.subscribe(topics.client(raft.name, "+"))
        try:
            async with ClusterClient(raft.broker, raft.name, deadline_s=15,
                                     identity=raft.identity(CLIENT_USER)) as victim:
                assert (await victim.request("GET x")).reply.result == "100"
            await asyncio.sleep(SETTLE_S)
        finally:
            await spy.close()
        return seen

    assert asyncio.run(go()) == []


# -- with a node's own credentials -------------------------------------------------------------


def test_a_node_cannot_speak_for_another(raft: cl.ClusterState) -> None:
    before = _snapshot(raft)
    leader, follower = _leader_and_follower(before)
    other = next(n for n in sorted(before) if n not in (leader, follower))
    forged = _forged_append_entries(raft, leader, follower)
    rejected = _rejected(raft)[follower].get("sender-mismatch", 0)
    _publish_as(raft, raft.identity(other), [
        # As the leader: the ACL lets `other` publish only on topics naming itself.
        (topics.peer(raft.name, follower, leader), forged),
        # As itself, claiming to be the leader: the follower drops it and counts it.
        (topics.peer(raft.name, follower, other), forged)])
    _assert_unchanged(raft, before)
    assert _rejected(raft)[follower].get("sender-mismatch", 0) == rejected + 1


def test_forged_prepare_and_accept_to_paxos_are_refused(paxos: cl.ClusterState) -> None:
    before = _snapshot(paxos)
    leader, follower = _leader_and_follower(before)
    other = next(n for n in sorted(before) if n not in (leader, follower))
    rank = sorted(before).index(leader)
    prepare = encode_message(Prepare(src=leader, dst=follower, ballot=Ballot(99, rank, leader),
                                     first_slot=1), paxos.name, paxos.incarnation)
    accept = encode_message(Accept(src=leader, dst=follower, ballot=Ballot(99, rank, leader),
                                   first_slot=1, commands=(Command("mallory", 1, "SET x = 6"),),
                                   commit_index=1), paxos.name, paxos.incarnation)
    peer = topics.peer(paxos.name, follower, leader)
    with pytest.raises(TransportError):
        _publish_as(paxos, None, [(peer, prepare), (peer, accept)])
    _publish_as(paxos, paxos.identity(CLIENT_USER), [(peer, prepare), (peer, accept)])
    _publish_as(paxos, paxos.identity(other), [
        (peer, prepare), (peer, accept),
        (topics.peer(paxos.name, follower, other), accept)])
    _assert_unchanged(paxos, before)


# -- another incarnation -------------------------------------------------------------------------


def test_a_replay_from_a_previous_incarnation_is_refused(kind: str, tmp_path: Path) -> None:
    state = _up(tmp_path, "raft", "reborn", kind)
    assert _request(state, "SET x = 100") == "OK"
    captured: list[tuple[str, bytes]] = []

    async def record() -> None:
        tap = make_client("gmqtt", state.broker, "tap", lambda t, p: captured.append((t, p)),
                          state.identity(CONTROL_USER))
        await tap.connect()
        await tap.subscribe(topics.all_inboxes(state.name))
        end = time.monotonic() + 5
        while time.monotonic() < end and not any(b"AppendEntries" in p for _, p in captured):
            await asyncio.sleep(0.05)
        await tap.close()

    asyncio.run(record())
    topic, payload = next((t, p) for t, p in captured if b"AppendEntries" in p)
    _, sender = topics.sender_of(topic)  # type: ignore[misc]
    old_identity = state.identity(sender)
    cl.down(state.name, root=tmp_path)

    state = _up(tmp_path, "raft", "reborn", kind)
    try:
        assert _request(state, "SET x = 100") == "OK"
        before = _snapshot(state)
        dst, _ = topics.sender_of(topic)  # type: ignore[misc]
        # The old credentials died with the old incarnation.
        with pytest.raises(TransportError, match="cannot connect"):
            _publish_as(state, old_identity, [(topic, payload)])
        # Even a current member replaying it (its own topic, its own sender) is refused by
        # the receiving node: the message names the old incarnation.
        _publish_as(state, state.identity(sender), [(topic, payload)])
        _assert_unchanged(state, before)
        assert _rejected(state)[dst].get("stale-incarnation", 0) >= 1
        assert json.loads(payload)["incarnation"] != state.incarnation
    finally:
        cl.down(state.name, root=tmp_path)


def test_secrets_are_owner_only_and_not_on_any_command_line(raft: cl.ClusterState) -> None:
    secrets = raft.secrets
    assert secrets.stat().st_mode & 0o777 == 0o700
    files = list(secrets.iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    passwords = [raft.identity(u).password for u in (*raft.nodes, CLIENT_USER, CONTROL_USER)]
    for pid in raft.nodes.values():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert "--credentials" in argv and not any(p in argv for p in passwords)
        log = (Path(raft.directory) / f"{next(iter(raft.nodes))}.log").read_text()
        assert not any(p in log for p in passwords)


def test_an_experiment_cluster_runs_on_its_own_authenticated_broker(
        kind: str, tmp_path: Path) -> None:
    """BusOptions(broker=None): per-run credentials and broker; nothing left behind."""
    from consensus.experiment.bus import BusCluster, BusOptions
    from consensus.node import Config

    bus = BusCluster("raft", ("n1", "n2", "n3"), Config(election_timeout_ms=(500, 900)),
                     tmp_path / "nodes", BusOptions(None, fsync=False, prefer=kind))

    async def go() -> tuple[str | None, str]:
        await bus.start()
        try:
            await bus.wait_for_leader()
            with pytest.raises(TransportError):  # the run's broker knows no anonymous user
                anon = make_client("gmqtt", bus.state.broker, "anon", lambda t, p: None)
                await anon.connect()
            async with ClusterClient(bus.state.broker, bus.name, deadline_s=15,
                                     identity=bus.identity(CLIENT_USER)) as c:
                result = await c.request("SET y = 1")
            return result.reply.result, bus.broker.kind
        finally:
            await bus.close()

    assert asyncio.run(go()) == ("OK", kind)
    assert not bus.state.insecure and not bus.state.secrets.exists()


def test_cluster_up_against_a_broker_started_apart_uses_its_credentials(
        kind: str, tmp_path: Path) -> None:
    """`consensus-lab broker --cluster c` then `cluster up --broker URL --cluster c`."""
    from consensus.auth import AuthError, Realm
    from consensus.broker import chosen_kind, start_broker

    with pytest.raises(AuthError, match="needs credentials"):
        cl.up("raft", 3, "apart", "mqtt://127.0.0.1:1", "gmqtt", False, 50, (500, 900),
              root=tmp_path)
    realm = Realm.create("apart", ["n1", "n2", "n3"], tmp_path / "apart",
                         brokers=(chosen_kind(kind),))
    handle = start_broker(prefer=kind, realm=realm)
    try:
        state = cl.up("raft", 3, "apart", handle.url, "gmqtt", False, 50, (500, 900),
                      root=tmp_path)
        try:
            assert asyncio.run(cl.wait_for_leader(state, 20)) is not None, _logs(state)
            assert _request(state, "SET z = 3") == "OK"
        finally:
            cl.down("apart", root=tmp_path)
        assert realm.identity_path(CLIENT_USER).exists(), "the broker outlives the cluster"
    finally:
        handle.stop()


def test_the_cli_warns_loudly_in_open_mode(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import consensus
    from consensus.cli import app

    # The node processes must import this checkout's package from the new working directory.
    root = str(Path(consensus.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["cluster", "up", "--cluster", "open", "--insecure",
                                     "--fsync", "never", "--election-timeout-ms", "500-900"])
        assert result.exit_code == 0, result.output
        assert "WARNING" in result.output and "OPEN broker" in result.output
        assert not (tmp_path / ".consensus-lab/open/secrets").exists()
        state = cl.ClusterState.load("open", tmp_path / ".consensus-lab")
        assert state.insecure and state.identity() is None
        assert _request(state, "SET x = 1") == "OK"  # anonymous, as mosquitto_pub would be
    finally:
        runner.invoke(app, ["cluster", "down", "--cluster", "open"])
