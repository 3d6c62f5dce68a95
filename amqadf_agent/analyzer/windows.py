"""Per-window ``ScalingMetrics`` reconstructed from exported telemetry, in one streaming pass.

Records are aggregated, as they arrive, into fixed windows aligned on multiples of ``window_s`` since
the epoch; nothing per span is kept beyond a bounded sample of durations per window, so memory grows
with the number of windows and series, never with the number of spans.

``window_s=None`` chooses the window from the data: 60 s (``DEFAULT_WINDOW_S``), or for data covering
less than ten of those the smallest of 5, 10, 15 and 30 s that gives at most ten windows, so a short
run (a 20 s demo, a load-test burst) still has a timeline. Records are kept in 5 s windows until the
data covers ten minutes, then merged into 60 s windows (and later ones go there directly).

Sources, per window (``None`` when the window has none):

* **CPU**: ``process.cpu.utilization`` (summed over ``cpu.mode`` per data point), else
  ``system.cpu.utilization`` (``1 - idle``, idle averaged over CPUs), else ``process.cpu.time`` deltas
  divided by the wall time between points (CPU seconds per second, i.e. the share of one core, capped
  at 1). The mean over the samples of the window (of all instances), clamped to [0, 1].
* **memory**: ``system.memory.utilization`` with ``system.memory.state = used``, the mean.
* **requests, errors, latency**: SERVER spans (by end time) when the window has any; otherwise
  ``http.server.request.duration`` histograms (cumulative points turned into deltas between
  consecutive points of a series; quantiles interpolated linearly within buckets). An error is a
  status code >= 500, an ``error.type`` attribute, or a span with status ERROR. The rate divides by
  the part of the window covered by the data (the first and last windows are usually partial).
* **queue depth**: ``amqadf.worker_pool.queue.size``, the last value of each (instance, pool) series
  in the window, summed.
* **instances**: distinct ``service.instance.id`` values seen in the window (at least 1).

``since_ns``/``until_ns`` restrict the windows; points before ``since_ns`` still serve as the
baseline of cumulative series, so the first window in range is not credited with everything the
process counted before it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final

from amqadf_agent.analyzer.model import (
    SPAN_KIND_SERVER,
    STATUS_CODE_ERROR,
    TEMPORALITY_DELTA,
    Attributes,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
    Record,
    SpanRecord,
    service_instance_id,
    service_name,
)
from amqadf_agent.scaling.autoscaler import ScalingMetrics
from amqadf_agent.semconv import ATTR_CPU_MODE, ATTR_ERROR_TYPE, ATTR_HTTP_RESPONSE_STATUS_CODE

__all__ = [
    "DEFAULT_WINDOW_S",
    "CounterDeltas",
    "HistogramDeltas",
    "Window",
    "WindowAggregator",
    "bucket_quantile",
    "is_error",
]

DEFAULT_WINDOW_S: Final = 60
#: ``window_s=None``: the window sizes chosen from, and how many windows a short input should fill.
AUTO_WINDOWS_S: Final = (5, 10, 15, 30, 60)
AUTO_TARGET_WINDOWS: Final = 10
#: Span durations kept per window for the quantiles (a reservoir beyond that).
MAX_SAMPLES_PER_WINDOW: Final = 4096

CPU_PROCESS: Final = "process.cpu.utilization"
CPU_SYSTEM: Final = "system.cpu.utilization"
CPU_TIME: Final = "process.cpu.time"
MEMORY: Final = "system.memory.utilization"
HTTP_DURATION: Final = "http.server.request.duration"
QUEUE_SIZE: Final = "amqadf.worker_pool.queue.size"
_MEMORY_STATE: Final = "system.memory.state"


def is_error(attributes: Attributes, status_code: int = 0) -> bool:
    """A failed request: HTTP status >= 500, an ``error.type``, or span status ERROR."""
    if status_code == STATUS_CODE_ERROR or attributes.get(ATTR_ERROR_TYPE):
        return True
    code = attributes.get(ATTR_HTTP_RESPONSE_STATUS_CODE)
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return isinstance(code, int) and not isinstance(code, bool) and code >= 500


def bucket_quantile(q: float, bounds: tuple[float, ...], counts: list[int] | tuple[int, ...]) -> float | None:
    """Quantile ``q`` of an explicit-bucket histogram, interpolated linearly within the bucket.

    Bucket ``i`` holds values in ``(bounds[i-1], bounds[i]]``; the first bucket starts at 0 (or at its
    upper bound when that is negative) and the overflow bucket is reported at the last bound, as
    Prometheus' ``histogram_quantile`` does. ``None`` for an empty histogram.
    """
    total = sum(counts)
    if total <= 0:
        return None
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


class HistogramDeltas:
    """Turns explicit-bucket histogram points (cumulative or delta) into per-point increments."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[int, int, tuple[int, ...], float]] = {}

    def delta(
        self, key: Hashable, temporality: int, point: HistogramPoint, since_ns: int | None = None
    ) -> tuple[int, tuple[int, ...], float]:
        """``(count, bucket_counts, sum)`` that ``point`` adds (see ``CounterDeltas.delta``)."""
        total = point.sum if point.sum is not None else 0.0
        if temporality == TEMPORALITY_DELTA:
            return point.count, point.bucket_counts, total
        previous = self._last.get(key)
        self._last[key] = (point.start_ns, point.count, point.bucket_counts, total)
        if (
            previous is not None
            and previous[0] == point.start_ns
            and point.count >= previous[1]
            and len(previous[2]) == len(point.bucket_counts)
        ):
            buckets = tuple(max(a - b, 0) for a, b in zip(point.bucket_counts, previous[2], strict=True))
            return point.count - previous[1], buckets, total - previous[3]
        if since_ns is not None and point.start_ns < since_ns:
            return 0, tuple(0 for _ in point.bucket_counts), 0.0
        return point.count, point.bucket_counts, total


