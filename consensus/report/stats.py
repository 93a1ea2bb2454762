"""How sure are we? Student-t intervals on paired per-seed differences, and verdicts in words.

Both algorithms run the same seeds, so a metric gives one *paired* difference per seed
(``b - a`` on seed 1, on seed 2, ...). The interval is the classic t-interval on the mean of
those differences, ``mean ± t(n-1) · sd / sqrt(n)``. It is honest for small n in the way a
percentile bootstrap is not: with two seeds the bootstrap's "95% interval" is just the range
of the two differences and excludes zero half the time by chance, while t with one degree of
freedom (12.7) makes the interval as wide as two points deserve.

A verdict is worded only when the interval excludes zero *and* it rests on at least
:data:`MIN_FINDING_SEEDS` pairs; fewer pairs make the comparison "exploratory". A report makes
many comparisons at once, so it also says how many would exclude zero by chance alone
(:func:`chance_note`).

The t quantile is computed here (scipy is not a dependency for one function): Student's
distribution with an integer number of degrees of freedom has a closed-form CDF (a finite
trigonometric series, Abramowitz & Stegun 26.7.3-4), inverted by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95
# Fewer paired seeds than this never make a worded finding: the comparison is exploratory.
MIN_FINDING_SEEDS = 5


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean difference with its t-interval; ``lo``/``hi`` are None with fewer than 2 pairs."""

    estimate: float
    lo: float | None
    hi: float | None
    n: int
    level: float = LEVEL

    @property
    def excludes_zero(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.lo > 0 or self.hi < 0)

    @property
    def exploratory(self) -> bool:
        """Too few pairs to word a finding from, whatever the interval says."""
        return self.n < MIN_FINDING_SEEDS

    @property
    def is_finding(self) -> bool:
        return self.excludes_zero and not self.exploratory


# -- Student's t ---------------------------------------------------------------------------------

def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (a positive integer) degrees of freedom.

    Exact for integer df: with theta = atan(t / sqrt(df)), P(|T| < t) is a finite series in
    sin/cos theta (odd df adds the Cauchy term 2 theta / pi).
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if t == 0:
        return 0.5
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 0.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
        central = 2 / math.pi * (theta + s * math.sqrt(c2) * total) if df > 1 else (
            2 * theta / math.pi)
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        central = s * total
    central = min(max(central, 0.0), 1.0)
    return 0.5 + central / 2 if t > 0 else 0.5 - central / 2


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`, to about 1e-10)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # the upper tail is heavy for df = 1: grow the bracket
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return (lo + hi) / 2


# -- intervals ---------------------------------------------------------------------------------

def t_interval(values: Sequence[float], *, level: float = LEVEL) -> Interval:
    """Mean of ``values`` with its two-sided Student-t interval (none with fewer than 2)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values for an interval")
    n = len(values)
    estimate = statistics.fmean(values)
    if n < 2:
        return Interval(estimate, None, None, n, level)
    half = t_quantile(1 - (1 - level) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(estimate, estimate - half, estimate + half, n, level)


def paired_diffs(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """Per-pair differences ``b - a``; a pair with a missing side is dropped."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} vs {len(b)})")
    return [float(y) - float(x) for x, y in zip(a, b, strict=True)
            if x is not None and y is not None]


def paired_t(a: Sequence[float | None], b: Sequence[float | None], *,
             level: float = LEVEL) -> Interval | None:
    """t-interval of the mean paired difference ``b - a``; None when no pair is complete."""
    diffs = paired_diffs(a, b)
    return t_interval(diffs, level=level) if diffs else None


def welch_t(a: Sequence[float | None], b: Sequence[float | None], *,
            level: float = LEVEL) -> Interval | None:
    """Interval of ``mean(b) - mean(a)`` for runs that are not paired (Welch's t).

    The Welch-Satterthwaite degrees of freedom are rounded *down* to an integer, which only
    widens the interval. ``n`` is the smaller side.
    """
    xs = [float(v) for v in a if v is not None]
    ys = [float(v) for v in b if v is not None]
    if not xs or not ys:
        return None
    estimate = statistics.fmean(ys) - statistics.fmean(xs)
    n = min(len(xs), len(ys))
    if n < 2:
        return Interval(estimate, None, None, n, level)
    vx, vy = statistics.variance(xs) / len(xs), statistics.variance(ys) / len(ys)
    se = math.sqrt(vx + vy)
    if se == 0:
        return Interval(estimate, estimate, estimate, n, level)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(xs) - 1) + vy ** 2 / (len(ys) - 1))
    half = t_quantile(1 - (1 - level) / 2, max(1, math.floor(df))) * se
    return Interval(estimate, estimate - half, estimate + half, n, level)


def paired_by_seed(seeds_a: Sequence[int], values_a: Sequence[float | None],
                   seeds_b: Sequence[int], values_b: Sequence[float | None]) -> (
        tuple[list[float | None], list[float | None]]):
    """Line two per-seed lists up on the seeds they share."""
    by_a = dict(zip(seeds_a, values_a, strict=True))
    by_b = dict(zip(seeds_b, values_b, strict=True))
    common = sorted(set(by_a) & set(by_b))
    return [by_a[s] for s in common], [by_b[s] for s in common]


def chance_note(intervals: Sequence[Interval | None], level: float = LEVEL) -> str:
    """How many comparisons a report makes and how many would exclude zero by chance alone."""
    tested = [i for i in intervals if i is not None and i.lo is not None]
    if not tested:
        return "No comparison in this report has an interval (each needs at least 2 seeds)."
    k = len(tested)
    expected = k * (1 - level)
    findings = sum(i.is_finding for i in tested)
    return (f"{k} comparison{'s' if k != 1 else ''}, each with a {level:.0%} interval: even "
            f"with no real difference about {expected:.1f} would exclude zero by chance alone "
            f"({findings} worded as finding{'s' if findings != 1 else ''}; a finding needs "
            f"at least {MIN_FINDING_SEEDS} paired seeds).")


# -- words -------------------------------------------------------------------------------------

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
    "failover: commit": ("{b} commits again {x} {dir} after a failover than {a}", "sooner",
                         "later", True),
    "failover: client gap": ("{b}'s clients wait {x} {dir} per failover than {a}'s", "less",
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
    """The difference ``b - a`` in plain words, or None when it is not a finding (the
    interval includes zero, or fewer than :data:`MIN_FINDING_SEEDS` pairs)."""
    if interval is None or not interval.is_finding:
        return None
    assert interval.lo is not None and interval.hi is not None
    negative = interval.estimate < 0
    lo, hi = sorted((abs(interval.lo), abs(interval.hi)))
    ci = (f"({interval.level:.0%} CI {_fmt(lo)}\u2013{_fmt(hi)}{' ' + unit if unit else ''}, "
          f"n = {interval.n} seeds)")
    if label in _PHRASES:
        template, less, more, with_unit = _PHRASES[label]
        x = fmt_number(abs(interval.estimate), unit if with_unit else "")
        return f"{template.format(a=a, b=b, x=x, dir=less if negative else more)} {ci}"
    x = fmt_number(abs(interval.estimate), unit)
    return f"{b}'s {label} is {x} {'lower' if negative else 'higher'} than {a}'s {ci}"
