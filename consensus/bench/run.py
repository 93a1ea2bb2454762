"""The whole benchmark, in one run: see :mod:`consensus.bench` and ``consensus-lab bench``."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from consensus.bench import report, runs

LIBRARY = "gmqtt"
ORDERS = ("forward", "reverse")


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
    repeats: int = 2  # extra trials of the search's maximum (search.confirm_max)
    memory_ops: int = 1_000_000
    memory_rate: float = 10_000.0
    snapshot_entries: int = 10_000  # the compacting runs of the memory section
    wire_rate: float = 1_000.0  # the broker-side byte count's step
    order: str = "forward"  # of the throughput systems: "reverse" runs PySyncObj first

    @classmethod
    def make(cls, quick: bool, order: str = "forward") -> Plan:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        if quick:
            return cls(True, 1.0, 1, (3,), 3, 20_000, 300, ("gmqtt",), 10.0,
                       memory_ops=50_000, memory_rate=8_000.0, snapshot_entries=5_000,
                       order=order)
        return cls(False, 3.0, 3, (3, 5), 10, 100_000, 2000, ("gmqtt", "aiomqtt"), 60.0,
                   order=order)


def _guard(section: str, fn: Callable[[], Any], log: Callable[[str], None],
           **context: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # one broken section must not lose the others' figures
        log(f"[red]{section} failed: {exc}")
        traceback.print_exc()
        return {**context, "error": f"{type(exc).__name__}: {exc}"}


def run_bench(quick: bool = False, log: Callable[[str], None] = print, *,
              order: str = "forward", runs: int = 1) -> dict[str, Any]:
    """The whole benchmark. ``runs`` > 1 repeats the throughput section, alternating the
    order of its systems (``order`` first, then the other), so that the report can quote each
    figure's range (see :mod:`consensus.bench.runs`)."""
    from consensus.broker import find_mosquitto, start_broker

    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    if find_mosquitto() is None:
        raise NoMosquitto("the benchmark runs on a real mosquitto and none is installed "
                          "(Debian: apt-get install mosquitto); the embedded amqtt broker is "
                          "an order of magnitude slower and would measure itself")
    plan = Plan.make(quick, order)
    started = time.perf_counter()
    handle = start_broker(prefer="mosquitto")
    broker = {"kind": handle.kind, "url": handle.url, "version": _mosquitto_version()}
    log(f"broker: {handle.kind} {broker['version']} at {handle.url}; client library {LIBRARY}")
    result: dict[str, Any] = {"manifest": report.manifest(broker, LIBRARY),
                              "plan": {k: getattr(plan, k) for k in plan.__slots__}}
    try:
        result["bus"] = _guard("bus", lambda: _bus(handle.url, plan, log), log)
        result["throughput_runs"] = []
        for i in range(runs):
            this = plan if i % 2 == 0 else replace(plan, order=_other(plan.order))
            log(f"throughput run {i + 1} of {runs}, order {this.order}")
            result["throughput_runs"].append(_throughput(handle.url, this, log, handle.pid))
        result["throughput"] = result["throughput_runs"][0]
        result["wire"] = [_guard(f"wire {a}", lambda a=a: _wire(a, handle.url, plan, log), log,
                                 algorithm=a) for a in ("raft", "paxos")]
        result["memory"] = [
            _guard(f"memory {a}", lambda a=a, n=n: _memory(a, n, handle.url, plan, log,
                                                          handle.pid), log,
                   algorithm=a, snapshot_entries=n)
            for a in ("raft", "paxos") for n in (0, plan.snapshot_entries)]
        result["failover"] = [
            _guard(f"failover {a}", lambda a=a: _failover(a, handle.url, plan, log), log,
                   algorithm=a) for a in ("raft", "paxos")]
    finally:
        handle.stop()
    result["simulator"] = _guard("simulator", lambda: _simulator(plan, log), log)
    result["checker"] = _guard("checker", lambda: _checker(log), log)
    finish(result)
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
        row = asyncio.run(bench_transport(url, lib, messages, 200, plan.rtt_samples,
                                          idle_samples=min(200, plan.rtt_samples)))
        log(f"bus {lib}: {row['msgs_per_s']:,} msgs/s one way, RTT p50 {row['rtt_p50_us']:.0f}"
            f" µs p99 {row['rtt_p99_us']:.0f} µs, at idle p50 {row['rtt_idle_p50_us']:.0f} µs")
        rows.append(row)
    return rows


