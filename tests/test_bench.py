"""Smoke tests of the benchmark's pieces: no timing, no processes, no broker."""

from __future__ import annotations

import json
import random

from consensus.algorithms import NAMES
from consensus.bench import report
from consensus.bench.null_protocol import NullNode
from consensus.bench.run import _goals, _ratios, write_outputs
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
    out = {"label": f"{name} 3n", "system": name, "nodes": 3, "max_sustained_ops_s": rate,
           "search": {"max_rate": rate, "steps": [step]}, "latency": {"light": step},
           "fsync": name in ("raft", "paxos")}
    if conf:
        out["conf"] = conf
    return out


def test_bench_json_shape_tables_and_chart_from_a_fake_result(tmp_path):
    systems = [_system("raft", 6000), _system("paxos", 9000), _system("null", 20000),
               _system("raft", 7000, "no-fsync"), _system("paxos", 6000, "no-fsync"),
               _system("pysyncobj", 4000, "default")]
    result = {"manifest": {"broker": {"kind": "mosquitto"}, "mqtt_client": "gmqtt"},
              "bus": [{"library": "gmqtt", "msgs_per_s": 100000, "rtt_p50_us": 170.0,
                       "rtt_p99_us": 400.0}],
              "throughput": systems,
              "failover": [{"algorithm": "raft", "rounds": 10, "p50_ms": 200.0, "p99_ms": 350.0,
                            "max_ms": 350.0}],
              "simulator": [{"algorithm": "raft", "nodes": 5, "speedup": 250.0,
                             "committed": 10}],
              "checker": {"ops": 100000, "keys": 50, "check_s": 1.0, "verdict": "ok"}}
    systems[0]["latency"]["50%"] = {"extra": {"cpu_us_per_op": {
        "leader": 40.0, "follower": 15.0, "broker": 20.0, "clients": 30.0}}}
    result["ratios"] = _ratios(systems)
    assert result["ratios"]["raft / PySyncObj"] == 1.5
    assert result["ratios"]["paxos / null protocol"] == 0.45
    # Like for like with PySyncObj: the no-fsync rows, never mixed up with the default ones.
    assert result["ratios"]["raft no-fsync / PySyncObj"] == 1.75
    assert result["ratios"]["paxos no-fsync / null protocol"] == 0.3
    result["goals"] = _goals(result)
    assert all(g["met"] for g in result["goals"] if "p50" not in g["goal"])
    assert {g["goal"] for g in result["goals"]} >= {
        "raft 3n no-fsync max throughput >= 1.5x PySyncObj", "paxos 3n p50 at 100 ops/s < 1 ms"}
    tables = report.tables(result)
    assert len(tables) == 7
    (cpu_table,) = [t for t in tables if "CPU" in str(t.title)]
    assert cpu_table.row_count == 1
    assert list(cpu_table.columns[-1].cells) == ["120"]  # 40 + 2 x 15 + 20 + 30
    paths = write_outputs(result, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) >= {"manifest", "bus", "throughput", "failover", "simulator", "checker",
                         "ratios", "goals"}
    assert (tmp_path / "manifest.json").exists()
    assert (tmp_path / "throughput_latency.png") in paths


def test_cpu_seconds_reads_a_live_process_and_not_a_gone_one():
    import os

    from consensus.bench.throughput import cpu_seconds

    used = cpu_seconds(os.getpid())
    assert used is not None and used > 0
    assert cpu_seconds(None) is None and cpu_seconds(2**22 + 12345) is None


def test_measure_takes_light_load_first_and_settles_before_the_latency_points():
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

    fake = Fake()
    res = measure(fake, step_s=1.0, start=1000, bisections=0)
    assert fake.calls[0] == 100  # light load on the fresh system
    assert fake.calls[-3:] == ["settle", 2000, 3600]
    assert res["max_sustained_ops_s"] == 4000
