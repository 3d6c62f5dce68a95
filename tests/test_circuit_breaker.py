"""CircuitBreaker: states, tripping rules, modes, concurrency of probes, telemetry (fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import collect_points

from amqadf_agent import semconv
from amqadf_agent.errors import AmqadfError, ConfigError
from amqadf_agent.resilience.circuit_breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError

WAIT = 10.0  # seconds an event wait may take before the test fails (never reached when it passes)


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> None:
    raise Boom("down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(boom)


def rejected(breaker: CircuitBreaker) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    return info.value


# --- the breaker against a reference model ----------------------------------------------------------
THRESHOLD, TIMEOUT, PROBES = 3, 10.0, 2


class BreakerModel(RuleBasedStateMachine):
    """Consecutive-failure mode, one call at a time: the model predicts state and admission."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.breaker = CircuitBreaker(THRESHOLD, TIMEOUT, PROBES, clock=self.clock)
        self.state = "closed"
        self.consecutive = 0
        self.open_until = 0.0
        self.probe_successes = 0

    def effective(self) -> str:
        if self.state == "open" and self.clock.now >= self.open_until:
            self.state, self.probe_successes = "half_open", 0
        return self.state

    def trip(self) -> None:
        self.state, self.open_until, self.consecutive = "open", self.clock.now + TIMEOUT, 0

    @rule(succeed=st.booleans())
    def call(self, succeed: bool) -> None:
        state = self.effective()
        if state in ("open", "forced_open"):
            with pytest.raises(CircuitOpenError) as info:
                self.breaker.call(ok if succeed else boom)
            expected = math.inf if state == "forced_open" else self.open_until - self.clock.now
            assert info.value.retry_after == expected
            return
        if succeed:
            assert self.breaker.call(ok) == "ok"
        else:
            with pytest.raises(Boom):
                self.breaker.call(boom)
        if state == "closed":
            self.consecutive = 0 if succeed else self.consecutive + 1
            if self.consecutive >= THRESHOLD:
                self.trip()
        elif not succeed:  # half-open probe failed
            self.trip()
        else:
            self.probe_successes += 1
            if self.probe_successes >= PROBES:
                self.state, self.consecutive = "closed", 0

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.state, self.consecutive = "closed", 0

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        self.state = "forced_open"

    @invariant()
    def same_state(self) -> None:
        assert self.breaker.state == self.effective()


BreakerModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBreakerModel = BreakerModel.TestCase


# --- half-open: an exact cap on concurrent probes --------------------------------------------------
def half_open_breaker(probes: int = 3) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, timeout=5.0, half_open_max_calls=probes, clock=clock)
    fail(breaker)
    clock.advance(5.0)
    assert breaker.state == "half_open"
    return breaker, clock


def test_threads_and_tasks_admit_exactly_half_open_max_calls_probes() -> None:
    breaker, _ = half_open_breaker(probes=3)
    lock = threading.Lock()
    tally = {"in_flight": 0, "max_in_flight": 0, "entered": 0, "rejected": 0}
    release = threading.Event()
    changed = threading.Condition(lock)

    def enter() -> None:
        with lock:
            tally["entered"] += 1
            tally["in_flight"] += 1
            tally["max_in_flight"] = max(tally["max_in_flight"], tally["in_flight"])
            changed.notify_all()

    def leave() -> None:
        with lock:
            tally["in_flight"] -= 1

    def reject() -> None:
        with lock:
            tally["rejected"] += 1
            changed.notify_all()

    def probe() -> str:
        enter()
        assert release.wait(WAIT)
        leave()
        return "ok"

    async def async_probe() -> str:
        enter()
        while not release.is_set():  # held in flight until the main thread releases every probe
            await asyncio.sleep(0.001)
        leave()
        return "ok"

    start = threading.Barrier(17)  # 16 threads + the asyncio thread start together

    def thread_main() -> None:
        start.wait(WAIT)
        try:
            breaker.call(probe)
        except CircuitOpenError as exc:
            assert exc.retry_after == 0.0 and exc.state == "half_open"
            reject()

    async def task_main() -> None:
        try:
            await breaker.call_async(async_probe)
        except CircuitOpenError:
            reject()

    async def tasks_main() -> None:
        await asyncio.gather(*(task_main() for _ in range(200)))

    def loop_main() -> None:
        start.wait(WAIT)
        asyncio.run(tasks_main())

    workers = [threading.Thread(target=thread_main) for _ in range(16)]
    workers.append(threading.Thread(target=loop_main))
    for w in workers:
        w.start()
    with changed:  # every one of the 216 callers is either a probe held in flight or rejected
        assert changed.wait_for(lambda: tally["entered"] + tally["rejected"] == 216, WAIT)
        assert tally["entered"] == 3 and tally["in_flight"] == 3
        assert tally["rejected"] == 213
    release.set()
    for w in workers:
        w.join(WAIT)
    assert tally["max_in_flight"] == 3
    assert breaker.state == "closed"  # three successful probes close the breaker
    assert breaker.counts()["rejected"] == 213


