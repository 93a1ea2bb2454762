"""Read paths (``Config.read_path``) on both algorithms: what each costs, and when a lease read
goes stale.

- Each path answers reads and keeps the history linearizable under crashes, pauses and loss.
- What a read costs in messages: through the log it replicates (an entry to every follower);
  ReadIndex sends one heartbeat round per batch of reads; under a lease a read sends nothing.
- The stale-lease-read experiment: with honest clocks (and with ReadIndex whatever the clocks)
  the linearizability checker finds nothing; with the old leader's clock slowed past the
  lease's drift assumption it catches the stale read.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from consensus.algorithms import get_algorithm
from consensus.experiment import runner
from consensus.experiment.spec import SpecError, parse_spec
from consensus.messages import ClientReply, ClientRequest, ReplyStatus, traffic_kind
from consensus.node import LEADER, Config
from consensus.raft.messages import AppendEntries, AppendEntriesReply, RequestVoteReply
from consensus.raft.node import RaftNode
from consensus.sim import Network, Simulation
from tests.helpers import available_algorithms, client, settle, wait_for_leader

ALGORITHMS = available_algorithms()
PATHS = ("log", "read_index", "lease")
STALE = "experiments/stale-lease-read.yaml"
# Breaks the lease's assumption: from its pause on, the leader's clock almost stands still.
BROKEN = 0.01
# Within it (lease_drift: 0.1): the leader's clock runs 9% slow.
WITHIN = 0.91


def _stale_spec(*, drift: float | None, read_path: str = "lease", seeds: str = "[1]"):
    with open(STALE) as f:
        text = f.read()
    assert "read_path: lease" in text and "clock:" not in text.split("faults:")[1], \
        "the committed experiment is the honest-clock one"
    text = text.replace("read_path: lease", f"read_path: {read_path}")
    text = text.replace("seeds: [1, 2, 3]", f"seeds: {seeds}")
    if drift is not None:
        text = text.replace("faults:\n", f"faults:\n  - {{at: 2, clock: leader, rate: {drift}}}\n")
    return parse_spec(text)


def _linearizability(result: runner.RunResult) -> runner.Check:
    return next(c for c in result.checks if c.name == "linearizability")


# -- the knobs ---------------------------------------------------------------------------------


def test_config_refuses_unknown_path_and_unsafe_lease() -> None:
    with pytest.raises(ValueError, match="read_path must be one of log, read_index, lease"):
        Config(read_path="quorum")
    with pytest.raises(ValueError, match="needs check_quorum"):
        Config(read_path="lease", check_quorum=False)
    with pytest.raises(ValueError, match="lease_drift"):
        Config(read_path="lease", lease_drift=-0.1)
    assert Config(read_path="lease", lease_drift=0.5).lease_ms == pytest.approx(100.0)


def test_spec_checks_drift_knobs() -> None:
    base = "name: t\ntiming: {read_path: lease, check_quorum: false}\n"
    with pytest.raises(SpecError, match="needs check_quorum"):
        parse_spec(base)
    with pytest.raises(SpecError, match="names n9"):
        parse_spec("name: t\ntiming: {clock_drift: {n9: 0.5}}\n")
    with pytest.raises(SpecError, match="'clock' needs a 'rate'"):
        parse_spec("name: t\nfaults: [{at: 1, clock: leader}]\n")
    with pytest.raises(SpecError, match="needs transport: sim"):
        parse_spec("name: t\ntransport: mqtt\nfaults: [{at: 1, clock: leader, rate: 2}]\n")
    # Node processes get the read path like every variant (``--variant read_path=lease``).
    on_bus = parse_spec("name: t\ntransport: mqtt\ntiming: {read_path: lease}\n")
    assert on_bus.config("raft").read_path == "lease"
    spec = parse_spec("name: t\ntiming: {read_path: read_index, clock_drift: {n2: 1.5}}\n")
    assert spec.timing.config().read_path == "read_index"


def test_a_drifting_clock_moves_a_nodes_timers() -> None:
    """A node whose clock runs at half speed reads half the time passed, and so times out
    later: with the others slowed down, the fast node wins the first election."""
    sim = Simulation("raft", 3, seed=4, config=Config(pre_vote=False),
                     clock_rates={"n1": 0.5, "n2": 0.5})
    sim.run(100.0)
    assert sim.clock("n1") == pytest.approx(50.0)
    assert sim.clock("n3") == pytest.approx(100.0)
    assert wait_for_leader(sim) == "n3"
    sim.set_clock_rate("n3", 3.0)  # from now on three times faster, and still deterministic
    sim.run_for(500.0)
    again = Simulation("raft", 3, seed=4, config=Config(pre_vote=False),
                       clock_rates={"n1": 0.5, "n2": 0.5})
    wait_for_leader(again)
    again.set_clock_rate("n3", 3.0)
    again.run(sim.now)
    assert again.trace_sha256 == sim.trace_sha256
    assert sim.clock("n3") > sim.now
    with pytest.raises(ValueError, match="above 0"):
        sim.set_clock_rate("n1", 0.0)
    with pytest.raises(ValueError, match="not a node"):
        Simulation("raft", 3, clock_rates={"n7": 2.0})


# -- each path answers reads, linearizably ------------------------------------------------------

FAULTY = """
name: reads-under-faults
seeds: [1, 2]
cluster: {nodes: 5}
timing: {read_path: %s}
workload: {clients: 6, rate: 200, duration_s: 4, read_ratio: 0.5, keys: 4}
faults:
  - {at: 0.8, crash: leader}
  - {at: 1.6, restart: crashed}
  - {at: 2.0, pause: leader}
  - {at: 2.5, resume: paused}
  - {at: 2.8, loss: 0.2, duration: 0.8}
