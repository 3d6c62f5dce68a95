"""Where a rate limiter or a circuit breaker keeps its state: in this process (:class:`MemoryStore`)
or in Redis.

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

Circuit breakers (``CircuitBreaker(..., store=RedisStore(url))``): the state, its open-until time,
the consecutive-failure count, the trip count and the half-open probe slots of one breaker name
live in the hash ``{namespace}:breaker:{name}``, changed only by :data:`BREAKER_SCRIPT` (one atomic
script per operation, on the Redis server's clock). A missing hash is a closed breaker. The same
fail-open rule applies: :meth:`RedisStore.breaker` returns ``None`` and the breaker uses its local
state; see :mod:`amqadf_agent.resilience.circuit_breaker` for what is shared and when.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.redaction import redact_url
from amqadf_agent.resilience._metrics import register

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "BREAKER_SCRIPT",
    "GCRA_SCRIPT",
    "BreakerSnapshot",
    "BreakerStore",
    "MemoryStore",
    "RateLimitStore",
    "RedisStore",
]

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

#: The shared state of one circuit breaker: the hash ``KEYS[1]`` with the fields ``state``,
#: ``until`` (end of the open period, server µs), ``failures`` (consecutive, closed state),
#: ``epoch`` (bumped on every state change), ``trips`` (consecutive trips: grows the open
#: timeout), ``probes`` (half-open probe slots in use), ``ok`` (probe successes) and ``since``
#: (start of half-open, server µs). ARGV: op, failure threshold (0: none), timeout µs, timeout
#: multiplier, max timeout µs (0: none), half_open_max_calls, max half-open time µs (0: none), arg.
#: Ops: ``read``; ``acquire`` (admits in closed/disabled/metrics_only, claims a probe slot in
#: half_open while fewer than half_open_max_calls are in use); ``failure`` / ``success``
#: (closed-state outcomes: count, trip at the threshold / reset the count); ``trip`` (a local
#: rate-window trip); ``probe_ok`` / ``probe_fail`` / ``probe_release`` (arg: the epoch the probe
#: was admitted in; ignored if the breaker has changed state since); ``set`` (arg: a state set by
#: hand). Returns {state, µs left in the open state, failures, epoch, admitted (1/0)}.
BREAKER_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
local mult = tonumber(ARGV[4])
local max_timeout = tonumber(ARGV[5])
local half_max = tonumber(ARGV[6])
local max_half = tonumber(ARGV[7])
local arg = ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', key, 'state', 'until', 'failures', 'epoch', 'trips', 'probes', 'ok', 'since')
local state = h[1] or 'closed'
local open_until = tonumber(h[2] or '0')
local failures = tonumber(h[3] or '0')
local epoch = tonumber(h[4] or '0')
local trips = tonumber(h[5] or '0')
local probes = tonumber(h[6] or '0')
local ok = tonumber(h[7] or '0')
local since = tonumber(h[8] or '0')
local dirty = false
local admitted = 0
local function go(new)
  state = new
  epoch = epoch + 1
  failures = 0
  probes = 0
  ok = 0
  dirty = true
  if new == 'half_open' then since = now end
end
local function trip()
  trips = trips + 1
  local d = timeout * mult ^ (trips - 1)
  if max_timeout > 0 and d > max_timeout then d = max_timeout end
  open_until = now + d
  go('open')
end
if state == 'open' and now >= open_until then
  go('half_open')
elseif state == 'half_open' and max_half > 0 and now - since >= max_half then
  trip()
end
if op == 'acquire' then
  if state == 'half_open' then
    if probes < half_max then
      probes = probes + 1
      admitted = 1
      dirty = true
    end
  elseif state == 'closed' or state == 'disabled' or state == 'metrics_only' then
    admitted = 1
  end
elseif op == 'failure' then
  if state == 'closed' then
    failures = failures + 1
    dirty = true
    if threshold > 0 and failures >= threshold then trip() end
  end
elseif op == 'success' then
  if state == 'closed' and failures > 0 then
    failures = 0
    dirty = true
  end
elseif op == 'trip' then
  if state == 'closed' then trip() end
elseif op == 'probe_ok' or op == 'probe_fail' or op == 'probe_release' then
  if state == 'half_open' and tonumber(arg) == epoch then
    if probes > 0 then probes = probes - 1 end
    dirty = true
    if op == 'probe_fail' then
      trip()
    elseif op == 'probe_ok' then
      ok = ok + 1
      if ok >= half_max then
        trips = 0
        go('closed')
      end
    end
  end
elseif op == 'set' then
  if arg == 'closed' then trips = 0 end
  if state ~= arg then go(arg) else failures = 0; dirty = true end
end
if dirty then
  redis.call('HSET', key, 'state', state, 'until', string.format('%.0f', open_until),
    'failures', failures, 'epoch', epoch, 'trips', trips, 'probes', probes, 'ok', ok,
    'since', string.format('%.0f', since))
end
local remaining = 0
if state == 'open' and open_until > now then remaining = open_until - now end
return {state, string.format('%.0f', remaining), failures, epoch, admitted}
"""


