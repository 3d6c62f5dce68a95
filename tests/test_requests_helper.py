"""record_request / track_request: the standard http.server.request.duration data, by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support.clock import FakeClock
from support.metrics import collect, data_points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.requests import record_request, track_request


def points(reader: InMemoryMetricReader) -> tuple[Any, dict[frozenset[tuple[str, Any]], Any]]:
    """The request duration histogram and its points by attribute set."""
    metric = collect(reader)[semconv.HTTP_SERVER_REQUEST_DURATION.name]
    return metric, data_points(metric)


def attrs(route: str, method: str, status: int, error: str | None = None) -> frozenset[tuple[str, Any]]:
    a: dict[str, Any] = {
        semconv.ATTR_HTTP_REQUEST_METHOD: method,
        semconv.ATTR_HTTP_ROUTE: route,
        semconv.ATTR_HTTP_RESPONSE_STATUS_CODE: status,
    }
    if error is not None:
        a[semconv.ATTR_ERROR_TYPE] = error
    return frozenset(a.items())


class NotFoundError(Exception):
    pass


def test_context_manager_records_duration_status_and_errors(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    clock = FakeClock(0.0, step=0.02)
    with record_request("/users/{id}", "get", meter_provider=provider, clock=clock) as request:
        pass
    assert request.duration == pytest.approx(0.02)
    with record_request("/users/{id}", meter_provider=provider, clock=clock) as request:
        request.status_code = 404
    with (
        pytest.raises(NotFoundError),
        record_request("/users/{id}", "POST", meter_provider=provider, clock=clock),
    ):
        raise NotFoundError
    with record_request("/users/{id}", "BREW", meter_provider=provider, clock=clock) as request:
        request.status_code = 503

    metric, found = points(reader)
    assert metric.unit == "s" and metric.description == semconv.HTTP_SERVER_REQUEST_DURATION.description
    assert set(found) == {
        attrs("/users/{id}", "GET", 200),
        attrs("/users/{id}", "GET", 404),
        attrs("/users/{id}", "POST", 500, NotFoundError.__qualname__),
        attrs("/users/{id}", "_OTHER", 503, "503"),
    }
    ok = found[attrs("/users/{id}", "GET", 200)]
    assert ok.count == 1 and ok.sum == pytest.approx(0.02)
    assert list(ok.explicit_bounds) == list(semconv.SECONDS_BUCKETS)


def test_decorator_sync_and_async(reader_provider: tuple[InMemoryMetricReader, MeterProvider]) -> None:
    reader, provider = reader_provider
    clock = FakeClock(0.0, step=0.3)

    @track_request(route="/orders", method="POST", meter_provider=provider, clock=clock)
    def create(n: int) -> int:
        if n < 0:
            raise ValueError(n)
        return n + 1

    @track_request(route="/orders/{id}", meter_provider=provider, clock=clock)
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        if n < 0:
            raise KeyError(n)
        return n

    assert create(1) == 2 and create(2) == 3
    with pytest.raises(ValueError):
        create(-1)
    assert asyncio.run(fetch(5)) == 5
    with pytest.raises(KeyError):
        asyncio.run(fetch(-1))
    assert create.__name__ == "create" and asyncio.iscoroutinefunction(fetch)

    _, found = points(reader)
    assert found[attrs("/orders", "POST", 200)].count == 2
    assert found[attrs("/orders", "POST", 500, "ValueError")].count == 1
    assert found[attrs("/orders/{id}", "GET", 200)].count == 1
    failed = found[attrs("/orders/{id}", "GET", 500, "KeyError")]
    assert failed.count == 1 and failed.sum == pytest.approx(0.3)


def test_async_with_and_error_type_of_a_nested_class(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider

    class Inner(Exception):
        pass

    async def handler() -> None:
        async with record_request("/a", meter_provider=provider):
            raise Inner

    with pytest.raises(Inner):
        asyncio.run(handler())
    _, found = points(reader)
    (key,) = found
    assert dict(key)[semconv.ATTR_ERROR_TYPE] == Inner.__qualname__
    assert dict(key)[semconv.ATTR_HTTP_RESPONSE_STATUS_CODE] == 500


def test_a_failing_histogram_never_fails_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def record(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("exporter trouble")

    import amqadf_agent.monitoring.requests as requests_module

    monkeypatch.setattr(requests_module, "_histogram", lambda provider: Broken())
    with record_request("/x") as request:
        request.status_code = 201
    assert request.duration is not None


@pytest.mark.parametrize(("route", "method", "field"), [("", "GET", "route"), ("/x", 3, "method")])
def test_bad_arguments(route: Any, method: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        record_request(route, method)
    with pytest.raises(ConfigError, match=field):
        track_request(route, method)
