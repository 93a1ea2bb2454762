"""A removed node that never learnt it was removed, with pre-vote and check-quorum off (the
``removed-server`` experiment's variant): what each algorithm lets it do once it reconnects.

Multi-Paxos: its acceptors promise any higher ballot, so it can win Phase 1; the promises
then tell it the configuration that left it out. It must not go on leading: it hands over
(TimeoutNow to the most up-to-date voter) and steps down, as a removed leader does.

Raft: it never wins. The voters of the new configuration hold the entry that removed it and
it does not, so their up-to-date check (§5.4.1) refuses it every vote; it can only depose
leaders by announcing higher terms (thesis §4.2.3), which is what pre-vote and check-quorum
stop."""

from __future__ import annotations

from consensus.messages import ReplyStatus
from consensus.node import Config
from consensus.sim import Simulation
from tests.helpers import client, wait_for_leader
from tests.membership_helpers import Operator

MAX_TIMEOUT = Config().election_timeout_ms[1]


def _remove_while_cut_off(algorithm: str, seed: int) -> tuple[Simulation, str, list]:
    """Remove a follower while it is isolated, heal, and run under load for 5 s."""
    sim = Simulation(algorithm, 5, seed=seed,
                     config=Config(pre_vote=False, check_quorum=False))
    leader = wait_for_leader(sim)
    victim = next(n for n in sim.ids if n != leader)
    sim.isolate(victim)
    assert Operator(sim).change(f"remove {victim}").status == ReplyStatus.OK
    sim.run_for(2000)
    assert not sim.nodes[victim].removed()  # it never learnt it
    sim.heal()
    cs = [client(sim, f"c{i}") for i in (1, 2)]
    for c in cs:
        c.start(sim.now)
    sim.run_for(5000)
    for c in cs:
        c.stop()
    sim.run_for(1500)
    return sim, victim, cs


def _reigns(sim: Simulation, nid: str) -> list[tuple[float, float]]:
    """The intervals during which ``nid`` was leader (the end: when it left the role)."""
    out: list[tuple[float, float]] = []
    start = None
    for t, who, role, _ in sim.role_events:
        if who != nid:
            continue
        if role == "leader" and start is None:
            start = t
        elif role != "leader" and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, float("inf")))
    return out


def test_a_removed_paxos_proposer_that_wins_a_ballot_hands_over_and_steps_down():
    sim, victim, _ = _remove_while_cut_off("paxos", seed=2)
    reigns = _reigns(sim, victim)
    assert reigns, "the scenario must let the removed node win Phase 1"
    for start, end in reigns:
        # Handing over waits for the target to hold every proposed slot, an election
        # timeout at most (then it tries the next voter).
        assert end - start <= 2 * MAX_TIMEOUT, (start, end)
    node = sim.nodes[victim]
    assert node.removed() and sim.status(victim).role == "follower"
    leader = sim.leader()
    assert leader is not None and leader != victim
    assert sim.nodes[leader].membership.is_voter(leader)
    assert victim not in sim.nodes[leader].membership.members
    assert sim.finish() == []


def test_a_removed_raft_server_never_wins_an_election_of_the_new_configuration():
    sim, victim, _ = _remove_while_cut_off("raft", seed=2)
    assert _reigns(sim, victim) == []
    # It campaigned (its terms went up) but never learnt it was removed: nobody sent it the
    # entry, and nobody voted for it.
    assert sim.status(victim).term > 1 and not sim.nodes[victim].removed()
    for _, leader, _ in sim.leader_events:
        assert leader != victim
    assert sim.finish() == []
