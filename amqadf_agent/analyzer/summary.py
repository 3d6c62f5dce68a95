"""What a set of telemetry files holds, at a glance: services, time range, counts, metric names, problems.

It is the first thing ``amqadf-analyze`` prints, so a user can see whether the input is what they meant
to analyze before reading any recommendation. ``summarize`` consumes the records in one pass and keeps
only counters and distinct names, so it runs in bounded memory over any amount of telemetry.

JSON report (``amqadf-analyze --format json``; its whole schema, version 3, is in docs/analyzer.md,
"JSON schema"): ``to_json`` gives the top of it, ``{"schema_version": 3, "summary": {...}}``, beside
which the analysis run (``analyzer.run``) puts ``recommendations``, ``scaling``, ``cache``,
``threads``, ``top_queries`` (``top_queries`` here), ``data_quality``, ``impact`` and ``top_routes``.
Times are ISO 8601 UTC with ``Z``; durations in seconds. The ``"summary"`` object::

    "summary": {
      "input": {"files": int, "lines": int},
      "time_range": {"start_ns", "end_ns", "start", "end", "duration_s"} | null,
      "counts": {"spans", "metric_records", "data_points", "logs"},
      "services": [{"name", "instance_ids": [str], "spans", "metric_records", "logs"}],
      "metric_names": [str],
      "problems": {"count": int, "first": [str]},
      "duplicates": {...}}        # put in by the analysis run (analyzer.dedup)

``render_analysis_text`` prints the other sections of that dict for a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from amqadf_agent.analyzer.model import (
    LogRecord,
    MetricRecord,
    Record,
    SpanRecord,
    service_instance_id,
    service_name,
)
from amqadf_agent.analyzer.otlp_reader import ReadStats
from amqadf_agent.analyzer.recommendation import Recommendation, format_time, time_window
from amqadf_agent.analyzer.report_values import SHOWN_METRIC_NAMES, SHOWN_SERVICES, busiest, shown

if TYPE_CHECKING:
    from amqadf_agent.analyzer.rules.database_findings import StatementStats

#: Version of the ``to_json`` layout; bumped when a field changes meaning or goes away.
SCHEMA_VERSION: Final = 3


@dataclass(slots=True)
class ServiceSummary:
    """One service (``service.name``): its instances and how many records it sent."""

    name: str
    #: Distinct ``service.instance.id`` values, sorted (empty when the producer set none).
    instance_ids: tuple[str, ...]
    spans: int
    metric_records: int
    logs: int


@dataclass(slots=True)
class Summary:
    """The overview of one read: see ``summarize``."""

    files_read: int
    lines_read: int
    #: ``service.name`` → its summary, in name order.
    services: dict[str, ServiceSummary]
    #: Earliest and latest timestamps seen (ns since the epoch), or ``None`` when there were none.
    start_ns: int | None
    end_ns: int | None
    spans: int
    metric_records: int
    data_points: int
    logs: int
    metric_names: tuple[str, ...]
    problem_count: int
    problems: tuple[str, ...] = field(default=())

    @property
    def records(self) -> int:
        """Records of every signal."""
        return self.spans + self.metric_records + self.logs


class _ServiceCounts:
    __slots__ = ("instances", "logs", "metric_records", "spans")

    def __init__(self) -> None:
        self.instances: set[str] = set()
        self.spans = 0
        self.metric_records = 0
        self.logs = 0


def summarize(records: Iterable[Record], stats: ReadStats) -> Summary:
    """Consume ``records`` (typically ``otlp_reader.read(..., stats=stats)``) and summarize them.

    ``stats`` is read after the records are exhausted, so it may be the one the reader is filling.
    The time range takes span start/end, metric point times and log times; a cumulative point's
    start time is left out on purpose: it is when the process started counting, not an observation.
    """
    services: dict[str, _ServiceCounts] = {}
    # Resources are shared by their records: look each one up once, not once per record.
    last_resource: object = None
    current = _ServiceCounts()
    start: int | None = None
    end: int | None = None
    spans = metric_records = data_points = logs = 0
    metric_names: set[str] = set()

    for record in records:
        if record.resource is not last_resource:
            last_resource = record.resource
            name = service_name(record.resource)
            found = services.get(name)
            if found is None:
                found = services[name] = _ServiceCounts()
            current = found
            instance = service_instance_id(record.resource)
            if instance:
                current.instances.add(instance)
        if type(record) is SpanRecord:
            spans += 1
            current.spans += 1
            low, high = record.start_ns, record.end_ns
        elif type(record) is MetricRecord:
            metric_records += 1
            current.metric_records += 1
            metric_names.add(record.name)
            data_points += len(record.points)
            times = [point.time_ns for point in record.points if point.time_ns > 0]
            if not times:
                continue
            low, high = min(times), max(times)
        elif type(record) is LogRecord:
            logs += 1
            current.logs += 1
            low = high = record.timestamp_ns
        else:  # pragma: no cover - the reader yields the three kinds only
            continue
        if low > 0 and (start is None or low < start):
            start = low
        if high > 0 and (end is None or high > end):
            end = high
    if start is not None and end is None:
        end = start
    if end is not None and start is None:
        start = end

    return Summary(
        files_read=stats.files_read,
        lines_read=stats.lines_read,
        services={
            name: ServiceSummary(name, tuple(sorted(c.instances)), c.spans, c.metric_records, c.logs)
            for name, c in sorted(services.items())
        },
        start_ns=start,
        end_ns=end,
        spans=spans,
        metric_records=metric_records,
        data_points=data_points,
        logs=logs,
        metric_names=tuple(sorted(metric_names)),
        problem_count=stats.problem_count,
        problems=tuple(stats.problems),
    )


def format_duration(seconds: float) -> str:
    """A duration the way a person reads it: ``2h 5m 3s``, ``4.2s``, ``15ms``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value]
    return " ".join(shown[:3])


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def render_text(summary: Summary, file: TextIO) -> None:
    """Write the summary as a plain-text report.

    Every ``render_*`` here passes the strings of the data through ``shown``: their control
    characters are escaped, so the report itself is the only thing that writes to the terminal."""
    w = file.write
    w("Telemetry summary\n")
    w(
        f"  input:      {_plural(summary.files_read, 'file')}, {_plural(summary.lines_read, 'line')}"
        f", {_plural(summary.problem_count, 'problem')}\n"
    )
    if summary.start_ns is not None and summary.end_ns is not None:
        duration = format_duration((summary.end_ns - summary.start_ns) / 1e9)
        w(f"  time range: {format_time(summary.start_ns)} .. {format_time(summary.end_ns)} ({duration})\n")
    else:
        w("  time range: (no timestamps)\n")
    w(
        f"  records:    {_plural(summary.spans, 'span')}, {_plural(summary.metric_records, 'metric record')}"
        f" ({_plural(summary.data_points, 'data point')}), {_plural(summary.logs, 'log record')}\n"
    )

    w(f"\nServices ({len(summary.services)})\n")
    if not summary.services:
        w("  (none)\n")
    listed = busiest(list(summary.services.values()), SHOWN_SERVICES)
    width = max((len(shown(service.name)) for service in listed), default=0)
    for service in listed:
        instances = _plural(len(service.instance_ids), "instance")
        if not service.instance_ids:
            instances = "no service.instance.id"
        else:
            first = ", ".join(shown(instance) for instance in service.instance_ids[:5])
            more = f", +{len(service.instance_ids) - 5} more" if len(service.instance_ids) > 5 else ""
            instances += f" ({first}{more})"
        w(
            f"  {shown(service.name):<{width}}  {_plural(service.spans, 'span')}, "
            f"{_plural(service.metric_records, 'metric record')}, {_plural(service.logs, 'log record')}; "
            f"{instances}\n"
        )

    if len(listed) < len(summary.services):
        w(f"  ... and {len(summary.services) - len(listed):,} more (every one in --format json)\n")

    w(f"\nMetrics ({len(summary.metric_names)})\n")
    if not summary.metric_names:
        w("  (none)\n")
    for name in summary.metric_names[:SHOWN_METRIC_NAMES]:
        w(f"  {shown(name)}\n")
    if len(summary.metric_names) > SHOWN_METRIC_NAMES:
        w(f"  ... and {len(summary.metric_names) - SHOWN_METRIC_NAMES:,} more (every one in --format json)\n")


