"""PySyncObj measured by the same method, in the same run: 3 node processes on loopback TCP.

As in PySyncObj's own benchmark, requests are issued *inside* the node processes: each of the
three processes calls a ``@replicated`` method ``set(key, value)`` (a 10-byte value) at a
third of the offered rate, open loop, with a callback; the "within 1 s" criterion runs
from the call's scheduled time, the p50/p99 shown from the call itself to its callback.
Non-leaders forward to the leader (PySyncObj's ``commandsWaitLeader``). Its default
configuration keeps its log in memory (no journal, so no fsync), ticks every 50 ms and
sends batched AppendEntries every 100 ms; the "low-latency" configuration sets
``appendEntriesUseBatch=False`` (entries are sent as they are proposed).

``python -m consensus.bench.pysyncobj_bench --self 127.0.0.1:P --partners ...`` runs one
node; it prints ``{"ready": true}`` once a leader is known, then takes the same stdin commands
as :mod:`consensus.bench.loadgen`.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson

from consensus.bench.search import Step
from consensus.bench.settle import Quiet, cpu_rate, idle_threshold, wait_quiet
from consensus.bench.throughput import cpu_seconds, stop_workers

CONFS = ("default", "low-latency")


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class PySyncObjCluster:
    """Three (or ``nodes``) PySyncObj processes; ``step`` as :class:`Generators` does."""

    def __init__(self, nodes: int = 3, conf: str = "default") -> None:
        self.label = f"pysyncobj {nodes}n" + ("" if conf == "default" else f" {conf}")
        self.nodes, self.conf = nodes, conf
        # PySyncObj logs to stderr; kept to count its "may have diverged" warnings.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.restarted = 0
        self._overloaded = False
        self._start()

    def settle(self) -> Quiet:
        """Before a step: wait until PySyncObj has answered every request issued so far
        (after an overloaded step it works through its queue for many seconds, 10-16 s
        measured, with little CPU: its batching is paced by timers) and its processes are
        idle. After an overloaded step the cluster is replaced by a fresh one first: we
        measured one node of an overloaded PySyncObj failing every request it was given from
        then on. That favours PySyncObj (ours are never restarted); ``restarted`` counts it."""
        if self._overloaded:
            self._restart()
        quiet = wait_quiet(self._sample, self.idle_cores)
        if not quiet.settled:
            self._restart()
            quiet = wait_quiet(self._sample, self.idle_cores)
        return quiet

    def _restart(self) -> None:
        self.restarted += 1
        stop_workers(self.procs)
        self._start()

    def _ask(self, proc: subprocess.Popen[str], cmd: dict[str, Any]) -> dict[str, Any]:
        proc.stdin.write(orjson.dumps(cmd).decode() + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return orjson.loads(proc.stdout.readline())  # type: ignore[union-attr]

    def _sample(self) -> tuple[float, int]:
        """CPU seconds of the node processes, and their requests not yet called back."""
        cpu = sum(c for p in self.procs if (c := cpu_seconds(p.pid)) is not None)
        return cpu, sum(self._ask(p, {"pending": True})["pending"] for p in self.procs)

    def _start(self) -> None:
        nodes, conf = self.nodes, self.conf
        addrs = [f"127.0.0.1:{p}" for p in _free_ports(nodes)]
        self.procs = []
        for addr in addrs:
            argv = [sys.executable, "-m", "consensus.bench.pysyncobj_bench", "--self", addr,
                    "--conf", conf, "--partners", ",".join(a for a in addrs if a != addr)]
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=self.stderr,
                                               text=True))
        for proc in self.procs:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if '"ready"' not in line:
                self.close()
                raise RuntimeError(f"PySyncObj node failed to start: {line!r}")
        self.idle_cores = idle_threshold(cpu_rate(self._sample, 0.5)[0])

    def step(self, rate: float, seconds: float, grace: float = 1.0) -> Step:
        cmd = {"rate": rate / len(self.procs), "duration": seconds,
               "start_at": time.time() + 0.15, "grace": grace}
        for proc in self.procs:
            proc.stdin.write(orjson.dumps(cmd).decode() + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        offered, lat, service, failed = 0, [], [], 0
        for proc in self.procs:
            out = orjson.loads(proc.stdout.readline())  # type: ignore[union-attr]
            offered += out["offered"]
            lat += out["latencies_ms"]
            service += out["service_ms"]
            failed += out["failed"]
        step = Step.from_latencies(rate, offered, lat, seconds, service, failed=failed)
        self._overloaded = not step.sustained or failed > 0
        return step

    def warnings(self) -> dict[str, int]:
        self.stderr.seek(0)
        text = self.stderr.read()
        return {"diverged_warnings": text.count("may have diverged"),
                "stderr_lines": text.count("\n")}

    def close(self) -> None:
        stop_workers(self.procs)


def _node(args: argparse.Namespace) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class BenchObj(SyncObj):
        def __init__(self, addr: str, partners: list[str], conf: SyncObjConf) -> None:
            super().__init__(addr, partners, conf)
            self.data: dict[str, str] = {}

        @replicated
        def set(self, key: str, value: str) -> str:
            self.data[key] = value
            return value

    conf = (SyncObjConf() if args.conf == "default"
            else SyncObjConf(appendEntriesUseBatch=False))
    obj = BenchObj(args.self, [p for p in args.partners.split(",") if p], conf)
    end = time.monotonic() + 30
    while time.monotonic() < end and obj._getLeader() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    print('{"ready": true}', flush=True)
    value = "x" * 10
    # Requests issued and called back, over every step: the difference is what is still
    # queued (the benchmark's settle asks for it between steps).
    totals = {"issued": 0, "done": 0}
    totals_lock = threading.Lock()
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        cmd = orjson.loads(line)
        if cmd.get("stop"):
            break
        if cmd.get("pending"):
            with totals_lock:
                pending = totals["issued"] - totals["done"]
            sys.stdout.write(orjson.dumps({"pending": pending}).decode() + "\n")
            sys.stdout.flush()
            continue
        rate, duration = cmd["rate"], cmd["duration"]
        t0 = time.perf_counter() + max(0.0, cmd["start_at"] - time.time())
        t_end = t0 + duration
        total = int(rate * duration)
        lat: list[tuple[float, float]] = []
        failed = [0]
        lock = threading.Lock()

        def done(res: Any, err: Any, scheduled: float, called: float, lat=lat,
                 failed=failed, lock=lock) -> None:
            with totals_lock:
                totals["done"] += 1
            if err == 0:  # FAIL_REASON.SUCCESS
                now = time.perf_counter()
                with lock:
                    lat.append(((now - scheduled) * 1000, (now - called) * 1000))
            else:
                failed[0] += 1

        time.sleep(max(0.0, t0 - time.perf_counter()))
        issued = 0
        while issued < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while issued < due:
                scheduled = t0 + issued / rate
                called = time.perf_counter()
                with totals_lock:
                    totals["issued"] += 1
                obj.set(f"k{issued % 100}", value,
                        callback=lambda r, e, s=scheduled, c=called: done(r, e, s, c))
                issued += 1
            time.sleep(0.0005)
        grace_end = t_end + cmd.get("grace", 1.0)
        while time.perf_counter() < grace_end and len(lat) + failed[0] < total:
            time.sleep(0.01)
        with lock:
            out = {"offered": total, "latencies_ms": [round(v, 3) for v, _ in lat],
                   "service_ms": [round(w, 3) for _, w in lat],
                   "failed": failed[0]}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        sys.stdout.flush()
    obj.destroy()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m consensus.bench.pysyncobj_bench")
    p.add_argument("--self", required=True)
    p.add_argument("--partners", required=True)
    p.add_argument("--conf", choices=CONFS, default="default")
    _node(p.parse_args(argv))


if __name__ == "__main__":
    main()
