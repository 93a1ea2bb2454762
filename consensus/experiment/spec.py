"""Experiment files: YAML validated by pydantic, every error naming its field and line.

An experiment says what to run (algorithms, transport, seeds, cluster size, timing, network
model, workload) and a timed fault schedule; the runner replays it on each algorithm with the
same seeds. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from consensus import variants
from consensus.experiment.nemesis import ROLE_TOKENS, is_role_token, links_text
from consensus.node import Config

# a node id, or leader | crashed | paused | random | random-minority | followers, or a role
# token: follower1..followerK | most-lagging
Target = str
FAULT_ACTIONS = ("crash", "restart", "pause", "resume", "partition", "isolate", "cut", "links",
                 "heal", "loss", "delay", "duplicate", "clock", "add", "remove", "replace",
                 "transfer")
# Membership changes (issue 13): an operator asks the leader, as ``consensus-lab cluster add``
# does on the bus; targets that are role tokens are resolved when the change is asked for.
MEMBERSHIP_ACTIONS = ("add", "remove", "replace", "transfer")
NODE_ID = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"  # a new node's id: safe in MQTT topics and paths
PARTITION_SHAPES = ("majorities-ring", "bridge", "random-halves")


class LocatedErrors(ValueError):
    """Problems a whole-spec validator found, each at its own field: ``[(loc, message)]``.

    Pydantic places a model validator's error at the model itself ("(top level)"); this
    carries each problem's real path (``faults[2].crash``) so :func:`parse_spec` can name the
    field and its line.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_where(loc)}: {msg}" for loc, msg in problems))


def _where(loc: tuple[str | int, ...]) -> str:
    text = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc)
    return text.replace(".[", "[") or "(top level)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Strict):
    distribution: Literal["uniform", "constant", "exponential"] = "uniform"
    min: Annotated[float, Field(ge=0)] = 1.0
    max: Annotated[float, Field(ge=0)] = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> Latency:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class NetworkSpec(_Strict):
    latency_ms: Latency = Latency()
    loss: Annotated[float, Field(ge=0, le=1)] = 0.0
    duplicate: Annotated[float, Field(ge=0, le=1)] = 0.0


class TimingSpec(_Strict):
    heartbeat_ms: Annotated[float, Field(gt=0)] = 50.0
    election_timeout_ms: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (
        150.0, 300.0)
    pre_vote: bool = True
    check_quorum: bool = True
    max_batch: Annotated[int, Field(ge=1)] = 64
    max_inflight: Annotated[int, Field(ge=1)] = 8
    # How GETs are answered: through the log, after a heartbeat round, or under a lease.
    read_path: Literal["log", "read_index", "lease"] = "log"
    lease_drift: Annotated[float, Field(ge=0, lt=10)] = 0.1  # the lease's drift assumption
    # Simulator only: nodes whose clock runs at another rate ({n1: 0.5}: half as fast), to
    # break the lease's drift assumption on purpose.
    clock_drift: dict[str, Annotated[float, Field(gt=0, le=1000)]] = {}

    @field_validator("election_timeout_ms")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"the minimum {v[0]} is above the maximum {v[1]}")
        return v

    def config(self) -> Config:
        return Config(heartbeat_ms=self.heartbeat_ms, election_timeout_ms=self.election_timeout_ms,
                      max_batch=self.max_batch, max_inflight=self.max_inflight,
                      pre_vote=self.pre_vote, check_quorum=self.check_quorum,
                      read_path=self.read_path, lease_drift=self.lease_drift)

    @model_validator(mode="after")
    def _lease_needs_check_quorum(self) -> TimingSpec:
        if self.read_path == "lease" and not self.check_quorum:
            raise ValueError("read_path 'lease' needs check_quorum: true (followers must ignore "
                             "campaigns while they hear a leader, or the lease is unsafe)")
        return self


class ProcessingSpec(_Strict):
    """Simulated CPU time per inbound message (sim only; off by default)."""

    per_message_ms: Annotated[float, Field(ge=0)] = 0.0
    per_entry_ms: Annotated[float, Field(ge=0)] = 0.0


