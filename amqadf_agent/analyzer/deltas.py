"""Points of cumulative or delta series turned into increments, and quantiles of histograms.

The windows, the cache rules and the thread rules all read counters and explicit-bucket histograms
that a producer may export with either temporality; these turn each point into what it adds since the
previous one of its series (a reset, a new start time or a lower value, starts over), so every rule
counts alike.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

from amqadf_agent.analyzer.model import TEMPORALITY_DELTA, HistogramPoint, NumberPoint

__all__ = ["FIRST_DELTA_MAX_S", "CounterDeltas", "HistogramDelta", "HistogramDeltas", "bucket_quantile"]

#: The first point of a cumulative histogram counts (spread back to its series' start) only when
#: that start is at most this many seconds earlier; otherwise it is a baseline (see ``delta_from``).
FIRST_DELTA_MAX_S: Final = 600


def bucket_quantile(q: float, bounds: tuple[float, ...], counts: Sequence[float]) -> float | None:
    """Quantile ``q`` of an explicit-bucket histogram, interpolated linearly within the bucket.

    Bucket ``i`` holds values in ``(bounds[i-1], bounds[i]]``; the first bucket starts at 0 (or at its
    upper bound when that is negative) and the overflow bucket is reported at the last bound, as
    Prometheus' ``histogram_quantile`` does. ``None`` for an empty histogram, and for counts or bounds
    no float arithmetic can use (NaN, infinite, beyond a float). Counts may be fractional (histogram
    deltas spread over windows).
    """
    try:
        total = float(sum(counts))
    except OverflowError:
        return None
    if not 0 < total < math.inf:
        return None
    found = _bucket_quantile(q, bounds, counts, total)
    return found if found is not None and math.isfinite(found) else None


def _bucket_quantile(
    q: float, bounds: tuple[float, ...], counts: Sequence[float], total: float
) -> float | None:
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            if i >= len(bounds):  # overflow bucket: no upper bound
                return bounds[-1] if bounds else None
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else min(0.0, upper)
            return lower + (upper - lower) * max(rank - seen, 0.0) / count
        seen += count
    return bounds[-1] if bounds else None


class CounterDeltas:
    """Turns points of counters (cumulative or delta) into increments, series by series."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[int, float]] = {}

    def delta(
        self, key: Hashable, temporality: int, point: NumberPoint, since_ns: int | None = None
    ) -> float:
        """The increment ``point`` brings. The first point of a cumulative series counts from its start
        time, unless that start is before ``since_ns`` (then it is only the baseline); a reset (a new
        start time or a lower value) starts over."""
        value = point.value
        if value is None:
            return 0.0
        value = float(value)
        if temporality == TEMPORALITY_DELTA:
            return value
        previous = self._last.get(key)
        self._last[key] = (point.start_ns, value)
        if previous is not None and previous[0] == point.start_ns and value >= previous[1]:
            return value - previous[1]
        if since_ns is not None and point.start_ns < since_ns:
            return 0.0
        return value


@dataclass(frozen=True, slots=True)
class HistogramDelta:
    """What one histogram point adds, and the interval it covers."""

    count: int
    bucket_counts: tuple[int, ...]
    sum: float
    #: Start of the interval the increment covers: the previous point's time when the point continues
    #: a cumulative series, else the point's start time (0: unknown).
    from_ns: int
    #: True when the increment is counted since the previous point of the series.
    continued: bool


class HistogramDeltas:
    """Turns explicit-bucket histogram points (cumulative or delta) into per-point increments."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[int, int, tuple[int, ...], float, int]] = {}

    def delta(
        self, key: Hashable, temporality: int, point: HistogramPoint, since_ns: int | None = None
    ) -> tuple[int, tuple[int, ...], float]:
        """``(count, bucket_counts, sum)`` that ``point`` adds (see ``CounterDeltas.delta``)."""
        found = self.delta_from(key, temporality, point, since_ns)
        return found.count, found.bucket_counts, found.sum

    def delta_from(
        self, key: Hashable, temporality: int, point: HistogramPoint, since_ns: int | None = None
    ) -> HistogramDelta:
        """What ``point`` adds (see ``delta``) and since when."""
        total = point.sum if point.sum is not None else 0.0
        if temporality == TEMPORALITY_DELTA:
            return HistogramDelta(point.count, point.bucket_counts, total, point.start_ns, False)
        previous = self._last.get(key)
        self._last[key] = (point.start_ns, point.count, point.bucket_counts, total, point.time_ns)
        if (
            previous is not None
            and previous[0] == point.start_ns
            and point.count >= previous[1]
            and len(previous[2]) == len(point.bucket_counts)
        ):
            buckets = tuple(max(a - b, 0) for a, b in zip(point.bucket_counts, previous[2], strict=True))
            return HistogramDelta(point.count - previous[1], buckets, total - previous[3], previous[4], True)
        if (since_ns is not None and point.start_ns < since_ns) or (
            point.time_ns - point.start_ns > FIRST_DELTA_MAX_S * 1e9
        ):
            # Before the range, or an input that begins mid-stream (a rotated Collector file): what
            # the series counted since its start long ago is not in the data. A baseline only.
            return HistogramDelta(0, tuple(0 for _ in point.bucket_counts), 0.0, point.start_ns, False)
        return HistogramDelta(point.count, point.bucket_counts, total, point.start_ns, False)
