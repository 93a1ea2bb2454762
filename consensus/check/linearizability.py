"""Per-key linearizability of a client history: Wing-Gong-Lowe search with memoisation.

Theory of operation
===================

A history is *linearizable* (Herlihy & Wing 1990) if every operation can be given a single
instant, its *linearization point*, somewhere between its invocation and its completion, such
that applying the operations one at a time in the order of those points to the sequential
key-value store (:mod:`consensus.kv`) produces exactly the results the clients saw.

Per key
-------
Every command touches exactly one key and the store's keys are independent registers, so a
history is linearizable iff its restriction to each key is (linearizability is *local*,
Herlihy & Wing 1990, Theorem 1; Horn & Kroening 2015 call this P-compositionality). We split
by key and check each key on its own, with a register model whose state is the key's value
(``str``, or ``None`` while absent). Malformed commands touch no key and are ignored.

What each outcome means
-----------------------
- ``ok``: took effect exactly once, at some instant in ``[invoke_ms, complete_ms]``, with the
  recorded result (GET's value, ``"OK"`` for SET/CAS, ``"1"``/``"0"`` for DEL).
- ``fail``: did not change the state. A failed CAS that the state machine *applied* (its reply
  reads ``CAS failed: x is 'v', not 'a'``) is still an observation: at its linearization point
  ``x`` held ``'v'``. We parse the reply and check it as a read of ``'v'`` (the stronger
  choice); if only the ``CAS failed`` prefix is recognisable we check ``x != a``. Every other
  failure (a failed read, a request rejected before it was applied) is dropped.
- ``info``: unknown. It may take effect at any instant after its invocation — even after the
  client gave up, since a retry may still be in flight — or never, and its result is unknown.
  An info GET observes nothing and is dropped.

The search (Wing & Gong 1993; Lowe 2017)
-----------------------------------------
Wing and Gong's algorithm walks the history as a list of call and return events and tries to
extend a partial linearization one operation at a time, backtracking when an operation's
return is reached before it could be linearized. Lowe ("Testing for linearizability", CCPE
2017) made it practical with two ideas we use:

1. *Memoisation.* The future of the search depends only on which operations have been
   linearized and on the model state, so a configuration (linearized set, state) that was
   already explored is never explored again. This turns the exponential tree into a graph no
   larger than the number of distinct configurations, which for real histories is close to
   linear in their length.
2. *Just-in-time linearization.* Nothing is linearized when it is invoked. Only when the return
   event of a not-yet-linearized operation ``o`` is reached must something happen: ``o`` has to
   be linearized now, possibly after some of the other *pending* operations (invoked, not yet
   linearized — including every info operation invoked so far). We try ``o`` alone first, then
   each pending operation ahead of it, depth first.

Concretely the search walks only the return events ``R_0 .. R_m-1`` in time order. For each
``R_j`` we precompute ``cands[j]``: ``o`` itself followed by every operation invoked at or
before ``R_j`` whose own return comes later (ties count as concurrent: intervals are closed),
and the info operations invoked so far, grouped into classes of interchangeable ones.
A configuration is ``(j, lin, state)`` where ``lin`` holds the operations linearized *ahead* of
their return; the operations that returned before ``R_j`` are all linearized, so this triple
identifies the linearized set exactly. ``lin`` is a bitmask over *slots*: each operation
occupies a slot from its call to its return, slots are reused, so the mask stays as small as the
concurrency (Lowe uses a bitset over all operations; ours is the same set, compressed). Info
operations that never return get slots of their own above all the others. The memo holds every
configuration at which a decision was taken.

Operations of unknown outcome
-----------------------------
Just-in-time linearization gives info operations their meaning for free: they have no return
event, so they are never *forced*; they are linearized only when some other operation's result
needs them, and an info operation that is never needed is simply "linearized at the very end",
which is the same as never. Their cost is that they stay pending for the rest of the history and
multiply the configurations. Two sound reductions, both relying on the workload's unique write
values (``SET k = c3-17``) and both exact (they exclude no valid linearization):

- An info write (SET, or CAS with new value ``v``) whose value is written by no other operation
  and which nothing observes (no GET of ``v``, no CAS expecting ``v``, no failed CAS that found
  ``v``) is dropped: moving it to the very end of any linearization changes no result. This is
  only done when the key has no ``DEL -> 1`` and no ``x != a`` check, the two observations that
  could depend on *some* value being present without naming it.
- If such a write *is* observed, it must be linearized before the first observer, hence before
  that observer returned. We give it that return time, so it becomes an ordinary operation and
  is forced in time like one. (If its invocation comes after that return, we leave it pending
  and the search reports the observer: a value read before it was written.)

On top of this, ``_search`` applies a few exact reductions (each skips an order only when an
order giving every operation the same result is explored instead): dominance between
configurations that differ only in info operations already used, refusing to overwrite a
value that can never come back while a pending read still needs it, delaying reads to just
before the next change of state, and trying info operations only where something can observe
them. Its docstring states each one and why it is sound; ``tests/test_linearizability.py``
cross-checks the whole against a brute-force search on thousands of small random histories.

Verdicts
--------
``ok`` when every key has a linearization, ``violation`` when some key has none (reported with
the first operation that no linearization of the history up to its completion can explain: the
search records the deepest return event it reached, and the prefix ending there is the smallest
failing prefix), and ``unknown`` when the shared time budget or the memo size limit ran out
first. An exhausted search never says ``ok``.
"""

