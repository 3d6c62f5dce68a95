"""An LRU cache with optional TTL that counts its hits, misses, evictions and expirations.

Why: the analyzer's cache rules need each cache's hit rate, evictions and size. Counting them costs
a few integer increments under the lock the cache needs anyway; the metrics SDK reads the counters
at collection time through observable instruments (docs/design.md, principle 1: nothing of OpenTelemetry
on the hot path). OpenTelemetry is imported only when ``instrument()`` is called.

The same ``amqadf.cache.*`` instruments also report caches this module does not own:

* ``instrument_lru_cache(fn, name)``: a ``functools.lru_cache`` function, read from its
  ``cache_info()`` at collection time (nothing is added to its calls);
* ``track_cachetools(cache, name)``: a ``cachetools`` cache (LRUCache, TTLCache, ...), counting
  hits and misses of ``cache[key]``/``get``, evictions (``popitem``) and expirations (``expire``);
* ``record_cache(name)``: ``.hit()``, ``.miss()``, ``.evict()``, ``.expire()`` for a cache counted
  by hand;
* ``monitoring.redis_info.RedisCacheMonitor``: a Redis server's ``INFO``.

All of them share one instrument set per meter provider (``cache_instruments``), each series
named by ``amqadf.cache.name``; the wrappers live in ``cache_wrappers`` and are exported from here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar, overload

from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.cache_instruments import CacheReading, register
from amqadf_agent.monitoring.cache_wrappers import (
    CacheRecorder,
    instrument_lru_cache,
    record_cache,
    track_cachetools,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "CacheReading",
    "CacheRecorder",
    "CacheStats",
    "InstrumentedCache",
    "instrument_lru_cache",
    "record_cache",
    "track_cachetools",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


class _Missing:
    """Sentinel type, so that ``get_or_set`` can cache ``None`` and still narrow its types."""


_MISSING = _Missing()


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A consistent snapshot of one cache's counters (taken under its lock)."""

    name: str
    hits: int
    misses: int
    evictions: int
    expirations: int
    #: Entries held, including expired ones that no look-up or insertion has reclaimed yet.
    size: int
    max_size: int
    #: hits / (hits + misses); 0.0 before the first look-up.
    hit_rate: float


class InstrumentedCache(Generic[K, V]):
    """Thread-safe LRU cache with an optional TTL, counting what the analyzer's cache rules need.

    * A look-up of a missing key is a miss; of an expired key, a miss *and* an expiration (the
      entry is dropped). The analyzer tells TTL misses from capacity misses by these counts.
    * An insertion beyond ``max_size`` first reclaims an expired entry if there is one (counted as
      an expiration), else evicts the least recently used entry (counted as an eviction). So
      evictions mean capacity pressure on live data, the signal to grow the cache.
    * ``set``, ``delete`` and ``clear`` are not look-ups and change no counter; ``clear`` keeps the
      counters because they are exported as monotonic counters.

    The TTL is one value for all entries, so the order of insertion is the order of expiry and the
    expired-entry check on insertion is O(1).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_data",
        "_deadlines",
        "_evictions",
        "_expirations",
        "_hits",
        "_lock",
        "_max_size",
        "_misses",
        "_name",
        "_ttl",
    )

    def __init__(
        self,
        name: str,
        max_size: int,
        ttl: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
            raise ConfigError("max_size", f"must be a positive integer, got {max_size!r}")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0):
            raise ConfigError("ttl", f"must be None or a number of seconds > 0, got {ttl!r}")
        if not callable(clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {clock!r}")
        self._name = name
        self._max_size = max_size
        self._ttl = None if ttl is None else float(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (value, deadline); least recently used first. The deadline is 0.0 without a TTL.
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        # key -> deadline, oldest first; used only with a TTL.
        self._deadlines: OrderedDict[K, float] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0

    @property
    def name(self) -> str:
        """The cache's name: the ``amqadf.cache.name`` attribute of its series."""
        return self._name

    @property
    def max_size(self) -> int:
        """Capacity in entries."""
        return self._max_size

    @property
    def ttl(self) -> float | None:
        """Seconds an entry lives after it is set, or None for no expiry."""
        return self._ttl

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The value for ``key`` (now the most recently used), or ``default``; counts a hit or a miss."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return default
            if self._ttl is not None and self._clock() >= entry[1]:
                del self._data[key]
                del self._deadlines[key]
                self._expirations += 1
                self._misses += 1
                return default
            self._data.move_to_end(key)
            self._hits += 1
            return entry[0]

    def set(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used entry, making room if the cache is full."""
        with self._lock:
            data = self._data
            if self._ttl is None:
                now = deadline = 0.0
            else:
                now = self._clock()
                deadline = now + self._ttl
                deadlines = self._deadlines
                deadlines[key] = deadline
                deadlines.move_to_end(key)
            if key in data:
                data[key] = (value, deadline)
                data.move_to_end(key)
                return
            data[key] = (value, deadline)
            if len(data) > self._max_size:
                self._make_room(now)

    def _make_room(self, now: float) -> None:
        # Called with the lock held, one entry over capacity.
        if self._ttl is not None:
            oldest_key, oldest_deadline = next(iter(self._deadlines.items()))
            if now >= oldest_deadline:
                del self._deadlines[oldest_key]
                del self._data[oldest_key]
                self._expirations += 1
                return
        lru_key, _ = self._data.popitem(last=False)
        if self._ttl is not None:
            del self._deadlines[lru_key]
        self._evictions += 1

    def get_or_set(self, key: K, factory: Callable[[], V]) -> V:
        """The cached value, or ``factory()`` stored and returned on a miss (one look-up counted).

        ``factory`` runs outside the lock, so a slow factory never blocks other keys; two threads
        missing the same key at once may both call it, and the later ``set`` wins. An exception
        from ``factory`` propagates and nothing is stored.
        """
        cached = self.get(key, _MISSING)
        if not isinstance(cached, _Missing):
            return cached
        value = factory()
        self.set(key, value)
        return value

    def delete(self, key: K) -> bool:
        """Remove ``key``; True if it was present. Not a look-up, not an eviction."""
        with self._lock:
            if self._data.pop(key, None) is None:
                return False
            self._deadlines.pop(key, None)
            return True

    def clear(self) -> None:
        """Remove every entry; the counters keep their totals (they are exported as monotonic)."""
        with self._lock:
            self._data.clear()
            self._deadlines.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"InstrumentedCache(name={self._name!r}, size={len(self._data)}, max_size={self._max_size})"

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters; the observable instruments read this."""
        with self._lock:
            hits, misses = self._hits, self._misses
            evictions, expirations, size = self._evictions, self._expirations, len(self._data)
        lookups = hits + misses
        return CacheStats(
            name=self._name,
            hits=hits,
            misses=misses,
            evictions=evictions,
            expirations=expirations,
            size=size,
            max_size=self._max_size,
            hit_rate=hits / lookups if lookups else 0.0,
        )

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report this cache through the contract's ``amqadf.cache.*`` instruments on ``meter_provider``.

        Default: the global provider (a proxy until the SDK is set, which then forwards). All caches
        on one provider share one instrument set and the provider holds the cache weakly, so this is
        idempotent and never keeps a cache alive. A failure is logged, never raised.
        """
        register(self, self._name, meter_provider)

    def cache_reading(self, fresh: bool) -> CacheReading:
        """The counters as the shared instruments read them at collection time (a ``CacheSource``)."""
        s = self.stats()
        return CacheReading(s.name, s.hits, s.misses, s.evictions, s.expirations, s.size, s.max_size)
