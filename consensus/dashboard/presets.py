"""The dashboard's presets: scripted scenarios a user starts with one click.

A preset is settings for a fresh start and a list of page commands at fixed times (ms). The
simulated backend resets both clusters with the settings and schedules each command at that
*simulated* time, so a scenario replays identically at any playback speed; the live (MQTT)
backend replays the presets real nodes can take (:attr:`Preset.live`) on the running clusters,
at those wall-clock ms after the click, with the clusters' own settings.

Besides the tutorial's quiz questions, four partial-connectivity scenarios (the experiment
files quorum-loss, constrained-election, chained and omission) cut links by role token
(``leader``, ``follower1``..), resolved in each cluster when the command runs, and two
membership questions: what happens when the operator removes the leader, and how a new node
catches up on a log that was compacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from consensus.node import Config
from consensus.sim import Network

# 20-40 ms links: long enough that a message's flight is visible in slow motion, short enough
# against the 150-300 ms election timeouts that elections behave as in a data centre.
DEFAULT_NETWORK = Network(latency_ms=(20.0, 40.0))


@dataclass(frozen=True, slots=True)
class Preset:
    """A scripted scenario: settings for a fresh start, then commands at simulated times."""

    name: str
    title: str
    explain: str
    config: Config = field(default_factory=Config)
    network: Network = DEFAULT_NETWORK
    steps: tuple[tuple[float, dict[str, Any]], ...] = ()
    nodes: int = 5

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "explain": self.explain}

    @property
    def live(self) -> bool:
        """Whether real node processes can replay it: only commands the live mode has."""
        return all(cmd["op"] in LIVE_OPS for _, cmd in self.steps)

    def settings(self) -> dict[str, Any]:
        """The settings it changes from the defaults (a live cluster keeps its own)."""
        default = Config()
        return {f.name: getattr(self.config, f.name) for f in fields(Config)
                if getattr(self.config, f.name) != getattr(default, f.name)}


# What a preset may ask of real nodes (the mqtt backend): no reset, timing or split vote there.
LIVE_OPS = frozenset({"request", "kill", "revive", "timeout", "partition", "isolate", "links",
                      "heal", "add_node", "remove", "transfer"})

# Multi-Paxos's alpha in the membership presets: small, so that the window between the slot
# that chooses a configuration and the first slot it governs fits in the log tail.
PRESET_ALPHA = 4
COMPACT_EVERY = 10  # snapshot_entries in the compacted-log preset


def _links(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"op": "links", "cut": [list(p) for p in pairs]}


# The links OmniPaxos's quorum-loss scenario cuts: all among the leader and followers 2..4.
_AMONG_ALL_BUT_F1 = (("leader", "follower2"), ("leader", "follower3"), ("leader", "follower4"),
                     ("follower2", "follower3"), ("follower2", "follower4"),
                     ("follower3", "follower4"))


def _writes(start: float, every: float, count: int) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple((start + i * every, {"op": "request"}) for i in range(count))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "quiz1", "Quiz 1: how many must be alive?",
        "5 nodes, a write every 300 ms. At 1.5 s n4 and n5 die: 3 of 5 is still a majority, so "
        "writes keep committing. At 2.7 s n3 dies too: 2 of 5 can neither commit nor elect a "
        "leader, and writes wait (commit index frozen) until n3 returns at 4.2 s.",
        steps=(*_writes(700, 300, 14),
               (1500, {"op": "kill", "node": "n4"}), (1500, {"op": "kill", "node": "n5"}),
               (2700, {"op": "kill", "node": "n3"}), (4200, {"op": "revive", "node": "n3"})),
    ),
    Preset(
        "quiz2", "Quiz 2: heartbeat 150 ms, timeout 200 ms",
        "A heartbeat every 150 ms reaches each follower before its 200 ms timer runs out: watch "
        "the timer arcs dip to about a quarter and refill. No election ever starts, but the "
        "margin is only 50 ms minus the network delay.",
        config=Config(heartbeat_ms=150.0, election_timeout_ms=(200.0, 200.0)),
        steps=((0, {"op": "timeout", "node": "n1"}), *_writes(1000, 700, 4)),
    ),
    Preset(
        "quiz3", "Quiz 3: fixed vs random timeouts",
        "Every node has the same fixed 200 ms timeout on an even network: all time out together, "
        "each votes for itself, and the Raft vote splits again and again. Paxos ballots are "
        "totally ordered, so the highest one wins at once. At 2 s the timeouts become random "
        "(150\u2013300 ms): one Raft node times out first and wins.",
        config=Config(election_timeout_ms=(200.0, 200.0)),
        network=Network(latency_ms=(30.0, 30.0), distribution="constant"),
        steps=((2000, {"op": "timing", "election_timeout_ms": [150, 300]}),),
    ),
    Preset(
        "quiz4", "Quiz 4: the stale leader",
        "At 1.2 s the leader is cut off. It does not know: it stays leader of its old term and "
        "takes a write it can never commit, while the others elect a leader in a newer term. At "
        "3 s the partition heals; the first message with the newer term makes the old leader "
        "step down, and its uncommitted entry is replaced. (CheckQuorum is off here.)",
        config=Config(check_quorum=False),
        steps=((800, {"op": "request"}), (1200, {"op": "isolate", "node": "leader"}),
               (1300, {"op": "request"}), (3000, {"op": "heal"}), (3400, {"op": "request"})),
    ),
    Preset(
        "split", "A split vote",
        "At 1.2 s the leader dies and three of the four survivors time out at the same instant "
        "(pre-vote is off): each votes for itself and nobody reaches 3 of 5. Raft waits a fresh "
        "random timeout and tries again in a newer term; in Multi-Paxos the highest ballot "
        "pre-empts the others (Nack).",
        config=Config(pre_vote=False),
        steps=((1200, {"op": "split_vote"}),),
    ),
    Preset(
        "quorum-loss", "Quorum loss: only follower1 reaches everyone",
        "At 1.5 s every link is cut except follower1's (OmniPaxos's quorum-loss scenario): the "
        "leader reaches only follower1, no longer a majority, and only follower1 can still "
        "gather one. Check-quorum makes the leader step down; then follower1 times out, wins "
        "and commits again through its four links. Healed at 4.5 s.",
        steps=(*_writes(700, 300, 14), (1500, _links(*_AMONG_ALL_BUT_F1)),
               (4500, {"op": "heal"})),
    ),
    Preset(
        "constrained", "Constrained election: only a stale node can lead",
        "At 1.5 s the leader loses its link to follower1, which falls behind on the writes. "
        "0.1 s later the leader is cut from everyone and followers 2-4 from each other: only "
        "the stale follower1 reaches a majority. Raft's voters refuse a candidate whose log is "
        "behind theirs, so Raft has no leader until the heal at 4.5 s; in Multi-Paxos "
        "follower1 leads and learns what it missed in Phase 1.",
        # A write lands between the two cuts, so follower1 is behind when it campaigns.
        steps=(*_writes(700, 300, 3), (1510, {"op": "request"}), *_writes(1800, 300, 12),
               (1500, _links(("leader", "follower1"))), (1600, _links(*_AMONG_ALL_BUT_F1)),
               (4500, {"op": "heal"})),
    ),
    Preset(
        "chained", "Chained: one cut link",
        "At 1.5 s only the link between the leader and follower1 is cut. follower1 hears no "
        "leader and campaigns; the others still hear the leader and (pre-vote and check-quorum "
        "are off here) grant it a newer term, so leadership can ping-pong between the two ends "
        "of the cut link. Healed at 4.5 s.",
        config=Config(pre_vote=False, check_quorum=False),
        steps=(*_writes(700, 300, 14), (1500, _links(("leader", "follower1"))),
               (4500, {"op": "heal"})),
    ),
    Preset(
        "omission", "Omission: no stable leader without pre-vote",
        "Howard & Abraham's example: the leader, follower1 and follower2 stay connected; "
        "follower3 keeps only its link to follower2 and follower4 only its link to the leader "
        "(cut at 1.5 s, healed at 5 s). Pre-vote and check-quorum are off: follower3 and "
        "follower4 keep timing out, and their newer terms depose each new leader in turn. The "
        "experiment file omission.yaml compares this with both switched on.",
        config=Config(pre_vote=False, check_quorum=False),
        steps=(*_writes(700, 300, 14),
               (1500, _links(("follower3", "leader"), ("follower3", "follower1"),
                             ("follower3", "follower4"), ("follower4", "follower1"),
                             ("follower4", "follower2"))),
               (5000, {"op": "heal"})),
    ),
    Preset(
        "remove-leader", "What happens if you remove the leader?",
        "5 nodes, a write every 300 ms. At 1.5 s the operator asks the leader to remove itself. "
        "Raft (joint consensus): the leader appends C_old,new, in force at once, so each entry "
        "needs a majority of the old five and of the new four; when it commits, the leader "
        "appends C_new, which it no longer belongs to, commits it without counting itself, then "
        "hands over: TimeoutNow to the most up-to-date remaining voter, which campaigns at once "
        "instead of waiting for an election timeout. Multi-Paxos has no joint step: the leader "
        "chooses the new configuration in a slot, and it governs slots from \u03b1 = "
        f"{PRESET_ALPHA} later, so the leader fills the window with no-ops; once they are "
        "chosen it hands over the same way, and the new leader runs Phase 1 among the four. "
        "Watch the configuration line under each cluster, the pink TimeoutNow dot and the event "
        "log; the removed node keeps running (faded) until you kill it.",
        config=Config(alpha=PRESET_ALPHA),
        steps=(*_writes(700, 300, 14), (1500, {"op": "remove", "node": "leader"})),
    ),
    Preset(
        "add-compacted", "How does a new node catch up on a compacted log?",
        f"Every node snapshots its key-value state each {COMPACT_EVERY} applied entries and "
        "drops the log before it (the snap index under each node's place in the "
        "configuration). 30 writes, one every 100 ms; at 3.8 s the operator adds a node. It "
        "starts empty, but the leader no longer holds the early entries: Raft sends it the "
        "snapshot (InstallSnapshot, in chunks) and Multi-Paxos its counterpart (Learn), the "
        "lime dots, and then the entries after it. The new node is a learner while it catches "
        "up (dashed ring) and becomes a voter once it has.",
        config=Config(snapshot_entries=COMPACT_EVERY, alpha=PRESET_ALPHA),
        steps=(*_writes(700, 100, 30), (3800, {"op": "add_node"}), *_writes(4000, 300, 4)),
    ),
)}
