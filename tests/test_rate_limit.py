"""RateLimiter (in memory): GCRA exactness, the window bound, blocking/async acquire, decorator,
telemetry and validation. An injected clock and sleep: nothing here waits for real."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import metric_points

from amqadf_agent import semconv
from amqadf_agent.errors import AmqadfError, ConfigError
from amqadf_agent.resilience.rate_limit import ATTR_RETRY_AFTER, RateLimitedError, RateLimiter
from amqadf_agent.resilience.stores import MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


def limiter_with(clock: FakeClock, rate: float, burst: float | None = None, **kw: object) -> RateLimiter:
    return RateLimiter(
        rate,
        burst,
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        **kw,  # type: ignore[arg-type]
    )


# --- GCRA exactness ----------------------------------------------------------------------------------
def test_burst_then_steady_rate(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=4, burst=3)  # T = 0.25 s: exact in binary floating point
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after() == 0.25
    clock.now += 0.25
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    # steady state: one every 0.25 s, never two
    for _ in range(10):
        clock.now += 0.25
        assert limiter.try_acquire() is True
        assert limiter.retry_after() == 0.25
    # idle for a long time: the burst is back, not more
    clock.now += 60
    assert sum(limiter.try_acquire() for _ in range(10)) == 3
    assert limiter.counts() == {"permitted": 3 + 1 + 10 + 3, "rejected": 1 + 1 + 1 + 10 + 7}


def test_retry_after_is_exact_mid_interval(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=2, burst=1)  # T = 0.5
    assert limiter.try_acquire()
    clock.now += 0.125
    assert limiter.retry_after() == 0.375
    clock.now += 0.375
    assert limiter.retry_after() == 0.0  # permitted exactly at the boundary


def test_default_burst_is_rate_or_one(clock: FakeClock) -> None:
    assert limiter_with(clock, rate=8).burst == 8
    assert limiter_with(clock, rate=0.5).burst == 1
    slow = limiter_with(clock, rate=0.5)
    assert slow.try_acquire() and not slow.try_acquire()
    assert slow.retry_after() == 2.0


def test_keys_are_independent_and_cost_counts(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1, burst=4)
    assert limiter.try_acquire("a", cost=4)
    assert not limiter.try_acquire("a")
    assert limiter.try_acquire("b", cost=3)
    assert not limiter.try_acquire("b", cost=2)
    assert limiter.try_acquire("b", cost=1)
    assert limiter.retry_after("b", cost=2) == 2.0


def test_memory_store_is_the_default_state(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1, burst=1, store=MemoryStore())
    assert limiter.try_acquire() and not limiter.try_acquire()
    assert isinstance(limiter.store, MemoryStore)


def test_expired_keys_are_pruned(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1000, burst=1)
    for i in range(5000):
        limiter.try_acquire(f"k{i}")
    clock.now += 1
    for i in range(5000):
        limiter.try_acquire(f"j{i}")
    assert len(limiter._tat) < 6000  # the k* keys were swept, not kept for ever


def test_threads_never_exceed_the_burst() -> None:
    limiter = RateLimiter(0.001, burst=50)  # real clock; refill negligible during the test
    permitted: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        got = [limiter.try_acquire() for _ in range(200)]
        with lock:
            permitted.extend(got)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(permitted) == 50
    assert limiter.counts() == {"permitted": 50, "rejected": 1600 - 50}


# --- the window bound (property) ---------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0]),
    burst=st.integers(min_value=1, max_value=10),
    gaps=st.lists(st.floats(min_value=0, max_value=2.0, allow_nan=False), min_size=1, max_size=120),
    costs=st.lists(st.integers(min_value=1, max_value=3), min_size=120, max_size=120),
)
def test_permitted_in_any_window_is_bounded(
    rate: float, burst: int, gaps: list[float], costs: list[int]
) -> None:
    clock = FakeClock(0.0)
    limiter = limiter_with(clock, rate=rate, burst=burst)
    granted: list[tuple[float, int]] = []
    for gap, cost in zip(gaps, costs, strict=False):
        clock.now += gap
        cost = min(cost, burst)
        if limiter.try_acquire(cost=cost):
            granted.append((clock.now, cost))
    # every window [t_i, t_j] between two permitted requests: units <= burst + rate * length
    for i in range(len(granted)):
        units = 0
        for j in range(i, len(granted)):
            units += granted[j][1]
            length = granted[j][0] - granted[i][0]
            assert units <= burst + rate * length + 1e-6, (i, j, units, length)


# --- blocking and async acquire ----------------------------------------------------------------------
def test_acquire_sleeps_exactly_what_is_needed(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=4, burst=2)
    for _ in range(5):
        limiter.acquire()
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert clock.now == 100.75
    assert limiter.counts() == {"permitted": 5, "rejected": 0}


def test_acquire_timeout_raises_without_sleeping(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1, burst=1, name="api")
    limiter.acquire()
    with pytest.raises(RateLimitedError) as info:
        limiter.acquire(timeout=0.5)
    assert info.value.retry_after == 1.0
    assert info.value.limiter == "api"
    assert clock.sleeps == []
    limiter.acquire(timeout=1.0)  # a wait of exactly the timeout is allowed
    assert clock.sleeps == [1.0]
    assert limiter.counts() == {"permitted": 2, "rejected": 1}


def test_acquire_async(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=2, burst=1)

    async def main() -> None:
        for _ in range(3):
            await limiter.acquire_async("k")
        with pytest.raises(RateLimitedError) as info:
            await limiter.acquire_async("k", timeout=0.25)
        assert info.value.retry_after == 0.5

    asyncio.run(main())
    assert clock.sleeps == [0.5, 0.5]


def test_acquire_async_real_loop_default_sleep() -> None:
    limiter = RateLimiter(200, burst=1)

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire_async() for _ in range(4)))

    asyncio.run(main())  # ~15 ms of real waiting
    assert limiter.counts()["permitted"] == 4


def test_no_waiting_permits_at_once_but_keeps_the_timeout(clock: FakeClock) -> None:
    from amqadf_agent.resilience.testing import is_testing, no_waiting

    limiter = limiter_with(clock, rate=1, burst=1)
    with no_waiting():
        for _ in range(3):
            limiter.acquire()  # would sleep 1 s each time after the first
        asyncio.run(limiter.acquire_async())
        with pytest.raises(RateLimitedError):  # a wait beyond the timeout is still refused
            limiter.acquire(timeout=0.5)
    assert clock.sleeps == [] and clock.now == 100.0
    assert limiter.counts() == {"permitted": 4, "rejected": 1}
    assert not is_testing()
    limiter.acquire()  # testing mode is off again: this one waits
    assert clock.sleeps != []


# --- decorator ---------------------------------------------------------------------------------------
def test_decorator_raises_with_retry_after(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=10, burst=2, name="deco")

    @limiter.limit()
    def work(x: int, *, scale: int = 1) -> int:
        """Doc."""
        return x * scale

    assert work(2, scale=3) == 6 and work(1) == 1
    with pytest.raises(RateLimitedError) as info:
        work(1)
    assert info.value.retry_after == pytest.approx(0.1)
    assert info.value.key == "default"
    assert isinstance(info.value, AmqadfError)
    assert "deco" in str(info.value)
    assert work.__name__ == "work" and work.__doc__ == "Doc."
    assert str(inspect.signature(work)) == "(x: 'int', *, scale: 'int' = 1) -> 'int'"


def test_decorator_key_function_and_async(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1, burst=1)

    @limiter.limit(key=lambda user: user)
    async def handle(user: str) -> str:
        return user.upper()

    async def main() -> None:
        assert await handle("a") == "A"
        assert await handle("b") == "B"
        with pytest.raises(RateLimitedError) as info:
            await handle("a")
        assert info.value.key == "a" and info.value.retry_after == 1.0

    asyncio.run(main())
    assert inspect.iscoroutinefunction(handle)


# --- telemetry ---------------------------------------------------------------------------------------
def test_requests_counter(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    limiter = limiter_with(clock, rate=1, burst=2, name="metered")
    limiter.instrument(meter_provider=provider)
    limiter.instrument(meter_provider=provider)  # idempotent
    for _ in range(5):
        limiter.try_acquire()
    points = metric_points(reader, semconv.RATE_LIMITER_REQUESTS.name)
    name, outcome = semconv.ATTR_RATE_LIMITER_NAME, semconv.ATTR_RATE_LIMITER_OUTCOME
    assert points == {
        frozenset({(name, "metered"), (outcome, "permitted")}): 2,
        frozenset({(name, "metered"), (outcome, "rejected")}): 3,
    }
    provider.shutdown()


def test_rejection_span_event(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    limiter = limiter_with(clock, rate=4, burst=1, name="evented")
    with trace.use_span(tracer_provider.get_tracer("t").start_span("op"), end_on_exit=True):
        assert limiter.try_acquire()
        assert not limiter.try_acquire()
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == semconv.EVENT_RATE_LIMITED
    assert dict(event.attributes or {}) == {semconv.ATTR_RATE_LIMITER_NAME: "evented", ATTR_RETRY_AFTER: 0.25}


# --- validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": 1, "burst": 0.5}, "burst"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "name": ""}, "name"),
        ({"rate": 1, "store": object()}, "store"),
        ({"rate": 1, "clock": 3}, "clock"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimiter(**kwargs)  # type: ignore[arg-type]
    assert info.value.setting == parameter
    assert str(info.value).startswith(parameter)


def test_bad_cost_and_timeout_are_named(clock: FakeClock) -> None:
    limiter = limiter_with(clock, rate=1, burst=3)
    for call in (
        lambda: limiter.try_acquire(cost=4),
        lambda: limiter.try_acquire(cost=0),
        lambda: limiter.try_acquire(cost=-1),
        lambda: limiter.acquire(cost=5),
        lambda: limiter.limit(cost=10),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.setting == "cost"
    with pytest.raises(ConfigError) as info:
        limiter.acquire(timeout=-1)
    assert info.value.setting == "timeout"
    with pytest.raises(ConfigError) as info:
        limiter.limit(key=3)  # type: ignore[arg-type]
    assert info.value.setting == "key"
