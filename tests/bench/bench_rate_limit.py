"""``RateLimiter.try_acquire`` in ns per call: in memory, and against a local Redis (one round trip).

Run: ``.venv/bin/python tests/bench/bench_rate_limit.py [--calls N] [--redis-calls N] [--repeat R]``.
Telemetry on (instrumented with an SDK MeterProvider). A ``redis-server`` is started on a free
loopback port for the Redis rows (skipped with "not available" when it cannot be started). The
limits are set high so every call is permitted (the usual path); a "rejected" row shows the cost
of a rejection (counter + span-event attempt without a recording span). Best of ``repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from amqadf_agent.resilience.rate_limit import RateLimiter


def best_ns(fn: Callable[[], object], calls: int, repeat: int) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=repeat, number=calls)) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--redis-calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    memory = RateLimiter(1e12, burst=1e12, name="bench_memory")
    memory.instrument(meter_provider=provider)
    rejecting = RateLimiter(1e-9, burst=1, name="bench_rejecting")
    rejecting.instrument(meter_provider=provider)
    rejecting.try_acquire()

    def work() -> int:
        return 1

    rows: list[tuple[str, float | None]] = [
        ("bare call", best_ns(work, args.calls, args.repeat)),
        ("try_acquire() in memory (permitted)", best_ns(memory.try_acquire, args.calls, args.repeat)),
        (
            "try_acquire('user-42') in memory",
            best_ns(lambda: memory.try_acquire("user-42"), args.calls, args.repeat),
        ),
        ("try_acquire() in memory (rejected)", best_ns(rejecting.try_acquire, args.calls, args.repeat)),
    ]

    server = None
    try:
        from support.redis_server import RedisServer

        from amqadf_agent.resilience.stores import RedisStore

        server = RedisServer()
        server.start()
        store = RedisStore(server.url)
        remote = RateLimiter(1e9, burst=1e9, name="bench_redis", store=store)
        remote.instrument(meter_provider=provider)
        remote.try_acquire()  # load the script
        client = store.client
        rows.append(("redis PING round trip (baseline)", best_ns(client.ping, args.redis_calls, args.repeat)))
        rows.append(
            (
                "try_acquire() via RedisStore (EVALSHA)",
                best_ns(remote.try_acquire, args.redis_calls, args.repeat),
            )
        )
        server.kill()
        remote.try_acquire()  # the one failed attempt: from now on, local fallback
        rows.append(
            (
                "try_acquire() via RedisStore, redis down (fail open)",
                best_ns(remote.try_acquire, args.calls, args.repeat),
            )
        )
    except Exception as exc:  # no redis-server, no redis package
        rows.append((f"RedisStore rows: not available ({type(exc).__name__}: {exc})", None))
    finally:
        if server is not None:
            server.kill()

    base = rows[1][1] or 1.0
    print(f"{'case':58} {'ns/call':>12} {'vs memory':>10}")
    for label, ns in rows:
        if ns is None:
            print(f"{label:58} {'-':>12} {'-':>10}")
        else:
            print(f"{label:58} {ns:12.0f} {ns / base:9.2f}x")
    provider.shutdown()


if __name__ == "__main__":
    main()
