"""The configuration-aware safety checks and the snapshot agreement check, and proof that
each one bites: a doctored node or run that breaks the property, and the violation found.

The quorum maths is table-driven (etcd's habit for pure arithmetic). The doctored runs go
through the scenario hand-driver (tests/scenario_driver.py), so what a check sees is what it
sees in the simulator: every drain, in order.
"""

from __future__ import annotations

import pytest

from consensus import quorum
from consensus.check.configs import ConfigHistory, quorums_intersect
from consensus.check.invariants import SharedChecker
from consensus.check.linearizability import check_history, format_result
from consensus.check.snapshots import ReferenceState
from consensus.experiment.workload import SimClient, Workload
from consensus.kv import KVStore
from consensus.membership import Membership
from consensus.messages import Command, ReplyStatus
from consensus.node import LEADER, Config, Node, Status
from consensus.paxos.node import PaxosNode
from consensus.raft.node import RaftNode
from consensus.sim import Simulation
from tests.helpers import client, settle, wait_for_leader
from tests.membership_helpers import Operator
from tests.scenario_driver import Driver
from tests.test_paxos_membership import ConfigAtOnceNode, _split_brain_scenario
from tests.test_raft_membership import (
    DirectSwitchRaftNode,
    NoOwnTermFixRaftNode,
    _direct_switch_scenario,
    _single_server_scenario,
)


def config(text: str) -> Membership:
    return Membership.from_text(text)


# -- the maths ---------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "intersect"), [
    ("voters=n1,n2,n3", "voters=n1,n2,n3", True),
    # one voter added or removed at a time (single-server changes, thesis §4.1)
    ("voters=n1,n2,n3", "voters=n1,n2,n3,n4", True),
    ("voters=n1,n2,n3,n4", "voters=n1,n2,n3", True),
    ("voters=n1,n2,n3,n4,n5", "voters=n1,n2,n3,n4", True),
    # two at once: {n1,n2} and {n3,n4,n5} decide without each other
    ("voters=n1,n2,n3", "voters=n1,n2,n3,n4,n5", False),
    ("voters=n1,n2,n3,n4,n5", "voters=n1,n2,n3", False),
    # a replace in one step: {n2,n3} and {n1,n4}
    ("voters=n1,n2,n3", "voters=n1,n2,n4", False),
    ("voters=n1,n2,n3", "voters=n4,n5,n6", False),
    # joint consensus: C_old,new overlaps both C_old and C_new, which do not overlap
    ("voters=n1,n2,n3", "voters=n1,n2,n4 old=n1,n2,n3", True),
    ("voters=n1,n2,n4 old=n1,n2,n3", "voters=n1,n2,n4", True),
    ("voters=n1,n2,n3", "voters=n4,n5,n6 old=n1,n2,n3", True),
    ("voters=n4,n5,n6 old=n1,n2,n3", "voters=n4,n5,n6", True),
    # learners never count
    ("voters=n1,n2,n3", "voters=n1,n2,n3 learners=n4,n5", True),
    ("voters=n1,n2,n3 learners=n4,n5", "voters=n1,n2,n3,n4,n5", False),
])
def test_quorums_intersect(a: str, b: str, intersect: bool) -> None:
    assert quorums_intersect(config(a), config(b)) is intersect
    assert quorums_intersect(config(b), config(a)) is intersect


def test_quorums_intersect_agrees_with_brute_force_on_small_clusters() -> None:
    """Every pair of configurations over n1..n5 (simple ones and joint ones between them):
    the exact answer from enumerating every pair of quorums."""
    from itertools import combinations

    ids = ["n1", "n2", "n3", "n4", "n5"]
    simple = [frozenset(c) for k in (1, 2, 3, 4, 5) for c in combinations(ids, k)]
    configs = [Membership(v) for v in simple[::3]]
    configs += [Membership(v, o) for v, o in zip(simple[::7], simple[1::7], strict=False)
                if v != o]
    subsets = [frozenset(c) for k in range(6) for c in combinations(ids, k)]
    for a in configs:
        qa = [s for s in subsets if a.has_quorum(s)]
        for b in configs:
            qb = [s for s in subsets if b.has_quorum(s)]
            want = all(x & y for x in qa for y in qb)
            assert quorums_intersect(a, b) is want, (a, b)


