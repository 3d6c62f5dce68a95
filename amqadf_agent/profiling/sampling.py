"""Sampled profiling: which calls a profiler profiles in production, within a budget of time.

A sampled call draws one random number; it is profiled when the draw falls under the sample rate,
the profiler is enabled, no profile is running around it (pyinstrument refuses a second profiler
in the same thread or async context) and the time budget allows it. The budget is a token bucket
of profiling time that fills at ``max_overhead`` of wall time (at most ``BUDGET_WINDOW`` seconds'
worth) and that every sampled profile's whole cost is charged to; a call may start a profile only
while the bucket is not in debt, counting the profiles still running at the cost of a typical one,
so a burst of concurrent calls cannot all start on one balance.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from random import Random
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from amqadf_agent.errors import ConfigError
from amqadf_agent.profiling.results import ProfileResult, attached_profiled

__all__ = [
    "BUDGET_WINDOW",
    "DEFAULT_MAX_OVERHEAD",
    "PROFILING",
    "Profiles",
    "Sampler",
    "check_overhead",
    "check_rate",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The ``max_overhead`` budget holds at most this many seconds of wall time's worth of profiling.
BUDGET_WINDOW = 60.0
#: The default ``max_overhead``: sampled profiles take at most ~2% of wall time.
DEFAULT_MAX_OVERHEAD = 0.02
#: What a sampled profile is taken to cost (seconds) until some have been measured.
_INITIAL_COST = 0.1
#: True inside a profiled call (this thread or async context): nested sampled calls run plainly.
PROFILING: contextvars.ContextVar[bool] = contextvars.ContextVar("amqadf_profiling", default=False)


class Profiles(Protocol):
    """What a sampled call needs of its profiler (``PerformanceProfiler``), read at each call."""

    sample_rate: float
    enabled: bool

    def profile_function(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ProfileResult: ...

    async def profile_async(
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> ProfileResult: ...


class _Budget:
    """A token bucket of profiling time (seconds): ``rate`` accrues per second of wall time, at most
    ``rate * BUDGET_WINDOW``; sampled profiles spend their cost once they end, so a long one borrows
    and the following calls repay it. Starts empty: no burst of profiling at start-up."""

    __slots__ = ("at", "balance", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.balance, self.at = rate, 0.0, now

    def refill(self, now: float) -> float:
        if now > self.at:
            self.balance = min(self.balance + self.rate * (now - self.at), self.rate * BUDGET_WINDOW)
            self.at = now
        return self.balance


class Sampler:
    """The sampling state of one profiler: its budgets (one per ``max_overhead`` in use), the
    sampled profiles running now and what one costs, the calls skipped by the budget, and the
    results of the last sampled calls.

    Args:
        clock: monotonic clock in seconds (the profiler's).
        random: the random source of the draws.
        keep: how many results of sampled calls ``recent`` keeps.
    """

    def __init__(self, clock: Callable[[], float], random: Random, keep: int) -> None:
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        #: Sampled calls that ran plainly because the budget was in debt.
        self.skipped = 0
        self._budgets: dict[float, _Budget] = {}  # by max_overhead: one per budget in use
        # Sampled profiles running now, and what one costs (a moving average), for reserve().
        self._in_flight = 0
        self._typical_cost = _INITIAL_COST
        #: The last results of sampled calls, oldest first.
        self.recent: deque[ProfileResult] = deque(maxlen=keep)

    def wrap(
        self, profiler: Profiles, func: Callable[P, R], rate: float | None, budget: float | None
    ) -> Callable[P, R]:
        """``func`` profiled by ``profiler`` on a ``rate`` fraction of its calls (default: the
        profiler's ``sample_rate``, read at each call) within ``budget`` (None: no budget)."""

        def take(draw: Callable[[], float] = self._random.random) -> bool | None:
            """None: run the call plainly; else profile it (True: a budget reservation to settle).

            The hot path of every sampled call is one draw and a comparison. A call made inside a
            profiled call is never profiled itself (pyinstrument would refuse a second profiler).
            """
            if (
                draw() >= (profiler.sample_rate if rate is None else rate)
                or not profiler.enabled
                or PROFILING.get()
            ):
                return None
            return self.reserve(budget)

        # The sync wrapper below written again with awaits: one wrapper for both would make every
        # sync call a coroutine.
        if inspect.iscoroutinefunction(func):
            async_func = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                reserved = take()
                if reserved is None:
                    return await async_func(*args, **kwargs)
                started, profiled = self._clock(), False
                try:
                    result = await profiler.profile_async(async_func, *args, **kwargs)
                    profiled = result.profiled
                except BaseException as exc:
                    profiled = attached_profiled(exc)
                    raise
                finally:
                    self.settle(started, profiled, reserved)
                self.recent.append(result)
                return result.return_value

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            reserved = take()
            if reserved is None:
                return func(*args, **kwargs)
            started, profiled = self._clock(), False
            try:
                result = profiler.profile_function(func, *args, **kwargs)
                profiled = result.profiled
            except BaseException as exc:
                profiled = attached_profiled(exc)
                raise
            finally:
                self.settle(started, profiled, reserved)
            self.recent.append(result)
            return cast(R, result.return_value)

        return wrapper

    def reserve(self, budget: float | None) -> bool | None:
        """Whether a drawn call may start a profile now: None (over budget), False (no budget), or
        True (a reservation ``settle`` closes). The budget counts the profiles still running at
        the cost of a typical one, so concurrent calls cannot all start on the same balance."""
        if budget is None:
            return False
        now = self._clock()
        with self._lock:
            bucket = self._budgets.get(budget)
            if bucket is None:
                bucket = self._budgets[budget] = _Budget(budget, now)
            if bucket.refill(now) - self._in_flight * self._typical_cost < 0.0:
                self.skipped += 1
                return None
            self._in_flight += 1
        return True

    def settle(self, started: float, profiled: bool, reserved: bool) -> None:
        """Spend a sampled profile's whole cost from the budgets (the call under the profiler and
        the building of its result, span and artifact); a profile that could not start costs
        nothing. Closes the reservation of ``reserve``."""
        end = self._clock()
        cost = end - started
        with self._lock:
            if reserved:
                self._in_flight -= 1
            if not profiled:
                return
            self._typical_cost += 0.2 * (cost - self._typical_cost)
            for bucket in self._budgets.values():
                bucket.refill(end)
                bucket.balance -= cost

    def after_fork(self) -> None:
        """A fresh lock, and no profile running: the child has only the thread that forked."""
        self._lock = threading.Lock()
        self._in_flight = 0


def check_rate(setting: str, rate: float) -> None:
    """Raise ``ConfigError`` naming ``setting`` unless ``rate`` is a fraction of calls."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(setting, f"must be a fraction of calls in [0, 1], got {rate!r}")


def check_overhead(value: float) -> None:
    """Raise ``ConfigError`` unless ``value`` is a ``max_overhead``: a fraction of wall time."""
    if not 0.0 < value <= 1.0:
        raise ConfigError("max_overhead", f"must be a fraction of wall time in (0, 1], got {value!r}")
