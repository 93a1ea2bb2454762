"""The one place that turns messages and durable records into JSON and back, strictly.

Payloads are JSON objects readable in ``mosquitto_sub`` and in a browser, in the tutorial's
shape: an AppendEntries reads ``{"type": "AppendEntries", "leader_term": 3, "leader_id":
"n1", "prev_log_index": 41, "prev_log_term": 3, "entries": [[3, [{"text": "SET x = 100",
...}, ...]]], "leader_commit": 41, ...}``: its entries travel as runs of one term from
``prev_log_index + 1`` (a message class may have a separate *wire form*, see
:func:`register_wire_form`), so an entry's term and index are not repeated in each one.

Encoding and decoding are derived from each dataclass's type hints, so a new message type
needs only registering. Decoding validates everything: the payload must be a JSON object of a
known ``type``, with exactly the expected fields, each of exactly the expected JSON type (a
bool is not an int), no negative counts or indexes, consistent across fields (the class's
``validate()``), from a sender inside the cluster, for this cluster, under the size limit.
Anything else raises :class:`DecodeError` naming what was wrong, with a short ``reason`` to
count it by; it never produces a half-built message.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson

from consensus.messages import (
    ClientReply,
    ClientRequest,
    Command,
    ConfigChange,
    Message,
    NodeId,
    ReplyStatus,
    TimeoutNow,
)

T = TypeVar("T")

MAX_PAYLOAD = 1 << 20  # bytes; mosquitto.conf's message_size_limit matches

# Wire names that differ from field names, to match the tutorial's payloads.
_ALIASES: dict[str, dict[str, str]] = {
    "AppendEntries": {"term": "leader_term", "src": "leader_id"},
}
# Integer fields allowed below zero: (class name, field) -> minimum.
_MINIMUM: dict[tuple[str, str], int] = {("Ballot", "rank"): -1}
# Keys a payload may carry besides a class's fields: its kind, cluster and the cluster's
# incarnation (one `cluster up`). A class with a field of that name (a StatusReport's
# ``cluster``) does not get the key twice.
_ENVELOPE = ("type", "cluster", "incarnation")


class DecodeError(ValueError):
    """A payload that is not a valid message; ``reason`` is a short category for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Encoder = Callable[[Any], Any]
Decoder = Callable[[Any, str], Any]


def _int_decoder(minimum: int) -> Decoder:
    def dec(v: Any, where: str) -> int:
        if type(v) is not int:
            raise DecodeError("bad-field", f"{where} must be an integer, got {_show(v)}")
        if v < minimum:
            raise DecodeError("negative", f"{where} must be >= {minimum}, got {v}")
        return v
    return dec


def _exact(kind: type, label: str) -> Decoder:
    def dec(v: Any, where: str) -> Any:
        if type(v) is not kind:
            raise DecodeError("bad-field", f"{where} must be {label}, got {_show(v)}")
        return v
    return dec


def _float(v: Any, where: str) -> float:
    if type(v) not in (int, float):
        raise DecodeError("bad-field", f"{where} must be a number, got {_show(v)}")
    return float(v)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _identity(v: Any) -> Any:
    return v


def _plain_init(cls: type) -> bool:
    """True if ``cls(**fields)`` only stores its arguments: the ``__init__`` dataclasses
    generated (exec'd from a string, not written by hand), every field an init field, no
    ``__post_init__``. When unsure, False: the constructor is always correct, only slower."""
    code = getattr(cls.__dict__.get("__init__"), "__code__", None)
    return (dataclasses.is_dataclass(cls) and code is not None
            and code.co_filename == "<string>" and not hasattr(cls, "__post_init__")
            and all(f.init for f in dataclasses.fields(cls)))


class _Invalid(Exception):
    """Raised by the fast decoders: something is wrong; the strict decoder will say what."""


_INVALID = _Invalid()


