"""Thread rules: Little's law, the USL fit, the CPU cap; a grow with a healthy control."""

from __future__ import annotations

import math
from typing import Any

import pytest

from amqadf_agent.analyzer.model import TEMPORALITY_CUMULATIVE, HistogramPoint, MetricRecord, NumberPoint
from amqadf_agent.analyzer.rules.threads import (
    ThreadRuleConfig,
    ThreadRules,
    UslFit,
    fit_usl,
    littles_law,
    recommend_workers,
)

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
