"""The configurations of collector-config/ run by a real Collector, built from the official modules.

The distribution (collector-config/distribution, generated from builder-config.yaml) is built once
per session by collector-config/build.sh; these tests are skipped only where Go is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port
from support.collector import (
    CONFIG_DIR,
    GO_DIRS,
    RENAMED,
    CollectorServer,
    CollectorUnavailable,
    collector_binary,
    component_types,
    counted_losses,
    load_config,
    validate,
)
from support.dashboards import COMPANION, COMPANION_LOSSES, panel_failures, queries
from support.prometheus_server import (
    AGENT,
    DEMO_SERVICE,
    PrometheusServer,
    demo_environment,
    stop_processes,
)

from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.run import Analysis, AnalysisOptions, analyze

#: The Collector configurations (the other YAML files there are for Docker Compose and Prometheus).
CONFIGS = sorted(
    p
    for p in CONFIG_DIR.glob("*.yaml")
    if p.name not in ("docker-compose.yaml", "prometheus.yaml", "builder-config.yaml")
)
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")


def _go_installed() -> bool:
    return shutil.which("go") is not None or any((Path(d) / "go").exists() for d in GO_DIRS)


@pytest.fixture(scope="session")
def otelcol() -> Path:
    """The built Collector; the tests are skipped without Go (.ci/install-deps says how to get it)."""
    if not _go_installed():
        pytest.skip("Go is not installed: the Collector cannot be built (see .ci/install-deps)")
    try:
        return collector_binary()
    except CollectorUnavailable as error:
        pytest.fail(str(error))


def test_configs_exist() -> None:
    assert {"agent.yaml", "gateway.yaml", "file-export.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(otelcol: Path, path: Path) -> None:
    """``otelcol validate`` accepts the file as checked in, with the variables it reads set."""
    names = set(re.findall(r"\$\{env:(\w+)", path.read_text()))
    result = validate(path, {name: "localhost" for name in names})
    assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_component_is_in_the_distribution(otelcol: Path, path: Path) -> None:
    """A config never names a component that the binary lacks (``otelcol components`` lists them)."""
    held = component_types()
    config = load_config(path)
    for section in SECTIONS:
        for name in config.get(section) or {}:
            kind = name.split("/", 1)[0]
            assert kind in held[section], f"{path.name}: {section[:-1]} {kind!r} is not in the distribution"


def test_the_manifest_holds_only_what_the_configs_use(otelcol: Path) -> None:
    """builder-config.yaml stays the list of what collector-config/ uses (plus the debug exporter)."""
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for path in CONFIGS:
        config = load_config(path)
        for section in SECTIONS:
            used[section] |= {name.split("/", 1)[0] for name in config.get(section) or {}}
    used["exporters"] |= {"debug", "otlphttp"}  # for users debugging or sending OTLP over HTTP
    held = component_types()
    for section in SECTIONS:
        if section == "exporters":  # the binary lists each renamed exporter under both names
            used[section] |= {RENAMED[name] for name in used[section] & RENAMED.keys()}
            used[section] |= {old for old, new in RENAMED.items() if new in used[section]}
        assert held[section] == used[section], section


def test_a_wrong_key_fails_validation(otelcol: Path, tmp_path: Path) -> None:
    """The validation really reads the settings: one misspelt key makes it fail, naming the key."""
    text = (CONFIG_DIR / "file-export.yaml").read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("check_interval:", "check_intervall:", 1))
    result = validate(broken, {})
    assert result.returncode != 0
    assert "check_intervall" in result.stdout + result.stderr


# --- the agent's OTLP through the Collector's file exporter ---------------------------------------
#: Long enough for the demo's planted N+1 and slow query to be found (it serves 20 requests/s).
DEMO_SECONDS = 8.0


def run_demo(work: Path, endpoint: str, protocol: str, seconds: float) -> subprocess.CompletedProcess[bytes]:
    """The demo exporting both to its own files (``work/agent``) and over OTLP to ``endpoint``."""
    env = {
        **demo_environment(free_port()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
    }
    options = ["--exporter", "file", "--exporter", "otlp", "--duration", str(seconds)]
    options += ["--metric-interval", "1", "--out", str(work / "agent")]
    with open(work / "demo.log", "wb") as log:
        result = subprocess.run(
            [str(AGENT), "demo", *options], env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log
        )
    assert result.returncode == 0, (work / "demo.log").read_text()[-3000:]
    return result


def spans_of(path: Path) -> dict[str, SpanRecord]:
    """span id -> span, of every telemetry file under ``path``."""
    return {r.span_id: r for r in read([path], strict=True) if isinstance(r, SpanRecord)}


#: A demo route that touches neither the inventory (whose outage the demo plants) nor a cache.
ROUTE = "/customers/{id}/orders"
#: No request waits out an export: the OTLP exporter's own timeout (10 s), far above any request of the
#: demo even on a loaded machine. The medians up and down are printed; their ratio is a measurement
#: (docs/reliability.md, on a quiet machine), not a pass/fail bound: under a load of 10 it swings 3x.
EXPORT_TIMEOUT_MS = 10_000.0


def request_times(
    spans: Iterable[SpanRecord], stopped_at: int, restarted_at: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of ROUTE's server spans: started with the Collector up, and while it was down."""
    up: list[float] = []
    down: list[float] = []
    for span in spans:
        if span.kind == 2 and span.attributes.get("http.route") == ROUTE:
            (down if stopped_at <= span.start_ns < restarted_at else up).append(span.duration_s * 1e3)
    return up, down


