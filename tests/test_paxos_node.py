"""PaxosNode driven by hand: nodes, a message queue we deliver ourselves, and crash/restart.

Each test names the rule it checks. No simulator here: the loop below delivers messages in
FIFO order (or drops the ones a test says to), so every step is visible and deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from consensus.messages import ClientReply, ClientRequest, Command, Message, ReplyStatus
from consensus.node import Config
from consensus.paxos.messages import (
    Accept,
    Accepted,
    AcceptedRun,
    Ballot,
    Commit,
    Nack,
    Prepare,
    Promise,
    Promised,
    RoundUsed,
)
from consensus.paxos.node import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, PaxosNode

Drop = Callable[[Message], bool]


class Cluster:
    """Paxos nodes joined by a FIFO queue; storage survives a crash, nothing else does."""

    def __init__(self, n: int = 3, config: Config | None = None, seed: int = 0) -> None:
        self.ids = [f"a{i}" for i in range(1, n + 1)]
        self.config = config or Config()
        self.seed = seed
        self.now = 0.0
        self.storage: dict[str, list] = {i: [] for i in self.ids}
        self.nodes: dict[str, PaxosNode | None] = {}
        self.queue: list[Message] = []
        self.sent: list[Message] = []  # every protocol message, for assertions
        self.replies: list[ClientReply] = []
        self.applied: dict[str, list[tuple[int, Command | None]]] = {i: [] for i in self.ids}
        self.lives = dict.fromkeys(self.ids, 0)
        for nid in self.ids:
            self.start(nid)

    def start(self, nid: str) -> PaxosNode:
        rng = random.Random(f"{self.seed}/{nid}/{self.lives[nid]}")
        node = PaxosNode(nid, self.ids, self.config, rng)
        node.tick(self.now)
        if self.storage[nid]:
            node.restore(list(self.storage[nid]))
        self.nodes[nid] = node
        self.drain(node)
        return node

    def node(self, nid: str) -> PaxosNode:
        node = self.nodes[nid]
        assert node is not None
        return node

    def drain(self, node: PaxosNode):
        ready = node.ready()
        self.storage[node.id].extend(ready.persist)
        self.queue.extend(ready.messages)
        self.sent.extend(ready.messages)
        self.replies.extend(ready.replies)
        self.applied[node.id].extend((a.index, a.command) for a in ready.applied)
        return ready

    def tick(self, nid: str, now: float | None = None) -> None:
        if now is not None:
            self.now = max(self.now, now)
        node = self.nodes[nid]
        if node is not None:
            node.tick(self.now)
            self.drain(node)

    def advance(self, ms: float, drop: Drop | None = None) -> None:
        """Move time forward in 1 ms steps, ticking every node and delivering as we go."""
        end = self.now + ms
        while self.now < end:
            self.now += 1
            for nid in self.ids:
                self.tick(nid)
            self.deliver(drop)

    def deliver(self, drop: Drop | None = None, limit: int = 100_000) -> None:
        while self.queue and limit:
            limit -= 1
            msg = self.queue.pop(0)
            node = self.nodes.get(msg.dst)
            if node is None or (drop is not None and drop(msg)):
                continue
            node.tick(self.now)
            node.step(msg)
            self.drain(node)

    def request(self, nid: str, text: str, client: str = "c1", seq: int = 1) -> None:
        node = self.node(nid)
        node.tick(self.now)
        node.step(ClientRequest(src=client, dst=nid, seq=seq, command=text))
        self.drain(node)

    def crash(self, nid: str) -> None:
        self.nodes[nid] = None
        self.applied[nid] = []
        self.queue = [m for m in self.queue if m.dst != nid]

    def restart(self, nid: str) -> PaxosNode:
        self.lives[nid] += 1
        return self.start(nid)

    def elect(self, nid: str) -> None:
        self.node(nid).campaign()
        self.drain(self.node(nid))
        self.deliver()
        assert self.node(nid).role == LEADER

    def commands(self, nid: str) -> list[str | None]:
        return [None if c is None else c.text for _, c in self.applied[nid]]


def test_ballots_compare_as_numbers_not_strings():
    # "n10" < "n9" as strings; rounds dominate, then ranks (positions), and the node id only
    # breaks a tie of ranks, so two proposers never share a ballot.
    assert Ballot(10, 0, "n1") > Ballot(9, 5, "n9")
    assert Ballot(2, 9, "n10") > Ballot(2, 8, "n9")
    assert Ballot(3, 1, "y") > Ballot(3, 1, "x") and Ballot(3, 1, "x") != Ballot(3, 1, "y")
    assert str(Ballot(3, 1, "n2")) == "3.n2"


def test_a_single_node_leads_itself_and_commits():
    c = Cluster(1)
    c.advance(400)
    assert c.node("a1").role == LEADER
    c.request("a1", "SET x = 1")
    assert c.applied["a1"][-1][1] == Command("c1", 1, "SET x = 1")
    assert [r.status for r in c.replies] == [ReplyStatus.OK]


def test_failure_detector_elects_one_leader_and_everyone_follows_it():
    c = Cluster(3, seed=4)
    c.advance(400)
    roles = {nid: c.node(nid).role for nid in c.ids}
    leaders = [nid for nid, role in roles.items() if role == LEADER]
    assert len(leaders) == 1
    assert all(c.node(n).leader == leaders[0] for n in c.ids)
    status = c.node(leaders[0]).status()
    assert status.algorithm == "paxos" and status.ballot == f"{status.term}.{leaders[0]}"


def test_promise_is_durable_in_the_same_ready_it_leaves_in():
    """The driver persists ``ready.persist`` before sending: a Promise must come with it."""
    c = Cluster(3)
    node = c.node("a2")
    ballot = Ballot(1, 0, "a1")
    node.step(Prepare(src="a1", dst="a2", ballot=ballot, first_slot=1))
    ready = node.ready()
    assert Promised(ballot) in ready.persist
    assert [type(m) for m in ready.messages] == [Promise]


def test_accepted_is_durable_in_the_same_ready_it_leaves_in():
    c = Cluster(3)
    node = c.node("a2")
    ballot = Ballot(1, 0, "a1")
    cmd = Command("c1", 1, "SET x = 1")
    node.step(Accept(src="a1", dst="a2", ballot=ballot, first_slot=1, commands=(cmd,),
                     commit_index=0))
    ready = node.ready()
    assert ready.persist == [Promised(ballot), AcceptedRun(1, ballot, (cmd,))]
    (reply,) = ready.messages
    assert isinstance(reply, Accepted) and (reply.first_slot, reply.count) == (1, 1)
    # A duplicate Accept is acknowledged again but nothing new needs persisting.
    node.step(Accept(src="a1", dst="a2", ballot=ballot, first_slot=1, commands=(cmd,),
                     commit_index=0))
    ready = node.ready()
    assert ready.persist == [] and isinstance(ready.messages[0], Accepted)


def test_campaign_persists_its_round_but_promises_itself_only_with_a_quorum():
    c = Cluster(3, config=Config(pre_vote=False))
    node = c.node("a1")
    node.campaign()
    ready = c.drain(node)
    assert ready.persist == [RoundUsed(1)]
    assert node.role == CANDIDATE and node.promised.round == 0
    c.deliver()
    assert node.role == LEADER and node.promised == Ballot(1, 0, "a1")


def test_pre_vote_changes_nothing_and_phase_1_follows_a_majority_of_pre_votes():
    """Pre-vote (thesis §9.6, with Raft's ``pre_vote`` knob): the asker persists no round, the
    acceptors promise nothing, and only a majority of willing acceptors starts Phase 1."""
    c = Cluster(3)
    node = c.node("a1")
    node.campaign()
    ready = c.drain(node)
    assert ready.persist == [] and node.role == PRE_CANDIDATE
    assert all(isinstance(m, Prepare) and m.pre_vote for m in ready.messages)
    a2 = c.node("a2")
    a2.step(c.queue.pop(0))
    answer = c.drain(a2)
    assert answer.persist == [] and a2.promised == Ballot(0, -1)
    (promise,) = answer.messages
    assert isinstance(promise, Promise) and promise.pre_vote
    c.queue.clear()
    node.step(promise)  # a2 and a1 itself: a majority of three
    ready = c.drain(node)
    assert ready.persist == [RoundUsed(1)] and node.role == CANDIDATE
    assert all(isinstance(m, Prepare) and not m.pre_vote for m in ready.messages)
    c.deliver()
    assert node.role == LEADER and node.promised == Ballot(1, 0, "a1")


def test_a_pre_vote_answer_never_counts_as_a_promise():
    """The campaign may reuse the pre-vote's ballot, so a late pre-vote answer carries the
    candidate's ballot: it must not count towards Phase 1's quorum."""
    c = Cluster(3)
    node = c.node("a1")
    node.campaign()
    c.drain(node)
    pre = [m for m in c.queue if isinstance(m, Prepare)]
    c.queue.clear()
    for m in pre:
        c.node(m.dst).step(m)
        c.drain(c.node(m.dst))
    answers = list(c.queue)
    c.queue.clear()
    node.step(answers[0])
    c.drain(node)
    assert node.role == CANDIDATE
    node.step(answers[1])  # a pre-vote answer with the campaign's ballot
    assert node.role == CANDIDATE and node.ballot == answers[1].ballot


def test_an_acceptor_in_a_leader_lease_refuses_pre_votes_too():
    c = Cluster(3)
    c.elect("a1")
    c.advance(60)
    a3 = c.node("a3")
    a3.step(Prepare(src="a2", dst="a3", ballot=Ballot(9, 1, "a2"), first_slot=1, pre_vote=True))
    assert a3.ready().messages == []


def test_client_requests_are_routed_deduplicated_and_answered_after_commit():
    c = Cluster(3)
    c.elect("a1")
    c.request("a2", "SET x = 1")
    assert c.replies[-1].status == ReplyStatus.REDIRECT and c.replies[-1].leader == "a1"
    c.request("a1", "SET x = 1")
    c.request("a1", "SET x = 1")  # a retry while pending takes no second slot
    assert c.node("a1").next_slot == 2
    assert not [r for r in c.replies if r.status == ReplyStatus.OK]
    c.deliver()
    assert [r.status for r in c.replies[1:]] == [ReplyStatus.OK]
    c.request("a1", "SET x = 1")  # a retry after it applied: answered from the cache
    assert [r.status for r in c.replies[1:]] == [ReplyStatus.OK, ReplyStatus.OK]
    c.advance(60)  # a heartbeat carries the commit index to the followers
    for nid in c.ids:
        assert c.node(nid).kv.data == {"x": "1"}
        assert c.node(nid).status().commit_index == 1


def test_reads_go_through_the_log():
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 7", seq=1)
    c.deliver()
    c.request("a1", "GET x", seq=2)
    assert c.replies[-1].seq == 1, "the GET is not answered before its slot is chosen"
    c.deliver()
    assert c.replies[-1].seq == 2 and c.replies[-1].result == "7"
    assert c.commands("a1") == ["SET x = 7", "GET x"]


def test_lower_ballot_gets_a_nack_and_the_leader_steps_back():
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 1")
    pending = [m for m in c.queue if isinstance(m, Accept)]
    c.queue.clear()
    higher = Ballot(5, 1, "a2")
    for nid in ("a2", "a3"):
        c.node(nid).step(Prepare(src="a2", dst=nid, ballot=higher, first_slot=1))
        c.drain(c.node(nid))
    # Followers in a leader's lease ignore the Prepare (leader stability)...
    assert not c.queue
    # ...without check-quorum they promise, and the leader's Accept is refused.
    for nid in ("a2", "a3"):
        c.node(nid).config = Config(check_quorum=False)
        c.node(nid).step(Prepare(src="a2", dst=nid, ballot=higher, first_slot=1))
        c.drain(c.node(nid))
    c.queue = [m for m in c.queue if not isinstance(m, Promise)]
    c.queue.extend(pending)
    c.deliver(drop=lambda m: isinstance(m, Promise))
    nacks = [m for m in c.sent if isinstance(m, Nack)]
    assert nacks and all(n.promised == higher for n in nacks)
    leader = c.node("a1")
    assert leader.role == FOLLOWER and leader.promised == higher
    assert c.replies[-1].status == ReplyStatus.REDIRECT  # pending client told to retry


def test_stale_replies_are_dropped():
    c = Cluster(3)
    c.elect("a1")
    node = c.node("a1")
    old = Ballot(0, 0, "a1")
    node.step(Nack(src="a2", dst="a1", ballot=old, promised=Ballot(9, 2, "a3")))
    node.step(Promise(src="a2", dst="a1", ballot=old, first_slot=1, chosen=(), accepted=(),
                      commit_index=0))
    assert node.role == LEADER and node.ready().messages == []


def test_highest_ballot_wins_node_level():
    """v1 accepted at ballot 1 on A1 only; v2 chosen at ballot 2 on A2 and A3; a ballot-3
    proposer hearing from A1 and A2 must re-propose v2 (P2c), never v1."""
    c = Cluster(3)
    v1, v2 = Command("c1", 1, "SET x = v1"), Command("c2", 1, "SET x = v2")
    b1, b2 = Ballot(1, 0, "a1"), Ballot(2, 1, "a2")
    c.storage["a1"] = [Promised(b1), AcceptedRun(1, b1, (v1,))]
    for nid in ("a2", "a3"):
        c.storage[nid] = [Promised(b2), AcceptedRun(1, b2, (v2,))]
    for nid in c.ids:
        c.crash(nid)
        c.restart(nid)
    a1 = c.node("a1")
    cut_a3: Drop = lambda m: "a3" in (m.src, m.dst)  # noqa: E731
    a1.campaign()  # round 2 is the highest a1 knows of: (2, a1) < (2, a2), refused
    c.drain(a1)
    c.deliver(drop=cut_a3)
    assert a1.role == FOLLOWER and a1.promised == b2
    a1.campaign()
    c.drain(a1)
    assert a1.ballot == Ballot(3, 0, "a1")
    c.deliver(drop=cut_a3)
    assert a1.role == LEADER
    accepts = [m for m in c.sent if isinstance(m, Accept) and m.commands]
    assert accepts and all(m.commands == (v2,) for m in accepts)
    assert c.applied["a1"] == [(1, v2)]


def test_restarted_acceptor_reapplies_its_prefix_and_catches_up_with_commit():
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 1", seq=1)
    c.deliver()
    c.advance(60)
    c.crash("a3")
    for seq in range(2, 6):
        c.request("a1", f"SET x = {seq}", seq=seq)
        c.deliver()
    a3 = c.restart("a3")
    # Only what it persisted survives: it re-applies its chosen prefix, and no further.
    assert a3.status().commit_index == 1
    assert c.applied["a3"] == [(1, Command("c1", 1, "SET x = 1"))]
    c.advance(200)
    assert any(isinstance(m, Commit) and m.dst == "a3" for m in c.sent)
    assert c.node("a3").commit_index == c.node("a1").commit_index
    assert c.node("a3").kv.data == {"x": "5"}
    assert [i for i, _ in c.applied["a3"]] == list(range(1, c.node("a1").commit_index + 1))


def test_restarted_node_does_not_time_out_before_its_first_tick():
    c = Cluster(3)
    c.elect("a1")
    c.now = 10_000
    c.crash("a2")
    a2 = c.restart("a2")
    assert a2.role == FOLLOWER and a2.next_deadline() > c.now
    assert not [m for m in c.queue if isinstance(m, Prepare)]


def test_lost_accepts_are_resent_after_a_heartbeat():
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 1")
    c.deliver(drop=lambda m: isinstance(m, Accept))
    assert c.node("a1").commit_index == 0
    c.advance(120)
    assert c.node("a1").commit_index == 1 and c.node("a1").kv.data == {"x": "1"}


def test_a_lost_accepted_is_made_up_for_by_the_next_one():
    """Accepted acknowledges cumulatively (like Raft's match index): no heartbeat needed."""
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 1", seq=1)
    c.deliver(drop=lambda m: isinstance(m, Accepted))
    assert c.node("a1").commit_index == 0
    c.request("a1", "SET x = 2", seq=2, client="c2")
    c.deliver()
    assert c.node("a1").commit_index == 2
    assert len([r for r in c.replies if r.status == ReplyStatus.OK]) == 2


def test_a_lost_accept_is_resent_as_soon_as_the_gap_shows():
    """The next Accepted shows the gap a lost Accept left, and the leader fills it at once,
    as a Raft leader resends on a refusal, instead of waiting for a heartbeat."""
    c = Cluster(3)
    c.elect("a1")
    c.request("a1", "SET x = 1", seq=1)
    c.deliver(drop=lambda m: isinstance(m, Accept) and bool(m.commands))
    c.request("a1", "SET x = 2", seq=2, client="c2")
    c.deliver()
    assert c.node("a1").commit_index == 2
    resent = [m for m in c.sent if isinstance(m, Accept) and m.commands and m.first_slot == 1]
    assert {m.dst for m in resent} == {"a2", "a3"} and len(resent) == 4  # sent, lost, resent


def test_accepts_are_batched_and_pipelined_within_the_window():
    config = Config(max_batch=4, max_inflight=2)
    c = Cluster(3, config=config)
    c.elect("a1")
    c.queue.clear()
    for seq in range(1, 31):
        c.request("a1", f"SET k{seq} = {seq}", client=f"c{seq}")
    to_a2 = [m for m in c.queue if isinstance(m, Accept) and m.dst == "a2"]
    assert len(to_a2) == 2, "only max_inflight runs in flight before an acknowledgement"
    c.deliver()
    runs = [m for m in c.sent if isinstance(m, Accept) and m.dst == "a2" and m.commands]
    assert max(len(m.commands) for m in runs) == 4
    assert all(len(m.commands) <= 4 for m in runs)
    assert c.node("a1").commit_index == 30
    assert len([r for r in c.replies if r.status == ReplyStatus.OK]) == 30


def test_follower_in_a_leader_lease_ignores_prepares_from_others():
    c = Cluster(3)
    c.elect("a1")
    c.advance(60)
    a3 = c.node("a3")
    promised = a3.promised
    a3.step(Prepare(src="a2", dst="a3", ballot=Ballot(9, 1, "a2"), first_slot=1))
    assert a3.ready().messages == [] and a3.promised == promised


def test_check_quorum_leader_without_a_majority_steps_down():
    c = Cluster(3)
    c.elect("a1")
    c.advance(700, drop=lambda m: m.dst == "a1")
    assert c.node("a1").role == FOLLOWER


def test_without_check_quorum_a_cut_off_leader_keeps_leading():
    c = Cluster(3, config=Config(check_quorum=False))
    c.elect("a1")
    c.advance(700, drop=lambda m: m.dst == "a1" or m.src == "a1")
    assert c.node("a1").role == LEADER


def test_candidate_that_hears_a_live_leader_goes_back_to_following_it():
    """A campaign that promised nothing yet does not refuse the live leader's Accepts."""
    c = Cluster(3)
    c.elect("a1")
    a3 = c.node("a3")
    a3.campaign()
    c.drain(a3)
    c.queue.clear()
    c.advance(60)  # a1's heartbeat
    assert a3.role == FOLLOWER and a3.leader == "a1"
    assert not [m for m in c.sent if isinstance(m, Nack)]


@pytest.mark.parametrize("seed", [1, 2])
def test_same_seed_same_messages(seed):
    def run() -> list[str]:
        c = Cluster(5, seed=seed)
        c.advance(400)
        leader = next(n for n in c.ids if c.node(n).role == LEADER)
        for seq in range(1, 6):
            c.request(leader, f"SET x = {seq}", seq=seq)
        c.advance(100)
        return [repr(m) for m in c.sent]

    assert run() == run()


def test_the_election_timeout_is_drawn_per_role_change_and_reused_on_each_heartbeat():
    """The same timer as Raft's (node.py): drawn on a role change, reused by every reset."""
    node = PaxosNode("a1", ["a1", "a2", "a3"], Config(), random.Random(3))
    node.tick(0)
    ballot = Ballot(1, 1, "a2")
    heartbeat = Accept(src="a2", dst="a1", ballot=ballot, first_slot=1, commands=(),
                       commit_index=0)
    node.tick(10)
    node.step(heartbeat)  # a new leader: a role change, so a fresh draw
    draw = node.randomized_election_timeout
    for t in (60, 110, 160):
        node.tick(t)
        node.step(heartbeat)
        assert node.randomized_election_timeout == draw and node.election_deadline == t + draw
    node.tick(node.election_deadline)
    assert node.role == PRE_CANDIDATE and node.randomized_election_timeout != draw