class _Codec:
    """Per-type encoders/decoders built once from type hints."""

    def __init__(self) -> None:
        self.messages: dict[str, type] = {}
        self.records: dict[str, type] = {}
        self.structs: dict[str, type] = {}
        self._defaults: dict[type, dict[str, Any]] = {}
        self._structs: dict[type, tuple[Encoder, Decoder]] = {}
        self._fast: dict[type, Callable[[Any], Any]] = {}
        self._fields: dict[type, Callable[[Any], dict[str, Any]]] = {}
        self._envelopes: dict[type, Callable[[Any, str | None], dict[str, Any]]] = {}

    # -- building converters from type hints ------------------------------------------

    def converter(self, hint: Any, owner: str, name: str) -> tuple[Encoder, Decoder]:
        origin = typing.get_origin(hint)
        if hint is int:
            return _identity, _int_decoder(_MINIMUM.get((owner, name), 0))
        if hint is str:
            return _identity, _exact(str, "a string")
        if hint is bool:
            return _identity, _exact(bool, "true or false")
        if hint is float:
            return _identity, _float
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self._enum(hint)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(args) != len(typing.get_args(hint)) - 1 or len(args) != 1:
                raise TypeError(f"{owner}.{name}: only 'X | None' unions are supported")
            enc, dec = self.converter(args[0], owner, name)
            return ((lambda v: None if v is None else enc(v)),
                    (lambda v, where: None if v is None else dec(v, where)))
        if origin is tuple:
            args = typing.get_args(hint)
            if len(args) == 2 and args[1] is Ellipsis:
                enc, dec = self.converter(args[0], owner, name)
                return self._sequence(enc, dec)
            return self._fixed([self.converter(a, owner, name) for a in args])
        if origin is dict:
            key, value = typing.get_args(hint)
            if key is not str:
                raise TypeError(f"{owner}.{name}: only dict[str, X] is supported")
            enc, dec = self.converter(value, owner, name)
            return self._mapping(enc, dec)
        if dataclasses.is_dataclass(hint):
            return self.struct(hint)
        raise TypeError(f"{owner}.{name}: unsupported type {hint!r}")

    @staticmethod
    def _mapping(enc: Encoder, dec: Decoder) -> tuple[Encoder, Decoder]:
        def decode(v: Any, where: str) -> dict[str, Any]:
            if type(v) is not dict:
                raise DecodeError("bad-field", f"{where} must be an object, got {_show(v)}")
            return {k: dec(item, f"{where}.{k}") for k, item in v.items()}
        return (lambda v: {k: enc(item) for k, item in v.items()}), decode

    @staticmethod
    def _enum(cls: type[enum.Enum]) -> tuple[Encoder, Decoder]:
        values = {m.value: m for m in cls}

        def dec(v: Any, where: str) -> Any:
            try:
                return values[v]
            except (KeyError, TypeError):
                raise DecodeError("bad-field", f"{where} must be one of "
                                  f"{sorted(values)}, got {_show(v)}") from None
        return (lambda v: v.value), dec

    @staticmethod
    def _sequence(enc: Encoder, dec: Decoder) -> tuple[Encoder, Decoder]:
        def decode(v: Any, where: str) -> tuple:
            if type(v) is not list:
                raise DecodeError("bad-field", f"{where} must be a list, got {_show(v)}")
            return tuple(dec(item, f"{where}[{i}]") for i, item in enumerate(v))
        return (lambda v: [enc(item) for item in v]), decode

    @staticmethod
    def _fixed(items: list[tuple[Encoder, Decoder]]) -> tuple[Encoder, Decoder]:
        """``tuple[A, B]``: a JSON list of exactly that many items, each of its own type."""
        def decode(v: Any, where: str) -> tuple:
            if type(v) is not list or len(v) != len(items):
                raise DecodeError("bad-field",
                                  f"{where} must be a list of {len(items)}, got {_show(v)}")
            return tuple(dec(x, f"{where}[{i}]")
                         for i, (x, (_, dec)) in enumerate(zip(v, items, strict=True)))
        return (lambda v: [enc(x) for x, (enc, _) in zip(v, items, strict=True)]), decode

    def struct(self, cls: type) -> tuple[Encoder, Decoder]:
        """Encoder/decoder for a dataclass, as a JSON object of its init fields."""
        if cls in self._structs:
            return self._structs[cls]
        hints = typing.get_type_hints(cls)
        owner = cls.__name__
        aliases = _ALIASES.get(getattr(cls, "kind", owner), {})
        plan = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            enc, dec = self.converter(hints[f.name], owner, f.name)
            plan.append((f.name, aliases.get(f.name, f.name), enc, dec))
        expected = {wire for _, wire, _, _ in plan}
        envelope = set(_ENVELOPE) - expected
        # Cross-field rules a type cannot say (e.g. entries numbered from prev_log_index + 1)
        # live in the class's ``validate()``, checked on input from the wire only.
        validate = getattr(cls, "validate", None)

        def encode(obj: Any) -> dict[str, Any]:
            return {wire: enc(getattr(obj, name)) for name, wire, enc, _ in plan}

        def decode(data: Any, where: str) -> Any:
            if type(data) is not dict:
                raise DecodeError("bad-field", f"{where} must be an object, got {_show(data)}")
            missing = expected - data.keys()
            if missing:
                raise DecodeError("bad-field", f"{where} lacks {', '.join(sorted(missing))}")
            extra = data.keys() - expected - envelope
            if extra:
                raise DecodeError("bad-field",
                                  f"{where} has unknown fields {', '.join(sorted(extra))}")
            kwargs = {name: dec(data[wire], f"{where}.{wire}") for name, wire, _, dec in plan}
            try:
                obj = cls(**kwargs)
                if validate is not None:
                    validate(obj)
            except (TypeError, ValueError) as exc:
                raise DecodeError("bad-field", f"{where}: {exc}") from None
            return obj

        self._structs[cls] = (encode, decode)
        return encode, decode

    # -- the fast path ------------------------------------------------------------------
    # The decoders above say exactly what is wrong, which costs: a path string per field,
    # a set difference per object. The hot path instead runs decoders generated per class
    # (inline type checks, no strings) that only say *that* something is wrong; the strict
    # decoder then runs on that payload to say what. Both accept exactly the same inputs
    # (tests/test_codec.py checks them against each other on random payloads).

    def fast(self, hint: Any, owner: str = "", name: str = "") -> Callable[[Any], Any]:
        """A decoder for ``hint`` that raises :class:`_Invalid` on any bad input."""
        if dataclasses.is_dataclass(hint):
            return self.fast_struct(hint)  # type: ignore[arg-type]
        check, env = self._fast_check(hint, owner, name, "v", 0)
        src = "def f(v):\n" + "".join(f"    {line}\n" for line in check) + "    return v\n"
        exec(src, env)  # source built from type hints only
        return env["f"]

    def _fast_check(self, hint: Any, owner: str, name: str, var: str, depth: int
                    ) -> tuple[list[str], dict[str, Any]]:
        """Lines that check (and convert in place) the value in ``var``."""
        env: dict[str, Any] = {"_INVALID": _INVALID}
        origin = typing.get_origin(hint)
        if hint is int:
            minimum = _MINIMUM.get((owner, name), 0)
            return [f"if type({var}) is not int or {var} < {minimum}: raise _INVALID"], env
        if hint in (str, bool):
            return [f"if type({var}) is not {hint.__name__}: raise _INVALID"], env
        if hint is float:
            return [f"if type({var}) is int: {var} = float({var})",
                    f"elif type({var}) is not float: raise _INVALID"], env
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            table = f"_E{depth}_{name}"
            env[table] = {m.value: m for m in hint}
            return [f"try: {var} = {table}[{var}]",
                    "except (KeyError, TypeError): raise _INVALID from None"], env
        if origin in (typing.Union, types.UnionType):
            (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
            lines, env = self._fast_check(inner, owner, name, var, depth + 1)
            return [f"if {var} is not None:"] + [f"    {line}" for line in lines], env
        if origin is tuple:
            args = typing.get_args(hint)
            fn = f"_T{depth}_{name}"
            if len(args) == 2 and args[1] is Ellipsis:
                env[fn] = self.fast(args[0], owner, name)
                return [f"if type({var}) is not list: raise _INVALID",
                        f"{var} = tuple([{fn}(x) for x in {var}])"], env
            env[fn] = tuple(self.fast(a, owner, name) for a in args)
            items = ", ".join(f"{fn}[{i}]({var}[{i}])" for i in range(len(args)))
            return [f"if type({var}) is not list or len({var}) != {len(args)}: raise _INVALID",
                    f"{var} = ({items},)"], env
        if origin is dict:
            item = self.fast(typing.get_args(hint)[1], owner, name)
            fn = f"_D{depth}_{name}"
            env[fn] = item
            return [f"if type({var}) is not dict: raise _INVALID",
                    f"{var} = {{k: {fn}(x) for k, x in {var}.items()}}"], env
        if dataclasses.is_dataclass(hint):
            fn = f"_S{depth}_{name}"
            env[fn] = self.fast_struct(hint)  # type: ignore[arg-type]
            return [f"{var} = {fn}({var})"], env
        raise TypeError(f"{owner}.{name}: unsupported type {hint!r}")

    def fast_struct(self, cls: type) -> Callable[[Any], Any]:
        if cls in self._fast:
            return self._fast[cls]
        hints = typing.get_type_hints(cls)
        owner = cls.__name__
        aliases = _ALIASES.get(getattr(cls, "kind", owner), {})
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        wires = [aliases.get(n, n) for n in names]
        envelope = "".join(f" - ({k!r} in d)" for k in _ENVELOPE if k not in wires)
        env: dict[str, Any] = {"_INVALID": _INVALID, "_CLS": cls,
                               "_VALIDATE": getattr(cls, "validate", None)}
        body = ["if type(d) is not dict: raise _INVALID", "try:"]
        body += [f"    a{i} = d[{w!r}]" for i, w in enumerate(wires)]
        body += ["except KeyError: raise _INVALID from None",
                 f"if len(d) != {len(names)} and len(d){envelope} != {len(names)}: "
                 "raise _INVALID"]
        for i, n in enumerate(names):
            lines, more = self._fast_check(hints[n], owner, n, f"a{i}", 0)
            env.update(more)
            body += lines
        if _plain_init(cls):
            # What the generated frozen __init__ does, without its call and keyword
            # matching (a fifth of a small message's decode time, more with nested ones).
            env.update(_NEW=object.__new__, _SET=object.__setattr__)
            body += ["o = _NEW(_CLS)"] + [f"_SET(o, {n!r}, a{i})" for i, n in enumerate(names)]
        else:
            args = ", ".join(f"{n}=a{i}" for i, n in enumerate(names))
            body += ["try:", f"    o = _CLS({args})",
                     "except (TypeError, ValueError): raise _INVALID from None"]
        body += ["try:", "    if _VALIDATE is not None: _VALIDATE(o)",
                 "except (TypeError, ValueError): raise _INVALID from None", "return o"]
        src = "def f(d):\n" + "".join(f"    {line}\n" for line in body)
        exec(src, env)  # source built from type hints only
        self._fast[cls] = env["f"]
        return env["f"]

    def defaults(self, cls: type) -> dict[str, Any]:
        """Wire name -> the JSON form of its default, for the fields that have one (each
        decode builds fresh containers from it, so sharing one is safe)."""
        if cls in self._defaults:
            return self._defaults[cls]
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = orjson.loads(orjson.dumps(f.default))
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = orjson.loads(orjson.dumps(f.default_factory()))
        self._defaults[cls] = out
        return out

    def fields(self, cls: type) -> Callable[[Any], dict[str, Any]]:
        """``obj`` -> its wire fields, nested values left as they are: orjson serialises
        dataclasses (field order), tuples and enums (by value) natively, exactly as the
        strict encoders spell them out (tests/test_codec.py checks the bytes are equal)."""
        if cls in self._fields:
            return self._fields[cls]
        aliases = _ALIASES.get(getattr(cls, "kind", cls.__name__), {})
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        items = ", ".join(f"{aliases.get(n, n)!r}: o.{n}" for n in names)
        env: dict[str, Any] = {}
        exec(f"def f(o):\n    return {{{items}}}\n", env)
        self._fields[cls] = env["f"]
        return env["f"]

    def envelope(self, cls: type) -> Callable[[Any, str | None], dict[str, Any]]:
        """``(msg, cluster)`` -> ``{"type", "cluster" (unless None), fields...}`` in one
        dict display (what :meth:`fields` gives, plus the envelope, without a merge)."""
        if cls in self._envelopes:
            return self._envelopes[cls]
        aliases = _ALIASES.get(cls.kind, {})
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        items = ", ".join(f"{aliases.get(n, n)!r}: o.{n}" for n in names)
        head = f"'type': {cls.kind!r}"
        env: dict[str, Any] = {}
        exec(f"def f(o, c):\n    if c is None:\n        return {{{head}, {items}}}\n"
             f"    return {{{head}, 'cluster': c, {items}}}\n", env)
        self._envelopes[cls] = env["f"]
        return env["f"]


_codec = _Codec()
# Message class -> the class it crosses the wire as (same kind); see register_wire_form.
_WIRE_FORMS: dict[type, Any] = {}


def register_messages(classes: Iterable[type]) -> None:
    """Make message classes known to the codec, by their ``kind``."""
    for cls in classes:
        _codec.messages[cls.kind] = cls
        _codec.struct(cls)
        _codec.fast_struct(cls)


def register_wire_form(cls: type, wire: Any) -> None:
    """Send ``cls`` as ``wire``: a registered-like dataclass of the same ``kind`` with
    ``wire.from_message(msg)`` and ``wire_msg.to_message()``, and a ``validate()`` for its
    own form. The handlers keep the in-memory form; only the bytes differ."""
    _codec.struct(wire)
    _codec.fast_struct(wire)
    _WIRE_FORMS[cls] = wire


def register_records(classes: Iterable[type]) -> None:
    """Make durable record classes known to the codec, by class name."""
    for cls in classes:
        _codec.records[cls.__name__] = cls
        _codec.struct(cls)
        _codec.fast_struct(cls)


def register_structs(classes: Iterable[type]) -> None:
    """Make other wire types (status reports, control commands) known, by class name."""
    for cls in classes:
        _codec.structs[cls.__name__] = cls
        _codec.struct(cls)
        _codec.fast_struct(cls)


def _register_builtin() -> None:
    from consensus.paxos import messages as px
    from consensus.raft import messages as rf
    from consensus.telemetry import Control, StatusReport

    register_structs([Control, StatusReport])

    register_messages([ClientRequest, ClientReply, ConfigChange, TimeoutNow, rf.RequestVote,
                       rf.RequestVoteReply, rf.AppendEntries, rf.AppendEntriesReply,
                       rf.InstallSnapshot, rf.InstallSnapshotReply,
                       px.Prepare, px.Promise, px.Accept, px.Accepted, px.Commit, px.Nack])
    register_wire_form(rf.AppendEntries, rf.AppendEntriesWire)
    register_records([rf.HardState, rf.LogAppend, rf.CommitMark, rf.RaftSnapshot,
                      px.Promised, px.RoundUsed,
                      px.AcceptedRun, px.ChosenRun, px.Committed])
    # Multi-Paxos log compaction (issue 13): the snapshot transfer and the compacting record.
    register_messages([px.Learn, px.Learned])
    register_records([px.SlotSnapshot])


def _json_object(payload: bytes | str) -> dict[str, Any]:
    """The payload as a JSON object, or a DecodeError: too large, not JSON, not an object."""
    if len(payload) > MAX_PAYLOAD:
        raise DecodeError("too-large", f"{len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not-json", str(exc)) from None
    if type(data) is not dict:
        raise DecodeError("not-json", f"expected a JSON object, got {_show(data)}")
    return data


# -- messages -------------------------------------------------------------------------------


def _to_wire(msg: Message) -> Any:
    """``msg`` in the form it crosses the wire as (itself, unless a wire form is registered)."""
    wire = _WIRE_FORMS.get(type(msg))
    return msg if wire is None else wire.from_message(msg)


def message_to_dict(msg: Message, cluster: str | None = None) -> dict[str, Any]:
    msg = _to_wire(msg)
    encode, _ = _codec.struct(type(msg))
    out = {"type": msg.kind}
    if cluster is not None:
        out["cluster"] = cluster
    out.update(encode(msg))
    return out


def encode_message(msg: Message, cluster: str | None = None,
                   incarnation: str | None = None) -> bytes:
    """``msg`` as a JSON payload (with the cluster's name and incarnation when given)."""
    msg = _to_wire(msg)
    data = _codec.envelope(type(msg))(msg, cluster)
    if incarnation is not None:
        data["incarnation"] = incarnation
    return orjson.dumps(data)


def decode_message(payload: bytes | str, *, cluster: str | None = None,
                   members: Iterable[NodeId] | None = None,
                   incarnation: str | None = None) -> Message:
    """Parse and validate one payload; see the module docstring for what is refused.

    With ``cluster``, a payload naming another cluster is refused. With ``members``, a
    protocol message whose sender is not a member is refused (client requests come from
    outside, so their sender is only checked to be a sensible client id). With
    ``incarnation``, a protocol message of another incarnation of the cluster (a replay,
    or a node left over from an earlier `cluster up`) or of none is refused; client
    requests need not carry it (their dedup is per client and sequence number).
    """
    data = _json_object(payload)
    kind = data.get("type")
    cls = _codec.messages.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError("unknown-type", f"unknown message type {_show(kind)}")
    if cluster is not None and data.get("cluster", cluster) != cluster:
        raise DecodeError("foreign-cluster",
                          f"for cluster {_show(data.get('cluster'))}, this is {cluster!r}")
    if (incarnation is not None and cls is not ClientRequest
            and data.get("incarnation") != incarnation):
        raise DecodeError("stale-incarnation", f"from incarnation "
                          f"{_show(data.get('incarnation'))}, this is {incarnation!r}")
    wire = _WIRE_FORMS.get(cls, cls)
    try:
        msg = _codec.fast_struct(wire)(data)
    except _Invalid:
        _, decode = _codec.struct(wire)
        msg = decode(data, kind)  # raises DecodeError saying what is wrong
    if wire is not cls:
        msg = msg.to_message()
    if members is not None:
        member_set = set(members)
        if cls is ClientRequest:
            if not msg.src or len(msg.src) > 128:
                raise DecodeError("bad-field", "client id must be 1..128 characters")
        elif msg.src not in member_set:
            raise DecodeError("foreign-sender", f"sender {msg.src!r} is not in the cluster")
    return msg


# -- durable records ------------------------------------------------------------------------


def record_to_dict(record: Any) -> dict[str, Any]:
    encode, _ = _codec.struct(type(record))
    return {"type": type(record).__name__, **encode(record)}


def encode_record(record: Any) -> bytes:
    cls = type(record)
    return orjson.dumps({"type": cls.__name__, **_codec.fields(cls)(record)})


def decode_record(payload: bytes | str) -> Any:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not-json", str(exc)) from None
    if type(data) is not dict:
        raise DecodeError("not-json", "a record must be a JSON object")
    cls = _codec.records.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise DecodeError("unknown-type", f"unknown record type {_show(data.get('type'))}")
    try:
        return _codec.fast_struct(cls)(data)
    except _Invalid:
        _, decode = _codec.struct(cls)
        return decode(data, cls.__name__)


# -- status reports and control commands ----------------------------------------------------


def encode(obj: Any) -> bytes:
    """A registered struct (a :class:`~consensus.telemetry.StatusReport`, a
    :class:`~consensus.telemetry.Control`) as a JSON object of its fields."""
    return orjson.dumps(_codec.fields(type(obj))(obj))


def decode(cls: type[T], payload: bytes | str) -> T:
    """Parse and validate one payload as ``cls``, as strictly as a protocol message.

    Fields with a default may be left out (``{"op": "heal"}`` is a whole Control).
    """
    if _codec.structs.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} is not registered with the codec")
    data = _json_object(payload)
    defaults = _codec.defaults(cls)
    if defaults.keys() - data.keys():
        data = {**defaults, **data}
    try:
        return _codec.fast_struct(cls)(data)
    except _Invalid:
        _, strict = _codec.struct(cls)
        return strict(data, cls.__name__)  # type: ignore[no-any-return]


def to_jsonable(obj: Any) -> Any:
    """Any registered message, record or nested value as plain JSON types (for traces)."""
    if isinstance(obj, Message):
        return message_to_dict(obj)
    if dataclasses.is_dataclass(obj):
        encode, _ = _codec.struct(type(obj))
        return encode(obj)
    return obj


_register_builtin()
__all__ = [
    "MAX_PAYLOAD",
    "Command",
    "DecodeError",
    "ReplyStatus",
    "decode",
    "decode_message",
    "decode_record",
    "encode",
    "encode_message",
    "encode_record",
    "register_messages",
    "register_records",
    "register_structs",
    "register_wire_form",
    "to_jsonable",
]
