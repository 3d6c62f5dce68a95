"""The Grafana dashboards and alert rules, proven against a real Prometheus scraping the demo.

The demo (``amqadf-agent demo --exporter file --exporter prometheus``) and its companion
(``tests/apps/dashboard_companion.py``: a ResourceMonitor, which the demo does not run, and the
losses a healthy demo never has: OTLP exports to a dead port, a span queue that overflows, a Redis
state store that cannot be reached) are scraped every second twice: once as the agent exposes them
(job ``amqadf-demo-shop``), once renamed as the Collector's prometheus exporter names them (unit-1
gauges get ``_ratio``; job ``amqadf-demo-shop-via-collector``). Every panel query of every dashboard,
with its template variables substituted as Grafana would, must return data for both jobs: no panel
is exempt, so a misspelt metric name fails even on a panel that only shows failures.

Needs the Debian package ``prometheus`` (which ships ``promtool``); the schema check needs
``grafana-foundation-sdk`` (``SCHEMA_PACKAGE``, the exact line: see tests/support/grafana_schema.py) and is
skipped without it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port
from support.dashboards import (
    COMPANION,
    COMPANION_LOSSES,
    DASHBOARD_DIR,
    DASHBOARDS,
    load,
    panel_failures,
    panels,
    queries,
)
from support.grafana_schema import schema_problems
from support.prometheus_server import (
    DEMO_SERVICE,
    PROMTOOL,
    RATIO_GAUGES,
    VIA_COLLECTOR,
    PrometheusServer,
    both_naming_paths,
    demo_environment,
    start_demo,
    stop_processes,
)

ROOT = Path(__file__).resolve().parent.parent
#: The demo plants an inventory outage 16-20 s into its run (breaker opens, fallbacks are used). It
#: runs well past the moment every panel has data (about 25 s), so the queries are evaluated while it
#: is still scraped; the fixture stops it then.
DEMO_DURATION = 45.0

#: The Grafana that collector-config/docker-compose.yaml runs, and the schemaVersion it writes
#: (migration 41 is its last: 40 made ``refresh`` a string, 41 dropped ``timepicker.time_options``,
#: neither touches panels; 42 was added after 12.1). Moving Grafana means revisiting both.
GRAFANA_IMAGE = "grafana/grafana:12.1.1"
GRAFANA_SCHEMA_VERSION = 41
#: The line of grafana-foundation-sdk whose types the schema check uses (see tests/support/grafana_schema.py).
SCHEMA_PACKAGE = "grafana-foundation-sdk==1769699379!11.6.0"


# --- structure ---------------------------------------------------------------------------------
def test_the_five_dashboards_exist() -> None:
    names = {p.name for p in DASHBOARDS}
    assert {
        "service-resources.json",
        "resilience.json",
        "scaling.json",
        "performance.json",
        "agent-health.json",
    } <= names


def test_agent_health_panels_say_what_to_do() -> None:
    """Each agent-health panel explains itself: what it shows and what to do when it lights up."""
    for panel in panels(load(DASHBOARD_DIR / "agent-health.json")):
        if panel["type"] != "row":
            assert len(panel.get("description", "")) > 80, panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = load(path)
    assert isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= GRAFANA_SCHEMA_VERSION
    assert dash.get("uid") and dash.get("title")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for name in ("service", "instance"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"]["uid"] == "${datasource}", name
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids {ids}"
    for panel in panels(dash):
        where = f"{path.name} panel {panel.get('id')} {panel.get('title')!r}"
        grid = panel.get("gridPos")
        assert grid and all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")), where
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0, where
        assert grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "row":
            assert (grid["w"], grid["h"], grid["x"]) == (24, 1, 0), f"{where}: a row spans the width"
            # an expanded row's panels follow it at the top level; Grafana ignores the ones inside it
            assert panel.get("collapsed") or not panel.get("panels"), f"{where}: panels inside an open row"
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel.get("targets"), f"{where}: no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{where}: empty query"
            assert target["datasource"]["uid"] == "${datasource}", where
            assert 'job=~"$service"' in target["expr"], f"{where}: query not filtered by $service"
            assert 'instance=~"$instance"' in target["expr"], f"{where}: query not filtered by $instance"
    taken: dict[tuple[int, int], str] = {}  # grid cell -> the panel on it
    for panel in dash["panels"]:  # top level: a collapsed row keeps its panels' expanded positions
        grid, where = panel["gridPos"], f"{path.name} panel {panel['id']} {panel['title']!r}"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                # Grafana pushes an overlapping panel down: the layout would not be the one written
                assert (x, y) not in taken, f"{where} overlaps {taken[x, y]}"
                taken[x, y] = where


def test_schema_version_is_the_one_the_compose_grafana_writes() -> None:
    compose = (ROOT / "collector-config" / "docker-compose.yaml").read_text()
    images = re.findall(r"image:\s*(grafana/grafana:\S+)", compose)
    assert images == [GRAFANA_IMAGE], (
        f"the compose stack runs {images}: update GRAFANA_IMAGE and GRAFANA_SCHEMA_VERSION together "
        "(the schemaVersion that Grafana writes) and the dashboards' schemaVersion with them"
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_matches_grafanas_schema(path: Path) -> None:
    pytest.importorskip("grafana_foundation_sdk", reason=f"Grafana's dashboard schema needs {SCHEMA_PACKAGE}")
    problems = schema_problems(load(path))
    assert not problems, f"{path.name} does not fit Grafana's dashboard schema:\n" + "\n".join(problems)


def test_the_schema_check_finds_what_grafana_would_not_read() -> None:
    """The check of tests/support/grafana_schema.py itself: each planted mistake is reported."""
    pytest.importorskip("grafana_foundation_sdk", reason=f"Grafana's dashboard schema needs {SCHEMA_PACKAGE}")
    dash = load(DASHBOARD_DIR / "agent-health.json")
    panel = next(p for p in dash["panels"] if p["type"] == "timeseries")
    dash["graphTooltip"] = 7  # an enumeration: 0, 1 or 2
    dash["time"] = ["now-1h", "now"]  # an object
    panel["gridPos"]["h"] = "8"  # an integer
    panel["gridpos"] = panel["gridPos"]  # misspelt: not in the schema
    panel["options"]["legend"]["displayMode"] = "tabular"  # the timeseries panel's enumeration
    panel["targets"][0]["format"] = "timeseries"  # the prometheus query's enumeration
    panel["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "zigzag"}  # timeseries field config
    problems = "\n".join(schema_problems(dash))
    for expected in (
        "graph_tooltip: 7",
        "time: a list",
        "grid_pos.h: '8' is not an integer",
        "gridpos: not in Grafana's schema",
        "legend.display_mode: 'tabular'",
        "format_val: 'timeseries'",
        "draw_style: 'zigzag'",
    ):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"
    dash["panels"][1] = {**panel, "targets": {"expr": "up"}}  # an object where the list belongs
    assert schema_problems(dash)[0].startswith("not readable as a Grafana dashboard")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_unit_one_gauges_are_queried_under_both_names(path: Path) -> None:
    """A unit-1 gauge written by its bare name would be empty through the Collector (``_ratio``)."""
    for dashboard, title, expr in queries():
        if dashboard != path.name:
            continue
        for name in RATIO_GAUGES:
            # a selector by one fixed name (`name{...}` or `name_ratio{...}`) misses the other path
            bare = re.search(rf"(?<![\w\"~=]){name}(_ratio)?\s*[{{\[]", expr)
            assert bare is None, f'{dashboard} / {title}: select {name} by {{__name__=~"{name}(_ratio)?"}}'


# --- alert rules -------------------------------------------------------------------------------
def test_alert_rules_check() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(DASHBOARD_DIR / "alerts.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        cwd=DASHBOARD_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_breakers_limits_errors_retries_and_dropped_telemetry() -> None:
    text = (DASHBOARD_DIR / "alerts.yaml").read_text()
    for alert in (
        "AmqadfCircuitBreakerOpen",
        "AmqadfResourceLimitBreached",
        "AmqadfHighErrorRate",
        "AmqadfRetryStorm",
        "AmqadfTelemetryDropped",
        "AmqadfSpanQueueNearlyFull",
    ):
        assert f"alert: {alert}" in text


# --- the proof against a real Prometheus -------------------------------------------------------
@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, float]]:
    """Prometheus after it scraped the demo through its outage; the time to evaluate queries at."""
    work = tmp_path_factory.mktemp("demo")
    demo_port, companion_port = free_port(), free_port()
    scrape_configs = both_naming_paths([f"127.0.0.1:{demo_port}", f"127.0.0.1:{companion_port}"])
    procs: list[subprocess.Popen[bytes]] = []
    with (
        PrometheusServer(scrape_configs, scrape_interval="1s") as prom,
        open(work / "demo.log", "wb") as demo_log,
        open(work / "companion.log", "wb") as companion_log,
    ):
        try:
            # a span exporter too, so there is a batch span processor (span queue panels) and export
            # threads (agent CPU), as with the compose stack's otlp exporter
            procs.append(start_demo(work, demo_port, DEMO_DURATION, demo_log, ("file", "prometheus")))
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(COMPANION), str(DEMO_DURATION + 10)],
                    env=demo_environment(companion_port),
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=companion_log,
                )
            )
            deadline = time.monotonic() + DEMO_DURATION + 25
            # the outage (16-20 s) opened the breaker and fallbacks were used, in both jobs
            for job in (DEMO_SERVICE, VIA_COLLECTOR):
                expr = (
                    f'amqadf_circuit_breaker_transitions_total{{job="{job}", '
                    'amqadf_circuit_breaker_to_state="open"}'
                )
                assert prom.wait_for(expr, deadline), (
                    f"the demo's breaker never opened in {job}:\n" + (work / "demo.log").read_text()[-3000:]
                )
            # the companion's losses reached Prometheus, in both jobs
            for job in (DEMO_SERVICE, VIA_COLLECTOR):
                for what, expr in COMPANION_LOSSES.items():
                    assert prom.wait_for(expr.format(job=job), deadline), (
                        f"no {what} of the companion reached {job}:\n"
                        + (work / "companion.log").read_text()[-3000:]
                    )
            # the panels fill at the demo's pace (the profiled report runs every few seconds)
            jobs = (DEMO_SERVICE, VIA_COLLECTOR)
            while (
                time.monotonic() < deadline
                and procs[0].poll() is None
                and any(panel_failures(prom, job) for job in jobs)
            ):
                time.sleep(1.0)
            time.sleep(4.0)  # a few more scrapes after the outage
            assert procs[0].poll() is None, "the demo ended before the queries' evaluation time"
            yield prom, time.time()
        finally:
            stop_processes(procs)


@pytest.mark.parametrize("service", [DEMO_SERVICE, VIA_COLLECTOR])
def test_template_variables_find_the_service(scraped: tuple[PrometheusServer, float], service: str) -> None:
    prom, at = scraped
    jobs = {s["metric"]["job"] for s in prom.query("target_info", at)}
    assert service in jobs  # label_values(target_info, job)
    instances = prom.query(f'target_info{{job=~"{service}"}}', at)
    assert len({s["metric"]["instance"] for s in instances}) == 2


@pytest.mark.parametrize("service", [DEMO_SERVICE, VIA_COLLECTOR])
def test_every_panel_query_returns_data(scraped: tuple[PrometheusServer, float], service: str) -> None:
    prom, at = scraped
    count = sum(1 for _ in queries())
    failures = panel_failures(prom, service, at)
    assert count >= 40
    assert not failures, f"{len(failures)} of {count} queries failed for job {service}:\n" + "\n".join(
        failures
    )


def test_unit_one_gauges_differ_between_the_paths(scraped: tuple[PrometheusServer, float]) -> None:
    """The naming difference the dashboards absorb is real in this setup (docs/design.md)."""
    prom, at = scraped
    assert prom.query(f'system_cpu_utilization{{job="{DEMO_SERVICE}"}}', at)
    assert not prom.query(f'system_cpu_utilization_ratio{{job="{DEMO_SERVICE}"}}', at)
    assert prom.query(f'system_cpu_utilization_ratio{{job="{VIA_COLLECTOR}"}}', at)
