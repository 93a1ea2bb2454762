"""Multi-Paxos with a stable leader, as a pure state machine (Lamport, "Paxos Made Simple" §3).

Theory of operation
-------------------
Every node plays all three of Lamport's roles: acceptor, learner, and (when it leads)
proposer. The replicated log is a sequence of *slots*, each an independent instance of Paxos;
a slot's value is *chosen* once a majority of acceptors accepted it at the same ballot.

Ballots ``(round, rank, node id)`` are totally ordered; each node only proposes with its own
id, and its round counter is persisted, so no ballot is ever used twice.

Leader election is Phase 1 run once for all open slots (the point of Multi-Paxos). A node
whose failure detector (the randomised election timeout, as in Raft) suspects the leader
sends one Prepare (1a) covering every slot from its first unchosen one. An acceptor that
promises (1b) reports what it knows from there: the values it knows are chosen, and its
accepted ``(ballot, value)`` for every later slot. With a majority of promises the new leader
adopts the chosen values, re-proposes in each other slot the value with the highest accepted
ballot (Lamport's P2c, which is what keeps a chosen value chosen), and fills gaps with no-ops,
so no slot is left open below the ones it goes on to propose.

Who may win is the ``election`` variant; Phase 1 above runs either way, so safety never
depends on it:

- ``election: up-to-date`` (Raft's rule, §5.4.1): an acceptor promises only a proposer whose
  log is at least as complete as its own, ranked as Raft ranks by (last term, last index):
  by the highest ballot it accepted anything at, then its highest slot holding a value. The
  ballot plays Raft's last term (it names the latest leader whose proposals reached this log);
  not the commit index, which reaches acceptors a heartbeat late, so two equally complete
  logs would refuse each other by turns. A refusal is a Nack marked ``behind``, which
  preempts nothing: the proposer waits out its timeout, as a Raft candidate with too few votes.
- ``election: any`` (Multi-Paxos's own, the default): an acceptor promises any ballot above
  its promise, whatever its log, and a new leader that lags learns the missing values from
  the promises (Howard & Mortier 2020: the one essential difference from Raft).

Once elected, the stable leader runs only Phase 2: each client command (reads included, which is
what makes them linearizable) takes the next free slot, and Accepts (2a) carry runs of
consecutive slots (``max_batch``), pipelined up to ``max_inflight`` unacknowledged runs per
acceptor, like Raft's AppendEntries. A slot is chosen when a majority accepted it (2b) at the
leader's ballot. Slots are applied strictly in order, so the leader need not count votes per
slot: an Accepted acknowledges cumulatively, like Raft's match index, saying up to which slot
the acceptor holds every open slot at the leader's ballot, and the commit index is the highest
slot a majority acknowledged so (``quorum.committed_index``). A lost Accepted then costs
nothing once the next one arrives, and a lost Accept shows up as a gap below the run the next
Accepted answers, which the leader fills at once (as a Raft follower's refusal makes its
leader resend) instead of waiting for a heartbeat. The leader's commit index rides on every
Accept and heartbeat: an acceptor that accepted slot ``s`` at the leader's ballot learns from
``s <= commit_index`` that its value is the chosen one. An acceptor that cannot (it missed
Accepts, or restarted) says so in its reply, and the leader sends it the chosen values in a
Commit message.

An acceptor refuses a Prepare or Accept below its promised ballot with a Nack carrying that
ballot; a proposer that gets one steps back to follower and waits a fresh randomised timeout
before it may try again, which is what damps dueling proposers. Replies for any ballot other
than the one this node is leading or campaigning with are stale and dropped.

Durability: the promised ballot and every accepted ``(ballot, value)`` are persisted in the same
``Ready`` as the Promise/Accepted that depends on them (the driver persists before it sends), so
an acceptor that crashes and restarts can never go back on what it said.

Leader stability, with the same knobs as Raft. With ``check_quorum``, a leader that has not
heard from a majority for an election timeout steps down, and a node that heard from a live
leader within the minimum election timeout ignores Prepares from anyone else, so a node
rejoining after a partition cannot depose a healthy leader (thesis §6.2, §4.2.3). With
``pre_vote``, a node that suspects the leader first asks whether a majority *would* promise a
new ballot (a Prepare marked ``pre_vote``, answered without promising anything) and runs Phase
1 only if so (thesis §9.6). Without it, a node cut off in a minority runs Phase 1 again and
again, the acceptors with it promise ever higher ballots, and when the partition heals they
refuse the live leader's Accepts with Nacks that depose it. A campaigning node also does not
promise its own ballot until it has a majority of promises from the others (its own promise
completes the quorum), so a campaign in vain leaves at least the campaigner free of it.
These two are this Multi-Paxos's leader-stability choice, and no third knob is added: check-
quorum's refusal of Prepares while a live leader is heard is the acceptor side of Paxos Made
Live's master lease (Chandra et al. 2007, §5.2: replicas do not promise another proposer
while the master's lease lasts), and pre-vote gives what OmniPaxos's ballot leader election
gets from being quorum-connected (Ng et al. 2023): a node that cannot reach a majority never
raises the ballot.

Reads (``read_path``; the shared part is in node.py's module doc). Through the slots (the
default, as above) a GET takes a slot like any command. Off the slots, the leader first waits until
every slot it recovered in Phase 1 is chosen, so that its commit index covers every value
chosen under earlier ballots (the analogue of Raft's no-op; thesis §6.4). ``read_index`` then
confirms with one heartbeat round that no higher ballot was promised: every Accept carries the
round (``beat``) and an Accepted at our ballot echoes it, which an acceptor sends only while it
has promised nothing higher (a higher promise answers with a Nack, which deposes us).
``lease`` is the master lease of "Paxos Made Live" (§5.2): the leader answers at once while it
holds. It is safe because a new leader needs promises from a majority in Phase 1, which shares
an acceptor with the majority that acknowledged the lease's round; that acceptor ignores
Prepares (pre-votes included) from anyone but the leader for a minimum election timeout after
it last heard the leader (check-quorum), and its own election timer keeps it from campaigning,
and so from counting its own promise, sooner; an acceptor that restarted waits as long before
it promises.

Log compaction (``snapshot_entries``). Every node, leader or not, snapshots on its own once it
has applied that many slots beyond its last snapshot: the state after its chosen prefix
(:mod:`consensus.paxos.snapshot`) replaces the prefix, the slot store forgets those slots, and
one compacting record (:class:`SlotSnapshot`: promise, round, snapshot and every slot held
above it) replaces the node's whole WAL. A chosen slot is never reopened, so nothing below the
snapshot is ever needed again except by a node that does not know it yet. Such a node gets the
snapshot in :class:`Learn` chunks (Raft's InstallSnapshot; each answered by a
:class:`Learned`, which asks for the next chunk, so the sender keeps no transfer state) and
goes on from the slot after it:

- an acceptor whose Accepted shows it lacks chosen slots the leader has compacted (it missed
  Accepts, it restarted empty, it is a new member) gets the leader's snapshot where it would
  have got a :class:`Commit`;
- Phase 1: a Prepare covers slots from the proposer's first unchosen one. An acceptor that
  compacted past that slot cannot report those slots; it reports from the slot after its
  snapshot (its Promise's ``first_slot``) and sends the proposer its snapshot. The proposer
  must not lead before it holds that snapshot: the slots in it are chosen, and a proposer
  that took their silence in the promises for "nothing accepted here" would fill them with
  no-ops and choose a second value. So a candidate with a quorum of promises waits, still a
  candidate, until it has installed every snapshot a promise pointed to (the promises stay
  valid: they are for its ballot), and an election timeout later campaigns again as usual.
  A snapshot also carries the configurations (below) in force after it or chosen in its
  last ``alpha`` slots.

Reconfiguration (Lamport, "Paxos Made Simple" §3, last paragraphs). A configuration is a
command chosen in a slot like any other; the one chosen in slot ``i`` governs slots from
``i + alpha`` on (``Config.alpha``; configs.py). Every node that knows the chosen prefix
through ``s - alpha`` knows the configuration of slot ``s``, so all agree on it with no
further agreement. The alternatives: a stop-sign (Lamport, Malkhi & Zhou, "Reconfiguring a
State Machine", 2010: the old configuration's last command is a stop, and the new one runs a
fresh Paxos instance started from the old one's final state), or an outside master (Vertical
Paxos). We take the alpha window: one log and one leader go on across a change, nothing
outside the cluster is needed, and a configuration is an entry of the log as in Raft, so the
shared orchestration (node.py: learners first, promoted once caught up; the removed leader's
hand-over; transfer) drives both algorithms alike; a stop-sign would need a new instance, a
state hand-off and a new leader at every change. What the window costs:

- pipelining: a leader may not propose slot ``s`` before it knows the configuration of ``s``,
  that is before every slot up to ``s - alpha`` is chosen, so at most ``alpha`` slots are ever
  open beyond the chosen prefix (``proposal_limit``; commands wait in ``backlog``). At the
  default 128 that is above what ``max_inflight`` times the batches of a few clients fill, so
  it rarely binds; ``alpha = 1`` would forbid pipelining altogether.
- latency of a change: it takes effect ``alpha`` slots after it is chosen. So the leader pads
  the slots up to ``i + alpha - 1`` with no-ops after proposing it (clients' commands may take
  some of them), and the change is in force about a round trip later, not ``alpha`` commands
  later.

Phase 1 must hear from every configuration that may govern an open slot. A candidate whose
chosen prefix ends at ``c`` knows the configurations of slots up to ``c + alpha``: its Prepare
goes to the voters of each one that governs a slot in ``c + 1 .. c + alpha``, and it leads
only with a quorum of each. A window that straddles a change thus needs quorums of both the
old and the new configuration, for that Phase 1 only: what joint consensus does for Raft,
the window does here, and no joint configuration is ever used. A configuration chosen above
``c`` (the candidate learns it from the promises, or chooses it as leader) governs slots the
Prepare did not cover: before the leader proposes in a slot whose configuration has no quorum
of promisers yet, it sends the same ballot's Prepare to that configuration's acceptors,
proposes there the highest-ballot values they report (P2c), and waits until a quorum promised
(``maybe_extend_phase1``). A slot is chosen by a quorum of the configuration that governs it
(``advance_commit_by_config``). The leader asks again at each heartbeat while work waits
for those promises (a lost Prepare, or acceptors that were down, must not stall it for good).
A proposer that never learnt it was removed can still win Phase 1 (with neither pre-vote nor
check-quorum, acceptors promise any higher ballot); once its horizon's configuration does
not count it as a voter it hands over and steps down like a removed leader
(``maybe_hand_over_removed``). Learners accept, so a promoted learner already holds the
values, but never count. A node started to join has no configuration until the log or a
snapshot brings one: it neither campaigns nor promises. The configuration a node acts on
(``membership``, ``Status.config``) is the one governing the next slot it proposes (leader)
or the first slot it has not learnt (any other node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensus import quorum
from consensus.membership import Membership, is_config_text
from consensus.messages import (
    ClientRequest,
    Command,
    ConfigChange,
    Message,
    NodeId,
    TimeoutNow,
)
from consensus.node import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    UP_TO_DATE,
    ChangeInFlight,
    Config,
    ConsensusNode,
    LogSlot,
    Progress,
    Status,
)
from consensus.paxos.configs import ConfigWindow
from consensus.paxos.messages import (
    ZERO_BALLOT,
    Accept,
    Accepted,
    AcceptedRun,
    Ballot,
    ChosenRun,
    Commit,
    Committed,
    Learn,
    Learned,
    Nack,
    Prepare,
    Promise,
    Promised,
    RoundUsed,
    SlotSnapshot,
)
from consensus.paxos.slots import Slots, SlotState
from consensus.paxos.snapshot import IncomingSnapshot, decode_state, encode_state

# FOLLOWER: an acceptor and learner following a leader (or looking for one); PRE_CANDIDATE:
# asking whether a majority would promise (pre-vote); CANDIDATE: running Phase 1 for its own
# ballot; LEADER: Phase 1 done, proposing in Phase 2 only.
__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "PaxosNode", "PaxosProgress"]
_NEVER = float("inf")
_DEFAULT = Config()
_EMPTY: SlotState = (ZERO_BALLOT, None)  # a slot nobody reported a value for: a no-op
# The rank of a value a promise reports as chosen, above every ballot's (add_promiser).
_CHOSEN = Ballot(1 << 62, 0)


@dataclass(slots=True)
class PaxosProgress(Progress):
    """The leader's view of one acceptor (Raft's nextIndex/matchIndex, plus pipelining).

    ``match``: every open slot up to it is known accepted by the acceptor at our ballot (from
    its cumulative ``accepted_through``; below our commit index it means nothing). Probing
    starts only after a suspected loss."""

    commit_sent: int = 0  # last slot sent in a Commit (catch-up)
    commit_sent_at: float = -_NEVER
    repair_from: int = 0  # first slot of the last gap resent (a lost Accept)
    repair_at: float = -_NEVER
    peer_commit: int = 0  # the acceptor's own commit index, as it last said


class PaxosNode(ConsensusNode):
    """A complete Multi-Paxos node; see the module docstring."""

    algorithm = "paxos"

    def __init__(self, node_id: NodeId, peers: Sequence[NodeId] | Any, config: Any = None,
                 rng: Any = None, *, joining: bool = False) -> None:
        # The configurations by slot (configs.py) and the leader's proposal state must exist
        # before the shared constructor sets the initial membership.
        self.windows = ConfigWindow((config or _DEFAULT).alpha,
                                    None if joining else Membership.of(set(peers) | {node_id}))
        self.backlog: deque[Command] = deque()  # leader: commands waiting for the window
        self.next_slot = 1  # leader: the next free slot
        super().__init__(node_id, peers, config, rng, joining=joining)
        self.initial = tuple(p for p in self.peers if p != node_id or not joining)
        self.rank = self.rank_of(node_id)
        self.bit = {p: 1 << i for i, p in enumerate(self.peers)}
        self.majority = quorum.majority(len(self.peers))
        # Durable state (rebuilt by ``restore``).
        self.promised: Ballot = ZERO_BALLOT  # acceptor: accept nothing below this
        self.round_used = 0  # highest round this node proposed with
        self.log = Slots()  # slot -> accepted (or chosen) (ballot, value)
        # Invariant: every slot in 1..commit_index is chosen and its value is in ``log``;
        # applied == commit_index (chosen slots apply at once).
        self.round_seen = 0  # highest round seen in any ballot; the next ballot goes above it
        # The ballot this node asks pre-votes for, campaigns or leads with.
        self.ballot: Ballot | None = None
        self.pre_votes: set[NodeId] = set()  # pre-candidate: who would promise ``ballot``
        self.promises: dict[NodeId, Promise] = {}  # candidate: Phase 1b answers
        # Leader, after a configuration change (module doc, "Reconfiguration"): who promised
        # our ballot, the values promises reported for slots we have not proposed yet, up to
        # where to pad with no-ops so a configuration takes effect, and when we last asked a
        # new configuration's acceptors for their promises.
        self.promisers: set[NodeId] = set()
        self.recovered: dict[int, SlotState] = {}
        self.fill_through = 0
        self.prepare_sent_at = -_NEVER
        self.config_slot = 0  # leader: slot of the configuration we proposed (-1: queued)
        # Leader: slot -> bitmask of acceptors that acknowledged it in a run above their
        # match (an Accept below it was lost or is late). Slots are independent instances,
        # so any majority holding a slot chooses it, gap or no gap (advance_commit_index).
        self.votes: dict[int, int] = {}
        self.progress: dict[NodeId, PaxosProgress] = {}
        self.hb_commit = 0  # leader: commit index at the previous heartbeat
        self.recovered_through = 0  # leader: the last slot Phase 1 re-proposed or filled
        # Compaction (snapshot_index and snapshots_taken are node.py's). Invariant:
        # snapshot_index <= commit_index, and ``log`` holds no slot at or below it;
        # ``snapshot_state`` is the snapshot's text ("" before the first).
        self.snapshot_state = ""
        self.incoming: IncomingSnapshot | None = None  # a snapshot being received in chunks
        self.become_follower(None)

    # -- restart ---------------------------------------------------------------------------

    def restore(self, records: Sequence[Any]) -> None:
        """Fold the persisted records back into promise, round, accepted slots and commit."""
        commit = 0
        for rec in records:
            log = self.log
            if isinstance(rec, SlotSnapshot):
                # Everything before it is superseded (a simulator keeps the older records).
                self.promised = max(self.promised, rec.promised)
                self.round_used = max(self.round_used, rec.round_used)
                self.log = Slots()
                self.load_snapshot(rec.slot, rec.state)
                self.log.restore(rec.accepted)
                commit = rec.slot
            elif isinstance(rec, AcceptedRun):
                log.accept_run(rec.first_slot, rec.ballot, rec.commands)
            elif isinstance(rec, ChosenRun):
                log.learn_chosen(rec.first_slot, rec.commands)
            elif isinstance(rec, Promised):
                self.promised = max(self.promised, rec.ballot)
            elif isinstance(rec, RoundUsed):
                self.round_used = max(self.round_used, rec.round)
            elif isinstance(rec, Committed):
                commit = max(commit, rec.index)
        self.round_seen = max(self.round_used, self.promised.round)
        self.become_follower(None)
        self.set_commit(commit, persist=False)
        self.follow_config()

    # -- role changes (the only place the role changes) ------------------------------------

    def become_follower(self, leader: NodeId | None) -> None:
        """Step back to acceptor/learner, abandoning any campaign or leadership (the
        MultiPaxos-SMR spec has no action for it: a preempted proposer simply stops).

        A fresh randomised timeout is drawn each time: after a Nack it is the backoff that
        keeps two proposers from preempting each other forever.
        """
        self.ballot = None
        self.pre_votes = set()
        self.promises = {}
        self.votes = {}
        self.promisers = set()
        self.recovered = {}
        self.backlog.clear()
        self.fill_through = 0
        self.config_slot = 0
        self.step_down(leader)
        self.follow_config()

    def become_pre_candidate(self) -> None:
        """No TLA+ action (an extension). Pre-vote (Raft thesis §9.6, applied to Phase 1): ask
        whether a majority would promise the ballot we would campaign with. Nothing is
        persisted and nobody promises anything, so a node that cannot reach a majority leaves
        every acceptor's promise as it was."""
        self.role = PRE_CANDIDATE
        self.leader = None
        self.ballot = Ballot(self.next_round(), self.rank, self.id)
        self.pre_votes = {self.id}
        self.reset_randomized_election_timeout()
        self.bcast_prepare(pre_vote=True)
        self.maybe_win_pre_vote()

    def become_candidate(self) -> None:
        """MultiPaxos ``BecomeLeader`` (its first half), Phase 1a (§3: one Phase 1 for every
        instance): Prepare every slot from the first unchosen one. The role is CANDIDATE
        until a majority promised.

        The new round is persisted before the Prepare leaves, so this ballot is never reused.
        Our own promise waits until the others' complete a quorum (see the module docstring).
        """
        if self.role == LEADER:
            return
        self.round_used = self.next_round()
        self.persist(RoundUsed(self.round_used))
        self.role = CANDIDATE
        self.leader = None
        self.ballot = Ballot(self.round_used, self.rank, self.id)
        self.pre_votes = set()
        self.promises = {}
        self.reset_randomized_election_timeout()
        if self.transfer_campaign:
            # The leader asked (TimeoutNow) and has stepped down: promise at once, so its
            # Accepts still on the way are refused instead of making us follow it again.
            self.maybe_promise(self.ballot)
        self.bcast_prepare()
        self.maybe_win_election()

    def become_leader(self) -> None:
        """MultiPaxos ``HandlePrepareReplies`` with a quorum (Phase 1 done): adopt, re-propose,
        fill gaps, then lead in Phase 2 only.

        For each slot from our first unchosen one: a value any promiser knows is chosen is
        adopted as chosen; otherwise the value accepted at the highest ballot is re-proposed
        (Lamport's P2c); a slot nobody accepted anything in, below the highest one someone did,
        becomes a no-op. Then Phase 2 starts for all of them at our ballot.
        """
        ballot = self.ballot
        assert ballot is not None
        self.maybe_promise(ballot)
        first = self.commit_index + 1
        promises = [self.promises[p] for p in sorted(self.promises)]
        # Chosen values: the promiser with the highest commit index knows a contiguous run.
        best = max(promises, key=lambda p: p.commit_index, default=None)
        if best is not None and best.commit_index >= first:
            self.learn_chosen(first, best.chosen[first - best.first_slot:])
        start = self.commit_index + 1
        # Highest-ballot accepted value per open slot, ours included.
        found: dict[int, SlotState] = {}
        for slot in range(start, self.last_index + 1):
            state = self.log.get(slot)
            if state is not None:
                found[slot] = state
        for promise in promises:
            for av in promise.accepted:
                if av.slot >= start:
                    have = found.get(av.slot)
                    if have is None or av.ballot > have[0]:
                        found[av.slot] = (av.ballot, av.command)
        end = max(found, default=start - 1)
        self.start_leading()
        self.promisers = set(self.promises) | {self.id}
        self.promises = {}
        self.votes = {}
        self.next_slot = start
        self.hb_commit = self.commit_index
        self.follow_config()
        for p in self.others:
            self.bit.setdefault(p, 1 << len(self.bit))
        self.progress = {p: PaxosProgress(next=start, probe=False) for p in self.others}
        self.recovered_through = end
        # Proposed now as far as the window allows (all of it unless a configuration changes
        # within it), the rest as the window moves (maybe_propose_more).
        self.recovered = {s: found.get(s, _EMPTY) for s in range(start, end + 1)}
        if not self.maybe_propose_more():
            self.bcast_heartbeat()

    def rank_of(self, nid: NodeId) -> int:
        """A node's ballot rank: its position in the initial cluster; nodes added later all
        rank above those, and their ids order them (``Ballot``: the id breaks rank ties)."""
        if nid in self.initial:
            return self.initial.index(nid)
        return len(self.initial)

    def next_round(self) -> int:
        """The round of our next ballot: above every round we used, promised or saw (so a
        newer leader always has a higher round, which ``Status.term`` reports)."""
        return max(self.round_used, self.promised.round, self.round_seen) + 1

    def phase1_configs(self) -> list[Membership]:
        """The configurations Phase 1 needs a quorum of: every one that governs a slot from
        our first unchosen one through ``alpha`` slots on (module doc, "Reconfiguration")."""
        first = self.commit_index + 1
        return self.windows.governing(first, first + self.config.alpha - 1)

    def phase1_quorum(self, nodes: set[NodeId]) -> bool:
        """Whether ``nodes`` (promisers, or pre-voters) hold a quorum of every configuration
        Phase 1 needs."""
        if not self.windows.changed:
            return quorum.has_quorum(len(nodes), len(self.peers))
        configs = self.phase1_configs()
        return bool(configs) and all(m.has_quorum(nodes) for m in configs)

    # -- time ------------------------------------------------------------------------------
    # ConsensusNode.tick (node.py) runs the timers alike for both algorithms: the election
    # timeout calls campaign(), a leader runs check-quorum and then bcast_heartbeat (outbound).

    # -- inbound ---------------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """The ballot check once for every role (the guards of MultiPaxos's Handle* actions;
        Paxos Made Simple §2.2), then one handler per message."""
        if isinstance(msg, ClientRequest):
            self.handle_client_request(msg)
            return
        if isinstance(msg, Learn):
            self.handle_learn(msg)  # chosen values only: no ballot can make them stale
            return
        if isinstance(msg, Learned):
            self.handle_learned(msg)
            return
        if isinstance(msg, ConfigChange):
            self.handle_config_change(msg)
            return
        if isinstance(msg, TimeoutNow):
            if msg.term >= self.promised.round:  # else from a leader deposed since
                self.handle_timeout_now(msg)
            return
        ballot: Ballot = msg.ballot  # type: ignore[attr-defined]
        if isinstance(msg, Promise | Accepted | Nack):
            # MultiPaxos: a reply counts only for the ballot we are campaigning/leading with.
            if ballot != self.ballot:
                return  # DropStaleResponse
        else:
            # A proposer's request: Prepare, Accept or Commit.
            if isinstance(msg, Prepare) and (
                    self.membership is None  # joining: never votes
                    or (not msg.transfer and self.in_leader_lease(msg.src))):
                return  # a live leader exists; don't let a stray proposer disrupt it
            if ballot < self.promised:
                self.handle_stale_message(msg)
                return
            if isinstance(msg, Prepare):
                if not msg.pre_vote:  # a pre-vote never changes anything here
                    self.update_ballot(ballot, None)
            else:
                self.update_ballot(ballot, msg.src)  # an Accept or Commit: its sender leads
        if isinstance(msg, Accept):
            self.handle_accept(msg)
        elif isinstance(msg, Accepted):
            self.handle_accepted(msg)
        elif isinstance(msg, Prepare):
            self.handle_prepare(msg)
        elif isinstance(msg, Promise):
            self.handle_promise(msg)
        elif isinstance(msg, Commit):
            self.handle_commit(msg)
        elif isinstance(msg, Nack):
            self.handle_nack(msg)

    def update_ballot(self, ballot: Ballot, leader: NodeId | None) -> None:
        """MultiPaxos ``UpdateBallot``: a higher ballot than ours ends our campaign/leadership.

        ``leader`` is the ballot's proposer when we know it leads (it sent an Accept or a
        Commit), so clients we abandon are sent straight to it.
        """
        if ballot.round > self.round_seen:
            self.round_seen = ballot.round
        if self.ballot is not None and ballot > self.ballot:
            self.become_follower(leader)

    def handle_stale_message(self, msg: Message) -> None:
        """A Prepare, Accept or Commit below our promise: refuse it with a Nack carrying the
        promise, so a deposed leader or a stale proposer learns the newer ballot and steps
        back (as a Raft refusal carries the newer term)."""
        ballot: Ballot = msg.ballot  # type: ignore[attr-defined]
        self.send(Nack(src=self.id, dst=msg.src, ballot=ballot, promised=self.promised))

    def take_new_request(self, req: ClientRequest) -> None:
        """MultiPaxos ``TakeNewRequest``: the leader proposes it in the next free slot, or,
        when the window is full (``alpha``, module doc), once it has room."""
        command = req.as_command()
        if not self.backlog and not self.recovered and self.next_slot <= self.proposal_limit():
            self.pending[(req.src, req.seq)] = self.next_slot
            self.propose((command,))
            return
        self.pending[(req.src, req.seq)] = 0  # its slot is not known yet
        self.backlog.append(command)

    def handle_prepare(self, msg: Prepare) -> None:
        """MultiPaxos ``HandlePrepare``, Phase 1b (§2.2): promise, and report what we know.

        The promise is persisted in this same ``Ready``, so it is durable before it leaves.
        A pre-vote is answered without promising (``step`` already refused a ballot below our
        promise and ignored one that a live leader's lease rules out).
        """
        if self.election() == UP_TO_DATE and (msg.log_ballot, msg.last_slot) < self.log_rank():
            # Election "up-to-date": a proposer behind us may not lead (a pre-vote neither).
            self.send(Nack(src=self.id, dst=msg.src, ballot=msg.ballot, promised=self.promised,
                           behind=True))
            return
        if msg.pre_vote:
            self.send(Promise(src=self.id, dst=msg.src, ballot=msg.ballot,
                              first_slot=msg.first_slot, chosen=(), accepted=(),
                              commit_index=self.commit_index, pre_vote=True))
            return
        if self.maybe_promise(msg.ballot):
            self.leader = None
        if self.role == FOLLOWER:
            self.reset_election_timer()  # give the proposer time to finish Phase 1
        first = msg.first_slot
        if first <= self.snapshot_index:
            # Compacted: report from the slot after the snapshot, and send the proposer the
            # snapshot, which it needs before it may lead (module doc).
            first = self.snapshot_index + 1
            self.send_learn(msg.src, msg.ballot, 0)
        chosen = self.log.commands(first, self.commit_index)
        accepted = self.log.accepted(max(first, self.commit_index + 1))
        self.send(Promise(src=self.id, dst=msg.src, ballot=msg.ballot, first_slot=first,
                          chosen=chosen, accepted=accepted, commit_index=self.commit_index))

    def log_rank(self) -> tuple[Ballot, int]:
        """How complete our log is, for election "up-to-date" (see the module docstring)."""
        return self.log.top_ballot, self.log.last_index

    def handle_promise(self, msg: Promise) -> None:
        """MultiPaxos ``HandlePrepareReplies``: tally, and lead once a majority promised.

        A pre-vote answer counts only towards the pre-vote: it binds nobody, so it must never
        count as a promise (a campaign may reuse the pre-vote's ballot).
        """
        if msg.pre_vote:
            if self.role == PRE_CANDIDATE:
                self.pre_votes.add(msg.src)
                self.maybe_win_pre_vote()
            return
        if self.role == LEADER and self.windows.changed:
            self.add_promiser(msg)  # Phase 1 for a new configuration (module doc)
            return
        if self.role != CANDIDATE:
            return
        self.promises[msg.src] = msg
        self.maybe_win_election()

    def maybe_win_pre_vote(self) -> bool:
        """With a majority willing to promise (us included), start Phase 1 for real."""
        if self.role != PRE_CANDIDATE or not self.phase1_quorum(self.pre_votes):
            return False
        self.become_candidate()
        return True

    def maybe_win_election(self) -> bool:
        """With promises from a majority (counting our own, given now), take the lead."""
        if self.role != CANDIDATE or self.ballot is None:
            return False
        if not self.phase1_quorum(set(self.promises) | {self.id}):
            return False
        if any(p.first_slot > self.commit_index + 1 for p in self.promises.values()):
            return False  # a promiser compacted slots we lack: wait for its snapshot
        if self.promised > self.ballot:
            # We promised a higher ballot meanwhile, so cannot promise our own.
            self.become_follower(None)
            return False
        self.become_leader()
        return True

    def handle_accept(self, msg: Accept) -> None:
        """MultiPaxos ``HandleAccept``, Phase 2b (§2.2): accept the run (or heartbeat), learn.

        Accepting at ``ballot`` implies promising it; both are persisted before the Accepted.
        """
        ballot = msg.ballot
        self.maybe_promise(ballot)
        self.heard_from_leader(msg.src)
        commands = msg.commands
        if commands and self.log.accept_run(msg.first_slot, ballot, commands):
            self.persist(AcceptedRun(msg.first_slot, ballot, commands))
        self.maybe_commit(ballot, msg.commit_index)
        self.send_accepted(msg.src, ballot, msg.first_slot, len(commands), msg.commit_index,
                           msg.beat)

    def handle_accepted(self, msg: Accepted) -> None:
        """MultiPaxos ``HandleAcceptReplies`` (Phase 2b answers): count the acceptor's votes.

        An Accepted acknowledges cumulatively: every open slot up to ``accepted_through`` is
        accepted at our ballot (its match), so a lost Accepted is made up for by the next one.
        A run answered above the match counts slot by slot, in ``votes``; it also means an
        Accept below it was lost, and the gap is resent now rather than at the next heartbeat.
        """
        if self.role != LEADER:
            return
        peer = msg.src
        pr = self.progress.get(peer)
        if pr is None:
            return  # no longer a member (a configuration dropped it)
        probing = pr.heard()
        self.heard_beat(pr, msg.beat)  # any answer at our ballot: it still takes us for leader
        # Only we propose at our ballot, so no honest claim goes past our last slot.
        through = min(msg.accepted_through, self.next_slot - 1)
        counted = through > pr.match
        if not self.heard_peer_commit(peer, pr, msg.commit_index, moved=counted):
            return
        if counted:
            pr.match = through
        done = max(pr.match, self.commit_index)  # chosen slots need no more acknowledgement
        while pr.inflight and pr.inflight[0][0] <= done:
            pr.inflight.popleft()
        if msg.count:
            pr.become_replicate()
            bit, votes = self.bit[peer], self.votes
            for slot in range(max(msg.first_slot, done + 1),
                              min(msg.first_slot + msg.count, self.next_slot)):
                votes[slot] = votes.get(slot, 0) | bit
                counted = True
        if counted:
            self.advance_commit_index()
            if self.progress.get(peer) is not pr:
                return  # a configuration in force now dropped it, or we handed over
        if probing and pr.probe and not msg.count and pr.inflight:
            # Alive (a heartbeat's answer), but the probe went unanswered: send it again.
            pr.become_probe(self.first_unacked(peer))
        if msg.count and msg.first_slot > max(pr.match, self.commit_index) + 1:
            self.maybe_send_repair(peer, msg.first_slot - 1)
        if msg.commit_index < msg.leader_commit:
            self.maybe_send_commit(peer, msg.commit_index)
        self.maybe_send_accept(peer)

    def handle_commit(self, msg: Commit) -> None:
        """MultiPaxos ``HandleCommitNotice`` (learning, §2.3): chosen values we missed."""
        self.heard_from_leader(msg.src)
        commands = msg.commands
        start = self.commit_index + 1
        first = msg.first_slot
        if commands and first <= start < first + len(commands):
            values = commands[start - first:]
            self.learn_chosen(start, values)
        self.maybe_commit(msg.ballot, msg.commit_index)
        self.send_accepted(msg.src, msg.ballot, first, 0, msg.commit_index)

    def handle_nack(self, msg: Nack) -> None:
        """Preempted (no TLA+ action; §3's "progress"): someone promised a higher ballot.
        Step back and wait a random timeout.

        We promise that ballot too (a promise only ever refuses more), so a deposed leader
        refuses its own stale ballot's messages and reports the newer round, as Raft does.
        A Nack for a log ``behind`` (election "up-to-date") is a refused vote: it preempts
        nothing, and Phase 1 waits for other promises or its timeout.
        """
        if msg.behind:
            return
        self.update_ballot(msg.promised, None)
        self.maybe_promise(msg.promised)

    def maybe_promise(self, ballot: Ballot) -> bool:
        """Promise ``ballot`` if it is above our promise; True if so. Persisted in this same
        ``Ready``, so durable before any message that depends on it leaves."""
        if ballot <= self.promised:
            return False
        self.promised = ballot
        self.persist(Promised(ballot))
        return True

    def add_promiser(self, msg: Promise) -> None:
        """Leader: a promise for our ballot from an acceptor of a configuration that governs
        slots we have yet to propose (module doc): note it, and keep for each of those slots
        the value it knows is chosen there, else the highest-ballot value it accepted, which
        we must propose there (P2c)."""
        first, rec = self.next_slot, self.recovered
        if msg.first_slot > first:
            # It compacted slots we have not proposed in: chosen values we cannot see. Step
            # back, take its snapshot (on its way), and campaign again from there.
            self.become_follower(None)
            return
        self.promisers.add(msg.src)
        for i, command in enumerate(msg.chosen):
            if msg.first_slot + i >= first:
                rec[msg.first_slot + i] = (_CHOSEN, command)  # chosen: nothing outranks it
        for av in msg.accepted:
            if av.slot >= first:
                have = rec.get(av.slot)
                if have is None or av.ballot > have[0]:
                    rec[av.slot] = (av.ballot, av.command)
        if rec:
            top = max(rec)
            for slot in range(first, top):
                rec.setdefault(slot, _EMPTY)
        self.maybe_propose_more()

    def handle_learn(self, msg: Learn) -> None:
        """A chunk of a snapshot (no TLA+ action; Raft's ``HandleInstallSnapshot``): gather the
        chunks in order, install the whole, and ask for what comes next.

        A leader ignores it (its chosen prefix is the longest; a stale leader learns of the
        newer ballot from the next Accept and takes the snapshot when it is resent)."""
        if self.role == LEADER:
            return
        if msg.snapshot_slot <= self.commit_index:
            self.send_learned(msg, msg.total)  # nothing to learn from it: the transfer is over
            return
        buf = self.incoming
        same = buf is not None and buf.src == msg.src and buf.slot == msg.snapshot_slot
        if not same and msg.offset == 0:
            buf = self.incoming = IncomingSnapshot(msg.src, msg.snapshot_slot, msg.total, [])
            same = True
        if not same or buf is None:
            self.send_learned(msg, 0)  # a chunk of a transfer we never saw begin
            return
        if msg.offset == buf.received and msg.data:
            buf.parts.append(msg.data)
            buf.received += len(msg.data)
        if buf.received < buf.total:
            self.send_learned(msg, buf.received)
            return
        self.incoming = None
        try:
            self.install_snapshot(buf.slot, "".join(buf.parts))
        except ValueError:
            self.send_learned(msg, 0)  # damaged on the way (the codec checked its shape): again
            return
        self.send_learned(msg, buf.total)
        if self.role == CANDIDATE:
            self.maybe_win_election()  # it may be the snapshot a promise pointed us to

    def handle_learned(self, msg: Learned) -> None:
        """The answer to a :class:`Learn` chunk: send the chunk it asks for, or, once the
        learner holds the snapshot, go on with Commit and Accept from the slot after it."""
        peer = msg.src
        pr = self.progress.get(peer) if self.role == LEADER else None
        if msg.commit_index >= msg.snapshot_slot:
            if pr is not None:
                pr.heard()
                pr.commit_sent = max(pr.peer_commit, msg.commit_index)
                # The snapshot may be all a learner lacked: the Accepteds after it repeat
                # this commit index, so this is the answer that must say it caught up.
                if self.heard_peer_commit(peer, pr, msg.commit_index):
                    self.maybe_send_commit(peer, msg.commit_index)
            return
        if self.snapshot_index <= msg.commit_index:
            return
        offset = msg.offset if msg.snapshot_slot == self.snapshot_index else 0
        self.send_learn(peer, msg.ballot, offset)
        if pr is not None:
            pr.commit_sent, pr.commit_sent_at = self.snapshot_index, self.now

    def heard_peer_commit(self, peer: NodeId, pr: PaxosProgress, commit_index: int, *,
                          moved: bool = False) -> bool:
        """Leader: ``peer`` reports its commit index (``moved``: and its match rose). If
        either grew, a learner may be caught up or a transfer's target ready (node.py's
        ``heard_progress``). False if that dropped ``peer`` or made us hand over: the caller
        must stop."""
        if commit_index <= pr.peer_commit and not moved:
            return True
        pr.peer_commit = max(pr.peer_commit, commit_index)
        if self.change is None and self.transfer_to is None:
            return True
        self.heard_progress(peer)
        return self.role == LEADER and self.progress.get(peer) is pr

    # -- commitment ------------------------------------------------------------------------

    def advance_commit_index(self) -> bool:
        """MultiPaxos ``HandleAcceptReplies``' choice, by match index, as raft.tla's
        ``AdvanceCommitIndex``: a slot is chosen once a majority accepted it at one ballot
        (Paxos Made Simple §2.2), and slots apply strictly in order, so the commit index is the
        highest slot that a majority holds at our ballot together with every open slot below
        it. Unlike Raft no term check is needed: accepted at our ballot means our value.

        Unlike Raft too, a slot above that is chosen by any majority that holds it, even one
        whose members lack a slot below (their runs counted in ``votes``). On a lossy,
        long-tailed network that decides slots sooner: dropping it raised the flaky-network
        experiment's median latency by 9%."""
        if self.windows.changed:
            return self.advance_commit_by_config()
        own = self.own_copy()
        matches = [own] + [p.match for p in self.progress.values()]
        c = max(self.commit_index, quorum.committed_index(matches, len(self.peers)))
        votes = self.votes
        if votes:
            while (v := votes.get(c + 1)) is not None:
                if self.holders(c + 1, v, own) < self.majority:
                    break
                c += 1
            for slot in [s for s in votes if s <= c]:
                del votes[slot]
        raised = self.set_commit(c)
        if raised and (self.backlog or self.recovered or self.fill_through):
            self.maybe_propose_more()
        return raised

    def advance_commit_by_config(self) -> bool:
        """``advance_commit_index`` once configurations change: each slot is chosen by a
        quorum of the configuration governing it (module doc), so the count goes one
        configuration's span at a time, then slot by slot through runs above a match."""
        own = self.own_copy()
        match = {p: pr.match for p, pr in self.progress.items()}
        match[self.id] = own
        raised = False
        while True:
            c = self.commit_index
            config, last = self.windows.span(c + 1)
            if config is None:
                break
            reach = min(config.committed_index(match), last, self.next_slot - 1)
            if reach <= c:
                v = self.votes.get(c + 1)
                if v is None or not config.has_quorum(self.holder_ids(c + 1, v, own)):
                    break
                reach = c + 1
            raised = self.set_commit(int(reach)) or raised
        for slot in [s for s in self.votes if s <= self.commit_index]:
            del self.votes[slot]
        if raised:
            self.maybe_propose_more()
        return raised

    def holder_ids(self, slot: int, votes: int, own: int) -> set[NodeId]:
        """Who holds ``slot`` at our ballot (``holders``, by name)."""
        bit = self.bit
        out = {p for p, pr in self.progress.items() if pr.match >= slot or votes & bit[p]}
        if slot <= own:
            out.add(self.id)
        return out

    def holders(self, slot: int, votes: int, own: int) -> int:
        """How many nodes hold ``slot`` at our ballot: us, acceptors whose match covers it,
        and those that acknowledged it in a run above their match (``votes``)."""
        bit = self.bit
        return (slot <= own) + sum(1 for p, pr in self.progress.items()
                                   if pr.match >= slot or votes & bit[p])

    def committed_own_term(self) -> bool:
        """Every slot Phase 1 recovered (re-proposed or filled) is chosen (thesis §6.4)."""
        return self.commit_index >= self.recovered_through

    def maybe_commit(self, ballot: Ballot, leader_commit: int) -> bool:
        """Learn from a leader's commit index: slots we accepted at its ballot are chosen.

        The leader of ``ballot`` proposes one value per slot, and knows everything up to its
        commit index is chosen; so our value for such a slot, accepted at that ballot, is it.
        """
        c = self.commit_index
        log = self.log
        while c < leader_commit:
            state = log.get(c + 1)
            if state is None or state[0] != ballot:
                break
            c += 1
        return self.set_commit(c)

    def learn_chosen(self, first: int, commands: Sequence[Command | None]) -> None:
        """Record chosen values for ``first``.. (contiguous from our commit index) and apply."""
        if not commands:
            return
        self.log.learn_chosen(first, commands)
        self.persist(ChosenRun(first, tuple(commands)))
        self.set_commit(first + len(commands) - 1)

    def command_at(self, index: int) -> Command | None:
        return self.log[index][1]

    def commit_record(self, index: int) -> Committed:
        return Committed(index)

    def propose(self, commands: tuple[Command | None, ...]) -> None:
        """Phase 2a (§2.2) for ``commands`` in the next free slots: accept them ourselves,
        then send.

        Our own acceptance is persisted in the same ``Ready`` as the Accepts.
        """
        ballot = self.ballot
        assert ballot is not None
        first = self.next_slot
        self.log.accept_run(first, ballot, commands)
        self.persist(AcceptedRun(first, ballot, commands))
        self.next_slot = first + len(commands)
        if self.windows.changed:
            self.follow_config()  # the leader acts on the configuration of its next slot
        self.wrote_own_copy()
        self.bcast_accept()

    def last_proposed(self) -> int:
        return self.next_slot - 1

    def apply_entry(self, index: int, command: Command | None) -> None:
        """Apply a chosen slot (node.py); a configuration chosen here governs from slot
        ``index + alpha`` (module doc)."""
        super().apply_entry(index, command)
        if command is not None and is_config_text(command.text):
            self.windows.add(index, Membership.from_text(command.text))

    # Reconfiguration (module doc): the window, proposing within it, and the configuration
    # this node acts on.

    def proposal_limit(self) -> int:
        """Leader: the highest slot we may propose now. Its configuration must be known, so
        at most ``alpha`` slots past the chosen prefix, and a quorum of it must have promised
        our ballot (else we ask its acceptors, and wait)."""
        limit = self.commit_index + self.config.alpha
        if not self.windows.changed:
            return limit
        slot = self.next_slot
        while slot <= limit:
            config, last = self.windows.span(slot)
            if config is None or not config.has_quorum(self.promisers):
                if config is not None:
                    self.maybe_extend_phase1(config)
                return slot - 1
            slot = int(min(last, limit)) + 1
        return limit

    def maybe_propose_more(self) -> bool:
        """Leader: propose what waits, as far as ``proposal_limit`` allows: first the values
        promises reported (gaps as no-ops), then queued commands, then no-ops up to
        ``fill_through`` so a new configuration takes effect without waiting for clients.
        True if anything was proposed."""
        if self.role != LEADER:
            return False
        first = self.next_slot
        limit = self.proposal_limit()
        rec = self.recovered
        if rec:
            top = min(max(rec), limit)
            if top >= first:
                self.propose(tuple(rec.pop(s, _EMPTY)[1] for s in range(first, top + 1)))
            if rec:
                return self.next_slot > first  # the rest waits for the window
        if self.backlog and self.next_slot <= limit:
            start = self.next_slot
            batch = tuple(self.backlog.popleft()
                          for _ in range(min(len(self.backlog), limit - start + 1)))
            for i, command in enumerate(batch):
                key = (command.client_id, command.seq)
                if self.pending.get(key) == 0:
                    self.pending[key] = start + i
                if is_config_text(command.text):
                    self.config_slot = start + i
                    self.fill_through = start + i + self.config.alpha - 1
            self.propose(batch)
        fill = min(self.fill_through, limit)
        if not self.backlog and self.next_slot <= fill:
            self.propose((None,) * (fill - self.next_slot + 1))
        return self.next_slot > first

    def maybe_extend_phase1(self, config: Membership) -> None:
        """Leader: ask the acceptors of ``config`` that have not promised our ballot for
        their promise (Phase 1 for the slots it governs), at most once a heartbeat."""
        if self.now - self.prepare_sent_at < self.config.heartbeat_ms or self.ballot is None:
            return
        self.prepare_sent_at = self.now
        log_ballot, last_slot = self.log_rank()
        for peer in sorted(config.voting - self.promisers - {self.id}):
            self.send(Prepare(src=self.id, dst=peer, ballot=self.ballot,
                              first_slot=self.next_slot, log_ballot=log_ballot,
                              last_slot=last_slot))

    def follow_config(self) -> bool:
        """Act on the configuration governing our horizon: the next slot we propose when we
        lead, else the first slot we have not learnt. A change is "committed" (node.py) once
        every slot the previous configuration governs is chosen. True if it changed."""
        if not self.windows.changed:
            return False
        slot = self.next_slot if self.role == LEADER else self.commit_index + 1
        config = self.windows.at(slot)
        if config is None or config == self.membership:
            return False
        index, previous = self.windows.governs_from(slot) - 1, self.membership
        if self.role == LEADER and previous is not None and index <= self.commit_index:
            # Already chosen through the old configuration's last slot: the members it drops
            # get that commit index now, their last word from us (node.py's departing).
            for peer in sorted(previous.members - config.members):
                if peer in self.progress:
                    self.send_heartbeat(peer)
        self.set_membership(config, index, previous, None)
        return True

    def propose_config(self, membership: Membership, key: tuple[str, int]) -> None:
        """Leader: the configuration goes in the next free slot like a command; it governs
        from ``alpha`` slots later, and the slots between are padded with no-ops."""
        self.backlog.append(Command(key[0], key[1], membership.command_text()))
        self.config_slot = -1
        self.maybe_propose_more()

    def may_propose_config(self) -> bool:
        """node.py's rule, and no configuration on its way: queued, proposed, or chosen but
        not in force yet (one change at a time means one configuration in the window)."""
        if not super().may_propose_config():
            return False
        horizon = self.next_slot if self.role == LEADER else self.commit_index + 1
        in_force_from = self.windows.governs_from(horizon)
        latest = self.windows.slots[-1] + self.config.alpha if self.windows.slots else 0
        proposed = self.config_slot
        return (proposed != -1 and (not proposed or in_force_from >= proposed + self.config.alpha)
                and latest <= horizon and self.windows.at(horizon) == self.membership)

    def next_voters(self, current: Membership, goal: frozenset[NodeId]) -> Membership:
        """Multi-Paxos goes to the new voters in one step: no joint configuration, since no
        slot is ever governed by two (the alpha window is its answer; module doc)."""
        return Membership(goal, learners=current.learners - goal)

    def learners_caught_up(self, ch: ChangeInFlight, m: Membership) -> bool:
        """As node.py's, but "caught up" is the learner's own commit index: an Accepted's
        cumulative acknowledgement starts at the leader's commit index, whatever the
        acceptor has learnt below it."""
        learners = ch.adding & m.learners
        if not learners:
            return True
        if not ch.catch_up_index:
            super().learners_caught_up(ch, m)  # sets the index and the deadline
        return all(p in self.progress and self.progress[p].peer_commit >= ch.catch_up_index
                   for p in learners)

    def set_commit(self, index: int, *, persist: bool = True) -> bool:
        """Raise the commit index and apply (node.py), then snapshot if it is time."""
        if not super().set_commit(index, persist=persist):
            return False
        if self.follow_config() and self.change is not None:
            self.maybe_advance_change()  # the configuration it waited for is in force
        if persist:
            self.maybe_take_snapshot()
        return True

    # Compaction (module doc): a snapshot replaces the chosen prefix.

    def maybe_take_snapshot(self) -> bool:
        """Snapshot once ``snapshot_entries`` slots were applied since the last one."""
        every = self.config.snapshot_entries
        if not every or self.applied - self.snapshot_index < every:
            return False
        self.take_snapshot()
        return True

    def take_snapshot(self) -> None:
        """Replace the chosen prefix by the state it produced (module doc): the slot store
        forgets it and one compacting record replaces the WAL."""
        slot = self.applied
        self.snapshot_state = encode_state(self.kv, self.windows.needed_from(slot))
        self.snapshot_index = slot
        self.log.compact(slot)
        self.snapshots_taken += 1
        self.persist(self.snapshot_record())

    def install_snapshot(self, slot: int, text: str) -> None:
        """A snapshot another node sent (all of it, ``slot`` above our commit index): take
        its state, forget the slots it covers, and persist it as our own compacting record.
        ValueError, changing nothing, if the text is not a snapshot."""
        self.load_snapshot(slot, text)
        self.persist(self.snapshot_record())
        self.follow_config()

    def load_snapshot(self, slot: int, text: str) -> None:
        """Take the state of a snapshot through ``slot`` (received, or from our WAL)."""
        state = decode_state(text)  # first, so a bad snapshot changes nothing
        self.kv = state.kv
        if state.configs:
            self.windows.replace(state.configs)
        self.commit_index = self.applied = slot
        self.snapshot_index = slot
        self.snapshot_state = text
        self.log.compact(slot)

    def snapshot_record(self) -> SlotSnapshot:
        """The record that replaces every earlier one: promise, round, snapshot, and every
        slot held above the snapshot."""
        return SlotSnapshot(self.snapshot_index, self.snapshot_state, self.promised,
                            self.round_used, self.log.accepted(self.snapshot_index + 1))

    def held_entries(self) -> int:
        """Slots held in memory now (what compaction bounds)."""
        return len(self.log.entries)

    # -- outbound --------------------------------------------------------------------------

    def bcast_prepare(self, *, pre_vote: bool = False) -> None:
        assert self.ballot is not None
        log_ballot, last_slot = self.log_rank()
        peers = self.others
        if self.windows.changed:
            voting = set().union(*(m.voting for m in self.phase1_configs()))
            peers = tuple(sorted(voting - {self.id}))
        transfer = self.transfer_campaign
        for peer in peers:
            self.send(Prepare(src=self.id, dst=peer, ballot=self.ballot,
                              first_slot=self.commit_index + 1, pre_vote=pre_vote,
                              log_ballot=log_ballot, last_slot=last_slot, transfer=transfer))

    def bcast_accept(self) -> None:
        for peer in self.others:
            self.maybe_send_accept(peer)

    def bcast_heartbeat(self) -> None:
        """Every heartbeat: an Accept to each acceptor (empty if nothing is new), resending
        what seems lost (once: then heartbeats only until the acceptor answers, see
        ``Progress``)."""
        self.heartbeat_deadline = self.now + self.config.heartbeat_ms
        self.maybe_hand_over_removed()
        if self.windows.changed and (self.backlog or self.recovered
                                     or self.fill_through >= self.next_slot):
            # Work waits for a configuration's promises: ask again (a lost Prepare, or an
            # acceptor that was down, would otherwise never be asked twice; proposal_limit).
            self.maybe_propose_more()
        if self.role != LEADER:
            return  # handed over (a configuration now in force may also have dropped us)
        self.next_beat()
        commit = self.commit_index
        blocked = commit == self.hb_commit and commit < self.next_slot - 1
        self.hb_commit = commit
        hb = self.config.heartbeat_ms
        for peer in self.others:
            pr = self.progress[peer]
            stalled = pr.inflight and self.now - pr.inflight[0][1] >= hb
            if pr.may_resend() and (stalled or (
                    blocked and pr.match <= commit
                    and not self.votes.get(commit + 1, 0) & self.bit[peer])):
                # No acknowledgement for a whole heartbeat, or the commit index has not
                # moved and this acceptor has not acknowledged the slot above it: probe
                # from its first unacknowledged slot.
                pr.become_probe(self.first_unacked(peer))
            if not self.maybe_send_accept(peer):
                self.send_accept(peer, pr.next, pr.next - 1)

    def maybe_hand_over_removed(self) -> bool:
        """Leader: if the configuration of the slots we would propose in does not count us
        as a voter, hand over as a removed leader does (node.py's ``hand_over``) and step
        down. A proposer that never learnt it was removed can still win Phase 1 (without
        pre-vote and check-quorum the acceptors promise any higher ballot) and learn from the
        promises that it is out; a change in flight hands over when it finishes. True if a
        hand-over started."""
        m = self.membership
        if (m is None or m.is_voter(self.id) or self.change is not None
                or self.transfer_to is not None):
            return False
        self.hand_over()
        return True

    def maybe_send_accept(self, peer: NodeId) -> bool:
        """Send Accept runs to ``peer`` while its pipeline has room; True if anything went."""
        pr = self.progress[peer]
        if pr.next <= self.commit_index:
            pr.next = self.commit_index + 1  # chosen slots reach it through Commit instead
        window = pr.window(self.config.max_inflight)
        sent = False
        while len(pr.inflight) < window and pr.next < self.next_slot:
            last = min(pr.next + self.config.max_batch, self.next_slot) - 1
            self.send_accept(peer, pr.next, last)
            pr.next = last + 1
            pr.inflight.append((last, self.now))
            pr.sent_batch()
            sent = True
        return sent

    def new_progress(self, peer: NodeId) -> PaxosProgress:
        """A member that joined while we lead: probe it from our first unchosen slot."""
        self.bit.setdefault(peer, 1 << len(self.bit))
        return PaxosProgress(next=self.commit_index + 1)

    def send_heartbeat(self, peer: NodeId) -> None:
        pr = self.progress.get(peer)
        first = pr.next if pr is not None else self.next_slot
        self.send_accept(peer, first, first - 1)

    def send_accept(self, peer: NodeId, first: int, last: int) -> None:
        """One Accept for slots ``first``..``last``; none (``last < first``) is a heartbeat."""
        assert self.ballot is not None
        self.send_early(Accept(src=self.id, dst=peer, ballot=self.ballot, first_slot=first,
                               commands=self.log.commands(first, last),
                               commit_index=self.commit_index, beat=self.beat))

    def send_accepted(self, leader: NodeId, ballot: Ballot, first: int, count: int,
                      leader_commit: int, beat: int = 0) -> None:
        self.send(Accepted(src=self.id, dst=leader, ballot=ballot, first_slot=first, count=count,
                           commit_index=self.commit_index, leader_commit=leader_commit,
                           accepted_through=self.accepted_through(ballot, leader_commit),
                           beat=beat))

    def accepted_through(self, ballot: Ballot, leader_commit: int) -> int:
        """The cumulative part of an Accepted: every open slot up to here is ours at ``ballot``."""
        return self.log.accepted_through(ballot, leader_commit)

    def maybe_send_repair(self, peer: NodeId, below: int) -> None:
        """Resend ``peer`` the open slots it lacks below ``below + 1`` (a lost Accept), unless
        that gap was resent within the last heartbeat and the answer may still be coming."""
        pr = self.progress[peer]
        first = self.first_unacked(peer)
        if first > below:
            return  # every slot it lacks there is already chosen: Commit covers it
        if first == pr.repair_from and self.now - pr.repair_at < self.config.heartbeat_ms:
            return
        pr.repair_from, pr.repair_at = first, self.now
        for start in range(first, below + 1, self.config.max_batch):
            self.send_accept(peer, start, min(below, start + self.config.max_batch - 1))

    def first_unacked(self, peer: NodeId) -> int:
        """The lowest open slot ``peer`` has not acknowledged at our ballot."""
        bit, votes = self.bit[peer], self.votes
        slot = max(self.commit_index, self.progress[peer].match) + 1
        while slot < self.next_slot and votes.get(slot, 0) & bit:
            slot += 1
        return slot

    def maybe_send_commit(self, peer: NodeId, peer_commit: int) -> None:
        """Send a lagging acceptor the next chosen values it lacks, one message in flight."""
        pr = self.progress[peer]
        if peer_commit >= self.commit_index:
            return
        if (pr.commit_sent > peer_commit
                and self.now - pr.commit_sent_at < self.config.heartbeat_ms):
            return  # a Commit (or a snapshot) covering it is on its way
        assert self.ballot is not None
        if peer_commit < self.snapshot_index:
            # Those chosen values are compacted: the snapshot replaces them.
            self.send_learn(peer, self.ballot, 0)
            pr.commit_sent, pr.commit_sent_at = self.snapshot_index, self.now
            return
        first = peer_commit + 1
        chunk = self.config.max_batch * self.config.max_inflight
        last = min(self.commit_index, first + chunk - 1)
        self.send(Commit(src=self.id, dst=peer, ballot=self.ballot, first_slot=first,
                         commands=self.log.commands(first, last),
                         commit_index=self.commit_index))
        pr.commit_sent, pr.commit_sent_at = last, self.now

    def send_learn(self, peer: NodeId, ballot: Ballot, offset: int) -> None:
        """The chunk of our latest snapshot that starts at byte ``offset``."""
        text = self.snapshot_state
        end = offset + self.config.snapshot_chunk_bytes
        self.send(Learn(src=self.id, dst=peer, ballot=ballot, snapshot_slot=self.snapshot_index,
                        offset=offset, total=len(text), data=text[offset:end]))

    def send_learned(self, msg: Learn, offset: int) -> None:
        self.send(Learned(src=self.id, dst=msg.src, ballot=msg.ballot,
                          snapshot_slot=msg.snapshot_slot, offset=offset,
                          commit_index=self.commit_index))

    # -- observation -----------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        """The highest slot with a value in ``log``."""
        return self.log.last_index

    @last_index.setter
    def last_index(self, value: int) -> None:  # tests that fake a forgetful leader set it
        self.log.last_index = value

    def role_term(self) -> tuple[str, int]:
        return self.role, max(self.promised.round, self.round_used)

    def status(self) -> Status:
        ballot = self.ballot if self.role == CANDIDATE else self.promised
        return Status(
            id=self.id, algorithm=self.algorithm, role=self.role,
            term=max(self.promised.round, self.round_used), leader=self.leader,
            commit_index=self.commit_index, last_index=self.last_index,
            applied_index=self.applied, ballot=str(ballot),
            election_deadline_ms=None if self.role == LEADER else self.election_deadline,
            snapshot_index=self.snapshot_index, config=self.membership_text,
        )

    def log_tail(self, count: int) -> list[LogSlot]:
        """The last ``count`` slots up to the highest accepted one, gaps included."""
        st = self.status()
        out = []
        first = max(self.snapshot_index + 1, st.last_index - count + 1)
        for slot in range(first, st.last_index + 1):
            state = self.log.get(slot)
            if state is None:
                out.append(LogSlot(slot, 0, "", None, False, empty=True))
                continue
            ballot, command = state
            out.append(LogSlot(slot, ballot.round, str(ballot),
                               None if command is None else command.text,
                               slot <= st.commit_index))
        return out
