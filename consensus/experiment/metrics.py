"""Metrics computed the same way for both algorithms from a run's history and events.

- latency percentiles per operation type (HdrHistogram, microsecond resolution);
- throughput over time in 100 ms bins (operations answered ok);
- messages and bytes per committed operation, by message type;
- for every fault, from the system's side: time to detect (first node to campaign), to elect
  (a new leader) and to commit (first write answered under the new leader); from the clients'
  side: each client's gap between its last ok answer before the fault and its first after
  (median and max over clients). :data:`FIGURE_DEFINITIONS` says what every figure includes;
- leader changes, term/ballot churn, and counts of ok/fail/info operations;
- over the fault window (the first fault to the first heal): the outcome (the cluster kept
  committing, recovered during the fault, only after the heal, or never), the time without a
  leader, the time without commits, the leader changes and the throughput (:func:`window_metrics`);
- for every membership change (issue 13): the throughput dip after it and the time to recover,
  and for a new member the time and bytes it took to catch up (:func:`membership_impacts`).
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from consensus.history import Operation

BIN_MS = 100.0
FAILOVER_KEYS = ("detect_ms", "elect_ms", "commit_ms", "client_gap_ms", "client_gap_max_ms")
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/p99.9/max in ms (HdrHistogram, 3 significant digits)."""
    if not latencies_ms:
        return {"count": 0}
    hist = HdrHistogram(1, 3_600_000_000, 3)  # 1 us .. 1 h
    for ms in latencies_ms:
        hist.record_value(max(1, round(ms * 1000)))
    out: dict[str, float | int] = {"count": len(latencies_ms)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = hist.get_value_at_percentile(p) / 1000
    out["max"] = max(latencies_ms)
    out["mean"] = sum(latencies_ms) / len(latencies_ms)
    return out


def op_type(op: Operation) -> str:
    return op.command.split(None, 1)[0].upper() if op.command.strip() else "?"


def throughput_bins(ops: Sequence[Operation], end_ms: float) -> list[int]:
    """Operations answered ok in each 100 ms bin from 0 to ``end_ms``."""
    bins = [0] * (int(end_ms // BIN_MS) + 1)
    for op in ops:
        if op.outcome == "ok" and op.complete_ms is not None:
            bins[min(len(bins) - 1, int(op.complete_ms // BIN_MS))] += 1
    return bins


# What each figure includes, one line each, keyed by the label the reports show.
FIGURE_DEFINITIONS: dict[str, str] = {
    "throughput": "operations answered ok during the workload, per second of workload (the "
                  "settle period after it excluded)",
    "latency p50": "median time from a command's arrival (open loop) or invocation to its ok "
                   "answer, retries and redirects included; unanswered operations excluded",
    "latency p99": "99th percentile of the same latencies (HdrHistogram, 3 significant digits)",
    "latency max": "the slowest ok answer, retries included (a command still unanswered at "
                   "its request_timeout_ms is given up as unknown instead)",
    "messages per op": "protocol messages sent (client requests and replies excluded) per "
                       "distinct committed client command",
    "bytes per op": "encoded bytes of those protocol messages per committed command",
    "leader changes": "times some node became leader of a new term/ballot, the first election "
                      "included",
    "elections started": "times a node became candidate (Raft) / began Phase 1 (Paxos)",
    "failover: detect": "per leader-losing fault: fault -> the first node starting an election "
                        "(system side)",
    "failover: elect": "per leader-losing fault: fault -> a new leader elected (system side)",
    "failover: commit": "per leader-losing fault: fault -> the new leader first commits a "
                        "client command in its term/ballot (system side, in the simulator). "
                        "On the bus: its commit index first rising after its election, seen "
                        "in its 50 ms statuses (up to one interval late; for Raft that is "
                        "its no-op, which it commits before any client command)",
    "failover: client gap": "per leader-losing fault: median over clients of the gap between a "
                            "client's last ok answer before the fault and the first ok answer "
                            "to a request it made after the fault (an answer already in flight "
                            "does not end it; the client's own pause between requests counts)",
    "failover: client gap max": "per leader-losing fault: the longest such gap of any client",
    "operations unknown": "operations whose outcome is unknown (info): given up at the "
                          "request deadline, or still in flight when the run ended",
    "fault window": "from the first fault to the first heal after it (or to the end of the "
                    "workload, when the schedule never heals)",
    "outcome": "held: writes kept committing through the fault window (no outage); "
               "recovered: one or two outages, over before the heal; unstable: three or more "
               "outages, the last over before the heal (leadership kept moving); after heal: "
               "an outage lasted until the heal and ended after it; never: no write answered "
               "after the heal (for a schedule that never heals: an outage still open when "
               "the workload ends)",
    "time without a leader": "time in the fault window during which no live, running node "
                             "held the leader role (a crashed or paused leader does not "
                             "count; an isolated one still does)",
    "time without commits": "time in the fault window inside outages: gaps between answered "
                            "writes of at least max(200 ms, 10x the median gap before the "
                            "fault), the gap running from the last write answered before it",
    "leader changes in fault": "new leaders (term/ballot) elected during the fault window",
    "throughput in fault": "operations answered ok during the fault window, per second of it",
    "change: dip": "per membership change: how far throughput fell below the rate before the "
                   "change (ok answers per second over the 2 s before it), at its lowest in a "
                   "1 s sliding window from the request until the next change or the end of "
                   "the workload, in percent (0: no dip; 100: a full stop). Counting noise "
                   "alone gives about 2 standard deviations of a window's count: ~10% at "
                   "300 ops/s, so a dip that small is no disturbance",
    "change: recovery": "per membership change: from the request until throughput (1 s sliding "
                        "windows) is back to 90% of the rate before it, less two standard "
                        "deviations of a window's count (the noise), and stays there until the "
                        "next change or the end of the workload; a full stop of D seconds at "
                        "300 ops/s reads as about D + 0.8 s. 0: it never fell below that "
                        "level. Missing when it was still below at the next change or the end",
    "change: duration": "per membership change: from the operator's request to the leader's OK "
                        "(the configuration reached), retries after redirects, busy answers "
                        "and timeouts included",
    "change: catch-up": "per added node: from the request until the new node's applied index "
                        "reaches the commit index the leader had when the change was asked for "
                        "(read every 10 ms in the simulator)",
    "change: catch-up bytes": "per added node: encoded bytes of the protocol messages sent to it "
                              "(log entries or slots, snapshot chunks, heartbeats) from the "
                              "request until it caught up",
}

# Membership changes (see FIGURE_DEFINITIONS): the windows their dip and recovery are read on.
BEFORE_CHANGE_MS = 2000.0
CHANGE_WINDOW_MS = 1000.0
CHANGE_STEP_MS = 100.0
RECOVERED = 0.9  # of the rate before the change
NOISE_SIGMAS = 2.0  # ... less this many standard deviations of a window's count
MEMBERSHIP_KEYS = ("dip_pct", "recovery_ms", "change_ms", "catch_up_ms", "catch_up_bytes")

# Window outcomes, best first (see FIGURE_DEFINITIONS["outcome"]).
OUTCOMES = ("held", "recovered", "unstable", "after heal", "never")
UNSTABLE_OUTAGES = 3  # this many outages in one window: the cluster kept losing its leader
MIN_OUTAGE_MS = 200.0  # shorter silences are a busy leader, not a lost one
OUTAGE_FACTOR = 10.0  # x the median gap between answered writes before the fault


@dataclass(slots=True)
class FaultImpact:
    """How one fault disturbed the cluster; times in ms after the fault, None if it did not
    happen before the next fault (or the end). See :data:`FIGURE_DEFINITIONS`."""

    at_ms: float
    fault: str
    leader_before: str | None
    new_leader: str | None  # first leader elected after the fault (before the next fault)
    detect_ms: float | None  # first node to start an election after the fault
    elect_ms: float | None
    commit_ms: float | None  # the new leader's first commit of a client command
    client_gap_ms: float | None  # median over clients of their gap (see client_gaps)
    client_gap_max_ms: float | None
    clients_measured: int  # clients with an ok answer both before and after the fault

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def client_gaps(ops: Sequence[Operation], t: float, horizon: float) -> list[float]:
    """Per client: from its last ok answer at or before ``t`` to the first ok answer, up to
    ``horizon``, to an operation it invoked after ``t`` -- the gap from its last success before
    the fault to its first success that had to get through the fault (an answer already in
    flight at the fault does not end it). Clients lacking either end are left out.

    Only that one gap: a client's ordinary pauses between requests later on are not an
    outage (with 16 clients at 100 ops/s each asks about every 160 ms, so the longest pause in
    three seconds is often 600 ms).
    """
    last_before: dict[str, float] = {}
    first_after: dict[str, float] = {}
    for op in ops:
        done = op.complete_ms
        if op.outcome != "ok" or done is None or done > horizon:
            continue
        c = op.client
        if done <= t:
            if done > last_before.get(c, -math.inf):
                last_before[c] = done
        elif op.invoke_ms > t and done < first_after.get(c, math.inf):
            first_after[c] = done
    return [first_after[c] - last_before[c] for c in sorted(last_before) if c in first_after]


def fault_impacts(faults: Sequence[tuple[float, str]], ops: Sequence[Operation],
                  role_events: Sequence[tuple[float, str, str, int]],
                  leader_events: Sequence[tuple[float, str, int]],
                  end_ms: float,
                  commit_events: Sequence[tuple[float, str, int]] = ()) -> list[FaultImpact]:
    """How each fault disturbed the cluster (see the module docstring)."""
    writes = sorted(op.complete_ms for op in ops if op.outcome == "ok"
                    and op.complete_ms is not None and op_type(op) in _WRITES)
    campaigns = [(t, n) for t, n, role, _ in role_events if role in ("candidate", "precandidate")]
    out = []
    for i, (t, what) in enumerate(faults):
        horizon = faults[i + 1][0] if i + 1 < len(faults) else end_ms
        before = [(lt, n) for lt, n, _ in leader_events if lt <= t]
        leader_before = before[-1][1] if before else None
        new = next(((lt, n) for lt, n, _ in leader_events if t < lt <= horizon), None)
        detect = next((ct for ct, _ in campaigns if t < ct <= horizon), None)
        commit = None
        if new is not None and commit_events:  # system side: the leader commits
            commit = next((ct for ct, n, _ in commit_events
                           if n == new[1] and new[0] <= ct <= horizon), None)
        elif new is not None:  # no commit events recorded: the first write answered after
            k = bisect.bisect_right(writes, new[0])
            commit = writes[k] if k < len(writes) and writes[k] <= horizon else None
        gaps = client_gaps(ops, t, horizon)
        out.append(FaultImpact(
            at_ms=t, fault=what, leader_before=leader_before,
            new_leader=new[1] if new else None,
            detect_ms=None if detect is None else detect - t,
            elect_ms=None if new is None else new[0] - t,
            commit_ms=None if commit is None else commit - t,
            client_gap_ms=statistics.median(gaps) if gaps else None,
            client_gap_max_ms=max(gaps) if gaps else None,
            clients_measured=len(gaps)))
    return out


_WRITES = frozenset({"SET", "DEL", "CAS"})


def fault_window(faults: Sequence[tuple[float, str]], duration_ms: float) -> (
        tuple[float, float] | None):
    """(first fault, first heal after it) in ms; the workload's end when nothing heals
    (everything is healed then). None without faults."""
    if not faults:
        return None
    start = faults[0][0]
    end = next((t for t, label in faults[1:] if label == "heal" and t >= start), duration_ms)
    return start, max(start, end)


def _down_events(faults: Sequence[tuple[float, str]]) -> list[tuple[float, str, str]]:
    """(t, node, action) for the faults that stop or start a node, read from their labels
    (the nemesis writes "crash n1,n2", "resume n3")."""
    out = []
    for t, label in faults:
        action, _, nodes = label.partition(" ")
        if action in ("crash", "restart", "pause", "resume"):
            out += [(t, n, action) for n in nodes.split(",") if n]
    return out


def leaderless_ms(role_events: Sequence[tuple[float, str, str, int]],
                  faults: Sequence[tuple[float, str]], start: float, end: float) -> float:
    """Time within [start, end] when no live, running node held the leader role."""
    changes: list[tuple[float, int, str, str]] = [(t, 0, n, role) for t, n, role, _ in
                                                  role_events]
    changes += [(t, 1, n, action) for t, n, action in _down_events(faults)]
    changes.sort(key=lambda c: (c[0], c[1]))
    role: dict[str, str | None] = {}
    paused: set[str] = set()
    without = 0.0
    last = start
    leading = False
    for t, kind, node, what in changes:
        if t > start:
            span = min(t, end) - last
            if span > 0 and not leading:
                without += span
            last = max(last, min(t, end))
        if t > end:
            break
        if kind == 0:
            role[node] = what
        elif what == "crash":
            role[node] = None  # its next role event comes after the restart
        elif what == "pause":
            paused.add(node)
        elif what == "resume":
            paused.discard(node)
        leading = any(r == "leader" and n not in paused for n, r in role.items())
    if last < end and not leading:
        without += end - last
    return without


def window_metrics(ops: Sequence[Operation], faults: Sequence[tuple[float, str]],
                   role_events: Sequence[tuple[float, str, str, int]],
                   leader_events: Sequence[tuple[float, str, int]],
                   duration_ms: float, end_ms: float) -> dict[str, Any] | None:
    """How the cluster fared during the fault window (see :data:`FIGURE_DEFINITIONS`):
    ``outcome`` (one of :data:`OUTCOMES`), ``leaderless_ms``, ``outage_ms`` (time without
    commits), ``outages``, ``recovery_ms`` (window start to the end of its last outage, None
    when it held), ``leader_changes``, ``throughput_ops_s``. None without faults."""
    window = fault_window(faults, duration_ms)
    if window is None:
        return None
    start, end = window
    ok = sorted(op.complete_ms for op in ops if op.outcome == "ok"
                and op.complete_ms is not None and op_type(op) in _WRITES)
    if not ok:  # a read-only workload: any answer shows a working leader
        ok = sorted(op.complete_ms for op in ops if op.outcome == "ok"
                    and op.complete_ms is not None)
    before = [t for t in ok if t <= start]
    usual = (statistics.median(b - a for a, b in itertools.pairwise(before))
             if len(before) > 2 else 0.0)
    threshold = max(MIN_OUTAGE_MS, OUTAGE_FACTOR * usual)
    prev = before[-1] if before else start
    outages: list[tuple[float, float | None]] = []  # (last write before, first after)
    for t in ok:
        if t <= start:
            continue
        if t - prev >= threshold:
            outages.append((prev, t))
        prev = t
        if t > end:  # the first write answered after the heal: the scan is done
            break
    if prev <= end and end - prev >= threshold:
        outages.append((prev, None))  # out at the heal, and no write answered since
    if not outages:
        outcome = "held"
    elif not any(s <= end and (e is None or e > end) for s, e in outages):
        outcome = "recovered" if len(outages) < UNSTABLE_OUTAGES else "unstable"
    elif outages[-1][1] is not None:
        outcome = "after heal"
    else:
        outcome = "never"
    outage_ms = sum(min(end, e if e is not None else end) - max(start, s) for s, e in outages
                    if s < end)
    last_end = outages[-1][1] if outages else None
    span_s = (end - start) / 1000
    served = sum(1 for op in ops if op.outcome == "ok" and op.complete_ms is not None
                 and start < op.complete_ms <= end)
    return {
        "start_ms": start, "end_ms": end, "outcome": outcome,
        "leaderless_ms": leaderless_ms(role_events, faults, start, end),
        "outage_ms": max(0.0, outage_ms), "outages": len(outages),
        "outage_threshold_ms": threshold,
        "recovery_ms": None if last_end is None else last_end - start,
        "leader_changes": sum(1 for t, _, _ in leader_events if start < t <= end),
        "throughput_ops_s": served / span_s if span_s > 0 else 0.0,
    }


def _rate(done: Sequence[float], lo: float, hi: float) -> float:
    """Ok answers per second completed in (lo, hi] (``done`` sorted)."""
    n = bisect.bisect_right(done, hi) - bisect.bisect_right(done, lo)
    return n * 1000.0 / (hi - lo)


def change_impact(done: Sequence[float], t: float, horizon: float) -> dict[str, float | None]:
    """The throughput around a change asked for at ``t`` (``done``: sorted completion times of
    ok answers; ``horizon``: the next change or the end of the workload): the rate before it,
    the lowest 1 s rate after it, the dip in percent and the time to recover (None when it did
    not recover before ``horizon``). See :data:`FIGURE_DEFINITIONS`."""
    before_from = max(0.0, t - BEFORE_CHANGE_MS)
    before = _rate(done, before_from, t) if t - before_from >= CHANGE_WINDOW_MS / 2 else None
    ends = [t + k * CHANGE_STEP_MS for k in range(int((horizon - t) // CHANGE_STEP_MS) + 1)]
    rates = [_rate(done, e - CHANGE_WINDOW_MS, e) for e in ends]
    lowest = min(rates, default=None)
    if not before or lowest is None:
        return {"before_ops_s": before, "lowest_ops_s": lowest, "dip_pct": None,
                "recovery_ms": None}
    # Poisson noise: a window's count of ok answers varies by about sqrt(count), so at 300
    # ops/s a quiet 1 s window falls 10% short once in twenty. Below 90% counts as not
    # recovered only by more than two standard deviations of the count.
    window_s = CHANGE_WINDOW_MS / 1000
    floor = RECOVERED * before - NOISE_SIGMAS * math.sqrt(before * window_s) / window_s
    low = [e for e, r in zip(ends, rates, strict=True) if r < floor]
    # Recovered once no window until the horizon is low again (a dip that comes late, say
    # when a removed node returns and campaigns, counts); never, if the last one is low.
    recovery = None if low and low[-1] == ends[-1] else (low[-1] - t if low else 0.0)
    return {"before_ops_s": before, "lowest_ops_s": lowest,
            "dip_pct": max(0.0, 100.0 * (1 - lowest / before)), "recovery_ms": recovery}


def membership_impacts(ops: Sequence[Operation], changes: Sequence[dict[str, Any]],
                       duration_ms: float) -> list[dict[str, Any]]:
    """Per membership change (its event on the experiment's clock, as
    :meth:`~consensus.experiment.nemesis.MembershipEvent.to_json` writes it): how it ended,
    the dip and recovery of :func:`change_impact`, and a new member's catch-up."""
    done = sorted(op.complete_ms for op in ops if op.outcome == "ok"
                  and op.complete_ms is not None)
    out = []
    for i, ev in enumerate(changes):
        t = ev["t"]
        horizon = min(duration_ms, changes[i + 1]["t"] if i + 1 < len(changes) else duration_ms)
        caught = ev.get("caught_up_ms")
        out.append({
            "at_ms": t, "change": ev["change"], "ok": ev["ok"], "result": ev["result"],
            "attempts": ev["attempts"], "node": ev.get("added"),
            "change_ms": None if ev["done_ms"] is None or not ev["ok"] else ev["done_ms"] - t,
            **change_impact(done, t, max(t, horizon)),
            "catch_up_ms": None if caught is None else caught - t,
            "catch_up_bytes": ev.get("catch_up_bytes") if caught is not None else None,
        })
    return out


def compute_metrics(ops: Sequence[Operation], *, end_ms: float, duration_ms: float,
                    committed: int,
                    messages: Counter[str], message_bytes: Counter[str],
                    faults: Sequence[tuple[float, str]],
                    role_events: Sequence[tuple[float, str, str, int]],
                    leader_events: Sequence[tuple[float, str, int]],
                    commit_events: Sequence[tuple[float, str, int]] = (),
                    membership: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    by_type: dict[str, list[float]] = defaultdict(list)
    for op in ops:
        if op.outcome == "ok" and op.latency_ms is not None:
            by_type[op_type(op)].append(op.latency_ms)
    all_ok = [x for values in by_type.values() for x in values]
    outcomes = Counter(op.outcome for op in ops)
    impacts = fault_impacts(faults, ops, role_events, leader_events, end_ms, commit_events)
    per_op = max(committed, 1)
    protocol = {k: v for k, v in messages.items() if not k.startswith("Client")}
    return {
        "operations": {"ok": outcomes["ok"], "fail": outcomes["fail"],
                       "info": outcomes["info"], "total": len(ops)},
        "committed": committed,
        # Answered ok during the workload, per second of workload (the settle time excluded).
        "throughput_ops_s": sum(1 for op in ops if op.outcome == "ok" and op.complete_ms
                                is not None and op.complete_ms <= duration_ms) / (
                                    duration_ms / 1000) if duration_ms else 0.0,
        "latency_ms": {"all": latency_summary(all_ok),
                       **{t: latency_summary(v) for t, v in sorted(by_type.items())}},
        "throughput_bins": throughput_bins(ops, end_ms),
        "bin_ms": BIN_MS,
        "messages": dict(sorted(messages.items())),
        "message_bytes": dict(sorted(message_bytes.items())),
        "messages_per_op": sum(protocol.values()) / per_op,
        "bytes_per_op": sum(v for k, v in message_bytes.items()
                            if not k.startswith("Client")) / per_op,
        "messages_per_op_by_kind": {k: v / per_op for k, v in sorted(protocol.items())},
        "leader_changes": len(leader_events),
        "elections_started": sum(1 for _, _, role, _ in role_events if role == "candidate"),
        "max_term": max((term for _, _, term in leader_events), default=0),
        "faults": [i.to_json() for i in impacts],
        "fault_window": window_metrics(ops, faults, role_events, leader_events, duration_ms,
                                       end_ms),
        # Over the faults after which a new leader was elected.
        "failover": {key: [getattr(i, key) for i in impacts
                           if i.new_leader and getattr(i, key) is not None]
                     for key in FAILOVER_KEYS},
        **_membership(ops, membership, duration_ms),
    }


def _membership(ops: Sequence[Operation], changes: Sequence[dict[str, Any]],
                duration_ms: float) -> dict[str, Any]:
    """The per-change metrics and, like ``failover``, each key's values over the changes
    (what the summary takes medians of); nothing for a run without changes."""
    if not changes:
        return {}
    impacts = membership_impacts(ops, changes, duration_ms)
    return {"membership": impacts,
            "reconfiguration": {key: [c[key] for c in impacts if c[key] is not None]
                                for key in MEMBERSHIP_KEYS}}
