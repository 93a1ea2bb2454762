"""The maximum sustained throughput: the highest offered rate at which at least 99% of the
operations are acknowledged within 1 s, found by doubling and then bisecting.

Pure logic over a ``measure(rate) -> Step`` function, so it is tested with a fake one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

ACK_WITHIN_S = 1.0
REQUIRED_FRACTION = 0.99


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass(slots=True)
class Step:
    """One short run at one offered rate."""

    offered_rate: float  # ops/s
    offered: int  # operations scheduled
    acked_in_time: int  # acknowledged within ACK_WITHIN_S of their scheduled time
    acked: int  # acknowledged at all (before the step's grace period ended)
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.acked_in_time / self.offered if self.offered else 0.0

    @property
    def sustained(self) -> bool:
        return self.offered > 0 and self.fraction >= REQUIRED_FRACTION

    @property
    def throughput(self) -> float:
        """Operations acknowledged within 1 s, per second."""
        return self.acked_in_time / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(fraction=round(self.fraction, 4), sustained=self.sustained,
                   throughput=round(self.throughput, 1))
        return out

    @classmethod
    def from_latencies(cls, rate: float, offered: int, latencies_ms: list[float],
                       seconds: float, service_ms: list[float] | None = None,
                       **extra: Any) -> Step:
        """``latencies_ms`` from each operation's scheduled time decide "within 1 s";
        p50/p99 are of ``service_ms`` (from the request's send to its reply) when given, and
        the scheduled-time percentiles are kept in ``extra``."""
        lat = sorted(latencies_ms)
        in_time = sum(1 for v in lat if v <= ACK_WITHIN_S * 1000)
        shown = sorted(service_ms) if service_ms is not None else lat
        extra = dict(extra)
        if service_ms is not None:
            extra.update(sched_p50_ms=percentile(lat, 0.5), sched_p99_ms=percentile(lat, 0.99))
        return cls(rate, offered, in_time, len(lat), seconds, percentile(shown, 0.5),
                   percentile(shown, 0.99), extra)


@dataclass(slots=True)
class SearchResult:
    max_rate: float  # highest offered rate that was sustained (0: none was)
    steps: list[Step]

    def to_json(self) -> dict[str, Any]:
        return {"max_rate": self.max_rate, "steps": [s.to_json() for s in self.steps]}


def search_max(measure: Callable[[float], Step], *, start: float = 500.0,
               limit: float = 100_000.0, bisections: int = 4,
               min_gap: float = 0.05) -> SearchResult:
    """Double the rate from ``start`` until a step is not sustained (or ``limit``), then
    bisect between the last sustained and the first failed rate ``bisections`` times (or
    until they are within ``min_gap`` of each other, relative)."""
    steps: list[Step] = []
    good, bad = 0.0, None
    rate = start
    while rate <= limit:
        step = measure(rate)
        steps.append(step)
        if step.sustained:
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    if bad is None:
        return SearchResult(good, steps)
    lo = good if good else bad / 8
    if not good:  # even the start rate failed: look below it
        while lo >= 1:
            step = measure(lo)
            steps.append(step)
            if step.sustained:
                good = lo
                break
            bad, lo = lo, lo / 4
        if not good:
            return SearchResult(0.0, steps)
    hi = bad
    for _ in range(bisections):
        if (hi - good) / hi <= min_gap:
            break
        mid = round((good + hi) / 2)
        step = measure(mid)
        steps.append(step)
        if step.sustained:
            good = mid
        else:
            hi = mid
    return SearchResult(good, steps)


@dataclass(slots=True)
class Confirmed:
    """The search's maximum after repeating its decisive step: ``max_rate`` stands when most
    of its trials were sustained (``confirmed``); ``trials`` are the steps at each rate tried."""

    max_rate: float
    trials: dict[float, list[Step]]
    confirmed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"max_rate": self.max_rate, "confirmed": self.confirmed,
                "trials": [{"rate": rate, "sustained": sum(s.sustained for s in steps),
                            "of": len(steps),
                            "throughput": [round(s.throughput, 1) for s in steps]}
                           for rate, steps in self.trials.items()]}


def _majority(steps: list[Step]) -> bool:
    return 2 * sum(s.sustained for s in steps) > len(steps)


def confirm_max(measure: Callable[[float], Step], found: SearchResult, repeats: int,
                max_tries: int = 3) -> Confirmed:
    """Repeat the step at the search's maximum ``repeats`` times. One lucky step (a quiet
    moment on a shared machine) must not set the maximum: it stands when a majority of its
    trials (the search's own included) were sustained; otherwise a lower rate is tried the
    same way, at most ``max_tries`` rates; then the next candidate is reported unconfirmed.

    The lower rate is halfway down to the next lower sustained rate of the search (that
    rate itself once it is within 10%; 10% less when there is none). Not the next lower
    rate outright: when the maximum came from the doubling phase, that is half of it, and
    one failed confirmation would halve the figure (Multi-Paxos in-process once fell from
    32,000 to 16,000 ops/s that way while another run held 36,000)."""
    rate = found.max_rate
    trials: dict[float, list[Step]] = {}
    if repeats <= 0:
        return Confirmed(rate, trials)
    for _ in range(max_tries):
        if rate <= 0:
            return Confirmed(0.0, trials)
        steps = [s for s in found.steps if s.offered_rate == rate][-1:]
        steps += [measure(rate) for _ in range(repeats)]
        trials[rate] = steps
        if _majority(steps):
            return Confirmed(rate, trials)
        rate = _next_lower(found, rate)
    return Confirmed(rate, trials, confirmed=False)


def _next_lower(found: SearchResult, rate: float) -> float:
    """The rate to confirm after ``rate`` failed (see :func:`confirm_max`)."""
    lower = max((s.offered_rate for s in found.steps if s.sustained and s.offered_rate < rate),
                default=0.0)
    if not lower:
        return round(rate * 0.9)
    if (rate - lower) / rate <= 0.1:
        return lower
    return round((lower + rate) / 2)
