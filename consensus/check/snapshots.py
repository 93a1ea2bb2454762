"""The state a node must hold after applying the agreed prefix up to some index, to compare a
node restored from a snapshot with.

A node that installs a leader's snapshot, or restarts from a compacted write-ahead log,
skips the entries the snapshot covers: the applied-prefix check never sees them from it. What
it must hold instead is exactly the state of a replica that applied them, which
:class:`ReferenceState` rebuilds from the agreed sequence the other nodes applied (a fresh
:class:`~consensus.kv.KVStore` applying each agreed command in order) and compares by
:meth:`~consensus.kv.KVStore.digest` (data and the exactly-once sessions alike).

It runs only when a check needs it (a snapshot was installed, the end of a run) and keeps a
few checkpoints of its own store, so asking for an earlier index than the last one asked does
not replay the run from the start.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from consensus.kv import KVStore
from consensus.messages import Command

# Keep a checkpoint of the reference store at most every this many applied entries.
_CHECKPOINT_EVERY = 1024


class ReferenceState:
    """Digests of the agreed prefix ``1..i``, for any ``i`` the agreed sequence covers."""

    def __init__(self, agreed: Mapping[int, Command | None]) -> None:
        self._agreed = agreed
        self._store = KVStore()
        self._checkpoints: list[int] = [0]  # indexes, ascending
        self._saved: dict[int, bytes] = {0: self._store.snapshot()}

    @property
    def index(self) -> int:
        return self._store.applied

    def digest_at(self, index: int) -> str | None:
        """The digest of the state after applying agreed entries ``1..index``; None when some
        of them were never seen applied (nothing to compare with)."""
        if index < self._store.applied:
            start = self._checkpoints[bisect.bisect_right(self._checkpoints, index) - 1]
            self._store = KVStore.from_snapshot(self._saved[start])
        agreed = self._agreed
        store = self._store
        while store.applied < index:
            nxt = store.applied + 1
            if nxt not in agreed:
                return None
            store.apply(agreed[nxt])
            if store.applied - self._checkpoints[-1] >= _CHECKPOINT_EVERY:
                self._checkpoints.append(store.applied)
                self._saved[store.applied] = store.snapshot()
        return store.digest()
