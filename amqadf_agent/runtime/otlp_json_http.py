"""OTLP/HTTP with JSON bodies (``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``), on the direct encoder.

The SDK's OTLP/HTTP exporters send protobuf only, and encoding a span that way costs about 41 µs
(the SDK's protobuf encoder and ``SerializeToString``) where ``otlp_json_encode`` writes the same
span as OTLP JSON in about 8 (tests/bench/bench_export_encoding.py). OTLP/HTTP takes the same
requests as JSON (``Content-Type: application/json``; hex ids, enums as integers: what the file
exporter writes), and the Collector's ``otlp`` receiver reads them. These subclasses keep everything
of the SDK's exporters (endpoint, headers, TLS, compression, retries, the session) and change the
body only; they skip the SDK's own exporter metrics and request-size limit, which the agent's
guard and self-metrics stand for. Protobuf stays the default, as the specification says.

With protobuf bodies (the default), ``ProtoSpanExporter`` sends the SDK's bytes written by
``otlp_proto_encode`` from the same direct encoder; it keeps the SDK exporter's request-size limit
and skips its exporter metrics, as the JSON ones do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from amqadf_agent.runtime.otlp_json_encode import spans_line
from amqadf_agent.runtime.otlp_proto_encode import spans_body

#: The SDK span exporter's own logger: its warnings are rate limited (``guard.NOISY_LOGGERS``).
_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

#: The header that tells the receiver the body is JSON (the SDK's is protobuf's; the caller's wins).
CONTENT_TYPE = {"content-type": "application/json"}


def _send(client: Any, body: bytes) -> bool:
    return bool(client.export(body).success)


class JsonSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, sending OTLP JSON."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        ok = _send(self._client, spans_line(spans).rstrip(b"\n"))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE


class ProtoSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, its protobuf body written by the direct encoder."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        body = spans_body(spans)
        limit = getattr(self, "_max_request_size", 0)
        if 0 < limit < len(body):  # the SDK exporter's own limit (the OTLP request-size limit)
            _logger.warning(
                "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                len(body),
                limit,
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if _send(self._client, body) else SpanExportResult.FAILURE


class JsonMetricExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter, sending OTLP JSON (the SDK's JSON encoder: once an
    interval, not per request)."""

    def export(self, metrics_data: MetricsData, timeout_millis: float | None = 10000, **kwargs: Any) -> Any:
        if self._shutdown:
            return MetricExportResult.FAILURE
        from opentelemetry.exporter.otlp.json.common.metrics_encoder import encode_metrics

        body = orjson.dumps(encode_metrics(metrics_data).to_dict())
        return MetricExportResult.SUCCESS if _send(self._client, body) else MetricExportResult.FAILURE


def json_log_exporter(**kwargs: Any) -> Any:
    """The SDK's OTLP/HTTP log exporter, sending OTLP JSON (built on first use: the log SDK)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    from amqadf_agent.runtime.otlp_json_encode import logs_line

    class JsonLogExporter(OTLPLogExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            if self._shutdown:
                return LogRecordExportResult.FAILURE
            ok = _send(self._client, logs_line(batch).rstrip(b"\n"))
            return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    return JsonLogExporter(**kwargs)
