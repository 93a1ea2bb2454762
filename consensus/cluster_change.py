"""Change the membership of a running cluster: `consensus-lab cluster add/remove/replace/transfer`.

Theory of operation
-------------------
The node cores run a change themselves (the leader adds a new member as a learner, promotes
it once it has caught up, goes through the joint configuration or single steps, hands
leadership over when it removes itself); this module does what only the operator's side
can do around that, on the cluster ``cluster up`` recorded in ``.consensus-lab/<c>/``:

- **add n4**: a broker user for n4 (password, ACL lines; the broker reloads them, see
  :func:`consensus.broker.reload_broker`), then the n4 process, started empty and joining
  (it knows the members, not its configuration), then a
  :class:`~consensus.messages.ConfigChange` from the ``control`` user to the leader,
  retried (same seq) after redirects and timeouts until it is answered. The answer comes
  once the change is complete, so OK means n4 is a voter of a committed configuration.
- **remove n2**: the ConfigChange; once OK, n2 stops on its own if it knows it was removed
  (``node.removed()``; a removed leader always does, and first hands over with TimeoutNow).
  A removed follower may never hear that its removal committed (the leader no longer
  replicates to it), so its process is given a few election timeouts, then stopped; then
  its credentials are revoked.
- **replace n2 n7**: both at once: n7's user and process first, one ConfigChange, then n2
  goes as for remove.
- **transfer n3**: the ConfigChange only; leadership moves, the membership does not.

The record (:class:`~consensus.cluster.ClusterState`) follows: a new member is recorded as
``joined`` (it restarts as a joining node), a removed one is dropped, ``config`` holds the
configuration reached. A change the cluster answers with an error is undone on this side
(the new process stopped, its user revoked).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consensus.auth import CONTROL_USER, AuthError, Realm
from consensus.cluster import (
    STATE_ROOT,
    ClusterState,
    is_ours,
    spawn_node,
    stop_process,
)
from consensus.membership import Change, ChangeError
from consensus.transport import topics

# How long the operator waits for a change (a new member must catch up first).
CHANGE_DEADLINE_S = 60.0
# A removed node that knows it lingers one election timeout before it stops; one that does
# not know (a removed follower the leader no longer replicates to may never hear that its
# removal committed) is stopped after this many maximum election timeouts.
EXIT_WAIT_TIMEOUTS = 4
# Where `consensus-lab broker --cluster` records the broker it runs, so that a membership
# change can make it reload the realm's files (a realm file, but not a user's .json).
BROKER_RECORD = "broker.run"

Progress = Callable[[str], None]


class MembershipChangeError(RuntimeError):
    """The change was refused (by the cluster or before it was asked); the message says why."""


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    change: str
    config: str | None  # the configuration reached (Membership.to_text())
    leader: str  # the node that answered
    attempts: int
    seconds: float


def change_cluster(name: str, text: str, root: Path = STATE_ROOT, *,
                   deadline_s: float = CHANGE_DEADLINE_S,
                   progress: Progress = lambda line: None) -> ChangeOutcome:
    """Make the change ``text`` (``add n4`` | ``remove n2`` | ``replace n2 n7`` |
    ``transfer n3``) on the running cluster ``name``; see the module docstring.

    Raises :class:`MembershipChangeError` when the change is refused,
    :class:`~consensus.client.ClusterUnavailable` when no answer came in ``deadline_s``
    (the change may still complete: see ``cluster status``), FileNotFoundError when no such
    cluster was started from here."""
    try:
        change = Change.parse(text)
    except ChangeError as exc:
        raise MembershipChangeError(str(exc)) from None
    state = ClusterState.load(name, root)
    for nid in (*change.add, *change.remove, *([change.target] if change.target else [])):
        topics.check_name("node", nid)
    for nid in change.add:
        if nid in state.nodes:
            raise MembershipChangeError(f"{nid} is already a member of cluster {name!r} "
                                        f"({', '.join(sorted(state.nodes))})")
    for nid in (*change.remove, *([change.target] if change.target else [])):
        if nid not in state.nodes:
            raise MembershipChangeError(f"{nid} is not a member of cluster {name!r} "
                                        f"({', '.join(sorted(state.nodes))})")
    for nid in change.add:
        start_member(state, nid, progress)
    progress(f"asking the leader: {change}")
    try:
        outcome = asyncio.run(_ask(state, str(change), deadline_s))
    except MembershipChangeError:
        for nid in change.add:  # refused: nothing of the new member may stay behind
            retire(state, nid, progress)
        raise
    progress(f"{outcome.leader} answered after {outcome.seconds:.1f} s "
             f"({outcome.attempts} attempt{'s' if outcome.attempts > 1 else ''}): "
             f"{outcome.config}")
    state.config = outcome.config
    state.save()
    for nid in change.remove:
        retire(state, nid, progress, wait_s=exit_wait_s(state))
    return outcome


async def _ask(state: ClusterState, change: str, deadline_s: float) -> ChangeOutcome:
    """Send the ConfigChange from the control user and wait for the answer."""
    from consensus.client import CHANGE_POLICY, ClusterClient

    started = time.monotonic()
    async with ClusterClient(state.broker, state.name, library=state.library,
                             deadline_s=deadline_s, policy=CHANGE_POLICY,
                             client_id=f"op-{uuid.uuid4().hex[:10]}",
                             identity=state.identity(CONTROL_USER)) as client:
        result = await client.change(change)
    reply = result.reply
    if reply.status.value != "ok":
        raise MembershipChangeError(f"{reply.src} refused {change!r}: {reply.result}")
    return ChangeOutcome(change, reply.result, reply.src, result.attempts,
                         time.monotonic() - started)


def start_member(state: ClusterState, nid: str, progress: Progress = lambda line: None, *,
                 status_interval_ms: float | None = None, save: bool = True) -> int:
    """Credentials for ``nid`` (the broker reloads them), then its process, joining; its
    pid. ``save``: write the record (an experiment's cluster keeps none on disk)."""
    if not state.insecure:
        realm = _realm(state).add_node(nid)
        _reload(state, realm)
        asyncio.run(await_login(state, nid))
        progress(f"{nid}: broker user added")
    (Path(state.directory) / f"{nid}.wal").unlink(missing_ok=True)  # a member joins empty
    state.nodes[nid] = 0
    if nid not in state.joined:
        state.joined.append(nid)
    pid = spawn_node(state, nid, status_interval_ms)
    if save:
        state.save()
    progress(f"{nid}: started joining (pid {pid}, log {state.directory}/{nid}.log)")
    return pid


def exit_wait_s(state: ClusterState) -> float:
    """How long a removed node is given to stop on its own."""
    return max(2.0, EXIT_WAIT_TIMEOUTS * state.election_timeout_ms[1] / 1000)


def retire(state: ClusterState, nid: str, progress: Progress = lambda line: None, *,
           wait_s: float = 0.0, save: bool = True, forget: bool = True) -> None:
    """``nid`` has left the configuration (or never got in): wait for its process to stop
    on its own, stop it if it does not, revoke its credentials, and (``forget``) drop it
    from the record (an experiment keeps it: its WAL is checked at the end)."""
    pid = state.nodes.get(nid, 0)
    end = time.monotonic() + wait_s
    while time.monotonic() < end and is_ours(pid):
        time.sleep(0.05)
    if is_ours(pid):
        stop_process(pid)
        progress(f"{nid}: stopped (pid {pid})" + (
            f"; it had not stopped on its own within {wait_s:g} s (a removed follower "
            f"may not hear that its removal committed)" if wait_s else ""))
    else:
        progress(f"{nid}: its process (pid {pid}) stopped on its own")
    if not state.insecure:
        realm = _realm(state)
        if nid in realm.nodes:
            _reload(state, realm.remove_node(nid))
            progress(f"{nid}: broker user revoked")
    if forget:
        state.nodes.pop(nid, None)
        if nid in state.joined:
            state.joined.remove(nid)
    if save:
        state.save()


def _realm(state: ClusterState) -> Realm:
    realm = Realm.open(state.name, Path(state.directory))
    if realm is None:
        raise AuthError(f"cluster {state.name!r} has no credentials in {state.secrets}")
    return realm


def _reload(state: ClusterState, realm: Realm) -> None:
    """Make the cluster's broker take the realm's rewritten files: the one `cluster up`
    started, or the one `consensus-lab broker --cluster` runs (it leaves a record)."""
    from consensus.broker import BrokerError, reload_broker

    if state.broker_pid:
        kind, pid = state.broker_kind, state.broker_pid
        workdir = Path(state.broker_dir) if state.broker_dir else None
    else:
        record = realm.directory / BROKER_RECORD
        try:
            data = json.loads(record.read_text())
            kind, pid, workdir = data["kind"], int(data["pid"]), Path(data["workdir"])
        except (OSError, ValueError, KeyError, TypeError):
            raise MembershipChangeError(
                f"cannot tell the broker at {state.broker} about the new credentials: it was "
                f"not started by `cluster up` or `consensus-lab broker --cluster "
                f"{state.name}` ({record} is missing)") from None
    if not is_ours(pid):
        raise MembershipChangeError(f"the cluster's {kind} broker (pid {pid}) is not running")
    try:
        reload_broker(kind, pid, realm, workdir)
    except BrokerError as exc:
        raise MembershipChangeError(str(exc)) from None


async def await_login(state: ClusterState, nid: str, within_s: float = 5.0) -> None:
    """Wait until the broker accepts ``nid``'s new credentials (it reloads them on a signal,
    asynchronously), so that the node process does not start before it can connect."""
    from consensus.transport.mqtt import TransportError, make_client

    identity = state.identity(nid)
    end = time.monotonic() + within_s
    while True:
        probe = make_client(state.library, state.broker, f"{state.name}-{nid}-probe",
                            lambda topic, payload: None, identity)
        try:
            await probe.connect()
        except (TransportError, OSError) as exc:
            if time.monotonic() > end:
                raise MembershipChangeError(f"the broker does not accept {nid}'s new "
                                            f"credentials: {exc}") from None
            await asyncio.sleep(0.1)
        else:
            await probe.close()
            return


__all__ = ["BROKER_RECORD", "ChangeOutcome", "MembershipChangeError", "await_login",
           "change_cluster", "exit_wait_s", "retire", "start_member"]
