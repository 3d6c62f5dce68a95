"""``submit`` -> ``result`` of an empty task: InstrumentedThreadPoolExecutor against the plain one.

    .venv/bin/python tests/bench/bench_worker_pool.py [--repeat 7] [--number 5000]

Rows: ns per task (best and median of ``--repeat`` runs of ``--number`` tasks, each submitted and
waited for before the next, so every task pays the full thread hop) for the plain
``ThreadPoolExecutor``, the instrumented one not reporting (counts and context only), and the
instrumented one reporting through an SDK ``MeterProvider`` (two histogram records per task).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPoolExecutor


def empty() -> None:
    return None


def measure(pool: Executor, number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per submit -> result."""
    for _ in range(200):  # warm up: threads started, code paths hot
        pool.submit(empty).result()
    runs: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            pool.submit(empty).result()
        runs.append((time.perf_counter_ns() - t0) / number)
    return min(runs), statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def reporting() -> Executor:
        pool = InstrumentedThreadPoolExecutor(args.workers, name="bench")
        pool.instrument(provider)
        return pool

    rows: list[tuple[str, Callable[[], Executor]]] = [
        ("ThreadPoolExecutor (plain)", lambda: ThreadPoolExecutor(args.workers)),
        (
            "InstrumentedThreadPoolExecutor, not reporting",
            lambda: InstrumentedThreadPoolExecutor(args.workers),
        ),
        ("InstrumentedThreadPoolExecutor, reporting (SDK)", reporting),
    ]
    print(f"{args.workers} workers; ns per submit->result of an empty task, best/median of {args.repeat}")
    print(f"{'executor':<50}{'best':>10}{'median':>10}{'+ best':>10}")
    base: float | None = None
    for label, make in rows:
        with make() as pool:
            best, median = measure(pool, args.number, args.repeat)
        # Against the best: on a shared 2-core box the medians carry other processes' noise.
        extra = "" if base is None else f"{best - base:+.0f}"
        base = best if base is None else base
        print(f"{label:<50}{best:>10.0f}{median:>10.0f}{extra:>10}")
    provider.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