def fingerprints(analysis: Analysis) -> set[str]:
    return {r.fingerprint for r in analysis.recommendations}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_analysis_of_the_collectors_files_equals_the_agents(
    otelcol: Path, tmp_path: Path, protocol: str
) -> None:
    """One demo run, written by the agent and by the Collector: the analyzer cannot tell them apart."""
    with CollectorServer(CONFIG_DIR / "file-export.yaml", tmp_path) as collector:
        endpoint = collector.otlp_grpc if protocol == "grpc" else collector.otlp_http
        run_demo(tmp_path, endpoint, protocol, DEMO_SECONDS)
    # the Collector flushed its batches and files as it stopped
    written = sorted(p.name for p in collector.telemetry.iterdir())
    assert {"traces.jsonl", "metrics.jsonl", "logs.jsonl"} <= set(written), written
    own = analyze(AnalysisOptions(paths=[tmp_path / "agent"], strict=True))
    through = analyze(AnalysisOptions(paths=[collector.telemetry], strict=True))
    assert own.summary.spans > 0 and through.summary.spans == own.summary.spans
    assert through.summary.problem_count == own.summary.problem_count == 0
    assert any("-n-plus-one-" in f for f in fingerprints(own)), fingerprints(own)
    assert fingerprints(through) == fingerprints(own)
    agent_spans, collector_spans = spans_of(tmp_path / "agent"), spans_of(collector.telemetry)
    assert {s.trace_id for s in collector_spans.values()} == {s.trace_id for s in agent_spans.values()}
    assert collector_spans.keys() == agent_spans.keys()
    assert through.summary.services.keys() == own.summary.services.keys()
    assert through.summary.logs == own.summary.logs


# --- a Collector restart in the middle of a run ---------------------------------------------------
RESTART_DEMO_SECONDS = 30.0
#: When the Collector stops (s into the demo) and for how long it stays down.
STOP_AT, DOWN_FOR = 8.0, 10.0


