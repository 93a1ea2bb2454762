"""The codec: every message round-trips; anything malformed is refused with a reason."""

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import (
    MAX_PAYLOAD,
    DecodeError,
    _codec,
    _Invalid,
    decode_message,
    decode_record,
    encode_message,
    encode_record,
    message_to_dict,
    record_to_dict,
)
from consensus.messages import ClientReply, ClientRequest, Command, ReplyStatus
from consensus.paxos import messages as px
from consensus.raft import messages as rf

MEMBERS = ["n1", "n2", "n3"]
CMD = Command("c1", 7, "SET x = 100")
B = px.Ballot(3, 0, "n1")

MESSAGES = [
    ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 100"),
    ClientReply(src="n1", dst="c1", seq=1, status=ReplyStatus.REDIRECT, leader="n2"),
    rf.RequestVote(src="n1", dst="n2", term=4, last_log_index=9, last_log_term=3, pre_vote=True),
    rf.RequestVoteReply(src="n2", dst="n1", term=4, granted=True),
    rf.AppendEntries(src="n1", dst="n2", term=3, prev_log_index=41, prev_log_term=3,
                     entries=(rf.Entry(3, 42, CMD), rf.Entry(3, 43, None)), leader_commit=41),
    rf.AppendEntriesReply(src="n2", dst="n1", term=3, success=False, reject_index=41,
                          conflict_term=2, conflict_index=30),
    px.Prepare(src="n1", dst="n2", ballot=B, first_slot=5),
    px.Prepare(src="n1", dst="n2", ballot=B, first_slot=5, pre_vote=True),
    px.Promise(src="n2", dst="n1", ballot=B, first_slot=5, chosen=(CMD, None),
               accepted=(px.AcceptedValue(7, px.Ballot(2, 1, "n2"), CMD),), commit_index=6),
    px.Accept(src="n1", dst="n2", ballot=B, first_slot=8, commands=(CMD, None), commit_index=7),
    px.Accepted(src="n2", dst="n1", ballot=B, first_slot=8, count=2, commit_index=7,
                leader_commit=7, accepted_through=9),
    px.Commit(src="n1", dst="n3", ballot=B, first_slot=1, commands=(None, CMD), commit_index=2),
    px.Nack(src="n2", dst="n1", ballot=B, promised=px.Ballot(4, 2, "n3")),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.kind)
def test_every_message_round_trips(msg):
    payload = encode_message(msg, "demo")
    assert decode_message(payload, cluster="demo", members=MEMBERS) == msg


def test_append_entries_is_in_the_tutorials_shape():
    data = orjson.loads(encode_message(MESSAGES[4], "demo"))
    assert data["type"] == "AppendEntries"
    assert (data["leader_term"], data["leader_id"]) == (3, "n1")
    assert (data["prev_log_index"], data["prev_log_term"], data["leader_commit"]) == (41, 3, 41)
    assert data["entries"][0]["index"] == 42 and data["entries"][0]["term"] == 3
    assert data["entries"][0]["command"]["text"] == "SET x = 100"


@pytest.mark.parametrize("record", [
    rf.HardState(3, "n1"), rf.HardState(0, None), rf.LogAppend((rf.Entry(1, 1, CMD),)),
    rf.CommitMark(9), px.Promised(B), px.RoundUsed(4), px.AcceptedRun(3, B, (CMD, None)),
    px.ChosenRun(1, (None,)), px.Committed(5),
], ids=lambda r: type(r).__name__)
def test_every_record_round_trips(record):
    assert decode_record(encode_record(record)) == record
    # The fast encoder (orjson serialising nested dataclasses itself) writes the same bytes
    # as the strict one that spells every field out.
    assert encode_record(record) == orjson.dumps(record_to_dict(record))


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.kind)
def test_fast_encoder_writes_exactly_what_the_strict_one_does(msg):
    assert encode_message(msg, "demo") == orjson.dumps(message_to_dict(msg, "demo"))
    assert encode_message(msg) == orjson.dumps(message_to_dict(msg))


GOOD = encode_message(MESSAGES[4], "demo")


def mutate(**changes) -> bytes:
    data = orjson.loads(GOOD)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return orjson.dumps(data)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"SET x = 100", "not-json"),
    (b"[1, 2]", "not-json"),
    (b'{"type": "Gossip", "src": "n1"}', "unknown-type"),
    (b'{"no": "type"}', "unknown-type"),
    (mutate(leader_term="3"), "bad-field"),
    (mutate(leader_term=True), "bad-field"),
    (mutate(leader_term=3.5), "bad-field"),
    (mutate(entries={"0": 1}), "bad-field"),
    (mutate(prev_log_index=-1), "negative"),
    (mutate(leader_commit=...), "bad-field"),
    (mutate(extra=1), "bad-field"),
    (mutate(leader_id="mallory"), "foreign-sender"),
    (mutate(cluster="other"), "foreign-cluster"),
    (mutate(entries=[{"term": 3, "index": 99, "command": None}]), "bad-field"),  # wrong index
    (mutate(entries=[{"term": 9, "index": 42, "command": None}]), "bad-field"),  # future term
    (b" " * (MAX_PAYLOAD + 1), "too-large"),
])
def test_malformed_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(DecodeError) as info:
        decode_message(payload, cluster="demo", members=MEMBERS)
    assert info.value.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data):
    with contextlib.suppress(DecodeError):
        decode_message(data, cluster="demo", members=MEMBERS)


@settings(max_examples=500)
@given(st.sampled_from(MESSAGES), st.text(max_size=16), json_values)
def test_any_field_replaced_by_any_json_is_decoded_or_refused_cleanly(msg, key, value):
    data = orjson.loads(encode_message(msg, "demo"))
    field = key if key not in ("", "type") else sorted(data)[len(key) % len(data)]
    data[field] = value
    try:
        decoded = decode_message(orjson.dumps(data), cluster="demo", members=MEMBERS)
    except DecodeError:
        return
    assert type(decoded) is type(msg)


def fast_and_strict_agree(cls: type, data: object) -> None:
    """The generated fast decoder accepts exactly what the strict one accepts, equal."""
    try:
        fast = _codec.fast_struct(cls)(data)
    except _Invalid:
        fast = _Invalid
    try:
        strict = _codec.struct(cls)[1](data, cls.__name__)
    except DecodeError:
        strict = _Invalid
    assert fast == strict


@settings(max_examples=1000)
@given(st.sampled_from(MESSAGES), st.text(max_size=16), json_values, st.booleans())
def test_fast_decoder_agrees_with_the_strict_one(msg, key, value, nested):
    data = orjson.loads(encode_message(msg, "demo"))
    fast_and_strict_agree(type(msg), data)
    lists = [k for k, v in data.items() if type(v) is list and v and type(v[0]) is dict]
    target = data[lists[0]][0] if nested and lists else data
    field = key if key not in ("", "type") else sorted(target)[len(key) % len(target)]
    target[field] = value
    fast_and_strict_agree(type(msg), data)
