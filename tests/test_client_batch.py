"""The batching client protocol: ClientBatch / ClientReplies framing, the node's handling of
batches (per-item refusal), the sender's coalescing, and a real cluster answering batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import cluster as cl
from consensus.broker import find_mosquitto, start_broker
from consensus.client import ClientConnection, ClusterClient
from consensus.client_batch import RequestBatcher
from consensus.codec import (
    MAX_PAYLOAD,
    DecodeError,
    decode_client_batch,
    decode_client_replies,
    decode_message,
    encode_client_batch,
)
from consensus.messages import ClientBatch, ClientReplies, ClientReply, ClientRequest, ReplyStatus
from consensus.transport import topics
from consensus.transport.mqtt import make_client
from tests.test_runtime_input import durable_state, make_runtime


def req(client: str, seq: int, command: str = "SET x = 1", dst: str = "n2") -> ClientRequest:
    return ClientRequest(src=client, dst=dst, seq=seq, command=command)


def reply(client: str, seq: int, status: ReplyStatus = ReplyStatus.OK, result: str | None = "OK",
          leader: str | None = None) -> ClientReply:
    return ClientReply(src="n1", dst=client, seq=seq, status=status, result=result,
                       leader=leader)


# -- framing -----------------------------------------------------------------------------------


def test_a_batch_round_trips_with_each_request_its_own_client_and_seq():
    batch = ClientBatch("n2", (req("a", 1), req("b", 7, "GET x"), req("a", 2, "DEL x")))
    (payload,) = encode_client_batch(batch, "demo")
    assert orjson.loads(payload) == {
        "type": "ClientBatch", "cluster": "demo", "dst": "n2",
        "requests": [["a", 1, "SET x = 1"], ["b", 7, "GET x"], ["a", 2, "DEL x"]]}
    assert decode_client_batch(payload, cluster="demo") == (batch, [])


def test_replies_round_trip_every_status():
    batch = ClientReplies("n1", (reply("a", 1), reply("b", 2, ReplyStatus.ERROR, "bad CAS"),
                                 reply("c", 3, ReplyStatus.REDIRECT, None, "n3")))
    (payload,) = encode_client_batch(batch, "demo")
    assert orjson.loads(payload)["replies"][2] == ["c", 3, "redirect", None, "n3"]
    assert decode_client_replies(payload, cluster="demo") == (batch, [])


def test_one_item_travels_as_the_plain_message_the_docs_show():
    (payload,) = encode_client_batch(ClientBatch("n2", (req("me", 1),)), "demo")
    assert decode_message(payload) == req("me", 1)
    (payload,) = encode_client_batch(ClientReplies("n1", (reply("me", 1),)), "demo")
    assert decode_message(payload) == reply("me", 1)
    # ... and the plain forms are read as batches of one.
    assert decode_client_replies(payload) == (ClientReplies("n1", (reply("me", 1),)), [])
    (payload,) = encode_client_batch(ClientBatch("n2", (req("me", 1),)), "demo")
    assert decode_client_batch(payload) == (ClientBatch("n2", (req("me", 1),)), [])


def test_a_batch_too_large_for_one_message_is_split_in_order():
    big = "SET k = " + "v" * 200_000
    batch = ClientBatch("n2", tuple(req(f"c{i}", i, big) for i in range(12)))
    payloads = encode_client_batch(batch, "demo")
    assert len(payloads) > 1 and all(len(p) <= MAX_PAYLOAD for p in payloads)
    got = [r for p in payloads for r in decode_client_batch(p, cluster="demo")[0].requests]
    assert tuple(got) == batch.requests


def test_a_request_too_large_to_send_at_all_is_a_clear_error():
    with pytest.raises(ValueError, match="exceeds the 1048576-byte message limit"):
        encode_client_batch(ClientBatch("n2", (req("a", 1, "x" * MAX_PAYLOAD),)), "demo")


@pytest.mark.parametrize(("payload", "reason"), [
    ({"type": "ClientBatch", "dst": "n2", "requests": []}, "bad-field"),
    ({"type": "ClientBatch", "dst": "n2", "requests": {"a": 1}}, "bad-field"),
    ({"type": "ClientBatch", "requests": [["a", 1, "GET x"]]}, "bad-field"),
    ({"type": "ClientBatch", "dst": 2, "requests": [["a", 1, "GET x"]]}, "bad-field"),
    ({"type": "ClientBatch", "dst": "n2", "requests": [["a", 1, "GET x"]], "src": "a"},
     "bad-field"),
    ({"type": "ClientBatch", "cluster": "other", "dst": "n2", "requests": [["a", 1, "x"]]},
     "foreign-cluster"),
    ({"type": "ClientReplies", "src": "n1", "replies": [["a", 1, "ok", "OK", None]]},
     "wrong-topic"),
])
def test_a_bad_envelope_refuses_the_whole_batch(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_client_batch(orjson.dumps(payload), cluster="demo")
    assert err.value.reason == reason


def test_a_bad_item_is_refused_alone():
    items = [["a", 1, "SET x = 1"], ["", 2, "GET x"], ["b", -1, "GET x"], ["c", True, "x"],
             ["d", 1, None], ["e", 1], "f", ["g" * 129, 1, "x"], ["h", 3, "GET y"]]
    batch, bad = decode_client_batch(orjson.dumps(
        {"type": "ClientBatch", "dst": "n2", "requests": items}), cluster="demo")
    assert [(r.src, r.seq) for r in batch.requests] == [("a", 1), ("h", 3)]
    assert len(bad) == 7 and {e.reason for e in bad} == {"bad-item"}
    assert "requests[1]" in str(bad[0])
    _, bad = decode_client_replies(orjson.dumps(
        {"type": "ClientReplies", "src": "n1",
         "replies": [["a", 1, "ok", "OK", None], ["b", 1, "maybe", None, None],
                     ["c", 1, "ok", 5, None]]}))
    assert len(bad) == 2


# -- the node ----------------------------------------------------------------------------------


def test_a_batch_is_stepped_per_request_and_answered_in_one_publish(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)  # n2, a follower: it redirects every request
        payload = orjson.dumps({"type": "ClientBatch", "cluster": "demo", "dst": "n2",
                                "requests": [["me", 1, "GET x"], ["me", "two", "GET x"],
                                             ["you", 5, "SET y = 2"]]})
        rt.on_message(topics.request("demo", "n2", "conn1"), payload)
        assert dict(rt.rejected) == {"bad-item": 1}
        (out,) = [p for t, p in rt.client.published if t == topics.client("demo", "conn1")]
        replies, bad = decode_client_replies(out, cluster="demo")
        assert not bad and [(r.dst, r.seq, r.status) for r in replies.replies] == [
            ("me", 1, ReplyStatus.REDIRECT), ("you", 5, ReplyStatus.REDIRECT)]
        rt.storage.close()

    asyncio.run(go())


def test_a_batch_for_another_node_or_on_a_peer_topic_changes_nothing(tmp_path):
    async def go():
        rt = make_runtime(tmp_path)
        before = durable_state(rt)
        batch = ClientBatch("n3", (req("me", 1, dst="n3"),))
        many = ClientBatch("n2", (req("me", 1), req("you", 1)))
        rt.on_message(topics.request("demo", "n2", "c"), orjson.dumps(
            {"type": "ClientBatch", "dst": "n3", "requests": [["me", 1, "GET x"]]}))
        rt.on_message(topics.request("demo", "n2", "c"), encode_client_batch(batch)[0])
        rt.on_message(topics.peer("demo", "n2", "n1"), encode_client_batch(many, "demo")[0])
        assert durable_state(rt) == before
        assert not [t for t, _ in rt.client.published if "/client/" in t]
        assert dict(rt.rejected) == {"misrouted": 2, "wrong-topic": 1}
        rt.storage.close()

    asyncio.run(go())


def test_fault_hooks_apply_per_request_and_per_publish(tmp_path):
    """drop_from names senders: a client's requests are dropped from a batch, the others
    taken; loss drops a whole publish, as a lossy link would."""
    async def go():
        rt = make_runtime(tmp_path)
        rt.on_message(topics.control("demo", "n2"), b'{"op": "drop_from", "peers": ["me"]}')
        batch = encode_client_batch(ClientBatch("n2", (req("me", 1), req("you", 1))), "demo")
        rt.on_message(topics.request("demo", "n2", "c"), batch[0])
        (out,) = [p for t, p in rt.client.published if t == topics.client("demo", "c")]
        assert [r.dst for r in decode_client_replies(out)[0].replies] == ["you"]
        assert rt.counts["dropped"] == 1
        rt.on_message(topics.control("demo", "n2"), b'{"op": "loss", "rate": 1.0}')
        rt.on_message(topics.request("demo", "n2", "c"), batch[0])
        assert rt.counts["dropped"] == 3  # "me" by drop_from again, "you" with the publish
        rt.storage.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-batch")


_ITEM = st.lists(st.none() | st.integers(-2, 3) | st.booleans() | st.text(max_size=3)
                 | st.sampled_from(["me", "GET x", "SET x = 1"]), max_size=4)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries(
    {"type": st.just("ClientBatch")},
    optional={"dst": st.sampled_from(["n2", "n3", 2]), "cluster": st.sampled_from(["demo", "x"]),
              "requests": st.lists(_ITEM | st.integers(-5, 5), max_size=4) | st.text(max_size=2),
              "incarnation": st.text(max_size=2), "seq": st.integers(-1, 2)}))
def test_fuzzed_batches_never_crash_a_node(fuzz_dir, data):
    async def go():
        rt = make_runtime(fuzz_dir)
        before = durable_state(rt)
        rt.on_message(topics.request("demo", "n2", "c"), orjson.dumps(data))
        assert durable_state(rt) == before  # a follower only redirects
        assert "handler-error" not in rt.rejected
        rt.storage.close()

    asyncio.run(go())


# -- the sender --------------------------------------------------------------------------------


def test_requests_sent_in_one_turn_leave_as_one_publish_per_node():
    async def go():
        out: list[tuple[str, bytes]] = []
        batcher = RequestBatcher("demo", "conn1", lambda t, p: out.append((t, p)))
        for i in range(5):
            batcher.send(req(f"c{i}", 1, dst="n1"))
        batcher.send(req("z", 1, dst="n3"))
        assert not out  # linger 0: at the end of this turn, not at once
        await asyncio.sleep(0)
        assert [t for t, _ in out] == [topics.request("demo", "n1", "conn1"),
                                       topics.request("demo", "n3", "conn1")]
        assert len(decode_client_batch(out[0][1])[0].requests) == 5
        assert decode_message(out[1][1]) == req("z", 1, dst="n3")  # alone: a plain request
        batcher.send(req("c0", 2, dst="n1"))
        batcher.flush()  # a caller's own burst boundary
        assert len(out) == 3 and (batcher.publishes, batcher.requests) == (3, 7)
        with pytest.raises(ValueError, match="message limit"):
            batcher.send(req("big", 1, "x" * MAX_PAYLOAD, dst="n1"))

    asyncio.run(go())


# -- a real cluster ----------------------------------------------------------------------------


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_clients_sharing_a_connection_are_answered_in_batches(algorithm, tmp_path: Path):
    broker = start_broker(prefer="mosquitto")
    state = cl.up(algorithm, 3, f"batch-{algorithm}", broker.url, "gmqtt", False, 50,
                  (150, 300), root=tmp_path, insecure=True)
    try:
        assert asyncio.run(cl.wait_for_leader(state, 15)) is not None

        async def go() -> tuple[list[str | None], RequestBatcher]:
            async with ClientConnection(broker.url, state.name, watch_status=False) as conn:
                async def one(i: int, command: str) -> str | None:
                    async with ClusterClient(broker.url, state.name, client_id=f"w{i}",
                                             nodes=sorted(state.nodes), watch_status=False,
                                             deadline_s=15, connection=conn) as c:
                        result = await c.request(command)
                        assert result.reply.status is ReplyStatus.OK, result
                        return result.reply.result
                writes = await asyncio.gather(*(one(i, f"SET k{i} = {i}") for i in range(20)))
                reads = await asyncio.gather(*(one(i, f"GET k{i}") for i in range(20, 40)))
                return writes + reads, conn.batcher

        results, batcher = asyncio.run(go())
        assert results[:20] == ["OK"] * 20
        assert results[20:] == [None] * 20  # k20..k39 were never set
        assert batcher.publishes < batcher.requests  # batches did form

        async def raw() -> list[ClientReply]:
            got: list[ClientReply] = []
            done = asyncio.Event()

            def on_message(_t: str, payload: bytes) -> None:
                got.extend(decode_client_replies(payload, cluster=state.name)[0].replies)
                if len(got) >= 2:
                    done.set()

            client = make_client("gmqtt", broker.url, "raw1", on_message)
            await client.connect()
            await client.subscribe(topics.client(state.name, "raw1"))
            leader = await cl.wait_for_leader(state, 5)
            assert leader is not None
            client.publish(topics.request(state.name, leader, "raw1"), orjson.dumps(
                {"type": "ClientBatch", "cluster": state.name, "dst": leader,
                 "requests": [["r1", 1, "GET k3"], ["r2", "x", "GET k3"], ["r3", 1, "GET k4"]]}))
            await asyncio.wait_for(done.wait(), 10)
            await client.close()
            return got

        got = asyncio.run(raw())
        assert sorted((r.dst, r.result) for r in got) == [("r1", "3"), ("r3", "4")]
    finally:
        cl.down(state.name, keep_data=False, root=tmp_path)
        broker.stop()


def test_the_protocol_docs_batch_examples_decode():
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    (batch,) = [b for b in blocks if '"ClientBatch"' in b]
    (replies,) = [b for b in blocks if '"ClientReplies"' in b]
    got, bad = decode_client_batch(batch.encode(), cluster="demo")
    assert not bad and [(r.src, r.seq) for r in got.requests] == [("c1", 7), ("c2", 4),
                                                                  ("c1", 8)]
    got_replies, bad = decode_client_replies(replies.encode(), cluster="demo")
    assert not bad and [r.result for r in got_replies.replies] == ["OK", "100", "0"]
