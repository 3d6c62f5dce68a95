"""Thread rules: Little's law, the peak windows and the queue-wait guard, the USL fit, the CPU and
downstream caps; bursty and steady pools, each with a control."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from amqadf_agent.analyzer.model import TEMPORALITY_CUMULATIVE, HistogramPoint, MetricRecord, NumberPoint
from amqadf_agent.analyzer.rules.threads import (
    ThreadRuleConfig,
    ThreadRules,
    littles_law,
    quantile,
    recommend_workers,
)
from amqadf_agent.analyzer.rules.usl import UslFit, fit_usl

S = 1_000_000_000
RES: dict[str, Any] = {"service.name": "shop", "service.instance.id": "i-1"}
POOL = {"amqadf.worker_pool.name": "w"}
BUSY = {**POOL, "amqadf.worker_pool.state": "busy"}
DONE = {**POOL, "amqadf.task.outcome": "success"}


def test_littles_law_exact() -> None:
    assert littles_law(50.0, 0.2) == pytest.approx(10.0)
    assert recommend_workers(50.0, 0.2) == (15, [])  # ceil(10 / 0.7)
    assert recommend_workers(0.0, 0.2) == (1, [])


def test_usl_fit_recovers_known_parameters() -> None:
    truth = UslFit(lam=100.0, alpha=0.05, beta=0.002)
    samples = [(n, truth.throughput(n) * (1 + 0.002 * (-1) ** n)) for n in range(1, 17)]
    fit = fit_usl(samples)
    assert fit is not None
    assert fit.lam == pytest.approx(100.0, rel=0.02)
    assert fit.alpha == pytest.approx(0.05, abs=0.01)
    assert fit.beta == pytest.approx(0.002, rel=0.1)
    assert fit.peak == pytest.approx(math.sqrt(0.95 / 0.002), rel=0.1)
    assert fit_usl([(1, 10.0), (2, 19.0), (2.01, 19.0)]) is None  # two levels only
    capped, caps = recommend_workers(100.0, 1.0, usl=truth)
    assert capped == math.floor(truth.peak or 0) and caps


def test_cpu_cap_for_cpu_bound_work() -> None:
    assert recommend_workers(100.0, 0.1, cpu_bound=True, cpu_count=4)[0] == 4
    assert recommend_workers(100.0, 0.1, cpu_bound=False, cpu_count=4)[0] == 15


def pool_records(busy: float, tasks_per_s: float, latency: float, max_workers: int = 4) -> list[MetricRecord]:
    def rec(name: str, points: tuple[Any, ...], kind: str = "sum") -> MetricRecord:
        return MetricRecord(name, "", "", kind, TEMPORALITY_CUMULATIVE, True, points, RES, "t")

    out = []
    for t in range(0, 601, 60):
        done = int(tasks_per_s * t)
        out += [
            rec("amqadf.worker_pool.max_workers", (NumberPoint(POOL, S, S + t * S, max_workers),)),
            rec("amqadf.worker_pool.workers", (NumberPoint(BUSY, S, S + t * S, busy),)),
            rec("amqadf.worker_pool.tasks", (NumberPoint(DONE, S, S + t * S, done),)),
            rec("amqadf.worker_pool.task.duration", (HistogramPoint(POOL, S, S + t * S, done, done * latency,
                (done,), (), None, None),), "histogram"),
            rec("amqadf.worker_pool.queue.wait", (HistogramPoint(POOL, S, S + t * S, done, 0.0,
                (done, 0), (0.01,), None, None),), "histogram"),
        ]  # fmt: skip
    return out


def test_saturated_pool_grows_and_a_healthy_pool_is_left_alone() -> None:
    rules = ThreadRules()
    for record in pool_records(busy=4, tasks_per_s=20, latency=0.2):
        rules.add(record)
    (row,) = rules.to_json()
    assert row["pool"] == "w" and row["max_workers"] == 4 and row["utilization"] == pytest.approx(1.0)
    assert row["throughput"] == pytest.approx(20.0) and row["latency_mean"] == pytest.approx(0.2)
    assert row["littles_law_concurrency"] == pytest.approx(4.0) and row["recommended"] == 6
    assert row["queue_wait_p95"] == pytest.approx(0.0095)
    assert [r.rule for r in rules.recommendations()] == ["grow_pool"]
    assert rules.recommendations()[0].evidence.threshold.endswith("; data floor: >= 50 tasks")

    healthy = ThreadRules()
    for record in pool_records(busy=2.5, tasks_per_s=12.5, latency=0.2):
        healthy.add(record)
    assert healthy.to_json()[0]["recommended"] == 4
    assert healthy.recommendations() == []


def size_record(name: str, value: int, t: int = 600, service: str = "shop", **attrs: str) -> MetricRecord:
    resource = {**RES, "service.name": service}
    point = NumberPoint(attrs, S, S + t * S, value)
    return MetricRecord(name, "", "", "sum", TEMPORALITY_CUMULATIVE, False, (point,), resource, "t")


def connections(value: int, pool: str = "sqlite", t: int = 600, service: str = "shop") -> MetricRecord:
    return size_record(
        "db.client.connection.max", value, t, service, **{"db.client.connection.pool.name": pool}
    )


def test_downstream_pool_caps_the_workers_with_a_healthy_control() -> None:
    assert recommend_workers(50.0, 0.2, downstream_max=8) == (
        8,
        ["downstream pool: 8 database connections (more threads only queue on it)"],
    )
    assert recommend_workers(50.0, 0.2, downstream_max=20) == (15, [])  # enough connections: no cap

    # Saturated pool of 4 wanting 6 workers; two connection pools of the service (2 + 3, the latest
    # value of each): grow to 5 only.
    rules = ThreadRules()
    for record in [*pool_records(busy=4, tasks_per_s=20, latency=0.2), connections(9, t=0), connections(2)]:
        rules.add(record)
    rules.add(connections(3, pool="replica"))
    rules.add(connections(50, service="other"))  # another service's pool does not count
    (finding,) = rules.recommendations()
    numbers = finding.evidence.numbers
    assert (finding.rule, numbers["recommended"], numbers["downstream_connections"]) == ("grow_pool", 5, 5)
    assert numbers["limited_by"] == "downstream_pool" and "database connections" in finding.action
    assert rules.to_json()[0]["recommended"] == 5

    # Control: the same pool in a service with enough connections is not capped.
    control = ThreadRules()
    for record in [*pool_records(busy=4, tasks_per_s=20, latency=0.2), connections(10)]:
        control.add(record)
    (finding,) = control.recommendations()
    assert finding.evidence.numbers["recommended"] == 6 and "limited_by" not in finding.evidence.numbers
    assert finding.evidence.numbers["downstream_connections"] == 10

    # An oversized pool in front of 4 connections shrinks to them.
    oversized = ThreadRules()
    for record in [*pool_records(busy=4, tasks_per_s=20, latency=0.2, max_workers=16), connections(4)]:
        oversized.add(record)
    (finding,) = oversized.recommendations()
    assert (finding.rule, finding.evidence.numbers["limited_by"]) == ("shrink_pool", "downstream_pool")


def cpu_records(cores: float) -> list[MetricRecord]:
    """``process.cpu.time`` growing by ``cores`` CPU-seconds per second."""
    return [
        MetricRecord("process.cpu.time", "", "s", "sum", TEMPORALITY_CUMULATIVE, True,
                     (NumberPoint({"cpu.mode": "user"}, S, S + t * S, cores * t),), RES, "t")
        for t in range(0, 601, 60)
    ]  # fmt: skip


def test_cpu_count_from_the_telemetry_latest_value_and_config_override() -> None:
    records = [*pool_records(busy=4, tasks_per_s=20, latency=0.2), *cpu_records(4.0)]
    rules = ThreadRules()
    for record in [
        *records,
        size_record("system.cpu.logical.count", 2, t=0),
        size_record("system.cpu.logical.count", 5),
    ]:
        rules.add(record)
    (finding,) = rules.recommendations()
    numbers = finding.evidence.numbers
    assert (numbers["recommended"], numbers["cpu_count"], numbers["limited_by"]) == (5, 5, "cpu")

    # The config wins over the telemetry (amqadf-analyze --cpu-count).
    override = ThreadRules(ThreadRuleConfig(cpu_count=8))
    for record in [*records, size_record("system.cpu.logical.count", 5)]:
        override.add(record)
    (finding,) = override.recommendations()
    assert finding.evidence.numbers["recommended"] == 6 and "limited_by" not in finding.evidence.numbers

    # Control: not CPU-bound (0.5 CPU-s/s for 4 busy threads): the CPU count caps nothing.
    io_bound = ThreadRules()
    for record in [*pool_records(busy=4, tasks_per_s=20, latency=0.2), *cpu_records(0.5)]:
        io_bound.add(record)
    io_bound.add(size_record("system.cpu.logical.count", 2))
    (finding,) = io_bound.recommendations()
    assert finding.evidence.numbers["recommended"] == 6 and finding.evidence.numbers["cpu_count"] == 2
    assert "limited_by" not in finding.evidence.numbers


def test_usl_cap_binds_below_a_larger_downstream_pool() -> None:
    truth = UslFit(lam=100.0, alpha=0.05, beta=0.002)
    assert recommend_workers(100.0, 1.0, usl=truth, downstream_max=1000)[1] == [
        f"USL peak N*={truth.peak:.2f}"
    ]


WAIT_BOUNDS = (0.001, 0.01, 0.1, 1.0)


def interval_records(
    intervals: list[tuple[float, float, tuple[int, ...]]],
    max_workers: int,
    latency: float = 0.2,
    resource: dict[str, Any] = RES,
) -> list[MetricRecord]:
    """Cumulative pool series, one point every 10 s; interval ``i`` is ``(tasks/s, busy gauge,
    queue-wait bucket counts over WAIT_BOUNDS)``; every task takes ``latency`` seconds."""

    def rec(name: str, point: Any, kind: str = "sum") -> MetricRecord:
        return MetricRecord(name, "", "", kind, TEMPORALITY_CUMULATIVE, True, (point,), resource, "t")

    out = []
    done, waits = 0, [0] * (len(WAIT_BOUNDS) + 1)
    for i, (rate, busy, wait) in enumerate([(0.0, 0.0, (0,)), *intervals]):
        t = S + i * 10 * S
        done += round(rate * 10)
        waits = [a + b for a, b in itertools.zip_longest(waits, wait, fillvalue=0)]
        if i:  # the busy gauge is sampled at the end of each interval
            out.append(rec("amqadf.worker_pool.workers", NumberPoint(BUSY, S, t, busy)))
        out += [
            rec("amqadf.worker_pool.max_workers", NumberPoint(POOL, S, t, max_workers)),
            rec("amqadf.worker_pool.tasks", NumberPoint(DONE, S, t, done)),
            rec("amqadf.worker_pool.task.duration",
                HistogramPoint(POOL, S, t, done, done * latency, (done,), (), None, None), "histogram"),
            rec("amqadf.worker_pool.queue.wait", HistogramPoint(POOL, S, t, sum(waits), 0.0, tuple(waits),
                                                                 WAIT_BOUNDS, None, None), "histogram"),
        ]  # fmt: skip
    return out


def analyse(records: list[MetricRecord], config: ThreadRuleConfig | None = None) -> ThreadRules:
    rules = ThreadRules(config)
    for record in records:
        rules.add(record)
    return rules


def test_quantile_is_nearest_rank_and_sizing_takes_the_peak() -> None:
    assert quantile(0.95, []) is None
    assert quantile(0.95, [3.0, 1.0, 2.0]) == 3.0
    assert quantile(0.95, [float(v) for v in range(1, 101)]) == 95.0
    assert quantile(0.5, [1.0, 2.0, 3.0, 4.0]) == 2.0
    # Sizing covers the larger of Little's law on the mean (1 busy worker) and the peak (4).
    assert recommend_workers(5.0, 0.2, peak_concurrency=4.0) == (6, [])
    assert recommend_workers(5.0, 0.2, peak_concurrency=0.5) == (2, [])


# Idle: 0.5 tasks/s of 0.2 s (0.1 busy worker), no wait. A burst: 20 tasks/s (all 4 workers busy for the
# whole 10 s window) and half of its tasks wait 10-100 ms in the queue.
IDLE = (0.5, 0.0, (5,))
BURST = (20.0, 4.0, (100, 0, 100))


def test_bursty_pool_is_not_shrunk_it_is_sized_for_its_peaks() -> None:
    # GIVEN 60 windows of 10 s, every tenth a burst (10 % of the windows): Little's law on the mean
    # says 0.1 * 0.9 + 4 * 0.1 = 0.49 busy workers, ceil(0.49 / 0.7) = 1 worker
    rules = analyse(interval_records([BURST if i % 10 == 9 else IDLE for i in range(60)], 4))
    (row,) = rules.to_json()
    assert row["littles_law_concurrency"] == pytest.approx(0.49)
    # WHEN the rule sizes it THEN by the p95 over windows: 4 busy workers, ceil(4 / 0.7) = 6
    assert row["busy_peak"] == pytest.approx(4.0) and row["saturated_at_peaks"] is True
    (finding,) = rules.recommendations()
    numbers = finding.evidence.numbers
    assert (finding.rule, numbers["recommended"]) == ("grow_pool", 6)
    assert (numbers["busy_peak"], numbers["peak_windows"], numbers["peak_window_s"]) == (4.0, 60, 10.0)
    assert numbers["queue_wait_p95_peak_s"] == pytest.approx(0.091)
    assert numbers["queue_wait_material_s"] == pytest.approx(0.02)  # 0.1 * 0.2 s < 100 ms


def test_bursts_too_rare_for_the_p95_still_forbid_a_shrink() -> None:
    # GIVEN 2 bursts in 60 windows (3 %): the p95 over windows is an idle window (0.1 busy worker) and
    # sizing alone would shrink 4 -> 1; but the burst windows' queue wait p95 (91 ms) is material
    rules = analyse(interval_records([BURST if i in (20, 50) else IDLE for i in range(60)], 4))
    (row,) = rules.to_json()
    assert row["busy_peak"] == pytest.approx(0.1) and row["recommended"] == 4
    (finding,) = rules.recommendations()
    numbers = finding.evidence.numbers
    # THEN no shrink: the finding says the pool is saturated at peaks and keeps its 4 workers
    assert (finding.rule, finding.severity, numbers["recommended"]) == ("saturated_at_peaks", "medium", 4)
    assert "saturated at peaks" in finding.title and "do not shrink it to the 1 that" in finding.action
    assert numbers["queue_wait_p95_peak_s"] == pytest.approx(0.091) and numbers["busy_mean"] > 0
    assert "limited_by" not in numbers and "grow it a worker or two" in finding.action

    # A cap below max_workers is named as the reason more threads would not help (no shrink either).
    capped = analyse(
        [*interval_records([BURST if i in (20, 50) else IDLE for i in range(60)], 4), connections(2, t=600)]
    )
    (finding,) = capped.recommendations()
    assert (finding.rule, finding.evidence.numbers["recommended"]) == ("saturated_at_peaks", 4)
    assert finding.evidence.numbers["limited_by"] == "downstream_pool" and "add instances" in finding.action


def test_steady_over_provisioned_pool_still_shrinks() -> None:
    # GIVEN 8 workers, never more than 1 busy (5 tasks/s of 0.2 s), tasks never wait
    rules = analyse(interval_records([(5.0, 1.0, (50,))] * 60, 8))
    (row,) = rules.to_json()
    assert row["busy_peak"] == pytest.approx(1.0) and row["saturated_at_peaks"] is False
    (finding,) = rules.recommendations()
    # THEN a shrink to ceil(1 / 0.7) = 2
    assert (finding.rule, finding.evidence.numbers["recommended"]) == ("shrink_pool", 2)
    assert finding.evidence.numbers["busy_peak"] == 1.0
    # Control: the same pool whose tasks wait 10-100 ms in 4 windows of 60 (over 5 %) is not shrunk;
    # in 2 windows (under 5 %, and 0.7 % of all waits) it still is.
    waits = [(5.0, 1.0, (50,))] * 60
    bursts = [(5.0, 1.0, (10, 0, 40)) if i % 15 == 0 else w for i, w in enumerate(waits)]
    assert [r.rule for r in analyse(interval_records(bursts, 8)).recommendations()] == ["saturated_at_peaks"]
    rare = [(5.0, 1.0, (10, 0, 40)) if i % 30 == 0 else w for i, w in enumerate(waits)]
    assert [r.rule for r in analyse(interval_records(rare, 8)).recommendations()] == ["shrink_pool"]


def test_a_wait_inside_the_first_bucket_is_not_material() -> None:
    # Tasks of 5 ms and every wait under 1 ms (the first bucket): the interpolated p95, 0.95 ms, is
    # above 10 % of the task time but cannot be told from no wait at all: the pool may shrink.
    rules = analyse(interval_records([(40.0, 0.2, (400,))] * 30, 8, 0.005))
    (row,) = rules.to_json()
    assert row["queue_wait_p95"] == pytest.approx(0.00095) and row["saturated_at_peaks"] is False
    assert [r.rule for r in rules.recommendations()] == ["shrink_pool"]
    # Control: 10 % of the waits in the second bucket (1-10 ms): material, no shrink.
    rules = analyse(interval_records([(40.0, 0.2, (360, 40))] * 30, 8, 0.005))
    assert [r.rule for r in rules.recommendations()] == ["saturated_at_peaks"]


def test_peak_windows_sum_the_instances_and_follow_the_collection_interval() -> None:
    # GIVEN two instances of a pool of 4 each, bursting in turn: each alone peaks at 4 busy workers,
    # in 10 % of the windows, and never both at once
    one = interval_records([BURST if i % 10 == 9 else IDLE for i in range(60)], 4)
    two = interval_records(
        [BURST if i % 10 == 4 else IDLE for i in range(60)], 4, resource={**RES, "service.instance.id": "i-2"}
    )
    rules = analyse([*one, *two])
    (pool,) = rules.pools()
    # THEN a window's busy workers are the sum over instances: a burst window has 4 + 0.1
    assert pool.max_workers == 8 and pool.busy_peak == pytest.approx(4.1) and pool.peak_windows == 60
    # Points every 60 s: the peak windows widen to 60 s, whatever peak_window_s says (10 intervals and
    # the busy gauge's first sample).
    (pool,) = analyse(pool_records(busy=4, tasks_per_s=20, latency=0.2)).pools()
    assert (pool.peak_window_s, pool.peak_windows, pool.busy_peak) == (60.0, 11, pytest.approx(4.0))
    # A series first seen late (its first point covers the process's whole life) does not widen them.
    failed = NumberPoint({**POOL, "amqadf.task.outcome": "failure"}, S, S + 590 * S, 1)
    late = MetricRecord(
        "amqadf.worker_pool.tasks", "", "", "sum", TEMPORALITY_CUMULATIVE, True, (failed,), RES, "t"
    )
    (pool,) = analyse([*one, late]).pools()
    assert pool.peak_window_s == 10.0 and pool.busy_peak == pytest.approx(4.0)


def _server_span(service: str, end_s: int, duration_s: float, span_id: str) -> Any:
    from amqadf_agent.analyzer.model import SpanRecord

    end = S + end_s * S
    resource = {"service.name": service, "service.instance.id": "i-1"}
    return SpanRecord("ab" * 16, span_id, "", "GET /", 2, end - int(duration_s * S), end, 0, "", {},
                      (), resource, "t")  # fmt: skip


def test_thread_findings_carry_the_slowest_server_spans_of_the_pools_service() -> None:
    # GIVEN a saturated pool of service shop, shop's SERVER spans, and slower spans of another service
    rules = ThreadRules()
    for record in pool_records(busy=4, tasks_per_s=20, latency=0.2):
        rules.add(record)
    for i in range(10):
        rules.add(_server_span("shop", 60 + i, 0.1 * (i + 1), f"{i:016x}"))
        rules.add(_server_span("billing", 60 + i, 5.0, f"b{i:015x}"))
    (grow,) = rules.recommendations()
    # THEN the finding names the slowest spans of shop (the telemetry does not link spans to pools)
    assert grow.rule == "grow_pool"
    assert grow.evidence.span_ids == (f"{9:016x}", f"{8:016x}", f"{7:016x}")
    assert grow.evidence.trace_ids == ("ab" * 16,)
    # Control: no spans of the pool's service, no example ids (not another service's).
    alone = ThreadRules()
    for record in pool_records(busy=4, tasks_per_s=20, latency=0.2):
        alone.add(record)
    alone.add(_server_span("billing", 60, 5.0, "c" * 16))
    (grow,) = alone.recommendations()
    assert grow.evidence.span_ids == () and grow.evidence.trace_ids == ()


def test_confidence_is_lower_with_few_tasks_and_none_below_the_minimum() -> None:
    # GIVEN the same saturated pool (L = 4 busy workers of 4) seen through many, few and too few tasks
    def grow(tasks_per_s: float) -> list[Any]:
        rules = ThreadRules()
        for record in pool_records(busy=4, tasks_per_s=tasks_per_s, latency=4 / tasks_per_s):
            rules.add(record)
        return rules.recommendations()

    (many,) = grow(20)  # 12 000 tasks
    (few,) = grow(0.2)  # 120 tasks
    assert many.rule == few.rule == "grow_pool"
    assert many.evidence.numbers["tasks"] == 12_000 and few.evidence.numbers["tasks"] == 120
    assert many.confidence == pytest.approx(0.95) and 0.3 < few.confidence < 0.7
    assert few.confidence < many.confidence
    # THEN below min_tasks (50) there is no recommendation at all, while the numbers are reported
    assert ThreadRuleConfig().min_tasks == 50
    rules = ThreadRules()
    for record in pool_records(busy=4, tasks_per_s=0.07, latency=4 / 0.07):  # 42 tasks
        rules.add(record)
    assert rules.recommendations() == []
    assert rules.to_json()[0]["recommended"] == 6


def _poison(bad: float) -> list[MetricRecord]:
    """A point of each metric the thread rules read, holding ``bad`` where a number goes."""
    t = S + 330 * S

    def rec(name: str, point: Any, kind: str = "sum") -> MetricRecord:
        return MetricRecord(name, "", "", kind, TEMPORALITY_CUMULATIVE, True, (point,), RES, "t")

    def histogram(
        name: str, count: Any = 10, buckets: Any = (10, 0), total: Any = 1.0, edges: Any = (0.01,)
    ) -> Any:
        return rec(name, HistogramPoint(POOL, S, t, count, total, buckets, edges, None, None), "histogram")

    return [
        rec("amqadf.worker_pool.max_workers", NumberPoint(POOL, S, t, bad)),
        rec("amqadf.worker_pool.workers", NumberPoint(BUSY, S, t, bad)),
        rec("amqadf.worker_pool.tasks", NumberPoint(DONE, S, t, bad)),
        rec("process.cpu.time", NumberPoint({"cpu.mode": "user"}, S, t, bad)),
        size_record("system.cpu.logical.count", bad, t=330),  # type: ignore[arg-type]
        connections(bad, t=330),  # type: ignore[arg-type]
        *(
            histogram(name, **{field: value})
            for name in ("amqadf.worker_pool.task.duration", "amqadf.worker_pool.queue.wait")
            for field, value in (("count", bad), ("buckets", (bad, 0)), ("total", bad), ("edges", (bad,)))
        ),
    ]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, -1e308, 1e308, 10**30], ids=repr)
def test_a_point_with_an_impossible_number_is_skipped_and_the_others_still_count(bad: float) -> None:
    # GIVEN a saturated pool on a CPU-bound service, and a point of each metric holding a number no
    # count, size or duration can be
    records = [*pool_records(busy=4, tasks_per_s=20, latency=0.2), *cpu_records(4.0), connections(9)]
    healthy, poisoned = ThreadRules(), ThreadRules()
    for record in records:
        healthy.add(record)
    for record in records[:30] + _poison(bad) + records[30:]:
        poisoned.add(record)
    # WHEN read THEN nothing raises and the points changed nothing
    assert poisoned.to_json() == healthy.to_json()
    assert poisoned.recommendations() == healthy.recommendations()
    assert poisoned.skipped_points == len(_poison(bad)) and healthy.skipped_points == 0