class BreakerSnapshot(NamedTuple):
    """The shared state of one breaker after an operation (``remaining``: seconds left open)."""

    state: str
    remaining: float
    failures: int
    epoch: int
    admitted: bool


@runtime_checkable
class BreakerStore(Protocol):
    """A shared store of circuit-breaker state. ``breaker`` runs one atomic operation (see
    :data:`BREAKER_SCRIPT`) and returns the state after it, or ``None`` when the store cannot answer
    (the breaker then decides with its local state). ``config``: the breaker's parameters as the
    script's ARGV[2:8]."""

    def breaker(
        self, name: str, op: str, config: tuple[str, ...], arg: str = ""
    ) -> BreakerSnapshot | None: ...


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

    def breaker(self, name: str, op: str, config: tuple[str, ...], arg: str = "") -> BreakerSnapshot | None:
        return None  # the breaker decides with its local state

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
        #: The URL as shown in logs and ``repr``: a password in it is replaced by ``[secure]``.
        self.url = redact_url(url) if isinstance(url, str) else repr(client)
        self.namespace = namespace
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT)
        self._breaker_script = client.register_script(BREAKER_SCRIPT)
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

    def breaker_key(self, name: str) -> str:
        """The Redis hash of one circuit breaker: ``{namespace}:breaker:{name}``."""
        return f"{self.namespace}:breaker:{name}"

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report ``amqadf.state_store.fallbacks`` (read at collection time; idempotent, never raises)."""
        register(_SHARED, self, meter_provider, _log, f"state store {self.url!r}")

    def close(self) -> None:
        """Close the client's connections (a store made from a ``client`` leaves it open)."""
        try:
            self._client.close()
        except Exception:
            _log.debug("closing redis client failed", exc_info=True)

    def __repr__(self) -> str:
        return f"RedisStore(url={self.url!r}, namespace={self.namespace!r}, available={not self._down})"

    # --- the operations --------------------------------------------------------------------------
    def gcra(self, name: str, key: str, cost: float, interval: float, capacity: float) -> float | None:
        """One atomic GCRA step in Redis: 0.0 permitted, seconds to wait if rejected, ``None`` if down."""
        result = self._run(
            self._script,
            self.key(name, key),
            [repr(interval * 1e6), repr(capacity * 1e6), repr(float(cost))],
        )
        if result is None:
            return None
        allowed, wait_us = result
        return 0.0 if int(allowed) else float(wait_us) / 1e6

    def breaker(self, name: str, op: str, config: tuple[str, ...], arg: str = "") -> BreakerSnapshot | None:
        """One atomic breaker operation in Redis (:data:`BREAKER_SCRIPT`); ``None`` if down."""
        result = self._run(self._breaker_script, self.breaker_key(name), [op, *config, arg])
        if result is None:
            return None
        state, remaining_us, failures, epoch, admitted = result
        return BreakerSnapshot(
            state.decode() if isinstance(state, bytes) else str(state),
            float(remaining_us) / 1e6,
            int(failures),
            int(epoch),
            bool(int(admitted)),
        )

    def _run(self, script: Any, key: str, args: list[str]) -> Any:
        if self._down and self._clock() < self._down_until:
            self._count_fallback(self._last_error)
            return None
        try:
            result = script(keys=[key], args=args)
        except self._redis_errors as exc:
            self._went_down(exc)
            return None
        if self._down:
            self._came_back()
        return result

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
                "redis state store %s unreachable (%s: %s); rate limiters and circuit breakers fall back "
                "to local state (fail open) and retry redis every %.1f s",
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
