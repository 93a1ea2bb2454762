"""The dashboard's server side, without a browser: snapshots, commands, WebSocket, presets.

The simulated clock is paused in every test and moved only by ``step`` commands, so nothing
here depends on wall-clock timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from aiohttp.test_utils import TestClient, TestServer

from consensus.dashboard.server import create_app
from consensus.dashboard.sim_backend import (
    DEFAULT_NETWORK,
    PRESETS,
    ClusterSim,
    SimBackend,
)
from consensus.dashboard.view import algorithm_json, log_slot_json, message_json
from consensus.membership import Membership
from consensus.messages import ClientReply, ReplyStatus
from consensus.node import Config, LogSlot
from consensus.paxos.messages import Accept, Ballot, Nack
from consensus.raft.messages import AppendEntries, AppendEntriesReply, Entry, RequestVoteReply

Client = TestClient


def run(test: Callable[[Client, SimBackend], Awaitable[None]], **backend_args: Any) -> None:
    """Serve a paused SimBackend on an ephemeral port and run ``test`` against it."""
    async def main() -> None:
        backend = SimBackend(running=False, **backend_args)
        async with TestClient(TestServer(create_app(backend))) as client:
            await test(client, backend)

    asyncio.run(main())


async def command(client: Client, **cmd: Any) -> dict[str, Any]:
    resp = await client.post("/api/command", json=cmd)
    return await resp.json()


async def state(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/state")
    assert resp.status == 200
    return await resp.json()


def node(st: dict[str, Any], cluster: str, nid: str) -> dict[str, Any]:
    return next(n for n in st["clusters"][cluster]["nodes"] if n["id"] == nid)


async def elect(client: Client) -> dict[str, Any]:
    assert (await command(client, op="step", ms=1500))["ok"]
    st = await state(client)
    for name in ("raft", "paxos"):
        assert st["clusters"][name]["leader"] is not None, name
    return st


def test_snapshot_shape() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await state(client)
        assert st["type"] == "state" and st["mode"] == "sim"
        assert st["running"] is False and st["now"] == 0
        assert st["node_ids"] == ["n1", "n2", "n3", "n4", "n5"]
        assert set(st["clusters"]) == {"raft", "paxos"}
        assert {p["name"] for p in st["presets"]} == set(PRESETS)
        assert st["capabilities"]["step"] and st["capabilities"]["pause"]
        for name, cl in st["clusters"].items():
            assert cl["algorithm"] == name and len(cl["nodes"]) == 5
            for n in cl["nodes"]:
                assert set(n) >= {"id", "alive", "role", "term", "ballot", "commit_index",
                                  "last_index", "election_deadline", "log"}
        assert st["events"][0]["text"].startswith("reset: seed 1")
        # The page draws each cluster from its algorithm's description, not from its name.
        algos = st["algorithms"]
        assert (algos["raft"]["term_label"], algos["paxos"]["term_label"]) == ("term", "ballot")
        phases = {m["kind"]: m["phase"] for a in algos.values() for m in a["messages"]}
        assert phases["RequestVote"] == phases["Prepare"] == "ask for votes"
        assert phases["AppendEntries"] == phases["Accept"] == "replicate"
        resp = await client.get("/")
        assert resp.status == 200 and 'id="clusters"' in await resp.text()
        for static in ("app.js", "style.css"):
            assert (await client.get(f"/static/{static}")).status == 200

    run(t)


def test_both_clusters_elect_a_leader_and_log_it() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await elect(client)
        assert st["now"] == 1500
        texts = [e["text"] for e in st["events"]]
        assert any("is leader (term" in x for x in texts)
        assert any("is leader (ballot" in x for x in texts)
        times = [e["t"] for e in st["events"]]
        assert times == sorted(times)  # the log is in simulated-time order
        raft_leader = node(st, "raft", st["clusters"]["raft"]["leader"])
        assert raft_leader["election_deadline"] is None  # a leader has no election timer
        follower = next(n for n in st["clusters"]["raft"]["nodes"] if n["role"] == "follower")
        assert follower["election_deadline"] > st["now"]

    run(t)


def test_kill_and_revive_one_cluster_or_both() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        assert (await command(client, op="kill", node="n2", cluster="raft"))["ok"]
        st = await state(client)
        assert node(st, "raft", "n2")["alive"] is False
        assert node(st, "raft", "n2")["role"] == "crashed"
        assert node(st, "paxos", "n2")["alive"] is True
        assert (await command(client, op="kill", node="n3"))["ok"]
        st = await state(client)
        assert not node(st, "raft", "n3")["alive"] and not node(st, "paxos", "n3")["alive"]
        assert (await command(client, op="revive", node="n2", cluster="both"))["ok"]
        assert (await command(client, op="revive", node="n3"))["ok"]
        st = await state(client)
        assert all(n["alive"] for c in st["clusters"].values() for n in c["nodes"])
        texts = [e["text"] for e in st["events"]]
        assert texts.count("n3 killed") == 2 and "n2 restarted from its persisted state" in texts

    run(t)


def test_killing_the_leader_elects_another() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await elect(client)
        old = st["clusters"]["raft"]["leader"]
        assert (await command(client, op="kill", node="leader"))["ok"]
        assert (await command(client, op="step", ms=1500))["ok"]
        st = await state(client)
        assert st["clusters"]["raft"]["leader"] not in (None, old)
        assert st["clusters"]["paxos"]["leader"] is not None

    run(t)


def test_timeout_starts_an_election() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await elect(client)
        follower = next(n["id"] for n in st["clusters"]["raft"]["nodes"]
                        if n["role"] == "follower")
        assert (await command(client, op="timeout", node=follower, cluster="raft"))["ok"]
        st = await state(client)
        assert node(st, "raft", follower)["role"] in ("precandidate", "candidate")
        assert any(e["text"] == f"{follower} times out now" and e["cluster"] == "raft"
                   for e in st["events"])

    run(t)


def test_request_commits_on_both_clusters() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        assert (await command(client, op="request"))["ok"]
        assert (await command(client, op="request", text="SET y = 7", cluster="paxos"))["ok"]
        assert (await command(client, op="step", ms=1000))["ok"]
        st = await state(client)
        for name in ("raft", "paxos"):
            leader = node(st, name, st["clusters"][name]["leader"])
            committed = [e["cmd"] for e in leader["log"] if e["ok"]]
            assert "SET x = 1" in committed, (name, leader["log"])
            assert ("SET y = 7" in committed) == (name == "paxos")
        texts = [(e["cluster"], e["text"]) for e in st["events"]]
        assert any(c == "raft" and x.startswith("SET x = 1 \u2192 OK") for c, x in texts)
        assert any(c == "paxos" and "committed: SET y = 7" in x for c, x in texts)

    run(t)


def test_partition_and_heal() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        r = await command(client, op="partition", groups=[["n1", "n2"], ["n3", "n4", "n5"]])
        assert r["ok"]
        st = await state(client)
        for cl in st["clusters"].values():
            assert ["n1", "n3"] in cl["blocked"] and ["n1", "n2"] not in cl["blocked"]
        assert (await command(client, op="step", ms=1500))["ok"]
        st = await state(client)
        for cl in st["clusters"].values():  # only the majority side can have a leader
            assert cl["leader"] in ("n3", "n4", "n5")
        assert (await command(client, op="heal", cluster="raft"))["ok"]
        st = await state(client)
        assert st["clusters"]["raft"]["blocked"] == []
        assert st["clusters"]["paxos"]["blocked"] != []
        bad = await command(client, op="partition", groups=[["n1"], ["n1", "n9"]])
        assert not bad["ok"] and "disjoint" in bad["error"]

    run(t)


def test_drop_next_message() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        assert (await command(client, op="drop_next", cluster="paxos"))["ok"]
        assert (await command(client, op="step", ms=200))["ok"]
        st = await state(client)
        dropped = [e for e in st["events"] if e["text"].startswith("dropped ")]
        assert len(dropped) == 1 and dropped[0]["cluster"] == "paxos"

    run(t)


def test_pause_step_resume_speed() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        assert (await command(client, op="resume"))["ok"]
        assert backend.running
        assert (await command(client, op="pause"))["ok"]
        before = (await state(client))["now"]
        assert (await command(client, op="step", ms=10))["ok"]
        st = await state(client)
        assert st["now"] == pytest.approx(before + 10) and st["running"] is False
        assert (await command(client, op="speed", value=0.5))["ok"]
        assert (await state(client))["speed"] == 0.5
        assert not (await command(client, op="step", ms=-1))["ok"]

    run(t)


def test_reset_with_a_seed_is_reproducible() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        assert (await command(client, op="reset", seed=42, nodes=3))["ok"]
        st = await state(client)
        assert st["now"] == 0 and st["seed"] == 42 and st["node_ids"] == ["n1", "n2", "n3"]
        await elect(client)
        first = [(e["t"], e["cluster"], e["text"]) for e in (await state(client))["events"]]
        assert (await command(client, op="reset", seed=42))["ok"]
        await elect(client)
        again = [(e["t"], e["cluster"], e["text"]) for e in (await state(client))["events"]]
        assert first == again

    run(t)


def test_bad_commands_are_refused() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        assert not (await command(client, op="explode"))["ok"]
        assert "unknown node" in (await command(client, op="kill", node="n42"))["error"]
        assert not (await command(client, op="kill", node="n1", cluster="zab"))["ok"]
        assert not (await command(client, op="preset", name="nope"))["ok"]
        resp = await client.post("/api/command", data=b"{not json")
        assert resp.status == 400

    run(t)


def test_late_websocket_gets_the_current_state_at_once() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        async with client.ws_connect("/ws") as ws:
            first = await ws.receive_json(timeout=5)
            assert first["type"] == "state" and first["now"] == 1500
            assert first["clusters"]["raft"]["leader"] is not None
            assert any("is leader" in e["text"] for e in first["events"])
            await ws.send_json({"type": "command", "id": 7, "op": "kill", "node": "n1"})
            while True:  # updates may arrive before the ack
                msg = await ws.receive_json(timeout=5)
                if msg["type"] == "ack":
                    break
            assert msg == {"type": "ack", "id": 7, "ok": True}
            await ws.send_json({"type": "command", "id": 8, "op": "preset", "name": "quiz2"})
            kinds = set()
            while "state" not in kinds:  # a preset resets: every page gets a new snapshot
                msg = await ws.receive_json(timeout=5)
                kinds.add(msg["type"])
            assert msg["preset"]["name"] == "quiz2" and msg["now"] == 0

    run(t)


def test_updates_carry_messages_with_simulated_flight_times() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        backend.frame()  # discard what was sent before
        assert (await command(client, op="step", ms=400))["ok"]
        frame = backend.frame()
        assert frame["type"] == "update" and frame["messages"]
        kinds = {m["k"] for m in frame["messages"]}
        assert {"RequestVote", "AppendEntries", "Prepare", "Promise"} <= kinds
        for m in frame["messages"]:
            assert m["c"] in ("raft", "paxos")
            assert m["t1"] is None or 20 <= m["t1"] - m["t0"] <= 40  # the network's latency
        assert backend.frame()["messages"] == []

    run(t)


# -- presets: the tutorial's quiz scenarios, checked on what they are meant to show ---------


def preset(name: str, until_ms: float, seed: int = 1) -> SimBackend:
    backend = SimBackend(running=False, seed=seed)
    assert backend.apply_now({"op": "preset", "name": name}) == {"ok": True, "snapshot": True}
    backend.running = False
    backend.advance(until_ms)
    for cluster in backend.clusters.values():
        assert not cluster.sim.violations, cluster.sim.violations
    return backend


def texts(backend: SimBackend, cluster: str, since: float = 0.0,
          until: float = float("inf")) -> list[str]:
    return [e.text for e in backend.events.events
            if e.cluster == cluster and since <= e.t < until]


def test_quiz1_majority_of_five() -> None:
    b = SimBackend(running=False)
    b.apply_now({"op": "preset", "name": "quiz1"})
    b.running = False
    b.advance(2650)
    at_two_dead = {n: c.committed for n, c in b.clusters.items()}
    b.advance(1500)  # to 4150: n3 died at 2700, three of five are down
    stuck = {n: c.committed for n, c in b.clusters.items()}
    b.advance(1850)  # to 6000: n3 came back at 4200
    for name, c in b.clusters.items():
        assert at_two_dead[name] >= 6  # writes kept committing with n4 and n5 dead
        assert c.committed > stuck[name], name  # ...and resumed once a majority was back
        assert any("SET x =" in x and "committed" in x for x in texts(b, name, 1500, 2700))
        assert not any("committed" in x for x in texts(b, name, 2900, 4200)), name


def test_quiz2_heartbeats_beat_the_timeout() -> None:
    b = preset("quiz2", 4000)
    for name in ("raft", "paxos"):
        elections = [x for x in texts(b, name, 400) if "election" in x or "pre-vote" in x]
        assert elections == [], (name, elections)
        assert b.clusters[name].sim.leader() == "n1"


def test_quiz3_fixed_timeouts_split_the_vote() -> None:
    b = preset("quiz3", 1900)
    assert b.clusters["raft"].sim.leader() is None
    assert any("no majority" in x for x in texts(b, "raft"))
    assert b.clusters["paxos"].sim.leader() is not None  # ballots are totally ordered
    b.advance(3000)
    assert b.clusters["raft"].sim.leader() is not None


def test_quiz4_stale_leader_steps_down() -> None:
    b = preset("quiz4", 2900)
    for name, c in b.clusters.items():
        old = c.isolated
        assert old is not None and c.sim.statuses[old].role == "leader", name
        assert c.sim.leader() != old  # a newer leader exists on the majority side
    b.advance(1100)
    for name, c in b.clusters.items():
        assert c.sim.statuses[c.isolated].role == "follower", name
        assert any(x.startswith(f"{c.isolated} steps down") for x in texts(b, name, 3000))


def test_split_vote_preset() -> None:
    b = preset("split", 1300)
    raft = b.clusters["raft"]
    assert raft.sim.leader() is None
    candidates = [s for s in raft.sim.statuses.values() if s.role == "candidate"]
    assert len(candidates) == 3
    b.advance(4000)
    assert raft.sim.leader() is not None
    assert any("no majority" in x for x in texts(b, "raft", 1200))


# -- the partial-connectivity presets: links cut by role token, in both clusters -------------


def leaders_between(b: SimBackend, cluster: str, since: float, until: float) -> list[str]:
    return [x for x in texts(b, cluster, since, until) if " is leader" in x]


def test_links_command_resolves_role_tokens_in_each_cluster_and_adds_cuts() -> None:
    b = SimBackend(running=False)
    b.advance(1500)
    b.apply_now({"op": "links", "cut": [["leader", "follower1"]]})
    b.apply_now({"op": "links", "one_way": [["follower2", "leader"]]})
    for name, c in b.clusters.items():
        leader = c.cluster.leader()
        f1, f2 = [n for n in c.cluster.ids if n != leader][:2]
        assert c.sim.blocked == {(leader, f1), (f1, leader), (f2, leader)}, name
        assert any(x == f"links cut {leader}-{f1}" for x in texts(b, name)), texts(b, name)
    with pytest.raises(ValueError, match="neither a node"):
        b.apply_now({"op": "links", "cut": [["leader", "boss"]]})
    with pytest.raises(ValueError, match="pair"):
        b.apply_now({"op": "links", "cut": [["n1", "n2", "n3"]]})


def test_quorum_loss_preset_elects_the_follower_still_connected_to_all() -> None:
    b = preset("quorum-loss", 1450)
    first = {n: c.cluster.leader() for n, c in b.clusters.items()}
    b.advance(3000)
    for name, c in b.clusters.items():
        f1 = next(n for n in c.cluster.ids if n != first[name])
        assert c.cluster.leader() == f1, name  # the only node that still reaches a majority
        assert len(leaders_between(b, name, 1500, 4500)) == 1


def test_constrained_election_preset_raft_waits_paxos_elects_the_stale_node() -> None:
    b = preset("constrained", 4450)
    assert leaders_between(b, "raft", 1500, 4500) == []
    assert b.clusters["raft"].cluster.leader() is None
    assert len(leaders_between(b, "paxos", 1500, 4500)) == 1
    b.advance(2000)  # healed at 4.5 s
    assert b.clusters["raft"].cluster.leader() is not None


def test_chained_and_omission_presets_churn_leaders_while_links_are_cut() -> None:
    b = preset("chained", 4450)
    assert len(leaders_between(b, "paxos", 1500, 4500)) >= 3  # ping-pong across the cut
    b = preset("omission", 4950)
    assert len(leaders_between(b, "raft", 1500, 5000)) >= 2


# -- mqtt mode, against a fake MQTT client (no broker, no processes) -------------------------


class FakeMqtt:
    def __init__(self, library: str, url: str, client_id: str, on_message: Any,
                 identity: Any = None) -> None:
        self.on_message = on_message
        self.published: list[tuple[str, Any]] = []  # (topic, the Control it decodes to)
        self.subscribed: list[str] = []

    async def connect(self) -> None:
        pass

    async def subscribe(self, *topics: str, qos: int = 0) -> None:
        self.subscribed.extend(topics)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        from consensus.codec import decode
        from consensus.telemetry import Control

        self.published.append((topic, decode(Control, payload)))

    async def close(self) -> None:
        pass


def test_mqtt_backend_watches_status_and_inbox_and_sends_controls(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from consensus.cluster import ClusterState
    from consensus.codec import encode, encode_message
    from consensus.dashboard.mqtt_backend import MqttBackend
    from consensus.messages import Command
    from consensus.raft.messages import AppendEntries, Entry, RequestVoteReply
    from consensus.telemetry import ControlOp, FaultSettings, StatusReport

    state = ClusterState("demo", "raft", {"n1": os.getpid(), "n2": os.getpid(), "n3": 0},
                         "mqtt://127.0.0.1:1", None, "external", "gmqtt", False, 50.0,
                         (150.0, 300.0), str(tmp_path / "demo"), insecure=True)
    # Our own pid stands in for running nodes; pid 0 for a dead one.
    monkeypatch.setattr("consensus.experiment.bus.is_ours", lambda pid: pid > 0)

    async def main() -> None:
        backend = MqttBackend([state], client_factory=FakeMqtt)
        await backend.start()
        fake = backend.clusters["raft"].client
        assert set(fake.subscribed) == {"consensus/demo/+/status",
                                        "consensus/demo/+/from/+",
                                        "consensus/demo/+/config/+"}
        for nid, role in (("n1", "leader"), ("n2", "follower"), ("n3", "follower")):
            fake.on_message(f"consensus/demo/{nid}/status", encode(StatusReport(
                id=nid, algorithm="raft", role=role, term=2, ballot=None, leader="n1",
                commit_index=1, last_index=1, applied_index=1, election_timeout_in_ms=None,
                pid=os.getpid(), cluster="demo", library="gmqtt", broker=state.broker,
                fsync=False, messages_in=0, messages_out=0, wal_fsyncs=0,
                wal_fsynced_records=0, dropped=0,
                faults=FaultSettings(drop_to=("n3",) if nid == "n1" else ()))))
        fake.on_message("consensus/demo/n2/from/n1", encode_message(AppendEntries(
            src="n1", dst="n2", term=2, prev_log_index=0, prev_log_term=0, leader_commit=0,
            entries=(Entry(2, 1, Command("c", 1, "SET x = 100")),)), "demo"))
        # What a node would refuse is not drawn: a status claiming to be another node, a
        # half status, an outsider's vote, a message on the wrong inbox, one whose claimed
        # sender is not the topic's, junk.
        fake.on_message("consensus/demo/n2/status", b'{"id": "n2", "role": "leader"}')
        fake.on_message("consensus/demo/n3/from/mallory", encode_message(RequestVoteReply(
            src="mallory", dst="n3", term=9, granted=False), "demo"))
        fake.on_message("consensus/demo/n3/from/n1", encode_message(RequestVoteReply(
            src="n1", dst="n2", term=9, granted=False), "demo"))
        fake.on_message("consensus/demo/n3/from/n2", encode_message(RequestVoteReply(
            src="n1", dst="n3", term=9, granted=False), "demo"))
        fake.on_message("consensus/demo/n1/from/n2", b"junk")
        fake.on_message("consensus/demo/n1/from/n3", encode_message(RequestVoteReply(
            src="n3", dst="n1", term=2, granted=False), "demo"))  # a refusal: an event, a ring
        snap = backend.snapshot()
        raft = snap["clusters"]["raft"]
        assert snap["mode"] == "mqtt" and not snap["capabilities"]["step"]
        # Titles and term labels from the registry, as in sim mode.
        assert snap["algorithms"]["raft"]["term_label"] == "term"
        assert snap["algorithms"]["raft"]["title"] == "Raft (demo)"
        assert raft["title"] == "Raft (demo)"
        assert raft["leader"] == "n1" and raft["blocked"] == [["n1", "n3"]]
        n2 = next(n for n in raft["nodes"] if n["id"] == "n2")
        assert n2["log"] == [{"i": 1, "b": "2", "cmd": "SET x = 100", "ok": True}]
        n3 = next(n for n in raft["nodes"] if n["id"] == "n3")
        assert n3["alive"] is False and n3["role"] == "crashed"  # pid 0 is no node of ours
        frame = backend.frame()
        assert [(m["k"], m["s"], m["d"], m.get("neg")) for m in frame["messages"]] == [
            ("AppendEntries", "n1", "n2", None), ("RequestVoteReply", "n3", "n1", True)]
        assert any(e["kind"] == "reject" and e["text"] == "n3 refused vote to n1"
                   for e in frame["events"])
        assert any("n1 is leader" in e["text"] for e in frame["events"])
        assert raft["leader"] == "n1", "the half status changed nothing"
        assert dict(backend.clusters["raft"].rejected) == {
            "bad-field": 1, "foreign-sender": 1, "misrouted": 1, "not-json": 1,
            "sender-mismatch": 1}
        assert sum("not drawn" in e["text"] for e in frame["events"]) == 5

        assert (await backend.apply({"op": "partition", "groups": [["n1"], ["n2", "n3"]]}))["ok"]
        sent = {(t, c.op, c.peers) for t, c in fake.published}
        assert ("consensus/demo/n1/control", ControlOp.DROP_TO, ("n2", "n3")) in sent
        assert ("consensus/demo/n3/control", ControlOp.DROP_FROM, ("n1",)) in sent
        fake.published.clear()
        assert (await backend.apply({"op": "timeout", "node": "n2"}))["ok"]
        assert (await backend.apply({"op": "heal"}))["ok"]
        (topic, first), *healing = fake.published
        assert (topic, first.op) == ("consensus/demo/n2/control", ControlOp.CAMPAIGN)
        # A heal clears every fault hook on every node, whatever was in force.
        dirty = FaultSettings(drop_to=("n1",), drop_from=("n2",), loss=0.5, delay_ms=9.0)
        after: dict[str, FaultSettings] = {}
        for topic, c in healing:
            after[topic] = after.get(topic, dirty).apply(c)
        assert after == {f"consensus/demo/{n}/control": FaultSettings()
                         for n in ("n1", "n2", "n3")}
        # A node whose statuses stopped (a stopped process) is shown down and cannot lead.
        bus = backend.clusters["raft"].cluster
        bus.seen["n1"] -= 2000.0
        later = backend.snapshot()["clusters"]["raft"]
        assert later["leader"] is None
        assert next(n for n in later["nodes"] if n["id"] == "n1")["role"] == "crashed"
        refused = await backend.apply({"op": "step", "ms": 10})
        assert not refused["ok"] and "mqtt mode" in refused["error"]
        await backend.close()

    asyncio.run(main())


def test_mqtt_backend_cuts_links_by_role_and_replays_live_presets(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from consensus.cluster import ClusterState
    from consensus.codec import encode
    from consensus.dashboard.mqtt_backend import MqttBackend
    from consensus.dashboard.presets import PRESETS as ALL
    from consensus.telemetry import ControlOp, FaultSettings, StatusReport

    ids = ("n1", "n2", "n3", "n4", "n5")
    state = ClusterState("demo", "raft", dict.fromkeys(ids, os.getpid()), "mqtt://127.0.0.1:1",
                         None, "external", "gmqtt", False, 50.0, (150.0, 300.0),
                         str(tmp_path / "demo"), insecure=True)
    monkeypatch.setattr("consensus.experiment.bus.is_ours", lambda pid: pid > 0)

    async def main() -> None:
        backend = MqttBackend([state], client_factory=FakeMqtt)
        await backend.start()
        fake = backend.clusters["raft"].client
        for nid in ids:
            fake.on_message(f"consensus/demo/{nid}/status", encode(StatusReport(
                id=nid, algorithm="raft", role="leader" if nid == "n3" else "follower", term=2,
                ballot=None, leader="n3", commit_index=5, last_index=5,
                applied_index=2 if nid == "n4" else 5, election_timeout_in_ms=None,
                pid=os.getpid(), cluster="demo", library="gmqtt", broker=state.broker,
                fsync=False, messages_in=0, messages_out=0, wal_fsyncs=0,
                wal_fsynced_records=0, dropped=0, faults=FaultSettings())))
        snap = backend.snapshot()
        live = {p["name"] for p in snap["presets"]}
        assert {"quorum-loss", "constrained", "chained", "omission"} <= live
        assert "quiz3" not in live and snap["capabilities"]["presets"]

        def drops() -> dict[str, tuple[str, ...]]:
            return {t.split("/")[2]: c.peers for t, c in fake.published
                    if c.op == ControlOp.DROP_TO}

        # follower1 is n1 (the leader n3's first follower); most-lagging is n4 (applied 2).
        assert (await backend.apply({"op": "links", "cut": [["leader", "follower1"]]}))["ok"]
        assert drops()["n3"] == ("n1",) and drops()["n1"] == ("n3",)
        fake.published.clear()
        assert (await backend.apply({"op": "links", "one_way": [["most-lagging", "n5"]]}))["ok"]
        assert drops() == {"n1": ("n3",), "n2": (), "n3": ("n1",), "n4": ("n5",), "n5": ()}

        result = await backend.apply({"op": "preset", "name": "chained"})
        assert result == {"ok": True, "snapshot": True}
        assert backend.snapshot()["preset"]["name"] == "chained"
        assert len(backend._preset_steps) == len(ALL["chained"].steps)
        assert any("assumes pre_vote False" in e.text for e in backend.events.events)
        refused = await backend.apply({"op": "preset", "name": "quiz3"})
        assert not refused["ok"] and "no preset 'quiz3'" in refused["error"]
        await backend.close()
        assert backend._preset_steps == []

    asyncio.run(main())


# -- what the page is told, from the messages' and nodes' own descriptions ---------------------

def test_messages_describe_themselves_to_the_page() -> None:
    beat = AppendEntries(src="n1", dst="n2", term=2, prev_log_index=4, prev_log_term=2,
                         entries=(), leader_commit=4)
    assert message_json("raft", beat, 1.0, 2.0) == {"c": "raft", "k": "AppendEntries",
                                                    "s": "n1", "d": "n2", "t0": 1.0,
                                                    "t1": 2.0, "hb": True}
    batch = Accept(src="n1", dst="n2", ballot=Ballot(3, 0, "n1"), first_slot=5,
                   commands=(None, None), commit_index=4)
    assert message_json("paxos", batch, 1.0, None)["n"] == 2
    one = AppendEntries(src="n1", dst="n2", term=2, prev_log_index=0, prev_log_term=0,
                        entries=(Entry(2, 1, None),), leader_commit=0)
    assert "hb" not in message_json("raft", one, 0, 1) and not one.is_rejection()
    # What the traffic tells an observer about the receiver's log (the MQTT backend's view).
    assert list(one.carried_slots()) == [(1, "2", None)] and list(beat.carried_slots()) == []
    assert list(batch.carried_slots()) == [(5, "3.n1", None), (6, "3.n1", None)]
    refusals = {
        RequestVoteReply(src="n2", dst="n1", term=3, granted=False, pre_vote=True):
            "n2 refused pre-vote to n1",
        AppendEntriesReply(src="n2", dst="n1", term=3, success=False, reject_index=7,
                           conflict_term=2, conflict_index=5):
            "n2 refused AppendEntries from n1: no matching entry at 7",
        AppendEntriesReply(src="n2", dst="n1", term=4, success=False, reject_index=7):
            "n2 refused AppendEntries from n1: its term is newer",
        Nack(src="n2", dst="n1", ballot=Ballot(2, 0, "n1"), promised=Ballot(3, 1, "n2")):
            "n2 Nack to n1: ballot 2.n1 < promised 3.n2",
        ClientReply(src="n2", dst="web", seq=1, status=ReplyStatus.REDIRECT, leader="n1"):
            "n2 redirected web to n1",
    }
    for msg, text in refusals.items():
        assert msg.rejection() == text and message_json("x", msg, 0, 1)["neg"] is True
    granted = RequestVoteReply(src="n2", dst="n1", term=3, granted=True)
    assert granted.rejection() is None and "neg" not in message_json("raft", granted, 0, 1)


def test_log_tail_is_the_only_view_of_a_log() -> None:
    b = SimBackend(running=False, seed=2)
    b.apply_now({"op": "step", "ms": 1500})
    for text in ("SET x = 1", "SET x = 2"):
        b.apply_now({"op": "request", "text": text})
        b.apply_now({"op": "step", "ms": 300})
    for name, cluster in b.clusters.items():
        leader = cluster.sim.nodes[cluster.sim.leader()]
        slots = leader.log_tail(3)
        last = leader.status().last_index
        assert [s.index for s in slots] == list(range(max(1, last - 2), last + 1)), name
        assert [s.command for s in slots][-2:] == ["SET x = 1", "SET x = 2"], name
        assert all(s.committed and s.term >= 1 and s.label for s in slots), name
        shown = cluster.node_json(leader.id)["log"]
        assert [e["cmd"] for e in shown][-2:] == ["SET x = 1", "SET x = 2"]
        assert shown[-1]["b"] == slots[-1].label
    paxos = b.clusters["paxos"].sim.nodes["n1"]
    assert "." in paxos.log_tail(1)[0].label  # a ballot reads "round.node"
    assert log_slot_json(LogSlot(4, 0, "", None, False, empty=True))["cmd"] == "(empty)"
    assert log_slot_json(LogSlot(5, 3, "3.n1", None, True)) == {"i": 5, "b": "3.n1",
                                                                 "cmd": "no-op", "ok": True}


def test_a_registered_algorithm_needs_no_dashboard_code() -> None:
    """The benchmark's null protocol is only in the registry, yet a cluster of it runs and
    draws (the page's legend, term label and colours come from the registry)."""
    cluster = ClusterSim("null", 3, 1, Config(), DEFAULT_NETWORK)
    cluster.request("SET x = 1")
    cluster.sim.run(500)
    cluster.collect()
    st = cluster.state_json()
    assert st["leader"] == "n1" and st["committed"] == 1 and st["title"] == "Null protocol"
    assert any("SET x = 1" in text and "OK" in text for _, kind, text in cluster.pending
               if kind == "client")
    assert algorithm_json(cluster.algorithm)["term_label"] == "term"


# -- membership: add, remove and transfer through the API, on both clusters -----------------


def members(st: dict[str, Any], cluster: str) -> dict[str, str | None]:
    return {n["id"]: n["member"] for n in st["clusters"][cluster]["nodes"]}


async def step_until(client: Client, done: Callable[[dict[str, Any]], bool],
                     within_ms: float = 8000, step_ms: float = 20) -> list[dict[str, Any]]:
    """Step the paused clock until ``done(state)``; every state seen on the way."""
    seen = []
    for _ in range(int(within_ms / step_ms)):
        assert (await command(client, op="step", ms=step_ms))["ok"]
        seen.append(await state(client))
        if done(seen[-1]):
            return seen
    raise AssertionError(f"not done within {within_ms} simulated ms")


def test_status_carries_the_configuration() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await elect(client)
        for name in ("raft", "paxos"):
            cl = st["clusters"][name]
            assert cl["config"] == "voters=n1,n2,n3,n4,n5" and cl["joint"] is False
            assert cl["changes"] == []
            assert set(members(st, name).values()) == {"voter"}
            assert all(n["snapshot_index"] == 0 for n in cl["nodes"])  # compaction is off
        assert st["capabilities"]["membership"] is True
        assert st["config"]["snapshot_entries"] == 0

    run(t)


def test_add_node_starts_it_empty_as_a_learner_then_promotes_it() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        for i in range(3):  # a log for the new node to catch up on
            assert (await command(client, op="request", text=f"SET k{i} = {i}"))["ok"]
        assert (await command(client, op="step", ms=300))["ok"]
        assert (await command(client, op="add_node"))["ok"]
        st = await state(client)
        assert st["node_ids"][-1] == "n6"
        seen = await step_until(client, lambda s: all(
            members(s, c).get("n6") == "voter" and s["clusters"][c]["changes"][-1]["done"]
            for c in ("raft", "paxos")))
        for name in ("raft", "paxos"):
            roles = [members(s, name)["n6"] for s in seen]
            assert roles[0] == "joining", (name, roles)  # started empty, not yet a member
            assert "learner" in roles[:roles.index("voter")], (name, roles)  # caught up first
            cl = seen[-1]["clusters"][name]
            assert cl["config"] == "voters=n1,n2,n3,n4,n5,n6", name
            assert cl["changes"] == [{"change": "add n6", "ok": True, "done": True,
                                      "result": "voters=n1,n2,n3,n4,n5,n6", "attempts": 1}]
            assert node(seen[-1], name, "n6")["commit_index"] >= 3
            assert any(e["text"].startswith("add n6 done") for e in seen[-1]["events"]
                       if e["cluster"] == name), name
        # Raft promoted it through a joint configuration; Multi-Paxos has none.
        assert any(members(s, "raft")["n6"] == "voter (new)" for s in seen)
        assert not any(s["clusters"]["paxos"]["joint"] for s in seen)

    run(t)


def test_removing_the_leader_hands_over_with_timeout_now() -> None:
    # Straight on the backend (no server): every frame's messages are kept, none is taken
    # by the server's pump.
    b = SimBackend(running=False)
    b.advance(1500)
    old = {name: c.cluster.leader() for name, c in b.clusters.items()}
    b.frame()
    assert b.apply_now({"op": "remove", "node": "leader"}) == {"ok": True}
    messages, states = [], []
    for _ in range(400):
        b.advance(20)
        frame = b.frame()
        messages += frame["messages"]
        states.append(frame["clusters"])
        if all(cl["leader"] not in (None, old[name]) and cl["changes"][-1]["done"]
               for name, cl in frame["clusters"].items()):
            break
    else:
        raise AssertionError("no hand-over within 8 simulated seconds")
    for name, was in old.items():
        cl = states[-1][name]
        assert cl["changes"][-1]["ok"], cl["changes"]
        assert Membership.from_text(cl["config"]) == Membership.of(
            {"n1", "n2", "n3", "n4", "n5"} - {was}), name
        assert {n["id"]: n["member"] for n in cl["nodes"]}[was] == "removed", name
        assert any(f"{was} hands leadership to {cl['leader']}" in x for x in texts(b, name))
        mine = [m for m in messages if m["c"] == name]
        # The operator's request flies from the operator box, the hand-over between nodes.
        assert any(m["k"] == "ConfigChange" and m["s"] == "op" for m in mine), name
        assert any(m["k"] == "ClientReply" and m["d"] == "op" for m in mine), name
        assert any(m["k"] == "TimeoutNow" and m["s"] == was and m["d"] == cl["leader"]
                   for m in mine), name
    # Raft went through the joint configuration; Multi-Paxos has no joint step.
    assert any(st["raft"]["joint"] for st in states)
    assert not any(st["paxos"]["joint"] for st in states)
    for c in b.clusters.values():
        assert not c.sim.violations, c.sim.violations


def test_transfer_leadership_to_a_chosen_node() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        st = await elect(client)
        target = next(n for n in st["node_ids"]
                      if n not in (st["clusters"]["raft"]["leader"],
                                   st["clusters"]["paxos"]["leader"]))
        assert (await command(client, op="transfer", node=target))["ok"]
        await step_until(client, lambda s: all(
            s["clusters"][c]["leader"] == target for c in ("raft", "paxos")), within_ms=3000)

    run(t)


def test_membership_commands_on_one_cluster_and_bad_ones() -> None:
    async def t(client: Client, backend: SimBackend) -> None:
        await elect(client)
        assert (await command(client, op="add_node", cluster="paxos"))["ok"]
        st = await state(client)
        assert [n["id"] for n in st["clusters"]["paxos"]["nodes"]][-1] == "n6"
        assert len(st["clusters"]["raft"]["nodes"]) == 5
        assert st["node_ids"] == ["n1", "n2", "n3", "n4", "n5", "n6"]
        bad = await command(client, op="remove", node="n42")
        assert not bad["ok"] and "unknown node 'n42'" in bad["error"]
        bad = await command(client, op="transfer", node="nobody", cluster="raft")
        assert not bad["ok"] and "unknown node" in bad["error"]
        for _ in range(3):
            assert (await command(client, op="add_node", cluster="paxos"))["ok"]
        full = await command(client, op="add_node", cluster="paxos")  # n1..n9 started
        assert not full["ok"] and "at most 9 nodes" in full["error"]
        # Asked twice: the second waits (busy) until the first is done, then the leader
        # refuses it, and the page says why.
        assert (await command(client, op="remove", node="n2", cluster="raft"))["ok"]
        assert (await command(client, op="remove", node="n2", cluster="raft"))["ok"]
        seen = await step_until(client, lambda s: all(
            c["done"] for c in s["clusters"]["raft"]["changes"]))
        first, second = seen[-1]["clusters"]["raft"]["changes"]
        assert first["ok"] and not second["ok"] and "n2 is not a voter" in second["result"]
        assert any(e["kind"] == "reject" and e["text"].startswith("remove n2 refused")
                   for e in seen[-1]["events"])

    run(t)


def test_remove_leader_preset_shows_both_paths() -> None:
    b = preset("remove-leader", 1450)
    first = {n: c.cluster.leader() for n, c in b.clusters.items()}
    joint_seen = {n: False for n in b.clusters}
    for _ in range(200):  # to 5.45 s, watching the configuration as it changes
        b.advance(20)
        for name, c in b.clusters.items():
            config = c.membership()
            joint_seen[name] |= bool(config and config.joint)
    for name, c in b.clusters.items():
        assert not c.sim.violations, c.sim.violations
        leader = c.cluster.leader()
        assert leader not in (None, first[name]), name
        assert c.membership() == Membership.of(set(c.cluster.ids) - {first[name]}), name
        events = texts(b, name, 1500)
        assert any(f"{first[name]} hands leadership to {leader}" in x for x in events), events
        assert any(x.startswith(f"remove {first[name]} done") for x in events), events
        assert any("committed: SET x" in x for x in texts(b, name, 4000)), name  # writes go on
    assert joint_seen == {"raft": True, "paxos": False}
    paxos_log = texts(b, "paxos", 1500)
    assert any("committed: CONFIG voters=" in x for x in paxos_log)
    assert any("committed: no-op" in x for x in paxos_log)  # the alpha window, filled


def test_mqtt_backend_adds_and_removes_real_nodes(tmp_path: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Against mosquitto and real node processes: "add node" starts n4 (its broker user, its
    joining process) and the page sees it become a voter; removing the leader hands over and
    the page shows the old leader removed. Waits are bounded; nothing asserts a duration."""
    import time

    from consensus import cluster as cl
    from consensus.broker import find_mosquitto
    from consensus.dashboard.mqtt_backend import MqttBackend

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    monkeypatch.chdir(tmp_path)
    cl.up("raft", 3, "dash", None, "gmqtt", False, 50, (500, 900), prefer="mosquitto")

    async def until(backend: MqttBackend, done: Callable[[dict[str, Any]], bool],
                    within_s: float) -> dict[str, Any]:
        end = time.monotonic() + within_s
        while True:
            raft = backend.snapshot()["clusters"]["raft"]
            if done(raft) or time.monotonic() > end:
                return raft
            await asyncio.sleep(0.1)

    def member(raft: dict[str, Any], nid: str) -> str | None:
        return next((n["member"] for n in raft["nodes"] if n["id"] == nid), None)

    async def main() -> None:
        backend = MqttBackend.from_clusters(["dash"])
        await backend.start()
        try:
            raft = await until(backend, lambda r: r["leader"] is not None
                               and all(n["alive"] for n in r["nodes"]), 20)
            assert raft["config"] == "voters=n1,n2,n3", raft
            assert backend.snapshot()["capabilities"]["membership"]
            assert (await backend.apply({"op": "add_node"}))["ok"]
            raft = await until(backend, lambda r: r["changes"][-1]["done"]
                               and member(r, "n4") == "voter", 40)
            assert raft["changes"][-1]["ok"], raft["changes"]
            assert raft["config"] == "voters=n1,n2,n3,n4", raft
            old = raft["leader"]
            assert (await backend.apply({"op": "remove", "node": "leader"}))["ok"]
            raft = await until(backend, lambda r: len(r["changes"]) == 2
                               and r["changes"][-1]["done"]
                               and r["leader"] not in (None, old), 40)
            assert raft["changes"][-1]["ok"], raft["changes"]
            assert member(raft, old) == "removed", raft
            events = [e.text for e in backend.events.events]
            assert any(t.startswith(f"remove {old} done") for t in events), events
            drawn = {m["k"] for m in backend.frame()["messages"]}
            assert {"ConfigChange", "TimeoutNow"} <= drawn, drawn
        finally:
            await backend.close()

    try:
        asyncio.run(main())
    finally:
        cl.down("dash")


def test_add_compacted_preset_catches_the_new_node_up_from_a_snapshot() -> None:
    b = SimBackend(running=False)
    assert b.apply_now({"op": "preset", "name": "add-compacted"})["ok"]
    b.running = False
    assert b.snapshot()["config"]["snapshot_entries"] == 10
    to_new: set[tuple[str, str]] = set()
    for _ in range(120):  # to 6 s
        b.advance(50)
        to_new |= {(m["c"], m["k"]) for m in b.frame()["messages"] if m["d"] == "n6"}
    for name, c in b.clusters.items():
        assert not c.sim.violations, c.sim.violations
        change = c.cluster.membership_events[-1]
        assert (change.change, change.ok) == ("add n6", True), (name, change)
        nodes = {n["id"]: n for n in c.state_json()["nodes"]}
        assert nodes["n6"]["member"] == "voter", name
        # Every node compacted; the new one started from the leader's snapshot.
        assert all(n["snapshot_index"] >= 10 for n in nodes.values()), nodes
    assert {("raft", "InstallSnapshot"), ("paxos", "Learn")} <= to_new
