"""OTLP headers, API key and timeout: from the configuration to a real collector endpoint on loopback.

The HTTP tests run a real ``http.server`` on 127.0.0.1 and read the headers it received; the gRPC test
runs a real ``grpc`` server and reads the call's metadata. The secret must never show in the settings,
the agent, the configuration's dump or the logs.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import amqadf_agent
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.runtime import exporters
from amqadf_agent.runtime.guard import ExportStats
from amqadf_agent.runtime.settings import AgentSettings, resolve

API_KEY = "k3y-planted-7f1c"  # must never be shown
TEAM_TOKEN = "t0ken-planted-91aa"


class Collector:
    """An OTLP/HTTP endpoint on loopback: records each request's path and headers, answers 200."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.received = threading.Event()
        self.release = threading.Event()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                collector.received.set()
                if delay:
                    collector.release.wait(delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def headers_of(self, path: str) -> dict[str, str]:
        for got, headers in self.requests:
            if got == path:
                return headers
        raise AssertionError(f"no request to {path}: {[p for p, _ in self.requests]}")

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


def built(settings: AgentSettings) -> exporters.Exporters:
    problems: list[Any] = []
    out = exporters.build(settings, ExportStats(), problems)
    assert problems == []
    return out


def inner_exporters(out: exporters.Exporters) -> list[Any]:
    return [guarded.inner for guarded in (*out.spans, *out.metrics, *out.logs)]  # type: ignore[attr-defined]


def one_span() -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("work"):
        pass
    return list(memory.get_finished_spans())


# --- HTTP: over the wire ---------------------------------------------------------------------------


def test_headers_and_the_bearer_api_key_from_an_env_secret_reach_the_collector(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = ProductionConfig.load(
        environ={"OTLP_API_KEY": API_KEY, "TEAM_TOKEN": TEAM_TOKEN},
        overrides={
            "service.name": "checkout",
            "exporter.exporters": ["otlp"],
            "exporter.endpoint": collector.endpoint,
            "exporter.api_key": {"secret": "otlp_api_key"},
            "exporter.headers": {"X-Team": {"secret": "team_token"}, "x-tenant": "acme"},
            "exporter.timeout": 4,
            "resource_monitor.enabled": False,
        },
    )
    assert config.validate() == (True, [])
    settings = config.to_agent_settings()
    assert settings.otlp_timeout == 4.0

    with amqadf_agent.start(config) as agent:
        assert agent.running, agent.error
        with agent.tracer().start_as_current_span("checkout"):
            pass
        assert agent.force_flush(10)
        shown = [repr(settings), str(settings), repr(agent), repr(agent.settings), repr(config)]

    headers = collector.headers_of("/v1/traces")
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["x-team"] == TEAM_TOKEN
    assert headers["x-tenant"] == "acme"
    assert collector.headers_of("/v1/metrics")["authorization"] == f"Bearer {API_KEY}"
    shown += [str(config.to_dict()), caplog.text]
    for text in shown:
        assert API_KEY not in text and TEAM_TOKEN not in text
    assert "'authorization': '[secure]'" in repr(settings)


def test_api_key_in_another_header_is_sent_as_it_is(collector: Collector) -> None:
    config = ProductionConfig.load(
        environ={"OTLP_API_KEY": API_KEY},
        overrides={
            "exporter.exporters": ["otlp"],
            "exporter.endpoint": collector.endpoint,
            "exporter.api_key": {"secret": "otlp_api_key"},
            "exporter.api_key_header": "X-API-Key",
        },
    )
    out = built(config.to_agent_settings())
    assert out.spans[0].export(one_span()) is SpanExportResult.SUCCESS
    headers = collector.headers_of("/v1/traces")
    assert headers["x-api-key"] == API_KEY
    assert "authorization" not in headers


def test_environment_headers_reach_the_collector_when_none_are_configured(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=yes,authorization=Basic%20abc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "7")
    settings, problems = resolve({"exporters": ["otlp"], "otlp_endpoint": collector.endpoint})
    assert problems == [] and settings.otlp_headers == {} and settings.otlp_timeout is None
    out = built(settings)
    assert [exporter._client._timeout for exporter in inner_exporters(out)] == [7.0, 7.0, 7.0]
    assert out.spans[0].export(one_span()) is SpanExportResult.SUCCESS
    headers = collector.headers_of("/v1/traces")
    assert (headers["x-from-env"], headers["authorization"]) == ("yes", "Basic abc")


def test_explicit_headers_win_over_the_environment_and_the_others_are_kept(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=yes,authorization=Basic%20abc")
    settings, _ = resolve(
        {
            "exporters": ["otlp"],
            "otlp_endpoint": collector.endpoint,
            "otlp_headers": {"Authorization": f"Bearer {API_KEY}"},
        }
    )
    out = built(settings)
    assert out.spans[0].export(one_span()) is SpanExportResult.SUCCESS
    headers = collector.headers_of("/v1/traces")
    assert (headers["x-from-env"], headers["authorization"]) == ("yes", f"Bearer {API_KEY}")


def test_the_timeout_bounds_an_export_to_a_collector_that_hangs() -> None:
    hanging = Collector(delay=30.0)
    try:
        settings, _ = resolve({"exporters": ["otlp"], "otlp_endpoint": hanging.endpoint, "otlp_timeout": 0.5})
        out = built(settings)
        assert [exporter._client._timeout for exporter in inner_exporters(out)] == [0.5, 0.5, 0.5]
        started = time.monotonic()
        result = out.spans[0].export(one_span())
        elapsed = time.monotonic() - started
        assert hanging.received.is_set()
        assert result is SpanExportResult.FAILURE
        assert elapsed < 10.0  # generous: 0.5 s plus scheduling, far below the 30 s the server holds
    finally:
        hanging.close()


def test_a_per_signal_timeout_variable_still_wins_for_its_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "9")
    settings, _ = resolve(
        {"exporters": ["otlp"], "otlp_endpoint": "http://127.0.0.1:4318", "otlp_timeout": 2}
    )
    timeouts = [exporter._client._timeout for exporter in inner_exporters(built(settings))]
    assert timeouts == [9.0, 2.0, 2.0]


def test_the_configured_timeout_and_the_variable_mean_the_same_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OTEL_EXPORTER_OTLP_TIMEOUT is read in seconds by the Python exporters; the config agrees.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    config = ProductionConfig.from_env()
    assert config.exporter.timeout == 3.0
    settings = config.to_agent_settings()
    assert settings.otlp_timeout == 3.0
    out = built(dataclasses.replace(settings, exporters=("otlp",), otlp_endpoint="http://127.0.0.1:4318"))
    assert {exporter._client._timeout for exporter in inner_exporters(out)} == {3.0}
    # Not set anywhere: nothing is passed, the exporters keep their own default (10 s).
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT")
    assert ProductionConfig.from_env().to_agent_settings().otlp_timeout is None


def _options_of(exporter: Any) -> tuple[str, Any, Any]:
    """(type, headers, timeout) of an exporter: gRPC's are its own, HTTP's its client's."""
    own = vars(exporter)
    fields = own if "_headers" in own or "_client" not in own else vars(own["_client"])
    headers = fields.get("_headers")
    return type(exporter).__name__, None if headers is None else dict(headers), fields.get("_timeout")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_log_exporters_deferred_until_a_logger_is_asked_for_get_the_same_options(protocol: str) -> None:
    settings, _ = resolve(
        {
            "exporters": ["otlp", "console"],
            "otlp_protocol": protocol,
            "otlp_endpoint": "http://127.0.0.1:4318",
            "otlp_headers": {"X-Team": "core"},
            "otlp_timeout": 2,
        }
    )
    eager = built(settings).logs
    deferred = exporters.build(settings, ExportStats(), [], logs=False)
    assert (deferred.logs, len(deferred.deferred_logs)) == ([], 2)
    made = deferred.make_logs()
    assert deferred.deferred_logs == []
    later = [_options_of(exporter.inner) for exporter in made]  # type: ignore[attr-defined]
    assert later == [_options_of(exporter.inner) for exporter in eager]  # type: ignore[attr-defined]
    assert later[0][0] == "OTLPLogExporter" and later[0][1]["x-team"] == "core" and later[0][2] == 2.0
    assert later[1][0] == "ConsoleLogRecordExporter"
    for exporter in (*eager, *made):
        exporter.shutdown()


# --- gRPC ------------------------------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})  # type: ignore[misc]
        return trace_service_pb2.ExportTraceServiceResponse()


def test_grpc_exporters_get_lowercase_metadata_and_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=yes,x-team=env")
    service = _TraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        settings, problems = resolve(
            {
                "exporters": ["otlp"],
                "otlp_protocol": "grpc",
                "otlp_endpoint": f"http://127.0.0.1:{port}",
                "otlp_headers": {"X-Team": "core", "Authorization": f"Bearer {API_KEY}"},
                "otlp_timeout": 4,
            }
        )
        assert problems == []
        out = built(settings)
        for exporter in inner_exporters(out):
            assert exporter._timeout == 4.0
            assert dict(exporter._headers) == {
                "x-from-env": "yes",
                "x-team": "core",
                "authorization": f"Bearer {API_KEY}",
            }
            assert all(key == key.lower() for key, _ in exporter._headers)
        assert out.spans[0].export(one_span()) is SpanExportResult.SUCCESS
        for exporter in (*out.spans, *out.metrics, *out.logs):
            exporter.shutdown()
    finally:
        server.stop(None)
    metadata = service.metadata[0]
    assert metadata["authorization"] == f"Bearer {API_KEY}"
    assert (metadata["x-team"], metadata["x-from-env"]) == ("core", "yes")
