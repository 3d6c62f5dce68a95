"""``amqadf-analyze --format markdown``: the JSON report (schema version 2) as GitHub-flavoured Markdown.

``render(report, file)`` takes the dict that ``--format json`` writes (``schema_version``, ``summary``,
``recommendations``, ``scaling``, ``cache``, ``threads``, ``top_queries``). Every section may be
missing or empty; it then says "No data." Text that comes from the telemetry (statements, reasons,
titles) is escaped so that it cannot break a table or turn into Markdown or HTML markup: plain text
is backslash-escaped, and statements, subjects and ids go into code spans.

Only the standard library is imported (the analyzer's walls, docs/design.md).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from amqadf_agent.analyzer.render_endpoints import markdown_lines as endpoint_lines
from amqadf_agent.analyzer.render_impact import markdown_lines as impact_lines
from amqadf_agent.analyzer.render_impact import verdict_markdown
from amqadf_agent.analyzer.report_values import (
    CACHE_HEADER,
    MISSING,
    POOL_HEADER,
    SHOWN_SERVICES,
    busiest,
    cache_row,
    data_quality_line,
    ms,
    num,
    percent,
    pool_row,
    query_table,
    shown,
)
from amqadf_agent.analyzer.report_values import items as _items
from amqadf_agent.analyzer.report_values import mapping as _mapping
from amqadf_agent.analyzer.report_values import number as _number

__all__ = ["render"]

NO_DATA = "No data."
#: How many example trace ids a recommendation row shows.
EXAMPLE_TRACES = 3
_SPECIAL = set("\\`*_[]<>|&#~")


def render(report: Mapping[str, Any], file: TextIO) -> None:
    """Write ``report`` (the JSON report's dict) to ``file`` as Markdown."""
    lines: list[str] = ["# amqadf-analyze report", ""]
    version = report.get("schema_version")
    if version is not None:
        lines += [f"Report schema version {text(version)}.", ""]
    lines += _summary(report.get("summary"))
    lines += _recommendations(report.get("recommendations"))
    lines += impact_lines(report.get("impact"))
    lines += _scaling(report.get("scaling"))
    lines += _caches(report.get("cache"))
    lines += _threads(report.get("threads"))
    lines += _top_queries(report.get("top_queries"))
    if quality := data_quality_line(report.get("data_quality")):
        lines += [text(quality), ""]
    lines += endpoint_lines(report.get("top_routes"))
    lines += _skipped(report.get("summary"))
    while lines and lines[-1] == "":
        lines.pop()
    file.write("\n".join(lines) + "\n")


# -- escaping and formatting ------------------------------------------------------------------------


def text(value: object) -> str:
    """``value`` as inline Markdown text: one line, every markup character backslash-escaped and
    every control character shown as its escape (``\\x1b``)."""
    flat = shown(" ".join(str(value).split()))
    return "".join("\\" + char if char in _SPECIAL else char for char in flat)


def code(value: object) -> str:
    """``value`` as a code span that is safe inside a table cell (``|`` escaped, as GFM requires);
    control characters shown as their escapes."""
    flat = shown(" ".join(str(value).split()))
    if not flat:
        return MISSING
    longest = run = 0
    for char in flat:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat.replace('|', chr(92) + '|')}{pad}{fence}"


