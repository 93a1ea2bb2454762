"""The codec: every message round-trips; anything malformed is refused with a reason."""

import contextlib
from dataclasses import FrozenInstanceError, dataclass, replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import (
    _WIRE_FORMS,
    MAX_PAYLOAD,
    DecodeError,
    _codec,
    _Invalid,
    decode,
    decode_message,
    decode_record,
    encode,
    encode_message,
    encode_record,
    message_to_dict,
    record_to_dict,
    to_jsonable,
)
from consensus.messages import ClientReply, ClientRequest, Command, ReplyStatus
from consensus.paxos import messages as px
from consensus.raft import messages as rf
from consensus.telemetry import Control, ControlOp, FaultSettings, StatusReport, leader_of

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
    rf.AppendEntries(src="n1", dst="n3", term=5, prev_log_index=9, prev_log_term=1,
                     entries=(rf.Entry(1, 10, CMD), rf.Entry(4, 11, None), rf.Entry(4, 12, CMD),
                              rf.Entry(5, 13, None)), leader_commit=9),
    rf.AppendEntries(src="n1", dst="n2", term=3, prev_log_index=43, prev_log_term=3,
                     entries=(), leader_commit=43),
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
    # Entries travel as runs of one term from prev_log_index + 1: [[term, [commands]], ...].
    assert data["entries"] == [[3, [{"client_id": "c1", "seq": 7, "text": "SET x = 100"}, None]]]


def test_append_entries_runs_decode_back_to_the_same_entries():
    msg = MESSAGES[5]
    data = orjson.loads(encode_message(msg))
    assert [run[0] for run in data["entries"]] == [1, 4, 5]
    assert [len(run[1]) for run in data["entries"]] == [1, 2, 1]
    assert decode_message(encode_message(msg)).entries == msg.entries
    assert [(e.term, e.index) for e in decode_message(encode_message(msg)).entries] == [
        (1, 10), (4, 11), (4, 12), (5, 13)]


def test_a_batch_costs_its_commands_and_a_constant_not_a_term_and_index_per_entry():
    def size(n: int) -> int:
        entries = tuple(rf.Entry(3, 42 + i, CMD) for i in range(n))
        return len(encode_message(rf.AppendEntries(
            src="n1", dst="n2", term=3, prev_log_index=41, prev_log_term=3, entries=entries,
            leader_commit=41)))
    command = len(orjson.dumps(CMD)) + 1  # the command and its comma
    assert size(20) - size(10) == 10 * command


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
    return edited(GOOD, **changes)


def edited(payload: bytes, **changes) -> bytes:
    """``payload`` with fields replaced, or removed where the value is ``...``."""
    data = orjson.loads(payload)
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
    (mutate(entries=[{"term": 3, "index": 42, "command": None}]), "bad-field"),  # old form
    (mutate(entries=[[9, [None]]]), "bad-field"),  # a term after the leader's
    (mutate(entries=[[2, [None]]]), "bad-field"),  # a term before prev_log_term
    (mutate(entries=[[3, []]]), "bad-field"),  # an empty run
    (mutate(entries=[[3, [None]], [3, [None]]]), "bad-field"),  # one term split in two runs
    (mutate(prev_log_term=1, entries=[[3, [None]], [2, [None]]]), "bad-field"),  # falling
    (mutate(entries=[[3]]), "bad-field"),  # not a pair
    (mutate(entries=[[3, [None], 4]]), "bad-field"),  # not a pair
    (mutate(entries=[[0, [None]]]), "bad-field"),  # term 0 holds no entries
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
    cls = _WIRE_FORMS.get(cls, cls)  # what the payload is decoded as
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
    runs = [k for k, v in data.items() if type(v) is list and v and type(v[0]) is list]
    if nested and runs:
        # Inside a run: its term, its command list, or one of its commands.
        run = data[runs[0]][0]
        spot = len(key) % 3
        if spot < 2:
            run[spot] = value
        else:
            run[1][0] = value
        fast_and_strict_agree(type(msg), data)
        return
    target = data[lists[0]][0] if nested and lists else data
    field = key if key not in ("", "type") else sorted(target)[len(key) % len(target)]
    target[field] = value
    fast_and_strict_agree(type(msg), data)


# -- status reports and control commands ----------------------------------------------------

STATUS = StatusReport(
    id="n1", algorithm="paxos", role="leader", term=3, ballot="3.n1", leader="n1",
    commit_index=42, last_index=43, applied_index=42, election_timeout_in_ms=None, pid=4242,
    cluster="demo", library="gmqtt", broker="mqtt://127.0.0.1:1883", fsync=True,
    messages_in=1200, messages_out=1180, wal_fsyncs=310, wal_fsynced_records=1190, dropped=2,
    rejected={"not-json": 2}, sent_by_kind={"Accept": 900, "Accept (heartbeat)": 40},
    bytes_by_kind={"Accept": 180_000}, faults=FaultSettings(("n3",), (), 0.1, 20.0),
    time=1764170000.25)
