"""Per-window ScalingMetrics: request and error rates, histogram quantiles, CPU from cpu time."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from amqadf_agent.analyzer.deltas import bucket_quantile
from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_PRODUCER,
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
    SpanRecord,
)
from amqadf_agent.analyzer.windows import WindowAggregator, is_error

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
    first = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 60 * S, 100, 10.0,
                           (100, 0, 0, 0, 0), bounds, None, None)  # fmt: skip
    # In the next window: +100 requests, all in (0.2, 0.5]; then 10 errors with error.type, counted
    # since the series started (T0): half of them in each window.
    second = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 120 * S, 200, 40.0,
                            (100, 0, 100, 0, 0), bounds, None, None)  # fmt: skip
    errors = HistogramPoint({"http.response.status_code": 429, "error.type": "429"}, T0, T0 + 120 * S,
                            10, 1.0, (0, 10, 0, 0, 0), bounds, None, None)  # fmt: skip
    agg = WindowAggregator(60)
    agg.add(metric("http.server.request.duration", (first,), "histogram"))
    agg.add(metric("http.server.request.duration", (second, errors), "histogram"))
    w0, w1 = agg.windows()
    assert w0.requests == pytest.approx(105) and w0.request_source == "histogram"
    assert w0.errors == pytest.approx(5) and w0.covered_s == 60
    assert w0.metrics.request_rate == pytest.approx(105 / 60)
    assert w0.metrics.response_time_p50 == pytest.approx(0.0525)  # 0 + 0.1 * 52.5/100
    assert w1.requests == pytest.approx(105) and w1.errors == pytest.approx(5)
    assert w1.metrics.error_rate == pytest.approx(5 / 105)
    # 5 in (0.1, 0.2], 100 in (0.2, 0.5]: rank 52.5 -> 0.2 + 0.3 * 47.5/100
    assert w1.metrics.response_time_p50 == pytest.approx(0.3425)
    assert w1.metrics.response_time_p95 == pytest.approx(0.2 + 0.3 * (99.75 - 5) / 100)


def test_a_histogram_delta_is_spread_over_the_windows_its_interval_overlaps() -> None:
    # GIVEN points at 30 s and 90 s (60 s windows): the second delta covers 30..90 s, half in each
    # window, and a series first seen at 90 s counts since its start (0 s): 2/3 in the first window
    bounds = (0.1, 0.2, 0.5, 1.0)
    first = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 30 * S, 100, 10.0,
                           (100, 0, 0, 0, 0), bounds, None, None)  # fmt: skip
    second = HistogramPoint({"http.response.status_code": 200}, T0, T0 + 90 * S, 200, 40.0,
                            (100, 0, 100, 0, 0), bounds, None, None)  # fmt: skip
    errors = HistogramPoint({"http.response.status_code": 429, "error.type": "429"}, T0, T0 + 90 * S, 9, 1.0,
                            (0, 9, 0, 0, 0), bounds, None, None)  # fmt: skip
    agg = WindowAggregator(60)
    agg.add(metric("http.server.request.duration", (first,), "histogram"))
    agg.add(metric("http.server.request.duration", (second, errors), "histogram"))
    w0, w1 = agg.windows()
    # THEN each window holds its share, and the second divides by the 30 s the data covers of it
    assert w0.requests == pytest.approx(100 + 50 + 6) and w0.errors == pytest.approx(6)
    assert w0.covered_s == 60 and w0.metrics.request_rate == pytest.approx(156 / 60)
    assert w1.requests == pytest.approx(50 + 3) and w1.errors == pytest.approx(3)
    assert w1.covered_s == 30 and w1.metrics.request_rate == pytest.approx(53 / 30)
    # 3 in (0.1, 0.2], 50 in (0.2, 0.5]: rank 26.5 -> 0.2 + 0.3 * 23.5/50
    assert w1.metrics.response_time_p50 == pytest.approx(0.2 + 0.3 * 23.5 / 50)
    assert sum(w.requests for w in (w0, w1)) == pytest.approx(209)


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


# --- histogram deltas cover an interval; the automatic window is never below the export interval ----
BOUNDS = (0.1, 0.2, 0.5, 1.0)


def _exported_requests(
    minutes: int, every_s: int = 60, offset_s: int = 0, temporality: int = TEMPORALITY_CUMULATIVE
) -> list[Any]:
    """10 requests a second from ``offset_s``, exported every ``every_s`` (histograms, a CPU gauge)."""
    records: list[Any] = []
    start = T0 + offset_s * S
    for k in range(1, minutes * 60 // every_s + 1):
        t = start + k * every_s * S
        n = 10 * every_s * (1 if temporality == TEMPORALITY_DELTA else k)
        since = t - every_s * S if temporality == TEMPORALITY_DELTA else start
        point = HistogramPoint({"http.response.status_code": 200}, since, t, n, 0.01 * n, (n, 0, 0, 0, 0),
                               BOUNDS, None, None)  # fmt: skip
        records.append(
            MetricRecord(
                "http.server.request.duration", "s", "", "histogram", temporality, True, (point,), RES, "t"
            )
        )
        records.append(
            metric("process.cpu.utilization", (NumberPoint({"cpu.mode": "user"}, 0, t, 0.5),), "gauge")
        )
    return records


def _request_windows(agg: WindowAggregator, records: list[Any]) -> list[Any]:
    for record in records:
        agg.add(record)
    return [w for w in agg.windows() if w.request_source is not None]


@pytest.mark.parametrize("window_s", [None, 60, 30, 15])
@pytest.mark.parametrize("temporality", [TEMPORALITY_CUMULATIVE, TEMPORALITY_DELTA])
def test_histogram_rate_is_right_in_every_window_at_a_60s_export_interval(
    window_s: int | None, temporality: int
) -> None:
    # GIVEN 5 minutes at 10 req/s, histograms exported every 60 s, aligned on the windows and not
    for offset_s in (0, 25):
        agg = WindowAggregator(window_s)
        windows = _request_windows(agg, _exported_requests(5, offset_s=offset_s, temporality=temporality))
        # THEN every window, the first and the last (partial) ones too, shows 10 req/s, none is
        # divided by a second or by its own length when it holds part of a longer interval
        assert [w.metrics.request_rate for w in windows] == pytest.approx([10.0] * len(windows)), offset_s
        assert sum(w.requests for w in windows) == pytest.approx(3000)
        assert windows[0].start_ns <= T0 + offset_s * S < windows[0].end_ns
        assert windows[-1].start_ns < T0 + (offset_s + 300) * S <= windows[-1].end_ns
        assert all(w.metrics.response_time_p50 == pytest.approx(0.05) for w in windows)
        if window_s is None:  # and the automatic window is the export interval, not 30 s
            assert agg.window_s == 60


def test_the_last_window_is_not_divided_by_one_second() -> None:
    # GIVEN the reviewer's case: the last point lands on the start of a window (60 s windows)
    agg = WindowAggregator(60)
    for record in _exported_requests(5):
        agg.add(record)
    windows = agg.windows()
    # THEN the point at 300 s closes the 240..300 s interval; the window it starts has no requests
    assert [round((w.start_ns - T0) / S) for w in windows] == [0, 60, 120, 180, 240, 300]
    assert [w.metrics.request_rate for w in windows[:5]] == pytest.approx([10.0] * 5)
    assert windows[5].metrics.request_rate is None and windows[5].metrics.cpu_utilization == 0.5


def test_histogram_deltas_are_clipped_to_since_and_until() -> None:
    # GIVEN --since 90 s and --until 210 s, with points every 60 s
    agg = WindowAggregator(60, since_ns=T0 + 90 * S, until_ns=T0 + 210 * S)
    windows = _request_windows(agg, _exported_requests(5))
    # THEN only the share of each interval within the range counts, at the same rate
    assert [round((w.start_ns - T0) / S) for w in windows] == [60, 120, 180]
    assert [w.requests for w in windows] == pytest.approx([300, 600, 300])
    assert [w.metrics.request_rate for w in windows] == pytest.approx([10.0] * 3)


def test_auto_window_is_never_below_the_typical_export_interval() -> None:
    # GIVEN histogram-only data exported every 60 s for 3 minutes (15 s would give ten windows)
    agg = WindowAggregator(None)
    _request_windows(agg, _exported_requests(3))
    assert agg.window_s == 60
    # with some jitter, or every 30 s (2 minutes: still 30, not 15), or every 2 minutes (beyond 60 s)
    jittered = WindowAggregator(None)
    for i, record in enumerate(_exported_requests(5)):
        if record.name == "http.server.request.duration":
            record.points[0].time_ns += (i % 4) * 100_000_000
        jittered.add(record)
    assert jittered.window_s == 60
    for every_s, minutes, expected in ((30, 2, 30), (120, 12, 120)):
        agg = WindowAggregator(None)
        windows = _request_windows(agg, _exported_requests(minutes, every_s=every_s))
        assert agg.window_s == expected
        assert [w.metrics.request_rate for w in windows] == pytest.approx([10.0] * len(windows))
        assert _comparable(agg.windows()) == _comparable(
            _all_windows(WindowAggregator(expected), minutes, every_s)
        )


def _all_windows(agg: WindowAggregator, minutes: int, every_s: int) -> list[Any]:
    for record in _exported_requests(minutes, every_s=every_s):
        agg.add(record)
    return agg.windows()


def test_auto_window_follows_the_gaps_of_the_series_used() -> None:
    # GIVEN 2 minutes of spans every second and histograms every 60 s: spans give the requests,
    # so the histograms do not hold the window at 60 s
    agg = WindowAggregator(None)
    for t in range(120):
        agg.add(server_span(t + 0.5, 0.01))
    _request_windows(agg, _exported_requests(2))
    assert agg.window_s == 15
    # GIVEN process.cpu.time every 30 s as the only CPU source: at least 30 s
    cpu = WindowAggregator(None)
    for t in range(120):
        cpu.add(server_span(t + 0.5, 0.01))
    for t in range(0, 121, 30):
        cpu.add(
            metric(
                "process.cpu.time", (NumberPoint({"cpu.mode": "user"}, T0 - 100 * S, T0 + t * S, t * 0.3),)
            )
        )
    assert cpu.window_s == 30
    # but a CPU gauge takes precedence over process.cpu.time: back to 15 s
    cpu.add(metric("process.cpu.utilization", (NumberPoint({"cpu.mode": "user"}, 0, T0 + S, 0.3),), "gauge"))
    assert cpu.window_s == 15


def test_auto_windows_read_twice_equal_a_fixed_window_of_the_chosen_size() -> None:
    # GIVEN the reviewer's case: 95 s of requests read (10 s windows), then 45 s more (15 s windows)
    auto, fixed = WindowAggregator(None), WindowAggregator(15)
    for t in range(95):
        auto.add(server_span(t + 0.5, 0.01))
        fixed.add(server_span(t + 0.5, 0.01))
    first = auto.windows()
    assert auto.window_s == 10 and len(first) == 10
    assert _comparable(auto.windows()) == _comparable(first)  # reading changes nothing
    for t in range(95, 140):
        auto.add(server_span(t + 0.5, 0.01))
        fixed.add(server_span(t + 0.5, 0.01))
    # THEN the windows are those of a fixed 15 s window: 15 requests each, not 20, 10, 20, ...
    windows = auto.windows()
    assert auto.window_s == 15
    assert _comparable(windows) == _comparable(fixed.windows())
    assert [w.requests for w in windows] == [15] * 9 + [5]


def test_auto_windows_read_between_records_of_a_mixed_stream() -> None:
    # GIVEN every record of a mixed stream, the windows read every 17 records
    for seconds, expected_s in ((140, 15), (290, 30), (700, 60)):
        auto, fixed = WindowAggregator(None), WindowAggregator(expected_s)
        for i, record in enumerate(_mixed_stream(seconds)):
            auto.add(record)
            fixed.add(record)
            if i % 17 == 0:
                auto.windows()
        # THEN the result is that of the fixed window of the size chosen at the end
        assert auto.window_s == expected_s
        assert _comparable(auto.windows()) == _comparable(fixed.windows())


def test_an_input_that_begins_mid_stream_takes_its_first_point_as_a_baseline() -> None:
    # GIVEN a cumulative request histogram whose series started a day before the file begins
    day_ago = T0 - 86_400 * S
    agg = WindowAggregator(60)
    for k in range(1, 6):
        n = 1_000_000 + 600 * k
        point = HistogramPoint(
            {"http.response.status_code": 200},
            day_ago,
            T0 + k * 60 * S,
            n,
            0.0,
            (n, 0, 0, 0, 0),
            BOUNDS,
            None,
            None,
        )
        kind = TEMPORALITY_CUMULATIVE
        agg.add(
            MetricRecord("http.server.request.duration", "s", "", "histogram", kind, True, (point,), RES, "t")
        )
    windows = [w for w in agg.windows() if w.request_source is not None]
    # THEN the day before is not spread over a day of windows, nor counted as one spike: the data
    # starts at the first point, and every window after it has the 10 requests a second it had
    assert windows[0].start_ns >= T0
    assert [round(w.metrics.request_rate or 0.0, 6) for w in windows] == [10.0] * len(windows)
    assert sum(w.requests for w in windows) == pytest.approx(4 * 600)


# --- older semantic-convention names ----------------------------------------------------------------
def _http_points(status_key: str, scale: float) -> tuple[HistogramPoint, ...]:
    """Two cumulative points (60 s apart) of one series: 100 requests in (0.1, 0.2] s, then 90 more
    in (0.2, 0.5] s, and a series of 10 requests answered 503 in the second window; bounds scaled by
    ``scale`` (1000 for milliseconds)."""
    bounds = tuple(b * scale for b in (0.1, 0.2, 0.5, 1.0))
    ok = {status_key: 200, "http.method": "GET"}
    bad = {status_key: 503, "http.method": "GET"}
    return (
        HistogramPoint(ok, T0, T0 + 60 * S, 100, 15 * scale, (0, 100, 0, 0, 0), bounds, None, None),
        HistogramPoint(ok, T0, T0 + 120 * S, 190, 45 * scale, (0, 100, 90, 0, 0), bounds, None, None),
        HistogramPoint(bad, T0 + 60 * S, T0 + 120 * S, 10, 3 * scale, (0, 0, 10, 0, 0), bounds, None, None),
    )


def _old_metric(points: tuple[Any, ...], unit: str = "ms") -> MetricRecord:
    return MetricRecord("http.server.duration", unit, "", "histogram", TEMPORALITY_CUMULATIVE, True,
                        points, RES, "t")  # fmt: skip


def _summary(windows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (w.start_ns, round(w.requests, 6), round(w.errors, 6), w.request_source,
         round(w.metrics.response_time_p50, 9), round(w.metrics.response_time_p95, 9))
        for w in windows
    ]  # fmt: skip


def test_old_http_duration_histogram_in_ms_and_old_status_code_are_read() -> None:
    # GIVEN the same requests as the current histogram (seconds, http.response.status_code) and as the
    # older one (http.server.duration in ms, http.status_code)
    first, second, bad = _http_points("http.response.status_code", 1.0)
    new = WindowAggregator(60)
    new.add(metric("http.server.request.duration", (first,), "histogram"))
    new.add(metric("http.server.request.duration", (second, bad), "histogram"))
    first, second, bad = _http_points("http.status_code", 1000.0)
    old = WindowAggregator(60)
    old.add(_old_metric((first,)))
    old.add(_old_metric((second, bad)))
    # THEN the windows are the same: latency in seconds, the 503s counted as errors
    expected = _summary(new.windows())
    assert expected[1][2] == 10 and expected[1][4] == pytest.approx(0.2 + 0.3 * 50 / 100)
    assert _summary(old.windows()) == expected
    # Control: an old histogram that says its unit is seconds is not divided by 1000.
    first, second, bad = _http_points("http.status_code", 1.0)
    in_seconds = WindowAggregator(60)
    in_seconds.add(_old_metric((first,), "s"))
    in_seconds.add(_old_metric((second, bad), "s"))
    assert _summary(in_seconds.windows()) == expected


def test_old_and_new_http_histograms_together_are_not_counted_twice() -> None:
    # GIVEN a producer emitting both (OTEL_SEMCONV_STABILITY_OPT_IN=http/dup), the old one first
    agg = WindowAggregator(60)
    old_points = _http_points("http.status_code", 1000.0)
    new_points = _http_points("http.response.status_code", 1.0)
    agg.add(_old_metric(old_points[:1]))
    agg.add(metric("http.server.request.duration", new_points[:1], "histogram"))
    agg.add(_old_metric(old_points[1:]))
    agg.add(metric("http.server.request.duration", new_points[1:], "histogram"))
    # THEN each window counts the requests once (the current histogram wins)
    assert [w.requests for w in agg.windows()] == pytest.approx([100, 100])
    # ... while an old-only window still counts: the old series alone gives the same numbers.
    alone = WindowAggregator(60)
    alone.add(_old_metric(old_points[:1]))
    alone.add(_old_metric(old_points[1:]))
    assert [w.requests for w in alone.windows()] == pytest.approx([100, 100])


def test_is_error_reads_the_old_status_code_attribute() -> None:
    assert is_error({"http.status_code": 503}) and is_error({"http.status_code": "500"})
    assert not is_error({"http.status_code": 404})
    # The current attribute wins when both are present.
    assert not is_error({"http.response.status_code": 200, "http.status_code": 500})


# --- implausible times and values: one bad point costs one window, never the report ---------------


def _delta_histogram(start_ns: int, time_ns: int, count: int = 10) -> MetricRecord:
    point = HistogramPoint({}, start_ns, time_ns, count, 1.0, (count, 0), (0.5,), None, None)
    return MetricRecord("http.server.request.duration", "s", "", "histogram", TEMPORALITY_DELTA, False,
                        (point,), RES, "t")  # fmt: skip


@pytest.fixture
def window_budget(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the base windows an aggregator looks up, failing past 10 000 (an interval walked window
    by window) instead of running for hours."""
    created = [0]
    real = WindowAggregator._bucket_at

    def counting(self: WindowAggregator, time_ns: int) -> Any:
        created[0] += 1
        assert created[0] < 10_000, "the interval is walked window by window"
        return real(self, time_ns)

    monkeypatch.setattr(WindowAggregator, "_bucket_at", counting)
    return created