def test_asyncio_tasks_alone_admit_exactly_the_cap_and_a_failed_probe_reopens() -> None:
    breaker, _ = half_open_breaker(probes=2)
    entered = 0

    async def main() -> tuple[int, int]:
        nonlocal entered
        gate = asyncio.Event()

        async def probe() -> None:
            nonlocal entered
            entered += 1
            await gate.wait()
            raise Boom("still down")

        async def one() -> str:
            try:
                await breaker.call_async(probe)
            except CircuitOpenError:
                return "rejected"
            except Boom:
                return "failed"
            return "passed"

        tasks = [asyncio.create_task(one()) for _ in range(200)]
        while sum(t.done() for t in tasks) < 198:
            await asyncio.sleep(0)
        assert entered == 2
        gate.set()
        results = await asyncio.gather(*tasks)
        return results.count("rejected"), results.count("failed")

    assert asyncio.run(main()) == (198, 2)
    assert breaker.state == "open"


# --- no lock around the user's function ------------------------------------------------------------
@contextlib.contextmanager
def held_in_a_call(breaker: CircuitBreaker) -> Iterator[threading.Thread]:
    """A successful call through ``breaker`` on another thread, held inside the function until the
    block ends; yields that thread."""
    inside, release = threading.Event(), threading.Event()

    def blocking() -> str:
        inside.set()
        assert release.wait(WAIT)
        return "ok"

    first = threading.Thread(target=breaker.call, args=(blocking,))
    first.start()
    assert inside.wait(WAIT)
    try:
        yield first
    finally:
        release.set()
        first.join(WAIT)


@pytest.mark.parametrize(
    "options",
    [
        {},  # the lock-free closed path
        {"failure_rate": 0.5, "minimum_calls": 2},  # the windowed path takes the lock
        {"slow_call_duration": 1.0, "slow_call_rate": 0.5, "sliding_window_type": "time"},
    ],
)
def test_a_blocked_call_does_not_block_another_threads_call(options: dict[str, Any]) -> None:
    breaker = CircuitBreaker(failure_threshold=100, clock=FakeClock(), **options)
    with held_in_a_call(breaker) as first:
        done = threading.Event()
        results: list[object] = []

        def second() -> None:
            results.append(breaker.call(ok))
            try:
                breaker.call(boom)
            except Boom:
                results.append("failed")
            done.set()

        threading.Thread(target=second).start()
        assert done.wait(WAIT), "the second call waited for the first one: a lock is held around it"
        assert first.is_alive()
        assert results == ["ok", "failed"]


def test_a_blocked_half_open_probe_does_not_block_other_calls() -> None:
    breaker, _ = half_open_breaker(probes=2)
    with held_in_a_call(breaker):
        assert breaker.call(ok) == "ok"  # the second probe runs while the first one is held
        assert breaker.state == "half_open"
    assert breaker.state == "closed"


# --- tripping rules --------------------------------------------------------------------------------
def test_consecutive_failures_trip_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    fail(breaker, 2)
    assert breaker.call(ok) == "ok"
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"
    assert breaker.counts() == {
        "success": 1,
        "failure": 5,
        "slow_success": 0,
        "slow_failure": 0,
        "ignored": 0,
        "rejected": 0,
    }


