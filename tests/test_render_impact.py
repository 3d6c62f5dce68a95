"""What the fixes are worth (``impact``) and the planner's verdicts in the text, Markdown and HTML reports."""

from __future__ import annotations

import io
import re
import sqlite3
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.analyzer import render_html, render_markdown
from amqadf_agent.analyzer.explain import NO_DSN_REASON, apply_verdicts
from amqadf_agent.analyzer.render_impact import HEADER
from amqadf_agent.analyzer.report_values import num
from amqadf_agent.analyzer.rules.database import DatabaseRules

ESTIMATE: dict[str, Any] = {
    "fingerprint": "da-n-plus-one-0123456789abcdef",
    "rule": "n_plus_one",
    "title": "N+1 queries: SELECT * FROM items WHERE order_id = ?",
    "saved_ms": 1234.5,
    "saved_ms_per_affected_request": 12.3,
    "requests_affected": 100,
    "routes": [
        {
            "route": "/orders",
            "requests": 100,
            "saved_median_ms": 12.0,
            "p95_before_ms": 80.0,
            "p95_after_ms": 65.5,
        },
        {"route": "/a|b", "requests": 4, "saved_median_ms": 1.0, "p95_before_ms": 20.0, "p95_after_ms": 19.0},
    ],
    "instances": {"peak_before": 4, "peak_after": 3, "saved": 1},
    "formula": "saved per request = loop_ms - loop_ms / n",
    "assumptions": ["the db calls of a request run one after the other on its critical path"],
    "evidence": {},
}


def _report(*estimates: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 3, "recommendations": [], "impact": {"estimates": list(estimates)}}


def _markdown(report: dict[str, Any]) -> str:
    out = io.StringIO()
    render_markdown.render(report, out)
    return out.getvalue()


def _html(report: dict[str, Any]) -> str:
    out = io.StringIO()
    render_html.render(report, out)
    return out.getvalue()


def _section(lines: list[str], heading: str) -> list[str]:
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_markdown_shows_each_priced_fix_as_a_table_row() -> None:
    section = _section(_markdown(_report(ESTIMATE)).splitlines(), "## What the fixes are worth")
    rows = [line for line in section if line.startswith("| ")]
    assert rows[0] == "| " + " | ".join(HEADER) + " |"
    [row] = rows[2:]
    cells = [cell.strip() for cell in row.strip("|").split(" | ")]
    assert cells[0] == "N+1 queries: SELECT \\* FROM items WHERE order\\_id = ?"
    assert cells[1] == "1,234 ms"
    assert cells[2] == "12.3 ms in each of 100"
    # each route with its p95 before and after; a "|" in a route cannot split the cell
    assert cells[3] == "/orders: 80.0 ms → 65.5 ms (100 requests); /a\\|b: 20.0 ms → 19.0 ms (4 requests)"
    assert cells[4] == "4 → 3"
    # how it was computed, so a reader can disagree
    assert any("loop\\_ms - loop\\_ms / n" in line and "da-n-plus-one" in line for line in section)
    assert any(line.strip().startswith("Assumes: the db calls of a request") for line in section)


def test_markdown_without_a_timeline_or_routes_says_n_a() -> None:
    bare = {**ESTIMATE, "routes": [], "instances": None}
    section = _section(_markdown(_report(bare)).splitlines(), "## What the fixes are worth")
    [row] = [line for line in section if line.startswith("| ")][2:]
    assert row.endswith("| n/a | n/a |")


def test_the_text_report_says_how_each_fix_was_priced_and_what_it_assumes() -> None:
    from amqadf_agent.analyzer.impact import render_text

    out = io.StringIO()
    render_text({"estimates": [ESTIMATE]}, out)
    text = out.getvalue()
    assert "how: saved per request = loop_ms - loop_ms / n" in text
    assert "assumes: the db calls of a request run one after the other on its critical path" in text


def test_no_section_when_nothing_was_priced() -> None:
    for report in (_report(), {"recommendations": []}, {"impact": "odd"}, {"impact": {"estimates": [1]}}):
        assert "What the fixes are worth" not in _markdown(report)
        assert 'id="impact"' not in _html(report)


