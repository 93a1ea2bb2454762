"""The node interface both algorithms implement: a pure state machine that does no IO.

Theory of operation
-------------------
A node is driven entirely from outside, like etcd-io/raft's ``Step``/``Ready`` or h11's
``Connection``. It never reads a clock, never draws from global randomness, never touches a
socket or a file. Everything enters as a call:

- ``tick(now_ms)``: time has passed. The node fires whatever timers are due (heartbeats,
  election timeouts). Drivers call it before every ``step`` so the node knows the time.
- ``step(message)``: an inbound protocol message, or a :class:`ClientRequest`.
- ``restore(records)``: on restart, the records the node persisted in an earlier life.

and everything leaves through :meth:`Node.ready`, which the driver drains after each call::

    ready.persist   records that MUST be durable before any of ready.messages is sent
    ready.messages  protocol messages to send
    ready.applied   committed commands applied to the key-value store, in log/slot order
    ready.replies   answers to client requests that this node accepted

The ordering rule on ``persist`` is what makes a vote or a Paxos promise binding: a node that
answered "yes" and then crashed must still remember it said yes when it comes back.
Replies are only sent after ``persist`` too, so a reply never overtakes the durability of
what it reports.

A driver that writes on another thread (the node runtime) sets ``async_persist``: then the
leader's replication messages come in ``ready.early`` and may leave while ``persist`` is
being written (the leader writes its log in parallel with replicating it, Raft thesis
§10.2.1), and the driver calls ``persisted(ready.seq)`` once a drain's records are durable;
only from then on does the leader count its own copy towards a majority.

``next_deadline()`` tells a driver when the node next needs a tick; the simulator schedules
exactly that instead of polling, which is much of why it runs far faster than real time.

Randomness (election timeouts, backoff) comes from the ``random.Random`` injected at
construction, so a seeded run is reproducible bit for bit.

Reads (``Config.read_path``). A GET that goes through the log like any command (``"log"``,
the default) is linearizable for the same reason a write is, and costs a replication round
and a slot. The other two paths answer from the leader's state machine without a slot, once
the leader knows it is still the leader (Raft thesis §6.4, the same for both algorithms):

- ``"read_index"``: the leader notes its commit index as the read's index, confirms it still
  leads with one heartbeat round acknowledged by a majority (reads that arrive while a round
  is out share the next one), and answers once it has applied up to the index. A leader that
  has not yet committed anything of its own term or ballot (Raft's no-op; Multi-Paxos's slots
  recovered in Phase 1) waits until it has: before that, its commit index may lag what an
  earlier leader committed.
- ``"lease"`` (thesis §6.4.1): a round that a majority acknowledged, sent at ``t``, gives the
  leader a lease until ``t + election_timeout_min / (1 + lease_drift)`` on its own clock; while
  it holds, a read is answered at once, without any message. It is safe because each node of
  that majority heard from the leader after ``t`` and, with check-quorum, ignores campaigns
  for an election timeout after that (``in_leader_lease``), so no other leader can be chosen
  before the lease ends, as long as no clock runs more than ``lease_drift`` slower than
  another's. A node that restarts waits a minimum election timeout before it votes or
  promises, since it may have acknowledged a lease in its previous life. When the lease has
  lapsed a read falls back to the ReadIndex round, which renews it. Clocks that drift further
  break it, and the linearizability checker then finds the stale read
  (``experiments/stale-lease-read.yaml``).

Both algorithms stamp every AppendEntries / Accept with the leader's heartbeat round
(``beat``), and the answer echoes it: that is how a leader knows which round a majority
acknowledged.

Membership changes (membership.py; Raft thesis ch. 4). A node acts on ``membership``: its
voters, the learners it replicates to, and while joint the old voters too; every quorum the
node computes (votes, commitment, check-quorum, heartbeat rounds, a cluster of one) is that
configuration's. Configurations travel in the log / slots, so each algorithm decides where one
takes effect (Raft: on append; Multi-Paxos: alpha slots after it is chosen) and calls
:meth:`ConsensusNode.set_membership`. A node started with ``joining`` has none until the log
or a snapshot brings one: it never campaigns or votes until then. An operator's
:class:`ConfigChange` is run by the leader alone, one at a time (a second is answered ERROR
"busy"), step by step, each step waiting until the configuration in force is committed and,
as Ongaro's 2015 fix for single-server changes requires, until the leader has committed an
entry of its own term:

1. a node being added joins as a learner (it gets the log, never counts);
2. it is promoted once it is caught up: its match reaches what the leader held when it was
   added (the learner configuration's own index), within ``CATCH_UP_TIMEOUTS`` maximum
   election timeouts; else the change fails with ERROR and the learner is dropped again. A
   simpler rule than the thesis's rounds (§4.2.1), with the same purpose: a voter that would
   stall commitment while it catches up is never added;
3. the voters change: by joint consensus C_old,new then C_new (the default), or one voter per
   step (``membership_change: single``; a replace adds before it removes);
4. once the final configuration is committed the operator gets OK with it; a leader that is
   no longer a voter then hands over: TimeoutNow to the most up-to-date remaining voter, and
   it steps down, so the cluster does not wait for an election timeout.

Every configuration entry of a change carries the operator's ``(id, seq)``, so it is applied
exactly once like a command, and a retry with the same seq (after a redirect, a timeout, a new
leader) carries on from where the cluster is rather than starting again. A new leader that
finds a joint configuration in force finishes it (C_new) without being asked. Members a
configuration drops keep getting the log until it commits, so they learn that they were
removed (``removed()``); a removed node never campaigns.

Leadership transfer (``transfer n3``; thesis §3.10): the leader stops taking commands (clients
are redirected to the target), brings the target up to date, sends it ``TimeoutNow`` and
answers the operator; the target campaigns at once, skipping pre-vote, and its vote requests
say so, so voters answer even within a leader's lease (etcd's ``campaignTransfer``). If the
leader is still leading an election timeout later, the transfer is given up. The leader's
lease ends when a transfer starts: the target may lead before it would have run out.

Log compaction (``Config.snapshot_entries``). Once that many entries / slots were applied
since the last snapshot, the next ``tick`` has the algorithm take one (``take_snapshot``: the
state machine at the applied index, with the configuration in force there), drop what it
covers, and persist it as one record that replaces every earlier one. ``snapshot_index``,
``snapshots_taken`` and ``held_entries()`` show it. Each algorithm brings a node that is
behind the truncation point up with the snapshot, in chunks of ``snapshot_chunk_bytes``.

:class:`Node` is the interface; :class:`ConsensusNode` is what Raft and Multi-Paxos do alike
(roles and their timers, check-quorum, the leader lease, the client front door, counting the
leader's own copy, the commit/apply loop), so ``raft/node.py`` and ``paxos/node.py`` hold only
what differs, in the same sections in the same order.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from consensus.kv import CommandError, KVStore, Outcome, parse
from consensus.membership import BUSY, Change, ChangeError, Membership, is_config_text
from consensus.messages import (
    ClientReply,
    ClientRequest,
    Command,
    ConfigChange,
    Message,
    NodeId,
    ReplyStatus,
    TimeoutNow,
)

# The roles both algorithms share (Multi-Paxos's candidate runs Phase 1).
FOLLOWER = "follower"
PRE_CANDIDATE = "precandidate"
CANDIDATE = "candidate"
LEADER = "leader"
_NEVER = float("inf")
# How a leader answers a GET (see the module doc): through the log, after a heartbeat round
# (ReadIndex), or locally under a lease.
READ_PATHS = ("log", "read_index", "lease")

# Config.election: who may win an election (see Config), and each algorithm's own choice.
UP_TO_DATE = "up-to-date"
ANY = "any"
ELECTIONS = (UP_TO_DATE, ANY)
DEFAULT_ELECTION = {"raft": UP_TO_DATE, "paxos": ANY}
# Config.membership_change: joint consensus, or one voter at a time.
MEMBERSHIP_CHANGES = ("joint", "single")
# A new member is promoted from learner to voter once it holds everything the leader held
# when it was added; it has this many maximum election timeouts to get there, else the change
# fails (module doc, "Membership changes").
CATCH_UP_TIMEOUTS = 20


@dataclass(frozen=True, slots=True)
class Config:
    """The knobs both algorithms share, so a comparison is fair and each can be switched.

    Defaults follow the tutorial's election timeouts (150-300 ms) with a 50 ms heartbeat; the
    tutorial's 150 ms heartbeat is an experiment of its own (quiz 2), not the default.
    """

    heartbeat_ms: float = 50.0
    election_timeout_ms: tuple[float, float] = (150.0, 300.0)
    # Most commands carried by one AppendEntries / Accept message.
    max_batch: int = 64
    # Replication messages a leader may have in flight to one follower before it waits
    # for acknowledgements (pipelining window).
    max_inflight: int = 8
    # Leader stability (Raft thesis 9.6 / 6.2): a pre-vote round before a real election, and
    # a leader that steps down when it has not heard from a majority for an election timeout.
    pre_vote: bool = True
    check_quorum: bool = True
    # Who may win an election (Howard & Mortier 2020, the one essential difference):
    # "up-to-date", only a candidate whose log is at least as complete as the voter's (Raft
    # §5.4.1); "any", anyone, and it catches up from the votes (Multi-Paxos Phase 1). Each
    # node module says what the other choice means for it. The defaults are each algorithm's
    # own: None picks ``DEFAULT_ELECTION`` for the node's algorithm.
    election: str | None = None
    # How GETs are answered (module doc): "log" | "read_index" | "lease".
    read_path: str = "log"
    # The lease's clock-drift assumption: no clock runs more than this fraction slower than
    # another's (0.1: 10%). The lease lasts election_timeout_min / (1 + lease_drift).
    lease_drift: float = 0.1
    # How Raft changes its voters (membership.py): "joint" (C_old,new then C_new, thesis
    # §4.3, the default) or "single" (one voter at a time, §4.1, with the fix that a leader
    # first commits an entry of its own term). Multi-Paxos ignores it: see ``alpha``.
    membership_change: str = "joint"
    # Multi-Paxos: a configuration chosen in slot i governs slots from i + alpha on
    # (Lamport's alpha); it also caps the slots a leader may have open beyond the chosen prefix.
    alpha: int = 128
    # Log compaction: snapshot the state machine after this many applied entries or slots
    # beyond the last snapshot (0: never), and send snapshots in chunks of this many bytes.
    snapshot_entries: int = 0
    snapshot_chunk_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        lo, hi = self.election_timeout_ms
        if self.heartbeat_ms <= 0:
            raise ValueError(f"heartbeat_ms must be positive, got {self.heartbeat_ms}")
        if not 0 < lo <= hi:
            raise ValueError(f"election_timeout_ms must be 0 < min <= max, got {(lo, hi)}")
        if self.max_batch < 1 or self.max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        if self.election is not None and self.election not in ELECTIONS:
            raise ValueError(f"election must be one of {', '.join(ELECTIONS)}, "
                             f"got {self.election!r}")
        if self.read_path not in READ_PATHS:
            raise ValueError(f"read_path must be one of {', '.join(READ_PATHS)}, "
                             f"got {self.read_path!r}")
        if not 0 <= self.lease_drift < 10:
            raise ValueError(f"lease_drift must be between 0 and 10, got {self.lease_drift}")
        if self.membership_change not in MEMBERSHIP_CHANGES:
            raise ValueError(f"membership_change must be one of {', '.join(MEMBERSHIP_CHANGES)}"
                             f", got {self.membership_change!r}")
        if self.alpha < 1:
            raise ValueError(f"alpha must be at least 1, got {self.alpha}")
        if self.snapshot_entries < 0 or self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_entries must be >= 0 and snapshot_chunk_bytes >= 1")
        if self.read_path == "lease" and not self.check_quorum:
            raise ValueError("read_path 'lease' needs check_quorum: the lease is safe only "
                             "because followers ignore campaigns while they hear a leader")

    def election_for(self, algorithm: str) -> str:
        """The election rule in force for ``algorithm``: the one set, or its own default."""
        return self.election or DEFAULT_ELECTION.get(algorithm, UP_TO_DATE)

    @property
    def lease_ms(self) -> float:
        """How long a leader's lease lasts on its own clock after the round that renewed it."""
        return self.election_timeout_ms[0] / (1 + self.lease_drift)


