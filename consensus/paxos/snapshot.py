"""What a Multi-Paxos snapshot holds: the state after every slot up to its slot is chosen.

A snapshot replaces the chosen prefix of the slot store, so it must hold everything that
prefix decided and that later slots still depend on: the key-value store (data, client
sessions for exactly-once, how many slots were applied) and the configurations chosen in
it. A configuration chosen in slot ``i`` governs slots from ``i + alpha`` on, so the ones
chosen in the last ``alpha`` slots of the prefix are not in force yet at the snapshot's slot
and must travel with it too: they are kept as ``(slot chosen in, configuration)`` pairs,
the latest one in force first.

The form is canonical JSON text (sorted keys, no spaces), the same on every replica that
chose the same prefix: it is what :class:`~consensus.paxos.messages.Learn` cuts into chunks
and what :class:`~consensus.paxos.messages.SlotSnapshot` stores. Text rather than bytes
because the codec speaks JSON, and the text is ASCII, so a chunk of ``n`` characters is
``n`` bytes on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.kv import KVStore
from consensus.membership import ChangeError, Membership
from consensus.messages import NodeId


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """A decoded snapshot: the store, and ``(slot chosen in, configuration)`` pairs in slot
    order (empty for a cluster that never changed its initial configuration)."""

    kv: KVStore
    configs: tuple[tuple[int, Membership], ...]


@dataclass(slots=True)
class IncomingSnapshot:
    """A snapshot arriving in :class:`~consensus.paxos.messages.Learn` chunks from ``src``:
    ``parts`` hold its first ``received`` bytes of ``total``."""

    src: NodeId
    slot: int
    total: int
    parts: list[str]
    received: int = 0


def encode_state(kv: KVStore, configs: Sequence[tuple[int, Membership]]) -> str:
    """The canonical text of a snapshot of ``kv`` and ``configs`` (see the module doc)."""
    return json.dumps({"configs": [[slot, m.to_text()] for slot, m in configs],
                       "kv": json.loads(kv.snapshot())},
                      sort_keys=True, separators=(",", ":"))


def decode_state(text: str) -> SnapshotState:
    """Parse :func:`encode_state`'s text; ValueError naming what is wrong."""
    try:
        obj = json.loads(text)
        kv = KVStore.from_snapshot(json.dumps(obj["kv"]).encode())
        configs = tuple((int(slot), Membership.from_text(str(cfg)))
                        for slot, cfg in obj["configs"])
    except (KeyError, TypeError, ValueError, ChangeError) as exc:
        raise ValueError(f"malformed Multi-Paxos snapshot: {exc}") from exc
    return SnapshotState(kv, configs)
