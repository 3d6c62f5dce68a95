"""Reading what an ``InMemoryMetricReader`` collected, as the component tests compare it.

Each reading collects again (observable callbacks run again), so read once per check.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from amqadf_agent import semconv

#: A data point's attribute set, as the tests key points by it.
Attributes = frozenset[tuple[str, Any]]


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Metric name -> metric, for the agent's scope only (none collected: empty); a name exported
    twice fails the test."""
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            if sm.scope.name != semconv.SCOPE_NAME:
                continue
            for metric in sm.metrics:
                assert metric.name not in found, f"{metric.name} exported twice"
                found[metric.name] = metric
    return found


def points(metric: Any) -> dict[Attributes, Any]:
    """Attribute set -> value of each data point (of a sum or gauge)."""
    return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}


def data_points(metric: Any) -> dict[Attributes, Any]:
    """Attribute set -> the data point itself (a histogram's count, sum and buckets)."""
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


def collect_points(reader: InMemoryMetricReader) -> dict[str, dict[Attributes, Any]]:
    """Metric name -> attribute set -> value, for the agent's scope only."""
    return {name: points(metric) for name, metric in collect(reader).items()}


def metric_points(reader: InMemoryMetricReader, name: str) -> dict[Attributes, Any]:
    """Attribute set -> value of the metric ``name``, from any scope (none collected: empty)."""
    data = reader.get_metrics_data()
    found: dict[Attributes, Any] = {}
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    found.update(points(metric))
    return found
