"""The Prometheus source of the analyzer: name and label translation, a stub API, a real Prometheus.

The real-server tests scrape the demo (``amqadf-agent demo --exporter prometheus``) every second twice,
as in tests/test_dashboards.py: as the agent exposes it (job ``amqadf-demo-shop``) and renamed as the
Collector's prometheus exporter names it (unit-1 gauges get ``_ratio``; job ``…-via-collector``).
Needs the Debian package ``prometheus``.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import free_port
from support.prometheus_server import (
    DEMO_SERVICE,
    VIA_COLLECTOR,
    PrometheusServer,
    both_naming_paths,
    start_demo,
    stop_processes,
)

from amqadf_agent import semconv
from amqadf_agent.analyzer.model import HistogramPoint, MetricRecord, NumberPoint
from amqadf_agent.analyzer.prometheus_source import (
    RULE_INSTRUMENTS,
    otel_attribute_key,
    prometheus_selector,
    read_prometheus,
    resource_of,
)
from amqadf_agent.analyzer.rules.cache import CacheRules
from amqadf_agent.cli.analyze import main
from amqadf_agent.errors import TelemetryInputError

#: Long enough to outlive the tests: the demo is stopped when they are done (live series at "now").
DEMO_DURATION = 60.0


# --- translation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("instrument", "agent_names", "collector_names"),
    [
        (
            semconv.SYSTEM_CPU_UTILIZATION,
            ["system_cpu_utilization"],
            ["system_cpu_utilization_ratio"],
        ),
        (
            semconv.HTTP_SERVER_REQUEST_DURATION,
            ["http_server_request_duration_seconds_bucket", "http_server_request_duration_seconds_sum"],
            ["http_server_request_duration_seconds_count"],
        ),
        (semconv.CACHE_REQUESTS, ["amqadf_cache_requests_total"], ["amqadf_cache_requests_total"]),
        (semconv.PROCESS_CPU_TIME, ["process_cpu_time_seconds_total"], ["process_cpu_time_seconds_total"]),
        (
            semconv.CACHE_MEMORY_USAGE,
            ["amqadf_cache_memory_usage_bytes"],
            ["amqadf_cache_memory_usage_bytes"],
        ),
        (semconv.POOL_QUEUE_SIZE, ["amqadf_worker_pool_queue_size"], ["amqadf_worker_pool_queue_size"]),
    ],
)
def test_selector_matches_both_naming_paths(
    instrument: semconv.Instrument, agent_names: list[str], collector_names: list[str]
) -> None:
    import re

    selector = prometheus_selector(instrument)
    pattern = re.fullmatch(r'\{__name__=~"([^"]+)"\}', selector)
    assert pattern, selector
    for name in [*agent_names, *collector_names]:
        assert re.fullmatch(pattern.group(1), name), (name, selector)  # PromQL regexes are anchored
    # and nothing of another metric
    for other in (
        "system_cpu_utilization_total_x",
        "amqadf_cache_requests_size",
        "process_cpu_seconds_total",
    ):
        assert not re.fullmatch(pattern.group(1), other), (other, selector)


def test_selector_with_a_job_regex() -> None:
    selector = prometheus_selector(semconv.CACHE_SIZE, "(.+/)?shop")
    assert selector == '{__name__=~"amqadf_cache_size", job=~"(.+/)?shop"}'


def test_labels_translate_back_to_contract_attribute_keys() -> None:
    assert otel_attribute_key("amqadf_cache_result") == semconv.ATTR_CACHE_RESULT
    assert otel_attribute_key("amqadf_worker_pool_name") == semconv.ATTR_POOL_NAME
    assert otel_attribute_key("http_response_status_code") == semconv.ATTR_HTTP_RESPONSE_STATUS_CODE
    assert otel_attribute_key("cpu_mode") == semconv.ATTR_CPU_MODE
    assert otel_attribute_key("system_memory_state") == "system.memory.state"
    assert otel_attribute_key("custom_label") == "custom_label"  # not of the contract: kept as is
    # every contract attribute key round-trips
    for name in dir(semconv):
        if name.startswith("ATTR_"):
            key = getattr(semconv, name)
            assert otel_attribute_key(key.replace(".", "_")) == key


def test_resource_from_job_instance_or_resource_labels() -> None:
    assert resource_of({"job": "shop", "instance": "10.0.0.1:9464"}) == {
        "service.name": "shop",
        "service.instance.id": "10.0.0.1:9464",
    }
    # the Collector's job is namespace/name, its instance the service.instance.id
    assert resource_of({"job": "prod/shop", "instance": "abc"}) == {
        "service.namespace": "prod",
        "service.name": "shop",
        "service.instance.id": "abc",
    }
    # resource_to_telemetry_conversion: the resource attributes are labels
    assert resource_of(
        {"job": "x", "service_name": "shop", "service_instance_id": "i-1", "instance": "h"}
    ) == {
        "service.name": "shop",
        "service.instance.id": "i-1",
    }


# --- a stub API: exact conversion and the errors ---------------------------------------------------
class _Stub:
    def __init__(self, answer: Callable[[str], tuple[int, str, bytes]]) -> None:
        self.queries: list[str] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
                stub.queries.append(query)
                status, content_type, body = answer(query)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[str], tuple[int, str, bytes]]], _Stub]]:
    made: list[_Stub] = []

    def make(answer: Callable[[str], tuple[int, str, bytes]]) -> _Stub:
        made.append(_Stub(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _matrix(series: list[tuple[dict[str, str], list[tuple[float, float]]]]) -> bytes:
    result = [{"metric": m, "values": [[t, repr(v)] for t, v in vs]} for m, vs in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def test_counters_are_rebased_and_resets_start_a_segment(stub: Any) -> None:
    labels = {"__name__": "amqadf_cache_requests_total", "job": "shop", "instance": "h:1"}
    hit = {**labels, "amqadf_cache_name": "orders", "amqadf_cache_result": "hit"}

    def answer(query: str) -> tuple[int, str, bytes]:
        if "amqadf_cache_requests" in query:
            return 200, "application/json", _matrix([(hit, [(100, 50), (101, 60), (102, 5), (103, 7)])])
        return 200, "application/json", _matrix([])

    api = stub(answer)
    records = list(read_prometheus(api.url, start=100, end=103, step=1))
    assert all(isinstance(r, MetricRecord) for r in records)
    assert [r.name for r in records] == ["amqadf.cache.requests"] * 4
    first = records[0]
    assert first.type == "sum" and first.is_monotonic and first.aggregation_temporality == 2
    assert dict(first.resource) == {"service.name": "shop", "service.instance.id": "h:1"}
    assert records[0].resource is records[3].resource  # shared, as the OTLP reader shares it
    points = [p for r in records for p in r.points if isinstance(p, NumberPoint)]
    assert len(points) == 4
    assert dict(points[0].attributes) == {"amqadf.cache.name": "orders", "amqadf.cache.result": "hit"}
    assert [(p.start_ns, p.time_ns, p.value) for p in points] == [
        (100 * 10**9, 100 * 10**9, 0),
        (100 * 10**9, 101 * 10**9, 10),
        (101 * 10**9, 102 * 10**9, 5),  # reset: counted in full since the previous sample
        (101 * 10**9, 103 * 10**9, 7),
    ]
    rules = CacheRules()
    for record in records:
        rules.add(record)
    (orders,) = rules.stats()
    assert orders.hits == 10 + 5 + 2  # increase() over the range, across the reset
    # every instrument the rules need was asked for, under both naming paths
    assert len(api.queries) == len(RULE_INSTRUMENTS)
    assert any('__name__=~"system_cpu_utilization(_ratio)?"' in q for q in api.queries)


def test_histograms_are_rebuilt_from_buckets(stub: Any) -> None:
    common = {
        "job": "shop",
        "instance": "h:1",
        "http_request_method": "GET",
        "http_response_status_code": "200",
    }
    name = "http_server_request_duration_seconds"
    series: list[tuple[dict[str, str], list[tuple[float, float]]]] = [
        ({**common, "__name__": f"{name}_bucket", "le": "0.1"}, [(10, 2), (11, 5)]),
        ({**common, "__name__": f"{name}_bucket", "le": "1"}, [(10, 3), (11, 9)]),
        ({**common, "__name__": f"{name}_bucket", "le": "+Inf"}, [(10, 4), (11, 11)]),
        ({**common, "__name__": f"{name}_sum"}, [(10, 2.5), (11, 6.0)]),
        ({**common, "__name__": f"{name}_count"}, [(10, 4), (11, 11)]),
    ]

    def answer(query: str) -> tuple[int, str, bytes]:
        return 200, "application/json", _matrix(series if "http_server_request" in query else [])

    records = list(read_prometheus(stub(answer).url, start=10, end=11, step=1))
    assert len(records) == 2 and records[0].type == "histogram"
    last = records[1].points[0]
    assert isinstance(last, HistogramPoint)
    assert last.explicit_bounds == (0.1, 1.0)
    assert last.attributes["http.response.status_code"] == 200
    assert last.attributes["http.request.method"] == "GET"
    # rebased on the first sample: (5-2, 4-1, 2-1) per bucket
    assert (last.count, last.bucket_counts, last.sum) == (7, (3, 3, 1), 3.5)
    assert last.start_ns == 10 * 10**9


def test_the_older_millisecond_histogram_is_read_too(stub: Any) -> None:
    # What HTTP instrumentations emit by default: http.server.duration in ms, http.status_code.
    common = {"job": "shop", "instance": "h:1", "http_method": "GET", "http_status_code": "503"}
    name = "http_server_duration_milliseconds"
    series: list[tuple[dict[str, str], list[tuple[float, float]]]] = [
        ({**common, "__name__": f"{name}_bucket", "le": "100"}, [(10, 0), (11, 4)]),
        ({**common, "__name__": f"{name}_bucket", "le": "+Inf"}, [(10, 0), (11, 6)]),
        ({**common, "__name__": f"{name}_sum"}, [(10, 0), (11, 900.0)]),
        ({**common, "__name__": f"{name}_count"}, [(10, 0), (11, 6)]),
    ]

    def answer(query: str) -> tuple[int, str, bytes]:
        return 200, "application/json", _matrix(series if "http_server_duration" in query else [])

    api = stub(answer)
    records = list(read_prometheus(api.url, start=10, end=11, step=1))
    assert {(r.name, r.unit, r.type) for r in records} == {("http.server.duration", "ms", "histogram")}
    last = records[-1].points[0]
    assert isinstance(last, HistogramPoint)
    assert (last.count, last.sum, last.explicit_bounds) == (6, 900.0, (100.0,))
    assert last.attributes["http.status_code"] == 503  # an int, so the error rule reads it
    selector = '__name__=~"http_server_duration(_milliseconds)?_(bucket|sum|count)"'
    assert any(selector in q for q in api.queries)


def test_service_filter_goes_into_the_query(stub: Any) -> None:
    api = stub(lambda q: (200, "application/json", _matrix([])))
    assert list(read_prometheus(api.url, start=10, end=20, step=5, service="my-shop")) == []
    assert all('job=~"(.+/)?my\\\\-shop"' in q for q in api.queries), api.queries[0]


def test_an_html_answer_is_one_clear_error(stub: Any) -> None:
    api = stub(lambda q: (200, "text/html; charset=utf-8", b"<html><body>Grafana login</body></html>"))
    with pytest.raises(TelemetryInputError) as info:
        list(read_prometheus(api.url, start=10, end=20, step=5))
    message = str(info.value)
    assert api.url in message and "text/html" in message and "Prometheus-compatible" in message
    assert "\n" not in message


def test_http_errors_are_one_line(stub: Any) -> None:
    api = stub(lambda q: (404, "text/plain", b"404 page not found"))
    with pytest.raises(TelemetryInputError, match=r"answered HTTP 404"):
        list(read_prometheus(api.url, start=10, end=20, step=5))
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
    api = stub(lambda q: (400, "application/json", body))
    with pytest.raises(TelemetryInputError, match=r"refused the query \(HTTP 400\): bad_data: parse error"):
        list(read_prometheus(api.url, start=10, end=20, step=5))
    api = stub(lambda q: (200, "application/json", b'{"hello": "world"}'))
    with pytest.raises(TelemetryInputError, match="does not answer like a Prometheus-compatible API"):
        list(read_prometheus(api.url, start=10, end=20, step=5))


def test_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TelemetryInputError, match=f"cannot reach Prometheus at {url}"):
        list(read_prometheus(url, start=10, end=20, step=5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 20, "end": 10}, "is not after the start"),
        ({"start": 0, "end": 10}, "after 1970"),
        ({"start": 10, "end": 20, "step": 0}, "bad step"),
        ({"start": 10, "end": 10 + 86400 * 30, "step": 1}, "larger step"),
    ],
)
def test_bad_time_ranges_fail_at_once(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(TelemetryInputError, match=message):
        read_prometheus(
            "http://127.0.0.1:1", start=kwargs["start"], end=kwargs["end"], step=kwargs.get("step", 15)
        )  # no query: checked before any request


def test_not_an_http_url() -> None:
    with pytest.raises(TelemetryInputError, match="not an http"):
        read_prometheus("ftp://example.org", start=10, end=20)


def test_cli_unreachable_url_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--prometheus", url, "--format", "json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "Traceback" not in err[0]


def test_cli_html_answer_exits_2_with_one_line(stub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    api = stub(lambda q: (200, "text/html", b"<!doctype html><p>hi</p>"))
    assert main(["--prometheus", api.url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and api.url in err[0] and "text/html" in err[0]


def test_cli_needs_a_path_or_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "--prometheus" in capsys.readouterr().err


def test_cli_bad_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--prometheus", "http://127.0.0.1:1", "--step", "0"]) == 2
    assert "--step" in capsys.readouterr().err


def test_cli_no_series_says_where_it_looked(stub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    api = stub(lambda q: (200, "application/json", _matrix([])))
    assert main(["--prometheus", api.url, "--since", "10m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and api.url in err[0]


# --- a real Prometheus that scraped the demo ------------------------------------------------------
@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, float, float]]:
    """Prometheus after it scraped the demo for a while under both names; (server, start, end)."""
    work = tmp_path_factory.mktemp("demo")
    port = free_port()
    with (
        PrometheusServer(both_naming_paths([f"127.0.0.1:{port}"]), scrape_interval="1s") as prom,
        open(work / "demo.log", "wb") as demo_log,
    ):
        start = time.time()
        proc = start_demo(work, port, DEMO_DURATION, demo_log)
        try:
            deadline = time.monotonic() + 40
            for job in (DEMO_SERVICE, VIA_COLLECTOR):
                # at least 11 scrapes with requests in them
                expr = f'count_over_time(amqadf_worker_pool_tasks_total{{job="{job}"}}[5m]) >= 11'
                assert prom.wait_for(expr, deadline), (work / "demo.log").read_text()[-3000:]
            yield prom, start - 1, time.time() + 1
        finally:
            stop_processes([proc])


@pytest.mark.parametrize("job", [DEMO_SERVICE, VIA_COLLECTOR])
def test_real_prometheus_gives_the_rules_their_records(
    scraped: tuple[PrometheusServer, float, float], job: str
) -> None:
    prom, start, end = scraped
    records = [r for r in read_prometheus(prom.url, start=start, end=end, step=1, service=job)]
    assert records and all(isinstance(r, MetricRecord) for r in records)
    assert {r.service for r in records} == {job}
    names = {r.name for r in records}
    assert {
        "http.server.request.duration",
        "amqadf.cache.requests",
        "amqadf.worker_pool.workers",
        "amqadf.worker_pool.max_workers",
        "amqadf.worker_pool.tasks",
        "amqadf.worker_pool.queue.wait",
        "system.cpu.utilization",  # system_cpu_utilization, or _ratio through the "Collector"
    } <= names, names

    http = [r for r in records if r.name == "http.server.request.duration"]
    assert all(r.type == "histogram" for r in http)
    points = [p for r in http for p in r.points]
    assert all(isinstance(p, HistogramPoint) for p in points)
    assert {p.explicit_bounds for p in points if isinstance(p, HistogramPoint)} == {semconv.SECONDS_BUCKETS}
    assert max(p.count for p in points if isinstance(p, HistogramPoint)) > 0
    assert all(semconv.ATTR_HTTP_REQUEST_METHOD in p.attributes for p in points)

    cache = [p for r in records if r.name == "amqadf.cache.requests" for p in r.points]
    results = {
        (p.attributes.get(semconv.ATTR_CACHE_NAME), p.attributes.get(semconv.ATTR_CACHE_RESULT))
        for p in cache
    }
    assert {("orders", "hit"), ("orders", "miss")} <= results
    assert max(p.value or 0 for p in cache if isinstance(p, NumberPoint)) > 0

    pools = {
        p.attributes.get(semconv.ATTR_POOL_NAME)
        for r in records
        if r.name.startswith("amqadf.worker_pool.")
        for p in r.points
    }
    assert pools == {"request-workers"}
    states = {
        p.attributes.get(semconv.ATTR_POOL_STATE)
        for r in records
        if r.name == "amqadf.worker_pool.workers"
        for p in r.points
    }
    assert states == {"busy", "idle"}


def test_real_prometheus_through_the_command(
    scraped: tuple[PrometheusServer, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    prom, start, _ = scraped
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    code = main(
        [
            "--prometheus",
            prom.url,
            "--service",
            DEMO_SERVICE,
            "--since",
            since,
            "--step",
            "1",
            "--window",
            "5",
            "--format",
            "json",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    timeline = report["scaling"]["timeline"]
    assert timeline, report["scaling"]
    assert any(w["metrics"]["request_rate"] for w in timeline), timeline
    assert "orders" in {c["name"] for c in report["cache"]}
    assert "request-workers" in {p["pool"] for p in report["threads"]}


def test_real_prometheus_default_range_is_the_last_hour(
    scraped: tuple[PrometheusServer, float, float], capsys: pytest.CaptureFixture[str]
) -> None:
    prom, _, _ = scraped
    # a step shorter than the ~12 s the demo has run, so that counters get two points or more
    assert main(["--prometheus", prom.url, "--step", "4", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scaling"]["timeline"]
    assert "orders" in {c["name"] for c in report["cache"]}