@pytest.mark.parametrize("window_s", [None, 60, 1])
@pytest.mark.parametrize(
    ("start_ns", "time_ns"),
    [(1, T0), (T0 - 2 * S, 2**63 - 1), (T0 - 86_400 * S, T0)],
    ids=["start-at-1ns", "far-future-time", "a-day-long-interval"],
)
def test_a_delta_interval_longer_than_plausible_counts_in_its_own_window_only(
    window_s: float | None, start_ns: int, time_ns: int, window_budget: list[int]
) -> None:
    # GIVEN a delta point whose interval reaches back to 1970, forward to 2262, or over a whole day
    # (no exporter collects that seldom)
    agg = WindowAggregator(window_s)
    agg.add(_delta_histogram(T0 - 21 * S, T0 - 20 * S))  # a plausible neighbour
    # WHEN it is added
    agg.add(_delta_histogram(start_ns, time_ns))
    windows = agg.windows()
    # THEN its requests count in the window of its time, as a point without a start time would
    assert len(windows) <= 3 and window_budget[0] <= 10
    assert sum(w.requests for w in windows) == pytest.approx(20)
    last = windows[-1]
    assert last.start_ns <= time_ns < last.end_ns and last.requests == pytest.approx(10)


def test_a_window_far_below_the_export_interval_keeps_each_delta_in_one_window(
    window_budget: list[int],
) -> None:
    # GIVEN 1 ms windows and a delta covering 60 s (60 000 windows)
    agg = WindowAggregator(0.001)
    agg.add(_delta_histogram(T0 - 60 * S, T0))
    # THEN it is counted at its time, not walked window by window
    (window,) = agg.windows()
    assert window.requests == pytest.approx(10) and agg.implausible_intervals == 1


