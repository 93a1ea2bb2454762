"""The client history: one record per operation, Jepsen-style invoke/ok/fail/info."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Operation:
    """One client operation from invocation to its outcome.

    ``outcome`` is ``ok`` (applied, result known), ``fail`` (definitely not applied, or applied
    as a failed CAS / malformed command) or ``info`` (unknown: the run ended or the client gave
    up while it was in flight, so it may or may not have taken effect).
    """

    client: str
    seq: int
    command: str
    invoke_ms: float
    complete_ms: float | None = None
    outcome: str = "info"
    result: str | None = None
    attempts: int = 1
    # Open loop: when the operation arrived (it may have waited for the client's previous one).
    scheduled_ms: float | None = None

    @property
    def latency_ms(self) -> float | None:
        """From arrival (open loop) or invocation to the answer; None if never answered."""
        if self.complete_ms is None:
            return None
        start = self.invoke_ms if self.scheduled_ms is None else self.scheduled_ms
        return self.complete_ms - start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def unanswered(ops: Iterable[Operation], settle_s: float) -> list[str]:
    """The operations still unanswered ``settle_s`` after every fault was healed."""
    return [f"{op.client}#{op.seq} {op.command!r} unanswered {settle_s:g}s after healing"
            for op in ops if op.complete_ms is None]
