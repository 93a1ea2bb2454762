"""Safety checked continuously while a cluster runs, for both algorithms.

The simulator calls the hooks of a :class:`Checker` after every node's output is drained;
nothing here influences the run. Each violation carries the (simulated) time, the nodes and
the entries involved, so a failing seed can be replayed and read.

:class:`SharedChecker` holds the checks that mean the same for Raft and Multi-Paxos:

- applied-prefix agreement: every node applies the same command at the same index, in order,
  except that a node may skip ahead to the index its snapshot covers (it installed the
  leader's snapshot, or restarted from a compacted log: ``Status.snapshot_index``);
- snapshot agreement: a node that skipped ahead holds exactly the state (data and
  exactly-once sessions, by ``KVStore.digest``) of a replica that applied the agreed prefix
  up to its applied index, rebuilt from what the other nodes applied
  (:class:`~consensus.check.snapshots.ReferenceState`); at the end, the final state of every
  live node whose state came from a snapshot is compared the same way;
- terms (ballot rounds) and commit indexes never go backwards, across restarts too (with a
  disk that takes time, a crash may take them back to the last ones written, never further:
  nothing that depended on an unwritten term left the node, and the commit index is
  volatile state written without an fsync of its own);
- every acknowledged client request is in the final applied sequence (checked at the end).

Membership (configuration-aware checks). The configurations decided so far are read from the
agreed sequence itself (``CONFIG`` entries, :class:`~consensus.check.configs.ConfigHistory`),
which is sound: only what every replica applies in the same place can count as decided (the
configurations the nodes report in their statuses are not: a lagging or removed node goes on
reporting an old one, which proves nothing about what the cluster decided). Votes
are read from what the voters made durable (``record_vote``: Raft's ``HardState``, a Paxos
``Promised``), a superset of the votes a candidate can have counted, since a vote leaves only
after it is durable; so a leader whose durable voters are not a quorum counted a vote that
does not exist or counted with the wrong configuration. When a node becomes leader:

- elected-without-quorum (Raft): its voters (itself included) must be a quorum of the
  configuration it acts on (``Status.config``; both halves while joint);
- proposed-without-promises (Multi-Paxos, checked when an acceptor accepts rather than at
  the election, since a leader may lead before it asked a new configuration's acceptors):
  the ballot's promisers must be a quorum of every configuration governing the accepted
  slots (configurations take effect ``alpha`` slots after their slot);
- leader-config-disjoint (Raft): the configuration it acts on must share a node with every
  quorum of the latest decided one. A correct leader holds every decided entry, so it acts
  on that configuration or on one written after it, which joint consensus and single-server
  steps make intersect; a leader elected under a configuration that cannot hear of a decided
  one is the single-server bug (a change started before the leader committed in its term).

and when a configuration is decided:

- config-change-disjoint (Raft): two configurations decided one after the other must have
  intersecting quorums (joint consensus's C_old -> C_old,new -> C_new, or one voter added or
  removed at a time). Switching two voters at once breaks it the moment it is decided, before
  any interleaving has to show the split brain. Multi-Paxos needs no such rule: a slot is
  governed by exactly one configuration (the one decided ``alpha`` slots before), so quorums
  that decide the same slot always come from the same configuration.

What counts as decided is each algorithm checker's own, with the configuration governing the
index: Raft's durable majority of the applying node's configuration (both halves while
joint), Multi-Paxos's quorum of the configuration governing the slot. At most one leader per
term (Raft's election safety) is keyed by the term alone, so it holds across old, joint and
new configurations, removed and joining nodes included. Exactly-once survives changes and
snapshots because the sessions are part of the state the snapshot agreement compares.

Each algorithm adds its own (one leader per term, log matching, one value per slot...) in a
subclass in ``check/raft.py`` / ``check/paxos.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consensus.check.configs import ConfigHistory, config_text, quorums_intersect
from consensus.check.snapshots import ReferenceState
from consensus.membership import ChangeError, Membership
from consensus.messages import ClientReply, Command, NodeId, ReplyStatus
from consensus.node import LEADER, Node, Ready, Status, is_read


@dataclass(frozen=True, slots=True)
class Violation:
    time_ms: float
    check: str
    nodes: tuple[NodeId, ...]
    detail: str

    def __str__(self) -> str:
        return f"T={self.time_ms / 1000:.3f}s {self.check} [{', '.join(self.nodes)}]: {self.detail}"


class Checker:
    """Observes a running cluster; collects :class:`Violation` s. Subclass per algorithm."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        # Set by a driver whose writes take time (Simulation(disk_ms > 0)): then a Ready's
        # ``persist`` is only being written, and after_durable says when it is on disk.
        self.records_when_durable = False
        # Set by a driver whose nodes answer GETs without a log entry (Config.read_path):
        # such a read is checked for linearizability, never looked for in the applied state.
        self.reads_off_log = False

    def violation(self, t: float, check: str, nodes: tuple[NodeId, ...], detail: str) -> None:
        self.violations.append(Violation(t, check, nodes, detail))

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        """Called after ``node`` produced ``ready`` at time ``t`` (``status`` is current)."""

    def after_durable(self, t: float, node: Node, records: list[Any]) -> None:
        """With ``records_when_durable``: ``node``'s ``records`` are durable as of ``t``."""

    def on_crash(self, t: float, node_id: NodeId) -> None:
        """Called when a node crashes (its volatile state is gone)."""

    def on_client_reply(self, t: float, reply: ClientReply, command: Command) -> None:
        """Called when a client receives a reply to ``command``."""

    def finish(self, t: float, nodes: Mapping[NodeId, Node | None]) -> None:
        """Called once at the end with the live nodes (``None`` for a crashed one)."""


