"""The per-key linearizability checker: hand-made good and bad histories, properties, and a
brute-force cross-check on small random histories.

Times are in milliseconds. ``op(...)`` builds an :class:`Operation`; for readability the tests
write intervals as ``at=(invoke, complete)`` and use ``complete=None`` for info operations.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consensus.check.bench_linearizability import generate_history
from consensus.check.linearizability import (
    HistoryError,
    check_history,
    dump_history,
    format_result,
    load_history,
)
from consensus.history import Operation
from consensus.kv import KVStore, parse
from consensus.messages import Command, ReplyStatus

_seq = itertools.count(1)


def op(client: str, command: str, at: tuple[float, float | None], outcome: str = "ok",
       result: str | None = None) -> Operation:
    invoke, complete = at
    if outcome == "ok" and result is None and command.split()[0] in ("SET", "CAS"):
        result = "OK"
    return Operation(client, next(_seq), command, invoke, complete, outcome, result)


def cas_failed(key: str, found: str | None, expected: str) -> str:
    """What kv.py answers to a CAS that finds ``found`` (the exact text the checker parses)."""
    kv = KVStore()
    if found is not None:
        kv.data[key] = found
    out = kv.apply(Command("t", 1, f"CAS {key} {expected} z"))
    assert out is not None and out.status == ReplyStatus.ERROR
    return out.result or ""


def verdict(ops: list[Operation], **kw) -> str:
    return check_history(ops, **kw).verdict


# ---------------------------------------------------------------------------------------------
# Linearizable histories must pass


def test_empty_history_is_linearizable():
    r = check_history([])
    assert r.verdict == "ok" and r.ops_total == 0 and r.keys == {}


def test_sequential_history():
    h = [
        op("c1", "GET x", (0, 1), result=None),
        op("c1", "SET x = 1", (2, 3)),
        op("c2", "GET x", (4, 5), result="1"),
        op("c2", "CAS x 1 2", (6, 7)),
        op("c1", "GET x", (8, 9), result="2"),
        op("c1", "DEL x", (10, 11), result="1"),
        op("c2", "DEL x", (12, 13), result="0"),
        op("c2", "GET x", (14, 15), result=None),
    ]
    r = check_history(h)
    assert r.verdict == "ok", format_result(r)
    assert r.per_key == {"x": "ok"} and r.ops_checked == 8 and r.keys_checked == 1


def test_concurrent_writes_and_reads_with_several_valid_orders():
    # Two overlapping writes; readers during the overlap may see either, and a later pair of
    # readers agree on one final value.
    h = [
        op("c1", "SET x = a", (0, 10)),
        op("c2", "SET x = b", (1, 11)),
        op("c3", "GET x", (2, 3), result="b"),
        op("c4", "GET x", (4, 5), result="a"),
        op("c3", "GET x", (12, 13), result="a"),
        op("c4", "GET x", (14, 15), result="a"),
    ]
    assert verdict(h) == "ok"
    h[2:4] = [op("c3", "GET x", (2, 3), result=None), op("c4", "GET x", (4, 5), result="b")]
    assert verdict(h) == "ok"


def test_read_returns_before_the_write_it_saw_returns():
    h = [
        op("c1", "SET x = 1", (0, 100)),
        op("c2", "GET x", (10, 20), result="1"),
        op("c3", "GET x", (30, 40), result="1"),
    ]
    assert verdict(h) == "ok"


def test_slow_read_of_an_old_value_overlapping_many_writes():
    h = [op("c1", "SET x = v0", (0, 1)), op("c2", "GET x", (2, 500), result="v0")]
    h += [op("c3", f"SET x = v{i}", (10 * i, 10 * i + 5)) for i in range(1, 40)]
    h += [op("c3", "GET x", (600, 601), result="v39")]
    assert verdict(h) == "ok"


def test_info_write_observed_later():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "SET x = 2", (2, None), outcome="info"),
        op("c1", "GET x", (3, 4), result="1"),
        op("c1", "GET x", (50, 51), result="2"),  # took effect long after the client gave up
        op("c1", "GET x", (60, 61), result="2"),
    ]
    assert verdict(h) == "ok"


def test_info_write_never_observed():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "SET x = 2", (2, None), outcome="info"),
        op("c1", "GET x", (3, 4), result="1"),
        op("c1", "GET x", (50, 51), result="1"),
    ]
    r = check_history(h)
    assert r.verdict == "ok" and r.ops_dropped == 1  # dropped: unique value, never observed


def test_info_write_never_observed_on_a_key_with_deletes_stays_in_the_search():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "SET x = 2", (2, None), outcome="info"),
        op("c1", "DEL x", (3, 4), result="1"),
        op("c1", "DEL x", (5, 6), result="1"),  # only explained by the info write landing
        op("c1", "GET x", (7, 8), result=None),
    ]
    r = check_history(h)
    assert r.verdict == "ok" and r.ops_dropped == 0
    h.pop(1)
    assert verdict(h) == "violation"


def test_info_operations_with_unknown_results_and_info_get():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "GET x", (0, None), outcome="info"),
        op("c3", "DEL x", (2, None), outcome="info"),
        op("c4", "CAS x 1 7", (2, None), outcome="info"),
        op("c1", "GET x", (10, 11), result="7"),
        op("c1", "GET x", (12, 13), result=None),  # the info DEL landed after the CAS
    ]
    assert verdict(h) == "ok"


def test_cas_success_and_failure():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "CAS x 1 2", (2, 3)),
        op("c3", "CAS x 1 3", (4, 5), outcome="fail", result=cas_failed("x", "2", "1")),
        op("c1", "GET x", (6, 7), result="2"),
        op("c2", "CAS x 9 9", (8, 9), outcome="fail", result="CAS failed"),  # unparsable
        op("c3", "CAS y 1 2", (8, 9), outcome="fail", result=cas_failed("y", None, "1")),
    ]
    r = check_history(h)
    assert r.verdict == "ok", format_result(r)
    assert r.per_key == {"x": "ok", "y": "ok"}


def test_failed_reads_malformed_commands_and_rejected_requests_are_ignored():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "GET x", (2, 3), outcome="fail", result="no leader"),
        op("c2", "FROB x", (2, 3), outcome="fail", result="unknown operation 'FROB'"),
        op("c2", "SET x = 9", (2, 3), outcome="fail", result="stale request"),
        op("c1", "GET x", (4, 5), result="1"),
    ]
    r = check_history(h)
    assert r.verdict == "ok" and r.ops_malformed == 1 and r.ops_dropped == 2


def test_keys_are_checked_independently():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c1", "SET y = 2", (2, 3)),
        op("c2", "GET y", (4, 5), result="2"),
        op("c2", "GET x", (6, 7), result="1"),
        op("c3", "GET z", (6, 7), result="never"),
    ]
    r = check_history(h)
    assert r.per_key == {"x": "ok", "y": "ok", "z": "violation"}
    assert [v.key for v in r.violations] == ["z"]


# ---------------------------------------------------------------------------------------------
# Non-linearizable histories must be rejected


def test_stale_read_is_rejected_and_explained():
    h = [
        op("c1", "SET x = c1-1", (0, 10)),
        op("c2", "SET x = c2-1", (20, 30)),
        op("c3", "GET x", (1234, 1240), result="c1-1"),
    ]
    r = check_history(h)
    assert r.verdict == "violation"
    (v,) = r.violations
    assert v.key == "x" and v.operation is h[2]
    text = " ".join(format_result(r).split())  # prose is wrapped at 100 columns
    assert "NOT LINEARIZABLE" in text
    assert "GET x -> 'c1-1'" in text and "T=1.234s..1.240s" in text
    assert "could only hold: 'c2-1'" in text
    assert "stale read" in text and "c2#" in text


def test_lost_write_is_rejected():
    # A completed write is never visible: a later read shows the value from before it.
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "SET x = 2", (2, 3)),
        op("c3", "GET x", (4, 5), result="1"),
    ]
    assert verdict(h) == "violation"


def test_read_of_a_never_written_value_is_rejected():
    h = [op("c1", "SET x = 1", (0, 10)), op("c2", "GET x", (2, 8), result="5")]
    r = check_history(h)
    assert r.verdict == "violation"
    assert "No operation ever wrote '5'" in " ".join(r.explanation.split())


def test_info_write_seen_before_it_was_invoked_is_rejected():
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c2", "GET x", (2, 3), result="2"),
        op("c3", "SET x = 2", (4, None), outcome="info"),
    ]
    r = check_history(h)
    assert r.verdict == "violation"
    assert "invoked after this operation had already completed" in " ".join(
        r.explanation.split())


def test_cas_that_succeeded_against_a_value_that_was_not_there_is_rejected():
    h = [op("c1", "SET x = 1", (0, 1)), op("c2", "CAS x 5 6", (2, 3))]
    assert verdict(h) == "violation"
    h = [op("c1", "SET x = 1", (0, 1)), op("c2", "CAS x 1 6", (2, 3)),
         op("c3", "CAS x 1 7", (4, 5))]
    assert verdict(h) == "violation"


def test_failed_cas_that_saw_an_impossible_value_is_rejected():
    h = [op("c1", "SET x = 1", (0, 1)),
         op("c2", "CAS x 9 6", (2, 3), outcome="fail", result=cas_failed("x", "8", "9"))]
    assert verdict(h) == "violation"
    # and the weaker x != a observation when the reply is not the store's exact text
    h = [op("c1", "SET x = 9", (0, 1)),
         op("c2", "CAS x 9 6", (2, 3), outcome="fail", result="CAS failed (truncated)")]
    assert verdict(h) == "violation"


def test_delete_results_are_checked():
    h = [op("c1", "DEL x", (0, 1), result="1")]
    assert verdict(h) == "violation"
    h = [op("c1", "SET x = 1", (0, 1)), op("c1", "DEL x", (2, 3), result="0")]
    assert verdict(h) == "violation"
    h = [op("c1", "SET x = 1", (0, 1)), op("c1", "DEL x", (2, 3), result="7")]
    assert "never returns" in " ".join(check_history(h).explanation.split())


def test_two_readers_seeing_writes_in_opposite_orders_are_rejected():
    # Concurrent writes a and b; c3 sees a then b, c4 sees b then a, all reads after both
    # writes began: there is no single order of the writes.
    h = [
        op("c1", "SET x = a", (0, 100)),
        op("c2", "SET x = b", (0, 100)),
        op("c3", "GET x", (10, 20), result="a"),
        op("c3", "GET x", (30, 40), result="b"),
        op("c4", "GET x", (10, 20), result="b"),
        op("c4", "GET x", (30, 40), result="a"),
    ]
    assert verdict(h) == "violation"


def test_real_time_order_across_clients():
    # c2's read completed before c3's began, yet c3 saw the older value.
    h = [
        op("c1", "SET x = 1", (0, 1)),
        op("c1", "SET x = 2", (2, 100)),
        op("c2", "GET x", (10, 20), result="2"),
        op("c3", "GET x", (30, 40), result="1"),
    ]
    assert verdict(h) == "violation"


def test_the_smallest_failing_prefix_is_reported():
    h = [op("c1", "SET x = 1", (0, 1)), op("c1", "SET x = 2", (2, 3)),
         op("c2", "GET x", (4, 5), result="1"),  # the first impossible result
         op("c2", "GET x", (6, 7), result="9")]
    (v,) = check_history(h).violations
    assert v.operation is h[2]
    assert "3 operations" in " ".join(v.explanation.split())


# ---------------------------------------------------------------------------------------------
# Budget


def _hard_history(width: int = 14) -> list[Operation]:
    """Many fully concurrent writes and reads, then a read no order allows: the search must
    visit a large part of the subsets of the writes before it can say so."""
    h = [op(f"w{i}", f"SET x = v{i}", (0, 100)) for i in range(width)]
    h += [op(f"r{i}", "GET x", (1, 99), result=f"v{(i * 7) % width}") for i in range(width)]
    h += [op("r", "GET x", (200, 201), result="nothing")]
    return h


def test_time_budget_exhausted_says_unknown_never_ok():
    r = check_history(_hard_history(), time_budget_s=0.01)
    assert r.verdict == "unknown"
    assert r.per_key == {"x": "unknown"} and "time budget" in (r.reason or "")
    assert "UNKNOWN" in format_result(r)


def test_memo_limit_says_unknown():
    r = check_history(_hard_history(), memo_limit=1000)
    assert r.verdict == "unknown" and "configurations" in (r.reason or "")


def test_a_violation_on_one_key_is_reported_even_if_another_is_unknown():
    h = [*_hard_history(), op("c1", "GET y", (0, 1), result="ghost")]
    r = check_history(h, time_budget_s=0.05)
    assert r.verdict == "violation" and r.per_key == {"x": "unknown", "y": "violation"}


# ---------------------------------------------------------------------------------------------
# history.jsonl


def test_dump_and_load_round_trip(tmp_path):
    h = [op("c1", "SET x = hello world", (0.5, 1.25)),
         op("c2", "GET x", (2, None), outcome="info"),
         op("c3", "CAS x a b", (3, 4), outcome="fail", result=cas_failed("x", None, "a"))]
    path = tmp_path / "history.jsonl"
    dump_history(h, path)
    assert load_history(path) == h


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"client": "c1", "seq": 1, "command": "GET x", "invoke_ms": 0}', "missing field"),
    ('{"client": "c1", "seq": "1", "command": "GET x", "invoke_ms": 0, "outcome": "ok", '
     '"complete_ms": 1}', "field 'seq' must be int"),
    ('{"client": "c1", "seq": 1, "command": "GET x", "invoke_ms": 0, "outcome": "done"}',
     "outcome must be ok, fail or info"),
    ('{"client": "c1", "seq": 1, "command": "GET x", "invoke_ms": 0, "outcome": "ok"}',
     "complete_ms is required"),
    ('{"client": "c1", "seq": 1, "command": "GET x", "invoke_ms": 5, "outcome": "ok", '
     '"complete_ms": 1}', "before invoke_ms"),
    ('{"client": "c1", "seq": 1, "command": "GET x", "invoke_ms": 0, "outcome": "info", '
     '"colour": "red"}', "unknown field(s) colour"),
])
def test_load_names_the_bad_line(tmp_path, line, message):
    good = json.dumps(op("c1", "SET x = 1", (0, 1)).to_json())
    path = tmp_path / "history.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(HistoryError) as err:
        load_history(path)
    assert "history.jsonl:3: " in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------------------------------------
# Properties: histories from a real sequential execution always pass; one impossible read fails


@st.composite
def linearizable_histories(draw, unique: bool = True):
    """Run the real KVStore on random commands at random linearization points, then give each
    operation an interval around its point; some end as info (taken effect or not)."""
    n = draw(st.integers(1, 30))
    keys = draw(st.sampled_from([["x"], ["x", "y"], ["x", "y", "z"]]))
    points = sorted(draw(st.lists(st.integers(0, 200), min_size=n, max_size=n)))
    kv = KVStore()
    history = []
    for i, point in enumerate(points):
        key = draw(st.sampled_from(keys))
        kind = draw(st.sampled_from(["GET", "GET", "SET", "SET", "CAS", "DEL"]))
        value = f"v{i}" if unique else draw(st.sampled_from(["1", "2", "3"]))
        if kind == "CAS":
            current = kv.data.get(key)
            guess = draw(st.sampled_from([current or "1", "1", "2"]))
            text = f"CAS {key} {guess} {value}"
        else:
            text = {"GET": f"GET {key}", "SET": f"SET {key} = {value}", "DEL": f"DEL {key}"}[kind]
        before = draw(st.integers(0, 40))
        after = draw(st.integers(0, 40))
        status = draw(st.sampled_from(["ok"] * 8 + ["info", "lost"]))
        o = Operation(f"c{i}", 1, text, point - before, point + after)
        if status == "lost":  # never took effect, unknown outcome
            o.complete_ms, o.outcome = None, "info"
        else:
            out = kv.apply(Command(f"c{i}", 1, text))
            assert out is not None
            if status == "info":
                o.complete_ms, o.outcome = None, "info"
            else:
                o.outcome = "ok" if out.status == ReplyStatus.OK else "fail"
                o.result = out.result
        history.append(o)
    draw(st.randoms(use_true_random=False)).shuffle(history)
    return history


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linearizable_histories())
def test_histories_from_a_sequential_execution_pass(h):
    r = check_history(h)
    assert r.verdict == "ok", format_result(r)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linearizable_histories(unique=False))
def test_histories_with_repeated_values_pass(h):
    r = check_history(h)
    assert r.verdict == "ok", format_result(r)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linearizable_histories(), st.data())
def test_a_read_of_a_never_written_value_is_caught(h, data):
    reads = [o for o in h if o.outcome == "ok" and o.command.startswith("GET")]
    assume(reads)
    victim = data.draw(st.sampled_from(reads))
    victim.result = "never-written"
    r = check_history(h)
    assert r.verdict == "violation"
    assert [v.operation for v in r.violations] == [victim]


# ---------------------------------------------------------------------------------------------
# Cross-check against brute force on small histories, linearizable or not


def _brute_force(history: list[Operation]) -> bool:
    """Try every order (and every subset of info operations) against the real KVStore."""
    must, maybe = [], []
    for o in history:
        try:
            parse(o.command)
        except ValueError:
            continue
        if o.outcome == "ok" or (o.outcome == "fail" and o.command.startswith("CAS")
                                 and (o.result or "").startswith("CAS failed")):
            must.append(o)
        elif o.outcome == "info":
            maybe.append(o)

    def before(a: Operation, b: Operation) -> bool:
        return a.outcome != "info" and a.complete_ms is not None and a.complete_ms < b.invoke_ms

    def extend(placed: list[Operation], rest: list[Operation], data: dict[str, str]) -> bool:
        if not rest:
            return True
        for o in rest:
            if any(before(other, o) for other in rest if other is not o):
                continue
            kv = KVStore()
            kv.data = dict(data)
            out = kv.apply(Command("ref", 1, o.command))
            assert out is not None
            if o.outcome == "ok" and (out.status != ReplyStatus.OK or out.result != o.result):
                continue
            if o.outcome == "fail" and (out.status != ReplyStatus.ERROR or (
                    (o.result or "").startswith("CAS failed: ") and out.result != o.result)):
                continue
            if extend([*placed, o], [x for x in rest if x is not o], kv.data):
                return True
        return False

    return any(extend([], must + list(subset), {})
               for r in range(len(maybe) + 1) for subset in itertools.combinations(maybe, r))


def _random_history(rng: random.Random) -> list[Operation]:
    n = rng.randint(1, 6)
    values = ["1", "2"] if rng.random() < 0.5 else [f"u{i}" for i in range(n)]
    h = []
    for i in range(n):
        key = "x" if rng.random() < 0.85 else "y"
        kind = rng.choice(["GET", "GET", "SET", "SET", "CAS", "DEL"])
        value = values[i] if len(values) > 2 else rng.choice(values)
        text = {"GET": f"GET {key}", "SET": f"SET {key} = {value}", "DEL": f"DEL {key}",
                "CAS": f"CAS {key} {rng.choice(values)} {value}"}[kind]
        invoke = rng.randint(0, 8)
        complete = invoke + rng.randint(0, 5)
        outcome = rng.choice(["ok", "ok", "ok", "info", "fail"])
        result = None
        if outcome == "ok":
            result = {"GET": rng.choice([*values, None]), "SET": "OK", "CAS": "OK",
                      "DEL": rng.choice(["0", "1"])}[kind]
        elif outcome == "fail" and kind == "CAS":
            found = rng.choice([*values, None])
            expected = text.split()[2]
            result = cas_failed(key, found, expected) if found != expected else "CAS failed"
        h.append(Operation(f"c{i}", 1, text, invoke,
                           None if outcome == "info" else complete, outcome, result))
    return h


def _mutated_execution(rng: random.Random) -> list[Operation]:
    """A real execution (many info operations, repeated or unique values), maybe with one
    result changed or one interval moved: linearizable or not, close to the boundary."""
    kv = KVStore()
    n = rng.randint(1, 7)
    unique = rng.random() < 0.5
    info_weight = rng.choice([1, 3, 6])
    h = []
    for i, point in enumerate(sorted(rng.randint(0, 30) for _ in range(n))):
        key = "x" if rng.random() < 0.8 else "y"
        kind = rng.choice(["GET", "GET", "SET", "SET", "CAS", "DEL"])
        value = f"v{i}" if unique else rng.choice(["1", "2"])
        guess = rng.choice([kv.data.get(key) or "1", "1", "2", "v1"])
        text = {"GET": f"GET {key}", "SET": f"SET {key} = {value}", "DEL": f"DEL {key}",
                "CAS": f"CAS {key} {guess} {value}"}[kind]
        o = Operation(f"c{i}", 1, text, point - rng.randint(0, 12), point + rng.randint(0, 12))
        status = rng.choice(["ok"] * 6 + ["info", "lost"] * info_weight)
        if status != "lost":
            out = kv.apply(Command(f"c{i}", 1, text))
            assert out is not None
            if status == "ok":
                o.outcome = "ok" if out.status == ReplyStatus.OK else "fail"
                o.result = out.result
        if status != "ok":
            o.complete_ms, o.outcome = None, "info"
        h.append(o)
    known = [o for o in h if o.outcome != "info"]
    if known and rng.random() < 0.6:
        o = rng.choice(known)
        verb = o.command.split()[0]
        if verb == "GET":
            o.result = rng.choice([None, "1", "2", "v0", "v1", "v2"])
        elif verb == "DEL":
            o.result = rng.choice(["0", "1"])
        elif verb == "CAS":
            key, expected = o.command.split()[1:3]
            found = rng.choice([None, "1", "2", "v0", "v1"])
            o.outcome, o.result = (("ok", "OK") if found == expected
                                   else ("fail", cas_failed(key, found, expected)))
        else:
            shift = rng.randint(-10, 10)
            o.invoke_ms += shift
            o.complete_ms = (o.complete_ms or 0) + shift
    return h


def test_agrees_with_brute_force_on_small_random_histories():
    rng = random.Random(20240501)
    seen = {"ok": 0, "violation": 0}
    for i in range(6000):
        h = _random_history(rng) if i % 2 else _mutated_execution(rng)
        expected = "ok" if _brute_force(h) else "violation"
        got = check_history(h).verdict
        assert got == expected, "\n".join(map(str, h))
        seen[got] += 1
    assert min(seen.values()) > 1000  # both verdicts were exercised


# ---------------------------------------------------------------------------------------------
# Scale


def test_realistic_history_with_info_operations_is_linearizable_and_fast():
    h = generate_history(20_000, seed=7)
    r = check_history(h, time_budget_s=60)
    assert r.verdict == "ok", format_result(r)
    assert r.ops_total == 20_000 and len(r.keys) == 50
    assert any(o.outcome == "info" for o in h) and any(o.outcome == "fail" for o in h)


def test_a_stale_read_deep_in_a_realistic_history_is_found():
    h = generate_history(20_000, seed=8)
    reads = [o for o in h if o.command == "GET k0" and o.outcome == "ok" and o.result]
    victim = reads[len(reads) // 2]
    older = next(o for o in reversed(h) if o.command.startswith("SET k0 = ")
                 and o.outcome == "ok" and o.complete_ms is not None
                 and o.complete_ms < victim.invoke_ms - 1000)
    victim.result = older.command.split("= ", 1)[1]
    r = check_history(h, time_budget_s=60)
    assert r.verdict == "violation" and [v.operation for v in r.violations] == [victim]
