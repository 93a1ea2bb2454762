"""MQTT topic names: one tree per cluster, one inbox per node and per client.

    consensus/<cluster>/<node>/in        protocol messages and client requests for <node>
    consensus/<cluster>/<node>/status    the node's status(), a few times a second
    consensus/<cluster>/<node>/control   fault hooks for experiments (drop, loss, delay...)
    consensus/<cluster>/client/<client>  replies to client <client>
"""

from __future__ import annotations

import re

PREFIX = "consensus"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_name(kind: str, name: str) -> str:
    """A cluster, node or client name must be a plain topic segment."""
    if not _NAME.fullmatch(name) or name == "client":
        raise ValueError(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_', '.', '-'"
                         + (" (and not 'client')" if name == "client" else ""))
    return name


def node_in(cluster: str, node: str) -> str:
    return f"{PREFIX}/{cluster}/{node}/in"


def status(cluster: str, node: str = "+") -> str:
    return f"{PREFIX}/{cluster}/{node}/status"


def control(cluster: str, node: str) -> str:
    return f"{PREFIX}/{cluster}/{node}/control"


def client(cluster: str, client_id: str) -> str:
    return f"{PREFIX}/{cluster}/client/{client_id}"


def all_inboxes(cluster: str) -> str:
    """Every node's inbox: what a dashboard subscribes to in order to watch the traffic."""
    return f"{PREFIX}/{cluster}/+/in"
