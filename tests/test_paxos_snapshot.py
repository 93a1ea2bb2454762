"""Multi-Paxos log compaction: snapshots, the Learn transfer, Phase 1 past a snapshot, restart.

Hand-driven clusters (tests/test_paxos_node.py's FIFO driver, with storage that compacts as
storage.py says) for the exact message orders, and seeded simulations for whole runs.
"""

from __future__ import annotations

from consensus.kv import KVStore
from consensus.membership import Membership
from consensus.node import Config
from consensus.paxos.messages import Learn, Learned, Promise, SlotSnapshot
from consensus.paxos.node import CANDIDATE, LEADER, PaxosNode
from consensus.paxos.snapshot import decode_state, encode_state
from consensus.sim import Simulation
from consensus.simulate import simulate
from consensus.storage import MemoryStorage
from tests.helpers import client, run_until, settle, wait_for_leader
from tests.test_paxos_node import Cluster


class CompactingCluster(Cluster):
    """The FIFO driver, with each node's records kept as MemoryStorage keeps them."""

    def drain(self, node: PaxosNode):  # type: ignore[override]
        ready = node.ready()
        MemoryStorage(self.storage[node.id]).append(ready.persist)
        self.queue.extend(ready.messages)
        self.sent.extend(ready.messages)
        self.replies.extend(ready.replies)
        self.applied[node.id].extend((a.index, a.command) for a in ready.applied)
        return ready


def write(c: Cluster, leader: str, count: int, start: int = 1, drop=None) -> None:
    for i in range(start, start + count):
        c.request(leader, f"SET k{i % 7} = {i}", seq=i)
        c.deliver(drop)
    c.advance(60, drop)  # a heartbeat carries the commit index to the acceptors


def test_snapshot_state_round_trips_and_refuses_garbage():
    kv = KVStore()
    kv.apply(None)
    configs = ((4, Membership.of(["n1", "n2", "n3"])),)
    state = decode_state(encode_state(kv, configs))
    assert state.kv.digest() == kv.digest() and state.configs == configs
    for bad in ("", "{}", '{"kv": 3, "configs": []}', '{"kv": {}, "configs": [[1, "x"]]}'):
        try:
            decode_state(bad)
        except ValueError as exc:
            assert "malformed" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_a_node_snapshots_every_n_slots_and_keeps_one_compacting_record():
    c = CompactingCluster(3, Config(snapshot_entries=5))
    c.elect("a1")
    write(c, "a1", 12)
    for nid in c.ids:
        node = c.node(nid)
        assert node.commit_index >= 12
        # Phase 1's no-op-free start: slots 1..12, snapshots at 5 and 10.
        assert node.snapshot_index == 10 and node.snapshots_taken == 2
        assert node.status().snapshot_index == 10
        assert node.held_entries() == node.last_index - 10
        assert all(slot > 10 for slot in node.log.entries)
        records = c.storage[nid]
        assert isinstance(records[0], SlotSnapshot)
        assert not any(isinstance(r, SlotSnapshot) for r in records[1:])


def test_a_node_restored_from_its_snapshot_has_the_digest_of_one_that_applied_every_slot():
    c = CompactingCluster(3, Config(snapshot_entries=4))
    c.elect("a1")
    write(c, "a1", 11)
    reference = KVStore()
    for _, command in c.applied["a3"]:
        reference.apply(command)
    c.crash("a3")
    node = c.restart("a3")
    assert node.snapshot_index == 8 and node.commit_index == c.node("a1").commit_index
    assert node.kv.digest() == reference.digest()
    assert node.promised == c.node("a1").promised


def test_a_lagging_acceptor_catches_up_through_the_leaders_snapshot_in_chunks():
    c = CompactingCluster(3, Config(snapshot_entries=5, snapshot_chunk_bytes=40))
    c.elect("a1")
    cut = True
    write(c, "a1", 13, drop=lambda m: cut and (m.dst == "a3" or m.src == "a3"))
    leader, lagging = c.node("a1"), c.node("a3")
    assert lagging.commit_index == 0 and leader.snapshot_index == 10
    cut = False
    c.advance(200)
    learns = [m for m in c.sent if isinstance(m, Learn) and m.dst == "a3"]
    assert len(learns) > 1, "the snapshot went in several chunks"
    assert all(len(m.data) <= 40 for m in learns)
    assert lagging.snapshot_index == 10 and lagging.commit_index == leader.commit_index
    assert lagging.kv.digest() == leader.kv.digest()
    # It went on from the slot after the snapshot: a new command reaches it as usual.
    c.request("a1", "SET z = 1", seq=99)
    c.deliver()
    c.advance(60)
    assert lagging.kv.data.get("z") == "1"


