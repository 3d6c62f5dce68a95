"""``render_html.render``: one self-contained page with inline SVG charts, checked by parsing it and by
rendering it in a real headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.analyzer.render_html import CHART_TITLES, render

FIXTURE = Path(__file__).parent / "fixtures" / "report_v2.json"
CHROMIUM = "/usr/bin/chromium"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def _html(report: dict[str, Any]) -> str:
    out = io.StringIO()
    render(report, out)
    return out.getvalue()


class _Chart:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.title = ""
        self.circles = 0
        self.bars = 0
        self.markers = 0
        self.series_points: dict[str, int] = {}


class _Checker(HTMLParser):
    """Checks that every non-void element is closed in order, and counts what each chart draws."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.charts: list[_Chart] = []
        self.chart: _Chart | None = None
        self.series: str | None = None
        self.in_chart_title = False
        self.script_text: list[str] = []
        self.in_script = False
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, dict(attrs), closed=tag in VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, dict(attrs), closed=True)

    def _element(self, tag: str, attrs: dict[str, str | None], *, closed: bool) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        chart = self.chart
        if tag == "svg":
            if chart is not None:
                self.errors.append("nested <svg>")
            chart = self.chart = _Chart(attrs.get("data-chart") or "?")
            self.charts.append(chart)
        elif chart is not None:
            if tag == "circle":
                chart.circles += 1
            elif tag == "rect" and attrs.get("class") == "bar":
                chart.bars += 1
            elif tag == "g" and attrs.get("class") == "marker":
                chart.markers += 1
            elif tag == "g" and attrs.get("class") == "series":
                self.series = attrs.get("data-series")
            elif tag == "polyline":
                name = attrs.get("data-series") or self.series or "?"
                points = len((attrs.get("points") or "").split())
                chart.series_points[name] = chart.series_points.get(name, 0) + points
            elif tag == "title" and not chart.title and self.stack[-1] == "svg":
                self.in_chart_title = True
        if tag == "script":
            self.in_script = True
        if not closed:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "svg":
            self.chart = None
        elif tag == "g":
            self.series = None
        elif tag == "title":
            self.in_chart_title = False
        elif tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_chart_title and self.chart is not None:
            self.chart.title += data
        if self.in_script:
            self.script_text.append(data)


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == [], f"unclosed: {checker.stack}"
    return checker


def _known(values: list[Any]) -> int:
    return sum(value is not None for value in values)


def test_the_page_is_well_formed_with_one_svg_per_chart(report: dict[str, Any]) -> None:
    page = _html(report)
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    checker = _check(page)
    for tag in ("html", "head", "body", "main", "header", "style", "script"):
        assert checker.tags.get(tag) == 1, tag
    assert checker.tags["svg"] == len(CHART_TITLES) == 6
    assert [chart.title for chart in checker.charts] == list(CHART_TITLES)
    assert [chart.kind for chart in checker.charts] == [
        "resources", "latency", "queries", "caches", "pool-utilization", "pool-queue-wait",
    ]  # fmt: skip
    assert checker.tags["details"] >= len(report["recommendations"])


def test_each_chart_draws_one_mark_per_known_value(report: dict[str, Any]) -> None:
    charts = {chart.kind: chart for chart in _check(_html(report)).charts}
    timeline = report["scaling"]["timeline"]
    metrics = [entry["metrics"] for entry in timeline]

    def column(key: str) -> list[Any]:
        return [m[key] for m in metrics]

    resources = charts["resources"]
    assert resources.circles == _known(column("cpu_utilization")) + _known(column("memory_utilization")) == 13
    decisions = [entry for entry in timeline if entry["action"] != "no_action"]
    assert resources.markers == len(decisions) == 3
    # A step line: each target holds until the next window (2n - 1 points).
    assert resources.series_points["target instances"] == 2 * len(timeline) - 1
    # The CPU line breaks where a value is missing (the last window has none).
    assert resources.series_points["CPU utilization"] == _known(column("cpu_utilization"))
    assert resources.bars == 0

    latency = charts["latency"]
    percentiles = ("response_time_p50", "response_time_p95", "response_time_p99")
    assert latency.circles == sum(_known(column(key)) for key in percentiles) == 20
    assert set(latency.series_points) == {"p50", "p95", "p99"}

    assert charts["queries"].bars == len(report["top_queries"]) == 5
    assert charts["caches"].bars == len(report["cache"]) == 2
    assert charts["pool-utilization"].bars == len(report["threads"]) == 1
    assert charts["pool-queue-wait"].bars == 1