def test_a_cumulative_series_after_a_point_at_1ns_is_not_spread_back_to_1970(
    window_budget: list[int],
) -> None:
    # GIVEN a cumulative series whose previous point claims a time of 1 ns
    bounds = (0.5,)
    early = HistogramPoint({}, 1, 1, 5, 1.0, (5, 0), bounds, None, None)
    late = HistogramPoint({}, 1, T0, 15, 2.0, (15, 0), bounds, None, None)
    agg = WindowAggregator(60)
    agg.add(metric("http.server.request.duration", (early,), "histogram"))
    agg.add(metric("http.server.request.duration", (late,), "histogram"))
    # THEN the later point's increment is in its own window
    assert [(w.start_ns, w.requests) for w in agg.windows()][-1] == (T0, pytest.approx(10))


#: Numbers proto3 JSON allows that no count, size, utilization or duration can be.
IMPOSSIBLE = [math.nan, math.inf, -math.inf, -1, -1e308, 1e308, 10**30]
USED = {"system.memory.state": "used"}
QUEUE = {"amqadf.worker_pool.name": "p"}


def _metrics_stream() -> list[Any]:
    """Two minutes of CPU (gauges and time), memory, queue and request-duration histograms."""
    records: list[Any] = []
    start = T0 - 100 * S
    bounds = (0.1, 0.5)
    for t in range(0, 120, 10):
        time = T0 + t * S
        records += [
            metric("process.cpu.time", (NumberPoint({"cpu.mode": "user"}, start, time, t * 0.3),)),
            metric("process.cpu.utilization", (NumberPoint({"cpu.mode": "user"}, 0, time, 0.3),), "gauge"),
            metric("system.cpu.utilization", (NumberPoint({"cpu.mode": "idle"}, 0, time, 0.6),), "gauge"),
            metric("system.memory.utilization", (NumberPoint(USED, 0, time, 0.5),), "gauge"),
            metric("amqadf.worker_pool.queue.size", (NumberPoint(QUEUE, start, time, 2),)),
            metric("http.server.request.duration", (HistogramPoint({}, start, time, 10 * t, 0.2 * t,
                   (5 * t, 4 * t, t), bounds, None, None),), "histogram"),
        ]  # fmt: skip
    return records


