"""The benchmark's outputs: rich tables, ``bench.json``, a Markdown page, charts, the manifest.

``python -m consensus.bench.report reports/bench/bench.json`` rebuilds the Markdown page
(``README.md`` beside it) from a recorded ``bench.json`` without rerunning the benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Section:
    """One table of the benchmark's results, rendered both as a rich table and as Markdown."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    left: int = 1  # how many leading columns are text (left-aligned); the rest are figures


def sections(result: dict[str, Any]) -> list[Section]:
    out = []
    bus = result.get("bus") or []
    if bus:
        out.append(Section(
            "1. Bus ceiling (mosquitto, QoS 0, 200-byte payloads)",
            ("library", "msgs/s one way", "RTT p50 µs", "RTT p99 µs"),
            [(row["library"], f"{row['msgs_per_s']:,}", f"{row['rtt_p50_us']:.0f}",
              f"{row['rtt_p99_us']:.0f}") for row in bus]))
    systems = result.get("throughput") or []
    if systems:
        rows = []
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
            rows.append((s["label"], "yes" if s.get("fsync") else "no", top, *cells))
        out.append(Section(
            "2/5/6. Max sustained throughput (>=99% acked within 1 s) and latency p50/p99 ms",
            ("system", "fsync", "max ops/s", "100/s p50", "100/s p99", "50% p50", "50% p99",
             "90% p50", "90% p99"), rows))
    cpu_rows = []
    roles = ("leader", "follower", "broker", "clients")
    for s in systems:
        cpu = (s.get("latency", {}).get("50%") or {}).get("extra", {}).get("cpu_us_per_op")
        if not cpu:
            continue
        total = (sum(cpu.get(r, 0.0) for r in ("leader", "broker", "clients"))
                 + cpu.get("follower", 0.0) * (s.get("nodes", 1) - 1))
        cpu_rows.append((s["label"], *(f"{cpu[r]:.0f}" if r in cpu else "-" for r in roles),
                         f"{total:.0f}"))
    if cpu_rows:
        out.append(Section(
            "Where the CPU goes at 50% of the maximum: µs of CPU per operation "
            "(follower: each one; clients: the load generators)",
            ("system", *roles, "total"), cpu_rows))
    ratios = result.get("ratios") or {}
    if ratios:
        out.append(Section("Ratios of max sustained throughput (3 nodes)", ("ratio", "value"),
                           [(k, "-" if v is None else f"{v:.2f}x") for k, v in ratios.items()]))
    fails = result.get("failover") or []
    if fails:
        rows = []
        for f in fails:
            if "error" in f:
                rows.append((f.get("algorithm", "?"), "error", f["error"][:60], "", ""))
            else:
                rows.append((f["algorithm"], str(f["rounds"]), _ms(f["p50_ms"]),
                             _ms(f["p99_ms"]), _ms(f["max_ms"])))
        out.append(Section(
            "3. Failover: kill -9 of the leader -> first acknowledged write (3 nodes)",
            ("algorithm", "rounds", "p50 ms", "p99 ms", "max ms"), rows))
    other = result.get("simulator") or []
    chk = result.get("checker")
    if other or chk:
        rows = [(f"simulate {s['algorithm']} {s['nodes']} nodes, faults none, "
                 f"{s['committed']:,} commits", f"{s['speedup']:,.0f}x real time")
                for s in other]
        if chk:
            rows.append((f"check {chk['ops']:,} ops ({chk['keys']} keys), {chk['verdict']}",
                         f"{chk['check_s']:.2f} s"))
        out.append(Section("4. Simulator speed and linearizability checker",
                           ("what", "figure"), rows))
    goals = result.get("goals") or []
    if goals:
        out.append(Section("Goals of issue 8", ("goal", "measured", "met"),
                           [(g["goal"], g["measured"], "yes" if g["met"] else "NO")
                            for g in goals]))
    return out


def tables(result: dict[str, Any]) -> list[Table]:
    out = []
    for section in sections(result):
        t = Table(title=section.title)
        for i, col in enumerate(section.columns):
            t.add_column(col, justify="left" if i < section.left else "right")
        for row in section.rows:
            t.add_row(*row)
        out.append(t)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The same tables as the terminal shows, as a Markdown page for ``reports/bench/``."""
    m = result.get("manifest") or {}
    machine = m.get("machine") or {}
    broker = m.get("broker") or {}
    git = m.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    lines = [
        "# Benchmark",
        "",
        "Written by `consensus-lab bench` (`make bench`) from the run recorded in "
        "[bench.json](bench.json); its manifest is [manifest.json](manifest.json). "
        "`python -m consensus.bench.report reports/bench/bench.json` rebuilds this page from "
        "bench.json without rerunning the benchmark.",
        "",
        f"Commit {commit}; {machine.get('cpus', '?')} CPUs ({machine.get('cpu') or '?'}); "
        f"broker {broker.get('kind', '?')} {broker.get('version') or ''}".rstrip()
        + f"; MQTT client {m.get('mqtt_client', '?')}"
        + (f"; {m['wall_s']:.0f} s wall" if isinstance(m.get("wall_s"), int | float) else "")
        + ". The broker, the nodes and the load generators share the machine, so figures vary "
        "from run to run.",
        "",
    ]
    for section in sections(result):
        lines += [f"## {section.title}", "", _md_table(section), ""]
    if any("search" in s for s in result.get("throughput") or []):
        lines += ["## Latency against throughput", "",
                  "![latency p50 and p99 against throughput, sustained steps only]"
                  "(throughput_latency.png)", ""]
    return "\n".join(lines)


def _md_table(section: Section) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    align = [":---" if i < section.left else "---:" for i in range(len(section.columns))]
    rows = [section.columns, *section.rows]
    out = ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows[:1]]
    out.append("| " + " | ".join(align) + " |")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(out)


def write_markdown(result: dict[str, Any], out: Path) -> Path:
    path = out / "README.md"
    path.write_text(markdown(result))
    return path


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


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild reports/bench/README.md from a "
                                                 "recorded bench.json (no benchmark is run).")
    parser.add_argument("bench_json", type=Path, nargs="?",
                        default=Path("reports/bench/bench.json"))
    args = parser.parse_args(argv)
    result = json.loads(args.bench_json.read_text())
    print(write_markdown(result, args.bench_json.parent))


if __name__ == "__main__":
    main()
