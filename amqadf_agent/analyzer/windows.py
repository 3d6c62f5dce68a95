"""Per-window ``ScalingMetrics`` reconstructed from exported telemetry, in one streaming pass.

Records are aggregated, as they arrive, into fixed windows aligned on multiples of ``window_s`` since
the epoch; nothing per span is kept beyond a bounded sample of durations per window, so memory grows
with the number of windows and series, never with the number of spans.

``window_s=None`` chooses the window from the data: 60 s (``DEFAULT_WINDOW_S``), or for data covering
less than ten of those the smallest of 5, 10, 15 and 30 s that gives at most ten windows, so a short
run (a 20 s demo, a load-test burst) still has a timeline. The choice is never below the typical
interval between the points of the cumulative series the windows are rebuilt from (the median gap
between consecutive points of ``http.server.request.duration`` series when no SERVER span was seen,
and of ``process.cpu.time`` series when no CPU utilization gauge was seen; 10 % slack for timer
jitter): a window shorter than the export interval would only show the same delta cut into pieces.
Gaps above 60 s round up to a multiple of 60 s (at most an hour); a histogram gap over an hour is
not counted (its delta is not spread either, see below). Records are kept in 5 s base windows until
the data covers ten minutes, then merged into 60 s base windows (and later ones go there directly);
``windows()`` merges base windows into the chosen size on a copy, so it has no side effects and
reading it twice, with records added in between, gives what a fixed window of the size chosen the
second time gives. ``window_s`` is the size the data so far calls for.

Sources, per window (``None`` when the window has none):

* **CPU**: ``process.cpu.utilization`` (summed over ``cpu.mode`` per data point), else
  ``system.cpu.utilization`` (``1 - idle``, idle averaged over CPUs), else ``process.cpu.time`` deltas
  divided by the wall time between points (CPU seconds per second, i.e. the share of one core, capped
  at 1; one sample at the later point's time). The mean over the samples of the window (of all
  instances), clamped to [0, 1]. Being a mean of rates, a sample never inflates a partial window.
* **memory**: ``system.memory.utilization`` with ``system.memory.state = used``, the mean.
* **requests, errors, latency**: SERVER spans and CONSUMER spans (a message processed is a queue
  worker's request: a Celery task's ``run/...`` span) by end time, when the window has any; otherwise
  ``http.server.request.duration`` histograms (quantiles interpolated linearly within buckets), else
  the older ``http.server.duration`` (milliseconds, converted to seconds; never added to the current
  one, which a producer may emit beside it). A
  histogram delta covers an interval: from the previous point of its series (cumulative), else from
  the point's start time (delta temporality, the first point of a cumulative series, a reset); its
  request, error and bucket counts are spread over the windows that interval overlaps, in proportion
  to the overlap (so histogram counts are fractional), and a window's histogram rate divides by the
  part of the window those intervals cover. A point with no known interval (no start time) counts at
  its time, and so does one whose interval is implausibly long (over an hour, ``MAX_SPREAD_S``, or
  over ``MAX_SPREAD_WINDOWS`` windows: a start time of 1 ns, a time in 2262), so that one point never
  costs more than one window. Spans divide by the part of the window between the first and last
  timestamps of the data (at least 1 s), as the first and last windows are usually partial. An error
  is a status code >= 500 (``http.response.status_code``, or the older ``http.status_code``), an
  ``error.type`` attribute, or a span with status ERROR.
* **queue depth**: ``amqadf.worker_pool.queue.size``, the last value of each (instance, pool) series
  in the window, summed.
* **instances**: distinct ``service.instance.id`` values seen in the window (at least 1), except
  those that served no request in the whole input while others did (a prefork master or a sidecar
  exporting metrics only): they are not counted, their CPU and memory are left out of the means, and
  ``non_serving_instances()`` lists them with their own resource use.
* **examples**: the ``EXAMPLES_PER_WINDOW`` slowest request spans (``Window.slowest``: duration,
  trace and span ids), the example ids of the scaling findings.

A data point holding a number none of these can be (NaN, infinite, a negative count, size, utilization
or duration, a value beyond any real one: ``analyzer.plausible``) is left out and counted in
``skipped_points``; the other points of its window still count.

``since_ns``/``until_ns`` restrict the windows; points before ``since_ns`` still serve as the
baseline of cumulative series, so the first window in range is not credited with everything the
process counted before it, and the share of a histogram delta's interval outside the range is left
out.

One module over 600 lines: the aggregator, its per-window state (``_Bucket``) and the merging of base
windows on reading share the base-window layout, which splitting them would make public.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from amqadf_agent.analyzer.deltas import HistogramDeltas, bucket_quantile
from amqadf_agent.analyzer.model import (
    REQUEST_SPAN_KINDS,
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
from amqadf_agent.analyzer.plausible import is_count, is_histogram, is_nonnegative
from amqadf_agent.scaling.autoscaler import ScalingMetrics
from amqadf_agent.semconv import (
    ATTR_CPU_MODE,
    ATTR_ERROR_TYPE,
    ATTR_HTTP_RESPONSE_STATUS_CODE,
    ATTR_HTTP_STATUS_CODE_OLD,
    ATTR_SYSTEM_MEMORY_STATE,
    HTTP_SERVER_DURATION_OLD,
    HTTP_SERVER_DURATION_OLD_UNIT,
    HTTP_SERVER_REQUEST_DURATION,
    POOL_QUEUE_SIZE,
    PROCESS_CPU_TIME,
    PROCESS_CPU_UTILIZATION,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_MEMORY_UTILIZATION,
)

__all__ = ["DEFAULT_WINDOW_S", "Window", "WindowAggregator", "is_error", "keep_slowest"]

DEFAULT_WINDOW_S: Final = 60
#: ``window_s=None``: the window sizes chosen from, and how many windows a short input should fill.
AUTO_WINDOWS_S: Final = (5, 10, 15, 30, 60)
AUTO_TARGET_WINDOWS: Final = 10
#: ``window_s=None``: slack on the typical gap between points (timer jitter), and the largest window
#: that gap can call for.
AUTO_GAP_SLACK: Final = 1.1
AUTO_MAX_WINDOW_S: Final = 3600
#: A histogram delta is spread over its interval only when that interval is at most this long (no
#: exporter collects less often) and covers at most ``MAX_SPREAD_WINDOWS`` base windows; a longer one
#: (a start time of 1 ns, a time in 2262) counts at its time alone, as a point without a start time
#: does, so that one point costs one window however far apart its times are.
MAX_SPREAD_S: Final = AUTO_MAX_WINDOW_S
MAX_SPREAD_WINDOWS: Final = 720
#: Span durations kept per window for the quantiles (a reservoir beyond that).
MAX_SAMPLES_PER_WINDOW: Final = 4096
#: The slowest request spans (SERVER, CONSUMER) kept per window: example trace and span ids.
EXAMPLES_PER_WINDOW: Final = 3

# The contract's names (semconv.py), by the short names the rules use.
CPU_PROCESS: Final = PROCESS_CPU_UTILIZATION.name
CPU_SYSTEM: Final = SYSTEM_CPU_UTILIZATION.name
CPU_TIME: Final = PROCESS_CPU_TIME.name
MEMORY: Final = SYSTEM_MEMORY_UTILIZATION.name
HTTP_DURATION: Final = HTTP_SERVER_REQUEST_DURATION.name
#: The older histogram (milliseconds), read where the current one is missing (see ``_Bucket.legacy``).
HTTP_DURATION_OLD: Final = HTTP_SERVER_DURATION_OLD
QUEUE_SIZE: Final = POOL_QUEUE_SIZE.name
_MEMORY_STATE: Final = ATTR_SYSTEM_MEMORY_STATE


def is_error(attributes: Attributes, status_code: int = 0) -> bool:
    """A failed request: HTTP status >= 500 (``http.response.status_code``, or the older
    ``http.status_code``), an ``error.type``, or span status ERROR."""
    if status_code == STATUS_CODE_ERROR or attributes.get(ATTR_ERROR_TYPE):
        return True
    code = attributes.get(ATTR_HTTP_RESPONSE_STATUS_CODE)
    if code is None:
        code = attributes.get(ATTR_HTTP_STATUS_CODE_OLD)
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return isinstance(code, int) and not isinstance(code, bool) and code >= 500


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
        "hist_hi",
        "hist_lo",
        "instances",
        "legacy",
        "memory",
        "per_instance",
        "queue",
        "samples",
        "slowest",
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
        #: The same four (sum, count) pairs per ``service.instance.id`` (cpu process, cpu system,
        #: cpu time, memory: 8 numbers), so that an instance that serves nothing can be left out.
        self.per_instance: dict[str, list[float]] = {}
        self.span_requests = 0
        self.span_errors = 0
        self.span_seen = 0
        self.samples: list[float] = []
        #: A min-heap of the slowest request spans: ``(duration s, trace id, span id)``.
        self.slowest: list[tuple[float, str, str]] = []
        # Histogram counts, fractional: a delta is spread over the windows its interval overlaps.
        self.hist_count = 0.0
        self.hist_errors = 0.0
        self.hist_bounds: tuple[float, ...] | None = None
        self.hist_buckets: list[float] = []
        # The part of the window the histogram intervals cover (their hull), in ns since the epoch.
        self.hist_lo: int | None = None
        self.hist_hi: int | None = None
        self.queue: dict[Hashable, tuple[int, float]] = {}
        #: The older ``http.server.duration`` histogram's counts (converted to seconds), kept apart and
        #: used only in a window without ``http.server.request.duration`` data: a producer emitting
        #: both (``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup``) is not counted twice.
        self.legacy: _Bucket | None = None

    def legacy_bucket(self) -> _Bucket:
        if self.legacy is None:
            self.legacy = _Bucket()
        return self.legacy

    def cover(self, lo_ns: int, hi_ns: int) -> None:
        """Histogram data covers ``[lo_ns, hi_ns]`` of this window."""
        if self.hist_lo is None or lo_ns < self.hist_lo:
            self.hist_lo = lo_ns
        if self.hist_hi is None or hi_ns > self.hist_hi:
            self.hist_hi = hi_ns

    def absorb(self, other: _Bucket, rng: random.Random) -> None:
        """Add a later or earlier window's data to this one (windows merged into a larger one);
        ``other`` is left as it was."""
        self.instances |= other.instances
        for mine, theirs in (
            (self.cpu_process, other.cpu_process),
            (self.cpu_system, other.cpu_system),
            (self.cpu_time, other.cpu_time),
            (self.memory, other.memory),
        ):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        for instance, values in other.per_instance.items():
            into = self.per_instance.setdefault(instance, [0.0] * 8)
            for i, value in enumerate(values):
                into[i] += value
        self.span_requests += other.span_requests
        self.span_errors += other.span_errors
        self.samples = _merge_samples(self.samples, self.span_seen, other.samples, other.span_seen, rng)
        self.span_seen += other.span_seen
        for example in other.slowest:
            keep_slowest(self.slowest, example)
        self.hist_count += other.hist_count
        self.hist_errors += other.hist_errors
        if other.hist_lo is not None and other.hist_hi is not None:
            self.cover(other.hist_lo, other.hist_hi)
        if self.hist_bounds is None:
            self.hist_bounds, self.hist_buckets = other.hist_bounds, list(other.hist_buckets)
        elif other.hist_bounds == self.hist_bounds:
            self.hist_buckets = [a + b for a, b in zip(self.hist_buckets, other.hist_buckets, strict=True)]
        for key, (time_ns, value) in other.queue.items():  # the last value of each series
            previous = self.queue.get(key)
            if previous is None or previous[0] <= time_ns:
                self.queue[key] = (time_ns, value)
        if other.legacy is not None:
            self.legacy_bucket().absorb(other.legacy, rng)


def keep_slowest(
    heap: list[tuple[float, str, str]], example: tuple[float, str, str], limit: int = EXAMPLES_PER_WINDOW
) -> None:
    """Keep ``example`` (``(duration s, trace id, span id)``) in the min-heap ``heap`` if it is among
    the ``limit`` slowest. The windows' examples and the thread rules' use it alike."""
    if len(heap) < limit:
        heapq.heappush(heap, example)
    elif example > heap[0]:
        heapq.heapreplace(heap, example)


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
    #: Requests observed (spans, or histogram counts: fractional, a delta being spread over the
    #: windows its interval overlaps) and how many failed.
    requests: float
    errors: float
    #: ``"spans"``, ``"histogram"`` or ``None``: where requests and latency came from.
    request_source: str | None
    #: Seconds of the window covered by the data (divides the request count): for spans, between the
    #: first and last timestamps of the data (at least 1 s); for histograms, by their intervals.
    covered_s: float
    metrics: ScalingMetrics
    #: The slowest request spans of the window, slowest first: ``(duration s, trace id, span id)``.
    slowest: tuple[tuple[float, str, str], ...] = ()


def _mean(pair: list[float | int] | list[float]) -> float | None:
    return pair[0] / pair[1] if pair[1] else None


def _clamp01(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else min(max(value, 0.0), 1.0)


def _measured(value: float | None) -> float | None:
    """``value`` if ``ScalingMetrics`` takes it (finite, >= 0), else missing: the points feeding a
    window are checked as they arrive (``analyzer.plausible``), so this only keeps one window's
    arithmetic from ever failing the whole report."""
    return value if value is not None and 0 <= value < math.inf else None


class WindowAggregator:
    """Feed records with ``add`` (any order within reason), then read ``windows()``.

    ``service``: only records of that ``service.name`` count (None: all services together).
    """

    #: The kinds of span ``add`` reads (it ignores the others): a caller may skip them.
    SPAN_KINDS: ClassVar[frozenset[int]] = REQUEST_SPAN_KINDS

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
        #: Chosen from the data (see the module docstring): ``window_s`` then follows the data.
        self.auto = window_s is None
        # The windows records are aggregated into: the given size, or with ``auto`` the 5 s (later
        # 60 s) base windows that ``windows()`` merges into the chosen size.
        self._base_s: float = AUTO_WINDOWS_S[0] if window_s is None else window_s
        self._base_ns = int(self._base_s * 1e9)
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        #: Whether a time filter is set at all (most runs: none, no test per span).
        self._timed = since_ns is not None or until_ns is not None
        self._buckets: dict[int, _Bucket] = {}
        self._histograms = HistogramDeltas()
        self._cpu_time_last: dict[Hashable, tuple[int, int, float]] = {}
        self._first_ns: int | None = None
        self._last_ns: int | None = None
        self._rng = random.Random(0)
        self._last_resource: object = None
        self._resource_ok = True
        self._instance = ""
        #: Instances that served requests (SERVER or CONSUMER spans, or http server histogram counts),
        #: and the ``service.name`` of every instance seen.
        self._serving: set[str] = set()
        self._instance_service: dict[str, str] = {}
        # ``auto``: how many gaps between consecutive points of a series call for each window size
        # (histograms, process.cpu.time), and whether spans / CPU gauges make those series unused.
        self._http_gaps: dict[int, int] = {}
        self._cpu_time_gaps: dict[int, int] = {}
        self._saw_spans = False
        self._saw_cpu_gauges = False
        #: Histogram deltas counted at their time only, their interval being implausibly long.
        self.implausible_intervals = 0
        #: Data points left out for a number no count, size, utilization or duration can be
        #: (``analyzer.plausible``): NaN, infinite, negative, beyond any real one.
        self.skipped_points = 0

    @property
    def window_s(self) -> float:
        """The window size: the one given, or (``window_s=None``) the one the data so far calls for."""
        return self._settled_s() if self.auto else self._base_s

    @property
    def window_ns(self) -> int:
        return int(self.window_s * 1e9)

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

    def _grow(self) -> None:
        """``auto``: once the data covers ten default windows, aggregate into 60 s base windows."""
        if (
            self.auto
            and self._base_s < DEFAULT_WINDOW_S
            and self._last_ns is not None
            and self._first_ns is not None
            and self._last_ns - self._first_ns >= AUTO_TARGET_WINDOWS * DEFAULT_WINDOW_S * 1e9
        ):
            self._resize(DEFAULT_WINDOW_S)  # long enough for the default: keep memory per window

    def _bucket(self, time_ns: int) -> _Bucket:
        self._touch(time_ns)
        self._grow()
        return self._bucket_at(time_ns)

    def _bucket_at(self, time_ns: int) -> _Bucket:
        """The base window holding ``time_ns`` (the caller has touched and grown)."""
        start = time_ns - time_ns % self._base_ns
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = _Bucket()
        if self._instance:
            bucket.instances.add(self._instance)
        return bucket

    def _at(self, time_ns: int) -> list[tuple[_Bucket, float]]:
        """The base window of ``time_ns`` with all of a histogram delta, if in range."""
        if not self._in_range(time_ns):
            return []
        bucket = self._bucket(time_ns)
        bucket.cover(time_ns, time_ns)
        return [(bucket, 1.0)]

    def _spread(self, from_ns: int, to_ns: int) -> list[tuple[_Bucket, float]]:
        """The base windows the interval ``[from_ns, to_ns]`` overlaps within the range, each with the
        share of the interval it holds; an unknown, empty or implausibly long interval (see
        ``MAX_SPREAD_S``) is all at ``to_ns``."""
        length = to_ns - from_ns
        if from_ns <= 0 or length <= 0:
            return self._at(to_ns)
        if length > MAX_SPREAD_S * 1e9:
            self.implausible_intervals += 1
            return self._at(to_ns)
        lo = from_ns if self.since_ns is None else max(from_ns, self.since_ns)
        hi = to_ns if self.until_ns is None else min(to_ns, self.until_ns)
        if hi <= lo:
            return []
        self._touch(lo)  # the data covers the interval
        self._touch(hi)
        self._grow()
        if (hi - lo) // self._base_ns > MAX_SPREAD_WINDOWS:  # a --window far below the export interval
            self.implausible_intervals += 1
            return self._at(to_ns)
        out: list[tuple[_Bucket, float]] = []
        start = lo - lo % self._base_ns
        while start < hi:
            a, b = max(lo, start), min(hi, start + self._base_ns)
            if b > a:
                bucket = self._bucket_at(start)
                bucket.cover(a, b)
                out.append((bucket, (b - a) / length))
            start += self._base_ns
        return out

    def add(self, record: Record) -> None:
        """Take one record into account (logs and records of other services are ignored)."""
        if record.resource is not self._last_resource:
            self._last_resource = record.resource
            self._resource_ok = self.service is None or service_name(record.resource) == self.service
            self._instance = service_instance_id(record.resource)
            if self._instance and self._instance not in self._instance_service:
                self._instance_service[self._instance] = service_name(record.resource)
        if not self._resource_ok:
            return
        if type(record) is SpanRecord:
            if record.kind in REQUEST_SPAN_KINDS:  # most spans are not: no call for them
                self._add_span(record)
        elif type(record) is MetricRecord:
            self._add_metric(record)

    def _add_span(self, span: SpanRecord) -> None:
        # _in_range(t) is t > 0 when no time filter is set (most runs): no call for it then.
        end_ns, start_ns, timed = span.end_ns, span.start_ns, self._timed
        if span.kind not in REQUEST_SPAN_KINDS or not (end_ns > 0 and (not timed or self._in_range(end_ns))):
            return
        self._saw_spans = True
        if self._instance:
            self._serving.add(self._instance)
        bucket = self._bucket(end_ns)
        if start_ns > 0 and (not timed or self._in_range(start_ns)):
            self._touch(start_ns)  # the data covers the time since the request arrived
        bucket.span_requests += 1
        if is_error(span.attributes, span.status_code):
            bucket.span_errors += 1
        duration = max(end_ns - start_ns, 0) / 1e9  # span.duration_s
        bucket.span_seen += 1
        slowest = bucket.slowest
        if len(slowest) < EXAMPLES_PER_WINDOW or duration > slowest[0][0]:
            keep_slowest(slowest, (duration, span.trace_id, span.span_id))
        if len(bucket.samples) < MAX_SAMPLES_PER_WINDOW:
            bucket.samples.append(duration)
        else:
            slot = int(self._rng.random() * bucket.span_seen)  # randrange costs ~10x this
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
                    if not is_nonnegative(point.value):
                        self.skipped_points += 1
                        continue
                    bucket = self._bucket(point.time_ns)
                    pair = bucket.memory
                    pair[0] += float(point.value)
                    pair[1] += 1
                    self._per_instance(bucket, _MEMORY_SLOT, float(point.value))
        elif name == HTTP_DURATION and record.type == "histogram":
            self._add_http_histogram(record)
        elif name == HTTP_DURATION_OLD and record.type == "histogram":
            self._add_http_histogram(record, legacy=True)
        elif name == QUEUE_SIZE:
            for point in record.points:
                if (
                    isinstance(point, NumberPoint)
                    and point.value is not None
                    and self._in_range(point.time_ns)
                ):
                    if not is_count(point.value):
                        self.skipped_points += 1
                        continue
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
            if not is_nonnegative(point.value):
                self.skipped_points += 1
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
            self._saw_cpu_gauges = True
            value = 1.0 - total / count if system else total
            bucket = self._bucket(time_ns)
            pair = bucket.cpu_system if system else bucket.cpu_process
            pair[0] += min(max(value, 0.0), 1.0)
            pair[1] += 1
            self._per_instance(
                bucket, _CPU_SYSTEM_SLOT if system else _CPU_PROCESS_SLOT, min(max(value, 0.0), 1.0)
            )

    def _add_cpu_time(self, record: MetricRecord) -> None:
        # Sum the modes of one timestamp, then difference consecutive timestamps of one instance.
        by_time: dict[tuple[int, int], float] = {}
        for point in record.points:
            if isinstance(point, NumberPoint) and point.value is not None and point.time_ns > 0:
                if point.attributes.get(ATTR_CPU_MODE) in ("idle", "wait"):
                    continue
                if not is_nonnegative(point.value):
                    self.skipped_points += 1
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
                _count_gap(self._cpu_time_gaps, elapsed)
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
                _count_gap(self._cpu_time_gaps, elapsed)
            if elapsed > 0 and self._in_range(time_ns):
                bucket = self._bucket(time_ns)
                pair = bucket.cpu_time
                pair[0] += min(max(used / elapsed, 0.0), 1.0)
                pair[1] += 1
                self._per_instance(bucket, _CPU_TIME_SLOT, min(max(used / elapsed, 0.0), 1.0))

    def _add_http_histogram(self, record: MetricRecord, legacy: bool = False) -> None:
        """``legacy``: the older ``http.server.duration`` (unit ``ms`` unless it says ``s``): bounds in
        seconds, counted apart (``_Bucket.legacy``)."""
        temporality = record.aggregation_temporality
        to_s = 1e-3 if legacy and record.unit in (HTTP_SERVER_DURATION_OLD_UNIT, "") else 1.0
        for point in record.points:
            if not isinstance(point, HistogramPoint):
                continue
            if not is_histogram(point, durations=True):
                self.skipped_points += 1
                continue
            key = (self._instance, record.scope_name, _attrs_key(point.attributes), legacy)
            found = self._histograms.delta_from(key, temporality, point, self.since_ns)
            gap_ns = point.time_ns - found.from_ns
            if (found.continued or temporality == TEMPORALITY_DELTA) and (
                found.from_ns > 0 and 0 < gap_ns <= MAX_SPREAD_S * 1e9  # a plausible interval
            ):
                _count_gap(self._http_gaps, gap_ns / 1e9)
            if found.count <= 0:
                continue
            if self._instance:
                self._serving.add(self._instance)
            error = is_error(point.attributes)
            explicit_bounds = point.explicit_bounds
            if to_s != 1.0:
                explicit_bounds = tuple(bound * to_s for bound in explicit_bounds)
            for window, share in self._spread(found.from_ns, point.time_ns):
                bucket = window.legacy_bucket() if legacy else window
                count = found.count * share
                bucket.hist_count += count
                if error:
                    bucket.hist_errors += count
                if bucket.hist_bounds is None:
                    bucket.hist_bounds = explicit_bounds
                    bucket.hist_buckets = [n * share for n in found.bucket_counts]
                elif bucket.hist_bounds == explicit_bounds:
                    for i, n in enumerate(found.bucket_counts):
                        bucket.hist_buckets[i] += n * share
                # Other bounds: counted as requests, left out of the quantiles.

    def _resize(self, window_s: float) -> None:
        """Merge the base windows into base windows of ``window_s`` (a multiple of the current size)."""
        size = int(window_s * 1e9)
        merged: dict[int, _Bucket] = {}
        for start in sorted(self._buckets):
            bucket = self._buckets[start]
            into = merged.get(start - start % size)
            if into is None:
                merged[start - start % size] = bucket
            else:
                into.absorb(bucket, self._rng)
        self._buckets, self._base_s, self._base_ns = merged, window_s, size

    # --- reading ---------------------------------------------------------------------------------
    def _per_instance(self, bucket: _Bucket, slot: int, value: float) -> None:
        """Count ``value`` in the (sum, count) pair at ``slot`` of the current instance's resources."""
        if self._instance:
            pairs = bucket.per_instance.get(self._instance)
            if pairs is None:
                pairs = bucket.per_instance[self._instance] = [0.0] * 8
            pairs[slot] += value
            pairs[slot + 1] += 1

    def non_serving(self) -> set[str]:
        """Instances seen that served no request (a prefork master, a sidecar), when others did: they
        are left out of the instance counts and the CPU and memory means."""
        if not self._serving:
            return set()  # metrics only: no instance is known to serve, none is left out
        return set(self._instance_service) - self._serving

    def non_serving_instances(self) -> list[dict[str, object]]:
        """The ``scaling.non_serving_instances`` section: each such instance and its resource use."""
        left_out = self.non_serving()
        totals: dict[str, list[float]] = {instance: [0.0] * 8 for instance in left_out}
        for bucket in self._buckets.values():
            for instance, values in bucket.per_instance.items():
                if instance in totals:
                    totals[instance] = [a + b for a, b in zip(totals[instance], values, strict=True)]
        out: list[dict[str, object]] = []
        for instance in sorted(left_out):
            values = totals[instance]
            cpu = next(
                (
                    values[i] / values[i + 1]
                    for i in (_CPU_PROCESS_SLOT, _CPU_SYSTEM_SLOT, _CPU_TIME_SLOT)
                    if values[i + 1]
                ),
                None,
            )
            memory = values[_MEMORY_SLOT] / values[_MEMORY_SLOT + 1] if values[_MEMORY_SLOT + 1] else None
            out.append(
                {
                    "instance": instance,
                    "service": self._instance_service.get(instance, ""),
                    "cpu_utilization": None if cpu is None else round(cpu, 6),
                    "memory_utilization": None if memory is None else round(memory, 6),
                }
            )
        return out

    def _settled_s(self) -> float:
        """``window_s=None``: the smallest size that gives at most ``AUTO_TARGET_WINDOWS`` windows, but
        at least the typical gap between points of the series used, a multiple of the base size."""
        if self._first_ns is None or self._last_ns is None:
            return self._base_s
        span_s = (self._last_ns - self._first_ns) / 1e9
        size: float = next(
            (s for s in AUTO_WINDOWS_S if span_s / s <= AUTO_TARGET_WINDOWS), AUTO_WINDOWS_S[-1]
        )
        if not self._saw_spans:
            size = max(size, _median_gap_size(self._http_gaps))
        if not self._saw_cpu_gauges:
            size = max(size, _median_gap_size(self._cpu_time_gaps))
        size = max(size, self._base_s)
        return math.ceil(size / self._base_s) * self._base_s  # a whole number of base windows

    def _view(self, window_ns: int) -> dict[int, _Bucket]:
        """The base windows merged into windows of ``window_ns`` (a multiple of the base size), on
        copies: the aggregator is left as it was."""
        if window_ns == self._base_ns:
            return self._buckets
        rng = random.Random(0)  # the same reservoir draws at every read
        merged: dict[int, _Bucket] = {}
        for start in sorted(self._buckets):
            key = start - start % window_ns
            into = merged.get(key)
            if into is None:
                into = merged[key] = _Bucket()
            into.absorb(self._buckets[start], rng)
        return merged

    def windows(self) -> list[Window]:
        """The windows with data, in time order. With ``window_s=None`` the size is the one ``window_s``
        reports at this point; nothing is changed, reading again after more records is like reading
        anew."""
        window_s = self.window_s
        window_ns = int(window_s * 1e9)
        buckets = self._view(window_ns)
        out: list[Window] = []
        first, last = self._first_ns, self._last_ns
        left_out = self.non_serving()
        for start in sorted(buckets):
            bucket = buckets[start]
            if left_out and left_out & bucket.instances:
                bucket = _without(bucket, left_out)
            end = start + window_ns
            lo = max(start, first if first is not None else start)
            hi = min(end, last if last is not None else end)
            covered = max((hi - lo) / 1e9, min(1.0, window_s))
            requests: float = 0
            errors: float = 0
            source: str | None = None
            p50 = p95 = p99 = None
            hist = bucket if bucket.hist_count > 0 else bucket.legacy
            if bucket.span_requests:
                source = "spans"
                requests, errors = bucket.span_requests, bucket.span_errors
                ordered = sorted(bucket.samples)
                p50, p95, p99 = (_nearest_rank(ordered, q) for q in (0.5, 0.95, 0.99))
            elif hist is not None and hist.hist_count > 0:
                source = "histogram"
                requests, errors = hist.hist_count, hist.hist_errors
                if (
                    bucket.hist_lo is not None
                    and bucket.hist_hi is not None
                    and bucket.hist_hi > bucket.hist_lo
                ):
                    covered = (bucket.hist_hi - bucket.hist_lo) / 1e9  # the part the intervals cover
                if hist.hist_bounds is not None:
                    bounds = hist.hist_bounds
                    p50, p95, p99 = (bucket_quantile(q, bounds, hist.hist_buckets) for q in (0.5, 0.95, 0.99))
            cpu = _mean(bucket.cpu_process)
            if cpu is None:
                cpu = _mean(bucket.cpu_system)
            if cpu is None:
                cpu = _mean(bucket.cpu_time)
            metrics = ScalingMetrics(
                cpu_utilization=_clamp01(cpu),
                memory_utilization=_clamp01(_mean(bucket.memory)),
                request_rate=_measured(requests / covered) if source else None,
                error_rate=_clamp01(errors / requests) if requests else None,
                queue_depth=_measured(sum(v for _, v in bucket.queue.values())) if bucket.queue else None,
                response_time_p50=_measured(p50),
                response_time_p95=_measured(p95),
                response_time_p99=_measured(p99),
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
                    slowest=tuple(sorted(bucket.slowest, reverse=True)),
                )
            )
        return out


