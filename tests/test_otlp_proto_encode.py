"""The direct OTLP protobuf encoder writes the SDK encoder's bytes, and the exporter sends them."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext
from support.otlp_receiver import Received
from test_otlp_json_encode import _values, copied_spans, make_spans, raw_span, traced

import amqadf_agent
from amqadf_agent.runtime import otlp_json_encode, otlp_proto_encode
from amqadf_agent.runtime.otlp_http import ProtoSpanExporter


def sdk_body(spans: Any) -> bytes:
    return bytes(sdk_encode_spans(spans).SerializePartialToString())


@pytest.mark.parametrize("seed", range(12))
def test_spans_are_the_sdk_encoders_bytes(seed: int) -> None:
    spans = make_spans(seed)
    ours = otlp_proto_encode.encode_spans(spans)
    assert ours == sdk_body(spans)
    assert otlp_proto_encode.spans_body(spans) == ours
    parsed = ExportTraceServiceRequest.FromString(ours)
    assert len([s for rs in parsed.resource_spans for ss in rs.scope_spans for s in ss.spans]) == len(spans)


def test_the_cached_resource_and_scope_do_not_leak_between_batches() -> None:
    first = make_spans(1, count=5)
    second = make_spans(2, count=5)
    for batch in (first, second, first + second, second[:1], first[:1]):
        assert otlp_proto_encode.encode_spans(batch) == sdk_body(batch)


def test_span_subclasses_are_read_through_public_properties() -> None:
    spans = copied_spans()
    assert otlp_proto_encode.encode_spans(spans) == sdk_body(spans)


def test_the_string_pairs_are_kept_per_key_and_read_back_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeating string values are written once and reused; keys with many values are not kept."""
    pairs = otlp_json_encode.StringPairs()
    monkeypatch.setattr(otlp_proto_encode, "_string_pairs", pairs)
    spans = [raw_span({"url.path": f"/p/{i}", "method": "GET", "long": "x" * 200}) for i in range(200)]
    for _ in range(2):  # the second time from the cache
        assert otlp_proto_encode.encode_spans(spans) == sdk_body(spans)
    assert pairs.tables["url.path"] is otlp_json_encode._UNCACHED
    assert list(pairs.tables["method"]) == ["GET"]
    assert "long" not in pairs.tables

    small = otlp_json_encode.StringPairs()
    small.MAX = 100
    monkeypatch.setattr(otlp_proto_encode, "_string_pairs", small)
    many = [raw_span({f"key.{i % 150}": f"value {i % 3}"}) for i in range(450)]
    for _ in range(2):
        assert otlp_proto_encode.encode_spans(many) == sdk_body(many)
    assert 0 < small.count <= 100


def test_shared_attributes_are_written_under_each_fields_own_tag() -> None:
    """A key-value shared between a span, its event and the resource keeps each one's field."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"k": "v"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("t", attributes={"k": "v"})
    for _ in range(3):
        with tracer.start_as_current_span("s", attributes={"k": "v"}) as span:
            span.add_event("e", {"k": "v"})
    spans = captured.get_finished_spans()
    assert otlp_proto_encode.encode_spans(spans) == sdk_body(spans)
    assert otlp_proto_encode.encode_spans(spans[:1]) == sdk_body(spans[:1])


@pytest.mark.parametrize(
    "attrs",
    [
        {"none-in-list": [None, "a"], "nested": [[1, 2], ("x",)], "empty": [], "empty-tuple": ()},
        {"kv": {"a": 1, "": "nokey", 3: [1.5]}, "emptykv": {}},
        {"none": None, "bytearray": bytearray(b"ab"), "neg": -5, "min": -(2**63), "max": 2**63 - 1},
    ],
)
def test_odd_values_on_a_raw_span_are_the_sdk_encoders(attrs: dict[Any, Any]) -> None:
    span = raw_span(attrs)
    assert otlp_proto_encode.encode_spans([span]) == sdk_body([span])


@pytest.mark.parametrize("attrs", [{"huge": 2**70}, {"": "empty key"}, {"obj": object(), "fine": "kept"}])
def test_what_the_fast_path_cannot_write_goes_to_the_sdk_encoder(attrs: dict[Any, Any], caplog: Any) -> None:
    span = raw_span(attrs)
    with pytest.raises(otlp_json_encode.Unsupported):
        otlp_proto_encode.encode_spans([span])
    with caplog.at_level(logging.ERROR):
        assert otlp_proto_encode.spans_body([span]) == sdk_body([span])


def test_a_span_without_context_is_refused_as_by_the_sdk_encoder() -> None:
    span = ReadableSpan(name="", context=None, parent=None, resource=Resource({}), status=None)
    with pytest.raises(AttributeError):
        sdk_body([span])
    with pytest.raises(AttributeError):
        otlp_proto_encode.spans_body([span])
    assert otlp_proto_encode.spans_body([]) == sdk_body([]) == b""


def test_a_span_without_times_or_status_is_the_sdk_encoders() -> None:
    span = ReadableSpan(name="", context=SpanContext(1, 2, False), resource=Resource({}), status=None)
    assert otlp_proto_encode.encode_spans([span]) == sdk_body([span])


@settings(max_examples=200, deadline=None)
@given(attrs=st.dictionaries(st.text(max_size=6), _values, max_size=8), remote=st.booleans())
def test_any_attributes_a_tracer_keeps_are_the_sdk_encoders_bytes(
    attrs: dict[str, Any], remote: bool
) -> None:
    spans = traced(attrs, remote)
    assert otlp_proto_encode.spans_body(spans) == sdk_body(spans)


def test_the_agents_otlp_http_exporter_sends_these_bytes(receiver: Received) -> None:
    """``otlp`` over HTTP/protobuf (the default protocol): the request body is the SDK's encoding."""
    captured = InMemorySpanExporter()
    agent = amqadf_agent.start(
        exporters=["otlp"], otlp_endpoint=receiver.url, span_exporters=[captured], self_metrics=False
    )
    assert agent.running, agent.error
    try:
        tracer = agent.tracer("t")
        for i in range(5):
            with tracer.start_as_current_span(f"work-{i}", attributes={"n": i, "route": "/x"}):
                pass
    finally:
        assert agent.shutdown()
    bodies = [body for path, headers, body in receiver.got if path == "/v1/traces"]
    assert bodies and all(
        headers["content-type"] == "application/x-protobuf" for _, headers, _ in receiver.got
    )
    spans = captured.get_finished_spans()
    assert b"".join(bodies) == sdk_body(spans)


def test_a_body_over_the_request_size_limit_is_dropped_as_by_the_sdk(receiver: Received) -> None:
    exporter = ProtoSpanExporter(endpoint=f"{receiver.url}/v1/traces", max_request_size=64)
    spans = make_spans(3, count=5)
    assert exporter.export(spans).name == "FAILURE"
    assert ProtoSpanExporter(endpoint=f"{receiver.url}/v1/traces").export(spans).name == "SUCCESS"
    assert [body for _, _, body in receiver.got] == [sdk_body(spans)]