class _Bucket:
    """What one window accumulates."""

    __slots__ = (
        "cpu_process",
        "cpu_system",
        "cpu_time",
        "hist_bounds",
        "hist_buckets",
        "hist_count",
        "hist_errors",
        "instances",
        "memory",
        "queue",
        "samples",
        "span_errors",
        "span_requests",
        "span_seen",
    )

    def __init__(self) -> None:
        self.instances: set[str] = set()
        # (sum, count) pairs
        self.cpu_process = [0.0, 0]
        self.cpu_system = [0.0, 0]
        self.cpu_time = [0.0, 0]
        self.memory = [0.0, 0]
        self.span_requests = 0
        self.span_errors = 0
        self.span_seen = 0
        self.samples: list[float] = []
        self.hist_count = 0
        self.hist_errors = 0
        self.hist_bounds: tuple[float, ...] | None = None
        self.hist_buckets: list[int] = []
        self.queue: dict[Hashable, tuple[int, float]] = {}

    def absorb(self, other: _Bucket, rng: random.Random) -> None:
        """Add a later or earlier window's data to this one (windows merged into a larger one)."""
        self.instances |= other.instances
        for mine, theirs in (
            (self.cpu_process, other.cpu_process),
            (self.cpu_system, other.cpu_system),
            (self.cpu_time, other.cpu_time),
            (self.memory, other.memory),
        ):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        self.span_requests += other.span_requests
        self.span_errors += other.span_errors
        self.samples = _merge_samples(self.samples, self.span_seen, other.samples, other.span_seen, rng)
        self.span_seen += other.span_seen
        self.hist_count += other.hist_count
        self.hist_errors += other.hist_errors
        if self.hist_bounds is None:
            self.hist_bounds, self.hist_buckets = other.hist_bounds, list(other.hist_buckets)
        elif other.hist_bounds == self.hist_bounds:
            self.hist_buckets = [a + b for a, b in zip(self.hist_buckets, other.hist_buckets, strict=True)]
        for key, (time_ns, value) in other.queue.items():  # the last value of each series
            previous = self.queue.get(key)
            if previous is None or previous[0] <= time_ns:
                self.queue[key] = (time_ns, value)


