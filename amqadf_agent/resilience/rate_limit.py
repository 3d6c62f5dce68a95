"""A GCRA rate limiter: ``rate`` requests per second with bursts of up to ``burst``, per key.

    limiter = RateLimiter(10, burst=20, name="api")       # 10/s, 20 at once after a quiet spell

    if limiter.try_acquire("user-42"): ...                # never waits
    limiter.acquire("user-42", timeout=1.0)               # sleeps until permitted (or raises)
    await limiter.acquire_async("user-42")

    @limiter.limit(key=lambda user, *a, **k: user)        # rejects with RateLimitedError
    def handle(user: str) -> None: ...

GCRA (the Generic Cell Rate Algorithm; the same decisions as a token bucket of size ``burst``
refilled at ``rate``, with one number per key instead of two): with emission interval
``T = 1 / rate`` and capacity ``τ = burst · T``, each key keeps a theoretical arrival time ``TAT``.
A request of ``cost`` units at time ``now`` computes ``new = max(TAT, now) + cost · T``; it is
permitted when ``new - τ <= now`` (and then ``TAT = new``), else rejected with
``retry_after = new - τ - now`` seconds, the exact time until it would be permitted. Hence over any
interval of length ``L`` at most ``burst + rate · L`` units are permitted.

State: in memory by default (a per-key dict; keys whose TAT has passed are pruned as the dict
grows), or in Redis with ``store=RedisStore(url)`` so N processes share one limit; see
:mod:`amqadf_agent.resilience.stores` for the Lua script, the clock it uses and the fail-open
fallback to this local state when Redis is unreachable.

Cost (docs/design.md, principle 1): an in-memory ``try_acquire`` is one clock read, a lock, a dict read and
write and float arithmetic (well under 1 µs, see ``tests/bench/bench_rate_limit.py``). Permitted and
rejected counts are plain ints read at collection time once ``instrument()`` is called; a rejection
also adds the span event ``amqadf.rate_limiter.rejected`` to the current recording span.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, RateLimitedError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.resilience import testing
from amqadf_agent.resilience._events import add_event
from amqadf_agent.resilience._metrics import register
from amqadf_agent.resilience.stores import MemoryStore, RateLimitStore

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["ATTR_RETRY_AFTER", "RateLimitedError", "RateLimiter"]

_log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of the rejection span event: seconds until the request would be permitted.
ATTR_RETRY_AFTER = semconv.ATTR_RATE_LIMITER_RETRY_AFTER

_PRUNE_MIN = 4096  # the local dict is swept of expired keys when it reaches this size (then 2x)


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


class RateLimiter:
    """Thread- and asyncio-safe GCRA rate limiter; see the module docstring."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        name: str = "rate_limiter",
        store: RateLimitStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not _number(rate) or not rate > 0:
            raise ConfigError("rate", f"must be a number > 0 (requests per second), got {rate!r}")
        if burst is None:
            burst = max(1.0, float(rate))
        if not _number(burst) or not burst >= 1:
            raise ConfigError("burst", f"must be a number >= 1, got {burst!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        if store is not None and not callable(getattr(store, "gcra", None)):
            raise ConfigError("store", f"must be a MemoryStore or RedisStore, got {store!r}")
        for parameter, fn in (("clock", clock), ("sleep", sleep), ("async_sleep", async_sleep)):
            if not callable(fn):
                raise ConfigError(parameter, f"must be callable, got {fn!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._interval = 1.0 / self._rate
        self._capacity = self._burst * self._interval
        self._name = name
        # A MemoryStore is the local state itself: the fast path sees no store at all.
        self._store: RateLimitStore | None = None if isinstance(store, MemoryStore) else store
        self._store_given = store
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._prune_at = _PRUNE_MIN
        self._permitted = 0
        self._rejected = 0

    # --- introspection ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    @property
    def store(self) -> RateLimitStore | None:
        return self._store_given

    def counts(self) -> dict[str, int]:
        """Requests so far by outcome: ``permitted`` and ``rejected``."""
        return {"permitted": self._permitted, "rejected": self._rejected}

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report ``amqadf.rate_limiter.requests`` (and the store's fallbacks); idempotent, never raises."""
        register(_SHARED, self, meter_provider, _log, f"rate limiter {self._name!r}", store=self._store)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate}, burst={self._burst}, name={self._name!r})"

    # --- acquiring -------------------------------------------------------------------------------
    def try_acquire(self, key: str = "default", cost: float = 1) -> bool:
        """Take ``cost`` units for ``key`` if permitted now; never waits."""
        if cost != 1:
            self._check_cost(cost)
        if self._store is None:
            # The local GCRA step of ``_decide``, inlined on purpose: a call to it would add a frame to
            # this sub-microsecond path; the two copies must stay alike.
            now = self._clock()
            with self._lock:
                tat = self._tat.get(key)
                if tat is None:
                    if len(self._tat) >= self._prune_at:
                        self._prune_locked(now)
                    tat = now
                elif tat < now:
                    tat = now
                new = tat + cost * self._interval
                wait = new - self._capacity - now
                if wait <= 0:
                    self._tat[key] = new
                    self._permitted += 1
                    return True
        else:
            wait = self._decide(key, cost)
            if wait <= 0:
                with self._lock:
                    self._permitted += 1
                return True
        self._rejected_now(key, wait)
        return False

    def retry_after(self, key: str = "default", cost: float = 1) -> float:
        """Take ``cost`` units if permitted (returns 0.0); else the seconds to wait, taking nothing."""
        if cost != 1:
            self._check_cost(cost)
        wait = self._decide(key, cost)
        if wait <= 0:
            with self._lock:
                self._permitted += 1
            return 0.0
        self._rejected_now(key, wait)
        return wait

    def acquire(self, key: str = "default", timeout: float | None = None, cost: float = 1) -> None:
        """Wait (with the injected ``sleep``) until permitted; raise :class:`RateLimitedError` at once
        if the wait would end more than ``timeout`` seconds after the call (``None``: no limit)."""
        deadline = self._deadline(timeout, cost)
        while True:
            wait = self._decide(key, cost)
            if wait <= 0:
                with self._lock:
                    self._permitted += 1
                return
            self._check_deadline(deadline, key, wait)
            if testing.is_testing():  # the wait is skipped: the caller goes on as if it had waited
                self._skipped_wait()
                return
            self._sleep(wait)

    async def acquire_async(
        self, key: str = "default", timeout: float | None = None, cost: float = 1
    ) -> None:
        """:meth:`acquire` for asyncio: waits with the injected ``async_sleep``.

        With a :class:`RedisStore`, each attempt is one blocking round trip (bounded by its
        ``socket_timeout``) on the event loop's thread.
        """
        deadline = self._deadline(timeout, cost)
        while True:
            wait = self._decide(key, cost)
            if wait <= 0:
                with self._lock:
                    self._permitted += 1
                return
            self._check_deadline(deadline, key, wait)
            if testing.is_testing():
                self._skipped_wait()
                return
            await self._async_sleep(wait)

    def _skipped_wait(self) -> None:
        """Testing mode (``resilience.testing``): a call that would wait is permitted at once."""
        with self._lock:
            self._permitted += 1

    def limit(self, key: str | Callable[..., str] | None = None, cost: float = 1) -> Callable[[F], F]:
        """Decorator: each call takes ``cost`` units or raises :class:`RateLimitedError` (never waits).

        ``key``: a fixed key, a function of the call's arguments returning one, or ``None``
        (``"default"``). Works on sync and async functions; the signature is preserved.
        """
        if cost != 1:
            self._check_cost(cost)
        key_of: Callable[..., str]
        if key is None or isinstance(key, str):
            fixed = "default" if key is None else key

            def key_of(*args: Any, **kwargs: Any) -> str:
                return fixed

        elif callable(key):
            key_of = key
        else:
            raise ConfigError("key", f"must be a string, a callable or None, got {key!r}")

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    k = key_of(*args, **kwargs)
                    wait = self.retry_after(k, cost)
                    if wait > 0:
                        raise RateLimitedError(self._name, wait, k)
                    return await fn(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_of(*args, **kwargs)
                wait = self.retry_after(k, cost)
                if wait > 0:
                    raise RateLimitedError(self._name, wait, k)
                return fn(*args, **kwargs)

            return cast(F, wrapper)

        return decorate

    def reset(self, key: str | None = None) -> None:
        """Forget the local state of ``key`` (all keys when ``None``). Redis state is left alone."""
        with self._lock:
            if key is None:
                self._tat.clear()
            else:
                self._tat.pop(key, None)

    # --- internals -------------------------------------------------------------------------------
    def _check_cost(self, cost: float) -> None:
        if not _number(cost) or not cost > 0:
            raise ConfigError("cost", f"must be a number > 0, got {cost!r}")
        if cost > self._burst:
            raise ConfigError(
                "cost", f"must not exceed burst ({self._burst:g}): never permitted, got {cost!r}"
            )

    def _deadline(self, timeout: float | None, cost: float) -> float | None:
        if cost != 1:
            self._check_cost(cost)
        if timeout is None:
            return None
        if not _number(timeout) or timeout < 0:
            raise ConfigError("timeout", f"must be a number >= 0 or None, got {timeout!r}")
        return self._clock() + timeout

    def _check_deadline(self, deadline: float | None, key: str, wait: float) -> None:
        if deadline is not None and self._clock() + wait > deadline:
            self._rejected_now(key, wait)
            raise RateLimitedError(self._name, wait, key)

    def _decide(self, key: str, cost: float) -> float:
        """One GCRA step (shared store first, local state if it cannot answer); 0.0 if permitted,
        else the seconds until it would be. Counts nothing. ``try_acquire`` inlines the local step
        (its hot path): a change here is made there too."""
        store = self._store
        if store is not None:
            wait = store.gcra(self._name, key, cost, self._interval, self._capacity)
            if wait is not None:
                return wait
        now = self._clock()
        with self._lock:
            tat = self._tat.get(key)
            if tat is None:
                if len(self._tat) >= self._prune_at:
                    self._prune_locked(now)
                tat = now
            elif tat < now:
                tat = now
            new = tat + cost * self._interval
            wait = new - self._capacity - now
            if wait <= 0:
                self._tat[key] = new
                return 0.0
        return wait

    def _prune_locked(self, now: float) -> None:
        # An expired TAT means the same as no entry (a full burst): drop them, amortised O(1).
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._prune_at = max(_PRUNE_MIN, 2 * len(self._tat))

    def _rejected_now(self, key: str, wait: float) -> None:
        with self._lock:
            self._rejected += 1
        add_event(
            semconv.EVENT_RATE_LIMITED,
            {semconv.ATTR_RATE_LIMITER_NAME: self._name, ATTR_RETRY_AFTER: wait},
        )


def _request_points(limiter: RateLimiter) -> list[Point]:
    return [
        (n, {semconv.ATTR_RATE_LIMITER_NAME: limiter.name, semconv.ATTR_RATE_LIMITER_OUTCOME: outcome})
        for outcome, n in limiter.counts().items()
    ]


_SHARED: SharedInstruments[RateLimiter] = SharedInstruments(
    "rate limiter", [(semconv.RATE_LIMITER_REQUESTS, _request_points)]
)
