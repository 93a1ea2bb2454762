"""The node runtime's input path, without a broker: hostile payloads change nothing."""

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import MAX_PAYLOAD, DecodeError, decode, encode, encode_message
from consensus.messages import ClientRequest
from consensus.raft.messages import AppendEntries, Entry, RequestVote
from consensus.runtime import NodeOptions, NodeRuntime
from consensus.telemetry import Control, ControlOp, FaultSettings, StatusReport
from consensus.transport import topics


class FakeMqtt:
    """Records publishes instead of talking to a broker."""

    library = "fake"

    def __init__(self, library, url, client_id, on_message, identity=None):
        self.on_message = on_message
        self.published: list[tuple[str, bytes]] = []

    async def connect(self):
        pass

    async def subscribe(self, *topics, qos=0):
        pass

    def publish(self, topic, payload, qos=0):
        self.published.append((topic, payload))

    async def close(self):
        pass


def make_runtime(tmp_path, incarnation: str | None = None) -> NodeRuntime:
    opts = NodeOptions("raft", "n2", ("n1", "n2", "n3"), "demo", "mqtt://127.0.0.1:1",
                       tmp_path, fsync=False, incarnation=incarnation)
    return NodeRuntime(opts, client_factory=FakeMqtt)


def durable_state(rt: NodeRuntime):
    n = rt.node
    return (n.term, n.voted_for, list(n.log.entries), n.commit_index, n.role,
            rt.storage.path.read_bytes())


INBOX = topics.peer("demo", "n2", "n1")  # n2's inbox for what n1 sends
GOOD = AppendEntries(src="n1", dst="n2", term=1, prev_log_index=0, prev_log_term=0,
                     entries=(Entry(1, 1, None),), leader_commit=0)


def barrage() -> list[tuple[bytes, str]]:
    good = orjson.loads(encode_message(GOOD, "demo"))
    vote = orjson.loads(encode_message(
        RequestVote(src="n1", dst="n2", term=9, last_log_index=0, last_log_term=0), "demo"))

    def variant(base, **changes):
        return orjson.dumps({**base, **changes})

    return [
        (b"\xff\xfe not json", "not-json"),
        (b'{"type": "Gossip"}', "unknown-type"),
        (variant(good, leader_term="5"), "bad-field"),
        (variant(vote, term=True), "bad-field"),
        (variant(good, prev_log_index=-3), "negative"),
        (variant(vote, last_log_index=-1), "negative"),
        (variant(vote, src="mallory"), "foreign-sender"),
        (variant(vote, cluster="other"), "foreign-cluster"),
        (variant(vote, dst="n3"), "misrouted"),
        (variant(good, entries=[{"term": 1, "index": 7, "command": None}]), "bad-field"),
        (b"{" + b" " * MAX_PAYLOAD + b"}", "too-large"),
        # A status or a control command is not a protocol message (no "type").
        (encode(Control(ControlOp.HEAL)), "unknown-type"),
        (b'{"id": "n1", "role": "leader", "term": 99}', "unknown-type"),
    ]


def test_hostile_barrage_changes_nothing_and_is_counted(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)
        rt.drain()
        before = durable_state(rt)
        for payload, _ in barrage():
            rt.on_message(INBOX, payload)
        after = durable_state(rt)
        assert after == before, "term, vote, log, commit and WAL are untouched"
        expected = {}
        for _, reason in barrage():
            expected[reason] = expected.get(reason, 0) + 1
        assert dict(rt.rejected) == expected
        assert rt.status_report().rejected == expected
        # ... and the node still works: a real AppendEntries is taken.
        rt.on_message(INBOX, encode_message(GOOD, "demo"))
        assert rt.node.log.last_index == 1 and rt.node.leader == "n1"
        assert rt.client.published, "it answered"
        rt.storage.close()

    asyncio.run(go())


