"""``amqadf-analyze --format html``: the JSON report (schema version 2) as one self-contained HTML page.

``render(report, file)`` takes the dict that ``--format json`` writes. The charts are inline SVG drawn
here in Python, so the page needs no network and no script: resource use over time (CPU and memory
utilization, the target instance count as a step line, every scaling decision marked), latency
percentiles, top queries by total time, cache hit rates, pool utilization and queue wait. Each chart
has a ``<title>``/``<desc>`` and a data table as its text alternative; recommendation cards keep
their evidence in ``<details>``. A Content-Security-Policy forbids every external load, and the one
small inline script only adds "expand/collapse all evidence" buttons.

Everything that comes from the report is escaped with :func:`html.escape`: statements, reasons and
titles are user data. Every section may be missing or empty; it then says "No data."

Only the standard library is imported (the analyzer's walls, docs/design.md).

Why one module of about 800 lines: each section draws its own chart from the page state (``_Page``,
the time axis) that every section shares, and one file keeps the page's markup in one place.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any, TextIO

from amqadf_agent.analyzer.render_impact import verdict_html
from amqadf_agent.analyzer.report_values import MISSING, data_quality_line, shown_in_html
from amqadf_agent.analyzer.report_values import items as _items
from amqadf_agent.analyzer.report_values import mapping as _mapping
from amqadf_agent.analyzer.report_values import ms as _ms
from amqadf_agent.analyzer.report_values import num as _num
from amqadf_agent.analyzer.report_values import number as _number
from amqadf_agent.analyzer.report_values import percent as _pct

__all__ = ["CHART_TITLES", "render"]

#: The title of every chart, in page order (also the ``<title>`` of each ``<svg>``).
CHART_TITLES: tuple[str, ...] = (
    "Resource use and scaling decisions",
    "Latency percentiles",
    "Top queries by total time",
    "Cache hit rates",
    "Pool utilization",
    "Pool queue wait (p95)",
)
NO_DATA = "No data."

WIDTH = 760
LEFT, RIGHT, TOP, BOTTOM = 60, 60, 24, 44
BAR_HEIGHT = 22
BAR_GAP = 10
LABEL_WIDTH = 300
#: Longer bar labels are cut (the whole label is in the bar's tooltip and the data table).
LABEL_CHARS = 38

COLORS = {
    "cpu": "#2563eb",
    "memory": "#16a34a",
    "target": "#9333ea",
    "scale_up": "#dc2626",
    "scale_down": "#0891b2",
    "p50": "#16a34a",
    "p95": "#d97706",
    "p99": "#dc2626",
    "bar": "#2563eb",
}
SEVERITY_COLORS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#d97706",
    "low": "#2563eb",
    "info": "#6b7280",
}

_CSS = """
:root { color-scheme: light; --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.25rem; margin: 32px 0 12px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1.05rem; margin: 0 0 6px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin-bottom: 16px; }
.muted, .no-data { color: var(--muted); }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; max-width: 100%; display: block; }
svg.chart text { font: 12px system-ui, sans-serif; fill: #374151; }
svg.chart .axis { stroke: #9ca3af; stroke-width: 1; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; margin: 4px 0; padding: 0;
  list-style: none; }
.swatch { display: inline-block; width: 14px; height: 4px; vertical-align: middle; margin-right: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6;
  padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
details > summary { cursor: pointer; color: #1d4ed8; }
.card { border-left: 6px solid var(--sev, #6b7280); }
.badge { display: inline-block; color: #fff; background: var(--sev, #6b7280); border-radius: 999px;
  padding: 0 10px; font-size: 12px; font-weight: 600; text-transform: uppercase; margin-right: 8px; }
.advice { font-size: 1.05rem; }
.tools { margin: 0 0 8px; }
.tools button { font: inherit; font-size: 13px; margin-right: 8px; }
"""

# Progressive enhancement only: the page is complete without it.
_SCRIPT = """
(function () {
  "use strict";
  var cards = document.querySelectorAll("details.evidence");
  var tools = document.getElementById("evidence-tools");
  if (!tools || cards.length === 0) { return; }
  [["Expand all evidence", true], ["Collapse all evidence", false]].forEach(function (spec) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = spec[0];
    button.addEventListener("click", function () {
      cards.forEach(function (card) { card.open = spec[1]; });
    });
    tools.appendChild(button);
  });
})();
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render(report: Mapping[str, Any], file: TextIO) -> None:
    """Write ``report`` (the JSON report's dict) to ``file`` as one self-contained HTML page."""
    page = _Page()
    summary = _mapping(report.get("summary"))
    service = _mapping(report.get("scaling")).get("service")
    subtitle = [f"schema version {report.get('schema_version', MISSING)}"]
    if service:
        subtitle.insert(0, f"service {service}")
    span = _mapping(summary.get("time_range"))
    if span.get("start") and span.get("end"):
        subtitle.append(f"{span['start']} .. {span['end']}")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>amqadf-analyze report</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>amqadf-analyze report</h1>",
        f'<p class="muted">{_e(" · ".join(str(part) for part in subtitle))}</p>',
        "</header>",
        "<main>",
    ]
    out += _summary(summary)
    out += _recommendations(report.get("recommendations"))
    from amqadf_agent.analyzer.render_impact import html_lines as impact_lines

    out += impact_lines(report.get("impact"))
    out += _scaling(page, report.get("scaling"))
    out += _queries(page, report.get("top_queries"))
    from amqadf_agent.analyzer.render_endpoints import html_lines

    out += html_lines(report.get("top_routes"))
    out += _caches(page, report.get("cache"))
    out += _threads(page, report.get("threads"))
    if quality := data_quality_line(report.get("data_quality")):
        out.append(f'<p class="data-quality">{_e(quality)}</p>')
    out += _skipped(summary)
    out += ["</main>", f"<script>{_SCRIPT}</script>", "</body>", "</html>"]
    file.write("\n".join(out) + "\n")


# -- helpers ----------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape(shown_in_html(value), quote=True)


def _f(value: float) -> str:
    """An SVG coordinate."""
    return f"{value:.1f}"


def _clock(time_ns: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return str(time_ns)
    return moment.strftime("%H:%M:%S")


def _iso(entry: Mapping[str, Any], time_ns: int) -> str:
    moment = entry.get("time")
    return moment if isinstance(moment, str) and moment else _clock(time_ns)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: str = "") -> list[str]:
    """An HTML table; cells are already escaped; ``numeric`` has ``r`` for right-aligned columns."""

    def cls(i: int) -> str:
        return ' class="num"' if numeric[i : i + 1] == "r" else ""

    out = ["<table>", "<thead><tr>" + "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return out


def _data_table(rows: list[str]) -> list[str]:
    return ["<details>", "<summary>Data table</summary>", *rows, "</details>"]


def _no_data(what: str = NO_DATA) -> str:
    return f'<p class="no-data">{_e(what)}</p>'


def _legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """A legend: (label, colour, extra CSS for the swatch)."""
    items = "".join(
        f'<li><span class="swatch" style="background:{color};{extra}"></span>{_e(label)}</li>'
        for label, color, extra in entries
    )
    return f'<ul class="legend">{items}</ul>'


class _Page:
    """Hands out ids that are unique in the page."""

    def __init__(self) -> None:
        self.count = 0

    def ids(self) -> tuple[str, str, str]:
        self.count += 1
        return f"chart-{self.count}", f"chart-{self.count}-title", f"chart-{self.count}-desc"


def _svg_open(page: _Page, kind: str, title: str, desc: str, height: float) -> list[str]:
    chart_id, title_id, desc_id = page.ids()
    return [
        f'<svg class="chart" id="{chart_id}" data-chart="{_e(kind)}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" viewBox="0 0 {WIDTH} {_f(height)}" '
        f'width="{WIDTH}" height="{_f(height)}">',
        f'<title id="{title_id}">{_e(title)}</title>',
        f'<desc id="{desc_id}">{_e(desc)}</desc>',
    ]


# -- sections ---------------------------------------------------------------------------------------


def _summary(summary: Mapping[str, Any]) -> list[str]:
    out = ['<section class="panel" id="summary">', "<h2>Summary</h2>"]
    facts: list[tuple[str, str]] = []
    read = _mapping(summary.get("input"))
    problems = _mapping(summary.get("problems"))
    if read or problems:
        facts.append(
            (
                "Input",
                f"{_num(read.get('files'))} file(s), {_num(read.get('lines'))} line(s), "
                f"{_num(problems.get('count', 0))} problem(s) skipped",
            )
        )
    span = _mapping(summary.get("time_range"))
    if span:
        duration = _number(span.get("duration_s"))
        length = f" ({_num(duration, 1)} s)" if duration is not None else ""
        facts.append(("Time range", f"{span.get('start', MISSING)} .. {span.get('end', MISSING)}{length}"))
    counts = _mapping(summary.get("counts"))
    if counts:
        facts.append(
            (
                "Records",
                f"{_num(counts.get('spans'))} span(s), {_num(counts.get('metric_records'))} metric "
                f"record(s) ({_num(counts.get('data_points'))} data point(s)), "
                f"{_num(counts.get('logs'))} log record(s)",
            )
        )
    for service in _items(summary.get("services")):
        instances = len(service.get("instance_ids") or [])
        facts.append(("Service", f"{service.get('name', MISSING)} ({instances} instance(s))"))
    if not facts:
        return [*out, _no_data(), "</section>"]
    out.append('<dl class="facts">')
    out += [f"<dt>{_e(term)}</dt><dd>{_e(value)}</dd>" for term, value in facts]
    return [*out, "</dl>", "</section>"]


def _skipped(summary: Mapping[str, Any]) -> list[str]:
    """The report's last section: how many input problems were skipped, and where (``file:line: reason``)."""
    problems = _mapping(summary.get("problems"))
    count = _number(problems.get("count")) or 0
    if count <= 0:
        return []
    first = [str(p) for p in problems.get("first") or []]
    shown = f"; the first {len(first)}" if len(first) < count else ""
    items = "".join(f"<li><code>{_e(problem)}</code></li>" for problem in first)
    return [
        '<section class="panel" id="skipped">',
        "<h2>Skipped input</h2>",
        f"<p>{_e(_num(count))} problem(s) in the input were skipped{_e(shown)}:</p>",
        f"<ul>{items}</ul>",
        "</section>",
    ]


def _recommendations(value: object) -> list[str]:
    out = ['<section id="recommendations">', "<h2>Recommendations</h2>"]
    if not isinstance(value, list):
        return [*out, _no_data(), "</section>"]
    items = _items(value)
    if not items:
        return [*out, _no_data("No recommendations: no rule found a problem."), "</section>"]
    out.append('<div class="tools" id="evidence-tools"></div>')
    for number, item in enumerate(items, 1):
        severity = str(item.get("severity", "info"))
        color = SEVERITY_COLORS.get(severity, "#6b7280")
        evidence = _mapping(item.get("evidence"))
        out.append(f'<article class="panel card" style="--sev:{color}" data-severity="{_e(severity)}">')
        out.append(
            f'<h3><span class="badge">{_e(severity)}</span>{number}. {_e(item.get("title", MISSING))}</h3>'
        )
        if item.get("subject"):
            out.append(f"<p>Subject: <code>{_e(item['subject'])}</code></p>")
        out.append(f"<p><strong>Action:</strong> {_e(item.get('action', MISSING))}</p>")
        out.append(
            f'<p class="muted">Rule {_e(item.get("category", MISSING))}/{_e(item.get("rule", MISSING))} · '
            f"confidence {_num(item.get('confidence'))} · time at stake {_num(item.get('impact_s'), 3)} s · "
            f"<code>{_e(item.get('fingerprint', ''))}</code></p>"
        )
        out += verdict_html(item)
        out.append('<details class="evidence">')
        out.append("<summary>Evidence</summary>")
        numbers = _mapping(evidence.get("numbers"))
        if numbers:
            rows = [
                [_e(key), _e(_num(val, 3) if _number(val) is not None else val)]
                for key, val in numbers.items()
            ]
            out += _table(["Number", "Value"], rows, "lr")
        facts = [
            ("Formula", evidence.get("formula")),
            ("Threshold", evidence.get("threshold")),
        ]
        window = _mapping(evidence.get("window"))
        if window:
            facts.append(("Window", f"{window.get('start', MISSING)} .. {window.get('end', MISSING)}"))
        out.append('<dl class="facts">')
        out += [f"<dt>{term}</dt><dd>{_e(val)}</dd>" for term, val in facts if val]
        for term, key in (("Trace ids", "trace_ids"), ("Span ids", "span_ids")):
            ids = [str(one) for one in evidence.get(key) or []]
            if ids:
                out.append(
                    f"<dt>{term}</dt><dd>" + ", ".join(f"<code>{_e(one)}</code>" for one in ids) + "</dd>"
                )
        out.append("</dl>")
        out.append("</details>")
        out += _locations(item)
        out.append("</article>")
    return [*out, "</section>"]


def _locations(item: Mapping[str, Any]) -> list[str]:
    """The code locations of a recommendation, and the stack of an N+1 the agent caught."""
    out = []
    rows = [
        [
            f"<code>{_e(location.get('file', MISSING))}:{_e(location.get('line', MISSING))}</code>",
            f"<code>{_e(location.get('function', ''))}</code>",
            _e(_num(location.get("count"))),
            _e(_num(_number(location.get("share")), 3)),
        ]
        for location in _items(item.get("locations") or [])
    ]
    if rows:
        out += _table(["Code", "Function", "Calls", "Share"], rows, "llrr")
    stack = item.get("stacktrace")
    if isinstance(stack, str) and stack:
        out.append('<details class="stack"><summary>Stack of the N+1 as the agent caught it</summary>')
        out.append(f"<pre>{_e(stack)}</pre></details>")
    return out


# -- scaling: two line charts over time ---------------------------------------------------------------


class _TimeAxis:
    def __init__(self, times: Sequence[int]) -> None:
        self.start = min(times)
        self.end = max(times)
        self.left = LEFT
        self.right = WIDTH - RIGHT

    def x(self, time_ns: int) -> float:
        if self.end == self.start:
            return (self.left + self.right) / 2
        return self.left + (time_ns - self.start) / (self.end - self.start) * (self.right - self.left)

    def ticks(self, bottom: float) -> list[str]:
        count = 1 if self.end == self.start else 5
        out = []
        for i in range(count):
            moment = self.start + (self.end - self.start) * i // max(count - 1, 1)
            x = self.x(moment)
            anchor = "start" if i == 0 and count > 1 else "end" if i == count - 1 and count > 1 else "middle"
            out.append(
                f'<line class="axis" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(bottom)}" y2="{_f(bottom + 4)}"/>'
            )
            out.append(
                f'<text x="{_f(x)}" y="{_f(bottom + 17)}" text-anchor="{anchor}">{_clock(moment)} UTC</text>'
            )
        return out


def _y_grid(top: float, bottom: float, maximum: float, label: Callable[[float], str], x: float) -> list[str]:
    out = []
    for i in range(5):
        value = maximum * i / 4
        y = bottom - (bottom - top) * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(y)}" y2="{_f(y)}"/>')
        out.append(f'<text x="{_f(x)}" y="{_f(y + 4)}" text-anchor="end">{_e(label(value))}</text>')
    return out


def _series(
    name: str,
    color: str,
    points: Sequence[tuple[int, float | None]],
    x: Callable[[int], float],
    y: Callable[[float], float],
    label: Callable[[float], str],
) -> list[str]:
    """A line (broken where a value is missing) with a dot, and a tooltip, on every known point."""
    out = [f'<g class="series" data-series="{_e(name)}">']
    run: list[str] = []
    runs: list[list[str]] = []
    for time_ns, value in points:
        if value is None:
            if run:
                runs.append(run)
                run = []
            continue
        run.append(f"{_f(x(time_ns))},{_f(y(value))}")
    if run:
        runs.append(run)
    for segment in runs:
        if len(segment) > 1:
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(segment)}"/>'
            )
    for time_ns, value in points:
        if value is None:
            continue
        out.append(
            f'<circle cx="{_f(x(time_ns))}" cy="{_f(y(value))}" r="3.5" fill="{color}">'
            f"<title>{_e(name)} at {_clock(time_ns)} UTC: {_e(label(value))}</title></circle>"
        )
    out.append("</g>")
    return out


def _resource_chart(page: _Page, timeline: list[Mapping[str, Any]], times: list[int]) -> list[str]:
    height = 300
    bottom = height - BOTTOM
    axis = _TimeAxis(times)
    counts = [_number(entry.get(key)) for entry in timeline for key in ("target", "current")]
    most = max([count for count in counts if count is not None] + [1.0])
    top_instances = float(max(4, math.ceil(most) + 1))
    top_instances = math.ceil(top_instances / 4) * 4  # four grid steps of whole instances

    def y_util(value: float) -> float:
        return bottom - min(max(value, 0.0), 1.0) * (bottom - TOP)

    def y_count(value: float) -> float:
        return bottom - min(max(value, 0.0), top_instances) / top_instances * (bottom - TOP)

    decisions = [entry for entry in timeline if entry.get("action") not in (None, "no_action")]
    desc = (
        f"CPU and memory utilization (left axis, percent) and the target instance count (right axis) over "
        f"{len(timeline)} window(s); {len(decisions)} scaling decision(s) marked with vertical lines."
    )
    out = _svg_open(page, "resources", CHART_TITLES[0], desc, height)
    out += _y_grid(TOP, bottom, 1.0, lambda v: f"{v * 100:.0f}%", LEFT - 6)
    for i in range(5):
        value = top_instances * i / 4
        y = bottom - (bottom - TOP) * i / 4
        out.append(f'<text x="{WIDTH - RIGHT + 6}" y="{_f(y + 4)}" text-anchor="start">{value:.0f}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    out += axis.ticks(bottom)
    out.append(
        f'<text x="14" y="{_f((TOP + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_f((TOP + bottom) / 2)})">utilization</text>'
    )
    out.append(
        f'<text x="{WIDTH - 12}" y="{_f((TOP + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(90 {WIDTH - 12} {_f((TOP + bottom) / 2)})">instances</text>'
    )
    # Decision markers first, so the lines are drawn over them.
    out.append('<g class="markers">')
    for entry, time_ns in zip(timeline, times, strict=True):
        action = entry.get("action")
        if action in (None, "no_action"):
            continue
        x = axis.x(time_ns)
        color = COLORS.get(str(action), "#6b7280")
        arrow = "▲" if action == "scale_up" else "▼" if action == "scale_down" else "●"
        tip = (
            f"{action} at {_iso(entry, time_ns)}: {_num(entry.get('current'))} → {_num(entry.get('target'))}"
            f" instance(s). {entry.get('reason', '')}"
        )
        out.append(f'<g class="marker" data-action="{_e(action)}"><title>{_e(tip)}</title>')
        out.append(
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{TOP}" y2="{bottom}" stroke="{color}" '
            'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{_f(x + 3)}" y="{TOP + 10}" style="fill:{color}">'
            f"{arrow} {_e(_num(entry.get('target')))}</text>"
        )
        out.append("</g>")
    out.append("</g>")
    # The target instance count as a step line: a target holds until the next window.
    steps: list[str] = []
    known = [(t, _number(entry.get("target"))) for entry, t in zip(timeline, times, strict=True)]
    for i, (time_ns, target) in enumerate(known):
        if target is None:
            continue
        steps.append(f"{_f(axis.x(time_ns))},{_f(y_count(target))}")
        if i + 1 < len(known):
            steps.append(f"{_f(axis.x(known[i + 1][0]))},{_f(y_count(target))}")
    if steps:
        out.append(
            f'<polyline class="step" data-series="target instances" fill="none" stroke="{COLORS["target"]}" '
            f'stroke-width="2.5" stroke-dasharray="7 3" points="{" ".join(steps)}"/>'
        )
    for name, key, color in (
        ("CPU utilization", "cpu_utilization", COLORS["cpu"]),
        ("Memory utilization", "memory_utilization", COLORS["memory"]),
    ):
        points = [
            (t, _number(_mapping(entry.get("metrics")).get(key)))
            for entry, t in zip(timeline, times, strict=True)
        ]
        out += _series(name, color, points, axis.x, y_util, lambda v: f"{v * 100:.1f}%")
    out.append("</svg>")
    legend = _legend(
        [
            ("CPU utilization", COLORS["cpu"], ""),
            ("Memory utilization", COLORS["memory"], ""),
            ("Target instances (right axis)", COLORS["target"], ""),
            ("Scale up", COLORS["scale_up"], ""),
            ("Scale down", COLORS["scale_down"], ""),
        ]
    )
    return [f"<figure><figcaption>{_e(CHART_TITLES[0])}</figcaption>", legend, *out, "</figure>"]


def _latency_chart(page: _Page, timeline: list[Mapping[str, Any]], times: list[int]) -> list[str]:
    height = 260
    bottom = height - BOTTOM
    axis = _TimeAxis(times)
    keys = (("p50", "response_time_p50"), ("p95", "response_time_p95"), ("p99", "response_time_p99"))
    values = [_number(_mapping(entry.get("metrics")).get(key)) for entry in timeline for _, key in keys]
    known = [value * 1000 for value in values if value is not None]
    desc = f"Response time percentiles p50, p95 and p99 in milliseconds over {len(timeline)} window(s)."
    out = [f"<figure><figcaption>{_e(CHART_TITLES[1])}</figcaption>"]
    if not known:
        return [*out, _no_data("No latency data."), "</figure>"]
    out.append(_legend([(name, COLORS[name], "") for name, _ in keys]))
    top_ms = _nice_ceiling(max(known))
    out += _svg_open(page, "latency", CHART_TITLES[1], desc, height)

    def y_ms(value: float) -> float:
        return bottom - min(max(value, 0.0), top_ms) / top_ms * (bottom - TOP)

    out += _y_grid(TOP, bottom, top_ms, lambda v: f"{v:g} ms", LEFT - 6)
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    out += axis.ticks(bottom)
    for name, key in keys:
        points = []
        for entry, t in zip(timeline, times, strict=True):
            seconds = _number(_mapping(entry.get("metrics")).get(key))
            points.append((t, None if seconds is None else seconds * 1000))
        out += _series(name, COLORS[name], points, axis.x, y_ms, lambda v: f"{v:.1f} ms")
    return [*out, "</svg>", "</figure>"]


def _scaling(page: _Page, value: object) -> list[str]:
    out = ['<section class="panel" id="scaling">', "<h2>Scaling</h2>"]
    scaling = _mapping(value)
    timeline = [
        entry
        for entry in _items(scaling.get("timeline"))
        if isinstance(entry.get("time_ns"), int) and not isinstance(entry.get("time_ns"), bool)
    ]
    timeline.sort(key=lambda entry: int(entry["time_ns"]))
    advice = _mapping(scaling.get("recommendation"))
    facts = []
    if scaling.get("service"):
        facts.append(f"service <code>{_e(scaling['service'])}</code>")
    if scaling.get("window_seconds") is not None:
        facts.append(f"windows of {_e(_num(scaling.get('window_seconds')))} s")
    if facts:
        out.append(f'<p class="muted">Scaling decisions replayed for {", ".join(facts)}.</p>')
    if advice:
        out.append(
            f'<p class="advice"><strong>Recommendation: {_e(advice.get("action", MISSING))}</strong> from '
            f"{_e(_num(advice.get('current')))} to {_e(_num(advice.get('target')))} instance(s): "
            f"{_e(advice.get('reason', ''))}</p>"
        )
    if not timeline:
        return [*out, _no_data(), "</section>"]
    times = [int(entry["time_ns"]) for entry in timeline]
    out += _resource_chart(page, timeline, times)
    out += _latency_chart(page, timeline, times)
    rows = []
    for entry, time_ns in zip(timeline, times, strict=True):
        metrics = _mapping(entry.get("metrics"))
        rows.append(
            [
                _e(_iso(entry, time_ns)),
                _num(entry.get("current")),
                _num(entry.get("target")),
                _e(entry.get("action", MISSING)),
                _e(entry.get("limited_by") or "-"),
                _pct(metrics.get("cpu_utilization")),
                _pct(metrics.get("memory_utilization")),
                _num(metrics.get("request_rate"), 1),
                _pct(metrics.get("error_rate")),
                _num(metrics.get("queue_depth"), 1),
                _ms(metrics.get("response_time_p50"), seconds=True),
                _ms(metrics.get("response_time_p95"), seconds=True),
                _ms(metrics.get("response_time_p99"), seconds=True),
                _num(entry.get("cpu_only_target")),
                _e(entry.get("reason", "")),
            ]
        )
    header = ["Time", "Current", "Target", "Action", "Limited by", "CPU", "Memory", "Req/s", "Errors"]
    header += ["Queue", "p50", "p95", "p99", "CPU-only target", "Reason"]
    out += _data_table(_table(header, rows, "lrrllrrrrrrrrrl"))
    return [*out, "</section>"]


# -- bar charts ---------------------------------------------------------------------------------------


def _bar_chart(
    page: _Page,
    kind: str,
    title: str,
    desc: str,
    bars: Sequence[tuple[str, float | None, str]],
    maximum: float,
    color: str = COLORS["bar"],
) -> list[str]:
    """Horizontal bars: (label, value or None, shown value). A missing value draws no bar."""
    height = TOP + len(bars) * (BAR_HEIGHT + BAR_GAP) + 8
    x0, x1 = LABEL_WIDTH, WIDTH - 90
    out = _svg_open(page, kind, title, desc, height)
    out.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{TOP - 6}" y2="{_f(height - 6)}"/>')
    for i, (label, value, shown) in enumerate(bars):
        y = TOP + i * (BAR_HEIGHT + BAR_GAP)
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        out.append(f'<g class="bar-row"><title>{_e(label)}: {_e(shown)}</title>')
        out.append(
            f'<text x="{x0 - 8}" y="{_f(y + BAR_HEIGHT / 2 + 4)}" text-anchor="end">{_e(short)}</text>'
        )
        end = float(x0)
        if value is not None:
            width = max(min(value, maximum), 0.0) / maximum * (x1 - x0) if maximum > 0 else 0.0
            out.append(
                f'<rect class="bar" x="{x0}" y="{_f(y)}" width="{_f(max(width, 1.0))}" '
                f'height="{BAR_HEIGHT}" rx="2" fill="{color}"/>'
            )
            end = x0 + max(width, 1.0)
        out.append(f'<text x="{_f(end + 6)}" y="{_f(y + BAR_HEIGHT / 2 + 4)}">{_e(shown)}</text>')
        out.append("</g>")
    return [*out, "</svg>"]


def _queries(page: _Page, value: object) -> list[str]:
    out = ['<section class="panel" id="top-queries">', "<h2>Database</h2>"]
    queries = _items(value)
    if not queries:
        return [*out, _no_data(), "</section>"]
    ranked = sorted(queries, key=lambda query: -(_number(query.get("total_ms")) or 0.0))
    bars = [
        (str(query.get("statement", "")), _number(query.get("total_ms")), _ms(query.get("total_ms")))
        for query in ranked
    ]
    top = max([value for _, value, _ in bars if value is not None] + [0.0])
    desc = f"Total time spent in each of {len(bars)} statement(s), longest first, in milliseconds."
    out.append(f"<figure><figcaption>{_e(CHART_TITLES[2])}</figcaption>")
    out += _bar_chart(page, "queries", CHART_TITLES[2], desc, bars, top)
    out.append("</figure>")
    # Which service runs a statement matters when the report covers several (a fleet).
    fleet = len({name for query in ranked for name in _services(query)}) > 1
    rows = [
        [
            str(number),
            f"<code>{_e(query.get('statement', ''))}</code>",
            *([", ".join(f"<code>{_e(n)}</code>" for n in _services(query)) or MISSING] if fleet else []),
            _num(query.get("calls")),
            _ms(query.get("total_ms")),
            _ms(query.get("mean_ms")),
            _ms(query.get("p95_ms")),
        ]
        for number, query in enumerate(ranked, 1)
    ]
    header = ["#", "Statement", *(["Services"] if fleet else []), "Calls", "Total", "Mean", "p95"]
    out += _data_table(_table(header, rows, "rllrrrr" if fleet else "rlrrrr"))
    return [*out, "</section>"]


def _at_peaks(pool: Mapping[str, Any]) -> str:
    """`` (… at peaks)`` after the queue wait p95 of a pool: the p95 over windows, when it is higher."""
    peak, wait = _number(pool.get("queue_wait_p95_peak")), _number(pool.get("queue_wait_p95"))
    return f" ({_ms(peak, seconds=True)} at peaks)" if peak is not None and peak > (wait or 0.0) else ""


def _services(query: Mapping[str, Any]) -> list[str]:
    """The ``services`` of a top query (names only; anything else is skipped)."""
    value = query.get("services")
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []


def _caches(page: _Page, value: object) -> list[str]:
    out = ['<section class="panel" id="caches">', "<h2>Caches</h2>"]
    caches = _items(value)
    if not caches:
        return [*out, _no_data(), "</section>"]
    bars = [
        (str(cache.get("name", MISSING)), _number(cache.get("hit_rate")), _pct(cache.get("hit_rate")))
        for cache in caches
    ]
    desc = f"Hit rate of each of {len(bars)} cache(s), from 0 to 100 percent."
    out.append(f"<figure><figcaption>{_e(CHART_TITLES[3])}</figcaption>")
    out += _bar_chart(page, "caches", CHART_TITLES[3], desc, bars, 1.0, COLORS["memory"])
    out.append("</figure>")
    rows = [
        [
            f"<code>{_e(cache.get('name', MISSING))}</code>",
            _pct(cache.get("hit_rate")),
            _num(cache.get("requests")),
            _num(cache.get("evictions")),
            _num(cache.get("expirations")),
            f"{_num(cache.get('size'))} / {_num(cache.get('max_size'))}",
        ]
        for cache in caches
    ]
    header = ["Cache", "Hit rate", "Requests", "Evictions", "Expirations", "Size / max"]
    out += _data_table(_table(header, rows, "lrrrrr"))
    return [*out, "</section>"]


def _threads(page: _Page, value: object) -> list[str]:
    out = ['<section class="panel" id="threads">', "<h2>Thread pools</h2>"]
    pools = _items(value)
    if not pools:
        return [*out, _no_data(), "</section>"]
    names = [str(pool.get("pool", MISSING)) for pool in pools]
    utilization = [
        (name, _number(pool.get("utilization")), _pct(pool.get("utilization")))
        for name, pool in zip(names, pools, strict=True)
    ]
    waits = []
    for name, pool in zip(names, pools, strict=True):
        seconds = _number(pool.get("queue_wait_p95"))
        waits.append((name, None if seconds is None else seconds * 1000, _ms(seconds, seconds=True)))
    top_wait = _nice_ceiling(max([wait for _, wait, _ in waits if wait is not None] + [0.0]))
    out.append(f"<figure><figcaption>{_e(CHART_TITLES[4])}</figcaption>")
    out += _bar_chart(
        page,
        "pool-utilization",
        CHART_TITLES[4],
        f"Share of busy workers in each of {len(pools)} pool(s), from 0 to 100 percent.",
        utilization,
        1.0,
        COLORS["cpu"],
    )
    out.append("</figure>")
    out.append(f"<figure><figcaption>{_e(CHART_TITLES[5])}</figcaption>")
    out += _bar_chart(
        page,
        "pool-queue-wait",
        CHART_TITLES[5],
        f"95th percentile of the time a task waited in the queue, in milliseconds, for {len(pools)} pool(s).",
        waits,
        top_wait,
        COLORS["p95"],
    )
    out.append("</figure>")
    rows = [
        [
            f"<code>{_e(name)}</code>",
            _num(pool.get("max_workers")),
            _pct(pool.get("utilization")),
            _ms(pool.get("queue_wait_p95"), seconds=True) + _at_peaks(pool),
            _num(pool.get("throughput"), 1),
            _ms(pool.get("latency_mean"), seconds=True),
            _num(pool.get("littles_law_concurrency")),
            _num(pool.get("busy_peak")),
            _num(pool.get("recommended"))
            + (" (saturated at peaks)" if pool.get("saturated_at_peaks") is True else ""),
        ]
        for name, pool in zip(names, pools, strict=True)
    ]
    header = ["Pool", "Max workers", "Utilization", "Queue wait p95", "Tasks/s", "Mean latency"]
    header += ["Little's law L", "Peak busy (p95)", "Recommended"]
    out += _table(header, rows, "lrrrrrrrr")
    return [*out, "</section>"]
