"""A leader writes its log in parallel with replicating it (Raft thesis §10.2.1), both
algorithms: with ``async_persist`` the replication messages leave before the leader's own
records are durable, and the leader counts its own copy only once ``persisted`` says so.

The hand driver below is what the node runtime does with its group committer: records of a
drain are written later, when the test says; the drain's ordinary messages and replies wait
for them (and for every earlier drain's), its ``early`` messages leave at once.
"""

from __future__ import annotations

import random

import pytest

from consensus.messages import ClientReply, ClientRequest, Message
from consensus.node import Config, Node, Ready
from consensus.paxos.messages import Accept, Accepted
from consensus.paxos.node import PaxosNode
from consensus.raft.messages import AppendEntries, AppendEntriesReply
from consensus.raft.node import RaftNode

IDS = ["n1", "n2", "n3"]
REPLICATE = {RaftNode: AppendEntries, PaxosNode: Accept}
ACK = {RaftNode: AppendEntriesReply, PaxosNode: Accepted}


class AsyncDriver:
    def __init__(self, cls: type[Node]) -> None:
        self.nodes: dict[str, Node] = {}
        for nid in IDS:
            node = cls(nid, IDS, Config(pre_vote=False), random.Random(nid))
            node.async_persist = True
            node.tick(0)
            self.nodes[nid] = node
        self.disk: dict[str, list] = {nid: [] for nid in IDS}
        self.held: dict[str, list[Ready]] = {nid: [] for nid in IDS}  # drains not yet durable
        self.queue: list[Message] = []
        self.replies: list[ClientReply] = []
        self.early: list[Message] = []

    def drain(self, nid: str) -> None:
        ready = self.nodes[nid].ready()
        self.queue += ready.early
        self.early += ready.early
        self.held[nid].append(ready)

    def make_durable(self, nid: str) -> None:
        """The writer thread finished: every held drain's records are on disk."""
        node = self.nodes[nid]
        while self.held[nid]:
            held = self.held[nid]
            ready = held.pop(0)
            self.disk[nid] += ready.persist
            node.persisted(ready.seq)
            self.queue += ready.messages
            self.replies += ready.replies
            if node.has_output():
                self.drain(nid)

    def deliver(self, *, durable: set[str], drop: set[str] = frozenset()) -> None:
        """Deliver everything queued; nodes in ``durable`` write at once after each step."""
        while self.queue:
            msg = self.queue.pop(0)
            if msg.dst in drop:
                continue
            node = self.nodes[msg.dst]
            node.step(msg)
            self.drain(msg.dst)
            if msg.dst in durable:
                self.make_durable(msg.dst)


def elected(cls: type[Node]) -> AsyncDriver:
    d = AsyncDriver(cls)
    leader = d.nodes["n1"]
    leader.tick(1000)  # time out (the others have later deadlines from their own rng)
    leader.campaign()
    d.drain("n1")
    d.make_durable("n1")
    d.deliver(durable=set(IDS))
    for _ in range(5):
        for nid in IDS:
            d.make_durable(nid)
        d.deliver(durable=set(IDS))
    assert leader.status().role == "leader"
    return d


@pytest.mark.parametrize("cls", [RaftNode, PaxosNode], ids=["raft", "paxos"])
def test_leader_replicates_before_its_own_write_and_counts_itself_only_after(cls):
    d = elected(cls)
    leader = d.nodes["n1"]
    commit = leader.status().commit_index
    d.early.clear()
    leader.step(ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 100"))
    d.drain("n1")
    # Replication left at once, while the leader's own record is still unwritten...
    assert {m.dst for m in d.early if isinstance(m, REPLICATE[cls])} == {"n2", "n3"}
    assert d.held["n1"] and d.held["n1"][-1].persist
    # ...n2 writes and acknowledges; n3 is cut off. n2 plus the leader's unwritten copy is
    # not a majority of durable copies, so nothing is committed and nobody is answered.
    d.deliver(durable={"n2"}, drop={"n3"})
    assert leader.status().commit_index == commit
    assert d.replies == []
    # The leader's write completes: now its copy counts, the entry commits, the client hears.
    d.make_durable("n1")
    d.deliver(durable={"n1", "n2"}, drop={"n3"})
    d.make_durable("n1")
    assert leader.status().commit_index == commit + 1
    assert [(r.dst, r.seq, r.status.value) for r in d.replies] == [("c1", 1, "ok")]


@pytest.mark.parametrize("cls", [RaftNode, PaxosNode], ids=["raft", "paxos"])
def test_two_durable_followers_commit_without_the_leaders_write(cls):
    """The thesis's point: the leader's disk is off the critical path when the followers
    are faster; a majority of durable copies need not include the leader's."""
    d = elected(cls)
    leader = d.nodes["n1"]
    commit = leader.status().commit_index
    leader.step(ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 100"))
    d.drain("n1")
    d.deliver(durable={"n2", "n3"})
    assert leader.status().commit_index == commit + 1
    # The reply still waits for the leader's own earlier records (FIFO) before it leaves.
    assert d.replies == []
    d.make_durable("n1")
    assert [(r.dst, r.seq) for r in d.replies] == [("c1", 1)]


@pytest.mark.parametrize("cls", [RaftNode, PaxosNode], ids=["raft", "paxos"])
def test_votes_and_acknowledgements_never_leave_early(cls):
    d = elected(cls)
    leader = d.nodes["n1"]
    d.early.clear()
    leader.step(ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 1"))
    d.drain("n1")
    d.deliver(durable=set(), drop=set())  # nobody writes: acknowledgements must be held
    assert all(m.src == "n1" and isinstance(m, REPLICATE[cls]) for m in d.early)
    assert not any(isinstance(m, ACK[cls]) for m in d.queue)


@pytest.mark.parametrize("cls", [RaftNode, PaxosNode], ids=["raft", "paxos"])
def test_role_term_is_what_status_says(cls):
    """The runtime watches role_term() after every drain instead of building a Status."""
    d = elected(cls)
    for node in d.nodes.values():
        st = node.status()
        assert node.role_term() == (st.role, st.term)
    d.nodes["n2"].tick(10_000)
    d.nodes["n2"].campaign()
    st = d.nodes["n2"].status()
    assert d.nodes["n2"].role_term() == (st.role, st.term) != ("follower", 0)