class MembershipSpec(_Strict):
    """How membership changes are made (issue 13). ``change``: Raft's joint consensus
    (C_old,new then C_new) or single-server steps; Multi-Paxos ignores it and puts each new
    configuration in a slot, in force ``alpha`` slots later (which also caps its pipeline)."""

    change: Literal["joint", "single"] = "joint"
    alpha: Annotated[int, Field(ge=1, le=1_000_000)] = 128


class CompactionSpec(_Strict):
    """Log compaction (issue 13): snapshot after ``snapshot_entries`` applied entries beyond
    the last snapshot (0: never), sent to a lagging or new node in ``snapshot_chunk_bytes``
    chunks."""

    snapshot_entries: Annotated[int, Field(ge=0)] = 0
    snapshot_chunk_bytes: Annotated[int, Field(ge=1)] = 64 * 1024


class ClusterSpec(_Strict):
    nodes: Annotated[int, Field(ge=1, le=15)] = 5
    processing: ProcessingSpec = ProcessingSpec()

    @property
    def ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]


class WorkloadSpec(_Strict):
    clients: Annotated[int, Field(ge=1, le=1000)] = 4
    rate: Annotated[float, Field(gt=0)] | None = None  # total ops/s (open loop); None: closed
    think_ms: Annotated[float, Field(ge=0)] = 0.0  # closed loop: pause between operations
    duration_s: Annotated[float, Field(gt=0)] = 10.0
    read_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5
    keys: Annotated[int, Field(ge=1)] = 10
    key_distribution: Literal["uniform", "zipfian", "hotspot"] = "uniform"
    request_timeout_ms: Annotated[float, Field(gt=0)] = 1000.0


class CutSpec(_Strict):
    from_: Annotated[list[str], Field(alias="from", min_length=1)]
    to: Annotated[list[str], Field(min_length=1)]


Link = list[str]  # [a, b]: two node ids or role tokens


class ReplaceSpec(_Strict):
    """``replace: {remove: n2, add: n7}``: start n7 empty and swap it in for n2 (a node id
    or a role token) in one change."""

    remove: Target
    add: Annotated[str, Field(pattern=NODE_ID)]


class LinksSpec(_Strict):
    """Links to cut, added to those already cut: ``cut`` pairs both ways, ``one_way`` pairs
    from the first node to the second only."""

    cut: list[Link] | None = None
    one_way: list[Link] | None = None

    @field_validator("cut", "one_way")
    @classmethod
    def _pairs(cls, v: list[Link] | None) -> list[Link] | None:
        for pair in v or []:
            if len(pair) != 2:
                raise ValueError(f"each link is a pair [a, b] of two nodes, not {pair}")
            if pair[0] == pair[1]:
                raise ValueError(f"a link joins two different nodes, not {pair}")
        return v

    @model_validator(mode="after")
    def _some(self) -> LinksSpec:
        if not self.cut and not self.one_way:
            raise ValueError("links needs 'cut' and/or 'one_way', each a list of pairs [a, b]")
        return self

    def names(self) -> list[str]:
        return [n for pair in (*(self.cut or []), *(self.one_way or [])) for n in pair]


