"""Success-path cost of a retry decorator, beside a bare call and a hand-written loop. Prints a table.

    .venv/bin/python tests/bench/bench_retry.py [--repeat 7] [--number 200000]

Target (docs/design.md, principle 1): our decorator's success path under 1 µs, with telemetry on
(``instrument()`` on an SDK MeterProvider: the counters are read at collection time, so the call
itself pays one ``+= 1``). tenacity and stamina rows appear only when they are installed.
Each figure is ns per call: the best and the median of ``--repeat`` runs of ``--number`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

from amqadf_agent.resilience.retry import RetryBudget, RetryPolicy, retry_with_policy

TARGET_NS = 1000


def measure(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    per_call = [run / number * 1e9 for run in runs]
    return min(per_call), statistics.median(per_call)


def target() -> int:
    return 1


def hand_written() -> int:
    for attempt in range(4):
        try:
            return target()
        except ConnectionError:
            if attempt == 3:
                raise
    raise AssertionError("unreachable")


def candidates() -> dict[str, Callable[[], object] | None]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    policy = RetryPolicy(max_retries=3, retryable_exceptions=(ConnectionError,), name="bench")
    policy.instrument(meter_provider=provider)
    budgeted = RetryPolicy(max_retries=3, retryable_exceptions=(ConnectionError,), budget=RetryBudget())
    budgeted.instrument(meter_provider=provider)
    rows: dict[str, Callable[[], object] | None] = {
        "bare call": target,
        "hand-written try/except loop": hand_written,
        "amqadf @retry_with_policy": retry_with_policy(policy)(target),
        "amqadf @retry_with_policy + budget": retry_with_policy(budgeted)(target),
        "amqadf policy.call(fn)": lambda: policy.call(target),
    }
    candidates.provider = provider  # type: ignore[attr-defined]  # keep it alive
    rows.update(peers(target))
    return rows


def peers(fn: Callable[[], object]) -> dict[str, Callable[[], object] | None]:
    """``fn`` under tenacity's and stamina's retry decorators (4 attempts on ConnectionError, as
    ours), or None for a peer that is not installed. Also used by bench_resilience.py."""
    rows: dict[str, Callable[[], object] | None] = {}
    try:
        import tenacity

        rows["tenacity @retry"] = tenacity.retry(
            stop=tenacity.stop_after_attempt(4),
            wait=tenacity.wait_exponential_jitter(),
            retry=tenacity.retry_if_exception_type(ConnectionError),
        )(fn)
    except ImportError:
        rows["tenacity @retry"] = None
    try:
        import stamina

        rows["stamina @retry"] = stamina.retry(on=ConnectionError, attempts=4)(fn)
    except ImportError:
        rows["stamina @retry"] = None
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{'success path':<38} {'best ns':>10} {'median ns':>10}")
    ours = None
    for label, fn in candidates().items():
        if fn is None:
            print(f"{label:<38} {'not installed':>21}")
            continue
        number = args.number if not label.startswith(("tenacity", "stamina")) else max(1, args.number // 20)
        best, median = measure(fn, number, args.repeat)
        if label == "amqadf @retry_with_policy":
            ours = best
        print(f"{label:<38} {best:>10.0f} {median:>10.0f}")
    ok = ours is not None and ours < TARGET_NS
    print(f"target: amqadf decorator under {TARGET_NS} ns -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
