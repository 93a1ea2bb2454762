"""Multi-Paxos reconfiguration through the slots (a configuration chosen in slot i governs
from i + alpha): grow, shrink, replace, remove the leader, transfer, a joining node caught up
by snapshot, a removed node that keeps running; and a broken variant (a configuration in force
at once, alpha = 0 in effect) that the safety checks must catch."""

from __future__ import annotations

import random

from consensus.check.paxos import PaxosChecker
from consensus.membership import Membership, is_config_text
from consensus.messages import ClientRequest, Command, Message, ReplyStatus
from consensus.node import Config
from consensus.paxos.configs import ConfigWindow
from consensus.paxos.messages import Ballot, Learn, Promise
from consensus.paxos.node import LEADER, PaxosNode
from consensus.sim import Simulation
from consensus.simulate import SimOptions
from tests.helpers import run_until, wait_for_leader
from tests.membership_helpers import Operator, digests, settle, with_load

ALPHA = 8
MIN_TIMEOUT = Config().election_timeout_ms[0]


def _sim(nodes: int = 3, seed: int = 1, **config) -> Simulation:
    return Simulation("paxos", nodes, seed=seed, config=Config(alpha=ALPHA, **config))


def _configs_chosen(node: PaxosNode) -> list[str]:
    return [m.to_text() for m in node.windows.configs[1:]]


def test_the_window_says_which_configuration_governs_a_slot():
    a, b = Membership.of(["n1", "n2", "n3"]), Membership.of(["n1", "n2", "n4"])
    w = ConfigWindow(8, a)
    assert not w.changed and w.at(1) == a and w.governs_from(5) == 1
    w.add(10, b)
    assert w.changed
    assert w.at(17) == a and w.at(18) == b and w.governs_from(30) == 18
    assert w.span(3) == (a, 17) and w.governing(12, 19) == [a, b]
    assert w.needed_from(16) == [(-7, a), (10, b)] and w.needed_from(40) == [(10, b)]


def test_grow_three_to_five_under_load():
    sim = _sim()
    wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    sim.run_for(300)
    for nid in ("n4", "n5"):
        sim.add_node(nid)
        reply = op.change(f"add {nid}")
        assert reply.status == ReplyStatus.OK, reply
    assert reply.result == "voters=n1,n2,n3,n4,n5"
    settle(sim, cs)
    assert {sim.status(n).config for n in sim.ids} == {"voters=n1,n2,n3,n4,n5"}
    assert len(digests(sim, sim.ids)) == 1
    # Each add: a learner, then the new voters in one step (no joint configuration).
    assert _configs_chosen(sim.nodes[sim.leader()]) == [
        "voters=n1,n2,n3 learners=n4", "voters=n1,n2,n3,n4",
        "voters=n1,n2,n3,n4 learners=n5", "voters=n1,n2,n3,n4,n5"]
    assert sim.finish() == []


def test_shrink_five_to_three_under_load():
    sim = _sim(5, seed=2)
    leader = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    gone = [n for n in sim.ids if n != leader][:2]
    for nid in gone:
        assert op.change(f"remove {nid}").status == ReplyStatus.OK
    settle(sim, cs)
    keep = [n for n in sim.ids if n not in gone]
    want = "voters=" + ",".join(keep)
    assert {sim.status(n).config for n in keep} == {want}
    assert len(digests(sim, keep)) == 1
    assert all(sim.nodes[n].removed() for n in gone)
    assert sim.finish() == []


def test_replace_a_follower():
    sim = _sim(seed=3)
    leader = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    follower = next(n for n in sim.ids if n != leader)
    sim.add_node("n7")
    reply = op.change(f"replace {follower} n7")
    assert reply.status == ReplyStatus.OK
    want = Membership.of((set(sim.initial_ids) - {follower}) | {"n7"}).to_text()
    assert reply.result == want
    settle(sim, cs)
    assert sim.status("n7").config == want and sim.nodes[follower].removed()
    assert len(digests(sim, [n for n in sim.ids if n != follower])) == 1
    assert sim.finish() == []


