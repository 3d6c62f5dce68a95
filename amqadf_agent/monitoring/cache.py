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

All of them share one instrument set per meter provider (``_SHARED``), each series named by
``amqadf.cache.name``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, ParamSpec, Protocol, TypeVar, overload

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments

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

_log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")
C = TypeVar("C")
R = TypeVar("R")
P = ParamSpec("P")


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
        try:
            _SHARED.register(self, meter_provider)
        except Exception:
            _log.warning("cannot report cache %r as metrics; it keeps working", self._name, exc_info=True)


# --- caches this module does not own ---------------------------------------------------------------
class CacheReading(NamedTuple):
    """What one reported cache gives one collection; None leaves that instrument's point out."""

    name: str
    hits: int
    misses: int
    evictions: int | None
    expirations: int | None
    size: int | None
    max_size: int | None
    memory_usage: int | None = None
    memory_limit: int | None = None


class CacheSource(Protocol):
    """Anything besides ``InstrumentedCache`` that reports through the ``amqadf.cache.*`` set.

    ``fresh`` is True for the first instrument of a collection (``amqadf.cache.requests``, the
    first registered): a source that reads something costly (Redis ``INFO``) reads it then and
    reuses it for the other instruments. None: nothing to report this collection.
    """

    def cache_reading(self, fresh: bool) -> CacheReading | None: ...


def _require_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty string, got {name!r}")
    return name


def _register(source: CacheSource, name: str, meter_provider: MeterProvider | None) -> None:
    try:
        _SHARED.register(source, meter_provider)
    except Exception:
        _log.warning("cannot report cache %r as metrics; it keeps working", name, exc_info=True)


class _LruCacheSource:
    """Reads a ``functools.lru_cache`` function's ``cache_info()``; holds the function weakly.

    Exact: hits, misses, size (``currsize``), max size (``maxsize``; absent when unbounded).
    ``cache_clear()`` resets ``cache_info()``; the totals stay monotonic by carrying the counts
    seen before the reset, which is detected when misses (or hits) go down between two readings
    (a clear followed by more calls than before within one collection interval goes unseen).
    Estimated: evictions = misses - currsize for a bounded cache (each miss inserts one entry and
    entries leave only by eviction), too high by one per call that raised (a miss that stores
    nothing) or per concurrent miss of the same key. Expirations: always 0 (no TTL).
    """

    __slots__ = ("__weakref__", "_base", "_fn", "_last", "_lock", "name")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.name = name
        self._fn = weakref.ref(fn)
        self._lock = threading.Lock()
        self._base = (0, 0, 0)  # hits, misses, evictions before the last cache_clear()
        self._last = (0, 0, 0)  # the same, as last read since that clear

    def cache_reading(self, fresh: bool) -> CacheReading | None:
        fn = self._fn()
        if fn is None:
            return None
        info = fn.cache_info()  # type: ignore[attr-defined]
        hits, misses, maxsize, currsize = info.hits, info.misses, info.maxsize, info.currsize
        evictions = max(misses - currsize, 0) if maxsize else 0
        with self._lock:
            last = self._last
            if misses < last[1] or hits < last[0]:  # cache_clear() since the last reading
                self._base = (self._base[0] + last[0], self._base[1] + last[1], self._base[2] + last[2])
            self._last = (hits, misses, evictions)
            base = self._base
        return CacheReading(
            name=self.name,
            hits=base[0] + hits,
            misses=base[1] + misses,
            evictions=base[2] + evictions,
            expirations=0,
            size=currsize,
            max_size=maxsize,
        )


def instrument_lru_cache(
    fn: Callable[P, R], name: str, meter_provider: MeterProvider | None = None
) -> Callable[P, R]:
    """Report a ``functools.lru_cache`` function as cache ``name``; returns ``fn`` itself.

        @functools.lru_cache(maxsize=1024)
        def lookup(key: str) -> Row: ...
        instrument_lru_cache(lookup, "lookup")

    Nothing is added to the calls: ``cache_info()`` is read at collection time (see
    ``_LruCacheSource`` for what is exact and what is estimated). The function holds its reporter;
    the provider holds neither, so a function that goes away stops reporting. Calling this again
    for the same function re-registers the same reporter (no second series).
    """
    _require_name(name)
    if not callable(getattr(fn, "cache_info", None)):
        raise ConfigError("fn", f"must be a functools.lru_cache function (with cache_info()), got {fn!r}")
    source = getattr(fn, "_amqadf_cache_source", None)
    if not isinstance(source, _LruCacheSource) or source.name != name:
        source = _LruCacheSource(fn, name)
        try:
            fn._amqadf_cache_source = source  # type: ignore[attr-defined]
        except AttributeError as exc:
            raise ConfigError("fn", f"cannot carry its cache reporter: {exc}") from None
    _register(source, name, meter_provider)
    return fn


