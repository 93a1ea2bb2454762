"""Raft's own safety properties (Figure 3 of the extended paper), checked as the run goes.

- Election Safety: at most one leader per term, whatever configuration each was elected in
  (old, joint or new: a broken membership change shows up here, or as a lost entry below).
- Log Matching: two logs holding an entry with the same index and term hold the same command
  there and agree on the entry before it (by induction, the same prefix).
- Leader Completeness: a newly elected leader holds every committed entry.
- No node ever overwrites an entry it knew to be committed.
- Nothing is applied before a quorum of the applying node's configuration holds it durably
  (what "committed" means; both halves while joint; with a disk that takes time, a leader's
  own unwritten copy does not count).
"""

from __future__ import annotations

from typing import Any

from consensus.check.invariants import SharedChecker
from consensus.membership import Membership
from consensus.messages import NodeId
from consensus.node import Node, Ready, Status
from consensus.raft.messages import CommitMark, HardState, LogAppend, RaftSnapshot


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
        nid = node.id
        SharedChecker.after_ready(self, t, node, ready, status)  # (super() costs more, per drain)
        log = node.log  # type: ignore[attr-defined]
        if ready.persist:
            known_committed = self.commit_of.get(nid, 0)
            for rec in ready.persist:
                if isinstance(rec, LogAppend) and rec.entries:
                    self._check_append(t, nid, log, rec, known_committed)
            if not self.records_when_durable:
                self.after_durable(t, node, ready.persist)
        if ready.applied and ready.applied[-1].index > self.proven:
            self._check_durable_majority(t, node, ready)
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
        return record.term if isinstance(record, (HardState, RaftSnapshot)) else None

    def record_vote(self, record: Any) -> tuple[int, NodeId] | None:
        # votedFor is durable before the vote is sent
        if isinstance(record, HardState) and record.voted_for is not None:
            return record.term, record.voted_for
        return None

    def record_commit(self, record: Any) -> int | None:
        if isinstance(record, RaftSnapshot):
            return record.commit
        return record.index if isinstance(record, CommitMark) else None

    def after_durable(self, t: float, node: Node, records: list[Any]) -> None:
        SharedChecker.after_durable(self, t, node, records)
        terms = self.durable_terms.setdefault(node.id, [0])
        for rec in records:
            if isinstance(rec, LogAppend) and rec.entries:
                del terms[rec.entries[0].index:]  # a LogAppend drops the suffix from there
                terms.extend(e.term for e in rec.entries)
            elif isinstance(rec, RaftSnapshot):
                # Up to the snapshot: committed (what it held before stays); after it, only
                # the entries the record keeps.
                del terms[rec.index + 1:]
                terms.extend([-1] * (rec.index + 1 - len(terms)))
                terms[rec.index] = rec.last_term
                terms.extend(e.term for e in rec.entries)

    def _check_durable_majority(self, t: float, node: Node, ready: Ready) -> None:
        log = node.log  # type: ignore[attr-defined]
        # The configuration the node acts on (a Raft configuration is in force from its
        # append); an entry before the latest configuration entry may also have been
        # committed under the one before it, if the leader appended the latest after the
        # commit (in the same drain: the change's next step).
        membership: Membership | None = getattr(node, "membership", None)
        if membership is None:
            membership = Membership.of(node.peers)
        configs = log.configs
        before = None
        if configs:
            before = (Membership.from_text(log.entry(configs[-2]).command.text)
                      if len(configs) > 1 else node.base_membership)  # type: ignore[attr-defined]
        for a in ready.applied:
            i = a.index
            if i <= self.proven:
                continue
            term = log.term_at(i)
            holders = {nid for nid, terms in self.durable_terms.items()
                       if len(terms) > i and terms[i] == term}
            if not membership.has_quorum(holders) and not (
                    before is not None and i < configs[-1] and before.has_quorum(holders)):
                self.violation(t, "applied-without-durable-majority", (node.id,),
                               f"applied entry ({i}, term {term}) held durably by "
                               f"{', '.join(sorted(holders)) or 'no node'}, not a quorum of "
                               f"{membership}")
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
