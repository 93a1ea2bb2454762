"""A follower's side of an InstallSnapshot transfer (paper §7): the chunks received so far."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class IncomingSnapshot:
    """A snapshot in transfer: its last index, and the chunks received so far, in order.
    Invariant: ``received`` is the total length of ``chunks``."""

    index: int
    chunks: list[str] = field(default_factory=list)
    received: int = 0

    def take(self, offset: int, data: str) -> bool:
        """Add the chunk at ``offset``; False (nothing added) if it is not the next one."""
        if offset != self.received:
            return False
        self.chunks.append(data)
        self.received += len(data)
        return True

    def data(self) -> str:
        return "".join(self.chunks)
