"""Raft, as a pure state machine (extended Raft paper; Ongaro's thesis for PreVote/CheckQuorum).

Theory of operation
-------------------
Every node is a follower, a (pre-)candidate or the leader. Time is cut into terms, each begun
by an election; a term is a logical clock, and any message carrying an older term is refused
(§5.1). ``step`` compares terms once, for every role, then hands the message to one
``handle_*`` method per message type; roles change only in the ``become_*`` methods, which
reset every role-dependent field together.

A follower that hears nothing from a leader for a randomised election timeout campaigns
(§5.2). With ``pre_vote`` on, it first asks whether it *could* win, without bumping its term,
so a node cut off by a partition cannot disrupt a healthy cluster when it comes back
(thesis §9.6). A vote is granted once per term; the term and vote are persisted before the
vote leaves. Who may win is the ``election`` variant:

- ``election: up-to-date`` (Raft's own, the default): a vote goes only to a candidate whose
  log is at least as up to date as the voter's, by (last term, last index) (§5.4.1), so the
  winner already holds every committed entry and never learns anything from its votes.
- ``election: any`` (Multi-Paxos's rule, Howard & Mortier 2020): a vote goes to any candidate,
  and a voter whose log is ahead of the candidate's sends its entries with the vote, from a
  point both logs share (the candidate's last entry if the voter holds it, else the lower of
  the two commit indexes, committed entries being the same everywhere), at most a full
  pipeline (``max_batch * max_inflight`` entries; a candidate further behind is refused, as
  under up-to-date). With a majority of votes the candidate adopts the most up to date of
  their logs before it leads: that log holds every committed entry by §5.4.3's argument, and
  the adopted entries keep their terms, so only the new leader's own no-op commits them
  (Figure 8 stays safe).

The leader appends a no-op when elected (§8), then replicates with AppendEntries: each carries
the (index, term) of the entry before the new ones, and a follower that does not hold that
entry refuses, with a hint that lets the leader skip back a whole term at a time (§5.3).
Replication is pipelined (up to ``max_inflight`` batches in flight per follower) and batched
(up to ``max_batch`` entries per message). An entry is committed when a majority holds it
*and* it belongs to the leader's current term; earlier entries are committed only indirectly,
which is what makes Figure 8's scenario safe (§5.4.2). With ``check_quorum`` on, a leader that
has not heard from a majority for an election timeout steps down, and a follower that has heard
from a leader within the minimum election timeout ignores vote requests (thesis §6.2, §4.2.3).

Client commands (reads included, for linearizability) go through the log; a follower answers
a client with the leader's id.

Log compaction (paper §7, thesis ch. 5). With ``snapshot_entries`` on, a node snapshots its
key-value store at the applied index once that many entries were applied since the last
snapshot, together with the configuration in force there, and drops the log up to it; the log
then starts after the snapshot's last entry, whose index and term it keeps for the
consistency check. The snapshot is persisted as one record that replaces every earlier one
(term, vote, snapshot, the entries after it, the commit index), so the write-ahead log
shrinks too. A follower whose next entry the leader no longer holds gets the snapshot with
InstallSnapshot, in chunks of ``snapshot_chunk_bytes``, one chunk in flight (a lost one is
sent again after a heartbeat round); it installs it (state machine, configuration, a log
starting after it, keeping the entries that follow if its log agrees there), persists it,
and the leader goes on with AppendEntries from the snapshot's end.

Membership (thesis ch. 4; what both algorithms share is in node.py's module doc). A
configuration is a log entry, and it takes effect as soon as a node appends it, committed or
not (§4.1): the latest configuration in the log is the one in force, so a follower whose
suffix is truncated falls back to the one before. Nothing new is persisted: on restart the
restored log says which configuration applies. While C_old,new is in force an election and a
commit need a majority of each half (§4.3); learners receive AppendEntries but never count.
A leader that C_new leaves out keeps leading until C_new commits, without counting itself,
then hands over with TimeoutNow. A removed server that never learnt it was removed cannot
disrupt the cluster (§4.2.3): its pre-votes and votes are ignored by voters that hear from a
leader (check-quorum), and, whatever the knobs, by voters whose committed configuration leaves
it out (``left_out``); a server that knows it is not a voter never campaigns.

Reads (``read_path``; the shared part is in node.py's module doc). Through the log (the
default, as above) a GET is an entry like any other. Off the log, the leader first waits until its
no-op (§8) is committed, so that its commit index covers every entry committed in earlier
terms (thesis §6.4). ``read_index`` then confirms the leadership with one heartbeat round:
every AppendEntries carries the round (``beat``) and every reply in our term echoes it,
refusals included, since a follower that refuses in our term still takes us for its leader.
``lease`` answers at once while the lease holds. It is safe in Raft because a new leader
needs the votes of a majority, which shares a node with the majority that acknowledged the
lease's round; that node drops RequestVotes and pre-votes for a minimum election timeout
after it last heard the leader (check-quorum, thesis §4.2.3, §6.4.1), and its own election
timer (at least that long) keeps it from campaigning sooner; a node that restarted waits as
long before it votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensus.kv import KVStore
from consensus.membership import Membership
from consensus.messages import ClientRequest, Command, ConfigChange, Message, NodeId, TimeoutNow
from consensus.node import (
    ANY,
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ConsensusNode,
    LogSlot,
    Progress,
    Status,
)
from consensus.raft.log import RaftLog
from consensus.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    CommitMark,
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotReply,
    LogAppend,
    RaftSnapshot,
    RequestVote,
    RequestVoteReply,
)
from consensus.raft.snapshot import IncomingSnapshot

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "RaftNode", "RaftProgress"]


@dataclass(slots=True)
class RaftProgress(Progress):
    """The leader's view of one follower (Figure 2's nextIndex/matchIndex, plus pipelining).

    Invariant: match < next. Probing (``Progress``) starts on a new election, after a refusal
    and after a heartbeat without progress; a probe batch does not move ``next``, so it is
    sent again from the same index when the follower answers without acknowledging it."""

    progress_at: float = 0.0  # last time ``match`` advanced: a stalled pipeline is resent
    # Sending a snapshot (``next`` at or below the log's offset): which one (its last
    # index; 0: none), and how many of its bytes the follower holds.
    snapshot_index: int = 0
    snapshot_offset: int = 0


class RaftNode(ConsensusNode):
    """A complete Raft node; see the module docstring."""

    algorithm = "raft"

    def __init__(self, node_id: NodeId, peers: Sequence[NodeId] | Any, config: Any = None,
                 rng: Any = None, *, joining: bool = False) -> None:
        super().__init__(node_id, peers, config, rng, joining=joining)
        # The configuration in force while the log holds none: the initial one (None for a
        # joining node), or the one at the snapshot's index, with its change's key.
        self.base_membership: Membership | None = self.membership
        self.base_key: tuple[str, int] | None = None
        # The latest snapshot (log.offset is its last index): its data and its last term.
        self.snapshot_data = ""
        self.snapshot_term = 0
        self.incoming: IncomingSnapshot | None = None  # follower: a snapshot in transfer
        # Persistent state (Figure 2): written through HardState/LogAppend before replies.
        self.term = 0
        self.voted_for: NodeId | None = None
        self.log = RaftLog()
        # Volatile state. Invariant: commit_index <= log.last_index (and the base's
        # applied <= commit_index).
        self.votes: set[NodeId] = set()  # (pre-)candidate: who granted us their vote
        # Candidate with election "any": the most up to date log a vote carried, to adopt.
        self.best_vote: RequestVoteReply | None = None
        self.progress: dict[NodeId, RaftProgress] = {}
        self.become_follower(None)

    # -- restart ---------------------------------------------------------------------------

    def restore(self, records: Sequence[Any]) -> None:
        """Fold the persisted records back into term, vote, snapshot, log and commit index."""
        commit = 0
        for rec in records:
            if isinstance(rec, RaftSnapshot):
                self.term, self.voted_for = rec.term, rec.voted_for
                self.load_snapshot(rec.index, rec.last_term, rec.data,
                                   KVStore.from_snapshot(rec.data.encode()), rec.config,
                                   rec.config_key)
                self.log.write(rec.entries)
                commit = max(commit, rec.commit)
            elif isinstance(rec, HardState):
                self.term, self.voted_for = rec.term, rec.voted_for
            elif isinstance(rec, LogAppend):
                self.log.write(rec.entries)
            elif isinstance(rec, CommitMark):
                commit = max(commit, rec.index)
        self.refresh_membership()  # the latest configuration in the restored log
        self.become_follower(None)
        self.set_commit(min(commit, self.log.last_index), persist=False)

    # -- role changes (the only place the role changes) ------------------------------------

    def become_follower(self, leader: NodeId | None) -> None:
        """raft.tla ``UpdateTerm``'s role change (and a candidate's step back on seeing the
        leader of its term, §5.2): follow ``leader`` in the current term."""
        self.votes = set()
        self.step_down(leader)

    def become_pre_candidate(self) -> None:
        """No raft.tla action (an extension). PreVote (thesis §9.6): ask for votes for term+1
        without changing our own term."""
        self.role = PRE_CANDIDATE
        self.leader = None
        self.votes = {self.id}
        self.reset_randomized_election_timeout()
        self.bcast_request_vote(pre_vote=True)
        self.maybe_win_election(pre_vote=True)

    def become_candidate(self) -> None:
        """raft.tla ``Timeout``: a new term, a vote for ourselves, persisted before asking."""
        self.role = CANDIDATE
        self.leader = None
        self.term += 1
        self.voted_for = self.id
        self.persist(HardState(self.term, self.id))
        self.votes = {self.id}
        self.best_vote = None
        self.reset_randomized_election_timeout()
        self.bcast_request_vote(pre_vote=False)
        self.maybe_win_election(pre_vote=False)

    def become_leader(self) -> None:
        """raft.tla ``BecomeLeader``: reset every follower's progress, append a no-op (§8).
        With election "any", first adopt the most up to date log the votes carried."""
        if self.best_vote is not None:
            self.adopt_log(self.best_vote)
            self.best_vote = None
        self.start_leading()
        nxt = self.log.last_index + 1
        self.progress = {p: RaftProgress(next=nxt, progress_at=self.now) for p in self.others}
        self.append_entries_locally((None,))
        self.bcast_append()

    # -- time ------------------------------------------------------------------------------
    # ConsensusNode.tick (node.py) runs the timers alike for both algorithms: the election
    # timeout calls campaign(), a leader runs check-quorum and then bcast_heartbeat (outbound).

    # -- inbound ---------------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """raft.tla ``Receive``: the term check once for every role, then one handler each."""
        if isinstance(msg, ClientRequest):
            self.handle_client_request(msg)
            return
        if isinstance(msg, ConfigChange):
            self.handle_config_change(msg)
            return
        if isinstance(msg, RequestVote) and self.left_out(msg.src):
            return  # thesis §4.2.3: a removed server's campaign must not touch our term
        term = msg.term  # type: ignore[attr-defined]
        if term > self.term:
            if isinstance(msg, RequestVote) and not msg.transfer and self.in_leader_lease():
                return  # thesis §4.2.3: a live leader exists; don't let a stray node disrupt it
            if isinstance(msg, RequestVote) and msg.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(msg, RequestVoteReply) and msg.pre_vote and msg.granted:
                pass  # granted pre-votes echo the term the pre-candidate asked for
            else:
                self.update_term(term, msg.src if isinstance(msg, AppendEntries) else None)
        elif term < self.term:
            self.handle_stale_message(msg)
            return
        if isinstance(msg, AppendEntries):
            self.handle_append_entries(msg)
        elif isinstance(msg, AppendEntriesReply):
            self.handle_append_entries_reply(msg)
        elif isinstance(msg, RequestVote):
            self.handle_request_vote(msg)
        elif isinstance(msg, RequestVoteReply):
            self.handle_request_vote_reply(msg)
        elif isinstance(msg, TimeoutNow):
            self.handle_timeout_now(msg)
        elif isinstance(msg, InstallSnapshot):
            self.handle_install_snapshot(msg)
        elif isinstance(msg, InstallSnapshotReply):
            self.handle_install_snapshot_reply(msg)

    def left_out(self, candidate: NodeId) -> bool:
        """Whether our configuration is committed and ``candidate`` is not one of its voters.

        Such a candidate (a server removed while it was down or cut off, which never learnt
        it) cannot win any election again until a later configuration adds it back: a
        majority of the committed configuration holds it, and every later one follows it.
        So its (pre-)vote requests are dropped before the term check, whatever
        ``pre_vote``/``check_quorum`` say (hashicorp/raft rejects them the same way);
        otherwise, with both off, its ever higher terms depose every leader it reaches and
        the cluster never settles. An uncommitted configuration may still be taken back by
        a truncation, so it does not count."""
        m = self.membership
        return m is not None and not self.config_commit_pending and not m.is_voter(candidate)

    def update_term(self, term: int, leader: NodeId | None) -> None:
        """raft.tla ``UpdateTerm``: a newer term seen anywhere makes us a follower in it."""
        self.term, self.voted_for = term, None
        self.persist(HardState(term, None))
        self.become_follower(leader)

    def handle_stale_message(self, msg: Message) -> None:
        """raft.tla ``DropStaleResponse``, plus an answer that makes a stale sender step down.

        A deposed leader (quiz 4: term 3 after a term-4 election) gets a refusal carrying our
        term, sees it is newer and becomes a follower; a stale pre-vote gets a refusal too, so
        a rejoining node learns the current term.
        """
        if isinstance(msg, AppendEntries):
            self.send(AppendEntriesReply(src=self.id, dst=msg.src, term=self.term, success=False,
                                         reject_index=msg.prev_log_index))
        elif isinstance(msg, RequestVote) and msg.pre_vote:
            self.send(RequestVoteReply(src=self.id, dst=msg.src, term=self.term, granted=False,
                                       pre_vote=True))
        elif isinstance(msg, InstallSnapshot):
            self.send(InstallSnapshotReply(src=self.id, dst=msg.src, term=self.term,
                                           last_included_index=msg.last_included_index,
                                           received=0))

    def take_new_request(self, req: ClientRequest) -> None:
        """raft.tla ``ClientRequest``: the leader appends the command and replicates it."""
        self.pending[(req.src, req.seq)] = self.log.last_index + 1
        self.append_entries_locally((req.as_command(),))
        self.bcast_append()

    def handle_request_vote(self, msg: RequestVote) -> None:
        """raft.tla ``HandleRequestVoteRequest`` (§5.2, §5.4.1; PreVote thesis §9.6). With
        election "any" the log restriction goes: the vote carries what the candidate lacks.
        A joining node, which has no configuration yet, never votes."""
        if self.membership is None:
            self.send(RequestVoteReply(src=self.id, dst=msg.src, term=self.term, granted=False,
                                       pre_vote=msg.pre_vote))
            return
        up_to_date = self.log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        catch_up: tuple[int, tuple[Entry, ...]] = (0, ())
        if not up_to_date and self.election() == ANY:
            found = self.entries_for_candidate(msg)
            up_to_date = found is not None
            catch_up = found or catch_up
        if msg.pre_vote:
            # Grant if the asker could win: its log is current enough and we know no leader.
            granted = (up_to_date and (msg.term > self.term or self.leader is None)
                       and not self.in_leader_lease())
            self.send(RequestVoteReply(src=self.id, dst=msg.src,
                                       term=msg.term if granted else self.term,
                                       granted=granted, pre_vote=True))
            return
        granted = up_to_date and self.voted_for in (None, msg.src) and self.role != LEADER
        if granted:
            self.voted_for = msg.src
            self.persist(HardState(self.term, msg.src))  # durable before the vote leaves
            self.reset_election_timer()
        prev, entries = catch_up if granted else (0, ())
        self.send(RequestVoteReply(src=self.id, dst=msg.src, term=self.term, granted=granted,
                                   prev_log_index=prev, prev_log_term=self.log.term_at(prev),
                                   entries=entries))

    def entries_for_candidate(self, msg: RequestVote) -> tuple[int, tuple[Entry, ...]] | None:
        """Election "any": the entries after a point both our log and the candidate's hold,
        as ``(that index, entries)``; None if more than a pipeline's worth (then refuse).

        Both logs hold the candidate's last entry if we hold an entry of its term there (Log
        Matching, §5.3); failing that, both hold the committed entries up to the lower of the
        two commit indexes (State Machine Safety)."""
        log = self.log
        if log.term_at(msg.last_log_index) == msg.last_log_term:
            prev = msg.last_log_index
        else:
            prev = min(msg.commit_index, self.commit_index)
        if log.last_index - prev > self.config.max_batch * self.config.max_inflight:
            return None
        return prev, log.slice(prev + 1, log.last_index)

    def handle_request_vote_reply(self, msg: RequestVoteReply) -> None:
        """raft.tla ``HandleRequestVoteResponse``: tally, and win with a majority."""
        if msg.pre_vote:
            if self.role != PRE_CANDIDATE or msg.term != self.term + 1:
                return
        elif self.role != CANDIDATE or msg.term != self.term:
            return
        if msg.granted:
            if msg.entries and not self.maybe_keep_vote_log(msg):
                return
            self.votes.add(msg.src)
            self.maybe_win_election(pre_vote=msg.pre_vote)

    def maybe_keep_vote_log(self, msg: RequestVoteReply) -> bool:
        """Election "any": keep the log this vote carries if it is the most up to date yet.
        False (the vote does not count) if it does not join our log where it says it does,
        which an honest voter never sends."""
        if self.log.term_at(msg.prev_log_index) != msg.prev_log_term:
            return False
        last = msg.entries[-1]
        best = self.best_vote.entries[-1] if self.best_vote is not None else None
        if best is None or (last.term, last.index) > (best.term, best.index):
            self.best_vote = msg
        return True

    def adopt_log(self, vote: RequestVoteReply) -> None:
        """Take the voter's entries in place of our own suffix, if its log is more up to date
        (§5.4.1's order); the entries keep their terms. Persisted in this same ``Ready``,
        before the first AppendEntries that relies on them."""
        last = vote.entries[-1]
        if self.log.is_up_to_date(last.index, last.term) and (
                (last.term, last.index) != (self.log.last_term, self.log.last_index)):
            skip = 0
            for entry in vote.entries:  # what we already hold needs no rewrite
                if self.log.term_at(entry.index) != entry.term:
                    break
                skip += 1
            new = vote.entries[skip:]
            if new:
                self.write_log(new)
                self.persist(LogAppend(new))

    def maybe_win_election(self, *, pre_vote: bool) -> bool:
        """Win with the votes of a quorum of our configuration (both halves while joint)."""
        if self.membership is None or not self.membership.has_quorum(self.votes):
            return False
        if pre_vote:
            self.become_candidate()
        else:
            self.become_leader()
        return True

    def handle_append_entries(self, msg: AppendEntries) -> None:
        """raft.tla ``HandleAppendEntriesRequest`` (§5.3): check, truncate, append, commit."""
        self.heard_from_leader(msg.src)
        log = self.log
        prev = msg.prev_log_index
        entries = msg.entries
        if prev < self.commit_index:
            # Entries up to our commit index are committed, so they match the leader's (§5.4.3).
            entries = entries[self.commit_index - prev:]
        elif prev > log.last_index:
            self.send_append_reply(msg, False, conflict_term=0, conflict_index=log.last_index + 1)
            return
        elif log.term_at(prev) != msg.prev_log_term:
            self.send_append_reply(msg, False, conflict_term=log.term_at(prev),
                                   conflict_index=log.first_index_of_term(prev))
            return
        # Skip entries we already hold; the first conflict truncates our suffix.
        start = 0
        for entry in entries:
            if log.term_at(entry.index) != entry.term:
                break
            start += 1
        new = entries[start:]
        if new:
            self.write_log(new)
            self.persist(LogAppend(new))  # durable before the acknowledgement leaves
        match = msg.prev_log_index + len(msg.entries)
        self.send_append_reply(msg, True, match=match)
        commit = min(msg.leader_commit, match)
        if commit > self.commit_index:
            self.set_commit(commit)

    def handle_append_entries_reply(self, msg: AppendEntriesReply) -> None:
        """raft.tla ``HandleAppendEntriesResponse``: advance match, or back off and retry."""
        if self.role != LEADER:
            return
        pr = self.progress.get(msg.src)
        if pr is None:
            return
        probing = pr.heard()
        self.heard_beat(pr, msg.beat)  # any answer in our term: it still takes us for leader
        if msg.success:
            if msg.match_index > pr.match:
                pr.match = msg.match_index
                pr.next = max(pr.next, pr.match + 1)
                pr.progress_at = self.now
                pr.become_replicate()
                self.advance_commit_index()
                if self.change is not None or self.transfer_to is not None:
                    self.heard_progress(msg.src)
            elif probing:
                # Alive (a heartbeat's answer), but the probe went unanswered: probe again,
                # from the first index the follower is known to lack.
                pr.become_probe(pr.match + 1)
            while pr.inflight and pr.inflight[0] <= msg.match_index:
                pr.inflight.popleft()
        else:
            if msg.reject_index < pr.match:
                return  # a stale refusal from before the follower caught up
            if msg.conflict_term > 0:
                ours = self.log.last_index_of_term(msg.conflict_term)
                target = ours + 1 if ours else msg.conflict_index
            else:
                target = msg.conflict_index
            pr.become_probe(max(pr.match + 1, min(target, msg.reject_index)))
        if self.role == LEADER and msg.src in self.progress:  # a commit may have changed both
            self.maybe_send_append(msg.src)

    def handle_install_snapshot(self, msg: InstallSnapshot) -> None:
        """No raft.tla action (the spec has no compaction): InstallSnapshot (paper §7,
        thesis §5.3). Chunks are taken in order; the last one installs the snapshot, unless
        our commit index already covers it (then there is nothing to install)."""
        self.heard_from_leader(msg.src)
        index = msg.last_included_index
        end = msg.offset + len(msg.data)
        if index <= self.commit_index:
            self.send_snapshot_reply(msg, end, done=True)
            return
        if msg.offset == 0:
            self.incoming = IncomingSnapshot(index)
        incoming = self.incoming
        if incoming is None or incoming.index != index or not incoming.take(msg.offset, msg.data):
            # A chunk out of order (one was lost): say where to go on from.
            held = incoming.received if incoming is not None and incoming.index == index else 0
            self.send_snapshot_reply(msg, held, done=False)
            return
        if not msg.done:
            self.send_snapshot_reply(msg, end, done=False)
            return
        self.incoming = None
        data = incoming.data()
        try:
            kv = KVStore.from_snapshot(data.encode())
        except ValueError:
            self.send_snapshot_reply(msg, 0, done=False)  # damaged: start again
            return
        self.load_snapshot(index, msg.last_included_term, data, kv, msg.config, msg.config_key)
        self.refresh_membership()
        self.persist(self.snapshot_record())  # durable before the reply says we hold it
        self.send_snapshot_reply(msg, end, done=True)

    def handle_install_snapshot_reply(self, msg: InstallSnapshotReply) -> None:
        """The leader's side: send the next chunk, or, once installed, go on with
        AppendEntries after the snapshot."""
        if self.role != LEADER:
            return
        pr = self.progress.get(msg.src)
        if pr is None:
            return
        pr.heard()
        if msg.last_included_index == pr.snapshot_index:
            if msg.done:
                pr.snapshot_index = pr.snapshot_offset = 0
                if msg.last_included_index > pr.match:
                    pr.match = msg.last_included_index
                    pr.progress_at = self.now
                pr.become_probe(pr.match + 1)
                self.advance_commit_index()
                if self.change is not None or self.transfer_to is not None:
                    self.heard_progress(msg.src)
            else:
                pr.snapshot_offset = msg.received
        if self.role == LEADER and msg.src in self.progress:
            self.maybe_send_append(msg.src)

    # -- commitment ------------------------------------------------------------------------

    def advance_commit_index(self) -> bool:
        """raft.tla ``AdvanceCommitIndex``: the quorum index of our configuration (both
        halves while joint; learners and a leader that is not a voter do not count), if it is
        from our term (§5.4.2)."""
        matches = {peer: p.match for peer, p in self.progress.items()}
        matches[self.id] = self.own_copy()
        n = self.membership.committed_index(matches)  # type: ignore[union-attr]
        if n > self.commit_index and self.log.term_at(n) == self.term:
            self.set_commit(n)
            return True
        return False

    def committed_own_term(self) -> bool:
        """Our no-op (§8) or a later entry of our term is committed (thesis §6.4)."""
        return self.log.term_at(self.commit_index) == self.term

    def command_at(self, index: int) -> Command | None:
        return self.log.entry(index).command

    def commit_record(self, index: int) -> CommitMark:
        return CommitMark(index)

    def append_entries_locally(self, commands: tuple[Any, ...]) -> None:
        start = self.log.last_index + 1
        new = tuple(Entry(self.term, start + i, c) for i, c in enumerate(commands))
        self.write_log(new)
        self.persist(LogAppend(new))
        self.wrote_own_copy()

    def last_proposed(self) -> int:
        return self.log.last_index

    def write_log(self, entries: tuple[Entry, ...]) -> None:
        """Write entries to the log; a configuration among them, or one a truncation drops,
        changes the configuration in force at once (thesis §4.1)."""
        if self.log.write(entries):
            self.refresh_membership()

    def refresh_membership(self) -> None:
        """Act on the latest configuration in the log (or the base one if it holds none)."""
        configs = self.log.configs
        if not configs:
            self.set_membership(self.base_membership, self.log.offset, None, self.base_key)
            return
        log = self.log
        command = log.entry(configs[-1]).command
        assert command is not None
        previous = (Membership.from_text(log.entry(configs[-2]).command.text)  # type: ignore[union-attr]
                    if len(configs) > 1 else self.base_membership)
        self.set_membership(Membership.from_text(command.text), configs[-1], previous,
                            (command.client_id, command.seq))

    def propose_config(self, membership: Membership, key: tuple[str, int]) -> None:
        """Append ``membership`` as an entry of our term; it is in force from here on."""
        self.append_entries_locally((Command(key[0], key[1], membership.command_text()),))
        self.bcast_append()

    def take_snapshot(self) -> None:
        """Snapshot the state machine at the applied index and compact the log up to it."""
        index = self.applied
        log = self.log
        config_index = next((i for i in reversed(log.configs) if i <= index), 0)
        if config_index:
            command = log.entry(config_index).command
            assert command is not None
            self.base_membership = Membership.from_text(command.text)
            self.base_key = (command.client_id, command.seq)
        self.snapshots_taken += 1
        self.compact_log(index, log.term_at(index), self.kv.snapshot().decode())
        self.persist(self.snapshot_record())

    def load_snapshot(self, index: int, term: int, data: str, kv: KVStore, config: str | None,
                      key: tuple[str, int] | None) -> None:
        """Start from a snapshot we did not take (on restart, or from the leader): its state
        machine ``kv`` (parsed from ``data``) and the configuration in force at its index."""
        self.kv = kv
        self.base_membership = Membership.from_text(config) if config is not None else None
        self.base_key = key
        self.compact_log(index, term, data)

    def compact_log(self, index: int, term: int, data: str) -> None:
        """The snapshot ``data`` covers the log up to ``index``: drop that part, keep the
        snapshot to send, and count everything it covers as committed and applied."""
        self.log.compact(index, term)
        self.snapshot_data, self.snapshot_term, self.snapshot_index = data, term, index
        self.commit_index = max(self.commit_index, index)
        self.applied = max(self.applied, index)

    def snapshot_record(self) -> RaftSnapshot:
        """The compacting record: everything a restart needs (storage.py)."""
        log = self.log
        base = self.base_membership
        return RaftSnapshot(self.term, self.voted_for, log.offset, self.snapshot_term,
                            self.snapshot_data, None if base is None else base.to_text(),
                            self.base_key, log.slice(log.offset + 1, log.last_index),
                            self.commit_index)

    def held_entries(self) -> int:
        return len(self.log.entries) - 1

    # -- outbound --------------------------------------------------------------------------

    def bcast_request_vote(self, *, pre_vote: bool) -> None:
        """Ask every other voter of our configuration (learners do not vote)."""
        term = self.term + 1 if pre_vote else self.term
        for peer in self.voting_others:
            self.send(RequestVote(src=self.id, dst=peer, term=term,
                                  last_log_index=self.log.last_index,
                                  last_log_term=self.log.last_term, pre_vote=pre_vote,
                                  commit_index=self.commit_index,
                                  transfer=self.transfer_campaign))

    def bcast_append(self) -> None:
        for peer in self.others:
            self.maybe_send_append(peer)

    def bcast_heartbeat(self) -> None:
        """Every heartbeat: an AppendEntries to each follower, resending what seems lost
        (once: then heartbeats only until the follower answers, see ``Progress``)."""
        self.heartbeat_deadline = self.now + self.config.heartbeat_ms
        self.next_beat()
        for peer in self.others:
            pr = self.progress[peer]
            if (pr.inflight and self.now - pr.progress_at >= self.config.heartbeat_ms
                    and pr.may_resend()):
                # Entries outstanding and no progress for a whole heartbeat: assume they were
                # lost, and probe from the last acknowledged index.
                pr.become_probe(pr.match + 1)
            if not self.maybe_send_append(peer):
                self.send_append(peer, pr, heartbeat=True)

    def maybe_send_append(self, peer: NodeId) -> bool:
        """Send new entries to ``peer`` while its pipeline has room, or the next snapshot
        chunk if the entries it needs are compacted; True if anything went."""
        pr = self.progress[peer]
        if pr.next <= self.log.offset:
            return self.maybe_send_snapshot(peer, pr)
        window = pr.window(self.config.max_inflight)
        sent = False
        while len(pr.inflight) < window and pr.next <= self.log.last_index:
            self.send_append(pr=pr, peer=peer)
            pr.sent_batch()
            sent = True
        return sent

    def new_progress(self, peer: NodeId) -> RaftProgress:
        """A member added while we lead (by the configuration just appended): probe with
        that entry; the refusal's hint says where the new member's log ends (§5.3)."""
        return RaftProgress(next=max(1, self.log.last_index), progress_at=self.now)

    def send_heartbeat(self, peer: NodeId) -> None:
        self.send_append(peer, self.progress[peer], heartbeat=True)

    def maybe_send_snapshot(self, peer: NodeId, pr: RaftProgress) -> bool:
        """The next chunk of our snapshot, unless one is out (a probe: one at a time)."""
        if pr.snapshot_index != self.log.offset:  # a newer snapshot: start it over
            pr.become_probe(pr.next)
            pr.snapshot_index, pr.snapshot_offset = self.log.offset, 0
        if pr.probe_sent:
            return False
        start = pr.snapshot_offset
        end = start + self.config.snapshot_chunk_bytes
        base = self.base_membership
        self.send_early(InstallSnapshot(
            src=self.id, dst=peer, term=self.term, last_included_index=self.log.offset,
            last_included_term=self.snapshot_term, offset=start,
            data=self.snapshot_data[start:end], done=end >= len(self.snapshot_data),
            config=None if base is None else base.to_text(), config_key=self.base_key))
        pr.sent_batch()
        return True

    def send_append(self, peer: NodeId, pr: RaftProgress, *, heartbeat: bool = False) -> None:
        """One AppendEntries. A heartbeat carries no entries and checks only ``match``, which
        the follower is known to hold, so a reordered heartbeat never causes a refusal (or,
        if our snapshot covers ``match``, index 0, which every log matches)."""
        entries: tuple[Entry, ...] = ()
        if heartbeat:
            prev = pr.match if pr.match >= self.log.offset else 0
        else:
            prev = pr.next - 1
            entries = self.log.slice(pr.next, pr.next + self.config.max_batch - 1)
            if not pr.probe:  # a probe is sent again from the same index until answered
                pr.next += len(entries)
            pr.inflight.append(prev + len(entries))
        self.send_early(AppendEntries(src=self.id, dst=peer, term=self.term, prev_log_index=prev,
                                prev_log_term=self.log.term_at(prev) if prev else 0,
                                entries=entries,
                                leader_commit=self.commit_index, beat=self.beat))

    def send_snapshot_reply(self, msg: InstallSnapshot, received: int, *, done: bool) -> None:
        self.send(InstallSnapshotReply(src=self.id, dst=msg.src, term=self.term,
                                       last_included_index=msg.last_included_index,
                                       received=received, done=done))

    def send_append_reply(self, msg: AppendEntries, success: bool, *, match: int = 0,
                          conflict_term: int = 0, conflict_index: int = 0) -> None:
        self.send(AppendEntriesReply(src=self.id, dst=msg.src, term=self.term, success=success,
                                     match_index=match, reject_index=msg.prev_log_index,
                                     conflict_term=conflict_term, conflict_index=conflict_index,
                                     beat=msg.beat))

    # -- observation -----------------------------------------------------------------------

    def role_term(self) -> tuple[str, int]:
        return self.role, self.term

    def status(self) -> Status:
        return Status(
            id=self.id, algorithm=self.algorithm, role=self.role, term=self.term,
            leader=self.leader, commit_index=self.commit_index,
            last_index=self.log.last_index, applied_index=self.applied,
            election_deadline_ms=None if self.role == LEADER else self.election_deadline,
            config=self.membership_text, snapshot_index=self.snapshot_index,
        )

    def log_tail(self, count: int) -> list[LogSlot]:
        entries = self.log.entries  # entries[0] is the sentinel before index 1
        return [LogSlot(e.index, e.term, str(e.term),
                        None if e.command is None else e.command.text,
                        e.index <= self.commit_index)
                for e in entries[max(1, len(entries) - count):]]