def when(entry: Mapping[str, Any]) -> str:
    """The time of a timeline entry: its ``time`` string, else its ``time_ns``."""
    moment = entry.get("time")
    if isinstance(moment, str) and moment:
        return moment
    ns = entry.get("time_ns")
    if isinstance(ns, int) and not isinstance(ns, bool):
        try:
            stamp = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
        except (OverflowError, ValueError, OSError):
            return f"{ns} ns"
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return MISSING


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A GFM table; ``align`` has one letter per column: ``l`` (default) or ``r``."""
    rule = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# -- sections ---------------------------------------------------------------------------------------


def _summary(value: object) -> list[str]:
    lines = ["## Summary", ""]
    summary = _mapping(value)
    if not summary:
        return [*lines, NO_DATA, ""]
    read = _mapping(summary.get("input"))
    problems = _mapping(summary.get("problems"))
    if read or problems:
        lines.append(
            f"- Input: {num(read.get('files'))} file(s), {num(read.get('lines'))} line(s), "
            f"{num(problems.get('count', 0))} problem(s) skipped"
        )
    span = _mapping(summary.get("time_range"))
    if span:
        duration = _number(span.get("duration_s"))
        length = f" ({num(duration, 1)} s)" if duration is not None else ""
        lines.append(
            f"- Time range: {text(span.get('start', MISSING))} .. {text(span.get('end', MISSING))}{length}"
        )
    counts = _mapping(summary.get("counts"))
    if counts:
        lines.append(
            f"- Records: {num(counts.get('spans'))} span(s), {num(counts.get('metric_records'))} metric "
            f"record(s) ({num(counts.get('data_points'))} data point(s)), "
            f"{num(counts.get('logs'))} log record(s)"
        )
    services = _items(summary.get("services"))
    if services:
        listed = busiest(services, SHOWN_SERVICES)
        names = ", ".join(
            f"{code(service.get('name', MISSING))} ({len(service.get('instance_ids') or [])} instance(s))"
            for service in listed
        )
        more = (
            f", and {len(services) - len(listed):,} more (in the JSON report)"
            if len(listed) < len(services)
            else ""
        )
        lines.append(f"- Services: {names}{more}")
    if len(lines) == 2:
        lines.append(NO_DATA)
    return [*lines, ""]


def _skipped(value: object) -> list[str]:
    """The report's last section: how many input problems were skipped, and where (``file:line: reason``)."""
    problems = _mapping(_mapping(value).get("problems"))
    count = _number(problems.get("count")) or 0
    if count <= 0:
        return []
    first = [str(p) for p in problems.get("first") or []]
    shown = f"; the first {len(first)}" if len(first) < count else ""
    lines = ["## Skipped input", "", f"{num(count)} problem(s) in the input were skipped{shown}:", ""]
    return [*lines, *(f"- {code(problem)}" for problem in first), ""]


def _key_numbers(numbers: object) -> str:
    shown = [
        f"{text(key)}={num(value, 3) if _number(value) is not None else text(value)}"
        for key, value in _mapping(numbers).items()
    ]
    return ", ".join(shown) or MISSING


def _recommendations(value: object) -> list[str]:
    lines = ["## Recommendations", ""]
    if not isinstance(value, list):
        return [*lines, NO_DATA, ""]
    items = _items(value)
    if not items:
        return [*lines, "No recommendations: no rule found a problem.", ""]
    rows = []
    for number, item in enumerate(items, 1):
        evidence = _mapping(item.get("evidence"))
        traces = [code(trace) for trace in (evidence.get("trace_ids") or [])[:EXAMPLE_TRACES]]
        rows.append(
            [
                str(number),
                text(item.get("severity", MISSING)),
                text(item.get("title", MISSING)),
                code(item.get("subject", "")),
                _key_numbers(evidence.get("numbers")),
                num(item.get("confidence")),
                ", ".join(traces) or MISSING,
            ]
        )
    header = ["#", "Severity", "Title", "Subject", "Key numbers", "Confidence", "Example traces"]
    lines += table(header, rows, "r")
    lines.append("")
    for number, item in enumerate(items, 1):
        evidence = _mapping(item.get("evidence"))
        lines.append(f"{number}. **{text(item.get('title', MISSING))}**")
        lines.append(f"   - Action: {text(item.get('action', MISSING))}")
        rule = f"{item.get('category', MISSING)}/{item.get('rule', MISSING)}"
        lines.append(f"   - Rule: {code(rule)} ({code(item.get('fingerprint', ''))})")
        if evidence.get("threshold"):
            lines.append(f"   - Threshold: {text(evidence['threshold'])}")
        if evidence.get("formula"):
            lines.append(f"   - Formula: {text(evidence['formula'])}")
        lines += verdict_markdown(item)
        lines += _locations(item)
    return [*lines, ""]