# Slots of ``_Bucket.per_instance``: each a (sum, count) pair.
_CPU_PROCESS_SLOT: Final = 0
_CPU_SYSTEM_SLOT: Final = 2
_CPU_TIME_SLOT: Final = 4
_MEMORY_SLOT: Final = 6


def _without(bucket: _Bucket, left_out: set[str]) -> _Bucket:
    """A shallow copy of ``bucket`` without the instances ``left_out``: not counted, and their CPU and
    memory taken out of the means."""
    copy = _Bucket()
    for name in _Bucket.__slots__:
        setattr(copy, name, getattr(bucket, name))
    copy.instances = bucket.instances - left_out
    pairs = [list(bucket.cpu_process), list(bucket.cpu_system), list(bucket.cpu_time), list(bucket.memory)]
    for instance in left_out & set(bucket.per_instance):
        values = bucket.per_instance[instance]
        for k, pair in enumerate(pairs):
            pair[0] -= values[2 * k]
            pair[1] -= values[2 * k + 1]
    copy.cpu_process, copy.cpu_system, copy.cpu_time, copy.memory = pairs
    return copy


def _count_gap(gaps: dict[int, int], gap_s: float) -> None:
    """Count a gap between consecutive points under the smallest window size it fits (with slack)."""
    if not gap_s > 0:
        return
    size = next((s for s in AUTO_WINDOWS_S if gap_s <= s * AUTO_GAP_SLACK), None)
    if size is None:
        step = AUTO_WINDOWS_S[-1]
        size = min(math.ceil(gap_s / AUTO_GAP_SLACK / step) * step, AUTO_MAX_WINDOW_S)
    gaps[size] = gaps.get(size, 0) + 1


def _median_gap_size(gaps: dict[int, int]) -> int:
    """The window size of the median gap (0 with none)."""
    total = sum(gaps.values())
    seen = 0
    for size in sorted(gaps):
        seen += gaps[size]
        if 2 * seen >= total:
            return size
    return 0


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _attrs_key(attributes: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attributes.items()))
