"""Closed-state success path of a circuit breaker, in ns per call (docs/design.md, principle 1).

Run: ``.venv/bin/python tests/bench/bench_circuit_breaker.py [--calls N] [--repeat R]``.
Rows: a bare call; ours instrumented with an SDK MeterProvider (observable instruments cost nothing per
call); ours with rate-based tripping (records into the sliding window under the lock); pybreaker and
``circuitbreaker`` when importable, else "not installed". The best of ``repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from amqadf_agent.resilience.circuit_breaker import CircuitBreaker


def work() -> int:
    return 1


def best_ns(fn: Callable[[], object], calls: int, repeat: int) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=repeat, number=calls)) / calls * 1e9


def peers(fn: Callable[[], object]) -> list[tuple[str, Callable[[], object] | None]]:
    """``fn`` through pybreaker's and circuitbreaker's closed breakers (5 failures, 60 s open, as
    ours), or None for a peer that is not installed. Also used by bench_resilience.py."""
    rows: list[tuple[str, Callable[[], object] | None]] = []
    try:
        import pybreaker

        pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        rows.append(("pybreaker .call", lambda: pb.call(fn)))
    except ImportError:
        rows.append(("pybreaker .call", None))
    try:
        import circuitbreaker

        rows.append(
            ("circuitbreaker @circuit", circuitbreaker.circuit(failure_threshold=5, recovery_timeout=60)(fn))
        )
    except ImportError:
        rows.append(("circuitbreaker @circuit", None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ours = CircuitBreaker(name="bench")
    ours.instrument(meter_provider=provider)
    windowed = CircuitBreaker(name="bench_windowed", failure_rate=0.5)
    windowed.instrument(meter_provider=provider)
    decorated = ours(work)

    rows: list[tuple[str, Callable[[], object] | None]] = [
        ("bare call", work),
        ("bare call through a lambda (baseline of .call rows)", lambda: work()),
        ("amqadf CircuitBreaker.call (instrumented)", lambda: ours.call(work)),
        ("amqadf @CircuitBreaker decorator", decorated),
        ("amqadf .call, failure_rate window", lambda: windowed.call(work)),
    ]
    rows.extend(peers(work))

    bare = best_ns(work, args.calls, args.repeat)
    print(f"{'closed-state success path':52} {'ns/call':>9} {'overhead ns':>12}")
    for label, fn in rows:
        if fn is None:
            print(f"{label:52} {'not installed':>22}")
            continue
        ns = best_ns(fn, args.calls, args.repeat)
        print(f"{label:52} {ns:9.0f} {ns - bare:12.0f}")
    provider.shutdown()


if __name__ == "__main__":
    main()
