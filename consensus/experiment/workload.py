"""Workload clients: each has at most one command in flight, like a Jepsen client process.

Closed loop (no ``rate``): send a command, wait for its answer, think, send the next. Open
loop (``rate`` ops/s in total): commands arrive at Poisson times whether or not the cluster
keeps up; an arrival while the client is busy waits in its queue, and its latency counts from
its arrival (no coordinated omission), while the history records when it was actually sent.

Clients retry as :mod:`consensus.retry` decides, like the bus's and the CLI's: a short
per-attempt timeout, jittered backoff (from the client's seeded rng), leader hints from
redirects and from the nodes' status (read every 50 ms from the nodes that would publish it:
up and not paused), and the next node when the current one is known down. Every retry keeps
the *same* ``(client_id, seq)``, so the state machine applies a retried command once. While
the workload runs, a command unanswered ``request_timeout_ms`` after its invocation is given
up as unknown (``info``) and the client moves on; after :meth:`SimClient.stop` the last one
retries until answered. Writes carry unique values (``SET k = c3-17``) so a history can tell
every write apart.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.history import Operation
from consensus.messages import ClientReply, ClientRequest, Command, NodeId, ReplyStatus
from consensus.retry import Retrier, RetryPolicy

if TYPE_CHECKING:
    from consensus.sim import Simulation

DEFAULT_POLICY = RetryPolicy()
STATUS_INTERVAL_MS = 50.0  # how often a simulated client reads the nodes' status, as on the bus


@dataclass(frozen=True, slots=True)
class Workload:
    clients: int = 4
    think_ms: float = 10.0  # closed loop: pause between an answer and the next command
    read_ratio: float = 0.3
    keys: int = 10
    request_timeout_ms: float = 500.0  # overall deadline; then the outcome is unknown (info)
    rate: float | None = None  # total ops/s over all clients (open loop); None: closed loop
    key_distribution: str = "uniform"  # uniform | zipfian | hotspot
    retry: RetryPolicy = DEFAULT_POLICY  # attempt timeouts, backoff, next target


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
        self.retry = Retrier(sim.ids, self.rng, self.workload.retry)
        self._attempt = 0  # tells a stale timeout from the live one
        self._retries = 0  # of the current operation
        self._sent_at = 0.0
        self._polling = False
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
        now = self.sim.now
        op.invoke_ms = now
        retry = self.retry
        if node is not None:
            self.target = node
        else:
            guess = retry.leader_hint or retry.status_leader(now)
            if guess is not None and not retry.is_down(now, guess):
                self.target = guess
            elif retry.is_down(now, self.target):
                self.target = retry.next_target(now, avoid=self.target)
        self.current = op
        self._retries = 0
        self.history.append(op)
        if not self._polling:
            self._polling = True
            self.sim.at(now, self._poll)
        self._send()

    def _poll(self) -> None:
        """Read the statuses the nodes would publish now (up and not paused ones only)."""
        sim = self.sim
        now = sim.now
        for nid in sim.ids:
            st = sim.statuses.get(nid)
            if st is not None and sim.is_up(nid) and nid not in sim.paused:
                self.retry.observe_status(now, nid, st.role, st.term, st.leader)
        if self.running or self.current is not None:
            sim.at(now + STATUS_INTERVAL_MS, self._poll)
        else:
            self._polling = False

    def _expired(self, op: Operation) -> bool:
        """Past the overall deadline while the workload runs (after :meth:`stop` the last
        command retries until answered, so the liveness check can tell a stuck cluster)."""
        return self.running and self.sim.now >= op.invoke_ms + self.workload.request_timeout_ms

    def _send(self) -> None:
        op = self.current
        assert op is not None
        now = self.sim.now
        if self._expired(op):
            self._give_up(op)
            return
        op.attempts += 1
        self._attempt += 1
        attempt = self._attempt
        self._sent_at = now
        self.sim.send_client_request(ClientRequest(src=self.id, dst=self.target, seq=op.seq,
                                                   command=op.command))
        left = (op.invoke_ms + self.workload.request_timeout_ms - now if self.running
                else float("inf"))
        wait = self.retry.attempt_timeout(left)
        self.sim.at(now + wait, lambda: self._on_timeout(attempt))

    def _on_timeout(self, attempt: int) -> None:
        if self.current is None or attempt != self._attempt:
            return
        self.target = self.retry.on_timeout(self.sim.now, self.target)
        self._retry_later()

    def _retry_later(self) -> None:
        op = self.current
        assert op is not None
        self._retries += 1
        self._attempt += 1  # no attempt is live while we back off
        self.sim.at(self.sim.now + self.retry.backoff(self._retries), lambda: self._resend(op))

    def _resend(self, op: Operation) -> None:
        if self.current is op:
            self._send()

    def _give_up(self, op: Operation) -> None:
        """The overall deadline passed: the outcome is unknown (it may still take effect)."""
        self._attempt += 1
        op.complete_ms = self.sim.now
        op.outcome = "info"
        self._finish()

    def on_reply(self, reply: ClientReply) -> None:
        op = self.current
        if op is None or reply.seq != op.seq:
            return  # an answer to an operation we already gave up on
        now = self.sim.now
        self._attempt += 1  # cancels the pending timeout
        if reply.status == ReplyStatus.REDIRECT:
            self.target, back_off = self.retry.on_redirect(now, reply.src, reply.leader)
            if back_off:
                self._retry_later()
            else:
                self._send()
            return
        self.retry.on_reply_from(reply.src, now - self._sent_at)
        op.complete_ms = now
        op.outcome = "ok" if reply.status == ReplyStatus.OK else "fail"
        op.result = reply.result
        self.sim.on_client_reply(reply, Command(self.id, op.seq, op.command))
        self._finish()

    def _finish(self) -> None:
        self.current = None
        if self.queue:
            self._begin_next()
        elif self.running and not self.workload.rate:
            self.sim.at(self.sim.now + self.workload.think_ms, self._next_random)