# Not frozen, like Status: one is made per entry per replica. Read-only all the same.
@dataclass(slots=True)
class Applied:
    """One committed log entry or chosen slot, applied to the state machine."""

    index: int
    command: Command | None  # None is a no-op (a new leader's entry, a filled Paxos gap)
    outcome: Outcome | None


@dataclass(slots=True)
class Ready:
    """Everything a node produced since the last :meth:`Node.ready`; see the module doc."""

    persist: list[Any] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    replies: list[ClientReply] = field(default_factory=list)
    # Only with ``Node.async_persist``: messages that may leave while ``persist`` is written.
    early: list[Message] = field(default_factory=list)
    seq: int = 0  # numbers the drains, for Node.persisted

    def __bool__(self) -> bool:
        return bool(self.persist or self.messages or self.applied or self.replies or self.early)


@dataclass(slots=True)
class LogSlot:
    """One log entry or slot as an observer sees it, the same for every algorithm."""

    index: int
    term: int  # Raft's term; Multi-Paxos's ballot round (0 for an empty slot)
    label: str  # the term as shown: "3" (Raft), "3.n2" (a Multi-Paxos ballot), "" when empty
    command: str | None  # the command's text; None for a no-op, or for an empty slot
    committed: bool
    empty: bool = False  # a slot nothing was accepted in yet (a gap behind a later slot)


