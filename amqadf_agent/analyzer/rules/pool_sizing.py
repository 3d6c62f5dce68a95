"""Sizing a worker pool: Little's law, a nearest-rank quantile, and the size with headroom bounded by
the caps (the USL peak, the CPUs of CPU-bound work, the downstream connection pool).

Plain arithmetic over numbers: the thread rules (``rules.threads``) apply it to what the telemetry
shows, and ``PerformanceTuner`` (``analyzer.tuner``) to what it measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from amqadf_agent.analyzer.rules.usl import UslFit

__all__ = ["littles_law", "quantile", "recommend_workers", "size_with_caps"]

#: ``limited_by`` in a thread finding's evidence: the cap that bound the recommendation.
LIMITED_BY_USL = "usl"
LIMITED_BY_CPU = "cpu"
LIMITED_BY_DOWNSTREAM = "downstream_pool"


def littles_law(throughput: float, latency_s: float) -> float:
    """Needed concurrency ``L = lambda W`` (tasks per second times seconds per task)."""
    return throughput * latency_s


def quantile(q: float, values: Sequence[float]) -> float | None:
    """Nearest-rank quantile ``q`` of ``values`` (the largest value below 1/(1-q) values); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(math.ceil(q * len(ordered)) - 1, 0), len(ordered) - 1)]


def recommend_workers(
    throughput: float,
    latency_s: float,
    *,
    target_utilization: float = 0.7,
    usl: UslFit | None = None,
    cpu_bound: bool = False,
    cpu_count: int | None = None,
    downstream_max: int | None = None,
    peak_concurrency: float | None = None,
) -> tuple[int, list[str]]:
    """Workers for ``throughput`` at ``latency_s`` with headroom, and the caps applied (in words).

    ``downstream_max``: connections of the downstream pool the tasks use (threads beyond them only
    queue on the connection pool); None: no downstream cap. ``peak_concurrency``: busy workers at peaks
    (e.g. the p95 over windows); the size covers the larger of it and Little's law on the mean.
    """
    needed = littles_law(throughput, latency_s)
    if peak_concurrency is not None:
        needed = max(needed, peak_concurrency)
    recommended, caps = size_with_caps(
        needed,
        target_utilization=target_utilization,
        usl=usl,
        cpu_bound=cpu_bound,
        cpu_count=cpu_count,
        downstream_max=downstream_max,
    )
    return recommended, [words for _kind, words in caps]


def size_with_caps(
    needed: float,
    *,
    target_utilization: float,
    usl: UslFit | None,
    cpu_bound: bool,
    cpu_count: int | None,
    downstream_max: int | None,
) -> tuple[int, list[tuple[str, str]]]:
    """Workers for ``needed`` busy workers with headroom, each cap as ``(limited_by, words)``; the last
    one is binding."""
    recommended = max(1, math.ceil(needed / target_utilization - 1e-9))
    caps: list[tuple[str, str]] = []
    peak = usl.peak if usl is not None else None
    if peak is not None and recommended > max(1, math.floor(peak)):
        recommended = max(1, math.floor(peak))
        caps.append((LIMITED_BY_USL, f"USL peak N*={peak:.2f}"))
    if cpu_bound and cpu_count is not None and recommended > cpu_count:
        recommended = max(1, cpu_count)
        caps.append((LIMITED_BY_CPU, f"CPU-bound: {cpu_count} CPUs"))
    if downstream_max is not None and downstream_max > 0 and recommended > downstream_max:
        recommended = downstream_max
        caps.append(
            (
                LIMITED_BY_DOWNSTREAM,
                f"downstream pool: {downstream_max} database connections (more threads only queue on it)",
            )
        )
    return recommended, caps
