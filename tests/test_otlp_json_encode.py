"""The direct OTLP JSON encoder writes the SDK encoder's bytes, and the official decoders agree."""

from __future__ import annotations

import base64
import logging
import math
import random
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.json.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as proto_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as proto_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.runtime import otlp_json_encode
from amqadf_agent.runtime.file_exporter import FileLogExporter, FileSpanExporter, RotatingLineWriter

ID_KEYS = {"traceId", "spanId", "parentSpanId"}
KINDS = [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]
#: Strings with non-ASCII, JSON escapes and control characters.
TEXTS = [
    "",
    "GET",
    "héllo wörld ✓",
    'quote " backslash \\ slash /',
    "tab\tnl\ncr\r\x00\x01\x1f\x7f",
    "😀 𝄞",
    "\u2028\u2029",
]


def sdk_line(spans: Sequence[ReadableSpan]) -> bytes:
    return orjson.dumps(sdk_encode_spans(spans).to_dict()) + b"\n"


def fast_line(spans: Sequence[ReadableSpan]) -> bytes:
    """The fast path alone (no fallback to the SDK encoder), serialised as the exporter does."""
    return orjson.dumps(otlp_json_encode.encode_spans(spans)) + b"\n"


def sdk_logs_line(batch: Sequence[ReadableLogRecord]) -> bytes:
    return orjson.dumps(sdk_encode_logs(batch).to_dict()) + b"\n"


def parse(line: bytes, message: Any) -> Any:
    """Parse by the official protobuf JSON mapping, which reads ids as base64 where OTLP writes hex."""

    def ids_as_base64(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode() if k in ID_KEYS else ids_as_base64(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [ids_as_base64(v) for v in node]
        return node

    return json_format.ParseDict(ids_as_base64(orjson.loads(line)), message)


def value(rng: random.Random, proto_safe: bool = True) -> Any:
    """One attribute value of every type the SDK keeps on a span."""
    pick = rng.randrange(11)
    if pick == 0:
        return rng.choice(TEXTS)
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, 1, -1, 2**31, -(2**63), 2**63 - 1, rng.randrange(-(10**12), 10**12)])
    if pick == 3:
        return rng.choice([0.0, -0.0, 1.5, 1e300, -2.5e-308, 3.0, rng.random()])
    if pick == 4:
        return rng.choice([math.nan, math.inf, -math.inf])
    if pick == 5:
        return rng.choice([b"", b"\x00\xff", bytes(range(40))])
    if pick == 6:
        return [rng.choice(TEXTS) for _ in range(rng.randrange(4))]
    if pick == 7:
        return [rng.randrange(-100, 100) for _ in range(rng.randrange(4))]
    if pick == 8:
        return [rng.choice([1.25, -0.5, math.inf]) for _ in range(rng.randrange(1, 4))]
    if pick == 9:
        return [rng.choice([True, False]) for _ in range(rng.randrange(1, 4))]
    return rng.choice(TEXTS) * rng.randrange(1, 4)


def attributes(rng: random.Random, n: int) -> dict[str, Any]:
    return {f"attr.{i}.{rng.choice(TEXTS)}": value(rng) for i in range(n)}


def context(rng: random.Random, remote: bool) -> SpanContext:
    state = TraceState([("vendor", "v1"), ("other", "a-b")]) if rng.random() < 0.5 else TraceState()
    return SpanContext(
        rng.getrandbits(128) or 1,
        rng.getrandbits(64) or 1,
        is_remote=remote,
        trace_flags=TraceFlags(1),
        trace_state=state,
    )


