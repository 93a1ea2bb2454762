"""Membership changes in experiments (issue 13): spec faults, their resolution when they fire,
the simulated operator, and the per-change metrics on synthetic histories."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consensus.experiment.metrics import change_impact, compute_metrics, membership_impacts
from consensus.experiment.nemesis import Fault, MembershipEvent, Nemesis
from consensus.experiment.runner import to_fault
from consensus.experiment.spec import SpecError, parse_spec
from consensus.history import Operation

HEAD = """\
name: m
workload: {duration_s: 20}
cluster: {nodes: 3}
"""


def spec(faults: str, extra: str = "") -> str:
    return HEAD + extra + "faults:\n" + faults


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "m.yaml")
    return info.value.errors


# -- the spec -----------------------------------------------------------------------------

def test_membership_faults_parse_and_become_faults():
    s = parse_spec(spec("""\
  - {at: 5, add: n4}
  - {at: 8, remove: leader}
  - {at: 10, replace: {remove: follower1, add: n7}}
  - {at: 12, transfer: n4}
  - {at: 13, crash: n7}
"""))
    assert [f.action for f in s.faults] == ["add", "remove", "replace", "transfer", "crash"]
    assert s.all_ids == ["n1", "n2", "n3", "n4", "n7"]
    faults = [to_fault(f) for f in s.faults]
    assert faults[0] == Fault(5000.0, "add", node="n4")
    assert faults[2] == Fault(10000.0, "replace", target="follower1", node="n7")
    assert [f.label() for f in faults[:4]] == ["add n4", "remove leader",
                                               "replace follower1 n7", "transfer n4"]
    assert s.faults[2].describe() == "T=10s replace follower1 n7"


def test_ids_grow_in_firing_order_not_file_order():
    # n4 is added at 5 s, so a crash of n4 at 6 s is fine even when listed first.
    parse_spec(spec("  - {at: 6, crash: n4}\n  - {at: 5, add: n4}\n"))
    errs = errors(spec("  - {at: 4, crash: n4}\n  - {at: 5, add: n4}\n"))
    assert len(errs) == 1 and errs[0].startswith("faults[0].crash (line 5): names n4")


def test_bad_membership_faults_name_field_and_line():
    errs = errors(spec("""\
  - {at: 1, add: n2}
  - {at: 2, add: leader}
  - {at: 3, replace: {remove: n9, add: n5}}
  - {at: 4, transfer: n8}
"""))
    text = "\n".join(errs)
    assert "faults[0].add (line 5): n2 must be a new node id" in text
    assert "faults[1].add (line 6): leader must be a new node id" in text
    assert "faults[2].replace.remove (line 7): names n9" in text
    assert "faults[3].transfer (line 8): names n8" in text
    # Malformed faults are reported by field (before the cross-checks above can run).
    errs = errors(spec("""\
  - {at: 5, add: "bad id"}
  - {at: 6, replace: {remove: n1}}
  - {at: 7, add: n4, remove: n1}
