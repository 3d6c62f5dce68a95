"""``http.server.request.duration`` for services that have no HTTP server instrumentation.

Why: the analyzer's autoscaling rules read request rate, error rate and latency from the standard
``http.server.request.duration`` histogram. Services behind a framework that has an OpenTelemetry
instrumentation get it from there; for the others (a custom socket server, a queue consumer that
serves requests) these helpers record the same data: seconds, the contract's explicit buckets,
``http.request.method``, ``http.route``, ``http.response.status_code`` and, on errors,
``error.type``.

    with record_request("/users/{id}", "GET") as request:
        ...
        request.status_code = 404

    @track_request(route="/orders", method="POST")      # sync or async functions
    async def create_order(...): ...

An exception raised inside sets the status to 500 and ``error.type`` to the exception class's
qualified name, and is re-raised. A status code of 500 or more without an exception gives
``error.type`` = the status code, as the HTTP semantic conventions say.

Cost: one ``Histogram.record`` per request (6-9 µs in SDK 1.45, docs/design.md, principle 1). That is what
the standard instrumentations pay too, and a request is not a hot-path call. Recording never
raises into the request: a failure is logged once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import SharedInstruments

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider

__all__ = ["RequestRecord", "record_request", "track_request"]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: The methods the HTTP semantic conventions know; any other is recorded as ``_OTHER``.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)


class _Owner:
    """What the shared registry holds for this module: the one histogram per provider."""


_OWNER = _Owner()
_SHARED: SharedInstruments[_Owner] = SharedInstruments(
    "request", [], recorded=[semconv.HTTP_SERVER_REQUEST_DURATION]
)
_warned = threading.Event()


def _warn_once(message: str, *args: object) -> None:
    level = logging.DEBUG if _warned.is_set() else logging.WARNING
    _warned.set()
    _log.log(level, message, *args, exc_info=True)


def _histogram(meter_provider: MeterProvider | None) -> Histogram | None:
    try:
        return _SHARED.register(_OWNER, meter_provider)[semconv.HTTP_SERVER_REQUEST_DURATION.name]
    except Exception:
        _warn_once("cannot record %s; requests are served anyway", semconv.HTTP_SERVER_REQUEST_DURATION.name)
        return None


def _method(method: str) -> str:
    if not isinstance(method, str):
        raise ConfigError("method", f"must be an HTTP method string, got {method!r}")
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else "_OTHER"


def _route(route: str) -> str:
    if not isinstance(route, str) or not route:
        raise ConfigError(
            "route", f"must be a non-empty route template such as '/users/{{id}}', got {route!r}"
        )
    return route


class RequestRecord:
    """One request being timed; a context manager. Set ``status_code`` before it ends.

    ``error_type`` may also be set by hand (e.g. ``"timeout"``); it is otherwise set from the
    exception (its class's ``__qualname__``) or a status of 500 and up.
    """

    __slots__ = (
        "_clock",
        "_histogram",
        "_started",
        "duration",
        "error_type",
        "method",
        "route",
        "status_code",
    )

    def __init__(
        self,
        route: str,
        method: str = "GET",
        *,
        histogram: Histogram | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.route = _route(route)
        self.method = _method(method)
        self.status_code = 200
        self.error_type: str | None = None
        #: Seconds the request took, once it has ended.
        self.duration: float | None = None
        self._histogram = histogram
        self._started = 0.0
        self._clock = clock

    def __enter__(self) -> RequestRecord:
        self._started = self._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exc)

    async def __aenter__(self) -> RequestRecord:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exc)

    def attributes(self) -> dict[str, str | int]:
        """The attributes this request is recorded with."""
        attributes: dict[str, str | int] = {
            semconv.ATTR_HTTP_REQUEST_METHOD: self.method,
            semconv.ATTR_HTTP_ROUTE: self.route,
            semconv.ATTR_HTTP_RESPONSE_STATUS_CODE: self.status_code,
        }
        if self.error_type is not None:
            attributes[semconv.ATTR_ERROR_TYPE] = self.error_type
        return attributes

    def finish(self, exc: BaseException | None = None) -> None:
        """End the request (the context manager calls this) and record it."""
        self.duration = self._clock() - self._started
        if exc is not None:
            self.status_code = 500
            if self.error_type is None:
                self.error_type = type(exc).__qualname__
        elif self.error_type is None and isinstance(self.status_code, int) and self.status_code >= 500:
            self.error_type = str(self.status_code)
        if self._histogram is None:
            return
        try:
            self._histogram.record(self.duration, self.attributes())
        except Exception:  # telemetry never fails a request
            _warn_once("recording %s failed", semconv.HTTP_SERVER_REQUEST_DURATION.name)


def record_request(
    route: str,
    method: str = "GET",
    *,
    meter_provider: MeterProvider | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> RequestRecord:
    """Time one request as a context manager (sync ``with`` or ``async with``); see the module.

    ``route`` is the route template (``/users/{id}``), never the raw path: a path per user id would
    make a series per user. ``method`` is normalized to upper case (unknown ones to ``_OTHER``).
    """
    return RequestRecord(route, method, histogram=_histogram(meter_provider), clock=clock)


def track_request(
    route: str,
    method: str = "GET",
    *,
    meter_provider: MeterProvider | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: every call of the function (sync or async) is one request of ``route``.

    The status is 200 unless the call raises (500, ``error.type`` = the exception's qualname).
    For other status codes use ``record_request`` and set ``status_code``.
    """
    route, method = _route(route), _method(method)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with record_request(route, method, meter_provider=meter_provider, clock=clock):
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with record_request(route, method, meter_provider=meter_provider, clock=clock):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
