"""Group commit off the event loop: fsync on a writer thread, output released in order.

A node process must not send anything that depends on records before those records are on
disk. Doing the fsync on the event-loop thread (as a plain ``storage.append`` would) stops
the node for the whole fsync; messages arriving meanwhile just wait in the socket. Here the
fsync runs on one writer thread instead, so the loop keeps receiving and stepping while a
write is in flight, and everything produced meanwhile becomes the next write: batches grow
by themselves with the load, one fsync each (the classic group commit of databases).

The rule that keeps this safe is FIFO: output handed to :meth:`GroupCommitter.submit` leaves
only after *its* records and every record submitted before it are durable, even output with
no records of its own (the node's state already reflects the earlier, not yet durable ones).

Records whose class says ``sync = False`` (Raft's ``CommitMark``, Paxos's ``Committed``: the
commit index, volatile state in Raft's Figure 2, like etcd's ``MustSync`` which does not sync
for a commit-only change) are written but do not by themselves call for an fsync: a batch of
only those is written on the loop thread and its output leaves at once. They survive a killed
process (the page cache keeps them) and reach the disk with the next fsync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from consensus.storage import Storage, needs_sync

log = logging.getLogger(__name__)

T = TypeVar("T")
# Starts writing records in the background and calls back with None, or the error, once they
# are durable (the node runtime: its writer thread; the simulator: a disk that takes time).
StartWrite = Callable[[list[Any], Callable[[BaseException | None], None]], None]


class WriteFailed(RuntimeError):
    """The write-ahead log could not be written: the node must stop (it cannot keep promises)."""


class GroupCommitter(Generic[T]):
    """Persist records, then hand their dependent output to ``release`` (see the module doc).

    Background writes go to one writer thread, or to ``start_write`` when given (the
    simulator's disk). ``threaded=False`` without ``start_write`` writes synchronously on the
    caller's thread and releases at once: for runtimes driven by hand in tests, where nothing
    must be left in flight.
    """

    def __init__(self, storage: Storage, release: Callable[[T], None], *,
                 threaded: bool = True, on_failure: Callable[[BaseException], None] | None = None,
                 start_write: StartWrite | None = None) -> None:
        self.storage = storage
        self.release = release
        self.on_failure = on_failure
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="wal")
                          if threaded and start_write is None else None)
        self._start_write = start_write or (self._start_on_thread if self._executor else None)
        self._in_flight: list[T] | None = None  # output waiting for the write in flight
        self._next_records: list[Any] = []  # the next write, gathered while one is in flight
        self._next_output: list[T] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.failed = False
        self.writes = 0  # fsynced writes, here or on the thread, and their records (status)
        self.records = 0

    def submit(self, records: Sequence[Any], output: T, *, background: bool = True) -> None:
        """Persist ``records``, then release ``output``. With ``background=False`` and nothing
        in flight, the fsync happens right here: cheaper when the caller has nothing to do
        meanwhile (a follower: its output is all acknowledgements of these very records),
        since a hop to the writer thread and back costs two thread wake-ups."""
        if self.failed:
            return  # a write failed: nothing more is written or sent (the node is stopping)
        if self._in_flight is not None:
            self._next_records.extend(records)
            self._next_output.append(output)
            return
        self._write(list(records), [output],
                    background=background and self._start_write is not None)

    def _write(self, records: list[Any], outputs: list[T], *, background: bool = True) -> None:
        """Nothing in flight: fsync (on the thread, or here), or no fsync if none is needed."""
        sync = any(needs_sync(r) for r in records)
        if sync:
            self.writes += 1
            self.records += len(records)
        if not sync or not background:
            try:
                if records:
                    self.storage.append(records, sync=sync)
            except OSError as exc:
                self._failed(exc)
                return
            for output in outputs:
                self.release(output)
            self._idle.set()
            return
        assert self._start_write is not None
        self._in_flight = outputs
        self._idle.clear()
        self._start_write(records, self._written)

    def _start_on_thread(self, records: list[Any],
                         done: Callable[[BaseException | None], None]) -> None:
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self.storage.append, records)
        future.add_done_callback(
            lambda f: done(f.exception() if not f.cancelled() else asyncio.CancelledError()))

    def _written(self, exc: BaseException | None) -> None:
        outputs, self._in_flight = self._in_flight or [], None
        if exc is not None:
            self._failed(exc)
            return
        for output in outputs:
            self.release(output)
        records, waiting = self._next_records, self._next_output
        self._next_records, self._next_output = [], []
        self._write(records, waiting)

    def _failed(self, exc: BaseException) -> None:
        # Like PostgreSQL after "fsyncgate": a failed fsync leaves the page cache in an
        # unknown state, so the only safe answer is to stop, sending nothing that depended
        # on it. The node restarts from what the WAL really holds.
        log.critical("write-ahead log write failed: %s; stopping", exc)
        self.failed = True
        self._next_records, self._next_output = [], []
        self._idle.set()
        if self.on_failure is not None:
            self.on_failure(WriteFailed(str(exc)))

    async def flush(self) -> None:
        """Wait until nothing is in flight (before closing the log)."""
        await self._idle.wait()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


__all__ = ["GroupCommitter", "WriteFailed"]
