"""The write-ahead log: records survive, a torn tail is cut off, damage elsewhere is refused."""

import logging
import random

import pytest

from consensus.messages import ClientRequest, Command
from consensus.node import Config
from consensus.paxos.messages import AcceptedRun, Ballot, Promised, SlotSnapshot
from consensus.paxos.node import PaxosNode
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


# -- compaction: a record whose class says ``compacts`` replaces every record before it --------


def _single_paxos_node(wal, every: int):
    """A cluster of one Multi-Paxos node (it chooses alone), persisting into ``wal``."""
    node = PaxosNode("n1", ["n1"], Config(snapshot_entries=every, pre_vote=False),
                     random.Random(1))
    node.tick(0.0)
    node.restore(wal.load())
    node.tick(1000.0)
    wal.append(node.ready().persist)
    return node


def _write(node, wal, first: int, count: int) -> None:
    for i in range(first, first + count):
        node.step(ClientRequest(src="c", dst="n1", seq=i, command=f"SET k{i % 5} = {i}"))
        wal.append(node.ready().persist)


def test_memory_storage_drops_what_a_compacting_record_replaces():
    snap = SlotSnapshot(2, "{}", Ballot(1, 0, "n1"), 1, ())
    store = MemoryStorage()
    store.append(RECORDS)
    store.append([CommitMark(3), snap, CommitMark(4)])
    assert store.load() == [snap, CommitMark(4)]


def test_compaction_shrinks_the_wal_and_a_restart_restores_the_same_state(tmp_path):
    plain_wal = FileStorage(tmp_path / "plain.wal")
    plain = _single_paxos_node(plain_wal, 0)
    _write(plain, plain_wal, 1, 120)
    wal = FileStorage(tmp_path / "n1.wal")
    node = _single_paxos_node(wal, 50)
    _write(node, wal, 1, 120)
    assert node.snapshots_taken == 2 and node.held_entries() < 50
    assert wal.size() < plain_wal.size() / 2
    assert node.kv.digest() == plain.kv.digest()
    wal.close()
    reopened = FileStorage(tmp_path / "n1.wal")
    records = reopened.load()
    assert isinstance(records[0], SlotSnapshot) and records[0].slot == 100
    assert not any(isinstance(r, SlotSnapshot) for r in records[1:])
    again = _single_paxos_node(reopened, 50)
    assert again.kv.digest() == plain.kv.digest() and again.commit_index == 120


def test_a_crash_in_mid_compaction_loses_nothing(tmp_path):
    """The new log is written beside the old one (``.compact``) and renamed over it: a crash
    before the rename leaves the old log whole, and the leftover file is never read."""
    path = tmp_path / "n1.wal"
    wal = FileStorage(path)
    node = _single_paxos_node(wal, 50)
    _write(node, wal, 1, 49)  # one slot short of the first snapshot
    digest, before = node.kv.digest(), path.read_bytes()
    wal.close()
    leftover = path.with_name(path.name + ".compact")
    leftover.write_bytes(b'00000000 {"type":"SlotSnapshot","slot":50,"sta')  # cut short
    reopened = FileStorage(path)
    assert path.read_bytes() == before
    again = _single_paxos_node(reopened, 50)
    assert again.kv.digest() == digest and again.commit_index == 49
    _write(again, reopened, 50, 3)  # the next compaction overwrites the leftover
    assert again.snapshot_index == 50
    assert not leftover.exists()
    reopened.close()
    last = _single_paxos_node(FileStorage(path), 50)
    assert last.commit_index == 52 and last.kv.digest() == again.kv.digest()


# -- runs: a drain's entry records are written as one -------------------------------------


def _entries(first: int, count: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, Command("c", i, f"SET x = {i}"))
                 for i in range(first, first + count))


def test_a_run_of_continuing_log_appends_is_written_as_one_record(tmp_path):
    records = [HardState(2, "n1"), LogAppend(_entries(1, 1)), LogAppend(_entries(2, 1)),
               LogAppend(_entries(3, 2)), CommitMark(3),
               # a new suffix from index 2 (a truncation) does not continue the run
               LogAppend(_entries(5, 1)), LogAppend(_entries(2, 1, term=3))]
    storage = FileStorage(tmp_path / "wal")
    storage.append(records)
    storage.close()
    assert FileStorage(tmp_path / "wal").load() == [
        HardState(2, "n1"), LogAppend(_entries(1, 4)), CommitMark(3),
        LogAppend(_entries(5, 1)), LogAppend(_entries(2, 1, term=3))]


def test_accepted_runs_join_only_at_the_same_ballot_and_the_next_slot(tmp_path):
    b1, b2 = Ballot(1, 0, "n1"), Ballot(2, 1, "n2")
    cmd = Command("c", 1, "SET x = 1")
    records = [AcceptedRun(1, b1, (cmd,)), AcceptedRun(2, b1, (None, cmd)),
               AcceptedRun(4, b2, (cmd,)), AcceptedRun(6, b2, (cmd,))]
    storage = FileStorage(tmp_path / "wal")
    storage.append(records)
    storage.close()
    assert FileStorage(tmp_path / "wal").load() == [
        AcceptedRun(1, b1, (cmd, None, cmd)), AcceptedRun(4, b2, (cmd,)),
        AcceptedRun(6, b2, (cmd,))]


@pytest.mark.parametrize("algorithm", ["raft", "paxos"])
def test_a_node_restored_from_joined_records_is_the_node_that_wrote_them(algorithm, tmp_path):
    from consensus.algorithms import get_algorithm
    from consensus.storage import coalesce

    node_class = get_algorithm(algorithm).node_class
    leader = node_class("n1", ("n1",), Config(), random.Random(1))
    leader.async_persist = True  # as in a node process: several requests per drain
    leader.tick(0.0)
    leader.campaign()
    written: list = []
    for seq in range(1, 41):
        leader.tick(float(seq))
        leader.step(ClientRequest(src="c", dst="n1", seq=seq, command=f"SET k{seq} = {seq}"))
        if seq % 5 == 0:
            ready = leader.ready()
            written.extend(ready.persist)
            leader.persisted(ready.seq)
    written.extend(leader.ready().persist)
    assert len(coalesce(written)) < len(written)
    plain = node_class("n1", ("n1",), Config(), random.Random(1))
    plain.restore(written)
    joined = node_class("n1", ("n1",), Config(), random.Random(1))
    joined.restore(coalesce(written))
    assert joined.status() == plain.status()
    assert joined.log_tail(50) == plain.log_tail(50)
