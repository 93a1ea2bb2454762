"""A node added to a compacting cluster catches up by snapshot alone (Raft's InstallSnapshot,
Multi-Paxos's Learn) and is promoted: the snapshot's answer is what says it caught up.

Regression: a Multi-Paxos leader noted the Learned's commit index without asking whether the
learner was now caught up, and later Accepteds repeated the same numbers, so an idle cluster
never promoted the learner and the change failed after its catch-up deadline."""

from __future__ import annotations

import pytest

from consensus.messages import ClientReply, ClientRequest, ReplyStatus
from consensus.node import Config
from consensus.sim import Simulation
from tests.helpers import run_until, wait_for_leader
from tests.membership_helpers import Operator

SETS = 8
GAP_MS = 250  # between SETs, as an operator typing them would


class Writer:
    """A client that sends one SET at a time straight to the leader and keeps the answers."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.replies: list[ClientReply] = []
        sim.clients["w"] = self

    def on_reply(self, msg: ClientReply) -> None:
        self.replies.append(msg)

    def set(self, seq: int) -> None:
        leader = self.sim.leader()
        assert leader is not None
        self.sim.send_client_request(ClientRequest(src="w", dst=leader, seq=seq,
                                                   command=f"SET k{seq} = {seq}"))
        self.sim.run_for(GAP_MS)


def _grow_after_writes(algorithm: str, seed: int, **config) -> Simulation:
    sim = Simulation(algorithm, 3, seed=seed, config=Config(**config))
    wait_for_leader(sim)
    writer = Writer(sim)
    for seq in range(1, SETS + 1):
        writer.set(seq)
    assert {r.seq for r in writer.replies if r.status == ReplyStatus.OK} == set(
        range(1, SETS + 1))
    sim.add_node("n4")
    reply = Operator(sim).change("add n4")
    assert reply.status == ReplyStatus.OK, (algorithm, seed, config, reply)
    assert reply.result == "voters=n1,n2,n3,n4"
    return sim


# The default alpha (128) pads the slots after a configuration with no-ops, so the learner's
# catch-up point is exactly a snapshot's slot; alpha 4 leaves it a few slots above one.
@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
@pytest.mark.parametrize("config", [{"snapshot_entries": 4}, {"snapshot_entries": 2},
                                    {"snapshot_entries": 4, "alpha": 4}],
                         ids=["every4", "every2", "every4-alpha4"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_node_added_to_a_compacting_cluster_is_promoted(algorithm, config, seed):
    sim = _grow_after_writes(algorithm, seed, **config)
    new = sim.nodes["n4"]
    assert new.snapshot_index > 0, "it caught up through a snapshot"
    leader = sim.leader()
    assert leader is not None

    def converged() -> bool:  # the followers hear the new commit index a heartbeat later
        statuses = [sim.status(n) for n in sim.ids]
        return ({s.config for s in statuses} == {"voters=n1,n2,n3,n4"}
                and len({s.applied_index for s in statuses}) == 1)

    assert run_until(sim, converged, 2000)
    assert new.kv.digest() == sim.nodes[leader].kv.digest()
    assert sim.finish() == []