def _poison(bad: float) -> list[Any]:
    """A point of each metric the windows read, holding ``bad`` where the number goes."""
    time, start = T0 + 55 * S, T0 - 100 * S
    bounds = (0.1, 0.5)

    def histogram(count: Any = 10, buckets: Any = (5, 4, 1), total: Any = 1.0, edges: Any = bounds) -> Any:
        point = HistogramPoint({}, start, time, count, total, buckets, edges, None, None)
        return metric("http.server.request.duration", (point,), "histogram")

    return [
        metric("process.cpu.time", (NumberPoint({"cpu.mode": "user"}, start, time, bad),)),
        metric("process.cpu.utilization", (NumberPoint({"cpu.mode": "user"}, 0, time, bad),), "gauge"),
        metric("system.cpu.utilization", (NumberPoint({"cpu.mode": "idle"}, 0, time, bad),), "gauge"),
        metric("system.memory.utilization", (NumberPoint(USED, 0, time, bad),), "gauge"),
        metric("amqadf.worker_pool.queue.size", (NumberPoint(QUEUE, start, time, bad),)),
        histogram(count=bad),
        histogram(buckets=(5, bad, 1)),
        histogram(total=bad),
        histogram(edges=(0.1, bad)),
    ]  # fmt: skip


@pytest.mark.parametrize("bad", IMPOSSIBLE, ids=repr)
def test_a_point_with_an_impossible_number_is_skipped_and_the_others_still_count(bad: float) -> None:
    # GIVEN two minutes of healthy metrics, and a point of each metric holding an impossible number
    healthy, poisoned = WindowAggregator(60), WindowAggregator(60)
    stream = _metrics_stream()
    for record in stream:
        healthy.add(record)
    for record in stream[:30] + _poison(bad) + stream[30:]:
        poisoned.add(record)
    # WHEN the windows are read THEN no ScalingMetrics refuses a value, and they are the healthy ones
    assert _comparable(poisoned.windows()) == _comparable(healthy.windows())
    assert poisoned.skipped_points == len(_poison(bad)) and healthy.skipped_points == 0


