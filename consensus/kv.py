"""The replicated key-value state machine both algorithms drive.

Commands are the tutorial's text commands::

    SET x = 100     -> OK
    GET x           -> 100 (or nil)
    DEL x           -> 1 if x existed, else 0
    CAS x 100 200   -> OK if x was 100 (x becomes 200), else an error naming what was found
    CONFIG voters=… -> the configuration (a membership change in the log, see membership.py;
                       it changes no key, and clients cannot send it)

Every command is applied through :meth:`KVStore.apply`, which is deterministic: the same
sequence of commands gives the same state and the same replies on every replica. A malformed
command is *applied* as a no-op with an error reply that says what is wrong, so every replica
agrees that it failed and a retry gets the same answer.

Exactly-once: the table of the last request applied per client (``sessions``) is part of the
replicated state. A retried ``(client_id, seq)`` gets the cached reply and changes nothing.

Snapshots (log compaction): :meth:`KVStore.snapshot` is the whole replicated state (data,
sessions, how many entries were applied) as canonical JSON bytes, the same on every replica
that applied the same prefix; :meth:`KVStore.from_snapshot` rebuilds a store from them, so a
node restored from a snapshot is indistinguishable from one that applied the entries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

from consensus.membership import CONFIG_VERB
from consensus.messages import Command, ReplyStatus

_KEY = r"[A-Za-z0-9_.:\-]+"
_SET = re.compile(rf"SET\s+({_KEY})\s*=\s*(\S(?:.*\S)?)\s*", re.IGNORECASE)
_GET = re.compile(rf"GET\s+({_KEY})\s*", re.IGNORECASE)
_DEL = re.compile(rf"DEL\s+({_KEY})\s*", re.IGNORECASE)
_CAS = re.compile(rf"CAS\s+({_KEY})\s+(\S+)\s+(\S+)\s*", re.IGNORECASE)
_USAGE = {
    "SET": "SET <key> = <value>",
    "GET": "GET <key>",
    "DEL": "DEL <key>",
    "CAS": "CAS <key> <expected> <new>",
    CONFIG_VERB: "CONFIG voters=<ids> [old=<ids>] [learners=<ids>]",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one command gave: the status and the reply text."""

    status: ReplyStatus
    result: str | None


@dataclass(frozen=True, slots=True)
class Op:
    """A parsed command."""

    name: str  # SET | GET | DEL | CAS | CONFIG
    key: str
    value: str | None = None  # SET's value, CAS's new value
    expected: str | None = None  # CAS's expected value


class CommandError(ValueError):
    """A command that cannot be parsed; the message says what is wrong."""


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Op:
    """Parse one command, raising :class:`CommandError` with a readable reason.

    Cached: every replica parses the same command text as it applies it (Op is frozen).
    """
    stripped = text.strip()
    if not stripped:
        raise CommandError("empty command (expected SET, GET, DEL or CAS)")
    verb = stripped.split(None, 1)[0].upper()
    if verb not in _USAGE:
        raise CommandError(f"unknown operation {verb!r} (expected SET, GET, DEL or CAS)")
    if verb == "SET" and (m := _SET.fullmatch(stripped)):
        return Op("SET", m[1], value=m[2])
    if verb == "GET" and (m := _GET.fullmatch(stripped)):
        return Op("GET", m[1])
    if verb == "DEL" and (m := _DEL.fullmatch(stripped)):
        return Op("DEL", m[1])
    if verb == "CAS" and (m := _CAS.fullmatch(stripped)):
        return Op("CAS", m[1], value=m[3], expected=m[2])
    if verb == CONFIG_VERB:
        return Op(CONFIG_VERB, "", value=stripped.split(None, 1)[1] if " " in stripped else "")
    raise CommandError(f"malformed {verb}: expected '{_USAGE[verb]}', got {stripped!r}")


class KVStore:
    """The state machine: a dict of strings plus the per-client deduplication table."""

    __slots__ = ("applied", "data", "sessions")

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        # client_id -> (last seq applied, its outcome). Replicated state: see module docstring.
        self.sessions: dict[str, tuple[int, Outcome]] = {}
        self.applied = 0  # commands and no-ops applied so far

    def apply(self, command: Command | None) -> Outcome | None:
        """Apply one committed log entry (``None`` is a no-op) and return its outcome."""
        self.applied += 1
        if command is None:
            return None
        last = self.sessions.get(command.client_id)
        if last is not None:
            last_seq, last_outcome = last
            if command.seq == last_seq:
                return last_outcome  # a retry of what was already applied: answer, change nothing
            if command.seq < last_seq:
                return Outcome(
                    ReplyStatus.ERROR,
                    f"stale request: seq {command.seq} is older than {last_seq}",
                )
        outcome = self._execute(command.text)
        self.sessions[command.client_id] = (command.seq, outcome)
        return outcome

    def _execute(self, text: str) -> Outcome:
        try:
            op = parse(text)
        except CommandError as exc:
            return Outcome(ReplyStatus.ERROR, str(exc))
        data = self.data
        if op.name == "SET":
            data[op.key] = op.value  # type: ignore[assignment]
            return Outcome(ReplyStatus.OK, "OK")
        if op.name == "GET":
            return Outcome(ReplyStatus.OK, data.get(op.key))
        if op.name == "DEL":
            return Outcome(ReplyStatus.OK, "1" if data.pop(op.key, None) is not None else "0")
        if op.name == CONFIG_VERB:
            return Outcome(ReplyStatus.OK, op.value)
        current = data.get(op.key)
        if current != op.expected:
            found = "nil" if current is None else repr(current)
            return Outcome(ReplyStatus.ERROR,
                           f"CAS failed: {op.key} is {found}, not {op.expected!r}")
        data[op.key] = op.value  # type: ignore[assignment]
        return Outcome(ReplyStatus.OK, "OK")

    def snapshot(self) -> bytes:
        """The whole replicated state as canonical JSON (see the module doc)."""
        return json.dumps({
            "applied": self.applied,
            "data": self.data,
            "sessions": {c: [seq, str(o.status), o.result]
                         for c, (seq, o) in self.sessions.items()},
        }, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_snapshot(cls, blob: bytes) -> KVStore:
        """A store holding exactly the state :meth:`snapshot` wrote; ValueError if malformed."""
        try:
            state = json.loads(blob)
            kv = cls()
            kv.applied = int(state["applied"])
            kv.data = {str(k): str(v) for k, v in state["data"].items()}
            kv.sessions = {str(c): (int(seq), Outcome(ReplyStatus(status),
                                                      None if result is None else str(result)))
                           for c, (seq, status, result) in state["sessions"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed key-value snapshot: {exc}") from exc
        return kv

    def digest(self) -> str:
        """A hash of the whole replicated state, equal on replicas that applied the same prefix."""
        h = hashlib.sha256()
        for key in sorted(self.data):
            h.update(f"{key}={self.data[key]}\n".encode())
        for client in sorted(self.sessions):
            seq, outcome = self.sessions[client]
            h.update(f"{client}#{seq}:{outcome.status}:{outcome.result}\n".encode())
        return h.hexdigest()
