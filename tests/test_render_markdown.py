"""``render_markdown.render``: the JSON report (schema 2) as Markdown, line by line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.analyzer import render_markdown
from amqadf_agent.analyzer.render_markdown import code, render, text

FIXTURE = Path(__file__).parent / "fixtures" / "report_v2.json"


def _lines(report: dict[str, Any]) -> list[str]:
    out = io.StringIO()
    render(report, out)
    value = out.getvalue()
    assert value.endswith("\n") and not value.endswith("\n\n")
    return value.splitlines()


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


SMALL: dict[str, Any] = {
    "schema_version": 2,
    "summary": {
        "input": {"files": 1, "lines": 10},
        "counts": {"spans": 1200, "metric_records": 3, "data_points": 9, "logs": 0},
        "problems": {"count": 0, "first": []},
    },
    "recommendations": [
        {
            "fingerprint": "da-slow-query-1",
            "category": "database",
            "rule": "slow_query",
            "severity": "high",
            "title": "Slow query: SELECT * FROM t",
            "action": "Add an index.",
            "subject": "SELECT a | b FROM t",
            "confidence": 0.9,
            "impact_s": 1.5,
            "evidence": {
                "numbers": {"calls": 3, "p95_ms": 612.5},
                "formula": "p95",
                "threshold": "p95_ms >= 500",
                "window": None,
                "trace_ids": ["t1", "t2", "t3", "t4"],
                "span_ids": ["s1"],
            },
        }
    ],
    "scaling": {
        "window_seconds": 60,
        "service": "shop",
        "timeline": [
            {
                "time": "2026-11-26T15:52:00.000Z",
                "time_ns": 1795708320000000000,
                "current": 2,
                "target": 3,
                "action": "scale_up",
                "limited_by": None,
                "reason": "cpu 0.9 > 0.6",
                "metrics": {
                    "cpu_utilization": 0.9,
                    "memory_utilization": None,
                    "request_rate": 12.25,
                    "error_rate": 0.0,
                    "queue_depth": None,
                    "response_time_p50": 0.01,
                    "response_time_p95": 0.25,
                    "response_time_p99": None,
                },
                "cpu_only_target": 3,
            }
        ],
        "recommendation": None,
    },
    "cache": [],
    "top_queries": [
        {"statement": "SELECT `x` FROM t", "calls": 3, "total_ms": 1837.5, "mean_ms": 612.5, "p95_ms": 700.0}
    ],
}


def _no_data(*titles: str) -> list[str]:
    """The lines of sections, one per title, that say "No data."."""
    return [line for title in titles for line in (f"## {title}", "", "No data.", "")]


SMALL_EXPECTED = [
    "# amqadf-analyze report",
    "",
    "Report schema version 2.",
    "",
    "## Summary",
    "",
    "- Input: 1 file(s), 10 line(s), 0 problem(s) skipped",
    "- Records: 1,200 span(s), 3 metric record(s) (9 data point(s)), 0 log record(s)",
    "",
    "## Recommendations",
    "",
    "| # | Severity | Title | Subject | Key numbers | Confidence | Example traces |",
    "| ---: | --- | --- | --- | --- | --- | --- |",
    r"| 1 | high | Slow query: SELECT \* FROM t | `SELECT a \| b FROM t` | calls=3, p95\_ms=612.5 | 0.9 "
    "| `t1`, `t2`, `t3` |",
    "",
    "1. **Slow query: SELECT \\* FROM t**",
    "   - Action: Add an index.",
    "   - Rule: `database/slow_query` (`da-slow-query-1`)",
    "   - Threshold: p95\\_ms \\>= 500",
    "   - Formula: p95",
    "",
    "## Scaling",
    "",
    "Scaling decisions replayed for service `shop`, windows of 60 s.",
    "",
    "| Time | Current | Target | Action | Limited by | CPU | Memory | Req/s | p95 | CPU-only target "
    "| Reason |",
    "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    "| 2026-11-26T15:52:00.000Z | 2 | 3 | scale\\_up | - | 90.0% | n/a | 12.2 | 250 ms | 3 "
    "| cpu 0.9 \\> 0.6 |",
    "",
    *_no_data("Caches", "Thread pools"),
    "## Top queries by total time",
    "",
    "| # | Statement | Calls | Total | Mean | p95 |",
    "| ---: | --- | ---: | ---: | ---: | ---: |",
    "| 1 | ``SELECT `x` FROM t`` | 3 | 1,838 ms | 612 ms | 700 ms |",
]


def test_a_small_report_renders_exactly() -> None:
    assert _lines(SMALL) == SMALL_EXPECTED


def test_an_empty_report_says_no_data_for_every_section() -> None:
    assert _lines({}) == [
        "# amqadf-analyze report",
        "",
        *_no_data("Summary", "Recommendations", "Scaling", "Caches", "Thread pools"),
        "## Top queries by total time",
        "",
        "No data.",
    ]


def test_empty_sections_and_wrong_shapes_say_so_instead_of_failing() -> None:
    lines = _lines(
        {
            "summary": {},
            "recommendations": [],
            "scaling": {"timeline": [], "recommendation": None},
            "cache": None,
            "threads": "garbage",
            "top_queries": [1, "x", None],
        }
    )
    assert "No recommendations: no rule found a problem." in lines
    assert lines.count("No data.") == 5


def _tables(lines: list[str]) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _cells(row: str) -> int:
    """Cells in a GFM table row: pipes that are not backslash-escaped, minus one."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_the_fixture_renders_well_formed_tables(report: dict[str, Any]) -> None:
    lines = _lines(report)
    tables = _tables(lines)
    # recommendations, scaling timeline, caches, threads, top queries
    assert len(tables) == 5
    for rows in tables:
        assert all(row.endswith("|") and not row.endswith("\\|") for row in rows), rows
        assert {_cells(row) for row in rows} == {_cells(rows[0])}, rows
        assert re.fullmatch(r"\|( ---:? \|)+", rows[1]), rows[1]
    recs, timeline, caches, threads, queries = tables
    assert len(recs) == 2 + len(report["recommendations"])
    assert len(timeline) == 2 + len(report["scaling"]["timeline"])
    assert len(caches) == 2 + 2
    assert len(threads) == 2 + 1
    assert len(queries) == 2 + 5