def test_config_history_governs_by_index_and_delay() -> None:
    history = ConfigHistory(config("voters=n1,n2,n3"))
    assert not history.changed
    assert history.decided(10, "CONFIG voters=n1,n2,n3 learners=n4") is not None
    assert history.decided(10, "CONFIG voters=n1,n2,n3 learners=n4") is None  # seen again
    history.decided(20, "CONFIG voters=n1,n2,n3,n4")
    assert history.changed
    assert history.governing(10) == config("voters=n1,n2,n3")  # Raft: in force after it
    assert history.governing(11) == config("voters=n1,n2,n3 learners=n4")
    assert history.governing(25) == config("voters=n1,n2,n3,n4")
    # Multi-Paxos, alpha = 8: slot 20 + 8 is the first the configuration of slot 20 governs.
    assert history.governing(27, delay=8) == config("voters=n1,n2,n3 learners=n4")
    assert history.governing(28, delay=8) == config("voters=n1,n2,n3,n4")
    assert history.latest == (20, config("voters=n1,n2,n3,n4"))


def test_reference_state_rewinds_to_an_earlier_index() -> None:
    agreed: dict[int, Command | None] = {
        i: Command("c1", i, f"SET k{i % 3} = {i}") for i in range(1, 3001)}
    agreed[5] = None  # a no-op
    ref = ReferenceState(agreed)
    digests = {}
    for index in (2500, 100, 3000, 1500, 0):
        store = KVStore()
        for i in range(1, index + 1):
            store.apply(agreed[i])
        digests[index] = store.digest()
        assert ref.digest_at(index) == digests[index]
    assert ref.digest_at(3001) is None  # never applied anywhere: nothing to compare with


# -- doctored nodes ----------------------------------------------------------------------

class HastyRaft(RaftNode):
    """Broken Raft: counts a vote it never received (an off-by-one in the tally)."""

    def maybe_win_election(self, *, pre_vote: bool) -> bool:
        if not pre_vote and quorum.has_quorum(len(self.votes) + 1, len(self.peers)):
            self.become_leader()
            return True
        return super().maybe_win_election(pre_vote=pre_vote)


class HastyPaxos(PaxosNode):
    """Broken Multi-Paxos: leads with one promise fewer than a majority."""

    def maybe_win_election(self) -> bool:
        if self.role == "candidate" and self.ballot is not None and quorum.has_quorum(
                len(self.promises) + 2, len(self.peers)):
            self.become_leader()
            return True
        return super().maybe_win_election()


class SnapshotRestoringRaft(RaftNode):
    """Raft that restarts as if from a compacted log: the committed prefix it replays is
    taken as a snapshot (its state, not entries applied one by one), like a node whose WAL
    was truncated at a snapshot. With ``forge`` the restored state is doctored: one key holds
    a value no command wrote (a snapshot that does not match the prefix it claims)."""

    forge = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.snapshot_at = 0

    def restore(self, records: list) -> None:  # type: ignore[override]
        super().restore(records)
        replayed = self._out.applied
        if replayed:
            self.snapshot_at = replayed[-1].index
            replayed.clear()
            if self.forge:
                self.kv.data["x"] = "forged"

    def status(self) -> Status:
        st = super().status()
        st.snapshot_index = self.snapshot_at
        return st


class ForgedSnapshotRaft(SnapshotRestoringRaft):
    forge = True


class GapRaft(SnapshotRestoringRaft):
    """Broken Raft: skips the replayed prefix on restart but claims no snapshot for it."""

    def status(self) -> Status:
        return RaftNode.status(self)  # no snapshot_index: the skip is unexplained


def driver(algorithm: str, node_class: type[Node], nodes: int = 3, **knobs: object) -> Driver:
    d = Driver(algorithm)
    d.cluster(nodes=nodes, timeout="60000", **knobs)  # type: ignore[arg-type]
    d.node_class = node_class
    for nid in d.ids:  # restart the cluster on the doctored class, from nothing
        d.nodes[nid] = None
        d.storage[nid] = []
        d._start(nid)
    return d


def checks(d: Driver) -> list[str]:
    return [v.check for v in d.checker.violations]


def elect(d: Driver, nid: str = "n1") -> None:
    d.campaign(nid)
    d.advance(100, deliver=True)
    assert d.nodes[nid].status().role == LEADER  # type: ignore[union-attr]


# -- each check bites ----------------------------------------------------------------------

def test_two_voters_switched_at_once_is_caught_the_moment_it_is_decided() -> None:
    """tests/test_raft_membership.py's broken variant replaces n2 with n7 without joint
    consensus. The first violation is the configuration change itself, when it is decided:
    before the split brain it allows has lost anything (that follows, and is caught too)."""
    sim = _direct_switch_scenario(DirectSwitchRaftNode)
    first = sim.violations[0]
    assert first.check == "config-change-disjoint", sim.violations
    assert "voters=n1,n3,n7" in first.detail
    later = {v.check for v in sim.violations}
    assert "leader-config-disjoint" in later  # {n2,n3} elect a leader under C_old


