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
dashboard started); there is no pause, step, drop-next or reset for real processes.

Commands: a kill is SIGKILL to the recorded pid (checked to still be a consensus-lab process);
a revive is :func:`consensus.cluster.restart_node`, which recovers the node from its WAL;
time out, partition, isolate and heal go through each node's control topic as
:class:`~consensus.telemetry.Control` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from consensus import cluster as cl
from consensus.codec import DecodeError, decode, decode_message, encode
from consensus.dashboard.sim_backend import LOG_TAIL, EventLog, take_messages
from consensus.messages import ClientRequest, Command, Message
from consensus.paxos import messages as px
from consensus.raft import messages as rf
from consensus.telemetry import Control, ControlOp, StatusReport, leader_of
from consensus.transport import topics
from consensus.transport.mqtt import MqttClient, fresh_client_id, make_client

FLIGHT_MS = 350.0  # how long a dot takes on the page (visual only; see the module doc)
STATUS_STALE_MS = 1500.0  # no status for this long: the node is shown as down
PID_CHECK_MS = 500.0
MAX_MESSAGES_PER_FRAME = 300

ClientFactory = Callable[[str, str, str, Callable[[str, bytes], None]], MqttClient]


class UnsupportedCommand(ValueError):
    pass


class WatchedCluster:
    """One real cluster: its recorded state, what its nodes last said, what passed by."""

    def __init__(self, state: cl.ClusterState, root: Path, clock: Callable[[], float],
                 events: Callable[[str, str, str], None]) -> None:
        self.state = state
        self.root = root
        self.name = state.name
        self.algorithm = state.algorithm
        self.title = "Raft" if state.algorithm == "raft" else "Multi-Paxos"
        self.ids = sorted(state.nodes)
        self.clock = clock
        self.emit = events
        self.client: MqttClient | None = None
        self.statuses: dict[str, StatusReport] = {}
        self.seen_at: dict[str, float] = {}
        self.alive_pid: dict[str, bool] = dict.fromkeys(self.ids, True)
        self.pid_checked = -PID_CHECK_MS
        self.logs: dict[str, dict[int, tuple[str, str]]] = {n: {} for n in self.ids}
        self.messages: list[dict[str, Any]] = []
        self.last_role: dict[str, tuple[str, int]] = {}
        self.committed = 0
        self.commands: dict[int, str] = {}  # index -> command text, from replication traffic
        self.rejected: Counter[str] = Counter()  # payloads the codec refused, by reason

    # -- inbound -----------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 4 or parts[1] != self.name or parts[2] not in self.logs:
            return
        try:
            if parts[3] == "status":
                st = decode(StatusReport, payload)
                if st.id != parts[2] or st.cluster != self.name:
                    raise DecodeError("misrouted", f"status of {st.id!r} in {st.cluster!r}")
                self.on_status(st)
            elif parts[3] == "in":
                msg = decode_message(payload, cluster=self.name, members=self.ids)
                if msg.dst != parts[2]:
                    raise DecodeError("misrouted", f"addressed to {msg.dst!r}")
                self.on_inbox(msg)
        except DecodeError as exc:
            if not self.rejected[exc.reason]:
                self.emit(self.algorithm, "info", f"not drawn: a malformed {parts[3]} payload "
                          f"for {parts[2]} ({exc}); further ones are only counted")
            self.rejected[exc.reason] += 1

    def on_status(self, st: StatusReport) -> None:
        nid = st.id
        now = self.clock()
        self.statuses[nid] = st
        self.seen_at[nid] = now
        role, term = st.role, st.term
        before = self.last_role.get(nid)
        if before != (role, term):
            self.last_role[nid] = (role, term)
            what = f"ballot {st.ballot}" if self.algorithm == "paxos" else f"term {term}"
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
        src, dst = msg.src, msg.dst
        now = self.clock()
        m: dict[str, Any] = {"c": self.algorithm, "k": msg.kind, "s": src, "d": dst,
                             "t0": now, "t1": now + FLIGHT_MS}
        if isinstance(msg, rf.AppendEntries):
            _mark_batch(m, msg.entries)
            for e in msg.entries:
                self._learn(dst, src, e.index, str(e.term), e.command)
        elif isinstance(msg, px.Accept | px.Commit):
            if isinstance(msg, px.Accept):
                _mark_batch(m, msg.commands)
            for i, c in enumerate(msg.commands):
                self._learn(dst, src, msg.first_slot + i, str(msg.ballot), c)
        elif isinstance(msg, rf.AppendEntriesReply) and not msg.success:
            m["neg"] = True
            self.emit(self.algorithm, "reject", f"{src} refused AppendEntries from {dst}")
        elif isinstance(msg, rf.RequestVoteReply) and not msg.granted:
            m["neg"] = True
            self.emit(self.algorithm, "reject", f"{src} refused "
                      f"{'pre-vote' if msg.pre_vote else 'vote'} to {dst}")
        elif isinstance(msg, px.Nack):
            m["neg"] = True
            self.emit(self.algorithm, "reject", f"{src} Nack to {dst}")
        elif isinstance(msg, ClientRequest):
            m["s"] = "web"
        if getattr(msg, "pre_vote", False):
            m["pre"] = True
        self.messages.append(m)

    def _learn(self, dst: str, src: str, index: int, ballot: str,
               command: Command | None) -> None:
        text = "no-op" if command is None else command.text
        self.commands[index] = text
        for nid in (dst, src):
            if nid in self.logs:
                log = self.logs[nid]
                log[index] = (ballot, text)
                if len(log) > 4 * LOG_TAIL:
                    for old in sorted(log)[: len(log) - 2 * LOG_TAIL]:
                        del log[old]

    # -- observation -------------------------------------------------------------------------

    def check_pids(self) -> None:
        now = self.clock()
        if now - self.pid_checked < PID_CHECK_MS:
            return
        self.pid_checked = now
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            self.state = cl.ClusterState.load(self.name, self.root)  # revives change pids
        for nid in self.ids:
            self.alive_pid[nid] = cl.is_ours(self.state.nodes.get(nid, 0))

    def alive(self, nid: str) -> bool:
        fresh = self.clock() - self.seen_at.get(nid, -1e18) < STATUS_STALE_MS
        return fresh and self.alive_pid.get(nid, False)

    def node_json(self, nid: str) -> dict[str, Any]:
        st = self.statuses.get(nid)
        alive = self.alive(nid)
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
        }

    def blocked(self) -> list[list[str]]:
        pairs: set[tuple[str, str]] = set()
        for nid, st in self.statuses.items():
            if not self.alive(nid):
                continue
            pairs |= {(nid, p) for p in st.faults.drop_to}
            pairs |= {(p, nid) for p in st.faults.drop_from}
        return sorted([a, b] for a, b in pairs)

    def leader(self) -> str | None:
        return leader_of(self.statuses, down={n for n in self.ids if not self.alive(n)})

    def state_json(self) -> dict[str, Any]:
        self.check_pids()
        return {"algorithm": self.algorithm, "title": f"{self.title} ({self.name})",
                "leader": self.leader(), "nodes": [self.node_json(n) for n in self.ids],
                "blocked": self.blocked(), "committed": self.committed, "violations": [],
                "pending_requests": 0}

    # -- commands ----------------------------------------------------------------------------

    def resolve(self, node: str) -> str | None:
        if node == "leader":
            return self.leader()
        if node not in self.logs:
            raise ValueError(f"unknown node {node!r} (nodes: {', '.join(self.ids)})")
        return node

    def control(self, nid: str, cmd: Control) -> None:
        assert self.client is not None, "not connected"
        self.client.publish(topics.control(self.name, nid), encode(cmd))

    def kill(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            return
        pid = self.state.nodes[nid]
        if not cl.is_ours(pid):
            self.emit(self.algorithm, "info", f"{nid} is not running")
            return
        os.kill(pid, signal.SIGKILL)
        self.alive_pid[nid] = False
        self.seen_at.pop(nid, None)
        self.emit(self.algorithm, "fault", f"{nid} killed (SIGKILL pid {pid})")
        # A node we restarted is our child: reap it so it does not linger as a zombie.
        asyncio.get_running_loop().call_later(0.2, _reap, pid)

    def revive(self, node: str) -> None:
        nid = self.resolve(node)
        if nid is None:
            return
        try:
            pid = cl.restart_node(self.name, nid, self.root)
        except RuntimeError:
            self.emit(self.algorithm, "info", f"{nid} is still running")
            return
        self.state.nodes[nid] = pid
        self.pid_checked = -PID_CHECK_MS
        self.emit(self.algorithm, "fault", f"{nid} restarted (pid {pid}), recovering its WAL")

    def partition(self, groups: list[list[str]]) -> None:
        named = [n for g in groups for n in g]
        if len(named) != len(set(named)) or not set(named) <= set(self.ids) or len(groups) < 2:
            raise ValueError("partition needs two or more disjoint groups of known nodes")
        rest = sorted(set(self.ids) - set(named))
        groups = [g for g in groups if g] + ([rest] if rest else [])
        for group in groups:
            others = sorted(set(self.ids) - set(group))
            for nid in group:
                self.control(nid, Control(ControlOp.DROP_TO, peers=tuple(others)))
                self.control(nid, Control(ControlOp.DROP_FROM, peers=tuple(others)))
        self.emit(self.algorithm, "fault", "partition " + " | ".join(" ".join(sorted(g))
                                                                      for g in groups))


def _mark_batch(m: dict[str, Any], batch: tuple[Any, ...]) -> None:
    """An empty AppendEntries/Accept is a heartbeat (a small dot); else note its size."""
    if batch:
        m["n"] = len(batch)
    else:
        m["hb"] = True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class MqttBackend:
    """Real clusters on the message bus, one per algorithm; see the module docstring."""

    mode = "mqtt"

    def __init__(self, states: Iterable[cl.ClusterState], root: Path = cl.STATE_ROOT,
                 client_factory: ClientFactory = make_client) -> None:
        self.t0 = time.monotonic()
        self.events = EventLog()
        self.clusters: dict[str, WatchedCluster] = {}
        for state in states:
            if state.algorithm in self.clusters:
                raise ValueError(f"watch at most one cluster per algorithm: "
                                 f"{self.clusters[state.algorithm].name!r} and {state.name!r} "
                                 f"are both {state.algorithm}")
            self.clusters[state.algorithm] = WatchedCluster(state, root, self.now_ms, self._emit)
        if not self.clusters:
            raise ValueError("no cluster to watch")
        self.client_factory = client_factory
        self.value = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_clusters(cls, names: Iterable[str], root: Path = cl.STATE_ROOT) -> MqttBackend:
        return cls([cl.ClusterState.load(n, root) for n in names], root)

    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0

    def _emit(self, cluster: str | None, kind: str, text: str) -> None:
        self.events.add(self.now_ms(), cluster, kind, text)

    async def start(self) -> None:
        for c in self.clusters.values():
            client = self.client_factory(c.state.library, c.state.broker,
                                         fresh_client_id(f"dashboard-{c.name}"), c.on_message)
            c.client = client
            await client.connect()
            await client.subscribe(topics.status(c.name), topics.all_inboxes(c.name))
            self._emit(c.algorithm, "info", f"watching {c.title} cluster {c.name!r} on "
                       f"{c.state.broker}")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for c in self.clusters.values():
            if c.client is not None:
                await c.client.close()

    def advance_wall(self, wall_ms: float) -> None:
        """Real time runs by itself."""

    async def apply(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self.apply_now(cmd)
        except (UnsupportedCommand, ValueError, KeyError, TypeError, OSError,
                FileNotFoundError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True}

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
                nid = c.resolve(node)
                if nid is not None:
                    c.control(nid, Control(ControlOp.CAMPAIGN))
                    self._emit(c.algorithm, "fault", f"{nid} times out now")
            elif op == "partition":
                c.partition([[str(n) for n in g] for g in cmd["groups"]])
            elif op == "isolate":
                nid = c.resolve(node)
                if nid is not None:
                    c.partition([[nid], [n for n in c.ids if n != nid]])
            elif op == "heal":
                for nid in c.ids:
                    c.control(nid, Control(ControlOp.HEAL))
                self._emit(c.algorithm, "fault", "network healed")
            elif op == "request":
                task = asyncio.create_task(self._request(c, text))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                raise ValueError(f"unknown command {op!r}")

    async def _request(self, c: WatchedCluster, text: str) -> None:
        from consensus.client import ClusterClient, ClusterUnavailable

        self._emit(c.algorithm, "client", f"client sends {text}")
        try:
            async with ClusterClient(c.state.broker, c.name, library=c.state.library,
                                     deadline_s=10.0) as client:
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
            "type": "state", **self._header(), "node_ids": first.ids,
            "config": {"heartbeat_ms": s.heartbeat_ms,
                       "election_timeout_ms": list(s.election_timeout_ms),
                       "latency_ms": None, "pre_vote": None, "check_quorum": None},
            "preset": None, "presets": [],
            "capabilities": {"pause": False, "step": False, "drop_next": False,
                             "reset": False, "speed": False, "presets": False},
            "events": self.events.recent(),
        }

    def frame(self) -> dict[str, Any]:
        return {"type": "update", **self._header(),
                "messages": take_messages(self.clusters.values(), MAX_MESSAGES_PER_FRAME),
                "events": self.events.unsent()}


__all__ = ["MqttBackend", "WatchedCluster"]