class _CachetoolsCounts:
    """The counters of one tracked ``cachetools`` cache, which holds them; reads it weakly."""

    __slots__ = ("__weakref__", "_cache", "evictions", "expirations", "hits", "misses", "name")

    def __init__(self, cache: Any, name: str) -> None:
        self.name = name
        self._cache = weakref.ref(cache)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def cache_reading(self, fresh: bool) -> CacheReading | None:
        cache = self._cache()
        if cache is None:
            return None
        import cachetools

        # Cache.__len__, not len(): a TTLCache's own __len__ expires entries, and this runs on the
        # collection thread, outside whatever lock the application uses around the cache.
        size = cachetools.Cache.__len__(cache)
        # With getsizeof, maxsize is in the caller's size units, not entries: left out.
        entries = cache.getsizeof is cachetools.Cache.getsizeof
        return CacheReading(
            name=self.name,
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            expirations=self.expirations,
            size=size,
            max_size=int(cache.maxsize) if entries else None,
        )


class _Miss:
    pass


_MISS = _Miss()
_tracked_classes: dict[type, type] = {}
_tracked_lock = threading.Lock()


def _tracked_class(base: Any) -> type:
    """A subclass of ``base`` counting into ``self._amqadf_cache_source`` (one per base class)."""
    with _tracked_lock:
        tracked = _tracked_classes.get(base)
        if tracked is not None:
            return tracked
        namespace: dict[str, Any] = {"__module__": base.__module__, "_amqadf_tracked": True}

        def __getitem__(self: Any, key: Any) -> Any:
            try:
                value = base.__getitem__(self, key)
            except KeyError:
                self._amqadf_cache_source.misses += 1
                raise
            self._amqadf_cache_source.hits += 1
            return value

        def get(self: Any, key: Any, default: Any = None) -> Any:
            value = base.get(self, key, _MISS)  # a present key reads through __getitem__: a hit
            if value is _MISS:
                self._amqadf_cache_source.misses += 1
                return default
            return value

        def popitem(self: Any) -> Any:
            item = base.popitem(self)
            self._amqadf_cache_source.evictions += 1
            return item

        namespace.update(__getitem__=__getitem__, get=get, popitem=popitem)
        if callable(getattr(base, "expire", None)):

            def expire(self: Any, time: Any = None) -> Any:
                expired = base.expire(self, time)
                if expired:
                    self._amqadf_cache_source.expirations += len(expired)
                return expired

            namespace["expire"] = expire
        tracked = type(base.__name__, (base,), namespace)
        tracked.__qualname__ = base.__qualname__
        _tracked_classes[base] = tracked
        return tracked


def track_cachetools(cache: C, name: str, meter_provider: MeterProvider | None = None) -> C:
    """Count a ``cachetools`` cache's hits, misses, evictions and expirations as cache ``name``.

    Returns the same object (its class becomes a counting subclass of its own class), so it keeps
    working wherever it is already used, e.g. in ``@cachetools.cached(cache)``::

        cache = track_cachetools(cachetools.TTLCache(maxsize=1024, ttl=60), "sessions")

    Counted:

    * a hit: ``cache[key]`` returning a value (also through ``get``, ``pop``, ``setdefault`` of a
      present key, which read through ``cache[key]``); a miss: ``cache[key]`` raising KeyError or
      ``get`` of an absent (or expired) key. ``key in cache`` is not a look-up.
    * an eviction: every ``popitem()``, which is how cachetools makes room (a direct call by the
      application counts as one too);
    * an expiration: each entry TTLCache/TLRUCache's ``expire()`` removes, which they call on every
      insertion, ``len()`` and ``popitem()``: an expired entry is counted when it is reclaimed,
      not when it is first missed.

    Size is the entries held (expired ones not yet reclaimed included); max size is ``maxsize``,
    left out when the cache weighs entries with ``getsizeof``. The counters are plain ints: exact
    when the cache is used under a lock (cachetools caches need one across threads anyway).
    Caveat: the class swap makes the cache unpicklable.
    """
    _require_name(name)
    try:
        import cachetools
    except ImportError:
        raise ConfigError("cache", "needs cachetools: pip install cachetools") from None
    if not isinstance(cache, cachetools.Cache):
        raise ConfigError("cache", f"must be a cachetools cache, got {cache!r}")
    source = getattr(cache, "_amqadf_cache_source", None)
    if not isinstance(source, _CachetoolsCounts) or source.name != name:
        source = _CachetoolsCounts(cache, name)
        cache._amqadf_cache_source = source  # type: ignore[attr-defined]
    if not getattr(type(cache), "_amqadf_tracked", False):
        cache.__class__ = _tracked_class(type(cache))
    _register(source, name, meter_provider)
    return cache


