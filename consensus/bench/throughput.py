"""Throughput and latency of a real cluster: node processes, load generator processes, the bus.

A :class:`System` is anything with ``step(rate, seconds) -> Step``; :func:`measure` warms it
up, takes the latency at light load (100 ops/s), runs the max-throughput search and repeats
its maximum, then takes the latency at 50% and 90% of the maximum, letting the system settle
before every step. :class:`BusCluster` is Raft, Multi-Paxos or the null protocol on the MQTT
runtime, driven by :class:`Generators` (separate ``consensus.bench.loadgen`` processes, over
the broker) or by the generator inside the leader's process
(:mod:`consensus.bench.inprocess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from consensus.bench.inprocess import ENV, IDS, InProcessClient, socket_path
from consensus.bench.search import Step, confirm_max, search_max
from consensus.bench.settle import Quiet, cpu_rate, idle_threshold, wait_quiet
from consensus.node import Config

HEARTBEAT_MS = 50.0
ELECTION_TIMEOUT_MS = (150.0, 300.0)
# The clusters compact their logs every 100,000 entries (etcd's default snapshot count). A
# search runs millions of operations through one cluster; with the log kept whole, each step
# ran on a bigger heap than the last (Raft in-process at 24k ops/s: leader CPU per operation
# 37 -> 41 µs and p50 23 -> 30 ms over ten steps, RSS 70 -> 276 MiB), so a maximum depended
# on how many steps came before it. With compaction the heap stays flat (RSS 63-104 MiB).
SNAPSHOT_ENTRIES = 100_000
LIGHT_RATE = 100.0
LOADS = ("bus", "in-process")
T = TypeVar("T")


class System(Protocol):
    """May also have ``settle() -> Quiet``: called before every step, so that no step
    measures the backlog of the one before it (:mod:`consensus.bench.settle`)."""

    label: str

    def step(self, rate: float, seconds: float) -> Step: ...

    def close(self) -> None: ...


class Generators:
    """``count`` load generator processes, each with ``connections`` MQTT clients and
    ``ids`` client ids per connection; a step splits the rate evenly between them."""

    def __init__(self, broker: str, cluster: str, nodes: list[str], count: int = 2,
                 connections: int = 4, ids: int = 64, credentials: Path | None = None) -> None:
        self.count, self.connections, self.ids = count, connections, ids
        self.procs = []
        for i in range(count):
            argv = [sys.executable, "-m", "consensus.bench.loadgen", "--broker", broker,
                    "--cluster", cluster, "--nodes", ",".join(nodes), "--name", f"g{i + 1}",
                    "--connections", str(connections), "--ids", str(ids)]
            if credentials is not None:
                argv += ["--credentials", str(credentials)]
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True))
        for proc in self.procs:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if '"ready"' not in line:
                raise RuntimeError(f"load generator failed to start: {line!r}")

    def describe(self) -> dict[str, int]:
        return {"processes": self.count, "mqtt_connections_per_process": self.connections,
                "client_ids_per_connection": self.ids,
                "client_ids_total": self.count * self.connections * self.ids}

    def step(self, rate: float, seconds: float, target: str, grace: float = 1.0) -> Step:
        start_at = time.time() + 0.15
        cmd = {"rate": rate / self.count, "duration": seconds, "start_at": start_at,
               "target": target, "grace": grace}
        for proc in self.procs:
            proc.stdin.write(orjson.dumps(cmd).decode() + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        offered, lat, service = 0, [], []
        extra = {"redirects": 0, "resends": 0, "unanswered": 0}
        for proc in self.procs:
            out = orjson.loads(proc.stdout.readline())  # type: ignore[union-attr]
            offered += out["offered"]
            lat += out["latencies_ms"]
            service += out["service_ms"]
            for k in extra:
                extra[k] += out[k]
        return Step.from_latencies(rate, offered, lat, seconds, service, **extra)

    def close(self) -> None:
        stop_workers(self.procs)


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    """Ask worker processes (load generators, PySyncObj nodes) to stop on their stdin; kill
    the ones still running after 3 s."""
    for proc in procs:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.write('{"stop": true}\n')  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
    for proc in procs:
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process has used so far (Linux ``/proc``), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _LoopThread:
    """An asyncio loop in a daemon thread: the bus cluster's MQTT client lives there while
    this (blocking) benchmark drives the load generators."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class BusCluster:
    """Raft, Multi-Paxos (fsync on) or the null protocol: registered algorithms, each started
    as ``consensus-lab node`` processes, plus its load. The nodes are the experiment's
    :class:`~consensus.experiment.bus.BusCluster` (which also says who leads).

    ``load``: "bus", separate load generator processes sending requests over the broker
    (the nodes as a service); "in-process", the generator inside the leader's process
    (:mod:`consensus.bench.inprocess`), the shape of PySyncObj's benchmark. Each step also
    says where the CPU went: microseconds of CPU per offered operation in the leader, a
    follower (mean), the broker (when ``broker_pid`` is given) and the load generators."""

    def __init__(self, algorithm: str, nodes: int, broker: str | None, *, fsync: bool = True,
                 generators: int = 2, connections: int = 4, ids: int = 64,
                 broker_pid: int | None = None, tls: bool = False, load: str = "bus",
                 config: Config | None = None) -> None:
        """``broker`` None: the cluster starts its own authenticated mosquitto (with
        ``tls``, TLS with client certificates), which every connection, the load
        generators' included, joins with its own credentials; a URL: that (open) broker.
        ``config``: the nodes' settings (the bench's timing by default)."""
        from consensus.experiment import bus

        if load not in LOADS:
            raise ValueError(f"load must be one of {', '.join(LOADS)}, not {load!r}")
        self.broker_pid = broker_pid
        self.algorithm = algorithm
        self.load = load
        self.label = f"{algorithm} {nodes}n" + (" in-process" if load == "in-process" else "")
        self.ids = [f"n{i}" for i in range(1, nodes + 1)]
        self.name = f"bench-{algorithm}-{nodes}-{uuid.uuid4().hex[:6]}"
        self.dir = Path(tempfile.mkdtemp(prefix="consensus-bench-"))
        self.fsync = fsync
        config = config or Config(heartbeat_ms=HEARTBEAT_MS,
                                  election_timeout_ms=ELECTION_TIMEOUT_MS,
                                  snapshot_entries=SNAPSHOT_ENTRIES)
        self.cluster = bus.BusCluster(
            algorithm, tuple(self.ids), config, self.dir,
            bus.BusOptions(broker, fsync=self.fsync, status_interval_ms=100,
                           prefer="mosquitto", tls=tls),
            name=self.name)
        self.state = self.cluster.state
        self.loop = _LoopThread()
        self.gens: Generators | None = None
        self._inproc: tuple[str, InProcessClient] | None = None
        try:
            with _bench_load_env(load == "in-process"):
                self.loop.call(self.cluster.start())
            if self.cluster.broker is not None:
                self.broker_pid = self.cluster.broker.pid
            self.leader = self.wait_leader()
            if load == "bus":
                from consensus.auth import CLIENT_USER

                self.gens = Generators(self.state.broker, self.name, self.ids, generators,
                                       connections, ids, self.state.credentials_path(CLIENT_USER))
            self.idle_cores = idle_threshold(cpu_rate(self._sample, 0.5)[0])
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict[str, Any]:
        if self.gens is not None:
            return self.gens.describe()
        return {"requests issued in": "the leader's process (no client hop), open loop",
                "client_ids_total": IDS}

    def wait_leader(self, timeout_s: float = 20.0) -> str:
        try:
            self.loop.call(self.cluster.wait_for_leader(timeout_s))
        except RuntimeError:
            raise RuntimeError(f"{self.label}: no leader within {timeout_s} s "
                               f"(logs in {self.dir})") from None
        leader = self.cluster.leader()
        assert leader is not None
        return leader

    def node_pids(self) -> dict[str, int]:
        return dict(self.state.nodes)

    def _pids(self) -> dict[str, list[int | None]]:
        nodes = self.state.nodes
        return {"leader": [nodes[self.leader]],
                "follower": [p for n, p in nodes.items() if n != self.leader],
                "broker": [self.broker_pid],
                "clients": [p.pid for p in self.gens.procs] if self.gens else []}

    def _sample(self) -> tuple[float, int]:
        """CPU seconds of every process of the system, and the work it still reports
        pending: entries not yet applied, requests of the in-process generator not yet
        answered."""
        cpu = sum(c for pids in self._pids().values() for p in pids
                  if (c := cpu_seconds(p)) is not None)
        # Entries committed but not yet applied anywhere, and the leader's entries not yet
        # committed (replication in flight). Not a follower's or a deposed leader's
        # uncommitted tail: nothing may ever commit it (a Paxos slot of a lost ballot stays
        # until a new command reuses it). A follower still receiving shows as CPU.
        pending = 0
        for st in list(self.cluster.status.values()):
            pending += max(0, st.commit_index - st.applied_index)
            if st.role == "leader":
                pending += max(0, st.last_index - st.commit_index)
        if self._inproc is not None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                pending += self._inproc[1].outstanding()
        return cpu, pending

    def settle(self) -> Quiet:
        """Before a step: a leader, and the previous steps' backlog worked off."""
        with contextlib.suppress(RuntimeError):
            self.leader = self.wait_leader(10.0)
        return wait_quiet(self._sample, self.idle_cores)

    def _generator(self) -> InProcessClient:
        if self._inproc is None or self._inproc[0] != self.leader:
            if self._inproc is not None:
                self._inproc[1].close()
            self._inproc = (self.leader,
                            InProcessClient(socket_path(self.state.directory, self.leader)))
        return self._inproc[1]

    def step(self, rate: float, seconds: float) -> Step:
        pids = self._pids()
        before = {k: [cpu_seconds(p) for p in v] for k, v in pids.items()}
        if self.gens is not None:
            step = self.gens.step(rate, seconds, self.leader)
        else:
            step = self._generator().step(rate, seconds)
        after = {k: [cpu_seconds(p) for p in v] for k, v in pids.items()}
        if step.offered:
            cpu: dict[str, float] = {}
            for role in pids:
                used = [a - b for a, b in zip(after[role], before[role], strict=True)
                        if a is not None and b is not None]
                if used:
                    share = sum(used) / (len(used) if role == "follower" else 1)
                    cpu[role] = round(share / step.offered * 1e6, 1)
            step.extra["cpu_us_per_op"] = cpu
        return step

    def close(self) -> None:
        if self._inproc is not None:
            self._inproc[1].close()
        if self.gens is not None:
            self.gens.close()
        with contextlib.suppress(Exception):
            self.loop.call(self.cluster.close())
        self.loop.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def _bench_load_env(on: bool) -> Iterator[None]:
    """Node processes spawned inside serve the in-process generator (``--bench-load``)."""
    if not on:
        yield
        return
    os.environ[ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(ENV, None)


def measure(system: System, *, step_s: float, start: float, bisections: int,
            repeats: int = 0, warmup: bool = True, log: Any = None) -> dict[str, Any]:
    """A warm-up step, latency at light load, the search and the repeats of its maximum
    (:func:`~consensus.bench.search.confirm_max`), then latency at 50% and 90% of the
    maximum. Before every step the system settles (its ``settle()``, when it has one: the
    previous steps' backlog worked off, see :mod:`consensus.bench.settle`)."""
    settle = getattr(system, "settle", None)
    unsettled = []

    def one(rate: float) -> Step:
        quiet = settle() if settle is not None else None
        step = system.step(rate, step_s)
        if quiet is not None:
            step.extra["settle"] = quiet.to_json()
            if not quiet.settled:
                unsettled.append(rate)
        if log:
            log(f"  {system.label}: {rate:,.0f} ops/s offered -> {step.fraction:.1%} in 1 s, "
                f"p50 {step.p50_ms or float('nan'):.2f} ms, p99 {step.p99_ms or float('nan'):.2f}"
                f" ms" + (f" (settled in {quiet.waited_s:.1f} s)" if quiet and quiet.settled
                          else " (NOT settled)" if quiet else ""))
        return step

    out: dict[str, Any] = {"label": system.label}
    # The first step of a fresh system (imports, caches, the broker's first sessions) runs
    # slow: it is taken and set aside, so no system or mode is penalised for going first.
    if warmup:
        out["warmup"] = one(start).to_json()
    points: dict[str, Any] = {"light": one(LIGHT_RATE).to_json()}
    search = search_max(one, start=start, bisections=bisections)
    confirmed = confirm_max(one, search, repeats)
    if confirmed.max_rate:
        points["50%"] = one(round(confirmed.max_rate * 0.5)).to_json()
        points["90%"] = one(round(confirmed.max_rate * 0.9)).to_json()
    out.update(max_sustained_ops_s=confirmed.max_rate, search=search.to_json(),
               confirm=confirmed.to_json(), latency=points, unsettled_steps=unsettled)
    return out