def test_single_server_changes_without_the_own_term_fix_are_caught_at_the_election() -> None:
    """Ongaro's 2015 counterexample (tests/test_raft_membership.py's scenario): n1 is elected under
    {n1..n5}, a configuration that never committed, after {n1,n2,n3} + learner n5 did. The
    first violation is that election: its configuration shares no quorum with the decided
    one, which is exactly what the own-term fix prevents."""
    sim = _single_server_scenario(NoOwnTermFixRaftNode)
    first = sim.violations[0]
    assert first.check == "leader-config-disjoint", sim.violations
    assert "voters=n1,n2,n3,n4,n5" in first.detail


def test_paxos_configuration_in_force_at_once_is_caught_by_per_slot_quorums() -> None:
    """tests/test_paxos_membership.py's broken variant (alpha = 0 in effect): what its
    leader applies was never chosen by a quorum of the configuration governing the slot."""
    checks_found = {v.check for v in _split_brain_scenario(ConfigAtOnceNode).violations}
    assert "applied-unchosen" in checks_found, checks_found


@pytest.mark.parametrize(("algorithm", "node_class", "check"), [
    ("raft", HastyRaft, "elected-without-quorum"),
    ("paxos", HastyPaxos, "proposed-without-promises"),
])
def test_leader_elected_by_a_minority_is_caught(algorithm: str, node_class: type[Node],
                                                check: str) -> None:
    """In a minority partition {n1,n2} of five, a tally that miscounts makes n1 leader; its
    durable voters (n1, n2) are no quorum of the configuration. Raft's is caught at the
    election; Multi-Paxos's when its first proposal is accepted (a Paxos leader may lead
    before it holds promises for every configuration it will propose under)."""
    d = driver(algorithm, node_class, nodes=5, pre_vote=False)
    d.partition([["n1", "n2"], ["n3", "n4", "n5"]])
    d.campaign("n1")
    d.advance(100, deliver=True)
    assert d.nodes["n1"].status().role == LEADER  # type: ignore[union-attr]
    d.propose("n1", "SET x = 1")
    d.advance(100, deliver=True)
    assert checks(d)[:1] == [check], d.checker.violations
    assert "n1, n2" in str(d.checker.violations[0])


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_correct_elections_pass_the_quorum_check(algorithm: str) -> None:
    d = driver(algorithm, RaftNode if algorithm == "raft" else PaxosNode, nodes=5,
               pre_vote=False, check_quorum=False)
    d.partition([["n1", "n2", "n3"], ["n4", "n5"]])
    elect(d)
    d.propose("n1", "SET x = 1")
    d.advance(100, deliver=True)
    d.heal()
    d.crash("n1")
    # Raft's n4 lacks the write, so it cannot win (§5.4.1); Multi-Paxos's can (Phase 1).
    elect(d, "n2" if algorithm == "raft" else "n4")
    d.finish()
    assert checks(d) == []


def _write_then_restart(d: Driver) -> None:
    elect(d)
    for i in range(5):
        d.propose("n1", f"SET x = {i}")
        d.advance(100, deliver=True)
    d.crash("n3")
    d.advance(100, deliver=True)
    d.restart("n3")
    d.advance(200, deliver=True)


def test_a_node_restored_from_a_faithful_snapshot_passes() -> None:
    d = driver("raft", SnapshotRestoringRaft)
    _write_then_restart(d)
    node = d.nodes["n3"]
    assert node is not None and node.status().snapshot_index > 0  # it did restore from one
    d.finish()
    assert checks(d) == []


def test_a_node_restored_from_a_forged_snapshot_is_caught() -> None:
    """Its state at the snapshot index is not what applying the agreed entries gives: caught
    when it restores (and again at the end, as its final state still differs)."""
    d = driver("raft", ForgedSnapshotRaft)
    _write_then_restart(d)
    assert checks(d)[:1] == ["snapshot-state-agreement"], d.checker.violations
    d.finish()
    assert "applied-state-agreement" in checks(d)


def test_skipping_entries_without_a_snapshot_is_caught() -> None:
    d = driver("raft", GapRaft)
    _write_then_restart(d)
    assert "applied-in-order" in checks(d), d.checker.violations


def test_shared_checker_flags_a_jump_no_snapshot_covers() -> None:
    """The jump rule at the level of one drain: applied index ahead of everything applied,
    with and without a snapshot that covers it."""
    from consensus.node import Ready

    class Fake(RaftNode):
        pass

    node = Fake("n1", ["n1", "n2", "n3"])
    checker = SharedChecker()
    status = node.status()
    status.applied_index = 7
    checker.after_ready(0.0, node, Ready(), status)
    assert [v.check for v in checker.violations] == ["applied-in-order"]
    status.snapshot_index = status.applied_index = 9
    checker.after_ready(1.0, node, Ready(), status)
    assert [v.check for v in checker.violations] == ["applied-in-order"]  # nothing new


