"""The general path of the reader: a line parsed by orjson, then walked resource -> scope -> item and
checked field by field into records.

It reads every signal (spans, metrics, logs), every encoding the OTLP/JSON specification and proto3
JSON allow (enums by name, int64 values as numbers, upper-case ids), and decides what a line holds:
its records, ``None`` for a signal this reader skips, or ``_InvalidLine`` with the first problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeAlias

from amqadf_agent.analyzer.model import (
    Attributes,
    ExponentialHistogramPoint,
    HistogramPoint,
    LogRecord,
    MetricRecord,
    NumberPoint,
    Point,
    Record,
    SpanEvent,
    SpanLink,
    SpanRecord,
    SummaryPoint,
)
from amqadf_agent.analyzer.otlp_values import (
    _EMPTY,
    _SPAN_IDS,
    _TRACE_IDS,
    _any,
    _attrs,
    _bool,
    _enum,
    _float,
    _id,
    _int,
    _InvalidLine,
    _kind,
    _kvlist,
    _list,
    _memo_id,
    _obj,
    _optional_float,
    _str,
)

# Enums may also be written by name (proto3 JSON allows both); unknown numbers are kept as they are.
_SPAN_KINDS: Final = {
    f"SPAN_KIND_{name}": number
    for number, name in enumerate(("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))
}
_STATUS_CODES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_TEMPORALITIES: Final = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_SEVERITIES: Final = {"SEVERITY_NUMBER_UNSPECIFIED": 0} | {
    f"SEVERITY_NUMBER_{level}{suffix}": 1 + 4 * index + step
    for index, level in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))
    for step, suffix in enumerate(("", "2", "3", "4"))
}


def _records_of(obj: Any) -> list[Record] | None:
    """Every record of one export request; ``None`` when it holds only signals this reader skips."""
    if type(obj) is not dict:
        raise _InvalidLine(
            f"expected an object with resourceSpans, resourceMetrics or resourceLogs: {_kind(obj)}"
        )
    out: list[Record] = []
    found = False
    value = obj.get("resourceSpans")
    if value is not None:
        found = True
        _walk(value, "resourceSpans", "scopeSpans", "spans", _span, out)
    value = obj.get("resourceMetrics")
    if value is not None:
        found = True
        _walk(value, "resourceMetrics", "scopeMetrics", "metrics", _metric, out)
    value = obj.get("resourceLogs")
    if value is not None:
        found = True
        _walk(value, "resourceLogs", "scopeLogs", "logRecords", _log, out)
    if found:
        return out
    if any(isinstance(key, str) and key.startswith("resource") for key in obj):
        return None  # another signal (resourceProfiles, ...): forward compatible, not an error
    raise _InvalidLine("no resourceSpans, resourceMetrics or resourceLogs")


_Builder: TypeAlias = Callable[[Any, Attributes, str, str], Record | None]


def _walk(value: Any, top: str, scopes_key: str, items_key: str, build: _Builder, out: list[Record]) -> None:
    """resource → scope → item, sharing one attributes mapping per resource."""
    for resource_entry in _list(value, top):
        resource_entry = _obj(resource_entry, top)
        resource_value = resource_entry.get("resource")
        resource = (
            _EMPTY
            if resource_value is None
            else _attrs(_obj(resource_value, "resource").get("attributes"), "resource.attributes")
        )
        for scope_entry in _list(resource_entry.get(scopes_key), scopes_key):
            scope_entry = _obj(scope_entry, scopes_key)
            scope = scope_entry.get("scope")
            if scope is None:
                scope_name = scope_version = ""
            else:
                scope = _obj(scope, "scope")
                scope_name = _str(scope.get("name"), "scope.name")
                scope_version = _str(scope.get("version"), "scope.version")
            for item in _list(scope_entry.get(items_key), items_key):
                record = build(item, resource, scope_name, scope_version)
                if record is not None:
                    out.append(record)


def _span(value: Any, resource: Attributes, scope_name: str, scope_version: str) -> SpanRecord:
    # The hot path of the reader: the common encodings are checked inline, anything else goes through
    # the general helpers (same checks, same messages, in the same order).
    if type(value) is not dict:
        raise _InvalidLine(f"span: expected an object, got {_kind(value)}")
    d = value
    status = d.get("status")
    if not status and (status is None or type(status) is dict):
        status_code, status_message = 0, ""
    else:
        status = _obj(status, "status")
        status_code = _enum(status.get("code"), _STATUS_CODES, "status.code")
        status_message = _str(status.get("message"), "status.message")
    trace_id = d.get("traceId")
    trace_id = (type(trace_id) is str and _TRACE_IDS.get(trace_id)) or _memo_id(
        trace_id, 32, "traceId", True, _TRACE_IDS
    )
    span_id = d.get("spanId")
    span_id = (type(span_id) is str and _SPAN_IDS.get(span_id)) or _memo_id(
        span_id, 16, "spanId", True, _SPAN_IDS
    )
    parent = d.get("parentSpanId")
    parent = (type(parent) is str and _SPAN_IDS.get(parent)) or _memo_id(
        parent, 16, "parentSpanId", False, _SPAN_IDS
    )
    name = d.get("name")
    if type(name) is not str:
        name = _str(name, "span.name")
    kind = d.get("kind")
    if type(kind) is not int:
        kind = _enum(kind, _SPAN_KINDS, "span.kind")
    start = d.get("startTimeUnixNano")
    if type(start) is str and start.isdigit() and start.isascii() and len(start) <= 20:
        start = int(start)
    else:
        start = _int(start, "startTimeUnixNano")
    end = d.get("endTimeUnixNano")
    if type(end) is str and end.isdigit() and end.isascii() and len(end) <= 20:
        end = int(end)
    else:
        end = _int(end, "endTimeUnixNano")
    attributes = d.get("attributes")
    events = d.get("events")
    links = d.get("links")
    return SpanRecord(
        trace_id,
        span_id,
        parent,
        name,
        kind,
        start,
        end,
        status_code,
        status_message,
        _kvlist(attributes, "span.attributes") if attributes else _attrs(attributes, "span.attributes"),
        tuple(_event(event) for event in _list(events, "events")) if events else (),
        resource,
        scope_name,
        scope_version,
        tuple(_link(link) for link in _list(links, "links")) if links else (),
    )


def _event(value: Any) -> SpanEvent:
    d = _obj(value, "event")
    return SpanEvent(
        _int(d.get("timeUnixNano"), "event.timeUnixNano"),
        _str(d.get("name"), "event.name"),
        _attrs(d.get("attributes"), "event.attributes"),
    )


def _link(value: Any) -> SpanLink:
    d = _obj(value, "link")
    return SpanLink(
        _id(d.get("traceId"), 32, "link.traceId", required=True),
        _id(d.get("spanId"), 16, "link.spanId", required=True),
        _attrs(d.get("attributes"), "link.attributes"),
    )


_MetricPointBuilder: TypeAlias = Callable[[Any], Point]


def _metric(value: Any, resource: Attributes, scope_name: str, scope_version: str) -> MetricRecord | None:
    d = _obj(value, "metric")
    name = _str(d.get("name"), "metric.name")
    if not name:
        raise _InvalidLine("metric: missing name")
    for key, kind, build in _METRIC_DATA:  # noqa: B007 - the loop finds the one that is set
        data = d.get(key)
        if data is not None:
            break
    else:
        return None  # no data, or a kind of metric this reader does not know yet
    data = _obj(data, key)
    points = tuple(build(point) for point in _list(data.get("dataPoints"), f"{key}.dataPoints"))
    return MetricRecord(
        name,
        _str(d.get("unit"), "metric.unit"),
        _str(d.get("description"), "metric.description"),
        kind,
        _enum(data.get("aggregationTemporality"), _TEMPORALITIES, "aggregationTemporality"),
        _bool(data.get("isMonotonic"), "isMonotonic"),
        points,
        resource,
        scope_name,
        scope_version,
    )


def _point_times(d: dict[str, Any]) -> tuple[Attributes, int, int]:
    """What every kind of data point starts with: its attributes, start time and time."""
    return (
        _attrs(d.get("attributes"), "dataPoint.attributes"),
        _int(d.get("startTimeUnixNano"), "startTimeUnixNano"),
        _int(d.get("timeUnixNano"), "timeUnixNano"),
    )


def _number_point(value: Any) -> NumberPoint:
    d = _obj(value, "dataPoint")
    number: int | float | None
    if "asInt" in d:
        number = _int(d["asInt"], "asInt")
    elif "asDouble" in d:
        number = _float(d["asDouble"], "asDouble")
    else:
        number = None
    return NumberPoint(
        *_point_times(d),
        number,
    )


def _histogram_point(value: Any) -> HistogramPoint:
    d = _obj(value, "dataPoint")
    counts = tuple(_int(count, "bucketCounts") for count in _list(d.get("bucketCounts"), "bucketCounts"))
    bounds = tuple(
        _float(bound, "explicitBounds") for bound in _list(d.get("explicitBounds"), "explicitBounds")
    )
    # No check that len(counts) == len(bounds) + 1: the official OTLP example itself breaks it
    # (3 counts for 1 bound), so rules that use the buckets check them where it matters.
    return HistogramPoint(
        *_point_times(d),
        _int(d.get("count"), "count"),
        _optional_float(d.get("sum"), "sum"),
        counts,
        bounds,
        _optional_float(d.get("min"), "min"),
        _optional_float(d.get("max"), "max"),
    )


def _buckets(value: Any, what: str) -> tuple[int, tuple[int, ...]]:
    if value is None:
        return 0, ()
    d = _obj(value, what)
    counts = _list(d.get("bucketCounts"), f"{what}.bucketCounts")
    return _int(d.get("offset"), f"{what}.offset"), tuple(_int(c, f"{what}.bucketCounts") for c in counts)


def _exponential_point(value: Any) -> ExponentialHistogramPoint:
    d = _obj(value, "dataPoint")
    positive_offset, positive_counts = _buckets(d.get("positive"), "positive")
    negative_offset, negative_counts = _buckets(d.get("negative"), "negative")
    return ExponentialHistogramPoint(
        *_point_times(d),
        _int(d.get("count"), "count"),
        _optional_float(d.get("sum"), "sum"),
        _int(d.get("scale"), "scale"),
        _int(d.get("zeroCount"), "zeroCount"),
        positive_offset,
        positive_counts,
        negative_offset,
        negative_counts,
        _optional_float(d.get("min"), "min"),
        _optional_float(d.get("max"), "max"),
        _float(d.get("zeroThreshold"), "zeroThreshold"),
    )


def _summary_point(value: Any) -> SummaryPoint:
    d = _obj(value, "dataPoint")
    quantiles = []
    for entry in _list(d.get("quantileValues"), "quantileValues"):
        entry = _obj(entry, "quantileValues")
        quantiles.append((_float(entry.get("quantile"), "quantile"), _float(entry.get("value"), "value")))
    return SummaryPoint(
        *_point_times(d),
        _int(d.get("count"), "count"),
        _float(d.get("sum"), "sum"),
        tuple(quantiles),
    )


_METRIC_DATA: Final[tuple[tuple[str, str, _MetricPointBuilder], ...]] = (
    ("gauge", "gauge", _number_point),
    ("sum", "sum", _number_point),
    ("histogram", "histogram", _histogram_point),
    ("exponentialHistogram", "exponential_histogram", _exponential_point),
    ("summary", "summary", _summary_point),
)


def _log(value: Any, resource: Attributes, scope_name: str, scope_version: str) -> LogRecord:
    d = _obj(value, "logRecord")
    body = d.get("body")
    return LogRecord(
        _int(d.get("timeUnixNano"), "timeUnixNano"),
        _int(d.get("observedTimeUnixNano"), "observedTimeUnixNano"),
        _enum(d.get("severityNumber"), _SEVERITIES, "severityNumber"),
        _str(d.get("severityText"), "severityText"),
        None if body is None else _any(body),
        _attrs(d.get("attributes"), "log.attributes"),
        _id(d.get("traceId"), 32, "traceId", required=False),
        _id(d.get("spanId"), 16, "spanId", required=False),
        resource,
        scope_name,
        scope_version,
        _str(d.get("eventName"), "eventName"),
    )