"""))
    text = "\n".join(errs)
    assert "faults[0].add (line 5)" in text and "pattern" in text
    assert "faults[1].replace.add (line 6)" in text and "required" in text.lower()
    assert "faults[2] (line 7): a fault needs exactly one of" in text


def test_membership_and_compaction_sections_reach_the_config_and_default_to_off():
    plain = parse_spec(HEAD)
    assert plain.membership is None and plain.compaction is None
    config = plain.config("raft")
    assert (config.membership_change, config.alpha, config.snapshot_entries) == ("joint", 128, 0)
    # Left out, the sections do not appear in the dump either (spec hashes stay the same).
    assert "membership" not in plain.model_dump(exclude_none=True)
    tuned = parse_spec(HEAD + "membership: {change: single, alpha: 16}\n"
                              "compaction: {snapshot_entries: 500, snapshot_chunk_bytes: 4096}\n")
    config = tuned.config("paxos")
    assert (config.membership_change, config.alpha) == ("single", 16)
    assert (config.snapshot_entries, config.snapshot_chunk_bytes) == (500, 4096)
    errs = errors(HEAD + "membership: {change: both}\ncompaction: {snapshot_entries: -1}\n")
    assert any(e.startswith("membership.change (line 4)") for e in errs)
    assert any(e.startswith("compaction.snapshot_entries (line 5)") for e in errs)


# -- the nemesis --------------------------------------------------------------------------

class FakeCluster:
    """The fault hooks the nemesis calls, recording membership requests."""

    def __init__(self, ids: tuple[str, ...], leader: str | None) -> None:
        self.ids = ids
        self.now = 0.0
        self._leader = leader
        self.membership_events: list[MembershipEvent] = []
        self.asked: list[str] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self.timers.append((t, fn))

    def leader(self) -> str | None:
        return self._leader

    def applied(self, nid: str) -> int | None:
        return {"n1": 9, "n2": 3, "n3": 7}.get(nid, 0)

    def is_up(self, nid: str) -> bool:
        return True

    def reconfigure(self, change: str) -> None:
        self.asked.append(change)
        if change.startswith(("add", "replace")):
            self.ids = (*self.ids, change.split()[-1])
        self.membership_events.append(MembershipEvent(change, self.now))

    def fire(self) -> None:
        for t, fn in sorted(self.timers, key=lambda p: p[0]):
            self.now = t
            fn()


def test_targets_resolve_when_the_change_fires():
    cluster = FakeCluster(("n1", "n2", "n3"), leader="n1")
    nemesis = Nemesis(cluster, [Fault(1, "add", node="n4"), Fault(2, "remove", "most-lagging"),
                                Fault(3, "replace", "leader", node="n5"),
                                Fault(4, "transfer", "follower2")])
    cluster.fire()
    assert cluster.asked == ["add n4", "remove n2", "replace n1 n5", "transfer n3"]
    assert [e.label for e in nemesis.applied] == cluster.asked
    assert nemesis.applied[2].nodes == ("n1", "n5")


def test_without_a_leader_a_role_target_is_skipped():
    cluster = FakeCluster(("n1", "n2", "n3"), leader=None)
    nemesis = Nemesis(cluster, [Fault(1, "remove", "leader")])
    cluster.fire()
    assert cluster.asked == [] and nemesis.applied[0].skipped


def test_role_tokens_pick_among_the_current_members():
    cluster = FakeCluster(("n1", "n2", "n3", "n4"), leader="n1")
    cluster.membership_events.append(MembershipEvent("remove n2", 0.0, 1.0, True,
                                                     "voters=n1,n3,n4"))
    nemesis = Nemesis(cluster, [Fault(1, "remove", "follower1")])
    cluster.fire()
    assert cluster.asked == ["remove n3"]  # n2 was removed: follower1 is n3 now
    assert nemesis.members() == ("n1", "n3", "n4")


# -- metrics ------------------------------------------------------------------------------

def ops_at(times: list[float]) -> list[Operation]:
    out = []
    for i, t in enumerate(times):
        op = Operation("c1", i + 1, "SET k = v", t - 1.0)
        op.complete_ms, op.outcome = t, "ok"
        out.append(op)
    return out


def steady(start: float, end: float, per_s: float) -> list[float]:
    step = 1000.0 / per_s
    return [start + step * (k + 1) for k in range(int((end - start) / step))]


def test_a_full_stop_shows_as_a_full_dip_and_its_recovery():
    # 100 ops/s, nothing answered from 5 s to 7 s, then 100 ops/s again.
    done = steady(0, 5000, 100) + steady(7000, 20000, 100)
    impact = change_impact(done, 5000.0, 20000.0)
    assert impact["before_ops_s"] == pytest.approx(100, rel=0.02)
    assert impact["dip_pct"] == pytest.approx(100.0)
    # Back at 90% less two standard deviations (20 ops at 100 ops/s: 70 ops/s) of 1 s windows
    # 0.7 s after the stop ended.
    assert impact["recovery_ms"] == pytest.approx(2700.0, abs=100)


def test_no_dip_recovers_at_once():
    done = steady(0, 20000, 100)
    impact = change_impact(done, 5000.0, 20000.0)
    assert impact["dip_pct"] == pytest.approx(0.0, abs=2) and impact["recovery_ms"] == 0.0


def test_a_dip_that_never_recovers_has_no_recovery():
    done = steady(0, 5000, 100) + steady(5000, 20000, 50)
    impact = change_impact(done, 5000.0, 20000.0)
    assert impact["dip_pct"] == pytest.approx(50.0, abs=3) and impact["recovery_ms"] is None


def test_membership_metrics_in_a_run():
    ops = ops_at(steady(0, 4000, 100) + steady(4500, 10000, 100))
    changes = [{"type": "membership", "t": 4000.0, "change": "add n4", "done_ms": 4600.0,
                "ok": True, "result": "voters=n1,n2,n3,n4", "attempts": 2, "added": "n4",
                "catch_up_index": 400, "caught_up_ms": 4300.0, "catch_up_bytes": 12345}]
    (impact,) = membership_impacts(ops, changes, 10000.0)
    assert impact["change_ms"] == 600.0 and impact["catch_up_ms"] == 300.0
    assert impact["catch_up_bytes"] == 12345 and impact["dip_pct"] > 40
    metrics = compute_metrics(ops, end_ms=12000, duration_ms=10000, committed=len(ops),
                              messages={}, message_bytes={}, faults=[], role_events=[],
                              leader_events=[], membership=changes)
    assert metrics["reconfiguration"]["catch_up_bytes"] == [12345]
    assert "membership" not in compute_metrics(
        ops, end_ms=12000, duration_ms=10000, committed=len(ops), messages={},
        message_bytes={}, faults=[], role_events=[], leader_events=[])


# -- random schedules ---------------------------------------------------------------------

IDS = [f"n{i}" for i in range(1, 6)]


def test_random_schedules_change_membership_only_when_asked():
    from consensus.experiment.nemesis import random_schedule

    for seed in range(200):
        plain = random_schedule(IDS, 10_000, seed)
        assert not {f.action for f in plain} & {"add", "remove", "replace", "transfer"}
        assert plain == random_schedule(IDS, 10_000, seed)
    kinds = {f.action for seed in range(200)
             for f in random_schedule(IDS, 10_000, seed, membership=True)}
    assert {"add", "remove", "replace", "transfer"} <= kinds


def test_random_membership_keeps_three_to_seven_members_and_a_majority_up():
    from consensus.experiment.nemesis import MAX_MEMBERS, MIN_MEMBERS, random_schedule

    for seed in range(300):
        members, new = len(IDS), set()
        down = {"crash": 0, "pause": 0}
        for f in random_schedule(IDS, 20_000, seed, membership=True):
            if f.action == "add":
                members += 1
            elif f.action == "remove":
                members -= 1
            elif f.action in down:
                down[f.action] += 1
            elif f.action in ("restart", "resume"):  # every node of its kind comes back
                down["crash" if f.action == "restart" else "pause"] = 0
            if f.node is not None:
                assert f.node not in new and f.node not in IDS
                new.add(f.node)
            assert MIN_MEMBERS <= members <= MAX_MEMBERS
            if f.action == "remove":
                assert sum(down.values()) <= (members - 1) // 2, f"seed {seed}: {f.describe()}"


def test_a_membership_sweep_has_its_own_hash_and_a_plain_one_keeps_its_own():
    from consensus.sweep import SweepSettings

    plain = SweepSettings(5, 10.0)
    assert "membership" not in plain.to_json()
    assert SweepSettings(5, 10.0, membership=True).spec_hash() != plain.spec_hash()
    opts = SweepSettings(5, 10.0, membership=True).options("raft", 2)
    assert opts.faults == "random+membership" and opts.snapshot_entries > 0
    assert "--faults random+membership" in opts.command()
    assert plain.options("raft", 2).snapshot_entries == 0


# -- end to end, in the simulator -----------------------------------------------------------

E2E = """\
name: e2e
cluster: {nodes: 3}
workload: {clients: 4, rate: 200, duration_s: 6, keys: 10}
compaction: {snapshot_entries: 100, snapshot_chunk_bytes: 2048}
faults:
  - {at: 2, replace: {remove: follower1, add: n4}}
  - {at: 4, transfer: n4}
