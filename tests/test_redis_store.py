"""RedisStore against a real ``redis-server`` on a loopback port (started by the fixture):
shared limits across clients and processes, persistence across instances, fail-open fallback
when the server is killed mid-test, and recovery when it comes back on the same port."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support.clock import FakeClock
from support.metrics import metric_points
from support.redis_server import RedisServer

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.resilience.rate_limit import RateLimiter
from amqadf_agent.resilience.stores import RedisStore


def test_two_clients_share_one_limit(redis_server: RedisServer) -> None:
    a = RateLimiter(0.5, burst=5, name="shared", store=RedisStore(redis_server.url))
    b = RateLimiter(0.5, burst=5, name="shared", store=RedisStore(redis_server.url))
    assert [a.try_acquire() for _ in range(5)] == [True] * 5
    assert not b.try_acquire()
    wait = b.retry_after()
    assert 1.5 < wait <= 2.0  # T = 2 s, minus the few ms since the last permit
    # another name and another key are other limits
    other = RateLimiter(0.5, burst=5, name="other", store=RedisStore(redis_server.url))
    assert other.try_acquire()
    assert b.try_acquire("another-key")
    assert b.counts() == {"permitted": 1, "rejected": 2}


def test_key_layout_and_expiry(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, namespace="ns")
    limiter = RateLimiter(10, burst=2, name="api", store=store)
    assert limiter.try_acquire("user-1")
    client = redis.Redis.from_url(redis_server.url)
    assert client.keys("*") == [b"ns:ratelimit:api:user-1"]
    assert store.key("api", "user-1") == "ns:ratelimit:api:user-1"
    # the key lives only as long as its TAT is in the future (0.1 s here), plus 1 ms
    assert 0 < client.pttl("ns:ratelimit:api:user-1") <= 101
    time.sleep(0.15)
    assert client.keys("*") == []


def test_new_instance_sees_existing_state(redis_server: RedisServer) -> None:
    first = RateLimiter(0.1, burst=3, name="persist", store=RedisStore(redis_server.url))
    assert sum(first.try_acquire() for _ in range(3)) == 3
    del first
    again = RateLimiter(0.1, burst=3, name="persist", store=RedisStore(redis_server.url))
    assert not again.try_acquire()  # not reset to a full burst


def test_cost_is_atomic_in_redis(redis_server: RedisServer) -> None:
    limiter = RateLimiter(0.1, burst=4, name="cost", store=RedisStore(redis_server.url))
    assert limiter.try_acquire(cost=3)
    assert not limiter.try_acquire(cost=2)
    assert limiter.try_acquire(cost=1)
    assert not limiter.try_acquire()


_WORKER = textwrap.dedent(
    """
    import sys, time
    from amqadf_agent.resilience.rate_limit import RateLimiter
    from amqadf_agent.resilience.stores import RedisStore
    url, duration = sys.argv[1], float(sys.argv[2])
    limiter = RateLimiter(2, burst=10, name="multi", store=RedisStore(url))
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.time() < start_at:
        time.sleep(0.001)
    permitted = attempts = 0
    first = time.time()
    while time.time() < start_at + duration or attempts < 200:
        attempts += 1
        permitted += limiter.try_acquire()
    print(permitted, attempts, first, time.time())
    """
)


def test_two_processes_share_one_limit(redis_server: RedisServer) -> None:
    duration = 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, redis_server.url, repr(duration)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # both interpreters up and their limiters built (however loaded the machine), then one start
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start_at = time.time() + 0.2
    results = []
    for proc in procs:
        out, _ = proc.communicate(f"{start_at!r}\n", timeout=60)
        assert proc.returncode == 0
        permitted, attempts, first, last = out.split()
        results.append((int(permitted), int(attempts), float(first), float(last)))
    total = sum(r[0] for r in results)
    assert all(r[1] >= 200 for r in results)  # both really hammered
    # one limit: burst 10 + 2/s over the time both hammered (+1 for the window edges); two separate
    # limits would have permitted at least 2 x 10.
    window = max(r[3] for r in results) - min(r[2] for r in results)
    assert window < 4.5, results  # beyond, one limit would permit as many as two do
    assert 10 <= total <= 10 + 2 * window + 1, (results, window)


def test_fail_open_when_redis_dies_and_back_when_it_returns(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    store_clock = FakeClock(0.0)
    store = RedisStore(redis_server.url, retry_interval=2.0, clock=store_clock)
    limiter = RateLimiter(0.1, burst=2, name="failover", store=store)
    limiter.instrument(meter_provider=provider)
    assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()

    redis_server.kill()
    caplog.set_level(logging.DEBUG, logger="amqadf_agent.resilience.stores")
    # fail open: local state, a fresh burst of 2, then the local limit applies
    started = time.perf_counter()
    results = [limiter.try_acquire() for _ in range(500)]
    elapsed = time.perf_counter() - started
    assert results[:2] == [True, True] and not any(results[2:])
    assert not store.available
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "fail open" in warnings[0].getMessage()
    assert store.fallbacks() == {"ConnectionError": 500}
    assert elapsed < 0.25  # one connection attempt, then a timestamp check per call

    points = metric_points(reader, semconv.STATE_STORE_FALLBACKS.name)
    expected = frozenset(
        {semconv.ATTR_ERROR_TYPE: "ConnectionError", semconv.ATTR_STATE_STORE: "redis"}.items()
    )
    assert points == {expected: 500}

    # Redis comes back (empty: no persistence); before retry_interval the store does not try it
    redis_server.start()
    assert not limiter.try_acquire()  # still local: the local burst is spent
    assert store.fallbacks() == {"ConnectionError": 501}
    store_clock.now += 2.0
    assert limiter.try_acquire()  # Redis again (the script is loaded again after NOSCRIPT)
    assert store.available
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # shared again: another process's limiter sees what this one took
    peer = RateLimiter(0.1, burst=2, name="failover", store=RedisStore(redis_server.url))
    assert peer.try_acquire() and not peer.try_acquire()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    provider.shutdown()


def test_unreachable_from_the_start_fails_open_fast() -> None:
    from support import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.05)
    limiter = RateLimiter(1, burst=1, name="nowhere", store=store)
    assert limiter.try_acquire() and not limiter.try_acquire()
    assert sum(store.fallbacks().values()) == 2


def test_store_validation_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for kwargs, parameter in (
        ({"namespace": ""}, "namespace"),
        ({"socket_timeout": 0}, "socket_timeout"),
        ({"retry_interval": -1}, "retry_interval"),
        ({"clock": 1}, "clock"),
    ):
        with pytest.raises(ConfigError) as info:
            RedisStore("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]
        assert info.value.setting == parameter
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtraError) as missing:
        RedisStore("redis://127.0.0.1:1/0")
    assert "amqadf-agent[redis]" in str(missing.value)


def test_a_password_in_the_url_never_reaches_repr_or_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from support import free_port

    from amqadf_agent.redaction import redact_url

    assert redact_url("redis://app:s3cret-pw@cache:6379/0") == "redis://app:[secure]@cache:6379/0"
    assert redact_url("rediss://s3cret-pw@cache:6380") == "rediss://[secure]@cache:6380"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    url = f"redis://app:s3cret-pw@127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.DEBUG, logger="amqadf_agent"):
        store = RedisStore(url, socket_timeout=0.05)
        limiter = RateLimiter(10, burst=10, name="pw", store=store)
        limiter.try_acquire()  # Redis is not there: the fallback is logged
    assert "s3cret-pw" not in repr(store) and "[secure]" in repr(store)
    assert caplog.records and not any("s3cret-pw" in r.getMessage() for r in caplog.records)
