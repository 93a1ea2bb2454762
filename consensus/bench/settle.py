"""Between two steps of the search: wait until the system has worked off its backlog, and check.

Why: after an overloaded step, a system is still answering the requests it queued (PySyncObj
for 10-16 s; ours while the broker's and the nodes' queues drain), and the next step measures
that backlog instead of the system: whichever system or mode ran first, with no backlog
before it, came out best, and the max-throughput search moved by +-25% between runs.

"Gone" is checked two ways, both required for ``quiet_windows`` windows in a row:

- the system's processes (nodes, broker, load generators) use little CPU: at most ``idle``
  cores, a threshold calibrated on the freshly started, idle system (:func:`idle_threshold`);
  a backlog is work, so it shows here whoever holds it;
- the system's own account of pending work is empty (``pending``: the generators'
  unanswered requests, the leader's log beyond its commit index), where it has one.

Pure logic over ``sample() -> (cpu_seconds, pending)``; the clock and sleep are injected, so it
is tested without processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

WINDOW_S = 0.2
QUIET_WINDOWS = 2
TIMEOUT_S = 20.0
MIN_IDLE_CORES = 0.05  # above a calibrated baseline: heartbeats and statuses are not a backlog


@dataclass(frozen=True, slots=True)
class Quiet:
    """What a settle found: whether the backlog is gone, after how long, and the last
    window's CPU rate (cores) and pending count."""

    settled: bool
    waited_s: float
    cores: float
    pending: int

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def idle_threshold(baseline_cores: float) -> float:
    """The CPU rate below which a system counts as idle, from its rate when freshly idle."""
    return max(2 * baseline_cores, baseline_cores + MIN_IDLE_CORES)


def cpu_rate(sample: Callable[[], tuple[float, int]], window_s: float = WINDOW_S, *,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> tuple[float, int]:
    """Cores used over one window, and the pending count at its end."""
    c0, t0 = sample()[0], clock()
    sleep(window_s)
    c1, pending = sample()
    return (c1 - c0) / max(clock() - t0, 1e-9), pending


def wait_quiet(sample: Callable[[], tuple[float, int]], idle_cores: float, *,
               window_s: float = WINDOW_S, quiet_windows: int = QUIET_WINDOWS,
               timeout_s: float = TIMEOUT_S, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Quiet:
    """Return once ``quiet_windows`` consecutive windows had CPU at most ``idle_cores`` and
    nothing pending, or at ``timeout_s`` with ``settled`` False."""
    start = clock()
    quiet = 0
    cores, pending = 0.0, 0
    while True:
        cores, pending = cpu_rate(sample, window_s, clock=clock, sleep=sleep)
        quiet = quiet + 1 if cores <= idle_cores and pending == 0 else 0
        waited = clock() - start
        if quiet >= quiet_windows:
            return Quiet(True, waited, cores, pending)
        if waited >= timeout_s:
            return Quiet(False, waited, cores, pending)