# Not frozen: the simulator takes one after every drain, and a frozen dataclass's __init__ costs
# more than twice as much. Treat it as a read-only snapshot all the same.
@dataclass(slots=True)
class Status:
    """What the dashboard, the reports and the safety checks see of a node."""

    id: NodeId
    algorithm: str
    role: str
    term: int  # Raft's term; Multi-Paxos's ballot round
    leader: NodeId | None
    commit_index: int  # highest committed log index / chosen slot known contiguously
    last_index: int  # last log index / highest slot with an accepted value
    applied_index: int
    ballot: str | None = None  # Multi-Paxos only: the full ballot, "round.node"
    election_deadline_ms: float | None = None  # when this node will time out and campaign
    # The configuration this node acts on (Membership.to_text(): voters, the old voters while
    # joint, learners); None for a node that has not learnt one yet (joining).
    config: str | None = None
    snapshot_index: int = 0  # the last index / slot its latest snapshot covers (0: none)


class Node(ABC):
    """Common machinery: identity, clock, outbox, state machine and client bookkeeping."""

    algorithm: ClassVar[str]

    def __init__(
        self,
        node_id: NodeId,
        peers: Iterable[NodeId],
        config: Config | None = None,
        rng: random.Random | None = None,
        *,
        joining: bool = False,
    ) -> None:
        ids = sorted(set(peers) | {node_id})
        self.id = node_id
        # The initial configuration (all voters, this node included, sorted). What a node acts
        # on is ConsensusNode.membership, which changes; ``others`` follows it.
        self.peers: tuple[NodeId, ...] = tuple(ids)
        self.others: tuple[NodeId, ...] = tuple(p for p in ids if p != node_id)
        self.joining = joining
        self.config = config or Config()
        # Injected, seeded randomness: the core never touches the global `random`.
        self.rng = rng if rng is not None else random.Random(0)
        self.now = 0.0
        self.kv = KVStore()
        self._out = Ready()
        # A driver that writes records on another thread while it goes on stepping sets this,
        # then calls persisted() as they become durable (see send_early). Off, records count
        # as durable once drained, which holds for a driver that writes them before anything
        # else happens (the simulator, the tests' hand drivers).
        self.async_persist = False
        self.ready_seq = 0
        # Client requests this node accepted and still owes an answer: (client, seq) -> index.
        self.pending: dict[tuple[str, int], int] = {}

    # -- the driver's side -------------------------------------------------------------

    @abstractmethod
    def tick(self, now: float) -> None:
        """Advance this node's clock to ``now`` (ms) and fire any timer that is due."""

    @abstractmethod
    def step(self, msg: Message) -> None:
        """Take one inbound protocol message or client request."""

    @abstractmethod
    def restore(self, records: Sequence[Any]) -> None:
        """Rebuild durable state from the records an earlier life persisted, in order."""

    @abstractmethod
    def status(self) -> Status:
        """A snapshot of what this node believes."""

    @abstractmethod
    def next_deadline(self) -> float:
        """The next time (ms) at which :meth:`tick` has work to do."""

    @abstractmethod
    def log_tail(self, count: int) -> list[LogSlot]:
        """The last ``count`` entries or slots of this node's log, oldest first: how the
        dashboard shows any algorithm's log without reading its internals."""

    def ready(self) -> Ready:
        """Drain and return everything produced since the last call."""
        out, self._out = self._out, Ready()
        self.ready_seq += 1
        out.seq = self.ready_seq
        return out

    def role_term(self) -> tuple[str, int]:
        """``(status().role, status().term)``, cheaply: drivers watch it after every drain."""
        st = self.status()
        return st.role, st.term

    def has_output(self) -> bool:
        """Whether :meth:`ready` has anything to hand out."""
        return bool(self._out)

    def campaign(self) -> None:
        """Start an election now (etcd's ``campaign``; the simulator's and the dashboard's
        "time out a node"). A protocol without elections ignores it."""
        return None

    def persisted(self, seq: int) -> None:
        """The driver: the records of every drain up to number ``seq`` are durable now.

        Only called when ``async_persist`` is on; a leader counts its own copy of entries
        towards a majority from here on, not before (Raft thesis §10.2.1).
        """
        return None  # a node that never counts its own unwritten records has nothing to do

    # -- helpers for the algorithms ----------------------------------------------------

    def send(self, msg: Message) -> None:
        self._out.messages.append(msg)

    def send_early(self, msg: Message) -> None:
        """A leader's replication message, which needs none of its unwritten records.

        With ``async_persist`` it may leave while the leader's own records are still being
        written, so the leader writes its log in parallel with replicating it (thesis
        §10.2.1); what makes that safe is that the leader counts its own copy only once
        :meth:`persisted` says so. Otherwise it is an ordinary message.
        """
        (self._out.early if self.async_persist else self._out.messages).append(msg)

    def persist(self, record: Any) -> None:
        self._out.persist.append(record)

    def reply(self, request: ClientRequest | ConfigChange, status: ReplyStatus,
              result: str | None = None,
              leader: NodeId | None = None) -> None:
        self._out.replies.append(ClientReply(
            src=self.id, dst=request.src, seq=request.seq, status=status, result=result,
            leader=leader,
        ))

    def redirect(self, request: ClientRequest | ConfigChange, leader: NodeId | None) -> None:
        """Tell a client this node will not take its request, and who might."""
        self.reply(request, ReplyStatus.REDIRECT, leader=leader)

    def maybe_answer_from_cache(self, request: ClientRequest) -> bool:
        """Answer a retry of a request already applied here; True if answered.

        The cached outcome is the one the committed entry produced, so the answer is exactly
        what the first attempt would have received.
        """
        last = self.kv.sessions.get(request.src)
        if last is None or last[0] != request.seq:
            return False
        outcome = last[1]
        self.reply(request, outcome.status, outcome.result)
        return True

    def apply_entry(self, index: int, command: Command | None) -> None:
        """Apply one committed entry to the state machine and answer its client if waiting."""
        outcome = self.kv.apply(command)
        self._out.applied.append(Applied(index, command, outcome))
        if command is None or outcome is None:
            return
        key = (command.client_id, command.seq)
        if self.pending.pop(key, None) is not None:
            self._out.replies.append(ClientReply(
                src=self.id, dst=command.client_id, seq=command.seq,
                status=outcome.status, result=outcome.result,
            ))

    def abandon_pending(self, leader: NodeId | None) -> None:
        """On losing leadership: tell waiting clients to retry elsewhere (same seq, so safe)."""
        for client_id, seq in sorted(self.pending):
            self._out.replies.append(ClientReply(
                src=self.id, dst=client_id, seq=seq, status=ReplyStatus.REDIRECT, leader=leader,
            ))
        self.pending.clear()