def test_bucket_quantile_of_impossible_counts_or_bounds_is_none() -> None:
    assert bucket_quantile(0.5, (1.0,), [10**400, 1]) is None  # a total no float holds
    assert bucket_quantile(0.5, (1.0,), [math.nan, 1]) is None
    assert bucket_quantile(0.5, (math.nan,), [5, 1]) is None
    assert bucket_quantile(0.5, (1.0,), [math.inf, 1]) is None


def _cpu(value: float, at_s: float, resource: Any) -> MetricRecord:
    point = NumberPoint({"cpu.mode": "user"}, 0, T0 + int(at_s * S), value)
    return metric("process.cpu.utilization", (point,), "gauge", resource)


def _memory(value: float, at_s: float, resource: Any) -> MetricRecord:
    point = NumberPoint({"system.memory.state": "used"}, 0, T0 + int(at_s * S), value)
    return metric("system.memory.utilization", (point,), "gauge", resource)


def test_an_instance_that_serves_nothing_is_left_out_and_listed() -> None:
    # GIVEN a gunicorn master that exports metrics only, beside two workers that serve requests
    master = {"service.name": "shop", "service.instance.id": "master"}
    workers = [{"service.name": "shop", "service.instance.id": f"w-{n}"} for n in (1, 2)]
    agg = WindowAggregator(60)
    for minute in range(3):
        agg.add(_cpu(0.02, minute * 60 + 5, master))
        agg.add(_memory(0.1, minute * 60 + 5, master))
        for worker, cpu in zip(workers, (0.8, 0.6), strict=True):
            agg.add(_cpu(cpu, minute * 60 + 5, worker))
            agg.add(_memory(0.5, minute * 60 + 5, worker))
            agg.add(server_span(minute * 60 + 10, 0.1, resource=worker))
    windows = agg.windows()
    assert [w.instances for w in windows] == [2, 2, 2]  # not 3
    assert [w.metrics.cpu_utilization for w in windows] == pytest.approx([0.7] * 3)  # not 0.473
    assert [w.metrics.memory_utilization for w in windows] == pytest.approx([0.5] * 3)
    assert agg.non_serving_instances() == [
        {"instance": "master", "service": "shop", "cpu_utilization": 0.02, "memory_utilization": 0.1}
    ]


