"""Shared fixtures: every test starts with no agent and unset OpenTelemetry globals.

For the tests that ask: a meter provider with its reader, a tracer provider with its span exporter,
a real Redis. The helpers they use are in tests/support.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from support.otlp_receiver import Received, otlp_receiver
from support.postgres_server import PostgresServer
from support.redis_server import REDIS_SERVER, RedisServer

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def _reset_otel_globals() -> None:
    # The API lets a global provider be set once per process; tests need a fresh start each time
    # (the OpenTelemetry SDK's own tests reset the same private state).
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()


@pytest.fixture(autouse=True)
def clean_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No agent, no OTel globals, and no AMQADF_/OTEL_ variables leaking in from the environment."""
    for name in list(os.environ):
        if name.startswith(("AMQADF_", "OTEL_")):
            monkeypatch.delenv(name)
    from amqadf_agent.runtime import agent as agent_mod

    if agent_mod._agent is not None:
        agent_mod._agent.shutdown(timeout=2.0)
    _reset_otel_globals()
    yield
    if agent_mod._agent is not None:
        agent_mod._agent.shutdown(timeout=2.0)
    agent_mod._agent = None
    _reset_otel_globals()


@pytest.fixture
def reader_provider() -> Iterator[tuple[InMemoryMetricReader, MeterProvider]]:
    """A meter provider of its own for the test, and the in-memory reader that collects from it."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield reader, provider
    provider.shutdown()


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of its own for the test, and the in-memory exporter its ended spans go to."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for one test, killed at the end whatever happens."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.fail(f"{REDIS_SERVER} is not installed: apt-get install -y redis-server (.ci/run does)")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster for the session (``initdb`` costs seconds); stopped and removed at
    the end. A test that needs a clean database asks ``postgres_server.create_database(name)``."""
    try:
        server = PostgresServer()
        server.start()
    except RuntimeError as error:
        pytest.fail(f"{error} (.ci/install-deps installs it)")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Received]:
    """An OTLP/HTTP receiver on loopback that keeps every request (``support.otlp_receiver``)."""
    with otlp_receiver() as received:
        yield received
