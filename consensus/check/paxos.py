"""Multi-Paxos's own safety properties, checked from what each node persists as the run goes.

The checker watches every acceptor's durable records (``Promised``, ``AcceptedRun``,
``ChosenRun``) in the order they were written, so it sees exactly what an acceptor is bound
by, including across crashes. A value is *chosen* for a slot the moment a quorum of
the configuration governing the slot has accepted it at the same ballot (Lamport's definition;
the initial cluster's majority until a configuration is chosen, then the one chosen in slot
``i`` from slot ``i + alpha`` on, with the run's ``alpha``: the true rule, whatever a node
under test believes); from that it checks:

- at most one value is ever chosen per slot (the property Paxos exists for);
- one value per (slot, ballot): a ballot's proposer never proposes two values for one slot;
- an acceptor never accepts below the ballot it promised, nor above a promise it has not
  made durable, and its promise never goes backwards;
- a node only learns (``ChosenRun``) and applies values that were chosen for that slot.

Applied-in-order, applied-prefix agreement, monotonic ballots/commit indexes and no lost
acknowledged write come from :class:`SharedChecker`.
"""

from __future__ import annotations

from typing import Any

from consensus.check.invariants import SharedChecker
from consensus.membership import Membership, is_config_text
from consensus.messages import Command, NodeId
from consensus.node import Node, Ready, Status
from consensus.paxos.configs import ConfigWindow
from consensus.paxos.messages import (
    ZERO_BALLOT,
    AcceptedRun,
    Ballot,
    ChosenRun,
    Committed,
    Promised,
    RoundUsed,
    SlotSnapshot,
)
from consensus.quorum import majority


def _show(command: Command | None) -> str:
    return "no-op" if command is None else f"'{command}'"


