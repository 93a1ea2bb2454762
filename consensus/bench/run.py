"""The whole benchmark, in one run: see :mod:`consensus.bench` and ``consensus-lab bench``."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.bench import report

LIBRARY = "gmqtt"


class NoMosquitto(RuntimeError):
    """The benchmark needs a real mosquitto; none is installed."""


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    step_s: float
    bisections: int
    sizes: tuple[int, ...]
    failover_rounds: int
    bus_messages: int
    rtt_samples: int
    bus_libraries: tuple[str, ...]
    sim_seconds: float
    generators: int = 2
    connections: int = 4
    ids: int = 64
    start_rate: float = 500.0

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, 1.0, 1, (3,), 3, 20_000, 300, ("gmqtt",), 10.0)
        return cls(False, 3.0, 3, (3, 5), 10, 100_000, 2000, ("gmqtt", "aiomqtt"), 60.0)


def _guard(section: str, fn: Callable[[], Any], log: Callable[[str], None],
           **context: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # one broken section must not lose the others' figures
        log(f"[red]{section} failed: {exc}")
        traceback.print_exc()
        return {**context, "error": f"{type(exc).__name__}: {exc}"}


def run_bench(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    from consensus.broker import find_mosquitto, start_broker

    if find_mosquitto() is None:
        raise NoMosquitto("the benchmark runs on a real mosquitto and none is installed "
                          "(Debian: apt-get install mosquitto); the embedded amqtt broker is "
                          "an order of magnitude slower and would measure itself")
    plan = Plan.make(quick)
    started = time.perf_counter()
    handle = start_broker(prefer="mosquitto")
    broker = {"kind": handle.kind, "url": handle.url, "version": _mosquitto_version()}
    log(f"broker: {handle.kind} {broker['version']} at {handle.url}; client library {LIBRARY}")
    result: dict[str, Any] = {"manifest": report.manifest(broker, LIBRARY),
                              "plan": {k: getattr(plan, k) for k in plan.__slots__}}
    try:
        result["bus"] = _guard("bus", lambda: _bus(handle.url, plan, log), log)
        result["throughput"] = _throughput(handle.url, plan, log, handle.pid)
        result["failover"] = [
            _guard(f"failover {a}", lambda a=a: _failover(a, handle.url, plan, log), log,
                   algorithm=a) for a in ("raft", "paxos")]
    finally:
        handle.stop()
    result["simulator"] = _guard("simulator", lambda: _simulator(plan, log), log)
    result["checker"] = _guard("checker", lambda: _checker(log), log)
    result["ratios"] = _ratios(result["throughput"])
    result["goals"] = _goals(result)
    result["manifest"]["loadavg_at_end"] = list(os.getloadavg())
    result["manifest"]["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def _mosquitto_version() -> str | None:
    import subprocess

    from consensus.broker import find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        return None
    out = subprocess.run([binary, "-h"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].replace("mosquitto version ", "") if first else None


def _bus(url: str, plan: Plan, log: Callable[[str], None]) -> list[dict[str, Any]]:
    from consensus.transport.bench import bench_transport

    rows = []
    for lib in plan.bus_libraries:
        messages = plan.bus_messages if lib == "gmqtt" else plan.bus_messages // 4
        row = asyncio.run(bench_transport(url, lib, messages, 200, plan.rtt_samples))
        log(f"bus {lib}: {row['msgs_per_s']:,} msgs/s one way, RTT p50 {row['rtt_p50_us']:.0f}"
            f" µs p99 {row['rtt_p99_us']:.0f} µs")
        rows.append(row)
    return rows


def _throughput(url: str, plan: Plan, log: Callable[[str], None],
                broker_pid: int | None = None) -> list[dict[str, Any]]:
    from consensus.bench.pysyncobj_bench import PySyncObjCluster
    from consensus.bench.throughput import BusCluster, measure

    out = []
    # Our default (fsync on) on every size; then, like for like with PySyncObj (which keeps
    # its log in memory), both algorithms on 3 nodes with fsync off; then the null protocol.
    targets = ([(a, n, True) for n in plan.sizes for a in ("raft", "paxos")]
               + [(a, 3, False) for a in ("raft", "paxos")] + [("null", 3, False)])
    for algorithm, nodes, fsync in targets:
        def one(algorithm: str = algorithm, nodes: int = nodes,
                fsync: bool = fsync) -> dict[str, Any]:
            cluster = BusCluster(algorithm, nodes, url, fsync=fsync, generators=plan.generators,
                                 connections=plan.connections, ids=plan.ids,
                                 broker_pid=broker_pid)
            # The null protocol never fsyncs; for the others, fsync off is a variant of its own.
            conf = "no-fsync" if algorithm != "null" and not fsync else None
            if conf:
                cluster.label += f" {conf}"
            try:
                res = measure(cluster, step_s=plan.step_s, start=plan.start_rate,
                              bisections=plan.bisections, log=log)
            finally:
                cluster.close()
            res.update(system=algorithm, nodes=nodes, fsync=cluster.fsync,
                       transport=f"mqtt/{LIBRARY}", load=cluster.gens.describe())
            if conf:
                res["conf"] = conf
            return res
        res = _guard(f"{algorithm} {nodes}n", one, log, label=f"{algorithm} {nodes}n",
                     system=algorithm, nodes=nodes)
        log(f"{res.get('label')}: max sustained {res.get('max_sustained_ops_s', 0):,.0f} ops/s")
        out.append(res)

    def pso(conf: str, light_only: bool) -> dict[str, Any]:
        try:
            import pysyncobj  # noqa: F401
        except ImportError:
            raise RuntimeError("PySyncObj is not installed: pip install -e '.[bench]'") from None
        cluster = PySyncObjCluster(3, conf)
        try:
            if light_only:
                from consensus.bench.throughput import LIGHT_RATE

                step = cluster.step(LIGHT_RATE, plan.step_s)
                res = {"label": cluster.label, "latency": {"light": step.to_json()}}
            else:
                res = measure(cluster, step_s=plan.step_s, start=plan.start_rate,
                              bisections=plan.bisections, log=log)
        finally:
            cluster.close()
        res.update(system="pysyncobj", conf=conf, nodes=3, fsync=False,
                   transport="tcp (its own)", pysyncobj_log=cluster.warnings(),
                   load={"requests issued in": "the 3 node processes, a third of the rate "
                         "each, open loop, callbacks"})
        return res
    res = _guard("pysyncobj", lambda: pso("default", False), log, label="pysyncobj 3n",
                 system="pysyncobj")
    log(f"pysyncobj 3n: max sustained {res.get('max_sustained_ops_s', 0):,.0f} ops/s")
    out.append(res)
    out.append(_guard("pysyncobj low-latency", lambda: pso("low-latency", True), log,
                      label="pysyncobj 3n low-latency", system="pysyncobj"))
    return out


def _failover(algorithm: str, url: str, plan: Plan, log: Callable[[str], None]) -> dict:
    from consensus.bench.failover import measure_failover

    res = measure_failover(algorithm, url, plan.failover_rounds, 3, log=log)
    log(f"failover {algorithm}: p50 {res['p50_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms")
    return res


def _simulator(plan: Plan, log: Callable[[str], None]) -> list[dict[str, Any]]:
    from consensus.simulate import simulate

    out = []
    for algorithm in ("raft", "paxos"):
        r = simulate(algorithm, 5, plan.sim_seconds, seed=1, faults="none", settle_s=1.0)
        out.append({"algorithm": algorithm, "nodes": 5, "simulated_s": r.simulated_s,
                    "wall_s": round(r.wall_s, 3), "speedup": round(r.speedup, 1),
                    "committed": r.committed, "messages": r.messages, "safe": r.safe})
        log(f"simulator {algorithm}: {r.speedup:,.0f}x real time ({r.committed:,} commits)")
    return out


def _checker(log: Callable[[str], None]) -> dict[str, Any]:
    from consensus.check.bench_linearizability import run_bench as check_bench

    r = check_bench(100_000)
    log(str(r))
    return {"ops": r.ops, "keys": r.keys, "info_ops": r.info_ops,
            "generate_s": round(r.generate_s, 3), "check_s": round(r.check_s, 3),
            "verdict": str(getattr(r.result.verdict, "value", r.result.verdict))}


def _find(systems: list[dict[str, Any]], system: str, nodes: int = 3,
          conf: str | None = None) -> dict[str, Any] | None:
    for s in systems:
        if (s.get("system") == system and s.get("nodes") == nodes and "error" not in s
                and s.get("conf", None) == conf and "max_sustained_ops_s" in s):
            return s
    return None


def _ratios(systems: list[dict[str, Any]]) -> dict[str, float | None]:
    pso = _find(systems, "pysyncobj", conf="default")
    null = _find(systems, "null")
    out: dict[str, float | None] = {}
    for algorithm in ("raft", "paxos"):
        for conf, suffix in ((None, ""), ("no-fsync", " no-fsync")):
            s = _find(systems, algorithm, conf=conf)
            mine = s["max_sustained_ops_s"] if s else None
            for other, label in ((pso, "PySyncObj"), (null, "null protocol")):
                theirs = other["max_sustained_ops_s"] if other else None
                out[f"{algorithm}{suffix} / {label}"] = (mine / theirs if mine and theirs
                                                         else None)
    return out


def _goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    systems = result.get("throughput") or []
    ratios = result.get("ratios") or {}
    # Our default (fsync on), then like for like with PySyncObj (no fsync).
    for algorithm, conf, suffix in (("raft", None, ""), ("paxos", None, ""),
                                    ("raft", "no-fsync", " no-fsync"),
                                    ("paxos", "no-fsync", " no-fsync")):
        r = ratios.get(f"{algorithm}{suffix} / PySyncObj")
        goals.append({"goal": f"{algorithm} 3n{suffix} max throughput >= 1.5x PySyncObj",
                      "measured": "-" if r is None else f"{r:.2f}x",
                      "met": r is not None and r >= 1.5})
        s = _find(systems, algorithm, conf=conf)
        p50 = (s or {}).get("latency", {}).get("light", {}).get("p50_ms")
        goals.append({"goal": f"{algorithm} 3n{suffix} p50 at 100 ops/s < 1 ms",
                      "measured": "-" if p50 is None else f"{p50:.2f} ms",
                      "met": p50 is not None and p50 < 1.0})
    for f in result.get("failover") or []:
        p99 = f.get("p99_ms")
        goals.append({"goal": f"{f.get('algorithm')} failover p99 < 400 ms",
                      "measured": "-" if p99 is None else f"{p99:.0f} ms",
                      "met": p99 is not None and p99 < 400})
    sims = result.get("simulator")
    if isinstance(sims, list):
        for s in sims:
            goals.append({"goal": f"simulator ({s['algorithm']}, 5 nodes) >= 200x real time",
                          "measured": f"{s['speedup']:,.0f}x", "met": s["speedup"] >= 200})
    chk = result.get("checker") or {}
    if "check_s" in chk:
        goals.append({"goal": "checker < 2 s for 100k ops", "measured": f"{chk['check_s']:.2f} s",
                      "met": chk["check_s"] < 2.0})
    return goals


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [report.write_json(result, out)]
    manifest = out / "manifest.json"
    import json

    manifest.write_text(json.dumps(result["manifest"], indent=2))
    paths.append(manifest)
    paths += report.charts(result, out)
    paths.append(report.write_markdown(result, out))
    return paths