def test_a_collector_restart_loses_only_what_the_agent_counts(otelcol: Path, tmp_path: Path) -> None:
    """The Collector is down for 10 s mid-run: every span the agent did not count as lost arrives."""
    collector = CollectorServer(CONFIG_DIR / "file-export.yaml", tmp_path).start()
    env = {
        **demo_environment(free_port()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    options = ["--exporter", "file", "--exporter", "otlp", "--duration", str(RESTART_DEMO_SECONDS)]
    options += ["--metric-interval", "1", "--out", str(tmp_path / "agent")]
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - closed below
    try:
        started = time.monotonic()
        demo = subprocess.Popen(
            [str(AGENT), "demo", *options], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log
        )
        time.sleep(STOP_AT)
        collector.stop()
        stopped, stopped_at = time.monotonic(), time.time_ns()
        time.sleep(DOWN_FOR)
        collector.start()
        restarted, restarted_at = time.monotonic(), time.time_ns()
        code = demo.wait(RESTART_DEMO_SECONDS + 60)
        ended = time.monotonic()
    finally:
        collector.stop()
        log.close()
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    print(
        f"\ncollector down {restarted - stopped:.1f} s from {stopped - started:.1f} s; "
        f"demo of {RESTART_DEMO_SECONDS:.0f} s took {ended - started:.1f} s"
    )
    agent_spans, collector_spans = spans_of(tmp_path / "agent"), spans_of(collector.telemetry)
    assert collector_spans.keys() <= agent_spans.keys()
    missing = len(agent_spans) - len(collector_spans)
    lost = counted_losses(tmp_path / "agent", "traces")
    print(
        f"spans: agent {len(agent_spans)}, Collector {len(collector_spans)}, missing {missing}, lost {lost}"
    )
    assert missing <= lost, f"{missing} spans missing, the agent counted {lost} lost"
    # spans from before the stop and from after the restart arrived
    times = sorted(s.start_ns for s in collector_spans.values())
    first, last = min(s.start_ns for s in agent_spans.values()), max(s.start_ns for s in agent_spans.values())
    assert times[0] - first < STOP_AT * 1e9 and last - times[-1] < (RESTART_DEMO_SECONDS - STOP_AT) * 1e9
    assert any(t - first > (STOP_AT + DOWN_FOR) * 1e9 for t in times), "nothing sent after the restart"
    # the application never waits for the absent Collector (docs/reliability.md has the medians)
    up, down = request_times(agent_spans.values(), stopped_at, restarted_at)
    print(f"median {ROUTE} ms: Collector up {statistics.median(up):.1f} ({len(up)} requests), ", end="")
    print(f"down {statistics.median(down):.1f} ({len(down)})")
    assert len(up) >= 10 and len(down) >= 10
    assert max(down) < EXPORT_TIMEOUT_MS, f"a request took {max(down):.0f} ms with the Collector away"


# --- the dashboards on the Collector's naming path -------------------------------------------------
#: The demo plants an inventory outage 16-20 s into its run (breaker opens, fallbacks are used). It
#: runs well past the moment every panel has data (the fixture stops it once they have), so that a
#: panel slow to fill on a loaded machine cannot outlast it.
DASHBOARD_DEMO_SECONDS = 45.0


@pytest.fixture(scope="module")
def through_collector(
    otelcol: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrometheusServer, float]]:
    """The demo and its companion sending OTLP to gateway.yaml's Collector, whose prometheus exporter
    a real Prometheus scrapes as collector-config/prometheus.yaml does; the time to query at."""
    work = tmp_path_factory.mktemp("collector-dashboards")
    procs: list[subprocess.Popen[bytes]] = []
    scrape = load_config(CONFIG_DIR / "prometheus.yaml")["scrape_configs"]
    gateway_job = next(job for job in scrape if job["job_name"] == "otel-gateway")
    with CollectorServer(CONFIG_DIR / "gateway.yaml", work) as collector:
        job = {**gateway_job, "static_configs": [{"targets": [f"127.0.0.1:{collector.prometheus_port}"]}]}
        with (
            PrometheusServer([job], scrape_interval="1s") as prom,
            open(work / "demo.log", "wb") as demo_log,
            open(work / "companion.log", "wb") as companion_log,
        ):
            try:
                env = {
                    **demo_environment(free_port()),
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                }
                options = ["--exporter", "otlp", "--duration", str(DASHBOARD_DEMO_SECONDS)]
                options += ["--metric-interval", "1", "--out", str(work / "agent")]
                procs.append(
                    subprocess.Popen(
                        [str(AGENT), "demo", *options],
                        env=env,
                        cwd=work,
                        stdout=subprocess.DEVNULL,
                        stderr=demo_log,
                    )
                )
                # the companion's spans go to a dead port (its losses); its metrics to the Collector
                companion_env = {
                    **demo_environment(free_port()),
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.otlp_http + "/v1/metrics",
                }
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(COMPANION), str(DASHBOARD_DEMO_SECONDS + 10)],
                        env=companion_env,
                        cwd=work,
                        stdout=subprocess.DEVNULL,
                        stderr=companion_log,
                    )
                )
                deadline = time.monotonic() + DASHBOARD_DEMO_SECONDS + 25
                opened = (
                    f'amqadf_circuit_breaker_transitions_total{{job="{DEMO_SERVICE}", '
                    'amqadf_circuit_breaker_to_state="open"}'
                )
                assert prom.wait_for(opened, deadline), (
                    f"the demo's breaker never opened:\n{(work / 'demo.log').read_text()[-3000:]}"
                    f"\n{collector.log()}"
                )
                for what, expr in COMPANION_LOSSES.items():
                    assert prom.wait_for(expr.format(job=DEMO_SERVICE), deadline), (
                        f"no {what} of the companion came through the Collector:\n"
                        + (work / "companion.log").read_text()[-3000:]
                    )
                # the panels fill at the pace of the demo (the profiled report runs every few
                # seconds): give them until the demo ends, then the test reports what is empty
                while (
                    time.monotonic() < deadline
                    and procs[0].poll() is None
                    and panel_failures(prom, DEMO_SERVICE)
                ):
                    time.sleep(1.0)
                time.sleep(2.0)  # a few more scrapes
                assert procs[0].poll() is None, (
                    f"the demo ended before the evaluation time: {panel_failures(prom, DEMO_SERVICE)}"
                )
                yield prom, time.time()
            finally:
                stop_processes(procs)