def test_failure_rate_over_a_count_window_with_minimum_calls() -> None:
    breaker = CircuitBreaker(
        failure_threshold=None,
        failure_rate=0.5,
        sliding_window_type="count",
        sliding_window_size=4,
        minimum_calls=4,
        clock=FakeClock(),
    )
    fail(breaker, 3)  # 100 % but only 3 calls: below minimum_calls
    assert breaker.state == "closed"
    breaker.call(ok)  # 4 calls, 75 %
    assert breaker.state == "open"

    breaker.reset()
    for _ in range(3):
        breaker.call(ok)
    fail(breaker)  # [S S S F]: 25 %
    assert breaker.state == "closed"
    fail(breaker)  # the window slides: [S S F F]: 50 %
    assert breaker.state == "open"


def test_failure_rate_over_a_time_window_forgets_old_calls() -> None:
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(
        failure_threshold=None,
        failure_rate=0.5,
        sliding_window_type="time",
        sliding_window_size=10,
        minimum_calls=3,
        clock=clock,
    )
    fail(breaker)
    clock.advance(1)
    fail(breaker)  # 2 calls: below minimum_calls
    assert breaker.state == "closed"
    clock.advance(20)  # both failures leave the 10-second window
    breaker.call(ok)
    clock.advance(1)
    fail(breaker)  # without expiry this would be 3 of 4 failed; in the window, 1 of 2
    clock.advance(1)
    breaker.call(ok)  # 1 of 3: 33 %
    assert breaker.state == "closed"
    clock.advance(1)
    fail(breaker)  # 2 of 4: 50 %
    assert breaker.state == "open"


def test_slow_calls_are_timed_by_the_injected_clock_and_trip_on_slow_rate() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=None,
        slow_call_rate=1.0,
        slow_call_duration=2.0,
        sliding_window_size=2,
        minimum_calls=2,
        clock=clock,
    )

    def slow(seconds: float, raises: bool = False) -> str:
        clock.advance(seconds)
        if raises:
            raise Boom("slow and failed")
        return "done"

    assert breaker.call(slow, 1.0) == "done"  # fast
    assert breaker.call(slow, 3.0) == "done"  # slow: 1 of 2
    assert breaker.state == "closed"
    with pytest.raises(Boom):
        breaker.call(slow, 2.5, raises=True)  # slow failure: 2 of 2 slow
    assert breaker.state == "open"
    counts = breaker.counts()
    assert (counts["success"], counts["slow_success"], counts["slow_failure"]) == (1, 1, 1)


def test_open_timeout_grows_on_repeated_trips_up_to_max_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=1,
        timeout=10.0,
        half_open_max_calls=1,
        timeout_multiplier=2.0,
        max_timeout=30.0,
        clock=clock,
    )
    fail(breaker)
    assert rejected(breaker).retry_after == 10.0
    for expected in (20.0, 30.0, 30.0):  # each failed probe reopens for longer, capped
        clock.advance(rejected(breaker).retry_after)
        fail(breaker)
        assert rejected(breaker).retry_after == expected
    clock.advance(30.0)
    breaker.call(ok)  # a successful probe closes and restores the base timeout
    assert breaker.state == "closed"
    fail(breaker)
    assert rejected(breaker).retry_after == 10.0


def half_open_within_5s(clock: FakeClock) -> CircuitBreaker:
    """A breaker with one probe slot and ``max_half_open_time=5``, tripped and past its 10 s open
    time: the next call is its first probe."""
    breaker = CircuitBreaker(
        failure_threshold=1, timeout=10.0, half_open_max_calls=1, max_half_open_time=5.0, clock=clock
    )
    fail(breaker)
    clock.advance(10.0)
    return breaker


def test_max_half_open_time_sends_a_stuck_half_open_breaker_back_to_open() -> None:
    clock = FakeClock()
    breaker = half_open_within_5s(clock)
    breaker.__enter__()  # a probe that never finishes
    assert rejected(breaker).state == "half_open"
    clock.advance(4.0)
    assert breaker.state == "half_open"
    clock.advance(1.0)
    assert breaker.state == "open"
    breaker.__exit__(None, None, None)  # the stale probe's success changes nothing
    assert breaker.state == "open"
    assert rejected(breaker).retry_after == 10.0