def test_top_queries_are_drawn_longest_first_and_bars_are_proportional(report: dict[str, Any]) -> None:
    page = _html(report)
    start = page.index('data-chart="queries"')
    section = page[start : page.index("</svg>", start)]
    bar_widths = [float(width) for width in re.findall(r'<rect class="bar" [^>]*width="([0-9.]+)"', section)]
    assert len(bar_widths) == 5
    assert bar_widths == sorted(bar_widths, reverse=True)
    totals = sorted((q["total_ms"] for q in report["top_queries"]), reverse=True)
    assert bar_widths[1] / bar_widths[0] == pytest.approx(totals[1] / totals[0], rel=0.01)


def test_user_data_is_escaped_everywhere(report: dict[str, Any]) -> None:
    page = _html(report)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    checker = _check(page)
    assert checker.tags["script"] == 1  # only ours
    assert "alert" not in "".join(checker.script_text)
    assert "&lt;if sessions may be stale&gt;" in page
    assert "&amp; evicts often" in page
    hostile = {
        "summary": {"services": [{"name": '"><img src=x onerror=alert(2)>', "instance_ids": []}]},
        "cache": [{"name": "</svg><script>alert(3)</script>", "hit_rate": 0.5}],
        "scaling": {
            "service": "<b>",
            "timeline": [
                {"time_ns": 1, "current": 1, "target": 2, "action": "scale_up", "reason": "</title><x>"},
            ],
        },
    }
    page = _html(hostile)
    _check(page)
    assert "<img" not in page and "alert(3)</script>" not in page and "<b>" not in page
    assert "</title><x>" not in page


def test_no_external_urls() -> None:
    page = _html(json.loads(FIXTURE.read_text(encoding="utf-8")))
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page  # and the browser is told to load nothing


def test_missing_and_empty_sections_say_no_data() -> None:
    for report in ({}, {"recommendations": [], "scaling": {"timeline": []}, "cache": [], "threads": []}):
        page = _html(report)
        checker = _check(page)
        assert checker.tags.get("svg", 0) == 0
        assert page.count("No data.") == (6 if not report else 5)
    page = _html({"recommendations": []})
    assert "No recommendations: no rule found a problem." in page


def test_a_single_window_without_latency_still_draws() -> None:
    entry = {
        "time_ns": 10**18,
        "current": 1,
        "target": 1,
        "action": "no_action",
        "metrics": {"cpu_utilization": 0.5},
    }
    page = _html({"scaling": {"timeline": [entry]}})
    charts = _check(page).charts
    assert [chart.kind for chart in charts] == ["resources"]
    assert charts[0].circles == 1
    assert "No latency data." in page


def _chromium_missing() -> str:
    return (
        f"{CHROMIUM} not found: the HTML report test needs a real headless Chromium; "
        "install it with `apt-get install -y chromium` (Debian)"
    )


def test_chromium_renders_the_page_without_console_errors(report: dict[str, Any], tmp_path: Path) -> None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail(_chromium_missing())
    page = tmp_path / "report.html"
    with page.open("w", encoding="utf-8") as out:
        render(report, out)
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium")),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.as_uri(),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("headless chromium did not finish rendering the report within 20 s")
    assert result.returncode == 0, result.stderr[-2000:]
    # Every console message (an uncaught error, a blocked load, a CSP violation) is logged as CONSOLE.
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    dom = result.stdout
    for title in CHART_TITLES:
        assert title in dom
    assert dom.count("<svg") == len(CHART_TITLES)
    # The inline script ran to the end: it added the expand/collapse buttons.
    assert "Expand all evidence</button>" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_services_of_top_queries_and_saturated_pools_are_shown_and_escaped() -> None:
    # GIVEN top queries from two services (one hostile name) and a pool saturated at peaks
    query = {"statement": "SELECT a FROM t", "calls": 3, "total_ms": 30.0, "mean_ms": 10.0, "p95_ms": 12.0}
    pool = {"pool": "w", "max_workers": 4, "recommended": 4, "busy_peak": 0.8, "saturated_at_peaks": True,
            "queue_wait_p95": 0.003, "queue_wait_p95_peak": 0.087}  # fmt: skip
    page = _html({"top_queries": [{**query, "services": ["<b>cart</b>", "shop"]}], "threads": [pool]})
    _check(page)
    # THEN a Services column names them, escaped, and the pool row says it is saturated at peaks
    assert (
        "<th>Services</th>" in page
        and "<td><code>&lt;b&gt;cart&lt;/b&gt;</code>, <code>shop</code></td>" in page
    )
    assert '<th class="num">Peak busy (p95)</th>' in page and "4 (saturated at peaks)</td>" in page
    assert '<td class="num">3.0 ms (87.0 ms at peaks)</td>' in page
    # Control: one service needs no column.
    assert "<th>Services</th>" not in _html({"top_queries": [{**query, "services": ["shop"]}]})
