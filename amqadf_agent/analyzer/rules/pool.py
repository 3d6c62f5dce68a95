"""Connection-pool rules over the OpenTelemetry pool metrics: a pool that is full, and requests that
wait for a connection.

Read per pool (``service.name``, ``service.instance.id`` and the pool's name):

* ``db.client.connection.count`` with ``db.client.connection.state`` = ``used`` (an up-down counter:
  each exported point is the number of connections in use then), against ``db.client.connection.max``;
  ``db.client.connection.pending_requests``, the requests waiting for a connection;
* ``db.client.connection.wait_time``, the time to obtain a connection (a histogram, seconds);
* the names before semconv 1.26 that instrumentations still record (``db.client.connections.usage``
  with ``state``/``pool.name``, ``db.client.connections.max``, ``.pending_requests``, and
  ``.wait_time`` in milliseconds).

The rules, category ``database``:

* **pool saturated** (``pool_saturated``): in at least ``SATURATED_SHARE`` of the samples the pool had
  every connection in use (``used >= max``) or requests pending, over at least ``MIN_SAMPLES``
  samples;
* **connection wait** (``pool_wait``): the p95 of the waits for a connection is at least ``WAIT_P95_S``
  over at least ``MIN_WAITS`` waits;
* **queries fill the pool** (``pool_concurrency``): a sweep over the times of an instance's db client
  spans counts the queries in flight at once; where they reach the size of its pools (the sum of
  their ``db.client.connection.max``) for at least ``SATURATED_SHARE`` of the time queries run, over
  at least ``MIN_SWEEP_SPANS`` spans. This needs no pool instrumentation beyond the size.

Memory: per pool a count of samples per in-use value (a pool has few connections) and the summed
wait-time buckets; two times per db span for the sweep, at most ``MAX_SWEPT_SPANS`` spans (3 MB).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from amqadf_agent.analyzer.deltas import HistogramDeltas, bucket_quantile
from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
    Record,
    SpanRecord,
    service_instance_id,
    service_name,
)
from amqadf_agent.analyzer.recommendation import Evidence, Recommendation, Severity
from amqadf_agent.semconv import (
    ATTR_DB_CLIENT_CONNECTION_POOL_NAME,
    ATTR_DB_CLIENT_CONNECTION_STATE,
    ATTR_DB_SYSTEM_NAME,
    ATTR_DB_SYSTEM_OLD,
    ATTR_POOL_NAME_OLD,
    ATTR_STATE_OLD,
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_MAX,
    DB_CLIENT_CONNECTION_PENDING,
    DB_CLIENT_CONNECTION_WAIT_TIME,
    DB_CLIENT_CONNECTIONS_MAX_OLD,
    DB_CLIENT_CONNECTIONS_PENDING_OLD,
    DB_CLIENT_CONNECTIONS_USAGE_OLD,
    DB_CLIENT_CONNECTIONS_WAIT_TIME_OLD,
)

__all__ = ["PoolRules", "PoolStats"]

CATEGORY: Final = "database"
#: Our thresholds: a pool found full in one sample out of five has no headroom for a burst; a wait
#: of 50 ms for a connection is a visible share of a typical 100-500 ms request.
SATURATED_SHARE: Final = 0.2
WAIT_P95_S: Final = 0.05
#: Data floors: fewer samples or waits than these, no finding.
MIN_SAMPLES: Final = 5
MIN_WAITS: Final = 20
MIN_SWEEP_SPANS: Final = 20
#: Db spans kept for the sweep, all instances together (16 bytes each); later ones are not swept.
MAX_SWEPT_SPANS: Final = 200_000
#: Pools kept (service, instance, pool name); the points of further pools are counted, not read.
MAX_POOLS: Final = 1000
_TIME_LIMIT: Final = 2**64

_USED: Final = frozenset({DB_CLIENT_CONNECTION_COUNT.name, DB_CLIENT_CONNECTIONS_USAGE_OLD})
_MAX: Final = frozenset({DB_CLIENT_CONNECTION_MAX.name, DB_CLIENT_CONNECTIONS_MAX_OLD})
_PENDING: Final = frozenset({DB_CLIENT_CONNECTION_PENDING, DB_CLIENT_CONNECTIONS_PENDING_OLD})
_WAIT: Final = frozenset({DB_CLIENT_CONNECTION_WAIT_TIME.name, DB_CLIENT_CONNECTIONS_WAIT_TIME_OLD})
_NAMES: Final = _USED | _MAX | _PENDING | _WAIT


@dataclass(slots=True)
class PoolStats:
    """What was seen of one pool of one instance."""

    service: str
    instance: str
    pool: str
    #: Samples per number of connections in use.
    used: dict[int, int] = field(default_factory=dict)
    max: int | None = None
    #: Samples taken of the pending requests, and the times (ns) of those with requests pending.
    pending_samples: int = 0
    pending_times: set[int] = field(default_factory=set)
    #: Samples in use per time (ns), to tell which were taken while requests were pending.
    used_times: dict[int, int] = field(default_factory=dict)
    wait_count: int = 0
    wait_sum_s: float = 0.0
    wait_bounds: tuple[float, ...] = ()
    wait_buckets: list[float] = field(default_factory=list)
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def samples(self) -> int:
        return sum(self.used.values())

    def saturated_samples(self) -> int:
        """Samples in which every connection was in use or requests were pending."""
        full: set[int] = set()
        if self.max is not None and self.max > 0:
            full = {t for t, used in self.used_times.items() if used >= self.max}
        return len(full | self.pending_times)

    def wait_p95_s(self) -> float | None:
        if not self.wait_count or not self.wait_bounds:
            return None
        return bucket_quantile(0.95, self.wait_bounds, self.wait_buckets)


class PoolRules:
    """Feed every record (``add``), then ask for ``recommendations()``."""

    #: Db client spans, for the sweep of concurrent queries.
    SPAN_KINDS: ClassVar[frozenset[int]] = frozenset({SPAN_KIND_CLIENT})

    def __init__(
        self, *, service: str | None = None, since_ns: int | None = None, until_ns: int | None = None
    ) -> None:
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        #: Whether a time filter is set at all (most runs: none, no test per span).
        self._timed = since_ns is not None or until_ns is not None
        self._pools: dict[tuple[str, str, str], PoolStats] = {}
        #: Points of pools beyond ``MAX_POOLS``.
        self.points_not_kept = 0
        self._histograms = HistogramDeltas()
        #: (service, instance) -> start and end times (ns) of its db client spans, for the sweep.
        self._spans: dict[tuple[str, str], tuple[array[int], array[int]]] = {}
        self._swept = 0
        self._last_resource: object = None
        self._last_key: tuple[str, str] | None = None

    def _inside(self, time_ns: int) -> bool:
        if self.since_ns is not None and time_ns < self.since_ns:
            return False
        return not (self.until_ns is not None and time_ns > self.until_ns)

    def add(self, record: Record) -> None:
        """Take a pool metric or a db client span into account; anything else is skipped."""
        if type(record) is SpanRecord:
            self._add_span(record)
            return
        if type(record) is not MetricRecord or record.name not in _NAMES:
            return
        service = service_name(record.resource)
        if self.service is not None and service != self.service:
            return
        instance = service_instance_id(record.resource)
        name = record.name
        for point in record.points:
            attributes = point.attributes
            pool_name = attributes.get(ATTR_DB_CLIENT_CONNECTION_POOL_NAME)
            pool_name = pool_name or attributes.get(ATTR_POOL_NAME_OLD)
            pool_key = (service, instance, pool_name if isinstance(pool_name, str) else "")
            if pool_key not in self._pools and len(self._pools) >= MAX_POOLS:
                self.points_not_kept += 1
                continue
            if isinstance(point, HistogramPoint) and name in _WAIT:
                self._wait(pool_key, record, point)
                continue
            if not isinstance(point, NumberPoint) or point.value is None or not self._inside(point.time_ns):
                continue
            value = point.value
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            pool = self._pool(pool_key)
            pool.start_ns = point.time_ns if pool.start_ns is None else min(pool.start_ns, point.time_ns)
            pool.end_ns = point.time_ns if pool.end_ns is None else max(pool.end_ns, point.time_ns)
            if name in _MAX:
                pool.max = max(pool.max or 0, int(value))
            elif name in _PENDING:
                pool.pending_samples += 1
                if value > 0:
                    pool.pending_times.add(point.time_ns)
            else:
                state = attributes.get(ATTR_DB_CLIENT_CONNECTION_STATE) or attributes.get(ATTR_STATE_OLD)
                if state == "used":
                    used = max(int(value), 0)
                    pool.used[used] = pool.used.get(used, 0) + 1
                    pool.used_times[point.time_ns] = used

    def _add_span(self, span: SpanRecord) -> None:
        attributes = span.attributes
        if not (attributes.get(ATTR_DB_SYSTEM_NAME) or attributes.get(ATTR_DB_SYSTEM_OLD)):
            return
        start_ns, end_ns = span.start_ns, span.end_ns
        if (
            self._swept >= MAX_SWEPT_SPANS
            or not 0 <= start_ns < end_ns < _TIME_LIMIT
            or (self._timed and not self._inside(end_ns))
        ):
            return  # a time outside uint64 (which a hostile file can hold) fits no array
        if span.resource is not self._last_resource:
            self._last_resource = span.resource
            service = service_name(span.resource)
            keep = self.service is None or service == self.service
            self._last_key = (service, service_instance_id(span.resource)) if keep else None
        if self._last_key is None:
            return
        times = self._spans.get(self._last_key)
        if times is None:
            times = self._spans[self._last_key] = (array("Q"), array("Q"))
        times[0].append(start_ns)
        times[1].append(end_ns)
        self._swept += 1

    def _pool(self, key: tuple[str, str, str]) -> PoolStats:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = PoolStats(*key)
        return pool

    def _wait(self, key: tuple[str, str, str], record: MetricRecord, point: HistogramPoint) -> None:
        series: Hashable = (key, record.name, tuple(sorted(point.attributes.items(), key=str)))
        count, buckets, total = self._histograms.delta(
            series, record.aggregation_temporality, point, self.since_ns
        )
        if not count or not self._inside(point.time_ns):
            return
        scale = 0.001 if record.unit == "ms" else 1.0
        bounds = tuple(bound * scale for bound in point.explicit_bounds)
        pool = self._pool(key)
        if pool.wait_bounds and pool.wait_bounds != bounds:
            return  # another bucket layout for the same pool: keep the first one's
        pool.wait_bounds = bounds
        if not pool.wait_buckets:
            pool.wait_buckets = [0.0] * len(buckets)
        for index, n in enumerate(buckets):
            pool.wait_buckets[index] += n
        pool.wait_count += count
        pool.wait_sum_s += total * scale
        pool.start_ns = point.time_ns if pool.start_ns is None else min(pool.start_ns, point.time_ns)
        pool.end_ns = point.time_ns if pool.end_ns is None else max(pool.end_ns, point.time_ns)

    def stats(self) -> list[PoolStats]:
        return sorted(self._pools.values(), key=lambda p: (p.service, p.instance, p.pool))

    def recommendations(self) -> list[Recommendation]:
        found: list[Recommendation] = self._concurrency()
        for pool in self.stats():
            label = pool.pool or "(unnamed pool)"
            where = f"{pool.service}" + (f" instance {pool.instance}" if pool.instance else "")
            subject = f"{pool.service}/{pool.pool}"
            base: dict[str, int | float | str] = {"service": pool.service, "pool": label}
            if pool.instance:
                base["instance"] = pool.instance
            samples = max(pool.samples, pool.pending_samples)
            saturated = pool.saturated_samples()
            if samples >= MIN_SAMPLES and saturated / samples >= SATURATED_SHARE:
                numbers = dict(base, samples=samples, saturated_samples=saturated)
                numbers["saturated_share"] = round(saturated / samples, 3)
                numbers["used_max"] = max(pool.used, default=0)
                if pool.max is not None:
                    numbers["max"] = pool.max
                found.append(
                    _finding(
                        rule="pool_saturated",
                        severity="high" if saturated / samples >= 0.5 else "medium",
                        title=f"Connection pool {label} of {where} full in {saturated}/{samples} samples",
                        action=(
                            "Requests queue for a connection: make the queries shorter or fewer first "
                            "(the N+1 and slow-query findings), then raise the pool size if the database "
                            "has room for more connections."
                        ),
                        subject=subject,
                        numbers=numbers,
                        formula="saturated_share = samples with used >= max or pending > 0 / samples",
                        threshold=f"saturated_share >= {SATURATED_SHARE:g} over samples >= {MIN_SAMPLES}",
                        window=(pool.start_ns, pool.end_ns),
                        confidence=round(min(0.9, 0.4 + 0.05 * samples), 3),
                        impact_s=0.0,
                    )
                )
            p95 = pool.wait_p95_s()
            if p95 is not None and pool.wait_count >= MIN_WAITS and p95 >= WAIT_P95_S:
                numbers = dict(base, waits=pool.wait_count, wait_p95_ms=round(p95 * 1000, 3))
                numbers["wait_mean_ms"] = round(pool.wait_sum_s / pool.wait_count * 1000, 3)
                numbers["wait_total_ms"] = round(pool.wait_sum_s * 1000, 3)
                found.append(
                    _finding(
                        rule="pool_wait",
                        severity="high" if p95 >= 4 * WAIT_P95_S else "medium",
                        title=f"Requests wait {p95 * 1000:.0f} ms (p95) for a connection: {label} in {where}",
                        action=(
                            "The pool is too small for the load or connections are held too long: hold "
                            "a connection only around the queries, then size the pool to the concurrency."
                        ),
                        subject=subject,
                        numbers=numbers,
                        formula="wait_p95_ms = 95th percentile of db.client.connection.wait_time buckets",
                        threshold=f"wait_p95_ms >= {WAIT_P95_S * 1000:g} over waits >= {MIN_WAITS}",
                        window=(pool.start_ns, pool.end_ns),
                        confidence=round(min(0.9, 0.4 + 0.1 * math.log1p(pool.wait_count)), 3),
                        impact_s=pool.wait_sum_s,
                    )
                )
        return found

    def _concurrency(self) -> list[Recommendation]:
        """Queries in flight at once per instance (a sweep over the span times) against the size of its
        pools (the sum of their ``db.client.connection.max``): where they fill the pools for a share of
        the time queries run, the queries wait for connections."""
        sizes: dict[tuple[str, str], int] = {}
        pools: dict[tuple[str, str], list[str]] = {}
        for pool in self._pools.values():
            if pool.max:
                key = (pool.service, pool.instance)
                sizes[key] = sizes.get(key, 0) + pool.max
                pools.setdefault(key, []).append(pool.pool or "(unnamed pool)")
        found: list[Recommendation] = []
        for key, (starts, ends) in sorted(self._spans.items()):
            size = sizes.get(key)
            if size is None or len(starts) < MIN_SWEEP_SPANS:
                continue
            peak, busy_ns, full_ns = sweep(starts, ends, size)
            if not busy_ns or full_ns / busy_ns < SATURATED_SHARE:
                continue
            service, instance = key
            where = service + (f" instance {instance}" if instance else "")
            names = ", ".join(sorted(pools[key]))
            numbers: dict[str, int | float | str] = {"service": service, "pool": names}
            if instance:
                numbers["instance"] = instance
            numbers.update(
                db_spans=len(starts),
                max=size,
                peak_concurrent=peak,
                full_share=round(full_ns / busy_ns, 3),
                full_ms=round(full_ns / 1e6, 3),
            )
            found.append(
                _finding(
                    rule="pool_concurrency",
                    severity="high" if full_ns / busy_ns >= 0.5 else "medium",
                    title=f"Queries in flight fill the connection pool of {where} (max {size})",
                    action=(
                        "The queries at once reach the pool size: later ones wait for a connection. Make "
                        "the queries shorter or fewer first, then size the pool to the concurrency."
                    ),
                    subject=f"{service}/{instance}/concurrency",
                    numbers=numbers,
                    formula="full_share = time with concurrent db spans >= max / time with any db span",
                    threshold=f"full_share >= {SATURATED_SHARE:g} over db spans >= {MIN_SWEEP_SPANS}",
                    window=(min(starts), max(ends)),
                    confidence=round(min(0.85, 0.4 + 0.05 * math.log1p(len(starts))), 3),
                    impact_s=full_ns / 1e9,
                )
            )
        return found


def _finding(
    *,
    rule: str,
    severity: Severity,
    title: str,
    action: str,
    subject: str,
    numbers: dict[str, int | float | str],
    formula: str,
    threshold: str,
    window: tuple[int | None, int | None],
    confidence: float,
    impact_s: float,
) -> Recommendation:
    """One connection-pool finding, its evidence without example ids (metrics carry none)."""
    return Recommendation(
        category=CATEGORY,
        rule=rule,
        severity=severity,
        title=title,
        action=action,
        subject=subject,
        evidence=Evidence(
            numbers=numbers,
            formula=formula,
            threshold=threshold,
            window_start_ns=window[0],
            window_end_ns=window[1],
        ),
        confidence=confidence,
        impact_s=impact_s,
    )


def sweep(starts: Sequence[int], ends: Sequence[int], size: int) -> tuple[int, int, int]:
    """``(peak, busy_ns, full_ns)`` of intervals ``[start, end)``: the most at once, the time with at
    least one, and the time with at least ``size``."""
    opened = sorted(starts)
    closed = sorted(ends)
    count = len(opened)
    i = j = level = peak = busy = full = 0
    last = 0
    while j < count:
        if i < count and opened[i] < closed[j]:
            at, step = opened[i], 1
            i += 1
        else:
            at, step = closed[j], -1
            j += 1
        if level > 0:
            busy += at - last
            if level >= size:
                full += at - last
        level += step
        peak = max(peak, level)
        last = at
    return peak, busy, full
