"""Raft's own safety properties (Figure 3 of the extended paper), checked as the run goes.

- Election Safety: at most one leader per term.
- Log Matching: two logs holding an entry with the same index and term hold the same command
  there and agree on the entry before it (by induction, the same prefix).
- Leader Completeness: a newly elected leader holds every committed entry.
- No node ever overwrites an entry it knew to be committed.
- Nothing is applied before a quorum holds it durably (what "committed" means; with a
  disk that takes time, a leader's own unwritten copy does not count): a quorum of the
  configuration governing the entry, of one decided after it, or of the one the applying
  leader acts on (``SharedChecker.is_commit_quorum``); learners never count.
"""

from __future__ import annotations

from typing import Any

from consensus.check.invariants import SharedChecker
from consensus.messages import NodeId
from consensus.node import Node, Ready, Status
from consensus.quorum import majority
from consensus.raft.messages import CommitMark, HardState, LogAppend


class RaftChecker(SharedChecker):
    def __init__(self) -> None:
        super().__init__()
        self.leader_of_term: dict[int, NodeId] = {}
        # (index, term) -> (command, term of the entry before): Log Matching by induction.
        self.entries: dict[tuple[int, int], tuple[object, int]] = {}
        self.committed_terms: list[int] = [0]  # committed_terms[i]: term of committed entry i
        self.was_leader: dict[NodeId, int] = {}
        self.commit_of: dict[NodeId, int] = {}  # each node's commit index before this ready
        self.durable_terms: dict[NodeId, list[int]] = {}  # per node: index -> term, on disk
        self.proven = 0  # entries up to here were seen held durably by a majority

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        SharedChecker.after_ready(self, t, node, ready, status)  # (super() costs more, per drain)
        nid = node.id
        log = node.log  # type: ignore[attr-defined]
        if ready.persist:
            known_committed = self.commit_of.get(nid, 0)
            for rec in ready.persist:
                if isinstance(rec, LogAppend) and rec.entries:
                    self._check_append(t, nid, log, rec, known_committed)
            if not self.records_when_durable:
                self.after_durable(t, node, ready.persist)
        if ready.applied and ready.applied[-1].index > self.proven:
            self._check_durable_majority(t, node, ready, status)
        commit = status.commit_index
        self.commit_of[nid] = commit
        committed_terms = self.committed_terms
        if commit >= len(committed_terms):
            for i in range(len(committed_terms), commit + 1):
                committed_terms.append(log.term_at(i))
        if status.role == "leader" and self.was_leader.get(nid) != status.term:
            self.was_leader[nid] = status.term
            self._check_new_leader(t, nid, log, status.term)

    def record_term(self, record: Any) -> int | None:
        return record.term if isinstance(record, HardState) else None

    def record_vote(self, record: Any) -> tuple[int, NodeId] | None:
        # votedFor is durable before the vote is sent
        if isinstance(record, HardState) and record.voted_for is not None:
            return record.term, record.voted_for
        return None

    def record_commit(self, record: Any) -> int | None:
        return record.index if isinstance(record, CommitMark) else None

    def after_durable(self, t: float, node: Node, records: list[Any]) -> None:
        SharedChecker.after_durable(self, t, node, records)
        terms = self.durable_terms.setdefault(node.id, [0])
        for rec in records:
            if isinstance(rec, LogAppend) and rec.entries:
                first = rec.entries[0].index
                if first > len(terms):  # the log resumes after a snapshot: nothing held between
                    terms.extend([0] * (first - len(terms)))
                del terms[first:]  # a LogAppend drops the suffix from there
                terms.extend(e.term for e in rec.entries)

    def _check_durable_majority(self, t: float, node: Node, ready: Ready, status: Status
                                ) -> None:
        log = node.log  # type: ignore[attr-defined]
        configs = self.config_history(node, status)
        acting = self.acting_config(node, status)
        # Until the membership changes, counting holders is enough (and cheap); after, the
        # holders must be a quorum of a configuration that may govern the entry.
        plain = not configs.changed and acting is configs.initial
        need = majority(len(acting.voters))
        for a in ready.applied:
            i = a.index
            if i <= self.proven:
                continue
            term = log.term_at(i)
            if plain:
                count = sum(1 for terms in self.durable_terms.values()
                            if len(terms) > i and terms[i] == term)
                if count >= need:
                    self.proven = i
                    continue
            holders = {nid for nid, terms in self.durable_terms.items()
                       if len(terms) > i and terms[i] == term}
            if plain or not self.is_commit_quorum(i, holders, acting):
                self.violation(t, "applied-without-durable-majority", (node.id,),
                               f"applied entry ({i}, term {term}) held durably only by "
                               f"{', '.join(sorted(holders)) or 'no node'}, not a quorum of "
                               f"{acting}")
                return
            self.proven = i

    def _check_append(self, t: float, nid: NodeId, log: object, rec: LogAppend,
                      known_committed: int) -> None:
        first = rec.entries[0]
        prev_term = log.term_at(first.index - 1)  # type: ignore[attr-defined]
        if first.index <= known_committed:
            self.violation(t, "committed-entry-overwritten", (nid,),
                           f"wrote {len(rec.entries)} entries from index {first.index} although "
                           f"it knew entries up to {known_committed} were committed")
        entries = self.entries
        for entry in rec.entries:
            here = (entry.command, prev_term)
            seen = entries.setdefault((entry.index, entry.term), here)
            if seen is not here and seen != here:
                self.violation(t, "log-matching", (nid,),
                               f"entry ({entry.index}, term {entry.term}) is {entry.command} "
                               f"after term {prev_term} here but {seen[0]} after term {seen[1]} "
                               f"elsewhere")
            prev_term = entry.term

    def _check_new_leader(self, t: float, nid: NodeId, log: object, term: int) -> None:
        other = self.leader_of_term.setdefault(term, nid)
        if other != nid:
            self.violation(t, "election-safety", (other, nid), f"two leaders in term {term}")
        top = len(self.committed_terms) - 1
        if top > 0 and log.term_at(top) != self.committed_terms[top]:  # type: ignore[attr-defined]
            self.violation(t, "leader-completeness", (nid,),
                           f"leader of term {term} lacks committed entry {top} "
                           f"(term {self.committed_terms[top]})")
