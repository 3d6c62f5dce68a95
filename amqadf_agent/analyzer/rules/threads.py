"""Worker-thread rules over the ``amqadf.worker_pool.*`` metrics and SERVER spans (docs/design.md, Threads).

Per pool (``amqadf.worker_pool.name``, all instances together):

* **utilization** = mean busy workers / ``max_workers``: the larger of the mean of the busy gauge
  (``amqadf.worker_pool.workers``, state busy, sampled at collection time) and Little's ``L`` below;
* **queue wait p95** from the ``amqadf.worker_pool.queue.wait`` histogram (deltas, interpolated);
* **throughput** = completed tasks (``amqadf.worker_pool.tasks`` increments) / observed seconds;
* **mean latency** from ``amqadf.worker_pool.task.duration`` (sum / count), else SERVER spans;
* **Little's law** on the mean: ``L = throughput * latency_mean``. A pool sized by it is right for
  steady load only: bursts need more workers than the mean says;
* **peak busy workers** (``busy_peak``): the ``peak_quantile`` (p95) over *peak windows* of the busy
  workers of each window. A window's busy workers are the task seconds completed in it per second
  (``task.duration`` sum increments / the collection interval, i.e. Little's law with the window's own
  throughput and latency; else the window's throughput times the mean latency), or the mean of the
  busy gauge samples when that is higher (summed over instances, at most ``max_workers``). Peak
  windows are ``peak_window_s`` long (10 s), widened to the typical (median) collection interval seen,
  so each one holds a point of every instance;
* **recommended workers** = ``ceil(max(L, busy_peak) / target_utilization)`` (headroom: 0.7 by default);
* **saturated at peaks**: bursts shorter than a window do not show in ``busy_peak``, but their tasks wait
  in the queue. When the queue wait p95, over all tasks or (``queue_wait_p95_peak``) the p95 over
  peak windows of each window's own queue wait p95 (windows of ``peak_min_tasks`` waits or more), is
  *material* (at least ``queue_wait_share`` of the mean task duration or ``queue_wait_material_s``, and
  beyond the first histogram bucket, whose values cannot be told from no wait), the pool is never shrunk:
  the recommendation is at least ``max_workers`` and the finding (``saturated_at_peaks``) says so;
* **USL**: with at least three distinct concurrency levels (mean busy workers per window, rounded to
  0.1) the fit of ``X(N) = lambdaN / (1 + alpha(N-1) + betaN(N-1))`` (``rules.usl``) gives the peak
  ``N* = sqrt((1-alpha)/beta)``; the recommendation never exceeds it;
* **CPU cap**: when CPU use per busy thread (``process.cpu.time`` increments / seconds / the mean busy
  workers, the larger of the busy gauge's mean and ``L``) is at least ``cpu_bound_per_thread``, the work
  is CPU-bound and the recommendation is capped at ``cpu_count``: the config's when given
  (``amqadf-analyze --cpu-count``), else the latest ``system.cpu.logical.count`` of the pool's service
  (the smallest when a pool name is shared by several services);
* **downstream-pool cap**: a worker thread that runs a query holds a database connection, so threads
  beyond the connections only queue on the connection pool, adding no throughput. When the pool's
  service reports ``db.client.connection.max`` (latest value per pool, summed over the service's
  connection pools and instances), the recommendation is capped at that sum. The telemetry does not
  link a task to its queries: a service that reports a connection pool is taken to use it from its
  worker pools (a service without one is never capped).

The caps (USL, then CPU, then downstream pool) apply to the size from ``max(L, busy_peak)``: they bound
a grow, and they can make a shrink (an oversized pool in front of fewer connections or CPUs). A pool
saturated at peaks is the exception: it is kept at ``max_workers`` however low the caps are, and its
finding names the caps as the reason more threads would not help (smooth the bursts or add instances
instead); without a cap below ``max_workers`` it says to grow a step at a time while the wait falls.

The evidence names the cap that bound the recommendation (``limited_by``: ``usl``, ``cpu`` or
``downstream_pool``) with the numbers behind it (``cpu_count``, ``downstream_connections``), and the
numbers of the sizing: ``busy_mean``, ``littles_law_concurrency``, ``busy_peak``, ``peak_windows``,
``peak_window_s``, ``queue_wait_p95_s``, ``queue_wait_p95_peak_s`` and ``queue_wait_material_s``.

Example trace and span ids: the telemetry does not link a span to the pool that ran it, so the
evidence names the slowest SERVER spans (at most ``EXAMPLE_SPANS``) of the services that reported the
pool, in the analysed range; none when those services sent no spans.

A point whose numbers no count, size or duration can be (NaN, infinite, negative, beyond uint64) is
skipped (``skipped_points``); the points around it still count.

Below ``min_tasks`` completed tasks no recommendation is made (the numbers are still reported).

One module over 600 lines: what is fed per pool (``PoolStats``), the peak windows, the caps and the
findings that explain them read one another's numbers throughout; the sizing arithmetic
(``rules.pool_sizing``), the USL fit (``rules.usl``) and the deltas (``analyzer.deltas``) stand apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from amqadf_agent.analyzer.deltas import CounterDeltas, HistogramDeltas, bucket_quantile
from amqadf_agent.analyzer.model import (
    SPAN_KIND_SERVER,
    TEMPORALITY_DELTA,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
    Record,
    SpanRecord,
    service_instance_id,
    service_name,
)
from amqadf_agent.analyzer.plausible import is_count, is_histogram, is_nonnegative
from amqadf_agent.analyzer.recommendation import Evidence, Recommendation, Severity
from amqadf_agent.analyzer.rules.pool_sizing import littles_law, quantile, recommend_workers, size_with_caps
from amqadf_agent.analyzer.rules.usl import UslFit, fit_usl
from amqadf_agent.analyzer.windows import DEFAULT_WINDOW_S, keep_slowest
from amqadf_agent.semconv import (
    ATTR_CPU_MODE,
    ATTR_DB_CLIENT_CONNECTION_POOL_NAME,
    ATTR_POOL_NAME,
    ATTR_POOL_STATE,
    DB_CLIENT_CONNECTION_MAX,
    POOL_MAX_WORKERS,
    POOL_QUEUE_WAIT,
    POOL_STATE_BUSY,
    POOL_TASK_DURATION,
    POOL_TASKS,
    POOL_WORKERS,
    PROCESS_CPU_TIME,
    SYSTEM_CPU_LOGICAL_COUNT,
)

__all__ = [
    "PoolStats",
    "ThreadRuleConfig",
    "ThreadRules",
    "littles_law",
    "quantile",
    "recommend_workers",
]

CATEGORY = "threads"
WORKERS = POOL_WORKERS.name
MAX_WORKERS = POOL_MAX_WORKERS.name
TASKS = POOL_TASKS.name
QUEUE_WAIT = POOL_QUEUE_WAIT.name
TASK_DURATION = POOL_TASK_DURATION.name
CPU_TIME = PROCESS_CPU_TIME.name
CPU_COUNT = SYSTEM_CPU_LOGICAL_COUNT.name
CONNECTION_MAX = DB_CLIENT_CONNECTION_MAX.name
#: The rule of the finding for a pool whose tasks wait in the queue at peaks (no shrink).
RULE_SATURATED = "saturated_at_peaks"
#: Example SERVER spans kept per service for the evidence (the slowest).
EXAMPLE_SPANS = 3
#: Pools kept, by name; the points of further pools are counted in ``points_not_kept``, not read.
MAX_POOLS: Final = 1000


#: The data floor: a pool with fewer completed tasks gets no recommendation (its numbers are still shown).
MIN_TASKS: Final = 50


@dataclass(frozen=True, slots=True)
class ThreadRuleConfig:
    """Thresholds of the thread rules."""

    target_utilization: float = 0.7
    min_tasks: int = MIN_TASKS
    full_confidence_tasks: int = 10_000
    cpu_bound_per_thread: float = 0.7
    #: CPUs of the host the service runs on; None: from ``system.cpu.logical.count``, else unknown
    #: (no CPU cap).
    cpu_count: int | None = None
    window_s: float = DEFAULT_WINDOW_S
    #: A recommendation at most this share of max_workers is a "shrink".
    shrink_share: float = 0.5
    #: Peak windows (seconds): widened to the typical (median) collection interval of the pool.
    peak_window_s: float = 10.0
    #: The quantile over peak windows that sizes the pool (busy workers) and tells saturation (queue wait).
    peak_quantile: float = 0.95
    #: A peak window's own queue wait p95 counts only when it holds at least this many waits.
    peak_min_tasks: int = 20
    #: Queue wait p95 is material at this share of the mean task duration ...
    queue_wait_share: float = 0.1
    #: ... or at this many seconds, whichever is lower; a material wait forbids a shrink.
    queue_wait_material_s: float = 0.1


@dataclass(slots=True)
class PoolStats:
    """What was observed of one worker pool."""

    name: str
    max_workers: int = 0
    busy_sum: float = 0.0
    busy_count: int = 0
    tasks: int = 0
    wait_bounds: tuple[float, ...] | None = None
    wait_buckets: list[int] = field(default_factory=list)
    duration_sum: float = 0.0
    duration_count: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    #: window start -> [busy sum, busy samples, tasks]
    windows: dict[int, list[float]] = field(default_factory=dict)
    max_by_instance: dict[str, int] = field(default_factory=dict)
    #: service.name of every resource that reported the pool.
    services: set[str] = field(default_factory=set)
    # Filled by ThreadRules.pools():
    observed_s: float = 0.0
    latency_fallback: float | None = None
    cpu_cores: float | None = None
    usl: UslFit | None = None
    #: CPUs of the pool's host (config, else ``system.cpu.logical.count``); None: unknown.
    cpu_count: int | None = None
    #: Database connections of the pool's service (``db.client.connection.max``); None: none seen.
    downstream_connections: int | None = None
    #: Increments with their collection intervals, for the peak windows: ``(end ns, series, interval s,
    #: task seconds, tasks)`` of ``task.duration``; ``(end ns, series, interval s, tasks)`` of ``tasks``;
    #: ``(end ns, series, interval s, bucket counts)`` of ``queue.wait``; ``(ns, instance, busy)`` samples.
    duration_intervals: list[tuple[int, Hashable, float, float, int]] = field(default_factory=list)
    task_intervals: list[tuple[int, Hashable, float, float]] = field(default_factory=list)
    wait_intervals: list[tuple[int, Hashable, float, tuple[int, ...]]] = field(default_factory=list)
    busy_samples: list[tuple[int, str, float]] = field(default_factory=list)
    # Filled by ThreadRules.pools() from the peak windows:
    #: Width of the peak windows (s) and how many had data.
    peak_window_s: float = 0.0
    peak_windows: int = 0
    #: ``peak_quantile`` over peak windows of their busy workers; None without windows.
    busy_peak: float | None = None
    #: ``peak_quantile`` over peak windows (``peak_min_tasks`` waits or more) of their queue wait p95.
    queue_wait_p95_peak: float | None = None
    #: The queue wait p95 above which the wait is material (s); None without latency.
    queue_wait_material_s: float | None = None
    #: Tasks waited materially in the queue: the pool is not shrunk.
    saturated_at_peaks: bool = False

    @property
    def busy_mean(self) -> float:
        return self.busy_sum / self.busy_count if self.busy_count else 0.0

    @property
    def concurrency_mean(self) -> float:
        """Mean busy workers: the larger of the busy gauge's mean and Little's ``L`` (the gauge is sampled
        at collection time only and can miss the work done between samples)."""
        return max(self.busy_mean, self.littles_law_concurrency or 0.0)

    @property
    def utilization(self) -> float:
        return self.concurrency_mean / self.max_workers if self.max_workers else 0.0

    @property
    def throughput(self) -> float:
        return self.tasks / self.observed_s if self.observed_s > 0 else 0.0

    @property
    def latency_mean(self) -> float | None:
        if self.duration_count:
            return self.duration_sum / self.duration_count
        return self.latency_fallback

    @property
    def queue_wait_p95(self) -> float | None:
        if self.wait_bounds is None:
            return None
        return bucket_quantile(0.95, self.wait_bounds, self.wait_buckets)

    @property
    def littles_law_concurrency(self) -> float | None:
        latency = self.latency_mean
        return None if latency is None else littles_law(self.throughput, latency)

    @property
    def cpu_per_busy_thread(self) -> float | None:
        busy = self.concurrency_mean
        if self.cpu_cores is None or busy <= 0:
            return None
        return self.cpu_cores / busy


class ThreadRules:
    """Feed records with ``add``; read ``pools()``, ``to_json()`` and ``recommendations()``."""

    #: The kinds of span ``add`` reads (it ignores the others): a caller may skip them.
    SPAN_KINDS: ClassVar[frozenset[int]] = frozenset({SPAN_KIND_SERVER})

    def __init__(
        self,
        config: ThreadRuleConfig | None = None,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        self.config = config or ThreadRuleConfig()
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        self._pools: dict[str, PoolStats] = {}
        self._counters = CounterDeltas()
        self._histograms = HistogramDeltas()
        self._window_ns = int(self.config.window_s * 1e9)
        self._span_sum = 0.0
        self._span_count = 0
        #: service -> min-heap of its slowest SERVER spans ``(duration s, trace id, span id)``.
        self._slowest: dict[str, list[tuple[float, str, str]]] = {}
        self._last_resource: object = None
        self._last_service = ""
        self._cpu_seconds = 0.0
        self._cpu_first: int | None = None
        self._cpu_last: int | None = None
        self._first: int | None = None
        self._last: int | None = None
        #: service -> (time_ns, logical CPUs) of the latest ``system.cpu.logical.count``.
        self._cpu_counts: dict[str, tuple[int, int]] = {}
        #: (service, instance, connection pool) -> (time_ns, size) of the latest ``db.client.connection.max``.
        self._connections: dict[tuple[str, str, str], tuple[int, int]] = {}
        #: series -> (start ns, time ns) of its previous point: the collection interval of the next one.
        self._times: dict[Hashable, tuple[int, int]] = {}
        #: Points left out for a number no count, size or duration can be (``analyzer.plausible``).
        self.skipped_points = 0
        self.points_not_kept = 0

    def _in_range(self, time_ns: int) -> bool:
        return time_ns > 0 and not (
            (self.since_ns is not None and time_ns < self.since_ns)
            or (self.until_ns is not None and time_ns > self.until_ns)
        )

    def _interval_s(self, key: Hashable, temporality: int, start_ns: int, time_ns: int) -> float | None:
        """Seconds the increment of a point covers (``CounterDeltas``/``HistogramDeltas`` give the
        increment); None for a baseline point (a cumulative series started before ``since_ns``) or an
        empty interval."""
        if temporality == TEMPORALITY_DELTA:
            span = time_ns - start_ns
        else:
            previous = self._times.get(key)
            self._times[key] = (start_ns, time_ns)
            if previous is not None and previous[0] == start_ns:
                if time_ns <= previous[1]:
                    return None  # a repeated (or out-of-order) point adds nothing
                span = time_ns - previous[1]
            elif self.since_ns is not None and start_ns < self.since_ns:
                return None
            else:
                span = time_ns - start_ns
        return span / 1e9 if span > 0 else None

    def add(self, record: Record) -> None:
        resource = record.resource
        if resource is not self._last_resource:  # records of one resource share its mapping
            self._last_resource = resource
            self._last_service = service_name(resource)
        if self.service is not None and self._last_service != self.service:
            return
        if type(record) is SpanRecord:
            if record.kind == SPAN_KIND_SERVER and self._in_range(record.end_ns):
                duration = record.duration_s
                self._span_sum += duration
                self._span_count += 1
                heap = self._slowest.setdefault(self._last_service, [])
                if len(heap) < EXAMPLE_SPANS or duration > heap[0][0]:
                    keep_slowest(heap, (duration, record.trace_id, record.span_id), EXAMPLE_SPANS)
            return
        if type(record) is not MetricRecord:
            return
        name = record.name
        if name == CPU_TIME:
            self._add_cpu(record)
            return
        if name in (CPU_COUNT, CONNECTION_MAX):
            self._add_size(record)
            return
        if name not in (WORKERS, MAX_WORKERS, TASKS, QUEUE_WAIT, TASK_DURATION):
            return
        instance = service_instance_id(record.resource)
        service = service_name(record.resource)
        for point in record.points:
            pool_name = point.attributes.get(ATTR_POOL_NAME)
            if not isinstance(pool_name, str):
                continue
            if pool_name not in self._pools and len(self._pools) >= MAX_POOLS:
                self.points_not_kept += 1
                continue
            key: Hashable = (instance, name, tuple(sorted((k, repr(v)) for k, v in point.attributes.items())))
            in_range = self._in_range(point.time_ns)
            if isinstance(point, HistogramPoint):
                if not is_histogram(point, durations=True):
                    self.skipped_points += 1
                    continue
                count, buckets, total = self._histograms.delta(
                    key, record.aggregation_temporality, point, self.since_ns
                )
                interval = self._interval_s(
                    key, record.aggregation_temporality, point.start_ns, point.time_ns
                )
                if not in_range:
                    continue
                if count <= 0:
                    # An idle interval: no task ended in it (busy workers 0 for the peak windows).
                    if interval is not None and name == TASK_DURATION and pool_name in self._pools:
                        self._pools[pool_name].duration_intervals.append(
                            (point.time_ns, key, interval, 0.0, 0)
                        )
                    continue
                pool = self._pool(pool_name, point.time_ns, service)
                if name == QUEUE_WAIT:
                    if pool.wait_bounds is None:
                        pool.wait_bounds = point.explicit_bounds
                        pool.wait_buckets = list(buckets)
                    elif pool.wait_bounds == point.explicit_bounds:
                        for i, n in enumerate(buckets):
                            pool.wait_buckets[i] += n
                    else:
                        continue
                    if interval is not None:
                        pool.wait_intervals.append((point.time_ns, key, interval, tuple(buckets)))
                elif name == TASK_DURATION:
                    pool.duration_sum += total
                    pool.duration_count += count
                    if interval is not None:
                        pool.duration_intervals.append((point.time_ns, key, interval, total, count))
                continue
            if not isinstance(point, NumberPoint) or point.value is None:
                continue
            if not is_count(point.value):  # tasks, workers: counts
                self.skipped_points += 1
                continue
            if name == TASKS:
                delta = self._counters.delta(key, record.aggregation_temporality, point, self.since_ns)
                interval = self._interval_s(
                    key, record.aggregation_temporality, point.start_ns, point.time_ns
                )
                if in_range:
                    pool = self._pool(pool_name, point.time_ns, service)
                    pool.tasks += round(delta)
                    self._window(pool, point.time_ns)[2] += delta
                    if interval is not None:
                        pool.task_intervals.append((point.time_ns, key, interval, delta))
                continue
            if not in_range:
                continue
            pool = self._pool(pool_name, point.time_ns, service)
            if name == MAX_WORKERS:
                pool.max_by_instance[instance] = int(point.value)
                pool.max_workers = sum(pool.max_by_instance.values())
            elif point.attributes.get(ATTR_POOL_STATE) == POOL_STATE_BUSY:
                pool.busy_sum += float(point.value)
                pool.busy_count += 1
                pool.busy_samples.append((point.time_ns, instance, float(point.value)))
                window = self._window(pool, point.time_ns)
                window[0] += float(point.value)
                window[1] += 1

    def _add_cpu(self, record: MetricRecord) -> None:
        instance = service_instance_id(record.resource)
        for point in record.points:
            if not isinstance(point, NumberPoint) or point.attributes.get(ATTR_CPU_MODE) in ("idle", "wait"):
                continue
            if point.value is not None and not is_nonnegative(point.value):
                self.skipped_points += 1
                continue
            key = (
                instance,
                record.scope_name,
                tuple(sorted((k, repr(v)) for k, v in point.attributes.items())),
            )
            delta = self._counters.delta(key, record.aggregation_temporality, point, self.since_ns)
            if self._in_range(point.time_ns):
                self._cpu_seconds += delta
                if self._cpu_first is None or point.start_ns < self._cpu_first:
                    self._cpu_first = max(point.start_ns, self.since_ns or 0) or point.time_ns
                if self._cpu_last is None or point.time_ns > self._cpu_last:
                    self._cpu_last = point.time_ns

    def _add_size(self, record: MetricRecord) -> None:
        """The latest CPU count (per service) or connection pool size (per pool): configuration, so
        the latest point up to ``until`` counts, whenever it was reported."""
        service = service_name(record.resource)
        instance = service_instance_id(record.resource)
        for point in record.points:
            if not isinstance(point, NumberPoint) or point.value is None:
                continue
            if not is_count(point.value):
                self.skipped_points += 1
                continue
            if self.until_ns is not None and point.time_ns > self.until_ns:
                continue
            value = round(point.value)
            if record.name == CPU_COUNT:
                if value > 0:
                    latest = self._cpu_counts.get(service)
                    if latest is None or point.time_ns >= latest[0]:
                        self._cpu_counts[service] = (point.time_ns, value)
                continue
            pool_name = point.attributes.get(ATTR_DB_CLIENT_CONNECTION_POOL_NAME)
            key = (service, instance, pool_name if isinstance(pool_name, str) else "")
            previous = self._connections.get(key)
            if previous is None or point.time_ns >= previous[0]:
                self._connections[key] = (point.time_ns, value)

    def _pool(self, name: str, time_ns: int, service: str) -> PoolStats:
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = PoolStats(name)
        pool.services.add(service)
        pool.start_ns = time_ns if pool.start_ns is None else min(pool.start_ns, time_ns)
        pool.end_ns = time_ns if pool.end_ns is None else max(pool.end_ns, time_ns)
        return pool

    def _window(self, pool: PoolStats, time_ns: int) -> list[float]:
        start = time_ns - time_ns % self._window_ns
        window = pool.windows.get(start)
        if window is None:
            window = pool.windows[start] = [0.0, 0.0, 0.0]
        return window

    def pools(self) -> list[PoolStats]:
        """Every pool seen, by name, with the derived numbers filled in."""
        latency = self._span_sum / self._span_count if self._span_count else None
        cores = None
        if self._cpu_first is not None and self._cpu_last is not None and self._cpu_last > self._cpu_first:
            cores = self._cpu_seconds / ((self._cpu_last - self._cpu_first) / 1e9)
        out = []
        window_s = self.config.window_s
        for name in sorted(self._pools):
            pool = self._pools[name]
            if pool.start_ns is not None and pool.end_ns is not None:
                # Counters report increments at their points: the first point covers one interval
                # before it at most, so the observed time is the span of points plus one window share.
                pool.observed_s = max((pool.end_ns - pool.start_ns) / 1e9, 1.0)
            pool.latency_fallback = latency
            pool.cpu_cores = cores
            samples = [
                (busy / count, tasks / window_s) for busy, count, tasks in pool.windows.values() if count > 0
            ]
            pool.usl = fit_usl(samples)
            pool.cpu_count = self._cpu_count(pool)
            pool.downstream_connections = self._downstream(pool)
            self._peaks(pool)
            out.append(pool)
        return out

    def _peaks(self, pool: PoolStats) -> None:
        """Fill the peak-window numbers of ``pool`` and whether it is saturated at peaks."""
        config = self.config
        intervals = [i[2] for i in pool.duration_intervals] + [i[2] for i in pool.task_intervals]
        intervals += [i[2] for i in pool.wait_intervals]
        # The typical collection interval (the median: a series' first point may cover much longer).
        width = max(config.peak_window_s, statistics.median(intervals) if intervals else 0.0)
        width_ns = max(int(width * 1e9), 1)
        pool.peak_window_s = width

        def window(time_ns: int) -> int:
            return time_ns - time_ns % width_ns

        # Per window and series: [seconds or tasks, interval seconds], then rates summed over series.
        busy: dict[int, dict[Hashable, list[float]]] = {}
        for end, key, interval, total, _count in pool.duration_intervals:
            acc = busy.setdefault(window(end), {}).setdefault(key, [0.0, 0.0])
            acc[0] += total
            acc[1] += interval
        latency = pool.latency_mean
        if latency is not None:
            # Without task.duration in a window: its throughput (tasks counter) times the mean latency.
            tasks: dict[int, dict[Hashable, list[float]]] = {}
            for end, key, interval, done in pool.task_intervals:
                if window(end) not in busy:
                    acc = tasks.setdefault(window(end), {}).setdefault(key, [0.0, 0.0])
                    acc[0] += done * latency
                    acc[1] += interval
            busy.update(tasks)
        per_window = {start: sum(v[0] / v[1] for v in series.values()) for start, series in busy.items()}
        gauges: dict[int, dict[str, list[float]]] = {}
        for time_ns, instance, value in pool.busy_samples:
            acc = gauges.setdefault(window(time_ns), {}).setdefault(instance, [0.0, 0.0])
            acc[0] += value
            acc[1] += 1
        for start, instances in gauges.items():
            sampled = sum(v[0] / v[1] for v in instances.values())
            per_window[start] = max(per_window.get(start, 0.0), sampled)
        if pool.max_workers > 0:  # a task ending in a window may have started in the one before
            per_window = {start: min(v, float(pool.max_workers)) for start, v in per_window.items()}
        pool.peak_windows = len(per_window)
        pool.busy_peak = quantile(config.peak_quantile, list(per_window.values()))

        waits: dict[int, list[int]] = {}
        for end, _key, _interval, buckets in pool.wait_intervals:
            merged = waits.setdefault(window(end), [0] * len(buckets))
            for i, n in enumerate(buckets):
                merged[i] += n
        bounds = pool.wait_bounds or ()
        p95s = [
            p95
            for merged in waits.values()
            if sum(merged) >= config.peak_min_tasks
            and (p95 := bucket_quantile(0.95, bounds, merged)) is not None
        ]
        pool.queue_wait_p95_peak = quantile(config.peak_quantile, p95s)

        pool.queue_wait_material_s = None
        pool.saturated_at_peaks = False
        if latency is not None and latency > 0:
            material = min(config.queue_wait_share * latency, config.queue_wait_material_s)
            pool.queue_wait_material_s = material
            # The first bucket's values cannot be told from no wait at all (interpolation puts its
            # p95 near its upper bound): a wait is material only beyond it.
            resolution = bounds[0] if bounds and bounds[0] > 0 else 0.0
            pool.saturated_at_peaks = any(
                wait is not None and wait >= material and wait > resolution
                for wait in (pool.queue_wait_p95, pool.queue_wait_p95_peak)
            )

    def _cpu_count(self, pool: PoolStats) -> int | None:
        if self.config.cpu_count is not None:
            return self.config.cpu_count
        counts = [self._cpu_counts[s][1] for s in pool.services if s in self._cpu_counts]
        return min(counts) if counts else None

    def _downstream(self, pool: PoolStats) -> int | None:
        sizes = [
            size for (service, _i, _p), (_t, size) in self._connections.items() if service in pool.services
        ]
        return sum(sizes) if sizes else None

    def examples(self, pool: PoolStats) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Trace and span ids of the slowest SERVER spans of the pool's services (see the docstring)."""
        spans = sorted((e for s in pool.services for e in self._slowest.get(s, ())), reverse=True)
        spans = spans[:EXAMPLE_SPANS]
        return tuple(dict.fromkeys(t for _, t, _ in spans)), tuple(s for _, _, s in spans)

    def recommended(self, pool: PoolStats) -> tuple[int | None, list[str]]:
        """The recommended workers of a pool from ``pools()`` and the caps applied (in words)."""
        recommended, caps = self._recommended(pool)
        return recommended, [words for _kind, words in caps]

    def _recommended(self, pool: PoolStats) -> tuple[int | None, list[tuple[str, str]]]:
        latency = pool.latency_mean
        if latency is None or pool.tasks <= 0:
            return None, []
        config = self.config
        per_thread = pool.cpu_per_busy_thread

        def size(needed: float) -> tuple[int, list[tuple[str, str]]]:
            return size_with_caps(
                needed,
                target_utilization=config.target_utilization,
                usl=pool.usl,
                cpu_bound=per_thread is not None and per_thread >= config.cpu_bound_per_thread,
                cpu_count=pool.cpu_count,
                downstream_max=pool.downstream_connections,
            )

        recommended, caps = size(max(littles_law(pool.throughput, latency), pool.busy_peak or 0.0))
        if pool.saturated_at_peaks and recommended < pool.max_workers:
            # Never shrink a pool whose tasks wait at peaks; the caps that would stop a grow by one
            # worker say why more threads would not help.
            grown, caps = size((pool.max_workers + 1) * config.target_utilization)
            return pool.max_workers, caps if grown <= pool.max_workers else []
        return recommended, caps

    def to_json(self) -> list[dict[str, Any]]:
        """The ``threads`` section of the JSON report."""
        out = []
        for pool in self.pools():
            recommended, _caps = self.recommended(pool)
            little = pool.littles_law_concurrency
            wait = pool.queue_wait_p95
            peak_wait = pool.queue_wait_p95_peak
            latency = pool.latency_mean
            out.append(
                {
                    "pool": pool.name,
                    "max_workers": pool.max_workers,
                    "utilization": round(pool.utilization, 6),
                    "queue_wait_p95": None if wait is None else round(wait, 6),
                    "throughput": round(pool.throughput, 6),
                    "latency_mean": None if latency is None else round(latency, 6),
                    "littles_law_concurrency": None if little is None else round(little, 6),
                    "recommended": recommended,
                    "busy_peak": None if pool.busy_peak is None else round(pool.busy_peak, 6),
                    "queue_wait_p95_peak": None if peak_wait is None else round(peak_wait, 6),
                    "saturated_at_peaks": pool.saturated_at_peaks,
                }
            )
        return out

    def recommendations(self) -> list[Recommendation]:
        config = self.config
        found: list[Recommendation] = []
        for pool in self.pools():
            if pool.tasks < config.min_tasks or pool.max_workers <= 0:
                continue
            recommended, limits = self._recommended(pool)
            if recommended is None:
                continue
            caps = [words for _kind, words in limits]
            grow = recommended > pool.max_workers
            saturated = pool.saturated_at_peaks and not grow
            shrink = not pool.saturated_at_peaks and recommended <= config.shrink_share * pool.max_workers
            if not grow and not shrink and not saturated:
                continue
            latency = pool.latency_mean or 0.0
            little = littles_law(pool.throughput, latency)
            needed = max(little, pool.busy_peak or 0.0)
            numbers: dict[str, int | float | str] = {
                "max_workers": pool.max_workers,
                "busy_mean": round(pool.busy_mean, 4),
                "utilization": round(pool.utilization, 4),
                "tasks": pool.tasks,
                "throughput_per_s": round(pool.throughput, 4),
                "latency_mean_s": round(latency, 6),
                "littles_law_concurrency": round(little, 4),
            }
            if pool.busy_peak is not None:
                numbers["busy_peak"] = round(pool.busy_peak, 4)
            numbers.update(
                peak_windows=pool.peak_windows,
                peak_window_s=round(pool.peak_window_s, 3),
                sized_concurrency=round(needed, 4),
                recommended=recommended,
            )
            wait = pool.queue_wait_p95
            if wait is not None:
                numbers["queue_wait_p95_s"] = round(wait, 6)
            if pool.queue_wait_p95_peak is not None:
                numbers["queue_wait_p95_peak_s"] = round(pool.queue_wait_p95_peak, 6)
            if pool.queue_wait_material_s is not None:
                numbers["queue_wait_material_s"] = round(pool.queue_wait_material_s, 6)
            if pool.usl is not None:
                numbers.update(
                    usl_lambda=round(pool.usl.lam, 4),
                    usl_alpha=round(pool.usl.alpha, 4),
                    usl_beta=round(pool.usl.beta, 6),
                )
                if pool.usl.peak is not None:
                    numbers["usl_peak"] = round(pool.usl.peak, 3)
            per_thread = pool.cpu_per_busy_thread
            if per_thread is not None:
                numbers["cpu_per_busy_thread"] = round(per_thread, 4)
            if pool.cpu_count is not None:
                numbers["cpu_count"] = pool.cpu_count
            if pool.downstream_connections is not None:
                numbers["downstream_connections"] = pool.downstream_connections
            if limits:
                numbers["limited_by"] = limits[-1][0]
                numbers["capped_by"] = "; ".join(caps)
            share = min(1.0, math.log1p(pool.tasks) / math.log1p(config.full_confidence_tasks))
            q = f"p{config.peak_quantile * 100:g}"
            formula = (
                f"busy_peak = {q} over {pool.peak_window_s:g}s windows of busy workers (task seconds per "
                "second, or the busy gauge); L = throughput * latency_mean (Little's law); "
                f"recommended = ceil(max(L, busy_peak) / {config.target_utilization:g}), capped by USL "
                "N* = sqrt((1-alpha)/beta), by CPUs when CPU-bound and by the database connections of the "
                "service (downstream pool); never below max_workers while the queue wait is material"
            )
            material = (
                f"queue wait p95 (all tasks, or {q} over windows) >= min({config.queue_wait_share:g} * "
                f"latency_mean, {config.queue_wait_material_s * 1000:g} ms), beyond the first bucket"
            )
            if saturated:
                severity: Severity = "medium"
                rule = RULE_SATURATED
                title = f"Worker pool {pool.name} is saturated at peaks: keep its {pool.max_workers} workers"
                waits = [f"{_ms(wait)} over all tasks"] if wait is not None else []
                if pool.queue_wait_p95_peak is not None:
                    waits.append(f"{_ms(pool.queue_wait_p95_peak)} at {q} of windows")
                sized = max(1, math.ceil(needed / config.target_utilization - 1e-9))
                action = f"Keep max workers of pool {pool.name} at {pool.max_workers}" + (
                    f"; do not shrink it to the {sized} that its busy workers alone would call for"
                    if sized < pool.max_workers
                    else ""
                )
                action += (
                    f" ({little:.2f} on average, {pool.busy_peak or 0.0:.2f} at {q} of "
                    f"{pool.peak_window_s:g}s windows): at peaks tasks wait in the queue before a worker "
                    "takes them (queue wait p95 "
                    f"{', '.join(waits)}; mean task {_ms(latency)}). "
                )
                if caps:
                    action += (
                        "More threads would not add throughput (" + "; ".join(caps) + "): smooth the "
                        "bursts (a rate limiter or a bounded queue in front of the pool) or add instances."
                    )
                else:
                    action += (
                        "To cut the wait, grow it a worker or two at a time while the queue wait p95 "
                        "falls, or smooth the bursts."
                    )
                threshold = material
            else:
                verb = "Grow" if grow else "Shrink"
                rule = "grow_pool" if grow else "shrink_pool"
                severity = "medium" if grow else "low"
                title = f"{verb} worker pool {pool.name}: {pool.max_workers} -> {recommended} workers"
                action = f"Set max workers of pool {pool.name} to {recommended}" + (
                    " (more threads would not add throughput: " + "; ".join(caps) + ")" if caps else "."
                )
                threshold = (
                    "recommended > max_workers"
                    if grow
                    else f"recommended <= {config.shrink_share:g} * max_workers, and the queue wait is "
                    f"not material ({material})"
                )
            trace_ids, span_ids = self.examples(pool)
            found.append(
                Recommendation(
                    category=CATEGORY,
                    rule=rule,
                    severity=severity,
                    title=title,
                    action=action,
                    subject=pool.name,
                    evidence=Evidence(
                        numbers=numbers,
                        formula=formula,
                        threshold=f"{threshold}; data floor: >= {config.min_tasks} tasks",
                        window_start_ns=pool.start_ns,
                        window_end_ns=pool.end_ns,
                        trace_ids=trace_ids,
                        span_ids=span_ids,
                    ),
                    confidence=round(0.3 + 0.65 * share, 3),
                    impact_s=0.0,
                )
            )
        return found


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"