CONTROL = topics.control("demo", "n2")
BAD_CONTROLS = [
    b"nonsense", b'{"op": "explode"}', b'{"op": "loss"}', b'{"op": "loss", "rate": 7}',
    b'{"op": "delay", "ms": -1}', b'{"op": "delay", "rate": 0.5}',
    b'{"op": "drop_to", "peers": "n1"}', b'{"op": "heal", "extra": 1}', b"[]",
    b'{"op": "heal", "pad": "' + b"x" * MAX_PAYLOAD + b'"}',
]


def test_bad_control_commands_are_counted_and_good_ones_applied(tmp_path, caplog):
    async def go():
        rt = make_runtime(tmp_path)
        rt.drain()
        rt.on_message(CONTROL, encode(Control(ControlOp.LOSS, rate=0.25)))
        before = (durable_state(rt), rt.faults)
        # A status published to the control topic by mistake is refused like any other.
        for payload in [*BAD_CONTROLS, encode(rt.status_report())]:
            rt.on_message(CONTROL, payload)
        assert (durable_state(rt), rt.faults) == before, "nothing changed"
        assert dict(rt.rejected) == {"bad-control": len(BAD_CONTROLS) + 1}
        assert rt.status_report().rejected == {"bad-control": len(BAD_CONTROLS) + 1}
        logged = [r for r in caplog.records if "bad-control" in r.getMessage()]
        assert len(logged) == 1, "the first one is logged, the rest only counted"

        rt.on_message(CONTROL, b'{"op": "drop_from", "peers": ["n1"]}')
        rt.on_message(INBOX, encode_message(GOOD, "demo"))
        assert rt.node.log.last_index == 0, "dropped by the fault hook"
        rt.on_message(CONTROL, encode(Control(ControlOp.DROP_TO, peers=("n3", "n1", "n3"))))
        rt.on_message(CONTROL, encode(Control(ControlOp.DELAY, ms=5.0)))
        assert rt.faults == FaultSettings(drop_to=("n1", "n3"), drop_from=("n1",), loss=0.25,
                                          delay_ms=5.0)
        rt.on_message(CONTROL, b'{"op": "heal"}')
        assert rt.faults == FaultSettings()
        rt.on_message(INBOX, encode_message(GOOD, "demo"))
        assert rt.node.log.last_index == 1
        rt.storage.close()

    asyncio.run(go())


def test_campaign_control_starts_an_election(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)
        rt.drain()
        assert rt.node.status().role == "follower"
        rt.on_message(CONTROL, encode(Control(ControlOp.CAMPAIGN)))
        assert rt.node.status().role in ("precandidate", "candidate")
        asked = {t for t, p in rt.client.published
                 if "/from/" in t and b'"type":"RequestVote"' in p}
        assert asked == {topics.peer("demo", "n1", "n2"), topics.peer("demo", "n3", "n2")}
        assert not rt.rejected
        rt.storage.close()

    asyncio.run(go())


def test_published_status_is_a_status_report_with_the_fault_hooks(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)
        rt.on_message(CONTROL, encode(Control(ControlOp.DROP_TO, peers=("n3",))))
        rt.on_message(INBOX, b"junk")
        rt.publish_status()
        topic, payload = rt.client.published[-1]
        assert topic == topics.status("demo", "n2")
        st = decode(StatusReport, payload)
        assert (st.id, st.algorithm, st.cluster, st.role) == ("n2", "raft", "demo", "follower")
        assert st.faults == FaultSettings(drop_to=("n3",))
        assert st.rejected == {"not-json": 1} and st.messages_in == 1
        assert st.election_timeout_in_ms is not None and st.election_timeout_in_ms >= 0
        rt.storage.close()

    asyncio.run(go())


def test_client_redirect_is_published_to_the_requesting_connection(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)
        # One connection ("conn1") carries two logical clients; both replies go back to it.
        for client in ("me", "you"):
            rt.on_message(topics.request("demo", "n2", "conn1"), encode_message(
                ClientRequest(src=client, dst="n2", seq=1, command="GET x"), "demo"))
        replies = [orjson.loads(p) for t, p in rt.client.published
                   if t == topics.client("demo", "conn1")]
        assert [(r["dst"], r["status"]) for r in replies] == [("me", "redirect"),
                                                               ("you", "redirect")]
        assert not [t for t, _ in rt.client.published if t.endswith("/client/me")]
        rt.storage.close()

    asyncio.run(go())


