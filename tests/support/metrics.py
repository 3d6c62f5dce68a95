"""Reading what an ``InMemoryMetricReader`` collected, as the component tests compare it."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from amqadf_agent import semconv


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Metric name -> metric, for the agent's scope only; a name exported twice fails the test."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, Any] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != semconv.SCOPE_NAME:
                continue
            for metric in sm.metrics:
                assert metric.name not in found, f"{metric.name} exported twice"
                found[metric.name] = metric
    return found


def points(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    """Attribute set -> value of each data point."""
    return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}