def test_recommendations_keep_their_order_with_severity_subject_numbers_and_traces(
    report: dict[str, Any],
) -> None:
    lines = _lines(report)
    rows = _tables(lines)[0][2:]
    assert [row.split(" | ")[1] for row in rows] == ["high", "medium", "low", "info"]
    first = rows[0]
    assert "`SELECT sku, qty, price FROM order_items WHERE order_id = ?`" in first
    assert "calls=762" in first and "total\\_ms=6,747.536" in first
    assert "`6f64852025874b4190b0ceaee18e2c6f`" in first
    assert rows[2].endswith("| n/a |")  # no example traces
    assert "**Recommendation: scale\\_up** from 3 to 4 instance(s)" in "\n".join(lines)


def test_user_text_cannot_inject_markup(report: dict[str, Any]) -> None:
    out = "\n".join(_lines(report))
    # The statement with a script tag stays inside a code span; everywhere else < and > are escaped.
    assert "`INSERT INTO comments (body) VALUES ('<script>alert(1)</script>')`" in out
    outside_code = re.sub(r"(`+).*?\1", "", out)
    assert "<" not in outside_code.replace("\\<", "")
    assert "TTL \\<if sessions may be stale\\>" in out
    assert "41% \\& evicts" in out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a|b", "`a\\|b`"),
        ("x `y` z", "``x `y` z``"),
        ("`edge`", "`` `edge` ``"),
        ("multi\nline", "`multi line`"),
        ("", "n/a"),
    ],
)
def test_code_spans(value: str, expected: str) -> None:
    assert code(value) == expected


def test_text_escapes_markdown_and_html() -> None:
    assert text("*a* _b_ [c](d) <e> | & #") == r"\*a\* \_b\_ \[c\](d) \<e\> \| \& \#"


def test_numbers_tolerate_missing_and_odd_values() -> None:
    assert render_markdown.num(None) == "n/a"
    assert render_markdown.num(True) == "n/a"
    assert render_markdown.num(float("nan")) == "n/a"
    assert render_markdown.num(1234567) == "1,234,567"
    assert render_markdown.num(2.50) == "2.5"
    assert render_markdown.percent(0.4567) == "45.7%"
    assert render_markdown.ms(0.0123, seconds=True) == "12.3 ms"
    assert render_markdown.when({"time_ns": 0}) == "1970-01-01T00:00:00.000Z"


def test_numbers_with_no_decimals_keep_their_trailing_zeros() -> None:
    # One formatter serves both renderers; "100.0" with no decimals is "100", not "1".
    from amqadf_agent.analyzer.report_values import num

    assert num(100.0, 0) == "100" and num(2500.4, 0) == "2,500" and num(1.5) == "1.5"
    assert num(float("nan")) == "n/a" and num(True) == "n/a" and num(7) == "7"


def test_top_queries_name_their_services_when_the_report_covers_several() -> None:
    # GIVEN top queries from two services
    fleet = {
        "top_queries": [
            {"statement": "SELECT a FROM t", "calls": 3, "total_ms": 30.0, "mean_ms": 10.0, "p95_ms": 12.0,
             "services": ["cart", "shop"]},
            {"statement": "SELECT b FROM u", "calls": 1, "total_ms": 5.0, "mean_ms": 5.0, "p95_ms": 5.0,
             "services": ["shop"]},
        ]
    }  # fmt: skip
    # THEN a Services column names them
    assert _tables(_lines(fleet))[0] == [
        "| # | Statement | Services | Calls | Total | Mean | p95 |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
        "| 1 | `SELECT a FROM t` | `cart`, `shop` | 3 | 30.0 ms | 10.0 ms | 12.0 ms |",
        "| 2 | `SELECT b FROM u` | `shop` | 1 | 5.0 ms | 5.0 ms | 5.0 ms |",
    ]
    # Control: one service (or a report from before the field) needs no column.
    single = {"top_queries": [{**fleet["top_queries"][1]}]}
    assert _tables(_lines(single))[0][0] == "| # | Statement | Calls | Total | Mean | p95 |"


def test_thread_pools_show_peak_busy_workers_and_saturation() -> None:
    pool = {"pool": "w", "max_workers": 4, "utilization": 0.17, "queue_wait_p95": 0.003, "throughput": 25.0,
            "latency_mean": 0.027, "littles_law_concurrency": 0.68, "recommended": 4}  # fmt: skip
    saturated = {**pool, "busy_peak": 0.8, "queue_wait_p95_peak": 0.087, "saturated_at_peaks": True}
    (table,) = _tables(_lines({"threads": [saturated, pool]}))
    assert table[0].endswith("| Little's law L | Peak busy (p95) | Recommended |")
    assert table[2].endswith(
        "| 3.0 ms (87.0 ms at peaks) | 25 | 27.0 ms | 0.68 | 0.8 | 4 (saturated at peaks) |"
    )
    assert table[3].endswith("| 3.0 ms | 25 | 27.0 ms | 0.68 | n/a | 4 |")  # a report from before the fields