def test_template_variables_find_the_service_through_the_collector(
    through_collector: tuple[PrometheusServer, float],
) -> None:
    prom, at = through_collector
    assert DEMO_SERVICE in {s["metric"]["job"] for s in prom.query("target_info", at)}
    instances = prom.query(f'target_info{{job=~"{DEMO_SERVICE}"}}', at)
    assert len({s["metric"]["instance"] for s in instances}) == 2


def test_every_panel_query_returns_data_through_the_collector(
    through_collector: tuple[PrometheusServer, float],
) -> None:
    """Every panel of every dashboard, on the names the Collector's prometheus exporter really gives."""
    prom, at = through_collector
    failures = panel_failures(prom, DEMO_SERVICE, at)
    count = len(list(queries()))
    assert count >= 40
    assert not failures, f"{len(failures)} of {count} queries failed through the Collector:\n" + "\n".join(
        failures
    )


def test_unit_one_gauges_get_the_ratio_suffix(through_collector: tuple[PrometheusServer, float]) -> None:
    """The naming difference the dashboards absorb, seen on the real Collector."""
    prom, at = through_collector
    assert prom.query(f'system_cpu_utilization_ratio{{job="{DEMO_SERVICE}"}}', at)
    assert not prom.query(f'system_cpu_utilization{{job="{DEMO_SERVICE}"}}', at)


# --- a per-host Collector load-balancing over two gateways ----------------------------------------
def wait_until_written(paths: list[Path], quiet: float, at_least: float) -> None:
    """Wait (at least ``at_least`` s, at most a minute) until no file under ``paths`` grew for
    ``quiet`` s: the gateways' tail sampling holds each trace for its decision_wait first."""
    started = time.monotonic()
    last, changed = -1, time.monotonic()
    while time.monotonic() - started < 60:
        size = sum(f.stat().st_size for path in paths for f in path.rglob("*") if f.is_file())
        if size != last:
            last, changed = size, time.monotonic()
        elif time.monotonic() - changed >= quiet and time.monotonic() - started >= at_least:
            return
        time.sleep(0.5)