def test_removing_the_leader_hands_over_without_an_election_timeout():
    sim = _sim(seed=4)
    old = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    sim.run_for(200)
    start = len(sim.leader_events)
    assert op.change(f"remove {old}").status == ReplyStatus.OK
    assert run_until(sim, lambda: sim.leader() not in (None, old), 1000)
    stepped_down = next(t for t, n, role, _ in reversed(sim.role_events)
                        if n == old and role != "leader")
    elected = next(t for t, n, _ in sim.leader_events[start:] if n != old)
    gap = elected - stepped_down
    assert 0 <= gap < MIN_TIMEOUT / 2, f"hand-over took {gap} ms"
    assert sim.nodes[old].removed()
    settle(sim, cs)
    assert sim.finish() == []


def test_transfer_leadership_through_a_leader_lease():
    sim = _sim(seed=5, read_path="lease")
    old = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    sim.run_for(200)
    target = next(n for n in sim.ids if n != old)
    t0 = sim.now
    reply = op.change(f"transfer {target}")
    assert reply.status == ReplyStatus.OK and reply.result == "voters=n1,n2,n3"
    assert run_until(sim, lambda: sim.leader() == target, 200)
    assert sim.now - t0 < MIN_TIMEOUT
    settle(sim, cs)
    assert sim.finish() == []


def test_a_joining_node_catches_up_by_snapshot():
    sim = _sim(seed=7, snapshot_entries=50)
    wait_for_leader(sim)
    cs = with_load(sim, clients=4)
    sim.run_for(2000)
    leader = sim.nodes[sim.leader()]
    assert leader.snapshot_index > 100
    learns: list[Message] = []
    sim.observers.append(lambda _t, m, _at: isinstance(m, Learn) and m.dst == "n4"
                         and learns.append(m))
    sim.add_node("n4")
    assert sim.status("n4").config is None
    sim.run_for(1000)  # not a member yet: it is sent nothing and never campaigns
    assert sim.status("n4").last_index == 0 and sim.status("n4").term == 0
    op = Operator(sim)
    assert op.change("add n4").status == ReplyStatus.OK
    settle(sim, cs)
    assert learns, "the new member got the leader's snapshot"
    assert sim.nodes["n4"].snapshot_index > 0
    assert sim.status("n4").applied_index == sim.status(sim.leader()).applied_index
    assert len(digests(sim, sim.ids)) == 1
    assert sim.finish() == []


def test_a_removed_node_that_keeps_running_does_not_disrupt():
    sim = _sim(seed=8)
    leader = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    gone = next(n for n in sim.ids if n != leader)
    assert op.change(f"remove {gone}").status == ReplyStatus.OK
    sim.run_for(200)
    changes = len(sim.leader_events)
    rounds = sim.status(leader).term
    sim.run_for(3000)  # it hears nothing any more, and keeps running
    assert sim.leader() == leader and len(sim.leader_events) == changes
    assert sim.status(leader).term == rounds
    assert sim.nodes[gone].removed() and sim.status(gone).role == "follower"
    settle(sim, cs)
    assert sim.finish() == []


def test_a_window_that_straddles_a_change_needs_both_configurations_in_phase_1():
    """A new leader whose window holds the slots of two configurations runs Phase 1 with
    quorums of both: grow 3 -> 5 while the leader's first unchosen slot is still governed by
    the old configuration, then crash the leader and check the next one's promisers."""
    sim = _sim(seed=9)
    old = wait_for_leader(sim)
    cs = with_load(sim)
    op = Operator(sim)
    for nid in ("n4", "n5"):
        sim.add_node(nid)
        assert op.change(f"add {nid}").status == ReplyStatus.OK
    sim.crash(old)
    new = wait_for_leader(sim)
    node = sim.nodes[new]
    assert node.membership.voters == {"n1", "n2", "n3", "n4", "n5"}
    assert node.membership.has_quorum(node.promisers)
    settle(sim, cs)
    sim.restart(old)
    sim.run_for(1500)
    assert sim.finish() == []


# -- the broken variant: a configuration in force at once ---------------------------------


