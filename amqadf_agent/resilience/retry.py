"""Retry with capped exponential backoff and jitter, a retry budget, and near-free success.

    policy = RetryPolicy(max_retries=3, initial_backoff_time=0.1, max_backoff=5.0,
                         retryable_exceptions=(ConnectionError,), budget=RetryBudget())

    @retry_with_policy(policy)
    def fetch(url: str) -> bytes: ...

    policy.call(fetch_once, url)              # the same, without decorating
    await policy.call_async(fetch_once_async, url)

Backoff [AWS "Exponential Backoff and Jitter"], for retry ``n`` (0 for the first retry), base
``initial_backoff_time`` and cap ``max_backoff``:

* ``jitter="full"`` (default with exponential backoff): ``U(0, min(cap, base·2^n))``;
* ``jitter="decorrelated"``: ``min(cap, U(base, 3·prev))``, ``prev`` starting at ``base``;
* ``jitter="none"``: ``min(cap, base·2^n)``;
* ``exponential_backoff=False``: always ``base`` (no jitter unless one is asked for explicitly).

An error with a numeric ``retry_after`` attribute (seconds, e.g. from an HTTP ``Retry-After``
header) replaces the computed delay, **capped by** ``max_backoff``: the cap is the longest any one
wait may be, whoever asks for it, so a misbehaving server cannot park the caller for an hour.
``max_elapsed_time`` bounds the whole call, counted from the start of the first attempt: a retry
whose wait would end past it is not made. (Only a policy that sets it reads the clock per call.)

Retry budget [gRPC A6]: ``RetryBudget(max_tokens=10, token_ratio=0.1)`` is shared by every call of
a policy; each retryable failure takes a token, each success gives back ``token_ratio``, and a
retry is allowed only while more than half the tokens are left, so an outage does not become a
retry storm. Without a budget (the default) each call retries up to ``max_retries`` times.

When retrying stops, the **original** exception is raised, not a wrapper, with the number of
attempts in ``exc.__amqadf_attempts__`` and (Python 3.11+) a note. A call retried on its result
(``retry_on_result``) that never gets an acceptable one returns the last result.

Cost (docs/design.md, principle 1): a call that succeeds at once does the call, one ``is None`` test for
``retry_on_result``, one plain ``+= 1`` and one read of the budget's tokens. Everything else
(clock reads, locks, span events) is on the failure path. The counters are read at collection time
by observable instruments once ``policy.instrument()`` is called. The success counter is bumped
without a lock: under heavy thread contention an increment can rarely be lost; counters on the
failure path are exact.

Why one module of about 620 lines: the success path reads the budget's tokens and bumps the
policy's counters inline (see Cost), so the budget, the counters and the sync and async loops stay
beside each other; the instrument registration lives in ``resilience._metrics``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import random as _random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.resilience import testing
from amqadf_agent.resilience._events import add_event, error_type
from amqadf_agent.resilience._metrics import register

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.config.schema import ResilienceConfig

__all__ = [
    "STOP_BUDGET",
    "STOP_ELAPSED",
    "STOP_EXHAUSTED",
    "STOP_NOT_RETRYABLE",
    "Jitter",
    "RetryBudget",
    "RetryPolicy",
    "retry_with_policy",
]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

Jitter = Literal["full", "decorrelated", "none"]
_JITTERS = ("full", "decorrelated", "none")

STOP_EXHAUSTED = "exhausted"
STOP_BUDGET = "budget"
STOP_ELAPSED = "elapsed"
STOP_NOT_RETRYABLE = "not_retryable"
_STOPS = (STOP_EXHAUSTED, STOP_BUDGET, STOP_ELAPSED, STOP_NOT_RETRYABLE)

KIND_SUCCESS = "successful_without_retry"
KIND_SUCCESS_RETRY = "successful_with_retry"
KIND_FAILED = "failed_without_retry"
KIND_FAILED_RETRY = "failed_with_retry"

_MAX_EXPONENT = 64  # 2.0**n for larger n only overflows; the cap is reached long before


def _positive_number(parameter: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(parameter, f"must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(parameter, f"must be {bound}, got {value!r}")
    return float(value)


class RetryBudget:
    """A token bucket bounding retries across all calls of a policy [gRPC A6]. Thread-safe.

    Tokens start at ``max_tokens``; a retryable failure takes one, a success gives back
    ``token_ratio`` (never above ``max_tokens``); retrying is allowed while tokens > max_tokens / 2.
    """

    __slots__ = ("_lock", "_threshold", "_tokens", "max_tokens", "token_ratio")

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        self.max_tokens = _positive_number("max_tokens", max_tokens)
        self.token_ratio = _positive_number("token_ratio", token_ratio)
        if self.token_ratio > self.max_tokens:
            raise ConfigError("token_ratio", f"must not exceed max_tokens ({max_tokens}), got {token_ratio}")
        self._threshold = self.max_tokens / 2
        self._tokens = self.max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        """Tokens left now."""
        return self._tokens

    def retry_allowed(self) -> bool:
        """Whether a retry may be made now (more than half the tokens left)."""
        return self._tokens > self._threshold

    def on_failure(self) -> bool:
        """Take a token for a retryable failure; whether a retry is still allowed afterwards."""
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1)
            return self._tokens > self._threshold

    def on_success(self) -> None:
        """Give back ``token_ratio`` tokens. Free when the bucket is full (the usual case)."""
        if self._tokens >= self.max_tokens:
            return
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(max_tokens={self.max_tokens}, token_ratio={self.token_ratio}, "
            f"tokens={self._tokens})"
        )


class _Stats:
    """Plain counters of one name (a policy, or one function decorated with it)."""

    __slots__ = ("fail_first", "fail_retry", "give_ups", "lock", "name", "ok_first", "ok_retry", "retries")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok_first = 0  # bumped without the lock: the success path (module docstring)
        self.ok_retry = 0
        self.fail_first = 0
        self.fail_retry = 0
        self.retries: dict[str, int] = {}
        self.give_ups: dict[str, int] = {}
        self.lock = threading.Lock()


class RetryPolicy:
    """How to retry a call: how often, how long to wait, on what, and within which budget.

    Args:
        max_retries: Retries after the first attempt (0: never retry).
        exponential_backoff: Double the base delay each retry; ``False`` waits ``initial_backoff_time``.
        initial_backoff_time: The base delay in seconds.
        retryable_exceptions: Exception types that are retried; others are raised at once.
        max_backoff: The longest single wait (default ``max(60, initial_backoff_time)``).
        jitter: ``"full"``, ``"decorrelated"`` or ``"none"`` (default: full if exponential, else none).
        max_elapsed_time: Seconds from the start of the first attempt after which no retry is
            started (nor one whose wait would end later).
        retry_on_result: Retry when this returns true for a result.
        budget: A ``RetryBudget`` shared by all calls of this policy.
        name: The ``amqadf.retry.policy`` attribute (default: the decorated function's qualname,
            ``"default"`` for ``call``).
        sleep, async_sleep, clock, random: Injected time and randomness (docs/design.md, principle 5).
    """

    def __init__(
        self,
        max_retries: int = 3,
        exponential_backoff: bool = True,
        initial_backoff_time: float = 1.0,
        retryable_exceptions: tuple[type[BaseException], ...] = (Exception,),
        *,
        max_backoff: float | None = None,
        jitter: Jitter | None = None,
        max_elapsed_time: float | None = None,
        retry_on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | None = None,
        name: str | None = None,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: _random.Random | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError("max_retries", f"must be an integer, zero or more, got {max_retries!r}")
        base = _positive_number("initial_backoff_time", initial_backoff_time)
        cap = max(60.0, base) if max_backoff is None else _positive_number("max_backoff", max_backoff)
        if cap < base:
            raise ConfigError(
                "max_backoff", f"must be at least initial_backoff_time ({base}), got {max_backoff!r}"
            )
        if jitter is None:
            jitter = "full" if exponential_backoff else "none"
        if jitter not in _JITTERS:
            raise ConfigError("jitter", f"must be one of {', '.join(_JITTERS)}, got {jitter!r}")
        if max_elapsed_time is not None:
            max_elapsed_time = _positive_number("max_elapsed_time", max_elapsed_time, allow_zero=True)
        types = (retryable_exceptions,) if isinstance(retryable_exceptions, type) else retryable_exceptions
        if not isinstance(types, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise ConfigError(
                "retryable_exceptions", f"must be a tuple of exception types, got {retryable_exceptions!r}"
            )
        if retry_on_result is not None and not callable(retry_on_result):
            raise ConfigError("retry_on_result", f"must be callable, got {retry_on_result!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigError("budget", f"must be a RetryBudget, got {budget!r}")
        self.max_retries = max_retries
        self.exponential_backoff = bool(exponential_backoff)
        self.initial_backoff_time = base
        self.max_backoff = cap
        self.jitter: Jitter = jitter
        self.max_elapsed_time = max_elapsed_time
        self.retryable_exceptions: tuple[type[BaseException], ...] = types
        self.retry_on_result = retry_on_result
        self.budget = budget
        self.name = name
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._random = random if random is not None else _random.Random()
        self._stats_lock = threading.Lock()
        self._default = _Stats(name or "default")
        self._stats: list[_Stats] = [self._default]

    @classmethod
    def from_config(cls, config: ProductionConfig | ResilienceConfig, **overrides: Any) -> RetryPolicy:
        """A policy from the ``resilience`` group of a ``ProductionConfig`` (or the group itself).

        ``resilience.retry_attempts`` counts **attempts**, the first call included, and
        ``max_retries`` counts retries after it: ``max_retries = retry_attempts - 1`` (3 attempts:
        one call and at most 2 retries; 1: never retry). ``retry_base_delay`` is
        ``initial_backoff_time`` and ``retry_max_delay`` is ``max_backoff``, with exponential
        backoff and full jitter. Any keyword of the constructor overrides what the config says::

            policy = RetryPolicy.from_config(config, retryable_exceptions=(ConnectionError,))

        Raises:
            ConfigError: naming the field to fix (``resilience.retry_base_delay: ...``) or the
                overriding keyword.
        """
        from amqadf_agent.resilience._config import group_values

        values = group_values(config, "resilience", ("retry_attempts", "retry_base_delay", "retry_max_delay"))
        base, cap = values["retry_base_delay"], values["retry_max_delay"]
        if "initial_backoff_time" not in overrides and "max_backoff" not in overrides and base > cap:
            raise ConfigError(
                "resilience.retry_base_delay",
                f"must be at most resilience.retry_max_delay ({base} > {cap})",
            )
        kwargs: dict[str, Any] = {
            "max_retries": values["retry_attempts"] - 1,
            "initial_backoff_time": base,
            "max_backoff": cap,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # --- delays ---------------------------------------------------------------------------------
    def backoff(self, retry: int, previous: float | None = None) -> float:
        """The wait before retry ``retry`` (0-based); ``previous`` is the last wait (decorrelated)."""
        base, cap = self.initial_backoff_time, self.max_backoff
        exponent = min(retry, _MAX_EXPONENT) if self.exponential_backoff else 0
        ceiling = min(cap, base * 2.0**exponent)
        if self.jitter == "full":
            return self._random.uniform(0.0, ceiling)
        if self.jitter == "decorrelated":
            prev = base if previous is None else previous
            return min(cap, self._random.uniform(base, max(base, 3.0 * prev)))
        return ceiling

    def _delay(self, retry: int, previous: float | None, exc: BaseException | None) -> float:
        retry_after = getattr(exc, "retry_after", None) if exc is not None else None
        if (
            isinstance(retry_after, (int, float))
            and not isinstance(retry_after, bool)
            and math.isfinite(retry_after)
            and retry_after >= 0
        ):
            return min(float(retry_after), self.max_backoff)
        return self.backoff(retry, previous)

    # --- calling ----------------------------------------------------------------------------------
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying by this policy."""
        return self._run(self._default, fn, args, kwargs)

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)``, retrying by this policy with ``async_sleep``."""
        return cast(R, await self._run_async(self._default, fn, args, kwargs))

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (sync or async) with this policy; same as ``retry_with_policy(self)(fn)``."""
        return self.wrap(fn)

    def wrap(self, fn: Callable[P, R], *, name: str | None = None) -> Callable[P, R]:
        """``fn`` retried by this policy, its signature and name kept. Counted under ``name``."""
        stats = self._new_stats(name or self.name or getattr(fn, "__qualname__", None) or "default")
        if inspect.iscoroutinefunction(fn):
            run_async = self._run_async
            afn = cast("Callable[..., Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await run_async(stats, afn, args, kwargs)

            return cast("Callable[P, R]", async_wrapper)

        # The success path inlined (one call frame less than going through _run).
        predicate = self.retry_on_result
        budget = self.budget
        slow = self._slow
        clock = self._clock
        policy = self

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            start = clock() if policy.max_elapsed_time is not None else 0.0
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error: Exception | None = exc
                result = cast(R, None)
            else:
                if predicate is None or not predicate(result):
                    stats.ok_first += 1
                    if budget is not None and budget._tokens < budget.max_tokens:
                        budget.on_success()
                    return result
                error = None
            # Outside the except block: later failures must not chain onto this one.
            return cast(R, slow(stats, fn, args, kwargs, error, result, start))

        return wrapper

    def _new_stats(self, name: str) -> _Stats:
        with self._stats_lock:
            for stats in self._stats:
                if stats.name == name:
                    return stats
            stats = _Stats(name)
            self._stats.append(stats)
            return stats

    def _run(self, stats: _Stats, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        start = self._clock() if self.max_elapsed_time is not None else 0.0
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error: Exception | None = exc
            result = cast(R, None)
        else:
            predicate = self.retry_on_result
            if predicate is None or not predicate(result):
                stats.ok_first += 1
                budget = self.budget
                if budget is not None and budget._tokens < budget.max_tokens:
                    budget.on_success()
                return result
            error = None
        return cast(R, self._slow(stats, fn, args, kwargs, error, result, start))

    def _slow(
        self,
        stats: _Stats,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        error: Exception | None,
        result: Any,
        start: float,
    ) -> Any:
        """The retry loop, entered after a first attempt (begun at ``start``) that failed."""
        run = _Run(self, stats, start)
        while True:
            delay = run.after_failure(error, result)
            if delay is None:
                if error is not None:
                    raise error
                return result
            if not testing.is_testing():
                self._sleep(delay)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error = exc
                continue
            error = None
            if self.retry_on_result is None or not self.retry_on_result(result):
                run.succeeded()
                return result

    async def _run_async(
        self, stats: _Stats, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
    ) -> Any:
        # ``_run`` and ``_slow`` again, awaiting the call and the sleep: a sync helper cannot await,
        # and an async one would make every sync call pay for a coroutine.
        predicate = self.retry_on_result
        start = self._clock() if self.max_elapsed_time is not None else 0.0
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            error: Exception | None = exc
            result = None
        else:
            if predicate is None or not predicate(result):
                stats.ok_first += 1
                budget = self.budget
                if budget is not None and budget._tokens < budget.max_tokens:
                    budget.on_success()
                return result
            error = None
        run = _Run(self, stats, start)
        while True:
            delay = run.after_failure(error, result)
            if delay is None:
                if error is not None:
                    raise error
                return result
            if not testing.is_testing():
                await self._async_sleep(delay)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
                continue
            error = None
            if predicate is None or not predicate(result):
                run.succeeded()
                return result

    # --- telemetry --------------------------------------------------------------------------------
    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report this policy through the ``amqadf.retry.*`` instruments on ``meter_provider``.

        Default: the global provider. Idempotent; the provider holds the policy weakly. A failure
        is logged, never raised.
        """
        register(_SHARED, self, meter_provider, _log, f"retry policy {self.name!r}")

    def _all_stats(self) -> list[_Stats]:
        with self._stats_lock:
            return list(self._stats)

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(name={self.name!r}, max_retries={self.max_retries}, "
            f"initial_backoff_time={self.initial_backoff_time}, max_backoff={self.max_backoff}, "
            f"jitter={self.jitter!r}, budget={self.budget!r})"
        )


class _Run:
    """The state of one call after its first failure: attempts, elapsed time, the last delay."""

    __slots__ = ("attempt", "policy", "previous", "start", "stats")

    def __init__(self, policy: RetryPolicy, stats: _Stats, start: float) -> None:
        self.policy = policy
        self.stats = stats
        self.attempt = 1  # attempts made so far
        self.previous: float | None = None
        #: When the first attempt began (read only by policies with a max_elapsed_time).
        self.start = start

    def after_failure(self, error: Exception | None, result: object) -> float | None:
        """The wait before the next attempt, or ``None`` after recording why retrying stops."""
        policy = self.policy
        if error is not None and not isinstance(error, policy.retryable_exceptions):
            return self._give_up(STOP_NOT_RETRYABLE, error)
        budget = policy.budget
        allowed = budget.on_failure() if budget is not None else True
        if self.attempt > policy.max_retries:
            return self._give_up(STOP_EXHAUSTED, error)
        if not allowed:
            return self._give_up(STOP_BUDGET, error)
        delay = policy._delay(self.attempt - 1, self.previous, error)
        limit = policy.max_elapsed_time
        if limit is not None and policy._clock() - self.start + delay > limit:
            return self._give_up(STOP_ELAPSED, error)
        kind = error_type(error)
        stats = self.stats
        with stats.lock:
            stats.retries[kind] = stats.retries.get(kind, 0) + 1
        add_event(
            semconv.EVENT_RETRY,
            {
                semconv.ATTR_RETRY_POLICY: stats.name,
                semconv.ATTR_RETRY_ATTEMPT: self.attempt,
                semconv.ATTR_RETRY_DELAY: delay,
                semconv.ATTR_ERROR_TYPE: kind,
            },
        )
        self.attempt += 1
        self.previous = delay
        return delay

    def succeeded(self) -> None:
        with self.stats.lock:
            self.stats.ok_retry += 1
        if self.policy.budget is not None:
            self.policy.budget.on_success()

    def _give_up(self, reason: str, error: Exception | None) -> float | None:
        stats = self.stats
        with stats.lock:
            if self.attempt == 1:
                stats.fail_first += 1
            else:
                stats.fail_retry += 1
            stats.give_ups[reason] = stats.give_ups.get(reason, 0) + 1
        if error is not None:
            _record_attempts(error, self.attempt, reason)
        # A non-retryable error on the first attempt is an ordinary exception, not a retry decision.
        if reason != STOP_NOT_RETRYABLE or self.attempt > 1:
            add_event(
                semconv.EVENT_RETRY_GIVE_UP,
                {
                    semconv.ATTR_RETRY_POLICY: stats.name,
                    semconv.ATTR_RETRY_STOP: reason,
                    semconv.ATTR_RETRY_ATTEMPT: self.attempt,
                    semconv.ATTR_ERROR_TYPE: error_type(error),
                },
            )
        return None


def _record_attempts(error: BaseException, attempts: int, reason: str) -> None:
    """Mark the original exception with the attempts made (attribute always, a note on 3.11+)."""
    try:
        error.__amqadf_attempts__ = attempts  # type: ignore[attr-defined]
    except Exception:  # an exception class with __slots__ or a read-only attribute
        return
    if attempts > 1 and sys.version_info >= (3, 11):
        error.add_note(f"amqadf retry: gave up after {attempts} attempts ({reason})")


def retry_with_policy(
    policy: RetryPolicy, *, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: retry the decorated function (sync or async) by ``policy``.

    Counted under ``name`` (default: the policy's name, else the function's qualname).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        return policy.wrap(fn, name=name)

    return decorate


# --- collection-time readings (the SDK's collection thread, never the hot path) -------------------
def _calls(policy: RetryPolicy) -> list[Point]:
    points: list[Point] = []
    for s in policy._all_stats():
        for kind, value in (
            (KIND_SUCCESS, s.ok_first),
            (KIND_SUCCESS_RETRY, s.ok_retry),
            (KIND_FAILED, s.fail_first),
            (KIND_FAILED_RETRY, s.fail_retry),
        ):
            points.append((value, {semconv.ATTR_RETRY_POLICY: s.name, semconv.ATTR_RETRY_KIND: kind}))
    return points


def _counted(policy: RetryPolicy, field: str, attribute: str) -> list[Point]:
    """One point per key of the ``field`` counts (``retries`` or ``give_ups``) of every stats."""
    points: list[Point] = []
    for s in policy._all_stats():
        with s.lock:
            items = list(getattr(s, field).items())
        points.extend((n, {semconv.ATTR_RETRY_POLICY: s.name, attribute: key}) for key, n in items)
    return points


def _retries(policy: RetryPolicy) -> list[Point]:
    return _counted(policy, "retries", semconv.ATTR_ERROR_TYPE)


def _give_ups(policy: RetryPolicy) -> list[Point]:
    return _counted(policy, "give_ups", semconv.ATTR_RETRY_STOP)


_SHARED: SharedInstruments[RetryPolicy] = SharedInstruments(
    "retry",
    [
        (semconv.RETRY_CALLS, _calls),
        (semconv.RETRY_RETRIES, _retries),
        (semconv.RETRY_GIVE_UPS, _give_ups),
    ],
)
