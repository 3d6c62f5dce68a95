"""The agent's OTLP/HTTP exporters: the SDK's, with bodies from the direct encoders and a session
whose ``close()`` also ends requests in flight.

Bodies. The SDK's span exporter builds a protobuf message per span, attribute and value, then
serialises them (about 41 µs a span, tests/bench/bench_export_encoding.py). ``ProtoSpanExporter``
sends the same bytes written by ``otlp_proto_encode`` straight from the spans; it keeps the SDK
exporter's request-size limit. With ``OTEL_EXPORTER_OTLP_PROTOCOL=http/json`` the ``Json*``
exporters send OTLP JSON (``Content-Type: application/json``; hex ids, enums as integers: what the
file exporter writes, by ``otlp_json_encode``), which the Collector's ``otlp`` receiver reads.
These subclasses keep everything of the SDK's exporters (endpoint, headers, TLS, compression,
retries, the session) and change the body only; they skip the SDK's own exporter metrics, which
the agent's guard and self-metrics stand for. Protobuf stays the default, as the specification says.

Sessions. An exporter's ``shutdown()`` closes its session, and ``Session.close()`` closes only the
idle pooled connections: a request waiting on a collector that never answers would go on to its
timeout (10 s by default), past the agent's shutdown deadline. ``interruptible_session`` knows its
open connections and shuts their sockets down when it is closed, and opens no new one after, so
the export in flight fails at once (and is counted as dropped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable, Sequence
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


def _post(exporter: Any, body: Callable[[], bytes], result: Any) -> Any:
    """``result.SUCCESS`` when ``exporter`` (an SDK OTLP/HTTP exporter) is not shut down and its client
    sent ``body()`` (encoded only then), ``result.FAILURE`` otherwise; ``result``: the signal's enum."""
    if exporter._shutdown:
        return result.FAILURE
    return result.SUCCESS if exporter._client.export(body()).success else result.FAILURE


class JsonSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, sending OTLP JSON."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return _post(self, lambda: spans_line(spans).rstrip(b"\n"), SpanExportResult)  # type: ignore[no-any-return]


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
        return _post(self, lambda: body, SpanExportResult)  # type: ignore[no-any-return]


class JsonMetricExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter, sending OTLP JSON (the SDK's JSON encoder: once an
    interval, not per request)."""

    def export(self, metrics_data: MetricsData, timeout_millis: float | None = 10000, **kwargs: Any) -> Any:
        from opentelemetry.exporter.otlp.json.common.metrics_encoder import encode_metrics

        return _post(self, lambda: orjson.dumps(encode_metrics(metrics_data).to_dict()), MetricExportResult)


def json_log_exporter(**kwargs: Any) -> Any:
    """The SDK's OTLP/HTTP log exporter, sending OTLP JSON (built on first use: the log SDK)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    from amqadf_agent.runtime.otlp_json_encode import logs_line

    class JsonLogExporter(OTLPLogExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            return _post(self, lambda: logs_line(batch).rstrip(b"\n"), LogRecordExportResult)  # type: ignore[no-any-return]

    return JsonLogExporter(**kwargs)


#: The SDK's variables that name a session factory of the user's (e.g. for credentials); with
#: one set, the exporter builds its session itself.
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER",
)


def session_kwargs(signal: str) -> dict[str, Any]:
    """``{"session": ...}`` for one OTLP/HTTP exporter, or ``{}`` where the user provides one."""
    if any(os.environ.get(name.format(signal=signal.upper())) for name in _CREDENTIAL_PROVIDERS):
        return {}
    return {"session": interruptible_session()}


def interruptible_session() -> Any:
    """A ``requests.Session`` whose ``close()`` shuts down the sockets of requests in flight."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    open_connections: weakref.WeakSet[Any] = weakref.WeakSet()
    closed = threading.Event()

    class Connection(HTTPConnection):
        def connect(self) -> None:
            if closed.is_set():
                raise ConnectionRefusedError("the exporter is shut down")
            super().connect()
            open_connections.add(self)

    class TLSConnection(Connection, HTTPSConnection):  # Connection.connect, then HTTPSConnection's
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    class Session(requests.Session):
        def close(self) -> None:
            closed.set()
            for connection in list(open_connections):
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            super().close()

    session = Session()
    adapter = Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