# -- snapshots taken and installed by the real cores ---------------------------------------

class LossySnapshotPaxos(PaxosNode):
    """Broken Multi-Paxos: the snapshot it takes leaves out one key of its state (the node
    itself keeps it), so whoever restores from that snapshot lost a write."""

    def take_snapshot(self) -> None:
        kept = dict(self.kv.data)
        if kept:
            del self.kv.data[min(kept)]
        try:
            super().take_snapshot()
        finally:
            self.kv.data = kept


def _compacting_run(node_class: type[Node]) -> Simulation:
    """Three Multi-Paxos nodes compacting every 20 slots; n2 crashes, misses writes, and
    restarts from its compacted log, then catches up from the leader's snapshot."""
    sim = Simulation("paxos", 3, seed=5, config=Config(snapshot_entries=20),
                     node_class=node_class)
    wait_for_leader(sim)
    c = client(sim)
    ops = [c.submit(f"SET k{i} = {i}") for i in range(60)]
    assert settle(ops[30], sim, 30_000)
    sim.crash("n2" if sim.leader() != "n2" else "n3")
    assert settle(ops[-1], sim, 30_000)
    sim.restart("n2" if sim.is_up("n3") else "n3")
    sim.run_for(3000)
    sim.finish()
    return sim


def test_paxos_snapshot_restores_are_compared_and_agree() -> None:
    sim = _compacting_run(PaxosNode)
    checker = sim.checker
    assert isinstance(checker, SharedChecker)
    assert checker.restores_checked >= 1  # the check really ran on a restored node
    assert sim.violations == []


def test_a_snapshot_that_loses_a_write_is_caught() -> None:
    sim = _compacting_run(LossySnapshotPaxos)
    found = {v.check for v in sim.violations}
    assert "snapshot-state-agreement" in found, sim.violations


# -- operations spanning changes: exactly once, linearizable ---------------------------------

@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_operations_spanning_changes_stay_linearizable_and_exactly_once(algorithm: str) -> None:
    """Clients write and read (and retry on timeouts and redirects) while the operator
    replaces a follower, removes the leader, and adds a node back, with compaction on: the
    whole history is linearizable, nothing acknowledged is lost, no write takes effect twice
    (a duplicate would be seen as a value coming back), and every check passes."""
    sim = Simulation(algorithm, 3, seed=21, config=Config(snapshot_entries=25,
                                                          snapshot_chunk_bytes=256))
    wait_for_leader(sim)
    workload = Workload(clients=3, keys=3, read_ratio=0.4, request_timeout_ms=2000)
    clients = [SimClient(f"c{i}", sim, workload) for i in range(1, 4)]
    for c in clients:
        c.start(sim.now)
    op = Operator(sim)
    sim.run_for(400)
    leader = wait_for_leader(sim)
    follower = next(n for n in sorted(sim.ids) if n != leader)
    sim.add_node("n4")
    assert op.change(f"replace {follower} n4").status == ReplyStatus.OK
    sim.run_for(300)
    assert op.change(f"remove {wait_for_leader(sim)}").status == ReplyStatus.OK
    sim.run_for(300)
    sim.add_node("n5")
    assert op.change("add n5").status == ReplyStatus.OK
    sim.run_for(400)
    for c in clients:
        c.stop()
    sim.run_for(2000)
    assert sim.finish() == []
    history = [o for c in clients for o in c.history]
    assert sum(1 for o in history if o.outcome == "ok") > 50
    result = check_history(history)
    assert result.ok, format_result(result)


def test_a_history_seen_only_after_a_snapshot_is_not_judged() -> None:
    """A driver that starts watching late (every node restored from a snapshot) cannot know
    the configurations the snapshot covers: a change it then sees decided is not compared
    with the initial configuration (that would be a false alarm), and says so."""
    from consensus.node import Applied, Ready

    node = RaftNode("n1", ["n1", "n2", "n3"])
    checker = SharedChecker()
    status = node.status()
    status.snapshot_index = status.applied_index = 50  # restored: entries 1..50 never seen
    status.config = "voters=n3,n4,n5"
    checker.after_ready(0.0, node, Ready(), status)
    status.applied_index = 51
    change = Command("op", 9, "CONFIG voters=n3,n4,n5,n6")
    checker.after_ready(1.0, node, Ready(applied=[Applied(51, change, None)]), status)
    assert checker.violations == []
    assert not checker.configs_known