class ConfigAtOnceNode(PaxosNode):
    """BROKEN: a configuration governs slots from its own on, as soon as the leader proposes
    it (alpha = 0 in effect), and the leader never waits for the window. The leader then
    counts a slot as chosen by a quorum of a configuration that nobody else has heard of."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.windows.alpha = 1

    def proposal_limit(self) -> int:
        return self.commit_index + 10**9

    def propose(self, commands) -> None:
        first = self.next_slot
        super().propose(commands)
        for i, command in enumerate(commands):
            if command is not None and is_config_text(command.text):
                self.windows.add(first + i - 1, Membership.from_text(command.text))
                self.follow_config()


class Harness:
    """Nodes joined by a FIFO queue with a drop rule, the Paxos checker watching every drain."""

    def __init__(self, node_class: type[PaxosNode]) -> None:
        config = Config(alpha=ALPHA, pre_vote=False, check_quorum=False)
        initial = ["n1", "n2", "n3"]
        self.nodes = {n: node_class(n, initial, config, random.Random(n)) for n in initial}
        self.nodes["n4"] = node_class("n4", initial, config, random.Random("n4"), joining=True)
        self.checker = PaxosChecker()
        self.queue: list[Message] = []
        self.drop = lambda m: False
        self.now = 0.0
        for node in self.nodes.values():
            node.tick(0.0)
            self.drain(node)

    def drain(self, node: PaxosNode) -> None:
        ready = node.ready()
        self.checker.after_ready(self.now, node, ready, node.status())
        self.queue.extend(m for m in ready.messages if m.dst in self.nodes)

    def deliver(self) -> None:
        while self.queue:
            msg = self.queue.pop(0)
            if self.drop(msg):
                continue
            node = self.nodes[msg.dst]
            node.tick(self.now)
            node.step(msg)
            self.drain(node)

    def advance(self, ms: float) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += 5
            for node in self.nodes.values():
                node.tick(self.now)
                self.drain(node)
            self.deliver()

    def request(self, nid: str, seq: int, text: str) -> None:
        node = self.nodes[nid]
        node.step(ClientRequest(src="c", dst=nid, seq=seq, command=text))
        self.drain(node)
        self.deliver()


def _split_brain_scenario(node_class: type[PaxosNode]) -> PaxosChecker:
    """n1 leads {n1,n2,n3}; n4 is a learner. Cut off {n1,n4} from {n2,n3}; n1 proposes the
    configuration {n1,n2,n4} and a write; then n2 campaigns among {n2,n3} and writes."""
    h = Harness(node_class)
    n1 = h.nodes["n1"]
    n1.campaign()
    h.drain(n1)
    h.deliver()
    assert n1.role == LEADER
    h.request("n1", 1, "SET x = 1")
    h.advance(100)
    side = {"n1", "n4"}
    h.drop = lambda m: (m.src in side) != (m.dst in side)
    n1.progress.setdefault("n4", n1.new_progress("n4"))  # n4 gets the slots (a learner)
    n1.propose_config(Membership.of(["n1", "n2", "n4"]), ("operator", 1))
    h.deliver()
    h.request("n1", 2, "SET x = 2")
    h.advance(100)
    n2 = h.nodes["n2"]
    n2.campaign()
    h.drain(n2)
    h.deliver()
    h.request("n2", 3, "SET x = 3")
    h.advance(200)
    return h.checker


def test_a_configuration_in_force_at_once_is_caught_by_the_checks():
    checks = {v.check for v in _split_brain_scenario(ConfigAtOnceNode).violations}
    assert checks & {"applied-unchosen", "applied-prefix-agreement", "one-value-per-slot"}, checks


def test_the_alpha_window_keeps_the_same_scenario_safe():
    assert _split_brain_scenario(PaxosNode).violations == []


def test_commands_wait_for_the_window_and_are_proposed_as_it_moves():
    """A leader may not propose slot s before slot s - alpha is chosen."""
    node = PaxosNode("n1", ["n1", "n2", "n3"], Config(alpha=4, pre_vote=False),
                     random.Random(1))
    node.tick(0.0)
    node.campaign()
    node.ready()
    for p in ("n2", "n3"):
        node.step(Promise(src=p, dst="n1", ballot=node.ballot, first_slot=1, chosen=(),
                          accepted=(), commit_index=0))
    assert node.role == LEADER
    for seq in range(1, 8):
        node.step(ClientRequest(src="c", dst="n1", seq=seq, command=f"SET k = {seq}"))
    assert node.next_slot - 1 == 4 and len(node.backlog) == 3
    assert node.pending[("c", 5)] == 0
    node.set_commit(2)
    node.maybe_propose_more()
    assert node.next_slot - 1 == 6 and node.pending[("c", 5)] == 5
    assert [c.seq for c in node.backlog] == [7]
    assert isinstance(node.backlog[0], Command)


def test_a_leader_asks_a_new_configurations_acceptors_before_proposing_in_its_slots():
    """Phase 1 for the slots a new configuration governs: promises from n1 and n2 are a quorum
    of {n1,n2,n3} but not of {n1,n2,n3,n4}; before its first slot under the latter the leader
    sends its Prepare to n3 and n4, and proposes there only once one of them promised."""
    h = Harness(PaxosNode)
    h.drop = lambda m: isinstance(m, Promise) and m.src == "n3"
    n1 = h.nodes["n1"]
    n1.campaign()
    h.drain(n1)
    h.deliver()
    assert n1.role == LEADER and n1.promisers == {"n1", "n2"}
    n1.propose_config(Membership(frozenset({"n1", "n2", "n3"}), learners=frozenset({"n4"})),
                      ("operator", 1))
    h.advance(100)
    assert h.nodes["n4"].status().config == "voters=n1,n2,n3 learners=n4"
    n1.propose_config(Membership.of(["n1", "n2", "n3", "n4"]), ("operator", 2))
    h.deliver()
    first_new = n1.config_slot + ALPHA
    assert n1.next_slot == first_new, "the window is padded up to the new configuration"
    held: list[Message] = []
    h.drop = lambda m: isinstance(m, Promise) and (
        m.src == "n3" or (m.src == "n4" and not held.append(m)))
    h.request("n1", 1, "SET x = 1")
    assert n1.next_slot == first_new and list(n1.backlog), "it waits for the promises"
    assert held and held[0].ballot == n1.ballot and not held[0].pre_vote
    h.drop = lambda m: False
    h.queue.extend(held)
    h.deliver()
    assert n1.promisers >= {"n1", "n2", "n4"} and n1.next_slot == first_new + 1
    h.advance(100)
    assert h.nodes["n4"].kv.data.get("x") == "1" and h.checker.violations == []


def test_a_leader_asks_a_new_configuration_again_when_its_promises_were_lost():
    """The Prepare for a new configuration's slots is not asked once only: with every promise
    from the new acceptors lost, the leader waits, then asks again at a heartbeat and
    proposes once a quorum of the new configuration promised (sweep seeds 444, 744, 813
    stalled for good here)."""
    h = Harness(PaxosNode)
    h.drop = lambda m: isinstance(m, Promise) and m.src == "n3"
    n1 = h.nodes["n1"]
    n1.campaign()
    h.drain(n1)
    h.deliver()
    n1.propose_config(Membership(frozenset({"n1", "n2", "n3"}), learners=frozenset({"n4"})),
                      ("operator", 1))
    h.advance(100)
    n1.propose_config(Membership.of(["n1", "n2", "n3", "n4"]), ("operator", 2))
    h.deliver()
    first_new = n1.config_slot + ALPHA
    h.drop = lambda m: isinstance(m, Promise) and m.src in ("n3", "n4")
    h.request("n1", 1, "SET x = 1")
    h.advance(200)
    assert n1.next_slot == first_new and list(n1.backlog), "no quorum of the new one yet"
    h.drop = lambda m: False
    h.advance(200)
    assert n1.promisers >= {"n3", "n4"} and not n1.backlog
    assert all(h.nodes[n].kv.data.get("x") == "1" for n in ("n1", "n2", "n3", "n4"))
    assert h.checker.violations == []


def test_sweep_seeds_that_stalled_on_a_new_configurations_promises_now_finish():
    """The membership sweep's stalls: a leader elected by a quorum of the old configuration
    (a removed node among its promisers) whose one Prepare to the new configuration's
    acceptors went to nodes partitioned or down; every request waited forever."""
    for seed, pre_vote, snapshot_entries, disk_ms in ((444, True, 250, 0.0),
                                                      (744, True, 50, 0.0),
                                                      (813, False, 300, 2.0)):
        result = SimOptions("paxos", seed, 5, 5.0, 5.0, faults="random+membership",
                            pre_vote=pre_vote, check_quorum=False,
                            snapshot_entries=snapshot_entries, disk_ms=disk_ms).run()
        assert result.violations == [] and result.stalled == [], seed


def _random_changes_run(seed: int, snapshot_entries: int) -> Simulation:
    """Changes (adds, removes) among crashes, restarts and partitions, all seeded."""
    rng = random.Random(seed)
    sim = _sim(5, seed=seed, snapshot_entries=snapshot_entries)
    cs = with_load(sim, clients=3)
    op = Operator(sim)
    added = 6
    for _ in range(6):
        sim.run_for(rng.uniform(200, 800))
        live = [n for n in sim.ids if sim.nodes[n] is not None]
        if rng.random() < 0.3:
            victim = rng.choice(live)
            sim.crash(victim)
            sim.at(sim.now + rng.uniform(100, 1500), lambda n=victim: sim.restart(n))
        elif rng.random() < 0.2:
            pair = rng.sample(list(sim.ids), 2)
            sim.partition([pair, [n for n in sim.ids if n not in pair]])
            sim.at(sim.now + 800, sim.heal)
        leader = sim.leader()
        m = sim.nodes[leader].membership if leader else None
        if m is None:
            continue
        if rng.random() < 0.5 and len(m.voters) > 3:
            op.change(f"remove {rng.choice(sorted(m.voters))}", within_ms=4000)
        else:
            sim.add_node(f"n{added}")
            op.change(f"add n{added}", within_ms=4000)
            added += 1
    sim.heal()
    settle(sim, cs, 4000)
    return sim


def test_seeded_changes_with_crashes_and_partitions_stay_safe_and_converge():
    # Seed 16: a leader learnt from the promises a configuration its Prepare had not covered,
    # and its one Prepare to that configuration's acceptors was lost (it stalled for good).
    for seed, snapshot_entries in ((3, 0), (7, 30), (16, 0)):
        sim = _random_changes_run(seed, snapshot_entries)
        assert sim.finish() == [], seed
        leader = sim.nodes[sim.leader()]
        members = sorted(leader.membership.members)
        assert {sim.status(n).config for n in members} == {leader.membership_text}
        assert len(digests(sim, members)) == 1, seed


def test_added_nodes_rank_above_the_initial_ones_and_their_ids_break_ties():
    sim = _sim()
    wait_for_leader(sim)
    n1 = sim.nodes["n1"]
    assert [n1.rank_of(n) for n in ("n1", "n2", "n3")] == [0, 1, 2]
    assert n1.rank_of("n4") == n1.rank_of("n9") == 3
    # Same round and rank: the ids decide, so the two ballots are distinct and ordered.
    assert Ballot(5, 3, "n9") > Ballot(5, 3, "n4") > Ballot(5, 2, "n3")


def test_nodes_that_share_a_ballot_rank_still_never_share_a_ballot():
    """A rank clash (here n9 is made to take n1's rank, as a node that counts the initial
    cluster differently could) costs nothing: the id breaks the tie. n9 and n1 then run
    Phase 1 in the same round; one wins, and the checks (one value per ballot and slot
    included) hold."""
    class Clashing(PaxosNode):
        def rank_of(self, nid):
            return 0 if nid == "n9" else super().rank_of(nid)

    # No pre-vote and no check-quorum: both campaigns run Phase 1 and meet at the acceptors.
    sim = Simulation("paxos", 3, seed=2, node_class=Clashing,
                     config=Config(alpha=ALPHA, pre_vote=False, check_quorum=False))
    wait_for_leader(sim)
    cs = with_load(sim)
    sim.add_node("n9")
    op = Operator(sim)
    assert op.change("add n9").status == ReplyStatus.OK
    assert op.change("remove n2").status == ReplyStatus.OK  # voters n1, n3, n9
    duels = 0
    for _ in range(3):
        sim.campaign("n3")  # a third node leads, so n1 and n9 start from the same promise
        assert run_until(sim, lambda: sim.leader() == "n3", 2000)
        sim.run_for(100)
        for n in ("n1", "n9"):
            sim.campaign(n)
        a, b = sim.nodes["n1"].ballot, sim.nodes["n9"].ballot
        assert a is not None and b is not None and a.rank == b.rank
        duels += a.round == b.round
        assert a != b
        wait_for_leader(sim)
        sim.run_for(500)
    assert duels, "the two clashing nodes campaigned in the same round"
    settle(sim, cs)
    members = sorted(sim.nodes[sim.leader()].membership.members)
    assert len(digests(sim, members)) == 1
    assert sim.finish() == []
