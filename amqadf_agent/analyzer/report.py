"""The report of an ``Analysis`` in one of the formats of ``amqadf-analyze --format``, written to a stream.

``text`` is for a terminal (``analyzer.summary``'s ``render_*``, coloured only on a terminal without
``NO_COLOR``); ``json`` (``report_data``, layout in ``analyzer.summary``), ``markdown``
(``analyzer.render_markdown``) and ``html`` (``analyzer.render_html``) all render the same data.

The JSON is strict (RFC 8259): a number the rules could not compute from odd input (NaN, an infinity)
is ``null`` there, as a value that is not known, since ``NaN`` and ``Infinity`` are not JSON and many
parsers refuse them. C1 and bidirectional controls in its strings are ``\\uXXXX`` escapes: the same
strings, and nothing a terminal acts on or that reorders the text on screen.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any, Final, TextIO

from amqadf_agent.analyzer.impact import render_text as render_impact_text
from amqadf_agent.analyzer.report_values import data_quality_line, json_text_safe
from amqadf_agent.analyzer.run import Analysis
from amqadf_agent.analyzer.summary import (
    render_analysis_text,
    render_recommendations,
    render_skipped_text,
    render_text,
    to_json,
)

__all__ = ["FORMATS", "report_data", "use_colour", "write_report"]

#: The report formats, the first the default.
FORMATS: Final = ("text", "json", "markdown", "html", "sarif")


def report_data(analysis: Analysis) -> dict[str, Any]:
    """The JSON report of ``analysis`` (``schema_version`` 3): what the json, markdown and html show."""
    data = to_json(analysis.summary)
    data["recommendations"] = [recommendation.to_dict() for recommendation in analysis.recommendations]
    data.update(analysis.sections)
    if "duplicates" in data:  # a count about the input, shown with the summary
        data["summary"]["duplicates"] = data.pop("duplicates")
    return {key: _finite(value) for key, value in data.items()}


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity, at any depth, replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_report(analysis: Analysis, fmt: str, out: TextIO, source_roots: Sequence[str] = ()) -> None:
    """Write the report of ``analysis`` in ``fmt`` (one of ``FORMATS``) to ``out``, then flush it;
    ``source_roots`` name the SARIF log's files relative to where the application ran."""
    if fmt == "json":
        text = json.dumps(report_data(analysis), indent=2, ensure_ascii=False, allow_nan=False)
        out.write(json_text_safe(text) + "\n")
    elif fmt == "markdown":
        from amqadf_agent.analyzer.render_markdown import render as render_markdown

        render_markdown(report_data(analysis), out)
    elif fmt == "html":
        from amqadf_agent.analyzer.render_html import render as render_html

        render_html(report_data(analysis), out)
    elif fmt == "sarif":
        from amqadf_agent.analyzer.render_sarif import render as render_sarif

        render_sarif(report_data(analysis), out, source_roots)
    elif fmt == "text":
        render_text(analysis.summary, out)
        merged = analysis.sections.get("duplicates") or {}
        if merged.get("merged"):
            from amqadf_agent.analyzer.report_values import shown

            scopes = ", ".join(f"{s['kept']} <- {s['dropped']}: {s['spans']}" for s in merged["scopes"])
            out.write(
                f"\nDuplicates: {merged['merged']} db span(s) merged, one call each ({shown(scopes)})\n"
            )
        render_analysis_text(analysis.sections, out)
        from amqadf_agent.analyzer.render_endpoints import text_lines

        out.write("".join(line + "\n" for line in text_lines(analysis.sections.get("top_routes"))))
        render_impact_text(analysis.sections.get("impact"), out)
        render_recommendations(list(analysis.recommendations), out, colour=use_colour(out))
        if quality := data_quality_line(analysis.sections.get("data_quality")):
            out.write(f"\n{quality}\n")
        render_skipped_text(analysis.summary, out)
    else:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    out.flush()


def use_colour(out: object) -> bool:
    """Colour the text report: only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False
