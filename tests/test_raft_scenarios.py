"""Raft-only scenarios: split votes, and Figure 8 with a Raft that breaks the §5.4.2 rule."""

from consensus import quorum
from consensus.node import Config
from consensus.raft.messages import AppendEntries
from consensus.raft.node import RaftNode
from consensus.sim import Network, Simulation
from tests.helpers import OneShotClient, applied_commands, run_until

CONSTANT = Network(latency_ms=(2, 2), distribution="constant")


def test_split_votes_repeat_forever_with_identical_fixed_timeouts():
    """Quiz 3: with the same fixed timeout everywhere, every node times out at once, votes
    for itself, and no one ever gets a majority."""
    fixed = Config(election_timeout_ms=(200, 200), pre_vote=False)
    sim = Simulation("raft", 5, seed=1, config=fixed, network=CONSTANT)
    sim.run(10_000)
    assert sim.leader() is None
    assert min(s.term for s in sim.statuses.values()) >= 40, "an election every 200 ms"


def test_randomised_timeouts_elect_a_leader_quickly():
    """Quiz 3's answer: randomised timeouts (150-300 ms) make one node time out first."""
    for seed in range(20):
        sim = Simulation("raft", 5, seed=seed, network=CONSTANT)
        assert run_until(sim, lambda s=sim: s.leader() is not None, 1000), seed
        assert len(sim.leaders_seen) == 1


class UnsafeRaftNode(RaftNode):
    """A deliberately broken Raft: commits entries from earlier terms by counting replicas."""

    def advance_commit_index(self) -> bool:
        matches = [self.log.last_index] + [p.match for p in self.progress.values()]
        n = quorum.committed_index(matches, len(self.peers))
        if n > self.commit_index:
            self.set_commit(n)
            return True
        return False


# Figure 8 needs one leader at a time, chosen by the test: no spontaneous elections.
SCRIPTED = Config(election_timeout_ms=(60_000, 60_000), pre_vote=False, check_quorum=False,
                  max_batch=1, max_inflight=1)


def figure8(node_class: type[RaftNode]) -> tuple[Simulation, OneShotClient]:
    """Raft paper Figure 8, on 5 nodes n1..n5 (S1..S5), with a no-op per election.

    (a) n1 leads, replicates its entry X at index k to n2 only. (b) n1 crashes; n5 is elected
    by n3, n4, n5 and appends Y at index k, alone. (c) n5 crashes; n1 returns, is elected,
    and replicates X to n3 -- but not the no-op of its own term. X is now on a majority:
    counting replicas would commit it. (d) n1 crashes; n5 returns and, with a log whose last
    term is newer, is elected by n2, n3, n4 and overwrites X with Y on everyone.
    """
    sim = Simulation("raft", 5, seed=1, config=SCRIPTED, network=CONSTANT, node_class=node_class)
    probe = OneShotClient(sim)
    sim.campaign("n1")
    sim.run_for(100)
    assert sim.leader() == "n1"
    first_term = sim.status("n1").term
    # (a)
    sim.cut(["n1"], ["n3", "n4", "n5"])
    probe.send("n1", "SET x = X")
    sim.run_for(100)
    # (b)
    sim.crash("n1")
    sim.heal()
    # n5's vote requests go out, but nothing it appends leaves it.
    sim.filters.append(lambda m: isinstance(m, AppendEntries) and m.src == "n5")
    sim.campaign("n5")
    sim.run_for(100)
    assert sim.leader() == "n5"
    probe.send("n5", "SET x = Y")
    sim.run_for(100)
    # (c)
    sim.crash("n5")
    sim.filters.clear()
    sim.restart("n1")
    sim.cut(["n1"], ["n4", "n5"])
    # Deliver the old entry X, but drop every message carrying an entry of n1's new term.
    sim.filters.append(lambda m: isinstance(m, AppendEntries) and m.src == "n1"
                       and any(e.term > first_term for e in m.entries))
    elect(sim, "n1")
    sim.run_for(200)
    # (d)
    sim.crash("n1")
    sim.filters.clear()
    sim.heal()
    sim.restart("n5")
    elect(sim, "n5")
    sim.run_for(300)
    return sim, probe


def elect(sim: Simulation, nid: str) -> None:
    """Campaign until elected: a first try may be in a term whose votes were already given."""
    for _ in range(3):
        sim.campaign(nid)
        sim.run_for(20)
        if sim.leader() == nid:
            return
    raise AssertionError(f"{nid} could not be elected")


def test_figure8_safe_raft_never_commits_the_old_entry():
    sim, _ = figure8(RaftNode)
    assert sim.leader() == "n5"
    for nid in ("n2", "n3", "n4", "n5"):
        assert "SET x = X" not in applied_commands(sim, nid)
        assert sim.nodes[nid].kv.data == {"x": "Y"}
    assert sim.finish() == []


def test_figure8_unsafe_raft_is_caught_by_the_checkers():
    sim, _ = figure8(UnsafeRaftNode)
    assert sim.leader() == "n5", "the scenario ran as in the paper"
    assert sim.checker.agreed[2] is not None and sim.checker.agreed[2].text == "SET x = X", (
        "n1 committed and applied X by counting replicas of a term-1 entry")
    checks = {v.check for v in sim.finish()}
    assert {"leader-completeness", "applied-prefix-agreement"} <= checks
