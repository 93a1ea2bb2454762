"""Scenarios every algorithm must pass, run unchanged against Raft and Multi-Paxos.

They look only at what both algorithms share: who leads (``status().role``/``term``), which
commands are committed and applied, what clients are told, and the safety checks.
"""

import pytest

from consensus.messages import ReplyStatus
from consensus.node import Config
from consensus.sim import Network, Simulation
from tests.helpers import (
    OneShotClient,
    applied_commands,
    available_algorithms,
    client,
    run_until,
    settle,
    wait_for_leader,
)

ALGORITHMS = available_algorithms()
# Classic leadership: an isolated leader keeps believing it leads, so staleness is visible.
NO_CHECK_QUORUM = Config(check_quorum=False, pre_vote=False)


def others(sim: Simulation, *exclude: str) -> list[str]:
    return [n for n in sim.ids if n not in exclude]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_leader_is_elected_and_a_write_commits_everywhere(algorithm):
    sim = Simulation(algorithm, 3, seed=1)
    wait_for_leader(sim)
    op = client(sim).submit("SET x = 100")
    assert settle(op, sim, 1000) and op.outcome == "ok" and op.result == "OK"
    sim.run_for(500)
    for nid in sim.ids:
        assert sim.nodes[nid].kv.data == {"x": "100"}
    get = client(sim, "c2").submit("GET x")
    assert settle(get, sim, 1000) and get.result == "100"
    assert sim.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_quiz1_five_nodes_survive_two_failures_but_not_three(algorithm):
    """Quiz 1: a 5-node cluster keeps accepting writes with 2 nodes down (3 of 5 is a majority);
    with 3 down no write commits, and it commits once a third node returns."""
    sim = Simulation(algorithm, 5, seed=2)
    leader = wait_for_leader(sim)
    followers = others(sim, leader)
    for nid in followers[:2]:
        sim.crash(nid)
    c = client(sim)
    op = c.submit("SET x = 1")
    assert settle(op, sim, 2000) and op.outcome == "ok"

    sim.crash(followers[2])
    stuck = c.submit("SET x = 2")
    assert not settle(stuck, sim, 3000), "3 of 5 down: no write may commit"
    assert all(sim.nodes[n].kv.data.get("x") != "2" for n in sim.ids if sim.nodes[n])

    sim.restart(followers[0])
    assert settle(stuck, sim, 5000) and stuck.outcome == "ok"
    sim.run_for(1000)
    for node in sim.live_nodes():
        assert node.kv.data["x"] == "2"
        assert applied_commands(sim, node.id).count("SET x = 2") == 1
    assert sim.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_quiz4_stale_leader_steps_down_when_it_hears_the_newer_term(algorithm):
    """Quiz 4: an old leader (term 3) that sends after a newer leader was elected (term 4) is
    refused; it learns the newer term and steps down, and its uncommitted write is lost."""
    sim = Simulation(algorithm, 5, seed=3, config=NO_CHECK_QUORUM)
    old = wait_for_leader(sim)
    old_term = sim.status(old).term
    sim.isolate(old)
    assert run_until(sim, lambda: sim.leader() not in (None, old), 5000)
    new = sim.leader()
    new_term = sim.status(new).term
    assert new_term > old_term
    assert sim.status(old).role == "leader", "cut off, the old leader does not know yet"

    probe = OneShotClient(sim)
    probe.send(old, "SET x = stale")
    good = client(sim).submit("SET x = fresh", node=new)
    assert settle(good, sim, 2000) and good.outcome == "ok"
    sim.run_for(500)
    assert not probe.replies, "the isolated old leader cannot commit"

    sim.heal()
    assert run_until(sim, lambda: sim.status(old).role != "leader", 2000)
    assert sim.status(old).term >= new_term
    sim.run_for(2000)
    assert all(r.status != ReplyStatus.OK for r in probe.replies)
    for node in sim.live_nodes():
        assert node.kv.data["x"] == "fresh"
        assert "SET x = stale" not in applied_commands(sim, node.id)
    assert sim.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_minority_partition_leader_is_rolled_back_on_heal(algorithm):
    """A 2|3 partition with the leader in the minority: its new entries never commit and
    are replaced on heal by what the majority committed meanwhile."""
    sim = Simulation(algorithm, 5, seed=4, config=NO_CHECK_QUORUM)
    leader = wait_for_leader(sim)
    buddy = others(sim, leader)[0]
    majority = others(sim, leader, buddy)
    sim.partition([[leader, buddy], majority])
    probe = OneShotClient(sim)
    for i in range(3):
        probe.send(leader, f"SET m{i} = minority")
    assert run_until(sim, lambda: sim.leader() in majority, 5000)
    c = client(sim)
    ops = [c.submit(f"SET m{i} = majority") for i in range(3)]
    assert settle(ops[-1], sim, 3000)
    assert all(op.outcome == "ok" for op in ops)
    assert not probe.replies

    sim.heal()
    sim.run_for(3000)
    assert all(r.status != ReplyStatus.OK for r in probe.replies)
    digests = {node.kv.digest() for node in sim.live_nodes()}
    assert len(digests) == 1, "every node converges on the majority's history"
    for node in sim.live_nodes():
        assert node.kv.data == {f"m{i}": "majority" for i in range(3)}
    assert sim.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_restarted_node_catches_up_from_what_it_persisted(algorithm):
    sim = Simulation(algorithm, 3, seed=5)
    leader = wait_for_leader(sim)
    lagger = others(sim, leader)[0]
    c = client(sim)
    assert settle(c.submit("SET a = 1"), sim, 1000)
    assert run_until(sim, lambda: sim.nodes[lagger].kv.data.get("a") == "1", 1000)
    sim.crash(lagger)
    for i in range(20):
        c.submit(f"SET k{i} = {i}")
    last = c.submit("SET z = end")
    assert settle(last, sim, 5000)
    sim.restart(lagger)
    restored = sim.nodes[lagger]
    assert restored.kv.data.get("a") == "1", "the committed prefix is re-applied on restart"
    assert run_until(sim, lambda: restored.kv.data.get("z") == "end", 3000)
    assert sim.finish() == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_lossy_duplicating_network_stays_safe_and_live(algorithm):
    net = Network(latency_ms=(1, 20), loss=0.2, duplicate=0.2)
    sim = Simulation(algorithm, 5, seed=6, network=net)
    wait_for_leader(sim, 10_000)
    c = client(sim)
    ops = [c.submit(f"SET k = {i}") for i in range(30)]
    assert settle(ops[-1], sim, 30_000)
    sim.run_for(2000)
    assert sim.finish() == []
    # Exactly once despite retries and duplicated messages: every write applied once.
    applied = applied_commands(sim, sim.leader())
    assert [applied.count(f"SET k = {i}") for i in range(30)] == [1] * 30


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_paused_leader_is_replaced_and_rejoins_as_follower(algorithm):
    sim = Simulation(algorithm, 3, seed=8)
    leader = wait_for_leader(sim)
    sim.pause(leader)
    assert run_until(sim, lambda: sim.leader() not in (None, leader), 3000)
    sim.resume(leader)
    sim.run_for(1000)
    assert sim.status(leader).role != "leader"
    op = client(sim).submit("SET after = pause")
    assert settle(op, sim, 2000) and op.outcome == "ok"
    assert sim.finish() == []
