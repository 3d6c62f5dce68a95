"""The building blocks of the HTML report's page: its style sheet, script and Content-Security-Policy,
escaping, tables, legends, and the inline SVG charts (frame, time axis, grid, line series, bars).

``analyzer.render_html`` lays out the sections with them; everything here is independent of the
report's data and takes only already-computed values.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from amqadf_agent.analyzer.report_values import shown_in_html

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

CSS = """
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
SCRIPT = """
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

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def esc(value: object) -> str:
    return escape(shown_in_html(value), quote=True)


def coord(value: float) -> str:
    """An SVG coordinate."""
    return f"{value:.1f}"


def clock(time_ns: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return str(time_ns)
    return moment.strftime("%H:%M:%S")


def iso_time(entry: Mapping[str, Any], time_ns: int) -> str:
    moment = entry.get("time")
    return moment if isinstance(moment, str) and moment else clock(time_ns)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: str = "") -> list[str]:
    """An HTML table; cells are already escaped; ``numeric`` has ``r`` for right-aligned columns."""

    def cls(i: int) -> str:
        return ' class="num"' if numeric[i : i + 1] == "r" else ""

    out = ["<table>", "<thead><tr>" + "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return out


def data_table(rows: list[str]) -> list[str]:
    return ["<details>", "<summary>Data table</summary>", *rows, "</details>"]


def no_data(what: str = NO_DATA) -> str:
    return f'<p class="no-data">{esc(what)}</p>'


def legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """A legend: (label, colour, extra CSS for the swatch)."""
    items = "".join(
        f'<li><span class="swatch" style="background:{color};{extra}"></span>{esc(label)}</li>'
        for label, color, extra in entries
    )
    return f'<ul class="legend">{items}</ul>'


class Page:
    """Hands out ids that are unique in the page."""

    def __init__(self) -> None:
        self.count = 0

    def ids(self) -> tuple[str, str, str]:
        self.count += 1
        return f"chart-{self.count}", f"chart-{self.count}-title", f"chart-{self.count}-desc"


def svg_open(page: Page, kind: str, title: str, desc: str, height: float) -> list[str]:
    chart_id, title_id, desc_id = page.ids()
    return [
        f'<svg class="chart" id="{chart_id}" data-chart="{esc(kind)}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" viewBox="0 0 {WIDTH} {coord(height)}" '
        f'width="{WIDTH}" height="{coord(height)}">',
        f'<title id="{title_id}">{esc(title)}</title>',
        f'<desc id="{desc_id}">{esc(desc)}</desc>',
    ]


class TimeAxis:
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
                f'<line class="axis" x1="{coord(x)}" x2="{coord(x)}" '
                f'y1="{coord(bottom)}" y2="{coord(bottom + 4)}"/>'
            )
            out.append(
                f'<text x="{coord(x)}" y="{coord(bottom + 17)}" text-anchor="{anchor}">'
                f"{clock(moment)} UTC</text>"
            )
        return out


def y_grid(top: float, bottom: float, maximum: float, label: Callable[[float], str], x: float) -> list[str]:
    out = []
    for i in range(5):
        value = maximum * i / 4
        y = bottom - (bottom - top) * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{coord(y)}" y2="{coord(y)}"/>')
        out.append(f'<text x="{coord(x)}" y="{coord(y + 4)}" text-anchor="end">{esc(label(value))}</text>')
    return out


def series(
    name: str,
    color: str,
    points: Sequence[tuple[int, float | None]],
    x: Callable[[int], float],
    y: Callable[[float], float],
    label: Callable[[float], str],
) -> list[str]:
    """A line (broken where a value is missing) with a dot, and a tooltip, on every known point."""
    out = [f'<g class="series" data-series="{esc(name)}">']
    run: list[str] = []
    runs: list[list[str]] = []
    for time_ns, value in points:
        if value is None:
            if run:
                runs.append(run)
                run = []
            continue
        run.append(f"{coord(x(time_ns))},{coord(y(value))}")
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
            f'<circle cx="{coord(x(time_ns))}" cy="{coord(y(value))}" r="3.5" fill="{color}">'
            f"<title>{esc(name)} at {clock(time_ns)} UTC: {esc(label(value))}</title></circle>"
        )
    out.append("</g>")
    return out


def bar_chart(
    page: Page,
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
    out = svg_open(page, kind, title, desc, height)
    out.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{TOP - 6}" y2="{coord(height - 6)}"/>')
    for i, (label, value, shown) in enumerate(bars):
        y = TOP + i * (BAR_HEIGHT + BAR_GAP)
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        out.append(f'<g class="bar-row"><title>{esc(label)}: {esc(shown)}</title>')
        out.append(
            f'<text x="{x0 - 8}" y="{coord(y + BAR_HEIGHT / 2 + 4)}" text-anchor="end">{esc(short)}</text>'
        )
        end = float(x0)
        if value is not None:
            width = max(min(value, maximum), 0.0) / maximum * (x1 - x0) if maximum > 0 else 0.0
            out.append(
                f'<rect class="bar" x="{x0}" y="{coord(y)}" width="{coord(max(width, 1.0))}" '
                f'height="{BAR_HEIGHT}" rx="2" fill="{color}"/>'
            )
            end = x0 + max(width, 1.0)
        out.append(f'<text x="{coord(end + 6)}" y="{coord(y + BAR_HEIGHT / 2 + 4)}">{esc(shown)}</text>')
        out.append("</g>")
    return [*out, "</svg>"]
