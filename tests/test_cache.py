"""InstrumentedCache: exact counting, LRU and TTL semantics, thread safety, and the exported metrics."""

from __future__ import annotations

import dataclasses
import gc
import logging
import subprocess
import sys
import threading
import weakref
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support.clock import FakeClock
from support.metrics import collect, points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.cache import CacheStats, InstrumentedCache


def cache_attrs(name: str, **extra: str) -> frozenset[tuple[str, Any]]:
    return frozenset({semconv.ATTR_CACHE_NAME: name, **extra}.items())


# --- counting and semantics ------------------------------------------------------------------------
def test_hits_misses_and_hit_rate_are_counted_exactly() -> None:
    cache: InstrumentedCache[str, int] = InstrumentedCache("users", max_size=10)
    assert cache.stats().hit_rate == 0.0  # no look-ups yet: 0.0, not a ZeroDivisionError
    assert cache.get("a") is None
    assert cache.get("a", -1) == -1
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert cache.get("a") == 1
    assert cache.get("a") == 1
    stats = cache.stats()
    assert stats == CacheStats(
        name="users", hits=3, misses=2, evictions=0, expirations=0, size=1, max_size=10, hit_rate=0.6
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.hits = 0  # type: ignore[misc]


def test_cached_none_is_a_hit() -> None:
    cache: InstrumentedCache[str, None] = InstrumentedCache("nones", max_size=2)
    cache.set("k", None)
    assert cache.get("k", "default") is None
    assert cache.stats().hits == 1
    assert cache.get_or_set("k", lambda: pytest.fail("factory must not run on a hit")) is None


def test_lru_evicts_least_recently_used_and_counts_evictions() -> None:
    cache: InstrumentedCache[str, int] = InstrumentedCache("lru", max_size=3)
    for i, key in enumerate("abc"):
        cache.set(key, i)
    assert cache.get("a") == 0  # a is now the most recently used: order b, c, a
    cache.set("d", 3)  # evicts b
    assert cache.get("b") is None
    cache.set("c", 20)  # updating c makes it most recently used: order a, d, c
    cache.set("e", 4)  # evicts a
    assert cache.get("a") is None
    assert [cache.get(k) for k in "cde"] == [20, 3, 4]
    stats = cache.stats()
    assert (stats.evictions, stats.expirations, stats.size, len(cache)) == (2, 0, 3, 3)
    assert (stats.hits, stats.misses) == (4, 2)


def test_ttl_expiry_counts_miss_and_expiration_not_eviction() -> None:
    clock = FakeClock()
    cache: InstrumentedCache[str, str] = InstrumentedCache("sessions", max_size=5, ttl=30, clock=clock)
    cache.set("s1", "alice")
    clock.advance(29.999)
    assert cache.get("s1") == "alice"  # a hit does not extend the TTL
    clock.advance(0.001)
    assert cache.get("s1") is None  # expires at exactly set time + ttl
    assert len(cache) == 0  # the expired entry is dropped by the look-up
    assert cache.get("s1") is None  # now a plain miss: no second expiration
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.evictions) == (1, 2, 1, 0)


def test_setting_again_renews_the_ttl() -> None:
    clock = FakeClock()
    cache: InstrumentedCache[str, int] = InstrumentedCache("renew", max_size=5, ttl=10, clock=clock)
    cache.set("k", 1)
    clock.advance(8)
    cache.set("k", 2)
    clock.advance(8)
    assert cache.get("k") == 2
    clock.advance(2)
    assert cache.get("k") is None
    assert cache.stats().expirations == 1


def test_insertion_into_full_cache_reclaims_an_expired_entry_before_evicting() -> None:
    clock = FakeClock()
    cache: InstrumentedCache[str, int] = InstrumentedCache("ttl-lru", max_size=2, ttl=10, clock=clock)
    cache.set("old", 1)
    clock.advance(5)
    cache.set("young", 2)
    assert cache.get("old") == 1  # old becomes most recently used: LRU order young, old
    clock.advance(6)  # old expired (t=11 >= 10), young alive (expires at 15)
    cache.set("new", 3)
    # The expired "old" made room, not the least recently used live "young".
    assert cache.stats().expirations == 1
    assert cache.stats().evictions == 0
    assert cache.get("young") == 2
    clock.advance(1)
    cache.set("newer", 4)  # nothing expired now: evicts the LRU live entry ("new")
    assert cache.get("new") is None
    stats = cache.stats()
    assert (stats.evictions, stats.expirations, stats.size) == (1, 1, 2)


