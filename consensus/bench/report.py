"""The benchmark's outputs: a rich table, ``bench.json``, charts and the manifest."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.table import Table

SCHEMA = 1


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def manifest(broker: dict[str, Any], library: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    git: dict[str, Any] = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, text=True,
                                       capture_output=True, check=True).stdout.strip()
        git["dirty"] = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root,
                                           text=True, capture_output=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        git["commit"] = None
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "schema": SCHEMA, "git": git, "broker": broker, "mqtt_client": library,
        "versions": {"python": platform.python_version(),
                     **{d: _version(d) for d in ("consensus-lab", "gmqtt", "aiomqtt", "orjson",
                                                 "pysyncobj", "matplotlib")}},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu,
                    "loadavg_at_start": list(os.getloadavg())},
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def tables(result: dict[str, Any]) -> list[Table]:
    out = []
    bus = result.get("bus") or []
    if bus:
        t = Table(title="1. Bus ceiling (mosquitto, QoS 0, 200-byte payloads)")
        for col in ("library", "msgs/s one way", "RTT p50 µs", "RTT p99 µs"):
            t.add_column(col, justify="right")
        for row in bus:
            t.add_row(row["library"], f"{row['msgs_per_s']:,}", f"{row['rtt_p50_us']:.0f}",
                      f"{row['rtt_p99_us']:.0f}")
        out.append(t)
    systems = result.get("throughput") or []
    if systems:
        t = Table(title="2/5/6. Max sustained throughput (>=99% acked within 1 s) and latency "
                        "p50/p99 ms")
        for col in ("system", "fsync", "max ops/s", "100/s p50", "100/s p99", "50% p50",
                    "50% p99", "90% p50", "90% p99"):
            t.add_column(col, justify="right")
        for s in systems:
            lat = s.get("latency", {})
            cells = []
            for point in ("light", "50%", "90%"):
                p = lat.get(point) or {}
                cells += [_ms(p.get("p50_ms")), _ms(p.get("p99_ms"))]
            if "error" in s:
                top = f"error: {s['error'][:40]}"
            elif "max_sustained_ops_s" in s:
                top = f"{s['max_sustained_ops_s']:,.0f}"
            else:
                top = "(not searched)"
            t.add_row(s["label"], "yes" if s.get("fsync") else "no", top, *cells)
        out.append(t)
    cpu_rows = [(s, (s.get("latency", {}).get("50%") or {}).get("extra", {})
                 .get("cpu_us_per_op")) for s in systems]
    if any(cpu for _, cpu in cpu_rows):
        t = Table(title="Where the CPU goes at 50% of the maximum: µs of CPU per operation "
                        "(follower: each one; clients: the load generators)")
        roles = ("leader", "follower", "broker", "clients")
        for col in ("system", *roles, "total"):
            t.add_column(col, justify="right")
        for s, cpu in cpu_rows:
            if not cpu:
                continue
            total = (sum(cpu.get(r, 0.0) for r in ("leader", "broker", "clients"))
                     + cpu.get("follower", 0.0) * (s.get("nodes", 1) - 1))
            t.add_row(s["label"], *(f"{cpu[r]:.0f}" if r in cpu else "-" for r in roles),
                      f"{total:.0f}")
        out.append(t)
    ratios = result.get("ratios") or {}
    if ratios:
        t = Table(title="Ratios of max sustained throughput (3 nodes)")
        t.add_column("ratio")
        t.add_column("value", justify="right")
        for k, v in ratios.items():
            t.add_row(k, "-" if v is None else f"{v:.2f}x")
        out.append(t)
    fails = result.get("failover") or []
    if fails:
        t = Table(title="3. Failover: kill -9 of the leader -> first acknowledged write (3 nodes)")
        for col in ("algorithm", "rounds", "p50 ms", "p99 ms", "max ms"):
            t.add_column(col, justify="right")
        for f in fails:
            if "error" in f:
                t.add_row(f.get("algorithm", "?"), "error", f["error"][:60], "", "")
                continue
            t.add_row(f["algorithm"], str(f["rounds"]), _ms(f["p50_ms"]), _ms(f["p99_ms"]),
                      _ms(f["max_ms"]))
        out.append(t)
    other = result.get("simulator") or []
    chk = result.get("checker")
    if other or chk:
        t = Table(title="4. Simulator speed and linearizability checker")
        t.add_column("what")
        t.add_column("figure", justify="right")
        for s in other:
            t.add_row(f"simulate {s['algorithm']} {s['nodes']} nodes, faults none, "
                      f"{s['committed']:,} commits",
                      f"{s['speedup']:,.0f}x real time")
        if chk:
            t.add_row(f"check {chk['ops']:,} ops ({chk['keys']} keys), {chk['verdict']}",
                      f"{chk['check_s']:.2f} s")
        out.append(t)
    goals = result.get("goals") or []
    if goals:
        t = Table(title="Goals of issue 8")
        t.add_column("goal")
        t.add_column("measured", justify="right")
        t.add_column("met")
        for g in goals:
            t.add_row(g["goal"], g["measured"], "yes" if g["met"] else "NO")
        out.append(t)
    return out


def write_json(result: dict[str, Any], out: Path) -> Path:
    path = out / "bench.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Throughput vs latency (p50 and p99) for every system measured, sustained steps only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in result.get("throughput") or [] if "search" in s]
    if not systems:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, title in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
        for s in systems:
            steps = list(s["search"]["steps"]) + list(s["latency"].values())
            # Sustained steps only: past the maximum the curve is the overload's noise.
            pts = sorted((st["throughput"], st[key]) for st in steps
                         if st.get(key) is not None and st["offered"] and st["sustained"])
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                    label=s["label"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1000, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("acknowledged within 1 s (ops/s)")
        ax.set_title(f"latency {title} vs throughput")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "throughput_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
