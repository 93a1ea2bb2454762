"""The dashboard's live mode: watch real node processes over MQTT, and poke them.

Theory of operation
-------------------
``consensus-lab cluster up`` records each cluster in ``.consensus-lab/<name>/cluster.json``
(algorithm, broker, node pids). This backend loads that record for each cluster it watches
(at most one Raft and one Multi-Paxos cluster, shown side by side) and subscribes to:

- ``consensus/<cluster>/+/status``: each node's :class:`~consensus.telemetry.StatusReport`, a
  few times a second: role, term or ballot, commit index, and the fault hooks in force (so
  partitions show as cut links);
- ``consensus/<cluster>/+/in``: every node's inbox, so each protocol message and client
  request is seen as it passes the broker and drawn as a dot, and the entries carried by
  AppendEntries / Accept / Commit build each node's log tail.

Both are decoded by :mod:`consensus.codec` exactly as a node decodes them, so what is drawn is
what the nodes take; a payload a node would refuse is not drawn, only counted (and said once
per kind in the event log).

The broker tells us when a message passed, not when it left or arrived, so a dot's flight is
a fixed visual duration here, not a measured latency. Time is the wall clock (ms since the
dashboard started); there is no pause, step, drop-next or reset for real processes. A preset
whose commands real nodes can take (kills, partitions, link cuts, heals, writes: see
:data:`~consensus.dashboard.presets.LIVE_OPS`) replays on the running clusters, each
command that many wall-clock ms after the click; the clusters keep their own timing settings.

Membership changes (add node, remove, transfer leadership) are what ``consensus-lab cluster
add/remove/transfer`` does (:func:`~consensus.cluster_change.change_cluster`: the new
member's broker user and joining process, the ConfigChange from the control user with its
retries, the removed process waited for and its user revoked, the record updated), run in a
worker thread so that the page keeps drawing meanwhile. A node the record gains is drawn from
then on; one that leaves stays on the ring, down, marked removed. The ConfigChange itself is
seen on its control-only topic and drawn from the operator box.

Commands and who is up or leads go through the run pipeline's
:class:`~consensus.experiment.bus.BusCluster`, attached to the recorded cluster (its processes
keep running when the dashboard stops) and sharing this backend's connection: a kill is SIGKILL
to the recorded pid, a revive restarts the node from its WAL as ``cluster restart`` does, and
time out, partition, isolate, cut links and heal are :class:`~consensus.telemetry.Control`
commands on each node's control topic.

Nothing here knows an algorithm by name: titles and term labels come from the registry, and
messages say themselves what they refuse and which log slots they carry.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from consensus import cluster as cl
from consensus.algorithms import get_algorithm
from consensus.auth import CLIENT_USER
from consensus.codec import DecodeError, decode, decode_message
from consensus.dashboard.presets import PRESETS, Preset
from consensus.dashboard.view import (
    LOG_TAIL,
    MAX_NODES,
    EventLog,
    algorithm_json,
    command_text,
    cut_links,
    member_role,
    message_json,
    next_node_id,
    parse_config,
    partition_groups,
    refusal,
    take_messages,
    term_text,
)
from consensus.experiment.bus import BusCluster
from consensus.experiment.nemesis import MembershipEvent, split
from consensus.membership import Membership
from consensus.messages import Command, ConfigChange, Message, NodeId
from consensus.telemetry import StatusReport
from consensus.transport import topics
from consensus.transport.mqtt import MqttClient, fresh_client_id, make_client

FLIGHT_MS = 350.0  # how long a dot takes on the page (visual only; see the module doc)
MAX_MESSAGES_PER_FRAME = 300
CLIENT = "web"  # where the page draws every client's requests from
OPERATOR = "op"  # where the page draws the operator's membership changes from
RECENT_CHANGES = 4  # membership changes listed under each cluster

# make_client(library, url, client id, on_message, identity=None), or a stand-in for tests.
ClientFactory = Callable[..., MqttClient]


class UnsupportedCommand(ValueError):
    pass


class WatchedCluster:
    """One real cluster: the bus cluster that drives it, and what passed by for the page."""

    def __init__(self, state: cl.ClusterState, client_factory: ClientFactory,
                 clock: Callable[[], float], events: Callable[[str, str, str], None]) -> None:
        # One connection: this watcher subscribes to statuses and inboxes, hands each status
        # to the bus cluster, which sends its controls on the same connection.
        # As the cluster's control user (it sends fault hooks and reads all traffic).
        self.client = client_factory(state.library, state.broker,
                                     fresh_client_id(f"dashboard-{state.name}"),
                                     self.on_message, identity=state.identity())
        self.cluster = BusCluster.attach(state, client=self.client)
        self.name = state.name
        self.algorithm = state.algorithm
        self.info = get_algorithm(state.algorithm)
        self.title = self.info.title
        # Every node ever seen, in order: members added later join the list, removed ones stay
        # (drawn down); the bus cluster learns each new one too.
        self.ids: list[NodeId] = sorted(state.nodes)
        self.root = Path(state.directory).parent  # where `cluster up` keeps the record
        self.changes: list[MembershipEvent] = []  # asked for from this page
        self.clock = clock
        self.emit = events
        self.last_status: dict[NodeId, StatusReport] = {}  # shown greyed while it is down
        self.logs: dict[str, dict[int, tuple[str, str]]] = {n: {} for n in self.ids}
        self.messages: list[dict[str, Any]] = []
        self.last_role: dict[str, tuple[str, int]] = {}
        self.committed = 0
        self.commands: dict[int, str] = {}  # index -> command text, from replication traffic
        self.rejected: Counter[str] = Counter()  # payloads the codec refused, by reason
        # Links this dashboard cut: a link cut adds to them at once, without waiting for the
        # statuses to show the previous cut.
        self.cut: set[tuple[NodeId, NodeId]] = set()

    @property
    def state(self) -> cl.ClusterState:
        return self.cluster.state

    async def start(self) -> None:
        await self.cluster.start()
        await self.client.connect()
        await self.client.subscribe(topics.status(self.name), topics.all_inboxes(self.name),
                                    topics.config(self.name, "+", "+"))

    async def close(self) -> None:
        await self.cluster.close()  # leaves the nodes running
        await self.client.close()

    # -- inbound -----------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[1] != self.name or parts[2] not in self.logs:
            return
        try:
            if len(parts) == 5 and parts[3] == "config":
                # Only the control user may publish here (the ACL): the operator's change.
                change = decode_message(payload, cluster=self.name)
                if not isinstance(change, ConfigChange) or change.dst != parts[2]:
                    raise DecodeError("misrouted", f"a {change.kind} on a config topic")
                now = self.clock()
                self.messages.append(message_json(self.algorithm, change, now, now + FLIGHT_MS,
                                                  OPERATOR))
            elif len(parts) == 4 and parts[3] == "status":
                st = decode(StatusReport, payload)
                if st.id != parts[2] or st.cluster != self.name:
                    raise DecodeError("misrouted", f"status of {st.id!r} in {st.cluster!r}")
                self.on_status(st)
            elif (route := topics.sender_of(topic)) is not None:
                dst, src = route
                msg = decode_message(payload, cluster=self.name, members=self.ids)
                if msg.dst != dst:
                    raise DecodeError("misrouted", f"addressed to {msg.dst!r}")
                if msg.src != src:
                    raise DecodeError("sender-mismatch", f"claims {msg.src!r}, published as "
                                      f"{src!r}")
                self.on_inbox(msg)
        except DecodeError as exc:
            if not self.rejected[exc.reason]:
                self.emit(self.algorithm, "info", f"not drawn: a malformed {parts[3]} payload "
                          f"for {parts[2]} ({exc}); further ones are only counted")
            self.rejected[exc.reason] += 1

    def on_status(self, st: StatusReport) -> None:
        self.cluster.on_status(st)
        nid = st.id
        self.last_status[nid] = st
        role, term = st.role, st.term
        before = self.last_role.get(nid)
        if before != (role, term):
            self.last_role[nid] = (role, term)
            what = f"{self.info.term_label} {term_text(st)}"
            if role == "leader":
                self.emit(self.algorithm, "leader", f"{nid} is leader ({what})")
            elif role in ("candidate", "precandidate"):
                self.emit(self.algorithm, "election", f"{nid} is {role} ({what})")
            elif before and before[0] == "leader":
                self.emit(self.algorithm, "leader", f"{nid} steps down ({what})")
        commit = st.commit_index
        while self.committed < commit:
            self.committed += 1
            text = self.commands.get(self.committed)
            if text is not None and text != "no-op":
                self.emit(self.algorithm, "commit", f"#{self.committed} committed: {text}")

    def on_inbox(self, msg: Message) -> None:
        now = self.clock()
        refused = refusal(msg)
        if refused is not None:
            self.emit(self.algorithm, "reject", refused)
        for index, label, command in msg.carried_slots():
            self._learn(msg.dst, msg.src, index, label, command)
        # A client is any sender that is not a member; the page draws them all as one box.
        src = None if msg.src in self.logs else CLIENT
        self.messages.append(message_json(self.algorithm, msg, now, now + FLIGHT_MS, src))

    def _learn(self, dst: str, src: str, index: int, label: str,
               command: Command | None) -> None:
        text = command_text(command)
        self.commands[index] = text
        for nid in (dst, src):
            if nid in self.logs:
                log = self.logs[nid]
                log[index] = (label, text)
                if len(log) > 4 * LOG_TAIL:
                    for old in sorted(log)[: len(log) - 2 * LOG_TAIL]:
                        del log[old]

    # -- membership --------------------------------------------------------------------------

    def know(self, nid: NodeId) -> None:
        """Draw ``nid`` from now on (a member added here or by `cluster add` elsewhere)."""
        if nid in self.logs:
            return
        self.ids.append(nid)
        self.logs[nid] = {}
        self.cluster.ids = tuple(sorted({*self.cluster.ids, nid}))  # its statuses count

    def membership(self) -> Membership | None:
        """The configuration the leader acts on (else the most advanced node's)."""
        statuses = self.cluster.statuses()
        st = statuses.get(self.cluster.leader() or "")
        if st is None or st.config is None:
            known = [s for s in statuses.values() if s.config is not None]
            st = max(known, key=lambda s: (s.commit_index, s.last_index), default=None)
        return parse_config(st.config if st is not None else None)

    def next_id(self) -> NodeId:
        if len(self.ids) >= MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes on the page "
                             f"({', '.join(self.ids)} already started)")
        return next_node_id(self.ids)

    def change(self, text: str) -> Coroutine[Any, Any, None]:
        """Record the change ``text`` as asked for (the page shows it in flight at once) and
        return the work that makes it, for the backend to run as a task."""
        event = MembershipEvent(text, self.clock())
        self.changes.append(event)
        self.emit(self.algorithm, "member", f"the operator asks: {text}")
        return self._change(event)

    async def _change(self, event: MembershipEvent) -> None:
        """Make one membership change as `cluster add/remove/transfer` does, in a worker
        thread (it starts processes and waits for the leader's answer)."""
        from consensus.client import ClusterUnavailable
        from consensus.cluster_change import MembershipChangeError, change_cluster

        loop = asyncio.get_running_loop()
        text = event.change

        def progress(line: str) -> None:  # called in the worker thread
            loop.call_soon_threadsafe(self.emit, self.algorithm, "info", line)

        try:
            outcome = await asyncio.to_thread(change_cluster, self.name, text, self.root,
                                              progress=progress)
        except (MembershipChangeError, ClusterUnavailable, OSError, ValueError) as exc:
            event.done_ms, event.result = self.clock(), str(exc)
            self.emit(self.algorithm, "reject", f"{text} failed: {exc}")
            return
        event.done_ms, event.ok, event.result = self.clock(), True, outcome.config
        event.attempts = outcome.attempts
        self.emit(self.algorithm, "member", f"{text} done in {outcome.seconds:.1f} s "
                  f"({outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}): "
                  f"{outcome.config}")

    # -- observation -------------------------------------------------------------------------

    def node_json(self, nid: str, config: Membership | None = None) -> dict[str, Any]:
        alive = self.cluster.is_up(nid) and nid in self.cluster.statuses()
        st = self.last_status.get(nid)
        commit = st.commit_index if st else 0
        last = st.last_index if st else 0
        log = self.logs[nid]
        tail = [{"i": i, "b": log[i][0], "cmd": log[i][1], "ok": i <= commit}
                for i in sorted(k for k in log if k <= last)[-LOG_TAIL:]]
        return {
            "id": nid, "alive": alive,
            "role": (st.role if st else "follower") if alive else "crashed",
            "term": st.term if st else 0, "ballot": st.ballot if st else None,
            "leader": st.leader if st else None, "commit_index": commit, "last_index": last,
            # Not drawn for real nodes: the status's election_timeout_in_ms is a snapshot,
            # already up to a status interval old when it arrives.
            "election_deadline": None,
            "log": tail, "pid": self.state.nodes.get(nid),
            "member": member_role(nid, config, st.config if st else None),
            "snapshot_index": st.snapshot_index if st else 0,
        }

    def blocked(self) -> list[list[str]]:
        pairs: set[tuple[str, str]] = set()
        for nid, st in self.cluster.statuses().items():
            pairs |= {(nid, p) for p in st.faults.drop_to}
            pairs |= {(p, nid) for p in st.faults.drop_from}
        return sorted([a, b] for a, b in pairs)

    def algorithm_json(self) -> dict[str, Any]:
        """The registry's description, named after the watched cluster (the page's panel
        title and event tags say which cluster it is)."""
        return {**algorithm_json(self.info), "title": f"{self.title} ({self.name})",
                "short": f"{self.info.short} ({self.name})"}

    def state_json(self) -> dict[str, Any]:
        self.cluster.refresh()
        for nid in sorted(self.state.nodes):  # added by `cluster add` in another terminal
            self.know(nid)
        config = self.membership()
        return {"algorithm": self.algorithm, "title": f"{self.title} ({self.name})",
                "leader": self.cluster.leader(),
                "nodes": [self.node_json(n, config) for n in self.ids],
                "blocked": self.blocked(), "committed": self.committed, "violations": [],
                "pending_requests": 0,
                "config": config.to_text() if config is not None else None,
                "joint": bool(config and config.joint),
                "changes": [{"change": c.change, "ok": c.ok, "done": c.done_ms is not None,
                             "result": c.result, "attempts": c.attempts}
                            for c in self.changes[-RECENT_CHANGES:]]}

    # -- commands ----------------------------------------------------------------------------

    def resolve(self, node: str) -> str | None:
        if node == "leader":
            return self.cluster.leader()
        if node not in self.logs:
            raise ValueError(f"unknown node {node!r} (nodes: {', '.join(self.ids)})")
        return node

    def kill(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            return
        self.cluster.refresh()
        if not self.cluster.is_up(nid):
            self.emit(self.algorithm, "info", f"{nid} is not running")
            return
        self.cluster.crash(nid)
        self.emit(self.algorithm, "fault", f"{nid} killed (SIGKILL pid {self.state.nodes[nid]})")

    def revive(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            return
        try:
            self.cluster.restart(nid)
        except RuntimeError:
            self.emit(self.algorithm, "info", f"{nid} is still running")
            return
        self.emit(self.algorithm, "fault",
                  f"{nid} restarted (pid {self.state.nodes[nid]}), recovering its WAL")

    def timeout(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is not None:
            self.cluster.campaign(nid)
            self.emit(self.algorithm, "fault", f"{nid} times out now")

    def partition(self, groups: list[list[str]]) -> None:
        groups = partition_groups(self.ids, groups)
        label = "partition " + " | ".join(" ".join(g) for g in groups)
        self.cut = split(groups, self.ids)
        self.cluster.set_blocked(self.cut, label)
        self.emit(self.algorithm, "fault", label)

    def links(self, cut: list[list[str]], one_way: list[list[str]]) -> None:
        """Cut links on top of those already cut; role tokens resolve in this cluster now."""
        shown = {(a, b) for a, b in self.blocked()}
        resolved = cut_links(self.cluster, self.cut | shown, cut, one_way)
        if resolved is None:
            self.emit(self.algorithm, "info", "no leader known: links not cut")
            return
        self.cut, label = resolved
        self.cluster.set_blocked(self.cut, label)
        self.emit(self.algorithm, "fault", label)

    def heal(self) -> None:
        self.cut = set()
        self.cluster.set_blocked(set(), "heal")
        self.cluster.set_window()
        self.emit(self.algorithm, "fault", "network healed")


class MqttBackend:
    """Real clusters on the message bus, one per algorithm; see the module docstring."""

    mode = "mqtt"

    def __init__(self, states: Iterable[cl.ClusterState],
                 client_factory: ClientFactory = make_client) -> None:
        self.t0 = time.monotonic()
        self.events = EventLog()
        self.clusters: dict[str, WatchedCluster] = {}
        for state in states:
            if state.algorithm in self.clusters:
                raise ValueError(f"watch at most one cluster per algorithm: "
                                 f"{self.clusters[state.algorithm].name!r} and {state.name!r} "
                                 f"are both {state.algorithm}")
            self.clusters[state.algorithm] = WatchedCluster(state, client_factory, self.now_ms,
                                                            self._emit)
        if not self.clusters:
            raise ValueError("no cluster to watch")
        self.value = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.preset: Preset | None = None
        self._preset_steps: list[asyncio.TimerHandle] = []

    @classmethod
    def from_clusters(cls, names: Iterable[str], root: Path = cl.STATE_ROOT) -> MqttBackend:
        return cls([cl.ClusterState.load(n, root) for n in names])

    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def _emit(self, cluster: str | None, kind: str, text: str) -> None:
        self.events.add(self.now_ms(), cluster, kind, text)

    async def start(self) -> None:
        for c in self.clusters.values():
            await c.start()
            self._emit(c.algorithm, "info", f"watching {c.title} cluster {c.name!r} on "
                       f"{c.state.broker}")

    async def close(self) -> None:
        self._cancel_preset()
        for task in list(self._tasks):
            task.cancel()
        for c in self.clusters.values():
            await c.close()

    def advance_wall(self, wall_ms: float) -> None:
        """Real time runs by itself."""

    async def apply(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        try:
            if cmd.get("op") == "preset":
                self.start_preset(str(cmd.get("name")))
                return {"ok": True, "snapshot": True}
            self.apply_now(cmd)
        except (UnsupportedCommand, ValueError, KeyError, TypeError, OSError,
                FileNotFoundError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True}

    def start_preset(self, name: str) -> None:
        """Replay a preset's commands on the running clusters, at their times from now (a
        preset already under way is cancelled first)."""
        live = {p.name: p for p in PRESETS.values() if p.live}
        if name not in live:
            raise UnsupportedCommand(f"no preset {name!r} for real nodes "
                                     f"({', '.join(live)})")
        preset = live[name]
        self._cancel_preset()
        self.preset = preset
        assumed = ", ".join(f"{k} {v}" for k, v in preset.settings().items())
        self._emit(None, "info", f"preset: {preset.title}" + (
            f" (it assumes {assumed}; these clusters keep the settings they were started with)"
            if assumed else ""))
        loop = asyncio.get_running_loop()
        self._preset_steps = [loop.call_later(at / 1000.0, self._preset_step, dict(step))
                              for at, step in preset.steps]

    def _preset_step(self, cmd: dict[str, Any]) -> None:
        try:
            self.apply_now(cmd)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self._emit(None, "info", f"preset step {cmd['op']} failed: {exc}")

    def _cancel_preset(self) -> None:
        for handle in self._preset_steps:
            handle.cancel()
        self._preset_steps = []

    def apply_now(self, cmd: Mapping[str, Any]) -> None:
        op = cmd.get("op")
        which = cmd.get("cluster") or "both"
        if which != "both" and which not in self.clusters:
            raise ValueError(f"no {which} cluster is watched")
        targets = list(self.clusters.values()) if which == "both" else [self.clusters[which]]
        node = str(cmd.get("node", ""))
        if op in ("pause", "resume", "step", "speed", "drop_next", "reset", "preset"):
            raise UnsupportedCommand(f"{op} is not available with real nodes (mqtt mode)")
        if op == "request":
            self.value += 1
            text = str(cmd.get("text") or f"SET x = {self.value}")
        for c in targets:
            if op == "kill":
                c.kill(node)
            elif op == "revive":
                c.revive(node)
            elif op == "timeout":
                c.timeout(node)
            elif op == "partition":
                c.partition([[str(n) for n in g] for g in cmd["groups"]])
            elif op == "isolate":
                nid = c.resolve(node)
                if nid is not None:
                    c.partition([[nid], [n for n in c.ids if n != nid]])
            elif op == "links":
                c.links(cmd.get("cut") or [], cmd.get("one_way") or [])
            elif op == "heal":
                c.heal()
            elif op == "request":
                self._spawn(self._request(c, text))
            elif op == "add_node":
                nid = c.next_id()
                c.know(nid)  # drawn at once, and a second click picks the next id
                self._spawn(c.change(f"add {nid}"))
            elif op in ("remove", "transfer"):
                nid = c.resolve(node)
                if nid is None:
                    self._emit(c.algorithm, "info", f"no {node} to {op}")
                    continue
                self._spawn(c.change(f"{op} {nid}"))
            else:
                raise ValueError(f"unknown command {op!r}")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, c: WatchedCluster, text: str) -> None:
        from consensus.client import ClusterClient, ClusterUnavailable

        self._emit(c.algorithm, "client", f"client sends {text}")
        try:
            async with ClusterClient(c.state.broker, c.name, library=c.state.library,
                                     deadline_s=10.0,
                                     identity=c.state.identity(CLIENT_USER)) as client:
                result = await client.request(text)
        except (ClusterUnavailable, OSError, ValueError) as exc:
            self._emit(c.algorithm, "client", f"{text} \u2192 failed: {exc}")
            return
        self._emit(c.algorithm, "client",
                   f"{text} \u2192 {result.reply.result or result.reply.status.value} "
                   f"({result.latency_ms:.0f} ms, {result.attempts} attempt"
                   f"{'s' if result.attempts != 1 else ''})")

    # -- what the page sees ------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {"mode": self.mode, "now": round(self.now_ms(), 1), "running": True,
                "speed": 1.0, "seed": 0,
                "clusters": {a: c.state_json() for a, c in self.clusters.items()}}

    def snapshot(self) -> dict[str, Any]:
        first = next(iter(self.clusters.values()))
        s = first.state
        return {
            "type": "state", **self._header(),
            "node_ids": list(dict.fromkeys(n for c in self.clusters.values() for n in c.ids)),
            "config": {"heartbeat_ms": s.heartbeat_ms,
                       "election_timeout_ms": list(s.election_timeout_ms),
                       "latency_ms": None, "pre_vote": None, "check_quorum": None,
                       "snapshot_entries": s.snapshot_entries},
            "preset": self.preset.to_json() if self.preset else None,
            "presets": [p.to_json() for p in PRESETS.values() if p.live],
            "algorithms": {a: c.algorithm_json() for a, c in self.clusters.items()},
            "capabilities": {"pause": False, "step": False, "drop_next": False,
                             "reset": False, "speed": False, "presets": True,
                             "membership": True},
            "events": self.events.recent(),
        }

    def frame(self) -> dict[str, Any]:
        return {"type": "update", **self._header(),
                "messages": take_messages(self.clusters.values(), MAX_MESSAGES_PER_FRAME),
                "events": self.events.unsent()}


__all__ = ["MqttBackend", "WatchedCluster"]
