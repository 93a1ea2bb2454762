"""The replicated state machine: the tutorial's commands, clear errors, exactly-once."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.kv import CommandError, KVStore, parse
from consensus.messages import Command, ReplyStatus


def run(kv: KVStore, text: str, client: str = "c1", seq: int | None = None):
    seq = seq if seq is not None else kv.applied + 1
    return kv.apply(Command(client, seq, text))


def test_tutorial_commands():
    kv = KVStore()
    assert run(kv, "SET x = 100").result == "OK"
    assert run(kv, "GET x").result == "100"
    assert run(kv, "CAS x 100 200").status == ReplyStatus.OK
    assert run(kv, "GET x").result == "200"
    assert run(kv, "DEL x").result == "1"
    assert run(kv, "DEL x").result == "0"
    assert run(kv, "GET x").result is None


def test_set_value_may_contain_spaces_and_case_is_free():
    kv = KVStore()
    run(kv, "set greeting =  hello world ")
    assert kv.data == {"greeting": "hello world"}


def test_failed_cas_is_an_error_that_names_what_was_found():
    kv = KVStore()
    run(kv, "SET x = 7")
    out = run(kv, "CAS x 100 200")
    assert out.status == ReplyStatus.ERROR
    assert "x is '7'" in out.result and "'100'" in out.result
    assert kv.data["x"] == "7"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty command"),
        ("PUT x 1", "unknown operation 'PUT'"),
        ("SET x 100", "expected 'SET <key> = <value>'"),
        ("SET = 4", "expected 'SET <key> = <value>'"),
        ("GET", "expected 'GET <key>'"),
        ("GET x y", "expected 'GET <key>'"),
        ("CAS x 1", "expected 'CAS <key> <expected> <new>'"),
        ("DEL a$b", "expected 'DEL <key>'"),
    ],
)
def test_malformed_commands_get_a_clear_error_and_change_nothing(text, fragment):
    kv = KVStore()
    run(kv, "SET keep = 1")
    before = dict(kv.data)
    out = run(kv, text)
    assert out.status == ReplyStatus.ERROR
    assert fragment in out.result
    assert kv.data == before
    with pytest.raises(CommandError):
        parse(text)


def test_retry_is_applied_exactly_once():
    kv = KVStore()
    assert run(kv, "SET n = 1", seq=1).result == "OK"
    assert run(kv, "CAS n 1 2", seq=2).status == ReplyStatus.OK
    # The same (client, seq) again: cached answer, state unchanged (a re-run would fail CAS).
    again = run(kv, "CAS n 1 2", seq=2)
    assert again.status == ReplyStatus.OK
    assert kv.data["n"] == "2"
    stale = run(kv, "SET n = 9", seq=1)
    assert stale.status == ReplyStatus.ERROR and "stale" in stale.result
    assert kv.data["n"] == "2"


def test_sessions_are_per_client():
    kv = KVStore()
    run(kv, "SET a = 1", client="c1", seq=1)
    run(kv, "SET a = 2", client="c2", seq=1)
    assert kv.data["a"] == "2"


def test_noop_counts_as_applied_but_changes_nothing():
    kv = KVStore()
    assert kv.apply(None) is None
    assert kv.applied == 1 and kv.data == {}


def test_digest_equal_iff_same_history():
    a, b = KVStore(), KVStore()
    for kv in (a, b):
        run(kv, "SET x = 1", seq=1)
    assert a.digest() == b.digest()
    run(b, "SET y = 1", seq=2)
    assert a.digest() != b.digest()


@given(st.text(max_size=60))
def test_any_text_is_applied_without_raising(text):
    kv = KVStore()
    out = kv.apply(Command("c", 1, text))
    assert out.status in (ReplyStatus.OK, ReplyStatus.ERROR)
    assert kv.sessions["c"][0] == 1