def _merge_samples(
    first: list[float], first_seen: int, second: list[float], second_seen: int, rng: random.Random
) -> list[float]:
    """Two windows' duration samples as one sample of both, at most ``MAX_SAMPLES_PER_WINDOW``.

    Exact while both fit; otherwise each side keeps a share proportional to the spans it saw.
    """
    if len(first) + len(second) <= MAX_SAMPLES_PER_WINDOW:
        return first + second
    total = first_seen + second_seen
    keep_first = round(MAX_SAMPLES_PER_WINDOW * first_seen / total) if total else 0
    keep_first = min(keep_first, len(first))
    keep_second = min(MAX_SAMPLES_PER_WINDOW - keep_first, len(second))
    return rng.sample(first, keep_first) + rng.sample(second, keep_second)


@dataclass(frozen=True, slots=True)
class Window:
    """One window: its time span, what was observed, and the ``ScalingMetrics`` for the scaler."""

    start_ns: int
    end_ns: int
    #: Distinct ``service.instance.id`` values seen (at least 1).
    instances: int
    #: Requests observed (spans or histogram counts) and how many failed.
    requests: int
    errors: int
    #: ``"spans"``, ``"histogram"`` or ``None``: where requests and latency came from.
    request_source: str | None
    #: Seconds of the window covered by the data (divides the request count).
    covered_s: float
    metrics: ScalingMetrics


def _mean(pair: list[float | int] | list[float]) -> float | None:
    return pair[0] / pair[1] if pair[1] else None


def _clamp01(value: float | None) -> float | None:
    return None if value is None else min(max(value, 0.0), 1.0)