from __future__ import annotations

import ast
import dataclasses
import heapq
import json
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from consensus.history import Operation
from consensus.kv import CommandError, parse

__all__ = [
    "HistoryError",
    "KeyResult",
    "LinearizabilityResult",
    "Violation",
    "check_history",
    "dump_history",
    "format_result",
    "load_history",
]

# Kinds of step on the register model (small ints: compared in the hot loop).
_READ = 0  # state must equal a; unchanged
_WRITE = 1  # state := a (SET's value, or None for an info DEL)
_CAS = 2  # state must equal a; state := b
_DEL1 = 3  # state must be present; state := None
_DEL0 = 4  # state must be absent; unchanged
_NOTEQ = 5  # state must differ from a; unchanged (a failed CAS whose reply we cannot parse)
_NEVER = 6  # a result the store never gives (e.g. DEL -> "7"): cannot be linearized

_INF = float("inf")
_MEMO_LIMIT = 3_000_000  # configurations per key before we give up (about 400 MB)
_CHECK_EVERY = 1024  # search iterations between two looks at the clock


class _Op:
    """One operation of one key, as the search sees it."""

    __slots__ = ("a", "b", "bit", "call", "forced_by", "index", "info", "kind", "ret", "src")

    def __init__(self, src: Operation, kind: int, a: str | None, b: str | None,
                 info: bool, call: float, ret: float) -> None:
        self.src = src
        self.kind = kind
        self.a = a
        self.b = b
        self.info = info  # unknown outcome: may take effect any time after `call`, or never
        self.call = call
        self.ret = ret  # _INF: never forced
        self.forced_by: _Op | None = None  # an info write given the return time of its reader
        self.bit = 0
        self.index = 0

    @property
    def written(self) -> str | None:
        """The value this operation may write (SET/CAS), else None."""
        if self.kind == _WRITE:
            return self.a
        if self.kind == _CAS:
            return self.b
        return None


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Violation:
    """A key with no linearization, and the operation that no order can explain."""

    key: str
    operation: Operation  # the first op whose result no linearization of the prefix allows
    explanation: str  # several lines, for a human
    involved: tuple[Operation, ...] = ()  # the operations the explanation mentions

    def __str__(self) -> str:
        return self.explanation


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key."""

    key: str
    verdict: str  # ok | violation | unknown
    reason: str | None = None  # for unknown: why


@dataclass(slots=True)
class LinearizabilityResult:
    """The outcome of :func:`check_history`.

    ``verdict`` is ``ok`` only when every key was searched to the end and linearized;
    ``violation`` when at least one key cannot be (even if others are unknown); otherwise
    ``unknown``.
    """

    verdict: str
    keys: dict[str, KeyResult]
    ops_total: int  # operations in the history
    ops_checked: int  # operations that took part in some key's search
    ops_dropped: int  # failed reads, rejected requests, info GETs, unobserved info writes
    ops_malformed: int  # commands that parse as nothing: they touch no key
    elapsed_s: float
    violations: list[Violation] = field(default_factory=list)
    reason: str | None = None  # for unknown: why

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def keys_checked(self) -> int:
        return sum(1 for r in self.keys.values() if r.verdict != "unknown")

    @property
    def per_key(self) -> dict[str, str]:
        """Key -> verdict."""
        return {k: r.verdict for k, r in self.keys.items()}

    @property
    def explanation(self) -> str:
        """Why it is not ``ok`` (empty when it is)."""
        if self.violations:
            return "\n\n".join(v.explanation for v in self.violations)
        return self.reason or ""

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "ops_total": self.ops_total,
            "ops_checked": self.ops_checked,
            "ops_dropped": self.ops_dropped,
            "ops_malformed": self.ops_malformed,
            "keys": len(self.keys),
            "keys_checked": self.keys_checked,
            "elapsed_s": round(self.elapsed_s, 4),
            "per_key": self.per_key,
            "violations": [{"key": v.key, "operation": v.operation.to_json(),
                            "explanation": v.explanation} for v in self.violations],
            "reason": self.reason,
        }


# ---------------------------------------------------------------------------------------------
# From operations to model steps


def _failed_cas_found(key: str, expected: str, result: str | None) -> tuple[bool, str | None]:
    """Parse ``CAS failed: x is 'v', not 'a'`` (kv.py's reply): ``(True, v)``, or ``(False, _)``.

    ``v`` is ``None`` for ``nil``. Only an exact match is trusted.
    """
    if result is None:
        return False, None
    head, tail = f"CAS failed: {key} is ", f", not {expected!r}"
    if not (result.startswith(head) and result.endswith(tail)):
        return False, None
    found = result[len(head):len(result) - len(tail)]
    if found == "nil":
        return True, None
    try:
        value = ast.literal_eval(found)
    except (ValueError, SyntaxError):
        return False, None
    return (True, value) if isinstance(value, str) and repr(value) == found else (False, None)


def _to_step(op: Operation) -> tuple[str, _Op] | str:
    """Classify one operation: ``(key, step)``, or ``"drop"`` / ``"malformed"``."""
    try:
        p = parse(op.command)
    except CommandError:
        return "malformed"
    outcome = op.outcome
    call = float(op.invoke_ms)
    done = _INF if op.complete_ms is None else float(op.complete_ms)
    if outcome not in ("ok", "fail", "info"):
        raise ValueError(f"{_label(op)}: unknown outcome {outcome!r} (expected ok, fail or info)")
    if outcome != "info" and done < call:
        raise ValueError(f"{_label(op)}: completes at {done} ms, before its invocation at "
                         f"{call} ms")
    if outcome == "ok":
        if p.name == "GET":
            return p.key, _Op(op, _READ, op.result, None, False, call, done)
        if p.name == "SET":
            return p.key, _Op(op, _WRITE, p.value, None, False, call, done)
        if p.name == "CAS":
            return p.key, _Op(op, _CAS, p.expected, p.value, False, call, done)
        kind = {"1": _DEL1, "0": _DEL0}.get(op.result or "", _NEVER)
        return p.key, _Op(op, kind, None, None, False, call, done)
    if outcome == "info":
        if p.name == "GET":
            return "drop"
        if p.name == "CAS":
            return p.key, _Op(op, _CAS, p.expected, p.value, True, call, _INF)
        return p.key, _Op(op, _WRITE, p.value if p.name == "SET" else None, None, True, call, _INF)
    # fail: only an applied, failed CAS tells us anything
    if p.name != "CAS" or op.complete_ms is None:
        return "drop"
    parsed, found = _failed_cas_found(p.key, p.expected or "", op.result)
    if parsed:
        return p.key, _Op(op, _READ, found, None, False, call, done)
    if op.result is not None and op.result.startswith("CAS failed"):
        return p.key, _Op(op, _NOTEQ, p.expected, None, False, call, done)
    return "drop"


def _reduce_info_writes(steps: list[_Op]) -> tuple[list[_Op], int]:
    """Drop unobserved unique info writes; give observed ones their reader's return time.

    See "Operations of unknown outcome" in the module docstring for why both are exact. An info
    CAS that is forced this way must succeed, so it observes its expected value in turn: both
    rules are applied until nothing changes.
    """
    if not any(s.info for s in steps):
        return steps, 0
    writers: dict[str | None, int] = {}
    needs: dict[str | None, list[_Op]] = {}  # value -> the operations that need it (any outcome)
    weak = False  # a DEL -> 1 or an x != a check observes "some value" without naming it
    for s in steps:
        if s.kind in (_WRITE, _CAS):
            writers[s.written] = writers.get(s.written, 0) + 1
        if s.kind in (_READ, _CAS):
            needs.setdefault(s.a, []).append(s)
        elif s.kind in (_DEL1, _NOTEQ):
            weak = True
    unique = [s for s in steps if s.info and s.kind in (_WRITE, _CAS)
              and s.written is not None and writers[s.written] == 1]
    changed = True
    while changed:  # force: the first reader that must take effect bounds the write's return
        changed = False
        for s in unique:
            musts = [o for o in needs.get(s.written, ()) if o is not s
                     and (not o.info or o.forced_by is not None)]
            if not musts:
                continue
            first = min(musts, key=lambda o: o.ret)
            if first.ret >= s.call and first.ret < s.ret:
                s.ret, s.forced_by = first.ret, first
                changed = True
    dropped: set[int] = set()
    changed = not weak
    while changed:  # drop: nothing still in the search needs the value
        changed = False
        for s in unique:
            if id(s) in dropped or s.forced_by is not None:
                continue
            if all(id(o) in dropped or o is s for o in needs.get(s.written, ())):
                dropped.add(id(s))
                changed = True
    kept = [s for s in steps if id(s) not in dropped]
    return kept, len(dropped)


# ---------------------------------------------------------------------------------------------
# The search


class _OutOfBudget(Exception):
    def __init__(self, reason: str, configurations: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.configurations = configurations


def _prepare(steps: list[_Op]) -> tuple[list[_Op], list[tuple[_Op, ...]],
                                        list[tuple[tuple[_Op, ...], ...]]]:
    """Number the operations, assign slots, and build the return events with their candidates.

    Returns the operations in the order of their returns (``rets``); for each return, the
    candidates of known outcome (``cands[j]``: the returning operation first, then every other
    operation invoked and not yet returned, in call order); and the pending info operations
    (``infos[j]``), grouped into classes of interchangeable ones (see ``_search``), each class in
    call order. Consecutive returns share the same ``infos`` tuple until another info operation
    is invoked.

    Events are ordered by time, calls before returns at the same instant (an operation invoked
    at the instant another returns counts as concurrent with it), then by the order of the
    history. Calls and returns are merged from two sorted lists.
    """
    steps.sort(key=attrgetter("call"))  # stable: ties keep the history's order
    for i, s in enumerate(steps):
        s.index = i
    rets = sorted((s for s in steps if s.ret != _INF), key=attrgetter("ret"))
    # Info ops with the same effect are interchangeable, and so are blind writes of values that
    # no operation reads, expects or compares with: only a DEL or a != check sees those, and
    # only as "some value".
    mentioned = {s.a for s in steps if s.kind in (_READ, _CAS, _NOTEQ)}
    classes: dict[tuple[int, str | None, str | None], list[_Op]] = {}
    info_now: tuple[tuple[_Op, ...], ...] = ()
    free: list[int] = []  # a heap of released slots
    next_slot = 0
    active: dict[int, _Op] = {}  # invoked, not returned: in call order
    cands: list[tuple[_Op, ...]] = []
    infos: list[tuple[tuple[_Op, ...], ...]] = []
    called, n = 0, len(steps)
    pending_info: list[_Op] = []
    for s in rets:
        t = s.ret
        while called < n and steps[called].call <= t:
            c = steps[called]
            called += 1
            if c.ret == _INF:
                anonymous = c.kind == _WRITE and c.a is not None and c.a not in mentioned
                effect = (_WRITE, "", None) if anonymous else (c.kind, c.a, c.b)
                classes.setdefault(effect, []).append(c)
                info_now = tuple(tuple(members) for members in classes.values())
                pending_info.append(c)
                continue
            if free:
                c.bit = 1 << heapq.heappop(free)
            else:
                c.bit = 1 << next_slot
                next_slot += 1
            active[c.index] = c
        del active[s.index]
        cands.append((s, *active.values()))
        infos.append(info_now)
        heapq.heappush(free, s.bit.bit_length() - 1)
    # Info ops get slots of their own, never reused: their bits stay set once linearized.
    for slot, c in enumerate(pending_info + steps[called:], next_slot):
        c.bit = 1 << slot
    return rets, cands, infos


def _first_unused(members: tuple[_Op, ...], lin: int) -> _Op | None:
    for q in members:
        if not lin & q.bit:
            return q
    return None


def _effect(p: _Op, state: str | None) -> tuple[bool, str | None]:
    """``(valid, new state)`` of linearizing ``p`` now."""
    kind = p.kind
    if kind == _READ:
        return state == p.a, state
    if kind == _WRITE:
        return True, p.a
    if kind == _CAS:
        return state == p.a, p.b
    if kind == _DEL1:
        return state is not None, None
    if kind == _DEL0:
        return state is None, None
    if kind == _NOTEQ:
        return state != p.a, state
    return False, state


def _observes(q: _Op, new: str | None) -> bool:
    """Does ``q``'s outcome depend on the state being ``new`` (not just on some value)?"""
    kind = q.kind
    if kind in (_READ, _CAS):
        return q.a == new
    if kind == _DEL1:
        return new is not None
    if kind == _DEL0:
        return new is None
    return kind == _NOTEQ and q.a != new


def _observed_next(cs: tuple[_Op, ...], classes: tuple[tuple[_Op, ...], ...], p: _Op,
                   new: str | None, lin: int) -> bool:
    """Could some pending operation observe the effect of info op ``p`` right after it?"""
    for q in cs:
        if not lin & q.bit and _observes(q, new):
            return True
    for members in classes:
        q = _first_unused(members, lin)
        if q is not None and q is not p and q.kind == _CAS and q.a == new:
            return True
    return False


def _may_precede_a_change(cs: tuple[_Op, ...], classes: tuple[tuple[_Op, ...], ...], at: int,
                          mode: int, lin: int, state: str | None, fragile: bool) -> bool:
    """May the state-preserving ``cs[at]`` be linearized ahead now (see ``_search``)?

    Only if some other candidate could then change the state, and, when ``state`` can never
    come back, only if no pending read of it was skipped earlier in this run (it could not be
    linearized before that change any more).
    """
    if fragile:
        for q in cs[max(mode, 1):at]:
            if q.kind == _READ and q.a == state and not lin & q.bit:
                return False
    for i, q in enumerate(cs):
        if i != at and not lin & q.bit:
            valid, new = _effect(q, state)
            if valid and new != state:
                return True
    for members in classes:
        q = _first_unused(members, lin)
        if q is not None:
            valid, new = _effect(q, state)
            if valid and new != state:
                return True
    return False


# (j, lin without info bits, state, mode): see _search
_Config = tuple[int, int, str | None, int]


def _search(rets: list[_Op], cands: list[tuple[_Op, ...]],
            infos: list[tuple[tuple[_Op, ...], ...]], steps: list[_Op], deadline: float,
            memo_limit: int) -> tuple[bool, int, dict[_Config, list[int]]]:
    """Depth-first search for a linearization; ``(found, deepest j, memo)``.

    Raises :class:`_OutOfBudget` when the clock passes ``deadline`` or the memo grows past
    ``memo_limit``. A frame ``(j, lin, state, k, mode)`` on the stack means: at return event
    ``j`` with ``lin`` linearized ahead and the register holding ``state``, the candidates from
    position ``k`` on are still to be tried. Positions ``0 .. len(cands[j]) - 1`` are operations
    of known outcome (0 is the returning one), the next ones the classes of ``infos[j]``, each
    tried through its earliest unused member.

    On top of Lowe's memo, some rules cut the orders explored. Each only skips an order when
    another one that gives every operation the same result is explored instead, so none can
    make a non-linearizable history pass or a linearizable one fail:

    - *Info dominance.* An info operation that is still pending constrains nothing (it has no
      return event), so a configuration dominates any other at the same ``j`` and ``state``
      whose ``lin`` has the same ordinary operations and *more* info operations. The memo maps
      ``(j, lin without info bits, state, mode)`` to the info masks seen, and a configuration
      is skipped if a seen mask is a subset of its own.
    - *Info operations.* An info operation is linearized ahead only if some pending operation
      could observe its effect right after it (reads its value, expects it in a CAS, a DEL or
      an ``x != a`` check whose answer it changes), and right after it a blind write (SET, or
      an info DEL) is not tried: that would erase its effect before anything observed it, and
      the same order without it is explored anyway. Among pending info operations with the
      same effect (two info ``DEL x``; or two info writes of values that nothing reads,
      expects or compares with, which only a DEL or an ``x != a`` check can tell apart from
      others) only the earliest unused one is tried: they are interchangeable. Without these
      rules a read that fails where a hundred info writes are pending tries every subset.
    - *Dead readers.* Overwriting a value that can arise only once (written by one operation;
      nil, if nothing deletes) means it never comes back, so a pending operation that still
      needs it (a read of it, a CAS expecting it) could never be linearized: such a change is
      refused at once, instead of discovering the dead end when that reader returns, perhaps
      thousands of operations later. With unique write values this makes a slow read that saw
      an old value cost nothing.
    - *Reads go as late as they can.* An operation that leaves the state unchanged (a read, a
      DEL of an absent key, ...) can always be moved later, up to its own return, past anything
      that does not change the state. So one is linearized ahead of its return only right before
      a state change: after it, the next operation must change the state, and a run of such
      operations is taken in candidate order only. Without this rule twenty concurrent reads
      and one impossible read try all 2^20 subsets.

    The last two rules are a ``mode`` that is part of the configuration: 0 (free), -1 (right
    after an info operation: no blind write), or ``i > 0`` (right after a state-preserving
    operation at candidate position ``i - 1``: the next must change the state, or preserve it
    from a position ``>= i``).
    """
    m = len(rets)
    info_bits = 0
    for s in steps:
        if s.ret == _INF:
            info_bits |= s.bit
    plain_bits = ~info_bits
    # Values that can arise only once (written by one operation; nil if nothing deletes), and
    # that some operation which must take effect needs.
    producers: dict[str | None, int] = {None: 1}  # the initial state
    for s in steps:
        if s.kind in (_WRITE, _CAS):
            producers[s.written] = producers.get(s.written, 0) + 1
        elif s.kind == _DEL1:
            producers[None] += 1
    fragile = {s.a for s in steps if s.kind in (_READ, _CAS) and s.ret != _INF
               and producers.get(s.a) == 1}
    memo: dict[_Config, list[int]] = {}
    stack: list[tuple[int, int, str | None, int, int]] = []
    j, lin, state = 0, 0, None
    deepest = 0
    k = 0
    mode = 0  # see the end of the docstring
    cs: tuple[_Op, ...] = ()
    classes: tuple[tuple[_Op, ...], ...] = ()
    resume = False
    iterations = 0
    clock = time.monotonic
    while True:
        iterations += 1
        if not iterations % _CHECK_EVERY:
            if clock() > deadline:
                raise _OutOfBudget("time budget exhausted", len(memo))
            if len(memo) > memo_limit:
                raise _OutOfBudget(f"more than {memo_limit:,} configurations", len(memo))
        if resume:
            if not stack:
                return False, deepest, memo
            j, lin, state, k, mode = stack.pop()
            resume = False
        else:
            # Skip the returns of operations already linearized ahead of their return.
            while j < m:
                bit = rets[j].bit
                if lin & bit:
                    lin ^= bit
                    j += 1
                else:
                    break
            if j == m:
                return True, deepest, memo
            if j > deepest:
                deepest = j
            cfg = (j, lin & plain_bits, state, mode)
            seen = memo.get(cfg)
            if seen is None:
                memo[cfg] = [lin & info_bits]
            else:
                mine = lin & info_bits
                if any(not (other & ~mine) for other in seen):
                    resume = True
                    continue
                seen.append(mine)
            k = 0
        cs = cands[j]
        classes = infos[j]
        n_known = len(cs)
        n = n_known + len(classes)
        while k < n:
            if k < n_known:
                p = cs[k]
                k += 1
                if lin & p.bit:
                    continue
            else:
                found = _first_unused(classes[k - n_known], lin)
                k += 1
                if found is None:
                    continue
                p = found
            kind = p.kind
            if kind == _READ:
                if state != p.a:
                    continue
                new = state
            elif kind == _WRITE:
                if mode < 0:
                    continue  # right after an info op: see the docstring
                new = p.a
            elif kind == _CAS:
                if state != p.a:
                    continue  # (an info CAS that fails is the same as one never applied)
                new = p.b
            elif kind == _DEL1:
                if state is None:
                    continue
                new = None
            elif kind == _DEL0:
                if state is not None:
                    continue
                new = None
            elif kind == _NOTEQ:
                if state == p.a:
                    continue
                new = state
            else:
                continue
            if new == state:
                if mode > 0 and k <= mode:
                    continue  # a state-preserving op where a state change must come next
                if k > 1 and not _may_precede_a_change(cs, classes, k - 1, mode, lin, state,
                                                       state in fragile):
                    continue
            elif state in fragile and any(
                    q.a == state and q is not p and q.kind <= _CAS and q.kind != _WRITE
                    and not lin & q.bit for q in cs):
                continue  # a dead reader: see the docstring
            if p.ret == _INF and not _observed_next(cs, classes, p, new, lin):
                continue  # an info op nothing could observe: see the docstring
            break
        else:
            resume = True
            continue
        if k < n:
            stack.append((j, lin, state, k, mode))
        if k == 1:  # cs[0] is the returning operation itself: its return is now passed
            j += 1
            mode = 0
        else:
            lin |= p.bit
            mode = k if new == state else -1 if p.ret == _INF else 0
        state = new


# ---------------------------------------------------------------------------------------------
# Explanations


def _t(ms: float | None) -> str:
    return "?" if ms is None or ms == _INF else f"{ms / 1000:.3f}s"


def _label(op: Operation) -> str:
    return f"{op.client}#{op.seq} {op.command}"


def _v(value: str | None) -> str:
    return "nil" if value is None else repr(value)


def _describe(op: Operation) -> str:
    """``c1#5 GET x -> 'v'  ok  T=1.000s..1.010s``."""
    head = _label(op)
    if op.outcome == "ok" and op.command.split(None, 1)[0].upper() in ("GET", "DEL"):
        head += f" -> {_v(op.result)}"
    elif op.outcome == "fail":
        head += f" -> {op.result}"
    return f"{head}  [{op.outcome}, T={_t(op.invoke_ms)}..{_t(op.complete_ms)}]"


def _what_it_needs(s: _Op, key: str) -> str:
    if s.kind == _READ and s.src.outcome == "fail":
        return f"its reply says {key} held {_v(s.a)}"
    return {
        _READ: f"it read {_v(s.a)}",
        _CAS: f"it succeeded, so the value must have been {_v(s.a)}",
        _DEL1: "it returned 1, so the key must have existed",
        _DEL0: "it returned 0, so the key must have been absent",
        _NOTEQ: f"it failed, so the value must not have been {_v(s.a)}",
        _NEVER: f"it returned {_v(s.src.result)}, which DEL never returns",
    }.get(s.kind, "it took effect")


def _wrap(text: str, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, 100, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False)


def _explain(key: str, steps: list[_Op], culprit: _Op, states: set[str | None],
             ops_before: int) -> Violation:
    """Say which operation cannot be explained, what the register could hold, and why."""
    src = culprit.src
    lines = [f"key {key!r}: not linearizable.", f"  {_describe(src)}"]
    lines += _wrap(
        f"cannot take effect: {_what_it_needs(culprit, key)}, but no order of the {ops_before} "
        f"operations on {key!r} invoked by T={_t(culprit.ret)} that respects real time and "
        "every other result allows that. Everything before this operation's return is "
        "linearizable, so this is the smallest failing prefix.")
    if states:
        shown = sorted(_v(s) for s in states)
        more = f" (and {len(shown) - 10} more)" if len(shown) > 10 else ""
        lines += _wrap(f"When it would have to take effect, {key!r} could only hold: "
                       f"{', '.join(shown[:10])}{more}.")
    involved: list[Operation] = [src]
    wanted = culprit.a if culprit.kind in (_READ, _CAS) else None
    if culprit.kind in (_READ, _CAS) and wanted is not None:
        writers = [s for s in steps if s.written == wanted and s is not culprit]
        if not writers:
            lines += _wrap(f"No operation ever wrote {_v(wanted)} to {key!r} (or any that did "
                           "failed, or was dropped as never observed).")
        for w in writers:
            involved.append(w.src)
            if w.call > culprit.ret:
                lines += _wrap(f"{_v(wanted)} was written only by {_describe(w.src)}, which "
                               "was invoked after this operation had already completed.")
                continue
            lines += _wrap(f"{_v(wanted)} was written by {_describe(w.src)}.")
            later = [s for s in steps if s.kind in (_WRITE, _CAS, _DEL1) and not s.info
                     and s.written != wanted and s.call > w.ret and s.ret < culprit.call]
            if later:
                o = max(later, key=lambda s: s.ret)
                involved.append(o.src)
                what = "deleted it" if o.kind == _DEL1 else f"wrote {_v(o.written)}"
                lines += _wrap(f"But {_describe(o.src)} {what}: it began after that write "
                               "had completed and completed before this operation began, so "
                               f"{_v(wanted)} was already overwritten (a stale read).")
    for s in steps:
        if s.forced_by is culprit:
            lines += _wrap(f"({_label(s.src)} has an unknown outcome; since this operation "
                           "observed its value it must have taken effect before it.)")
    # The neighbourhood: what overlapped it, and the last writes that finished before it.
    overlapping = [s for s in steps if s is not culprit and s.call <= culprit.ret
                   and s.ret >= culprit.call]
    before = sorted((s for s in steps if s.kind in (_WRITE, _CAS, _DEL1)
                     and s.ret < culprit.call), key=lambda s: s.ret, reverse=True)[:5]
    if overlapping:
        lines.append("  Concurrent with it (info operations stay concurrent for ever):")
        lines.extend(f"    {_describe(s.src)}" for s in overlapping[:12])
        if len(overlapping) > 12:
            lines.append(f"    ... and {len(overlapping) - 12} more")
    if before:
        lines.append("  The last writes that completed before it began (latest first):")
        lines.extend(f"    {_describe(s.src)}" for s in before)
    involved.extend(s.src for s in overlapping[:12])
    involved.extend(s.src for s in before)
    seen: set[int] = set()
    unique = tuple(o for o in involved if not (id(o) in seen or seen.add(id(o))))
    return Violation(key, src, "\n".join(lines), unique)


# ---------------------------------------------------------------------------------------------
# Entry points


def check_history(ops: Iterable[Operation], *, time_budget_s: float = 30.0,
                  memo_limit: int = _MEMO_LIMIT) -> LinearizabilityResult:
    """Check a client history for linearizability, key by key (see the module docstring).

    ``time_budget_s`` is shared by all keys; smaller keys are searched first, so a single
    pathological key cannot starve the others. Keys the budget does not reach are ``unknown``.
    """
    started = time.monotonic()
    deadline = started + time_budget_s
    by_key: dict[str, list[_Op]] = {}
    total = dropped = malformed = 0
    horizon = 0.0  # the last instant the history mentions
    unfinished: list[_Op] = []  # ok/fail ops without a completion time (a recorder bug)
    for op in ops:
        total += 1
        step = _to_step(op)
        if step == "malformed":
            malformed += 1
        elif step == "drop":
            dropped += 1
        else:
            key, s = step  # type: ignore[misc]
            by_key.setdefault(key, []).append(s)
            horizon = max(horizon, s.call, s.ret if s.ret != _INF else 0.0)
            if s.ret == _INF and not s.info:
                unfinished.append(s)
    for s in unfinished:  # it did take effect, with its result, at some point: say by the end
        s.ret = horizon + 1.0
    keys: dict[str, KeyResult] = {}
    violations: list[Violation] = []
    checked = 0
    reason: str | None = None
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        steps, gone = _reduce_info_writes(by_key[key])
        dropped += gone
        checked += len(steps)
        if time.monotonic() > deadline:
            reason = reason or f"time budget of {time_budget_s:g}s exhausted"
            keys[key] = KeyResult(key, "unknown", "not reached")
            continue
        rets, cands, infos = _prepare(steps)
        try:
            found, deepest, memo = _search(rets, cands, infos, steps, deadline, memo_limit)
        except _OutOfBudget as out:
            reason = reason or (f"key {key!r}: {out.reason} after {out.configurations:,} "
                                "configurations")
            keys[key] = KeyResult(key, "unknown", out.reason)
            continue
        if found:
            keys[key] = KeyResult(key, "ok")
            continue
        culprit = rets[deepest]
        states = {cfg[2] for cfg in memo if cfg[0] == deepest}
        ops_before = sum(1 for s in steps if s.call <= culprit.ret)
        violations.append(_explain(key, steps, culprit, states, ops_before))
        keys[key] = KeyResult(key, "violation")
    if violations:
        verdict = "violation"
    elif any(r.verdict == "unknown" for r in keys.values()):
        verdict = "unknown"
    else:
        verdict = "ok"
    ordered = {k: keys[k] for k in sorted(keys)}
    return LinearizabilityResult(verdict, ordered, total, checked, dropped, malformed,
                                 time.monotonic() - started, violations,
                                 reason if verdict == "unknown" else None)


def format_result(result: LinearizabilityResult) -> str:
    """A few lines for a terminal or a report."""
    counts = {v: sum(1 for r in result.keys.values() if r.verdict == v)
              for v in ("ok", "violation", "unknown")}
    head = {
        "ok": "linearizable",
        "violation": "NOT LINEARIZABLE",
        "unknown": "UNKNOWN (search incomplete: this is not a pass)",
    }[result.verdict]
    lines = [
        f"linearizability: {head}",
        f"  {result.ops_total} operations ({result.ops_checked} checked, {result.ops_dropped} "
        f"dropped, {result.ops_malformed} malformed) on {len(result.keys)} keys: "
        f"{counts['ok']} ok, {counts['violation']} violation, {counts['unknown']} unknown; "
        f"{result.elapsed_s:.2f}s",
    ]
    if result.verdict == "unknown" and result.reason:
        lines.append(f"  {result.reason}")
        unknown = [k for k, r in result.keys.items() if r.verdict == "unknown"]
        lines.append(f"  unknown keys: {', '.join(unknown[:20])}"
                     + (" ..." if len(unknown) > 20 else ""))
    for v in result.violations:
        lines.append("")
        lines.append(v.explanation)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# history.jsonl


class HistoryError(ValueError):
    """A history file that cannot be read; the message names the file and line."""


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "None": (type(None),),
}


