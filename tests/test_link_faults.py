"""Link faults (``links: {cut, one_way}``), role tokens, and the partial-connectivity files."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.experiment.cluster import SimCluster
from consensus.experiment.nemesis import Fault, Nemesis, resolve_role
from consensus.experiment.runner import run_sim, to_fault
from consensus.experiment.spec import ExperimentSpec, SpecError, load_spec, parse_spec
from consensus.messages import Message
from consensus.sim import Simulation

ROOT = Path(__file__).resolve().parent.parent
PARTIAL = ("quorum-loss", "constrained-election", "chained", "omission")


# -- the spec ------------------------------------------------------------------------------

GOOD = """\
name: links
workload: {duration_s: 5}
faults:
  - {at: 1, links: {cut: [[leader, follower1], [follower2, n5]], one_way: [[most-lagging, n1]]}}
  - {at: 2, links: {one_way: [[n1, n2]]}}
  - {at: 3, heal: true}
"""


def test_a_links_fault_parses_into_pairs_and_one_way_pairs():
    spec = parse_spec(GOOD)
    first, second = (to_fault(f) for f in spec.faults[:2])
    assert first.action == "links"
    assert first.links == (("leader", "follower1"), ("follower2", "n5"))
    assert first.one_way == (("most-lagging", "n1"),)
    assert second.links == () and second.one_way == (("n1", "n2"),)
    assert spec.faults[0].describe() == ("T=1s links cut leader-follower1, follower2-n5; "
                                         "one_way most-lagging->n1")


def _errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "bad.yaml")
    return info.value.errors


def test_an_unknown_name_or_token_is_refused_at_its_field_and_line():
    errors = _errors("name: x\n"
                     "faults:\n"
                     "  - at: 1\n"
                     "    links: {cut: [[leader, follower5]]}\n"   # 5 nodes: follower1..4
                     "  - {at: 2, links: {one_way: [[n1, laggard]]}}\n")
    assert errors[0].startswith("faults[0].links (line 4): names follower5"), errors
    assert "follower1..followerK" in errors[0] and "K = 4" in errors[0]
    assert errors[1].startswith("faults[1].links (line 5): names laggard"), errors


def test_a_bad_shape_is_refused_with_its_line():
    errors = _errors("name: x\n"
                     "faults:\n"
                     "  - at: 1\n"
                     "    links:\n"
                     "      cut: [[n1, n2, n3]]\n"
                     "  - {at: 2, links: {one_way: [[n1, n1]]}}\n"
                     "  - {at: 3, links: {}}\n"
                     "  - {at: 4, links: {cut: [[n1, n2]]}, isolate: n3}\n")
    assert any(e.startswith("faults[0].links.cut (line 5)") and "pair [a, b]" in e
               for e in errors), errors
    assert any(e.startswith("faults[1].links.one_way (line 6)") and "two different" in e
               for e in errors), errors
    assert any(e.startswith("faults[2].links (line 7)") and "'cut' and/or 'one_way'" in e
               for e in errors), errors
    assert any(e.startswith("faults[3] (line 8)") and "exactly one of" in e
               for e in errors), errors


def test_role_tokens_also_name_targets_of_other_faults():
    spec = parse_spec("name: x\nfaults:\n  - {at: 1, crash: most-lagging}\n"
                      "  - {at: 2, pause: follower2}\n")
    assert [f.describe() for f in spec.faults] == ["T=1s crash most-lagging",
                                                   "T=2s pause follower2"]


# -- role tokens -----------------------------------------------------------------------------

IDS = ("n1", "n2", "n3", "n4", "n5")


def test_followers_are_the_leaders_others_in_id_order():
    applied = dict.fromkeys(IDS, 7).get
    assert [resolve_role(f"follower{k}", IDS, "n3", applied) for k in range(1, 5)] == [
        "n1", "n2", "n4", "n5"]
    assert resolve_role("leader", IDS, "n3", applied) == "n3"
    assert resolve_role("n4", IDS, "n3", applied) == "n4"
    many = tuple(f"n{i}" for i in range(1, 12))
    assert resolve_role("follower2", many, "n1", applied) == "n3"  # n3 before n10
    assert resolve_role("follower9", many, "n1", applied) == "n10"


def test_most_lagging_is_the_follower_with_the_lowest_applied_index_ties_by_id():
    applied = {"n1": 9, "n2": 4, "n3": 2, "n4": 4, "n5": 6}
    # n3 leads (its own low index does not count); n2 and n4 tie: the lower id wins
    assert resolve_role("most-lagging", IDS, "n3", applied.get) == "n2"
    applied["n5"] = 1
    assert resolve_role("most-lagging", IDS, "n3", applied.get) == "n5"
    # a follower whose index is unknown (down) is not a candidate
    assert resolve_role("most-lagging", IDS, "n3", {"n1": 3}.get) == "n1"


def test_without_a_leader_role_tokens_do_not_resolve():
    for token in ("leader", "follower1", "most-lagging"):
        assert resolve_role(token, IDS, None, lambda n: 0) is None
    assert resolve_role("n2", IDS, None, lambda n: 0) == "n2"
    with pytest.raises(ValueError, match="neither a node"):
        resolve_role("boss", IDS, "n1", lambda n: 0)


# -- on the simulator ------------------------------------------------------------------------


def _cluster(seed: int = 1) -> tuple[SimCluster, list[tuple[float, Message, float | None]]]:
    sim = Simulation("raft", 5, seed=seed)
    seen: list[tuple[float, Message, float | None]] = []
    sim.observers.append(lambda t, m, d: seen.append((t, m, d)))
    return SimCluster(sim, measure=False), seen


def _delivered(seen, a: str, b: str, since: float) -> int:
    return sum(1 for t, m, d in seen if t >= since and m.src == a and m.dst == b
               and d is not None)


def _sent(seen, a: str, b: str, since: float) -> int:
    return sum(1 for t, m, _ in seen if t >= since and m.src == a and m.dst == b)


def test_a_cut_pair_exchanges_no_messages_and_one_way_drops_one_direction():
    cluster, seen = _cluster()
    cluster.sim.run(1000)
    leader = cluster.leader()
    assert leader is not None
    f1, f2, f3 = [n for n in IDS if n != leader][:3]
    schedule = [Fault(1000, "links", links=(("leader", "follower1"),)),
                Fault(1000, "links", one_way=(("leader", "follower2"),)),
                Fault(3000, "heal")]
    nemesis = Nemesis(cluster, schedule)
    cluster.sim.run(2990)
    assert leader == cluster.leader()  # still leads: it reaches follower3 and follower4
    assert _sent(seen, leader, f1, 1000) > 0  # it keeps trying...
    for a, b in ((leader, f1), (f1, leader), (leader, f2)):
        assert _delivered(seen, a, b, 1000) == 0, (a, b)  # ...and nothing gets through
    assert _delivered(seen, f2, leader, 1000) > 0  # the other direction works
    assert _delivered(seen, leader, f3, 1000) > 0
    # the second fault added to the first
    assert nemesis.blocked == {(leader, f1), (f1, leader), (leader, f2)}
    first, second = nemesis.applied
    assert (first.action, first.links, first.nodes) == ("links", ((leader, f1),),
                                                        tuple(sorted((leader, f1))))
    assert second.one_way == ((leader, f2),) and not second.skipped
    assert first.to_json()["cut"] == [[leader, f1]]
    assert first.label == f"links cut {leader}-{f1}"
    cluster.sim.run(4000)
    assert nemesis.blocked == set()
    assert _delivered(seen, leader, f1, 3100) > 0 and _delivered(seen, leader, f2, 3100) > 0


def test_a_links_fault_with_no_leader_yet_is_recorded_as_skipped():
    cluster, _ = _cluster()
    nemesis = Nemesis(cluster, [Fault(0.0, "links", links=(("leader", "n2"),))])
    cluster.sim.run(1)
    (event,) = nemesis.applied
    assert event.skipped and event.nodes == () and nemesis.blocked == set()
    assert event.to_json()["skipped"] is True


def test_most_lagging_resolves_from_the_clusters_applied_indexes():
    cluster, _ = _cluster()
    cluster.sim.run(1000)
    leader = cluster.leader()
    follower = next(n for n in IDS if n != leader)
    cluster.crash(follower)
    assert cluster.applied(follower) is None
    live = [n for n in IDS if n not in (leader, follower)]
    lowest = min(live, key=lambda n: (cluster.applied(n), IDS.index(n)))
    nemesis = Nemesis(cluster, [])
    assert nemesis.resolve("most-lagging") == [lowest]


# -- the experiment files --------------------------------------------------------------------


def _short(name: str) -> ExperimentSpec:
    """The file with a light workload that still spans its faults and heal."""
    spec = load_spec(ROOT / "experiments" / f"{name}.yaml")
    workload = spec.workload.model_copy(update={"clients": 2, "rate": 60.0, "duration_s": 11.0})
    return spec.model_copy(update={"workload": workload, "settle_s": 2.0})


def _leaders_during_fault(result) -> list[dict]:
    faults = [e["t"] for e in result.events if e["type"] == "fault" and not e["final"]]
    return [e for e in result.events if e["type"] == "leader" and faults[0] <= e["t"] < faults[-1]]


@pytest.mark.parametrize("name", PARTIAL)
@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_each_partial_connectivity_file_runs_without_a_violation(name, algorithm):
    spec = _short(name)
    assert len(spec.seeds) == 5 and spec.cluster.nodes == 5
    result = run_sim(spec, algorithm, spec.seeds[0])
    assert result.passed, [c.to_json() for c in result.checks]
    faults = [e for e in result.events if e["type"] == "fault" and not e["final"]]
    assert faults and not any(e["skipped"] for e in faults)
    assert any(e["action"] == "links" and e["cut"] for e in faults)


def test_constrained_election_raft_waits_for_the_heal_paxos_elects_the_stale_follower():
    spec = _short("constrained-election")
    assert _leaders_during_fault(run_sim(spec, "raft", 1)) == []
    paxos = _leaders_during_fault(run_sim(spec, "paxos", 1))
    assert len(paxos) == 1


def test_omission_plain_raft_churns_and_pre_vote_with_check_quorum_holds_the_leader():
    spec = _short("omission")
    assert not spec.timing.pre_vote and not spec.timing.check_quorum
    assert len(_leaders_during_fault(run_sim(spec, "raft", 1))) >= 4
    fixed = spec.model_copy(update={"timing": spec.timing.model_copy(
        update={"pre_vote": True, "check_quorum": True})})
    assert _leaders_during_fault(run_sim(fixed, "raft", 1)) == []
