"""Multi-Paxos with a stable leader: :class:`PaxosNode` and its messages."""

from consensus.paxos.messages import Ballot
from consensus.paxos.node import PaxosNode

__all__ = ["Ballot", "PaxosNode"]
