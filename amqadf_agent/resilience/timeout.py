"""Give up waiting for a call after a time limit: ``@timeout(2.0)``.

* **async functions**: ``asyncio.wait_for`` semantics: the awaited coroutine is *cancelled* at the
  limit and ``CallTimeoutError`` is raised.
* **sync functions**: Python cannot interrupt a running function. The call runs in a new daemon
  worker thread (with a copy of the caller's context, so the current span carries over) and the
  caller gets ``CallTimeoutError`` after the limit, **but the call itself keeps running** to its
  end in that thread, its result or exception discarded. Use it to bound how long a caller waits,
  not to stop work; give the call its own timeout (socket, driver) to stop the work. Each call
  pays for starting a thread (tens of µs): keep it for calls that are slow anyway. The agent's
  ``shutdown()`` waits for such calls still running (``wait_for_overrunning``, with half its
  deadline), so that the spans they are still making are exported, not cut off at exit.

``CallTimeoutError`` subclasses the builtin ``TimeoutError``, so ``except TimeoutError`` catches it.
A ``TimeoutError`` raised by the call itself passes through unchanged and is not counted.
Each timeout is counted (the ``amqadf.timeout.timeouts`` observable instrument, once
``instrument()`` is called) and written as a span event. ``@timeout_from_config(config)`` takes the
limit from ``resilience.timeout`` of a ``ProductionConfig``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.resilience._events import add_event
from amqadf_agent.resilience._metrics import Members, register

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.config.schema import ResilienceConfig

__all__ = ["CallTimeoutError", "instrument", "timeout", "timeout_from_config", "wait_for_overrunning"]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class CallTimeoutError(TimeoutError):
    """A call ran past its time limit. Carries the limit (``seconds``) and the ``name``."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        super().__init__(f"{name} did not finish within {seconds:g} s")


class _TimeoutStats:
    __slots__ = ("__weakref__", "count", "lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.lock = threading.Lock()

    def timed_out(self, seconds: float) -> CallTimeoutError:
        with self.lock:
            self.count += 1
        add_event(semconv.EVENT_TIMEOUT, {semconv.ATTR_TIMEOUT_NAME: self.name})
        return CallTimeoutError(self.name, seconds)


_ALL: Members[_TimeoutStats] = Members()
#: Worker threads of sync calls still running past their limit. A worker removes itself when its call
#: ends; the caller adds it on a timeout and removes it again if it ended meanwhile (``done`` is set
#: before the worker removes itself), so no ended thread stays. Set operations are atomic in CPython.
_OVERRUNNING: set[threading.Thread] = set()
os.register_at_fork(after_in_child=_OVERRUNNING.clear)  # no thread of the parent runs in a child


def timeout(seconds: float, *, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: raise ``CallTimeoutError`` when the call takes longer than ``seconds``.

    Args:
        seconds: The limit, more than zero.
        name: The ``amqadf.timeout.name`` attribute (default: the function's qualname).

    Raises:
        ConfigError: ``seconds`` not a finite number above zero.
    """
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ConfigError("seconds", f"must be a finite number of seconds above zero, got {seconds!r}")
    limit = float(seconds)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        stats = _TimeoutStats(name or getattr(fn, "__qualname__", None) or "default")
        _ALL.add(stats)
        if inspect.iscoroutinefunction(fn):
            afn = cast("Callable[..., Any]", fn)

            async def guarded(*args: Any, **kwargs: Any) -> tuple[bool, Any]:
                # The call's own TimeoutError must not pass for ours: carry it out as a value.
                try:
                    return True, await afn(*args, **kwargs)
                except TimeoutError as exc:
                    return False, exc

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    ok, value = await asyncio.wait_for(guarded(*args, **kwargs), limit)
                except asyncio.TimeoutError:
                    error = stats.timed_out(limit)
                else:
                    if ok:
                        return value
                    raise value
                raise error from None

            wrapper = cast("Callable[P, R]", async_wrapper)
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                return cast(R, _run_in_thread(stats, limit, fn, args, kwargs))

            wrapper = sync_wrapper
        wrapper.__amqadf_timeout__ = stats  # type: ignore[attr-defined]
        return wrapper

    return decorate


def timeout_from_config(
    config: ProductionConfig | ResilienceConfig, *, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: ``timeout(resilience.timeout)`` from a ``ProductionConfig`` (or its resilience group).

        @timeout_from_config(config)
        def fetch() -> bytes: ...

    Raises:
        ConfigError: ``resilience.timeout`` is not a positive number of seconds.
    """
    from amqadf_agent.resilience._config import group_values

    return timeout(group_values(config, "resilience", ("timeout",))["timeout"], name=name)


def _run_in_thread(stats: _TimeoutStats, limit: float, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    done = threading.Event()
    box: list[Any] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, context.run(fn, *args, **kwargs)))
        except BaseException as exc:  # handed to the caller (or dropped after a timeout)
            box.append((False, exc))
        finally:
            done.set()
            _OVERRUNNING.discard(worker)

    worker = threading.Thread(target=target, name=f"amqadf-timeout-{stats.name}", daemon=True)
    worker.start()
    if not done.wait(limit):
        _OVERRUNNING.add(worker)
        if done.is_set():  # it ended between the wait and the add
            _OVERRUNNING.discard(worker)
        raise stats.timed_out(limit)
    ok, value = box[0]
    if ok:
        return value
    raise value


def wait_for_overrunning(timeout: float) -> int:
    """Wait at most ``timeout`` seconds for the sync calls still running past their limit to end;
    returns how many still run (they are daemon threads: they never hold up the exit)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    for worker in list(_OVERRUNNING):
        worker.join(max(deadline - time.monotonic(), 0.0))
    return sum(1 for worker in list(_OVERRUNNING) if worker.is_alive())


def instrument(meter_provider: MeterProvider | None = None) -> None:
    """Report every timeout-decorated function through ``amqadf.timeout.timeouts``.

    Default: the global provider. Idempotent. A failure is logged, never raised.
    """
    register(_SHARED, _ALL, meter_provider, _log, "timeouts")


def _timeouts(all_timeouts: Members[_TimeoutStats]) -> list[Point]:
    return [(s.count, {semconv.ATTR_TIMEOUT_NAME: s.name}) for s in all_timeouts.members()]


_SHARED: SharedInstruments[Members[_TimeoutStats]] = SharedInstruments(
    "timeout", [(semconv.TIMEOUTS, _timeouts)]
)