def _other(order: str) -> str:
    return "reverse" if order == "forward" else "forward"


def _conf(load: str, fsync: bool, algorithm: str) -> str | None:
    """The row's configuration apart from the defaults (bus load, fsync on); the null
    protocol never fsyncs, so that is not a configuration of it."""
    parts = (["in-process"] if load == "in-process" else []) + (
        ["no-fsync"] if not fsync and algorithm != "null" else [])
    return " ".join(parts) or None


def _targets(plan: Plan) -> list[tuple[str, int, bool, str]]:
    """(system, nodes, fsync, load), in the order the report lists them: our default (fsync
    on, over the broker) on every size; like for like with PySyncObj (which keeps its log in
    memory), 3 nodes with fsync off; the same with the load inside the leader's process
    (PySyncObj's own shape), fsync on and off; the null protocol; PySyncObj."""
    return ([(a, n, True, "bus") for n in plan.sizes for a in ("raft", "paxos")]
            + [(a, 3, False, "bus") for a in ("raft", "paxos")]
            + [(a, 3, f, "in-process") for f in (True, False) for a in ("raft", "paxos")]
            + [("null", 3, False, "bus"), ("pysyncobj", 3, False, "tcp"),
               ("pysyncobj low-latency", 3, False, "tcp")])


def _throughput(url: str, plan: Plan, log: Callable[[str], None],
                broker_pid: int | None = None) -> list[dict[str, Any]]:
    """Every system of :func:`_targets`, run in ``plan.order``, listed in the report's order
    (each row says when it ran: ``position``)."""
    targets = _targets(plan)
    run_order = targets if plan.order == "forward" else targets[::-1]
    rows: dict[int, dict[str, Any]] = {}
    for position, target in enumerate(run_order):
        res = _one_system(target, url, plan, log, broker_pid)
        res["position"] = position
        rows[targets.index(target)] = res
    return [rows[i] for i in range(len(targets))]


def _one_system(target: tuple[str, int, bool, str], url: str, plan: Plan,
                log: Callable[[str], None], broker_pid: int | None) -> dict[str, Any]:
    from consensus.bench.throughput import SNAPSHOT_ENTRIES, BusCluster, measure

    system, nodes, fsync, load = target
    if system.startswith("pysyncobj"):
        conf = "low-latency" if system.endswith("low-latency") else "default"
        label = "pysyncobj 3n" + ("" if conf == "default" else f" {conf}")
        res = _guard(label, lambda: _pysyncobj(conf, conf != "default", plan, log), log,
                     label=label, system="pysyncobj", conf=conf, nodes=3)
        if "max_sustained_ops_s" in res:
            log(f"{label}: max sustained {res['max_sustained_ops_s']:,.0f} ops/s")
        return res
    conf = _conf(load, fsync, system)

    def one() -> dict[str, Any]:
        cluster = BusCluster(system, nodes, url, fsync=fsync, generators=plan.generators,
                             connections=plan.connections, ids=plan.ids,
                             broker_pid=broker_pid, load=load)
        cluster.label = f"{system} {nodes}n" + (f" {conf}" if conf else "")
        try:
            res = measure(cluster, step_s=plan.step_s, start=plan.start_rate,
                          bisections=plan.bisections, repeats=plan.repeats, log=log)
        finally:
            cluster.close()
        res.update(system=system, nodes=nodes, fsync=cluster.fsync, mode=_MODES[load],
                   transport=f"mqtt/{LIBRARY}", load=cluster.describe(),
                   snapshot_entries=SNAPSHOT_ENTRIES if system != "null" else 0)
        if conf:
            res["conf"] = conf
        return res

    label = f"{system} {nodes}n" + (f" {conf}" if conf else "")
    res = _guard(label, one, log, label=label, system=system, nodes=nodes, fsync=fsync,
                 mode=_MODES[load], **({"conf": conf} if conf else {}))
    log(f"{res.get('label')}: max sustained {res.get('max_sustained_ops_s', 0):,.0f} ops/s")
    return res