settle_s: 2
"""


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_a_replace_and_a_transfer_run_end_to_end(algorithm):
    from consensus.experiment.runner import run_sim

    result = run_sim(parse_spec(E2E), algorithm, 1)
    assert result.passed, [c.to_json() for c in result.checks]
    replace, transfer = result.metrics["membership"]
    assert replace["ok"] and replace["change"].endswith(" n4"), replace
    assert "n4" in replace["result"] and replace["change"].split()[1] not in replace["result"]
    # About 400 entries were committed before the change, 100 per snapshot: n4 catches up
    # (from a snapshot) and the bytes sent to it are counted.
    assert replace["catch_up_ms"] is not None and replace["catch_up_bytes"] > 0
    assert transfer["ok"], transfer
    assert [e["change"] for e in result.events if e["type"] == "membership"] == [
        replace["change"], "transfer n4"]


def test_a_late_dip_counts_in_the_recovery():
    # Steady for 3 s after the change, then 1 s with nothing answered (a removed node comes
    # back and campaigns): not recovered until that dip is over.
    done = steady(0, 8000, 100) + steady(9000, 20000, 100)
    impact = change_impact(done, 5000.0, 20000.0)
    assert impact["dip_pct"] == pytest.approx(100.0)
    assert impact["recovery_ms"] == pytest.approx(4600.0, abs=100)


def test_the_report_shows_each_change_side_by_side(tmp_path):
    from consensus.experiment.execute import run_experiment

    spec = parse_spec(E2E.replace("name: e2e", "name: e2e\nseeds: [1, 2]"))
    summary = run_experiment(spec, tmp_path)
    assert summary["passed"]
    labels = [m["label"] for m in summary["metrics"]]
    assert "change: dip" in labels and "change: catch-up bytes" in labels
    md = (tmp_path / "report.md").read_text()
    table = md.split("## Membership changes: dip, recovery and catch-up", 1)[1]
    assert "| change | measure | Raft | Multi-Paxos |" in table
    assert "T=2s replace follower1 -> n4" in table and "T=4s transfer n4" in table
    assert "| answered OK | 2 of 2 seeds | 2 of 2 seeds |" in table
    assert (tmp_path / "figures" / "membership.png").exists()
    events = (tmp_path / "raft" / "seed-1" / "events.jsonl").read_text()
    assert '"type":"membership"' in events and '"added":"n4"' in events


def test_a_plain_experiment_keeps_its_headline():
    from consensus.experiment.results import HEADLINE, headline

    assert headline(parse_spec(HEAD)) == HEADLINE
