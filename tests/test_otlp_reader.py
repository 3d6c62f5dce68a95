"""The OTLP JSON reader: what producers really write reads back exactly; bad input never raises."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqadf_agent.analyzer.model import (
    ExponentialHistogramPoint,
    HistogramPoint,
    LogRecord,
    MetricRecord,
    NumberPoint,
    Record,
    SpanRecord,
    SummaryPoint,
)
from amqadf_agent.analyzer.otlp_reader import MAX_PROBLEMS_KEPT, ReadStats, read
from amqadf_agent.errors import TelemetryInputError

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


def read_all(*paths: Any, strict: bool = False, **kwargs: Any) -> tuple[list[Record], ReadStats]:
    stats = ReadStats()
    records = list(read(list(paths), strict=strict, stats=stats, **kwargs))
    return records, stats


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def write_lines(path: Path, *objects: Any) -> Path:
    path.write_bytes(b"".join(orjson.dumps(obj) + b"\n" for obj in objects))
    return path


def span_line(
    trace_id: str = "0af7651916cd43dd8448eb211c80319c", span_id: str = "b7ad6b7169203331"
) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", {"stringValue": "svc"})]},
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "op",
                                "kind": 2,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "3000",
                            }
                        ],
                    }
                ],
            }
        ]
    }


# --- the official OTLP JSON examples (pretty-printed, upper-case hex, int64 as numbers) -------------------


def test_official_trace_example() -> None:
    records, stats = read_all(FIXTURES / "trace.json")
    assert stats.problems == [] and stats.problem_count == 0
    assert stats.files_read == 1
    assert stats.lines_read == len((FIXTURES / "trace.json").read_text().splitlines())
    assert stats.records == {"spans": 1, "metrics": 0, "logs": 0}
    (span,) = records
    assert isinstance(span, SpanRecord)
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174"
    assert span.parent_span_id == "eee19b7ec3c1b173"
    assert span.name == "I'm a server span"
    assert span.kind == 2
    assert span.start_ns == 1544712660000000000
    assert span.end_ns == 1544712661000000000
    assert span.duration_s == 1.0
    assert span.status_code == 0 and span.status_message == ""
    assert span.attributes == {"my.span.attr": "some value"}
    assert span.events == () and span.links == ()
    assert span.resource == {"service.name": "my.service"}
    assert span.service == "my.service"
    assert (span.scope_name, span.scope_version) == ("my.library", "1.0.0")


def test_official_metrics_example() -> None:
    records, stats = read_all(FIXTURES / "metrics.json")
    assert stats.problem_count == 0
    by_name = {r.name: r for r in records if isinstance(r, MetricRecord)}
    assert sorted(by_name) == ["my.counter", "my.gauge", "my.histogram"]

    counter = by_name["my.counter"]
    assert (counter.type, counter.aggregation_temporality, counter.is_monotonic) == ("sum", 1, True)
    assert (counter.unit, counter.description) == ("1", "I`m a Counter")
    (point,) = counter.points
    assert isinstance(point, NumberPoint)
    assert point.value == 5.0 and isinstance(point.value, float)  # asDouble written as the number 5
    assert point.start_ns == point.time_ns == 1544712660300000000
    assert point.attributes == {"my.counter.attr": "some value"}

    gauge = by_name["my.gauge"]
    assert (gauge.type, gauge.aggregation_temporality, gauge.is_monotonic) == ("gauge", 0, False)
    assert isinstance(gauge.points[0], NumberPoint) and gauge.points[0].value == 10.0
    assert gauge.points[0].start_ns == 0

    histogram = by_name["my.histogram"]
    assert histogram.type == "histogram" and histogram.aggregation_temporality == 1
    (hp,) = histogram.points
    assert isinstance(hp, HistogramPoint)
    assert (hp.count, hp.sum, hp.min, hp.max) == (3, 3.0, 1.0, 1.0)
    assert hp.bucket_counts == (1, 1, 1)
    assert hp.explicit_bounds == (1.0,)
    assert counter.resource is gauge.resource is histogram.resource  # one mapping per resource


def test_official_logs_example() -> None:
    records, stats = read_all(FIXTURES / "logs.json")
    assert stats.problem_count == 0
    (log,) = records
    assert isinstance(log, LogRecord)
    assert log.body == "Example log record"
    assert log.severity_text == "Information" and log.severity_number == 0
    assert log.time_ns == log.observed_time_ns == 1544712660300000000
    assert log.trace_id == "5b8efff798038103d269b633813fc60c"
    assert log.span_id == "eee19b7ec3c1b174"
    assert log.attributes == {
        "string.attribute": "some string",
        "boolean.attribute": True,
        "int.attribute": 10,
        "double.attribute": 637.704,
        "array.attribute": ["many", "values"],
        "map.attribute": {"some.map.key": "some value"},
    }
    assert type(log.attributes["int.attribute"]) is int
    assert log.service == "my.service"


def test_fixtures_directory_reads_all_three_examples() -> None:
    records, stats = read_all(FIXTURES)
    assert stats.files_read == 3  # README.md is not telemetry
    assert stats.records == {"spans": 1, "metrics": 3, "logs": 1}
    assert len(records) == 5


# --- what the Python SDK's JSON file exporters write ----------------------------------------------------


class SmallIds:
    """Ids with leading zero bytes, which a formatting slip (no zero padding) would lose."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return 0x00AB << 100 | next(self._next)

    def is_trace_id_random(self) -> bool:
        return False


