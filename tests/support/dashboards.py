"""The Grafana dashboards' panel queries, as Grafana would send them, and the demo's companion.

Shared by tests/test_dashboards.py (the agent's own Prometheus endpoint) and
tests/test_collector_real.py (the same panels through a real Collector's prometheus exporter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.prometheus_server import PrometheusQueryError, PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))

#: Grafana's built-in variables, as the tests substitute them.
BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}

#: Runs beside the demo as a second instance of its service (see its docstring).
COMPANION = ROOT / "tests" / "apps" / "dashboard_companion.py"
#: What the companion must have made visible before the panels are queried (``{job}`` filled in).
COMPANION_LOSSES = {
    "failed export": 'amqadf_agent_export_failures_total{{job="{job}", amqadf_agent_exporter="otlp"}}',
    "dropped telemetry": 'amqadf_agent_telemetry_dropped_total{{job="{job}", amqadf_agent_exporter="otlp"}}',
    "queue-full drop": 'otel_sdk_processor_span_processed_total{{job="{job}", error_type="queue_full"}}',
    "store fallback": 'amqadf_state_store_fallbacks_total{{job="{job}", amqadf_state_store_kind="redis"}}',
}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def expand(expr: str, variables: dict[str, str]) -> str:
    """Substitute ``$var``, ``${var}`` and ``[[var]]`` as Grafana does; unknown variables fail."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise KeyError(f"unknown template variable {name!r} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", sub, expr)


def queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, query) of every panel target of every dashboard."""
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                if "expr" in target:
                    yield path.name, panel["title"], target["expr"]


def panel_failures(prom: PrometheusServer, service: str, at: float | None = None) -> list[str]:
    """Every panel query that fails or returns no data for ``service`` (its job), with the reason."""
    variables = {**BUILTINS, "service": service, "instance": ".*", "datasource": "prometheus"}
    failures = []
    for dashboard, title, expr in queries():
        query = expand(expr, variables)
        try:
            result = prom.query(query, at)
        except PrometheusQueryError as exc:
            failures.append(f"{dashboard} / {title}: error {exc}\n    {query}")
            continue
        if not result:
            failures.append(f"{dashboard} / {title}: no data\n    {query}")
    return failures
