"""An operator for membership changes in the simulator, and a workload to run under them."""

from __future__ import annotations

from consensus.membership import BUSY
from consensus.messages import ClientReply, ConfigChange, NodeId, ReplyStatus
from consensus.sim import Simulation
from tests.helpers import client, run_until


class Operator:
    """Sends ConfigChanges like ``consensus-lab cluster add`` does: to the leader, following
    redirects and retrying "busy" with the same seq until the change is answered."""

    def __init__(self, sim: Simulation, name: str = "operator") -> None:
        self.sim = sim
        self.name = name
        self.seq = 0
        self.replies: list[ClientReply] = []
        sim.clients[name] = self

    def on_reply(self, msg: ClientReply) -> None:
        self.replies.append(msg)

    def send(self, change: str, node: NodeId, seq: int) -> None:
        self.sim.send_client_request(ConfigChange(src=self.name, dst=node, seq=seq,
                                                  change=change))  # type: ignore[arg-type]

    def change(self, text: str, within_ms: float = 10_000) -> ClientReply:
        """Run ``text`` to its answer (OK or ERROR); AssertionError if none comes in time."""
        self.seq += 1
        seq = self.seq
        end = self.sim.now + within_ms
        while self.sim.now < end:
            target = self.sim.leader() or self.sim.ids[0]
            self.replies.clear()
            self.send(text, target, seq)
            answered = run_until(self.sim, lambda: any(r.seq == seq for r in self.replies),
                                 min(500.0, end - self.sim.now))
            reply = next((r for r in self.replies if r.seq == seq), None)
            if reply is None or reply.status == ReplyStatus.REDIRECT or (
                    reply.status == ReplyStatus.ERROR and (reply.result or "").startswith(BUSY)):
                if answered:
                    self.sim.run_for(20)
                continue
            return reply
        raise AssertionError(f"{text!r} got no answer within {within_ms} ms")


def with_load(sim: Simulation, clients: int = 2) -> list:
    """Closed-loop clients ``c1``.. started now, to make changes under load."""
    cs = [client(sim, f"c{i}") for i in range(1, clients + 1)]
    for c in cs:
        c.start(sim.now)
    return cs


def settle(sim: Simulation, cs: list, ms: float = 1500) -> None:
    """Stop the clients and let the cluster run quiet for ``ms``."""
    for c in cs:
        c.stop()
    sim.run_for(ms)


def digests(sim: Simulation, members) -> set[str]:
    """The state machines' digests of ``members``: one value when they agree."""
    return {sim.nodes[n].kv.digest() for n in members}
