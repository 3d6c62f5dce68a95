"""RetryPolicy: backoff bounds, budget, give-up, async, signatures, metrics and span events.

Every test injects a sleep that records the delays: nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
from collections.abc import Callable
from typing import Any

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
from amqadf_agent.errors import ConfigError
from amqadf_agent.resilience import testing
from amqadf_agent.resilience.retry import RetryBudget, RetryPolicy, retry_with_policy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


def policy(clock: FakeClock, **kwargs: Any) -> RetryPolicy:
    kwargs.setdefault("random", random.Random(7))
    return RetryPolicy(sleep=clock.sleep, async_sleep=clock.async_sleep, clock=clock, **kwargs)


class Flaky:
    """Fails ``failures`` times with ``error`` then returns ``value``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, value: Any = "ok") -> None:
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return self.value


# --- delays ----------------------------------------------------------------------------------------
def test_exact_delays_without_jitter(clock: FakeClock) -> None:
    p = policy(clock, max_retries=5, initial_backoff_time=1.0, max_backoff=5.0, jitter="none")
    assert p.call(Flaky(5)) == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_fixed_delay(clock: FakeClock) -> None:
    p = policy(clock, max_retries=3, exponential_backoff=False, initial_backoff_time=0.5)
    assert p.call(Flaky(3)) == "ok"
    assert clock.sleeps == [0.5, 0.5, 0.5]


