"""Per-window ScalingMetrics: request and error rates, histogram quantiles, CPU from cpu time."""

from __future__ import annotations

from typing import Any

import pytest

from amqadf_agent.analyzer.model import (
    TEMPORALITY_CUMULATIVE,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
    SpanRecord,
)
from amqadf_agent.analyzer.windows import WindowAggregator, bucket_quantile, is_error

S = 1_000_000_000
T0 = 1_700_000_040 * S  # a multiple of 60 s
RES: dict[str, Any] = {"service.name": "shop", "service.instance.id": "i-1"}


def server_span(end_s: float, duration_s: float, status: int = 200, resource: Any = None) -> SpanRecord:
    end = T0 + int(end_s * S)
    return SpanRecord(
        "a" * 32, "b" * 16, "", "GET /", 2, end - int(duration_s * S), end, 0, "",
        {"http.response.status_code": status}, (), resource or RES, "t",
    )  # fmt: skip


def metric(name: str, points: tuple[Any, ...], kind: str = "sum", resource: Any = None) -> MetricRecord:
    return MetricRecord(name, "", "", kind, TEMPORALITY_CUMULATIVE, True, points, resource or RES, "t")


def test_request_rate_error_rate_and_span_quantiles_per_window() -> None:
    agg = WindowAggregator(60)
    agg.add(server_span(0.5, 0.4))  # the data starts at 0.1 s: window 0 is covered from there
    for i in range(120):  # 120 requests in window 1 (60..120 s), 12 of them 5xx
        agg.add(server_span(60 + i * 0.5, 0.01 * (i % 100 + 1), 503 if i % 10 == 0 else 200))
    agg.add(server_span(179.9, 0.1))
    windows = agg.windows()
    assert [w.start_ns for w in windows] == [T0, T0 + 60 * S, T0 + 120 * S]
    middle = windows[1].metrics
    assert windows[1].requests == 120 and windows[1].errors == 12
    assert middle.request_rate == pytest.approx(2.0)
    assert middle.error_rate == pytest.approx(0.1)
    assert middle.response_time_p50 == pytest.approx(0.4)
    assert middle.response_time_p95 == pytest.approx(0.94)
    assert windows[1].instances == 1
    assert windows[0].metrics.cpu_utilization is None


def test_quantiles_from_cumulative_histograms_take_deltas() -> None:
    bounds = (0.1, 0.2, 0.5, 1.0)
    first = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 30 * S, 100, 10.0,
                           (100, 0, 0, 0, 0), bounds, None, None)  # fmt: skip
    # In the next window: +100 requests, all in (0.2, 0.5]; then 10 errors with error.type.
    second = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 90 * S, 200, 40.0,
                            (100, 0, 100, 0, 0), bounds, None, None)  # fmt: skip
    errors = HistogramPoint({"http.response.status_code": 429, "error.type": "429"}, T0, T0 + 90 * S, 10, 1.0,
                            (0, 10, 0, 0, 0), bounds, None, None)  # fmt: skip
    agg = WindowAggregator(60)
    agg.add(metric("http.server.request.duration", (first,), "histogram"))
    agg.add(metric("http.server.request.duration", (second, errors), "histogram"))
    w0, w1 = agg.windows()
    assert w0.requests == 100 and w0.request_source == "histogram"
    assert w0.metrics.response_time_p50 == pytest.approx(0.05)  # 0 + 0.1 * 50/100
    assert w1.requests == 110 and w1.errors == 10
    assert w1.metrics.error_rate == pytest.approx(10 / 110)
    # 10 in (0.1, 0.2], 100 in (0.2, 0.5]: rank 55 -> 0.2 + 0.3 * 45/100
    assert w1.metrics.response_time_p50 == pytest.approx(0.335)
    assert w1.metrics.response_time_p95 == pytest.approx(0.2 + 0.3 * (104.5 - 10) / 100)


def test_bucket_quantile_edges() -> None:
    assert bucket_quantile(0.5, (1.0,), [0, 0]) is None
    assert bucket_quantile(0.99, (1.0, 2.0), [0, 0, 5]) == 2.0  # overflow: the last bound
    assert bucket_quantile(1.0, (1.0, 2.0), [2, 2, 0]) == pytest.approx(2.0)


def test_cpu_from_cumulative_cpu_time_memory_and_queue() -> None:
    agg = WindowAggregator(60)
    start = T0 - 100 * S
    for t, user in ((10, 5.0), (40, 20.0), (70, 35.0)):  # 15 cpu-s per 30 s = 0.5
        agg.add(metric("process.cpu.time", (NumberPoint({"cpu.mode": "user"}, start, T0 + t * S, user),)))
    agg.add(metric("system.memory.utilization", (
        NumberPoint({"system.memory.state": "used"}, 0, T0 + 20 * S, 0.4),
        NumberPoint({"system.memory.state": "free"}, 0, T0 + 20 * S, 0.6),
    ), "gauge"))  # fmt: skip
    agg.add(metric("amqadf.worker_pool.queue.size", (
        NumberPoint({"amqadf.worker_pool.name": "p"}, start, T0 + 10 * S, 9),
        NumberPoint({"amqadf.worker_pool.name": "p"}, start, T0 + 50 * S, 3),
    )))  # fmt: skip
    w0, w1 = agg.windows()
    # The first point counts from the process start (5 cpu-s in 110 s), the next 15 in 30 s.
    assert w0.metrics.cpu_utilization == pytest.approx((5 / 110 + 0.5) / 2)
    assert w1.metrics.cpu_utilization == pytest.approx(0.5)
    assert w0.metrics.memory_utilization == pytest.approx(0.4)
    assert w0.metrics.queue_depth == 3


