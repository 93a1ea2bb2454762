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

SCHEMA = 2


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
            ("library", "msgs/s one way", "RTT p50 µs", "RTT p99 µs",
             "RTT p50 µs at idle (one per 10 ms)"),
            [(row["library"], f"{row['msgs_per_s']:,}", f"{row['rtt_p50_us']:.0f}",
              f"{row['rtt_p99_us']:.0f}",
              f"{row['rtt_idle_p50_us']:.0f}" if "rtt_idle_p50_us" in row else "-")
             for row in bus]))
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
                top = f"{s['max_sustained_ops_s']:,.0f}" + _confirmed(s)
            else:
                top = "(not searched)"
            rows.append((s["label"], s.get("mode", "over the broker"),
                         "yes" if s.get("fsync") else "no", top, *cells))
        out.append(Section(
            "2/5/6. Max sustained throughput (>=99% acked within 1 s; in brackets: how many "
            "trials at that rate held) and latency p50/p99 ms",
            ("system", "load", "fsync", "max ops/s", "100/s p50", "100/s p99", "50% p50",
             "50% p99", "90% p50", "90% p99"), rows, left=2))
    summary = result.get("summary") or []
    if any((r.get("max_sustained_ops_s") or {}).get("n", 0) > 1 for r in summary):
        rows = []
        for r in summary:
            m, p = r.get("max_sustained_ops_s"), r.get("light_p50_ms")
            rows.append((r["label"], str((m or p or {}).get("n", 0)),
                         "-" if not m else f"{m['median']:,.0f}",
                         "-" if not m else f"{m['min']:,.0f}-{m['max']:,.0f}",
                         "-" if not m or m["spread"] is None else f"{m['spread']:.0%}",
                         "-" if not p else f"{_ms(p['min'])}-{_ms(p['max'])}"))
        out.append(Section(
            "Over the runs: max sustained ops/s (median, range, spread = range / median) and "
            "p50 at 100 ops/s (ms)",
            ("system", "runs", "median", "range", "spread", "100/s p50 range"), rows))
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
            "(follower: each one; clients: the load generators; in-process rows: the "
            "generator runs in the leader)",
            ("system", *roles, "total"), cpu_rows))
    ratios = result.get("ratios") or {}
    if ratios:
        spans = result.get("ratio_ranges") or {}
        rows = [(k, "-" if v is None else f"{v:.2f}x") for k, v in ratios.items()]
        if spans:
            out.append(Section(
                "Ratios of max sustained throughput (3 nodes, medians over the runs)",
                ("ratio", "value", "range over the runs"),
                [(*row, f"{spans[k][0]:.2f}-{spans[k][1]:.2f}x" if k in spans else "-")
                 for row, k in zip(rows, ratios, strict=True)]))
        else:
            out.append(Section("Ratios of max sustained throughput (3 nodes)",
                               ("ratio", "value"), rows))
    memory = result.get("memory") or []
    if memory:
        out.append(_memory_section(memory))
    wire = [w for w in result.get("wire") or [] if w.get("by_kind")]
    if wire:
        out.append(_wire_section(wire, memory))
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
        out.append(Section("Goals (issue 15, and the earlier ones)", ("goal", "measured", "met"),
                           [(g["goal"], g["measured"], _met(g.get("met"))) for g in goals]))
    return out


def _met(met: bool | None) -> str:
    return "(shown)" if met is None else "yes" if met else "NO"


def _confirmed(s: dict[str, Any]) -> str:
    trials = (s.get("confirm") or {}).get("trials") or []
    rate = s.get("max_sustained_ops_s")
    for t in trials:
        if t["rate"] == rate:
            return f" ({t['sustained']}/{t['of']})"
    return ""


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _memory_section(memory: list[dict[str, Any]]) -> Section:
    rows = []
    for m in memory:
        compaction = (f"every {m['snapshot_entries']:,} entries" if m.get("snapshot_entries")
                      else "off")
        if "na" in m or "error" in m:
            why = m.get("na") or m.get("error") or ""
            rows.append((m.get("algorithm", "?"), compaction, "n/a", "n/a", "n/a", "n/a",
                         "n/a", why[:70]))
            continue
        leader, follower = m.get("leader") or {}, m.get("follower") or {}
        start = m.get("start") or {}
        data = m.get("data_bytes") or {}
        note = "leader changed during the run" if m.get("leader_changed") else ""
        rows.append((m["algorithm"], compaction, f"{m['acked']:,}",
                     f"{_mib((start.get('leader') or {}).get('rss_kib'))} -> "
                     f"{_mib(leader.get('peak_kib'))}",
                     f"{_mib((start.get('follower') or {}).get('rss_kib'))} -> "
                     f"{_mib(follower.get('peak_kib'))}",
                     f"{data.get('leader', 0) / 1e6:.0f}", f"{data.get('follower', 0) / 1e6:.0f}",
                     note))
    return Section(
        "Memory: RSS at start -> peak RSS (MiB) of a leader and a follower after the "
        "operations (3 nodes, fsync off, in-process load), and their WAL + snapshots (MB)",
        ("algorithm", "compaction", "operations", "leader MiB", "follower MiB", "leader disk MB",
         "follower disk MB", "note"), rows, left=2)


def _wire_section(wire: list[dict[str, Any]], memory: list[dict[str, Any]]) -> Section:
    rows = []
    for w in wire:
        for k in w["by_kind"]:
            rows.append((f"{w['algorithm']} over the broker, {w['rate']:,.0f} ops/s",
                         k["kind"], f"{k['messages_per_op']:.2f}", f"{k['bytes_per_op']:.0f}",
                         f"{k['topic_bytes_per_op']:.0f}"))
        rows.append((f"{w['algorithm']} over the broker, {w['rate']:,.0f} ops/s", "total",
                     f"{w['total_messages_per_op']:.2f}", f"{w['total_bytes_per_op']:.0f}", ""))
    for m in memory:
        if m.get("protocol_by_kind") and not m.get("snapshot_entries"):
            where = f"{m['algorithm']} in-process, {m['rate']:,.0f} ops/s (node counters)"
            for k in m["protocol_by_kind"]:
                rows.append((where, k["kind"], f"{k['messages_per_op']:.2f}",
                             f"{k['bytes_per_op']:.0f}", "-"))
    return Section(
        "Bytes on the wire per operation by message kind (payload bytes; MQTT adds the topic "
        "and 4-7 bytes per message; over the broker: counted at the broker by a subscriber; "
        "in-process: the nodes' own counters, protocol messages only)",
        ("where", "kind", "messages/op", "bytes/op", "topic bytes/op"), rows, left=2)


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
    compaction = {s.get("snapshot_entries") for s in result.get("throughput") or []} - {0, None}
    if compaction:
        lines += [f"In the throughput sections, Raft and Multi-Paxos compact their logs every "
                  f"{max(compaction):,} entries (etcd's default snapshot count), so a step "
                  "does not run on a heap grown by the steps before it.", ""]
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
            # Dashed: load issued inside the node processes (ours in-process, PySyncObj).
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                    ls="--" if s.get("mode") == "in-process" else "-", label=s["label"])
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
