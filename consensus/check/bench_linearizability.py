"""A deterministic, realistic history generator and a timing of the linearizability checker.

The generator plays what a healthy cluster would produce: ``clients`` closed-loop clients,
each invoking one command at a time on a key drawn from a Zipf-like distribution, with
latencies of a few milliseconds and, now and then, a slow request that spans a leader change
(hundreds of milliseconds, overlapping many others). Every operation gets a linearization point
inside its interval, and the commands are applied to the real :class:`consensus.kv.KVStore` in
the order of those points, so the results are exactly what a linearizable system returns.
A few operations end with an unknown outcome (``info``: the client gave up, or the run ended);
about half of those took effect anyway, some of them observed by later reads.

Run it with ``python -m consensus.check.bench_linearizability [--ops N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from dataclasses import dataclass

from consensus.check.linearizability import LinearizabilityResult, check_history
from consensus.history import Operation
from consensus.kv import KVStore
from consensus.messages import Command, ReplyStatus

__all__ = ["BenchResult", "generate_history", "main", "run_bench"]


def generate_history(ops: int = 100_000, *, seed: int = 1, clients: int = 8, keys: int = 50,
                     read_ratio: float = 0.5, cas_ratio: float = 0.02, del_ratio: float = 0.01,
                     zipf_s: float = 1.0, slow_ratio: float = 0.01, info_ratio: float = 0.001,
                     ) -> list[Operation]:
    """A linearizable history of about ``ops`` operations, the same for the same arguments.

    Writes carry unique values (``SET k7 = c3-17``), as the workload's do. CAS commands expect
    the current value most of the time (they succeed) and an older one otherwise (``fail``).
    """
    rng = random.Random(f"bench-linearizability/{seed}")
    weights = list(itertools.accumulate(1 / (i + 1) ** zipf_s for i in range(keys)))
    key_names = [f"k{i}" for i in range(keys)]
    # 1. Intervals and linearization points, client by client.
    planned: list[tuple[float, str, int, str, str, float, float | None, bool, bool]] = []
    per_client = ops // clients
    for c in range(clients):
        client = f"c{c + 1}"
        t = rng.uniform(0.0, 5.0)
        for seq in range(1, per_client + 1):
            key = rng.choices(key_names, cum_weights=weights)[0]
            r = rng.random()
            kind = ("GET" if r < read_ratio else "CAS" if r < read_ratio + cas_ratio
                    else "DEL" if r < read_ratio + cas_ratio + del_ratio else "SET")
            latency = 0.3 + rng.expovariate(1 / 2.0)
            if rng.random() < slow_ratio:
                latency = rng.uniform(100.0, 1500.0)  # retried across a leader change
            invoke = t
            info = rng.random() < info_ratio or (seq == per_client and rng.random() < 0.5)
            if info:
                took_effect = rng.random() < 0.5
                point = invoke + rng.uniform(0.01, 2000.0)  # maybe after the client gave up
                complete = None
                t = invoke + 1000.0  # the request timeout: the client moves on
            else:
                took_effect = True
                point = invoke + rng.uniform(0.05, 0.95) * latency
                complete = invoke + latency
                t = complete
            t += rng.expovariate(1 / 1.0)  # think time
            planned.append((point, client, seq, key, kind, invoke, complete, info, took_effect))
    # 2. Apply them in the order of their linearization points to the real state machine.
    kv = KVStore()
    history: list[Operation] = []
    previous: dict[str, str] = {}  # key -> a value it held before (what a failing CAS expects)
    for _, client, seq, key, kind, invoke, complete, info, took_effect in sorted(planned):
        current = kv.data.get(key)
        if kind == "GET":
            text = f"GET {key}"
        elif kind == "DEL":
            text = f"DEL {key}"
        elif kind == "CAS" and current is not None:
            expected = current if rng.random() < 0.7 else previous.get(key, "none")
            text = f"CAS {key} {expected} {client}-{seq}"
        else:
            text = f"SET {key} = {client}-{seq}"
        op = Operation(client, seq, text, round(invoke, 3),
                       None if complete is None else round(complete, 3))
        if took_effect:
            out = kv.apply(Command(client, seq, text))
            assert out is not None
            if not info:
                op.outcome = "ok" if out.status == ReplyStatus.OK else "fail"
                op.result = out.result
        if current is not None and kv.data.get(key) != current:
            previous[key] = current
        history.append(op)
    history.sort(key=lambda o: (o.invoke_ms, o.client))
    return history


@dataclass(frozen=True, slots=True)
class BenchResult:
    ops: int
    keys: int
    info_ops: int
    generate_s: float
    check_s: float
    result: LinearizabilityResult

    def __str__(self) -> str:
        return (f"linearizability bench: {self.ops} ops, {self.keys} keys, "
                f"{self.info_ops} info; generated in {self.generate_s:.2f}s; "
                f"checked in {self.check_s:.2f}s: {self.result.verdict}")


def run_bench(ops: int = 100_000, *, seed: int = 1, time_budget_s: float = 60.0,
              **workload: float) -> BenchResult:
    """Generate a history (see :func:`generate_history`) and time :func:`check_history` on it."""
    t0 = time.perf_counter()
    history = generate_history(ops, seed=seed, **workload)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    result = check_history(history, time_budget_s=time_budget_s)
    t2 = time.perf_counter()
    return BenchResult(len(history), len(result.keys),
                       sum(1 for o in history if o.outcome == "info"), t1 - t0, t2 - t1, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--budget", type=float, default=60.0, help="time budget, seconds")
    args = parser.parse_args(argv)
    bench = run_bench(args.ops, seed=args.seed, time_budget_s=args.budget,
                      clients=args.clients, keys=args.keys)
    print(bench)
    return 0 if bench.result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