@pytest.mark.parametrize("id_generator", ["random", "small"])
def test_sdk_file_span_exporter_round_trip(tmp_path: Path, id_generator: str) -> None:
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.proto_json.collector.trace.v1.trace_service import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.trace import SpanKind, Status, StatusCode

    path = tmp_path / "traces.jsonl"
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "service.instance.id": "pod-1"}),
        id_generator=SmallIds() if id_generator == "small" else RandomIdGenerator(),  # type: ignore[arg-type]
    )
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    tracer = provider.get_tracer("test.scope", "2.0")
    big = 2**62 + 7
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("big.int", big)
        parent.set_attribute("neg.int", -5)
        parent.set_attribute("ratio", 0.25)
        parent.set_attribute("flag", True)
        parent.set_attribute("tags", ["a", "b"])
        parent.add_event("retry", {"attempt": 2})
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    expected = {
        name: (f"{span.get_span_context().trace_id:032x}", f"{span.get_span_context().span_id:016x}")
        for name, span in (("parent", parent), ("child", child))
    }
    records, stats = read_all(path)
    assert stats.problem_count == 0 and stats.lines_read == 2
    spans = {r.name: r for r in records if isinstance(r, SpanRecord)}
    assert set(spans) == {"parent", "child"}
    for name, (trace_id, span_id) in expected.items():
        assert (spans[name].trace_id, spans[name].span_id) == (trace_id, span_id)
    if id_generator == "small":
        assert spans["child"].span_id.startswith("00000000000000")
    assert spans["child"].parent_span_id == spans["parent"].span_id
    assert spans["parent"].parent_span_id == ""
    assert spans["parent"].kind == 2 and spans["child"].kind == 3
    assert spans["child"].status_code == 2 and spans["child"].status_message == "boom"
    attrs = spans["parent"].attributes
    assert attrs["big.int"] == big and type(attrs["big.int"]) is int
    assert attrs["neg.int"] == -5
    assert attrs["ratio"] == 0.25 and attrs["flag"] is True and attrs["tags"] == ["a", "b"]
    (event,) = spans["parent"].events
    time_ns, event_name, event_attrs = event
    assert event_name == "retry" and event_attrs == {"attempt": 2} and time_ns > 0
    assert spans["parent"].start_ns == parent.start_time and spans["parent"].end_ns == parent.end_time  # type: ignore[attr-defined]
    assert spans["parent"].service == "checkout"
    assert spans["parent"].resource["service.instance.id"] == "pod-1"
    assert (spans["parent"].scope_name, spans["parent"].scope_version) == ("test.scope", "2.0")

    # Cross-check the first line against the official decoder of OTLP JSON.
    first_line = path.read_bytes().splitlines()[0]
    request = ExportTraceServiceRequest.from_dict(orjson.loads(first_line))
    proto_span = request.resource_spans[0].scope_spans[0].spans[0]
    assert proto_span.name and proto_span.trace_id and proto_span.span_id
    record = spans[proto_span.name]
    assert proto_span.trace_id.hex() == record.trace_id
    assert proto_span.span_id.hex() == record.span_id
    assert (proto_span.parent_span_id or b"").hex() == record.parent_span_id
    assert (proto_span.start_time_unix_nano, proto_span.end_time_unix_nano) == (
        record.start_ns,
        record.end_ns,
    )