def test_a_queue_worker_s_consumer_spans_are_its_requests() -> None:
    # GIVEN a Celery prefork master (metrics only) and a child that runs tasks: CONSUMER spans, a
    # producer's PRODUCER span and a client call beside them, none of them a SERVER span
    master = {"service.name": "worker", "service.instance.id": "master"}
    child = {"service.name": "worker", "service.instance.id": "child"}
    agg = WindowAggregator(60)
    agg.add(_cpu(0.02, 5, master))
    agg.add(_cpu(0.6, 5, child))
    for n in range(30):
        task = server_span(10 + n, 0.2, resource=child)
        agg.add(dataclasses.replace(task, kind=SPAN_KIND_CONSUMER, name="run/orders.summarize"))
        agg.add(dataclasses.replace(task, kind=SPAN_KIND_PRODUCER, name="apply_async/orders.summarize"))
        agg.add(dataclasses.replace(task, kind=SPAN_KIND_CLIENT, name="SELECT"))
    (window,) = agg.windows()
    assert window.requests == 30 and window.metrics.response_time_p95 == pytest.approx(0.2)
    assert window.instances == 1 and window.metrics.cpu_utilization == pytest.approx(0.6)
    assert [idle["instance"] for idle in agg.non_serving_instances()] == ["master"]