@dataclass(slots=True)
class Progress:
    """A leader's view of one other node; each algorithm extends it (what is in flight, repair).

    Flow control is the same for both algorithms, after etcd-io/raft's progress states:

    - *replicate* (``probe`` off): up to ``max_inflight`` batches in flight, the pipeline.
    - *probe* (after a refusal or a suspected loss): one batch, and then nothing but heartbeats
      until the peer answers anything (``probe_sent``). A peer that is down or cut off thus
      costs a heartbeat per interval, not a batch of up to ``max_batch`` entries resent every
      interval. An answer that acknowledges the batch returns the peer to *replicate*; any
      other answer lets the batch go once more (it, or its answer, was lost).
    """

    next: int  # next index / slot to send
    match: int = 0  # highest index / slot known to be held by the peer
    probe: bool = True
    # Invariant: probe_sent implies probe. A probe batch went out and nothing came back since.
    probe_sent: bool = False
    active: bool = False  # heard from since the last check-quorum round
    beat: int = 0  # the highest heartbeat round the peer acknowledged (reads, the lease)
    # Each batch sent and not yet acknowledged, oldest first (etcd's inflights); what an item
    # holds is the algorithm's (Raft: the batch's last index; Paxos: its last slot and time).
    inflight: deque[Any] = field(default_factory=deque)

    def window(self, max_inflight: int) -> int:
        """How many batches may be in flight to the peer now."""
        if not self.probe:
            return max_inflight
        return 0 if self.probe_sent else 1

    def sent_batch(self) -> None:
        """A batch of entries went out (not a heartbeat)."""
        if self.probe:
            self.probe_sent = True

    def heard(self) -> bool:
        """Any answer from the peer: it is alive. True if a probe batch was waiting for it;
        unless this answer acknowledges that batch, the caller sends it again."""
        self.active = True
        waiting, self.probe_sent = self.probe_sent, False
        return waiting

    def become_probe(self, next_index: int) -> None:
        """Stop pipelining; send from ``next_index``, one batch at a time (what was in flight
        is written off)."""
        self.next = next_index
        self.probe = True
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        """The peer acknowledged entries: pipeline again."""
        self.probe = False
        self.probe_sent = False

    def may_resend(self) -> bool:
        """At a heartbeat: whether what seems lost may be sent again. Not while a probe is
        unanswered: the peer may be down, and the heartbeat will tell when it is back."""
        return not self.probe_sent


@dataclass(slots=True)
class ChangeInFlight:
    """The membership change a leader is running (module doc, "Membership changes")."""

    key: tuple[str, int]  # (operator id, seq): every configuration entry of the change has it
    goal: frozenset[NodeId]  # the voters it leads to
    adding: frozenset[NodeId]  # the nodes it adds (learners first)
    request: ConfigChange | None  # whom to answer; None when nobody asked this leader
    catch_up_index: int = 0  # the learners are caught up when their match reaches it
    deadline: float = _NEVER  # ... by then, else the change fails
    drop: frozenset[NodeId] = frozenset()  # learners to take out again (a failed change's)


