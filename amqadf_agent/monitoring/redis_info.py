"""A Redis server's ``INFO`` as the contract's ``amqadf.cache.*`` metrics.

Why: when the cache is Redis, the analyzer's cache rules need its hit rate, evictions, expirations
and memory headroom, which Redis already counts server-wide. Nothing is added to the application's
Redis calls: ``INFO stats memory keyspace`` is read once per collection, on the collection thread.

    monitor = RedisCacheMonitor("redis://cache:6379/0", name="sessions")
    monitor.instrument()            # or RedisCacheMonitor(..., meter_provider=provider)

What is reported (attribute ``amqadf.cache.name`` = ``name``), all exactly as ``INFO`` gives them:

==============================  ==========================================================
``amqadf.cache.requests``       ``keyspace_hits`` (hit), ``keyspace_misses`` (miss)
``amqadf.cache.evictions``      ``evicted_keys`` (maxmemory policy evictions)
``amqadf.cache.expirations``    ``expired_keys`` (lazy and active expiry)
``amqadf.cache.size``           the sum of ``keys`` over every ``dbN`` of the keyspace section
``amqadf.cache.memory.usage``   ``used_memory``
``amqadf.cache.memory.limit``   ``maxmemory``; left out when it is 0 (unlimited)
==============================  ==========================================================

The counters are the server's since its start (or ``CONFIG RESETSTAT``): they are server-wide,
not per client or per database, and go back to 0 when the server restarts (the exported counter
then shows a reset). No ``max_size`` (Redis limits memory, not entries).

Failures never reach the application: an unreachable server, a timeout or an error reply skips
that collection (no points), logged once at warning level, later ones at debug level until a
read succeeds again. A monitor built from a URL uses short socket timeouts (``timeout``, default
0.5 s) so a hung server cannot stall the collection; a client passed in keeps its own settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.cache_instruments import _SHARED, CacheReading

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["RedisCacheMonitor"]

_log = logging.getLogger(__name__)

#: A reading younger than this is reused by the instruments after the first of a collection.
_REUSE_SECONDS = 1.0


class RedisCacheMonitor:
    """Reports one Redis server's ``INFO`` through the ``amqadf.cache.*`` instruments (see module)."""

    def __init__(
        self,
        client_or_url: Any,
        name: str = "redis",
        meter_provider: MeterProvider | None = None,
        *,
        timeout: float = 0.5,
        instrument: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client_or_url``: a ``redis.Redis`` client (used as given) or a ``redis://`` URL.

        With ``instrument=True`` (default) it reports through ``meter_provider`` (default: the
        global one) at once; else call ``instrument()``.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError("timeout", f"must be a number of seconds > 0, got {timeout!r}")
        if isinstance(client_or_url, str):
            try:
                import redis
            except ImportError:
                raise ConfigError(
                    "client_or_url", "a URL needs redis-py: pip install 'amqadf-agent[redis]'"
                ) from None
            try:
                client = redis.Redis.from_url(
                    client_or_url, socket_timeout=timeout, socket_connect_timeout=timeout
                )
            except ValueError as exc:
                raise ConfigError("client_or_url", f"not a Redis URL: {exc}") from None
        elif callable(getattr(client_or_url, "info", None)):
            client = client_or_url
        else:
            raise ConfigError(
                "client_or_url", f"must be a redis.Redis client or a URL, got {client_or_url!r}"
            )
        self.name = name
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._reading: CacheReading | None = None
        self._read_at = float("-inf")
        self._failing = False
        self._warned = False
        if instrument:
            self.instrument(meter_provider)

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report through ``meter_provider`` (default: the global one); idempotent, never raises.

        The provider holds the monitor weakly: keep a reference to it for as long as it reports.
        """
        _SHARED.report(self, meter_provider, _log, f"Redis cache {self.name!r}")

    def read(self) -> CacheReading:
        """Read ``INFO`` now (raises what the client raises); what one collection reports."""
        info = self._client.info("stats", "memory", "keyspace")
        return parse_info(self.name, info)

    def cache_reading(self, fresh: bool) -> CacheReading | None:
        """For the shared instruments: a new ``INFO`` read when ``fresh`` (the first instrument of
        a collection) or when the last one is stale; None when the read failed."""
        with self._lock:
            now = self._clock()
            if not fresh and now - self._read_at < _REUSE_SECONDS:
                return self._reading
            self._read_at = now
            try:
                self._reading = self.read()
            except Exception as exc:  # never into the SDK, never into the application
                self._reading = None
                if not self._failing:
                    level = logging.DEBUG if self._warned else logging.WARNING
                    _log.log(
                        level,
                        "reading INFO of Redis cache %r failed (%s); collections skip it until it answers",
                        self.name,
                        exc,
                    )
                    self._warned = True
                self._failing = True
                return None
            if self._failing:
                _log.info("reading INFO of Redis cache %r works again", self.name)
            self._failing = False
            return self._reading

    def __repr__(self) -> str:
        return f"RedisCacheMonitor(name={self.name!r})"


def parse_info(name: str, info: Mapping[str, Any]) -> CacheReading:
    """A reading from ``INFO`` as redis-py parses it (``dbN`` entries are dicts with ``keys``)."""
    size = 0
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and isinstance(value, Mapping):
            size += int(value.get("keys", 0))
    maxmemory = int(info.get("maxmemory", 0))
    return CacheReading(
        name=name,
        hits=int(info["keyspace_hits"]),
        misses=int(info["keyspace_misses"]),
        evictions=int(info["evicted_keys"]),
        expirations=int(info["expired_keys"]),
        size=size,
        max_size=None,
        memory_usage=int(info["used_memory"]),
        memory_limit=maxmemory if maxmemory > 0 else None,
    )
