"""The bus ceiling: what one MQTT client library gets through one broker, before consensus.

Two measurements, both with two clients of the same library in this process (as a node's
runtime would use it) and the broker in another:

- one way: a publisher sends ``messages`` QoS 0 messages of ``payload_size`` bytes to one
  subscriber as fast as the library takes them; msgs/s is counted from the first publish
  to the last delivery. The publisher stays at most ``window`` messages ahead of the
  subscriber, so the figure is a sustained rate, not the speed of filling a socket
  buffer (and a broker queue limit never drops messages).
- round trip: a pinger publishes one message, a ponger echoes it on another topic, the
  pinger waits for the echo; p50/p99 over ``rtt_samples`` after a warm-up.
- round trip at idle: the same with a pause of ``IDLE_GAP_S`` after each echo, so every
  process involved has gone back to sleep before the next ping, as at light load (100 ops/s).
  On a virtual machine a sleeping process (and its virtual CPU) takes far longer to wake
  than a busy one: this is the bus's own floor under any light-load latency.

``python -m consensus.transport.bench`` prints a table; with no ``--broker`` it starts one
(``--start mosquitto|amqtt|auto|both``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

from consensus.transport.mqtt import LIBRARIES, make_client

WINDOW = 5000
IDLE_GAP_S = 0.010  # the round trip at idle: 10 ms between pings, as at 100 ops/s
TIMEOUT = 60.0  # s; give up on a run that stalls (lost messages)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def _one_way(url: str, library: str, messages: int, payload_size: int,
                   window: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    topic = f"bench/{run}/oneway"
    payload = b"x" * payload_size
    received = 0
    done = asyncio.Event()
    room = asyncio.Event()
    last_at = 0.0

    def on_message(_topic: str, _payload: bytes) -> None:
        nonlocal received, last_at
        received += 1
        if received >= messages:
            last_at = time.perf_counter()
            done.set()
        room.set()

    sub = make_client(library, url, f"bench-sub-{run}", on_message)
    pub = make_client(library, url, f"bench-pub-{run}", lambda _t, _p: None)
    await sub.connect()
    await pub.connect()
    try:
        await sub.subscribe(topic)
        start = time.perf_counter()
        deadline = start + TIMEOUT
        sent = 0
        while sent < messages:
            burst = min(messages - sent, window - (sent - received))
            if burst <= 0:
                room.clear()
                try:
                    await asyncio.wait_for(room.wait(), max(0.0, deadline - time.perf_counter()))
                except TimeoutError:
                    break
                continue
            for _ in range(burst):
                pub.publish(topic, payload)
            sent += burst
            await asyncio.sleep(0)  # let the library flush and the subscriber read
        try:
            await asyncio.wait_for(done.wait(), max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            last_at = time.perf_counter()
        elapsed = last_at - start
        return {"messages": messages, "received": received, "lost": messages - received,
                "seconds": round(elapsed, 4),
                "msgs_per_s": round(received / elapsed) if elapsed > 0 else 0}
    finally:
        await pub.close()
        await sub.close()


async def _round_trip(url: str, library: str, samples: int, payload_size: int,
                      warmup: int, gap_s: float = 0.0) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    ping_topic, pong_topic = f"bench/{run}/ping", f"bench/{run}/pong"
    payload = b"x" * payload_size
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] | None = None

    def on_pong(_topic: str, _payload: bytes) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    pinger = make_client(library, url, f"bench-ping-{run}", on_pong)
    ponger = make_client(library, url, f"bench-pong-{run}",
                         lambda _t, p: ponger.publish(pong_topic, p))
    await pinger.connect()
    await ponger.connect()
    try:
        await pinger.subscribe(pong_topic)
        await ponger.subscribe(ping_topic)
        rtts: list[float] = []
        lost = 0
        for i in range(warmup + samples):
            waiter = loop.create_future()
            t0 = time.perf_counter_ns()
            pinger.publish(ping_topic, payload)
            try:
                await asyncio.wait_for(waiter, 2.0)
            except TimeoutError:
                lost += 1
                continue
            if i >= warmup:
                rtts.append((time.perf_counter_ns() - t0) / 1000)
            if gap_s:
                await asyncio.sleep(gap_s)
        rtts.sort()
        return {"rtt_samples": len(rtts), "rtt_lost": lost,
                "rtt_p50_us": round(_percentile(rtts, 0.50), 1),
                "rtt_p99_us": round(_percentile(rtts, 0.99), 1),
                "rtt_mean_us": round(statistics.fmean(rtts), 1) if rtts else None}
    finally:
        await pinger.close()
        await ponger.close()


async def bench_transport(url: str, library: str, messages: int = 100_000,
                          payload_size: int = 200, rtt_samples: int = 2000,
                          window: int = WINDOW, idle_samples: int = 200) -> dict[str, Any]:
    """One-way QoS 0 msgs/s and round-trip p50/p99 (µs) for ``library`` through ``url``,
    busy and at idle (``rtt_idle_*``)."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; choose one of {', '.join(LIBRARIES)}")
    result: dict[str, Any] = {"library": library, "broker_url": url,
                              "payload_size": payload_size}
    result.update(await _one_way(url, library, messages, payload_size, window))
    result.update(await _round_trip(url, library, rtt_samples, payload_size,
                                    warmup=min(200, rtt_samples)))
    if idle_samples:
        idle = await _round_trip(url, library, idle_samples, payload_size, warmup=20,
                                 gap_s=IDLE_GAP_S)
        result.update({k.replace("rtt_", "rtt_idle_"): v for k, v in idle.items()})
    return result


