"""Workload clients: each has at most one command in flight, like a Jepsen client process.

Closed loop (no ``rate``): send a command, wait for its answer, think, send the next. Open
loop (``rate`` ops/s in total): commands arrive at Poisson times whether or not the cluster
keeps up; an arrival while the client is busy waits in its queue, and its latency counts from
its arrival (no coordinated omission), while the history records when it was actually sent.

A client follows redirects to the leader, and after a timeout retries at another node with
the *same* ``(client_id, seq)``, so the state machine applies a retried command once. Writes
carry unique values (``SET k = c3-17``) so a history can tell every write apart.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.history import Operation
from consensus.messages import ClientReply, ClientRequest, Command, NodeId, ReplyStatus

if TYPE_CHECKING:
    from consensus.sim import Simulation


@dataclass(frozen=True, slots=True)
class Workload:
    clients: int = 4
    think_ms: float = 10.0  # closed loop: pause between an answer and the next command
    read_ratio: float = 0.3
    keys: int = 10
    request_timeout_ms: float = 500.0
    redirect_backoff_ms: float = 20.0  # wait before retrying when no leader is known
    rate: float | None = None  # total ops/s over all clients (open loop); None: closed loop
    key_distribution: str = "uniform"  # uniform | zipfian | hotspot


class KeyChooser:
    """Draws keys ``k0..k{n-1}``: uniformly, Zipf-distributed (s = 1), or a hotspot (80% of
    operations on the first 10% of keys)."""

    def __init__(self, keys: int, distribution: str, rng: random.Random) -> None:
        self.rng = rng
        if distribution == "uniform":
            weights = [1.0] * keys
        elif distribution == "zipfian":
            weights = [1.0 / (i + 1) for i in range(keys)]
        elif distribution == "hotspot":
            hot = max(1, keys // 10)
            cold = keys - hot
            weights = [0.8 / hot] * hot + [0.2 / cold] * cold if cold else [1.0] * hot
        else:
            raise ValueError(f"unknown key distribution {distribution!r}")
        self.cdf = list(itertools.accumulate(weights))

    def __call__(self) -> str:
        return f"k{bisect.bisect_left(self.cdf, self.rng.random() * self.cdf[-1])}"


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
        self.keys = KeyChooser(self.workload.keys, self.workload.key_distribution, self.rng)
        self.target: NodeId = self.rng.choice(sim.ids)
        self.current: Operation | None = None
        self.queue: list[tuple[Operation, NodeId | None]] = []
        self.history: list[Operation] = []
        self.running = False
        self._attempt = 0  # tells a stale timeout from the live one
        sim.clients[client_id] = self

    def start(self, at: float = 0.0) -> None:
        """Begin the random workload (closed or open loop) at simulated time ``at``."""
        self.running = True
        if self.workload.rate:
            self.sim.at(at + self._gap(), self._arrival)
        else:
            self.sim.at(at, self._next_random)

    def stop(self) -> None:
        """Issue no new command; the one in flight keeps retrying until answered, and queued
        open-loop arrivals that were never sent are dropped (they were never invoked)."""
        self.running = False
        self.queue.clear()

    def _gap(self) -> float:
        per_client = self.workload.rate / self.workload.clients  # type: ignore[operator]
        return self.rng.expovariate(per_client / 1000.0)

    def _arrival(self) -> None:
        if not self.running:
            return
        self.submit(self._random_command(), scheduled=True)
        self.sim.at(self.sim.now + self._gap(), self._arrival)

    def _random_command(self) -> str:
        key = self.keys()
        if self.rng.random() < self.workload.read_ratio:
            return f"GET {key}"
        return f"SET {key} = {self.id}-{self.seq + 1}"

    def submit(self, text: str, node: NodeId | None = None, *,
               scheduled: bool = False) -> Operation:
        """Send ``text`` (first to ``node`` if given) once earlier commands are answered."""
        self.seq += 1
        op = Operation(self.id, self.seq, text, self.sim.now, attempts=0,
                       scheduled_ms=self.sim.now if scheduled else None)
        self.queue.append((op, node))
        if self.current is None:
            self._begin_next()
        return op

    def _next_random(self) -> None:
        if not self.running or self.current is not None:
            return
        self.submit(self._random_command())

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
        elif self.running and not self.workload.rate:
            self.sim.at(self.sim.now + self.workload.think_ms, self._next_random)

    def _resend(self) -> None:
        if self.current is not None:
            self._send()