def test_sdk_file_metric_exporter_round_trip(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.json.file import FileMetricExporter
    from opentelemetry.proto_json.collector.metrics.v1.metrics_service import ExportMetricsServiceRequest
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    path = tmp_path / "metrics.jsonl"
    reader = PeriodicExportingMetricReader(FileMetricExporter(path), export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "worker"}))
    meter = provider.get_meter("test.meter")
    counter = meter.create_counter("jobs", unit="{job}")
    counter.add(2**40 + 3, {"queue": "q1"})
    updown = meter.create_up_down_counter("inflight")
    updown.add(-3)
    histogram = meter.create_histogram("latency", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    for value in (0.05, 0.5, 0.7, 3.0):
        histogram.record(value)
    gauge = meter.create_gauge("temperature")
    gauge.set(21.5)
    assert provider.force_flush()
    content = path.read_bytes()
    provider.shutdown()

    only = tmp_path / "one-export.jsonl"
    only.write_bytes(content)
    records, stats = read_all(only)
    assert stats.problem_count == 0 and stats.lines_read == 1
    metrics = {r.name: r for r in records if isinstance(r, MetricRecord)}
    assert set(metrics) == {"jobs", "inflight", "latency", "temperature"}

    jobs = metrics["jobs"]
    assert (jobs.type, jobs.aggregation_temporality, jobs.is_monotonic, jobs.unit) == (
        "sum",
        2,
        True,
        "{job}",
    )
    (point,) = jobs.points
    assert isinstance(point, NumberPoint)
    assert point.value == 2**40 + 3 and type(point.value) is int
    assert point.attributes == {"queue": "q1"} and 0 < point.start_ns <= point.time_ns

    inflight = metrics["inflight"]
    assert inflight.type == "sum" and not inflight.is_monotonic
    assert isinstance(inflight.points[0], NumberPoint) and inflight.points[0].value == -3

    latency = metrics["latency"]
    (hp,) = latency.points
    assert isinstance(hp, HistogramPoint)
    assert (hp.count, hp.bucket_counts, hp.explicit_bounds) == (4, (1, 2, 1), (0.1, 1.0))
    assert hp.sum == pytest.approx(4.25) and (hp.min, hp.max) == (0.05, 3.0)

    temperature = metrics["temperature"]
    assert temperature.type == "gauge"
    assert isinstance(temperature.points[0], NumberPoint) and temperature.points[0].value == 21.5
    assert jobs.service == "worker"

    request = ExportMetricsServiceRequest.from_dict(orjson.loads(content.splitlines()[0]))
    proto_metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    proto_jobs = proto_metrics["jobs"].sum
    assert proto_jobs is not None
    assert proto_jobs.data_points[0].as_int == point.value
    assert proto_jobs.data_points[0].time_unix_nano == point.time_ns
    proto_latency = proto_metrics["latency"].histogram
    assert proto_latency is not None
    assert tuple(proto_latency.data_points[0].bucket_counts) == hp.bucket_counts


# --- a Collector file-exporter line ------------------------------------------------------------------


def collector_metrics_line() -> dict[str, Any]:
    """Two resources, several scopes, schemaUrl and dropped counts, every kind of metric."""
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [
                        kv("service.name", {"stringValue": "api"}),
                        kv("service.instance.id", {"stringValue": "api-1"}),
                        kv("host.cpu.count", {"intValue": "4"}),
                    ],
                    "droppedAttributesCount": 2,
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeMetrics": [
                    {
                        "scope": {"name": "amqadf_agent", "version": "0.1.0", "droppedAttributesCount": 0},
                        "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                        "metrics": [
                            {
                                "name": "requests.delta",
                                "unit": "{request}",
                                "sum": {
                                    "dataPoints": [
                                        {
                                            "attributes": [kv("route", {"stringValue": "/a"})],
                                            "startTimeUnixNano": "1700000000000000000",
                                            "timeUnixNano": "1700000010000000000",
                                            "asInt": "17",
                                            "exemplars": [],
                                            "flags": 0,
                                        }
                                    ],
                                    "aggregationTemporality": 1,
                                    "isMonotonic": True,
                                },
                            },
                            {
                                "name": "requests.cumulative",
                                "sum": {
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": "1699999000000000000",
                                            "timeUnixNano": "1700000010000000000",
                                            "asDouble": 1234.5,
                                        }
                                    ],
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                },
                            },
                        ],
                    },
                    {
                        "scope": {"name": "other.lib"},
                        "metrics": [
                            {
                                "name": "latency",
                                "unit": "s",
                                "description": "request latency",
                                "histogram": {
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": "1700000000000000000",
                                            "timeUnixNano": "1700000010000000000",
                                            "count": "6",
                                            "sum": 2.5,
                                            "bucketCounts": ["1", "2", "3"],
                                            "explicitBounds": [0.1, 1],
                                            "min": 0.01,
                                            "max": 1.5,
                                        }
                                    ],
                                    "aggregationTemporality": 2,
                                },
                            },
                            {
                                "name": "latency.exp",
                                "unit": "s",
                                "exponentialHistogram": {
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": "1700000000000000000",
                                            "timeUnixNano": "1700000010000000000",
                                            "count": "10",
                                            "sum": 3.25,
                                            "scale": -1,
                                            "zeroCount": "1",
                                            "zeroThreshold": 0.0001,
                                            "positive": {"offset": -2, "bucketCounts": ["4", "5"]},
                                            "negative": {"bucketCounts": []},
                                            "min": 0.0,
                                            "max": 2.0,
                                        }
                                    ],
                                    "aggregationTemporality": 1,
                                },
                            },
                        ],
                    },
                ],
            },
            {
                "resource": {"attributes": [kv("service.name", {"stringValue": "db-proxy"})]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "proxy"},
                        "metrics": [
                            {
                                "name": "rtt",
                                "summary": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": "1700000020000000000",
                                            "count": "3",
                                            "sum": 0.6,
                                            "quantileValues": [
                                                {"quantile": 0.5, "value": 0.2},
                                                {"quantile": 0.99, "value": 0.3},
                                            ],
                                        }
                                    ]
                                },
                            },
                            {"name": "future.kind", "someNewKind": {"dataPoints": []}},
                        ],
                    }
                ],
            },
        ]
    }