def render_skipped_text(summary: Summary, file: TextIO) -> None:
    """The report's last section: how many input problems were skipped, and where (``file:line: reason``);
    nothing when none were."""
    if not summary.problem_count:
        return
    shown_note = "" if len(summary.problems) == summary.problem_count else f", first {len(summary.problems)}"
    file.write(f"\nSkipped input ({summary.problem_count} problem(s) skipped{shown_note})\n")
    for problem in summary.problems:
        file.write(f"  {shown(problem)}\n")


def to_json(summary: Summary) -> dict[str, Any]:
    """The summary as plain JSON-ready data, with ``schema_version`` for consumers to check."""
    time_range: dict[str, Any] | None = None
    if summary.start_ns is not None and summary.end_ns is not None:
        time_range = {
            **time_window(summary.start_ns, summary.end_ns),
            "duration_s": (summary.end_ns - summary.start_ns) / 1e9,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "summary": _summary_json(summary, time_range),
    }


def _summary_json(summary: Summary, time_range: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "input": {"files": summary.files_read, "lines": summary.lines_read},
        "time_range": time_range,
        "counts": {
            "spans": summary.spans,
            "metric_records": summary.metric_records,
            "data_points": summary.data_points,
            "logs": summary.logs,
        },
        "services": [
            {
                "name": service.name,
                "instance_ids": list(service.instance_ids),
                "spans": service.spans,
                "metric_records": service.metric_records,
                "logs": service.logs,
            }
            for service in summary.services.values()
        ],
        "metric_names": list(summary.metric_names),
        "problems": {"count": summary.problem_count, "first": list(summary.problems)},
    }