def test_a_candidate_behind_an_acceptors_snapshot_waits_for_it_before_leading():
    """Phase 1 with compaction: an acceptor that compacted the candidate's first unchosen slot
    promises from the slot after its snapshot and sends the snapshot; leading without it would
    fill chosen slots with no-ops, so the candidate leads only once it has installed it."""
    c = CompactingCluster(3, Config(snapshot_entries=5, pre_vote=False, check_quorum=False))
    c.elect("a1")
    write(c, "a1", 12, drop=lambda m: m.dst == "a3" or m.src == "a3")
    c.crash("a1")
    a3 = c.node("a3")
    assert a3.commit_index == 0 and c.node("a2").snapshot_index == 10
    a3.campaign()
    c.drain(a3)
    held: list = []
    c.deliver(drop=lambda m: isinstance(m, Learn) and not held.append(m))
    promise = next(m for m in c.sent if isinstance(m, Promise) and m.dst == "a3")
    assert promise.first_slot == 11
    assert a3.role == CANDIDATE, "it must not lead without the compacted chosen slots"
    c.queue.extend(held)
    c.deliver()
    assert a3.role == LEADER
    assert a3.snapshot_index == 10 and a3.kv.digest() == c.node("a2").kv.digest()
    c.advance(100)
    assert c.node("a2").kv.digest() == a3.kv.digest()


def test_a_chunk_of_a_transfer_never_begun_asks_for_the_first_one():
    c = CompactingCluster(3, Config(snapshot_entries=5, snapshot_chunk_bytes=30))
    c.elect("a1")
    write(c, "a1", 6, drop=lambda m: m.dst == "a3")
    leader = c.node("a1")
    text = leader.snapshot_state
    a3 = c.node("a3")
    a3.step(Learn(src="a1", dst="a3", ballot=leader.ballot, snapshot_slot=5, offset=30,
                  total=len(text), data=text[30:60]))
    reply = c.drain(a3).messages[-1]
    assert isinstance(reply, Learned) and reply.offset == 0 and reply.commit_index == 0


def test_restart_from_a_compacted_wal_then_more_slots():
    c = CompactingCluster(3, Config(snapshot_entries=3))
    c.elect("a1")
    write(c, "a1", 7)
    for nid in c.ids:
        c.crash(nid)
    for nid in c.ids:
        c.restart(nid)
    c.advance(1000)
    leader = next(n for n in c.ids if c.node(n).role == LEADER)
    write(c, leader, 4, start=20)
    c.advance(100)
    digests = {c.node(n).kv.digest() for n in c.ids}
    assert len(digests) == 1
    assert c.node(leader).kv.data["k6"] == "20"


def test_a_long_seeded_run_with_crashes_keeps_the_log_bounded_and_safe():
    every = 100
    r = simulate("paxos", 5, 12, seed=11, faults="random",
                 config=Config(snapshot_entries=every))
    assert r.safe, r.violations
    assert not r.stalled, r.stalled
    assert r.snapshots > 0
    assert r.max_log_entries <= 3 * every
    plain = simulate("paxos", 5, 3, seed=11, faults="none")
    assert plain.snapshots == 0 and plain.max_log_entries > 0


def test_a_restarted_node_in_the_simulator_restores_the_same_state_as_the_others():
    sim = Simulation("paxos", 3, seed=5, config=Config(snapshot_entries=10))
    leader = wait_for_leader(sim)
    follower = next(n for n in sim.ids if n != leader)
    cl = client(sim)
    for i in range(25):
        assert settle(cl.submit(f"SET a{i % 3} = {i}"), sim, 2000)
    sim.crash(follower)
    for i in range(25, 40):
        assert settle(cl.submit(f"SET a{i % 3} = {i}"), sim, 2000)
    sim.restart(follower)
    lead = sim.nodes[leader]
    assert run_until(sim, lambda: sim.nodes[follower].commit_index == lead.commit_index, 3000)
    node = sim.nodes[follower]
    assert node.snapshot_index >= 30 and node.kv.digest() == lead.kv.digest()
    assert not sim.finish()
