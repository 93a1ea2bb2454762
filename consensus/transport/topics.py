"""MQTT topic names: one tree per cluster, carrying who sent what so the broker can vouch.

    consensus/<cluster>/<dst>/from/<src>      protocol messages from node <src> to node <dst>
    consensus/<cluster>/<dst>/request/<conn>  client requests to <dst> from MQTT connection <conn>
    consensus/<cluster>/client/<conn>         replies to the clients on connection <conn>
    consensus/<cluster>/<node>/status         the node's status(), a few times a second
    consensus/<cluster>/<node>/control        fault hooks for experiments (drop, loss, delay...)
    consensus/<cluster>/<dst>/config/<conn>   membership changes (ConfigChange) from the operator

The sender's node id (its MQTT user name) and a client's MQTT client id are topic segments, so
an ACL (see :mod:`consensus.auth`) lets a node publish only as itself and a client only ask
for replies on its own connection, and only the ``control`` user write a membership change;
a node checks that a message's claimed sender matches the topic. One connection of a load
generator carries many logical clients: replies go to the connection, and the ``dst`` inside
each reply says which client it is for.
"""

from __future__ import annotations

import re

PREFIX = "consensus"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# Topic segments that are not node names (the reply tree) or are broker user names.
RESERVED = ("client", "control")


def check_name(kind: str, name: str) -> str:
    """A cluster, node or client name must be a plain topic segment."""
    if not _NAME.fullmatch(name) or name in RESERVED:
        raise ValueError(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_', '.', '-'"
                         + (" (and not 'client' or 'control')" if name in RESERVED else ""))
    return name


def peer(cluster: str, dst: str, src: str) -> str:
    """Where node ``src`` publishes protocol messages for node ``dst``."""
    return f"{PREFIX}/{cluster}/{dst}/from/{src}"


def peer_prefix(cluster: str, dst: str) -> str:
    """``peer(cluster, dst, src)`` minus the sender: a node reads ``src`` after it."""
    return f"{PREFIX}/{cluster}/{dst}/from/"


def request(cluster: str, dst: str, conn: str) -> str:
    """Where MQTT connection ``conn`` publishes client requests for node ``dst``."""
    return f"{PREFIX}/{cluster}/{dst}/request/{conn}"


def request_prefix(cluster: str, dst: str) -> str:
    return f"{PREFIX}/{cluster}/{dst}/request/"


def status(cluster: str, node: str = "+") -> str:
    return f"{PREFIX}/{cluster}/{node}/status"


def control(cluster: str, node: str) -> str:
    return f"{PREFIX}/{cluster}/{node}/control"


def config(cluster: str, dst: str, conn: str) -> str:
    """Where the operator's MQTT connection ``conn`` publishes membership changes for ``dst``
    (only the control user may: the ACL); their replies go to ``client(cluster, conn)``."""
    return f"{PREFIX}/{cluster}/{dst}/config/{conn}"


def config_prefix(cluster: str, dst: str) -> str:
    return f"{PREFIX}/{cluster}/{dst}/config/"


def client(cluster: str, conn: str) -> str:
    """Replies for the clients on MQTT connection ``conn``."""
    return f"{PREFIX}/{cluster}/client/{conn}"


def all_inboxes(cluster: str) -> str:
    """Every node's protocol traffic: what a dashboard or tracer subscribes to."""
    return f"{PREFIX}/{cluster}/+/from/+"


def sender_of(topic: str) -> tuple[str, str] | None:
    """``(dst, src)`` of a protocol topic, or None when ``topic`` is not one."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == PREFIX and parts[3] == "from":
        return parts[2], parts[4]
    return None
