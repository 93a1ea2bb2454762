"""The write-ahead log: records survive, a torn tail is cut off, damage elsewhere is refused."""

import logging

import pytest

from consensus.messages import Command
from consensus.paxos.messages import Ballot, Promised
from consensus.raft.messages import CommitMark, Entry, HardState, LogAppend
from consensus.storage import CorruptLogError, FileStorage, MemoryStorage

RECORDS = [HardState(1, "n1"),
           LogAppend((Entry(1, 1, None), Entry(1, 2, Command("c", 1, "SET x = 1")))),
           CommitMark(2), Promised(Ballot(2, 1, "n2"))]


@pytest.mark.parametrize("fsync", [True, False])
def test_records_survive_reopening(tmp_path, fsync):
    wal = FileStorage(tmp_path / "n1.wal", fsync=fsync)
    assert wal.load() == []
    wal.append(RECORDS[:2])
    wal.append(RECORDS[2:])
    wal.close()
    assert FileStorage(tmp_path / "n1.wal").load() == RECORDS


def test_torn_last_record_is_discarded_and_cut_off(tmp_path, caplog):
    path = tmp_path / "n1.wal"
    wal = FileStorage(path)
    wal.append(RECORDS)
    wal.close()
    intact = path.read_bytes()
    path.write_bytes(intact + b'8badf00d {"type":"HardState","te')  # a write cut short
    with caplog.at_level(logging.WARNING):
        again = FileStorage(path)
        assert again.load() == RECORDS
    assert "torn" in caplog.text and again.torn_records == 1
    assert path.read_bytes() == intact
    again.append([CommitMark(3)])
    again.close()
    assert FileStorage(path).load() == [*RECORDS, CommitMark(3)]


def test_last_record_with_bad_checksum_is_discarded(tmp_path):
    path = tmp_path / "n1.wal"
    wal = FileStorage(path)
    wal.append(RECORDS)
    wal.close()
    lines = path.read_bytes().split(b"\n")
    lines[-2] = lines[-2].replace(b"Promised", b"Promisex")
    path.write_bytes(b"\n".join(lines))
    assert FileStorage(path).load() == RECORDS[:-1]


def test_damage_before_the_last_record_is_refused_not_guessed(tmp_path):
    path = tmp_path / "n1.wal"
    wal = FileStorage(path)
    wal.append(RECORDS)
    wal.close()
    data = path.read_bytes().replace(b'"voted_for":"n1"', b'"voted_for":"n9"')
    path.write_bytes(data)
    with pytest.raises(CorruptLogError, match="record 1 is damaged"):
        FileStorage(path).load()


def test_memory_storage_keeps_what_was_appended():
    mem = MemoryStorage()
    mem.append(RECORDS)
    assert mem.load() == RECORDS