def test_a_probe_from_an_earlier_half_open_period_does_not_count_in_the_next() -> None:
    clock = FakeClock()
    breaker = half_open_within_5s(clock)
    stale, fresh = contextvars.copy_context(), contextvars.copy_context()
    stale.run(breaker.__enter__)  # first half-open period's probe, never finished in time
    clock.advance(5.0)
    assert breaker.state == "open"
    clock.advance(10.0)
    fresh.run(breaker.__enter__)  # second half-open period: its only probe slot is taken
    stale.run(breaker.__exit__, None, None, None)  # must neither free the slot nor close the breaker
    assert breaker.state == "half_open"
    assert rejected(breaker).state == "half_open"
    fresh.run(breaker.__exit__, None, None, None)
    assert breaker.state == "closed"


def test_ignored_exceptions_are_reraised_and_not_counted() -> None:
    breaker = CircuitBreaker(failure_threshold=2, ignored_exceptions=(KeyError,), clock=FakeClock())
    empty: dict[str, int] = {}
    for _ in range(5):
        with pytest.raises(KeyError):
            breaker.call(lambda: empty["x"])
    assert breaker.state == "closed"
    assert breaker.counts()["ignored"] == 5
    assert breaker.counts()["failure"] == 0


def test_failure_exceptions_limit_what_counts_as_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=2, failure_exceptions=(Boom,), clock=FakeClock())

    def type_error() -> None:
        raise TypeError("a caller's bug, not the dependency's")

    fail(breaker)
    with pytest.raises(TypeError):
        breaker.call(type_error)  # counts as a success: resets the consecutive count
    fail(breaker)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"


# --- modes -----------------------------------------------------------------------------------------
def test_forced_open_rejects_everything_until_reset() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    breaker.force_open()
    clock.advance(10_000)
    error = rejected(breaker)
    assert error.state == "forced_open" and error.retry_after == math.inf
    assert breaker.state == "forced_open"
    breaker.reset()
    assert breaker.call(ok) == "ok"


def test_disabled_passes_everything_and_counts_nothing() -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())
    breaker.disable()
    fail(breaker, 10)
    assert breaker.call(ok) == "ok"
    assert breaker.state == "disabled"
    assert sum(breaker.counts().values()) == 0


def test_metrics_only_counts_but_never_rejects() -> None:
    breaker = CircuitBreaker(failure_threshold=1, failure_rate=0.1, clock=FakeClock())
    breaker.metrics_only()
    fail(breaker, 10)
    assert breaker.call(ok) == "ok"
    assert breaker.state == "metrics_only"
    assert breaker.counts()["failure"] == 10 and breaker.counts()["success"] == 1


def test_circuit_open_error_carries_the_breaker_and_the_time_to_the_next_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, timeout=30.0, name="payments", clock=clock)
    fail(breaker)
    clock.advance(12.0)
    error = rejected(breaker)
    assert isinstance(error, AmqadfError)
    assert error.breaker == "payments" and error.retry_after == 18.0 and error.state == "open"
    assert "payments" in str(error) and "18.000 s" in str(error)
    clock.advance(18.0)
    assert breaker.call(ok) == "ok"


# --- listeners, decorator, context manager ---------------------------------------------------------
def test_listeners_see_every_transition_and_a_failing_one_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, timeout=1.0, half_open_max_calls=1, clock=clock)
    seen: list[tuple[str, str]] = []

    def broken(b: CircuitBreaker, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    breaker.add_listener(lambda b, old, new: seen.append((old, new)))
    with caplog.at_level(logging.DEBUG, logger="amqadf_agent.resilience.circuit_breaker"):
        fail(breaker)
        clock.advance(1.0)
        breaker.call(ok)
        breaker.force_open()
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "listener" in warnings[0].getMessage()


def test_decorator_keeps_the_signature_of_sync_and_async_functions() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())

    def greet(name: str, punctuation: str = "!") -> str:
        """Say hello."""
        return f"hello {name}{punctuation}"

    async def agreet(name: str, *, times: int = 1) -> str:
        return name * times

    wrapped, awrapped = breaker(greet), breaker(agreet)
    assert inspect.signature(wrapped) == inspect.signature(greet)
    assert wrapped.__name__ == "greet" and wrapped.__doc__ == "Say hello."
    assert inspect.signature(awrapped) == inspect.signature(agreet)
    assert inspect.iscoroutinefunction(awrapped)
    assert wrapped("bob", punctuation="?") == "hello bob?"
    assert asyncio.run(awrapped("ab", times=2)) == "abab"

    @breaker
    async def afail() -> None:
        raise Boom("async down")

    for _ in range(2):
        with pytest.raises(Boom):
            asyncio.run(afail())
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        wrapped("bob")


