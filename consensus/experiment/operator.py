"""The operator in the simulator: who asks the cluster for membership changes.

Like a workload client, and like ``consensus-lab cluster add`` on the bus, the operator sends
a :class:`~consensus.messages.ConfigChange` to the node it believes leads (the leader the
nodes' statuses name), follows redirects, and retries with the *same* seq after a timeout or
an ERROR "busy" (another change in flight), so the change is made once however often it is
asked for. It gives up only on an error that retrying cannot fix (``remove n9`` when n9 is
not a voter). Each change is a :class:`~consensus.experiment.nemesis.MembershipEvent`, filled
in as the answer arrives.

The operator's messages travel with the network's latency but, like the clients', are not
subject to partitions or loss: the operator stands for a person at a terminal who can reach
some node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.experiment.nemesis import MembershipEvent
from consensus.membership import BUSY
from consensus.messages import ClientReply, ConfigChange, NodeId, ReplyStatus

if TYPE_CHECKING:
    from consensus.sim import Simulation

OPERATOR_ID = "operator"
ATTEMPT_TIMEOUT_MS = 1000.0  # no answer in this long: ask again (the leader may have changed)
RETRY_MS = 100.0  # after "busy" or a redirect naming nobody: wait this long, then ask again
RETRYABLE = (BUSY,)  # an ERROR whose reason starts with one of these is worth retrying


@dataclass(slots=True)
class _Pending:
    event: MembershipEvent
    attempt: int = 0  # tells a stale timeout from the live one
    hint: NodeId | None = None  # the leader the last redirect named
    refused_by: NodeId | None = None  # the node that sent that redirect


class SimOperator:
    """Sends membership changes into a :class:`~consensus.sim.Simulation`; see the module
    docstring. Registered with the simulation as a client, so replies reach :meth:`on_reply`."""

    def __init__(self, sim: Simulation, operator_id: str = OPERATOR_ID) -> None:
        self.id = operator_id
        self.sim = sim
        self.seq = 0
        self.pending: dict[int, _Pending] = {}
        self._next = 0  # round robin over the nodes when nobody is known to lead
        sim.clients[operator_id] = self

    def request(self, change: str) -> MembershipEvent:
        """Ask for ``change`` now; the event it returns is completed when it is answered."""
        self.seq += 1
        event = MembershipEvent(change, self.sim.now)
        self.pending[self.seq] = _Pending(event)
        self._send(self.seq)
        return event

    def _target(self, pending: _Pending) -> NodeId:
        """The leader the statuses name, unless it just redirected us; else the node the
        redirect named; else the next live node in turn."""
        sim = self.sim
        leader = sim.leader()
        if leader is not None and leader != pending.refused_by:
            return leader
        if pending.hint is not None and sim.is_up(pending.hint):
            return pending.hint
        up = [n for n in sim.ids if sim.is_up(n)] or list(sim.ids)
        self._next = (self._next + 1) % len(up)
        return up[self._next]

    def _send(self, seq: int) -> None:
        pending = self.pending.get(seq)
        if pending is None:
            return
        sim = self.sim
        pending.attempt += 1
        pending.event.attempts += 1
        attempt = pending.attempt
        sim.send_client_request(ConfigChange(src=self.id, dst=self._target(pending), seq=seq,
                                             change=pending.event.change))
        sim.at(sim.now + ATTEMPT_TIMEOUT_MS, lambda: self._on_timeout(seq, attempt))

    def _on_timeout(self, seq: int, attempt: int) -> None:
        pending = self.pending.get(seq)
        if pending is not None and pending.attempt == attempt:
            pending.hint = pending.refused_by = None
            self._send(seq)

    def _later(self, seq: int) -> None:
        pending = self.pending[seq]
        pending.attempt += 1  # the live attempt's timeout no longer counts
        self.sim.at(self.sim.now + RETRY_MS, lambda: self._send(seq))

    def on_reply(self, reply: ClientReply) -> None:
        pending = self.pending.get(reply.seq)
        if pending is None:
            return  # a duplicate answer to a change already settled
        if reply.status == ReplyStatus.REDIRECT:
            pending.refused_by = reply.src
            pending.hint = reply.leader if reply.leader != reply.src else None
            if pending.hint is not None:
                self._send(reply.seq)
            else:
                self._later(reply.seq)
            return
        if reply.status == ReplyStatus.ERROR and (reply.result or "").startswith(RETRYABLE):
            pending.hint, pending.refused_by = reply.src, None  # it leads: ask it again
            self._later(reply.seq)
            return
        event = pending.event
        event.done_ms = self.sim.now
        event.ok = reply.status == ReplyStatus.OK
        event.result = reply.result
        del self.pending[reply.seq]
