"""How sure are we? Bootstrap confidence intervals across seeds, and verdicts in plain words.

Both algorithms run the same seeds, so a metric gives one *paired* difference per seed
(``b - a`` on seed 1, on seed 2, ...). The interval resamples those differences with
replacement (percentile bootstrap of their mean) from a fixed seed, so a report rebuilt from
the same data prints the same numbers. A verdict is only worded when the interval excludes
zero; with fewer than two pairs there is no interval at all.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BOOTSTRAP_SEED = 20240601
RESAMPLES = 10_000


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean difference with its bootstrap interval; ``lo``/``hi`` are None without one."""

    estimate: float
    lo: float | None
    hi: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1) of an already sorted sequence."""
    pos = q * (len(sorted_values) - 1)
    i = int(pos)
    if i + 1 >= len(sorted_values):
        return sorted_values[-1]
    return sorted_values[i] + (sorted_values[i + 1] - sorted_values[i]) * (pos - i)


def bootstrap_mean(values: Sequence[float], *, level: float = 0.95,
                   resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Percentile bootstrap interval of the mean of ``values`` (seeded, reproducible)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to bootstrap")
    estimate = statistics.fmean(values)
    if len(values) < 2:
        return Interval(estimate, None, None, len(values))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    return Interval(estimate, _percentile(means, tail), _percentile(means, 1 - tail), n)


def paired_bootstrap(a: Sequence[float | None], b: Sequence[float | None], **kw: float) -> (
        Interval | None):
    """Interval of the mean paired difference ``b - a`` (pairs with a missing side dropped)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} vs {len(b)})")
    diffs = [y - x for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return bootstrap_mean(diffs, **kw) if diffs else None  # type: ignore[arg-type]


def unpaired_bootstrap(a: Sequence[float | None], b: Sequence[float | None], *,
                       level: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> Interval | None:
    """Interval of ``mean(b) - mean(a)`` resampling each side on its own (runs not paired)."""
    xs = [float(v) for v in a if v is not None]
    ys = [float(v) for v in b if v is not None]
    if not xs or not ys:
        return None
    estimate = statistics.fmean(ys) - statistics.fmean(xs)
    if len(xs) < 2 or len(ys) < 2:
        return Interval(estimate, None, None, min(len(xs), len(ys)))
    rng = random.Random(seed)
    diffs = sorted(statistics.fmean(rng.choices(ys, k=len(ys)))
                   - statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    tail = (1 - level) / 2
    return Interval(estimate, _percentile(diffs, tail), _percentile(diffs, 1 - tail),
                    min(len(xs), len(ys)))


def paired_by_seed(seeds_a: Sequence[int], values_a: Sequence[float | None],
                   seeds_b: Sequence[int], values_b: Sequence[float | None]) -> (
        tuple[list[float | None], list[float | None]]):
    """Line two per-seed lists up on the seeds they share."""
    by_a = dict(zip(seeds_a, values_a, strict=True))
    by_b = dict(zip(seeds_b, values_b, strict=True))
    common = sorted(set(by_a) & set(by_b))
    return [by_a[s] for s in common], [by_b[s] for s in common]


# How each headline metric is said in words: (template, word when b - a < 0, word when > 0,
# whether {x} carries the unit). The subject is algorithm b; {x} is |difference|.
_PHRASES: dict[str, tuple[str, str, str, bool]] = {
    "throughput": ("{b} answers {x} {dir} than {a}", "fewer ops/s", "more ops/s", False),
    "messages per op": ("{b} sends {x} {dir} messages per operation than {a}", "fewer", "more",
                        False),
    "bytes per op": ("{b} sends {x} {dir} bytes per operation than {a}", "fewer", "more", False),
    "leader changes": ("{b} changes leader {x} {dir} times per run than {a}", "fewer", "more",
                       False),
    "elections started": ("{b} starts {x} {dir} elections per run than {a}", "fewer", "more",
                          False),
    "failover: detect": ("{b} notices a lost leader {x} {dir} than {a}", "sooner", "later", True),
    "failover: elect": ("{b} elects a new leader {x} {dir} than {a}", "sooner", "later", True),
    "failover: unavailable": ("{b} is unavailable {x} {dir} per failover than {a}", "shorter",
                              "longer", True),
    "operations unknown": ("{b} leaves {x} {dir} operations of unknown outcome than {a}",
                           "fewer", "more", False),
}


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def fmt_number(x: float | None, unit: str = "") -> str:
    """A compact human number with its unit: 1,234 ms, 8.9, 0.012."""
    if x is None:
        return "\u2013"
    return f"{_fmt(x)} {unit}".strip()


def verdict(label: str, unit: str, a: str, b: str, interval: Interval | None) -> str | None:
    """The difference ``b - a`` in plain words, or None when the interval includes zero."""
    if interval is None or not interval.excludes_zero:
        return None
    assert interval.lo is not None and interval.hi is not None
    negative = interval.estimate < 0
    lo, hi = sorted((abs(interval.lo), abs(interval.hi)))
    ci = f"(95% CI {_fmt(lo)}\u2013{_fmt(hi)}{' ' + unit if unit else ''})"
    if label in _PHRASES:
        template, less, more, with_unit = _PHRASES[label]
        x = fmt_number(abs(interval.estimate), unit if with_unit else "")
        return f"{template.format(a=a, b=b, x=x, dir=less if negative else more)} {ci}"
    x = fmt_number(abs(interval.estimate), unit)
    return f"{b}'s {label} is {x} {'lower' if negative else 'higher'} than {a}'s {ci}"
