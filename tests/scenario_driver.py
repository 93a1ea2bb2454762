"""One hand-driver for every algorithm: nodes, a FIFO network we deliver ourselves, crashes.

The driver touches a node only through the public interface (``tick``, ``step``, ``ready``,
``restore``, ``campaign``, ``status``); what it prints is what Raft and Multi-Paxos share:
who leads, roles and terms, the client commands each node applies, client replies, and the
safety checkers' verdicts (run after every drain, as in the simulator). So one scenario file
runs unchanged against both algorithms, and where they really differ the file says so.

Scenario files (``tests/scenarios/``, etcd-io/raft's ``testdata`` style) are a list of
commands, each followed by ``----`` and the output it must produce::

    cluster nodes=3 timeout=1000     # a fresh cluster n1..n3 (knobs: see Driver.cluster;
                                     # election=any|up-to-date switches who may win)
    campaign n1                      # start an election now
    deliver                          # deliver queued messages until the network is quiet
    deliver drop=n1->n3,n2->*        # ... dropping some (also: dup, once)
    tick 300                         # let 300 ms pass: timers fire, messages queue up
    run 300                          # let 300 ms pass on a perfect network (zero latency)
    propose n1 SET x = 100           # client c1 sends a command to n1 (client=c2 before it)
    retry c1 n2                      # client c1 resends its last request (same seq) to n2
    crash n2 / restart n2 / pause n2 / resume n2
    partition n1,n2 | n3,n4,n5 / cut n1 -> n2,n3 / heal
    status / kv / applied / check

Messages leave a node in its ``ready()`` and wait in one FIFO queue; partitions, cuts and
``drop=`` rules apply when a message would be delivered (a crashed node's messages already
sent are still delivered; those to a crashed node are lost). A ``drop=`` rule is
``[Kind:]src->dst[,dst...][@term>N]``, several joined by ``;``, ``*`` for any node. ``run``
also takes ``loss=p`` and ``dup=p``, drawn from a generator seeded by the cluster's seed.
After every command the driver prints what happened: leader changes, client replies, which
nodes applied which client command, and any new violation the checkers found.

An expected output that differs per algorithm is split into sections headed ``~ raft`` and
``~ paxos``. ``SCENARIO_REWRITE=1`` rewrites the expected outputs (review the diff).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus import quorum
from consensus.algorithms import get_algorithm
from consensus.check.invariants import Checker
from consensus.messages import ClientReply, ClientRequest, Command, Message, NodeId
from consensus.node import Config, Node, Status
from consensus.paxos.messages import Ballot, Promise
from consensus.paxos.node import PaxosNode
from consensus.raft.node import RaftNode

# -- deliberately broken variants: the checkers must catch them --------------------------


class UnsafeRaftNode(RaftNode):
    """Broken Raft: commits entries from earlier terms by counting replicas (Figure 8)."""

    def advance_commit_index(self) -> bool:
        matches = [self.log.last_index] + [p.match for p in self.progress.values()]
        n = quorum.committed_index(matches, len(self.peers))
        if n > self.commit_index:
            self.set_commit(n)
            return True
        return False


class ForgetfulLeader(PaxosNode):
    """Broken Multi-Paxos: a new leader ignores the values its promisers report (P2c), so it
    proposes fresh commands over values that may already be chosen."""

    def handle_promise(self, msg: Promise) -> None:
        super().handle_promise(dataclasses.replace(msg, accepted=(), chosen=(), commit_index=0))


class OverclaimingAcceptor(PaxosNode):
    """Broken Multi-Paxos: its cumulative acknowledgement claims slots it never accepted, so
    a leader counts votes no acceptor made durable."""

    def accepted_through(self, ballot: Ballot, leader_commit: int) -> int:
        super().accepted_through(ballot, leader_commit)
        return leader_commit + 3


VARIANTS: dict[str, type[Node]] = {
    "unsafe-commit": UnsafeRaftNode,
    "forgetful-leader": ForgetfulLeader,
    "overclaiming-acceptor": OverclaimingAcceptor,
}


class ScenarioError(Exception):
    """A scenario command that cannot be run as written."""


# -- the driver ----------------------------------------------------------------------------

Drop = Callable[[Message], bool]
_LOOP_LIMIT = 200_000  # messages or timer firings in one command: a livelock, not a scenario


@dataclass
class Driver:
    """One cluster of one algorithm, driven by hand. ``out`` collects what a command prints."""

    algorithm: str
    seed: int = 0
    ids: tuple[NodeId, ...] = ()
    config: Config = field(default_factory=Config)
    node_class: type[Node] | None = None  # set by cluster()
    checker: Checker = field(default_factory=Checker)
    now: float = 0.0
    nodes: dict[NodeId, Node | None] = field(default_factory=dict)
    storage: dict[NodeId, list] = field(default_factory=dict)
    lives: dict[NodeId, int] = field(default_factory=dict)
    queue: deque[Message] = field(default_factory=deque)
    paused: dict[NodeId, list[Message]] = field(default_factory=dict)
    blocked: set[tuple[NodeId, NodeId]] = field(default_factory=set)
    roles: dict[NodeId, Status] = field(default_factory=dict)
    applied: dict[NodeId, list[Command]] = field(default_factory=dict)
    requests: dict[tuple[str, int], Command] = field(default_factory=dict)
    last_request: dict[str, ClientRequest] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)
    reported: int = 0  # violations already printed
    # What a command applied, grouped: command -> nodes, in order of first application.
    applied_now: dict[Command, list[NodeId]] = field(default_factory=dict)

    # -- commands ------------------------------------------------------------------------

    def cluster(self, nodes: int = 3, seed: int = 0, timeout: str = "150..300",
                heartbeat: float = 50.0, pre_vote: bool = True, check_quorum: bool = True,
                max_batch: int = 64, max_inflight: int = 8, variant: str = "",
                election: str = "") -> None:
        """A fresh cluster n1..n<nodes>. ``timeout`` is the election timeout range in ms
        (one number: fixed); ``variant`` names a broken node class (see VARIANTS);
        ``election`` is Config.election (empty: the algorithm's own)."""
        lo, _, hi = timeout.partition("..")
        algo = get_algorithm(self.algorithm)
        self.seed = seed
        self.ids = tuple(f"n{i}" for i in range(1, nodes + 1))
        self.config = Config(heartbeat_ms=heartbeat,
                             election_timeout_ms=(float(lo), float(hi or lo)),
                             pre_vote=pre_vote, check_quorum=check_quorum,
                             max_batch=max_batch, max_inflight=max_inflight,
                             election=election or None)
        if variant:
            cls = VARIANTS.get(variant)
            if cls is None or not issubclass(cls, algo.node_class):
                raise ScenarioError(f"no variant {variant!r} of {self.algorithm}")
        self.node_class = VARIANTS[variant] if variant else algo.node_class
        self.checker = algo.checker_class()
        self.now = 0.0
        self.storage = {i: [] for i in self.ids}
        self.lives = dict.fromkeys(self.ids, 0)
        self.nodes, self.queue, self.paused, self.blocked = {}, deque(), {}, set()
        self.roles, self.requests, self.last_request, self.reported = {}, {}, {}, 0
        self.applied = {i: [] for i in self.ids}
        for nid in self.ids:
            self._start(nid)

    def campaign(self, nid: NodeId) -> None:
        node = self._node(nid)
        node.tick(self.now)
        node.campaign()  # type: ignore[attr-defined]
        self._drain(node)

    def deliver(self, drop: Drop | None = None, dup: float = 0.0, once: bool = False,
                rng: random.Random | None = None) -> None:
        """Deliver queued messages in FIFO order until none is left (``once``: only those
        queued now), each twice with probability ``dup`` (a duplicating network)."""
        budget = len(self.queue) if once else _LOOP_LIMIT
        rng = rng or random.Random(f"{self.seed}/network/{self.now}")
        while self.queue:
            if budget <= 0:
                if once:
                    return
                raise ScenarioError("the network never went quiet (a livelock?)")
            budget -= 1
            msg = self.queue.popleft()
            if (msg.src, msg.dst) in self.blocked or (drop is not None and drop(msg)):
                continue
            self._step(msg)
            if dup >= 1 or (dup > 0 and rng.random() < dup):
                self._step(msg)

    def advance(self, ms: float, deliver: bool, drop: Drop | None = None,
                loss: float = 0.0, dup: float = 0.0) -> None:
        """Let ``ms`` pass: fire each node's timers at their deadlines, in time order; with
        ``deliver``, the network carries every message at once (zero latency), losing or
        duplicating each with the given probabilities (seeded)."""
        rng = random.Random(f"{self.seed}/network/{self.now}")

        def lossy(msg: Message) -> bool:
            return (drop is not None and drop(msg)) or (loss > 0 and rng.random() < loss)

        end = self.now + ms
        for _ in range(_LOOP_LIMIT):
            if deliver:
                self.deliver(lossy, dup, rng=rng)
            live = [n for n in self._live() if n.id not in self.paused]
            due = min((n.next_deadline() for n in live), default=float("inf"))
            if due > end:
                self.now = end
                return
            self.now = max(self.now, due)
            for node in live:
                if node.next_deadline() <= self.now:
                    node.tick(self.now)
                    self._drain(node)
        raise ScenarioError("timers kept firing without time passing")

    def propose(self, nid: NodeId, text: str, client: str = "c1") -> None:
        seq = 1 + max((s for c, s in self.requests if c == client), default=0)
        req = ClientRequest(src=client, dst=nid, seq=seq, command=text)
        self.requests[(client, seq)] = req.as_command()
        self.last_request[client] = req
        self._step(req)

    def retry(self, client: str, nid: NodeId) -> None:
        req = dataclasses.replace(self.last_request[client], dst=nid)
        self._step(req)

    def crash(self, nid: NodeId) -> None:
        self._node(nid)
        self.nodes[nid] = None
        self.paused.pop(nid, None)
        self.roles.pop(nid, None)
        self.applied[nid] = []
        self.checker.on_crash(self.now, nid)

    def restart(self, nid: NodeId) -> None:
        if self.nodes.get(nid) is not None:
            raise ScenarioError(f"{nid} is not down")
        self.lives[nid] += 1
        self._start(nid)

    def pause(self, nid: NodeId) -> None:
        """Like SIGSTOP: the node keeps its state but hears nothing and its timers stop."""
        self._node(nid)
        self.paused.setdefault(nid, [])

    def resume(self, nid: NodeId) -> None:
        held = self.paused.pop(nid, [])
        node = self._node(nid)
        node.tick(self.now)
        self._drain(node)
        for msg in held:
            self._step(msg)

    def partition(self, groups: Sequence[Sequence[NodeId]]) -> None:
        where = {n: i for i, g in enumerate(groups) for n in g}
        self.blocked = {(a, b) for a in self.ids for b in self.ids
                        if a != b and where.get(a, -1) != where.get(b, -2)}

    def cut(self, src: Sequence[NodeId], dst: Sequence[NodeId]) -> None:
        self.blocked |= {(a, b) for a in src for b in dst if a != b}

    def heal(self) -> None:
        self.blocked = set()

    def finish(self) -> None:
        """The end-of-run checks (every acknowledged write is in the final state)."""
        self.checker.finish(self.now, dict(self.nodes))

    # -- what a command prints ---------------------------------------------------------------

    def show_status(self) -> list[str]:
        lines = []
        for nid in self.ids:
            node = self.nodes.get(nid)
            if node is None:
                lines.append(f"{nid} down")
                continue
            st = node.status()
            leader = f" leader={st.leader}" if st.leader and st.role != "leader" else ""
            paused = " (paused)" if nid in self.paused else ""
            lines.append(f"{nid} {st.role} term={st.term}{leader}{paused}")
        return lines

    def show_kv(self) -> list[str]:
        return [f"{nid} " + (" ".join(f"{k}={v}" for k, v in sorted(node.kv.data.items()))
                             or "(empty)") if node is not None else f"{nid} down"
                for nid, node in ((i, self.nodes.get(i)) for i in self.ids)]

    def show_applied(self) -> list[str]:
        """Each node's applied client commands (no-ops left out: only Raft makes one for
        every election)."""
        return [f"{nid} " + (", ".join(c.text for c in self.applied[nid]) or "(nothing)")
                for nid in self.ids]

    def flush(self) -> list[str]:
        """The events since the last flush: applications, then any new violation."""
        lines = self.out
        for command, nids in self.applied_now.items():
            lines.append(f"{' '.join(nids)} applied {command.client_id}#{command.seq} "
                         f"{command.text}")
        for v in self.checker.violations[self.reported:]:
            lines.append(f"VIOLATION {v}")
        self.reported = len(self.checker.violations)
        self.out, self.applied_now = [], {}
        return lines

    # -- plumbing ------------------------------------------------------------------------

    def _live(self) -> list[Node]:
        return [n for n in (self.nodes.get(i) for i in self.ids) if n is not None]

    def _node(self, nid: NodeId) -> Node:
        node = self.nodes.get(nid)
        if node is None:
            raise ScenarioError(f"{nid} is down" if nid in self.ids else f"no node {nid}")
        return node

    def _start(self, nid: NodeId) -> None:
        assert self.node_class is not None
        rng = random.Random(f"{self.seed}/{nid}/{self.lives[nid]}")
        node = self.node_class(nid, self.ids, self.config, rng)
        node.tick(self.now)
        if self.storage[nid]:
            node.restore(list(self.storage[nid]))
        self.nodes[nid] = node
        self._drain(node)

    def _step(self, msg: Message) -> None:
        node = self.nodes.get(msg.dst)
        if node is None:
            return
        if msg.dst in self.paused:
            self.paused[msg.dst].append(msg)
            return
        node.tick(self.now)
        node.step(msg)
        self._drain(node)

    def _drain(self, node: Node) -> None:
        """Persist, queue the messages, answer clients, record, then let the checker look."""
        ready = node.ready()
        nid = node.id
        self.storage[nid].extend(ready.persist)
        self.queue.extend(ready.early)
        self.queue.extend(ready.messages)
        for reply in ready.replies:
            self._reply(reply)
        for a in ready.applied:
            if a.command is not None:
                self.applied[nid].append(a.command)
                self.applied_now.setdefault(a.command, []).append(nid)
        status = node.status()
        before = self.roles.get(nid)
        if status.role == "leader" and (before is None or before.role != "leader"
                                        or before.term != status.term):
            self.out.append(f"{nid} is leader in term {status.term}")
        elif before is not None and before.role == "leader" and status.role != "leader":
            self.out.append(f"{nid} is no longer leader: {status.role} in term {status.term}")
        self.roles[nid] = status
        self.checker.after_ready(self.now, node, ready, status)

    def _reply(self, reply: ClientReply) -> None:
        what = {"ok": f"ok {reply.result}", "error": f"error: {reply.result}",
                "redirect": f"redirect to {reply.leader or 'nobody'}"}[reply.status.value]
        self.out.append(f"{reply.dst}#{reply.seq} <- {reply.src}: {what}")
        command = self.requests.get((reply.dst, reply.seq))
        if command is not None:
                self.checker.on_client_reply(self.now, reply, command)


# -- scenario files ------------------------------------------------------------------------

_RULE = re.compile(r"^(?:(\w+):)?([\w*]+)->([\w*,]+)(?:@term>(\d+))?$")


def parse_drop(spec: str) -> Drop:
    """``n1->n3,n4`` (every message from n1 to n3 or n4), several joined by ``;``, ``*`` for
    any node; a ``Kind:`` prefix limits a rule to that message kind (``Accept:n1->*``), and an
    ``@term>N`` suffix to messages carrying a log entry of a term above N (Raft's Figure 8)."""
    rules = []
    for part in spec.split(";"):
        m = _RULE.match(part)
        if m is None:
            raise ScenarioError(f"bad drop rule {part!r} "
                                "(expected [Kind:]src->dst[,dst...][@term>N])")
        rules.append((m[1], m[2], set(m[3].split(",")), None if m[4] is None else int(m[4])))

    def matches(msg: Message, kind: str | None, src: str, dsts: set[str],
                above: int | None) -> bool:
        return ((kind is None or msg.kind == kind) and src in ("*", msg.src)
                and ("*" in dsts or msg.dst in dsts)
                and (above is None or any(e.term > above for e in getattr(msg, "entries", ()))))

    def drop(msg: Message) -> bool:
        return any(matches(msg, *rule) for rule in rules)
    return drop


def _options(words: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith("="):
        key, _, value = words.pop(0).partition("=")
        opts[key] = value
    return opts, words


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ScenarioError(f"expected true or false, got {value!r}")
    return value == "true"


def run_command(d: Driver, line: str) -> list[str]:
    """Run one command line; return what it prints."""
    verb, *words = line.split()
    if verb == "cluster":
        opts, rest = _options(words)
        if rest:
            raise ScenarioError(f"unexpected {rest}")
        kw: dict[str, object] = {}
        for key, value in opts.items():
            if key in ("pre_vote", "check_quorum"):
                kw[key] = _flag(value)
            elif key in ("nodes", "seed", "max_batch", "max_inflight"):
                kw[key] = int(value)
            elif key == "heartbeat":
                kw[key] = float(value)
            elif key in ("timeout", "variant", "election"):
                kw[key] = value
            else:
                raise ScenarioError(f"unknown cluster option {key!r}")
        d.cluster(**kw)  # type: ignore[arg-type]
    elif verb == "campaign":
        for nid in words:
            d.campaign(nid)
    elif verb == "deliver":
        flags = {w for w in words if "=" not in w}
        opts, _ = _options([w for w in words if "=" in w])
        if flags - {"dup", "once"} or set(opts) - {"drop"}:
            raise ScenarioError(f"deliver takes drop=..., dup and once, not {words}")
        d.deliver(parse_drop(opts["drop"]) if "drop" in opts else None,
                  dup=1.0 if "dup" in flags else 0.0, once="once" in flags)
    elif verb in ("tick", "run"):
        opts, rest = _options(words[1:])
        if set(opts) - {"drop", "loss", "dup"} or rest:
            raise ScenarioError(f"{verb} <ms> [drop=...] [loss=p] [dup=p], not {words}")
        d.advance(float(words[0]), deliver=verb == "run",
                  drop=parse_drop(opts["drop"]) if "drop" in opts else None,
                  loss=float(opts.get("loss", 0)), dup=float(opts.get("dup", 0)))
    elif verb == "propose":
        nid, *rest = words
        opts, text = _options(rest)
        d.propose(nid, " ".join(text), client=opts.get("client", "c1"))
    elif verb == "retry":
        d.retry(words[0], words[1])
    elif verb in ("crash", "restart", "pause", "resume"):
        for nid in words:
            getattr(d, verb)(nid)
    elif verb == "partition":
        d.partition([g.split(",") for g in " ".join(words).replace(" ", "").split("|")])
    elif verb == "cut":
        src, _, dst = " ".join(words).replace(" ", "").partition("->")
        d.cut(src.split(","), dst.split(","))
    elif verb == "heal":
        d.heal()
    elif verb == "status":
        return d.flush() + d.show_status()
    elif verb == "kv":
        return d.flush() + d.show_kv()
    elif verb == "applied":
        return d.flush() + d.show_applied()
    elif verb == "check":
        d.finish()
        lines = d.flush()
        found = sorted({v.check for v in d.checker.violations})
        return lines + ([f"{len(d.checker.violations)} violations: {', '.join(found)}"]
                        if found else ["no violations"])
    else:
        raise ScenarioError(f"unknown command {verb!r}")
    return d.flush()


@dataclass
class Block:
    comments: list[str]  # lines before the command: comments and blank lines
    command: str
    expected: dict[str, list[str]]  # algorithm (or "" for all) -> lines
    line: int


def parse_file(text: str) -> tuple[list[Block], list[str]]:
    """The blocks of a scenario file, and the lines after the last one."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            if line.strip():  # blank lines are layout: render puts one after each block
                pending.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ScenarioError(f"line {i + 1}: {line!r} is not followed by ----")
        start, i = i + 1, i + 2
        expected: dict[str, list[str]] = {"": []}
        section = ""
        while i < len(lines) and lines[i].strip():
            if lines[i].startswith("~ "):
                section = lines[i][2:].strip()
                expected[section] = []
            else:
                expected[section].append(lines[i])
            i += 1
        if len(expected) > 1 and expected[""]:
            raise ScenarioError(f"line {start}: output before the first ~ section")
        if len(expected) > 1:
            del expected[""]
        blocks.append(Block(pending, line, expected, start))
        pending = []
    return blocks, pending


def run_file(path: Path, algorithm: str) -> list[list[str]]:
    """Run every command of a scenario file; the output of each."""
    blocks, _ = parse_file(path.read_text(encoding="utf-8"))
    d = Driver(algorithm)
    outputs = []
    for b in blocks:
        try:
            outputs.append(run_command(d, b.command))
        except ScenarioError as exc:
            raise ScenarioError(f"{path}:{b.line}: {b.command}: {exc}") from None
    return outputs


def expected_for(block: Block, algorithm: str) -> list[str] | None:
    if "" in block.expected:
        return block.expected[""]
    return block.expected.get(algorithm)


def render(path: Path, outputs: dict[str, list[list[str]]]) -> str:
    """The file with every expected output replaced by the one given (per algorithm)."""
    blocks, tail = parse_file(path.read_text(encoding="utf-8"))
    lines: list[str] = []
    for i, b in enumerate(blocks):
        lines += b.comments
        lines += [b.command, "----"]
        per = {alg: outs[i] for alg, outs in outputs.items()}
        if len({tuple(v) for v in per.values()}) == 1:
            lines += next(iter(per.values()))
        else:
            for alg, out in per.items():
                lines += [f"~ {alg}", *out]
        lines.append("")
    lines += tail
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n"