class FaultSpec(_Strict):
    """One timed fault; exactly one action key besides ``at`` (and ``duration`` for windows)."""

    at: Annotated[float, Field(ge=0)]
    crash: Target | None = None
    restart: Target | None = None
    pause: Target | None = None
    resume: Target | None = None
    isolate: Target | None = None
    partition: list[list[str]] | str | None = None
    cut: CutSpec | None = None
    links: LinksSpec | None = None
    heal: Literal[True] | None = None
    loss: Annotated[float, Field(ge=0, le=1)] | None = None
    delay: Annotated[float, Field(ge=0)] | None = None  # extra ms on every message
    duplicate: Annotated[float, Field(ge=0, le=1)] | None = None
    duration: Annotated[float, Field(gt=0)] | None = None  # seconds, for loss/delay/duplicate
    # Simulator only: from now on the target's clock runs at ``rate`` (0.1: ten times slower).
    clock: Target | None = None
    rate: Annotated[float, Field(gt=0, le=1000)] | None = None
    # Membership changes: a new node's id; a node or role token; both; a node or role token.
    add: Annotated[str, Field(pattern=NODE_ID)] | None = None
    remove: Target | None = None
    replace: ReplaceSpec | None = None
    transfer: Target | None = None

    @model_validator(mode="after")
    def _one_action(self) -> FaultSpec:
        present = [a for a in FAULT_ACTIONS if getattr(self, a) is not None]
        if len(present) != 1:
            raise ValueError(f"a fault needs exactly one of {', '.join(FAULT_ACTIONS)} "
                             f"(found {', '.join(present) or 'none'})")
        action = present[0]
        if action in ("loss", "delay", "duplicate") and self.duration is None:
            raise ValueError(f"'{action}' needs a 'duration' in seconds")
        if action not in ("loss", "delay", "duplicate") and self.duration is not None:
            raise ValueError("'duration' only applies to loss, delay and duplicate")
        if (action == "clock") != (self.rate is not None):
            raise ValueError("'clock' needs a 'rate' (how fast the node's clock runs: 1 is "
                             "true time), and 'rate' only applies to clock")
        if isinstance(self.partition, str) and self.partition not in PARTITION_SHAPES:
            raise ValueError(f"partition must be a list of groups or one of "
                             f"{', '.join(PARTITION_SHAPES)}, not {self.partition!r}")
        return self

    @property
    def action(self) -> str:
        return next(a for a in FAULT_ACTIONS if getattr(self, a) is not None)

    def describe(self) -> str:
        value = getattr(self, self.action)
        if self.action == "heal":
            text = "heal"
        elif self.action == "cut":
            text = f"cut {','.join(self.cut.from_)} -> {','.join(self.cut.to)}"  # type: ignore[union-attr]
        elif self.links is not None:
            text = "links" + links_text([(a, b) for a, b in self.links.cut or []],
                                        [(a, b) for a, b in self.links.one_way or []])
        elif self.action == "partition" and isinstance(value, list):
            text = "partition " + " | ".join(",".join(g) for g in value)
        elif self.action == "clock":
            text = f"clock {value} rate {self.rate:g}"
        elif self.replace is not None:
            text = f"replace {self.replace.remove} {self.replace.add}"
        else:
            text = f"{self.action} {value}"
        if self.duration:
            text += f" for {self.duration:g}s"
        return f"T={self.at:g}s {text}"


class MqttSpec(_Strict):
    broker: str | None = None  # URL; None: start one (see prefer)
    prefer: Literal["auto", "mosquitto", "amqtt"] = "auto"  # auto: mosquitto if installed
    library: Literal["gmqtt", "aiomqtt"] = "gmqtt"
    fsync: bool = True
    # Each run's own broker speaks TLS only, with a client certificate per user (consensus.tls).
    tls: bool = False

    @model_validator(mode="after")
    def _tls_needs_own_broker(self) -> MqttSpec:
        if self.tls and self.broker is not None:
            raise ValueError("tls: true needs each run's own broker (it makes the certificates); "
                             "leave broker unset")
        return self


