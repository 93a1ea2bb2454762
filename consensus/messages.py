"""What every algorithm shares on the wire: node ids, client commands, client request/reply.

Protocol messages of each algorithm live in ``raft/messages.py`` and ``paxos/messages.py``;
they all derive from :class:`Message`, so a driver can route any of them by ``src``/``dst``
without knowing the algorithm. Messages are frozen, slotted dataclasses: cheap to create in
the simulator's hot loop and impossible to mutate after they were "sent".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

NodeId = str


class Phase(StrEnum):
    """What a message does, in words every algorithm shares, so that charts and the dashboard
    line analogous messages up (RequestVote and Prepare both ask for votes) without knowing
    either algorithm. Listed in the order charts stack them."""

    REPLICATE = "replicate"
    ACKNOWLEDGE = "acknowledge"
    HEARTBEAT = "heartbeat (empty)"  # a replicate message with nothing in it
    COMMIT = "commit notice"
    ASK_FOR_VOTES = "ask for votes"
    VOTE = "vote / promise"
    REJECT = "rejection"
    CLIENT = "client"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message: who sent it and to whom, and what it means to an observer.

    The class variables and methods below describe a message to observers (traffic counts,
    charts, the dashboard); they are not fields, so the wire format does not see them.
    """

    src: NodeId
    dst: NodeId
    # Short name for traces, metrics and the codec (e.g. "AppendEntries").
    kind: ClassVar[str] = "Message"
    phase: ClassVar[Phase] = Phase.OTHER
    # Answers another message (sequence diagrams draw replies dashed).
    is_reply: ClassVar[bool] = False
    # Can carry log entries or slot values; one that carries none is a heartbeat.
    carries_entries: ClassVar[bool] = False
    # A short name for legends ("vote reply", "Prepare (1a)").
    label: ClassVar[str] = ""

    def carried_entries(self) -> Sequence[Any]:
        """The log entries or slot values this message carries (empty when it carries none)."""
        return ()

    def carried_slots(self) -> Iterator[tuple[int, str, Command | None]]:
        """``(index, term as shown, command)`` per entry or slot value carried: what an
        observer of the traffic learns about the receiver's log."""
        return iter(())

    def rejection(self) -> str | None:
        """What this message refuses, in words for an event log; None when it refuses nothing."""
        return None

    def is_rejection(self) -> bool:
        """A refused vote, a failed append, a Nack, a redirect..."""
        return self.rejection() is not None


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
    phase: ClassVar[Phase] = Phase.CLIENT
    label: ClassVar[str] = "client request"

    def as_command(self) -> Command:
        return Command(self.src, self.seq, self.command)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange(Message):
    """An operator's membership change sent to one node (``src`` is the operator's id):
    ``change`` is ``add n4``, ``remove n2``, ``replace n2 n7`` or ``transfer n3``
    (:class:`consensus.membership.Change`). Answered like a client request, by a
    :class:`ClientReply` with the same ``seq``: OK with the configuration reached, ERROR with
    the reason it cannot be made, or REDIRECT to the leader. Retrying with the same ``seq`` is
    safe, as for a command."""

    seq: int
    change: str
    kind: ClassVar[str] = "ConfigChange"
    phase: ClassVar[Phase] = Phase.CLIENT
    label: ClassVar[str] = "membership change"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leadership transfer (Raft thesis §3.10): the leader tells a caught-up voter to start
    an election at once, without waiting for its timeout or asking for pre-votes. ``term``
    is the sender's term (Raft) or ballot round (Multi-Paxos): a stale one is ignored."""

    term: int
    kind: ClassVar[str] = "TimeoutNow"
    phase: ClassVar[Phase] = Phase.OTHER
    label: ClassVar[str] = "TimeoutNow"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientReply(Message):
    """A node's answer to a :class:`ClientRequest` (``dst`` is the client id)."""

    seq: int
    status: ReplyStatus
    result: str | None = None
    leader: NodeId | None = None
    kind: ClassVar[str] = "ClientReply"
    phase: ClassVar[Phase] = Phase.CLIENT
    is_reply: ClassVar[bool] = True
    label: ClassVar[str] = "client reply"

    def rejection(self) -> str | None:
        if self.status != ReplyStatus.REDIRECT:
            return None
        return f"{self.src} redirected {self.dst} to {self.leader or 'no known leader'}"


HEARTBEAT = " (heartbeat)"  # traffic_kind's suffix for a replicate message carrying nothing


def traffic_kind(msg: Message) -> str:
    """The message's kind for traffic accounting: an empty AppendEntries or Accept counts as a
    heartbeat, so charts can show heartbeats apart from replication."""
    if msg.carries_entries and not msg.carried_entries():
        return msg.kind + HEARTBEAT
    return msg.kind
