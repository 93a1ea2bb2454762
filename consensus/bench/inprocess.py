"""Load generated inside the leader's own process: our side of the like-for-like comparison.

PySyncObj's benchmark (and ours of it, :mod:`consensus.bench.pysyncobj_bench`) issues requests
inside the node processes: no client hop, no client (de)serialisation. Measuring our nodes only
"as a service over the broker" would compare different things, so the same shape exists for
ours: a node started with ``--bench-load`` (``consensus-lab node``, or the environment variable
``CONSENSUS_BENCH_LOAD=1`` the benchmark sets while it spawns a cluster) serves this module's
generator on the Unix socket ``<data-dir>/<id>.load.sock`` (mode 0600: it bypasses the broker's
authentication, so only the node's own user may use it). The benchmark connects to the
leader's socket and sends the same JSON-line commands the bus load generators take::

    {"rate": 2000, "duration": 3.0, "start_at": <time.time()>, "grace": 1.0}
    {"outstanding": true}          -> {"outstanding": <requests not yet answered>}

(requests unanswered for ``ABANDON_AFTER_S`` are given up and not counted).

Requests are handed to the node as the runtime hands it a decoded request (``deliver``:
``tick`` + ``step``, then one drain per event-loop turn), from 1024 client ids of this process
(one outstanding seq per id, as the node's dedup table requires); their replies are taken
before they would be published (:attr:`NodeRuntime.local_replies`). Everything else, the
replication to the followers over the broker, the WAL and its fsync, is the node's usual work.
Arrivals and the two latencies are as in :mod:`consensus.bench.loadgen` (open loop, from the
scheduled time and from the request's hand-over). A redirect (this node no longer leads) ends
the operation unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consensus.bench.loadgen import OpenLoop
from consensus.bench.search import Step
from consensus.messages import ClientReply, ClientRequest, ReplyStatus

if TYPE_CHECKING:
    from consensus.runtime import NodeRuntime

IDS = 1024
BURST = 256
# An operation unanswered this long is given up (its node lost leadership and dropped it; a
# real client would resend it to the new leader, which the benchmark's next step targets).
ABANDON_AFTER_S = 5.0
ENV = "CONSENSUS_BENCH_LOAD"


def socket_path(data_dir: Path | str, node_id: str) -> Path:
    return Path(data_dir) / f"{node_id}.load.sock"


class LoadCommand(BaseModel):
    """One step of offered load, as the bus load generators take it."""

    model_config = ConfigDict(extra="ignore")
    rate: float = Field(gt=0, le=1_000_000)
    duration: float = Field(gt=0, le=3600)
    start_at: float
    grace: float = Field(1.0, ge=0, le=60)


class InProcessLoad:
    """The generator inside a node process; see the module docstring."""

    def __init__(self, runtime: NodeRuntime, ids: int = IDS) -> None:
        self.runtime = runtime
        me = runtime.opts.node_id
        self.prefix = f"inproc-{me}-"
        self.free: deque[str] = deque(f"{self.prefix}{i}" for i in range(ids))
        self.seqs: dict[str, int] = {}
        # client id -> (seq, scheduled, handed over): its one outstanding operation
        self.outstanding: dict[str, tuple[int, float, float]] = {}
        self.latencies: list[tuple[float, float, float]] = []
        self.redirects = 0
        self.errors = 0
        self.abandoned = 0
        self.counter = itertools.count()

    def pending(self) -> int:
        """Operations still awaiting their reply, after giving up the ones that will not
        get one (``ABANDON_AFTER_S``): what the benchmark's settle waits on."""
        too_old = time.perf_counter() - ABANDON_AFTER_S
        for cid in [c for c, op in self.outstanding.items() if op[2] < too_old]:
            del self.outstanding[cid]
            self.free.append(cid)
            self.abandoned += 1
        return len(self.outstanding)

    def on_reply(self, reply: ClientReply) -> bool:
        """The runtime's ``local_replies`` hook: True when the reply is one of ours."""
        cid = reply.dst
        if not cid.startswith(self.prefix):
            return False
        op = self.outstanding.get(cid)
        if op is None or op[0] != reply.seq:
            return True
        del self.outstanding[cid]
        self.free.append(cid)
        if reply.status is ReplyStatus.REDIRECT:
            self.redirects += 1
        elif reply.status is ReplyStatus.ERROR:
            self.errors += 1
        else:
            now = time.perf_counter()
            self.latencies.append((op[1], (now - op[1]) * 1000, (now - op[2]) * 1000))
        return True

    def _issue(self, scheduled: float) -> bool:
        if not self.free:
            return False
        cid = self.free.popleft()
        seq = self.seqs.get(cid, 0) + 1
        self.seqs[cid] = seq
        n = next(self.counter)
        now = time.perf_counter()
        self.outstanding[cid] = (seq, scheduled, now)
        me = self.runtime.opts.node_id
        self.runtime.deliver(ClientRequest(src=cid, dst=me, seq=seq,
                                           command=f"SET k{n % 100} = {n}"))
        return True

    async def run(self, cmd: LoadCommand) -> dict[str, Any]:
        """One step: the same answer as a bus load generator's."""
        self.latencies, self.redirects, self.errors = [], 0, 0
        rate, duration = cmd.rate, cmd.duration
        # A start more than 10 s away is a mistake, not a plan: start in 10 s at most.
        t0 = time.perf_counter() + min(10.0, max(0.0, cmd.start_at - time.time()))
        t_end = t0 + duration
        total = int(rate * duration)
        schedule = OpenLoop(t0, rate, total)
        backlog: deque[float] = deque()
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        while True:
            now = time.perf_counter()
            schedule.release(now, backlog)
            # At most BURST per turn of the event loop: the node's drain, timers (heartbeats)
            # and inbound acknowledgements run between bursts, as they do between the
            # bursts a bus client's connection delivers.
            for _ in range(BURST):
                if not backlog or not self._issue(backlog[0]):
                    break
                backlog.popleft()
            if (schedule.all_issued and not backlog and now >= t_end) or now > t_end + cmd.grace:
                break
            await asyncio.sleep(0.0005)
        while self.outstanding and time.perf_counter() < t_end + cmd.grace:
            await asyncio.sleep(0.01)
        mine = [(v, w) for s, v, w in self.latencies if t0 <= s < t_end]
        return {"name": f"in-process {self.runtime.opts.node_id}", "offered": total,
                "latencies_ms": [round(v, 3) for v, _ in mine],
                "service_ms": [round(w, 3) for _, w in mine],
                "unanswered": len(self.outstanding) + len(backlog),
                "redirects": self.redirects, "errors": self.errors, "resends": 0,
                "seconds": duration}


