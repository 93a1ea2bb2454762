"""The experiment runner on the simulator: same workload and faults for both, checked."""

import json

from typer.testing import CliRunner

from consensus.cli import app
from consensus.experiment import results
from consensus.experiment.runner import run_sim
from consensus.experiment.spec import parse_spec

SPEC = """\
name: tiny
description: a small leader crash for tests
seeds: [1, 2]
cluster: {nodes: 3}
workload: {clients: 4, rate: 200, duration_s: 3, keys: 5}
faults:
  - {at: 1, crash: leader}
  - {at: 2, restart: crashed}
settle_s: 2
"""


def test_both_algorithms_face_the_same_faults_and_pass_every_check():
    spec = parse_spec(SPEC)
    runs = [run_sim(spec, a, 1) for a in spec.algorithms]
    for r in runs:
        assert [c.verdict for c in r.checks] == ["pass", "pass", "pass"], r.checks
        faults = [e for e in r.events if e["type"] == "fault"]
        crash, restart, heal_all = faults
        assert crash["action"] == "crash" and crash["label"] == f"crash {crash['nodes'][0]}"
        assert restart["action"] == "restart" and restart["nodes"] == crash["nodes"]
        assert not crash["final"] and not crash["skipped"] and crash["duration_ms"] is None
        assert heal_all["final"] and heal_all["nodes"] == ["n1", "n2", "n3"]
        assert r.metrics["operations"]["ok"] > 300
        assert r.metrics["failover"]["elect_ms"], "the crash of the leader caused an election"
        assert sum(r.metrics["throughput_bins"]) == r.metrics["operations"]["ok"]
    # Same seed, same clients: the same commands were offered to both, in the same order.
    first = [[op.command for op in r.ops if op.client == "c1"][:20] for r in runs]
    assert first[0] == first[1]


def test_same_seed_same_history():
    spec = parse_spec(SPEC)
    a, b = run_sim(spec, "raft", 2), run_sim(spec, "raft", 2)
    assert [op.to_json() for op in a.ops] == [op.to_json() for op in b.ops]
    assert a.info["trace_sha256"] == b.info["trace_sha256"]


def test_run_command_writes_the_run_folder(tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(SPEC)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed"] and set(summary["algorithms"]) == {"raft", "paxos"}
    for name in ("spec.yaml", "manifest.json", "summary.json"):
        assert (out / name).is_file()
    for algo in ("raft", "paxos"):
        for seed in (1, 2):
            d = out / algo / f"seed-{seed}"
            for name in ("history.jsonl", "events.jsonl", "metrics.json", "trace.jsonl"):
                assert (d / name).is_file(), d / name
            first = json.loads((d / "history.jsonl").read_text().splitlines()[0])
            assert {"client", "seq", "command", "invoke_ms", "outcome"} <= set(first)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transport"] == "sim" and manifest["seeds"] == [1, 2]
    saved, _, runs = results.load_run(out)
    assert saved == summary and len(runs) == 4
    # `check` re-checks a saved history.
    check = CliRunner().invoke(app, ["check", str(out / "raft/seed-1/history.jsonl")])
    assert check.exit_code == 0, check.output


def test_run_command_overrides_and_bad_spec(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nworkload: {clients: 0}\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "workload.clients (line 2)" in result.output


FAULT_KEYS = {"type", "t", "action", "label", "nodes", "duration_ms", "skipped", "final"}


def test_fault_events_are_structured_and_say_what_could_not_fire():
    spec = parse_spec("""\
name: events
cluster: {nodes: 3}
workload: {clients: 2, duration_s: 3}
faults:
  - {at: 0.5, resume: paused}
  - {at: 1, loss: 0.2, duration: 0.5}
  - {at: 1.5, partition: [[n1], [n2, n3]]}
  - {at: 2, heal: true}
settle_s: 1
""")
    events = [e for e in run_sim(spec, "raft", 1).events if e["type"] == "fault"]
    assert all(set(e) == FAULT_KEYS for e in events)
    resume, loss, partition, heal, final = events
    assert resume["skipped"] and resume["nodes"] == [] and resume["label"] == "resume paused"
    assert loss["action"] == "loss" and loss["duration_ms"] == 500.0
    assert loss["label"] == "loss 20% for 0.5s"
    assert partition["label"] == "partition n1 | n2,n3"
    assert partition["nodes"] == ["n1", "n2", "n3"]
    assert heal["action"] == "heal" and not heal["final"] and final["final"]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_a_run_is_a_function_of_spec_algorithm_seed_and_cluster_factory(tmp_path):
    from consensus.experiment.execute import run_one, simulated

    spec = parse_spec(SPEC)
    a = run_one(spec, "paxos", 1, simulated, tmp_path)
    b = run_sim(spec, "paxos", 1)
    assert a.info["trace_sha256"] == b.info["trace_sha256"]
    assert a.metrics == b.metrics and a.events == b.events


def _bus_cluster_over_wals(tmp_path, storage, algorithm, keep=None):
    """A bus cluster (never started) whose nodes' logs are a simulated run's records."""
    from consensus.experiment.bus import BusCluster, BusOptions
    from consensus.node import Config
    from consensus.storage import FileStorage

    for nid, records in storage.items():
        wal = FileStorage(tmp_path / f"{nid}.wal", fsync=False)
        wal.append(records[:keep] if keep is not None else records)
        wal.close()
    return BusCluster(algorithm, tuple(sorted(storage)), Config(), tmp_path,
                      BusOptions("mqtt://127.0.0.1:1", status_interval_ms=0.0))


def test_the_bus_checks_nodes_restored_from_their_logs_with_the_shared_checker(tmp_path):
    import asyncio

    from consensus.experiment.runner import RunPlan, run, sim_cluster, workload_of

    spec = parse_spec(SPEC)
    for algorithm in spec.algorithms:
        cluster = sim_cluster(spec, algorithm, 1)
        plan = RunPlan((), workload_of(spec), 2.0, 1.0, linearizability=False)
        result = asyncio.run(run(cluster, plan, 1))
        raw = [op for c in cluster.clients for op in c.history]  # the cluster's own clock
        storage = {nid: list(records) for nid, records in cluster.sim.storage.items()}
        whole = asyncio.run(_bus_cluster_over_wals(
            tmp_path / algorithm / "whole", storage, algorithm).finish(raw))
        assert whole.violations == [] and whole.committed == result.metrics["committed"]
        # Logs that lost their tails: acknowledged writes are missing from every node.
        cut = asyncio.run(_bus_cluster_over_wals(
            tmp_path / algorithm / "cut", storage, algorithm, keep=20).finish(raw))
        assert any("acknowledged" in v and "not in the node's final state" in v
                   for v in cut.violations), cut.violations