CONTROLS = [
    Control(ControlOp.DROP_TO, peers=("n2", "n3")), Control(ControlOp.DROP_FROM, peers=()),
    Control(ControlOp.LOSS, rate=0.3), Control(ControlOp.DELAY, ms=20.0),
    Control(ControlOp.HEAL), Control(ControlOp.CAMPAIGN),
]


@pytest.mark.parametrize("obj", [STATUS, replace(STATUS, ballot=None, leader=None,
                                                  election_timeout_in_ms=117.5,
                                                  faults=FaultSettings()), *CONTROLS],
                         ids=lambda o: getattr(o, "op", type(o).__name__))
def test_status_and_control_round_trip(obj):
    assert decode(type(obj), encode(obj)) == obj
    # orjson's native dataclass encoding writes what the strict encoder spells out.
    assert encode(obj) == orjson.dumps(to_jsonable(obj))


def test_status_is_in_the_documented_shape():
    data = orjson.loads(encode(STATUS))
    assert data["faults"] == {"drop_to": ["n3"], "drop_from": [], "loss": 0.1, "delay_ms": 20.0}
    assert (data["role"], data["term"], data["ballot"]) == ("leader", 3, "3.n1")
    assert "type" not in data, "a status is not a protocol message"


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"op": "heal"}', Control(ControlOp.HEAL)),
    (b'{"op": "campaign"}', Control(ControlOp.CAMPAIGN)),
    (b'{"op": "loss", "rate": 1}', Control(ControlOp.LOSS, rate=1.0)),
    (b'{"op": "delay", "ms": 20}', Control(ControlOp.DELAY, ms=20.0)),
    (b'{"op": "drop_to", "peers": []}', Control(ControlOp.DROP_TO, peers=())),
    (b'{"op": "drop_from", "peers": ["n2"], "rate": null, "ms": null}',
     Control(ControlOp.DROP_FROM, peers=("n2",))),
])
def test_control_fields_an_op_does_not_use_may_be_left_out(payload, expected):
    assert decode(Control, payload) == expected


@pytest.mark.parametrize(("payload", "reason"), [
    (b"heal", "not-json"),
    (b'["heal"]', "not-json"),
    (b"{}", "bad-field"),  # no op
    (b'{"op": "explode"}', "bad-field"),
    (b'{"op": "partition", "peers": ["n2"]}', "bad-field"),  # not an op: drop_to + drop_from
    (b'{"op": "loss"}', "bad-field"),  # an op's own field is required
    (b'{"op": "delay", "ms": null}', "bad-field"),
    (b'{"op": "drop_to"}', "bad-field"),
    (b'{"op": "delay", "rate": 0.3}', "bad-field"),  # another op's field: a mistake, refused
    (b'{"op": "heal", "peers": []}', "bad-field"),
    (b'{"op": "loss", "rate": 1.5}', "bad-field"),
    (b'{"op": "loss", "rate": -0.1}', "bad-field"),
    (b'{"op": "loss", "rate": "0.3"}', "bad-field"),
    (b'{"op": "loss", "rate": true}', "bad-field"),
    (b'{"op": "delay", "ms": -5}', "bad-field"),
    (b'{"op": "drop_to", "peers": "n2"}', "bad-field"),
    (b'{"op": "drop_to", "peers": [2]}', "bad-field"),
    (b'{"op": "heal", "now": true}', "bad-field"),
    (b'{"op": "heal", "pad": "' + b"x" * MAX_PAYLOAD + b'"}', "too-large"),
])
def test_malformed_controls_are_refused_with_a_reason(payload, reason):
    with pytest.raises(DecodeError) as info:
        decode(Control, payload)
    assert info.value.reason == reason


def status_with(**changes) -> bytes:
    return edited(encode(STATUS), **changes)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "not-json"),
    (b"42", "not-json"),
    (status_with(role=...), "bad-field"),
    (status_with(term="3"), "bad-field"),
    (status_with(term=-1), "negative"),
    (status_with(dropped=1.0), "bad-field"),
    (status_with(fsync=1), "bad-field"),
    (status_with(rejected={"not-json": "2"}), "bad-field"),
    (status_with(rejected=["not-json"]), "bad-field"),
    (status_with(sent_by_kind={"Accept": -1}), "negative"),
    (status_with(faults={"drop_to": [], "drop_from": [], "loss": "0", "delay_ms": 0}),
     "bad-field"),
    (status_with(faults={"drop_to": []}), "bad-field"),  # nested objects are whole
    (status_with(uptime=5), "bad-field"),
])
def test_malformed_statuses_are_refused_with_a_reason(payload, reason):
    with pytest.raises(DecodeError) as info:
        decode(StatusReport, payload)
    assert info.value.reason == reason


def test_a_status_leaves_out_only_what_has_a_default():
    # Counters and fault hooks default (a process that has nothing to report yet); the core's
    # fields and the process's identity do not.
    data = orjson.loads(encode(STATUS))
    for key in ("rejected", "sent_by_kind", "bytes_by_kind", "faults", "time"):
        del data[key]
    st = decode(StatusReport, orjson.dumps(data))
    assert st.faults == FaultSettings() and st.rejected == {} and st.time == 0.0


