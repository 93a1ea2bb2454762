"""The dashboard's simulated mode: one cluster per listed algorithm (Raft and Multi-Paxos),
all driven by the same events.

Theory of operation
-------------------
The :class:`~consensus.sim.Simulation` s share a seed, a node count, a config and a network
model; every command the page sends (kill, revive, time out, client request, partition, cut
links, heal, drop the next message) is applied to all, or to one when the page picked a
cluster. A link cut names nodes by id or by role token (``leader``, ``follower1``..,
``most-lagging``), resolved in each cluster by the nemesis's rule. A preset
resets them all and schedules its commands at fixed *simulated* times with ``sim.at``, so a quiz
scenario replays identically whatever the playback speed.

Time: the server calls :meth:`SimBackend.advance_wall` with the wall-clock milliseconds that
passed; the simulated clock moves ``speed`` simulated ms per wall ms (a slow motion by
default), or not at all while paused. ``step`` moves it by a fixed amount, which is also how
the tests drive it without any timing.

What the page sees: :meth:`SimBackend.snapshot` (everything, for a page that connects) and
:meth:`SimBackend.frame` (what changed since the previous frame: statuses, the messages sent
with their simulated send and delivery times, new events). The messages come from the
simulator's observers, so a dot's flight on the page is the message's simulated latency.

Faults and who leads go through :class:`~consensus.experiment.cluster.SimCluster`, the run
pipeline's cluster interface (the MQTT backend drives :class:`BusCluster` the same way). So do
membership changes: "add node" starts the next free id empty and asks the leader to add it,
"remove" and "transfer" ask the leader too, through the cluster's operator
(``reconfigure``), which follows redirects and retries until the leader answers; each node
shows its place in the configuration the leader acts on (voter, learner, removed; the new and
old halves while joint) and its snapshot index.

Nothing here knows an algorithm by name: its title, term label and colour come from the
registry, its messages say what they are (phase, refusal, entries carried) and its nodes show
their logs through ``log_tail``, so a newly registered algorithm gets a panel of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from consensus.algorithms import NAMES, Algorithm, get_algorithm
from consensus.check.invariants import Checker
from consensus.dashboard.presets import DEFAULT_NETWORK, PRESETS, Preset
from consensus.dashboard.view import (
    LOG_TAIL,
    MAX_NODES,
    CommandError,
    EventLog,
    algorithm_json,
    command_text,
    cut_links,
    log_slot_json,
    member_role,
    message_ends,
    message_json,
    next_node_id,
    parse_config,
    partition_groups,
    refusal,
    take_messages,
    term_text,
)
from consensus.experiment.cluster import SimCluster
from consensus.experiment.nemesis import MembershipEvent, split
from consensus.experiment.workload import SimClient, Workload
from consensus.membership import Membership
from consensus.messages import ClientReply, Command, Message, NodeId, TimeoutNow
from consensus.node import Config, Node, Ready, Status
from consensus.sim import Network, Simulation

ALGORITHMS = NAMES  # every listed algorithm, side by side
DEFAULT_SPEED = 0.1  # simulated ms per wall ms: 10x slow motion, an election takes seconds
MIN_SPEED, MAX_SPEED = 0.005, 20.0
MAX_WALL_STEP_MS = 250.0  # a stalled event loop must not make the simulation leap
CLIENT_ID = "web"
RECENT_CHANGES = 4  # membership changes listed under each cluster


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def phrase(template: str, algorithm: Algorithm, st: Status) -> str:
    """Fill one of the registry's phrases (``campaign``, ``pre_vote``) from a status."""
    return template.format(term=st.term, next_term=st.term + 1, ballot=st.ballot,
                           term_label=algorithm.term_label)


