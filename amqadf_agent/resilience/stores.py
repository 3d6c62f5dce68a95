"""Where a rate limiter keeps its state: in this process (:class:`MemoryStore`) or in Redis.

    limiter = RateLimiter(100, burst=20, name="api", store=RedisStore("redis://cache:6379/0"))

With :class:`RedisStore`, N processes using limiters of one ``name`` see **one** limit. The state of
one key is one number, the GCRA theoretical arrival time (TAT), kept under
``{namespace}:ratelimit:{name}:{key}``; each decision is **one atomic Lua script** (``EVALSHA``;
the script is loaded again by redis-py when the server answers ``NOSCRIPT``, e.g. after a restart).

Clock: the script reads the **Redis server's** ``TIME``, so processes on hosts whose clocks
disagree still share one timeline (the limiter's injected ``clock`` drives only its local state).
Redis 5+ replicates script effects, so reading ``TIME`` before a write is allowed. The TAT is
stored in microseconds with three decimals; a key expires (``PX``) once its TAT has passed, since
an absent key and a key in the past mean the same thing: a full burst is available.

Fail open (documented choice): when Redis does not answer (connection refused, reset, or no answer
within ``socket_timeout``), :meth:`RedisStore.gcra` returns ``None`` and the limiter decides with
its **local, in-memory** state instead, so an outage of Redis never stops the application; each
process then enforces the limit alone (N processes may together permit up to N times the limit).
The first failure of an outage is logged as a warning (later ones at debug level), every operation
served locally is counted in ``amqadf.state_store.fallbacks`` (``error.type`` of the failure), and
Redis is tried again at most every ``retry_interval`` seconds: while it is down, a call costs one
clock read and one comparison more than a local limiter. When Redis answers again the store logs
it (info) and the limiters go back to the shared state (Redis may have lost it in the restart).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["GCRA_SCRIPT", "MemoryStore", "RateLimitStore", "RedisStore"]

_log = logging.getLogger(__name__)

#: KEYS[1]: the key. ARGV: emission interval (µs per unit), burst capacity (µs: burst * interval),
#: cost (units). Returns {1, "0"} when permitted, else {0, retry-after in µs as a string}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - capacity
if allow_at > now then
  return {0, string.format('%.3f', allow_at - now)}
end
local ttl = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', ttl)
return {1, '0'}
"""


@runtime_checkable
class RateLimitStore(Protocol):
    """A shared store of GCRA state. ``gcra`` returns 0.0 (permitted), the retry-after in seconds
    (rejected), or ``None`` when the store cannot answer (the limiter then uses its local state)."""

    def gcra(self, name: str, key: str, cost: float, interval: float, capacity: float) -> float | None: ...


class MemoryStore:
    """State in this process only (the default). The limiter keeps it in its own per-key dict:
    passing ``MemoryStore()`` is the same as passing no store, and costs nothing per call."""

    kind = "memory"

    def gcra(self, name: str, key: str, cost: float, interval: float, capacity: float) -> float | None:
        return None  # "no shared answer": the limiter decides with its local state

    def __repr__(self) -> str:
        return "MemoryStore()"


