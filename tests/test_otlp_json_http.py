"""``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``: OTLP JSON bodies on the SDK's HTTP exporters.

A real ``http.server`` on loopback (``support.otlp_receiver``) records what arrives; the Collector
reading these requests (and the analysis of its files equal to the agent's own) is in
tests/test_collector_real.py.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.otlp_receiver import Received

import amqadf_agent
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_spans_metrics_and_logs_go_as_otlp_json(
    receiver: Received, tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    agent = amqadf_agent.start(
        exporters=["otlp"],
        otlp_endpoint=receiver.url,
        otlp_protocol="http/json",
        otlp_headers={"X-Team": "core"},
        service_name="json-shop",
        capture_logs=True,
        self_metrics=False,
    )
    assert agent.running, agent.error
    try:
        tracer = agent.tracer("t")
        for i in range(3):
            with tracer.start_as_current_span(f"work-{i}") as span:
                span.set_attribute("n", i)
        agent.meter("m").create_counter("jobs").add(2)
        logging.getLogger("json-shop").warning("a line of the app")
    finally:
        assert agent.shutdown()
    by_path: dict[str, list[tuple[dict[str, str], bytes]]] = {}
    for path, headers, body in receiver.got:
        by_path.setdefault(path, []).append((headers, body))
    assert {"/v1/traces", "/v1/metrics", "/v1/logs"} <= by_path.keys(), by_path.keys()
    lines = []
    decoded: dict[str, list[bytes]] = {}
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        for headers, body in by_path[path]:
            assert headers["content-type"] == "application/json", path
            assert headers["x-team"] == "core"  # the user's headers are kept
            if compression == "gzip":
                assert headers.get("content-encoding") == "gzip"
                body = gzip.decompress(body)
            orjson.loads(body)  # one JSON document, not protobuf
            lines.append(body)
            decoded.setdefault(path, []).append(body)
    # the bodies are the OTLP JSON the analyzer reads (hex ids), spans with their attributes
    (tmp_path / "got.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    spans = [r for r in read([tmp_path / "got.jsonl"], strict=True) if isinstance(r, SpanRecord)]
    assert sorted(s.name for s in spans) == ["work-0", "work-1", "work-2"]
    assert all(len(s.trace_id) == 32 and s.attributes["n"] in (0, 1, 2) for s in spans)
    assert all(s.resource["service.name"] == "json-shop" for s in spans)
    assert b"a line of the app" in b"".join(decoded["/v1/logs"])


def test_each_exporter_sends_while_open_and_fails_without_sending_once_shut_down(receiver: Received) -> None:
    from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from amqadf_agent.runtime import otlp_http

    provider = TracerProvider()
    spans = [provider.get_tracer("t").start_span("done")]
    spans[0].end()
    no_metrics = MetricsData([])
    cases: list[tuple[Any, str, Callable[[Any], Any], Any]] = [
        (otlp_http.JsonSpanExporter, "/v1/traces", lambda e: e.export(spans), SpanExportResult),
        (otlp_http.ProtoSpanExporter, "/v1/traces", lambda e: e.export(spans), SpanExportResult),
        (otlp_http.JsonMetricExporter, "/v1/metrics", lambda e: e.export(no_metrics), MetricExportResult),
    ]
    for make, path, export, result in cases:
        exporter = make(endpoint=receiver.url + path)
        before = len(receiver.got)
        # WHEN it exports while open, THEN the body reaches the receiver and the export succeeds
        assert export(exporter) == result.SUCCESS, make
        assert len(receiver.got) == before + 1 and receiver.got[-1][0] == path
        # AND once shut down it fails at once, sending nothing (and encoding nothing)
        exporter.shutdown()
        assert export(exporter) == result.FAILURE, make
        assert len(receiver.got) == before + 1
    logs = otlp_http.json_log_exporter(endpoint=receiver.url + "/v1/logs")
    logs.shutdown()
    assert logs.export([]).name == "FAILURE"