class CacheRecorder:
    """Counts of a cache counted by hand (``record_cache(name)``); every method is thread-safe."""

    __slots__ = ("__weakref__", "_counts", "_lock", "_max_size", "_size", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._counts = [0, 0, 0, 0]  # hits, misses, evictions, expirations
        self._size: int | None = None
        self._max_size: int | None = None

    def hit(self, n: int = 1) -> None:
        with self._lock:
            self._counts[0] += n

    def miss(self, n: int = 1) -> None:
        with self._lock:
            self._counts[1] += n

    def evict(self, n: int = 1) -> None:
        """Entries removed to make room (not expirations)."""
        with self._lock:
            self._counts[2] += n

    def expire(self, n: int = 1) -> None:
        """Entries dropped because their TTL ran out."""
        with self._lock:
            self._counts[3] += n

    def set_size(self, size: int | None, max_size: int | None = None) -> None:
        """Entries held and capacity; None (the default) leaves the instrument's point out."""
        with self._lock:
            self._size, self._max_size = size, max_size

    def cache_reading(self, fresh: bool) -> CacheReading | None:
        with self._lock:
            hits, misses, evictions, expirations = self._counts
            size, max_size = self._size, self._max_size
        return CacheReading(self.name, hits, misses, evictions, expirations, size, max_size)

    def __repr__(self) -> str:
        return f"CacheRecorder(name={self.name!r})"


_recorders: dict[str, CacheRecorder] = {}
_recorders_lock = threading.Lock()


def record_cache(name: str, meter_provider: MeterProvider | None = None) -> CacheRecorder:
    """The recorder of cache ``name``, for a cache counted by hand (one per name, kept for good).

        users = record_cache("users")
        users.hit(); users.miss(); users.evict(); users.expire()

    Each call costs a lock and an increment (~0.1 µs): no OpenTelemetry on the hot path; the
    counts are read at collection time. The first call registers it on ``meter_provider``
    (default: the global one); a later call naming a provider registers it there too.
    """
    recorder = _recorders.get(name)
    if recorder is not None and meter_provider is None:
        return recorder
    _require_name(name)
    with _recorders_lock:
        recorder = _recorders.get(name)
        created = recorder is None
        if recorder is None:
            recorder = _recorders[name] = CacheRecorder(name)
    if created or meter_provider is not None:
        _register(recorder, name, meter_provider)
    return recorder


# --- collection-time readings (called by the SDK's collection thread, never on the hot path) -------
def _read(obj: InstrumentedCache[Any, Any] | CacheSource, fresh: bool = False) -> CacheReading | None:
    if isinstance(obj, InstrumentedCache):
        s = obj.stats()
        return CacheReading(s.name, s.hits, s.misses, s.evictions, s.expirations, s.size, s.max_size)
    return obj.cache_reading(fresh)


def _one(reading: CacheReading | None, field: str) -> list[Point]:
    if reading is None:
        return []
    value = getattr(reading, field)
    return [] if value is None else [(value, {semconv.ATTR_CACHE_NAME: reading.name})]


def _requests(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    r = _read(cache, fresh=True)
    if r is None:
        return []
    return [
        (r.hits, {semconv.ATTR_CACHE_NAME: r.name, semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_HIT}),
        (r.misses, {semconv.ATTR_CACHE_NAME: r.name, semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS}),
    ]


def _evictions(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    return _one(_read(cache), "evictions")


def _expirations(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    return _one(_read(cache), "expirations")


def _size(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    return _one(_read(cache), "size")


def _max_size(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    if isinstance(cache, InstrumentedCache):
        return [(cache.max_size, {semconv.ATTR_CACHE_NAME: cache.name})]
    return _one(_read(cache), "max_size")


def _memory_usage(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    return [] if isinstance(cache, InstrumentedCache) else _one(_read(cache), "memory_usage")


def _memory_limit(cache: InstrumentedCache[Any, Any] | CacheSource) -> list[Point]:
    return [] if isinstance(cache, InstrumentedCache) else _one(_read(cache), "memory_limit")


# CACHE_REQUESTS first: its reading is the ``fresh`` one of a collection (the SDK calls the
# callbacks of a meter's observable instruments in the order they were created).
_SHARED: SharedInstruments[InstrumentedCache[Any, Any] | CacheSource] = SharedInstruments(
    "cache",
    [
        (semconv.CACHE_REQUESTS, _requests),
        (semconv.CACHE_EVICTIONS, _evictions),
        (semconv.CACHE_EXPIRATIONS, _expirations),
        (semconv.CACHE_SIZE, _size),
        (semconv.CACHE_MAX_SIZE, _max_size),
        (semconv.CACHE_MEMORY_USAGE, _memory_usage),
        (semconv.CACHE_MEMORY_LIMIT, _memory_limit),
    ],
)
