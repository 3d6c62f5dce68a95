"""What the fixes are worth (``impact``) and the planner's verdict on an index, in Markdown and HTML.

The text report prints both itself (``impact.render_text``, ``summary.render_recommendations``);
the Markdown and HTML reports take their lines from here, so each renderer only places them:

* ``impact``: one short table, a row a priced finding (its title, the time its fix saves in all and
  per affected request, each affected route's p95 before and after, the instances the scaler wanted
  at peak before and after), then how each estimate was computed (formula, assumptions, what the
  p95 after the fix is based on), so a reader can disagree with it;
* the verdict of ``--explain`` on an index candidate (``verdict`` in its evidence numbers): verified,
  not suggested or unverified, with the reason, the cost before and after, the plan change and the
  ``CREATE INDEX`` statement, in the finding's block.

Values come from the report (user data): escaped as the rest of each report escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any, Final

from amqadf_agent.analyzer.report_values import MISSING, items, mapping, ms, num, number, shown_in_html

__all__ = ["html_lines", "markdown_lines", "p95_basis", "verdict_html", "verdict_markdown"]

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


def p95_basis(estimate: Mapping[str, Any]) -> str:
    """What the routes' p95 after the fix is based on, when the estimate says (an N+1's does)."""
    basis = mapping(estimate.get("evidence")).get("p95_after")
    return f"p95 after the fix from {basis}." if isinstance(basis, str) and basis else ""


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
        if basis := p95_basis(estimate):
            lines.append(f"   {text(basis)}")
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
        if basis := p95_basis(estimate):
            how += f" {basis}"
        out.append(f"<dt><code>{e(estimate.get('fingerprint', ''))}</code></dt><dd>{e(how)}</dd>")
    return [*out, "</dl>", "</section>"]


# -- the planner's verdict on one index candidate ------------------------------------------------------


def _verdict_facts(item: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]] | None:
    """``(verdict line, [(term, value)])`` of an index candidate the planner was asked about, plain
    text; ``None`` for any other finding."""
    numbers = mapping(mapping(item.get("evidence")).get("numbers"))
    verdict = numbers.get("verdict")
    if not isinstance(verdict, str) or not verdict:
        return None
    reason = numbers.get("verdict_reason")
    line = f"{verdict}: {reason}" if isinstance(reason, str) and reason else verdict
    facts: list[tuple[str, str]] = []
    before, after = number(numbers.get("cost_before")), number(numbers.get("cost_after"))
    if before is not None and after is not None:
        unit = f" ({numbers['cost_unit']})" if numbers.get("cost_unit") else ""
        drop = number(numbers.get("cost_drop_pct"))
        change = f", -{num(drop, 1)}%" if drop is not None else ""
        facts.append(("Cost", f"{num(before, 3)} → {num(after, 3)}{unit}{change}"))
    if numbers.get("plan_before") or numbers.get("plan_after"):
        plan = f"{numbers.get('plan_before') or MISSING} → {numbers.get('plan_after') or MISSING}"
        facts.append(("Plan", plan))
    if numbers.get("create_index"):
        facts.append(("Statement", str(numbers["create_index"])))
    return line, facts


def verdict_markdown(item: Mapping[str, Any]) -> list[str]:
    """The verdict lines of a Markdown finding block (nothing when the finding has no verdict)."""
    from amqadf_agent.analyzer.render_markdown import code, text

    found = _verdict_facts(item)
    if found is None:
        return []
    line, facts = found
    lines = [f"   - Planner: {text(line)}"]
    for term, value in facts:
        shown = code(value) if term in ("Plan", "Statement") else text(value)
        lines.append(f"     - {term}: {shown}")
    return lines


def verdict_html(item: Mapping[str, Any]) -> list[str]:
    """The verdict of an HTML finding card (nothing when the finding has no verdict)."""
    found = _verdict_facts(item)
    if found is None:
        return []
    line, facts = found

    def e(value: object) -> str:
        return escape(shown_in_html(value))

    out = [f'<p class="verdict"><strong>Planner:</strong> {e(line)}</p>']
    if facts:
        out.append('<dl class="facts">')
        for term, value in facts:
            shown = f"<code>{e(value)}</code>" if term in ("Plan", "Statement") else e(value)
            out.append(f"<dt>{e(term)}</dt><dd>{shown}</dd>")
        out.append("</dl>")
    return out
