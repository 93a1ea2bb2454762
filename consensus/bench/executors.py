"""How the sweep executors scale on this machine, and what Dask adds per job.

``python -m consensus.bench.executors [--seeds N] [--workers 1,2,4]`` runs the same sweep
seeds (both algorithms, the sweep's settings: 5 nodes, 10 simulated seconds) on the local
process pool and on a Dask ``LocalCluster`` with each worker count, checks that every backend
gives the same trace hashes, and prints seeds/s, the speed-up over one local worker and the
per-job overhead (an empty job, unchunked, timed over many). The ideal is linear up to the
core count and flat beyond it; the overhead says how short a job can be before a backend stops
paying off (overhead / job time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from consensus.executor import Executor, parse_executor
from consensus.sweep import SeedJob, SweepSettings, run_seed

EMPTY_JOBS = 1000


def _empty(x: int) -> int:
    return x


def measure(kind: str, workers: int, jobs: list[SeedJob]) -> dict[str, Any]:
    """One backend and worker count: seeds/s over ``jobs``, and the empty-job overhead."""
    with Executor(parse_executor(kind, workers)) as ex:
        list(ex.map(_empty, [0] * workers, chunk=1))  # workers up and importing before timing
        started = time.perf_counter()
        hashes = {i: r["trace_sha256"] for i, r in ex.map(run_seed, jobs)}
        wall = time.perf_counter() - started
        started = time.perf_counter()
        list(ex.map(_empty, list(range(EMPTY_JOBS)), chunk=1))
        overhead_ms = (time.perf_counter() - started) / EMPTY_JOBS * 1000
    return {"executor": kind, "workers": workers, "seeds": len(jobs), "wall_s": wall,
            "seeds_per_s": len(jobs) / wall, "overhead_ms_per_job": overhead_ms,
            "hashes": [hashes[i] for i in range(len(jobs))]}


def run(seeds: int, worker_counts: list[int], kinds: tuple[str, ...] = ("local", "dask"),
        log: Any = print) -> list[dict[str, Any]]:
    jobs = [SeedJob(SweepSettings(), algorithm, seed)
            for seed in range(1, seeds + 1) for algorithm in ("raft", "paxos")]
    rows = []
    for kind in kinds:
        for workers in worker_counts:
            row = measure(kind, workers, jobs)
            log(f"{kind} x{workers}: {row['seeds_per_s']:.2f} seeds/s, "
                f"{row['overhead_ms_per_job']:.2f} ms per empty job")
            rows.append(row)
    reference = rows[0]["hashes"]
    for row in rows:
        row["same_hashes"] = row.pop("hashes") == reference
        row["speedup"] = row["seeds_per_s"] / rows[0]["seeds_per_s"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"cores: {os.cpu_count()}, {rows[0]['seeds']} seeds per row "
             "(both algorithms, 5 nodes, 10 s simulated each)",
             "| executor | workers | seeds/s | speed-up | overhead per empty job | same hashes |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['seeds_per_s']:.2f} | "
              f"{r['speedup']:.2f}x | {r['overhead_ms_per_job']:.2f} ms | "
              f"{'yes' if r['same_hashes'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench.executors",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="seeds per algorithm (12)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (1,2,4)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    rows = run(args.seeds, counts, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0 if all(r["same_hashes"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
