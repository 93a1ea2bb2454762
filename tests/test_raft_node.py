"""Raft's core driven by hand, one message at a time (no simulator), quoting the paper."""

import random

from consensus.messages import ClientRequest, ReplyStatus
from consensus.node import Config
from consensus.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    CommitMark,
    Entry,
    HardState,
    LogAppend,
    RequestVote,
    RequestVoteReply,
)
from consensus.raft.node import CANDIDATE, FOLLOWER, LEADER, RaftNode

PEERS = ["n1", "n2", "n3"]
CLASSIC = Config(pre_vote=False, check_quorum=False)


def node(nid="n1", config=CLASSIC):
    n = RaftNode(nid, PEERS, config, random.Random(1))
    n.tick(0)  # timers start at the first tick
    return n


def elect(n: RaftNode) -> None:
    """Make ``n`` leader by timing it out and granting n2's vote."""
    n.tick(n.election_deadline)
    assert n.role == CANDIDATE
    n.step(RequestVoteReply(src="n2", dst=n.id, term=n.term, granted=True))
    assert n.role == LEADER
    n.ready()


def test_election_timeout_is_randomised_within_range():
    draws = []
    for seed in range(50):
        n = RaftNode("n1", PEERS, Config(), random.Random(seed))
        n.tick(1000)
        draws.append(n.election_deadline - 1000)
    assert all(150 <= d <= 300 for d in draws) and len(set(draws)) > 40


def test_a_restarted_node_restores_before_it_can_campaign():
    """Timers start at the first tick, so a node restored late does not campaign at once
    with a forgotten term (and never persists a term older than the one it restored)."""
    n = RaftNode("n1", PEERS, CLASSIC, random.Random(1))
    assert n.next_deadline() == float("inf")
    n.tick(60_000)
    n.restore([HardState(7, "n2")])
    assert n.role == FOLLOWER and (n.term, n.voted_for) == (7, "n2")
    assert n.ready().persist == []
    assert 60_150 <= n.next_deadline() <= 60_300


def test_candidate_persists_term_and_vote_before_asking():
    """§5.2: "a follower increments its current term ... votes for itself and issues
    RequestVote RPCs"; Figure 2: currentTerm and votedFor are persistent state."""
    n = node()
    n.tick(n.election_deadline)
    out = n.ready()
    assert out.persist == [HardState(1, "n1")]
    asks = [m for m in out.messages if isinstance(m, RequestVote)]
    assert sorted(m.dst for m in asks) == ["n2", "n3"] and all(m.term == 1 for m in asks)


def test_vote_is_persisted_in_the_same_ready_as_the_reply():
    n = node("n2")
    n.step(RequestVote(src="n1", dst="n2", term=1, last_log_index=0, last_log_term=0))
    out = n.ready()
    assert HardState(1, "n1") in out.persist
    assert out.messages == [RequestVoteReply(src="n2", dst="n1", term=1, granted=True)]


def test_one_vote_per_term():
    n = node("n3")
    n.step(RequestVote(src="n1", dst="n3", term=1, last_log_index=0, last_log_term=0))
    n.step(RequestVote(src="n2", dst="n3", term=1, last_log_index=0, last_log_term=0))
    replies = [m for m in n.ready().messages if isinstance(m, RequestVoteReply)]
    assert [r.granted for r in replies] == [True, False]


def test_vote_refused_to_a_less_up_to_date_log():
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date"."""
    n = node("n2")
    n.restore([HardState(2, None), LogAppend((Entry(1, 1, None), Entry(2, 2, None)))])
    n.ready()
    # Longer log but older last term: refused.
    n.step(RequestVote(src="n1", dst="n2", term=3, last_log_index=5, last_log_term=1))
    # Same last term, shorter log: refused.
    n.step(RequestVote(src="n3", dst="n2", term=4, last_log_index=1, last_log_term=2))
    replies = [m for m in n.ready().messages if isinstance(m, RequestVoteReply)]
    assert [r.granted for r in replies] == [False, False]


def test_leader_appends_a_noop_and_replicates():
    n = node()
    elect(n)
    assert n.log.last_index == 1 and n.log.entries[1].command is None
    n.tick(n.now + 50)  # heartbeat
    beats = [m for m in n.ready().messages if isinstance(m, AppendEntries)]
    assert sorted(m.dst for m in beats) == ["n2", "n3"]


def test_quiz4_stale_leader_is_refused_and_steps_down():
    """Quiz 4: a term-3 leader's AppendEntries after a term-4 election is refused, and the
    refusal (carrying term 4) makes the old leader step down."""
    follower = node("n2")
    follower.restore([HardState(4, "n3")])
    follower.ready()
    stale = AppendEntries(src="n1", dst="n2", term=3, prev_log_index=0, prev_log_term=0,
                          entries=(Entry(3, 1, None),), leader_commit=0)
    follower.step(stale)
    out = follower.ready()
    assert follower.log.last_index == 0, "entry from the stale leader must not be appended"
    [refusal] = out.messages
    assert isinstance(refusal, AppendEntriesReply) and not refusal.success and refusal.term == 4

    old = node("n1")
    old.restore([HardState(2, None)])
    elect(old)
    assert old.term == 3 and old.role == LEADER
    old.step(refusal)
    assert old.role == FOLLOWER and old.term == 4
    assert HardState(4, None) in old.ready().persist