class ConsensusNode(Node):
    """What Raft and Multi-Paxos do alike: roles and their timers, check-quorum, the leader
    lease, the client front door, the commit/apply loop, and membership changes and
    leadership transfer. The algorithms supply the role changes (``become_*``), the
    heartbeat and the log, through the hooks below."""

    def __init__(self, node_id: NodeId, peers: Iterable[NodeId], config: Config | None = None,
                 rng: random.Random | None = None, *, joining: bool = False) -> None:
        super().__init__(node_id, peers, config, rng, joining=joining)
        self.role = FOLLOWER
        self.leader: NodeId | None = None  # who we believe leads; None while unknown
        # Invariant: applied <= commit_index; every index up to commit_index is committed
        # (Raft) or chosen (Multi-Paxos), and every one up to applied went to the kv store.
        self.commit_index = 0
        self.applied = 0
        self.progress: dict[NodeId, Any] = {}  # leader only: a Progress per other node
        # The election timer, one mechanism for both algorithms, as etcd-io/raft's
        # ``randomizedElectionTimeout``: a timeout is drawn on every role change (become_*),
        # and each sign of a live leader or of a vote given restarts the countdown with that
        # same draw. (The Raft paper, §5.2, redraws on every reset.) Drawing per role change
        # is enough for what the randomness is for: campaigners that collided, after a split
        # vote or a Paxos Nack, draw afresh and spread out; and no draw per heartbeat.
        self.randomized_election_timeout = 0.0
        # Invariant: _NEVER until the first tick (the node does not know the time before it,
        # and a restarted node must restore its term or promise before it may campaign), and
        # while leading.
        self.election_deadline = _NEVER
        self.started = False
        # Leader only, else _NEVER: the next heartbeat, and the next check-quorum round.
        self.heartbeat_deadline = _NEVER
        self.quorum_deadline = _NEVER
        self.leader_contact = -_NEVER  # last time the current leader was heard from
        # With async_persist, a leader's own copy counts only up to ``durable_last``;
        # ``unsynced`` holds (drain number, last index) of its writes not yet durable.
        self.durable_last = 0
        self.unsynced: deque[tuple[int, int]] = deque()
        self.started_at = 0.0  # the first tick of this life (a restarted node's lease wait)
        # Reads off the log (module doc). ``beat`` numbers the heartbeat rounds this node sent
        # as leader, every AppendEntries / Accept carrying the current one; monotonic across
        # terms, so an answer from an earlier reign never confirms a later round.
        # Invariant: beat_confirmed <= beat, and no read waits while we do not lead.
        self.beat = 0
        self.beat_confirmed = 0  # highest round a majority (us included) acknowledged
        self.beat_sent: deque[tuple[int, float]] = deque()  # lease: (round, time sent)
        self.read_round = 0  # the round last started for waiting reads
        self.lease_until = -_NEVER  # lease: answer reads locally while now < lease_until
        self.reads: dict[tuple[str, int], PendingRead] = {}  # leader: reads awaiting a round
        # Membership (module doc). ``membership`` is the configuration this node acts on (None
        # while joining), carried by the entry / slot ``membership_index`` (0: the initial
        # one) of the change ``membership_key`` (operator id, seq).
        self.membership: Membership | None = None
        self.membership_text: str | None = None  # its to_text(), for status()
        self.membership_index = 0
        self.membership_key: tuple[str, int] | None = None
        self.config_commit_pending = False  # membership_index is not known to be committed
        # Members of the previous configuration the latest one drops: still replicated to
        # until the latest commits, so they learn they were removed.
        self.departing: frozenset[NodeId] = frozenset()
        self.voting_others: tuple[NodeId, ...] = ()  # whom a candidate asks for votes
        self.solo = False  # this node alone is a quorum (a cluster of one)
        self.change: ChangeInFlight | None = None  # leader: the membership change it runs
        # Leader: a leadership transfer (module doc): to whom, until when, who asked, whether
        # TimeoutNow went, and whether to step down as it goes (the removed leader's hand-over).
        self.transfer_to: NodeId | None = None
        self.transfer_deadline = _NEVER
        self.transfer_request: ConfigChange | None = None
        self.transfer_sent = False
        self.transfer_steps_down = False
        self.transfer_campaign = False  # candidate: this election was asked for by TimeoutNow
        self.was_member = False  # some configuration in force here listed this node
        self.set_membership(None if joining else Membership.of(self.peers), 0, None, None)
        # Log compaction (Config.snapshot_entries): the last index / slot the latest snapshot
        # covers, and how many snapshots this node took itself (installed ones not counted).
        self.snapshot_index = 0
        self.snapshots_taken = 0

    # -- the algorithm's side ----------------------------------------------------------

    @abstractmethod
    def become_follower(self, leader: NodeId | None) -> None:
        """Follow ``leader`` (None: unknown) in the current term or ballot."""

    @abstractmethod
    def become_pre_candidate(self) -> None:
        """Ask whether a majority would elect us, changing nothing durable (thesis §9.6)."""

    @abstractmethod
    def become_candidate(self) -> None:
        """Start a real election: a new term (Raft) or ballot (Multi-Paxos Phase 1a)."""

    @abstractmethod
    def bcast_heartbeat(self) -> None:
        """Leader: tell every other node it is alive, resending what seems lost."""

    @abstractmethod
    def take_new_request(self, req: ClientRequest) -> None:
        """Leader: place a new client request in the log (raft.tla ``ClientRequest``,
        MultiPaxos ``TakeNewRequest``), recording it in ``pending``."""

    @abstractmethod
    def advance_commit_index(self) -> bool:
        """Leader: raise the commit index to what a majority holds; True if it rose."""

    @abstractmethod
    def last_proposed(self) -> int:
        """Leader: the last index / slot of its own copy, written or being written."""

    @abstractmethod
    def command_at(self, index: int) -> Command | None:
        """The committed command at ``index`` (None for a no-op)."""

    @abstractmethod
    def commit_record(self, index: int) -> Any:
        """The durable record that the commit index reached ``index``."""

    def propose_config(self, membership: Membership, key: tuple[str, int]) -> None:
        """Leader: put ``membership`` in the log as the command ``key`` (operator id, seq),
        where it takes effect the algorithm's way, calling :meth:`set_membership` then."""
        raise NotImplementedError(f"{self.algorithm} cannot change its membership")

    def new_progress(self, peer: NodeId) -> Progress:
        """Leader: a fresh Progress for a member that joined while we lead."""
        raise NotImplementedError(f"{self.algorithm} cannot change its membership")

    def send_heartbeat(self, peer: NodeId) -> None:
        """Leader: one heartbeat to ``peer`` carrying the commit index (the last word to a
        member the committed configuration dropped)."""
        raise NotImplementedError(f"{self.algorithm} cannot change its membership")

    def next_voters(self, current: Membership, goal: frozenset[NodeId]) -> Membership:
        """The next configuration on the way from ``current`` (simple, learners caught up) to
        the voters ``goal``: Raft's joint C_old,new (the default), or one voter added, else
        one removed (``membership_change: single``, thesis §4.1)."""
        if self.config.membership_change == "joint":
            return Membership(goal, old=current.voters, learners=current.learners - goal)
        for nid in sorted(goal - current.voters):
            return Membership(current.voters | {nid}, learners=current.learners - {nid})
        for nid in sorted(current.voters - goal):
            return Membership(current.voters - {nid}, learners=current.learners)
        return current

    def may_propose_config(self) -> bool:
        """Leader: whether the next configuration may go in the log now: the one in force is
        committed, and so is an entry of our own term (Ongaro's 2015 fix: without it, a
        single-server change can let two disjoint majorities decide)."""
        return not self.config_commit_pending and self.committed_own_term()

    def take_snapshot(self) -> None:
        """Snapshot the state machine at the applied index (with the configuration in force
        there), drop the log / slots it covers, and persist it as one compacting record
        (storage.py) that holds everything the node needs from before it."""
        raise NotImplementedError(f"{self.algorithm} cannot compact its log")

    def held_entries(self) -> int:
        """How many log entries / slots this node holds in memory now."""
        raise NotImplementedError(f"{self.algorithm} cannot count its log")

    @abstractmethod
    def committed_own_term(self) -> bool:
        """Leader: whether its commit index covers everything committed before its term or
        ballot began (its own first entry, or the slots it recovered in Phase 1, is
        committed), so it may serve reads off the log (thesis §6.4)."""

    # -- role changes --------------------------------------------------------------------

    def step_down(self, leader: NodeId | None) -> None:
        """What every ``become_follower`` does, whatever the algorithm: abandon leadership,
        stop the leader's timers, and draw a new election timeout."""
        if self.role == LEADER:
            self.abandon_pending(leader)
            self.abandon_reads(leader)
            self.abandon_change(leader)
        self.role = FOLLOWER
        self.leader = leader
        self.progress = {}
        self.heartbeat_deadline = self.quorum_deadline = _NEVER
        self.reset_randomized_election_timeout()

    def start_leading(self) -> None:
        """What every ``become_leader`` does: take the role and start the leader's timers."""
        self.role = LEADER
        self.leader = self.id
        self.election_deadline = _NEVER
        self.heartbeat_deadline = self.now + self.config.heartbeat_ms
        self.quorum_deadline = self.now + self.config.election_timeout_ms[1]
        # Our copy from before may still be being written; the first drain as leader
        # (a no-op, or the re-proposals of Phase 1) covers it.
        self.durable_last = 0
        self.unsynced.clear()
        # The first messages as leader (the no-op, or Phase 1's re-proposals) start its first
        # round.
        self.forget_rounds()
        self.next_beat()
        m = self.membership
        if m is not None and m.joint and self.membership_key is not None:
            # An earlier leader left a joint configuration in force: finish it (C_new).
            self.change = ChangeInFlight(self.membership_key, m.voters, frozenset(), None)

    def campaign(self, *, transfer: bool = False) -> None:
        """Start an election now (etcd's ``campaign``; the simulator's and the dashboard's
        "time out a node"); with ``pre_vote``, first ask whether it could succeed, unless the
        leader asked for it (``transfer``, TimeoutNow). A node that is not a voter of its
        configuration (joining, a learner, removed) never campaigns."""
        if self.role == LEADER:
            return
        if not self.may_campaign():
            self.reset_election_timer()
            return
        if self.config.pre_vote and not transfer:
            self.become_pre_candidate()
        else:
            self.transfer_campaign = transfer
            self.become_candidate()
            self.transfer_campaign = False

    def may_campaign(self) -> bool:
        """Whether this node is a voter of the configuration it acts on."""
        return self.membership is not None and self.membership.is_voter(self.id)

    # -- time ----------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """raft.tla ``Timeout`` when due; a leader checks its quorum, then heartbeats. First,
        a snapshot if ``snapshot_entries`` entries were applied since the last one: taken here
        rather than as they are applied, so that a drain that commits entries still shows
        them in the log to whoever watches (the checkers), and the next one compacts."""
        self.now = now
        every = self.config.snapshot_entries
        # Not while this drain still hands out entries it applied: a driver may tick and step
        # several times per drain (the simulator with a slow disk does).
        if every and self.applied - self.snapshot_index >= every and not self._out.applied:
            self.take_snapshot()
        if self.start_timers():
            return
        if self.role == LEADER:
            if now >= self.quorum_deadline:
                self.tick_check_quorum()
            if self.change is not None or self.transfer_to is not None:
                self.tick_membership()
            if self.role == LEADER and now >= self.heartbeat_deadline:
                self.bcast_heartbeat()
        elif now >= self.election_deadline:
            # A follower suspects the leader; a (pre-)candidate got no majority in time.
            self.campaign()

    def next_deadline(self) -> float:
        if self.role == LEADER:
            due = min(self.heartbeat_deadline, self.quorum_deadline)
            if self.change is not None:
                due = min(due, self.change.deadline)
            if self.transfer_to is not None:
                due = min(due, self.transfer_deadline)
            return due
        return self.election_deadline

    def tick_check_quorum(self) -> None:
        """CheckQuorum (thesis §6.2): step down unless a majority was heard from lately."""
        self.quorum_deadline = self.now + self.config.election_timeout_ms[1]
        if not self.config.check_quorum:
            return
        active = {self.id}
        for peer, p in self.progress.items():
            if p.active:
                active.add(peer)
                p.active = False
        if self.membership is None or not self.membership.has_quorum(active):
            self.become_follower(None)

    def tick_membership(self) -> None:
        """Leader: give up a change whose learners did not catch up in time, or a transfer
        whose target has not taken over within an election timeout."""
        if self.change is not None and self.now >= self.change.deadline:
            slow = sorted(self.change.adding & self.membership.learners)  # type: ignore[union-attr]
            self.fail_change(f"{', '.join(slow)} did not catch up within "
                             f"{CATCH_UP_TIMEOUTS} election timeouts")
        if self.transfer_to is not None and self.now >= self.transfer_deadline:
            self.abort_transfer(f"transfer to {self.transfer_to} timed out")

    def election_timeout(self) -> float:
        """A fresh randomised election timeout in ms, from the injected rng."""
        lo, hi = self.config.election_timeout_ms
        return lo if lo == hi else self.rng.uniform(lo, hi)

    def reset_randomized_election_timeout(self) -> None:
        """On a role change: draw a new timeout and start counting it down."""
        self.randomized_election_timeout = self.election_timeout()
        self.reset_election_timer()

    def reset_election_timer(self) -> None:
        """Restart the countdown with the current draw (a leader was heard from, a vote given)."""
        self.election_deadline = (self.now + self.randomized_election_timeout if self.started
                                  else _NEVER)

    def start_timers(self) -> bool:
        """At the first tick: start the election timer; True if this was the first tick."""
        if self.started:
            return False
        self.started = True
        self.started_at = self.now
        self.reset_election_timer()
        return True

    # -- inbound -------------------------------------------------------------------------

    def election(self) -> str:
        """Who may win an election here: ``UP_TO_DATE`` or ``ANY`` (``Config.election``)."""
        return self.config.election_for(self.algorithm)

    def in_leader_lease(self, src: NodeId | None = None) -> bool:
        """With check-quorum, whether a live leader other than ``src`` is known: we lead
        (check-quorum deposes us if we lose the majority), or we heard from the leader within
        the minimum election timeout. A vote request or Prepare is then ignored (thesis
        §4.2.3), so a node rejoining after a partition cannot depose a healthy leader."""
        if not self.config.check_quorum or (src is not None and src == self.leader):
            return False
        if self.role == LEADER:
            return True
        min_timeout = self.config.election_timeout_ms[0]
        if self.config.read_path == "lease" and self.now - self.started_at < min_timeout:
            return True  # we may have acknowledged a lease in a previous life (module doc)
        return self.leader is not None and self.now - self.leader_contact < min_timeout

    def heard_from_leader(self, leader: NodeId) -> None:
        """A valid AppendEntries, Accept or Commit: ``leader`` is alive; follow it, wait longer."""
        if self.role != FOLLOWER or self.leader != leader:
            self.become_follower(leader)
        self.leader_contact = self.now
        self.reset_election_timer()

    def handle_client_request(self, req: ClientRequest) -> None:
        """The front door: a non-leader redirects; a retry of an applied request is answered
        from the reply cache; a duplicate of one still in progress is dropped (its answer
        is on its way); anything else the leader takes into its log."""
        if is_config_text(req.command):
            # Only a ConfigChange puts a configuration in the log (membership.py).
            self.reply(req, ReplyStatus.ERROR, "CONFIG is reserved for membership changes "
                       "(consensus-lab cluster add/remove/replace)")
            return
        if self.role != LEADER:
            self.redirect(req, self.leader)
            return
        if self.maybe_answer_from_cache(req) or (req.src, req.seq) in self.pending:
            return
        if self.transfer_to is not None:
            self.redirect(req, self.transfer_to)  # handing over: no new commands (thesis §3.10)
            return
        if self.config.read_path != "log" and is_read(req.command):
            self.handle_read(req)
            return
        self.take_new_request(req)

    # -- reads off the log (read_path: read_index | lease; see the module doc) ------------

    def handle_read(self, req: ClientRequest) -> None:
        """A GET at the leader: answer it now under a valid lease, else note the commit index
        as its read index and wait for a heartbeat round sent after it arrived."""
        key = (req.src, req.seq)
        if key in self.reads:
            return  # a duplicate: the answer to the first copy is on its way
        if (self.config.read_path == "lease" and self.now < self.lease_until
                and self.committed_own_term()):
            self.answer_read(req)
            return
        self.reads[key] = PendingRead(req, self.commit_index, self.beat + 1)
        self.maybe_start_read_round()

    def maybe_start_read_round(self) -> None:
        """Send a heartbeat round for the waiting reads, unless one is out already: the
        reads that arrive while it is out share the next round (batching)."""
        if self.reads and self.read_round <= self.beat_confirmed:
            self.read_round = self.beat + 1
            self.bcast_heartbeat()

    def next_beat(self) -> int:
        """Leader: number a new heartbeat round (every bcast_heartbeat starts one)."""
        self.beat += 1
        if self.config.read_path == "lease":
            self.beat_sent.append((self.beat, self.now))
        if self.solo and self.config.read_path != "log":
            self.confirm_beat(self.beat)  # a cluster of one is its own majority
        return self.beat

    def heard_beat(self, pr: Progress, beat: int) -> None:
        """An answer echoing heartbeat round ``beat``: the peer still takes us for leader.
        When a majority has acknowledged a newer round, renew the lease and serve reads."""
        if beat <= pr.beat or self.config.read_path == "log":
            return
        pr.beat = beat
        if beat <= self.beat_confirmed or self.membership is None:
            return
        beats = {peer: p.beat for peer, p in self.progress.items()}
        beats[self.id] = self.beat
        confirmed = self.membership.committed_index(beats)
        if confirmed > self.beat_confirmed:
            self.confirm_beat(confirmed)

    def confirm_beat(self, confirmed: int) -> None:
        """A majority acknowledged rounds up to ``confirmed``: the lease runs from when that
        round was sent (thesis §6.4.1), and reads waiting for it may be answered."""
        self.beat_confirmed = confirmed
        sent = self.beat_sent
        while sent and sent[0][0] <= confirmed:
            beat, at = sent.popleft()
            if beat == confirmed and self.transfer_to is None:
                self.lease_until = at + self.config.lease_ms
        self.maybe_serve_reads()
        self.maybe_start_read_round()

    def maybe_serve_reads(self) -> None:
        """Answer the waiting reads whose round is confirmed and whose read index is applied
        (called as rounds are confirmed and as the commit index rises)."""
        if not self.reads or not self.committed_own_term():
            return
        done = [key for key, r in self.reads.items()
                if r.beat <= self.beat_confirmed and r.index <= self.applied]
        for key in done:
            self.answer_read(self.reads.pop(key).request)

    def answer_read(self, req: ClientRequest) -> None:
        """Answer a GET from this node's state machine, without a log entry."""
        self.reply(req, ReplyStatus.OK, self.kv.data.get(parse(req.command).key))

    def abandon_reads(self, leader: NodeId | None) -> None:
        """On losing leadership: waiting reads go elsewhere, like pending commands."""
        for key in sorted(self.reads):
            self.redirect(self.reads[key].request, leader)
        self.reads.clear()
        self.forget_rounds()

    def forget_rounds(self) -> None:
        """No heartbeat round of this reign is acknowledged: no lease, nothing confirmed."""
        self.beat_confirmed = self.read_round = self.beat
        self.beat_sent.clear()
        self.lease_until = -_NEVER

    # -- membership (module doc, "Membership changes") -----------------------------------

    def set_membership(self, membership: Membership | None, index: int,
                       previous: Membership | None, key: tuple[str, int] | None) -> None:
        """Act on ``membership`` from now on (the algorithm calls this where a configuration
        takes effect): it came from entry / slot ``index`` of change ``key``, and replaced
        ``previous``, whose dropped members keep getting the log until ``index`` commits."""
        self.membership = membership
        self.membership_index = index
        self.membership_key = key
        self.config_commit_pending = index > self.commit_index
        if membership is not None and self.id in membership.members:
            self.was_member = True
        if membership is None:
            self.membership_text = None
            self.departing = frozenset()
            self.voting_others = ()
            self.solo = False
        else:
            self.membership_text = membership.to_text()
            self.departing = (previous.members - membership.members
                              if previous is not None and self.config_commit_pending
                              else frozenset())
            self.voting_others = tuple(sorted(membership.voting - {self.id}))
            self.solo = membership.has_quorum((self.id,))
        self.update_others()

    def update_others(self) -> None:
        """``others`` (whom a leader replicates to) from the members and the departing; a
        leader starts or drops a Progress for each node that came or went."""
        members = (self.membership.members | self.departing if self.membership is not None
                   else frozenset())
        self.others = tuple(sorted(members - {self.id}))
        if self.role != LEADER:
            return
        for peer in self.others:
            if peer not in self.progress:
                self.progress[peer] = self.new_progress(peer)
        for peer in [p for p in self.progress if p not in members]:
            del self.progress[peer]
        if self.transfer_to is not None and self.transfer_to not in self.progress:
            self.abort_transfer(f"{self.transfer_to} left the configuration")

    def membership_committed(self) -> None:
        """The configuration in force is committed: the members it dropped get a last
        heartbeat with the commit index (so they know they are out), then nothing more."""
        self.config_commit_pending = False
        if not self.departing:
            return
        if self.role == LEADER:
            for peer in sorted(self.departing):
                if peer in self.progress:
                    self.send_heartbeat(peer)
        self.departing = frozenset()
        self.update_others()

    def removed(self) -> bool:
        """Whether this node, once a member, knows a committed configuration that does not
        list it: it has left the cluster, never campaigns, and its driver may stop it. A
        joining node that installs a snapshot taken before it was added sees a configuration
        without itself too; it was never a member, so it has not been removed."""
        m = self.membership
        return (self.was_member and m is not None and self.id not in m.members
                and not self.config_commit_pending)

    def handle_config_change(self, msg: ConfigChange) -> None:
        """The front door for an operator's membership change, like a client's command: a
        non-leader redirects; a retry of the change in progress is answered when it is done;
        another change while one runs is "busy"; a change that cannot be made is an ERROR
        saying why; a retry of one already started (its seq is in the reply cache) carries on
        from the configuration in force. Transfers go to :meth:`handle_transfer`."""
        try:
            change = Change.parse(msg.change)
        except ChangeError as exc:
            self.reply(msg, ReplyStatus.ERROR, str(exc))
            return
        m = self.membership
        if self.role != LEADER or m is None:
            self.redirect(msg, self.leader)
            return
        if change.kind == "transfer":
            self.handle_transfer(msg, change.target)  # type: ignore[arg-type]
            return
        key = (msg.src, msg.seq)
        if self.change is not None and self.change.key == key:
            self.change.request = msg  # a retry: this copy gets the answer
            return
        if self.change is not None or self.transfer_to is not None:
            self.reply(msg, ReplyStatus.ERROR, f"{BUSY}: {self.busy_with()}; retry later")
            return
        last = self.kv.sessions.get(msg.src)
        if last is not None and last[0] > msg.seq:
            self.reply(msg, ReplyStatus.ERROR,
                       f"stale request: seq {msg.seq} is older than {last[0]}")
            return
        if last is not None and last[0] == msg.seq:
            # Started before (by us or an earlier leader): go on from where the cluster is.
            goal = m.voters if m.joint else (m.voters - set(change.remove)) | set(change.add)
        else:
            try:
                goal = m.target(change)
            except ChangeError as exc:
                self.reply(msg, ReplyStatus.ERROR, str(exc))
                return
        self.change = ChangeInFlight(key, goal, frozenset(change.add) - m.voters, msg)
        self.maybe_advance_change()

    def busy_with(self) -> str:
        """What this leader is doing that a second change must wait for, in words."""
        if self.transfer_to is not None:
            return f"transferring leadership to {self.transfer_to}"
        goal = ",".join(sorted(self.change.goal)) if self.change is not None else "?"
        return f"a membership change to voters={goal} is in progress"

    def maybe_advance_change(self) -> None:
        """Leader: take the change's next step if it may (module doc, steps 1-4)."""
        ch = self.change
        m = self.membership
        if ch is None or m is None or self.role != LEADER or not self.may_propose_config():
            return
        learner_step = False
        if m.joint:
            nxt = Membership(m.voters, learners=m.learners)  # leave the joint configuration
        elif stale := m.learners & ch.drop:
            nxt = Membership(m.voters, learners=m.learners - stale)
        elif missing := ch.adding - m.members:
            nxt = Membership(m.voters, learners=m.learners | missing)
            learner_step = True
        elif not self.learners_caught_up(ch, m):
            return
        elif m.voters != ch.goal:
            nxt = self.next_voters(m, ch.goal)
            ch.deadline = _NEVER  # promoted: nothing left to catch up
        else:
            self.finish_change()
            return
        self.propose_config(nxt, ch.key)
        if learner_step:
            ch.catch_up_index = self.last_proposed()
            ch.deadline = self.now + CATCH_UP_TIMEOUTS * self.config.election_timeout_ms[1]

    def learners_caught_up(self, ch: ChangeInFlight, m: Membership) -> bool:
        """Whether every learner the change adds holds what the leader held when it was
        added (a change resumed by a new leader measures from when it resumed)."""
        learners = ch.adding & m.learners
        if not learners:
            return True
        if not ch.catch_up_index:
            ch.catch_up_index = self.last_proposed()
            ch.deadline = self.now + CATCH_UP_TIMEOUTS * self.config.election_timeout_ms[1]
        return all((pr := self.progress.get(p)) is not None and pr.match >= ch.catch_up_index
                   for p in learners)

    def heard_progress(self, peer: NodeId) -> None:
        """Leader: ``peer`` holds more of the log; a learner may be caught up, a transfer
        target ready for TimeoutNow."""
        if self.transfer_to == peer:
            self.maybe_send_timeout_now()
        if self.change is not None and peer in self.change.adding:
            self.maybe_advance_change()

    def finish_change(self) -> None:
        """The final configuration is committed: answer OK with it; a leader it leaves out
        hands over."""
        ch, self.change = self.change, None
        if ch is not None and ch.request is not None:
            self.reply(ch.request, ReplyStatus.OK, self.membership_text)
        if self.membership is not None and not self.membership.is_voter(self.id):
            self.hand_over()

    def fail_change(self, why: str) -> None:
        """Answer the change ERROR, then drop the learners it added (nobody waits for that)."""
        ch, m = self.change, self.membership
        if ch is None or m is None:
            return
        if ch.request is not None:
            self.reply(ch.request, ReplyStatus.ERROR, why)
        self.change = ChangeInFlight(ch.key, m.voters, frozenset(), None,
                                     drop=ch.adding & m.learners)
        self.maybe_advance_change()

    def abandon_change(self, leader: NodeId | None) -> None:
        """On losing leadership: the operator retries at the new leader (same seq, so safe)."""
        if self.change is not None and self.change.request is not None:
            self.redirect(self.change.request, leader)
        self.change = None
        if self.transfer_request is not None:
            self.redirect(self.transfer_request, leader)
        self.transfer_to = self.transfer_request = None
        self.transfer_deadline = _NEVER
        self.transfer_sent = self.transfer_steps_down = False

    def handle_transfer(self, msg: ConfigChange, target: NodeId) -> None:
        """``transfer n3``: hand leadership to a voter (module doc)."""
        m = self.membership
        assert m is not None
        if target == self.id:
            self.reply(msg, ReplyStatus.OK, self.membership_text)
        elif not m.is_voter(target):
            self.reply(msg, ReplyStatus.ERROR, f"{target} is not a voter ({m})")
        elif self.transfer_to == target:
            self.transfer_request = msg  # a retry
        elif self.change is not None or self.transfer_to is not None:
            self.reply(msg, ReplyStatus.ERROR, f"{BUSY}: {self.busy_with()}; retry later")
        else:
            self.start_transfer(target, msg, step_down=False)

    def start_transfer(self, target: NodeId, request: ConfigChange | None, *,
                       step_down: bool) -> None:
        """Stop taking commands, end the lease, and send TimeoutNow once ``target`` is caught
        up; give up after an election timeout."""
        self.transfer_to = target
        self.transfer_request = request
        self.transfer_deadline = self.now + self.config.election_timeout_ms[1]
        self.transfer_sent = False
        self.transfer_steps_down = step_down
        self.lease_until = -_NEVER
        self.maybe_send_timeout_now()

    def maybe_send_timeout_now(self) -> None:
        """TimeoutNow to the transfer's target once it holds our whole log."""
        target = self.transfer_to
        if target is None or self.transfer_sent:
            return
        pr = self.progress.get(target)
        if pr is None or pr.match < self.last_proposed():
            return  # replication goes on; this is called again as the target catches up
        self.transfer_sent = True
        self.send(TimeoutNow(src=self.id, dst=target, term=self.role_term()[1]))
        if self.transfer_request is not None:
            self.reply(self.transfer_request, ReplyStatus.OK, self.membership_text)
            self.transfer_request = None
        if self.transfer_steps_down:
            self.become_follower(target)

    def abort_transfer(self, why: str) -> None:
        """Give a transfer up and lead on (a hand-over tries again at the next heartbeat)."""
        if self.transfer_request is not None:
            self.reply(self.transfer_request, ReplyStatus.ERROR, why)
        hand_over = self.transfer_steps_down
        self.transfer_to = self.transfer_request = None
        self.transfer_deadline = _NEVER
        self.transfer_sent = self.transfer_steps_down = False
        if hand_over and self.role == LEADER:
            self.hand_over()

    def hand_over(self) -> None:
        """A leader its committed configuration leaves out: TimeoutNow to the most up to
        date remaining voter, then step down (thesis §3.10, §4.2.2)."""
        voters = [p for p in self.voting_others if p in self.progress]
        if not voters:
            self.become_follower(None)
            return
        best = max(voters, key=lambda p: self.progress[p].match)  # ties: the first by id
        self.start_transfer(best, None, step_down=True)

    def handle_timeout_now(self, msg: TimeoutNow) -> None:
        """Leadership transfer, the target's side (thesis §3.10): campaign at once, without
        pre-vote, telling voters the leader asked for it."""
        if self.role != LEADER:
            self.campaign(transfer=True)

    # -- commitment ----------------------------------------------------------------------

    def own_copy(self) -> int:
        """How far the leader's own copy counts towards a majority: all of it, or with
        ``async_persist`` only what is durable (thesis §10.2.1)."""
        return self.durable_last if self.async_persist else self.last_proposed()

    def wrote_own_copy(self) -> None:
        """The leader has just put entries up to ``last_proposed()`` in this drain's records:
        count them once :meth:`persisted` says so, or at once (a cluster of one commits)."""
        if self.async_persist:
            self.unsynced.append((self.ready_seq + 1, self.last_proposed()))
        elif self.solo:
            self.advance_commit_index()

    def persisted(self, seq: int) -> None:
        """Our writes up to drain ``seq`` are durable: count our own copy up to there."""
        last = 0
        while self.unsynced and self.unsynced[0][0] <= seq:
            last = self.unsynced.popleft()[1]
        if self.role == LEADER and last > self.durable_last:
            self.durable_last = last
            self.advance_commit_index()

    def set_commit(self, index: int, *, persist: bool = True) -> bool:
        """Raise the commit index and apply everything up to it, in order; True if raised."""
        if index <= self.commit_index:
            return False
        self.commit_index = index
        if persist:
            self.persist(self.commit_record(index))
        while self.applied < index:
            self.applied += 1
            self.apply_entry(self.applied, self.command_at(self.applied))
        if self.reads:
            self.maybe_serve_reads()
        if self.config_commit_pending and index >= self.membership_index:
            self.membership_committed()
        if self.change is not None:
            self.maybe_advance_change()
        return True


@dataclass(frozen=True, slots=True)
class PendingRead:
    """A GET the leader took off the log: it is answered once heartbeat round ``beat`` is
    acknowledged by a majority and the state machine has applied up to ``index``."""

    request: ClientRequest
    index: int  # the commit index when the read arrived (the thesis's readIndex)
    beat: int  # the first round sent after it arrived


def is_read(command: str) -> bool:
    """Whether a client's command is a GET (a malformed one is not: it goes through the log
    to be applied as the error every replica agrees on)."""
    try:
        return parse(command).name == "GET"
    except CommandError:
        return False
