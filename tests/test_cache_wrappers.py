"""functools.lru_cache, cachetools and hand-counted caches through the amqadf.cache.* instruments."""

from __future__ import annotations

import functools
import gc
from typing import Any

import cachetools
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support.clock import FakeClock
from support.metrics import collect_points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.cache import (
    InstrumentedCache,
    instrument_lru_cache,
    record_cache,
    track_cachetools,
)

HIT = {semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_HIT}
MISS = {semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS}


def k(name: str, extra: dict[str, str] | None = None) -> frozenset[tuple[str, Any]]:
    return frozenset({semconv.ATTR_CACHE_NAME: name, **(extra or {})}.items())


def series(found: dict[str, Any], name: str) -> dict[str, Any]:
    """One cache's values: requests as (hits, misses), the others as single values (or absent)."""
    out: dict[str, Any] = {}
    req = found.get(semconv.CACHE_REQUESTS.name, {})
    if k(name, HIT) in req:
        out["requests"] = (req[k(name, HIT)], req[k(name, MISS)])
    for label, inst in [
        ("evictions", semconv.CACHE_EVICTIONS),
        ("expirations", semconv.CACHE_EXPIRATIONS),
        ("size", semconv.CACHE_SIZE),
        ("max_size", semconv.CACHE_MAX_SIZE),
    ]:
        if k(name) in found.get(inst.name, {}):
            out[label] = found[inst.name][k(name)]
    return out


# --- functools.lru_cache -----------------------------------------------------------------------------
def test_lru_cache_is_read_from_cache_info(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider

    @functools.lru_cache(maxsize=3)
    def square(x: int) -> int:
        return x * x

    assert instrument_lru_cache(square, "square", provider) is square
    for x in [1, 2, 1, 3, 4, 5, 1]:  # misses 1 2 _ 3 4 5 1 (1 was evicted), hit once
        square(x)
    info = square.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 6, 3)
    assert series(collect_points(reader), "square") == {
        "requests": (1, 6),
        "evictions": 3,  # misses - currsize: exact here (no call raised)
        "expirations": 0,
        "size": 3,
        "max_size": 3,
    }


