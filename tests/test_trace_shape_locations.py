"""Trace-shape findings list the code locations of their calls, from the client spans' ``code.*``."""

from __future__ import annotations

from typing import Any

from test_trace_shape_rules import http, query, rules, server

from amqadf_agent.analyzer.recommendation import CodeLocation
from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeConfig, analyze_trace_shapes


def code(line: int, function: str = "orders", file: str = "/srv/shop/views.py") -> dict[str, Any]:
    return {"code.file.path": file, "code.line.number": line, "code.function.name": function}


def old_code(line: int, function: str = "orders", file: str = "/srv/shop/views.py") -> dict[str, Any]:
    return {"code.filepath": file, "code.lineno": line, "code.function": function}


def with_code(span: Any, attrs: dict[str, Any]) -> Any:
    span.attributes.update(attrs)
    return span


def test_n_plus_one_http_names_the_loop_line_with_its_share() -> None:
    # 12 calls from the loop's line, 3 from a second line (old attribute names), 1 without code.*
    calls = [with_code(http(f"http://inv/stock/{i}", 10 + 40 * i, 35), code(42)) for i in range(12)]
    calls += [
        with_code(http(f"http://inv/stock/{i}", 600 + 40 * i, 35), old_code(7, "refill")) for i in range(3)
    ]
    calls.append(http("http://inv/stock/99", 800, 35))
    [n1] = rules(analyze_trace_shapes([server(900), *calls]), "n_plus_one_http")
    assert n1.locations == (
        CodeLocation("/srv/shop/views.py", 42, "orders", 12, 12 / 16),
        CodeLocation("/srv/shop/views.py", 7, "refill", 3, 3 / 16),
    )
    assert n1.to_dict()["locations"][0] == {
        "file": "/srv/shop/views.py", "line": 42, "function": "orders", "count": 12, "share": 0.75,
    }  # fmt: skip


def test_serialized_queries_list_each_line() -> None:
    spans = [
        server(600),
        with_code(query("SELECT * FROM users", 10, 150), code(20, "profile")),
        with_code(query("SELECT * FROM plans", 170, 150), code(21, "profile")),
        with_code(
            query("SELECT * FROM invoices", 330, 150), {"code.file.path": "app.py", "code.lineno": True}
        ),
    ]
    [serialized] = rules(analyze_trace_shapes(spans), "serialized_calls")
    assert [(loc.file, loc.line, loc.function, loc.count) for loc in serialized.locations] == [
        ("/srv/shop/views.py", 20, "profile", 1),
        ("/srv/shop/views.py", 21, "profile", 1),
        ("app.py", 0, "", 1),  # a line that is no number is unknown (0), not dropped with its file
    ]


def test_spans_without_code_attributes_give_no_locations() -> None:
    calls = [http(f"http://inv/stock/{i}", 10 + 40 * i, 35) for i in range(12)]
    found = analyze_trace_shapes([server(600), *calls])
    assert found and all(r.locations == () for r in found)
    # code.* on the server span is not a call's location
    root = with_code(server(600), code(99, "view"))
    found = analyze_trace_shapes([root, *(http(f"http://inv/stock/{i}", 10 + 40 * i, 35) for i in range(12))])
    assert found and all(r.locations == () for r in found)


def test_locations_are_counted_up_to_a_bound_and_the_top_ones_listed() -> None:
    config = TraceShapeConfig(max_locations=2, max_counted_locations=3)
    calls = [with_code(http(f"http://inv/stock/{i}", 10 + 30 * i, 25), code(100 + i % 5)) for i in range(20)]
    [n1] = rules(analyze_trace_shapes([server(700), *calls], config), "n_plus_one_http")
    # lines 100..102 are counted (4 calls each); 103 and 104 come after the bound
    assert [(loc.line, loc.count) for loc in n1.locations] == [(100, 4), (101, 4)]
    assert n1.locations[0].share == 4 / 20