class WindowAggregator:
    """Feed records with ``add`` (any order within reason), then read ``windows()``.

    ``service``: only records of that ``service.name`` count (None: all services together).
    """

    def __init__(
        self,
        window_s: float | None = DEFAULT_WINDOW_S,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        if window_s is not None and not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        #: Chosen from the data (see the module docstring) until ``windows()`` settles it.
        self.auto = window_s is None
        self.window_s: float = AUTO_WINDOWS_S[0] if window_s is None else window_s
        self.window_ns = int(self.window_s * 1e9)
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        self._buckets: dict[int, _Bucket] = {}
        self._counters = CounterDeltas()
        self._histograms = HistogramDeltas()
        self._cpu_time_last: dict[Hashable, tuple[int, int, float]] = {}
        self._first_ns: int | None = None
        self._last_ns: int | None = None
        self._rng = random.Random(0)
        self._last_resource: object = None
        self._resource_ok = True
        self._instance = ""

    # --- feeding ---------------------------------------------------------------------------------
    def _in_range(self, time_ns: int) -> bool:
        if time_ns <= 0:
            return False
        if self.since_ns is not None and time_ns < self.since_ns:
            return False
        return not (self.until_ns is not None and time_ns > self.until_ns)

    def _touch(self, time_ns: int) -> None:
        if self._first_ns is None or time_ns < self._first_ns:
            self._first_ns = time_ns
        if self._last_ns is None or time_ns > self._last_ns:
            self._last_ns = time_ns

    def _bucket(self, time_ns: int) -> _Bucket:
        self._touch(time_ns)
        if (
            self.auto
            and self.window_s < DEFAULT_WINDOW_S
            and self._last_ns is not None
            and self._first_ns is not None
            and self._last_ns - self._first_ns >= AUTO_TARGET_WINDOWS * DEFAULT_WINDOW_S * 1e9
        ):
            self._resize(DEFAULT_WINDOW_S)  # long enough for the default: keep memory per window
        start = time_ns - time_ns % self.window_ns
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = _Bucket()
        if self._instance:
            bucket.instances.add(self._instance)
        return bucket

    def add(self, record: Record) -> None:
        """Take one record into account (logs and records of other services are ignored)."""
        if record.resource is not self._last_resource:
            self._last_resource = record.resource
            self._resource_ok = self.service is None or service_name(record.resource) == self.service
            self._instance = service_instance_id(record.resource)
        if not self._resource_ok:
            return
        if type(record) is SpanRecord:
            self._add_span(record)
        elif type(record) is MetricRecord:
            self._add_metric(record)

    def _add_span(self, span: SpanRecord) -> None:
        if span.kind != SPAN_KIND_SERVER or not self._in_range(span.end_ns):
            return
        bucket = self._bucket(span.end_ns)
        if span.start_ns > 0 and self._in_range(span.start_ns):
            self._touch(span.start_ns)  # the data covers the time since the request arrived
        bucket.span_requests += 1
        if is_error(span.attributes, span.status_code):
            bucket.span_errors += 1
        duration = span.duration_s
        bucket.span_seen += 1
        if len(bucket.samples) < MAX_SAMPLES_PER_WINDOW:
            bucket.samples.append(duration)
        else:
            slot = self._rng.randrange(bucket.span_seen)
            if slot < MAX_SAMPLES_PER_WINDOW:
                bucket.samples[slot] = duration

    def _add_metric(self, record: MetricRecord) -> None:
        name = record.name
        if name in (CPU_PROCESS, CPU_SYSTEM):
            self._add_cpu_gauge(record, name == CPU_SYSTEM)
        elif name == CPU_TIME:
            self._add_cpu_time(record)
        elif name == MEMORY:
            for point in record.points:
                if (
                    isinstance(point, NumberPoint)
                    and point.value is not None
                    and point.attributes.get(_MEMORY_STATE) == "used"
                    and self._in_range(point.time_ns)
                ):
                    pair = self._bucket(point.time_ns).memory
                    pair[0] += float(point.value)
                    pair[1] += 1
        elif name == HTTP_DURATION and record.type == "histogram":
            self._add_http_histogram(record)
        elif name == QUEUE_SIZE:
            for point in record.points:
                if (
                    isinstance(point, NumberPoint)
                    and point.value is not None
                    and self._in_range(point.time_ns)
                ):
                    key = (self._instance, _attrs_key(point.attributes))
                    queue = self._bucket(point.time_ns).queue
                    previous = queue.get(key)
                    if previous is None or previous[0] <= point.time_ns:
                        queue[key] = (point.time_ns, float(point.value))

    def _add_cpu_gauge(self, record: MetricRecord, system: bool) -> None:
        # One observation per timestamp: process = sum over modes, system = 1 - mean idle.
        by_time: dict[int, list[float]] = {}
        for point in record.points:
            if not isinstance(point, NumberPoint) or point.value is None or not self._in_range(point.time_ns):
                continue
            mode = point.attributes.get(ATTR_CPU_MODE)
            if system:
                if mode != "idle":
                    continue
            elif mode == "idle":
                continue
            acc = by_time.setdefault(point.time_ns, [0.0, 0])
            acc[0] += float(point.value)
            acc[1] += 1
        for time_ns, (total, count) in by_time.items():
            value = 1.0 - total / count if system else total
            pair = self._bucket(time_ns).cpu_system if system else self._bucket(time_ns).cpu_process
            pair[0] += min(max(value, 0.0), 1.0)
            pair[1] += 1

    def _add_cpu_time(self, record: MetricRecord) -> None:
        # Sum the modes of one timestamp, then difference consecutive timestamps of one instance.
        by_time: dict[tuple[int, int], float] = {}
        for point in record.points:
            if isinstance(point, NumberPoint) and point.value is not None and point.time_ns > 0:
                if point.attributes.get(ATTR_CPU_MODE) in ("idle", "wait"):
                    continue
                key = (point.time_ns, point.start_ns)
                by_time[key] = by_time.get(key, 0.0) + float(point.value)
        series = (self._instance, record.scope_name)
        for (time_ns, start_ns), total in sorted(by_time.items()):
            previous = self._cpu_time_last.get(series)
            self._cpu_time_last[series] = (time_ns, start_ns, total)
            if record.aggregation_temporality == TEMPORALITY_DELTA:
                if start_ns <= 0 or time_ns <= start_ns:
                    continue
                used, elapsed = total, (time_ns - start_ns) / 1e9
            elif previous is None:
                if (
                    start_ns <= 0
                    or time_ns <= start_ns
                    or (self.since_ns is not None and start_ns < self.since_ns)
                ):
                    continue
                used, elapsed = total, (time_ns - start_ns) / 1e9
            else:
                if previous[1] != start_ns or total < previous[2] or time_ns <= previous[0]:
                    continue  # a reset: this point is the new baseline
                used, elapsed = total - previous[2], (time_ns - previous[0]) / 1e9
            if elapsed > 0 and self._in_range(time_ns):
                pair = self._bucket(time_ns).cpu_time
                pair[0] += min(max(used / elapsed, 0.0), 1.0)
                pair[1] += 1

    def _add_http_histogram(self, record: MetricRecord) -> None:
        for point in record.points:
            if not isinstance(point, HistogramPoint):
                continue
            key = (self._instance, record.scope_name, _attrs_key(point.attributes))
            count, buckets, _total = self._histograms.delta(
                key, record.aggregation_temporality, point, self.since_ns
            )
            if count <= 0 or not self._in_range(point.time_ns):
                continue
            bucket = self._bucket(point.time_ns)
            bucket.hist_count += count
            if is_error(point.attributes):
                bucket.hist_errors += count
            if bucket.hist_bounds is None:
                bucket.hist_bounds = point.explicit_bounds
                bucket.hist_buckets = list(buckets)
            elif bucket.hist_bounds == point.explicit_bounds:
                for i, n in enumerate(buckets):
                    bucket.hist_buckets[i] += n
            # Other bounds: counted as requests, left out of the quantiles.

    def _resize(self, window_s: float) -> None:
        """Merge the windows into windows of ``window_s`` (a multiple of the current size)."""
        size = int(window_s * 1e9)
        merged: dict[int, _Bucket] = {}
        for start in sorted(self._buckets):
            bucket = self._buckets[start]
            into = merged.get(start - start % size)
            if into is None:
                merged[start - start % size] = bucket
            else:
                into.absorb(bucket, self._rng)
        self._buckets, self.window_s, self.window_ns = merged, window_s, size

    def _settle(self) -> None:
        """``window_s=None``: the smallest size that gives at most ``AUTO_TARGET_WINDOWS`` windows."""
        if not self.auto or self._first_ns is None or self._last_ns is None:
            return
        span_s = (self._last_ns - self._first_ns) / 1e9
        for size in AUTO_WINDOWS_S:
            if size >= self.window_s and (span_s / size <= AUTO_TARGET_WINDOWS or size == AUTO_WINDOWS_S[-1]):
                if size != self.window_s:
                    self._resize(size)
                break

    # --- reading ---------------------------------------------------------------------------------
    def windows(self) -> list[Window]:
        """The windows with data, in time order (with ``window_s=None`` the size is settled here:
        read ``window_s`` after this call)."""
        self._settle()
        out: list[Window] = []
        first, last = self._first_ns, self._last_ns
        for start in sorted(self._buckets):
            bucket = self._buckets[start]
            end = start + self.window_ns
            lo = max(start, first if first is not None else start)
            hi = min(end, last if last is not None else end)
            covered = max((hi - lo) / 1e9, min(1.0, self.window_s))
            requests = errors = 0
            source: str | None = None
            p50 = p95 = p99 = None
            if bucket.span_requests:
                source = "spans"
                requests, errors = bucket.span_requests, bucket.span_errors
                ordered = sorted(bucket.samples)
                p50, p95, p99 = (_nearest_rank(ordered, q) for q in (0.5, 0.95, 0.99))
            elif bucket.hist_count:
                source = "histogram"
                requests, errors = bucket.hist_count, bucket.hist_errors
                if bucket.hist_bounds is not None:
                    bounds = bucket.hist_bounds
                    p50, p95, p99 = (
                        bucket_quantile(q, bounds, bucket.hist_buckets) for q in (0.5, 0.95, 0.99)
                    )
            cpu = _mean(bucket.cpu_process)
            if cpu is None:
                cpu = _mean(bucket.cpu_system)
            if cpu is None:
                cpu = _mean(bucket.cpu_time)
            metrics = ScalingMetrics(
                cpu_utilization=_clamp01(cpu),
                memory_utilization=_clamp01(_mean(bucket.memory)),
                request_rate=requests / covered if source else None,
                error_rate=errors / requests if requests else None,
                queue_depth=sum(v for _, v in bucket.queue.values()) if bucket.queue else None,
                response_time_p50=p50,
                response_time_p95=p95,
                response_time_p99=p99,
            )
            out.append(
                Window(
                    start_ns=start,
                    end_ns=end,
                    instances=max(len(bucket.instances), 1),
                    requests=requests,
                    errors=errors,
                    request_source=source,
                    covered_s=covered,
                    metrics=metrics,
                )
            )
        return out


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _attrs_key(attributes: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attributes.items()))