def test_collector_style_line(tmp_path: Path) -> None:
    from opentelemetry.proto_json.collector.metrics.v1.metrics_service import ExportMetricsServiceRequest

    line = collector_metrics_line()
    ExportMetricsServiceRequest.from_dict(line)  # the hand-written line is valid OTLP JSON
    records, stats = read_all(write_lines(tmp_path / "metrics.json", line))
    assert stats.problem_count == 0
    metrics = {r.name: r for r in records if isinstance(r, MetricRecord)}
    assert set(metrics) == {"requests.delta", "requests.cumulative", "latency", "latency.exp", "rtt"}
    assert stats.records["metrics"] == 5  # the metric of an unknown kind is skipped, not an error

    delta = metrics["requests.delta"]
    assert (delta.aggregation_temporality, delta.is_monotonic, delta.unit) == (1, True, "{request}")
    assert delta.points == (NumberPoint({"route": "/a"}, 1700000000000000000, 1700000010000000000, 17),)
    assert (delta.scope_name, delta.scope_version) == ("amqadf_agent", "0.1.0")
    cumulative = metrics["requests.cumulative"]
    assert cumulative.aggregation_temporality == 2
    assert isinstance(cumulative.points[0], NumberPoint) and cumulative.points[0].value == 1234.5
    assert delta.resource is cumulative.resource is metrics["latency"].resource
    assert delta.resource == {"service.name": "api", "service.instance.id": "api-1", "host.cpu.count": 4}

    latency = metrics["latency"]
    assert (latency.scope_name, latency.description) == ("other.lib", "request latency")
    (hp,) = latency.points
    assert hp == HistogramPoint(
        {}, 1700000000000000000, 1700000010000000000, 6, 2.5, (1, 2, 3), (0.1, 1.0), 0.01, 1.5
    )

    (ep,) = metrics["latency.exp"].points
    assert isinstance(ep, ExponentialHistogramPoint)
    assert (ep.count, ep.sum, ep.scale, ep.zero_count, ep.zero_threshold) == (10, 3.25, -1, 1, 0.0001)
    assert (ep.positive_offset, ep.positive_bucket_counts) == (-2, (4, 5))
    assert (ep.negative_offset, ep.negative_bucket_counts) == (0, ())
    assert (ep.min, ep.max) == (0.0, 2.0)
    assert metrics["latency.exp"].type == "exponential_histogram"

    rtt = metrics["rtt"]
    assert rtt.type == "summary" and rtt.service == "db-proxy"
    (sp,) = rtt.points
    assert isinstance(sp, SummaryPoint)
    assert (sp.count, sp.sum, sp.quantiles) == (3, 0.6, ((0.5, 0.2), (0.99, 0.3)))