# -- command line ---------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("broker", "library", "msgs/s one way", "lost", "RTT p50 µs", "RTT p99 µs",
            "idle RTT p50 µs")
    lines = [[str(r.get("broker", r["broker_url"])), r["library"], f"{r['msgs_per_s']:,}",
              str(r["lost"]), f"{r['rtt_p50_us']:.0f}", f"{r['rtt_p99_us']:.0f}",
              f"{r['rtt_idle_p50_us']:.0f}" if "rtt_idle_p50_us" in r else "-"]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]

    def fmt(cells: tuple[str, ...] | list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def main(argv: list[str] | None = None) -> int:
    from consensus.broker import BrokerError, start_broker

    parser = argparse.ArgumentParser(prog="python -m consensus.transport.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", help="broker URL (default: start one, see --start)")
    parser.add_argument("--start", choices=("auto", "mosquitto", "amqtt", "both"),
                        default="auto", help="broker(s) to start when --broker is not given")
    parser.add_argument("--library", choices=(*LIBRARIES, "both"), default="both")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--payload-size", type=int, default=200)
    parser.add_argument("--rtt-samples", type=int, default=2000)
    parser.add_argument("--idle-samples", type=int, default=200,
                        help=f"round trips at idle, one every {IDLE_GAP_S * 1000:.0f} ms "
                             "(0: skip)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    libraries = list(LIBRARIES) if args.library == "both" else [args.library]

    targets: list[tuple[str, str, Any]] = []  # (label, url, handle to stop)
    try:
        if args.broker:
            targets.append((args.broker, args.broker, None))
        else:
            kinds = ["mosquitto", "amqtt"] if args.start == "both" else [args.start]
            for kind in kinds:
                handle = start_broker(prefer=kind)
                targets.append((handle.kind, handle.url, handle))
        rows = []
        for label, url, _ in targets:
            for library in libraries:
                row = asyncio.run(bench_transport(url, library, args.messages,
                                                  args.payload_size, args.rtt_samples,
                                                  idle_samples=args.idle_samples))
                row["broker"] = label
                rows.append(row)
                if not args.json:
                    print(f"  {label} / {library}: {row['msgs_per_s']:,} msgs/s, "
                          f"RTT p50 {row['rtt_p50_us']:.0f} µs", file=sys.stderr)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for _, _, handle in targets:
            if handle is not None:
                handle.stop()
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
