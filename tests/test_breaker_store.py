"""CircuitBreaker(store=RedisStore(url)) against a real ``redis-server`` on a loopback port: one
breaker across clients and processes, state kept across instances, half-open probes capped across
instances, fail open when the server is killed mid-test and shared again when it returns, and a
closed-state success path that does not talk to Redis per call."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest
import redis
from support.clock import FakeClock
from support.redis_server import RedisServer

from amqadf_agent.errors import CircuitOpenError, ConfigError
from amqadf_agent.resilience.circuit_breaker import CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, CircuitBreaker
from amqadf_agent.resilience.stores import MemoryStore, RedisStore


def boom() -> None:
    raise ValueError("boom")


def fail(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ValueError):
            breaker.call(boom)


def ok() -> str:
    return "ok"


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
        stats.get("cmdstat_eval", {}).get("calls", 0)
    )


def test_failures_through_one_trip_both(redis_server: RedisServer) -> None:
    a = CircuitBreaker(3, timeout=30, name="shared", store=RedisStore(redis_server.url), sync_interval=0.05)
    b = CircuitBreaker(3, timeout=30, name="shared", store=RedisStore(redis_server.url), sync_interval=0.05)
    assert a.call(ok) == b.call(ok) == "ok"
    fail(a, 2)
    fail(b, 1)  # the count is shared: 2 + 1 reaches the threshold
    assert b.state == OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.state == OPEN
    time.sleep(0.06)  # a sees it at its next sync (at most sync_interval later)
    with pytest.raises(CircuitOpenError):
        a.call(ok)
    assert a.state == OPEN
    # key layout: one hash per breaker name, in the store's namespace
    client = redis.Redis.from_url(redis_server.url)
    assert client.keys("*") == [b"amqadf:breaker:shared"]
    assert client.hget("amqadf:breaker:shared", "state") == b"open"
    # another name is another breaker
    other = CircuitBreaker(3, name="other", store=RedisStore(redis_server.url))
    assert other.call(ok) == "ok"


def test_success_resets_the_shared_count(redis_server: RedisServer) -> None:
    a = CircuitBreaker(3, name="reset", store=RedisStore(redis_server.url))
    b = CircuitBreaker(3, name="reset", store=RedisStore(redis_server.url))
    fail(a, 2)
    assert a.call(ok) == "ok"  # known non-zero: one round trip resets it
    fail(b, 2)
    assert b.state == CLOSED and a.state == CLOSED
    fail(a, 1)  # 3 in a row now
    assert a.state == OPEN


def test_new_instance_sees_an_open_breaker(redis_server: RedisServer) -> None:
    first = CircuitBreaker(2, timeout=30, name="persist", store=RedisStore(redis_server.url))
    fail(first, 2)
    del first
    again = CircuitBreaker(2, timeout=30, name="persist", store=RedisStore(redis_server.url))
    assert again.state == OPEN  # loaded, not reset
    with pytest.raises(CircuitOpenError) as info:
        again.call(ok)
    assert 25 < info.value.retry_after <= 30


def test_manual_modes_are_shared(redis_server: RedisServer) -> None:
    a = CircuitBreaker(2, name="modes", store=RedisStore(redis_server.url), sync_interval=0.05)
    b = CircuitBreaker(2, name="modes", store=RedisStore(redis_server.url), sync_interval=0.05)
    a.force_open()
    time.sleep(0.06)
    assert b.state == FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    b.reset()
    time.sleep(0.06)
    assert a.call(ok) == "ok" and a.state == CLOSED


def test_half_open_probes_capped_across_instances(redis_server: RedisServer) -> None:
    kwargs = {"timeout": 0.1, "half_open_max_calls": 3, "name": "probes", "sync_interval": 0.05}
    a = CircuitBreaker(1, store=RedisStore(redis_server.url), **kwargs)  # type: ignore[arg-type]
    b = CircuitBreaker(1, store=RedisStore(redis_server.url), **kwargs)  # type: ignore[arg-type]
    fail(a, 1)
    time.sleep(0.15)  # the open timeout has ended; both instances must ask Redis
    admitted: list[CircuitBreaker] = []
    rejected = 0
    for _ in range(5):
        for breaker in (a, b):
            try:
                breaker.__enter__()
            except CircuitOpenError as exc:
                assert exc.state == HALF_OPEN
                rejected += 1
            else:
                admitted.append(breaker)
    assert len(admitted) == 3 and rejected == 7
    assert {id(x) for x in admitted} == {id(a), id(b)}  # both took part
    # every probe succeeds: the shared breaker closes, and both see it
    for breaker in admitted:
        breaker.__exit__(None, None, None)
    assert a.state == CLOSED
    time.sleep(0.06)
    assert b.state == CLOSED and b.call(ok) == "ok"


def test_probe_failure_reopens_for_all(redis_server: RedisServer) -> None:
    kwargs = {"timeout": 0.1, "half_open_max_calls": 2, "name": "reopen", "sync_interval": 0.05}
    a = CircuitBreaker(1, store=RedisStore(redis_server.url), **kwargs)  # type: ignore[arg-type]
    b = CircuitBreaker(1, store=RedisStore(redis_server.url), **kwargs)  # type: ignore[arg-type]
    fail(a, 1)
    time.sleep(0.15)
    fail(b, 1)  # b's probe fails: open again
    with pytest.raises(CircuitOpenError) as info:
        a.call(ok)
    assert info.value.state == OPEN


_WORKER = textwrap.dedent(
    """
    import sys
    from amqadf_agent.resilience.circuit_breaker import CircuitBreaker
    from amqadf_agent.resilience.stores import RedisStore
    url, mode = sys.argv[1], sys.argv[2]
    breaker = CircuitBreaker(3, timeout=30, name="procs", store=RedisStore(url))
    if mode == "trip":
        for _ in range(3):
            try:
                breaker.call(lambda: 1 / 0)
            except ZeroDivisionError:
                pass
    print(breaker.state)
    """
)


def _run_worker(url: str, mode: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, url, mode], capture_output=True, text=True, timeout=20, check=True
    )
    return out.stdout.strip()


def test_two_processes_share_one_breaker(redis_server: RedisServer) -> None:
    here = CircuitBreaker(3, timeout=30, name="procs", store=RedisStore(redis_server.url), sync_interval=0.1)
    assert here.call(ok) == "ok"
    assert _run_worker(redis_server.url, "state") == "closed"
    assert _run_worker(redis_server.url, "trip") == "open"  # another process trips it
    time.sleep(0.1)  # at most sync_interval until this process sees it
    with pytest.raises(CircuitOpenError):
        here.call(ok)
    assert _run_worker(redis_server.url, "state") == "open"  # and a third process loads it


def test_fail_open_when_redis_dies_and_shared_again_when_it_returns(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    store_a = RedisStore(redis_server.url, retry_interval=2.0, clock=clock, socket_timeout=0.1)
    store_b = RedisStore(redis_server.url, retry_interval=2.0, clock=clock, socket_timeout=0.1)
    a = CircuitBreaker(3, timeout=30, name="outage", store=store_a, clock=clock, sync_interval=0.5)
    b = CircuitBreaker(3, timeout=30, name="outage", store=store_b, clock=clock, sync_interval=0.5)
    fail(a, 1)

    redis_server.kill()
    caplog.set_level(logging.DEBUG, logger="amqadf_agent.resilience.stores")
    clock.now += 1.0  # both must sync: they find Redis down and go on locally
    assert [a.call(ok) for _ in range(50)] == ["ok"] * 50
    assert [b.call(ok) for _ in range(50)] == ["ok"] * 50
    assert not store_a.available and not store_b.available
    fail(a, 3)  # local state: a trips on its own ...
    assert a.state == OPEN
    with pytest.raises(CircuitOpenError):
        a.call(ok)
    assert b.call(ok) == "ok"  # ... b, alone too, does not know
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("fail open" in w.getMessage() for w in warnings)  # one per store
    assert sum(store_a.fallbacks().values()) >= 4 and set(store_a.fallbacks()) == {"ConnectionError"}
    assert sum(store_b.fallbacks().values()) >= 1

    # Redis returns (empty); after retry_interval both are shared again
    redis_server.start()
    clock.now += 2.5
    a.reset()  # written to the (new) hash
    assert a.state == CLOSED and store_a.available
    assert b.call(ok) == "ok" and store_b.available
    fail(b, 3)  # shared again: b's failures open the breaker for a
    clock.now += 0.6  # (seen by a at its next sync)
    with pytest.raises(CircuitOpenError):
        a.call(ok)
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_closed_success_path_does_not_hit_redis_per_call(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    breaker = CircuitBreaker(5, name="hot", store=RedisStore(redis_server.url), sync_interval=0.01)
    local = CircuitBreaker(5, name="hot-local")
    calls = 20_000
    before = evalsha_calls(client)
    started = time.perf_counter()
    for _ in range(calls):
        breaker.call(ok)
    shared_ns = (time.perf_counter() - started) / calls * 1e9
    scripts = evalsha_calls(client) - before
    started = time.perf_counter()
    for _ in range(calls):
        local.call(ok)
    local_ns = (time.perf_counter() - started) / calls * 1e9
    print(
        f"\nclosed success path: shared {shared_ns:.0f} ns/call, local {local_ns:.0f} ns/call, "
        f"{scripts} Redis scripts for {calls} calls"
    )
    assert scripts <= calls // 100  # one read per sync_interval (10 ms here), not one per call


def test_a_local_window_trip_opens_the_shared_breaker(redis_server: RedisServer) -> None:
    kwargs = {"name": "window", "sync_interval": 0.05, "timeout": 30}
    a = CircuitBreaker(
        None,
        failure_rate=0.5,
        sliding_window_size=4,
        minimum_calls=4,
        store=RedisStore(redis_server.url),
        **kwargs,  # type: ignore[arg-type]
    )
    b = CircuitBreaker(5, store=RedisStore(redis_server.url), **kwargs)  # type: ignore[arg-type]
    assert a.call(ok) == a.call(ok) == "ok"
    fail(a, 2)  # 2 of 4 failed: 50 % trips a's window, and the trip is written to Redis
    assert a.state == OPEN
    time.sleep(0.06)
    with pytest.raises(CircuitOpenError):
        b.call(ok)


def test_store_parameter_validation() -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(store=object())  # type: ignore[arg-type]
    assert info.value.setting == "store"
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(sync_interval=0)
    assert info.value.setting == "sync_interval"
    memory = MemoryStore()
    breaker = CircuitBreaker(1, store=memory)
    assert breaker.store is memory and breaker.call(ok) == "ok"
    fail(breaker, 1)
    assert breaker.state == OPEN
