"""Safety checked continuously while a cluster runs, for both algorithms.

The simulator calls the hooks of a :class:`Checker` after every node's output is drained;
nothing here influences the run. Each violation carries the (simulated) time, the nodes and
the entries involved, so a failing seed can be replayed and read.

:class:`SharedChecker` holds the checks that mean the same for Raft and Multi-Paxos:

- applied-prefix agreement: every node applies the same command at the same index;
- terms (ballot rounds) and commit indexes never go backwards, across restarts too (with a
  disk that takes time, a crash may take them back to the last ones written, never further:
  nothing that depended on an unwritten term left the node, and the commit index is
  volatile state written without an fsync of its own);
- every acknowledged client request is in the final applied sequence (checked at the end).

Each algorithm adds its own (one leader per term, log matching, one value per slot...) in a
subclass in ``check/raft.py`` / ``check/paxos.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consensus.messages import ClientReply, Command, NodeId, ReplyStatus
from consensus.node import Node, Ready, Status, is_read


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

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        # Runs after every drain of every node: kept lean (an identity test before each ==,
        # since replicas mostly share the very same command objects in the simulator).
        nid = node.id
        if ready.applied:
            upto = self.applied_upto.get(nid, 0)
            agreed = self.agreed
            for a in ready.applied:
                if a.index != upto + 1:
                    self.violation(t, "applied-in-order", (nid,),
                                   f"applied index {a.index} after {upto}")
                upto = a.index
                command = a.command
                first = agreed.setdefault(upto, command)
                if first is not command and first != command:
                    self.violation(t, "applied-prefix-agreement", (nid,),
                                   f"index {a.index}: applied {a.command} but {first} "
                                   f"was applied elsewhere")
            self.applied_upto[nid] = upto
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

    def on_crash(self, t: float, node_id: NodeId) -> None:
        self.applied_upto[node_id] = 0  # the state machine is rebuilt from the log on restart
        if self.records_when_durable:
            self.high_commit[node_id] = self.durable_commit.get(node_id, 0)
            self.high_term[node_id] = self.durable_term.get(node_id, 0)

    def on_client_reply(self, t: float, reply: ClientReply, command: Command) -> None:
        if reply.status in (ReplyStatus.OK, ReplyStatus.ERROR):
            if self.reads_off_log and is_read(command.text):
                return  # answered without a log entry (read_index, lease): nothing to lose
            self.acked[(command.client_id, command.seq)] = (t, command)

    def finish(self, t: float, nodes: Mapping[NodeId, Node | None]) -> None:
        """Every acknowledged request must be in the final state of every caught-up node."""
        live = [n for n in nodes.values() if n is not None]
        if not live:
            return
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
