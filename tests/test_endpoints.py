"""The endpoint view and counting each call once, on telemetry written as the file exporter writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.otlp_spans import CLIENT, DBAPI, MS, ORM, SERVER, T0, Span, write_spans
from support.otlp_spans import orders as _orders
from support.otlp_spans import payments as _payments

from amqadf_agent.analyzer import dedup as dedup_module
from amqadf_agent.analyzer.dedup import Call, CallDeduplicator, collapse
from amqadf_agent.analyzer.dedup import twins as _twins
from amqadf_agent.analyzer.endpoints import (
    MAX_PENDING_CALLS,
    MAX_PENDING_TRACES,
    MAX_ROUTES,
    OTHER_ROUTE,
    EndpointRules,
)
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.report import report_data
from amqadf_agent.analyzer.run import AnalysisOptions, analyze


def _report(tmp_path: Path, spans: list[Span]) -> dict:
    path = write_spans(tmp_path / "traces.jsonl", spans)
    return report_data(analyze(AnalysisOptions(paths=(path,))))


def test_twin_spans_of_two_instrumentations_count_once(tmp_path: Path) -> None:
    report = _report(tmp_path, _orders(100, twins="sibling"))
    n1 = [r for r in report["recommendations"] if r["rule"] == "n_plus_one"]
    assert len(n1) == 1
    numbers = n1[0]["evidence"]["numbers"]
    assert numbers["calls"] == 600 and numbers["longest_run"] == 6
    assert [q["calls"] for q in report["top_queries"]] == [600]
    assert report["summary"]["duplicates"] == {
        "merged": 600,
        "scopes": [{"kept": ORM, "dropped": DBAPI, "spans": 600}],
    }
    # the ORM's span is kept: its ids are the examples
    assert all(s.endswith(f"{1:08x}") for s in n1[0]["evidence"]["span_ids"])


def test_nested_twins_keep_the_outer_span_and_the_n_plus_one(tmp_path: Path) -> None:
    report = _report(tmp_path, _orders(100, twins="child"))
    n1 = [r for r in report["recommendations"] if r["rule"] == "n_plus_one"]
    assert len(n1) == 1 and n1[0]["evidence"]["numbers"]["calls"] == 600
    assert report["summary"]["duplicates"]["merged"] == 600


def test_one_instrumentation_merges_nothing(tmp_path: Path) -> None:
    report = _report(tmp_path, _orders(50, twins=None))
    assert report["summary"]["duplicates"] == {"merged": 0, "scopes": []}
    assert report["top_queries"][0]["calls"] == 300


def test_repeated_calls_of_one_scope_are_not_twins() -> None:
    calls = [Call(0, 10, "SELECT 1", ORM, "p", "a"), Call(5, 15, "SELECT 1", ORM, "p", "b")]
    assert collapse(calls) == calls  # overlapping, but one instrumentation: two real calls
    other = [Call(0, 10, "SELECT 1", ORM, "p", "a"), Call(20, 30, "SELECT 1", DBAPI, "p", "b")]
    assert collapse(other) == other  # two scopes, but one after the other: two calls
    unrelated = [Call(0, 10, "SELECT 1", ORM, "p", "a"), Call(2, 8, "SELECT 1", DBAPI, "q", "b")]
    assert collapse(unrelated) == unrelated  # different parents, neither the other's parent


def test_the_stream_keeps_the_wrapping_span_whichever_comes_first() -> None:
    seen: list[str] = []
    dedup = CallDeduplicator(lambda span: seen.append(span.span_id), window=4)

    def span(span_id: str, scope: str, start: int, end: int) -> SpanRecord:
        attributes = {"db.system": "sqlite", "db.statement": "SELECT 1"}
        return SpanRecord(
            "t" * 32, span_id, "p" * 16, "SELECT", CLIENT, start, end, 0, "", attributes, (), {}, scope
        )

    dedup.add(span("inner", DBAPI, 2, 8))
    dedup.add(span("outer", ORM, 0, 10))
    for number in range(5):  # unrelated calls push the held ones out of the window
        dedup.add(span(f"later{number}", DBAPI, 100 + number * 20, 110 + number * 20))
    dedup.flush()
    assert seen == ["outer", *(f"later{number}" for number in range(5))]
    assert dedup.duplicates == 1


def test_a_statement_repeated_in_its_trace_keeps_its_twins_and_its_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An N+1 with bind parameters: one text, 600 calls in one trace, each seen by both instrumentations
    # (the driver's span ends first). Each span is compared with the newest held of its trace and
    # statement only (dedup.TWIN_SCAN): every twin is still found, every call passed on once, in order.
    compared: list[int] = []
    monkeypatch.setattr(dedup_module, "twins", lambda a, b: compared.append(1) or _twins(a, b))
    seen: list[str] = []
    dedup = CallDeduplicator(lambda span: seen.append(span.span_id))

    def span(span_id: str, scope: str, start: int, end: int) -> SpanRecord:
        attributes = {"db.system": "sqlite", "db.statement": "SELECT * FROM books WHERE author_id = ?"}
        return SpanRecord(
            "t" * 32, span_id, "p" * 16, "SELECT", CLIENT, start, end, 0, "", attributes, (), {}, scope
        )

    for number in range(600):
        start = number * 1000
        dedup.add(span(f"d{number}", DBAPI, start + 10, start + 900))
        dedup.add(span(f"o{number}", ORM, start, start + 950))
    dedup.flush()
    assert seen == [f"o{number}" for number in range(600)]  # the ORM's, wrapping the driver's
    assert dedup.duplicates == 600 and dedup.scopes == {(ORM, DBAPI): 600}
    assert len(compared) == 600  # only the overlapping pairs of two scopes were compared in full


def test_routes_with_requests_errors_percentiles_and_time_split(tmp_path: Path) -> None:
    report = _report(tmp_path, _orders(40, twins="sibling") + _payments(40))
    assert report["schema_version"] == 3
    routes = {(r["method"], r["route"]): r for r in report["top_routes"]}
    assert set(routes) == {("GET", "/orders/{id}"), ("POST", "/pay")}
    pay, orders = routes["POST", "/pay"], routes["GET", "/orders/{id}"]
    assert report["top_routes"][0] is not None and report["top_routes"][0]["route"] == "/pay"  # most time
    assert pay["requests"] == 40 and pay["errors"] == 10 and pay["error_rate"] == 0.25
    assert pay["p50_ms"] == pay["p95_ms"] == pay["p99_ms"] == 250.0
    assert pay["http_calls_per_request"] == 1 and pay["http_ms_per_request"] == 200.0
    assert pay["share"] == {"db": 0.0, "http": 0.8, "other": 0.2}
    assert orders["requests"] == 40 and orders["errors"] == 0
    assert orders["db_calls_per_request"] == 6  # not 12: the twins count once
    assert orders["db_ms_per_request"] == 60.0
    assert orders["share"] == {"db": 0.6, "http": 0.0, "other": 0.4}
    n1 = next(r for r in report["recommendations"] if r["rule"] == "n_plus_one")
    assert {"fingerprint": n1["fingerprint"], "rule": "database/n_plus_one"} in orders["findings"]
    assert pay["findings"] == []


def _cart(requests: int) -> list[Span]:
    """GET /cart: the same GET made twice (a redundant call), 40 ms each, in a 100 ms request."""
    spans: list[Span] = []
    for r in range(requests):
        trace, server = f"{r + 7001:032x}", f"{r + 7001:016x}"
        start = T0 + r * 1000 * MS + 300 * MS
        http = {"http.request.method": "GET", "url.full": "http://flags.internal/flags?app=shop"}
        for n in range(2):
            at = start + 10 * MS + n * 45 * MS
            spans.append(
                Span(trace, f"{r + 7001:08x}{n + 1:08x}", server, "GET", CLIENT, at, at + 40 * MS, http)
            )
        attributes = {"http.route": "/cart", "http.request.method": "GET"}
        spans.append(Span(trace, server, "", "GET /cart", SERVER, start, start + 100 * MS, attributes))
    return spans


def test_a_call_finding_is_listed_on_the_route_its_traces_ran_under(tmp_path: Path) -> None:
    report = _report(tmp_path, _cart(5) + _payments(5))
    routes = {r["route"]: r for r in report["top_routes"]}
    [redundant] = [r for r in report["recommendations"] if r["rule"] == "redundant_calls"]
    assert routes["/cart"]["http_calls_per_request"] == 2
    assert routes["/cart"]["findings"] == [
        {"fingerprint": redundant["fingerprint"], "rule": "calls/redundant_calls"}
    ]
    assert routes["/pay"]["findings"] == []  # one call a request: no call finding


def test_calls_issued_at_once_share_the_request_time_they_cover(tmp_path: Path) -> None:
    # GET /catalog, 100 ms: 12 calls of 60 ms started together at 20 ms (asyncio.gather)
    spans: list[Span] = []
    for r in range(4):
        trace, server = f"{r + 8001:032x}", f"{r + 8001:016x}"
        start = T0 + r * 1000 * MS
        for n in range(12):
            http = {"http.request.method": "GET", "url.full": f"http://stock.internal/items/{n}"}
            at = start + 20 * MS
            spans.append(
                Span(trace, f"{r + 8001:08x}{n + 1:08x}", server, "GET", CLIENT, at, at + 60 * MS, http)
            )
        attributes = {"http.route": "/catalog", "http.request.method": "GET"}
        spans.append(Span(trace, server, "", "GET /catalog", SERVER, start, start + 100 * MS, attributes))
    [catalog] = _report(tmp_path, spans)["top_routes"]
    assert catalog["http_calls_per_request"] == 12
    assert catalog["http_ms_per_request"] == 720.0  # the calls' total: 12 x 60 ms
    # of the request's 100 ms, the calls ran for 60: the rest is the application's own
    assert catalog["share"] == {"db": 0.0, "http": 0.6, "other": 0.4}


def test_route_names_without_http_route() -> None:
    rules = EndpointRules()

    def server(name: str, attributes: dict, kind: int = SERVER) -> SpanRecord:
        return SpanRecord("a" * 32, "b" * 16, "", name, kind, 0, MS, 0, "", attributes, (), {}, "s")

    rules.add(server("grpc", {"rpc.service": "Cart", "rpc.method": "Add"}))
    rules.add(server("orders process", {"messaging.destination.name": "orders"}, kind=5))
    rules.add(server("legacy-handler", {}))
    assert sorted(r.route for r in rules.routes()) == ["Cart/Add", "consume orders", "legacy-handler"]


def test_routes_beyond_the_cap_are_counted_as_other() -> None:
    rules = EndpointRules()
    for number in range(MAX_ROUTES + 25):
        attributes = {"http.route": f"/r{number}", "http.request.method": "GET"}
        rules.add(
            SpanRecord(f"{number:032x}", "b" * 16, "", "GET", SERVER, 0, MS, 0, "", attributes, (), {}, "s")
        )
    routes = rules.routes()
    assert len(routes) == MAX_ROUTES + 1
    other = next(r for r in routes if r.route == OTHER_ROUTE)
    assert other.requests == 25


def test_every_format_shows_the_endpoint_table(tmp_path: Path) -> None:
    import io

    from amqadf_agent.analyzer.report import write_report

    path = write_spans(tmp_path / "traces.jsonl", _orders(20, twins="sibling") + _payments(20))
    analysis = analyze(AnalysisOptions(paths=(path,)))
    shown = {}
    for fmt in ("text", "markdown", "html"):
        out = io.StringIO()
        write_report(analysis, fmt, out)
        shown[fmt] = out.getvalue()
    assert "Endpoints by total time (2)" in shown["text"]
    assert f"Duplicates: 120 db span(s) merged, one call each ({ORM} <- {DBAPI}: 120)" in shown["text"]
    assert "shop: GET /orders/{id}: 20 req, errors 0.0%" in shown["text"]
    assert "database/n_plus_one" in shown["text"]
    assert "| `shop: POST /pay` | 20 | 25.0% | 250 ms |" in shown["markdown"]
    assert "<code>shop: GET /orders/{id}</code>" in shown["html"]


def _reports(requests: int, *, query_end_ms: int, late_first: bool = False) -> list[Span]:
    """GET /report requests of 3 s (failed: the request timed out), each running one report query
    from 10 ms in until ``query_end_ms``; exported in end order (``late_first``: the query first)."""
    spans: list[Span] = []
    for r in range(requests):
        trace, server = f"{r + 7001:032x}", f"{r + 7001:016x}"
        start = T0 + r * 20_000 * MS
        query = Span(
            trace,
            f"{r + 8001:016x}",
            server,
            "SELECT",
            CLIENT,
            start + 10 * MS,
            start + query_end_ms * MS,
            {"db.system": "sqlite", "db.statement": "SELECT sku, COUNT(*) FROM order_items GROUP BY sku"},
        )
        attributes = {"http.route": "/report", "http.request.method": "GET", "http.response.status_code": 504}
        end = start + 3000 * MS
        request = Span(trace, server, "", "GET /report", SERVER, start, end, attributes, error=True)
        in_order = [query, request] if late_first or query_end_ms <= 3000 else [request, query]
        spans += in_order
    return spans


def test_calls_that_outlive_their_request_are_its_calls_and_shown_apart(tmp_path: Path) -> None:
    report = _report(tmp_path, _reports(5, query_end_ms=8010) + _orders(10, twins=None))  # (data floor)
    route = next(r for r in report["top_routes"] if r["route"] == "/report")
    assert route["requests"] == 5 and route["errors"] == 5
    assert route["db_calls_per_request"] == 1 and route["db_ms_per_request"] == 8000.0
    assert route["calls_after_response"] == 5
    assert route["ms_after_response"] == 5 * 5010.0
    slow = next(r for r in report["recommendations"] if r["rule"] == "slow_query")
    assert {"fingerprint": slow["fingerprint"], "rule": "database/slow_query"} in route["findings"]
    # the same calls, arrived before their request (another file order): the same counts
    (tmp_path / "b").mkdir()
    before = _report(tmp_path / "b", _reports(5, query_end_ms=8010, late_first=True))
    again = next(r for r in before["top_routes"] if r["route"] == "/report")
    assert {k: again[k] for k in ("db_calls_per_request", "calls_after_response", "ms_after_response")} == {
        "db_calls_per_request": 1,
        "calls_after_response": 5,
        "ms_after_response": 5 * 5010.0,
    }
    # a query that ends within its request is not after the response
    (tmp_path / "c").mkdir()
    within = _report(tmp_path / "c", _reports(5, query_end_ms=2000))
    inside = next(r for r in within["top_routes"] if r["route"] == "/report")
    assert inside["db_calls_per_request"] == 1 and inside["calls_after_response"] == 0


def test_a_later_call_of_the_trace_that_started_after_the_request_is_not_its_call() -> None:
    rules = EndpointRules()

    def span(span_id: str, kind: int, start: int, end: int, attributes: dict) -> SpanRecord:
        return SpanRecord("a" * 32, span_id, "", "x", kind, start, end, 0, "", attributes, (), {}, "s")

    db = {"db.system": "sqlite", "db.statement": "SELECT 1"}
    rules.add(span("inner", SERVER, 0, 10 * MS, {"http.route": "/inner"}))
    rules.add(span("late", CLIENT, 5 * MS, 30 * MS, db))  # started within /inner, ended after it
    rules.add(span("next", CLIENT, 40 * MS, 50 * MS, db))  # started after /inner had ended
    rules.add(span("outer", SERVER, 0, 60 * MS, {"http.route": "/outer"}))
    routes = {route.route: route for route in rules.routes()}
    inner, outer = routes["/inner"], routes["/outer"]
    assert inner.db_calls == 1 and inner.late_calls == 1 and inner.late_s == 20 * MS / 1e9
    assert outer.db_calls == 1 and outer.late_calls == 0  # waited for the next request of the trace


def test_every_format_shows_the_calls_after_the_response() -> None:
    from amqadf_agent.analyzer import render_endpoints

    route = {"service": "shop", "method": "GET", "route": "/report", "requests": 5, "share": {}}
    late = {**route, "calls_after_response": 5, "ms_after_response": 25050.0}
    said = "5 calls ran on after the response, 25,050 ms in all"
    for render in (render_endpoints.text_lines, render_endpoints.markdown_lines, render_endpoints.html_lines):
        assert said in "\n".join(render([late])), render
        # none, or a report written before these keys: nothing said
        assert "after the response" not in "\n".join(render([route, {**route, "calls_after_response": 0}]))


def test_a_connection_span_is_database_time_not_a_call() -> None:
    # SQLAlchemy's ``connect`` span (a connection taken from the pool) names no statement: the
    # request's one query is its one db call; the time of both is its database time
    rules = EndpointRules()

    def span(span_id: str, kind: int, start: int, end: int, attributes: dict) -> SpanRecord:
        return SpanRecord("a" * 32, span_id, "s", "x", kind, start, end, 0, "", attributes, (), {}, "s")

    rules.add(span("connect", CLIENT, 1 * MS, 5 * MS, {"db.system": "sqlite", "db.name": "app.db"}))
    rules.add(span("query", CLIENT, 5 * MS, 15 * MS, {"db.system": "sqlite", "db.statement": "SELECT 1"}))
    rules.add(span("redis", CLIENT, 15 * MS, 16 * MS, {"db.system": "redis", "db.operation.name": "GET"}))
    rules.add(span("s", SERVER, 0, 20 * MS, {"http.route": "/x"}))
    [route] = rules.routes()
    assert route.db_calls == 2  # the query and the redis GET, not the connect
    assert round(route.db_s * 1e3, 6) == 4 + 10 + 1


def test_client_spans_waiting_for_their_request_are_bounded() -> None:
    # A trace of more client spans than may wait (a batch job, a hostile file): the oldest waiting
    # traces go, counted as dropped; the request that arrives counts what is still held.
    rules = EndpointRules()
    db = {"db.system": "sqlite", "db.statement": "SELECT 1"}

    def span(trace: str, span_id: int, kind: int, attributes: dict) -> SpanRecord:
        return SpanRecord(
            trace * 32, f"{span_id:016x}", "s", "x", kind, 0, MS, 0, "", attributes, (), {}, "s"
        )

    for number in range(10):
        rules.add(span("a", number + 1, CLIENT, db))  # an older trace waiting for its request
    for number in range(MAX_PENDING_CALLS):
        rules.add(span("b", number + 100, CLIENT, db))
    assert rules.dropped_calls == 10  # the older trace went first
    rules.add(span("b", 99, CLIENT, db))  # over the bound again: the trace itself goes
    assert rules.dropped_calls == 10 + MAX_PENDING_CALLS + 1
    rules.add(span("b", 98, CLIENT, db))
    rules.add(span("b", 97, SERVER, {"http.route": "/batch"}))
    [route] = rules.routes()
    assert route.requests == 1 and route.db_calls == 1


def test_requests_remembered_for_late_calls_are_bounded_over_all_services() -> None:
    rules = EndpointRules()
    resources = [{"service.name": f"svc-{number}"} for number in range(3)]
    for number in range(MAX_PENDING_TRACES + 500):
        attributes = {"http.route": "/x"}
        resource = resources[number % 3]
        rules.add(
            SpanRecord(
                f"{number:032x}", "b" * 16, "", "GET", SERVER, 0, MS, 0, "", attributes, (), resource, "s"
            )
        )
    remembered = {service: len(traces) for service, traces in rules._answered_of.items()}
    assert sum(remembered.values()) == MAX_PENDING_TRACES  # not 10,000 a service
    assert min(remembered.values()) >= MAX_PENDING_TRACES // 3 - 1  # the oldest went, whoever's


def test_a_finding_on_two_queries_is_listed_on_its_route(tmp_path: Path) -> None:
    # Two independent queries one after another (serialized_calls needs 2): the route that runs
    # them lists the finding, though it makes fewer db calls than an N+1 could
    spans: list[Span] = []
    for r in range(20):
        trace, server = f"{r + 9001:032x}", f"{r + 9001:016x}"
        start = T0 + r * 2000 * MS
        for number, (sql, at) in enumerate(
            (("SELECT count(*) FROM orders", 10), ("SELECT * FROM banners", 160))
        ):
            query = {"db.system": "postgresql", "db.statement": sql}
            spans.append(
                Span(trace, f"{r * 10 + number + 1:016x}", server, "SELECT", CLIENT,
                     start + at * MS, start + (at + 140) * MS, query)
            )  # fmt: skip
        attributes = {"http.route": "/home", "http.request.method": "GET"}
        spans.append(Span(trace, server, "", "GET /home", SERVER, start, start + 400 * MS, attributes))
    report = _report(tmp_path, spans)
    serialized = next(r for r in report["recommendations"] if r["rule"] == "serialized_calls")
    [home] = report["top_routes"]
    assert {"fingerprint": serialized["fingerprint"], "rule": "calls/serialized_calls"} in home["findings"]


def test_a_slow_query_is_listed_on_its_route_after_many_requests_were_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Requests with a few calls fill the requests remembered for linking; a slow query's examples are
    # the slowest, which may come after: they are remembered apart
    import amqadf_agent.analyzer.endpoints as endpoints

    monkeypatch.setattr(endpoints, "MAX_LINKED_TRACES", 3)
    report = _report(tmp_path, _orders(10, twins=None) + _reports(5, query_end_ms=2000))
    route = next(r for r in report["top_routes"] if r["route"] == "/report")
    slow = next(r for r in report["recommendations"] if r["rule"] == "slow_query")
    assert {"fingerprint": slow["fingerprint"], "rule": "database/slow_query"} in route["findings"]


def test_covered_time_counts_overlapping_spans_once_within_the_bounds() -> None:
    from amqadf_agent.analyzer.model import covered_ns

    assert covered_ns([(0, 10), (20, 30)]) == 20  # one after another: the total
    assert covered_ns([(0, 10), (2, 8), (5, 15)]) == 15  # overlapping: the stretch they cover
    assert covered_ns([(0, 10), (20, 30)], 5, 25) == 10  # clipped to the request
    assert covered_ns([(30, 40)], 0, 25) == 0 and covered_ns([]) == 0
