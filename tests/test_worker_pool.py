"""InstrumentedThreadPool: queue wait, run time, outcomes, worker states, metrics, and trace context."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import collect, data_points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPool, PoolStats

WAIT = 5.0  # generous timeout for events: a test that hangs fails instead


def attrs(pool: str, **extra: str) -> frozenset[tuple[str, Any]]:
    return frozenset({semconv.ATTR_POOL_NAME: pool, **extra}.items())


def outcome(pool: str, value: str) -> frozenset[tuple[str, Any]]:
    return attrs(pool, **{semconv.ATTR_TASK_OUTCOME: value})


def state(pool: str, value: str) -> frozenset[tuple[str, Any]]:
    return attrs(pool, **{semconv.ATTR_POOL_STATE: value})


@pytest.fixture
def metrics_provider() -> tuple[InMemoryMetricReader, MeterProvider]:
    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader])


@pytest.fixture
def pools() -> Iterator[list[InstrumentedThreadPool]]:
    """Pools a test creates are shut down even when it fails, so no thread outlives it."""
    created: list[InstrumentedThreadPool] = []
    yield created
    for pool in created:
        pool.shutdown(wait=True, cancel_futures=True)


def blocker(started: threading.Event, release: threading.Event) -> Callable[[], str]:
    def task() -> str:
        started.set()
        assert release.wait(WAIT), "test never released the blocked task"
        return "unblocked"

    return task


# --- queue wait and run time -----------------------------------------------------------------------
def test_queue_wait_and_duration_with_injected_clock(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    reader, provider = metrics_provider
    clock = FakeClock(100.0)
    pool = InstrumentedThreadPool("io", 1, clock=clock)
    pools.append(pool)
    pool.instrument(provider)
    started, release = threading.Event(), threading.Event()
    first = pool.submit(blocker(started, release))  # submitted and started at t=100
    assert started.wait(WAIT)

    def second_task() -> str:
        clock.advance(0.5)  # runs half a second
        return "second"

    second = pool.submit(second_task)  # submitted at t=100, waits for the only worker
    clock.advance(2.0)
    release.set()  # first ends at t=102; second starts at 102 (waited 2 s) and ends at 102.5
    assert (first.result(WAIT), second.result(WAIT)) == ("unblocked", "second")

    metrics = collect(reader)
    wait = metrics[semconv.POOL_QUEUE_WAIT.name]
    assert wait.unit == "s"
    [wait_point] = wait.data.data_points
    assert dict(wait_point.attributes) == {semconv.ATTR_POOL_NAME: "io"}
    assert (wait_point.count, wait_point.sum, wait_point.min, wait_point.max) == (2, 2.0, 0.0, 2.0)
    assert tuple(wait_point.explicit_bounds) == semconv.SECONDS_BUCKETS
    # 0.0 lands in the first bucket (<= 0.0005), 2.0 in (1.0, 2.5].
    expected = [0] * (len(semconv.SECONDS_BUCKETS) + 1)
    expected[0] += 1
    expected[semconv.SECONDS_BUCKETS.index(2.5)] += 1
    assert list(wait_point.bucket_counts) == expected

    duration = data_points(metrics[semconv.POOL_TASK_DURATION.name])
    assert set(duration) == {outcome("io", semconv.OUTCOME_SUCCESS)}
    run = duration[outcome("io", semconv.OUTCOME_SUCCESS)]
    assert (run.count, run.sum, run.min, run.max) == (2, 2.5, 0.5, 2.0)  # first ran 2 s, second 0.5 s
    assert tuple(run.explicit_bounds) == semconv.SECONDS_BUCKETS


def test_second_task_waits_at_least_the_blocked_time_with_real_clock(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    reader, provider = metrics_provider
    pool = InstrumentedThreadPool("real", 1)
    pools.append(pool)
    pool.instrument(provider)
    started, release = threading.Event(), threading.Event()
    first = pool.submit(blocker(started, release))
    assert started.wait(WAIT)
    second = pool.submit(lambda: None)
    blocked_for = 0.05
    time.sleep(blocked_for)
    release.set()
    first.result(WAIT)
    second.result(WAIT)
    [point] = collect(reader)[semconv.POOL_QUEUE_WAIT.name].data.data_points
    assert point.count == 2
    assert point.max >= blocked_for
    assert point.min < blocked_for  # the first task did not wait


# --- outcomes and worker states --------------------------------------------------------------------
def test_failure_outcome_is_counted_and_the_exception_reaches_the_caller(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    reader, provider = metrics_provider
    pool = InstrumentedThreadPool("jobs", 2)
    pools.append(pool)
    pool.instrument(provider)

    def fail() -> None:
        raise ValueError("bad input")

    ok = [pool.submit(pow, 2, i) for i in range(3)]
    bad = [pool.submit(fail) for _ in range(2)]
    assert [f.result(WAIT) for f in ok] == [1, 2, 4]
    for f in bad:
        exc = f.exception(WAIT)
        assert isinstance(exc, ValueError) and str(exc) == "bad input"

    stats = pool.stats()
    assert (stats.completed, stats.failed, stats.busy, stats.queued) == (5, 2, 0, 0)
    metrics = collect(reader)
    tasks = metrics[semconv.POOL_TASKS.name]
    assert tasks.unit == semconv.POOL_TASKS.unit and tasks.data.is_monotonic is True
    values = {k: p.value for k, p in data_points(tasks).items()}
    assert values == {
        outcome("jobs", semconv.OUTCOME_SUCCESS): 3,
        outcome("jobs", semconv.OUTCOME_FAILURE): 2,
    }
    durations = data_points(metrics[semconv.POOL_TASK_DURATION.name])
    assert durations[outcome("jobs", semconv.OUTCOME_FAILURE)].count == 2
    assert durations[outcome("jobs", semconv.OUTCOME_SUCCESS)].count == 3


def test_busy_idle_and_queued_while_tasks_block(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    reader, provider = metrics_provider
    pool = InstrumentedThreadPool("busy", 2)
    pools.append(pool)
    pool.instrument(provider)
    release = threading.Event()
    starts = [threading.Event(), threading.Event()]
    running = [pool.submit(blocker(s, release)) for s in starts]
    for s in starts:
        assert s.wait(WAIT)
    waiting = [pool.submit(lambda: "later") for _ in range(3)]

    assert pool.stats() == PoolStats(
        name="busy", max_workers=2, busy=2, idle=0, queued=3, completed=0, failed=0
    )
    metrics = collect(reader)
    workers = metrics[semconv.POOL_WORKERS.name]
    assert workers.unit == "{thread}" and workers.data.is_monotonic is False
    assert {k: p.value for k, p in data_points(workers).items()} == {
        state("busy", semconv.POOL_STATE_BUSY): 2,
        state("busy", semconv.POOL_STATE_IDLE): 0,
    }
    assert {k: p.value for k, p in data_points(metrics[semconv.POOL_QUEUE_SIZE.name]).items()} == {
        attrs("busy"): 3
    }
    assert {k: p.value for k, p in data_points(metrics[semconv.POOL_MAX_WORKERS.name]).items()} == {
        attrs("busy"): 2
    }
    for name in (semconv.POOL_WORKERS, semconv.POOL_QUEUE_SIZE, semconv.POOL_MAX_WORKERS, semconv.POOL_TASKS):
        assert metrics[name.name].unit == name.unit
        assert metrics[name.name].description == name.description

    release.set()
    assert [f.result(WAIT) for f in running + waiting] == ["unblocked"] * 2 + ["later"] * 3
    assert pool.stats() == PoolStats(
        name="busy", max_workers=2, busy=0, idle=2, queued=0, completed=5, failed=0
    )


def test_idle_counts_started_threads_not_max_workers(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("lazy", 4)
    pools.append(pool)
    assert pool.stats().idle == 0  # no thread started yet
    pool.submit(lambda: None).result(WAIT)
    stats = pool.stats()
    assert (stats.busy, stats.idle, stats.max_workers) == (0, 1, 4)
    pool.shutdown(wait=True)
    assert pool.stats().idle == 0  # threads ended


def test_cancelled_tasks_leave_the_queue(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("cancel", 1)
    pools.append(pool)
    started, release = threading.Event(), threading.Event()
    running = pool.submit(blocker(started, release))
    assert started.wait(WAIT)
    queued = [pool.submit(lambda: None) for _ in range(3)]
    assert pool.stats().queued == 3
    assert queued[0].cancel()
    assert pool.stats().queued == 2
    release.set()
    running.result(WAIT)
    pool.shutdown(wait=True, cancel_futures=True)
    stats = pool.stats()
    assert stats.queued == 0
    assert stats.completed == 1 + sum(1 for f in queued if not f.cancelled())


def test_submit_after_shutdown_raises_and_counts_nothing(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("closed", 1)
    pools.append(pool)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    assert pool.stats().queued == 0


def test_map_goes_through_submit_and_threads_carry_the_pool_name(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("mapper", 2)
    pools.append(pool)
    names = list(pool.map(lambda _: threading.current_thread().name, range(6)))
    assert all(n.startswith("mapper_") for n in names)
    assert pool.stats().completed == 6
    assert (pool.name, pool.max_workers) == ("mapper", 2)


def test_context_manager_shuts_down() -> None:
    with InstrumentedThreadPool("ctx", 1) as pool:
        assert pool.submit(lambda: 41 + 1).result(WAIT) == 42
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


# --- metrics plumbing ------------------------------------------------------------------------------
def test_two_pools_give_two_series_and_instrument_is_idempotent(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider],
    pools: list[InstrumentedThreadPool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, provider = metrics_provider
    a = InstrumentedThreadPool("a", 1)
    b = InstrumentedThreadPool("b", 3)
    pools.extend((a, b))
    with caplog.at_level(logging.WARNING):
        a.instrument(provider)
        a.instrument(provider)  # must not record every task twice
        b.instrument(provider)
    assert caplog.records == []
    a.submit(lambda: None).result(WAIT)
    metrics = collect(reader)
    assert {k: p.value for k, p in data_points(metrics[semconv.POOL_MAX_WORKERS.name]).items()} == {
        attrs("a"): 1,
        attrs("b"): 3,
    }
    waits = data_points(metrics[semconv.POOL_QUEUE_WAIT.name])
    assert set(waits) == {attrs("a")}
    assert waits[attrs("a")].count == 1


def test_uninstrumented_pool_records_no_histograms(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    reader, provider = metrics_provider
    seen = InstrumentedThreadPool("seen", 1)
    unseen = InstrumentedThreadPool("unseen", 1)
    pools.extend((seen, unseen))
    seen.instrument(provider)
    unseen.submit(lambda: None).result(WAIT)
    metrics = collect(reader)
    assert semconv.POOL_QUEUE_WAIT.name not in metrics  # no histogram point yet
    assert set(data_points(metrics[semconv.POOL_TASKS.name])) == {
        outcome("seen", semconv.OUTCOME_SUCCESS),
        outcome("seen", semconv.OUTCOME_FAILURE),
    }
    assert unseen.stats().completed == 1  # counted anyway: stats() needs no provider


def test_instrumenting_does_not_keep_a_pool_alive(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = metrics_provider
    pool = InstrumentedThreadPool("ephemeral", 1)
    pool.instrument(provider)
    pool.submit(lambda: None).result(WAIT)
    pool.shutdown(wait=True)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    assert semconv.POOL_WORKERS.name not in collect(reader)


@pytest.mark.parametrize(
    ("args", "kwargs", "setting"),
    [
        (("p", 0), {}, "max_workers"),
        (("p", -1), {}, "max_workers"),
        (("p", 1.5), {}, "max_workers"),
        (("p", True), {}, "max_workers"),
        (("p", None), {}, "max_workers"),
        (("", 2), {}, "name"),
        ((None, 2), {}, "name"),
        (("p", 2), {"clock": "now"}, "clock"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        InstrumentedThreadPool(*args, **kwargs)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


# --- trace context -----------------------------------------------------------------------------------
def test_span_started_in_a_task_is_a_child_of_the_submitters_span(
    spans: tuple[TracerProvider, InMemorySpanExporter], pools: list[InstrumentedThreadPool]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")  # explicit tracer: the global provider is never set
    pool = InstrumentedThreadPool("traced", 1)
    pools.append(pool)

    def task(name: str) -> None:
        with tracer.start_as_current_span(name):
            pass

    with tracer.start_as_current_span("request") as parent:
        pool.submit(task, "in-pool").result(WAIT)
    pool.submit(task, "after").result(WAIT)  # same worker thread: the old context must be gone

    with ThreadPoolExecutor(1) as plain, tracer.start_as_current_span("control"):
        plain.submit(task, "in-plain-pool").result(WAIT)

    spans = {s.name: s for s in exporter.get_finished_spans()}
    child = spans["in-pool"]
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert spans["after"].parent is None
    # The control shows what the pool fixes: a plain executor loses the context.
    assert spans["in-plain-pool"].parent is None


def test_any_context_value_is_propagated_and_detached(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("ctxvals", 1)
    pools.append(pool)
    token = otel_context.attach(otel_context.set_value("tenant", "acme"))
    try:
        assert pool.submit(otel_context.get_value, "tenant").result(WAIT) == "acme"
    finally:
        otel_context.detach(token)
    assert pool.submit(otel_context.get_value, "tenant").result(WAIT) is None


def test_the_task_context_is_detached_when_the_task_ends(pools: list[InstrumentedThreadPool]) -> None:
    # A done-callback runs in the worker thread right after the task: the task's context must be gone.
    pool = InstrumentedThreadPool("detach", 1)
    pools.append(pool)
    seen: list[object] = []
    done = threading.Event()

    def after(_: object) -> None:
        seen.append(otel_context.get_value("tenant"))
        done.set()

    release = threading.Event()
    token = otel_context.attach(otel_context.set_value("tenant", "acme"))
    try:
        future = pool.submit(release.wait, WAIT)
    finally:
        otel_context.detach(token)
    future.add_done_callback(after)  # added while the task blocks, so it runs in the worker thread
    release.set()
    assert done.wait(WAIT)
    assert seen == [None]


# --- InstrumentedThreadPoolExecutor: the drop-in with ThreadPoolExecutor's signature ---------------
def test_executor_is_a_drop_in_with_the_standard_signature(pools: list[InstrumentedThreadPool]) -> None:
    from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPoolExecutor

    seen: list[str] = []
    pool = InstrumentedThreadPoolExecutor(3, "fetch", seen.append, ("init",))
    pools.append(pool)
    assert isinstance(pool, InstrumentedThreadPool) and isinstance(pool, ThreadPoolExecutor)
    assert pool.name == "fetch" and pool.max_workers == 3
    assert list(pool.map(lambda x: x * 2, range(4))) == [0, 2, 4, 6]
    assert seen and set(seen) == {"init"}
    assert pool.submit(threading.current_thread).result(WAIT).name.startswith("fetch")

    named = InstrumentedThreadPoolExecutor(max_workers=1, name="jobs")
    pools.append(named)
    assert named.name == "jobs"
    assert named.submit(threading.current_thread).result(WAIT).name.startswith("jobs")

    default = InstrumentedThreadPoolExecutor()
    pools.append(default)
    assert default.max_workers == ThreadPoolExecutor()._max_workers
    assert default.name.startswith("ThreadPoolExecutor-")
    assert repr(default).startswith("InstrumentedThreadPoolExecutor(")
    with pytest.raises(ConfigError, match="max_workers"):
        InstrumentedThreadPoolExecutor(0)


def test_executor_queue_and_wait_figures_under_a_saturated_pool(
    metrics_provider: tuple[InMemoryMetricReader, MeterProvider], pools: list[InstrumentedThreadPool]
) -> None:
    """Eight tasks into two workers, all blocked on one Event: two busy, six queued, and the
    queue-wait histogram shows that the queued ones waited at least as long as the block."""
    from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPoolExecutor

    reader, provider = metrics_provider
    pool = InstrumentedThreadPoolExecutor(2, name="saturated")
    pools.append(pool)
    pool.instrument(provider)
    release = threading.Event()
    started = threading.Semaphore(0)

    def task() -> str:
        started.release()
        assert release.wait(WAIT)
        return "done"

    futures = [pool.submit(task) for _ in range(8)]
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    assert pool.stats() == PoolStats(
        name="saturated", max_workers=2, busy=2, idle=0, queued=6, completed=0, failed=0
    )
    metrics = collect(reader)
    assert {k: p.value for k, p in data_points(metrics[semconv.POOL_QUEUE_SIZE.name]).items()} == {
        attrs("saturated"): 6
    }
    assert {k: p.value for k, p in data_points(metrics[semconv.POOL_WORKERS.name]).items()} == {
        state("saturated", semconv.POOL_STATE_BUSY): 2,
        state("saturated", semconv.POOL_STATE_IDLE): 0,
    }
    blocked = 0.2
    time.sleep(blocked)
    release.set()
    assert [f.result(WAIT) for f in futures] == ["done"] * 8
    assert pool.stats().queued == 0 and pool.stats().completed == 8

    metrics = collect(reader)
    wait = data_points(metrics[semconv.POOL_QUEUE_WAIT.name])[attrs("saturated")]
    assert wait.count == 8
    assert list(wait.explicit_bounds) == list(semconv.SECONDS_BUCKETS)
    # The six queued tasks each waited the whole block; the first two hardly at all.
    assert wait.sum >= 6 * blocked
    assert wait.max >= blocked and wait.min < blocked
    over = sum(c for b, c in zip([0.0, *wait.explicit_bounds], wait.bucket_counts, strict=True) if b >= 0.1)
    assert over >= 6
    run = data_points(metrics[semconv.POOL_TASK_DURATION.name])[outcome("saturated", semconv.OUTCOME_SUCCESS)]
    assert run.count == 8 and run.max >= blocked


def test_instrumented_thread_pool_keeps_its_signature(pools: list[InstrumentedThreadPool]) -> None:
    pool = InstrumentedThreadPool("old", 1)
    pools.append(pool)
    assert pool.name == "old" and pool.submit(lambda: 1).result(WAIT) == 1
    assert repr(pool) == "InstrumentedThreadPool(name='old', max_workers=1)"
