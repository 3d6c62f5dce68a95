"""The endpoint table (``top_routes``, ``analyzer.endpoints``) in the text, Markdown and HTML reports.

One short table in each: the ``SHOWN`` routes with the most total time, so the report answers
"which endpoints are slow, failing or busy, and why" at a glance; the JSON holds more. Values from
the telemetry (routes, rule names) are escaped as the rest of each report escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any, Final

from amqadf_agent.analyzer.report_values import MISSING, items, ms, num, number, percent, shown

__all__ = ["html_lines", "markdown_lines", "text_lines"]

#: Routes shown in the text, Markdown and HTML reports.
SHOWN: Final = 10
TITLE: Final = "Endpoints by total time"
HEADER: Final = (
    "Route",
    "Requests",
    "Errors",
    "p50",
    "p95",
    "p99",
    "DB/req",
    "HTTP/req",
    "Time in DB/HTTP/other",
    "Findings",
)


def _label(route: Mapping[str, Any]) -> str:
    method, path = str(route.get("method") or ""), str(route.get("route") or "")
    service = str(route.get("service") or "")
    label = f"{method} {path}".strip()
    return f"{service}: {label}" if service else label


def _split(route: Mapping[str, Any]) -> str:
    share = route.get("share")
    if not isinstance(share, Mapping):
        return MISSING
    return "/".join(percent(share.get(part)) for part in ("db", "http", "other"))


def _findings(route: Mapping[str, Any]) -> str:
    rules = sorted({str(f.get("rule", "")) for f in items(route.get("findings"))})
    return ", ".join(rules)


def _after(route: Mapping[str, Any]) -> str:
    """The calls that ended after their request, ``""`` when none (a report without the keys too)."""
    calls = number(route.get("calls_after_response"))
    if not calls:
        return ""
    return (
        f"{num(route.get('calls_after_response'))} calls ran on after the response, "
        f"{ms(route.get('ms_after_response'))} in all"
    )


def _cells(route: Mapping[str, Any]) -> list[str]:
    """The cells after the route's label, as plain text."""
    return [
        num(route.get("requests")),
        percent(route.get("error_rate")),
        ms(route.get("p50_ms")),
        ms(route.get("p95_ms")),
        ms(route.get("p99_ms")),
        f"{num(route.get('db_calls_per_request'), 1)} ({ms(route.get('db_ms_per_request'))})",
        f"{num(route.get('http_calls_per_request'), 1)} ({ms(route.get('http_ms_per_request'))})",
        _split(route),
    ]


def text_lines(value: object) -> list[str]:
    """The text report's endpoint section."""
    routes = items(value)[:SHOWN]
    lines = ["", f"{TITLE} ({len(items(value))})"]
    if not routes:
        return [*lines, "  (none)"]
    for route in routes:
        cells = _cells(route)
        findings = _findings(route)
        lines.append(
            f"  {shown(_label(route))}: {cells[0]} req, errors {cells[1]}, p50 {cells[2]}, p95 {cells[3]}, "
            f"p99 {cells[4]}, db/req {cells[5]}, http/req {cells[6]}, db/http/other {cells[7]}"
            + (f"; {after}" if (after := _after(route)) else "")
            + (f"; findings: {shown(findings)}" if findings else "")
        )
    return lines


def markdown_lines(value: object) -> list[str]:
    """The Markdown report's endpoint section."""
    from amqadf_agent.analyzer.render_markdown import NO_DATA, code, table, text

    if value is None:  # a version 2 report: no such section
        return []
    lines = [f"## {TITLE}", ""]
    routes = items(value)[:SHOWN]
    if not routes:
        return [*lines, NO_DATA, ""]
    rows = [[code(_label(route)), *_cells(route), text(_findings(route)) or MISSING] for route in routes]
    lines += [*table(list(HEADER), rows, "lrrrrrrrll"), ""]
    after = [f"- {code(_label(route))}: {text(_after(route))}" for route in routes if _after(route)]
    return [*lines, *after, ""] if after else lines


def html_lines(value: object) -> list[str]:
    """The HTML report's endpoint section."""
    if value is None:  # a version 2 report: no such section
        return []
    out = ['<section class="panel" id="top-routes">', f"<h2>{escape(TITLE)}</h2>"]
    routes = items(value)[:SHOWN]
    if not routes:
        return [*out, '<p class="no-data">No data.</p>', "</section>"]
    out += ["<table>", "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in HEADER) + "</tr></thead>"]
    out.append("<tbody>")
    for route in routes:
        cells = [f"<code>{escape(_label(route))}</code>", *(escape(c) for c in _cells(route))]
        cells.append(escape(_findings(route)) or MISSING)
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    after = [route for route in routes if _after(route)]
    if after:
        out.append("<ul>")
        out += [f"<li><code>{escape(_label(r))}</code>: {escape(_after(r))}</li>" for r in after]
        out.append("</ul>")
    out.append("</section>")
    return out
