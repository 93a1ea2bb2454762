"""The tables behind the side-by-side code page (``consensus-lab code``).

``raft/node.py`` and ``paxos/node.py`` have the same sections in the same order (DESIGN.md,
"Side by side"); this module says which method of one sits beside which method of the other,
which TLA+ action each implements, and which experiment of the library shows the difference.
The page generator (``code_page.py``) reads the code itself; only these pairings are written by
hand, and ``tests/test_code_page.py`` fails when a method of either file has no row here.

TLA+ names: Raft's are Ongaro's raft.tla actions. Multi-Paxos's are Lamport's Paxos.tla
phases (Phase1a/1b/2a/2b) where a method is one, and otherwise the MultiPaxos-SMR action the
docstring cites (``HandlePrepareReplies``, ``TakeNewRequest``, ...); steps no spec has (pre-vote,
a Nack, following a leader) get a plain name of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("raft", "paxos")


@dataclass(frozen=True, slots=True)
class Side:
    """One column's part of a row: methods of one file, and the TLA+ action of the first."""

    methods: tuple[str, ...] = ()
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """Methods that do the same job in both algorithms, shown side by side."""

    section: str  # the banner the methods sit under ("inbound"); see ``code_source``
    label: str  # the job, in words
    raft: Side
    paxos: Side
    topic: str | None = None  # a key of TOPICS: the experiment that shows this difference
    note: str = ""  # what differs, in one sentence (shown above the code)


def _s(*methods: str, action: str | None = None) -> Side:
    return Side(methods, action)


# Sections before the first banner: the module doc, its imports and names, the Progress class,
# the node class's header and state. Then the banners, in file order.
PREAMBLE = ("theory of operation", "imports and names", "progress", "the node and its state")

