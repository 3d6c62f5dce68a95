"""Metric records from a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

``read_prometheus(url, start=…, end=…, step=…)`` asks ``/api/v1/query_range`` for the metric series the
analyzer's rules read (``RULE_INSTRUMENTS``), one metric at a time, and turns the answer into the same
``MetricRecord``s the OTLP reader yields, so every rule works unchanged:

* **names**: a contract name is looked up under both Prometheus naming paths at once
  (``prometheus_selector``): the Python exporter's (``system_cpu_utilization``,
  ``http_server_request_duration_seconds_bucket``, ``amqadf_cache_requests_total``) and the Collector's
  (unit-1 gauges get ``_ratio``); the unit suffix (``_seconds``, ``_bytes``) is optional too.
* **labels**: back to OTel attribute keys (``amqadf_cache_result`` → ``amqadf.cache.result``) for the
  keys of the contract (``semconv.ATTR_*``); other labels are kept as they are. ``job`` (or
  ``service_name``) becomes the resource's ``service.name`` (a Collector ``job`` of
  ``namespace/name`` gives ``name``), ``instance`` (or ``service_instance_id``) its
  ``service.instance.id``, ``otel_scope_name`` the scope. ``http.response.status_code`` is an ``int``.
* **kinds**: gauges are ``gauge`` records; up-down counters non-monotonic cumulative sums; counters
  monotonic cumulative sums; histograms are rebuilt from their ``_bucket{le=…}``, ``_sum`` and
  ``_count`` series with the ``le`` values as explicit bounds.
* **cumulative values**: Prometheus keeps no start time, so a series' first value in the range would
  credit the first window with everything the process counted before it. Counters and histograms are
  therefore rebased: a series starts at 0 at its first sample in the range (its ``start_ns``), and a
  reset (a value going down) starts a new segment whose ``start_ns`` is the previous sample's time,
  counting the new value in full — what PromQL's ``increase()`` does, without extrapolation.
* **records**: one record per (metric, resource, scope, step time), as a periodic exporter writes them.

Only the standard library is used (``urllib.request``, in ``prometheus_http``). Memory is bounded by
one metric's answer: the series are fetched and turned into records one query at a time, and an answer
larger than ``max_answer_bytes`` (``MAX_ANSWER_BYTES``) is refused rather than read. ``timeout`` bounds
each wait for the server; ``deadline`` (``DEFAULT_DEADLINE_S``) bounds a whole query, so that a server
that trickles its answer a byte at a time cannot hold the run for ever: its connection is shut at the
deadline. Every failure (an
unreachable URL, an HTTP error, an answer that is not a Prometheus API or too large, a bad time range)
is a ``TelemetryInputError`` with a one-line message naming the URL.

Credentials: the ``headers`` given (``Authorization``, ``X-Scope-OrgID``) and the ``user:password@`` of
the URL (sent as HTTP Basic auth, as Prometheus' ``basic_auth`` expects) go to the origin of the URL
(scheme, host, port) only: a redirect to another origin is followed without them. Messages show the
URL with its password as ``[secure]`` (``redact_url``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from amqadf_agent import semconv
from amqadf_agent.analyzer.model import (
    TEMPORALITY_CUMULATIVE,
    Attributes,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
)
from amqadf_agent.analyzer.prometheus_http import Query, check_url, query_range
from amqadf_agent.errors import TelemetryInputError
from amqadf_agent.redaction import redact_url

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_STEP_S",
    "MAX_ANSWER_BYTES",
    "MAX_POINTS_PER_SERIES",
    "RULE_INSTRUMENTS",
    "otel_attribute_key",
    "prometheus_selector",
    "read_prometheus",
    "resource_of",
]

DEFAULT_STEP_S: Final = 15.0
DEFAULT_TIMEOUT_S: Final = 30.0
#: The longest one query may take, its answer read in full (``timeout`` is per wait, not per query).
DEFAULT_DEADLINE_S: Final = 120.0
#: Prometheus refuses range queries of more points per series than this.
MAX_POINTS_PER_SERIES: Final = 11_000
#: The largest answer to one query read into memory (parsed, an answer takes several times its size):
#: ~200 series at the full 11 000 points, or ~2 000 series of an hour at a 15 s step.
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024

#: The older HTTP server histogram (milliseconds) that HTTP instrumentations still emit by default
#: (``OTEL_SEMCONV_STABILITY_OPT_IN`` unset): read where the current one is missing.
HTTP_SERVER_DURATION_OLD: Final = semconv.Instrument(
    name=semconv.HTTP_SERVER_DURATION_OLD,
    kind="histogram",
    unit=semconv.HTTP_SERVER_DURATION_OLD_UNIT,
    description="Duration of HTTP server requests (the older convention, in milliseconds).",
    attributes=(semconv.ATTR_HTTP_METHOD_OLD, semconv.ATTR_HTTP_STATUS_CODE_OLD),
    emitted_by="older OpenTelemetry HTTP server instrumentations",
    read_by="analyzer (autoscaling windows)",
    standard=True,
)

#: The instruments the rules read (windows, cache rules, thread rules).
RULE_INSTRUMENTS: Final[tuple[semconv.Instrument, ...]] = (
    semconv.HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_DURATION_OLD,
    semconv.PROCESS_CPU_UTILIZATION,
    semconv.SYSTEM_CPU_UTILIZATION,
    semconv.PROCESS_CPU_TIME,
    semconv.SYSTEM_MEMORY_UTILIZATION,
    semconv.CACHE_REQUESTS,
    semconv.CACHE_EVICTIONS,
    semconv.CACHE_EXPIRATIONS,
    semconv.CACHE_SIZE,
    semconv.CACHE_MAX_SIZE,
    semconv.CACHE_MEMORY_USAGE,
    semconv.CACHE_MEMORY_LIMIT,
    semconv.POOL_WORKERS,
    semconv.POOL_MAX_WORKERS,
    semconv.POOL_QUEUE_SIZE,
    semconv.POOL_TASKS,
    semconv.POOL_QUEUE_WAIT,
    semconv.POOL_TASK_DURATION,
    semconv.SYSTEM_CPU_LOGICAL_COUNT,
    semconv.DB_CLIENT_CONNECTION_MAX,
)

#: Unit suffixes Prometheus names get (OTel → Prometheus compatibility spec); unit ``1`` only on the
#: Collector path (the Python exporter drops it), annotations like ``{request}`` never.
_UNIT_SUFFIXES: Final = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "1": "ratio",
    "%": "percent",
}
_COUNTER_KINDS: Final = ("counter", "observable_counter")
_UPDOWN_KINDS: Final = ("updowncounter", "observable_updowncounter")

#: Labels that describe the resource or the scope, not the data point.
_RESOURCE_LABELS: Final = frozenset(
    (
        "__name__",
        "job",
        "instance",
        "le",
        "service_name",
        "service_namespace",
        "service_instance_id",
        "otel_scope_name",
        "otel_scope_version",
        "otel_scope_schema_url",
    )
)


def _label_map() -> dict[str, str]:
    keys = [getattr(semconv, n) for n in dir(semconv) if n.startswith("ATTR_")]
    return {re.sub(r"[^A-Za-z0-9_]", "_", k): k for k in keys if isinstance(k, str)}


#: Prometheus label → OTel attribute key, for every attribute key of the contract.
_LABEL_TO_ATTRIBUTE: Final = _label_map()
_INT_ATTRIBUTES: Final = frozenset(
    (semconv.ATTR_HTTP_RESPONSE_STATUS_CODE, semconv.ATTR_HTTP_STATUS_CODE_OLD)
)


def otel_attribute_key(label: str) -> str:
    """The OTel attribute key of a Prometheus label: a contract key when one translates to ``label``
    (``amqadf_cache_name`` → ``amqadf.cache.name``), else ``label`` itself."""
    return _LABEL_TO_ATTRIBUTE.get(label, label)


def _base_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def prometheus_selector(instrument: semconv.Instrument, job_regex: str | None = None) -> str:
    """A PromQL selector matching ``instrument`` under both naming paths (agent and Collector).

    Histograms match their ``_bucket``, ``_sum`` and ``_count`` series; counters ``_total`` or not;
    the unit suffix (``_seconds``, ``_bytes``, ``_ratio``) is optional. ``job_regex`` (already escaped
    for a PromQL string) restricts the ``job`` label.
    """
    pattern = _base_name(instrument.name)
    suffix = _UNIT_SUFFIXES.get(instrument.unit)
    if suffix is not None and not pattern.endswith("_" + suffix):
        pattern += f"(_{suffix})?"
    if instrument.kind == "histogram":
        pattern += "_(bucket|sum|count)"
    elif instrument.kind in _COUNTER_KINDS:
        pattern += "(_total)?"
    matchers = [f'__name__=~"{pattern}"']
    if job_regex is not None:
        matchers.append(f'job=~"{job_regex}"')
    return "{" + ", ".join(matchers) + "}"


def _job_regex(service: str) -> str:
    """``job`` values of ``service``: the name itself, or ``namespace/name`` (the Collector's)."""
    escaped = re.escape(service).replace("\\", "\\\\").replace('"', '\\"')
    return f"(.+/)?{escaped}"


def resource_of(labels: Mapping[str, str]) -> dict[str, str]:
    """The resource attributes a series' labels stand for: ``service.name`` from ``service_name`` or
    ``job`` (the part after the ``/`` of a Collector ``namespace/name``), ``service.instance.id``
    from ``service_instance_id`` or ``instance``."""
    resource: dict[str, str] = {}
    name = labels.get("service_name") or labels.get("job", "")
    if name and "service_name" not in labels and "/" in name:
        namespace, _, name = name.rpartition("/")
        resource["service.namespace"] = namespace
    if labels.get("service_namespace"):
        resource["service.namespace"] = labels["service_namespace"]
    if name:
        resource[semconv.ATTR_SERVICE_NAME] = name
    instance = labels.get("service_instance_id") or labels.get("instance", "")
    if instance:
        resource[semconv.ATTR_SERVICE_INSTANCE_ID] = instance
    return resource


def _attributes(labels: Mapping[str, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for label, value in labels.items():
        if label in _RESOURCE_LABELS:
            continue
        key = otel_attribute_key(label)
        if key in _INT_ATTRIBUTES and value.isdigit():
            attributes[key] = int(value)
        else:
            attributes[key] = value
    return attributes


def read_prometheus(
    url: str,
    *,
    start: float,
    end: float,
    step: float = DEFAULT_STEP_S,
    service: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
    instruments: tuple[semconv.Instrument, ...] = RULE_INSTRUMENTS,
    max_answer_bytes: int = MAX_ANSWER_BYTES,
    deadline: float = DEFAULT_DEADLINE_S,
) -> Iterator[MetricRecord]:
    """Yield ``MetricRecord``s of ``instruments`` from the Prometheus-compatible API at ``url``.

    ``start``/``end`` are seconds since the epoch, ``step`` the resolution in seconds; ``service``
    keeps the series of one ``service.name`` (``job`` or ``service_name``); ``headers`` go with every
    request to the origin of ``url`` (``Authorization``, Mimir's ``X-Scope-OrgID``), never to another
    one a redirect points at. An answer over ``max_answer_bytes``, or not read in full within ``deadline``
    seconds of the query's start, is an error. The arguments are checked
    at once (a ``TelemetryInputError``); the queries run as the records are consumed, one metric at a time.
    """
    shown = redact_url(url.strip())
    base, sent = check_url(url, shown)
    if not (math.isfinite(start) and math.isfinite(end)) or start <= 0 or end <= 0:
        raise TelemetryInputError(f"bad time range for {shown}: start and end must be times after 1970")
    if end <= start:
        raise TelemetryInputError(
            f"bad time range for {shown}: the end ({end:.3f}) is not after the start ({start:.3f})"
        )
    if not (math.isfinite(step) and step > 0):
        raise TelemetryInputError(f"bad step for {shown}: {step!r} is not a positive number of seconds")
    points = (end - start) / step + 1
    if points > MAX_POINTS_PER_SERIES:
        raise TelemetryInputError(
            f"{shown}: {end - start:.0f} s at a step of {step:g} s is {points:.0f} points per series, "
            f"more than Prometheus' {MAX_POINTS_PER_SERIES}: use a larger step or a shorter range"
        )
    if not (math.isfinite(timeout) and timeout > 0):
        raise TelemetryInputError(f"bad timeout for {shown}: {timeout!r}")
    if max_answer_bytes <= 0:
        raise TelemetryInputError(f"bad answer size limit for {shown}: {max_answer_bytes!r}")
    if not (math.isfinite(deadline) and deadline > 0):
        raise TelemetryInputError(f"bad query deadline for {shown}: {deadline!r}")
    sent.update(headers or {})
    query = Query(base, shown, timeout, sent, max_answer_bytes, deadline)
    return _records(query, start, end, step, service, instruments)


def _records(
    api: Query,
    start: float,
    end: float,
    step: float,
    service: str | None,
    instruments: tuple[semconv.Instrument, ...],
) -> Iterator[MetricRecord]:
    job = _job_regex(service) if service is not None else None
    resources: dict[tuple[tuple[str, str], ...], Attributes] = {}
    for instrument in instruments:
        query = prometheus_selector(instrument, job)
        series = query_range(api, query, start, end, step)
        grouped: dict[tuple[Any, ...], list[tuple[dict[str, str], list[tuple[int, float]]]]] = {}
        for labels, samples in series:
            resource = resource_of(labels)
            if service is not None and resource.get(semconv.ATTR_SERVICE_NAME) != service:
                continue
            rkey = tuple(sorted(resource.items()))
            shared = resources.get(rkey)
            if shared is None:
                shared = resources[rkey] = resource
            scope = (labels.get("otel_scope_name", ""), labels.get("otel_scope_version", ""))
            grouped.setdefault((rkey, scope), []).append((labels, samples))
        del series
        for (rkey, scope), members in grouped.items():
            points: list[NumberPoint] | list[HistogramPoint]
            if instrument.kind == "histogram":
                points = _histogram_points(members)
            else:
                points = _number_points(members, instrument.kind in _COUNTER_KINDS)
            yield from _by_time(instrument, points, resources[rkey], scope)


def _by_time(
    instrument: semconv.Instrument,
    points: list[NumberPoint] | list[HistogramPoint],
    resource: Attributes,
    scope: tuple[str, str],
) -> Iterator[MetricRecord]:
    """One record per step time, as a periodic exporter would have written them."""
    if instrument.kind == "histogram":
        kind, temporality, monotonic = "histogram", TEMPORALITY_CUMULATIVE, False
    elif instrument.kind in _COUNTER_KINDS:
        kind, temporality, monotonic = "sum", TEMPORALITY_CUMULATIVE, True
    elif instrument.kind in _UPDOWN_KINDS:
        kind, temporality, monotonic = "sum", TEMPORALITY_CUMULATIVE, False
    else:
        kind, temporality, monotonic = "gauge", 0, False
    by_time: dict[int, list[NumberPoint | HistogramPoint]] = {}
    for point in points:
        by_time.setdefault(point.time_ns, []).append(point)
    for time_ns in sorted(by_time):
        yield MetricRecord(
            name=instrument.name,
            unit=instrument.unit,
            description=instrument.description,
            type=kind,
            aggregation_temporality=temporality,
            is_monotonic=monotonic,
            points=tuple(by_time[time_ns]),
            resource=resource,
            scope_name=scope[0],
            scope_version=scope[1],
        )


def _number_points(
    members: list[tuple[dict[str, str], list[tuple[int, float]]]], counter: bool
) -> list[NumberPoint]:
    out: list[NumberPoint] = []
    for labels, samples in members:
        attributes = _attributes(labels)
        if not counter:
            out.extend(NumberPoint(attributes, 0, t, v) for t, v in samples)
            continue
        segment_start = baseline = None
        previous: tuple[int, float] | None = None
        for t, v in samples:
            if previous is None:
                segment_start, baseline = t, v
            elif v < previous[1]:  # a reset: the new value was counted since the previous sample
                segment_start, baseline = previous[0], 0.0
            assert segment_start is not None and baseline is not None
            out.append(NumberPoint(attributes, segment_start, t, v - baseline))
            previous = (t, v)
    return out


def _histogram_points(members: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> list[HistogramPoint]:
    # Group the _bucket/_sum/_count series of one histogram by their labels without __name__ and le.
    histograms: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for labels, samples in members:
        name = labels.get("__name__", "")
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "le")))
        entry = histograms.setdefault(key, {"labels": labels, "buckets": {}, "sum": {}, "count": {}})
        if name.endswith("_bucket"):
            try:
                bound = float(labels.get("le", ""))
            except ValueError:
                continue
            entry["buckets"][bound] = dict(samples)
        elif name.endswith("_sum"):
            entry["sum"] = dict(samples)
        elif name.endswith("_count"):
            entry["count"] = dict(samples)
    out: list[HistogramPoint] = []
    for entry in histograms.values():
        buckets: dict[float, dict[int, float]] = entry["buckets"]
        if not buckets:
            continue
        les = sorted(buckets)
        bounds = tuple(b for b in les if math.isfinite(b))
        has_inf = math.isinf(les[-1])
        sums: dict[int, float] = entry["sum"]
        counts: dict[int, float] = entry["count"]
        times = sorted(set.intersection(*(set(buckets[le]) for le in les)))
        attributes = _attributes(entry["labels"])
        segment_start = 0
        base: tuple[float, list[float], float] | None = None
        previous: tuple[int, float, list[float]] | None = None
        for t in times:
            cumulative = [buckets[le][t] for le in les]
            count = counts.get(t, cumulative[-1] if has_inf else math.nan)
            if not math.isfinite(count):
                continue
            if not has_inf:
                cumulative.append(count)
            per_bucket = [max(b - a, 0.0) for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]
            total = sums.get(t, 0.0)
            if previous is None:
                segment_start, base = t, (count, per_bucket, total)
            elif count < previous[1] or any(n < p for n, p in zip(per_bucket, previous[2], strict=True)):
                segment_start, base = previous[0], (0.0, [0.0] * len(per_bucket), 0.0)
            assert base is not None
            previous = (t, count, per_bucket)
            out.append(
                HistogramPoint(
                    attributes=attributes,
                    start_ns=segment_start,
                    time_ns=t,
                    count=round(count - base[0]),
                    sum=total - base[2],
                    bucket_counts=tuple(round(n - b) for n, b in zip(per_bucket, base[1], strict=True)),
                    explicit_bounds=bounds,
                    min=None,
                    max=None,
                )
            )
    return out