def jitter_cases(max_retries: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis cases of a backoff: a ``base`` delay, a cap ``factor`` over it, 1 to ``max_retries``
    retries and a ``seed`` for the jitter."""
    cases = given(
        base=st.floats(0.001, 10.0),
        factor=st.floats(1.0, 100.0),
        retries=st.integers(1, max_retries),
        seed=st.integers(0, 2**32),
    )
    return lambda test: settings(max_examples=200, deadline=None)(cases(test))


@jitter_cases(max_retries=80)
def test_full_jitter_within_bounds(base: float, factor: float, retries: int, seed: int) -> None:
    cap = base * factor
    p = RetryPolicy(initial_backoff_time=base, max_backoff=cap, jitter="full", random=random.Random(seed))
    for n in range(retries):
        delay = p.backoff(n)
        assert 0.0 <= delay <= min(cap, base * 2.0 ** min(n, 64))


@jitter_cases(max_retries=50)
def test_decorrelated_jitter_within_bounds(base: float, factor: float, retries: int, seed: int) -> None:
    cap = base * factor
    delays: list[float] = []
    p = RetryPolicy(
        max_retries=retries,
        initial_backoff_time=base,
        max_backoff=cap,
        jitter="decorrelated",
        random=random.Random(seed),
        sleep=delays.append,
    )
    with pytest.raises(ConnectionError):
        p.call(Flaky(retries + 1))
    assert len(delays) == retries
    previous = base
    for delay in delays:
        assert base <= delay <= min(cap, 3 * previous) * (1 + 1e-12)
        previous = delay


def test_full_jitter_through_calls_respects_cap(clock: FakeClock) -> None:
    p = policy(clock, max_retries=10, initial_backoff_time=0.1, max_backoff=1.0)
    assert p.call(Flaky(10)) == "ok"
    assert len(clock.sleeps) == 10
    for n, delay in enumerate(clock.sleeps):
        assert 0.0 <= delay <= min(1.0, 0.1 * 2**n)
    assert len(set(clock.sleeps)) > 1  # jittered, not constant


# --- give-up ----------------------------------------------------------------------------------------
def test_original_exception_reraised_with_attempts(clock: FakeClock) -> None:
    p = policy(clock, max_retries=2)
    flaky = Flaky(10, ValueError)
    with pytest.raises(ValueError, match="failure 3") as info:
        p.call(flaky)
    assert type(info.value) is ValueError
    assert flaky.calls == 3
    assert info.value.__amqadf_attempts__ == 3  # type: ignore[attr-defined]
    assert any("3 attempts" in note for note in getattr(info.value, "__notes__", []))
    assert info.value.__context__ is None  # no "during handling of the above exception" chain


def test_not_retryable_raised_at_once(clock: FakeClock) -> None:
    p = policy(clock, max_retries=3, retryable_exceptions=(ConnectionError,))
    flaky = Flaky(1, KeyError)
    with pytest.raises(KeyError):
        p.call(flaky)
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_base_exceptions_pass_through(clock: FakeClock) -> None:
    p = policy(clock, max_retries=3)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        p.call(interrupted)
    assert clock.sleeps == []


def test_retry_on_result(clock: FakeClock) -> None:
    results = iter([None, None, "value"])
    p = policy(clock, max_retries=3, retry_on_result=lambda r: r is None, jitter="none")
    assert p.call(lambda: next(results)) == "value"
    assert clock.sleeps == [1.0, 2.0]


def test_retry_on_result_gives_up_with_last_result(clock: FakeClock) -> None:
    p = policy(clock, max_retries=2, retry_on_result=lambda r: r < 0)
    assert p.call(lambda: -1) == -1
    assert len(clock.sleeps) == 2


def test_retry_after_honoured_and_capped(clock: FakeClock) -> None:
    class Throttled(Exception):
        def __init__(self, retry_after: float) -> None:
            super().__init__("throttled")
            self.retry_after = retry_after

    waits = iter([7.0, 100.0])

    def throttled() -> str:
        wait = next(waits, None)
        if wait is not None:
            raise Throttled(wait)
        return "ok"

    p = policy(clock, max_retries=3, initial_backoff_time=0.1, max_backoff=30.0)
    assert p.call(throttled) == "ok"
    # retry_after replaces the backoff, capped by max_backoff (the longest single wait).
    assert clock.sleeps == [7.0, 30.0]


def test_max_elapsed_time(clock: FakeClock) -> None:
    p = policy(clock, max_retries=100, jitter="none", initial_backoff_time=1.0, max_elapsed_time=10.0)
    flaky = Flaky(1000)
    with pytest.raises(ConnectionError) as info:
        p.call(flaky)
    # 1 + 2 + 4 = 7 s waited; the next wait (8 s) would end at 15 s > 10 s, so it is not made.
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert clock.now <= 10.0
    assert info.value.__amqadf_attempts__ == 4  # type: ignore[attr-defined]


def test_max_elapsed_time_counts_the_first_attempt(clock: FakeClock) -> None:
    # A first attempt that itself takes 9.5 s of a 10 s limit leaves no room for even the first
    # 1 s wait: no retry (counted from the first failure instead, 1 + 2 + 4 s of retries would fit).
    # Sync, decorated and async alike.
    calls = []

    def slow_then_fast() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            clock.now += 9.5
        raise ConnectionError("down")

    async def slow_then_fast_async() -> None:
        slow_then_fast()

    p = policy(clock, max_retries=5, jitter="none", initial_backoff_time=1.0, max_elapsed_time=10.0)
    for run in (
        lambda: p.call(slow_then_fast),
        retry_with_policy(p)(slow_then_fast),
        lambda: asyncio.run(retry_with_policy(p)(slow_then_fast_async)()),
    ):
        clock.now, clock.sleeps = 0.0, []
        calls.clear()
        with pytest.raises(ConnectionError) as info:
            run()
        assert clock.sleeps == [], clock.sleeps
        assert info.value.__amqadf_attempts__ == 1  # type: ignore[attr-defined]
    # A quick first attempt leaves the whole limit to the retries, as before.
    clock.now, clock.sleeps = 0.0, []
    with pytest.raises(ConnectionError):
        p.call(Flaky(1000))
    assert clock.sleeps == [1.0, 2.0, 4.0]


# --- budget ---------------------------------------------------------------------------------------
def test_budget_caps_retries_of_100_concurrent_clients() -> None:
    # 100 threads call through one policy at once during an outage; each may retry 3 times, so
    # without a budget the dependency sees 400 calls. The shared budget lets about 5 retries through.
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    p = RetryPolicy(
        max_retries=3,
        budget=budget,
        initial_backoff_time=0.001,
        retryable_exceptions=(ConnectionError,),
        sleep=lambda _s: None,  # no real waiting; the threads still interleave
    )
    calls = 0
    lock = threading.Lock()
    start = threading.Barrier(100)

    def failing() -> None:
        nonlocal calls
        with lock:
            calls += 1
        raise ConnectionError("down")

    def client() -> None:
        start.wait()
        with pytest.raises(ConnectionError):
            p.call(failing)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls - 100 <= 5, calls  # retries beyond the 100 first attempts
    assert not budget.retry_allowed()


def test_budget_caps_retries_in_an_outage_and_recovers(clock: FakeClock) -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    p = policy(clock, max_retries=3, budget=budget, initial_backoff_time=0.01)
    failing = Flaky(10**9)
    for _ in range(100):  # 100 clients, each calling once during the outage
        with pytest.raises(ConnectionError):
            p.call(failing)
    retries = failing.calls - 100
    assert retries <= 5  # without a budget: 100 * 3 = 300
    assert not budget.retry_allowed()
    assert budget.tokens == 0
    for _ in range(70):  # the service is back: successes refill the bucket
        p.call(lambda: "ok")
    assert budget.retry_allowed()
    recovering = Flaky(1)
    assert p.call(recovering) == "ok"
    assert recovering.calls == 2  # retried again


def test_budget_tokens_never_exceed_max() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=1)
    assert budget.on_failure()
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 4


# --- async ------------------------------------------------------------------------------------------
def test_async_retried_with_injected_async_sleep(clock: FakeClock) -> None:
    p = policy(clock, max_retries=3, jitter="none", initial_backoff_time=0.5)
    calls = 0

    @retry_with_policy(p)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(21)) == 42
    assert clock.sleeps == [0.5, 1.0]


def test_call_async_gives_up_with_original(clock: FakeClock) -> None:
    p = policy(clock, max_retries=1)

    async def broken() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope") as info:
        asyncio.run(p.call_async(broken))
    assert info.value.__amqadf_attempts__ == 2  # type: ignore[attr-defined]


# --- decorator --------------------------------------------------------------------------------------
def test_signature_and_name_preserved(clock: FakeClock) -> None:
    p = policy(clock)

    def original(a: int, b: str = "x", *, c: float = 1.0) -> str:
        """Doc."""
        return f"{a}{b}{c}"

    wrapped = retry_with_policy(p)(original)
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Doc."
    assert wrapped(1, "y", c=2.0) == "1y2.0"


def test_brief_example(clock: FakeClock) -> None:
    retry_policy = policy(
        clock,
        max_retries=3,
        exponential_backoff=True,
        initial_backoff_time=1.0,
        retryable_exceptions=(ValueError, ConnectionError),
    )
    flaky = Flaky(2, ValueError, "done")

    @retry_with_policy(retry_policy)
    def operation() -> str:
        return str(flaky())

    assert operation() == "done"
    assert len(clock.sleeps) == 2


# --- testing helper ---------------------------------------------------------------------------------
def test_no_waiting_skips_sleep_and_restores(clock: FakeClock) -> None:
    p = policy(clock, max_retries=3)
    assert not testing.is_testing()
    with testing.no_waiting():
        assert p.call(Flaky(3)) == "ok"
        with testing.no_waiting():
            pass
        assert testing.is_testing()  # the inner block restored "on", not "off"
    assert clock.sleeps == []
    assert not testing.is_testing()
    previous = testing.set_testing(True)
    try:
        assert previous is False
        assert testing.is_testing()
    finally:
        testing.set_testing(previous)


# --- validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"initial_backoff_time": 0}, "initial_backoff_time"),
        ({"initial_backoff_time": -1.0}, "initial_backoff_time"),
        ({"max_backoff": 0}, "max_backoff"),
        ({"initial_backoff_time": 2.0, "max_backoff": 1.0}, "max_backoff"),
        ({"max_elapsed_time": -1}, "max_elapsed_time"),
        ({"jitter": "random"}, "jitter"),
        ({"retryable_exceptions": (ValueError, "x")}, "retryable_exceptions"),
    ],
)
def test_bad_parameters_named(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)
    assert info.value.setting == parameter
    assert str(info.value).startswith(parameter)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"token_ratio": 0}, "token_ratio"),
        ({"max_tokens": 1, "token_ratio": 2}, "token_ratio"),
    ],
)
def test_bad_budget_named(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryBudget(**kwargs)
    assert info.value.setting == parameter


# --- telemetry --------------------------------------------------------------------------------------
def test_metrics_through_sdk(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        p = policy(clock, max_retries=2, name="payments", retryable_exceptions=(ConnectionError,))
        p.instrument(meter_provider=provider)
        p.instrument(meter_provider=provider)  # idempotent
        p.call(lambda: 1)  # successful_without_retry
        p.call(Flaky(1))  # successful_with_retry, 1 retry
        with pytest.raises(ConnectionError):
            p.call(Flaky(10))  # failed_with_retry (exhausted), 2 retries
        with pytest.raises(KeyError):
            p.call(Flaky(1, KeyError))  # failed_without_retry (not_retryable)

        calls = metric_points(reader, semconv.RETRY_CALLS.name)
        policy_attr = (semconv.ATTR_RETRY_POLICY, "payments")

        def key(k: str, v: str) -> frozenset[tuple[str, Any]]:
            return frozenset({policy_attr, (k, v)})

        assert calls[key(semconv.ATTR_RETRY_KIND, "successful_without_retry")] == 1
        assert calls[key(semconv.ATTR_RETRY_KIND, "successful_with_retry")] == 1
        assert calls[key(semconv.ATTR_RETRY_KIND, "failed_with_retry")] == 1
        assert calls[key(semconv.ATTR_RETRY_KIND, "failed_without_retry")] == 1
        retries = metric_points(reader, semconv.RETRY_RETRIES.name)
        assert retries == {key(semconv.ATTR_ERROR_TYPE, "ConnectionError"): 3}
        give_ups = metric_points(reader, semconv.RETRY_GIVE_UPS.name)
        assert give_ups == {
            key(semconv.ATTR_RETRY_STOP, "exhausted"): 1,
            key(semconv.ATTR_RETRY_STOP, "not_retryable"): 1,
        }
    finally:
        provider.shutdown()


def test_decorated_functions_counted_under_their_qualname(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        p = policy(clock)
        p.instrument(provider)

        @retry_with_policy(p)
        def lookup() -> int:
            return 1

        lookup()
        lookup()
        calls = metric_points(reader, semconv.RETRY_CALLS.name)
        name = lookup.__qualname__
        assert (
            calls[
                frozenset(
                    {
                        (semconv.ATTR_RETRY_POLICY, name),
                        (semconv.ATTR_RETRY_KIND, "successful_without_retry"),
                    }
                )
            ]
            == 2
        )
    finally:
        provider.shutdown()


def test_retry_span_events(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    p = policy(clock, max_retries=1, name="db", jitter="none", initial_backoff_time=0.25)
    span = tracer.start_span("op")
    with trace.use_span(span, end_on_exit=True), pytest.raises(ConnectionError):
        p.call(Flaky(5))
    (finished,) = exporter.get_finished_spans()
    events = {e.name: dict(e.attributes or {}) for e in finished.events}
    assert events[semconv.EVENT_RETRY] == {
        semconv.ATTR_RETRY_POLICY: "db",
        semconv.ATTR_RETRY_ATTEMPT: 1,
        semconv.ATTR_RETRY_DELAY: 0.25,
        semconv.ATTR_ERROR_TYPE: "ConnectionError",
    }
    give_up = events[semconv.EVENT_RETRY_GIVE_UP]
    assert give_up[semconv.ATTR_RETRY_STOP] == "exhausted"
    assert give_up[semconv.ATTR_ERROR_TYPE] == "ConnectionError"


def test_no_events_on_success(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    p = policy(clock)
    with trace.use_span(tracer_provider.get_tracer("t").start_span("op"), end_on_exit=True):
        p.call(lambda: None)
    (finished,) = exporter.get_finished_spans()
    assert list(finished.events) == []


def test_max_elapsed_time_set_after_decorating_is_honoured(clock: FakeClock) -> None:
    p = policy(clock, max_retries=5, jitter="none", initial_backoff_time=1.0)
    wrapped = retry_with_policy(p)(Flaky(1000))
    p.max_elapsed_time = 3.5  # after the decorator was applied
    clock.now = 1000.0  # a clock far from zero: the limit counts from this call's start
    with pytest.raises(ConnectionError):
        wrapped()
    assert clock.sleeps == [1.0, 2.0]  # 1 + 2 = 3 s fits in 3.5 s, 4 more would not
