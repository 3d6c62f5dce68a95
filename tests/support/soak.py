"""What the soak scripts (``tests/bench/soak_*.py``) measure alike: the RSS, the cost of each span
in fixed buckets, and the spans the SDK's bounded queue drops."""

from __future__ import annotations

import array
import collections
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

#: Span costs are counted in 100 ns buckets up to 10 ms (the last bucket holds the rest), in an
#: array filled at the start: keeping every cost would itself grow the RSS a soak watches.
BUCKET_NS = 100
BUCKETS = 100_000


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/statm``."""
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """:func:`rss_bytes` in MiB."""
    return rss_bytes() / 2**20


def cost_buckets() -> array.array[int]:
    """The counts of span costs, one per ``BUCKET_NS`` bucket, all zero."""
    return array.array("q", [0]) * BUCKETS


def timed_spans(tracer: Tracer, count: int, costs: array.array[int]) -> None:
    """Make ``count`` spans as a soak's application does, each one's cost counted in ``costs``."""
    clock = time.perf_counter_ns
    for _ in range(count):
        begin = clock()
        with tracer.start_as_current_span("work", attributes={"payload": "x" * 128}):
            pass
        costs[min((clock() - begin) // BUCKET_NS, BUCKETS - 1)] += 1


def percentile(counts: array.array[int], q: float) -> float:
    """The ``q`` quantile of the counted costs, in µs (the upper edge of its bucket)."""
    wanted = q * sum(counts)
    seen = 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= wanted and count:
            return (bucket + 1) * BUCKET_NS / 1000.0
    return BUCKETS * BUCKET_NS / 1000.0


def count_queue_drops() -> collections.Counter[str]:
    """From now on, the items the SDK's span and log processors drop, by error type, counted in the
    returned counter whether or not the SDK's own processor metrics are on."""
    from opentelemetry.sdk._shared_internal import _processor_metrics

    drops: collections.Counter[str] = collections.Counter()
    for kind in vars(_processor_metrics).values():
        original = getattr(kind, "drop_items", None)
        if isinstance(kind, type) and original is not None:

            def drop_items(self: object, count: int, error_type: str = "queue_full", _o=original) -> None:  # type: ignore[no-untyped-def]
                drops[error_type] += count
                _o(self, count, error_type)

            kind.drop_items = drop_items  # type: ignore[attr-defined]
    return drops
