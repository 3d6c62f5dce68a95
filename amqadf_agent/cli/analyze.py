"""``amqadf-analyze``: read exported telemetry (OTLP JSON files) and report on it.

Only ``argparse`` and ``sys`` are imported at module level, so ``--help`` and usage errors answer at
once; the reader (orjson, the semantic-convention constants) is imported after the arguments parse.
The analyzer never imports the OpenTelemetry SDK or psutil: it runs where the agent is not installed.

Exit status: 0 on success; 2 when no telemetry was found in the given paths, with ``--strict`` when
an input is unreadable, or on a bad option value; 1 when the report cannot be written; 3 with
``--fail-on SEVERITY`` when a recommendation at or above that severity (info < low < medium < high <
critical) was found, after the report is written (for CI pipelines). Errors are one line on stderr,
never a traceback.

One streaming pass feeds every record to the summary, the database rules, the per-window scaling
metrics (``analyzer.windows``), the cache rules and the thread rules. With two CPUs or more, an input
of ``PIPELINE_MIN_BYTES`` or more is read by a forked child process (``analyzer.pipeline``: the same
records in the same order) while the rules run here, which made the whole run about a third faster.

``--since``/``--until`` take ISO 8601 (``2025-01-02T03:04:05Z``; no zone means UTC) or a duration
before now (``90s``, ``15m``, ``2h``, ``1d``); ``--service`` keeps one ``service.name``. The scaling
timeline uses ``--window`` seconds per window (default: 60, or 5 to 30 for data covering less than ten
minutes, so that a short run still has about ten windows; never shorter than the metric export
interval).

``--prometheus URL`` adds the metric series the rules need from a Prometheus-compatible HTTP API
(Prometheus, Thanos, Mimir, VictoriaMetrics; ``analyzer.prometheus_source``), alone or beside PATHs,
in the same pass; with it ``--since``/``--until`` default to the last hour, and ``--step`` (default 15
seconds) sets the resolution of the range queries.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing itself is not imported at run time: --help must stay fast
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, ClassVar, Protocol, TextIO

    from amqadf_agent.analyzer.model import Record
    from amqadf_agent.analyzer.otlp_reader import ReadStats
    from amqadf_agent.analyzer.recommendation import Recommendation
    from amqadf_agent.analyzer.rules.database import DatabaseRules
    from amqadf_agent.analyzer.summary import Summary

    class _Feed(Protocol):
        SPAN_KINDS: ClassVar[frozenset[int]]

        def add(self, record: Record) -> None: ...


PROG = "amqadf-analyze"
EXIT_OK = 0
EXIT_OUTPUT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_FINDINGS = 3
SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")
#: Allocations between collections of the youngest generation during the streaming pass (CPython's
#: default is 700). The pass allocates millions of short-lived objects without cycles (parsed JSON,
#: records), which reference counting frees; collecting every 700 allocations took about a quarter of
#: the run time (tests/bench/bench_analyzer.py). Cycles (sqlglot's parse trees) are still collected.
GC_YOUNG_THRESHOLD = 50_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Read OTLP JSON telemetry files (as the agent, the OpenTelemetry Collector's file exporter or "
            "the SDK's JSON file exporter write them; plain or gzip) and summarize what they hold."
        ),
        epilog=(
            "exit status: 0 ok, 1 report not written, 2 no telemetry found or (with --strict) bad input, "
            "3 a recommendation at or above --fail-on was found"
        ),
    )
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="*",
        help="a telemetry file, or a directory searched recursively for *.json, *.jsonl (and .gz); "
        "optional with --prometheus",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="also read the metric series the rules need from this Prometheus-compatible HTTP API "
        "(Prometheus, Thanos, Mimir, VictoriaMetrics); --since/--until then default to the last hour",
    )
    parser.add_argument(
        "--step",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="resolution of the --prometheus range queries in seconds (default: 15)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "markdown", "html"),
        default="text",
        help="report format: text for a terminal, json for machines (schema_version 2), markdown, "
        "or html (one self-contained file with charts) (default: text)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument(
        "--slow-query-ms",
        type=float,
        default=500.0,
        metavar="MS",
        help="a statement whose p95 reaches MS milliseconds is a slow query (default: 500)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="length of a scaling window in seconds (default: 60, or 5-30 when the data covers less "
        "than 10 minutes)",
    )
    parser.add_argument(
        "--since", metavar="T", help="only data at or after T: ISO 8601, or a duration before now (15m, 2h)"
    )
    parser.add_argument(
        "--until", metavar="T", help="only data at or before T: ISO 8601, or a duration before now"
    )
    parser.add_argument("--service", metavar="NAME", help="only the telemetry of this service.name")
    parser.add_argument(
        "--cpu-count",
        type=int,
        metavar="N",
        help="logical CPUs that cap CPU-bound worker pools, overriding system.cpu.logical.count "
        "from the telemetry",
    )
    parser.add_argument(
        "--fail-on",
        choices=SEVERITY_NAMES,
        metavar="SEVERITY",
        help="exit 3 when a recommendation of SEVERITY or above exists (info, low, medium, high, critical)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable file or line (exit 2) instead of skipping and counting it",
    )
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``amqadf-analyze``; returns the exit status (``--help`` and usage errors exit via argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and args.prometheus is None:
        parser.error("give at least one PATH, or --prometheus URL")

    # Imported here, not at the top, so that --help stays fast.
    from amqadf_agent.analyzer.otlp_reader import ReadStats, read
    from amqadf_agent.analyzer.rules.cache import CacheRules
    from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules
    from amqadf_agent.analyzer.rules.scaling import analyze_scaling
    from amqadf_agent.analyzer.rules.threads import ThreadRuleConfig, ThreadRules
    from amqadf_agent.analyzer.summary import summarize, top_queries
    from amqadf_agent.analyzer.windows import DEFAULT_WINDOW_S, WindowAggregator
    from amqadf_agent.errors import AmqadfError

    if not args.slow_query_ms > 0:
        _error("--slow-query-ms must be a positive number")
        return EXIT_BAD_INPUT
    if args.window is not None and not 0 < args.window < 1e7:
        _error("--window must be a positive number of seconds")
        return EXIT_BAD_INPUT
    if not 0 < args.step < 1e7:
        _error("--step must be a positive number of seconds")
        return EXIT_BAD_INPUT
    if args.cpu_count is not None and args.cpu_count <= 0:
        _error("--cpu-count must be a positive number of CPUs")
        return EXIT_BAD_INPUT
    try:
        since_ns = parse_time(args.since) if args.since else None
        until_ns = parse_time(args.until) if args.until else None
    except ValueError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    prometheus: Iterable[Record] = ()
    if args.prometheus is not None:
        import time

        from amqadf_agent.analyzer.prometheus_source import read_prometheus

        if until_ns is None:
            until_ns = time.time_ns()
        if since_ns is None:
            since_ns = until_ns - 3600 * 1_000_000_000
        try:
            prometheus = read_prometheus(
                args.prometheus,
                start=since_ns / 1e9,
                end=until_ns / 1e9,
                step=args.step,
                service=args.service,
            )
        except AmqadfError as error:
            _error(str(error))
            return error.exit_code
    stats = ReadStats()
    database = DatabaseRules(DatabaseRuleConfig(slow_query_s=args.slow_query_ms / 1000))
    scope = {"service": args.service, "since_ns": since_ns, "until_ns": until_ns}
    windows = WindowAggregator(args.window, **scope)
    caches = CacheRules(**scope)
    threads = ThreadRules(
        ThreadRuleConfig(window_s=args.window or DEFAULT_WINDOW_S, cpu_count=args.cpu_count), **scope
    )
    tap = _Tap(database, (windows, caches, threads), args.service, since_ns, until_ns)
    try:
        # One pass: the rules see every record on its way to the summary.
        records: Iterable[Record] = ()
        if args.paths and _wants_pipeline(args.paths):
            from amqadf_agent.analyzer.pipeline import read_pipelined

            records = read_pipelined(args.paths, strict=args.strict, stats=stats)
        elif args.paths:
            records = read(args.paths, strict=args.strict, stats=stats)
        if args.prometheus is not None:
            import itertools

            records = itertools.chain(records, prometheus)
        if _wants_progress(args.paths):
            records = _progress(records, stats, sys.stderr)
        import gc

        saved_gc = gc.get_threshold()
        if saved_gc[0]:  # 0: automatic collection is off, leave it so
            gc.set_threshold(max(saved_gc[0], GC_YOUNG_THRESHOLD), *saved_gc[1:])
        try:
            summary = summarize(tap.run(records), stats)
        finally:
            gc.set_threshold(*saved_gc)
        recommendations = database.recommendations()
        timeline = windows.windows()  # with no --window, this settles windows.window_s
        scaling = analyze_scaling(
            timeline,
            window_seconds=int(windows.window_s)
            if float(windows.window_s).is_integer()
            else round(windows.window_s),
            service=args.service,
            database_findings=recommendations,
            db_services=tap.db_services,
        )
        recommendations = sorted(
            [
                *recommendations,
                *scaling.recommendations,
                *caches.recommendations(),
                *threads.recommendations(),
            ],
            key=lambda r: r.sort_key(),
        )
        sections = {
            "scaling": scaling.to_json(),
            "cache": [cache.to_dict() for cache in caches.stats()],
            "threads": threads.to_json(),
            "top_queries": top_queries(database.statements()),
        }
    except AmqadfError as error:
        _error(str(error))
        return error.exit_code
    except OSError as error:  # the reader turns input errors into problems; this is a last resort
        _error(str(error))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130

    if summary.records == 0:
        if stats.problems:
            more = stats.problem_count - 1
            _error(stats.problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))
        else:
            where = []
            if args.paths:
                where.append(
                    f"{', '.join(args.paths)} ({stats.files_read} file(s), {stats.lines_read} line(s) read)"
                )
            if args.prometheus is not None:
                where.append(f"the metric series the rules need from {args.prometheus}")
            _error(f"no telemetry records in {' nor in '.join(where)}")
        return EXIT_BAD_INPUT

    try:
        if args.output is None:
            _write(args.format, summary, recommendations, sections, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                _write(args.format, summary, recommendations, sections, out)
    except BrokenPipeError:  # `amqadf-analyze ... | head`: not an error worth a message
        _silence_stdout()
        return EXIT_OUTPUT_ERROR
    except OSError as error:
        target = args.output if args.output is not None else "stdout"
        _error(f"cannot write {target}: {error.strerror or error}")
        return EXIT_OUTPUT_ERROR

    if summary.problem_count:
        _error(skipped_warning(summary.problem_count, summary.problems))
    if args.fail_on is not None:
        floor = SEVERITY_NAMES.index(args.fail_on)
        failing = [r for r in recommendations if SEVERITY_NAMES.index(r.severity) >= floor]
        if failing:
            _error(f"{len(failing)} recommendation(s) at or above {args.fail_on}: exit {EXIT_FINDINGS}")
            return EXIT_FINDINGS
    return EXIT_OK


#: How many ``file:line: reason`` locations the final warning on stderr names.
WARNING_LOCATIONS = 3


def skipped_warning(count: int, problems: tuple[str, ...] | list[str]) -> str:
    """The last line on stderr when input was skipped: the count and the first few locations."""
    shown = list(problems[:WARNING_LOCATIONS])
    more = count - len(shown)
    return (
        f"warning: skipped {count} problem(s) in the input: "
        + "; ".join(shown)
        + (f" (and {more} more; the report ends with the list)" if more > 0 else "")
    )


def use_colour(out: object) -> bool:
    """Colour the text report: only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    import os

    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``--since``/``--until``: ISO 8601 (no zone = UTC) or a duration before now (``15m``, ``2h``),
    as ns since the epoch. ValueError with a one-line message otherwise."""
    import datetime
    import re
    import time

    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", value)
    if match:
        factor = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(float(match.group(1)) * factor * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use ISO 8601 (2025-01-02T03:04:05Z) or a duration like 15m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1_000_000) * 1000


class _Tap:
    """Passes records through, feeding the rules on the way, and applies --service/--since/--until
    to what the summary and the database rules see (the metric rules apply them themselves, since
    cumulative points before --since are their baselines)."""

    def __init__(
        self,
        database: DatabaseRules,
        feeds: tuple[_Feed, ...],
        service: str | None,
        since_ns: int | None,
        until_ns: int | None,
    ) -> None:
        self.database = database
        #: Every record goes to each feed's ``add``, except spans of a kind it does not read (most spans:
        #: the metric rules read server spans only), which it is not even called for.
        self.feeds = tuple(feed.add for feed in feeds)
        self.span_feeds: dict[int, tuple[Callable[[Record], None], ...]] = {
            kind: tuple(feed.add for feed in feeds if kind in feed.SPAN_KINDS)
            for kind in {kind for feed in feeds for kind in feed.SPAN_KINDS}
        }
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        #: Services whose db client spans reached the database rules.
        self.db_services: set[str] = set()

    def _inside(self, time_ns: int) -> bool:
        if self.since_ns is not None and time_ns < self.since_ns:
            return False
        return not (self.until_ns is not None and time_ns > self.until_ns)

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        import dataclasses

        from amqadf_agent.analyzer.model import (
            SPAN_KIND_CLIENT,
            LogRecord,
            MetricRecord,
            SpanRecord,
            service_name,
        )

        add = self.database.add_span
        feeds = self.feeds
        span_feeds = self.span_feeds
        no_feeds: tuple[Callable[[Record], None], ...] = ()
        service = self.service
        timed = self.since_ns is not None or self.until_ns is not None
        last_resource: object = None
        keep = True
        name = ""
        for record in records:
            for feed in span_feeds.get(record.kind, no_feeds) if type(record) is SpanRecord else feeds:
                feed(record)
            if record.resource is not last_resource:
                last_resource = record.resource
                name = service_name(record.resource)
                keep = service is None or name == service
            if not keep:
                continue
            if type(record) is SpanRecord:
                if timed and not self._inside(record.end_ns):
                    continue
                if record.kind == SPAN_KIND_CLIENT:
                    before = self.database.db_calls
                    add(record)
                    if self.database.db_calls != before:
                        self.db_services.add(name)
            elif timed and type(record) is MetricRecord:
                points = tuple(p for p in record.points if self._inside(p.time_ns))
                if not points:
                    continue
                if len(points) != len(record.points):
                    record = dataclasses.replace(record, points=points)
            elif timed and type(record) is LogRecord and not self._inside(record.timestamp_ns):
                continue
            yield record


#: Inputs smaller than this are read too fast for a progress line to help.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
#: Inputs from this size on are read by a second process (``analyzer.pipeline``) when there is a
#: second CPU: forking costs a few milliseconds, reading 16 MB about 0.1 s.
PIPELINE_MIN_BYTES = 16 * 1024 * 1024


def _wants_pipeline(paths: list[str]) -> bool:
    """Read in a second process: only with two CPUs or more for this process, and a large input."""
    import os

    if not hasattr(os, "fork"):
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cpus >= 2 and _input_reaches(paths, PIPELINE_MIN_BYTES)


def _input_reaches(paths: list[str], size: int) -> bool:
    """True when the files at ``paths`` (directories searched) hold at least ``size`` bytes; what
    cannot be read counts for nothing (the reader reports it)."""
    import os

    def size_of(path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    total = 0
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, files in os.walk(path):
                total += sum(size_of(os.path.join(root, name)) for name in files)
        elif os.path.isfile(path):
            total += size_of(path)
        if total >= size:
            return True
    return False


def _wants_progress(paths: list[str]) -> bool:
    """A progress line on stderr: only on a terminal, and only for large inputs."""
    if not paths or not sys.stderr.isatty():
        return False
    return _input_reaches(paths, PROGRESS_MIN_BYTES)


def _progress(records: Iterable[Record], stats: ReadStats, err: TextIO) -> Iterator[Record]:
    """Pass records through, redrawing one line on ``err`` at most 4 times a second."""
    import time

    last = 0.0
    count = 0
    for count, record in enumerate(records, 1):
        if not count & 1023 and (now := time.monotonic()) - last > 0.25:
            last = now
            err.write(
                f"\rreading: {stats.files_read} file(s), {stats.lines_read:,} line(s), {count:,} record(s)"
            )
            err.flush()
        yield record
    err.write(f"\rread {stats.files_read} file(s), {stats.lines_read:,} line(s), {count:,} record(s)\n")
    err.flush()


def _write(
    fmt: str,
    summary: Summary,
    recommendations: list[Recommendation],
    sections: dict[str, Any],
    out: TextIO,
) -> None:
    """Write the report in ``fmt`` to ``out``."""
    import json

    from amqadf_agent.analyzer.summary import (
        render_analysis_text,
        render_recommendations,
        render_skipped_text,
        render_text,
        to_json,
    )

    if fmt in ("json", "markdown", "html"):
        data = to_json(summary)
        data["recommendations"] = [recommendation.to_dict() for recommendation in recommendations]
        data.update(sections)
        if fmt == "json":
            out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        elif fmt == "markdown":
            from amqadf_agent.analyzer.render_markdown import render as render_markdown

            render_markdown(data, out)
        else:
            from amqadf_agent.analyzer.render_html import render as render_html

            render_html(data, out)
    else:
        render_text(summary, out)
        render_analysis_text(sections, out)
        render_recommendations(recommendations, out, colour=use_colour(out))
        render_skipped_text(summary, out)
    out.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the interpreter's final flush stays quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
