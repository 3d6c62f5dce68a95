"""Success-path cost of every resilience policy beside its peers, in one run. Prints a table.

    .venv/bin/python tests/bench/bench_resilience.py [--repeat 7] [--number 200000]

One function (``return 1``) called bare, through our retry decorator, circuit breaker and rate
limiter (each instrumented on an SDK MeterProvider: telemetry on), and through tenacity, stamina,
pybreaker and circuitbreaker when they are installed (``pip install -e '.[bench]'``; else "not
installed"). Columns: ns per call (best of ``--repeat`` runs; the median beside it), the overhead
over the bare call, and the ratio to it. Targets, on the overhead: retry success path
under 1 µs, closed breaker under 0.5 µs; in-memory ``try_acquire`` under 1 µs per call.
The per-policy scripts (bench_retry, bench_circuit_breaker, bench_rate_limit) have more rows.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import bench_circuit_breaker  # the peers' setups, shared (this directory is on sys.path)
import bench_retry

from amqadf_agent.resilience.circuit_breaker import CircuitBreaker
from amqadf_agent.resilience.rate_limit import RateLimiter
from amqadf_agent.resilience.retry import RetryPolicy, retry_with_policy

#: Row label -> (what the target bounds: "overhead" or "call", nanoseconds).
TARGETS = {
    "amqadf @retry_with_policy": ("overhead", 1000.0),
    "amqadf CircuitBreaker.call": ("overhead", 500.0),
    "amqadf @CircuitBreaker": ("overhead", 500.0),
    "amqadf RateLimiter.try_acquire() (memory)": ("call", 1000.0),
}
#: Peers are ~20 µs a call: fewer calls keep the run short without changing the figure.
SLOW = ("tenacity", "stamina")


def work() -> int:
    return 1


def measure(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per call."""
    runs = [run / number * 1e9 for run in timeit.repeat(fn, number=number, repeat=repeat)]
    return min(runs), statistics.median(runs)


def rows() -> list[tuple[str, Callable[[], object] | None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    policy = RetryPolicy(max_retries=3, retryable_exceptions=(ConnectionError,), name="bench")
    policy.instrument(meter_provider=provider)
    breaker = CircuitBreaker(failure_threshold=5, timeout=60.0, name="bench")
    breaker.instrument(meter_provider=provider)
    limiter = RateLimiter(1e12, burst=1e12, name="bench")
    limiter.instrument(meter_provider=provider)
    rows.keep = (provider, policy, breaker, limiter)  # type: ignore[attr-defined]

    found: list[tuple[str, Callable[[], object] | None]] = [
        ("bare call", work),
        ("amqadf @retry_with_policy", retry_with_policy(policy)(work)),
        *bench_retry.peers(work).items(),
        ("amqadf CircuitBreaker.call", lambda: breaker.call(work)),
        ("amqadf @CircuitBreaker", breaker(work)),
        *bench_circuit_breaker.peers(work),
    ]
    found.append(("amqadf RateLimiter.try_acquire() (memory)", limiter.try_acquire))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args(argv)

    table = rows()
    bare = measure(work, args.number, args.repeat)[0]
    print(f"ns per call, best (median) of {args.repeat} runs; overhead = best - bare call")
    print(f"{'success path':<44} {'ns/call':>8} {'median':>8} {'overhead':>9} {'x bare':>7}  target")
    missed = []
    for label, fn in table:
        if fn is None:
            print(f"{label:<44} {'not installed':>35}")
            continue
        number = max(1, args.number // 20) if label.startswith(SLOW) else args.number
        best, median = measure(fn, number, args.repeat)
        verdict = ""
        if label in TARGETS:
            what, limit = TARGETS[label]
            value = best - bare if what == "overhead" else best
            ok = value < limit
            verdict = f"{what} < {limit:.0f} ns: {'met' if ok else 'MISSED'}"
            if not ok:
                missed.append(label)
        print(f"{label:<44} {best:8.0f} {median:8.0f} {best - bare:9.0f} {best / bare:6.1f}x  {verdict}")
    print("all targets met" if not missed else "targets missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
