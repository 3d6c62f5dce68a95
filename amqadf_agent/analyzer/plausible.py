"""Which numbers of the input the rules compute with.

proto3 JSON carries ``"NaN"``, ``"Infinity"``, ``1e308`` and negative numbers in fields where they mean
nothing: a count, a size, a number of seconds. Such a value would crash a conversion (``int(nan)``),
overflow a product or poison a mean, so the rules skip the data point that holds it, as they skip a
point of another pool or cache: the other points still count. A value passes when a chained
comparison holds, which NaN never does.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Final

from amqadf_agent.analyzer.model import HistogramPoint

__all__ = ["MAX_AMOUNT", "MAX_COUNT", "is_amount", "is_count", "is_histogram", "is_nonnegative"]

#: The largest count or size taken as real: OTLP carries counts as uint64.
MAX_COUNT: Final = 2**64 - 1
#: The largest measurement taken as real (seconds, CPU seconds, a utilization, a bucket bound): far
#: beyond any real one, and small enough that sums and products of many stay finite floats.
MAX_AMOUNT: Final = 1e15


def is_count(value: float | None) -> bool:
    """A count or a size: a number in ``[0, MAX_COUNT]`` (not NaN, not infinite, not negative)."""
    return value is not None and 0 <= value <= MAX_COUNT


def is_amount(value: float | None) -> bool:
    """A measurement that may be negative: a number in ``[-MAX_AMOUNT, MAX_AMOUNT]``."""
    return value is not None and -MAX_AMOUNT <= value <= MAX_AMOUNT


def is_nonnegative(value: float | None) -> bool:
    """Seconds, CPU seconds, a utilization: a number in ``[0, MAX_AMOUNT]``."""
    return value is not None and 0 <= value <= MAX_AMOUNT


def is_histogram(point: HistogramPoint, *, durations: bool = False) -> bool:
    """Counts that are counts, a sum and bounds that are amounts, bounds in increasing order; with
    ``durations``, no negative sum or bound either (no duration is negative)."""
    bounds = point.explicit_bounds
    low = 0.0 if durations else -MAX_AMOUNT
    return (
        is_count(point.count)
        and all(0 <= n <= MAX_COUNT for n in point.bucket_counts)
        and (point.sum is None or low <= point.sum <= MAX_AMOUNT)
        and all(low <= bound <= MAX_AMOUNT for bound in bounds)
        and all(a < b for a, b in pairwise(bounds))
    )
