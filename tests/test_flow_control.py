"""Flow control, the same for both algorithms (``consensus.node.Progress``), and FIFO links.

A leader pipelines to a follower/acceptor that answers; one that stops answering gets one
probe batch and then only heartbeats until it answers again (etcd-io/raft's probe state), so a
crashed node costs a heartbeat per interval, not a batch of up to ``max_batch`` entries resent
every interval. Issue 18, item 7: without this Raft sent 1.8-2.7x Multi-Paxos's bytes per
operation in every fault experiment.
"""

from __future__ import annotations

import pytest

from consensus.experiment.workload import SimClient, Workload
from consensus.messages import Message
from consensus.node import Config
from consensus.sim import Network, Simulation
from tests.helpers import available_algorithms, run_until, wait_for_leader

ALGORITHMS = available_algorithms()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_crashed_follower_gets_one_probe_then_heartbeats_only(algorithm):
    sim = Simulation(algorithm, 5, seed=3, network=Network(reorder=False))
    leader = wait_for_leader(sim)
    victim = next(n for n in sim.ids if n != leader)
    batches: list[float] = []
    heartbeats: list[float] = []

    def observe(now: float, msg: Message, _at: float | None) -> None:
        if msg.dst == victim and msg.src == leader and msg.carries_entries:
            (batches if msg.carried_entries() else heartbeats).append(now)

    sim.observers.append(observe)
    clients = [SimClient(f"c{i}", sim, Workload(rate=100.0, request_timeout_ms=300))
               for i in range(4)]
    for c in clients:
        c.start(sim.now)
    sim.crash(victim)
    crashed_at = sim.now
    sim.run_for(3000)
    assert sim.leader() == leader, "the leader must keep its majority throughout"
    # Before the leader notices (a heartbeat without progress): at most a pipeline's worth.
    # After: one probe batch, then nothing but heartbeats, one per interval.
    hb = Config().heartbeat_ms
    late = [t for t in batches if t > crashed_at + 2 * hb]
    assert len(late) <= 1, f"{len(late)} batches sent to a crashed node after it was probed"
    assert len(batches) <= Config().max_inflight + 1
    assert len([t for t in heartbeats if t > crashed_at + 2 * hb]) >= 3000 / hb - 4

    # It comes back: the next answer to a heartbeat lets the probe go, and it catches up.
    sim.restart(victim)
    for c in clients:
        c.stop()
    assert run_until(sim, lambda: sim.status(victim).applied_index
                     >= sim.status(leader).commit_index > 0, 2000)
    assert sim.finish() == []


def test_fifo_links_never_reorder_a_link_and_reordering_links_do():
    def deliveries(reorder: bool) -> tuple[int, int]:
        sim = Simulation("raft", 3, seed=1, network=Network((1.0, 5.0), reorder=reorder))
        last: dict[tuple[str, str], float] = {}
        overtaken = 0
        sent = 0

        def observe(now: float, msg: Message, at: float | None) -> None:
            nonlocal overtaken, sent
            if at is None:
                return
            link = (msg.src, msg.dst)
            sent += 1
            overtaken += at < last.get(link, 0.0)
            last[link] = max(at, last.get(link, 0.0))

        sim.observers.append(observe)
        c = SimClient("c1", sim, Workload(rate=400.0))
        c.start(0.0)
        sim.run_for(2000)
        assert sim.finish() == []
        return overtaken, sent

    fifo, sent = deliveries(False)
    assert sent > 1000 and fifo == 0
    reordered, _ = deliveries(True)
    assert reordered > 0
