"""Memory after many operations: peak RSS of a leader and a follower, with and without log
compaction, and the protocol's bytes per operation from the nodes' own traffic counters.

Each configuration is a fresh 3-node cluster (fsync off: memory does not depend on it) driven
by the in-process generator (:mod:`consensus.bench.inprocess`, the fastest way to push many
operations through) in steps of ``chunk_s`` at ``rate`` until ``ops`` operations are
acknowledged. Then it reads each process's peak resident set (``VmHWM`` in
``/proc/<pid>/status``; ``VmRSS`` is the current one), the size of its data folder (WAL and
snapshots), and the ``bytes_by_kind`` counters the nodes publish in their statuses (protocol
messages only, as each sender encoded them: there is no client traffic in this mode).

Compaction is the ``snapshot_entries`` knob (:class:`consensus.node.Config`, ``--variant
snapshot_entries=N``): where an algorithm does not offer it yet, its row says "n/a" and why.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from consensus import variants
from consensus.bench.throughput import ELECTION_TIMEOUT_MS, HEARTBEAT_MS, BusCluster
from consensus.node import Config


def proc_memory(pid: int | None) -> dict[str, int] | None:
    """Peak and current resident set of a process, in KiB (Linux ``/proc``), or None."""
    if pid is None:
        return None
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return {"peak_kib": out["VmHWM"], "rss_kib": out["VmRSS"]} if len(out) == 2 else None


def _data_bytes(cluster: BusCluster, node: str) -> int:
    """What a node keeps on disk: its WAL and snapshots (not its log file or socket)."""
    folder = Path(cluster.state.directory)
    return sum(p.stat().st_size for p in folder.glob(f"{node}.*")
               if p.is_file() and p.suffix not in (".log", ".sock"))


def _traffic(cluster: BusCluster) -> tuple[Counter[str], Counter[str]]:
    sent: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for st in list(cluster.cluster.status.values()):
        sent.update(st.sent_by_kind)
        size.update(st.bytes_by_kind)
    return sent, size


def compaction_unavailable(algorithm: str, snapshot_entries: int) -> str | None:
    """Why ``algorithm`` cannot run with ``snapshot_entries`` (None: it can; 0, compaction
    off, needs nothing)."""
    if not snapshot_entries:
        return None
    try:
        variants.check(algorithm, {"snapshot_entries": snapshot_entries})
    except ValueError as exc:
        return str(exc)
    return None


def measure_memory(algorithm: str, broker: str, *, ops: int, rate: float,
                   snapshot_entries: int = 0, chunk_s: float = 5.0, broker_pid: int | None = None,
                   log: Any = None) -> dict[str, Any]:
    """One cluster, ``ops`` acknowledged operations; see the module docstring."""
    row: dict[str, Any] = {"algorithm": algorithm, "nodes": 3, "ops_target": ops,
                           "rate": rate, "snapshot_entries": snapshot_entries}
    why = compaction_unavailable(algorithm, snapshot_entries)
    if why is not None:
        return {**row, "na": f"{algorithm} does not offer snapshot_entries yet",
                "na_detail": why}
    config = Config(heartbeat_ms=HEARTBEAT_MS, election_timeout_ms=ELECTION_TIMEOUT_MS,
                    snapshot_entries=snapshot_entries)
    cluster = BusCluster(algorithm, 3, broker, fsync=False, load="in-process", config=config,
                         broker_pid=broker_pid)
    try:
        first_leader = cluster.leader
        pids = cluster.node_pids()
        at_start = {n: proc_memory(pid) for n, pid in pids.items()}
        sent0, size0 = _traffic(cluster)
        acked, offered, started = 0, 0, time.perf_counter()
        limit = started + max(60.0, 4 * ops / rate)
        while acked < ops and time.perf_counter() < limit:
            cluster.settle()
            chunk = min(chunk_s, max(0.5, (ops - acked) / rate))
            step = cluster.step(rate, chunk)
            acked += step.acked
            offered += step.offered
            if log:
                log(f"  memory {algorithm} snapshot_entries={snapshot_entries}: {acked:,} of "
                    f"{ops:,} operations acknowledged")
        wall = time.perf_counter() - started
        cluster.settle()
        time.sleep(0.3)  # a status after the last operation
        sent1, size1 = _traffic(cluster)
        # The figures are of the node leading at the end (it may have changed under load).
        leader = cluster.leader
        follower = next(n for n in cluster.ids if n != leader)
        if leader != first_leader:
            row["leader_changed"] = True
        row.update(
            start={"leader": at_start[leader], "follower": at_start[follower]},
            acked=acked, offered=offered, wall_s=round(wall, 1),
            leader=proc_memory(pids[leader]), follower=proc_memory(pids[follower]),
            data_bytes={"leader": _data_bytes(cluster, leader),
                        "follower": _data_bytes(cluster, follower)},
            protocol_by_kind=[
                {"kind": k, "messages_per_op": round((sent1[k] - sent0[k]) / acked, 3),
                 "bytes_per_op": round((size1[k] - size0[k]) / acked, 1)}
                for k in sorted(size1, key=lambda k: -(size1[k] - size0[k]))
                if size1[k] > size0[k]
            ] if acked else [],
            counted_at="the nodes' own traffic counters (protocol messages, as encoded)")
    finally:
        cluster.close()
    return row
