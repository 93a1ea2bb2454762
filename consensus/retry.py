"""How a client retries: one sans-IO policy for every client of a cluster.

The simulator's workload clients, the bus runner's and ``consensus-lab client`` (through
:class:`~consensus.client.ClusterClient`) and the benchmark's failover probe all decide the
same way, like etcd's client: a *per-attempt* timeout well below the operation's overall
deadline (``request_timeout_ms``), exponential backoff with jitter between attempts, leader
hints from redirects and from the nodes' published status, and a retry at the next node as
soon as the current one is known to be down (no status for ``down_after_ms``, or its last
attempt timed out with no sign of life since).

The caller owns the clock, the rng and the IO: it tells :class:`Retrier` what it saw
(``observe_status``, ``on_reply_from``, ``on_timeout``, ``on_redirect``) and asks where to send
and how long to wait. Every retry of one operation keeps its ``(client, seq)`` and command;
that is the caller's part of exactly-once, and none of this changes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.messages import NodeId
from consensus.telemetry import leader_of


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The knobs. The attempt timeout adapts like TCP's RTO (smoothed latency + 4 deviations)
    within ``[min_attempt_ms, max_attempt_ms]``, so a loaded cluster is not flooded with
    retries while a dead node costs at most ``max_attempt_ms``."""

    min_attempt_ms: float = 60.0
    max_attempt_ms: float = 250.0
    backoff_base_ms: float = 10.0  # first wait; doubles per retry of one operation
    backoff_max_ms: float = 100.0
    jitter: float = 0.5  # a wait is drawn from [(1 - jitter) * d, d]
    # No status for this long, or for 3 of the node's own publishing intervals if longer:
    # the node is down (a status every 50 ms on the bus runner, 200 ms from `cluster up`).
    down_after_ms: float = 200.0


@dataclass(slots=True)
class _Seen:
    at: float  # when its last status arrived
    role: str
    term: int
    leader: NodeId | None
    interval: float = 0.0  # time since the status before it (how often the node publishes)


class Retrier:
    """One client's view of the cluster and its retry decisions (see the module docstring).

    Invariant: ``leader_hint`` is never a node known to be down at the time it is used.
    """

    def __init__(self, nodes: Sequence[NodeId], rng: random.Random,
                 policy: RetryPolicy | None = None) -> None:
        self.nodes: list[NodeId] = sorted(nodes)
        self.rng = rng
        self.policy = policy or RetryPolicy()
        self.leader_hint: NodeId | None = None
        self.seen: dict[NodeId, _Seen] = {}
        self.suspect: dict[NodeId, float] = {}  # node -> when an attempt at it timed out
        self._srtt: float | None = None
        self._rttvar = 0.0

    # -- what the client learns ------------------------------------------------------------

    def add_nodes(self, nodes: Sequence[NodeId]) -> None:
        self.nodes = sorted({*self.nodes, *nodes})

    def observe_status(self, now: float, nid: NodeId, role: str, term: int,
                       leader: NodeId | None) -> None:
        """A status ``nid`` published at ``now``: it was alive then, and says who it thinks
        leads. A feed may repeat a status; only a newer one counts, and only one published
        after an attempt at the node timed out clears the suspicion."""
        if nid not in self.nodes:
            self.add_nodes([nid])
        seen = self.seen.get(nid)
        if seen is not None and seen.at >= now:
            return
        self.seen[nid] = _Seen(now, role, term, leader,
                               0.0 if seen is None else now - seen.at)
        if self.suspect.get(nid, now) < now:
            del self.suspect[nid]

    def on_reply_from(self, nid: NodeId, attempt_ms: float) -> None:
        """An ok/fail answer from ``nid`` that took ``attempt_ms`` (send to answer)."""
        self.leader_hint = nid
        self.suspect.pop(nid, None)
        if self._srtt is None:
            self._srtt, self._rttvar = attempt_ms, attempt_ms / 2
        else:  # RFC 6298's gains
            self._rttvar += 0.25 * (abs(self._srtt - attempt_ms) - self._rttvar)
            self._srtt += 0.125 * (attempt_ms - self._srtt)

    def on_timeout(self, now: float, nid: NodeId) -> NodeId:
        """An attempt at ``nid`` got no answer in time: suspect it; the next node to try."""
        self.suspect[nid] = now
        if self.leader_hint == nid:
            self.leader_hint = None
        return self.next_target(now, avoid=nid)

    def on_redirect(self, now: float, src: NodeId, leader: NodeId | None) -> tuple[NodeId, bool]:
        """``src`` does not lead and names ``leader`` (or nobody): where to go, and whether to
        back off first (no usable hint: an election is probably under way)."""
        self.suspect.pop(src, None)  # it answered
        if leader is not None and leader != src and not self.is_down(now, leader):
            self.leader_hint = leader
            return leader, False
        if self.leader_hint in (src, leader):
            self.leader_hint = None
        return self.next_target(now, avoid=src), True

    # -- decisions ---------------------------------------------------------------------------

    def is_down(self, now: float, nid: NodeId) -> bool:
        if nid in self.suspect:
            return True
        seen = self.seen.get(nid)
        return seen is not None and now - seen.at > max(self.policy.down_after_ms,
                                                        3 * seen.interval)

    def status_leader(self, now: float) -> NodeId | None:
        """The live node claiming leadership with the highest term, else the leader most live
        nodes name (followers learn it first from heartbeats), else None."""
        live = {n: s for n, s in self.seen.items() if not self.is_down(now, n)}
        best = leader_of(live)
        if best is not None:
            return best
        named = sorted(s.leader for s in live.values()
                        if s.leader is not None and not self.is_down(now, s.leader))
        return max(named, key=named.count) if named else None

    def first_target(self, now: float) -> NodeId:
        """Where a new operation goes: the leader hint or the leader by status, else a live
        node at random (spreading clients that know nothing yet)."""
        for guess in (self.leader_hint, self.status_leader(now)):
            if guess is not None and not self.is_down(now, guess):
                return guess
        live = [n for n in self.nodes if not self.is_down(now, n)]
        if not (live or self.nodes):
            raise ValueError("no nodes known")
        return self.rng.choice(live or self.nodes)

    def next_target(self, now: float, avoid: NodeId | None = None) -> NodeId:
        """The leader hint, else the leader by status, else the next live node after
        ``avoid`` in id order (else the next node at all)."""
        for guess in (self.leader_hint, self.status_leader(now)):
            if guess is not None and guess != avoid and not self.is_down(now, guess):
                return guess
        if not self.nodes:
            raise ValueError("no nodes known")
        start = self.nodes.index(avoid) + 1 if avoid in self.nodes else 0
        ring = self.nodes[start:] + self.nodes[:start]
        live = [n for n in ring if n != avoid and not self.is_down(now, n)]
        return (live or [n for n in ring if n != avoid] or ring)[0]

    def attempt_timeout(self, left_ms: float) -> float:
        """How long to wait for this attempt, given ``left_ms`` until the overall deadline."""
        p = self.policy
        rto = p.max_attempt_ms if self._srtt is None else self._srtt + 4 * self._rttvar
        return max(0.0, min(left_ms, max(p.min_attempt_ms, min(p.max_attempt_ms, rto))))

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1, 2, ...) of one operation, jittered."""
        p = self.policy
        d = min(p.backoff_max_ms, p.backoff_base_ms * 2 ** max(0, retry - 1))
        return d * (1 - p.jitter * self.rng.random())


__all__ = ["Retrier", "RetryPolicy"]
