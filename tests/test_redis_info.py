"""RedisCacheMonitor against a real redis-server: the exported values are INFO's."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support import free_port
from support.metrics import collect_points
from support.redis_server import RedisServer

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.redis_info import RedisCacheMonitor, parse_info


def key(name: str, **extra: str) -> frozenset[tuple[str, Any]]:
    return frozenset({semconv.ATTR_CACHE_NAME: name, **extra}.items())


def test_hits_misses_size_memory_match_info(
    redis_server: RedisServer,
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    client = redis.Redis.from_url(redis_server.url)
    for i in range(10):
        client.set(f"k{i}", "v")
    client.set("other-db-key", "v")
    for i in range(7):
        assert client.get(f"k{i}") == b"v"  # 7 hits
    for i in range(3):
        assert client.get(f"absent{i}") is None  # 3 misses
    redis.Redis.from_url(redis_server.url.replace("/0", "/3")).set("in-db3", "v")

    monitor = RedisCacheMonitor(redis_server.url, name="sessions", meter_provider=provider)
    found = collect_points(reader)
    info = client.info("stats", "memory", "keyspace")
    name = "sessions"
    requests = found[semconv.CACHE_REQUESTS.name]
    assert requests[key(name, **{semconv.ATTR_CACHE_RESULT: "hit"})] == info["keyspace_hits"] == 7
    assert requests[key(name, **{semconv.ATTR_CACHE_RESULT: "miss"})] == info["keyspace_misses"] == 3
    assert found[semconv.CACHE_SIZE.name] == {key(name): 12}  # 11 in db0 + 1 in db3
    assert found[semconv.CACHE_EVICTIONS.name] == {key(name): 0}
    assert found[semconv.CACHE_EXPIRATIONS.name] == {key(name): 0}
    # used_memory moves a little between two INFO calls (client buffers): same order of size.
    used = found[semconv.CACHE_MEMORY_USAGE.name][key(name)]
    assert abs(used - info["used_memory"]) < 0.1 * info["used_memory"]
    assert used == monitor.read().memory_usage or used > 0
    # maxmemory 0 (unlimited): no limit series, and no max_size for Redis at all.
    assert semconv.CACHE_MEMORY_LIMIT.name not in found
    assert semconv.CACHE_MAX_SIZE.name not in found


def test_evictions_under_maxmemory_and_expirations_match_info(
    redis_server: RedisServer,
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    client = redis.Redis.from_url(redis_server.url)
    # Expirations: keys with a 1 ms TTL, then read them (lazy expiry counts each one).
    for i in range(20):
        client.set(f"ttl{i}", "v", px=1)
    time.sleep(0.05)
    for i in range(20):
        assert client.get(f"ttl{i}") is None
    # Evictions: a small maxmemory with allkeys-lru, then fill well past it.
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", str(used + 2 * 1024 * 1024))
    payload = "x" * 10_000
    pipe = client.pipeline(transaction=False)
    for i in range(1000):  # ~10 MB into a 2 MB headroom
        pipe.set(f"fill{i}", payload)
    pipe.execute()

    monitor = RedisCacheMonitor(client, name="r", meter_provider=provider)  # held: reported weakly
    found = collect_points(reader)
    info = client.info("stats", "memory", "keyspace")
    assert monitor.read().evictions == info["evicted_keys"]
    assert info["evicted_keys"] > 0 and info["expired_keys"] >= 20
    assert found[semconv.CACHE_EVICTIONS.name] == {key("r"): info["evicted_keys"]}
    assert found[semconv.CACHE_EXPIRATIONS.name] == {key("r"): info["expired_keys"]}
    assert found[semconv.CACHE_MEMORY_LIMIT.name] == {key("r"): info["maxmemory"]}
    assert found[semconv.CACHE_SIZE.name] == {key("r"): info["db0"]["keys"]}
    assert info["db0"]["keys"] < 1000
    requests = found[semconv.CACHE_REQUESTS.name]
    assert requests[key("r", **{semconv.ATTR_CACHE_RESULT: "miss"})] == info["keyspace_misses"] == 20


def test_each_collection_reads_info_once_and_sees_new_values(
    redis_server: RedisServer,
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader, provider = reader_provider
    client = redis.Redis.from_url(redis_server.url)
    monitor = RedisCacheMonitor(client, name="r", meter_provider=provider)
    calls = 0
    real_read = monitor.read

    def counting_read() -> Any:
        nonlocal calls
        calls += 1
        return real_read()

    monkeypatch.setattr(monitor, "read", counting_read)
    collect_points(reader)
    assert calls == 1
    client.get("nothing")
    found = collect_points(reader)  # immediately after: still a fresh read
    assert calls == 2
    assert found[semconv.CACHE_REQUESTS.name][key("r", **{semconv.ATTR_CACHE_RESULT: "miss"})] == 1


def test_a_dead_server_skips_collections_logs_once_and_recovers(
    redis_server: RedisServer,
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, provider = reader_provider
    monitor = RedisCacheMonitor(redis_server.url, name="r", meter_provider=provider, timeout=0.2)
    assert semconv.CACHE_REQUESTS.name in collect_points(reader)
    redis_server.kill()
    caplog.set_level(logging.DEBUG, logger="amqadf_agent")
    started = time.monotonic()
    for _ in range(3):
        found = collect_points(reader)  # never raises
        # Cumulative counters keep their last value in the SDK; gauges of this collection are gone.
        assert semconv.CACHE_MEMORY_USAGE.name not in found or found[semconv.CACHE_MEMORY_USAGE.name]
    assert time.monotonic() - started < 3.0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "Redis cache" in r.getMessage()]
    assert len(warnings) == 1
    redis_server.start()
    redis.Redis(port=redis_server.port).get("x")
    found = collect_points(reader)
    assert found[semconv.CACHE_REQUESTS.name][key("r", **{semconv.ATTR_CACHE_RESULT: "miss"})] >= 1
    assert monitor.read().misses == 1


def test_unreachable_at_start_never_raises(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    url = f"redis://127.0.0.1:{free_port()}/0"
    monitor = RedisCacheMonitor(url, meter_provider=provider, timeout=0.1)
    assert semconv.CACHE_REQUESTS.name not in collect_points(reader)
    assert monitor.cache_reading(fresh=True) is None
    with pytest.raises(redis.ConnectionError):
        monitor.read()


def test_parse_info_sums_databases_and_leaves_out_unlimited_memory() -> None:
    info = {
        "keyspace_hits": 5,
        "keyspace_misses": 2,
        "evicted_keys": 1,
        "expired_keys": 3,
        "used_memory": 1000,
        "maxmemory": 0,
        "db0": {"keys": 4, "expires": 0},
        "db12": {"keys": 6, "expires": 1},
        "dbsize_unrelated": 99,
    }
    reading = parse_info("x", info)
    assert (reading.hits, reading.misses, reading.evictions, reading.expirations) == (5, 2, 1, 3)
    assert reading.size == 10 and reading.memory_usage == 1000 and reading.memory_limit is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"client_or_url": 42}, "client_or_url"),
        ({"client_or_url": "redis://x", "name": ""}, "name"),
        ({"client_or_url": "redis://x", "timeout": 0}, "timeout"),
        ({"client_or_url": "http://not-redis"}, "client_or_url"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        RedisCacheMonitor(**kwargs, instrument=False)
    assert field in str(err.value)