def test_cpu_gauges_process_first_then_system_idle() -> None:
    agg = WindowAggregator(60)
    agg.add(metric("system.cpu.utilization", (
        NumberPoint({"cpu.mode": "idle", "cpu.logical_number": 0}, 0, T0 + S, 0.2),
        NumberPoint({"cpu.mode": "idle", "cpu.logical_number": 1}, 0, T0 + S, 0.4),
        NumberPoint({"cpu.mode": "user"}, 0, T0 + S, 0.7),
    ), "gauge"))  # fmt: skip
    assert agg.windows()[0].metrics.cpu_utilization == pytest.approx(0.7)
    agg.add(metric("process.cpu.utilization", (
        NumberPoint({"cpu.mode": "user"}, 0, T0 + S, 0.2),
        NumberPoint({"cpu.mode": "system"}, 0, T0 + S, 0.05),
    ), "gauge"))  # fmt: skip
    assert agg.windows()[0].metrics.cpu_utilization == pytest.approx(0.25)


def test_instances_service_filter_and_time_range() -> None:
    other = {"service.name": "other", "service.instance.id": "x"}
    second = {"service.name": "shop", "service.instance.id": "i-2"}
    agg = WindowAggregator(60, service="shop", since_ns=T0 + 60 * S)
    agg.add(server_span(10, 0.1))  # before --since
    agg.add(server_span(70, 0.1))
    agg.add(server_span(80, 0.1, resource=second))
    agg.add(server_span(90, 0.1, resource=other))
    (window,) = agg.windows()
    assert window.instances == 2 and window.requests == 2


def test_is_error() -> None:
    assert is_error({"http.response.status_code": 500})
    assert is_error({"error.type": "Timeout"})
    assert is_error({}, 2)
    assert not is_error({"http.response.status_code": 404})


# --- window_s=None: the window chosen from the data -------------------------------------------------
def _mixed_stream(seconds: int) -> list[Any]:
    """Requests (some failing) every second, CPU time, memory and queue points every 5 s."""
    records: list[Any] = []
    start = T0 - 100 * S
    for t in range(seconds):
        records.append(server_span(t + 0.5, 0.01 * (t % 50 + 1), 503 if t % 7 == 0 else 200))
        if t % 5 == 0:
            records.append(
                metric("process.cpu.time", (NumberPoint({"cpu.mode": "user"}, start, T0 + t * S, t * 0.3),))
            )
            records.append(metric("system.memory.utilization", (
                NumberPoint({"system.memory.state": "used"}, 0, T0 + t * S, 0.3 + (t % 3) / 10),
            ), "gauge"))  # fmt: skip
            records.append(metric("amqadf.worker_pool.queue.size", (
                NumberPoint({"amqadf.worker_pool.name": "p"}, start, T0 + t * S, t % 4),
            )))  # fmt: skip
    return records


def _comparable(windows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (w.start_ns, w.end_ns, w.instances, w.requests, w.errors, w.request_source, w.metrics)
        for w in windows
    ]


@pytest.mark.parametrize(
    ("seconds", "expected_s"), [(20, 5), (100, 10), (140, 15), (290, 30), (590, 60), (1300, 60)]
)
def test_auto_window_matches_the_window_it_chooses(seconds: int, expected_s: int) -> None:
    # GIVEN the same stream into an automatic aggregator and one given the size it should choose
    auto, fixed = WindowAggregator(None), WindowAggregator(expected_s)
    for record in _mixed_stream(seconds):
        auto.add(record)
        fixed.add(record)
    # WHEN read THEN it chose that size (about ten windows, 60 s for long data) and the windows are equal
    windows = auto.windows()
    assert auto.window_s == expected_s
    assert _comparable(windows) == _comparable(fixed.windows())
    assert len(windows) <= 11 or expected_s == 60


def test_merged_windows_keep_a_bounded_sample_of_both_sides() -> None:
    from amqadf_agent.analyzer.windows import MAX_SAMPLES_PER_WINDOW

    # GIVEN 400 requests in each 5 s for 11 minutes (4 800 a minute: more than one sample holds),
    # the first 45 s of each minute fast (0.1 s), the last 15 s slow (0.3 s)
    auto = WindowAggregator(None)
    for t in range(0, 660, 5):
        for i in range(400):
            auto.add(server_span(t + i * 0.0125, 0.1 if t % 60 < 45 else 0.3))
    windows = auto.windows()
    # THEN the merged 60 s windows count every request
    assert auto.window_s == 60
    assert sum(w.requests for w in windows) == 132 * 400
    # AND each keeps at most the bounded sample, drawn fairly: three fast for one slow
    for start, bucket in auto._buckets.items():
        assert len(bucket.samples) <= MAX_SAMPLES_PER_WINDOW
        if bucket.span_seen == 4800:
            fast = sum(1 for d in bucket.samples if d < 0.2) / len(bucket.samples)
            assert fast == pytest.approx(0.75, abs=0.02), start
    full = [w for w in windows if w.requests == 4800]
    assert len(full) >= 9
    assert all(w.metrics.response_time_p50 == pytest.approx(0.1) for w in full)
    assert all(w.metrics.response_time_p95 == pytest.approx(0.3) for w in full)
