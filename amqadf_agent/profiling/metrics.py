"""What a profiler reports as metrics: profiles taken, its top functions' self time, call durations.

Nothing is recorded on the hot path (docs/design.md principle 1): the profile counts and the self
times are plain numbers read at collection time as the ``amqadf.profiler.profiles`` and
``amqadf.profiler.function.self_time`` observable counters; only the ``amqadf.profiler.duration``
histogram is recorded at each call through the profiler, once it is instrumented.

The top functions of every CPU profile add their self time to a plain dict keyed by (kind,
qualified function name). The dict is bounded: it keeps the ``MAX_SELF_TIME_FUNCTIONS`` functions
with the most self time; beyond that the one with the least is dropped (its series stops; if it
comes back it restarts from zero, which Prometheus' ``increase``/``rate`` read as a counter reset).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from amqadf_agent import semconv
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.profiling.results import FunctionStat

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider

__all__ = ["KIND_CPU", "KIND_MEMORY", "MAX_SELF_TIME_FUNCTIONS", "ProfilerMetrics"]

KIND_CPU = "cpu"
KIND_MEMORY = "memory"
#: At most this many (kind, function) series of ``amqadf.profiler.function.self_time`` per profiler:
#: the ones with the most self time are kept (profiles of varied code must not grow it without end).
MAX_SELF_TIME_FUNCTIONS = 200


class ProfilerMetrics:
    """The metrics of one profiler (it owns one): what it counts, and the histograms it records in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles = {KIND_CPU: 0, KIND_MEMORY: 0}
        # (kind, qualified function name) -> self time summed over the top functions of the profiles
        # taken; at most MAX_SELF_TIME_FUNCTIONS entries (the largest), read at collection time.
        self._self_times: dict[tuple[str, str], float] = {}
        self._histograms: tuple[Histogram, ...] = ()

    def register(self, meter_provider: MeterProvider | None) -> None:
        """Report through ``meter_provider`` (default: the global one); idempotent. The provider
        holds these metrics weakly. Raises what the SDK raises."""
        histogram = _SHARED.register(self, meter_provider)[semconv.PROFILE_DURATION.name]
        with self._lock:
            if not any(h is histogram for h in self._histograms):
                self._histograms = (*self._histograms, histogram)

    def record(self, kind: str, profiled: bool, duration: float, function: str) -> None:
        """Count a profile taken, and record the call's duration (raises what the SDK raises)."""
        with self._lock:
            if profiled:
                self._profiles[kind] += 1
        if self._histograms:
            attributes = {semconv.ATTR_PROFILER_KIND: kind, semconv.ATTR_PROFILER_FUNCTION: function}
            for histogram in self._histograms:
                histogram.record(duration, attributes)

    def profiles(self) -> dict[str, int]:
        """Profiles taken, by kind."""
        with self._lock:
            return dict(self._profiles)

    def self_times(self) -> dict[tuple[str, str], float]:
        """Self time (s) of the profiles' top functions, by (kind, qualified function name)."""
        with self._lock:
            return dict(self._self_times)

    def add_self_times(self, kind: str, top: tuple[FunctionStat, ...]) -> None:
        """Add each top function's self time; then drop the smallest entries beyond the bound."""
        with self._lock:
            totals = self._self_times
            for stat in top:
                if not stat.self_time > 0:  # a caller among the top by total time only: no series
                    continue
                key = (kind, stat.qualname or stat.function)
                totals[key] = totals.get(key, 0.0) + stat.self_time
            while len(totals) > MAX_SELF_TIME_FUNCTIONS:
                del totals[min(totals, key=totals.__getitem__)]

    def after_fork(self) -> None:
        """A fresh lock: one held by another thread at fork would stay held in the child."""
        self._lock = threading.Lock()


# --- collection-time reading ----------------------------------------------------------------------
def _profiles(metrics: ProfilerMetrics) -> list[Point]:
    counts = metrics.profiles()
    return [(counts[kind], {semconv.ATTR_PROFILER_KIND: kind}) for kind in (KIND_CPU, KIND_MEMORY)]


def _function_self_times(metrics: ProfilerMetrics) -> list[Point]:
    return [
        (seconds, {semconv.ATTR_PROFILER_KIND: kind, semconv.ATTR_CODE_FUNCTION_NAME: function})
        for (kind, function), seconds in metrics.self_times().items()
    ]


_SHARED: SharedInstruments[ProfilerMetrics] = SharedInstruments(
    "profiler",
    [(semconv.PROFILES, _profiles), (semconv.PROFILE_FUNCTION_SELF_TIME, _function_self_times)],
    recorded=[semconv.PROFILE_DURATION],
)
