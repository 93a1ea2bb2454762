"""The group committer: output leaves only after its records and every earlier record are
durable; writes gathered while one is in flight go out as one; commit-index-only records
need no fsync; a failed write releases nothing and stops the node."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from consensus.group_commit import GroupCommitter, WriteFailed
from consensus.raft.messages import CommitMark, Entry, HardState, LogAppend
from consensus.storage import FileStorage


class GatedStorage(FileStorage):
    """A real WAL whose fsynced appends wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.calls: list[tuple[int, bool]] = []  # (records, sync) per append
        self.fail = False

    def append(self, records, *, sync: bool = True) -> None:
        self.calls.append((len(records), sync))
        if sync:
            self.gate.wait(5)
            if self.fail:
                raise OSError(5, "Input/output error")
        super().append(records, sync=sync)


def entry(i: int) -> LogAppend:
    return LogAppend((Entry(1, i, None),))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_output_waits_for_its_records_and_all_earlier_ones(tmp_path):
    async def main():
        storage = GatedStorage(tmp_path / "n1.wal")
        released: list[str] = []
        gc = GroupCommitter(storage, released.append)
        gc.submit([HardState(1, "n1")], "vote")
        gc.submit([], "depends-on-the-vote")  # no records of its own, still must wait
        gc.submit([entry(1)], "a")
        gc.submit([entry(2), CommitMark(1)], "b")
        await settle()
        assert released == []
        storage.gate.set()
        await gc.flush()
        assert released == ["vote", "depends-on-the-vote", "a", "b"]
        # Two fsynced writes: the first, then everything gathered while it was in flight.
        assert storage.calls == [(1, True), (3, True)]
        gc.close()
        storage.close()
        # entries 1 and 2, written together, are one record (storage.coalesce)
        assert FileStorage(tmp_path / "n1.wal").load() == [
            HardState(1, "n1"), LogAppend(entry(1).entries + entry(2).entries), CommitMark(1)]
    asyncio.run(main())


def test_commit_index_alone_is_written_without_fsync_and_released_at_once(tmp_path):
    async def main():
        storage = GatedStorage(tmp_path / "n1.wal")
        released: list[str] = []
        gc = GroupCommitter(storage, released.append)
        gc.submit([CommitMark(3)], "reply")
        assert released == ["reply"] and storage.calls == [(1, False)]
        gc.submit([], "nothing-to-write")
        assert released == ["reply", "nothing-to-write"]
        gc.close()
    asyncio.run(main())


def test_a_failed_write_releases_nothing_and_reports(tmp_path):
    async def main():
        storage = GatedStorage(tmp_path / "n1.wal")
        released: list[str] = []
        failures: list[BaseException] = []
        gc = GroupCommitter(storage, released.append, on_failure=failures.append)
        storage.fail = True
        gc.submit([HardState(2, "n2")], "vote")
        gc.submit([entry(1)], "ack")
        storage.gate.set()
        await gc.flush()
        assert released == [] and len(failures) == 1
        assert isinstance(failures[0], WriteFailed)
        gc.submit([], "after")  # nothing leaves a node whose log failed
        assert released == []
        gc.close()
    asyncio.run(main())


def test_inline_writes_are_counted_and_a_failed_one_releases_nothing(tmp_path):
    """A follower writes inline (background=False): the same rules, without the thread."""
    async def main():
        storage = GatedStorage(tmp_path / "n2.wal")
        storage.gate.set()
        released: list[str] = []
        failures: list[BaseException] = []
        gc = GroupCommitter(storage, released.append, on_failure=failures.append)
        gc.submit([entry(1), entry(2)], "ack", background=False)
        assert released == ["ack"] and storage.calls == [(2, True)]
        assert (gc.writes, gc.records) == (1, 2)
        storage.fail = True
        gc.submit([entry(3)], "ack-3", background=False)
        gc.submit([], "later", background=False)
        assert released == ["ack"] and len(failures) == 1
        gc.close()
    asyncio.run(main())
