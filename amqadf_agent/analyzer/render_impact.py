"""What the fixes are worth (``impact``) in the Markdown and HTML reports.

The text report prints it itself (``impact.render_text``); the Markdown and HTML reports take their
lines from here, so each renderer only places them: one short table, a row a priced finding (its
title, the time its fix saves in all and per affected request, each affected route's p95 before and
after, the instances the scaler wanted at peak before and after), then how each estimate was
computed (formula, assumptions), so a reader can disagree with it.

Values come from the report (user data): escaped as the rest of each report escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any, Final

from amqadf_agent.analyzer.report_values import MISSING, items, mapping, ms, num, shown_in_html

__all__ = ["html_lines", "markdown_lines"]

TITLE: Final = "What the fixes are worth"
HEADER: Final = ("Finding", "Saved", "Per request", "Route p95 before → after", "Instances at peak")


def _routes(estimate: Mapping[str, Any]) -> list[str]:
    """Each affected route as ``route: before → after (n requests)``, plain text."""
    return [
        f"{route.get('route', MISSING)}: {ms(route.get('p95_before_ms'))} → {ms(route.get('p95_after_ms'))} "
        f"({num(route.get('requests'))} requests)"
        for route in items(estimate.get("routes"))
    ]


def _instances(estimate: Mapping[str, Any]) -> str:
    instances = mapping(estimate.get("instances"))
    if not instances:
        return MISSING
    return f"{num(instances.get('peak_before'))} → {num(instances.get('peak_after'))}"


def _per_request(estimate: Mapping[str, Any]) -> str:
    each, count = estimate.get("saved_ms_per_affected_request"), estimate.get("requests_affected")
    return f"{ms(each)} in each of {num(count)}"


def _estimates(value: object) -> list[Mapping[str, Any]]:
    return items(mapping(value).get("estimates"))


def markdown_lines(value: object) -> list[str]:
    """The Markdown report's impact section; nothing when no fix was priced."""
    from amqadf_agent.analyzer.render_markdown import code, table, text

    estimates = _estimates(value)
    if not estimates:
        return []
    rows = [
        [
            text(estimate.get("title", MISSING)),
            ms(estimate.get("saved_ms")),
            _per_request(estimate),
            "; ".join(text(route) for route in _routes(estimate)) or MISSING,
            _instances(estimate),
        ]
        for estimate in estimates
    ]
    lines = [f"## {TITLE}", "", *table(list(HEADER), rows, "lrrll"), ""]
    for number_, estimate in enumerate(estimates, 1):
        lines.append(
            f"{number_}. {code(estimate.get('fingerprint', ''))}: {text(estimate.get('formula', ''))}"
        )
        assumptions = [str(a) for a in estimate.get("assumptions") or []]
        if assumptions:
            lines.append(f"   Assumes: {text('; '.join(assumptions))}.")
    return [*lines, ""]


def html_lines(value: object) -> list[str]:
    """The HTML report's impact section; nothing when no fix was priced."""
    estimates = _estimates(value)
    if not estimates:
        return []

    def e(value: object) -> str:
        return escape(shown_in_html(value))

    out = ['<section class="panel" id="impact">', f"<h2>{e(TITLE)}</h2>", "<table>"]
    out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr></thead>")
    out.append("<tbody>")
    for estimate in estimates:
        cells = [
            e(estimate.get("title", MISSING)),
            e(ms(estimate.get("saved_ms"))),
            e(_per_request(estimate)),
            "<br>".join(e(route) for route in _routes(estimate)) or MISSING,
            e(_instances(estimate)),
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out += ["</tbody>", "</table>", '<dl class="facts">']
    for estimate in estimates:
        assumptions = "; ".join(str(a) for a in estimate.get("assumptions") or [])
        how = str(estimate.get("formula", "")) + (f" Assumes: {assumptions}." if assumptions else "")
        out.append(f"<dt><code>{e(estimate.get('fingerprint', ''))}</code></dt><dd>{e(how)}</dd>")
    return [*out, "</dl>", "</section>"]