async def serve(runtime: NodeRuntime) -> None:
    """The node's one extra task: the generator's socket, until the node stops."""
    load = InProcessLoad(runtime)
    runtime.local_replies = load.on_reply
    path = socket_path(runtime.opts.data_dir, runtime.opts.node_id)
    path.unlink(missing_ok=True)
    lock = asyncio.Lock()  # one step at a time, whoever connects

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    raw = orjson.loads(line)
                    if isinstance(raw, dict) and raw.get("outstanding"):
                        out: dict[str, Any] = {"outstanding": load.pending()}
                    else:
                        cmd = LoadCommand.model_validate(raw)
                        async with lock:
                            out = await load.run(cmd)
                except (orjson.JSONDecodeError, ValidationError) as exc:
                    out = {"error": f"bad load command: {exc}"}
                writer.write(orjson.dumps(out) + b"\n")
                await writer.drain()
        finally:
            writer.close()

    old = os.umask(0o177)  # the socket is created 0600
    try:
        server = await asyncio.start_unix_server(session, path=str(path))
    finally:
        os.umask(old)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        path.unlink(missing_ok=True)


class InProcessClient:
    """The benchmark's end of the socket: one blocking connection to one node's generator."""

    def __init__(self, path: Path, timeout_s: float = 120.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.file.write(orjson.dumps(cmd) + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise RuntimeError(f"the in-process load generator at {self.path} hung up")
        out = orjson.loads(line)
        if "error" in out:
            raise ValueError(out["error"])
        return out

    def step(self, rate: float, seconds: float, grace: float = 1.0) -> Step:
        out = self._ask({"rate": rate, "duration": seconds, "start_at": time.time() + 0.05,
                         "grace": grace})
        return Step.from_latencies(rate, out["offered"], out["latencies_ms"], seconds,
                                   out["service_ms"], redirects=out["redirects"],
                                   unanswered=out["unanswered"], errors=out["errors"])

    def outstanding(self) -> int:
        return int(self._ask({"outstanding": True})["outstanding"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()