def test_get_or_set_calls_factory_only_on_miss_and_counts_one_lookup() -> None:
    cache: InstrumentedCache[int, str] = InstrumentedCache("factory", max_size=4)
    calls: list[int] = []

    def make(k: int) -> str:
        calls.append(k)
        return f"v{k}"

    assert cache.get_or_set(1, lambda: make(1)) == "v1"
    assert cache.get_or_set(1, lambda: make(1)) == "v1"
    assert calls == [1]
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)

    def boom() -> str:
        raise RuntimeError("backend down")

    with pytest.raises(RuntimeError):
        cache.get_or_set(2, boom)
    assert cache.get(2) is None  # nothing stored when the factory raised


def test_delete_and_clear_are_not_lookups_and_keep_counters() -> None:
    cache: InstrumentedCache[str, int] = InstrumentedCache("admin", max_size=4)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.expirations, stats.size) == (1, 0, 0, 0, 0)


def test_thread_safety_totals_add_up_under_8_threads() -> None:
    cache: InstrumentedCache[int, int] = InstrumentedCache("hammered", max_size=50)
    threads_n, ops = 8, 5000
    start = threading.Barrier(threads_n)
    tallies: list[tuple[int, int]] = []  # (hits, misses) each thread saw
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        hits = misses = 0
        factory_calls = [0]

        def factory() -> int:
            factory_calls[0] += 1
            return 0

        try:
            start.wait()
            for i in range(ops):
                key = (i * 7 + seed) % 80
                if cache.get(key) is None:
                    misses += 1
                    cache.set(key, key)
                else:
                    hits += 1
                    before = factory_calls[0]
                    cache.get_or_set(key + 1000, factory)
                    if factory_calls[0] == before:
                        hits += 1
                    else:
                        misses += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        tallies.append((hits, misses))

    workers = [threading.Thread(target=hammer, args=(s,)) for s in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    stats = cache.stats()
    assert stats.hits == sum(h for h, _ in tallies)
    assert stats.misses == sum(m for _, m in tallies)
    assert stats.hits + stats.misses >= threads_n * ops
    assert stats.size == len(cache) == 50  # 160 distinct keys were stored into 50 slots
    assert stats.evictions >= 160 - 50
    assert stats.expirations == 0


def test_thread_safety_exact_totals() -> None:
    cache: InstrumentedCache[int, int] = InstrumentedCache("exact", max_size=1000)
    for k in range(100):
        cache.set(k, k)
    threads_n, rounds = 8, 2000
    start = threading.Barrier(threads_n)

    def work() -> None:
        start.wait()
        for i in range(rounds):
            cache.get(i % 200)  # keys 0..99 hit, 100..199 miss: exactly half each

    workers = [threading.Thread(target=work) for _ in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats = cache.stats()
    assert stats.hits == threads_n * rounds // 2
    assert stats.misses == threads_n * rounds // 2


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"name": "c", "max_size": 0}, "max_size"),
        ({"name": "c", "max_size": -3}, "max_size"),
        ({"name": "c", "max_size": 2.5}, "max_size"),
        ({"name": "c", "max_size": True}, "max_size"),
        ({"name": "c", "max_size": "10"}, "max_size"),
        ({"name": "c", "max_size": 10, "ttl": 0}, "ttl"),
        ({"name": "c", "max_size": 10, "ttl": -1.0}, "ttl"),
        ({"name": "c", "max_size": 10, "ttl": float("nan")}, "ttl"),
        ({"name": "c", "max_size": 10, "ttl": "60"}, "ttl"),
        ({"name": "", "max_size": 10}, "name"),
        ({"name": 3, "max_size": 10}, "name"),
        ({"name": "c", "max_size": 10, "clock": 5}, "clock"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        InstrumentedCache(**kwargs)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")
    assert isinstance(info.value, ValueError)


def test_max_size_error_message_shows_the_value() -> None:
    with pytest.raises(ConfigError, match=r"^max_size: must be a positive integer, got 0$"):
        InstrumentedCache("c", 0)


# --- exported metrics ------------------------------------------------------------------------------
def test_metrics_carry_contract_names_units_and_attributes(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    clock = FakeClock()
    cache: InstrumentedCache[str, int] = InstrumentedCache("products", max_size=2, ttl=60, clock=clock)
    cache.instrument(provider)
    cache.get("x")  # miss
    for k, v in (("a", 1), ("b", 2), ("c", 3)):  # c evicts a
        cache.set(k, v)
    cache.get("b")  # hit
    cache.get("c")  # hit
    clock.advance(61)
    cache.get("b")  # expired: miss + expiration

    metrics = collect(reader)
    cache_instruments = [
        inst
        for inst in semconv.INSTRUMENTS
        if inst.name.startswith("amqadf.cache.") and inst.emitted_by.startswith("monitoring.cache")
    ]
    assert len(cache_instruments) == 5
    for inst in cache_instruments:
        assert inst.name in metrics
        assert metrics[inst.name].unit == inst.unit
        assert metrics[inst.name].description == inst.description
        for attrs in points(metrics[inst.name]):
            assert {key for key, _ in attrs} == set(inst.attributes)

    requests = metrics[semconv.CACHE_REQUESTS.name]
    assert requests.data.is_monotonic is True
    assert points(requests) == {
        cache_attrs("products", **{semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_HIT}): 2,
        cache_attrs("products", **{semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS}): 2,
    }
    assert points(metrics[semconv.CACHE_EVICTIONS.name]) == {cache_attrs("products"): 1}
    assert points(metrics[semconv.CACHE_EXPIRATIONS.name]) == {cache_attrs("products"): 1}
    assert metrics[semconv.CACHE_SIZE.name].data.is_monotonic is False
    assert points(metrics[semconv.CACHE_SIZE.name]) == {cache_attrs("products"): 1}
    assert points(metrics[semconv.CACHE_MAX_SIZE.name]) == {cache_attrs("products"): 2}

    # Observable counters are read at collection time: later look-ups show in the next collection.
    cache.get("c")
    assert (
        points(collect(reader)[semconv.CACHE_REQUESTS.name])[
            cache_attrs("products", **{semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS})
        ]
        == 3
    )


def test_two_caches_give_two_series_from_one_instrument_set(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, provider = reader_provider
    users: InstrumentedCache[str, int] = InstrumentedCache("users", max_size=10)
    orders: InstrumentedCache[str, int] = InstrumentedCache("orders", max_size=20)
    many = [InstrumentedCache[str, int](f"c{i}", max_size=1) for i in range(100)]
    with caplog.at_level(logging.WARNING):
        for cache in (users, orders, *many):
            cache.instrument(provider)
        users.instrument(provider)  # idempotent
    assert not [r for r in caplog.records if "already" in r.getMessage()], "duplicate instruments created"
    users.set("u", 1)
    users.get("u")
    orders.get("o")
    orders.get("p")

    requests = points(collect(reader)[semconv.CACHE_REQUESTS.name])
    hit, miss = semconv.CACHE_RESULT_HIT, semconv.CACHE_RESULT_MISS
    assert requests[cache_attrs("users", **{semconv.ATTR_CACHE_RESULT: hit})] == 1
    assert requests[cache_attrs("users", **{semconv.ATTR_CACHE_RESULT: miss})] == 0
    assert requests[cache_attrs("orders", **{semconv.ATTR_CACHE_RESULT: hit})] == 0
    assert requests[cache_attrs("orders", **{semconv.ATTR_CACHE_RESULT: miss})] == 2
    assert len(requests) == 2 * 102
    max_sizes = points(collect(reader)[semconv.CACHE_MAX_SIZE.name])
    assert max_sizes[cache_attrs("users")] == 10
    assert max_sizes[cache_attrs("orders")] == 20


def test_caches_with_the_same_name_are_summed_into_one_series(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    a: InstrumentedCache[str, int] = InstrumentedCache("shared", max_size=3)
    b: InstrumentedCache[str, int] = InstrumentedCache("shared", max_size=4)
    a.instrument(provider)
    b.instrument(provider)
    a.get("x")
    b.get("y")
    b.get("z")
    metrics = collect(reader)
    miss = cache_attrs("shared", **{semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS})
    assert points(metrics[semconv.CACHE_REQUESTS.name])[miss] == 3
    assert points(metrics[semconv.CACHE_MAX_SIZE.name]) == {cache_attrs("shared"): 7}


def test_each_provider_gets_its_own_instruments() -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    providers = [MeterProvider(metric_readers=[r]) for r in readers]
    first: InstrumentedCache[str, int] = InstrumentedCache("first", max_size=1)
    both: InstrumentedCache[str, int] = InstrumentedCache("both", max_size=1)
    first.instrument(providers[0])
    both.instrument(providers[0])
    both.instrument(providers[1])
    names = [
        {dict(attrs)[semconv.ATTR_CACHE_NAME] for attrs in points(collect(r)[semconv.CACHE_SIZE.name])}
        for r in readers
    ]
    assert names == [{"first", "both"}, {"both"}]


def test_default_provider_is_the_global_one(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Instead of setting the global provider, make the API's getter return the test's provider:
    # instrument() with no argument and with that provider explicitly must share one instrument set.
    reader, provider = reader_provider
    from opentelemetry import metrics

    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    implicit: InstrumentedCache[str, int] = InstrumentedCache("implicit", max_size=1)
    explicit: InstrumentedCache[str, int] = InstrumentedCache("explicit", max_size=1)
    implicit.instrument()
    explicit.instrument(provider)
    series = points(collect(reader)[semconv.CACHE_SIZE.name])
    assert set(series) == {cache_attrs("implicit"), cache_attrs("explicit")}


def test_caches_instrumented_before_and_after_the_sdk_is_set_share_one_set(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The real sequence without touching the global: before the SDK is set, get_meter_provider()
    # returns the API's proxy; setting the SDK makes the proxy forward to it. A cache instrumented
    # at import time (through the proxy) and one instrumented later (on the real provider) must
    # share one instrument set: a second set on the real provider would have its callbacks dropped.
    from opentelemetry import metrics
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    reader, real = reader_provider
    proxy = _ProxyMeterProvider()
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: proxy)
    early: InstrumentedCache[str, int] = InstrumentedCache("early", max_size=1)
    early.instrument()
    proxy.on_set_meter_provider(real)  # what set_meter_provider() does to the global proxy
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: real)
    late: InstrumentedCache[str, int] = InstrumentedCache("late", max_size=1)
    explicit: InstrumentedCache[str, int] = InstrumentedCache("explicit", max_size=1)
    with caplog.at_level(logging.WARNING):
        late.instrument()
        explicit.instrument(real)
    assert caplog.records == []
    series = points(collect(reader)[semconv.CACHE_SIZE.name])
    assert set(series) == {cache_attrs("early"), cache_attrs("late"), cache_attrs("explicit")}


def test_instrumenting_does_not_keep_a_cache_alive(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    keep: InstrumentedCache[str, int] = InstrumentedCache("kept", max_size=1)
    gone: InstrumentedCache[str, int] = InstrumentedCache("gone", max_size=1)
    keep.instrument(provider)
    gone.instrument(provider)
    ref = weakref.ref(gone)
    del gone
    gc.collect()
    assert ref() is None
    assert set(points(collect(reader)[semconv.CACHE_MAX_SIZE.name])) == {cache_attrs("kept")}


def test_a_failing_cache_is_skipped_and_never_raises_into_the_sdk(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader, provider = reader_provider
    good: InstrumentedCache[str, int] = InstrumentedCache("good", max_size=1)
    bad: InstrumentedCache[str, int] = InstrumentedCache("bad", max_size=1)
    good.instrument(provider)
    bad.instrument(provider)

    original = InstrumentedCache.stats

    def stats(self: InstrumentedCache[Any, Any]) -> CacheStats:
        if self is bad:
            raise RuntimeError("stats unavailable")
        return original(self)

    monkeypatch.setattr(InstrumentedCache, "stats", stats)
    with caplog.at_level(logging.WARNING, logger="amqadf_agent.monitoring._instruments"):
        metrics = collect(reader)
    assert set(points(metrics[semconv.CACHE_SIZE.name])) == {cache_attrs("good")}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, not once per instrument
    assert warnings[0].exc_info is not None and "stats unavailable" in str(warnings[0].exc_info[1])


def test_instrument_never_raises_on_a_bad_provider(caplog: pytest.LogCaptureFixture) -> None:
    cache: InstrumentedCache[str, int] = InstrumentedCache("resilient", max_size=1)
    with caplog.at_level(logging.WARNING):
        cache.instrument(object())  # type: ignore[arg-type]
    assert "resilient" in caplog.text
    cache.set("a", 1)
    assert cache.get("a") == 1


def test_importing_the_cache_module_does_not_import_the_otel_api_or_sdk() -> None:
    code = (
        "import sys, amqadf_agent.monitoring.cache as m; "
        "bad = [n for n in sys.modules if n.startswith(('opentelemetry.metrics', 'opentelemetry.sdk', "
        "'opentelemetry.context', 'opentelemetry.trace'))]; print(bad); assert not bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
