"""Return a fallback value (or a fallback function's result) when a call fails.

    @GracefulDegradation.with_fallback(fallback_value="default_result")
    def unreliable_function() -> str: ...

    @GracefulDegradation.with_fallback(fallback_function=lambda exc: cached(), exceptions=(IOError,))
    def fetch() -> bytes: ...

Only the listed ``exceptions`` (default ``Exception``) trigger the fallback; anything else is
raised. A fallback function receives the exception. Each use is counted (plain counters, read by
the ``amqadf.fallback.invocations`` observable instrument once ``GracefulDegradation.instrument()``
is called) and written as a span event on the current span; a call that succeeds pays nothing but
the ``try``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.resilience._events import add_event, error_type
from amqadf_agent.resilience._metrics import Members, register

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["GracefulDegradation"]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class _FallbackStats:
    """Fallbacks used by one decorated function, by error type."""

    __slots__ = ("__weakref__", "by_error", "lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_error: dict[str, int] = {}
        self.lock = threading.Lock()

    def used(self, exc: BaseException) -> None:
        kind = error_type(exc)
        with self.lock:
            self.by_error[kind] = self.by_error.get(kind, 0) + 1
        add_event(
            semconv.EVENT_FALLBACK, {semconv.ATTR_FALLBACK_NAME: self.name, semconv.ATTR_ERROR_TYPE: kind}
        )

    def points(self) -> list[Point]:
        with self.lock:
            items = list(self.by_error.items())
        return [(n, {semconv.ATTR_FALLBACK_NAME: self.name, semconv.ATTR_ERROR_TYPE: k}) for k, n in items]


_ALL: Members[_FallbackStats] = Members()


class GracefulDegradation:
    """Fallback decorators and their telemetry (all class-level: no instance is needed)."""

    @staticmethod
    def with_fallback(
        fallback_value: Any = _MISSING,
        *,
        fallback_function: Callable[[BaseException], Any] | None = None,
        exceptions: tuple[type[BaseException], ...] = (Exception,),
        name: str | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: on one of ``exceptions``, return ``fallback_value`` or ``fallback_function(exc)``.

        Args:
            fallback_value: Returned instead of raising (exclusive with ``fallback_function``).
            fallback_function: Called with the exception; its result is returned. For an async
                function it may return an awaitable, which is awaited.
            exceptions: The exception types that trigger the fallback (default ``Exception``).
            name: The ``amqadf.fallback.name`` attribute (default: the function's qualname).

        Raises:
            ConfigError: neither or both of ``fallback_value`` and ``fallback_function`` given,
                or ``exceptions`` not a tuple of exception types.
        """
        has_value = fallback_value is not _MISSING
        if has_value == (fallback_function is not None):
            raise ConfigError("fallback_value", "give exactly one of fallback_value and fallback_function")
        if fallback_function is not None and not callable(fallback_function):
            raise ConfigError("fallback_function", f"must be callable, got {fallback_function!r}")
        types = (exceptions,) if isinstance(exceptions, type) else exceptions
        if (
            not isinstance(types, tuple)
            or not types
            or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types)
        ):
            raise ConfigError(
                "exceptions", f"must be a non-empty tuple of exception types, got {exceptions!r}"
            )

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            stats = _FallbackStats(name or getattr(fn, "__qualname__", None) or "default")
            _ALL.add(stats)

            def fallback(exc: BaseException) -> Any:
                stats.used(exc)
                return fallback_function(exc) if fallback_function is not None else fallback_value

            if inspect.iscoroutinefunction(fn):
                afn = cast("Callable[..., Any]", fn)

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    try:
                        return await afn(*args, **kwargs)
                    except types as exc:
                        value = fallback(exc)
                    return await value if inspect.isawaitable(value) else value

                wrapper = cast("Callable[P, R]", async_wrapper)
            else:

                @functools.wraps(fn)
                def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                    try:
                        return fn(*args, **kwargs)
                    except types as exc:
                        return cast(R, fallback(exc))

                wrapper = sync_wrapper
            # Keep the stats alive as long as the decorated function.
            wrapper.__amqadf_fallback__ = stats  # type: ignore[attr-defined]
            return wrapper

        return decorate

    @classmethod
    def instrument(cls, meter_provider: MeterProvider | None = None) -> None:
        """Report every fallback (decorated now or later) through ``amqadf.fallback.invocations``.

        Default: the global provider. Idempotent. A failure is logged, never raised.
        """
        register(_SHARED, _ALL, meter_provider, _log, "fallbacks")


def _invocations(all_fallbacks: Members[_FallbackStats]) -> list[Point]:
    return [point for stats in all_fallbacks.members() for point in stats.points()]


_SHARED: SharedInstruments[Members[_FallbackStats]] = SharedInstruments(
    "fallback", [(semconv.FALLBACKS, _invocations)]
)
