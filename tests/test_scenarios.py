"""Scenarios: scripted ones from data files through one hand-driver, then whole simulated runs.

Scripted (``tests/scenarios/``): every file at the top runs against each algorithm in
``SHARED``; a file in ``scenarios/<algorithm>/`` runs against that one only (a broken variant
the checkers must catch, or a behaviour only one algorithm has). See tests/scenario_driver.py
for the commands; ``SCENARIO_REWRITE=1`` regenerates the expected outputs for review.

Simulated: properties of whole randomised runs (a lossy network, timeouts drawn over many
seeds, load), which a script cannot state; they run in the simulator.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.experiment.workload import SimClient, Workload
from consensus.node import Config
from consensus.sim import Network, Simulation
from consensus.simulate import simulate
from tests.helpers import applied_commands, client, run_until, settle, wait_for_leader
from tests.scenario_driver import (
    ScenarioError,
    expected_for,
    parse_file,
    render,
    run_file,
)

SCENARIOS = Path(__file__).parent / "scenarios"
# The algorithms the shared scenarios are written for, by name: a renamed one fails here.
SHARED = ("raft", "paxos")
REWRITE = os.environ.get("SCENARIO_REWRITE") == "1"


def algorithms_for(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(SCENARIOS)
    return SHARED if len(rel.parts) == 1 else (rel.parts[0],)


def scenario_cases() -> list:
    return [pytest.param(path, alg, id=f"{path.relative_to(SCENARIOS).with_suffix('')}-{alg}")
            for path in sorted(SCENARIOS.rglob("*.txt")) for alg in algorithms_for(path)]


def test_there_are_scenarios_for_every_shared_algorithm_and_directory():
    dirs = {p.name for p in SCENARIOS.iterdir() if p.is_dir()}
    assert dirs <= set(SHARED), f"scenario directories for unknown algorithms: {dirs}"
    assert len(list(SCENARIOS.glob("*.txt"))) >= 5


@pytest.mark.parametrize(("path", "algorithm"), scenario_cases())
def test_scenario(path: Path, algorithm: str) -> None:
    if REWRITE:
        path.write_text(render(path, {a: run_file(path, a) for a in algorithms_for(path)}),
                        encoding="utf-8")
    blocks, _ = parse_file(path.read_text(encoding="utf-8"))
    outputs = run_file(path, algorithm)
    for block, got in zip(blocks, outputs, strict=True):
        want = expected_for(block, algorithm)
        assert want is not None, f"{path}:{block.line}: no expected output for {algorithm}"
        assert got == want, (f"{path.name}:{block.line} ({algorithm}) {block.command}\n"
                             "--- expected\n" + "\n".join(want) + "\n--- got\n"
                             + "\n".join(got) + "\n(SCENARIO_REWRITE=1 to regenerate)")


@pytest.mark.parametrize("path", sorted(SCENARIOS.rglob("*.txt")),
                         ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_rewriting_a_passing_file_changes_nothing(path: Path) -> None:
    """The rewrite keeps comments, commands and layout: only outputs that changed differ."""
    outputs = {a: run_file(path, a) for a in algorithms_for(path)}
    assert render(path, outputs) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("script", "error"), [
    ("cluster nodes=3\n----\n\nfly n1\n----\n", "unknown command 'fly'"),
    ("cluster nodes=3\n----\n\ncampaign n9\n----\n", "no node n9"),
    ("cluster nodes=3\n----\n\ndeliver drop=n1-n2\n----\n", "bad drop rule"),
    ("cluster nodes=3 variant=forgetful-leader\n----\n", "no variant"),
    ("cluster nodes=3\ncampaign n1\n----\n", "is not followed by ----"),
])
def test_a_bad_scenario_fails_with_its_line(tmp_path: Path, script: str, error: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(script, encoding="utf-8")
    with pytest.raises(ScenarioError, match=error):
        run_file(path, "raft")


# -- whole simulated runs ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", SHARED)
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


CONSTANT = Network(latency_ms=(2, 2), distribution="constant")


def test_randomised_timeouts_elect_a_raft_leader_quickly():
    """Quiz 3's answer: randomised timeouts (150-300 ms) make one node time out first (the
    scripted split_votes scenario shows identical ones never electing anyone)."""
    for seed in range(20):
        sim = Simulation("raft", 5, seed=seed, network=CONSTANT)
        assert run_until(sim, lambda s=sim: s.leader() is not None, 1000), seed
        assert len(sim.leaders_seen) == 1


@pytest.mark.parametrize("timeout", [(150.0, 150.0), (150.0, 300.0)])
@pytest.mark.parametrize("pre_vote", [False, True])
def test_simultaneous_paxos_campaigns_settle_in_one_round(timeout, pre_vote):
    """With identical fixed timeouts all five nodes prepare at the same instant, yet ballots are
    totally ordered, so the highest wins in one election; randomised timeouts just send fewer.
    A pre-vote round first (which everyone grants: no one has promised anything) makes the
    campaigners see each other's rounds and go one round higher, still in one election."""
    sim = Simulation("paxos", 5, seed=1,
                     config=Config(election_timeout_ms=timeout, pre_vote=pre_vote),
                     record_trace=True)
    wait_for_leader(sim)
    sim.run_for(500)
    assert sim.trace is not None
    prepares = sum(1 for line in sim.trace if " Prepare(" in line and "pre_vote=False" in line)
    pre_votes = sum(1 for line in sim.trace if " Prepare(" in line and "pre_vote=True" in line)
    assert len(sim.leaders_seen) == 1
    fixed = timeout[0] == timeout[1]
    assert max(st.term for st in sim.statuses.values()) == (2 if fixed and pre_vote else 1)
    if not pre_vote:
        assert (prepares, pre_votes) == ((20, 0) if fixed else (4, 0))
    else:
        assert pre_votes == (20 if fixed else 8) and prepares <= pre_votes


