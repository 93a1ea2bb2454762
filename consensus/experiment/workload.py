"""Closed-loop clients: each sends one command, waits for its answer, thinks, sends the next.

A client follows redirects to the leader, and after a timeout retries at another node with
the *same* ``(client_id, seq)``, so the state machine applies a retried command once. Writes
carry unique values (``SET k = c3-17``) so a history can tell every write apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.experiment.history import Operation
from consensus.messages import ClientReply, ClientRequest, Command, NodeId, ReplyStatus

if TYPE_CHECKING:
    from consensus.sim import Simulation


@dataclass(frozen=True, slots=True)
class Workload:
    clients: int = 4
    think_ms: float = 10.0  # pause between an answer and the next command
    read_ratio: float = 0.3
    keys: int = 10
    request_timeout_ms: float = 500.0
    redirect_backoff_ms: float = 20.0  # wait before retrying when no leader is known


class SimClient:
    """One closed-loop client in the simulator; see the module docstring."""

    def __init__(self, client_id: str, sim: Simulation, workload: Workload,
                 rng: random.Random) -> None:
        self.id = client_id
        self.sim = sim
        self.workload = workload
        self.rng = rng
        self.seq = 0
        self.target: NodeId = rng.choice(sim.ids)
        self.current: Operation | None = None
        self.history: list[Operation] = []
        self.running = True
        self._attempt = 0  # tells a stale timeout from the live one
        sim.clients[client_id] = self

    def start(self, at: float = 0.0) -> None:
        self.sim.at(at, self._next_op)

    def stop(self) -> None:
        """Issue no new command; the one in flight keeps retrying until answered."""
        self.running = False

    def _next_op(self) -> None:
        if not self.running:
            return
        w = self.workload
        self.seq += 1
        key = f"k{self.rng.randrange(w.keys)}"
        if self.rng.random() < w.read_ratio:
            text = f"GET {key}"
        else:
            text = f"SET {key} = {self.id}-{self.seq}"
        self.current = Operation(self.id, self.seq, text, self.sim.now, attempts=0)
        self.history.append(self.current)
        self._send()

    def _send(self) -> None:
        op = self.current
        assert op is not None
        op.attempts += 1
        self._attempt += 1
        attempt = self._attempt
        self.sim.send_client_request(ClientRequest(src=self.id, dst=self.target, seq=op.seq,
                                                   command=op.command))
        self.sim.at(self.sim.now + self.workload.request_timeout_ms,
                    lambda: self._on_timeout(attempt))

    def _on_timeout(self, attempt: int) -> None:
        if self.current is None or attempt != self._attempt:
            return
        others = [n for n in self.sim.ids if n != self.target]
        self.target = self.rng.choice(others) if others else self.target
        self._send()

    def on_reply(self, reply: ClientReply) -> None:
        op = self.current
        if op is None or reply.seq != op.seq:
            return  # an answer to an attempt we already gave up on
        if reply.status == ReplyStatus.REDIRECT:
            self._attempt += 1  # cancel the pending timeout
            if reply.leader is not None and reply.leader != reply.src:
                self.target = reply.leader
                self._send()
            else:
                others = [n for n in self.sim.ids if n != reply.src]
                self.target = self.rng.choice(others) if others else self.target
                self.sim.at(self.sim.now + self.workload.redirect_backoff_ms, self._resend)
            return
        self._attempt += 1
        op.complete_ms = self.sim.now
        op.outcome = "ok" if reply.status == ReplyStatus.OK else "fail"
        op.result = reply.result
        self.current = None
        self.sim.on_client_reply(reply, Command(self.id, op.seq, op.command))
        self.sim.at(self.sim.now + self.workload.think_ms, self._next_op)

    def _resend(self) -> None:
        if self.current is not None:
            self._send()