def _locations(item: Mapping[str, Any]) -> list[str]:
    """The code locations of a recommendation, and the stack of an N+1 the agent caught."""
    lines = []
    for location in _items(item.get("locations") or []):
        where = f"{location.get('file', MISSING)}:{location.get('line', MISSING)}"
        function = f" {code(location['function'])}" if location.get("function") else ""
        share = _number(location.get("share"))
        calls = f" ({num(location.get('count'))} calls, {share * 100:.0f}%)" if share is not None else ""
        lines.append(f"   - Code: {code(where)}{function}{calls}")
    stack = item.get("stacktrace")
    if isinstance(stack, str) and stack:
        lines += ["   - Stack of the N+1 as the agent caught it:", "", "     ```"]
        lines += [f"     {line.replace('```', '` ` `')}" for line in stack.splitlines()]
        lines += ["     ```", ""]
    return lines


def _scaling(value: object) -> list[str]:
    lines = ["## Scaling", ""]
    scaling = _mapping(value)
    timeline = _items(scaling.get("timeline"))
    advice = _mapping(scaling.get("recommendation"))
    if not timeline and not advice:
        return [*lines, NO_DATA, ""]
    service = scaling.get("service")
    facts = []
    if service:
        facts.append(f"service {code(service)}")
    if scaling.get("window_seconds") is not None:
        facts.append(f"windows of {num(scaling.get('window_seconds'))} s")
    if facts:
        lines += [f"Scaling decisions replayed for {', '.join(facts)}.", ""]
    if advice:
        lines += [
            f"**Recommendation: {text(advice.get('action', MISSING))}** from {num(advice.get('current'))} "
            f"to {num(advice.get('target'))} instance(s): {text(advice.get('reason', ''))}",
            "",
        ]
    floor = _mapping(scaling.get("insufficient_data"))
    if floor:
        lines += [f"**No scaling decision:** {text(floor.get('reason', ''))}.", ""]
    if not timeline:
        return [*lines, "No decisions in the timeline.", ""]
    rows = []
    for entry in timeline:
        metrics = _mapping(entry.get("metrics"))
        rows.append(
            [
                text(when(entry)),
                num(entry.get("current")),
                num(entry.get("target")),
                text(entry.get("action", MISSING)),
                text(entry.get("limited_by") or "-"),
                percent(metrics.get("cpu_utilization")),
                percent(metrics.get("memory_utilization")),
                num(metrics.get("request_rate"), 1),
                ms(metrics.get("response_time_p95"), seconds=True),
                num(entry.get("cpu_only_target")),
                text(entry.get("reason", "")),
            ]
        )
    header = ["Time", "Current", "Target", "Action", "Limited by", "CPU", "Memory", "Req/s", "p95"]
    lines += table([*header, "CPU-only target", "Reason"], rows, "lrrllrrrrrl")
    return [*lines, ""]


def _caches(value: object) -> list[str]:
    lines = ["## Caches", ""]
    caches = _items(value)
    if not caches:
        return [*lines, NO_DATA, ""]
    rows = [cache_row(cache, code(cache.get("name", MISSING))) for cache in caches]
    return [*lines, *table(CACHE_HEADER, rows, "lrrrrr"), ""]


def _threads(value: object) -> list[str]:
    lines = ["## Thread pools", ""]
    pools = _items(value)
    if not pools:
        return [*lines, NO_DATA, ""]
    rows = [pool_row(pool, code(pool.get("pool", MISSING))) for pool in pools]
    return [*lines, *table(POOL_HEADER, rows, "lrrrrrrrr"), ""]


def _top_queries(value: object) -> list[str]:
    lines = ["## Top queries by total time", ""]
    queries = _items(value)
    if not queries:
        return [*lines, NO_DATA, ""]
    header, rows, align = query_table(queries, code)
    return [*lines, *table(header, rows, align), ""]
