"""Smoke tests of the benchmark's pieces: no timing, no processes, no broker."""

from __future__ import annotations

import json
import random

import pytest

from consensus.algorithms import NAMES
from consensus.bench import report
from consensus.bench.null_protocol import NullNode
from consensus.bench.run import _ratios, finish, write_outputs
from consensus.bench.runs import merge
from consensus.bench.search import Step, search_max
from consensus.messages import ClientRequest, ReplyStatus


def _fake(capacity: float):
    calls = []

    def measure(rate: float) -> Step:
        calls.append(rate)
        ok = rate <= capacity
        n = int(rate)
        return Step(rate, n, n if ok else n // 2, n, 1.0, 1.0, 2.0)

    return measure, calls


def test_search_doubles_then_bisects_to_the_capacity():
    measure, calls = _fake(3000)
    result = search_max(measure, start=500, bisections=6)
    assert calls[:4] == [500, 1000, 2000, 4000]
    assert 2000 <= result.max_rate <= 3000
    assert result.max_rate > 2800  # six bisections get within ~1.5%
    assert all(s.sustained == (s.offered_rate <= 3000) for s in result.steps)


def test_search_looks_below_a_failing_start_and_reports_zero_when_nothing_holds():
    measure, _ = _fake(100)
    assert 0 < search_max(measure, start=500, bisections=3).max_rate <= 100
    measure, _ = _fake(0)
    assert search_max(measure, start=500).max_rate == 0


def test_step_uses_scheduled_latency_for_the_1s_rule_and_service_latency_for_percentiles():
    step = Step.from_latencies(100, 100, [5.0] * 98 + [1500.0] * 2, 1.0,
                               service_ms=[0.5] * 100)
    assert step.acked_in_time == 98 and not step.sustained
    assert step.p50_ms == 0.5
    assert step.extra["sched_p99_ms"] == 1500.0


def test_null_node_leader_applies_and_replies_without_replicating():
    leader = NullNode("n1", ["n1", "n2", "n3"], rng=random.Random(1))
    leader.step(ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 1"))
    ready = leader.ready()
    assert not ready.messages and not ready.persist
    assert [r.status for r in ready.replies] == [ReplyStatus.OK]
    leader.step(ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 1"))  # a retry
    assert [r.status for r in leader.ready().replies] == [ReplyStatus.OK]
    assert leader.status().commit_index == 1  # applied once
    follower = NullNode("n2", ["n1", "n2", "n3"], rng=random.Random(1))
    follower.step(ClientRequest(src="c1", dst="n2", seq=1, command="GET x"))
    (reply,) = follower.ready().replies
    assert reply.status == ReplyStatus.REDIRECT and reply.leader == "n1"


def test_null_protocol_is_not_a_selectable_algorithm():
    assert "null" not in NAMES


def _system(name, rate, conf=None):
    step = Step(100, 100, 100, 100, 1.0, 0.8, 1.5).to_json()
    label = f"{name} 3n" + (f" {conf}" if conf and name != "pysyncobj" else "")
    out = {"label": label, "system": name, "nodes": 3, "max_sustained_ops_s": rate,
           "search": {"max_rate": rate, "steps": [step]}, "latency": {"light": dict(step)},
           "fsync": name in ("raft", "paxos") and "no-fsync" not in (conf or ""),
           "mode": "in-process" if "in-process" in (conf or "") or name == "pysyncobj"
           else "over the broker"}
    if conf:
        out["conf"] = conf
    return out


def _fake_result():
    systems = [_system("raft", 6000), _system("paxos", 9000), _system("null", 20000),
               _system("raft", 7000, "no-fsync"), _system("paxos", 6000, "no-fsync"),
               _system("raft", 8000, "in-process"), _system("paxos", 8000, "in-process"),
               _system("raft", 9000, "in-process no-fsync"),
               _system("paxos", 5000, "in-process no-fsync"),
               _system("pysyncobj", 4000, "default")]
    systems[0]["latency"]["50%"] = {"extra": {"cpu_us_per_op": {
        "leader": 40.0, "follower": 15.0, "broker": 20.0, "clients": 30.0}}}
    return {"manifest": {"broker": {"kind": "mosquitto"}, "mqtt_client": "gmqtt"},
            "bus": [{"library": "gmqtt", "msgs_per_s": 100000, "rtt_p50_us": 170.0,
                     "rtt_p99_us": 400.0, "rtt_idle_p50_us": 450.0}],
            "throughput": systems,
            "failover": [{"algorithm": "raft", "rounds": 10, "p50_ms": 200.0, "p99_ms": 350.0,
                          "max_ms": 350.0}],
            "simulator": [{"algorithm": "raft", "nodes": 5, "speedup": 250.0,
                           "committed": 10}],
            "checker": {"ops": 100000, "keys": 50, "check_s": 1.0, "verdict": "ok"}}


def test_bench_json_shape_tables_and_chart_from_a_fake_result(tmp_path):
    result = _fake_result()
    systems = result["throughput"]
    result["ratios"] = _ratios(systems)
    assert result["ratios"]["raft / PySyncObj"] == 1.5
    assert result["ratios"]["paxos / null protocol"] == 0.45
    # Like for like with PySyncObj: each configuration's own row, never mixed up.
    assert result["ratios"]["raft no-fsync / PySyncObj"] == 1.75
    assert result["ratios"]["paxos no-fsync / null protocol"] == 0.3
    assert result["ratios"]["raft in-process no-fsync / PySyncObj"] == 2.25
    assert result["ratios"]["paxos in-process / PySyncObj"] == 2.0
    finish(result)
    goals = {g["goal"]: g for g in result["goals"]}
    # fsync off is judged against 1.5x; fsync on is shown (PySyncObj never fsyncs).
    assert goals["raft 3n in-process no-fsync >= 1.5x PySyncObj sustained"]["met"] is True
    assert goals["paxos 3n in-process no-fsync >= 1.5x PySyncObj sustained"]["met"] is False
    assert goals["paxos 3n in-process no-fsync >= 1.5x PySyncObj sustained"]["measured"] == \
        "1.25x"
    assert goals["raft 3n (fsync on) vs PySyncObj, sustained"]["met"] is None
    # Light load: < 1 ms with fsync off, < 2 ms with it on (the fake p50 is 0.8 ms).
    assert goals["raft 3n no-fsync p50 at 100 ops/s < 1 ms"]["met"] is True
    assert goals["paxos 3n in-process p50 at 100 ops/s < 2 ms"]["met"] is True
    assert goals["raft failover p99 < 400 ms"]["met"] is True
    # The bus's own floor under the light-load p50s: 4 idle broker passes over the broker
    # (2 idle round trips), 2 in-process; shown, not judged.
    floor = goals["the bus's floor under those p50s: 4 broker passes at idle (over the broker), "
                  "2 (in-process)"]
    assert floor["measured"] == "0.90 ms / 0.45 ms" and floor["met"] is None
    tables = report.tables(result)
    titles = [str(t.title) for t in tables]
    assert len(tables) == 7 and not any("Over the runs" in t for t in titles)  # one run
    (cpu_table,) = [t for t in tables if "CPU" in str(t.title)]
    assert cpu_table.row_count == 1
    assert list(cpu_table.columns[-1].cells) == ["120"]  # 40 + 2 x 15 + 20 + 30
    (goal_table,) = [t for t in tables if "Goals" in str(t.title)]
    assert "(shown)" in list(goal_table.columns[-1].cells)
    paths = write_outputs(result, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) >= {"manifest", "bus", "throughput", "failover", "simulator", "checker",
                         "ratios", "goals", "summary"}
    assert (tmp_path / "manifest.json").exists()
    assert (tmp_path / "throughput_latency.png") in paths


def test_several_runs_give_medians_ranges_and_the_ratio_ranges():
    first, second = _fake_result(), _fake_result()
    for row in second["throughput"]:
        row["max_sustained_ops_s"] *= 1.2 if row["system"] == "raft" else 1.0
    merged = finish(merge([first, second]))
    assert len(merged["throughput_runs"]) == 2
    (raft,) = [s for s in merged["summary"] if s["label"] == "raft 3n no-fsync"]
    assert raft["max_sustained_ops_s"] == {"median": 7700.0, "min": 7000, "max": 8400.0,
                                           "n": 2, "spread": 0.1818}
    # The ratios are of the medians; their ranges are each run's own ratio.
    assert merged["ratios"]["raft no-fsync / PySyncObj"] == 7700 / 4000
    assert merged["ratio_ranges"]["raft no-fsync / PySyncObj"] == [1.75, 2.1]
    assert merged["ratio_ranges"]["paxos no-fsync / PySyncObj"] == [1.5, 1.5]
    goal = {g["goal"]: g for g in merged["goals"]}["raft 3n no-fsync >= 1.5x PySyncObj sustained"]
    assert goal["measured"] == "1.93x (1.75-2.10x over the runs)"
    p50 = {g["goal"]: g for g in merged["goals"]}["raft 3n p50 at 100 ops/s < 2 ms"]
    assert p50["measured"] == "0.80 ms (0.80-0.80 over the runs)"
    page = report.markdown(merged)
    assert "## Over the runs" in page and "| raft 3n no-fsync | 2 | 7,700 | 7,000-8,400 | 18% |" \
        in page
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


def test_cpu_seconds_reads_a_live_process_and_not_a_gone_one():
    import os

    from consensus.bench.throughput import cpu_seconds

    used = cpu_seconds(os.getpid())
    assert used is not None and used > 0
    assert cpu_seconds(None) is None and cpu_seconds(2**22 + 12345) is None


def test_measure_warms_up_then_settles_before_every_step_and_repeats_the_maximum():
    from consensus.bench.settle import Quiet
    from consensus.bench.throughput import measure

    class Fake:
        label = "fake"

        def __init__(self):
            self.calls = []

        def step(self, rate, seconds):
            self.calls.append(rate)
            ok = 100 if rate <= 4000 else 50
            return Step(rate, 100, ok, ok, seconds, 1.0, 2.0)

        def settle(self):
            self.calls.append("settle")
            return Quiet(True, 0.4, 0.01, 0)

    fake = Fake()
    res = measure(fake, step_s=1.0, start=1000, bisections=0, repeats=2)
    steps = [c for c in fake.calls if c != "settle"]
    # Every step is preceded by a settle: no step measures the one before it.
    assert fake.calls == [x for rate in steps for x in ("settle", rate)]
    assert steps[:2] == [1000, 100]  # the warm-up (set aside), then light load
    assert steps[2:6] == [1000, 2000, 4000, 8000]  # the search
    assert steps[6:8] == [4000, 4000]  # its maximum, twice more
    assert steps[8:] == [2000, 3600]  # 50% and 90% of it
    assert res["max_sustained_ops_s"] == 4000
    assert res["warmup"]["offered_rate"] == 1000
    assert res["confirm"]["trials"] == [{"rate": 4000, "sustained": 3, "of": 3,
                                         "throughput": [100.0, 100.0, 100.0]}]
    assert res["unsettled_steps"] == []


def _steps(outcomes):
    """A measure function whose rate -> [sustained?, ...] answers come from a table."""
    left = {rate: list(v) for rate, v in outcomes.items()}

    def measure(rate):
        ok = left[rate].pop(0)
        return Step(rate, 100, 100 if ok else 50, 100, 1.0, 1.0, 2.0)

    return measure


def test_a_lucky_maximum_is_not_confirmed_and_a_lower_rate_is_tried():
    from consensus.bench.search import confirm_max, search_max

    # 8000 held once (a quiet moment) but not in its two repeats; halfway down to the next
    # lower sustained rate of the search (6000), 7000 holds both times.
    measure = _steps({500: [True], 1000: [True], 2000: [True], 4000: [True],
                      8000: [True, False, False], 16000: [False], 12000: [False],
                      6000: [True], 7000: [True, True]})
    found = search_max(measure, start=500, bisections=1)
    assert found.max_rate == 8000
    found.steps.append(measure(6000))  # as if the search had also tried 6000
    confirmed = confirm_max(measure, found, repeats=2)
    assert confirmed.max_rate == 7000 and confirmed.confirmed
    assert [(t["rate"], t["sustained"], t["of"]) for t in confirmed.to_json()["trials"]] == [
        (8000, 1, 3), (7000, 2, 2)]


def test_a_maximum_from_the_doubling_is_not_halved_by_one_failed_confirmation():
    from consensus.bench.search import confirm_max, search_max

    # 32000 came from the doubling (64000 and every bisection above failed) and does not
    # hold again: the next try is 24000, halfway down to 16000, not 16000 itself.
    measure = _steps({500: [True], 1000: [True], 2000: [True], 4000: [True], 8000: [True],
                      16000: [True], 32000: [True, False, False], 64000: [False],
                      48000: [False], 40000: [False], 36000: [False],
                      24000: [True, True]})
    found = search_max(measure, start=500, bisections=3)
    assert found.max_rate == 32000
    confirmed = confirm_max(measure, found, repeats=2)
    assert confirmed.max_rate == 24000 and confirmed.confirmed

    # When 24000 and 20000 do not hold either, the next candidate (18000) is reported,
    # marked unconfirmed.
    failing = _steps({500: [True], 1000: [True], 2000: [True], 4000: [True], 8000: [True],
                      16000: [True], 32000: [True, False, False], 64000: [False],
                      48000: [False], 40000: [False], 36000: [False],
                      24000: [False, False], 20000: [False, True], 18000: [True, True]})
    found = search_max(failing, start=500, bisections=3)
    confirmed = confirm_max(failing, found, repeats=2)
    assert [t["rate"] for t in confirmed.to_json()["trials"]] == [32000, 24000, 20000]
    assert confirmed.max_rate == 18000 and not confirmed.confirmed


def test_no_repeats_keeps_the_search_maximum():
    from consensus.bench.search import confirm_max, search_max

    found = search_max(_fake(3000)[0], start=500, bisections=2)
    assert confirm_max(_fake(3000)[0], found, repeats=0).max_rate == found.max_rate


class _Clock:
    """A fake clock for the settle logic: sleeping advances it."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_settle_waits_for_the_backlog_to_drain_then_for_two_quiet_windows():
    from consensus.bench.settle import wait_quiet

    clock = _Clock()
    # The system burns a full core until t = 1 s (its backlog), then 0.01 core; the
    # generator still has requests pending until t = 1.5 s.
    def sample():
        t = clock.t
        cpu = min(t, 1.0) + max(0.0, t - 1.0) * 0.01
        return cpu, 5 if t < 1.5 else 0

    quiet = wait_quiet(sample, idle_cores=0.1, clock=clock, sleep=clock.sleep)
    assert quiet.settled and quiet.pending == 0 and quiet.cores < 0.1
    # Quiet from the window ending at 1.6 s (the first with nothing pending), twice in a row.
    assert abs(quiet.waited_s - 1.8) < 1e-9


def test_settle_gives_up_on_a_system_that_stays_busy_and_says_so():
    from consensus.bench.settle import idle_threshold, wait_quiet

    clock = _Clock()
    quiet = wait_quiet(lambda: (clock.t * 0.9, 0), idle_cores=0.1, timeout_s=3.0, clock=clock,
                       sleep=clock.sleep)
    assert not quiet.settled and quiet.waited_s >= 3.0 and abs(quiet.cores - 0.9) < 1e-9
    # The idle threshold comes from the idle system: twice its rate, at least 0.05 above it.
    assert idle_threshold(0.0) == 0.05 and idle_threshold(0.2) == 0.4


def test_memory_reads_peak_and_current_rss_and_says_when_compaction_is_not_offered():
    import os

    from consensus.bench.memory import compaction_unavailable, proc_memory

    mem = proc_memory(os.getpid())
    assert mem is not None and mem["peak_kib"] >= mem["rss_kib"] > 0
    assert proc_memory(None) is None and proc_memory(2**22 + 12345) is None
    assert compaction_unavailable("raft", 0) is None
    why = compaction_unavailable("null", 10_000)
    assert why is not None and "snapshot_entries" in why


def test_wire_counter_names_each_publish_by_its_kind_and_divides_by_operations():
    from consensus.bench.wire import WireCounter
    from consensus.codec import encode_message
    from consensus.messages import ClientRequest

    counter = WireCounter("c1")
    request = encode_message(ClientRequest(src="k1", dst="n1", seq=1, command="SET x = 1"), "c1")
    for _ in range(4):
        counter.on_message("consensus/c1/n1/request/conn-1", request)
    counter.on_message("consensus/c1/client/conn-1", b'{"batched": "replies"}')
    counter.on_message("consensus/c1/n2/from/n1", b"not a message")
    counter.on_message("consensus/c1/n1/status", b"{}")
    rows = {r["kind"]: r for r in counter.per_op(2)}
    assert rows["client request"]["messages_per_op"] == 2.0
    assert rows["client request"]["bytes_per_op"] == 2 * len(request)
    assert rows["client request"]["topic_bytes_per_op"] == 2 * len(
        "consensus/c1/n1/request/conn-1")
    assert rows["client reply"]["messages_per_op"] == 0.5  # a batch is one publish
    assert set(rows) == {"client request", "client reply", "undecodable", "status"}
    assert counter.per_op(0) == []


def test_open_loop_releases_each_request_at_its_scheduled_time_and_no_more():
    from collections import deque

    from consensus.bench.loadgen import OpenLoop

    schedule, backlog = OpenLoop(t0=10.0, rate=100.0, total=5), deque()
    schedule.release(10.0, backlog)  # request 0 is due at once
    assert list(backlog) == [10.0] and not schedule.all_issued
    schedule.release(10.025, backlog)  # 0.025 s in: requests 1 and 2 are due too
    assert list(backlog) == [10.0, 10.01, 10.02]
    schedule.release(11.0, backlog)  # long after: all five, never more than the total
    assert list(backlog) == [10.0, 10.01, 10.02, 10.03, 10.04] and schedule.all_issued
