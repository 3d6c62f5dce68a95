"""Cost of one ``AutoScaler.get_scaling_decision`` call. Prints a table; asserts nothing.

    .venv/bin/python tests/bench/bench_autoscaler.py [--calls 20000] [--repeats 5]

Target: under 20 µs per decision. Three cases, each on a scaler with the
default CPU and memory targets and the default Kubernetes behaviour:

* inside the tolerance: both utilizations within 10 % of the target, nothing changes;
* a scale-up: 5 → 7 at every call (the clock moves 16 s per call, so the 15 s rate-policy period
  never limits it);
* a scale-down held by stabilization: the 300 s window already holds 20 recommendations of 10,
  one every 15 s, and every call recommends 5 at the window's end.

Figures are ns per call: the best and the median of ``--repeats`` runs of ``--calls`` calls,
clock and all. The injected clock is a plain closure, so the figures include one Python call for it.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

from amqadf_agent.scaling.autoscaler import AutoScaler, ScalingMetrics


def ticking(step: float) -> Callable[[], float]:
    """A clock that moves ``step`` seconds at every reading."""
    counter = itertools.count(0.0, step)
    return lambda: next(counter)


def within_tolerance() -> Callable[[], object]:
    scaler = AutoScaler(2, 20, 0.7, clock=ticking(15.0))
    metrics = ScalingMetrics(cpu_utilization=0.72, memory_utilization=0.68)
    assert scaler.get_scaling_decision(5, metrics).limited_by == "tolerance"
    return lambda: scaler.get_scaling_decision(5, metrics)


def scale_up() -> Callable[[], object]:
    scaler = AutoScaler(2, 20, 0.7, clock=ticking(16.0))
    metrics = ScalingMetrics(cpu_utilization=0.9, memory_utilization=0.85)
    for _ in range(3):
        decision = scaler.get_scaling_decision(5, metrics)
        assert (decision.action, decision.target_instances) == ("scale_up", 7), decision
    return lambda: scaler.get_scaling_decision(5, metrics)


def held_by_stabilization() -> Callable[[], object]:
    now = [0.0]
    scaler = AutoScaler(2, 20, 0.7, clock=lambda: now[0])
    at_target = ScalingMetrics(cpu_utilization=0.7, memory_utilization=0.7)
    for i in range(20):  # t = 0 … 285: a full 300 s window of recommendations of 10
        now[0] = 15.0 * i
        scaler.get_scaling_decision(10, at_target)
    now[0] = 299.0
    low = ScalingMetrics(cpu_utilization=0.35, memory_utilization=0.3)
    decision = scaler.get_scaling_decision(10, low)
    assert (decision.limited_by, decision.recommendation) == ("stabilization", 5), decision
    return lambda: scaler.get_scaling_decision(10, low)


CASES = {
    "inside the tolerance (no change)": within_tolerance,
    "scale-up 5 → 7": scale_up,
    "scale-down held by stabilization (300 s window, 15 s spacing)": held_by_stabilization,
}


def measure(call: Callable[[], object], calls: int, repeats: int) -> tuple[float, float]:
    """(best, median) ns per call over ``repeats`` runs of ``calls`` calls."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            call()
        runs.append((time.perf_counter_ns() - t0) / calls)
    return min(runs), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    width = max(len(name) for name in CASES)
    print(f"{'case':<{width}} | {'best ns/call':>12} | {'median ns/call':>14}")
    print(f"{'-' * width}-|-{'-' * 12}-|-{'-' * 14}")
    for name, build in CASES.items():
        best, median = measure(build(), args.calls, args.repeats)
        print(f"{name:<{width}} | {best:>12,.0f} | {median:>14,.0f}")
    print(f"\n{args.repeats} runs of {args.calls} calls each; target: under 20,000 ns per decision")


if __name__ == "__main__":
    main()
