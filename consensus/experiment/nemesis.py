"""Fault schedules: timed crashes, restarts, pauses, partitions, cuts and lossy windows.

A schedule is a list of :class:`Fault` s fixed in advance from a seed, so both algorithms face
the same one. Targets that only mean something at the moment (``leader``, ``crashed``,
``paused``) are resolved then, in each algorithm's own cluster, by the same rule.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.messages import NodeId

if TYPE_CHECKING:
    from consensus.sim import Simulation


@dataclass(frozen=True, slots=True)
class Fault:
    at_ms: float
    action: str  # crash restart pause resume partition cut heal loss delay duplicate
    target: str | None = None  # a node id, or leader | crashed | paused
    groups: tuple[tuple[NodeId, ...], ...] = ()  # partition groups; cut: (from, to)
    amount: float = 0.0  # loss/duplicate probability, or extra delay in ms
    duration_ms: float = 0.0  # for loss/delay/duplicate windows

    def describe(self) -> str:
        what = self.action
        if self.target:
            what += f" {self.target}"
        if self.action == "partition":
            what += " " + " | ".join(",".join(g) for g in self.groups)
        if self.action == "cut":
            what += f" {','.join(self.groups[0])} -> {','.join(self.groups[1])}"
        if self.action in ("loss", "duplicate"):
            what += f" {self.amount:.0%} for {self.duration_ms / 1000:.1f}s"
        if self.action == "delay":
            what += f" +{self.amount:.0f}ms for {self.duration_ms / 1000:.1f}s"
        return f"T={self.at_ms / 1000:.1f}s {what}"


@dataclass(slots=True)
class _Model:
    """What the planner knows of the cluster: how many nodes it has taken down."""

    down: int = 0
    paused: int = 0
    split: bool = False
    crashed_order: list[str] = field(default_factory=list)


def random_schedule(ids: Sequence[NodeId], duration_ms: float, seed: int,
                    mean_gap_ms: float = 1500.0) -> list[Fault]:
    """A seeded schedule mixing every fault kind, never taking down more than a minority.

    Nodes down (crashed or paused) never exceed ``(n - 1) // 2``, so once the network heals a
    majority can always make progress; partitions and cuts may still leave no majority for a
    while, which is the point.
    """
    rng = random.Random(f"{seed}/faults")
    ids = sorted(ids)
    max_down = (len(ids) - 1) // 2
    model = _Model()
    out: list[Fault] = []
    t = rng.uniform(0.5, 1.5) * mean_gap_ms
    while t < duration_ms:
        choices = []
        if model.down + model.paused < max_down:
            choices += ["crash-leader", "crash-node", "pause-node"]
        if model.down:
            choices += ["restart", "restart"]
        if model.paused:
            choices += ["resume", "resume"]
        choices += ["heal", "heal"] if model.split else ["partition", "isolate", "cut"]
        choices += ["loss", "delay", "duplicate"]
        pick = rng.choice(choices)
        if pick == "crash-leader":
            out.append(Fault(t, "crash", "leader"))
            model.down += 1
        elif pick == "crash-node":
            out.append(Fault(t, "crash", rng.choice(ids)))
            model.down += 1
        elif pick == "pause-node":
            out.append(Fault(t, "pause", rng.choice(ids)))
            model.paused += 1
        elif pick == "restart":
            out.append(Fault(t, "restart", "crashed"))
            model.down -= 1
        elif pick == "resume":
            out.append(Fault(t, "resume", "paused"))
            model.paused -= 1
        elif pick == "heal":
            out.append(Fault(t, "heal"))
            model.split = False
        elif pick in ("partition", "isolate"):
            shuffled = list(ids)
            rng.shuffle(shuffled)
            k = 1 if pick == "isolate" else rng.randrange(1, len(ids))
            groups = (tuple(sorted(shuffled[:k])), tuple(sorted(shuffled[k:])))
            out.append(Fault(t, "partition", groups=groups))
            model.split = True
        elif pick == "cut":
            shuffled = list(ids)
            rng.shuffle(shuffled)
            k = rng.randrange(1, len(ids))
            out.append(Fault(t, "cut", groups=(tuple(sorted(shuffled[:k])),
                                               tuple(sorted(shuffled[k:])))))
            model.split = True
        elif pick == "loss":
            out.append(Fault(t, "loss", amount=rng.uniform(0.05, 0.4),
                             duration_ms=rng.uniform(500, 2500)))
        elif pick == "delay":
            out.append(Fault(t, "delay", amount=rng.uniform(5, 60),
                             duration_ms=rng.uniform(500, 2500)))
        else:
            out.append(Fault(t, "duplicate", amount=rng.uniform(0.05, 0.3),
                             duration_ms=rng.uniform(500, 2500)))
        t += rng.uniform(0.3, 1.7) * mean_gap_ms
    return out


class Nemesis:
    """Applies a schedule to a simulation, resolving moment-bound targets as it goes."""

    def __init__(self, sim: Simulation, schedule: Sequence[Fault]) -> None:
        self.sim = sim
        self.schedule = list(schedule)
        self.crashed: list[NodeId] = []  # in crash order: "restart crashed" takes the oldest
        self.paused: list[NodeId] = []
        self.applied: list[tuple[float, str]] = []  # (time, what actually happened)
        self.window: dict[str, float | None] = {"loss": None, "duplicate": None, "delay": None}
        for fault in self.schedule:
            sim.at(fault.at_ms, lambda f=fault: self.apply(f))

    def resolve(self, target: str | None) -> NodeId | None:
        sim = self.sim
        if target == "leader":
            return sim.leader()
        if target == "crashed":
            return self.crashed[0] if self.crashed else None
        if target == "paused":
            return self.paused[0] if self.paused else None
        return target

    def apply(self, fault: Fault) -> None:
        sim = self.sim
        action = fault.action
        node = self.resolve(fault.target)
        done = fault.describe()
        if action == "crash" and node is not None and sim.nodes.get(node) is not None:
            sim.crash(node)
            self.crashed.append(node)
            if node in self.paused:
                self.paused.remove(node)
            done = f"crash {node}"
        elif action == "restart" and node is not None:
            sim.restart(node)
            self.crashed.remove(node)
            done = f"restart {node}"
        elif action == "pause" and node is not None and sim.nodes.get(node) is not None \
                and node not in self.paused:
            sim.pause(node)
            self.paused.append(node)
            done = f"pause {node}"
        elif action == "resume" and node is not None:
            sim.resume(node)
            self.paused.remove(node)
            done = f"resume {node}"
        elif action == "partition":
            sim.partition(fault.groups)
        elif action == "cut":
            sim.cut(fault.groups[0], fault.groups[1])
        elif action == "heal":
            sim.heal()
        elif action in ("loss", "duplicate", "delay"):
            self._set_window(action, fault.amount)
            sim.at(sim.now + fault.duration_ms, lambda a=action: self._set_window(a, None))
        else:
            done = f"skipped: {fault.describe()} (no such node now)"
        self.applied.append((sim.now, done))

    def _set_window(self, action: str, amount: float | None) -> None:
        """Start or end one window; overlapping windows of other kinds stay in force."""
        self.window[action] = amount
        self.sim.set_window(loss=self.window["loss"], duplicate=self.window["duplicate"],
                            delay=self.window["delay"] or 0.0)

    def heal_all(self) -> None:
        """End every fault: heal the network, resume and restart every node."""
        sim = self.sim
        sim.heal()
        self.window = dict.fromkeys(self.window)
        sim.set_window()
        for node in list(self.paused):
            sim.resume(node)
        for node in list(self.crashed):
            sim.restart(node)
        self.paused.clear()
        self.crashed.clear()
        self.applied.append((sim.now, "heal all, resume and restart every node"))