"""


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("read_path", PATHS)
def test_reads_are_answered_and_linearizable_under_faults(algorithm: str, read_path: str) -> None:
    spec = parse_spec(FAULTY % read_path)
    for seed in spec.seeds:
        result = runner.run_sim(spec, algorithm, seed)
        failed = [f"{c.name}: {c.detail}" for c in result.checks if c.verdict != "pass"]
        assert not failed, f"{algorithm} {read_path} seed {seed}: {failed}"
        reads = [op for op in result.ops if op.command.startswith("GET") and op.outcome == "ok"]
        assert len(reads) > 250, f"{algorithm} {read_path} seed {seed}: {len(reads)} reads"


# -- what a read costs --------------------------------------------------------------------------


def _read_cost(algorithm: str, read_path: str, reads: int, concurrent: int) -> dict[str, int]:
    """Protocol messages sent while ``reads`` GETs are answered, ``concurrent`` at a time,
    on a quiet 3-node cluster whose leader has committed in its term; by kind."""
    sim = Simulation(algorithm, 3, seed=1, config=Config(read_path=read_path),
                     network=Network(latency_ms=(1.0, 1.0), reorder=False))
    leader = wait_for_leader(sim)
    writer = client(sim, "w")
    assert settle(writer.submit("SET x = 1", node=leader), sim, 500)
    sim.run_for(10.0)
    sent: Counter[str] = Counter()
    sim.observers.append(lambda _t, msg, _at: sent.update([traffic_kind(msg)]))
    readers = [client(sim, f"r{i}") for i in range(concurrent)]
    for _ in range(reads // concurrent):
        ops = [r.submit("GET x", node=leader) for r in readers]
        for op in ops:
            assert settle(op, sim, 200), f"{algorithm} {read_path}: a read went unanswered"
            assert op.result == "1"
    return {k: v for k, v in sent.items() if k not in (ClientRequest.kind, ClientReply.kind)}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_message_cost_of_each_read_path(algorithm: str) -> None:
    replicate = "AppendEntries" if algorithm == "raft" else "Accept"
    heartbeat = replicate + " (heartbeat)"
    log = _read_cost(algorithm, "log", reads=10, concurrent=1)
    read_index = _read_cost(algorithm, "read_index", reads=10, concurrent=1)
    batched = _read_cost(algorithm, "read_index", reads=10, concurrent=5)
    lease = _read_cost(algorithm, "lease", reads=10, concurrent=1)
    # Through the log: each read is an entry replicated to both followers.
    assert log.get(replicate, 0) >= 10 * 2
    # ReadIndex: no entry, one heartbeat round (to both followers, both answer) per read...
    assert replicate not in read_index
    assert read_index.get(heartbeat, 0) == 10 * 2
    # ...and one per batch: of five reads arriving together, the first starts a round and
    # the four that arrive while it is out share the next one.
    assert batched.get(heartbeat, 0) == 2 * 2 * 2
    # Under a lease (which the leader's first round after its election began): nothing but
    # the one periodic heartbeat round that may fall in the few ms the reads take.
    assert replicate not in lease
    assert lease.get(heartbeat, 0) <= 2


# -- the stale lease read -----------------------------------------------------------------------


def _run(spec, algorithm: str, seed: int) -> runner.RunResult:
    return asyncio.run(runner.run(runner.sim_cluster(spec, algorithm, seed),
                                  runner.plan_of(spec), seed))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_clock_drifting_past_the_lease_assumption_serves_a_stale_read(algorithm: str) -> None:
    result = _run(_stale_spec(drift=BROKEN), algorithm, 1)
    check = _linearizability(result)
    assert check.verdict == "fail", check.detail
    assert "NOT LINEARIZABLE" in check.detail
    # The safety invariants of the log itself still hold: only the read was stale.
    assert next(c for c in result.checks if c.name == "invariants").verdict == "pass"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("read_path", "drift"), [("lease", None), ("lease", WITHIN),
                                                  ("read_index", BROKEN), ("read_index", None)])
def test_the_same_scenario_is_linearizable_with_honest_clocks_or_read_index(
        algorithm: str, read_path: str, drift: float | None) -> None:
    """Clocks within the stated drift (or none, or no clock assumption at all): the checker
    must find nothing."""
    spec = _stale_spec(drift=drift, read_path=read_path, seeds="[1, 2]")
    for seed in spec.seeds:
        result = _run(spec, algorithm, seed)
        failed = [f"{c.name}: {c.detail}" for c in result.checks if c.verdict != "pass"]
        assert not failed, f"{algorithm} {read_path} drift={drift} seed {seed}: {failed}"


# -- the leader's side, driven by hand (Raft) ---------------------------------------------------


def _raft_leader(read_path: str) -> RaftNode:
    """n1 leading a 3-node cluster in term 1, its no-op sent and not yet acknowledged."""
    n = RaftNode("n1", ["n1", "n2", "n3"], Config(pre_vote=False, read_path=read_path),
                 random.Random(1))
    n.tick(0)
    n.tick(n.election_deadline)
    n.step(RequestVoteReply(src="n2", dst="n1", term=n.term, granted=True))
    assert n.role == LEADER
    n.ready()
    return n


def _ack(n: RaftNode, peer: str, beat: int) -> None:
    n.step(AppendEntriesReply(src=peer, dst=n.id, term=n.term, success=True,
                              match_index=n.log.last_index, beat=beat))


def _get(n: RaftNode, seq: int) -> None:
    n.step(ClientRequest(src="c", dst=n.id, seq=seq, command="GET x"))


def test_read_index_waits_for_the_own_term_commit_and_a_round_sent_after_it() -> None:
    """Thesis §6.4: the read index is usable only once an entry of the leader's term is
    committed, and only after a heartbeat round sent after the read arrived is acknowledged."""
    n = _raft_leader("read_index")
    noop_round = n.beat
    _get(n, 1)
    out = n.ready()
    assert out.replies == []
    round_sent = [m for m in out.messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in round_sent} == {"n2", "n3"}
    assert {m.beat for m in round_sent} == {noop_round + 1}
    # An acknowledgement of the round before the read (the no-op's) commits the no-op, but
    # does not confirm the read.
    _ack(n, "n2", noop_round)
    assert n.committed_own_term()
    assert n.ready().replies == []
    _ack(n, "n2", noop_round + 1)  # with ours, a majority acknowledged the read's round
    replies = n.ready().replies
    assert [(r.seq, r.status, r.result) for r in replies] == [(1, ReplyStatus.OK, None)]


def test_a_lease_answers_without_messages_until_it_runs_out() -> None:
    n = _raft_leader("lease")
    _ack(n, "n2", n.beat)  # the no-op's round: the lease starts when it was sent (t0)
    n.ready()
    t0 = n.now
    n.tick(t0 + n.config.lease_ms - 1)
    n.ready()  # its periodic heartbeats (unanswered: the lease still dates from t0)
    _get(n, 1)
    out = n.ready()
    assert [r.seq for r in out.replies] == [1] and out.messages == []
    # Past the lease (and before the next heartbeat), a read falls back to a round.
    n.tick(t0 + n.config.lease_ms + 1)
    n.ready()
    n.heartbeat_deadline = float("inf")
    _get(n, 2)
    out = n.ready()
    assert out.replies == []
    assert {m.dst for m in out.messages if isinstance(m, AppendEntries)} == {"n2", "n3"}


def test_reads_waiting_when_leadership_is_lost_are_redirected() -> None:
    n = _raft_leader("read_index")
    _get(n, 1)
    n.ready()
    n.step(AppendEntries(src="n3", dst="n1", term=n.term + 1, prev_log_index=0, prev_log_term=0,
                         entries=(), leader_commit=0))
    replies = n.ready().replies
    assert [(r.seq, r.status, r.leader) for r in replies] == [(1, ReplyStatus.REDIRECT, "n3")]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_restarted_node_waits_an_election_timeout_before_it_votes_under_leases(
        algorithm: str) -> None:
    """It may have acknowledged a lease round in its previous life (module doc)."""
    node_class = get_algorithm(algorithm).node_class
    lease = node_class("n2", ["n1", "n2", "n3"], Config(read_path="lease"), random.Random(1))
    log = node_class("n2", ["n1", "n2", "n3"], Config(), random.Random(1))
    for n in (lease, log):
        n.tick(5000.0)
    assert lease.in_leader_lease("n3") and not log.in_leader_lease("n3")
    lease.tick(5000.0 + lease.config.election_timeout_ms[0])
    assert not lease.in_leader_lease("n3")