class SharedChecker(Checker):
    """The checks both algorithms must pass; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        # The one agreed sequence: index -> command, as first applied by any node.
        self.agreed: dict[int, Command | None] = {}
        self.applied_upto: dict[NodeId, int] = {}  # per node life: last index applied
        self.high_term: dict[NodeId, int] = {}  # survives crashes: durable terms never regress
        self.high_commit: dict[NodeId, int] = {}
        self.durable_commit: dict[NodeId, int] = {}  # with records_when_durable
        self.durable_term: dict[NodeId, int] = {}
        self.acked: dict[tuple[str, int], tuple[float, Command]] = {}
        # Membership: set from the first node seen (its configuration, or its peers).
        self.configs: ConfigHistory | None = None
        # Index distance from a configuration's decision to its effect: 1 (Raft: in force
        # once written) or Multi-Paxos's alpha; and whether consecutive ones must intersect.
        self.config_delay = 1
        self.configs_must_intersect = True
        # False once a configuration was decided after entries never seen applied.
        self.configs_known = True
        self._contiguous = 0  # agreed holds every index up to here (advanced when needed)
        # (term or ballot round, candidate) -> the nodes that durably voted for it.
        self.votes: dict[tuple[int, NodeId], set[NodeId]] = {}
        self.leader_checked: dict[NodeId, int] = {}  # node -> last term it was checked leader
        # (round, proposer, configuration position) whose promises were checked
        self._licensed: set[tuple[int, NodeId, int]] = set()
        # Configuration texts (or peer tuples) already parsed: a node reports the same one on
        # every drain.
        self._parsed: dict[str | tuple[NodeId, ...], Membership] = {}
        self.reference = ReferenceState(self.agreed)
        self.restored: list[tuple[float, NodeId, int, str]] = []  # (t, node, index, digest)
        self.restores_checked = 0  # snapshot restores compared with the agreed prefix
        self.from_snapshot: set[NodeId] = set()  # nodes whose state (this life) came from one

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        # Runs after every drain of every node: kept lean (an identity test before each ==,
        # since replicas mostly share the very same command objects in the simulator; what
        # is rare, such as a snapshot or a new leader, is tested once and handled elsewhere).
        nid = node.id
        upto = self.applied_upto.get(nid, 0)
        if ready.applied:
            skipped = False
            agreed = self.agreed
            for a in ready.applied:
                if a.index != upto + 1:
                    if upto < a.index - 1 <= status.snapshot_index:
                        skipped = True  # restored from a snapshot: its state is compared below
                    else:
                        self.violation(t, "applied-in-order", (nid,),
                                       f"applied index {a.index} after {upto}")
                upto = a.index
                command = a.command
                first = agreed.setdefault(upto, command)
                if first is not command and first != command:
                    self.violation(t, "applied-prefix-agreement", (nid,),
                                   f"index {a.index}: applied {a.command} but {first} "
                                   f"was applied elsewhere")
                elif command is not None and command.text[:6] == "CONFIG":
                    self._config_decided(t, node, status, upto, command)
            self.applied_upto[nid] = upto
            if skipped:
                self._restored(t, node)
        if status.applied_index > upto:
            self._skipped_ahead(t, node, status, upto)
        term = status.term
        prev_term = self.high_term.get(nid, 0)
        if term < prev_term:
            self.violation(t, "term-monotonic", (nid,), f"term went {prev_term} -> {term}")
        elif term != prev_term:
            self.high_term[nid] = term
        commit = status.commit_index
        prev_commit = self.high_commit.get(nid, 0)
        if commit < prev_commit:
            self.violation(t, "commit-monotonic", (nid,),
                           f"commit index went {prev_commit} -> {commit}")
        elif commit != prev_commit:
            self.high_commit[nid] = commit
        if status.role == LEADER and self.leader_checked.get(nid) != term:
            self.leader_checked[nid] = term
            self._check_new_leader_quorum(t, node, status)

    def _skipped_ahead(self, t: float, node: Node, status: Status, upto: int) -> None:
        """The node's applied index is ahead of anything it applied: it installed a snapshot
        (and applied nothing since), or it skipped entries."""
        if status.applied_index <= status.snapshot_index:
            self._restored(t, node)
        else:
            self.violation(t, "applied-in-order", (node.id,),
                           f"applied index is {status.applied_index} but only entries up to "
                           f"{upto} were applied, and no snapshot covers the gap (snapshot "
                           f"index {status.snapshot_index})")
        self.applied_upto[node.id] = status.applied_index

    def _restored(self, t: float, node: Node) -> None:
        self.from_snapshot.add(node.id)
        self.restored.append((t, node.id, node.kv.applied, node.kv.digest()))
        self._compare_restored()

    # -- membership ------------------------------------------------------------------------

    def config_history(self, node: Node, status: Status) -> ConfigHistory:
        """The decided configurations, from the initial one (every node's ``peers``, joining
        ones included: see ``Node``), made on first use."""
        if self.configs is None:
            self.configs = ConfigHistory(Membership.of(node.peers))
            if getattr(node, "algorithm", "") == "paxos":
                self.config_delay = node.config.alpha
                self.configs_must_intersect = False
        return self.configs

    def acting_config(self, node: Node, status: Status) -> Membership:
        """The configuration ``node`` acts on now (its peers when it reports none)."""
        key = status.config or node.peers
        config = self._parsed.get(key)
        if config is None:
            config = (Membership.from_text(key) if isinstance(key, str)
                      else Membership.of(key))
            self._parsed[key] = config
        return config

    def record_vote(self, record: Any) -> tuple[int, NodeId] | None:
        """``(term or ballot round, candidate)``: the vote a durable record binds its node to,
        if any (asked only of records that carry a term, see ``record_term``)."""
        return None

    def note_vote(self, nid: NodeId, vote: tuple[int, NodeId]) -> None:
        """``nid`` durably voted for ``vote``'s candidate in that term or round."""
        self.votes.setdefault(vote, set()).add(nid)

    def _config_decided(self, t: float, node: Node, status: Status, index: int,
                        command: Command) -> None:
        nid = node.id
        configs = self.config_history(node, status)
        text = config_text(command)
        if text is None:
            return
        agreed = self.agreed
        while self._contiguous + 1 in agreed:
            self._contiguous += 1
        if self._contiguous < index:
            # Entries before it were never seen applied (every node restored from a snapshot:
            # a driver that starts watching late), so configurations may be missing: the
            # history, and what rests on it, is no longer known.
            self.configs_known = False
        try:
            change = configs.decided(index, text)
        except ChangeError as exc:
            self.violation(t, "config-malformed", (nid,), f"index {index}: {exc}")
            return
        if change is None or not self.configs_must_intersect or not self.configs_known:
            return
        previous, config = change
        if not quorums_intersect(previous, config):
            self.violation(t, "config-change-disjoint", (nid,),
                           f"index {index}: configuration {config} was decided right after "
                           f"{previous}, and a quorum of each can decide without the other")

    def _check_new_leader_quorum(self, t: float, node: Node, status: Status) -> None:
        configs = self.config_history(node, status)
        nid, term = node.id, status.term
        voters = self.votes.get((term, nid), set()) | {nid}
        if self.configs_must_intersect:
            config = self.acting_config(node, status)
            _, latest = configs.latest
            if self.configs_known and not quorums_intersect(config, latest):
                self.violation(t, "leader-config-disjoint", (nid,),
                               f"leader of term {term} acts on {config}, which shares no "
                               f"quorum with the decided configuration {latest}")
        else:
            # Multi-Paxos: a leader may lead before it holds promises for every slot it will
            # use (it asks a new configuration's acceptors before proposing in its slots), so
            # its election proves nothing yet; check_proposer_votes checks its proposals.
            return
        if not config.has_quorum(voters):
            self.violation(t, "elected-without-quorum", (nid,),
                           f"leader of term {term} was elected by {', '.join(sorted(voters))},"
                           f" not a quorum of {config}")

    def check_proposer_votes(self, t: float, nid: NodeId, term: int, proposer: NodeId,
                             first: int, last: int) -> None:
        """Multi-Paxos: ``nid`` accepted ``proposer``'s values at round ``term`` for slots
        ``first..last``. Phase 1 must have come first: promises for that ballot from a quorum
        of each configuration governing those slots (Phase 2a needs Phase 1b from a quorum of
        the acceptors that will choose). Checked once per ballot and configuration."""
        configs = self.configs
        if configs is None or not self.configs_known:
            return
        if not configs.changed:
            lo = hi = 0  # the common case: one configuration, one set lookup per run
        else:
            lo = configs.position(first, self.config_delay)
            hi = configs.position(last, self.config_delay)
        licensed = self._licensed
        for position in range(lo, hi + 1):
            key = (term, proposer, position)
            if key in licensed:
                continue
            licensed.add(key)
            config = configs.at_position(position)
            voters = self.votes.get((term, proposer), set()) | {proposer}
            if not config.has_quorum(voters):
                self.violation(t, "proposed-without-promises", (proposer, nid),
                               f"ballot {term}.{proposer} had slots {first}..{last} accepted "
                               f"under {config} with promises only from "
                               f"{', '.join(sorted(voters))}")

    # -- snapshots -------------------------------------------------------------------------

    def _diverged(self) -> bool:
        """Whether replicas applied different commands somewhere: then there is no one agreed
        prefix to rebuild a reference state from (that violation is reported already)."""
        return any(v.check == "applied-prefix-agreement" for v in self.violations)

    def _compare_restored(self) -> None:
        """Compare each restored node's state with the agreed prefix, once it is known."""
        if self._diverged():
            self.restored.clear()
            return
        waiting = []
        for t, nid, index, digest in sorted(self.restored, key=lambda r: r[2]):
            want = self.reference.digest_at(index)
            if want is None:
                waiting.append((t, nid, index, digest))
                continue
            self.restores_checked += 1
            if want != digest:
                self.violation(t, "snapshot-state-agreement", (nid,),
                               f"after restoring from a snapshot it holds at index {index} a "
                               f"state that differs from applying the agreed entries 1..{index}")
        self.restored = waiting

    def record_term(self, record: Any) -> int | None:
        """The term (ballot round) a durable record binds this node to, if any."""
        return None

    def record_commit(self, record: Any) -> int | None:
        """The commit index a durable record keeps across a restart, if any."""
        return None

    def after_durable(self, t: float, node: Node, records: list[Any]) -> None:
        nid = node.id
        for rec in records:
            commit = self.record_commit(rec)
            if commit is not None:
                self.durable_commit[nid] = max(self.durable_commit.get(nid, 0), commit)
            term = self.record_term(rec)
            if term is not None:
                self.durable_term[nid] = max(self.durable_term.get(nid, 0), term)
                vote = self.record_vote(rec)
                if vote is not None:
                    self.note_vote(nid, vote)

    def on_crash(self, t: float, node_id: NodeId) -> None:
        self.applied_upto[node_id] = 0  # the state machine is rebuilt from the log on restart
        self.from_snapshot.discard(node_id)
        if self.records_when_durable:
            self.high_commit[node_id] = self.durable_commit.get(node_id, 0)
            self.high_term[node_id] = self.durable_term.get(node_id, 0)

    def on_client_reply(self, t: float, reply: ClientReply, command: Command) -> None:
        if reply.status in (ReplyStatus.OK, ReplyStatus.ERROR):
            if self.reads_off_log and is_read(command.text):
                return  # answered without a log entry (read_index, lease): nothing to lose
            self.acked[(command.client_id, command.seq)] = (t, command)

    def finish(self, t: float, nodes: Mapping[NodeId, Node | None]) -> None:
        """Final states agree with the agreed prefix, and every acknowledged request is in the
        final state of every caught-up node."""
        live = [n for n in nodes.values() if n is not None]
        if not live:
            return
        self._compare_restored()
        self._check_final_states(t, live)
        self._check_acknowledged(t, live)

    def _check_final_states(self, t: float, live: list[Node]) -> None:
        """The whole final state of each live node that restored from a snapshot equals the
        agreed prefix it applied. (A node that applied every entry itself was checked entry
        by entry; replaying the run for it too would cost a replica's worth of work.)"""
        if self._diverged():
            return
        restored = [n for n in live if n.id in self.from_snapshot]
        for node in sorted(restored, key=lambda n: n.kv.applied):
            want = self.reference.digest_at(node.kv.applied)
            if want is not None and want != node.kv.digest():
                self.violation(t, "applied-state-agreement", (node.id,),
                               f"its state after {node.kv.applied} entries differs from "
                               f"applying the agreed entries 1..{node.kv.applied}")

    def _check_acknowledged(self, t: float, live: list[Node]) -> None:
        furthest = max(n.kv.applied for n in live)
        for node in live:
            if node.kv.applied != furthest:
                continue
            sessions = node.kv.sessions
            for key in sorted(self.acked):
                last = sessions.get(key[0])
                if last is None or last[0] < key[1]:
                    when, command = self.acked[key]
                    self.violation(t, "acknowledged-write-lost", (node.id,),
                                   f"{command} was acknowledged at T={when / 1000:.3f}s but is "
                                   f"not in the node's final state")