def test_only_registered_types_are_decoded():
    with pytest.raises(TypeError):
        decode(FaultSettings, b"{}")


@settings(max_examples=300)
@given(st.sampled_from([StatusReport, Control]), st.binary(max_size=200))
def test_arbitrary_bytes_as_status_or_control_raise_only_decode_error(cls, data):
    with contextlib.suppress(DecodeError):
        decode(cls, data)


@settings(max_examples=1000)
@given(st.sampled_from([STATUS, *CONTROLS]), st.text(max_size=16), json_values, st.booleans(),
       st.booleans())
def test_fast_decoder_agrees_with_the_strict_one_on_status_and_control(
        obj, key, value, nested, drop):
    cls = type(obj)
    data = orjson.loads(encode(obj))
    fast_and_strict_agree(cls, data)
    dicts = [v for v in data.values() if type(v) is dict and v]
    target = dicts[len(key) % len(dicts)] if nested and dicts else data
    field = key if key else sorted(target)[len(value if isinstance(value, str) else "")
                                           % len(target)]
    if drop:
        target.pop(field, None)
    else:
        target[field] = value
    fast_and_strict_agree(cls, data)
    # decode() fills defaults first; whatever it returns, both paths agree on that too.
    fast_and_strict_agree(cls, {**_codec.defaults(cls), **data})


@pytest.mark.parametrize(("roles", "down", "expected"), [
    ({"n1": ("leader", 2), "n2": ("leader", 3), "n3": ("follower", 3)}, (), "n2"),
    ({"n1": ("leader", 2), "n2": ("leader", 3)}, ("n2",), "n1"),  # a deposed leader counts
    ({"n1": ("leader", 3), "n3": ("leader", 3)}, (), "n3"),  # one round, higher rank wins
    ({"n1": ("candidate", 4), "n2": ("follower", 4)}, (), None),
    ({}, (), None),
])
def test_leader_of_takes_the_highest_term_among_the_live(roles, down, expected):
    statuses = {nid: replace(STATUS, id=nid, role=role, term=term)
                for nid, (role, term) in roles.items()}
    assert leader_of(statuses, down=down) == expected


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.kind)
def test_decoded_messages_are_as_frozen_and_hashable_as_constructed_ones(msg):
    # The fast decoder stores fields without calling the generated __init__.
    decoded = decode_message(encode_message(msg, "demo"))
    assert hash(decoded) == hash(msg)
    with pytest.raises(FrozenInstanceError):
        decoded.src = "n9"


@dataclass(frozen=True, slots=True)
class _Normalised:
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.lower())


def test_a_class_with_post_init_is_built_through_its_constructor():
    assert _codec.fast_struct(_Normalised)({"name": "N1"}) == _Normalised("n1")
    assert _codec.fast_struct(_Normalised)({"name": "N1"}).name == "n1"


@dataclass(frozen=True, slots=True)
class _HandInit:
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name.upper())


def test_a_class_with_its_own_init_is_built_through_it():
    assert _codec.fast_struct(_HandInit)({"name": "n1"}).name == "N1"


def test_encode_messages_shares_entries_and_matches_encode_message_byte_for_byte():
    """A drain's replication to each follower: the entries are serialised once and spliced
    into every payload; the bytes are exactly those of encoding each message alone."""
    from consensus.codec import encode_messages

    cmds = [Command(f"c{i}", i, f"SET k{i} = {i}") for i in range(5)]
    entries = tuple(rf.Entry(2 + i // 3, 11 + i, c) for i, c in enumerate(cmds))
    ballot = px.Ballot(3, 1, "n1")
    slots = (cmds[0], None, cmds[1], None)
    msgs = [
        rf.AppendEntries(src="n1", dst=d, term=3, prev_log_index=10, prev_log_term=2,
                         entries=tuple(entries), leader_commit=9, beat=4) for d in ("n2", "n3")
    ] + [
        rf.AppendEntries(src="n1", dst="n2", term=3, prev_log_index=12, prev_log_term=2,
                         entries=entries[2:], leader_commit=9),
        rf.AppendEntries(src="n1", dst="n3", term=3, prev_log_index=15, prev_log_term=3,
                         entries=(), leader_commit=9),
        rf.RequestVote(src="n1", dst="n2", term=3, last_log_index=15, last_log_term=3),
    ] + [px.Accept(src="n1", dst=d, ballot=ballot, first_slot=4, commands=tuple(slots),
                   commit_index=3) for d in ("n2", "n3")] + [
        px.Accept(src="n1", dst="n2", ballot=ballot, first_slot=4,
                  commands=(None, cmds[2], None, cmds[3]), commit_index=3),
        px.Commit(src="n1", dst="n3", ballot=ballot, first_slot=1, commands=slots,
                  commit_index=4),
    ]
    for cluster, incarnation in ((None, None), ("demo", "inc-1")):
        assert encode_messages(msgs, cluster, incarnation) == [
            encode_message(m, cluster, incarnation) for m in msgs]