def test_collector_style_spans_and_logs(tmp_path: Path) -> None:
    spans = {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", {"stringValue": "api"})]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeSpans": [
                    {
                        "scope": {"name": "a"},
                        "spans": [
                            {
                                "traceId": "0AF7651916CD43DD8448EB211C80319C",
                                "spanId": "B7AD6B7169203331",
                                "parentSpanId": "0000000000000000",
                                "traceState": "k=v",
                                "flags": 257,
                                "name": "GET /a",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": 1700000000000000000,
                                "endTimeUnixNano": "1700000000250000000",
                                "attributes": [
                                    kv("blob", {"bytesValue": "aGVsbG8="}),
                                    kv("nan", {"doubleValue": "NaN"}),
                                    kv("empty", {}),
                                ],
                                "droppedAttributesCount": 1,
                                "events": [{"timeUnixNano": "1700000000100000000", "name": "exception"}],
                                "links": [{"traceId": "1" * 32, "spanId": "2" * 16, "attributes": []}],
                                "status": {"code": "STATUS_CODE_ERROR", "message": "x"},
                            }
                        ],
                    },
                    {"scope": {"name": "b"}, "spans": []},
                ],
            }
        ]
    }
    logs = {
        "resourceLogs": [
            {
                "resource": {"attributes": [kv("service.name", {"stringValue": "api"})]},
                "scopeLogs": [
                    {
                        "scope": {"name": "logger"},
                        "logRecords": [
                            {
                                "observedTimeUnixNano": "1700000000300000000",
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"kvlistValue": {"values": [kv("msg", {"stringValue": "failed"})]}},
                                "traceId": "",
                                "spanId": "",
                                "eventName": "app.failure",
                            },
                            {"severityNumber": "SEVERITY_NUMBER_WARN2", "body": {"intValue": 7}},
                        ],
                    }
                ],
            }
        ],
        "resourceProfiles": "ignored: another signal",
    }
    records, stats = read_all(write_lines(tmp_path / "mixed.jsonl", spans, logs))
    assert stats.problem_count == 0 and stats.records == {"spans": 1, "metrics": 0, "logs": 2}
    span, first_log, second_log = records
    assert isinstance(span, SpanRecord)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "",  # an all-zero parent means "no parent"
    )
    assert span.kind == 2 and span.status_code == 2 and span.duration_s == 0.25
    assert span.attributes["blob"] == b"hello" and span.attributes["empty"] is None
    nan = span.attributes["nan"]
    assert isinstance(nan, float) and math.isnan(nan)
    assert span.events[0].name == "exception" and span.events[0].attributes == {}
    assert span.links[0].trace_id == "1" * 32 and span.links[0].span_id == "2" * 16
    assert isinstance(first_log, LogRecord) and isinstance(second_log, LogRecord)
    assert first_log.body == {"msg": "failed"} and first_log.event_name == "app.failure"
    assert (first_log.trace_id, first_log.span_id) == ("", "")
    assert first_log.time_ns == 0 and first_log.timestamp_ns == 1700000000300000000
    assert first_log.severity_number == 17
    assert second_log.severity_number == 14 and second_log.body == 7