ROWS: tuple[Row, ...] = (
    Row("restart", "rebuild durable state after a crash",
        _s("restore", action="Restart"), _s("restore", action="Restart"), "restart"),
    Row("role changes", "follow a leader (or look for one)",
        _s("become_follower", action="BecomeFollower"),
        _s("become_follower", action="BecomeFollower")),
    Row("role changes", "ask first whether a majority would elect us",
        _s("become_pre_candidate", action="PreVote"),
        _s("become_pre_candidate", action="PreVote"), "pre_vote"),
    Row("role changes", "start an election",
        _s("become_candidate", action="Timeout"), _s("become_candidate", action="Phase1a"),
        "elections", "Raft asks for votes on its log's last (index, term); Multi-Paxos asks for "
        "promises and for every value accepted from its first unchosen slot on."),
    Row("role changes", "take the lead",
        _s("become_leader", action="BecomeLeader"), _s("become_leader", action="Phase2a"),
        "elections", "A Raft leader already holds every committed entry (its log won the vote) "
        "and appends a no-op; a Multi-Paxos leader first adopts the highest-ballot value of "
        "each open slot from the promises and fills gaps with no-ops."),
    Row("role changes", "the next ballot, and whose promises Phase 1 needs", _s(),
        _s("rank_of", "next_round", "phase1_configs", "phase1_quorum"), None,
        "Multi-Paxos needs a quorum of every configuration that governs a slot of the window "
        "(alpha slots from its first unchosen one); Raft's joint configuration does this."),
    Row("inbound", "one check for every role, then dispatch",
        _s("step", action="Receive"), _s("step", action="Receive"), "stale"),
    Row("inbound", "vote requests from a server the configuration left out",
        _s("left_out"), _s(), None,
        "A Raft server removed while cut off never wins again (the new voters hold the entry "
        "that removed it), so its vote requests are dropped before the term check (the "
        "removed-server problem, thesis §4.2.3). A Multi-Paxos proposer need not be an "
        "acceptor and can win Phase 1; it hands over once it learns it is out (below)."),
    Row("inbound", "a newer term or ballot",
        _s("update_term", action="UpdateTerm"), _s("update_ballot", action="UpdateBallot"),
        "stale"),
    Row("inbound", "a message from the past",
        _s("handle_stale_message", action="DropStaleResponse"),
        _s("handle_stale_message", action="RejectStale"), "stale"),
    Row("inbound", "a new client command",
        _s("take_new_request", action="ClientRequest"),
        _s("take_new_request", action="TakeNewRequest")),
    Row("inbound", "vote / promise",
        _s("handle_request_vote", "entries_for_candidate", action="HandleRequestVoteRequest"),
        _s("handle_prepare", "log_rank", action="Phase1b"), "elections",
        "A Raft voter refuses a candidate whose log is behind its own; a Multi-Paxos acceptor "
        "promises any higher ballot and sends what it accepted, so the candidate catches up."),
    Row("inbound", "tally the votes / promises",
        _s("handle_request_vote_reply", "maybe_keep_vote_log", "adopt_log", "maybe_win_election",
           action="HandleRequestVoteResponse"),
        _s("handle_promise", "maybe_win_pre_vote", "maybe_win_election",
           action="HandlePrepareReplies"), "elections"),
    Row("inbound", "replicate",
        _s("handle_append_entries", action="HandleAppendEntriesRequest"),
        _s("handle_accept", action="Phase2b"), "replication",
        "A Raft follower refuses entries that do not extend a matching prefix and truncates "
        "its log at a conflict; a Multi-Paxos acceptor accepts each slot on its own."),
    Row("inbound", "acknowledgements",
        _s("handle_append_entries_reply", action="HandleAppendEntriesResponse"),
        _s("handle_accepted", action="HandleAcceptReplies"), "replication"),
    Row("inbound", "learn chosen values that were missed", _s(),
        _s("handle_commit", action="HandleCommitNotice"), "catch-up",
        "Raft needs no such message: a lagging follower gets the entries again through "
        "AppendEntries, whose consistency check walks back to the first gap."),
    Row("inbound", "preempted by a higher ballot", _s(),
        _s("handle_nack", "maybe_promise", action="Preempted"), "stale",
        "Raft's refusal carries the newer term, which step() already handles; a Paxos Nack "
        "carries the promised ballot."),
    Row("inbound", "a promise to a leader: Phase 1 for a new configuration", _s(),
        _s("add_promiser")),
    Row("inbound", "receive a snapshot, chunk by chunk",
        _s("handle_install_snapshot", action="InstallSnapshot"),
        _s("handle_learn", action="HandleLearn"), "catch-up",
        "A node whose next entry / slot the leader compacted away gets the state machine "
        "instead (Raft paper §7), and goes on after it. Multi-Paxos's Learn is also sent by an "
        "acceptor answering a Prepare, and its learner asks for each next chunk, so the "
        "sender keeps no state."),
    Row("inbound", "a snapshot chunk acknowledged",
        _s("handle_install_snapshot_reply", action="HandleInstallSnapshotResponse"),
        _s("handle_learned", "heard_peer_commit", action="HandleLearned"), "catch-up",
        "A Multi-Paxos acceptor's commit index, from an Accepted or a Learned, is what says a "
        "learner caught up; Raft's match index is."),
    Row("commitment", "commit what a majority holds",
        _s("advance_commit_index", action="AdvanceCommitIndex"),
        _s("advance_commit_index", "advance_commit_by_config", "holder_ids", "holders",
           action="Chosen"), "quorum",
        "Raft commits only entries of its own term by counting (§5.4.2); a Multi-Paxos slot "
        "accepted by a majority at one ballot is chosen, whatever ballot first proposed it."),
    Row("commitment", "committed in the leader's own term (ReadIndex)",
        _s("committed_own_term"), _s("committed_own_term"), "read_path"),
    Row("commitment", "learn from the leader's commit index", _s(),
        _s("maybe_commit", "learn_chosen"), "catch-up"),
    Row("commitment", "what the shared commit loop asks",
        _s("command_at", "commit_record"), _s("command_at", "commit_record")),
    Row("commitment", "the leader's own copy",
        _s("append_entries_locally", "last_proposed"), _s("propose", "last_proposed"),
        "throughput"),
    Row("commitment", "configurations in the log (membership changes)",
        _s("write_log", "refresh_membership", "propose_config"),
        _s("apply_entry", "proposal_limit", "maybe_propose_more", "maybe_extend_phase1",
           "follow_config", "propose_config", "may_propose_config", "next_voters",
           "learners_caught_up"), None,
        "A Raft configuration is in force as soon as it is appended, committed or not (thesis "
        "§4.1), so a truncation can take one back; a Multi-Paxos one alpha slots after it is "
        "chosen, which caps how far a leader may propose ahead and is padded with no-ops."),
    Row("commitment", "log compaction: snapshot the state machine, drop the log before it",
        _s("take_snapshot", "load_snapshot", "compact_log", "snapshot_record", "held_entries"),
        _s("set_commit", "maybe_take_snapshot", "take_snapshot", "install_snapshot",
           "load_snapshot", "snapshot_record", "held_entries"), "catch-up",
        "A Multi-Paxos acceptor that compacted a slot a new proposer asks about sends its "
        "snapshot with its promise, and the proposer waits for it before it leads."),
    Row("outbound", "ask for votes / promises",
        _s("bcast_request_vote", action="RequestVote"), _s("bcast_prepare"), "elections"),
    Row("outbound", "replicate to everyone",
        _s("bcast_append", action="AppendEntries"), _s("bcast_accept")),
    Row("outbound", "heartbeat", _s("bcast_heartbeat"), _s("bcast_heartbeat"), "heartbeat"),
    Row("outbound", "a leader that is not a voter of its own slots hands over", _s(),
        _s("maybe_hand_over_removed"), None,
        "Checked at each heartbeat: a removed proposer that won a ballot anyway (no pre-vote, "
        "no check-quorum) sends TimeoutNow to the most up-to-date voter and steps down."),
    Row("outbound", "the pipeline", _s("maybe_send_append"), _s("maybe_send_accept"),
        "throughput"),
    Row("outbound", "a member added while leading; the last word to one removed",
        _s("new_progress", "send_heartbeat"), _s("new_progress", "send_heartbeat")),
    Row("outbound", "a snapshot chunk to a node behind the log's start",
        _s("maybe_send_snapshot"), _s()),
    Row("outbound", "one replication message", _s("send_append"), _s("send_accept")),
    Row("outbound", "answer a snapshot chunk", _s("send_snapshot_reply"), _s()),
    Row("outbound", "answer the leader",
        _s("send_append_reply"), _s("send_accepted", "accepted_through")),
    Row("outbound", "repair a lost message", _s(), _s("maybe_send_repair", "first_unacked"),
        "loss", "Raft repairs a gap through the follower's refusal; a Multi-Paxos acceptor "
        "accepts around it, so its leader resends the missing slots."),
    Row("outbound", "send chosen values to a lagging node", _s(),
        _s("maybe_send_commit", "send_learn", "send_learned"), "catch-up"),
    Row("observation", "the log's end", _s(), _s("last_index")),
    Row("observation", "what the drivers and the dashboard see",
        _s("role_term", "status", "log_tail"), _s("role_term", "status", "log_tail")),
)

