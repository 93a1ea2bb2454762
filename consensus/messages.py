"""What every algorithm shares on the wire: node ids, client commands, client request/reply.

Protocol messages of each algorithm live in ``raft/messages.py`` and ``paxos/messages.py``;
they all derive from :class:`Message`, so a driver can route any of them by ``src``/``dst``
without knowing the algorithm. Messages are frozen, slotted dataclasses: cheap to create in
the simulator's hot loop and impossible to mutate after they were "sent".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

NodeId = str


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message: who sent it and to whom."""

    src: NodeId
    dst: NodeId
    # Short name for traces, metrics and the codec (e.g. "AppendEntries").
    kind: ClassVar[str] = "Message"


@dataclass(frozen=True, slots=True)
class Command:
    """A client's command as it is replicated: the text plus the id that makes retries safe.

    ``(client_id, seq)`` identifies the request; the key-value state machine remembers the
    last ``seq`` applied per client, so a retried request is applied exactly once.
    """

    client_id: str
    seq: int
    text: str

    def __str__(self) -> str:
        return f"{self.client_id}#{self.seq} {self.text}"


class ReplyStatus(StrEnum):
    OK = "ok"  # applied; ``result`` holds the state machine's answer
    ERROR = "error"  # applied as a no-op because the command is malformed or failed (CAS)
    REDIRECT = "redirect"  # not accepted here: retry at ``leader`` with the same seq


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRequest(Message):
    """A client's command sent to one node (``src`` is the client id)."""

    seq: int
    command: str
    kind: ClassVar[str] = "ClientRequest"

    def as_command(self) -> Command:
        return Command(self.src, self.seq, self.command)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientReply(Message):
    """A node's answer to a :class:`ClientRequest` (``dst`` is the client id)."""

    seq: int
    status: ReplyStatus
    result: str | None = None
    leader: NodeId | None = None
    kind: ClassVar[str] = "ClientReply"


def traffic_kind(msg: Message) -> str:
    """The message's kind for traffic accounting: an empty AppendEntries or Accept counts as a
    heartbeat, so charts can show heartbeats apart from replication."""
    entries = getattr(msg, "entries", getattr(msg, "commands", None))
    return f"{msg.kind} (heartbeat)" if entries is not None and not entries else msg.kind