def test_two_gateways_behind_the_load_balancing_agent(otelcol: Path, tmp_path: Path) -> None:
    """agent.yaml routes by trace id: each trace lands whole on one gateway, and the analyzer over
    both gateways' files finds the N+1 runs the agent's own file shows."""
    gateways = [CollectorServer(CONFIG_DIR / "gateway.yaml", tmp_path / f"gateway{i}") for i in (1, 2)]
    decision_wait = float(
        load_config(CONFIG_DIR / "gateway.yaml")["processors"]["tail_sampling"]["decision_wait"].rstrip("s")
    )
    for gateway in gateways:
        gateway.work.mkdir(exist_ok=True)
    hostnames = [f"127.0.0.1:{g.grpc_port}" for g in gateways]
    static = {"resolver": {"static": {"hostnames": hostnames}}}
    agent_work = tmp_path / "per-host"
    agent_work.mkdir()
    per_host = CollectorServer(
        CONFIG_DIR / "agent.yaml",
        agent_work,
        overrides={
            name: static for name in ("loadbalancing/traces", "loadbalancing/metrics", "loadbalancing/logs")
        },
    )
    try:
        for gateway in gateways:
            gateway.start()
        per_host.start()
        run_demo(tmp_path, per_host.otlp_grpc, "grpc", DEMO_SECONDS)
        wait_until_written([g.telemetry for g in gateways], quiet=3.0, at_least=decision_wait + 3)
    finally:
        per_host.stop()
        for gateway in gateways:
            gateway.stop()
    agent_spans = spans_of(tmp_path / "agent")
    per_gateway = [spans_of(g.telemetry) for g in gateways]
    traces = [{s.trace_id for s in spans.values()} for spans in per_gateway]
    assert traces[0] and traces[1], "one gateway got no trace"
    assert not traces[0] & traces[1], "a trace was split over both gateways"
    # tail sampling keeps or drops whole traces: each kept trace is complete
    by_trace: dict[str, set[str]] = {}
    for span in agent_spans.values():
        by_trace.setdefault(span.trace_id, set()).add(span.span_id)
    for spans in per_gateway:
        assert spans.keys() <= agent_spans.keys()
        for trace_id in {s.trace_id for s in spans.values()}:
            assert by_trace[trace_id] <= spans.keys(), f"trace {trace_id} arrived incomplete"
    both = analyze(AnalysisOptions(paths=[g.telemetry for g in gateways], strict=True))
    own = analyze(AnalysisOptions(paths=[tmp_path / "agent"], strict=True))
    n_plus_one = {f for f in fingerprints(own) if "-n-plus-one-" in f}
    assert n_plus_one and n_plus_one == {f for f in fingerprints(both) if "-n-plus-one-" in f}


# --- the alert rules on the Collector's naming path ------------------------------------------------
ALERTS = CONFIG_DIR.parent / "dashboards" / "alerts.yaml"
ALERT_TESTS = CONFIG_DIR.parent / "dashboards" / "alerts_test.yaml"


def alert_series(expr: str) -> list[str]:
    """The metric names (or ``__name__`` regexes) that a rule's expression selects."""
    names = re.findall(r'__name__=~"([^"]+)"', expr)
    names += re.findall(r"\b([a-z][a-z0-9_]*_(?:total|count|size|capacity))\b", expr)
    return names


@pytest.mark.parametrize(
    "rule",
    [rule for group in load_config(ALERTS)["groups"] for rule in group["rules"]],
    ids=lambda rule: rule["alert"],
)
def test_alert_rules_select_series_the_collector_writes(
    through_collector: tuple[PrometheusServer, float], rule: dict[str, Any]
) -> None:
    """Each series a rule reads exists through the Collector, with the labels the rule groups by."""
    prom, at = through_collector
    grouped = set()
    for labels in re.findall(r"by \(([^)]*)\)", rule["expr"]):
        grouped |= {label.strip() for label in labels.split(",")} - {"job", "instance"}
    names = alert_series(rule["expr"])
    assert names, rule["expr"]
    for name in names:
        series = prom.query(f'{{__name__=~"{name}", job="{DEMO_SERVICE}"}}', at)
        assert series, f"{rule['alert']}: no {name} through the Collector"
        present = set().union(*(s["metric"].keys() for s in series))
        assert grouped <= present, f"{rule['alert']}: {name} lacks {grouped - present}"


