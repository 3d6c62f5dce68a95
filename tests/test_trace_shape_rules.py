"""The trace-shape rules and URL templating on built span trees: each rule's planted case and a
healthy control that must stay silent."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER,
    STATUS_CODE_ERROR,
    SpanRecord,
)
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.analyzer.rules.http_calls import http_call, template_path, url_template
from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeRules, analyze_trace_shapes

_ids = itertools.count(1)
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
TRACE = "cd" * 16
ROOT = "00000000000000aa"
RESOURCE = {"service.name": "shop"}


def span(
    name: str,
    start_ms: float,
    duration_ms: float,
    *,
    kind: int = SPAN_KIND_INTERNAL,
    parent: str = ROOT,
    span_id: str | None = None,
    trace: str = TRACE,
    attrs: dict[str, Any] | None = None,
    status: int = 0,
) -> SpanRecord:
    start = T0 + int(start_ms * MS)
    return SpanRecord(
        trace, span_id or f"{next(_ids):016x}", parent, name, kind, start, start + int(duration_ms * MS),
        status, "", attrs or {}, (), RESOURCE, "test",
    )  # fmt: skip


def server(duration_ms: float, *, trace: str = TRACE, route: str = "/orders/<int:order_id>") -> SpanRecord:
    return span(
        f"GET {route}", 0, duration_ms, kind=SPAN_KIND_SERVER, parent="", span_id=ROOT, trace=trace,
        attrs={"http.route": route, "http.request.method": "GET"},
    )  # fmt: skip


def http(url: str, start_ms: float, duration_ms: float, method: str = "GET", **kw: Any) -> SpanRecord:
    attrs = {"http.request.method": method, "url.full": url, "server.address": "inventory"}
    return span(method, start_ms, duration_ms, kind=SPAN_KIND_CLIENT, attrs=attrs, **kw)


def query(sql: str, start_ms: float, duration_ms: float, **kw: Any) -> SpanRecord:
    attrs = {"db.system.name": "postgresql", "db.query.text": sql}
    return span("SELECT", start_ms, duration_ms, kind=SPAN_KIND_CLIENT, attrs=attrs, **kw)


def rules(found: list[Recommendation], rule: str) -> list[Recommendation]:
    return [r for r in found if r.rule == rule]


# -- URL templates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/users/17", "/api/users/{id}"),
        ("/api/users/17/orders/4", "/api/users/{id}/orders/{id}"),
        ("/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/items/{id}"),
        ("/blobs/5d41402abc4b2a76b9719d911017c592", "/blobs/{id}"),
        ("/orders/ord_8f3k29x", "/orders/{id}"),
        ("/api/v2/users", "/api/v2/users"),
        ("/health", "/health"),
        ("", "/"),
    ],
)
def test_template_path_replaces_ids_only(path: str, template: str) -> None:
    assert template_path(path) == template


def test_url_template_drops_user_info_and_query() -> None:
    peer, template = url_template("https://bob:hunter2@Inventory:8443/stock/42?token=s3cret#x")
    assert (peer, template) == ("inventory:8443", "inventory:8443/stock/{id}")


def test_http_call_from_old_and_path_attributes() -> None:
    old = http_call({"http.method": "get", "http.url": "http://svc/a/12?x=1"})
    assert old is not None and (old.method, old.template) == ("GET", "svc/a/{id}")
    by_path = http_call(
        {"http.request.method": "POST", "url.path": "/b/9", "server.address": "Svc", "server.port": 81}
    )
    assert by_path is not None and (by_path.peer, by_path.template) == ("svc:81", "svc:81/b/{id}")
    assert http_call({"db.system.name": "redis"}) is None
    same = http_call({"http.method": "GET", "http.url": "http://svc/a/12?x=1"})
    other = http_call({"http.method": "GET", "http.url": "http://svc/a/12?x=2"})
    assert same is not None and other is not None
    assert old.identity == same.identity != other.identity


# -- N+1 HTTP ------------------------------------------------------------------------------------------


def test_n_plus_one_http_found_with_route_and_time_saved() -> None:
    calls = [http(f"http://inventory/stock/{i}", i * 40, 35) for i in range(12)]
    found = analyze_trace_shapes([server(600), *calls])
    (n1,) = rules(found, "n_plus_one_http")
    assert n1.category == "calls"
    assert n1.subject == "GET inventory/stock/{id}"
    numbers = n1.evidence.numbers
    assert numbers["largest"] == 12
    assert numbers["route"] == "/orders/<int:order_id>"
    assert numbers["service"] == "shop"
    assert numbers["time_saved_ms"] == pytest.approx(11 * 35)
    assert "concurrent_occurrences" not in numbers
    assert n1.title == "N+1 HTTP calls (up to 12 in a row): GET inventory/stock/{id}"
    assert n1.evidence.trace_ids == (TRACE,)
    assert n1.evidence.span_ids == (calls[0].span_id,)
    assert "Sentry" in n1.evidence.threshold
    assert n1.impact_s == pytest.approx(11 * 0.035)


def test_n_plus_one_http_issued_concurrently_saves_what_the_calls_cover_beyond_the_longest() -> None:
    # asyncio.gather: 12 calls of 60-71 ms started within 11 ms, all running at once; the request waits
    # 71 ms for them, and one batched call of the longest's time would save nothing of the others' sum
    calls = [http(f"http://inventory/stock/{i}", i, 60 + i) for i in range(12)]
    (n1,) = rules(analyze_trace_shapes([server(100), *calls]), "n_plus_one_http")
    assert n1.evidence.numbers["largest"] == 12
    # covered: from the first start (0) to the last end (11 + 71 = 82 ms); the longest: 71 ms
    assert n1.evidence.numbers["time_saved_ms"] == pytest.approx(82 - 71)
    # AND it says so: not "in a row", and not to make them concurrent
    assert n1.evidence.numbers["concurrent_occurrences"] == 1
    assert n1.title == "N+1 HTTP calls (up to 12, issued concurrently): GET inventory/stock/{id}"
    assert "run concurrently already" in n1.action
    # two waves of six at once: each wave covers its longest, the batch saves the first wave's
    waves = [http(f"http://inventory/stock/{i}", 0 if i < 6 else 100, 50, trace="ef" * 16) for i in range(12)]
    (n1,) = rules(analyze_trace_shapes([server(200, trace="ef" * 16), *waves]), "n_plus_one_http")
    assert n1.evidence.numbers["time_saved_ms"] == pytest.approx(100 - 50)


def test_n_plus_one_http_control_too_few_or_too_fast() -> None:
    nine = [http(f"http://inventory/stock/{i}", i * 40, 35) for i in range(9)]
    fast = [http(f"http://inventory/stock/{i}", i * 10, 5, trace="ef" * 16) for i in range(20)]
    found = analyze_trace_shapes([server(600), *nine, server(300, trace="ef" * 16), *fast])
    assert rules(found, "n_plus_one_http") == []


# -- MN+1 ----------------------------------------------------------------------------------------------


def test_mn_plus_one_repeated_sequence() -> None:
    spans = [server(800)]
    for i in range(4):
        spans.append(query(f"SELECT * FROM items WHERE order_id = {i}", i * 60, 20))
        spans.append(http(f"http://inventory/stock/{i}", i * 60 + 25, 30))
    found = analyze_trace_shapes(spans)
    (mn,) = rules(found, "mn_plus_one")
    assert mn.subject == "SELECT * FROM items WHERE order_id = ? -> GET inventory/stock/{id}"
    assert mn.evidence.numbers["largest"] == 8
    assert mn.evidence.numbers["time_saved_ms"] == pytest.approx(3 * 50)


def test_mn_plus_one_control_two_repeats_or_no_pattern() -> None:
    spans = [server(800)]
    for i in range(2):
        spans.append(query(f"SELECT * FROM items WHERE order_id = {i}", i * 60, 40))
        spans.append(http(f"http://inventory/stock/{i}", i * 60 + 45, 40))
    spans.append(query("SELECT * FROM users WHERE id = 1", 200, 40))
    assert rules(analyze_trace_shapes(spans), "mn_plus_one") == []


# -- serialized independent calls ---------------------------------------------------------------------


def test_serialized_queries_found() -> None:
    spans = [
        server(500),
        query("SELECT count(*) FROM orders", 10, 120),
        query("SELECT name FROM settings WHERE key = 'theme'", 140, 90),
        query("SELECT * FROM banners", 240, 100),
    ]
    (ser,) = rules(analyze_trace_shapes(spans), "serialized_calls")
    assert ser.evidence.numbers["largest"] == 3
    assert ser.evidence.numbers["time_saved_ms"] == pytest.approx(190)


def test_serialized_http_calls_need_three() -> None:
    two = [server(500), http("http://a/x", 0, 150), http("http://b/y", 160, 150)]
    assert rules(analyze_trace_shapes(two), "serialized_calls") == []
    three = [*two, http("http://c/z", 320, 150)]
    (ser,) = rules(analyze_trace_shapes(three), "serialized_calls")
    assert ser.subject == "GET a/x | GET b/y | GET c/z"
    assert ser.evidence.numbers["time_saved_ms"] == pytest.approx(300)


def test_serialized_controls_parallel_dependent_small() -> None:
    trace = iter(f"{n:032x}" for n in range(1, 10))
    t1 = next(trace)  # already parallel: overlapping
    overlapping = [
        server(400, trace=t1),
        query("SELECT count(*) FROM orders", 0, 200, trace=t1),
        query("SELECT * FROM banners", 50, 200, trace=t1),
    ]
    t2 = next(trace)  # the second uses a bind parameter in WHERE: may use the first result
    dependent = [
        server(400, trace=t2),
        query("SELECT id FROM users WHERE email = 'a@b'", 0, 150, trace=t2),
        query("SELECT * FROM orders WHERE user_id = %s", 160, 150, trace=t2),
    ]
    t3 = next(trace)  # saves under 10% of a long parent
    small_share = [
        server(5000, trace=t3),
        query("SELECT count(*) FROM orders", 0, 150, trace=t3),
        query("SELECT * FROM banners", 160, 150, trace=t3),
    ]
    t4 = next(trace)  # writes keep their order
    writes = [
        server(400, trace=t4),
        query("UPDATE a SET x = 1", 0, 150, trace=t4),
        query("UPDATE b SET y = 2", 160, 150, trace=t4),
    ]
    found = analyze_trace_shapes([*overlapping, *dependent, *small_share, *writes])
    assert rules(found, "serialized_calls") == []


# -- fan-out, chatty service, redundant calls ----------------------------------------------------------


def test_fan_out_over_twenty_children() -> None:
    parent = span("render_page", 0, 500, span_id="00000000000000bb")
    kids = [span(f"widget {i}", i, 1, parent="00000000000000bb") for i in range(21)]
    (fan,) = rules(analyze_trace_shapes([server(600), parent, *kids]), "fan_out")
    assert fan.subject == "render_page"
    assert fan.evidence.numbers["largest"] == 21
    control = [span(f"widget {i}", i, 1, parent="00000000000000bb") for i in range(20)]
    assert rules(analyze_trace_shapes([server(600), parent, *control]), "fan_out") == []


def test_the_asgi_messages_of_a_request_are_not_a_fan_out() -> None:
    # a FastAPI request making 20 different calls; the ASGI instrumentation adds its "http receive" and
    # two "http send" spans (response start and body) under the same server span
    calls = [http(f"http://inventory/part{i}", i * 10, 5) for i in range(20)]
    asgi = [
        span(f"GET /orders/<int:order_id> http {way}", at, 0.1, attrs={"asgi.event.type": event})
        for way, at, event in (
            ("receive", 0, "http.request"),
            ("send", 205, "http.response.start"),
            ("send", 206, "http.response.body"),
        )
    ]
    assert rules(analyze_trace_shapes([server(210), *calls, *asgi]), "fan_out") == []
    # AND a 21st call is a fan-out of 21 children
    more = [*calls, http("http://inventory/part20", 200, 5)]
    (fan,) = rules(analyze_trace_shapes([server(210), *more, *asgi]), "fan_out")
    assert fan.evidence.numbers["largest"] == 21


def test_a_loop_over_one_query_is_an_n_plus_one_not_a_fan_out() -> None:
    # GIVEN 40 children of one span, 30 of them one query with different ids (an N+1 loop)
    parent = span("list_orders", 0, 500, span_id="00000000000000bb")
    loop = [
        query(f"SELECT * FROM items WHERE order_id = {i}", i * 10, 5, parent="00000000000000bb")
        for i in range(30)
    ]
    others = [span(f"widget {i}", 300 + i, 1, parent="00000000000000bb") for i in range(10)]
    # THEN the trace-shape rules leave it to the N+1 rules
    assert rules(analyze_trace_shapes([server(600), parent, *loop, *others]), "fan_out") == []
    # AND the same width of different work is a fan-out
    varied = [query(f"SELECT * FROM t{i}", i * 10, 5, parent="00000000000000bb") for i in range(30)]
    assert len(rules(analyze_trace_shapes([server(600), parent, *varied, *others]), "fan_out")) == 1


def test_chatty_service_counts_calls_to_one_peer_across_parents() -> None:
    spans = [server(900)]
    for i in range(15):
        parent = f"{0x100 + i % 3:016x}"
        spans.append(http(f"http://pricing/p/{i}?v={i}", i * 50, 5, parent=parent))
    (chatty,) = rules(analyze_trace_shapes(spans), "chatty_service")
    assert chatty.subject == "pricing"
    assert chatty.evidence.numbers["largest"] == 15
    control = [server(900), *(http(f"http://pricing/p/{i}", i * 50, 5) for i in range(14))]
    assert rules(analyze_trace_shapes(control), "chatty_service") == []


def test_redundant_gets_same_url_and_query_only() -> None:
    spans = [
        server(500),
        http("http://config/flags?app=shop", 0, 40),
        http("http://config/flags?app=shop", 50, 40),
        http("http://config/flags?app=shop", 100, 40),
        http("http://config/flags?app=other", 150, 40),
    ]
    (red,) = rules(analyze_trace_shapes(spans), "redundant_calls")
    assert red.subject == "GET config/flags"
    assert red.evidence.numbers["largest"] == 3
    assert red.evidence.numbers["time_saved_ms"] == pytest.approx(80)
    assert "app=shop" not in str(red.to_dict())
    control = [
        server(500),
        http("http://config/flags?app=shop", 0, 40, status=STATUS_CODE_ERROR),  # a failure, then a retry
        http("http://config/flags?app=shop", 50, 40),
        http("http://config/orders", 100, 40, method="POST"),
        http("http://config/orders", 150, 40, method="POST"),
    ]
    assert rules(analyze_trace_shapes(control), "redundant_calls") == []


def add_trace(shapes: TraceShapeRules, trace: str, calls: list[tuple[str, int]], duration_ms: int) -> None:
    """A 600 ms request of ``trace`` with a GET to each ``(url, start ms)`` of ``calls`` under it."""
    shapes.add(server(600, trace=trace))
    for url, start_ms in calls:
        shapes.add(http(url, start_ms, duration_ms, trace=trace))


def test_findings_aggregate_over_traces_and_buffer_is_bounded() -> None:
    from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeConfig

    shapes = TraceShapeRules(TraceShapeConfig(max_buffered_spans=50))
    for t in range(5):
        add_trace(shapes, f"{t + 1:032x}", [(f"http://inventory/stock/{i}", i * 40) for i in range(12)], 35)
    assert shapes._buffered <= 50
    (n1,) = rules(shapes.recommendations(), "n_plus_one_http")
    assert n1.evidence.numbers["traces_affected"] == 5
    assert n1.evidence.numbers["occurrences"] == 5
    assert len(n1.evidence.trace_ids) == 3


def test_service_and_time_filters() -> None:
    calls = [http(f"http://inventory/stock/{i}", i * 40, 35) for i in range(12)]
    other = TraceShapeRules(service="billing")
    late = TraceShapeRules(since_ns=T0 + 10_000 * MS)
    for record in [server(600), *calls]:
        other.add(record)
        late.add(record)
    assert other.recommendations() == []
    assert late.recommendations() == []


def test_a_loop_call_is_not_one_of_the_serialized_calls() -> None:
    # an N+1 loop followed by three independent calls: the run holds the three only
    spans = [server(900), *(http(f"http://inventory/stock/{i}", i * 40, 35) for i in range(12))]
    spans += [http("http://a/x", 500, 100), http("http://b/y", 610, 100), http("http://c/z", 720, 100)]
    (ser,) = rules(analyze_trace_shapes(spans), "serialized_calls")
    assert ser.subject == "GET a/x | GET b/y | GET c/z"
    (n1,) = rules(analyze_trace_shapes(spans), "n_plus_one_http")
    assert n1.evidence.numbers["largest"] == 12


def test_route_of_a_consumer_trace_is_its_span_name() -> None:
    from amqadf_agent.analyzer.model import SPAN_KIND_CONSUMER

    consumer = span("orders process", 0, 800, kind=SPAN_KIND_CONSUMER, parent="", span_id=ROOT)
    calls = [http(f"http://inventory/stock/{i}", i * 40, 35) for i in range(12)]
    (n1,) = rules(analyze_trace_shapes([consumer, *calls]), "n_plus_one_http")
    assert n1.evidence.numbers["route"] == "orders process"


def test_findings_beyond_the_bound_are_counted_not_kept() -> None:
    # A crawler: every trace repeats a GET of its own page; each page would be its own finding.
    from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeConfig

    shapes = TraceShapeRules(TraceShapeConfig(max_findings=3))
    for t in range(5):
        page = f"http://site/pages/about-page-{'abcde'[t]}"
        add_trace(shapes, f"{t + 1:032x}", [(page, repeat * 50) for repeat in range(2)], 40)
    # a finding kept, seen again in another trace
    add_trace(shapes, "f" * 32, [("http://site/pages/about-page-a", repeat * 50) for repeat in range(2)], 40)
    found = rules(shapes.recommendations(), "redundant_calls")
    assert sorted(r.subject for r in found) == [f"GET site/pages/about-page-{c}" for c in "abc"]
    assert shapes.not_kept == 2
    again = next(r for r in found if r.subject.endswith("-a"))
    assert again.evidence.numbers["traces_affected"] == 2 and again.evidence.numbers["occurrences"] == 2


def test_redundant_gets_issued_together_save_little() -> None:
    # The same GET three times: one after another, all but the first is saved; issued together
    # (asyncio.gather), only what they cover beyond the first.
    after = [server(500), *(http("http://config/flags?app=shop", i * 50, 40) for i in range(3))]
    (one_by_one,) = rules(analyze_trace_shapes(after), "redundant_calls")
    assert one_by_one.evidence.numbers["time_saved_ms"] == pytest.approx(80)
    together = [server(500), *(http("http://config/flags?app=shop", i * 2, 40) for i in range(3))]
    (concurrent,) = rules(analyze_trace_shapes(together), "redundant_calls")
    assert concurrent.evidence.numbers["time_saved_ms"] == pytest.approx(4)
