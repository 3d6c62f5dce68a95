"""GracefulDegradation.with_fallback and @timeout: behaviour, metrics and span events."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.metrics import metric_points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.resilience import timeout as timeout_module
from amqadf_agent.resilience.fallback import GracefulDegradation
from amqadf_agent.resilience.timeout import CallTimeoutError, timeout


def recording_tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


# --- fallback -----------------------------------------------------------------------------------------
def test_fallback_value() -> None:
    @GracefulDegradation.with_fallback(fallback_value="default_result")
    def unreliable_function(x: int) -> str:
        raise RuntimeError("down")

    assert unreliable_function(1) == "default_result"
    assert unreliable_function.__name__ == "unreliable_function"
    assert list(inspect.signature(unreliable_function).parameters) == ["x"]


def test_fallback_value_not_used_on_success() -> None:
    @GracefulDegradation.with_fallback(fallback_value=0)
    def fine() -> int:
        return 5

    assert fine() == 5


def test_fallback_function_receives_exception() -> None:
    seen: list[BaseException] = []

    def recover(exc: BaseException) -> str:
        seen.append(exc)
        return f"recovered from {exc}"

    @GracefulDegradation.with_fallback(fallback_function=recover)
    def broken() -> str:
        raise ValueError("bad")

    assert broken() == "recovered from bad"
    assert isinstance(seen[0], ValueError)


def test_fallback_exception_filter() -> None:
    @GracefulDegradation.with_fallback(fallback_value=None, exceptions=(ConnectionError,))
    def fails(error: Exception) -> None:
        raise error

    assert fails(ConnectionError()) is None
    with pytest.raises(KeyError):
        fails(KeyError("not listed"))


def test_fallback_async() -> None:
    @GracefulDegradation.with_fallback(fallback_value=[])
    async def fetch() -> list[int]:
        raise OSError

    async def fallback_coro(exc: BaseException) -> str:
        return "async fallback"

    @GracefulDegradation.with_fallback(fallback_function=fallback_coro)
    async def fetch2() -> str:
        raise OSError

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch()) == []
    assert asyncio.run(fetch2()) == "async fallback"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "fallback_value"),
        ({"fallback_value": 1, "fallback_function": lambda e: 2}, "fallback_value"),
        ({"fallback_value": 1, "exceptions": ()}, "exceptions"),
        ({"fallback_value": 1, "exceptions": ("x",)}, "exceptions"),
    ],
)
def test_fallback_bad_parameters(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        GracefulDegradation.with_fallback(**kwargs)
    assert info.value.setting == parameter


def test_fallback_metrics_and_event() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracer, exporter = recording_tracer()
    try:
        GracefulDegradation.instrument(meter_provider=provider)

        @GracefulDegradation.with_fallback(fallback_value=0, name="prices")
        def price(error: Exception | None) -> int:
            if error is not None:
                raise error
            return 1

        with trace.use_span(tracer.start_span("op"), end_on_exit=True):
            price(TimeoutError())
        price(TimeoutError())
        price(ValueError())
        price(None)
        points = metric_points(reader, semconv.FALLBACKS.name)
        name = (semconv.ATTR_FALLBACK_NAME, "prices")
        assert points[frozenset({name, (semconv.ATTR_ERROR_TYPE, "TimeoutError")})] == 2
        assert points[frozenset({name, (semconv.ATTR_ERROR_TYPE, "ValueError")})] == 1
        (span,) = exporter.get_finished_spans()
        (event,) = span.events
        assert event.name == semconv.EVENT_FALLBACK
        assert dict(event.attributes or {}) == {
            semconv.ATTR_FALLBACK_NAME: "prices",
            semconv.ATTR_ERROR_TYPE: "TimeoutError",
        }
    finally:
        provider.shutdown()


# --- timeout ------------------------------------------------------------------------------------------
def test_timeout_sync_raises_and_does_not_wait_for_the_call() -> None:
    release = threading.Event()

    @timeout(0.05, name="slow")
    def slow() -> str:
        release.wait(5)
        return "late"

    started = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        slow()
    elapsed = time.monotonic() - started
    release.set()  # let the abandoned call finish
    assert isinstance(info.value, TimeoutError)
    assert info.value.seconds == 0.05
    assert info.value.name == "slow"
    assert 0.04 <= elapsed < 2.0


def test_timeout_sync_passes_result_and_errors() -> None:
    @timeout(2.0)
    def add(a: int, b: int = 1) -> int:
        return a + b

    @timeout(2.0)
    def broken() -> None:
        raise ValueError("inside")

    @timeout(2.0)
    def own_timeout() -> None:
        raise TimeoutError("the call's own")

    assert add(2, b=3) == 5
    assert list(inspect.signature(add).parameters) == ["a", "b"]
    assert add.__name__ == "add"
    with pytest.raises(ValueError, match="inside"):
        broken()
    with pytest.raises(TimeoutError, match="the call's own") as info:
        own_timeout()
    assert not isinstance(info.value, CallTimeoutError)


def test_timeout_sync_keeps_the_current_span() -> None:
    tracer, _ = recording_tracer()
    seen: list[trace.Span] = []

    @timeout(2.0)
    def which_span() -> None:
        seen.append(trace.get_current_span())

    span = tracer.start_span("op")
    with trace.use_span(span, end_on_exit=True):
        which_span()
    assert seen == [span]


def test_timeout_async_cancels() -> None:
    cancelled = False

    @timeout(0.05)
    async def slow() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled = True
            raise

    @timeout(1.0)
    async def fast(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @timeout(1.0)
    async def own_timeout() -> None:
        raise TimeoutError("mine")

    assert inspect.iscoroutinefunction(slow)
    with pytest.raises(CallTimeoutError):
        asyncio.run(slow())
    assert cancelled
    assert asyncio.run(fast(3)) == 3
    with pytest.raises(TimeoutError, match="mine") as info:
        asyncio.run(own_timeout())
    assert not isinstance(info.value, CallTimeoutError)


def test_timeout_metrics_and_event() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracer, exporter = recording_tracer()
    try:
        timeout_module.instrument(meter_provider=provider)

        @timeout(0.02, name="report")
        async def slow() -> None:
            await asyncio.sleep(5)

        with trace.use_span(tracer.start_span("op"), end_on_exit=True), pytest.raises(CallTimeoutError):
            asyncio.run(slow())
        with pytest.raises(CallTimeoutError):
            asyncio.run(slow())
        points = metric_points(reader, semconv.TIMEOUTS.name)
        assert points[frozenset({(semconv.ATTR_TIMEOUT_NAME, "report")})] == 2
        (span,) = exporter.get_finished_spans()
        assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
            (semconv.EVENT_TIMEOUT, {semconv.ATTR_TIMEOUT_NAME: "report"})
        ]
    finally:
        provider.shutdown()


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), True])
def test_timeout_bad_limit(seconds: Any) -> None:
    with pytest.raises(ConfigError) as info:
        timeout(seconds)
    assert info.value.setting == "seconds"
