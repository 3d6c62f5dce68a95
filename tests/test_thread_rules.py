"""Thread rules: Little's law, the USL fit, the CPU cap; a grow with a healthy control."""

from __future__ import annotations

import math
from typing import Any

import pytest

from amqadf_agent.analyzer.model import TEMPORALITY_CUMULATIVE, HistogramPoint, MetricRecord, NumberPoint
from amqadf_agent.analyzer.rules.threads import ThreadRules, UslFit, fit_usl, littles_law, recommend_workers

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