def make_spans(seed: int, count: int = 60) -> list[ReadableSpan]:
    """Spans from real SDK tracer providers: two resources (one given twice), several scopes."""
    rng = random.Random(seed)
    captured = InMemorySpanExporter()
    limits = SpanLimits(
        max_attributes=20, max_events=3, max_links=2, max_event_attributes=4, max_link_attributes=4
    )
    resources = [
        Resource.create({"service.name": "svc-a", "deployment.environment": "test", "n": 3}),
        Resource({"service.name": "svc-b", "bytes": b"\x01", "list": ("a", "b")}, schema_url="https://x/1.2"),
        # Equal to the first but another object: the SDK encoder groups the two as one.
        Resource.create({"service.name": "svc-a", "deployment.environment": "test", "n": 3}),
        Resource({}),
    ]
    providers = [TracerProvider(resource=r, span_limits=limits) for r in resources]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(captured))
    tracers = [
        provider.get_tracer(name, version, schema_url=schema, attributes=attrs)
        for provider in providers
        for name, version, schema, attrs in [
            ("lib.one", "1.0", None, None),
            ("lib.two", None, "https://opentelemetry.io/schemas/1.21.0", {"scope.attr": "x", "k": 2}),
            ("", "", None, None),
        ]
    ]
    for i in range(count):
        tracer = rng.choice(tracers)
        parent_ctx = None
        if rng.random() < 0.5:
            parent_ctx = trace_api.set_span_in_context(
                trace_api.NonRecordingSpan(context(rng, rng.random() < 0.5))
            )
        links = [
            Link(context(rng, rng.random() < 0.5), attributes(rng, rng.randrange(6)))
            for _ in range(rng.randrange(4))
        ]
        span = tracer.start_span(
            rng.choice(TEXTS) or f"span-{i}",
            context=parent_ctx,
            kind=KINDS[i % len(KINDS)],
            attributes=attributes(rng, rng.randrange(0, 25)),
            links=links,
            start_time=rng.randrange(1, 2**62),
        )
        for _ in range(rng.randrange(5)):
            span.add_event(
                rng.choice(TEXTS), attributes(rng, rng.randrange(7)), timestamp=rng.randrange(1, 2**62)
            )
        status = rng.randrange(4)
        if status == 1:
            span.set_status(Status(StatusCode.ERROR, rng.choice(TEXTS) or "boom"))
        elif status == 2:
            span.set_status(Status(StatusCode.OK))
        elif status == 3:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=rng.randrange(2**62, 2**63 - 1))
    for provider in providers:
        provider.shutdown()
    return list(captured.get_finished_spans())


@pytest.mark.parametrize("seed", range(12))
def test_spans_are_the_sdk_encoders_bytes(seed: int) -> None:
    spans = make_spans(seed)
    ours = fast_line(spans)
    assert ours == sdk_line(spans)
    assert otlp_json_encode.spans_line(spans) == ours
    assert orjson.loads(ours) == orjson.loads(sdk_line(spans))


