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

The page's building blocks (style sheet, script, tables, the SVG chart frame, axes, lines and bars)
are in ``analyzer.html_page``; this module lays out the sections and the charts of the report's data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TextIO

from amqadf_agent.analyzer.html_page import (
    BOTTOM,
    COLORS,
    CSP,
    CSS,
    LEFT,
    RIGHT,
    SCRIPT,
    SEVERITY_COLORS,
    TOP,
    WIDTH,
    Page,
    TimeAxis,
    bar_chart,
    coord,
    data_table,
    esc,
    iso_time,
    legend,
    nice_ceiling,
    no_data,
    series,
    svg_open,
    table,
    y_grid,
)
from amqadf_agent.analyzer.render_impact import verdict_html
from amqadf_agent.analyzer.report_values import (
    CACHE_HEADER,
    MISSING,
    POOL_HEADER,
    SHOWN_SERVICES,
    busiest,
    cache_row,
    data_quality_line,
    pool_row,
    query_table,
)
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


def render(report: Mapping[str, Any], file: TextIO) -> None:
    """Write ``report`` (the JSON report's dict) to ``file`` as one self-contained HTML page."""
    page = Page()
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
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>amqadf-analyze report</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>amqadf-analyze report</h1>",
        f'<p class="muted">{esc(" · ".join(str(part) for part in subtitle))}</p>',
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
        out.append(f'<p class="data-quality">{esc(quality)}</p>')
    out += _skipped(summary)
    out += ["</main>", f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    file.write("\n".join(out) + "\n")


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
    services = _items(summary.get("services"))
    listed = busiest(services, SHOWN_SERVICES)
    for service in listed:
        instances = len(service.get("instance_ids") or [])
        facts.append(("Service", f"{service.get('name', MISSING)} ({instances} instance(s))"))
    if len(listed) < len(services):
        facts.append(("Services", f"and {len(services) - len(listed):,} more (in the JSON report)"))
    if not facts:
        return [*out, no_data(), "</section>"]
    out.append('<dl class="facts">')
    out += [f"<dt>{esc(term)}</dt><dd>{esc(value)}</dd>" for term, value in facts]
    return [*out, "</dl>", "</section>"]


def _skipped(summary: Mapping[str, Any]) -> list[str]:
    """The report's last section: how many input problems were skipped, and where (``file:line: reason``)."""
    problems = _mapping(summary.get("problems"))
    count = _number(problems.get("count")) or 0
    if count <= 0:
        return []
    first = [str(p) for p in problems.get("first") or []]
    shown = f"; the first {len(first)}" if len(first) < count else ""
    items = "".join(f"<li><code>{esc(problem)}</code></li>" for problem in first)
    return [
        '<section class="panel" id="skipped">',
        "<h2>Skipped input</h2>",
        f"<p>{esc(_num(count))} problem(s) in the input were skipped{esc(shown)}:</p>",
        f"<ul>{items}</ul>",
        "</section>",
    ]


def _recommendations(value: object) -> list[str]:
    out = ['<section id="recommendations">', "<h2>Recommendations</h2>"]
    if not isinstance(value, list):
        return [*out, no_data(), "</section>"]
    items = _items(value)
    if not items:
        return [*out, no_data("No recommendations: no rule found a problem."), "</section>"]
    out.append('<div class="tools" id="evidence-tools"></div>')
    for number, item in enumerate(items, 1):
        severity = str(item.get("severity", "info"))
        color = SEVERITY_COLORS.get(severity, "#6b7280")
        evidence = _mapping(item.get("evidence"))
        out.append(f'<article class="panel card" style="--sev:{color}" data-severity="{esc(severity)}">')
        out.append(
            f'<h3><span class="badge">{esc(severity)}</span>{number}. {esc(item.get("title", MISSING))}</h3>'
        )
        if item.get("subject"):
            out.append(f"<p>Subject: <code>{esc(item['subject'])}</code></p>")
        out.append(f"<p><strong>Action:</strong> {esc(item.get('action', MISSING))}</p>")
        out.append(
            f'<p class="muted">Rule {esc(item.get("category", MISSING))}/{esc(item.get("rule", MISSING))} · '
            f"confidence {_num(item.get('confidence'))} · time at stake {_num(item.get('impact_s'), 3)} s · "
            f"<code>{esc(item.get('fingerprint', ''))}</code></p>"
        )
        out += verdict_html(item)
        out.append('<details class="evidence">')
        out.append("<summary>Evidence</summary>")
        numbers = _mapping(evidence.get("numbers"))
        if numbers:
            rows = [
                [esc(key), esc(_num(val, 3) if _number(val) is not None else val)]
                for key, val in numbers.items()
            ]
            out += table(["Number", "Value"], rows, "lr")
        facts = [
            ("Formula", evidence.get("formula")),
            ("Threshold", evidence.get("threshold")),
        ]
        window = _mapping(evidence.get("window"))
        if window:
            facts.append(("Window", f"{window.get('start', MISSING)} .. {window.get('end', MISSING)}"))
        out.append('<dl class="facts">')
        out += [f"<dt>{term}</dt><dd>{esc(val)}</dd>" for term, val in facts if val]
        for term, key in (("Trace ids", "trace_ids"), ("Span ids", "span_ids")):
            ids = [str(one) for one in evidence.get(key) or []]
            if ids:
                out.append(
                    f"<dt>{term}</dt><dd>" + ", ".join(f"<code>{esc(one)}</code>" for one in ids) + "</dd>"
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
            f"<code>{esc(location.get('file', MISSING))}:{esc(location.get('line', MISSING))}</code>",
            f"<code>{esc(location.get('function', ''))}</code>",
            esc(_num(location.get("count"))),
            esc(_num(_number(location.get("share")), 3)),
        ]
        for location in _items(item.get("locations") or [])
    ]
    if rows:
        out += table(["Code", "Function", "Calls", "Share"], rows, "llrr")
    stack = item.get("stacktrace")
    if isinstance(stack, str) and stack:
        out.append('<details class="stack"><summary>Stack of the N+1 as the agent caught it</summary>')
        out.append(f"<pre>{esc(stack)}</pre></details>")
    return out