class PaxosChecker(SharedChecker):
    def __init__(self) -> None:
        super().__init__()
        self.majority = 0  # set from the first node seen
        self.windows: ConfigWindow | None = None  # likewise: configurations by slot
        self.promised: dict[NodeId, Ballot] = {}  # durable: survives crashes like the node's
        # (slot, ballot round, rank, node) -> (value, acceptors that accepted it); the set is
        # dropped (None) once the value is chosen, to keep memory flat on long runs.
        self.accepts: dict[tuple[int, int, int, NodeId],
                           tuple[Command | None, set[NodeId] | None]] = {}
        # slot -> (value, ballot it was first chosen at, the majority that chose it)
        self.chosen: dict[int, tuple[Command | None, Ballot, tuple[NodeId, ...]]] = {}

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        nid = node.id
        if not self.majority:
            self.first_node(node)
        chosen = self.chosen
        if ready.persist and not self.records_when_durable:
            self._records(t, nid, ready.persist)
        for applied in ready.applied:
            # The common case inline (the chosen value, mostly the very same object); any
            # doubt goes to _check_chosen, which decides and reports.
            first = chosen.get(applied.index)
            command = applied.command
            if first is None or (first[0] is not command and first[0] != command):
                self._check_chosen(t, nid, applied.index, command, "applied")
        SharedChecker.after_ready(self, t, node, ready, status)  # (super() costs more, per drain)

    def first_node(self, node: Node) -> None:
        """The cluster's initial configuration and alpha, from the first node seen."""
        self.majority = majority(len(node.peers))
        self.windows = ConfigWindow(node.config.alpha, Membership.of(node.peers))

    def record_term(self, record: Any) -> int | None:
        if isinstance(record, Promised):
            return record.ballot.round
        if isinstance(record, SlotSnapshot):  # it replaced the Promised and RoundUsed records
            return max(record.promised.round, record.round_used)
        return record.round if isinstance(record, RoundUsed) else None

    def record_vote(self, record: Any) -> tuple[int, NodeId] | None:
        # A promise is the acceptor's vote for the ballot's proposer.
        if isinstance(record, Promised):
            return record.ballot.round, record.ballot.node
        return None

    def record_commit(self, record: Any) -> int | None:
        if isinstance(record, SlotSnapshot):
            return record.slot
        return record.index if isinstance(record, Committed) else None

    def after_durable(self, t: float, node: Node, records: list[Any]) -> None:
        # A promise or an acceptance binds (and counts towards choosing) once it is durable.
        SharedChecker.after_durable(self, t, node, records)
        if not self.majority:
            self.first_node(node)
        self._records(t, node.id, records)

    def _records(self, t: float, nid: NodeId, records: list[Any]) -> None:
        for rec in records:
            if isinstance(rec, AcceptedRun):
                self._check_accept(t, nid, rec)
            elif isinstance(rec, Promised):
                prev = self.promised.get(nid, ZERO_BALLOT)
                if rec.ballot < prev:
                    self.violation(t, "promise-monotonic", (nid,),
                                   f"promised ballot went {prev} -> {rec.ballot}")
                else:
                    self.promised[nid] = rec.ballot
                self.note_vote(nid, (rec.ballot.round, rec.ballot.node))
            elif isinstance(rec, ChosenRun):
                for i, command in enumerate(rec.commands):
                    self._check_chosen(t, nid, rec.first_slot + i, command, "learned")

    def _check_accept(self, t: float, nid: NodeId, rec: AcceptedRun) -> None:
        ballot = rec.ballot
        promised = self.promised.get(nid, ZERO_BALLOT)
        if ballot is promised:
            pass  # the usual case, and no need for Ballot's (Python-level) comparisons
        elif ballot < promised:
            self.violation(t, "accepted-below-promise", (nid,),
                           f"accepted from slot {rec.first_slot}"
                           f" at ballot {ballot} after promising {promised}")
        elif ballot > promised:
            self.violation(t, "accepted-above-promise", (nid,),
                           f"accepted at ballot {ballot} with only {promised} durably promised")
        if rec.commands:
            self.check_proposer_votes(t, nid, ballot.round, ballot.node, rec.first_slot,
                                      rec.first_slot + len(rec.commands) - 1)
        accepts = self.accepts
        # Keyed by the ballot's (round, rank, node), exactly what Ballot's equality and hash
        # use, so the key hashes in C.
        rnd, rank, node = ballot.round, ballot.rank, ballot.node
        for i, command in enumerate(rec.commands):
            slot = rec.first_slot + i
            key = (slot, rnd, rank, node)
            entry = accepts.get(key)
            if entry is None:
                voters: set[NodeId] | None = {nid}
                accepts[key] = (command, voters)
            else:
                value, voters = entry
                if value is not command and value != command:
                    self.violation(t, "one-value-per-ballot", (nid, ballot.node),
                                   f"slot {slot} ballot {ballot}: accepted {_show(command)} but "
                                   f"{_show(value)} was accepted at the same ballot elsewhere")
                    continue
                if voters is None:
                    continue  # already chosen at this ballot
                voters.add(nid)
            if voters is not None and self._is_quorum(slot, voters):
                accepts[key] = (command, None)
                self._chose(t, slot, ballot, command, tuple(sorted(voters)))

    def _is_quorum(self, slot: int, voters: set[NodeId]) -> bool:
        windows = self.windows
        if windows is None or not windows.changed:
            # The initial voters' majority; a learner being added accepts too, and not counts.
            return (len(voters) >= self.majority
                    and (windows is None or voters <= windows.configs[0].voters))
        config = windows.at(slot)
        return config is not None and config.has_quorum(voters)

    def _chose(self, t: float, slot: int, ballot: Ballot, command: Command | None,
               voters: tuple[NodeId, ...]) -> None:
        first = self.chosen.get(slot)
        if first is None:
            self.chosen[slot] = (command, ballot, voters)
            if command is not None and self.windows is not None and is_config_text(command.text):
                self.windows.add(slot, Membership.from_text(command.text))
        elif first[0] != command:
            self.violation(t, "one-value-per-slot", tuple(sorted({*voters, *first[2]})),
                           f"slot {slot}: {_show(command)} chosen at ballot {ballot} by "
                           f"{', '.join(voters)}, but {_show(first[0])} was chosen at ballot "
                           f"{first[1]} by {', '.join(first[2])}")

    def _check_chosen(self, t: float, nid: NodeId, slot: int, command: Command | None,
                      what: str) -> None:
        chosen = self.chosen.get(slot)
        if chosen is None:
            self.violation(t, f"{what}-unchosen", (nid,),
                           f"slot {slot}: {what} {_show(command)} but no value is chosen there")
        elif chosen[0] != command:
            self.violation(t, f"{what}-unchosen", (nid,),
                           f"slot {slot}: {what} {_show(command)} but {_show(chosen[0])} was "
                           f"chosen at ballot {chosen[1]} by {', '.join(chosen[2])}")
