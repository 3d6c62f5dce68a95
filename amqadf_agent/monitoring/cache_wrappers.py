"""Caches this package does not own, reported through the same ``amqadf.cache.*`` instruments.

``instrument_lru_cache`` (a ``functools.lru_cache`` function, read at collection time),
``track_cachetools`` (a ``cachetools`` cache, counted by a subclass of its own class) and
``record_cache`` (a cache counted by hand). Each is a ``CacheSource`` of ``cache_instruments``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.cache_instruments import CacheReading, register

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["CacheRecorder", "instrument_lru_cache", "record_cache", "track_cachetools"]

C = TypeVar("C")
R = TypeVar("R")
P = ParamSpec("P")


def _require_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty string, got {name!r}")
    return name


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
    register(source, name, meter_provider)
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
    register(source, name, meter_provider)
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
        register(recorder, name, meter_provider)
    return recorder