#: ANSI SGR codes of the severities (``colour=True``): info dim, low cyan, medium yellow, high red,
#: critical bold red on a terminal.
SEVERITY_COLOURS: Final = {"info": "2", "low": "36", "medium": "33", "high": "31", "critical": "1;31"}
_RESET: Final = "\x1b[0m"


def _paint(text: str, sgr: str, colour: bool) -> str:
    return f"\x1b[{sgr}m{text}{_RESET}" if colour else text


def render_recommendations(
    recommendations: list[Recommendation], file: TextIO, *, colour: bool = False
) -> None:
    """Write the recommendations (already ranked) as a plain-text section; ``colour``: ANSI colours
    (the heading bold, each severity its colour), for a terminal only (``report.use_colour``)."""
    w = file.write
    w("\n" + _paint(f"Recommendations ({len(recommendations)})", "1", colour) + "\n")
    if not recommendations:
        w("  (none)\n")
    for number, recommendation in enumerate(recommendations, 1):
        evidence = recommendation.evidence
        severity = _paint(
            f"[{recommendation.severity}]", SEVERITY_COLOURS.get(recommendation.severity, "0"), colour
        )
        w(f"  {number}. {severity} {shown(recommendation.title)}\n")
        rule = shown(f"{recommendation.category}/{recommendation.rule}")
        w(f"     rule:       {rule} ({shown(recommendation.fingerprint)})\n")
        if recommendation.category == "database":
            w(f"     statement:  {shown(recommendation.subject)}\n")
        numbers = ", ".join(f"{shown(key)}={shown(value)}" for key, value in evidence.numbers.items())
        w(f"     numbers:    {numbers}\n")
        w(f"     threshold:  {shown(evidence.threshold)}\n")
        w(f"     confidence: {recommendation.confidence:.2f}\n")
        if evidence.trace_ids:
            w(f"     traces:     {shown(', '.join(evidence.trace_ids))}\n")
        if evidence.span_ids:
            w(f"     spans:      {shown(', '.join(evidence.span_ids))}\n")
        for index, location in enumerate(recommendation.locations):
            label = "code:" if index == 0 else ""
            w(f"     {label:<11} {shown(str(location))} ({location.count:,} calls, {location.share:.0%})\n")
        if recommendation.stacktrace:
            w("     stack:\n")
            for line in recommendation.stacktrace.splitlines():
                w(f"       {shown(line.strip())}\n")
        w(f"     action:     {shown(recommendation.action)}\n")