def test_alert_unit_tests_use_the_collectors_names(through_collector: tuple[PrometheusServer, float]) -> None:
    """The series that dashboards/alerts_test.yaml names as the Collector's (``_ratio``) are real."""
    prom, at = through_collector
    names = set(re.findall(r"series: '(\w+_ratio)\{", ALERT_TESTS.read_text()))
    assert names
    for name in sorted(names):
        assert prom.query(f'{name}{{job="{DEMO_SERVICE}"}}', at), f"{name} is not a name the Collector writes"


def test_the_collectors_rotated_files_are_read_whole(otelcol: Path, tmp_path: Path) -> None:
    """file-export.yaml's rotation, at 1 MB: the analyzer reads the backups the Collector writes
    beside ``traces.jsonl`` (``traces-<time>-size.jsonl``) and the agent's own, rotated at 1 MB too
    (``traces-<time>.jsonl``), and finds every span in each."""
    import amqadf_agent

    # the file exporter rejects a write larger than max_megabytes: batches of ~0.3 MB at most
    overrides = {
        "file/traces": {"rotation": {"max_megabytes": 1, "max_backups": 100}},
        "batch": {"send_batch_size": 200, "send_batch_max_size": 200},
    }
    with CollectorServer(CONFIG_DIR / "file-export.yaml", tmp_path, overrides=overrides) as collector:
        agent = amqadf_agent.start(
            service_name="rotation",
            exporters=["otlp", "file"],
            otlp_protocol="grpc",
            otlp_endpoint=collector.otlp_grpc,
            output_dir=str(tmp_path / "agent"),
            max_queue_size=100_000,
            file_max_bytes=1024 * 1024,
            file_max_backups=100,
        )
        assert agent.running, agent.error
        tracer = agent.tracer_provider.get_tracer("rotation")
        padding = "x" * 1000
        for batch in range(40):  # ~4 MB of spans, in bursts the queue holds
            for i in range(100):
                with tracer.start_as_current_span(
                    "work", attributes={"batch": batch, "i": i, "pad": padding}
                ):
                    pass
            agent.tracer_provider.force_flush()
        agent.shutdown()
    stamp = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}"
    # the Collector 0.161.0 names a backup traces-2026-12-06T17-35-55.570-size.jsonl
    backups = sorted(p.name for p in collector.telemetry.glob("traces-*"))
    assert len(backups) >= 2, backups
    assert all(re.fullmatch(rf"traces-{stamp}-size\.jsonl", name) for name in backups), backups
    # the agent names one traces-2026-12-06T17-35-55.570.jsonl
    own_backups = sorted(p.name for p in (tmp_path / "agent").glob("traces-*"))
    assert len(own_backups) >= 2, own_backups
    assert all(re.fullmatch(rf"traces-{stamp}(\.\d+)?\.jsonl", name) for name in own_backups), own_backups
    own = spans_of(tmp_path / "agent")
    assert len(own) == 4000
    assert spans_of(collector.telemetry).keys() == own.keys()


def _batch_bound(config: dict[str, Any]) -> int:
    """The most items one batch of ``config`` holds: its ``send_batch_max_size``."""
    bound = config["processors"]["batch"].get("send_batch_max_size", 0)
    assert isinstance(bound, int)
    return bound


def test_every_file_export_has_a_bounded_batch() -> None:
    """One batch is one write of the file exporter, which rejects a write above ``max_megabytes``:
    a configuration writing files bounds its batches, to at least 16 KB per item at its limit."""
    checked = []
    for path in CONFIGS:
        config = load_config(path)
        limits = [
            spec["rotation"]["max_megabytes"]
            for name, spec in config["exporters"].items()
            if name.split("/", 1)[0] == "file" and "rotation" in spec
        ]
        if not limits:
            continue  # writes no rotated files
        bound = _batch_bound(config)
        assert bound > 0, f"{path.name}: batch sets no send_batch_max_size"
        assert min(limits) * 1024 * 1024 // bound >= 16 * 1024, (path.name, limits, bound)
        checked.append(path.name)
    assert "file-export.yaml" in checked