def test_only_unknown_signal_is_ignored_not_a_problem(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", {"resourceProfiles": []}, span_line())
    records, stats = read_all(path, strict=True)
    assert len(records) == 1 and stats.ignored_lines == 1 and stats.problem_count == 0


# --- files, directories, compression ---------------------------------------------------------------------


def test_gzip_input_by_content_not_name(tmp_path: Path) -> None:
    payload = orjson.dumps(span_line()) + b"\n"
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "b.jsonl").write_bytes(gzip.compress(payload))  # gzip without the .gz name
    records, stats = read_all(tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl")
    assert stats.problem_count == 0 and len(records) == 2
    assert all(
        isinstance(r, SpanRecord) and r.trace_id == "0af7651916cd43dd8448eb211c80319c" for r in records
    )


def test_gzip_of_a_pretty_printed_document(tmp_path: Path) -> None:
    (tmp_path / "trace.json.gz").write_bytes(gzip.compress((FIXTURES / "trace.json").read_bytes()))
    records, stats = read_all(tmp_path / "trace.json.gz")
    assert stats.problem_count == 0 and [r.name for r in records if isinstance(r, SpanRecord)] == [
        "I'm a server span"
    ]


def test_directory_with_rotated_files(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry"
    (telemetry / "sub").mkdir(parents=True)
    (telemetry / ".hidden").mkdir()
    write_lines(telemetry / "traces-2026-11-26T10-00-00.000.jsonl", span_line(span_id="1" * 16))
    write_lines(telemetry / "traces.jsonl", span_line(span_id="2" * 16))
    (telemetry / "traces-2026-11-26T09-00-00.000.jsonl.gz").write_bytes(
        gzip.compress(orjson.dumps(span_line(span_id="3" * 16)) + b"\n")
    )
    write_lines(telemetry / "sub" / "metrics.json", collector_metrics_line())
    write_lines(telemetry / "sub" / "more.ndjson", span_line(span_id="4" * 16))
    write_lines(telemetry / ".hidden" / "x.jsonl", span_line(span_id="5" * 16))
    write_lines(telemetry / ".dot.jsonl", span_line(span_id="6" * 16))
    (telemetry / "notes.txt").write_text("not telemetry")
    (telemetry / "collector.yaml").write_text("receivers: {}")

    records, stats = read_all(telemetry)
    assert stats.problem_count == 0
    assert stats.files_read == 5
    span_ids = sorted(r.span_id for r in records if isinstance(r, SpanRecord))
    assert span_ids == ["1" * 16, "2" * 16, "3" * 16, "4" * 16]
    assert stats.records == {"spans": 4, "metrics": 5, "logs": 0}


def test_explicit_file_is_read_whatever_its_name(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "export.log", span_line())
    records, _ = read_all(path)
    assert len(records) == 1


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "big.jsonl", *(span_line(span_id=f"{i + 1:016x}") for i in range(2000)))
    stats = ReadStats()
    iterator = read(path, stats=stats)
    first = next(iterator)
    assert isinstance(first, SpanRecord) and first.span_id == f"{1:016x}"
    assert stats.lines_read == 1  # one line in memory, not the file
    iterator.close()  # type: ignore[attr-defined]
    assert sum(1 for _ in read(path)) == 2000


def test_accepts_a_single_path_and_pathlike(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", span_line())
    assert len(list(read(path))) == 1
    assert len(list(read(str(path)))) == 1


def test_an_empty_file_in_a_directory_is_no_problem_but_a_named_one_is(tmp_path: Path) -> None:
    # The agent creates logs.jsonl before the first log record; a rotated file starts empty.
    empty = tmp_path / "logs.jsonl"
    empty.write_bytes(b"")
    (tmp_path / "traces.jsonl").write_bytes(orjson.dumps(span_line()) + b"\n")
    records, stats = read_all(tmp_path)
    assert len(records) == 1 and stats.problem_count == 0 and stats.files_read == 2
    assert len(list(read(tmp_path, strict=True))) == 1
    # Named on its own, the same file is read for its content, and it has none: said, and strict ends.
    records, stats = read_all(empty)
    assert records == [] and stats.files_read == 1
    assert stats.problem_count == 1 and stats.problems[0] == f"{empty}: empty file, no telemetry in it"
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n  \n")
    assert read_all(blank)[1].problems == [f"{blank}: empty file, no telemetry in it"]
    with pytest.raises(TelemetryInputError, match="empty file"):
        list(read(empty, strict=True))


# --- bad input: skipped and counted by default, raised in strict mode --------------------------------------


def _bad_inputs(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(case, path, expected problem prefix)."""
    good = orjson.dumps(span_line())
    yield "missing", tmp_path / "missing.jsonl", f"{tmp_path / 'missing.jsonl'}: no such file or directory"

    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(good + b"\n" + good[: len(good) // 2])
    yield "truncated", truncated, f"{truncated}:2: not JSON (truncated last line?)"

    not_json = tmp_path / "notjson.jsonl"
    not_json.write_bytes(good + b"\nthis is not json\n" + good + b"\n")
    yield "not-json", not_json, f"{not_json}:2: not JSON"

    wrong_shape = tmp_path / "shape.jsonl"
    wrong_shape.write_bytes(good + b"\n" + b"[1, 2, 3]\n")
    yield "array", wrong_shape, f"{wrong_shape}:2: expected an object"

    no_signal = tmp_path / "nosignal.jsonl"
    no_signal.write_bytes(b'{"hello": "world"}\n')
    yield "no-signal", no_signal, f"{no_signal}:1: no resourceSpans"

    bad_type = tmp_path / "badtype.jsonl"
    bad_type.write_bytes(b'{"resourceSpans": "x"}\n')
    yield "bad-type", bad_type, f"{bad_type}:1: resourceSpans: expected a list"

    bad_id = tmp_path / "badid.jsonl"
    write_lines(bad_id, span_line(), span_line(trace_id="XYZ" + "0" * 29), span_line())
    yield "non-hex-id", bad_id, f"{bad_id}:2: traceId: expected 32 hex digits"

    short_id = tmp_path / "shortid.jsonl"
    write_lines(short_id, span_line(span_id="abc"))
    yield "short-id", short_id, f"{short_id}:1: spanId: expected 16 hex digits"

    base64_id = tmp_path / "base64id.jsonl"
    write_lines(base64_id, span_line(trace_id="CvdlGRbNQ92ESOshHIAxnA=="))
    yield (
        "base64-id",
        base64_id,
        f"{base64_id}:1: traceId: expected 32 hex digits, got 'CvdlGRbNQ92ESOshHIAxnA==' (base64?)",
    )

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(bytes(range(256)) * 8)
    yield "garbage", garbage, f"{garbage}: looks binary"

    truncated_gz = tmp_path / "truncated.jsonl.gz"
    truncated_gz.write_bytes(gzip.compress((good + b"\n") * 200)[:60])
    yield "truncated-gzip", truncated_gz, f"{truncated_gz}:1: corrupt gzip data"

    corrupt_gz = tmp_path / "corrupt.jsonl.gz"
    data = bytearray(gzip.compress((good + b"\n") * 50))
    data[-6] ^= 0xFF  # the CRC/length trailer: detected after every line has been read
    corrupt_gz.write_bytes(bytes(data))
    yield "corrupt-gzip-trailer", corrupt_gz, f"{corrupt_gz}:51: corrupt gzip data"

    not_gzip = tmp_path / "notgzip.jsonl.gz"
    not_gzip.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    yield "bad-gzip-header", not_gzip, f"{not_gzip}:1: corrupt gzip data"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "truncated",
        "not-json",
        "array",
        "no-signal",
        "bad-type",
        "non-hex-id",
        "short-id",
        "base64-id",
        "garbage",
        "truncated-gzip",
        "corrupt-gzip-trailer",
        "bad-gzip-header",
    ],
)
def test_bad_input_is_counted_by_default_and_raised_when_strict(tmp_path: Path, case: str) -> None:
    cases = {name: (path, prefix) for name, path, prefix in _bad_inputs(tmp_path)}
    path, prefix = cases[case]

    records, stats = read_all(path)
    assert stats.problem_count >= 1
    assert stats.problems[0].startswith(prefix), stats.problems
    assert all(isinstance(r, SpanRecord) and HEX32.fullmatch(r.trace_id) for r in records)

    with pytest.raises(TelemetryInputError) as raised:
        list(read(path, strict=True))
    assert str(raised.value).startswith(prefix)


def test_good_lines_around_bad_ones_are_kept(tmp_path: Path) -> None:
    good = orjson.dumps(span_line())
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        good + b"\n{not json\n\n" + orjson.dumps(span_line(trace_id="zz")) + b"\n" + good + b"\n"
    )
    records, stats = read_all(path)
    assert len(records) == 2  # line 1 and line 5; line 4 is dropped whole
    assert stats.lines_read == 5 and stats.problem_count == 2
    assert [p.split(": ")[0] for p in stats.problems] == [f"{path}:2", f"{path}:4"]


def test_a_bad_span_drops_its_whole_line(tmp_path: Path) -> None:
    line = span_line()
    spans = line["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[0], spanId="not-an-id"))
    records, stats = read_all(write_lines(tmp_path / "t.jsonl", line))
    assert records == [] and stats.problem_count == 1 and stats.records["spans"] == 0


def test_corrupt_gzip_keeps_the_lines_before_the_damage(tmp_path: Path) -> None:
    good = orjson.dumps(span_line()) + b"\n"
    path = tmp_path / "t.jsonl.gz"
    data = gzip.compress(good * 50)
    path.write_bytes(data[:-8])  # trailer cut off
    records, stats = read_all(path)
    assert len(records) == 50 and stats.problem_count == 1
    assert stats.problems[0].startswith(f"{path}:51: corrupt gzip data")


def test_problems_are_all_counted_but_only_the_first_kept(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"nope\n" * 150)
    _, stats = read_all(path)
    assert stats.problem_count == 150
    assert len(stats.problems) == MAX_PROBLEMS_KEPT
    assert stats.problems[0].startswith(f"{path}:1: not JSON: ")
    assert stats.problems[-1].startswith(f"{path}:100: not JSON: ")


def test_directory_without_telemetry_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    _, stats = read_all(tmp_path)
    assert stats.problems == [f"{tmp_path}: no OTLP JSON files found"]
    with pytest.raises(TelemetryInputError, match="no OTLP JSON files found"):
        list(read(tmp_path, strict=True))


def test_over_long_line_is_skipped_without_losing_the_next(tmp_path: Path) -> None:
    good = orjson.dumps(span_line())
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"resourceSpans": [' + b" " * 5000 + b"]}\n" + good + b"\n")
    records, stats = read_all(path, max_line_bytes=len(good) + 10)
    assert len(records) == 1 and stats.lines_read == 2
    limit = len(good) + 10
    assert stats.problems == [
        f"{path}:1: line longer than {limit} bytes (the most the analyzer reads as one line), skipped"
    ]


def test_pretty_printed_document_with_bom_and_crlf(tmp_path: Path) -> None:
    text = (FIXTURES / "logs.json").read_text().replace("\n", "\r\n")
    path = tmp_path / "logs.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    records, stats = read_all(path)
    assert stats.problem_count == 0 and len(records) == 1


def test_broken_pretty_printed_document_is_one_problem(tmp_path: Path) -> None:
    lines = (FIXTURES / "trace.json").read_text().splitlines()
    path = tmp_path / "trace.json"
    path.write_text("\n".join(lines[:30]) + "\n")
    records, stats = read_all(path)
    assert records == []
    assert stats.problem_count == 1
    assert stats.problems[0].startswith(f"{path}:31: not a valid JSON document")


def test_document_larger_than_the_cap_is_a_problem(tmp_path: Path) -> None:
    records, stats = read_all(FIXTURES / "trace.json", max_document_bytes=100)
    assert records == []
    assert stats.problems == [f"{FIXTURES / 'trace.json'}: a multi-line JSON document larger than 100 bytes"]


def test_json_lines_with_a_broken_first_line_are_not_taken_for_a_document(tmp_path: Path) -> None:
    good = orjson.dumps(span_line())
    path = tmp_path / "t.jsonl"
    path.write_bytes(good[:-5] + b"\n" + good + b"\n" + good + b"\n")
    records, stats = read_all(path)
    assert len(records) == 2
    assert stats.problem_count == 1 and stats.problems[0].startswith(f"{path}:1: not JSON")


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    line = span_line()
    line["newTopLevel"] = {"x": 1}
    line["resourceSpans"][0]["newField"] = [1, 2]
    line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["newSpanField"] = "v"
    line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [kv("k", {"futureValue": 1})]
    records, stats = read_all(write_lines(tmp_path / "t.jsonl", line), strict=True)
    assert len(records) == 1 and stats.problem_count == 0
    assert isinstance(records[0], SpanRecord) and records[0].attributes == {"k": None}


# --- property: mutated valid lines never make the reader raise -------------------------------------------


def _seed_lines() -> list[bytes]:
    official = [
        orjson.dumps(orjson.loads((FIXTURES / name).read_bytes())) for name in FIXTURES.glob("*.json")
    ]
    return [orjson.dumps(span_line()), orjson.dumps(collector_metrics_line()), *official]


SEEDS = _seed_lines()
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["NaN", "Infinity", "-1", "0" * 32, "F" * 16, "1e999", "SPAN_KIND_SERVER", "aGk="]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(SEEDS))
    how = draw(st.sampled_from(["delete", "replace", "insert", "retype", "drop-key"]))
    if how in ("delete", "replace", "insert"):
        start = draw(st.integers(0, len(line)))
        end = draw(st.integers(start, min(len(line), start + 20)))
        junk = draw(st.binary(max_size=8)) if how != "delete" else b""
        return line[:start] + junk + (line[end:] if how != "insert" else line[start:])
    obj = orjson.loads(line)
    paths = list(_paths(obj))
    path = draw(st.sampled_from(paths[1:]))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if how == "retype":
        parent[path[-1]] = draw(JSON_VALUES)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return json.dumps(obj, separators=(",", ":")).encode()  # json, not orjson: ints past 64 bits too


def _assert_well_formed(record: Record) -> None:
    if isinstance(record, SpanRecord):
        assert HEX32.fullmatch(record.trace_id) and HEX16.fullmatch(record.span_id)
        assert record.parent_span_id == "" or HEX16.fullmatch(record.parent_span_id)
        assert type(record.start_ns) is int and type(record.end_ns) is int and type(record.kind) is int
        assert all(HEX32.fullmatch(link.trace_id) and HEX16.fullmatch(link.span_id) for link in record.links)
        assert all(type(event.time_ns) is int for event in record.events)
    elif isinstance(record, LogRecord):
        assert record.trace_id == "" or HEX32.fullmatch(record.trace_id)
        assert record.span_id == "" or HEX16.fullmatch(record.span_id)
        assert type(record.time_ns) is int and type(record.severity_number) is int
    else:
        assert isinstance(record, MetricRecord) and record.name
        assert type(record.aggregation_temporality) is int and type(record.is_monotonic) is bool
        for point in record.points:
            assert type(point.time_ns) is int and type(point.start_ns) is int
    assert (
        all(type(key) is str for key in record.attributes) if not isinstance(record, MetricRecord) else True
    )
    assert all(type(key) is str for key in record.resource)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(mutated_lines(), min_size=1, max_size=3), strict=st.booleans(), gz=st.booleans())
def test_mutated_lines_never_raise_and_yield_well_formed_records(
    lines: list[bytes], strict: bool, gz: bool
) -> None:
    data = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.jsonl"
        path.write_bytes(gzip.compress(data) if gz else data)
        stats = ReadStats()
        try:
            for record in read(path, strict=strict, stats=stats):
                _assert_well_formed(record)
        except TelemetryInputError as error:
            assert strict
            assert str(error).startswith(f"{path}:")
        if not strict:
            # At most one problem per physical line (junk may add newlines), plus one for the end.
            assert stats.problem_count == len(stats.problems) <= stats.lines_read + 1
            assert stats.files_read == 1
