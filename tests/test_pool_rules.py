"""Connection-pool rules on built pool metrics (current and older names): a full pool and long waits
for a connection are found, a pool with headroom and short waits (and too little data) are not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amqadf_agent.analyzer.model import (
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
    HistogramPoint,
    MetricRecord,
    NumberPoint,
)
from amqadf_agent.analyzer.rules.pool import PoolRules
from amqadf_agent.analyzer.run import AnalysisOptions, analyze

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
RESOURCE = {"service.name": "shop", "service.instance.id": "shop-1"}
POOL = {"db.client.connection.pool.name": "orders-db"}


def gauge(
    name: str, values: list[float], attrs: dict[str, Any], *, resource: dict[str, Any] = RESOURCE
) -> MetricRecord:
    points = tuple(NumberPoint(attrs, T0, T0 + i * 10 * S, v) for i, v in enumerate(values))
    return MetricRecord(
        name, "{connection}", "", "sum", TEMPORALITY_CUMULATIVE, False, points, resource, "test"
    )


WAIT = "db.client.connection.wait_time"


def waits(
    counts: list[int],
    bounds: tuple[float, ...],
    *,
    unit: str = "s",
    name: str = WAIT,
    attrs: dict[str, Any] = POOL,
) -> MetricRecord:
    point = HistogramPoint(attrs, T0, T0 + 60 * S, sum(counts), None, tuple(counts), bounds, None, None)
    return MetricRecord(name, unit, "", "histogram", TEMPORALITY_DELTA, False, (point,), RESOURCE, "test")


def run(records: list[MetricRecord]) -> dict[str, Any]:
    rules = PoolRules()
    for record in records:
        rules.add(record)
    return {r.rule: r for r in rules.recommendations()}


USED = {**POOL, "db.client.connection.state": "used"}


def test_full_pool_is_saturated() -> None:
    found = run(
        [
            gauge("db.client.connection.max", [5], POOL),
            gauge("db.client.connection.count", [5, 5, 3, 5, 4, 5], USED),
        ]
    )
    saturated = found["pool_saturated"]
    numbers = saturated.evidence.numbers
    assert (numbers["samples"], numbers["saturated_samples"], numbers["max"]) == (6, 4, 5)
    assert numbers["pool"] == "orders-db" and numbers["instance"] == "shop-1"
    assert saturated.category == "database"
    assert "pool_wait" not in found


def test_pool_with_headroom_or_too_few_samples_is_silent() -> None:
    headroom = [
        gauge("db.client.connection.max", [10], POOL),
        gauge("db.client.connection.count", [3, 5, 4, 9, 2, 6], USED),
    ]
    assert run(headroom) == {}
    few = [
        gauge("db.client.connection.max", [5], POOL),
        gauge("db.client.connection.count", [5, 5, 5, 5], USED),
    ]
    assert run(few) == {}  # 4 samples: under the floor of 5
    idle_only = [gauge("db.client.connection.count", [5] * 8, {**POOL, "db.client.connection.state": "idle"})]
    assert run(idle_only) == {}


def test_older_names_with_pending_requests() -> None:
    # as the SQLAlchemy instrumentation records them: state / pool.name, no max; pending requests tell
    old = {"pool.name": "sqlite:///app.db"}
    found = run(
        [
            gauge("db.client.connections.usage", [2, 2, 2, 2, 2, 2], {**old, "state": "used"}),
            gauge("db.client.connections.pending_requests", [0, 3, 0, 4, 1, 0], old),
        ]
    )
    assert found["pool_saturated"].evidence.numbers["saturated_samples"] == 3
    assert found["pool_saturated"].subject == "shop/sqlite:///app.db"


def test_long_waits_for_a_connection() -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
    found = run([waits([10, 5, 5, 5, 10, 20, 5], bounds)])
    wait = found["pool_wait"]
    assert wait.evidence.numbers["waits"] == 60
    assert float(wait.evidence.numbers["wait_p95_ms"]) >= 100
    # the older histogram in milliseconds reads the same
    old = run([waits([10, 5, 5, 5, 10, 20, 5], tuple(b * 1000 for b in bounds), unit="ms",
                     name="db.client.connections.wait_time", attrs={"pool.name": "orders-db"})])  # fmt: skip
    assert old["pool_wait"].evidence.numbers["wait_p95_ms"] == wait.evidence.numbers["wait_p95_ms"]


def test_short_or_few_waits_are_silent() -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
    assert run([waits([50, 10, 2, 0, 0, 0, 0], bounds)]) == {}
    assert run([waits([0, 0, 0, 0, 5, 10, 4], bounds)]) == {}  # 19 waits: under the floor of 20


def test_analyze_reads_pool_metrics_from_a_file(tmp_path: Path) -> None:
    def kv(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    def points(values: list[int], state: str | None) -> list[dict[str, Any]]:
        attrs = [kv("db.client.connection.pool.name", "orders-db")]
        if state:
            attrs.append(kv("db.client.connection.state", state))
        return [
            {
                "attributes": attrs,
                "startTimeUnixNano": str(T0),
                "timeUnixNano": str(T0 + i * 10 * S),
                "asInt": str(v),
            }
            for i, v in enumerate(values)
        ]

    def metric(name: str, values: list[int], state: str | None) -> dict[str, Any]:
        data = {"dataPoints": points(values, state), "aggregationTemporality": 2}
        return {"name": name, "unit": "{connection}", "sum": data}

    metrics = [
        metric("db.client.connection.max", [4], None),
        metric("db.client.connection.count", [4, 4, 4, 2, 4, 4], "used"),
    ]
    export = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [kv("service.name", "shop")]},
                "scopeMetrics": [{"scope": {"name": "pool"}, "metrics": metrics}],
            }
        ]
    }
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(export) + "\n")
    found = [r for r in analyze(AnalysisOptions(paths=(path,))).recommendations if r.rule == "pool_saturated"]
    assert len(found) == 1 and found[0].evidence.numbers["saturated_samples"] == 5


def test_sweep_counts_overlaps() -> None:
    from amqadf_agent.analyzer.rules.pool import sweep

    # [0,10) [5,15) [5,8) [20,30): three at once over [5,8), at least two over [5,10)
    assert sweep([0, 5, 5, 20], [10, 15, 8, 30], 2) == (3, 25, 5)
    assert sweep([0, 10], [10, 20], 2) == (1, 20, 0)  # one ends as the next starts: never two


def db(start_ms: float, duration_ms: float) -> Any:
    from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanRecord

    start = T0 + int(start_ms * 1_000_000)
    attrs = {"db.system.name": "postgresql", "db.query.text": "SELECT 1 FROM t"}
    return SpanRecord("ab" * 16, "cd" * 8, "ef" * 8, "SELECT", SPAN_KIND_CLIENT, start,
                      start + int(duration_ms * 1_000_000), 0, "", attrs, (), RESOURCE, "test")  # fmt: skip


def test_queries_in_flight_fill_the_pool() -> None:
    size = gauge("db.client.connection.max", [3], POOL)
    # 30 requests of 3 queries at once each 40 ms long, 50 ms apart: the pool of 3 is full whenever busy
    burst = [db(i * 50 + k, 40) for i in range(30) for k in range(3)]
    rules = PoolRules()
    for record in [size, *burst]:
        rules.add(record)
    (found,) = [r for r in rules.recommendations() if r.rule == "pool_concurrency"]
    numbers = found.evidence.numbers
    assert numbers["peak_concurrent"] == 3 and numbers["max"] == 3
    assert float(numbers["full_share"]) > 0.9
    # control: the same queries one at a time, or no pool size known
    calm = PoolRules()
    for record in [size, *(db(i * 50, 40) for i in range(90))]:
        calm.add(record)
    assert [r for r in calm.recommendations() if r.rule == "pool_concurrency"] == []
    unknown = PoolRules()
    for record in burst:
        unknown.add(record)
    assert unknown.recommendations() == []


def test_span_times_outside_uint64_are_not_swept() -> None:
    rules = PoolRules()
    for start in (-5, 2**64 - 2, 2**63 + 1):
        span = db(0, 1)
        span.start_ns, span.end_ns = start, start + 5
        rules.add(span)
    assert rules.recommendations() == []
    assert rules._swept == 1  # the one inside uint64