class _Tap(Checker):
    """Wraps the algorithm's safety checker to see every node's output at its exact time.

    The checker keeps checking (its violations show on the page); the tap only turns role
    changes and applied entries into events.
    """

    def __init__(self, inner: Checker,
                 on_ready: Callable[[float, NodeId, Ready, Status], None]) -> None:
        self.inner = inner
        self.on_ready = on_ready

    @property  # type: ignore[override]
    def violations(self) -> list[Any]:
        return self.inner.violations

    def after_ready(self, t: float, node: Node, ready: Ready, status: Status) -> None:
        self.inner.after_ready(t, node, ready, status)
        self.on_ready(t, node.id, ready, status)

    def on_crash(self, t: float, node_id: NodeId) -> None:
        self.inner.on_crash(t, node_id)

    def on_client_reply(self, t: float, reply: ClientReply, command: Command) -> None:
        self.inner.on_client_reply(t, reply, command)

    def finish(self, t: float, nodes: Mapping[NodeId, Node | None]) -> None:
        self.inner.finish(t, nodes)


class ClusterSim:
    """One simulated cluster, its web client, and the bookkeeping that feeds the page."""

    def __init__(self, algorithm: str, nodes: int, seed: int, config: Config,
                 network: Network) -> None:
        self.name = algorithm
        self.algorithm = get_algorithm(algorithm)
        self.title = self.algorithm.title
        # Events found during a run, as (time, kind, text): hooks fire in time order but role
        # changes are read afterwards, so the backend sorts them before logging.
        self.pending: list[tuple[float, str, str]] = []
        self.sim = Simulation(algorithm, nodes, seed, config, network)
        # Faults and who leads go through the run pipeline's cluster interface, as on the bus;
        # the clock, the observers and filters, the checker tap, the client and live timing
        # changes are the simulator's own and have no counterpart there, so they use ``sim``.
        self.cluster = SimCluster(self.sim, measure=False)
        self.sim.checker = _Tap(self.sim.checker, self._on_ready)
        self.sim.observers.append(self._observe)
        # Clients live outside the cluster; 1 s before retrying elsewhere keeps a stuck write
        # (no quorum) from flooding the page with retries.
        self.client = SimClient(CLIENT_ID, self.sim, Workload(clients=1, request_timeout_ms=1000))
        self.messages: list[dict[str, Any]] = []
        self.drop_next = 0  # protocol messages still to drop ("drop the next message")
        self.sim.filters.append(self._drop_filter)
        self.committed = 0  # highest index announced as committed
        self.last_role: dict[NodeId, tuple[str, int]] = {}  # (role, term) last announced
        self.ops_seen = 0  # client operations whose completion was announced
        self.last_status: dict[NodeId, Status] = {}
        self.isolated: NodeId | None = None  # the node the last "isolate" cut off
        self.changes_told: set[int] = set()  # membership events whose outcome was announced

    def emit(self, t: float, kind: str, text: str) -> None:
        self.pending.append((t, kind, text))

    # -- hooks from the simulator ------------------------------------------------------------

    def _on_ready(self, t: float, nid: NodeId, ready: Ready, status: Status) -> None:
        key = (status.role, status.term)
        before = self.last_role.get(nid)
        if key != before:
            self.last_role[nid] = key
            self._role_change(t, nid, status, before)
        noops: list[int] = []  # a run of no-ops applied together, told as one line
        for a in ready.applied:
            if a.index <= self.committed:
                continue
            self.committed = a.index
            if a.command is None:
                noops.append(a.index)
                continue
            self._tell_noops(t, noops)
            self.emit(t, "commit", f"#{a.index} committed: {command_text(a.command)} "
                      f"(applied by {nid})")
        self._tell_noops(t, noops)

    def _tell_noops(self, t: float, noops: list[int]) -> None:
        """One line for a run of no-ops (a new leader's, or Multi-Paxos filling the alpha
        window after a configuration: up to alpha of them at once)."""
        if len(noops) == 1:
            self.emit(t, "commit", f"#{noops[0]} committed: no-op")
        elif noops:
            self.emit(t, "commit", f"#{noops[0]}\u2013#{noops[-1]} committed: no-op "
                      f"\u00d7{len(noops)}")
        noops.clear()

    def _drop_filter(self, msg: Message) -> bool:
        if self.drop_next <= 0:
            return False
        self.drop_next -= 1
        self.emit(self.sim.now, "fault",
                        f"dropped {msg.kind} {msg.src}\u2192{msg.dst} (drop next)")
        return True

    def _observe(self, sent: float, msg: Message, deliver: float | None) -> None:
        refused = refusal(msg)
        if refused is not None:
            self.emit(sent, "reject", refused)
        if isinstance(msg, TimeoutNow):  # shared by both: a dot, and a line saying why
            self.emit(sent, "member", f"{msg.src} hands leadership to {msg.dst} ({msg.kind}: "
                      "campaign now, without waiting for a timeout)")
        src, dst = message_ends(msg, self.sim.ids, CLIENT_ID)
        self.messages.append(message_json(self.name, msg, sent, deliver, src, dst))

    # -- after each run: role changes and client answers become events ---------------------

    def _role_change(self, t: float, nid: NodeId, st: Status,
                     before: tuple[str, int] | None) -> None:
        """Elections, new leaders and leaders stepping down, as they happen."""
        algo = self.algorithm
        what = f"{algo.term_label} {term_text(st)}"
        role, was = st.role, before[0] if before else None
        if role == "precandidate":
            again = "no majority yet; " if was in ("candidate", "precandidate") else ""
            self.emit(t, "election", f"{nid} timed out: {again}pre-vote for "
                      + phrase(algo.pre_vote, algo, st))
        elif role == "candidate":
            again = "no majority, tries again: " if was == "candidate" else "starts an election: "
            self.emit(t, "election", f"{nid} {again}" + phrase(algo.campaign, algo, st))
        elif role == "leader":
            self.emit(t, "leader", f"{nid} is leader ({what})")
        elif was == "leader":
            self.emit(t, "leader", f"{nid} steps down ({what})")

    def collect(self) -> None:
        """After a run: announce the client's answers and the membership changes that ended
        (their times are exact)."""
        sim = self.sim
        for i, change in enumerate(self.cluster.membership_events):
            if change.done_ms is not None and i not in self.changes_told:
                self.changes_told.add(i)
                self._change_done(change)
        history = self.client.history
        while self.ops_seen < len(history) and history[self.ops_seen].complete_ms is not None:
            op = history[self.ops_seen]
            self.ops_seen += 1
            took = (op.complete_ms or 0.0) - op.invoke_ms
            self.emit(op.complete_ms or sim.now, "client",
                            f"{op.command} \u2192 {op.result or op.outcome} "
                            f"({took:.0f} ms, {op.attempts} attempt"
                            f"{'s' if op.attempts != 1 else ''})")

    def _change_done(self, change: MembershipEvent) -> None:
        took = (change.done_ms or 0.0) - change.requested_ms
        tries = f"{change.attempts} request{'s' if change.attempts != 1 else ''}"
        if change.ok:
            self.emit(change.done_ms or self.sim.now, "member",
                      f"{change.change} done in {took:.0f} ms ({tries}): {change.result}")
        else:
            self.emit(change.done_ms or self.sim.now, "reject",
                      f"{change.change} refused: {change.result} ({tries})")

    # -- commands ----------------------------------------------------------------------------

    def resolve(self, node: str) -> NodeId | None:
        """A node id, or ``leader`` / ``isolated``, which differ per cluster."""
        if node == "leader":
            return self.cluster.leader()
        if node == "isolated":
            return self.isolated
        if node not in self.cluster.ids:
            raise CommandError(f"unknown node {node!r} (nodes: {', '.join(self.cluster.ids)})")
        return node

    def kill(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            self.emit(self.sim.now, "info", f"no {node} to kill")
        elif self.cluster.is_up(nid):
            st = self.cluster.statuses().get(nid)
            if st is not None:
                self.last_status[nid] = st  # shown greyed while it is down
            self.cluster.crash(nid)
            self.last_role.pop(nid, None)  # a restarted node starts as a follower again
            self.emit(self.sim.now, "fault", f"{nid} killed")

    def revive(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is not None and not self.cluster.is_up(nid):
            self.cluster.restart(nid)
            self.emit(self.sim.now, "fault",
                            f"{nid} restarted from its persisted state")

    def timeout(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None or not self.cluster.is_up(nid):
            self.emit(self.sim.now, "info", f"{nid or node} is down: no timeout")
            return
        self.emit(self.sim.now, "fault", f"{nid} times out now")
        self.cluster.campaign(nid)

    # -- membership: the run pipeline's operator sends ConfigChange and retries it -----------

    def add_node(self) -> NodeId:
        """Start the next free id empty (joining) and ask the leader to add it."""
        if len(self.cluster.ids) >= MAX_NODES:
            raise CommandError(f"at most {MAX_NODES} nodes on the page "
                               f"({', '.join(self.cluster.ids)} already started)")
        nid = next_node_id(self.cluster.ids)
        self.emit(self.sim.now, "member",
                  f"{nid} starts empty; the operator asks the leader to add it")
        self.cluster.reconfigure(f"add {nid}")
        return nid

    def remove(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            self.emit(self.sim.now, "info", f"no {node} to remove")
            return
        self.emit(self.sim.now, "member", f"the operator asks the leader to remove {nid}")
        self.cluster.reconfigure(f"remove {nid}")

    def transfer(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            self.emit(self.sim.now, "info", f"no {node} to hand leadership to")
            return
        self.emit(self.sim.now, "member",
                  f"the operator asks the leader to hand leadership to {nid}")
        self.cluster.reconfigure(f"transfer {nid}")

    def request(self, text: str, node: str | None = None) -> None:
        target = self.resolve(node) if node else None
        self.emit(self.sim.now, "client",
                        f"client sends {text}" + (f" to {target}" if target else ""))
        self.client.submit(text, target)

    def partition(self, groups: list[list[NodeId]]) -> None:
        groups = partition_groups(self.cluster.ids, groups)
        label = "partition " + " | ".join(" ".join(g) for g in groups)
        self.cluster.set_blocked(split(groups, self.cluster.ids), label)
        self.emit(self.sim.now, "fault", label)

    def isolate(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            self.emit(self.sim.now, "info", f"no {node} to isolate")
            return
        self.isolated = nid
        others = [n for n in self.cluster.ids if n != nid]
        self.cluster.set_blocked(split([[nid], others], self.cluster.ids), f"isolate {nid}")
        self.emit(self.sim.now, "fault", f"{nid} isolated from the others")

    def links(self, cut: list[list[str]], one_way: list[list[str]]) -> None:
        """Cut links (``cut`` pairs both ways, ``one_way`` pairs from first to second), on top
        of those already cut; role tokens resolve in this cluster, now."""
        resolved = cut_links(self.cluster, self.sim.blocked, cut, one_way)
        if resolved is None:
            self.emit(self.sim.now, "info", "no leader yet: links not cut")
            return
        pairs, label = resolved
        self.cluster.set_blocked(pairs, label)
        self.emit(self.sim.now, "fault", label)

    def heal(self) -> None:
        self.cluster.set_blocked(set(), "heal")
        self.cluster.set_window()
        self.emit(self.sim.now, "fault", "network healed")

    def delay(self, ms: float) -> None:
        self.cluster.set_window(delay=ms)
        self.emit(self.sim.now, "fault", f"network adds up to {ms:.0f} ms")

    def drop(self) -> None:
        self.drop_next += 1
        self.emit(self.sim.now, "info", "will drop the next message")

    def set_timing(self, config: Config, network: Network | None = None) -> None:
        """Change timeouts (and the network) mid-run: nodes read ``config`` at each use."""
        self.sim.config = config
        for node in self.sim.live_nodes():
            node.config = config
        if network is not None:
            self.sim.network = network
        lo, hi = config.election_timeout_ms
        self.emit(self.sim.now, "info",
                        f"election timeouts now {lo:.0f}\u2013{hi:.0f} ms")

    def split_vote(self) -> None:
        """Kill the leader, and time out at once enough of the others that nobody can win."""
        cluster = self.cluster
        leader = cluster.leader()
        if leader is not None:
            self.kill(leader)
        live = [n for n in cluster.ids if cluster.is_up(n)]
        majority = len(cluster.ids) // 2 + 1
        # Each candidate votes for itself; with k candidates the others hold len(live) - k
        # votes, so a candidate gets at most 1 + len(live) - k: below a majority when
        # k >= len(live) + 2 - majority.
        k = min(len(live), max(2, len(live) + 2 - majority))
        for nid in live[:k]:
            self.timeout(nid)

    # -- observation -------------------------------------------------------------------------

    def membership(self) -> Membership | None:
        """The configuration the cluster acts on: its leader's, else (no leader) that of the
        live node furthest ahead; None before any node reports one."""
        statuses = self.cluster.statuses()
        leader = self.cluster.leader()
        st = statuses.get(leader) if leader is not None else None
        if st is None or st.config is None:
            known = [statuses[n] for n in self.sim.ids
                     if n in statuses and statuses[n].config is not None]
            st = max(known, key=lambda s: (s.commit_index, s.last_index), default=None)
        return parse_config(st.config if st is not None else None)

    def node_json(self, nid: NodeId, config: Membership | None = None) -> dict[str, Any]:
        node = self.sim.nodes.get(nid)  # its log tail: the simulator holds the node itself
        st = self.cluster.statuses().get(nid) if node is not None else self.last_status.get(nid)
        if node is not None and st is not None:
            self.last_status[nid] = st
        out: dict[str, Any] = {
            "id": nid, "alive": node is not None,
            "role": st.role if st and node is not None else ("crashed" if node is None
                                                              else "follower"),
            "term": st.term if st else 0, "ballot": st.ballot if st else None,
            "leader": st.leader if st else None,
            "commit_index": st.commit_index if st else 0,
            "last_index": st.last_index if st else 0,
            "election_deadline": _finite(st.election_deadline_ms) if st and node else None,
            "log": ([log_slot_json(slot) for slot in node.log_tail(LOG_TAIL)]
                    if node is not None else []),
            "member": member_role(nid, config, st.config if st else None),
            "snapshot_index": st.snapshot_index if st else 0,
        }
        return out

    def state_json(self) -> dict[str, Any]:
        sim = self.sim
        config = self.membership()
        return {
            "algorithm": self.name, "title": self.title, "leader": self.cluster.leader(),
            "nodes": [self.node_json(n, config) for n in sim.ids],
            "config": config.to_text() if config is not None else None,
            "joint": bool(config and config.joint),
            "changes": [{"change": c.change, "ok": c.ok, "done": c.done_ms is not None,
                         "result": c.result, "attempts": c.attempts}
                        for c in self.cluster.membership_events[-RECENT_CHANGES:]],
            "blocked": sorted([a, b] for a, b in sim.blocked),
            "committed": self.committed,
            "violations": [str(v) for v in sim.violations[:5]],
            "pending_requests": len(self.client.queue) + (self.client.current is not None),
        }


class SimBackend:
    """Both simulated clusters, the clock that drives them, and the page's commands."""

    mode = "sim"

    def __init__(self, nodes: int = 5, seed: int = 1, *, speed: float = DEFAULT_SPEED,
                 running: bool = True, network: Network = DEFAULT_NETWORK,
                 config: Config | None = None) -> None:
        self.speed = speed
        self.running = running
        self.clusters: dict[str, ClusterSim] = {}
        self.events = EventLog()
        self.preset: Preset | None = None
        self.value = 0  # the n of the last `SET x = <n>` sent
        self.base_config = config or Config()
        self.base_network = network
        self.seed = seed
        self.reset(seed=seed, nodes=nodes)

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, nodes: int | None = None,
              config: Config | None = None, network: Network | None = None,
              preset: Preset | None = None) -> None:
        """Start both clusters afresh (same seed, nodes, config and network for both)."""
        old = next(iter(self.clusters.values()), None)
        self.seed = self.seed if seed is None else int(seed)
        self.nodes = max(1, min(9, int(nodes if nodes is not None else len(old.sim.ids)
                                       if old else 5)))
        self.config = config or self.base_config
        self.network = network or self.base_network
        self.preset = preset
        self.value = 0
        self.events = EventLog()
        self.clusters = {a: ClusterSim(a, self.nodes, self.seed, self.config, self.network)
                         for a in ALGORITHMS}
        lo, hi = self.config.election_timeout_ms
        self.events.add(0.0, None, "info",
                        f"reset: seed {self.seed}, {self.nodes} nodes, heartbeat "
                        f"{self.config.heartbeat_ms:.0f} ms, election timeout {lo:.0f}\u2013"
                        f"{hi:.0f} ms, latency {self.network.latency_ms[0]:.0f}\u2013"
                        f"{self.network.latency_ms[1]:.0f} ms"
                        + (f" \u2014 preset: {preset.title}" if preset else ""))
        if preset is not None:
            for at, cmd in preset.steps:
                if cmd["op"] == "request" and "text" not in cmd:
                    # Numbered now: the clusters run one after the other within a frame.
                    self.value += 1
                    cmd = {**cmd, "text": f"SET x = {self.value}"}
                for cluster in self.clusters.values():
                    cluster.sim.at(at, lambda c=cluster, cmd=cmd: self._apply_to(c, cmd))

    @property
    def now(self) -> float:
        return next(iter(self.clusters.values())).sim.now

    async def start(self) -> None:
        """Nothing to connect to in sim mode (the MQTT backend connects here)."""

    async def close(self) -> None:
        """Nothing to release in sim mode."""

    # -- time --------------------------------------------------------------------------------

    def advance_wall(self, wall_ms: float) -> None:
        """``wall_ms`` of real time passed: move the simulated clock by ``speed`` times that."""
        if self.running:
            self.advance(min(wall_ms, MAX_WALL_STEP_MS) * self.speed)

    def advance(self, sim_ms: float) -> None:
        """Run both clusters ``sim_ms`` further, in lockstep, and log what happened."""
        until = self.now + max(0.0, sim_ms)
        for cluster in self.clusters.values():
            cluster.sim.run(until)
        self.flush()

    def flush(self) -> None:
        """Move both clusters' new events into the log, in simulated-time order."""
        found = []
        for order, cluster in enumerate(self.clusters.values()):
            cluster.collect()
            found.extend((t, order, i, cluster.name, kind, text)
                         for i, (t, kind, text) in enumerate(cluster.pending))
            cluster.pending = []
        for t, _, _, name, kind, text in sorted(found):
            self.events.add(t, name, kind, text)

    # -- commands ----------------------------------------------------------------------------

    def targets(self, cmd: Mapping[str, Any]) -> list[ClusterSim]:
        which = cmd.get("cluster") or "both"
        if which == "both":
            return list(self.clusters.values())
        if which not in self.clusters:
            raise CommandError(f"unknown cluster {which!r} (both, {', '.join(ALGORITHMS)})")
        return [self.clusters[which]]

    async def apply(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one command from the page; the answer says whether the page needs a new
        full snapshot (after a reset or a preset)."""
        try:
            return self.apply_now(cmd)
        except (CommandError, KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    def apply_now(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "pause":
            self.running = False
        elif op == "resume":
            self.running = True
        elif op == "step":
            ms = float(cmd.get("ms", 10.0))
            if not 0 < ms <= 60_000:
                raise CommandError("step must be between 0 and 60000 simulated ms")
            self.running = False
            self.advance(ms)
        elif op == "speed":
            self.speed = min(MAX_SPEED, max(MIN_SPEED, float(cmd["value"])))
        elif op == "reset":
            nodes = cmd.get("nodes")
            self.reset(seed=cmd.get("seed", self.seed),
                       nodes=int(nodes) if nodes is not None else None)
            return {"ok": True, "snapshot": True}
        elif op == "preset":
            name = cmd.get("name")
            if name not in PRESETS:
                raise CommandError(f"unknown preset {name!r} ({', '.join(PRESETS)})")
            preset = PRESETS[name]
            self.reset(seed=cmd.get("seed", self.seed), nodes=preset.nodes,
                       config=preset.config, network=preset.network, preset=preset)
            self.running = True
            return {"ok": True, "snapshot": True}
        else:
            targets = self.targets(cmd)
            if op == "request" and not cmd.get("text"):
                self.value += 1
            for cluster in targets:
                self._apply_to(cluster, cmd)
            self.flush()
        return {"ok": True}

    def _apply_to(self, cluster: ClusterSim, cmd: Mapping[str, Any]) -> None:
        op = cmd.get("op")
        node = str(cmd.get("node", ""))
        if op == "kill":
            cluster.kill(node)
        elif op == "revive":
            cluster.revive(node)
        elif op == "timeout":
            cluster.timeout(node)
        elif op == "request":
            text = str(cmd.get("text") or f"SET x = {self.value}")
            cluster.request(text, cmd.get("node") or None)
        elif op == "partition":
            cluster.partition([[str(n) for n in g] for g in cmd["groups"]])
        elif op == "isolate":
            cluster.isolate(node)
        elif op == "links":
            cluster.links(cmd.get("cut") or [], cmd.get("one_way") or [])
        elif op == "heal":
            cluster.heal()
        elif op == "delay":
            cluster.delay(float(cmd["ms"]))
        elif op == "drop_next":
            cluster.drop()
        elif op == "split_vote":
            cluster.split_vote()
        elif op == "add_node":
            cluster.add_node()
        elif op == "remove":
            cluster.remove(node)
        elif op == "transfer":
            cluster.transfer(node)
        elif op == "timing":
            lo, hi = (float(x) for x in cmd["election_timeout_ms"])
            cluster.set_timing(replace(cluster.sim.config, election_timeout_ms=(lo, hi)),
                               DEFAULT_NETWORK)
        else:
            raise CommandError(f"unknown command {op!r}")

    # -- what the page sees ------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "now": round(self.now, 3), "running": self.running,
            "speed": self.speed, "seed": self.seed,
            "clusters": {name: c.state_json() for name, c in self.clusters.items()},
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything a page needs to draw from scratch (sent to every page that connects)."""
        cfg = self.config
        return {
            "type": "state", **self._header(),
            "node_ids": self.node_ids(),
            "config": {"heartbeat_ms": cfg.heartbeat_ms,
                       "election_timeout_ms": list(cfg.election_timeout_ms),
                       "latency_ms": list(self.network.latency_ms),
                       "pre_vote": cfg.pre_vote, "check_quorum": cfg.check_quorum,
                       "membership_change": cfg.membership_change, "alpha": cfg.alpha,
                       "snapshot_entries": cfg.snapshot_entries},
            "preset": self.preset.to_json() if self.preset else None,
            "presets": [p.to_json() for p in PRESETS.values()],
            "algorithms": {name: algorithm_json(c.algorithm) for name, c in self.clusters.items()},
            "capabilities": {"pause": True, "step": True, "drop_next": True, "reset": True,
                             "speed": True, "presets": True, "membership": True},
            "events": self.events.recent(),
        }

    def node_ids(self) -> list[NodeId]:
        """Every node id any cluster has started (added nodes may differ per cluster)."""
        return list(dict.fromkeys(n for c in self.clusters.values() for n in c.sim.ids))

    def frame(self) -> dict[str, Any]:
        """What changed since the previous frame: statuses, new messages, new events."""
        return {"type": "update", **self._header(),
                "messages": take_messages(self.clusters.values()),
                "events": self.events.unsent()}

    def describe(self) -> Iterable[str]:
        titles = " and ".join(c.title for c in self.clusters.values())
        yield f"simulated {titles}, {self.nodes} nodes, seed {self.seed}"