def _field_types() -> tuple[dict[str, tuple[type, ...]], tuple[str, ...]]:
    """The JSON types each :class:`Operation` field accepts, and the fields without default.

    Read from the dataclass itself, so a field added there is accepted here.
    """
    types: dict[str, tuple[type, ...]] = {}
    required = []
    for f in dataclasses.fields(Operation):
        names = str(f.type).replace(" ", "").split("|")
        types[f.name] = tuple(t for n in names for t in _JSON_TYPES.get(n, (object,)))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return types, tuple(required)


_FIELDS, _REQUIRED = _field_types()
_REQUIRED = (*_REQUIRED, "outcome")  # it has a default, but a history must say it


def _operation_from(obj: Any) -> Operation:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} "
                         f"(expected {', '.join(_FIELDS)})")
    missing = [f for f in _REQUIRED if f not in obj]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for name, value in obj.items():
        types = _FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"field {name!r} must be {want}, got {value!r}")
    if obj["outcome"] not in ("ok", "fail", "info"):
        raise ValueError(f"outcome must be ok, fail or info, got {obj['outcome']!r}")
    complete = obj.get("complete_ms")
    if obj["outcome"] != "info" and complete is None:
        raise ValueError(f"complete_ms is required for outcome {obj['outcome']!r} "
                         "(only info operations may lack it)")
    if complete is not None and complete < obj["invoke_ms"]:
        raise ValueError(f"complete_ms {complete} is before invoke_ms {obj['invoke_ms']}")
    return Operation(**obj)


def load_history(path: str | Path) -> list[Operation]:
    """Read a ``history.jsonl``: one JSON object per line with the :class:`Operation` fields.

    Blank lines are skipped. Raises :class:`HistoryError` naming the line of the first problem.
    """
    path = Path(path)
    ops: list[Operation] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HistoryError(f"{path}:{lineno}: not valid JSON: {exc.msg} "
                                   f"(column {exc.colno})") from None
            try:
                ops.append(_operation_from(obj))
            except ValueError as exc:
                raise HistoryError(f"{path}:{lineno}: {exc}") from None
    return ops


def dump_history(ops: Sequence[Operation] | Iterable[Operation], path: str | Path) -> None:
    """Write ``ops`` as ``history.jsonl`` (the format :func:`load_history` reads)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for op in ops:
            f.write(json.dumps(op.to_json(), ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