def test_context_manager_counts_an_exception_leaving_the_block_as_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    with breaker:
        pass
    for _ in range(2):
        with pytest.raises(Boom), breaker:
            raise Boom("inside")
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError), breaker:
        pytest.fail("the block must not run while open")


# --- telemetry -------------------------------------------------------------------------------------
def attrs(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_metrics_follow_the_contract() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, timeout=5.0, name="payments", clock=clock)
    breaker.instrument(meter_provider=provider)
    breaker.instrument(meter_provider=provider)  # idempotent
    breaker.call(ok)
    fail(breaker, 2)
    rejected(breaker)
    metrics = collect_points(reader)
    name = semconv.ATTR_BREAKER_NAME
    state = metrics[semconv.BREAKER_STATE.name]
    for s in ("closed", "open", "half_open", "forced_open", "disabled", "metrics_only"):
        expected = 1 if s == "open" else 0
        assert state[attrs(**{name: "payments", semconv.ATTR_BREAKER_STATE: s})] == expected
    calls = metrics[semconv.BREAKER_CALLS.name]
    outcome = semconv.ATTR_BREAKER_OUTCOME
    assert calls[attrs(**{name: "payments", outcome: "success"})] == 1
    assert calls[attrs(**{name: "payments", outcome: "failure"})] == 2
    assert calls[attrs(**{name: "payments", outcome: "rejected"})] == 1
    assert set(calls) == {
        attrs(**{name: "payments", outcome: o})
        for o in ("success", "failure", "slow_success", "slow_failure", "ignored", "rejected")
    }
    transitions = metrics[semconv.BREAKER_TRANSITIONS.name]
    assert transitions == {
        attrs(**{name: "payments", semconv.ATTR_BREAKER_FROM: "closed", semconv.ATTR_BREAKER_TO: "open"}): 1
    }
    clock.advance(5.0)  # the gauge reads the lazily advanced state
    state = collect_points(reader)[semconv.BREAKER_STATE.name]
    assert state[attrs(**{name: "payments", semconv.ATTR_BREAKER_STATE: "half_open"})] == 1
    provider.shutdown()


def test_span_events_on_a_recording_span_only() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    breaker = CircuitBreaker(failure_threshold=1, name="db", clock=FakeClock())
    span = tracer.start_span("request")
    with trace.use_span(span, end_on_exit=True):
        fail(breaker)
        rejected(breaker)
    breaker.reset()
    fail(breaker)  # no current span: nothing happens, nothing raises
    rejected(breaker)
    (finished,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes or {})) for e in finished.events]
    assert events == [
        (
            semconv.EVENT_BREAKER_TRANSITION,
            {
                semconv.ATTR_BREAKER_NAME: "db",
                semconv.ATTR_BREAKER_FROM: "closed",
                semconv.ATTR_BREAKER_TO: "open",
            },
        ),
        (
            semconv.EVENT_BREAKER_REJECTED,
            {semconv.ATTR_BREAKER_NAME: "db", semconv.ATTR_BREAKER_STATE: "open"},
        ),
    ]
    provider.shutdown()


