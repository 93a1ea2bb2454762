"""The client history: one record per operation, Jepsen-style invoke/ok/fail/info."""

from __future__ import annotations

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

    @property
    def latency_ms(self) -> float | None:
        return None if self.complete_ms is None else self.complete_ms - self.invoke_ms

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
