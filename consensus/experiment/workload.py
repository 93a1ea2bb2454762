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
    """One client in the simulator; see the module docstring.

    With a :class:`Workload` it runs closed-loop random commands from :meth:`start` until
    :meth:`stop`; :meth:`submit` sends given commands in order (scenario tests, the dashboard).
    """

    def __init__(self, client_id: str, sim: Simulation, workload: Workload | None = None,
                 rng: random.Random | None = None) -> None:
        self.id = client_id
        self.sim = sim
        self.workload = workload or Workload()
        self.rng = rng or random.Random(f"{sim.seed}/client/{client_id}")
        self.seq = 0
        self.target: NodeId = self.rng.choice(sim.ids)
        self.current: Operation | None = None
        self.queue: list[tuple[Operation, NodeId | None]] = []
        self.history: list[Operation] = []
        self.running = False
        self._attempt = 0  # tells a stale timeout from the live one
        sim.clients[client_id] = self

    def start(self, at: float = 0.0) -> None:
        """Begin the closed loop of random commands at simulated time ``at``."""
        self.running = True
        self.sim.at(at, self._next_random)

    def stop(self) -> None:
        """Issue no new command; the one in flight keeps retrying until answered."""
        self.running = False

    def submit(self, text: str, node: NodeId | None = None) -> Operation:
        """Send ``text`` (first to ``node`` if given) once earlier commands are answered."""
        self.seq += 1
        op = Operation(self.id, self.seq, text, self.sim.now, attempts=0)
        self.queue.append((op, node))
        if self.current is None:
            self._begin_next()
        return op

    def _next_random(self) -> None:
        if not self.running or self.current is not None:
            return
        w = self.workload
        key = f"k{self.rng.randrange(w.keys)}"
        if self.rng.random() < w.read_ratio:
            self.submit(f"GET {key}")
        else:
            self.submit(f"SET {key} = {self.id}-{self.seq + 1}")

    def _begin_next(self) -> None:
        op, node = self.queue.pop(0)
        op.invoke_ms = self.sim.now
        if node is not None:
            self.target = node
        self.current = op
        self.history.append(op)
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
        self.target = self._another_node(self.target)
        self._send()

    def _another_node(self, than: NodeId) -> NodeId:
        others = [n for n in self.sim.ids if n != than]
        return self.rng.choice(others) if others else than

    def on_reply(self, reply: ClientReply) -> None:
        op = self.current
        if op is None or reply.seq != op.seq:
            return  # an answer to an attempt we already gave up on
        self._attempt += 1  # cancels the pending timeout
        if reply.status == ReplyStatus.REDIRECT:
            if reply.leader is not None and reply.leader != reply.src:
                self.target = reply.leader
                self._send()
            else:
                self.target = self._another_node(reply.src)
                self.sim.at(self.sim.now + self.workload.redirect_backoff_ms, self._resend)
            return
        op.complete_ms = self.sim.now
        op.outcome = "ok" if reply.status == ReplyStatus.OK else "fail"
        op.result = reply.result
        self.current = None
        self.sim.on_client_reply(reply, Command(self.id, op.seq, op.command))
        if self.queue:
            self._begin_next()
        elif self.running:
            self.sim.at(self.sim.now + self.workload.think_ms, self._next_random)

    def _resend(self) -> None:
        if self.current is not None:
            self._send()