def test_a_successful_closed_call_writes_no_span_event() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    breaker = CircuitBreaker(clock=FakeClock())
    with trace.use_span(provider.get_tracer("t").start_span("s"), end_on_exit=True):
        for _ in range(10):
            breaker.call(ok)
    assert exporter.get_finished_spans()[0].events == ()
    provider.shutdown()


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parameter", "options"),
    [
        ("failure_threshold", {"failure_threshold": 0}),
        ("failure_threshold", {"failure_threshold": -1}),
        ("timeout", {"timeout": 0}),
        ("timeout", {"timeout": -5.0}),
        ("half_open_max_calls", {"half_open_max_calls": 0}),
        ("failure_rate", {"failure_rate": 0}),
        ("failure_rate", {"failure_rate": 1.5}),
        ("failure_rate", {"failure_rate": 50.0}),  # a percentage where a fraction is due
        ("slow_call_rate", {"slow_call_rate": -0.1, "slow_call_duration": 1.0}),
        ("slow_call_duration", {"slow_call_rate": 0.5}),
        ("failure_rate_threshold", {"failure_rate_threshold": 0}),
        ("failure_rate_threshold", {"failure_rate_threshold": 100.5}),
        ("failure_rate_threshold", {"failure_rate_threshold": 50, "failure_rate": 0.5}),
        ("slow_call_rate_threshold", {"slow_call_rate_threshold": -1, "slow_call_duration": 1.0}),
        ("slow_call_duration", {"slow_call_duration": 0}),
        ("sliding_window_type", {"sliding_window_type": "sessions"}),
        ("sliding_window_size", {"sliding_window_size": 0}),
        ("minimum_calls", {"minimum_calls": 0}),
        ("timeout_multiplier", {"timeout_multiplier": 0.5}),
        ("max_timeout", {"timeout": 10.0, "max_timeout": 5.0}),
        ("max_half_open_time", {"max_half_open_time": 0}),
        ("ignored_exceptions", {"ignored_exceptions": ("KeyError",)}),
        ("clock", {"clock": 3}),
        ("name", {"name": ""}),
    ],
)
def test_bad_parameters_are_named(parameter: str, options: dict[str, Any]) -> None:
    for make in (CircuitBreaker, CircuitBreakerConfig):  # keywords and config: one validation
        with pytest.raises(ConfigError) as info:
            make(**options)
        assert info.value.setting == parameter
        assert str(info.value).startswith(parameter)


def test_valid_extremes_are_accepted_and_take_effect() -> None:
    make: Callable[..., CircuitBreaker] = CircuitBreaker
    # GIVEN a 0.1 % slow-call rate of calls from 1 ms
    clock = FakeClock(0.0)
    slow = make(slow_call_rate=0.001, slow_call_duration=0.001, clock=clock)
    assert (slow.config.slow_call_rate, slow.config.slow_call_duration) == (0.001, 0.001)

    def lasting(seconds: float) -> str:
        clock.advance(seconds)
        return "ok"

    # WHEN ten calls are fast (one of half a millisecond) THEN it stays closed
    for _ in range(9):
        slow.call(ok)
    slow.call(lasting, 0.0005)
    assert slow.state == "closed"
    # WHEN one call of 2 ms follows (1 of 11 calls) THEN it opens
    slow.call(lasting, 0.002)
    assert slow.state == "open" and slow.counts()["slow_success"] == 1

    # GIVEN a 100 % failure rate over 10 calls, no consecutive-failure trip, one probe, an open
    # timeout that doubles per trip but is capped at itself, and KeyError ignored
    clock = FakeClock()
    breaker = make(
        failure_threshold=None,
        failure_rate=1,
        sliding_window_size=10,
        minimum_calls=10,
        half_open_max_calls=1,
        timeout=60.0,
        timeout_multiplier=2.0,
        max_timeout=60.0,
        ignored_exceptions=KeyError,
        clock=clock,
    )
    assert breaker.config.failure_rate == 1.0 and breaker.config.failure_threshold is None
    assert (breaker.config.half_open_max_calls, breaker.config.max_timeout) == (1, 60.0)
    assert breaker.config.ignored_exceptions == (KeyError,)
    # THEN a KeyError counts as neither outcome
    with pytest.raises(KeyError):
        breaker.call({}.__getitem__, "missing")
    assert breaker.counts()["ignored"] == 1 and breaker.counts()["failure"] == 0
    # THEN 9 failures of 10 calls (90 %) keep it closed; the 10th (100 %) opens it
    breaker.call(ok)
    fail(breaker, 9)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"
    # THEN one probe at a time: a second call while it runs is rejected
    clock.advance(60.0)
    with breaker:
        rejected(breaker)
    assert breaker.state == "closed"  # one successful probe closes it
    # THEN a failed probe reopens it for min(2 * 60, 60) s, not 120 s
    fail(breaker, 10)
    clock.advance(60.0)
    fail(breaker)  # the probe
    clock.advance(59.0)
    assert breaker.state == "open"
    clock.advance(1.0)
    assert breaker.state == "half_open"