def test_generated_spans_cover_what_the_encoder_writes() -> None:
    """The generator reaches every field the comparison above is meant to exercise."""
    raw = orjson.loads(otlp_json_encode.spans_line([s for seed in range(4) for s in make_spans(seed)]))
    spans = [s for rs in raw["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    seen = {k for s in spans for k in s}
    assert seen >= {
        "traceState", "parentSpanId", "droppedAttributesCount", "droppedEventsCount", "droppedLinksCount",
        "events", "links", "status", "kind", "flags",
    }  # fmt: skip
    assert {s["kind"] for s in spans} == {1, 2, 3, 4, 5}
    assert {s["flags"] for s in spans} == {0x100, 0x300}
    assert {s["status"].get("code") for s in spans} == {None, 1, 2}
    assert any(s["status"].get("message") for s in spans)
    values = {k for s in spans for a in s.get("attributes", []) for k in a["value"]}
    assert values == {"stringValue", "boolValue", "intValue", "doubleValue", "bytesValue", "arrayValue"}
    doubles = {
        a["value"]["doubleValue"]
        for s in spans
        for a in s.get("attributes", [])
        if "doubleValue" in a["value"]
    }
    assert {"NaN", "Infinity", "-Infinity"} <= doubles
    # One group for the two equal resources, one for the other, one for the empty resource.
    assert len(raw["resourceSpans"]) == 3
    assert [rs.get("schemaUrl") for rs in raw["resourceSpans"]].count("https://x/1.2") == 1
    assert any(
        "schemaUrl" in ss and ss["scope"].get("attributes")
        for rs in raw["resourceSpans"]
        for ss in rs["scopeSpans"]
    )
    assert any(ss["scope"] == {} for rs in raw["resourceSpans"] for ss in rs["scopeSpans"])


@pytest.mark.parametrize("seed", range(4))
def test_the_protobuf_decoder_reads_what_the_protobuf_encoder_makes(seed: int) -> None:
    """Parsed by the official JSON mapping, our line is the message OTLP/HTTP would send."""
    spans = make_spans(seed)
    parsed = parse(otlp_json_encode.spans_line(spans), ExportTraceServiceRequest())
    expected = proto_encode_spans(spans)
    # NaN != NaN in message equality: compare the serialised form, which is deterministic.
    assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert len([s for rs in parsed.resource_spans for ss in rs.scope_spans for s in ss.spans]) == len(spans)


def test_the_cached_resource_and_scope_do_not_leak_between_batches() -> None:
    """The cache is by identity with the object held: a new resource gets its own attributes."""
    first = make_spans(1, count=5)
    second = make_spans(2, count=5)
    for batch in (first, second, first + second, second[:1], first[:1]):
        assert fast_line(batch) == sdk_line(batch)


class SubStr(str):
    """A str subclass: passed through as the SDK encoder does."""


def raw_span(attrs: dict[Any, Any], **kwargs: Any) -> ReadableSpan:
    ctx = SpanContext(0x1234, 0x99, is_remote=False)
    return ReadableSpan(
        name="raw",
        context=ctx,
        attributes=attrs,
        resource=Resource({"r": 1}),
        kind=SpanKind.INTERNAL,
        **kwargs,
    )


@pytest.mark.parametrize(
    "attrs",
    [
        {"huge": 2**70, "neg": -(2**65)},  # beyond int64: the SDK writes the digits, so do we
        {"none-in-list": [None, "a"], "nested": [[1, 2], ("x",)], "empty": [], "empty-tuple": ()},
        {"kv": {"a": 1, "": "nokey", 3: [1.5]}, "emptykv": {}},
        {"none": None, "bytearray": bytearray(b"ab"), "sub": SubStr("s"), "enum": HTTPStatus.OK},
    ],
)
def test_odd_values_on_a_raw_span_are_the_sdk_encoders(attrs: dict[Any, Any]) -> None:
    span = raw_span(attrs)
    assert fast_line([span]) == sdk_line([span])


@pytest.mark.parametrize(
    "attrs",
    [
        {"": "empty key"},
        {7: "int key"},
        {"obj": object(), "fine": "kept"},  # the SDK encoder logs and drops the key it cannot encode
    ],
)
def test_what_the_fast_path_cannot_write_goes_to_the_sdk_encoder(attrs: dict[Any, Any], caplog: Any) -> None:
    span = raw_span(attrs)
    with pytest.raises(otlp_json_encode.Unsupported):
        otlp_json_encode.encode_spans([span])
    with caplog.at_level(logging.ERROR):
        assert otlp_json_encode.spans_line([span]) == sdk_line([span])


def test_a_span_without_context_or_times_is_the_sdk_encoders() -> None:
    span = ReadableSpan(name="", context=None, parent=None, resource=Resource({}), status=None)
    assert fast_line([span]) == sdk_line([span])


def test_unknown_values_fall_back_to_the_sdk_for_that_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback is real: the SDK encoder writes the batch, the file line is still its bytes."""
    calls = []
    original = sdk_encode_spans

    def counting(spans: Any) -> Any:
        calls.append(len(spans))
        return original(spans)

    import opentelemetry.exporter.otlp.json.common.trace_encoder as module

    monkeypatch.setattr(module, "encode_spans", counting)
    good = make_spans(3, count=4)
    assert otlp_json_encode.spans_line(good) == sdk_line(good)
    assert calls == []
    bad = [*good, raw_span({"obj": object()})]
    assert otlp_json_encode.spans_line(bad) == sdk_line(bad)
    assert calls == [len(bad)]


def make_logs(seed: int) -> list[ReadableLogRecord]:
    rng = random.Random(seed)
    captured = InMemoryLogRecordExporter()
    providers = [
        LoggerProvider(resource=Resource.create({"service.name": "logs-a"})),
        LoggerProvider(resource=Resource({"service.name": "logs-b"}, schema_url="https://x/2")),
    ]
    for provider in providers:
        provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    loggers = [
        p.get_logger(name, version) for p in providers for name, version in [("app", "2.0"), ("lib", None)]
    ]
    for i in range(40):
        logger = rng.choice(loggers)
        ctx = None
        if rng.random() < 0.5:
            ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(context(rng, False)))
        body: Any = rng.choice(
            [rng.choice(TEXTS), None, 42, 2.5, {"k": "v", "n": [1, 2]}, ["a", 1], b"\x01\x02"]
        )
        logger.emit(
            timestamp=rng.choice([None, rng.randrange(1, 2**62)]),
            observed_timestamp=rng.randrange(1, 2**62),
            context=ctx,
            severity_number=rng.choice([None, SeverityNumber.INFO, SeverityNumber.ERROR]),
            severity_text=rng.choice([None, "", "WARN"]),
            body=body,
            attributes=attributes(rng, rng.randrange(6)),
            event_name=rng.choice([None, "", f"event.{i}"]),
        )
    for provider in providers:
        provider.shutdown()
    return list(captured.get_finished_logs())


@pytest.mark.parametrize("seed", range(6))
def test_logs_are_the_sdk_encoders_bytes(seed: int) -> None:
    batch = make_logs(seed)
    ours = orjson.dumps(otlp_json_encode.encode_logs(batch)) + b"\n"
    assert ours == sdk_logs_line(batch)
    assert otlp_json_encode.logs_line(batch) == ours
    raw = orjson.loads(ours)
    keys = {k for rl in raw["resourceLogs"] for sl in rl["scopeLogs"] for lr in sl["logRecords"] for k in lr}
    assert keys >= {
        "timeUnixNano",
        "severityNumber",
        "severityText",
        "body",
        "attributes",
        "traceId",
        "eventName",
    }
    parsed = parse(ours, ExportLogsServiceRequest())
    expected = proto_encode_logs(batch)
    assert parsed.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_file_exporters_write_the_direct_encoding_and_the_reader_reads_it(tmp_path: Path) -> None:
    spans = make_spans(5)
    logs = make_logs(5)
    traces = RotatingLineWriter(tmp_path, "traces", 10**8, 2)
    log_writer = RotatingLineWriter(tmp_path, "logs", 10**8, 2)
    FileSpanExporter(traces).export(spans)
    FileLogExporter(log_writer).export(logs)
    traces.close()
    log_writer.close()
    assert (tmp_path / "traces.jsonl").read_bytes() == sdk_line(spans)
    assert (tmp_path / "logs.jsonl").read_bytes() == sdk_logs_line(logs)
    stats = ReadStats()
    records = list(read([tmp_path / "traces.jsonl"], strict=True, stats=stats))
    assert len(records) == len(spans)
    assert {r.span_id for r in records} == {format(s.get_span_context().span_id, "016x") for s in spans}


class CopiedSpan(ReadableSpan):
    """A span class of another library: the encoder reads it through the public properties only."""


def copied_spans() -> list[ReadableSpan]:
    """Spans of ``make_spans`` copied into ``CopiedSpan``."""
    return [
        CopiedSpan(
            name=s.name,
            context=s.get_span_context(),
            parent=s.parent,
            resource=s.resource,
            attributes=s.attributes,
            events=s.events,
            links=s.links,
            kind=s.kind,
            status=s.status,
            start_time=s.start_time,
            end_time=s.end_time,
            instrumentation_scope=s.instrumentation_scope,
        )
        for s in make_spans(7, count=30)
    ]


def test_span_subclasses_are_read_through_public_properties() -> None:
    spans = copied_spans()
    assert fast_line(spans) == sdk_line(spans)
    assert b'"events"' in sdk_line(spans) and b'"links"' in sdk_line(spans)


def test_the_string_cache_keeps_few_values_per_key_and_few_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_json_encode, "_string_pairs", otlp_json_encode.StringPairs())
    spans = [raw_span({"url.path": f"/p/{i}", "method": "GET", "statement": "x" * 200}) for i in range(200)]
    assert fast_line(spans) == sdk_line(spans)
    tables = otlp_json_encode._string_pairs.tables
    assert tables["url.path"] is otlp_json_encode._UNCACHED  # past 64 values: no longer kept
    assert otlp_json_encode._UNCACHED == {}
    assert list(tables["method"]) == ["GET"]
    assert "statement" not in tables  # long values are never kept
    assert fast_line(spans) == sdk_line(spans)  # and read back right from the cache

    small = otlp_json_encode.StringPairs()
    small.MAX = 100
    monkeypatch.setattr(otlp_json_encode, "_string_pairs", small)
    many = [raw_span({f"key.{i % 150}": f"value {i}"}) for i in range(450)]
    assert fast_line(many) == sdk_line(many)
    assert sum(len(t) for t in small.tables.values()) <= 100
    assert 0 < small.count <= 100


_scalars = (
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.none()
)
_values = (
    _scalars | st.lists(_scalars, max_size=4) | st.dictionaries(st.text(max_size=4), _scalars, max_size=3)
)


@settings(max_examples=200, deadline=None)
@given(attrs=st.dictionaries(st.text(max_size=6), _values, max_size=8), remote=st.booleans())
def test_any_attributes_a_tracer_keeps_are_the_sdk_encoders_bytes(
    attrs: dict[str, Any], remote: bool
) -> None:
    """Whatever the SDK keeps on a span (it cleans values and keys first), on the fast path."""
    spans = traced(attrs, remote)
    assert fast_line(spans) == sdk_line(spans)


def traced(attrs: dict[str, Any], remote: bool) -> Sequence[ReadableSpan]:
    """One span through a real tracer, with ``attrs`` on it and on an event, under a parent."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"r": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    parent = trace_api.set_span_in_context(trace_api.NonRecordingSpan(SpanContext(5, 6, is_remote=remote)))
    with provider.get_tracer("t").start_as_current_span("s", context=parent, attributes=attrs) as span:
        span.add_event("e", attrs)
    return captured.get_finished_spans()


@pytest.mark.filterwarnings("ignore:Log record attributes were dropped")
@settings(max_examples=150, deadline=None)
@given(
    body=_values | st.lists(_values, max_size=3),
    attrs=st.dictionaries(st.text(max_size=6), _values, max_size=5),
)
def test_any_log_body_and_attributes_are_the_sdk_encoders_bytes(body: Any, attrs: dict[str, Any]) -> None:
    captured = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource({"r": "x"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    provider.get_logger("t").emit(body=body, attributes=attrs, severity_number=SeverityNumber.DEBUG)
    batch = captured.get_finished_logs()
    assert orjson.dumps(otlp_json_encode.encode_logs(batch)) + b"\n" == sdk_logs_line(batch)
