"""PerformanceProfiler: CPU and memory profiles, reports, spans, the profiles counter, sampling."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.clock import FakeClock

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.profiling.profiler import (
    DEFAULT_MAX_OVERHEAD,
    MemoryProfileResult,
    PerformanceProfiler,
    ProfileResult,
    _profiled_roots,
    profiled,
)

MB = 1024 * 1024


# --- workloads ------------------------------------------------------------------------------------
def hot_inner(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cpu_bound(rounds: int = 30, n: int = 40_000) -> int:
    return sum(hot_inner(n) for _ in range(rounds))


def failing() -> None:
    hot_inner(200_000)
    raise KeyError("boom")


async def async_work() -> int:
    await asyncio.sleep(0.005)
    return cpu_bound(10)


def allocate_20mb() -> int:
    blocks = [bytearray(MB) for _ in range(20)]  # the allocating line
    return sum(len(b) for b in blocks)


ALLOC_LINE = allocate_20mb.__code__.co_firstlineno + 1


def _profiles_counter(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    counts: dict[str, float] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == semconv.PROFILES.name:
                    assert metric.unit == semconv.PROFILES.unit
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint) and point.attributes is not None
                        counts[str(point.attributes[semconv.ATTR_PROFILER_KIND])] = point.value
    return counts


# --- CPU profiles ---------------------------------------------------------------------------------
def test_cpu_profile_finds_the_hot_function() -> None:
    # GIVEN a CPU-bound function whose time is spent in hot_inner
    profiler = PerformanceProfiler()
    # WHEN it is profiled
    result = profiler.profile_function(cpu_bound, 30, n=40_000)
    # THEN the return value comes back and hot_inner dominates the self time
    assert result.profiled
    assert result.return_value == cpu_bound(30, 40_000)
    assert result.error is None
    assert result.sample_count > 0
    names = [s.function for s in result.top_functions]
    assert "hot_inner" in names
    hot = result.top_functions[names.index("hot_inner")]
    assert hot.file == __file__
    assert hot.line == hot_inner.__code__.co_firstlineno
    assert result.call_tree is not None
    assert hot.self_time > 0.5 * result.call_tree.total_time
    assert result.top_functions[0].function == "hot_inner"
    assert hot.total_time >= hot.self_time
    outer = result.top_functions[names.index("cpu_bound")]
    assert outer.total_time >= hot.total_time  # the caller's total includes its callee
    # durations are sane: CPU time cannot exceed wall time on all cores
    assert 0 < result.duration < 30
    assert 0 <= result.cpu_time <= result.duration * (os.cpu_count() or 1) + 0.05
    # the call tree starts at the profiled function
    assert result.call_tree.function == "cpu_bound"
    assert result.function.endswith("test_profiler.cpu_bound")


def test_exception_propagates_with_the_profile_attached() -> None:
    profiler = PerformanceProfiler()
    with pytest.raises(KeyError) as info:
        profiler.profile_function(failing)
    assert info.value.args == ("boom",)
    profile = info.value.__amqadf_profile__  # type: ignore[attr-defined]
    assert isinstance(profile, ProfileResult)
    assert profile.error is info.value
    assert profile.profiled and profile.return_value is None
    assert "hot_inner" in [s.function for s in profile.top_functions]
    assert profiler.stats().profiles["cpu"] == 1


def test_async_function_is_profiled() -> None:
    profiler = PerformanceProfiler()
    result = asyncio.run(profiler.profile_async(async_work))
    assert result.profiled
    assert result.return_value == cpu_bound(10)
    assert "hot_inner" in [s.function for s in result.top_functions]
    assert result.duration >= 0.005


def test_coroutine_function_given_to_profile_function_is_refused() -> None:
    with pytest.raises(TypeError, match="profile_async"):
        PerformanceProfiler().profile_function(async_work)


def test_nested_profiling_does_not_hurt_the_host(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a profiled call that profiles again inside (pyinstrument refuses a second profiler)
    profiler = PerformanceProfiler()

    def outer() -> ProfileResult:
        first = profiler.profile_function(cpu_bound, 3)
        second = profiler.profile_function(cpu_bound, 3)
        return second if first.profiled else first

    # WHEN it runs
    result = profiler.profile_function(outer)
    # THEN the inner calls ran unprofiled, returned their values, and the failure was logged once
    inner = result.return_value
    assert result.profiled
    assert not inner.profiled and inner.return_value == cpu_bound(3)
    assert inner.sample_count == 0 and inner.top_functions == ()
    stats = profiler.stats()
    assert stats.failed_to_start["cpu"] == 2 and stats.profiles["cpu"] == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "pyinstrument" in r.message]
    assert len(warnings) == 1
    assert "not profiled" in profiler.generate_report(inner)


def test_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="sample_rate"):
        PerformanceProfiler(sample_rate=1.5)
    with pytest.raises(ConfigError, match="interval"):
        PerformanceProfiler(interval=0)
    with pytest.raises(ConfigError, match="max_overhead"):
        PerformanceProfiler().sampled(max_overhead=0)
    with pytest.raises(ConfigError, match="rate"):
        PerformanceProfiler().sampled(rate=-0.1)


# --- reports --------------------------------------------------------------------------------------
def test_reports_text_html_speedscope() -> None:
    profiler = PerformanceProfiler()
    result = profiler.profile_function(cpu_bound, 10)
    text = profiler.generate_report(result)
    assert text.startswith("CPU profile of ")
    assert "hot_inner" in text and "Top functions" in text and "Call tree" in text
    page = profiler.generate_report(result, format="html")
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert page.rstrip().endswith("</html>")
    doc = json.loads(profiler.generate_report(result, format="speedscope"))
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["profiles"] and doc["shared"]["frames"]
    assert "hot_inner" in {f["name"] for f in doc["shared"]["frames"]}
    with pytest.raises(ValueError, match="unknown report format"):
        profiler.generate_report(result, format="pdf")  # type: ignore[arg-type]


# --- memory profiles ------------------------------------------------------------------------------
def test_memory_profile_of_a_known_allocation() -> None:
    profiler = PerformanceProfiler()
    result = profiler.profile_memory(allocate_20mb)
    assert isinstance(result, MemoryProfileResult) and result.profiled
    assert result.return_value == 20 * MB
    assert 15 * MB <= result.peak_memory <= 22 * MB  # within 10% of 20 MB
    assert result.total_allocations >= 20
    assert result.total_bytes is None or result.total_bytes >= 20 * MB
    top = result.top_sites[0]
    assert (top.file, top.line) == (__file__, ALLOC_LINE)
    assert top.bytes >= 19 * MB and top.count >= 20
    # reports
    assert "Top allocation sites" in profiler.generate_report(result)
    assert f"{__file__}:{ALLOC_LINE}" in profiler.generate_report(result)
    assert profiler.generate_report(result, "html").startswith("<!DOCTYPE html>")
    doc = json.loads(profiler.generate_report(result, "speedscope"))
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["profiles"][0]["unit"] == "bytes" and doc["profiles"][0]["weights"][0] >= 19 * MB
    assert profiler.stats().profiles["memory"] == 1


def test_memory_profile_cleans_up_its_capture_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    PerformanceProfiler().profile_memory(allocate_20mb)
    assert list(tmp_path.iterdir()) == []


def test_memory_profile_exception_propagates() -> None:
    with pytest.raises(KeyError) as info:
        PerformanceProfiler().profile_memory(failing)
    assert isinstance(info.value.__amqadf_profile__, MemoryProfileResult)  # type: ignore[attr-defined]


def test_nested_memory_profile_runs_untracked() -> None:
    profiler = PerformanceProfiler()
    result = profiler.profile_memory(profiler.profile_memory, allocate_20mb)
    assert result.profiled
    assert not result.return_value.profiled and result.return_value.return_value == 20 * MB
    assert profiler.stats().failed_to_start["memory"] == 1


def test_missing_memray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "memray", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'amqadf-agent\[memory\]'") as info:
        PerformanceProfiler().profile_memory(allocate_20mb)
    assert info.value.extra == "memory"


# --- telemetry ------------------------------------------------------------------------------------
def test_profile_span_attributes_and_events(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    profiler = PerformanceProfiler(tracer=tracer, top_n=3)
    with tracer.start_as_current_span("request") as parent:
        result = profiler.profile_function(cpu_bound, 10)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    span = finished[semconv.SPAN_PROFILE]
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    attrs = span.attributes or {}
    assert attrs[semconv.ATTR_PROFILER_KIND] == "cpu"
    assert attrs[semconv.ATTR_PROFILER_FUNCTION] == result.function
    assert attrs["code.function.name"] == result.function
    assert attrs["code.file.path"] == __file__
    assert attrs["amqadf.profiler.duration"] == result.duration
    assert attrs["amqadf.profiler.cpu_time"] == result.cpu_time
    assert attrs["amqadf.profiler.sample_count"] == result.sample_count
    events = [e for e in span.events if e.name == semconv.EVENT_PROFILE_FUNCTION]
    assert len(events) == len(result.top_functions) <= 3
    first = events[0].attributes or {}
    assert first["code.function.name"] == "hot_inner"
    assert first["code.file.path"] == __file__
    assert first["code.line.number"] == hot_inner.__code__.co_firstlineno
    assert first["amqadf.profiler.self_time"] == result.top_functions[0].self_time
    assert first["amqadf.profiler.total_time"] == result.top_functions[0].total_time


def test_spans_of_the_profiled_call_are_children(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")

    def traced() -> None:
        with tracer.start_as_current_span("inside"):
            pass

    PerformanceProfiler(tracer=tracer).profile_function(traced)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    inside, profile = finished["inside"], finished[semconv.SPAN_PROFILE]
    assert inside.parent is not None and inside.parent.span_id == profile.context.span_id


def test_error_and_memory_spans(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    profiler = PerformanceProfiler(tracer=provider.get_tracer("test"))
    with pytest.raises(KeyError):
        profiler.profile_function(failing)
    result = profiler.profile_memory(allocate_20mb)
    error_span, memory_span = [s for s in exporter.get_finished_spans() if s.name == semconv.SPAN_PROFILE]
    assert error_span.status.status_code is StatusCode.ERROR
    assert (error_span.attributes or {})[semconv.ATTR_ERROR_TYPE] == "KeyError"
    attrs = memory_span.attributes or {}
    assert attrs[semconv.ATTR_PROFILER_KIND] == "memory"
    assert attrs["amqadf.profiler.peak_memory"] == result.peak_memory
    assert attrs["amqadf.profiler.total_allocations"] == result.total_allocations
    site = memory_span.events[0].attributes or {}
    assert site["code.line.number"] == ALLOC_LINE
    assert isinstance(site["amqadf.profiler.bytes"], int) and site["amqadf.profiler.bytes"] >= 19 * MB


def test_broken_tracer_does_not_hurt_the_host() -> None:
    class Broken:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer down")

    profiler = PerformanceProfiler(tracer=Broken())  # type: ignore[arg-type]
    assert profiler.profile_function(cpu_bound, 2).return_value == cpu_bound(2)


# --- sampling -------------------------------------------------------------------------------------
def test_sampled_profiles_exactly_the_drawn_calls() -> None:
    # GIVEN a seeded random source and the PROFILES counter on an explicit provider
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler(random=random.Random(42), max_overhead=None)  # the draws alone
    profiler.instrument(meter_provider=provider)
    calls: list[int] = []

    @profiler.sampled(rate=0.3)
    def handler(x: int) -> int:
        calls.append(x)
        return x * 2

    # WHEN it is called 50 times
    results = [handler(i) for i in range(50)]
    # THEN every call ran and returned, and exactly the calls the same seed draws below 0.3 were profiled
    assert results == [i * 2 for i in range(50)] and calls == list(range(50))
    draws = random.Random(42)
    expected = [i for i in range(50) if draws.random() < 0.3]
    assert 0 < len(expected) < 50
    assert [r.return_value for r in profiler.recent_results()] == [i * 2 for i in expected][-16:]
    assert _profiles_counter(reader) == {"cpu": len(expected), "memory": 0}
    assert handler.__name__ == "handler"


def test_sampled_async_function() -> None:
    profiler = PerformanceProfiler(random=random.Random(1))

    @profiler.sampled(rate=1.0)
    async def handler() -> int:
        return await async_work()

    assert asyncio.run(handler()) == cpu_bound(10)
    assert profiler.stats().profiles["cpu"] == 1
    assert "hot_inner" in [s.function for s in profiler.recent_results()[0].top_functions]

    never = PerformanceProfiler(random=random.Random(1)).sampled(rate=0.0)(async_work)
    assert asyncio.run(never()) == cpu_bound(10)


def test_sampled_rate_zero_never_profiles() -> None:
    profiler = PerformanceProfiler()
    fn = profiler.sampled(rate=0.0)(cpu_bound)
    assert fn(2) == cpu_bound(2)
    assert profiler.stats().profiles["cpu"] == 0


def test_time_budget_skips_with_a_fake_clock() -> None:
    # GIVEN a budget of 1% of wall time and calls that take 0.4 s by the clock
    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, max_overhead=0.01, random=random.Random(0))

    def slow() -> None:
        clock.now += 0.4

    fn = profiler.sampled(rate=1.0)(slow)
    # WHEN called repeatedly
    fn()  # the budget starts at zero, not in debt: profiled, and 0.4 s borrowed
    fn()  # 0.4 s later only 0.004 s repaid: skipped (runs unprofiled)
    fn()
    assert profiler.stats().profiles["cpu"] == 1
    assert profiler.stats().skipped_by_budget == 2
    # THEN once the debt is repaid (0.4 s at 1%: 40 s after the first call), profiling resumes
    clock.now += 38.0
    fn()
    assert profiler.stats().profiles["cpu"] == 1
    clock.now += 1.0
    fn()
    assert profiler.stats().profiles["cpu"] == 2
    assert profiler.stats().skipped_by_budget == 3


def test_default_budget_keeps_profiled_time_near_two_percent() -> None:
    # GIVEN the default budget, every call drawn, calls of 50 ms with 50 ms between them
    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, sample_rate=1.0, random=random.Random(0))
    assert profiler.max_overhead == DEFAULT_MAX_OVERHEAD == 0.02

    def handler() -> None:
        clock.now += 0.05

    fn = profiler.sampled(handler)
    # WHEN it runs for 1000 s of wall time
    end, calls = clock.now + 1000.0, 0
    while clock.now < end:
        fn()
        calls += 1
        clock.now += 0.05
    # THEN the profiled calls took at most 2% of the time, plus the one call that may be in debt
    profiled_seconds = profiler.stats().profiles["cpu"] * 0.05
    assert 0.02 * 1000 - 0.05 <= profiled_seconds <= 0.02 * 1000 + 0.05
    assert profiler.stats().skipped_by_budget == calls - profiler.stats().profiles["cpu"]


def test_budget_saved_while_idle_is_capped_at_a_minute_of_it() -> None:
    # GIVEN a 1% budget (0.6 s per minute at most saved) idle for an hour
    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, sample_rate=1.0, max_overhead=0.01, random=random.Random(0))

    def handler() -> None:
        clock.now += 0.1

    fn = profiler.sampled(handler)
    fn()
    clock.now += 3600.0
    # WHEN a burst of calls comes THEN about 0.6 s of them are profiled, not 36 s
    for _ in range(100):
        fn()
    assert 6 <= profiler.stats().profiles["cpu"] - 1 <= 8


def test_a_function_under_a_span_decorator_is_profiled_not_dropped(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    # GIVEN a handler decorated with @tracer.start_as_current_span (contextlib's ContextDecorator)
    provider, _ = spans
    tracer = provider.get_tracer("app")
    profiler = PerformanceProfiler(sample_rate=1.0, max_overhead=None)

    @profiler.sampled
    @tracer.start_as_current_span("handle")
    def handle() -> int:
        return hot_inner(300_000)

    # WHEN it is profiled THEN the tree and the top functions are the handler's, not empty
    handle()
    (result,) = profiler.recent_results()
    assert result.call_tree is not None and result.call_tree.function != "profile_function"
    assert "hot_inner" in [f.function for f in result.top_functions]


def test_nested_sampled_calls_run_plainly_inside_a_profile(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN two sampled functions, the outer calling the inner
    profiler = PerformanceProfiler(sample_rate=1.0, max_overhead=None)

    @profiler.sampled
    def inner() -> int:
        return hot_inner(1_000)

    @profiler.sampled
    def outer() -> int:
        return sum(inner() for _ in range(5))

    # WHEN the outer one is profiled THEN the inner calls are part of its profile, never refused
    assert outer() == 5 * hot_inner(1_000)
    stats = profiler.stats()
    assert stats.profiles["cpu"] == 1 and stats.failed_to_start["cpu"] == 0
    assert not [r for r in caplog.records if "could not start" in r.getMessage()]


def test_a_profile_that_cannot_start_costs_no_budget() -> None:
    # GIVEN the application's own pyinstrument profiler running, and a budgeted sampled function
    from pyinstrument import Profiler

    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, sample_rate=1.0, max_overhead=0.01, random=random.Random(0))

    def slow() -> None:
        clock.now += 0.4

    fn = profiler.sampled(slow)
    own = Profiler()
    own.start()
    try:
        fn()
        fn()
    finally:
        own.stop()
    # THEN both calls ran unprofiled and nothing was spent: the next call is profiled
    assert profiler.stats().failed_to_start["cpu"] == 2
    fn()
    assert profiler.stats().profiles["cpu"] == 1 and profiler.stats().skipped_by_budget == 0


def test_concurrent_calls_cannot_all_start_on_one_balance() -> None:
    # GIVEN a fresh 2% budget and 20 concurrent drawn calls of an async handler
    profiler = PerformanceProfiler(sample_rate=1.0)

    @profiler.sampled
    async def handler() -> None:
        await asyncio.sleep(0.05)

    async def burst() -> None:
        await asyncio.gather(*(handler() for _ in range(20)))

    asyncio.run(burst())
    # THEN the first one starts a profile and reserves a typical cost; the others find no room
    stats = profiler.stats()
    assert stats.profiles["cpu"] == 1 and stats.skipped_by_budget == 19


def test_disabled_profiler_and_configured_default() -> None:
    from amqadf_agent.profiling.profiler import configure_default_profiler, default_profiler

    # GIVEN a sampled function of a profiler that is then disabled
    profiler = PerformanceProfiler(sample_rate=1.0, max_overhead=None)
    fn = profiler.sampled(cpu_bound)
    profiler.enabled = False
    # WHEN called THEN it runs unprofiled; enabled again, it is profiled
    assert fn(2) == cpu_bound(2) and profiler.stats().profiles["cpu"] == 0
    profiler.enabled = True
    fn(2)
    assert profiler.stats().profiles["cpu"] == 1
    # AND the default profiler's rate and switch apply to decorators made before the change
    default = default_profiler()
    before_rate, before_enabled = default.sample_rate, default.enabled
    try:
        decorated = profiled(cpu_bound)
        configure_default_profiler(enabled=False, sample_rate=1.0)
        before = default.stats().profiles["cpu"]
        decorated(2)
        assert default.stats().profiles["cpu"] == before
        with pytest.raises(ConfigError, match="sample_rate"):
            configure_default_profiler(sample_rate=1.5)
    finally:
        configure_default_profiler(enabled=before_enabled, sample_rate=before_rate)


def test_instrument_reports_both_kinds() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler()
    profiler.instrument(meter_provider=provider)
    profiler.instrument(meter_provider=provider)  # idempotent
    profiler.profile_function(cpu_bound, 2)
    profiler.profile_memory(allocate_20mb)
    assert _profiles_counter(reader) == {"cpu": 1, "memory": 1}


# --- hot-path frame spans -------------------------------------------------------------------------
def light() -> int:
    return hot_inner(2_000)


def middle() -> int:
    light()
    return hot_inner(300_000)


def outer() -> int:
    return middle()


def test_samples_in_the_wrapper_are_not_the_profiled_call() -> None:
    # GIVEN the tree pyinstrument records: the wrapper frame it started in, the profiled call, and
    # samples that landed in the wrapper's own bookkeeping before or after the call
    import contextlib

    from pyinstrument.frame import Frame

    import amqadf_agent.profiling.profiler as profiler_module

    root = Frame(f"profile_function\x00{profiler_module.__file__}\x00300", time=1.0)
    call = Frame(f"outer\x00{__file__}\x0010", time=0.9)
    root.add_child(call)
    root.add_child(Frame(f"_finish_cpu\x00{profiler_module.__file__}\x00360", time=0.05))
    root.add_child(Frame(f"__exit__\x00{contextlib.__file__}\x00140", time=0.05))
    # WHEN the profiled roots are taken THEN only the call is left, so the tree starts there
    assert _profiled_roots(root) == [call]


def test_hot_path_becomes_nested_frame_spans(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    # GIVEN a function whose time goes outer -> middle -> hot_inner
    provider, exporter = spans
    profiler = PerformanceProfiler(tracer=provider.get_tracer("test"))
    # WHEN it is profiled
    result = profiler.profile_function(outer)
    # THEN the profile span has the hot path as child spans, in that order, each nested in the last
    finished = exporter.get_finished_spans()
    profile = next(s for s in finished if s.name == semconv.SPAN_PROFILE)
    frames = [s for s in finished if s.name == semconv.SPAN_PROFILE_FRAME]
    by_parent = {s.parent.span_id: s for s in frames if s.parent is not None}
    chain = []
    parent_id = profile.context.span_id
    while parent_id in by_parent:
        chain.append(by_parent[parent_id])
        parent_id = chain[-1].context.span_id
    assert len(chain) == len(frames) >= 3
    assert [(s.attributes or {})["code.function.name"] for s in chain[:3]] == ["outer", "middle", "hot_inner"]
    assert [n.function for n in result.hot_path[:3]] == ["outer", "middle", "hot_inner"]
    for span, node, expected in zip(chain, result.hot_path, (outer, middle, hot_inner), strict=False):
        attrs = span.attributes or {}
        assert attrs["code.file.path"] == __file__
        assert attrs["code.line.number"] == expected.__code__.co_firstlineno
        assert attrs["amqadf.profiler.total_time"] == node.total_time
        assert attrs["amqadf.profiler.self_time"] == node.self_time
    # ... laid out inside the profile span's interval, each within its parent's
    assert profile.start_time is not None and profile.end_time is not None
    outer_start, outer_end = profile.start_time, profile.end_time
    for span in chain:
        assert span.start_time is not None and span.end_time is not None
        assert outer_start <= span.start_time <= span.end_time <= outer_end
        outer_start, outer_end = span.start_time, span.end_time
    # the hot function holds most of the time, so its span covers most of the profiled call
    hot = chain[2]
    assert hot.end_time is not None and hot.start_time is not None
    assert hot.end_time - hot.start_time >= 0.5 * result.duration * 1e9


def test_hot_path_share_and_depth() -> None:
    from amqadf_agent.profiling.profiler import CallNode, hot_path

    leaf = CallNode("leaf", "f.py", 4, 0.05, 0.05)
    heavy = CallNode("heavy", "f.py", 3, 0.6, 0.55, [leaf])
    small = CallNode("small", "f.py", 2, 0.3, 0.3)
    root = CallNode("root", "f.py", 1, 1.0, 0.1, [small, heavy])
    # the heaviest child at each level, while it holds >= the share of the root
    assert [n.function for n in hot_path(root, 0.1, 12)] == ["root", "heavy"]
    assert [n.function for n in hot_path(root, 0.01, 12)] == ["root", "heavy", "leaf"]
    assert [n.function for n in hot_path(root, 0.01, 2)] == ["root", "heavy"]
    assert hot_path(root, 0.1, 0) == ()
    assert hot_path(CallNode("empty", "f.py", 1, 0.0, 0.0)) == ()


def test_frame_spans_are_proportional_to_time(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    # GIVEN a known tree: root 1 s = small 0.3 s, then heavy 0.6 s; a 2 s interval
    from amqadf_agent.profiling.profiler import CallNode
    from amqadf_agent.profiling.spans import frame_spans

    provider, exporter = spans
    tracer = provider.get_tracer("test")
    heavy = CallNode("heavy", "f.py", 3, 0.6, 0.6)
    root = CallNode("root", "f.py", 1, 1.0, 0.1, [CallNode("small", "f.py", 2, 0.3, 0.3), heavy])
    start, end = 10_000_000_000, 12_000_000_000
    parent = tracer.start_span("profile", start_time=start)
    # WHEN the hot path becomes spans
    frame_spans(tracer, parent, (root, heavy), start, end)
    parent.end(end_time=end)
    frames = {s.name: s for s in exporter.get_finished_spans() if s.name == semconv.SPAN_PROFILE_FRAME}
    spans_by_function = {
        (s.attributes or {})["code.function.name"]: s
        for s in exporter.get_finished_spans()
        if s.name == semconv.SPAN_PROFILE_FRAME
    }
    assert frames  # every frame span has the contract's name
    # THEN the root ends with the call and lasts its 1 s; heavy starts after small's 0.3 s
    r, h = spans_by_function["root"], spans_by_function["heavy"]
    assert (r.start_time, r.end_time) == (11_000_000_000, 12_000_000_000)
    assert (h.start_time, h.end_time) == (11_300_000_000, 11_900_000_000)
    # AND a tree longer than the interval is compressed into it
    exporter.clear()
    frame_spans(tracer, parent, (root, heavy), start, start + 500_000_000)
    got = {(s.attributes or {})["code.function.name"]: s for s in exporter.get_finished_spans()}
    assert (got["root"].start_time, got["root"].end_time) == (start, start + 500_000_000)
    assert (got["heavy"].start_time, got["heavy"].end_time) == (start + 150_000_000, start + 450_000_000)


def test_hot_path_depth_zero_makes_no_frame_spans(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = spans
    PerformanceProfiler(tracer=provider.get_tracer("test"), hot_path_depth=0).profile_function(outer)
    assert [s.name for s in exporter.get_finished_spans()] == [semconv.SPAN_PROFILE]


# --- artifacts ------------------------------------------------------------------------------------
def test_artifacts_are_saved_named_on_the_span_and_bounded(
    spans: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Any
) -> None:
    # GIVEN a profiler keeping at most 3 artifacts, and an unrelated file in the directory
    provider, exporter = spans
    directory = tmp_path / "profiles"
    profiler = PerformanceProfiler(
        tracer=provider.get_tracer("test"), artifacts_dir=directory, max_artifacts=3
    )
    # WHEN 5 calls are profiled (the directory is created on first use)
    results = [profiler.profile_function(cpu_bound, 2) for _ in range(5)]
    (directory / "keep-me.txt").write_text("not ours")
    results.append(profiler.profile_function(cpu_bound, 2))
    # THEN each profile span names its artifact, a speedscope file
    paths = [r.artifact for r in results]
    assert all(p is not None for p in paths) and len(set(paths)) == 6
    profile_spans = [s for s in exporter.get_finished_spans() if s.name == semconv.SPAN_PROFILE]
    assert [(s.attributes or {})[semconv.ATTR_PROFILER_ARTIFACT] for s in profile_spans] == paths
    doc = json.loads(Path(str(paths[-1])).read_text(encoding="utf-8"))
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert "hot_inner" in {f["name"] for f in doc["shared"]["frames"]}
    # AND only the newest 3 are kept; files that are not ours are left alone
    remaining = sorted(p.name for p in directory.iterdir())
    assert remaining == sorted([os.path.basename(str(p)) for p in paths[-3:]] + ["keep-me.txt"])
    assert profiler.stats().artifacts_written == 6 and profiler.stats().artifact_failures == 0


def test_html_and_memory_artifacts(tmp_path: Any) -> None:
    profiler = PerformanceProfiler(artifacts_dir=tmp_path, artifact_format="html")
    cpu = profiler.profile_function(cpu_bound, 2)
    assert cpu.artifact is not None and cpu.artifact.endswith(".html")
    assert "<html" in Path(cpu.artifact).read_text(encoding="utf-8").lower()
    memory = profiler.profile_memory(allocate_20mb)
    assert memory.artifact is not None and "-memory-" in os.path.basename(memory.artifact)
    speedscope = PerformanceProfiler(artifacts_dir=tmp_path).profile_memory(allocate_20mb)
    assert speedscope.artifact is not None
    assert json.loads(Path(speedscope.artifact).read_text(encoding="utf-8"))["profiles"][0]["unit"] == "bytes"


def test_unwritable_artifacts_dir_does_not_hurt_the_host(
    spans: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an artifacts directory that cannot exist (under a regular file: fails even as root)
    provider, exporter = spans
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    profiler = PerformanceProfiler(tracer=provider.get_tracer("test"), artifacts_dir=blocker / "profiles")
    # WHEN calls are profiled
    first = profiler.profile_function(cpu_bound, 2)
    second = profiler.profile_function(cpu_bound, 2)
    # THEN they return, without artifacts; the failure is counted, and logged once as a warning
    assert first.return_value == second.return_value == cpu_bound(2)
    assert first.profiled and first.artifact is None and second.artifact is None
    stats = profiler.stats()
    assert stats.artifact_failures == 2 and stats.artifacts_written == 0 and stats.profiles["cpu"] == 2
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "saving a profile" in r.message]
    assert len(warnings) == 1
    for span in exporter.get_finished_spans():
        assert semconv.ATTR_PROFILER_ARTIFACT not in (span.attributes or {})


def test_rejects_bad_new_settings() -> None:
    with pytest.raises(ConfigError, match="hot_path_share"):
        PerformanceProfiler(hot_path_share=1.5)
    with pytest.raises(ConfigError, match="hot_path_depth"):
        PerformanceProfiler(hot_path_depth=-1)
    with pytest.raises(ConfigError, match="max_artifacts"):
        PerformanceProfiler(max_artifacts=0)
    with pytest.raises(ConfigError, match="artifact_format"):
        PerformanceProfiler(artifact_format="pdf")  # type: ignore[arg-type]


# --- the duration histogram -----------------------------------------------------------------------
def _duration_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str], HistogramDataPoint] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == semconv.PROFILE_DURATION.name:
                    assert metric.unit == "s" == semconv.PROFILE_DURATION.unit
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint) and point.attributes is not None
                        key = (
                            str(point.attributes[semconv.ATTR_PROFILER_KIND]),
                            str(point.attributes[semconv.ATTR_PROFILER_FUNCTION]),
                        )
                        points[key] = point
    return points


def test_duration_histogram_per_profiled_function() -> None:
    # GIVEN a profiler instrumented on an explicit provider (no globals)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler(random=random.Random(3), max_overhead=None)
    profiler.profile_function(cpu_bound, 2)  # before instrument(): not recorded
    profiler.instrument(meter_provider=provider)
    profiler.instrument(meter_provider=provider)  # idempotent: recorded once per call

    @profiler.sampled(rate=0.5)
    def handler(x: int) -> int:
        return x

    # WHEN calls are profiled: 2 direct CPU, 1 memory, and the sampled ones
    cpu = [profiler.profile_function(cpu_bound, 2) for _ in range(2)]
    memory = profiler.profile_memory(allocate_20mb)
    for i in range(20):
        handler(i)
    draws = random.Random(3)
    sampled = sum(draws.random() < 0.5 for _ in range(20))
    # THEN one series per kind and function, with the contract's buckets and one count per call
    points = _duration_points(reader)
    cpu_point = points[("cpu", cpu[0].function)]
    assert tuple(cpu_point.explicit_bounds) == semconv.SECONDS_BUCKETS
    assert cpu_point.count == 2
    assert cpu_point.sum == pytest.approx(sum(r.duration for r in cpu))
    assert points[("memory", memory.function)].count == 1
    handler_name = profiler.recent_results()[0].function
    assert 0 < sampled < 20 and points[("cpu", handler_name)].count == sampled
    assert len(points) == 3


# --- @profiled ------------------------------------------------------------------------------------
def test_profiled_decorator_profiles_the_drawn_calls() -> None:
    from amqadf_agent.profiling.profiler import profiled

    profiler = PerformanceProfiler(random=random.Random(7), max_overhead=None)

    @profiled(sample_rate=0.2, profiler=profiler)
    def handler(x: int, *, scale: int = 2) -> int:
        """Doubles."""
        return x * scale

    results = [handler(i) for i in range(60)]
    assert results == [i * 2 for i in range(60)]
    draws = random.Random(7)
    expected = [i for i in range(60) if draws.random() < 0.2]
    assert 0 < len(expected) < 60
    assert profiler.stats().profiles["cpu"] == len(expected)
    assert [r.return_value for r in profiler.recent_results()] == [i * 2 for i in expected][-16:]
    # the signature and metadata are preserved
    import inspect

    assert handler.__name__ == "handler" and handler.__doc__ == "Doubles."
    assert str(inspect.signature(handler)) == "(x: 'int', *, scale: 'int' = 2) -> 'int'"


def test_profiled_async_and_default_profiler() -> None:
    from amqadf_agent.profiling.profiler import default_profiler, profiled

    assert default_profiler() is default_profiler()
    before = default_profiler().stats().profiles["cpu"]

    @profiled(sample_rate=1.0)
    async def handler() -> int:
        return await async_work()

    assert asyncio.run(handler()) == cpu_bound(10)
    assert default_profiler().stats().profiles["cpu"] == before + 1
    assert "hot_inner" in [s.function for s in default_profiler().recent_results()[-1].top_functions]

    bare = profiled(cpu_bound)  # the bare decorator form: the default 1% rate
    assert bare(2) == cpu_bound(2) and bare.__name__ == "cpu_bound"
    with pytest.raises(ConfigError, match="rate"):
        profiled(sample_rate=2.0)


def test_profiled_time_budget() -> None:
    from amqadf_agent.profiling.profiler import profiled

    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, random=random.Random(0))

    @profiled(sample_rate=1.0, max_overhead=0.01, profiler=profiler)
    def slow() -> None:
        clock.now += 0.4

    for _ in range(3):
        slow()
    assert profiler.stats().profiles["cpu"] == 1 and profiler.stats().skipped_by_budget == 2


# --- the self-time counter ------------------------------------------------------------------------
def _self_time_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str], float] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == semconv.PROFILE_FUNCTION_SELF_TIME.name:
                    assert metric.unit == "s" == semconv.PROFILE_FUNCTION_SELF_TIME.unit
                    # a monotonic sum (a counter): Prometheus names it ..._seconds_total
                    assert isinstance(metric.data, Sum) and metric.data.is_monotonic
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint) and point.attributes is not None
                        assert set(point.attributes) == set(semconv.PROFILE_FUNCTION_SELF_TIME.attributes)
                        key = (
                            str(point.attributes[semconv.ATTR_PROFILER_KIND]),
                            str(point.attributes[semconv.ATTR_CODE_FUNCTION_NAME]),
                        )
                        assert key not in points, f"two points for one series {key}"
                        points[key] = point.value
    return points


class Workload:
    def method(self) -> int:
        total = 0
        for i in range(600_000):  # its own time: self time of Workload.method
            total += i * i % 7
        return total


def test_self_time_counter_sums_the_top_functions_of_the_profiles() -> None:
    # GIVEN a profiler instrumented on an explicit provider (no globals)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler()
    profiler.instrument(meter_provider=provider)
    profiler.instrument(meter_provider=provider)  # idempotent: one series per function
    # WHEN CPU profiles are taken (and a memory profile, which has no self time)
    results = [profiler.profile_function(cpu_bound, 5), profiler.profile_function(Workload().method)]
    results.append(profiler.profile_function(cpu_bound, 3))
    profiler.profile_memory(allocate_20mb)
    # THEN each top function's series is the sum of its self time over the profiles
    expected: dict[tuple[str, str], float] = {}
    for result in results:
        for stat in result.top_functions:
            if stat.self_time > 0:
                key = ("cpu", stat.qualname)
                expected[key] = expected.get(key, 0.0) + stat.self_time
    points = _self_time_points(reader)
    assert points.keys() == expected.keys()
    for key, value in expected.items():
        assert points[key] == pytest.approx(value)
    assert points == pytest.approx(profiler.function_self_times())
    # qualified names: module, class and function
    hot = f"{__name__}.hot_inner"
    assert points[("cpu", hot)] > 0
    assert points[("cpu", f"{__name__}.Workload.method")] > 0
    assert not any(kind == "memory" for kind, _ in points)
    # and a later collection reports the cumulative totals, growing with new profiles
    before = points[("cpu", hot)]
    more = profiler.profile_function(cpu_bound, 4)
    added = sum(s.self_time for s in more.top_functions if s.qualname == hot)
    assert _self_time_points(reader)[("cpu", hot)] == pytest.approx(before + added)


def test_self_time_counter_is_bounded_to_the_largest(monkeypatch: pytest.MonkeyPatch) -> None:
    from amqadf_agent.profiling import metrics as module
    from amqadf_agent.profiling.profiler import FunctionStat

    assert module.MAX_SELF_TIME_FUNCTIONS == 200  # the documented bound
    monkeypatch.setattr(module, "MAX_SELF_TIME_FUNCTIONS", 5)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler()
    profiler.instrument(meter_provider=provider)

    def stat(name: str, self_time: float) -> FunctionStat:
        return FunctionStat(name, "f.py", 1, self_time, self_time, f"m.{name}")

    # GIVEN profiles whose top functions are more than the bound (f0..f7, f3 twice)
    profiler._metrics.add_self_times("cpu", tuple(stat(f"f{i}", float(i)) for i in range(8)))
    profiler._metrics.add_self_times("cpu", (stat("f3", 10.0), stat("zero", 0.0)))
    # THEN the largest five are kept (summed), the smallest dropped, and zero self time adds nothing
    expected = {("cpu", "m.f3"): 13.0, **{("cpu", f"m.f{i}"): float(i) for i in (4, 5, 6, 7)}}
    assert profiler.function_self_times() == expected
    assert _self_time_points(reader) == expected


def test_self_time_counter_bound_with_real_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    from amqadf_agent.profiling import metrics as module

    monkeypatch.setattr(module, "MAX_SELF_TIME_FUNCTIONS", 2)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler()
    profiler.instrument(meter_provider=provider)
    for _ in range(3):
        profiler.profile_function(outer)
    points = _self_time_points(reader)
    assert len(points) <= 2
    assert ("cpu", f"{__name__}.hot_inner") in points  # the hot spot is never the one dropped


def test_profile_spans_and_events_carry_only_the_contracts_attributes(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    profiler = PerformanceProfiler(tracer=provider.get_tracer("test"))
    profiler.profile_function(cpu_bound)
    contract = {event.name: set(event.attributes) for event in semconv.EVENTS}
    finished = exporter.get_finished_spans()
    assert {span.name for span in finished} == {semconv.SPAN_PROFILE, semconv.SPAN_PROFILE_FRAME}
    for span in finished:
        assert set(span.attributes or {}) <= contract[span.name], span.name
        for event in span.events:
            assert set(event.attributes or {}) <= contract[event.name], event.name