def test_lru_cache_totals_stay_monotonic_across_cache_clear(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider

    @functools.lru_cache(maxsize=2)
    def ident(x: int) -> int:
        return x

    instrument_lru_cache(ident, "ident", provider)
    for x in [1, 1, 2, 3]:
        ident(x)
    assert series(collect_points(reader), "ident")["requests"] == (1, 3)
    ident.cache_clear()
    ident(7)
    found = series(collect_points(reader), "ident")
    assert found["requests"] == (1, 4) and found["evictions"] == 1 and found["size"] == 1


def test_unbounded_lru_cache_has_no_max_size_and_no_evictions(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider

    @functools.cache
    def f(x: int) -> int:
        return x

    instrument_lru_cache(f, "unbounded", provider)
    instrument_lru_cache(f, "unbounded", provider)  # idempotent: still one series
    for x in range(5):
        f(x)
    assert series(collect_points(reader), "unbounded") == {
        "requests": (0, 5),
        "evictions": 0,
        "expirations": 0,
        "size": 5,
    }


def test_lru_cache_function_garbage_collected_stops_reporting(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider

    @functools.lru_cache(maxsize=2)
    def gone(x: int) -> int:
        return x

    instrument_lru_cache(gone, "gone", provider)
    gone(1)
    assert series(collect_points(reader), "gone")["requests"] == (0, 1)
    del gone
    gc.collect()
    assert series(collect_points(reader), "gone") == {}


# --- cachetools ------------------------------------------------------------------------------------
def test_cachetools_lru_counts_hits_misses_and_evictions(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    cache: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=2)
    assert track_cachetools(cache, "lru", provider) is cache
    assert isinstance(cache, cachetools.LRUCache)
    cache["a"] = 1
    cache["b"] = 2
    assert cache["a"] == 1  # hit
    assert cache.get("b") == 2  # hit
    assert cache.get("zzz", -1) == -1  # miss
    with pytest.raises(KeyError):
        cache["zzz"]  # miss
    assert "a" in cache  # not a look-up
    cache["c"] = 3  # full: evicts the LRU one
    assert len(cache) == 2
    assert series(collect_points(reader), "lru") == {
        "requests": (2, 2),
        "evictions": 1,
        "expirations": 0,
        "size": 2,
        "max_size": 2,
    }


def test_cachetools_ttl_counts_expirations_not_evictions(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    timer = FakeClock(0.0)
    cache: cachetools.TTLCache[str, int] = track_cachetools(
        cachetools.TTLCache(maxsize=10, ttl=5, timer=timer), "ttl", provider
    )
    cache["a"] = 1
    cache["b"] = 2
    timer.now = 10  # both expired
    assert cache.get("a") is None  # a miss (the entry is reclaimed later)
    cache["c"] = 3  # insertion expires a and b
    assert cache["c"] == 3
    found = series(collect_points(reader), "ttl")
    assert found == {"requests": (1, 1), "evictions": 0, "expirations": 2, "size": 1, "max_size": 10}


def test_cachetools_works_with_the_cached_decorator_and_sized_caches(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    cache: cachetools.LRUCache[str, str] = track_cachetools(
        cachetools.LRUCache(maxsize=100, getsizeof=len), "sized", provider
    )
    calls = 0

    @cachetools.cached(cache)
    def load(key: str) -> str:
        nonlocal calls
        calls += 1
        return key * 10

    for key in ["a", "b", "a", "a", "c"]:
        load(key)
    assert calls == 3
    found = series(collect_points(reader), "sized")
    # 3 x 10 units fit in 100: no eviction; max size left out (units, not entries).
    assert found == {"requests": (2, 3), "evictions": 0, "expirations": 0, "size": 3}


def test_track_cachetools_is_idempotent_and_rejects_other_objects(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    cache: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=4)
    track_cachetools(cache, "twice", provider)
    cls = type(cache)
    track_cachetools(cache, "twice", provider)
    assert type(cache) is cls and type(cache).__bases__ == (cachetools.LRUCache,)
    cache.get("x")
    assert series(collect_points(reader), "twice")["requests"] == (0, 1)
    with pytest.raises(ConfigError, match="cachetools"):
        track_cachetools({}, "dict", provider)
    with pytest.raises(ConfigError, match="name"):
        track_cachetools(cachetools.LRUCache(maxsize=1), "", provider)


# --- by hand, and all kinds side by side -----------------------------------------------------------
def test_record_cache_by_hand(reader_provider: tuple[InMemoryMetricReader, MeterProvider]) -> None:
    reader, provider = reader_provider
    users = record_cache("hand-users", provider)
    assert record_cache("hand-users") is users
    users.hit()
    users.hit(2)
    users.miss()
    users.evict()
    users.expire(4)
    assert series(collect_points(reader), "hand-users") == {
        "requests": (3, 1),
        "evictions": 1,
        "expirations": 4,
    }
    users.set_size(7, 100)
    found = series(collect_points(reader), "hand-users")
    assert found["size"] == 7 and found["max_size"] == 100


def test_all_kinds_share_one_instrument_set_per_provider(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    own: InstrumentedCache[str, int] = InstrumentedCache("own", 4)
    own.instrument(provider)

    @functools.lru_cache(maxsize=4)
    def f(x: int) -> int:
        return x

    instrument_lru_cache(f, "lru-fn", provider)
    tools: cachetools.LRUCache[str, int] = track_cachetools(cachetools.LRUCache(maxsize=4), "tools", provider)
    record_cache("hand-shared", provider).miss()
    own.get("x")
    f(1)
    tools.get("y")
    found = collect_points(reader)  # asserts no name is exported twice
    requests = found[semconv.CACHE_REQUESTS.name]
    for name in ["own", "lru-fn", "tools", "hand-shared"]:
        assert requests[k(name, MISS)] == 1
    # No Redis here: no memory series at all.
    assert semconv.CACHE_MEMORY_USAGE.name not in found


def test_record_cache_rejects_an_empty_name() -> None:
    with pytest.raises(ConfigError, match="name"):
        record_cache("")


def test_instrument_lru_cache_rejects_a_plain_function() -> None:
    with pytest.raises(ConfigError, match="lru_cache"):
        instrument_lru_cache(len, "len")