class ExperimentSpec(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    description: str = ""
    algorithms: Annotated[list[Literal["raft", "paxos"]], Field(min_length=1)] = ["raft", "paxos"]
    transport: Literal["sim", "mqtt"] = "sim"
    seeds: Annotated[list[int], Field(min_length=1)] = [1]
    cluster: ClusterSpec = ClusterSpec()
    timing: TimingSpec = TimingSpec()
    network: NetworkSpec = NetworkSpec()
    workload: WorkloadSpec = WorkloadSpec()
    faults: list[FaultSpec] = []
    # Issue 13's knobs; left out, the defaults (joint, alpha 128, no compaction) and the
    # spec's hash stay what they were before the sections existed.
    membership: MembershipSpec | None = None
    compaction: CompactionSpec | None = None
    settle_s: Annotated[float, Field(ge=0)] = 3.0  # quiet time after healing, before checks
    mqtt: MqttSpec = MqttSpec()
    # Offered rates (total ops/s) for a load sweep: the experiment runs once per rate.
    load_sweep: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2)] | None = None
    # Design choices switched for every algorithm (consensus/variants.py): Config field names
    # -> values, e.g. {pre_vote: false, check_quorum: false, election: any}.
    variant: dict[str, Any] = {}

    @field_validator("variant")
    @classmethod
    def _variant_offered(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Each value parsed to its Config field's type and offered by every listed
        algorithm; a switch that is also a timing knob (pre_vote, check_quorum) is set in
        one place only. Every problem is reported, each at its own key."""
        timing = info.data.get("timing")
        set_in_timing = timing.model_fields_set if timing is not None else set()
        out: dict[str, Any] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for key, value in v.items():
            try:
                out[key] = variants.coerce(key, value)
                for algorithm in info.data.get("algorithms", []):
                    variants.check(algorithm, {key: out[key]})
            except variants.VariantError as exc:
                problems.append(((key,), str(exc)))
                continue
            if key in set_in_timing:
                problems.append(((key,), f"{key} is set under timing too; set it in one "
                                         f"place (variant:)"))
        if problems:
            raise LocatedErrors(problems)
        return out

    @property
    def run_count(self) -> int:
        """How many runs the experiment makes: every algorithm on every seed, at every rate
        of a load sweep."""
        return len(self.algorithms) * len(self.seeds) * len(self.load_sweep or [None])

    def config(self, algorithm: str) -> Config:
        """The node configuration for ``algorithm``: the timing, membership and compaction
        sections, with the variant applied."""
        config = self.timing.config()
        if self.membership is not None:
            config = dataclasses.replace(config, membership_change=self.membership.change,
                                         alpha=self.membership.alpha)
        if self.compaction is not None:
            config = dataclasses.replace(
                config, snapshot_entries=self.compaction.snapshot_entries,
                snapshot_chunk_bytes=self.compaction.snapshot_chunk_bytes)
        return variants.apply(config, algorithm, self.variant)

    @property
    def all_ids(self) -> list[str]:
        """Every node the run will have: the cluster's, then each one a fault adds."""
        added = [f.add if f.add is not None else f.replace.add  # type: ignore[union-attr]
                 for f in self.faults if f.add is not None or f.replace is not None]
        return [*self.cluster.ids, *added]

    @model_validator(mode="after")
    def _nodes_exist(self) -> ExperimentSpec:
        """Every node a fault names exists when it fires. Faults are checked in the order they
        fire, so the cluster's ids grow as ``add``/``replace`` faults add nodes (a removed
        node keeps its id: it may still be crashed, and no new node may reuse it)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        known = list(self.cluster.ids)
        for i, f in sorted(enumerate(self.faults), key=lambda p: (p[1].at, p[0])):
            problems += _unknown_nodes(i, f, known)
            new = f.add if f.add is not None else f.replace.add if f.replace else None
            if new is not None:
                if new in known or new in _SPECIALS or is_role_token(new, len(known) + 1):
                    field = ("add",) if f.add is not None else ("replace", "add")
                    problems.append((("faults", i, *field),
                                     f"{new} must be a new node id (the cluster has "
                                     f"{', '.join(known)} by then)"))
                else:
                    known.append(new)
            if f.at >= self.workload.duration_s:
                problems.append((("faults", i, "at"),
                                 f"{f.at:g}s is not before the end of the workload "
                                 f"({self.workload.duration_s:g}s)"))
            if f.clock is not None and self.transport != "sim":
                problems.append((("faults", i, "clock"),
                                 "clock drift is simulated: it needs transport: sim"))
        ids = set(self.cluster.ids)
        unknown = sorted(set(self.timing.clock_drift) - ids)
        if unknown:
            problems.append((("timing", "clock_drift"),
                             f"names {', '.join(unknown)}, but the cluster has "
                             f"{', '.join(sorted(ids))}"))
        if self.timing.clock_drift and self.transport != "sim":
            problems.append((("timing", "clock_drift"),
                             "clock drift is simulated: it needs transport: sim"))
        if problems:
            raise LocatedErrors(sorted(problems, key=lambda p: _order(p[0])))
        return self


_SPECIALS = frozenset({"leader", "crashed", "paused", "random", "random-minority", "followers"})
# What a membership change may name as its target: a change needs one node, and only a live
# one can be swapped out or handed the lead.
_CHANGE_TARGETS = frozenset({"leader", "random"})


def _order(loc: tuple[str | int, ...]) -> tuple[str, int]:
    """Faults in file order, then the other sections (each fault's own problems in the
    order they were found: the sort is stable)."""
    return (str(loc[0]), loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1)


def _unknown_nodes(i: int, f: FaultSpec, known: list[str]) -> list[
        tuple[tuple[str | int, ...], str]]:
    """Problems with the nodes fault ``i`` names, given the ids the cluster has by then."""
    ids = set(known)
    nodes = len(known)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    named: list[str] = []
    for action in ("crash", "restart", "pause", "resume", "isolate", "clock"):
        target = getattr(f, action)
        if target is not None and target not in _SPECIALS and not is_role_token(target, nodes):
            named.append(target)
    if f.links is not None:
        bad = sorted({n for n in f.links.names() if n not in ids and not is_role_token(n, nodes)})
        if bad:
            problems.append((("faults", i, "links"),
                             f"names {', '.join(bad)}, but the cluster has "
                             f"{', '.join(sorted(ids))} and the role tokens are "
                             f"{', '.join(ROLE_TOKENS)} (K = {nodes - 1} here)"))
    if isinstance(f.partition, list):
        named += [n for g in f.partition for n in g]
    if f.cut is not None:
        named += f.cut.from_ + f.cut.to
    unknown = sorted(set(named) - ids)
    if unknown:
        problems.append((("faults", i, f.action),
                         f"names {', '.join(unknown)}, but the cluster has "
                         f"{', '.join(sorted(ids))} (targets may also be "
                         f"{', '.join(sorted(_SPECIALS))}, or a role token: "
                         f"{', '.join(ROLE_TOKENS)})"))
    for field, target in (("remove", f.remove), ("transfer", f.transfer),
                          ("replace", f.replace.remove if f.replace else None)):
        if target is None or target in ids or target in _CHANGE_TARGETS or is_role_token(
                target, nodes):
            continue
        loc: tuple[str | int, ...] = ("faults", i, field)
        problems.append(((*loc, "remove") if field == "replace" else loc,
                         f"names {target}, but the cluster has {', '.join(known)} by then "
                         f"(a change may also name {', '.join(sorted(_CHANGE_TARGETS))} or a "
                         f"role token: {', '.join(ROLE_TOKENS)})"))
    return problems


def with_variant(spec: ExperimentSpec, override: variants.Variant) -> ExperimentSpec:
    """``spec`` with ``override``'s switches on top of its ``variant:`` (the command line's
    ``--variant``, which also wins over the same knob under ``timing:``); raises
    :class:`~consensus.variants.VariantError` naming an algorithm that does not offer one."""
    for algorithm in spec.algorithms:
        variants.check(algorithm, override)
    data = spec.model_dump(by_alias=True, exclude_unset=True)
    timing = data.get("timing", {})
    for key in override:
        timing.pop(key, None)
    data["variant"] = variants.merge(spec.variant, override)
    return ExperimentSpec.model_validate(data)


class SpecError(ValueError):
    """A spec that does not validate; ``errors`` lists each problem with its field and line."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}"
                                                                           for e in errors))


def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map every key path in a YAML document to its (1-based) line."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            for p, line in _lines(value, sub).items():
                out.setdefault(p, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, (*path, i)))
    return out


def _line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    path = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def parse_spec(text: str, source: str = "<spec>") -> ExperimentSpec:
    """Validate a YAML experiment; raise :class:`SpecError` listing every problem at once."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SpecError(source, ["the file must be a YAML mapping (name: ..., algorithms: ...)"])
    lines = _lines(root) if root is not None else {}
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key (not part of an experiment spec)"
            cause = e.get("ctx", {}).get("error")
            located = cause.problems if isinstance(cause, LocatedErrors) else [((), msg)]
            for sub, text in located:
                full = (*loc, *sub)
                line = _line_of(lines, full)
                errors.append(f"{_where(full)} (line {line}): {text}" if line
                              else f"{_where(full)}: {text}")
        raise SpecError(source, errors) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_spec(text, str(path))