# Where a section of the shared classes (Node, ConsensusNode in consensus/node.py) is shown
# when neither algorithm file has a banner of that name.
SHARED_SECTION_HOME = {
    "the driver's side": "the node and its state",
    "the algorithm's side": "the node and its state",
    "helpers for the algorithms": "outbound",
}

# Each difference -> the library experiment that shows it (its gallery report is linked).
# Only experiments that exist: tests/test_code_page.py checks every one against the library.
TOPICS: dict[str, str] = {
    "restart": "rolling-restarts",
    "elections": "constrained-election",
    "stale": "quiz4-stale-leader",
    # The old leader's uncommitted entries: truncated (Raft) or overwritten slot by slot.
    "replication": "minority-partition",
    # A restarted leader catches up: AppendEntries walking back vs Commit messages.
    "catch-up": "leader-crash",
    "quorum": "quiz1-quorum",
    "throughput": "load-sweep",
    "heartbeat": "quiz2-heartbeat",
    "loss": "flaky-network",
    # Variants (Config fields) -> experiment; a variant without a row is listed unlinked.
    "pre_vote": "quiz2-heartbeat",
    "check_quorum": "isolated-leader",
    "election": "constrained-election",
    "read_path": "stale-lease-read",
    "lease_drift": "stale-lease-read",
}

# Config fields that are shared timing or flow-control knobs, not a design choice: every other
# Config field is a variant, and the lines that read it are highlighted.
TUNING_KNOBS = frozenset({"heartbeat_ms", "election_timeout_ms", "max_batch", "max_inflight",
                          "snapshot_chunk_bytes"})

# Methods that must carry a TLA+ action: the handlers, role changes and steps of the protocol.
HANDLER_PREFIXES = ("handle_", "become_", "update_")
HANDLER_NAMES = frozenset({"step", "take_new_request", "advance_commit_index", "restore"})


def is_handler(method: str) -> bool:
    return method.startswith(HANDLER_PREFIXES) or method in HANDLER_NAMES