# -- scaling: two line charts over time ---------------------------------------------------------------


def _resource_chart(page: Page, timeline: list[Mapping[str, Any]], times: list[int]) -> list[str]:
    height = 300
    bottom = height - BOTTOM
    axis = TimeAxis(times)
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
    out = svg_open(page, "resources", CHART_TITLES[0], desc, height)
    out += y_grid(TOP, bottom, 1.0, lambda v: f"{v * 100:.0f}%", LEFT - 6)
    for i in range(5):
        value = top_instances * i / 4
        y = bottom - (bottom - TOP) * i / 4
        out.append(f'<text x="{WIDTH - RIGHT + 6}" y="{coord(y + 4)}" text-anchor="start">{value:.0f}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    out += axis.ticks(bottom)
    out.append(
        f'<text x="14" y="{coord((TOP + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {coord((TOP + bottom) / 2)})">utilization</text>'
    )
    out.append(
        f'<text x="{WIDTH - 12}" y="{coord((TOP + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(90 {WIDTH - 12} {coord((TOP + bottom) / 2)})">instances</text>'
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
            f"{action} at {iso_time(entry, time_ns)}: "
            f"{_num(entry.get('current'))} → {_num(entry.get('target'))}"
            f" instance(s). {entry.get('reason', '')}"
        )
        out.append(f'<g class="marker" data-action="{esc(action)}"><title>{esc(tip)}</title>')
        out.append(
            f'<line x1="{coord(x)}" x2="{coord(x)}" y1="{TOP}" y2="{bottom}" stroke="{color}" '
            'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{coord(x + 3)}" y="{TOP + 10}" style="fill:{color}">'
            f"{arrow} {esc(_num(entry.get('target')))}</text>"
        )
        out.append("</g>")
    out.append("</g>")
    # The target instance count as a step line: a target holds until the next window.
    steps: list[str] = []
    known = [(t, _number(entry.get("target"))) for entry, t in zip(timeline, times, strict=True)]
    for i, (time_ns, target) in enumerate(known):
        if target is None:
            continue
        steps.append(f"{coord(axis.x(time_ns))},{coord(y_count(target))}")
        if i + 1 < len(known):
            steps.append(f"{coord(axis.x(known[i + 1][0]))},{coord(y_count(target))}")
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
        out += series(name, color, points, axis.x, y_util, lambda v: f"{v * 100:.1f}%")
    out.append("</svg>")
    chart_legend = legend(
        [
            ("CPU utilization", COLORS["cpu"], ""),
            ("Memory utilization", COLORS["memory"], ""),
            ("Target instances (right axis)", COLORS["target"], ""),
            ("Scale up", COLORS["scale_up"], ""),
            ("Scale down", COLORS["scale_down"], ""),
        ]
    )
    return [f"<figure><figcaption>{esc(CHART_TITLES[0])}</figcaption>", chart_legend, *out, "</figure>"]


def _latency_chart(page: Page, timeline: list[Mapping[str, Any]], times: list[int]) -> list[str]:
    height = 260
    bottom = height - BOTTOM
    axis = TimeAxis(times)
    keys = (("p50", "response_time_p50"), ("p95", "response_time_p95"), ("p99", "response_time_p99"))
    values = [_number(_mapping(entry.get("metrics")).get(key)) for entry in timeline for _, key in keys]
    known = [value * 1000 for value in values if value is not None]
    desc = f"Response time percentiles p50, p95 and p99 in milliseconds over {len(timeline)} window(s)."
    out = [f"<figure><figcaption>{esc(CHART_TITLES[1])}</figcaption>"]
    if not known:
        return [*out, no_data("No latency data."), "</figure>"]
    out.append(legend([(name, COLORS[name], "") for name, _ in keys]))
    top_ms = nice_ceiling(max(known))
    out += svg_open(page, "latency", CHART_TITLES[1], desc, height)

    def y_ms(value: float) -> float:
        return bottom - min(max(value, 0.0), top_ms) / top_ms * (bottom - TOP)

    out += y_grid(TOP, bottom, top_ms, lambda v: f"{v:g} ms", LEFT - 6)
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    out += axis.ticks(bottom)
    for name, key in keys:
        points = []
        for entry, t in zip(timeline, times, strict=True):
            seconds = _number(_mapping(entry.get("metrics")).get(key))
            points.append((t, None if seconds is None else seconds * 1000))
        out += series(name, COLORS[name], points, axis.x, y_ms, lambda v: f"{v:.1f} ms")
    return [*out, "</svg>", "</figure>"]


def _scaling(page: Page, value: object) -> list[str]:
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
        facts.append(f"service <code>{esc(scaling['service'])}</code>")
    if scaling.get("window_seconds") is not None:
        facts.append(f"windows of {esc(_num(scaling.get('window_seconds')))} s")
    if facts:
        out.append(f'<p class="muted">Scaling decisions replayed for {", ".join(facts)}.</p>')
    if advice:
        out.append(
            f'<p class="advice"><strong>Recommendation: {esc(advice.get("action", MISSING))}</strong> from '
            f"{esc(_num(advice.get('current')))} to {esc(_num(advice.get('target')))} instance(s): "
            f"{esc(advice.get('reason', ''))}</p>"
        )
    if not timeline:
        return [*out, no_data(), "</section>"]
    times = [int(entry["time_ns"]) for entry in timeline]
    out += _resource_chart(page, timeline, times)
    out += _latency_chart(page, timeline, times)
    rows = []
    for entry, time_ns in zip(timeline, times, strict=True):
        metrics = _mapping(entry.get("metrics"))
        rows.append(
            [
                esc(iso_time(entry, time_ns)),
                _num(entry.get("current")),
                _num(entry.get("target")),
                esc(entry.get("action", MISSING)),
                esc(entry.get("limited_by") or "-"),
                _pct(metrics.get("cpu_utilization")),
                _pct(metrics.get("memory_utilization")),
                _num(metrics.get("request_rate"), 1),
                _pct(metrics.get("error_rate")),
                _num(metrics.get("queue_depth"), 1),
                _ms(metrics.get("response_time_p50"), seconds=True),
                _ms(metrics.get("response_time_p95"), seconds=True),
                _ms(metrics.get("response_time_p99"), seconds=True),
                _num(entry.get("cpu_only_target")),
                esc(entry.get("reason", "")),
            ]
        )
    header = ["Time", "Current", "Target", "Action", "Limited by", "CPU", "Memory", "Req/s", "Errors"]
    header += ["Queue", "p50", "p95", "p99", "CPU-only target", "Reason"]
    out += data_table(table(header, rows, "lrrllrrrrrrrrrl"))
    return [*out, "</section>"]


def _queries(page: Page, value: object) -> list[str]:
    out = ['<section class="panel" id="top-queries">', "<h2>Database</h2>"]
    queries = _items(value)
    if not queries:
        return [*out, no_data(), "</section>"]
    ranked = sorted(queries, key=lambda query: -(_number(query.get("total_ms")) or 0.0))
    bars = [
        (str(query.get("statement", "")), _number(query.get("total_ms")), _ms(query.get("total_ms")))
        for query in ranked
    ]
    top = max([value for _, value, _ in bars if value is not None] + [0.0])
    desc = f"Total time spent in each of {len(bars)} statement(s), longest first, in milliseconds."
    out.append(f"<figure><figcaption>{esc(CHART_TITLES[2])}</figcaption>")
    out += bar_chart(page, "queries", CHART_TITLES[2], desc, bars, top)
    out.append("</figure>")
    header, rows, align = query_table(ranked, lambda value: f"<code>{esc(value)}</code>")
    out += data_table(table(header, rows, align))
    return [*out, "</section>"]


def _caches(page: Page, value: object) -> list[str]:
    out = ['<section class="panel" id="caches">', "<h2>Caches</h2>"]
    caches = _items(value)
    if not caches:
        return [*out, no_data(), "</section>"]
    bars = [
        (str(cache.get("name", MISSING)), _number(cache.get("hit_rate")), _pct(cache.get("hit_rate")))
        for cache in caches
    ]
    desc = f"Hit rate of each of {len(bars)} cache(s), from 0 to 100 percent."
    out.append(f"<figure><figcaption>{esc(CHART_TITLES[3])}</figcaption>")
    out += bar_chart(page, "caches", CHART_TITLES[3], desc, bars, 1.0, COLORS["memory"])
    out.append("</figure>")
    rows = [cache_row(cache, f"<code>{esc(cache.get('name', MISSING))}</code>") for cache in caches]
    out += data_table(table(CACHE_HEADER, rows, "lrrrrr"))
    return [*out, "</section>"]


def _threads(page: Page, value: object) -> list[str]:
    out = ['<section class="panel" id="threads">', "<h2>Thread pools</h2>"]
    pools = _items(value)
    if not pools:
        return [*out, no_data(), "</section>"]
    names = [str(pool.get("pool", MISSING)) for pool in pools]
    utilization = [
        (name, _number(pool.get("utilization")), _pct(pool.get("utilization")))
        for name, pool in zip(names, pools, strict=True)
    ]
    waits = []
    for name, pool in zip(names, pools, strict=True):
        seconds = _number(pool.get("queue_wait_p95"))
        waits.append((name, None if seconds is None else seconds * 1000, _ms(seconds, seconds=True)))
    top_wait = nice_ceiling(max([wait for _, wait, _ in waits if wait is not None] + [0.0]))
    out.append(f"<figure><figcaption>{esc(CHART_TITLES[4])}</figcaption>")
    out += bar_chart(
        page,
        "pool-utilization",
        CHART_TITLES[4],
        f"Share of busy workers in each of {len(pools)} pool(s), from 0 to 100 percent.",
        utilization,
        1.0,
        COLORS["cpu"],
    )
    out.append("</figure>")
    out.append(f"<figure><figcaption>{esc(CHART_TITLES[5])}</figcaption>")
    out += bar_chart(
        page,
        "pool-queue-wait",
        CHART_TITLES[5],
        f"95th percentile of the time a task waited in the queue, in milliseconds, for {len(pools)} pool(s).",
        waits,
        top_wait,
        COLORS["p95"],
    )
    out.append("</figure>")
    rows = [pool_row(pool, f"<code>{esc(name)}</code>") for name, pool in zip(names, pools, strict=True)]
    out += table(POOL_HEADER, rows, "lrrrrrrrr")
    return [*out, "</section>"]