_MODES = {"bus": "over the broker", "in-process": "in-process", "tcp": "in-process"}


def _pysyncobj(conf: str, light_only: bool, plan: Plan,
               log: Callable[[str], None]) -> dict[str, Any]:
    from consensus.bench.pysyncobj_bench import PySyncObjCluster
    from consensus.bench.throughput import LIGHT_RATE, measure

    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        raise RuntimeError("PySyncObj is not installed: pip install -e '.[bench]'") from None
    cluster = PySyncObjCluster(3, conf)
    try:
        if light_only:
            cluster.settle()
            step = cluster.step(LIGHT_RATE, plan.step_s)
            res = {"label": cluster.label, "latency": {"light": step.to_json()}}
        else:
            res = measure(cluster, step_s=plan.step_s, start=plan.start_rate,
                          bisections=plan.bisections, repeats=plan.repeats, log=log)
    finally:
        cluster.close()
    res.update(system="pysyncobj", conf=conf, nodes=3, fsync=False, mode="in-process",
               transport="tcp (its own)", pysyncobj_log=cluster.warnings(),
               restarted=cluster.restarted,
               load={"requests issued in": "the 3 node processes, a third of the rate "
                     "each, open loop, callbacks"})
    return res


def _wire(algorithm: str, url: str, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    from consensus.bench.throughput import BusCluster
    from consensus.bench.wire import measure_wire

    cluster = BusCluster(algorithm, 3, url, fsync=False, generators=plan.generators,
                         connections=plan.connections, ids=plan.ids)
    try:
        res = measure_wire(cluster, plan.wire_rate, max(plan.step_s, 2.0))
    finally:
        cluster.close()
    res.update(algorithm=algorithm, fsync=False)
    log(f"wire {algorithm}: {res['total_bytes_per_op']:,.0f} payload bytes and "
        f"{res['total_messages_per_op']:.1f} messages per operation at {plan.wire_rate:,.0f}"
        f" ops/s")
    return res


def _memory(algorithm: str, snapshot_entries: int, url: str, plan: Plan,
            log: Callable[[str], None], broker_pid: int | None) -> dict[str, Any]:
    from consensus.bench.memory import measure_memory

    res = measure_memory(algorithm, url, ops=plan.memory_ops, rate=plan.memory_rate,
                         snapshot_entries=snapshot_entries, broker_pid=broker_pid,
                         chunk_s=max(plan.step_s, 5.0), log=log)
    if "na" in res:
        log(f"memory {algorithm} snapshot_entries={snapshot_entries}: n/a ({res['na']})")
    else:
        log(f"memory {algorithm} snapshot_entries={snapshot_entries}: peak RSS leader "
            f"{res['leader']['peak_kib'] / 1024:.0f} MiB, follower "
            f"{res['follower']['peak_kib'] / 1024:.0f} MiB after {res['acked']:,} operations")
    return res


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


# Our rows against PySyncObj and the null protocol: (conf, suffix of the ratio's name).
CONFS = ((None, ""), ("no-fsync", " no-fsync"), ("in-process", " in-process"),
         ("in-process no-fsync", " in-process no-fsync"))


def _ratios(systems: list[dict[str, Any]]) -> dict[str, float | None]:
    pso = _find(systems, "pysyncobj", conf="default")
    null = _find(systems, "null")
    out: dict[str, float | None] = {}
    for algorithm in ("raft", "paxos"):
        for conf, suffix in CONFS:
            s = _find(systems, algorithm, conf=conf)
            mine = s["max_sustained_ops_s"] if s else None
            for other, label in ((pso, "PySyncObj"), (null, "null protocol")):
                theirs = other["max_sustained_ops_s"] if other else None
                out[f"{algorithm}{suffix} / {label}"] = (mine / theirs if mine and theirs
                                                         else None)
    return out


def _ratio_ranges(runs_: list[list[dict[str, Any]]]) -> dict[str, list[float]]:
    """Each ratio's [min, max] over the runs (each run's own PySyncObj and null rows)."""
    per_run = [_ratios(rows) for rows in runs_]
    out: dict[str, list[float]] = {}
    for key in per_run[0] if per_run else ():
        values = [r[key] for r in per_run if r.get(key) is not None]
        if len(values) > 1:
            out[key] = [round(min(values), 3), round(max(values), 3)]
    return out


def _goal(goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    """``met`` None: a figure the goals table shows without a pass/fail of its own."""
    return {"goal": goal, "measured": measured, "met": met}


def _ratio_text(r: float | None, span: list[float] | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" + (f" ({span[0]:.2f}-{span[1]:.2f}x over the runs)" if span else "")


def _goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's goals, then the earlier ones that still hold (simulator, checker)."""
    goals = []
    runs_ = runs.all_runs(result)
    systems = runs.representative(runs_) if runs_ else []
    ratios = result.get("ratios") or {}
    spans = result.get("ratio_ranges") or {}
    for conf, suffix in CONFS:
        fsync_on = "no-fsync" not in (conf or "")
        for algorithm in ("raft", "paxos"):
            key = f"{algorithm}{suffix} / PySyncObj"
            r = ratios.get(key)
            if fsync_on:  # PySyncObj never fsyncs: the ratio is shown, not judged
                goals.append(_goal(f"{algorithm} 3n{suffix} (fsync on) vs PySyncObj, sustained",
                                   _ratio_text(r, spans.get(key)), None))
            else:
                goals.append(_goal(f"{algorithm} 3n{suffix} >= 1.5x PySyncObj sustained",
                                   _ratio_text(r, spans.get(key)),
                                   r is not None and r >= 1.5))
    p50_spans = {r["label"]: r["light_p50_ms"] for r in result.get("summary") or []}
    for conf, suffix in CONFS:
        limit = 2.0 if "no-fsync" not in (conf or "") else 1.0
        for algorithm in ("raft", "paxos"):
            s = _find(systems, algorithm, conf=conf)
            p50 = ((s or {}).get("latency", {}).get("light") or {}).get("p50_ms")
            span = p50_spans.get((s or {}).get("label", "")) or {}
            text = "-" if p50 is None else f"{p50:.2f} ms" + (
                f" ({span['min']:.2f}-{span['max']:.2f} over the runs)"
                if span.get("n", 0) > 1 else "")
            goals.append(_goal(f"{algorithm} 3n{suffix} p50 at 100 ops/s < {limit:g} ms", text,
                               p50 is not None and p50 < limit))
    idle = next((b["rtt_idle_p50_us"] for b in result.get("bus") or []
                 if b.get("library") == LIBRARY and "rtt_idle_p50_us" in b), None)
    if idle is not None:
        # A write crosses the broker 4 times over it (client, followers, back, client) and
        # twice in-process: that many idle hops is the floor under those p50s.
        goals.append(_goal("the bus's floor under those p50s: 4 broker passes at idle (over "
                           "the broker), 2 (in-process)",
                           f"{2 * idle / 1000:.2f} ms / {idle / 1000:.2f} ms", None))
    for f in result.get("failover") or []:
        p99 = f.get("p99_ms")
        goals.append(_goal(f"{f.get('algorithm')} failover p99 < 400 ms",
                           "-" if p99 is None else f"{p99:.0f} ms",
                           p99 is not None and p99 < 400))
    sims = result.get("simulator")
    if isinstance(sims, list):
        for s in sims:
            goals.append(_goal(f"simulator ({s['algorithm']}, 5 nodes) >= 200x real time",
                               f"{s['speedup']:,.0f}x", s["speedup"] >= 200))
    chk = result.get("checker") or {}
    if "check_s" in chk:
        goals.append(_goal("checker < 2 s for 100k ops", f"{chk['check_s']:.2f} s",
                           chk["check_s"] < 2.0))
    return goals


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """The figures computed from the measured ones: per-system medians and ranges over the
    runs, the ratios (of the medians) and their ranges, the goals. Called again on a merge."""
    runs_ = runs.all_runs(result)
    result["summary"] = runs.summarize(runs_)
    result["ratios"] = _ratios(runs.representative(runs_))
    result["ratio_ranges"] = _ratio_ranges(runs_)
    result["goals"] = _goals(result)
    return result


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