def test_a_config_object_builds_the_same_breaker_as_keywords() -> None:
    clock = FakeClock()
    config = CircuitBreakerConfig(failure_threshold=2, timeout=5, name="payments", clock=clock)
    from_config = CircuitBreaker(config=config)
    from_keywords = CircuitBreaker(failure_threshold=2, timeout=5, name="payments", clock=clock)
    assert from_config.config is config and from_keywords.config == config
    assert config.timeout == 5.0 and isinstance(config.timeout, float)
    fail(from_config, 2)
    assert from_config.state == "open" and from_config.name == "payments"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1.0  # type: ignore[misc]


# --- the deprecated percentages ---------------------------------------------------------------------
def _trips_after(breaker: CircuitBreaker) -> int:
    """Calls (one failure in three) until ``breaker`` opens; 0 if it never does."""
    for n in range(1, 31):
        if n % 3:
            breaker.call(ok)
        else:
            fail(breaker)
        if breaker.state == "open":
            return n
    return 0


@pytest.mark.parametrize("make", [CircuitBreaker, CircuitBreakerConfig])
def test_the_percentage_names_warn_and_become_the_fractions(make: Callable[..., Any]) -> None:
    with pytest.warns(DeprecationWarning) as caught:
        made = make(failure_rate_threshold=30, slow_call_rate_threshold=12.5, slow_call_duration=1.0)
    config = made if isinstance(made, CircuitBreakerConfig) else made.config
    assert (config.failure_rate, config.slow_call_rate) == (0.3, 0.125)
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold) == (None, None)
    assert [str(w.message) for w in caught] == [
        "failure_rate_threshold is deprecated: use failure_rate, a fraction "
        "(failure_rate_threshold=30 is failure_rate=0.3)",
        "slow_call_rate_threshold is deprecated: use slow_call_rate, a fraction "
        "(slow_call_rate_threshold=12.5 is slow_call_rate=0.125)",
    ]
    assert {w.filename for w in caught} == {__file__}  # the warning names the caller's line


def test_a_percentage_trips_where_its_fraction_does() -> None:
    options: dict[str, Any] = {"failure_threshold": None, "sliding_window_size": 10, "minimum_calls": 10}
    with pytest.warns(DeprecationWarning):
        by_percent = CircuitBreaker(failure_rate_threshold=30, clock=FakeClock(), **options)
    by_fraction = CircuitBreaker(failure_rate=0.3, clock=FakeClock(), **options)
    above = CircuitBreaker(failure_rate=0.41, clock=FakeClock(), **options)
    # 3 failures in the first 10 calls is 30 %: the threshold itself trips
    assert _trips_after(by_percent) == _trips_after(by_fraction) == 10
    assert _trips_after(above) == 0  # at most 4 of any 10 calls fail


def test_a_copied_config_keeps_its_rate_without_a_warning() -> None:
    with pytest.warns(DeprecationWarning):
        config = CircuitBreakerConfig(failure_rate_threshold=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copy = dataclasses.replace(config, name="payments")
        changed = dataclasses.replace(config, failure_rate=0.2)
    assert (copy.failure_rate, copy.name, changed.failure_rate) == (0.5, "payments", 0.2)


def test_a_config_and_keywords_together_are_refused() -> None:
    config = CircuitBreakerConfig(failure_threshold=2)
    with pytest.raises(ConfigError, match=r"^config: .*not both \(got timeout, name\)"):
        CircuitBreaker(timeout=5.0, name="x", config=config)
    with pytest.raises(ConfigError, match=r"^config: must be a CircuitBreakerConfig"):
        CircuitBreaker(config={"failure_threshold": 2})  # type: ignore[arg-type]


def test_the_keywords_are_the_config_fields_with_the_same_defaults() -> None:
    parameters = inspect.signature(CircuitBreaker).parameters
    keywords = {name: p.default for name, p in parameters.items() if name != "config"}
    assert keywords == {f.name: f.default for f in dataclasses.fields(CircuitBreakerConfig)}