class RedisStore:
    """GCRA state in Redis, shared by every process using the same URL, namespace and limiter name.

    ``client``: an existing ``redis.Redis`` to use instead of building one from ``url`` (its
    timeouts are then the caller's). ``socket_timeout`` bounds each round trip and connection
    attempt; ``retry_interval`` is the least time between attempts while Redis is down.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "amqadf",
        client: Any = None,
        socket_timeout: float = 0.2,
        retry_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MissingExtraError("RedisStore", "redis", "redis") from exc
        if not isinstance(namespace, str) or not namespace:
            raise ConfigError("namespace", f"must be a non-empty string, got {namespace!r}")
        for parameter, value in (("socket_timeout", socket_timeout), ("retry_interval", retry_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(parameter, f"must be a number > 0, got {value!r}")
        if not callable(clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {clock!r}")
        if client is None:
            if not isinstance(url, str) or not url:
                raise ConfigError("url", f"must be a redis:// URL, got {url!r}")
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries inside redis-py: a dead Redis must cost one failed attempt per
            # ``retry_interval``, not several with backoff on every call.
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.url = url
        self.namespace = namespace
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT)
        self._retry_interval = float(retry_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = -math.inf  # while clock() < this, Redis is not tried
        self._down = False
        self._fallbacks: dict[str, int] = {}
        self._last_error = ""

    # --- state -----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client in use."""
        return self._client

    @property
    def available(self) -> bool:
        """False while the store is serving from local state (Redis unreachable at the last try)."""
        return not self._down

    def fallbacks(self) -> dict[str, int]:
        """Operations served by local state, by the ``error.type`` that made Redis unusable."""
        with self._lock:
            return dict(self._fallbacks)

    def key(self, name: str, key: str) -> str:
        """The Redis key of one limiter key: ``{namespace}:ratelimit:{name}:{key}``."""
        return f"{self.namespace}:ratelimit:{name}:{key}"

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report ``amqadf.state_store.fallbacks`` (read at collection time; idempotent, never raises)."""
        try:
            _SHARED.register(self, meter_provider)
        except Exception:
            _log.warning("cannot report state store %r as metrics", self.url, exc_info=True)

    def close(self) -> None:
        """Close the client's connections (a store made from a ``client`` leaves it open)."""
        try:
            self._client.close()
        except Exception:
            _log.debug("closing redis client failed", exc_info=True)

    def __repr__(self) -> str:
        return f"RedisStore(url={self.url!r}, namespace={self.namespace!r}, available={not self._down})"

    # --- the operation ---------------------------------------------------------------------------
    def gcra(self, name: str, key: str, cost: float, interval: float, capacity: float) -> float | None:
        """One atomic GCRA step in Redis: 0.0 permitted, seconds to wait if rejected, ``None`` if down."""
        if self._down and self._clock() < self._down_until:
            self._count_fallback(self._last_error)
            return None
        try:
            allowed, wait_us = self._script(
                keys=[self.key(name, key)],
                args=[repr(interval * 1e6), repr(capacity * 1e6), repr(float(cost))],
            )
        except self._redis_errors as exc:
            self._went_down(exc)
            return None
        if self._down:
            self._came_back()
        return 0.0 if int(allowed) else float(wait_us) / 1e6

    def _count_fallback(self, error: str) -> None:
        with self._lock:
            self._fallbacks[error] = self._fallbacks.get(error, 0) + 1

    def _went_down(self, exc: BaseException) -> None:
        error = type(exc).__qualname__
        with self._lock:
            first = not self._down
            self._down = True
            self._last_error = error
            self._down_until = self._clock() + self._retry_interval
            self._fallbacks[error] = self._fallbacks.get(error, 0) + 1
        if first:
            _log.warning(
                "redis state store %s unreachable (%s: %s); rate limiters fall back to local state "
                "(fail open) and retry redis every %.1f s",
                self.url,
                error,
                exc,
                self._retry_interval,
            )
        else:
            _log.debug("redis state store %s still unreachable: %s", self.url, exc)

    def _came_back(self) -> None:
        with self._lock:
            # The next outage warns again: "once" is per outage, not per process lifetime.
            was_down, self._down = self._down, False
        if was_down:
            _log.info("redis state store %s answers again; back to shared state", self.url)


def _fallback_points(store: RedisStore) -> list[Point]:
    return [
        (n, {semconv.ATTR_STATE_STORE: store.kind, semconv.ATTR_ERROR_TYPE: error})
        for error, n in store.fallbacks().items()
    ]


_SHARED: SharedInstruments[RedisStore] = SharedInstruments(
    "state store", [(semconv.STATE_STORE_FALLBACKS, _fallback_points)]
)