class _Cells(HTMLParser):
    """The text of each cell of the impact table."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section" and ("id", "impact") in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_html_shows_the_same_table_escaped() -> None:
    hostile = {
        **ESTIMATE,
        "title": "<script>alert(1)</script>",
        "routes": [{**ESTIMATE["routes"][0], "route": "<b>"}],
    }
    page = _html(_report(hostile))
    assert "<script>alert(1)</script>" not in page and "<b>" not in page
    parser = _Cells()
    parser.feed(page)
    header, row = parser.rows
    assert header == list(HEADER)
    assert row == [
        "<script>alert(1)</script>",
        "1,234 ms",
        "12.3 ms in each of 100",
        "<b>: 80.0 ms → 65.5 ms (100 requests)",
        "4 → 3",
    ]
    assert "saved per request = loop_ms - loop_ms / n" in page


# -- the planner's verdict in each finding block -------------------------------------------------------


@pytest.fixture
def verdict_report(tmp_path: Path) -> dict[str, Any]:
    """A report with a real SQLite verdict (verified), one without a DSN (unverified) and an N+1."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL)")
        conn.executemany(
            "INSERT INTO orders (customer_id, total) VALUES (?, ?)",
            ((i % 2000, float(i)) for i in range(20_000)),
        )
    conn.close()
    rules = DatabaseRules()
    for _ in range(12):
        rules.add_call("SELECT id, total FROM orders WHERE customer_id = 42", 0.8, db_system="sqlite")
    found = rules.recommendations()
    checked, _ = apply_verdicts(found, str(path))
    unchecked, _ = apply_verdicts(found, None)
    [verified] = [r for r in checked if r.rule == "index_candidate"]
    [unverified] = [r for r in unchecked if r.rule == "index_candidate"]
    others = [r for r in checked if r.rule != "index_candidate"]
    return {"recommendations": [r.to_dict() for r in (verified, unverified, *others)]}


def _blocks(markdown: str) -> list[list[str]]:
    """The lines of each numbered finding block of the Markdown report."""
    blocks: list[list[str]] = []
    for line in markdown.splitlines():
        if re.match(r"\d+\. \*\*", line):
            blocks.append([line])
        elif blocks and line.startswith("   "):
            blocks[-1].append(line)
        elif blocks and line.startswith("## "):
            break
    return blocks


def test_markdown_finding_blocks_show_the_verdict(verdict_report: dict[str, Any]) -> None:
    numbers = verdict_report["recommendations"][0]["evidence"]["numbers"]
    cost = f"20,000 → {num(numbers['cost_after'], 3)} (rows visited), -{num(numbers['cost_drop_pct'], 1)}%"
    verified, unverified, *others = _blocks(_markdown(verdict_report))
    assert verified[0].startswith("1. **Index on orders (customer\\_id): verified by the planner")
    planner = verified[verified.index(next(x for x in verified if x.startswith("   - Planner:"))) :]
    assert planner[0].startswith("   - Planner: verified: ")
    assert planner[1] == f"     - Cost: {cost}"
    assert planner[2] == (
        "     - Plan: `SCAN orders → SEARCH orders USING INDEX the new index (customer_id=?)`"
    )
    assert planner[3] == (
        "     - Statement: `CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);`"
    )
    assert [x for x in unverified if "Planner" in x] == [f"   - Planner: unverified: {NO_DSN_REASON}"]
    assert not any("Cost:" in x or "Statement:" in x for x in unverified)
    # findings that are not index candidates get no verdict
    assert others and not any("Planner" in x for block in others for x in block)


def test_html_finding_cards_show_the_verdict_escaped(verdict_report: dict[str, Any]) -> None:
    numbers = verdict_report["recommendations"][0]["evidence"]["numbers"]
    cost = f"20,000 → {num(numbers['cost_after'], 3)} (rows visited), -{num(numbers['cost_drop_pct'], 1)}%"
    page = _html(verdict_report)
    cards = page.split('<article class="panel card"')[1:]
    verified, unverified, *others = cards
    assert '<p class="verdict"><strong>Planner:</strong> verified: ' in verified
    assert f"<dt>Cost</dt><dd>{cost}</dd>" in verified
    assert (
        "<dt>Statement</dt><dd><code>CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders "
        "(customer_id);</code></dd>"
    ) in verified
    assert f"<strong>Planner:</strong> unverified: {escape(NO_DSN_REASON)}</p>" in unverified
    assert "<dt>Cost</dt>" not in unverified
    assert others and not any("Planner" in card for card in others)
    hostile = {"evidence": {"numbers": {"verdict": "<b>", "verdict_reason": "<script>x</script>"}}}
    page = _html({"recommendations": [hostile]})
    assert "<script>x</script>" not in page and "<b>" not in page
    assert "<b>" not in _markdown({"recommendations": [hostile]}).replace("`", "")