def duel(check_quorum: bool, timeout: tuple[float, float]) -> tuple[int, int]:
    """Cut the leader off from one follower (both still reach the other three) under load;
    return (leaders seen, operations completed) over 5 s."""
    sim = Simulation("paxos", 5, seed=3,
                     config=Config(election_timeout_ms=timeout, check_quorum=check_quorum))
    sim.run(1000)
    leader = sim.leader()
    assert leader is not None
    rival = next(n for n in sim.ids if n != leader)
    sim.cut([leader], [rival])
    sim.cut([rival], [leader])
    load = SimClient("c1", sim, Workload())
    load.start(sim.now)
    sim.run(6000)
    load.stop()
    assert sim.finish() == []
    return len(sim.leaders_seen), sum(1 for op in load.history if op.outcome == "ok")


def test_dueling_paxos_proposers_fixed_timeouts_vs_randomised_vs_lease():
    """Two proposers that cannot hear each other preempt each other by turns. Randomised
    backoff makes that rarer than identical fixed timeouts; the leader lease (check_quorum)
    stops it: the acceptors ignore the rival's Prepares while they hear the leader."""
    fixed_leaders, fixed_ok = duel(False, (150.0, 150.0))
    random_leaders, random_ok = duel(False, (150.0, 300.0))
    lease_leaders, lease_ok = duel(True, (150.0, 300.0))
    assert fixed_leaders > random_leaders > lease_leaders == 1
    assert lease_ok > random_ok > fixed_ok


@pytest.mark.parametrize("algorithm", SHARED)
def test_a_random_fault_run_is_clean(algorithm):
    """The control for the broken variants in scenarios/<algorithm>/: the same checkers find
    nothing on a correct node under random faults."""
    result = simulate(algorithm, nodes=5, duration_s=10, seed=2, faults="random")
    assert result.violations == [] and result.stalled == []
    assert result.committed > 1000