def _burst(count: int, padding: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``count`` spans of one trace, and the OTLP JSON request that holds them all."""
    spans = [
        {
            "traceId": "5" * 32,
            "spanId": f"{i + 1:016x}",
            "name": "burst",
            "kind": 1,
            "startTimeUnixNano": str(1_767_000_000_000_000_000 + i),
            "endTimeUnixNano": str(1_767_000_000_000_001_000 + i),
            "attributes": [{"key": "pad", "value": {"stringValue": padding}}],
        }
        for i in range(count)
    ]
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "burst"}}]},
                "scopeSpans": [{"scope": {"name": "burst"}, "spans": spans}],
            }
        ]
    }
    return spans, request


def _post(collector: CollectorServer, request: dict[str, Any]) -> None:
    post = urllib.request.Request(
        f"{collector.otlp_http}/v1/traces",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(post, timeout=30) as resp:
        assert resp.status == 200


def test_a_burst_larger_than_the_file_limit_is_written_whole(otelcol: Path, tmp_path: Path) -> None:
    """One OTLP request several times ``max_megabytes``: file-export.yaml's batch bound splits it
    into writes the file exporter accepts, and every span lands in the rotated files."""
    bound = _batch_bound(load_config(CONFIG_DIR / "file-export.yaml"))
    # the limit scaled down to 1 MB, the spans with it: a full batch still fits
    overrides = {"file/traces": {"rotation": {"max_megabytes": 1, "max_backups": 100}}}
    per_span = 1024 * 1024 // bound
    spans, request = _burst(4 * bound, padding="x" * (per_span // 2))
    assert len(json.dumps(request)) > 2 * 1024 * 1024  # the burst would not fit one write
    with CollectorServer(CONFIG_DIR / "file-export.yaml", tmp_path, overrides=overrides) as collector:
        _post(collector, request)
    assert "exceeds maximum file size" not in collector.log(), collector.log()
    files = sorted(collector.telemetry.glob("traces*.jsonl"))
    assert len(files) >= 2, files  # rotated: more than one file's worth
    written = spans_of(collector.telemetry)
    assert written.keys() == {s["spanId"] for s in spans}
    assert all(max(len(line) for line in f.read_bytes().splitlines()) <= 1024 * 1024 for f in files)


@pytest.mark.parametrize(
    "args", [(), ("--feature-gates=exporter.file.nativeCompression",)], ids=["framed", "native"]
)
def test_the_collectors_zstd_files_are_read(otelcol: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    """file-export.yaml with ``compression: zstd``, rotated at 1 MB: in the Collector's default layout
    (each request a length-prefixed zstd frame) and the native one (a zstd stream of JSON lines), the
    analyzer reads every span of every file."""
    overrides = {"file/traces": {"compression": "zstd", "rotation": {"max_megabytes": 1, "max_backups": 100}}}
    spans, request = _burst(8000, padding="")
    for span in spans:  # padding of its own in each span: compressed, each still takes ~250 bytes
        span["attributes"][0]["value"]["stringValue"] = os.urandom(200).hex()
    config = CONFIG_DIR / "file-export.yaml"
    with CollectorServer(config, tmp_path, overrides=overrides, args=args) as collector:
        _post(collector, request)
    files = sorted(collector.telemetry.glob("traces*.jsonl"))
    assert len(files) >= 2, files
    magic = b"\x28\xb5\x2f\xfd"
    assert all(magic in f.read_bytes()[:8] for f in files if f.stat().st_size)  # zstd, in either layout
    analysis = analyze(AnalysisOptions(paths=[collector.telemetry], strict=True))
    assert analysis.summary.spans == len(spans)
    assert spans_of(collector.telemetry).keys() == {s["spanId"] for s in spans}