def test_metrics_only_data_leaves_no_instance_out() -> None:
    agg = WindowAggregator(60)
    for n, cpu in ((1, 0.8), (2, 0.2)):
        agg.add(_cpu(cpu, 5, {"service.name": "shop", "service.instance.id": f"i-{n}"}))
    (window,) = agg.windows()
    assert window.instances == 2 and window.metrics.cpu_utilization == pytest.approx(0.5)
    assert agg.non_serving_instances() == []


def test_the_report_lists_the_instances_left_out(tmp_path: Any) -> None:
    import io
    import json

    from amqadf_agent.analyzer.report import report_data, write_report
    from amqadf_agent.analyzer.run import AnalysisOptions, analyze

    def line(record: Any) -> str:  # as the Collector's file exporter writes a gauge
        resource = {
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in record.resource.items()]
        }
        point = record.points[0]
        body = {"name": record.name, "gauge": {"dataPoints": [{
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in point.attributes.items()],
            "timeUnixNano": str(point.time_ns), "asDouble": point.value}]}}  # fmt: skip
        return json.dumps(
            {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [body]}]}]}
        )

    from support.otlp_spans import SERVER, Span, write_spans

    master = {"service.name": "shop", "service.instance.id": "master"}
    spans = [
        Span(
            f"{n + 1:032x}",
            f"{n + 1:016x}",
            "",
            "GET /",
            SERVER,
            T0 + n * S,
            T0 + n * S + S // 10,
            {"http.route": "/"},
            instance="w-1",
        )
        for n in range(120)
    ]
    write_spans(tmp_path / "traces.jsonl", spans)
    (tmp_path / "metrics.jsonl").write_text(line(_cpu(0.03, 30, master)) + "\n")
    analysis = analyze(AnalysisOptions(paths=(tmp_path,)))
    listed = report_data(analysis)["scaling"]["non_serving_instances"]
    assert listed == [
        {"instance": "master", "service": "shop", "cpu_utilization": 0.03, "memory_utilization": None}
    ]
    out = io.StringIO()
    write_report(analysis, "text", out)
    assert "not counted (served no request): master (shop), cpu=0.03 memory=-" in out.getvalue()