def top_queries(statements: Iterable[StatementStats], limit: int = 10) -> list[dict[str, Any]]:
    """The ``top_queries`` section: statements by total time (``DatabaseRules.statements()`` order)."""
    ranked = sorted(statements, key=lambda s: (-s.total_s, s.info.normalized))[:limit]
    return [
        {
            "statement": stats.info.normalized,
            "calls": stats.calls,
            "total_ms": round(stats.total_s * 1000, 3),
            "mean_ms": round(stats.mean_s * 1000, 3),
            "p95_ms": round(stats.p95_s * 1000, 3),
            "services": sorted(stats.services),
        }
        for stats in ranked
    ]


def _num(value: object, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def render_analysis_text(data: dict[str, Any], file: TextIO) -> None:
    """Write the ``scaling``, ``cache``, ``threads`` and ``top_queries`` sections of ``data`` as text."""
    w = file.write
    scaling = data.get("scaling") or {}
    timeline = scaling.get("timeline") or []
    service = shown(scaling.get("service") or "all services")
    w(f"\nAutoscaling ({service}, {scaling.get('window_seconds')}s windows, {len(timeline)} windows)\n")
    if not timeline:
        w("  (no data)\n")
    for step in timeline:
        m = step["metrics"]
        w(
            f"  {shown(step['time'])}  {step['current']}->{step['target']} {shown(step['action']):<10} "
            f"cpu={_num(m['cpu_utilization'], '.2f')} rps={_num(m['request_rate'], '.1f')} "
            f"err={_num(m['error_rate'], '.3f')} p95={_num(m['response_time_p95'], '.3f')}s "
            f"cpu-only-hpa={step['cpu_only_target']}\n"
        )
    recommendation = scaling.get("recommendation")
    if recommendation:
        w(f"  now: {shown(recommendation['action'])} {recommendation['current']} -> "
          f"{recommendation['target']}: {shown(recommendation['reason'])}\n")  # fmt: skip
    if scaling.get("insufficient_data"):
        w(f"  no decision: {shown(scaling['insufficient_data']['reason'])}\n")
    for idle in scaling.get("non_serving_instances") or []:
        cpu, memory = _num(idle["cpu_utilization"], ".2f"), _num(idle["memory_utilization"], ".2f")
        w(
            f"  not counted (served no request): {shown(idle['instance'])} ({shown(idle['service'])}), "
            f"cpu={cpu} memory={memory}\n"
        )
    _listing(w, "Caches", data.get("cache"), _cache_line)
    _listing(w, "Worker pools", data.get("threads"), _pool_line)
    _listing(w, "Top queries by total time", data.get("top_queries"), _query_line)


def _listing(
    w: Callable[[str], object], title: str, entries: list[dict[str, Any]] | None, line: Callable[[Any], str]
) -> None:
    """A titled section of one line per entry, with its count; ``(none)`` when it is empty."""
    entries = entries or []
    w(f"\n{title} ({len(entries)})\n")
    if not entries:
        w("  (none)\n")
    for entry in entries:
        w(line(entry))


def _cache_line(cache: dict[str, Any]) -> str:
    return (
        f"  {shown(cache['name'])}: hit rate {cache['hit_rate']:.1%} of {cache['requests']} requests, "
        f"{cache['evictions']} evictions, {cache['expirations']} expirations, "
        f"size {cache['size']}/{cache['max_size']}\n"
    )


def _pool_line(pool: dict[str, Any]) -> str:
    return (
        f"  {shown(pool['pool'])}: {pool['max_workers']} workers, utilization {pool['utilization']:.1%}, "
        f"queue wait p95 {_num(pool['queue_wait_p95'])}s, {pool['throughput']:.2f} tasks/s, "
        f"mean latency {_num(pool['latency_mean'])}s, "
        f"Little's law L={_num(pool['littles_law_concurrency'])}, "
        f"recommended {_num(pool['recommended'], 'd')}\n"
    )


def _query_line(query: dict[str, Any]) -> str:
    statement = shown(query["statement"])
    statement = statement if len(statement) <= 90 else statement[:87] + "..."
    head = f"  {query['total_ms']:>10.1f} ms  {query['calls']:>6} calls  p95 {query['p95_ms']:.1f} ms"
    return f"{head}  {statement}\n"