def test_follower_rejects_on_prev_log_mismatch_with_a_conflict_hint():
    """§5.3: "If a follower's log is inconsistent with the leader's, the AppendEntries
    consistency check will fail"; the hint names the conflicting term's first index."""
    n = node("n2")
    n.restore([HardState(3, None),
               LogAppend(tuple(Entry(t, i, None) for i, t in enumerate([1, 1, 2, 2, 2], 1)))])
    n.ready()
    n.step(AppendEntries(src="n1", dst="n2", term=3, prev_log_index=5, prev_log_term=3,
                         entries=(), leader_commit=0))
    [reply] = n.ready().messages
    assert not reply.success
    assert (reply.conflict_term, reply.conflict_index) == (2, 3)
    n.step(AppendEntries(src="n1", dst="n2", term=3, prev_log_index=9, prev_log_term=3,
                         entries=(), leader_commit=0))
    [reply] = n.ready().messages
    assert (reply.conflict_term, reply.conflict_index) == (0, 6)


def test_conflicting_suffix_is_truncated_and_persisted():
    n = node("n2")
    n.restore([HardState(2, None),
               LogAppend((Entry(1, 1, None), Entry(1, 2, None), Entry(1, 3, None)))])
    n.ready()
    new = (Entry(2, 2, None),)
    n.step(AppendEntries(src="n1", dst="n2", term=2, prev_log_index=1, prev_log_term=1,
                         entries=new, leader_commit=0))
    out = n.ready()
    assert [e.term for e in n.log.entries[1:]] == [1, 2]
    assert LogAppend(new) in out.persist
    [reply] = out.messages
    assert reply.success and reply.match_index == 2


def test_leader_backs_off_a_whole_term_per_refusal():
    n = node()
    n.restore([HardState(2, None),
               LogAppend(tuple(Entry(t, i, None) for i, t in enumerate([1, 1, 2, 2], 1)))])
    elect(n)  # term 3, no-op at 5
    # n2 holds term 1 up to index 6: its entry at 4 has term 1; leader's last term-1 is 2,
    # so one refusal moves the leader back past the whole term-2 run, to index 3.
    n.step(AppendEntriesReply(src="n2", dst="n1", term=3, success=False, reject_index=4,
                              conflict_term=1, conflict_index=1))
    [resend] = [m for m in n.ready().messages if m.dst == "n2"]
    assert resend.prev_log_index == 2 and resend.prev_log_term == 1
    assert [e.index for e in resend.entries] == [3, 4, 5]
    assert n.progress["n2"].probe, "after a refusal, one batch at a time until one lands"


def test_figure8_rule_previous_term_entry_not_committed_by_counting():
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas"."""
    n = node()
    n.restore([HardState(1, None), LogAppend((Entry(1, 1, None),))])
    elect(n)  # term 2; no-op at index 2
    n.step(AppendEntriesReply(src="n2", dst="n1", term=2, success=True, match_index=1))
    assert n.commit_index == 0, "index 1 is from term 1: a majority holding it is not enough"
    n.step(AppendEntriesReply(src="n2", dst="n1", term=2, success=True, match_index=2))
    assert n.commit_index == 2
    assert CommitMark(2) in n.ready().persist


def test_client_redirected_by_follower_and_answered_by_leader_once():
    f = node("n2")
    f.step(AppendEntries(src="n1", dst="n2", term=1, prev_log_index=0, prev_log_term=0,
                         entries=(), leader_commit=0))
    f.ready()
    f.step(ClientRequest(src="c1", dst="n2", seq=1, command="SET x = 100"))
    [redirect] = f.ready().replies
    assert redirect.status == ReplyStatus.REDIRECT and redirect.leader == "n1"

    n = node()
    elect(n)
    req = ClientRequest(src="c1", dst="n1", seq=1, command="SET x = 100")
    n.step(req)
    n.step(req)  # a retry while pending appends nothing new
    assert n.log.last_index == 2
    n.step(AppendEntriesReply(src="n2", dst="n1", term=1, success=True, match_index=2))
    out = n.ready()
    assert [(r.status, r.result) for r in out.replies] == [(ReplyStatus.OK, "OK")]
    assert n.kv.data == {"x": "100"}
    n.step(req)  # a retry after commit: answered from the session table, not re-appended
    assert n.log.last_index == 2
    assert [r.result for r in n.ready().replies] == ["OK"]


def test_restart_keeps_term_vote_log_and_reapplies_committed_prefix():
    n = node("n2")
    entries = (Entry(1, 1, None), Entry(1, 2, None))
    n.step(AppendEntries(src="n1", dst="n2", term=1, prev_log_index=0, prev_log_term=0,
                         entries=entries, leader_commit=2))
    records = n.ready().persist
    again = node("n2")
    again.restore(records)
    assert (again.term, again.log.last_index, again.commit_index) == (1, 2, 2)
    assert [a.index for a in again.ready().applied] == [1, 2]


def test_the_election_timeout_is_drawn_per_role_change_and_reused_on_each_heartbeat():
    """etcd-io/raft's randomizedElectionTimeout, the mechanism both algorithms share: drawn
    on a role change (here: following n2 in term 1), then every heartbeat restarts the
    countdown with that same draw; a new role draws afresh."""
    n = node(config=Config())
    heartbeat = AppendEntries(src="n2", dst="n1", term=1, prev_log_index=0, prev_log_term=0,
                              entries=(), leader_commit=0)
    n.tick(10)
    n.step(heartbeat)
    draw = n.randomized_election_timeout
    assert n.election_deadline == 10 + draw
    for t in (60, 110, 160):
        n.tick(t)
        n.step(heartbeat)
        assert n.randomized_election_timeout == draw and n.election_deadline == t + draw
    n.tick(n.election_deadline)  # n2 went quiet: a pre-vote round, with a new draw
    assert n.randomized_election_timeout != draw