def test_a_claimed_sender_other_than_the_topics_is_dropped_and_counted(tmp_path):
    """On an authenticated broker the topic's sender is the publisher's user name: n3 may
    not speak for n1, and a message that says otherwise never reaches the node."""
    async def go():
        rt = make_runtime(tmp_path, incarnation="inc-2")
        rt.drain()
        before = durable_state(rt)
        forged = encode_message(GOOD, "demo", "inc-2")  # claims n1, a valid current message
        rt.on_message(topics.peer("demo", "n2", "n3"), forged)
        # A protocol message on the client request topic, and a request on a peer topic.
        rt.on_message(topics.request("demo", "n2", "mallory"), forged)
        rt.on_message(INBOX, encode_message(
            ClientRequest(src="me", dst="n2", seq=1, command="SET x = 1"), "demo", "inc-2"))
        # A real message of n1 from an earlier incarnation (a replay), and one with none.
        rt.on_message(INBOX, encode_message(GOOD, "demo", "inc-1"))
        rt.on_message(INBOX, encode_message(GOOD, "demo"))
        assert durable_state(rt) == before
        assert dict(rt.rejected) == {"sender-mismatch": 1, "wrong-topic": 2,
                                     "stale-incarnation": 2}
        assert rt.status_report().rejected == dict(rt.rejected)
        rt.on_message(INBOX, forged)  # the same bytes on n1's own topic are taken
        assert rt.node.log.last_index == 1 and rt.node.leader == "n1"
        rt.storage.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.builds(
    lambda d: orjson.dumps(d),
    st.dictionaries(st.sampled_from(["type", "src", "dst", "cluster", "term", "leader_term",
                                     "entries", "seq", "command", "ballot", "incarnation"]),
                    st.none() | st.integers(-3, 5) | st.text(max_size=5)
                    | st.sampled_from(["AppendEntries", "RequestVote", "n1", "demo", "Accept",
                                       "inc"]),
                    max_size=8)),
       st.sampled_from([INBOX, topics.peer("demo", "n2", "n3"),
                        topics.peer("demo", "n2", "mallory"),
                        topics.request("demo", "n2", "c1"), topics.status("demo", "n1")]),
       st.sampled_from([None, "inc"]))
def test_fuzzed_input_never_crashes_or_changes_state(fuzz_dir, payload, topic, incarnation):
    """On every topic a node listens to (and one it does not), as the authenticated
    cluster's node (incarnation checked) and as an open one."""
    async def go():
        rt = make_runtime(fuzz_dir, incarnation)
        before = durable_state(rt)
        rt.on_message(topic, payload)
        assert durable_state(rt) == before
        assert "handler-error" not in rt.rejected
        rt.storage.close()

    asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100) | st.builds(
    lambda d: orjson.dumps(d),
    st.dictionaries(st.sampled_from(["op", "peers", "rate", "ms", "type"]),
                    st.none() | st.floats(-1, 2) | st.integers(-3, 30) | st.text(max_size=4)
                    | st.sampled_from([op.value for op in ControlOp])
                    | st.lists(st.sampled_from(["n1", "n3", "zz"]), max_size=3),
                    max_size=4)))
def test_fuzzed_control_is_applied_or_counted_never_crashes(fuzz_dir, payload):
    async def go():
        rt = make_runtime(fuzz_dir)
        before = durable_state(rt)
        rt.on_message(CONTROL, payload)
        try:
            cmd = decode(Control, payload)
        except DecodeError:
            cmd = None
        if cmd is None:
            assert dict(rt.rejected) == {"bad-control": 1} and rt.faults == FaultSettings()
        else:
            assert not rt.rejected and rt.faults == FaultSettings().apply(cmd)
        if cmd is None or cmd.op is not ControlOp.CAMPAIGN:
            assert durable_state(rt) == before
        rt.storage.close()

    asyncio.run(go())
