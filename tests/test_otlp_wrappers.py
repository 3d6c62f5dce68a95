"""Trace files saved from Jaeger's api_v3 and Grafana Tempo: OTLP in another envelope, base64 ids and
enums by name, read as the same records; what cannot be read is a ``file:line`` problem."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_CODE_ERROR, SpanRecord
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.errors import TelemetryInputError

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
ROOT_HEX = "eee19b7ec3c1b174"
CHILD_HEX = "eee19b7ec3c1b173"


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def tempo_span(trace: str, span: str, parent: str, name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "traceId": trace, "spanId": span, "parentSpanId": parent, "name": name, "kind": kind,
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000250000000",
        "attributes": [{"key": "http.route", "value": {"stringValue": "/orders/{id}"}}],
        "status": {}, **extra,
    }  # fmt: skip


RESOURCE = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}


def read_all(path: Path, **kw: Any) -> tuple[list[SpanRecord], ReadStats]:
    stats = ReadStats()
    records = list(read(path, stats=stats, **kw))
    assert all(type(r) is SpanRecord for r in records)
    return records, stats  # type: ignore[return-value]


def test_tempo_batches_with_base64_ids_and_instrumentation_library(tmp_path: Path) -> None:
    # What Tempo's /api/traces/{id} answers (protobuf JSON: base64 ids, enum names), pretty-printed
    answer = {
        "batches": [
            {
                "resource": RESOURCE,
                "instrumentationLibrarySpans": [
                    {
                        "instrumentationLibrary": {"name": "opentelemetry.instrumentation.flask"},
                        "spans": [
                            tempo_span(
                                b64(TRACE_HEX), b64(ROOT_HEX), "", "GET /orders/{id}", "SPAN_KIND_SERVER"
                            ),
                            tempo_span(
                                b64(TRACE_HEX),
                                b64(CHILD_HEX),
                                b64(ROOT_HEX),
                                "GET",
                                "SPAN_KIND_CLIENT",
                                status={"code": "STATUS_CODE_ERROR", "message": "timeout"},
                                links=[{"traceId": b64("1" * 32), "spanId": b64("2" * 16)}],
                            ),
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "tempo.json"
    path.write_text(json.dumps(answer, indent=2))
    (root, child), stats = read_all(path, strict=True)
    assert stats.problems == []
    assert (root.trace_id, root.span_id, root.parent_span_id) == (TRACE_HEX, ROOT_HEX, "")
    assert (child.parent_span_id, child.kind, child.status_code) == (
        ROOT_HEX,
        SPAN_KIND_CLIENT,
        STATUS_CODE_ERROR,
    )
    assert root.kind == SPAN_KIND_SERVER
    assert root.scope_name == "opentelemetry.instrumentation.flask"
    assert root.service == "shop"
    assert child.links[0][:2] == ("1" * 32, "2" * 16)


def test_tempo_v2_trace_wrapper(tmp_path: Path) -> None:
    answer = {
        "trace": {
            "resourceSpans": [
                {
                    "resource": RESOURCE,
                    "scopeSpans": [
                        {"spans": [tempo_span(b64(TRACE_HEX), b64(ROOT_HEX), "", "GET", "SPAN_KIND_SERVER")]}
                    ],
                }
            ]
        }
    }
    path = tmp_path / "tempo-v2.json"
    path.write_text(json.dumps(answer))
    (span,), _stats = read_all(path, strict=True)
    assert (span.trace_id, span.span_id) == (TRACE_HEX, ROOT_HEX)


def test_jaeger_api_v3_streamed_result_lines(tmp_path: Path) -> None:
    # Jaeger's /api/v3/traces/{id} streams one {"result": ...} chunk per line; hex ids as OTLP/JSON has them
    def chunk(span_id: str, parent: str) -> str:
        spans = [tempo_span(TRACE_HEX, span_id, parent, "op", "SPAN_KIND_INTERNAL")]
        return json.dumps(
            {"result": {"resourceSpans": [{"resource": RESOURCE, "scopeSpans": [{"spans": spans}]}]}}
        )

    path = tmp_path / "jaeger.jsonl"
    path.write_text(chunk(ROOT_HEX, "") + "\n" + chunk(CHILD_HEX, ROOT_HEX) + "\n" + '{"result": {}}\n')
    (first, second), stats = read_all(path, strict=True)
    assert (first.span_id, second.parent_span_id) == (ROOT_HEX, ROOT_HEX)
    assert stats.ignored_lines == 1  # the empty answer: nothing to read, no problem


def test_wrapped_problems_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    bad_id = tempo_span("not-an-id", b64(ROOT_HEX), "", "op", "SPAN_KIND_SERVER")
    lines = [
        {"error": {"message": "trace not found", "httpCode": 404}},
        {"batches": [{"resource": RESOURCE, "scopeSpans": [{"spans": [bad_id]}]}]},
        {"result": ["not", "an", "object"]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    records, stats = read_all(path)
    assert records == []
    assert stats.problems == [
        f"{path}:1: an error answer of the trace store, no telemetry: trace not found",
        f"{path}:2: traceId: expected 32 hex digits, got 'not-an-id'",
        f"{path}:3: result: expected an object holding resourceSpans",
    ]
    with pytest.raises(TelemetryInputError, match=r"bad\.jsonl:1: an error answer"):
        list(read(path, strict=True))
