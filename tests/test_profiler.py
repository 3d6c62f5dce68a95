"""PerformanceProfiler: CPU and memory profiles, reports, spans, the profiles counter, sampling."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.profiling.profiler import (
    MemoryProfileResult,
    PerformanceProfiler,
    ProfileResult,
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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


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
    error_span, memory_span = exporter.get_finished_spans()
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
    profiler = PerformanceProfiler(random=random.Random(42))
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
    # GIVEN a budget of 1% of wall time (0.6 s per minute) and calls that take 0.4 s by the clock
    clock = FakeClock()
    profiler = PerformanceProfiler(clock=clock, max_overhead=0.01, random=random.Random(0))

    def slow() -> None:
        clock.now += 0.4

    fn = profiler.sampled(rate=1.0)(slow)
    # WHEN called repeatedly
    fn()  # 0.4 s spent: under budget
    fn()  # 0.4 s <= 0.6 s: profiled, now 0.8 s spent
    fn()  # 0.8 s > 0.6 s: skipped (runs unprofiled)
    assert profiler.stats().profiles["cpu"] == 2
    assert profiler.stats().skipped_by_budget == 1
    # THEN once the profiles have left the one-minute window, profiling resumes
    clock.now += 60.0
    fn()
    assert profiler.stats().profiles["cpu"] == 3
    assert profiler.stats().skipped_by_budget == 1


def test_instrument_reports_both_kinds() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    profiler = PerformanceProfiler()
    profiler.instrument(meter_provider=provider)
    profiler.instrument(meter_provider=provider)  # idempotent
    profiler.profile_function(cpu_bound, 2)
    profiler.profile_memory(allocate_20mb)
    assert _profiles_counter(reader) == {"cpu": 1, "memory": 1}
