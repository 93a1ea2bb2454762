"""Real node processes over a real broker (mosquitto, and the embedded amqtt broker).

Each test starts its own cluster, bounded waits only ("until it happens, or give up after N
seconds"), no timing assertions. These clusters share one open broker (`--insecure`): they
test the mechanism, and hostile input must be refused by the nodes themselves; the
authenticated bus is tested in test_bus_auth.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus import cluster as cl
from consensus.broker import BrokerHandle, find_mosquitto, start_broker
from consensus.client import ClusterClient
from consensus.codec import decode
from consensus.telemetry import FaultSettings, StatusReport
from consensus.transport import topics
from consensus.transport.mqtt import make_client

HAVE_MOSQUITTO = find_mosquitto() is not None
BROKERS = [pytest.param("mosquitto", marks=pytest.mark.skipif(
    not HAVE_MOSQUITTO, reason="mosquitto is not installed (apt-get install mosquitto)")),
    "amqtt"]


@pytest.fixture(scope="module", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerHandle]:
    handle = start_broker(prefer=request.param)
    yield handle
    handle.stop()


@pytest.fixture
def cluster_of(broker: BrokerHandle, tmp_path: Path):
    started: list[str] = []

    def up(algorithm: str, name: str) -> cl.ClusterState:
        state = cl.up(algorithm, 3, name, broker.url, "gmqtt", True, 50, (150, 300),
                      root=tmp_path, insecure=True)
        started.append(name)
        leader = asyncio.run(cl.wait_for_leader(state, 15))
        assert leader is not None, _logs(state)
        return state

    yield up
    for name in started:
        cl.down(name, keep_data=True, root=tmp_path)


def _logs(state: cl.ClusterState) -> str:
    return "\n".join(p.read_text()[-2000:] for p in Path(state.directory).glob("*.log"))


async def _request(state: cl.ClusterState, command: str) -> str | None:
    async with ClusterClient(state.broker, state.name, deadline_s=15) as c:
        result = await c.request(command)
        assert result.reply.status.value == "ok", result.reply
        return result.reply.result


async def _request_path(state: cl.ClusterState, hint: str, command: str,
                        expected: str) -> list[str]:
    """Run ``command`` from a client whose leader hint is ``hint``; the nodes it tried."""
    async with ClusterClient(state.broker, state.name, deadline_s=15,
                             watch_status=False, nodes=sorted(state.nodes)) as c:
        c.last_leader = hint
        result = await c.request(command)
        assert (result.reply.status.value, result.reply.result) == ("ok", expected), result
        return result.path


async def _statuses(state: cl.ClusterState, wait_s: float = 1.0) -> dict[str, cl.NodeProcess]:
    return await cl.fetch_status(state, wait_s)


def _until(predicate, within_s: float) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_write_kill_leader_read_restart_catch_up(cluster_of, algorithm):
    state = cluster_of(algorithm, f"t-{algorithm}")
    assert asyncio.run(_request(state, "SET x = 100")) == "OK"
    assert asyncio.run(_request(state, "GET x")) == "100"

    st = asyncio.run(_statuses(state))
    leader = next(n for n, p in st.items() if p.status and p.status.role == "leader")
    os.kill(state.nodes[leader], signal.SIGKILL)
    # A client that knew the old leader tries it once, then finds the new one; a new leader
    # serves the acknowledged write.
    path = asyncio.run(_request_path(state, leader, "GET x", "100"))
    assert path[0] == leader and path.count(leader) == 1, path
    assert asyncio.run(_request(state, "SET y = 2")) == "OK"

    cl.restart_node(state.name, leader, root=Path(state.directory).parent)
    state = cl.ClusterState.load(state.name, Path(state.directory).parent)

    def caught_up() -> bool:
        st = asyncio.run(_statuses(state, 0.5))
        commits = [p.status.commit_index if p.status else -1 for p in st.values()]
        return st[leader].alive and len(set(commits)) == 1 and commits[0] >= 3

    assert _until(caught_up, 20), _logs(state)
    log = (Path(state.directory) / f"{leader}.log").read_text()
    restored = [int(n) for n in re.findall(r"(\d+) records restored", log)]
    assert len(restored) == 2 and restored[0] == 0 and restored[1] > 0, "recovered from its WAL"


def test_hostile_payloads_change_nothing_and_are_counted(cluster_of):
    state = cluster_of("raft", "t-hostile")
    assert asyncio.run(_request(state, "SET before = 1")) == "OK"
    before = asyncio.run(_statuses(state))

    async def barrage() -> None:
        raw = make_client("gmqtt", state.broker, "mallory", lambda t, p: None)
        await raw.connect()
        bad = [b"not json", b'{"type": "Gossip"}', b"[1,2,3]",
               b'{"type": "RequestVote", "cluster": "' + state.name.encode()
               + b'", "src": "evil", "dst": "n1", "term": 99, "last_log_index": 0, '
                 b'"last_log_term": 0, "pre_vote": false}',
               b'{"type": "AppendEntries", "cluster": "other", "leader_id": "n1"}',
               b'{"type": "RequestVoteReply", "cluster": "' + state.name.encode()
               + b'", "src": "n2", "dst": "n1", "term": -5, "granted": true, '
                 b'"pre_vote": false}']
        for nid in state.nodes:
            for payload in bad:
                raw.publish(topics.peer(state.name, nid, "n2"), payload)
        await asyncio.sleep(0.5)
        await raw.close()

    asyncio.run(barrage())
    after = asyncio.run(_statuses(state))
    for nid, p in after.items():
        assert p.alive and p.status is not None and before[nid].status is not None
        assert sum(p.status.rejected.values()) >= 6, p.status.rejected
        assert p.status.term == before[nid].status.term, "no term change from hostile input"
    assert asyncio.run(_request(state, "SET after = 2")) == "OK"


@pytest.mark.skipif(not (HAVE_MOSQUITTO and shutil.which("mosquitto_pub")),
                    reason="needs mosquitto and mosquitto-clients (apt-get install "
                           "mosquitto mosquitto-clients)")
def test_a_cluster_driven_by_mosquitto_pub_and_sub_alone(cluster_of, broker):
    if broker.kind != "mosquitto":
        pytest.skip("the command-line tools are tested against mosquitto")
    state = cluster_of("raft", "t-cli")
    port = str(broker.port)
    statuses = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t",
         f"consensus/{state.name}/+/status", "-C", "6", "-W", "10"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    leader = next(st.leader for st in (decode(StatusReport, s) for s in statuses)
                  if st.leader)
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t",
         f"consensus/{state.name}/client/me", "-C", "1", "-W", "10"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let the subscription register before publishing (no assertion on it)
    request = json.dumps({"type": "ClientRequest", "cluster": state.name, "src": "me",
                          "dst": leader, "seq": 1, "command": "SET x = 100"})
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t",
                    f"consensus/{state.name}/{leader}/request/me", "-m", request], check=True)
    out, _ = sub.communicate(timeout=15)
    reply = json.loads(out)
    assert reply["type"] == "ClientReply" and reply["status"] == "ok" and reply["seq"] == 1
    assert reply["result"] == "OK" and reply["dst"] == "me"
    assert asyncio.run(_request(state, "GET x")) == "100"

    # Fault hooks, as docs/protocol.md shows them: the node's status reports them in force.
    def control(payload: str) -> None:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t",
                        f"consensus/{state.name}/{leader}/control", "-m", payload], check=True)

    def faults() -> FaultSettings | None:
        st = asyncio.run(_statuses(state, 0.5))[leader].status
        return st.faults if st else None

    control('{"op": "delay", "ms": 5}')
    assert _until(lambda: faults() == FaultSettings(delay_ms=5.0), 10)
    control('{"op": "heal"}')
    assert _until(lambda: faults() == FaultSettings(), 10)


def test_a_short_experiment_on_the_bus(broker, tmp_path):
    from typer.testing import CliRunner

    from consensus.cli import app

    spec = tmp_path / "bus.yaml"
    spec.write_text(
        "name: bus\ntransport: mqtt\nseeds: [1]\ncluster: {nodes: 3}\n"
        "workload: {clients: 8, rate: 100, duration_s: 3, keys: 5, request_timeout_ms: 500}\n"
        "faults:\n  - {at: 1, crash: leader}\n  - {at: 2, restart: crashed}\nsettle_s: 2\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--json",
                                      "--broker", broker.url])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"], summary["failures"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transport"] == "mqtt" and manifest["mqtt_client"] == "gmqtt"
    for algo in ("raft", "paxos"):
        metrics = json.loads((out / algo / "seed-1/metrics.json").read_text())
        assert metrics["metrics"]["operations"]["ok"] > 50
        events = [json.loads(line) for line in
                  (out / algo / "seed-1/events.jsonl").read_text().splitlines()]
        crash = next(e for e in events if e["type"] == "fault" and e["action"] == "crash")
        assert not crash["skipped"] and crash["label"] == f"crash {crash['nodes'][0]}"
        # The invariants come from the shared checker, fed the nodes restored from their WALs.
        assert {c["name"]: c["verdict"] for c in metrics["checks"]}["invariants"] == "pass"
        assert metrics["metrics"]["committed"] > 0
        _assert_bus_trace(out / algo / "seed-1", crash)
    # ... which the report draws as a message-sequence diagram.
    assert (out / "figures" / "sequence.svg").exists()
    assert "arrivals at the runner's subscriber" in (out / "report.md").read_text()


def _assert_bus_trace(seed_dir: Path, crash: dict) -> None:
    """The runner traced the inboxes around the first fault: protocol messages only, each
    with its arrival time at the runner's subscriber, the election after the crash among
    them, and messages to the crashed node marked lost."""
    from consensus.algorithms import message_classes
    from consensus.messages import Phase

    trace = [json.loads(line) for line in (seed_dir / "trace.jsonl").read_text().splitlines()]
    assert trace
    members = {"n1", "n2", "n3"}
    for m in trace:
        assert m["observed"] == "broker" and {m["src"], m["dst"]} <= members, m
        assert m["delivered"] in (None, m["sent"]), m
        # The window is set around the fault's scheduled time (1 s); it may fire a little later.
        assert 1000 - 200 - 1 <= m["sent"] <= 1000 + 800 + 1, m
    after = [m for m in trace if m["sent"] > crash["t"]]
    kinds = message_classes()
    assert any(kinds[m["kind"]].phase == Phase.ASK_FOR_VOTES for m in after
               if m["kind"] in kinds), sorted({m["kind"] for m in after})
    crashed = crash["nodes"][0]
    assert all(m["delivered"] is None for m in after if m["dst"] == crashed)


def test_the_experiment_bus_cluster_attaches_to_a_running_cluster(cluster_of):
    """What the dashboard's bus backend could drive: a cluster started by `cluster up`,
    watched through StatusReports, its fault hooks on Control; closing leaves it running."""
    from consensus.experiment.bus import BusCluster

    state = cluster_of("raft", "attach")

    async def watch() -> tuple[str | None, set[str]]:
        bus = BusCluster.attach(state)
        await bus.start()
        try:
            await bus.wait_for_leader()
            bus.set_blocked(set(), "heal")  # a Control every node accepts
            await asyncio.sleep(0.2)
            return bus.leader(), set(bus.statuses())
        finally:
            await bus.close()

    leader, seen = asyncio.run(watch())
    assert leader in state.nodes and seen == set(state.nodes)
    assert all(cl.is_ours(pid) for pid in state.nodes.values()), "attach never stops nodes"
