"""``amqadf-analyze``: read exported telemetry (OTLP JSON files) and report on it.

Only ``argparse`` and ``sys`` are imported at module level, so ``--help`` and usage errors answer at
once; the reader (orjson, the semantic-convention constants) is imported after the arguments parse.
The analyzer never imports the OpenTelemetry SDK or psutil: it runs where the agent is not installed.

Exit status: 0 on success; 2 when no telemetry was found in the given paths, with ``--strict`` when
an input is unreadable, or on a bad option value; 1 when the report cannot be written; 3 with
``--fail-on SEVERITY`` when a recommendation at or above that severity (info < low < medium < high <
critical) was found, after the report is written (for CI pipelines). Errors are one line on stderr,
never a traceback.

The analysis itself is a library call (``analyzer.run.analyze``) and the report is written by
``analyzer.report``; this module parses and checks the arguments and turns errors into exit codes.

``--since``/``--until`` take ISO 8601 (``2025-01-02T03:04:05Z``; no zone means UTC) or a duration
before now (``90s``, ``15m``, ``2h``, ``1d``); ``--service`` keeps one ``service.name``. The scaling
timeline uses ``--window`` seconds per window (default: 60, or 5 to 30 for data covering less than ten
minutes, so that a short run still has about ten windows; never shorter than the metric export
interval).

``--prometheus URL`` adds the metric series the rules need from a Prometheus-compatible HTTP API
(Prometheus, Thanos, Mimir, VictoriaMetrics; ``analyzer.prometheus_source``), alone or beside PATHs,
in the same pass; with it ``--since``/``--until`` default to the last hour, and ``--step`` (default 15
seconds) sets the resolution of the range queries.

``--explain DSN`` asks a database's planner whether each index candidate would be used
(``analyzer.explain``: read-only, hypopg's hypothetical indexes on PostgreSQL, an in-memory copy of the
schema for SQLite); without it index candidates are labelled unverified.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing itself is not imported at run time: --help must stay fast
if TYPE_CHECKING:
    from amqadf_agent.analyzer.otlp_reader import ReadStats


PROG = "amqadf-analyze"
EXIT_OK = 0
EXIT_OUTPUT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_FINDINGS = 3
SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Read OTLP JSON telemetry files (as the agent, the OpenTelemetry Collector's file exporter or "
            "the SDK's JSON file exporter write them; plain or gzip) and summarize what they hold."
        ),
        epilog=(
            "exit status: 0 ok, 1 report not written, 2 no telemetry found or (with --strict) bad input, "
            "3 a recommendation at or above --fail-on was found, or a regression against --baseline; "
            f"`{PROG} diff BASE.json NEW.json` compares two JSON reports"
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
        choices=("text", "json", "markdown", "html", "sarif"),
        default="text",
        help="report format: text for a terminal, json for machines (schema_version 3), markdown, "
        "html (one self-contained file with charts), or sarif (SARIF 2.1.0, for code scanning) "
        "(default: text)",
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
        "--source-root",
        action="append",
        default=[],
        metavar="DIR",
        help="with --format sarif: a directory the application ran from (/app in its container), whose "
        "files are named relative to it, as code scanning finds them in the checkout (repeatable)",
    )
    parser.add_argument(
        "--baseline",
        metavar="BASE.json",
        help="compare with this JSON report of an earlier run: exit 3 on a new or regressed finding or a "
        "route whose p95 or error rate regressed (the differences on stderr)",
    )
    parser.add_argument(
        "--explain",
        metavar="DSN",
        help="ask this database's planner whether each index candidate would be used (read-only): a "
        "postgresql:// URL (with hypopg; the password is best left to PGPASSWORD) or a SQLite file",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable file or line (exit 2) instead of skipping and counting it",
    )
    return parser


def diff_main(argv: list[str]) -> int:
    """``amqadf-analyze diff BASE.json NEW.json``: 0 no regression, 3 a regression, 2 a bad report."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} diff",
        description="Compare two JSON reports (--format json): new, resolved, regressed and unchanged "
        "findings by fingerprint, and routes whose p95 or error rate regressed.",
        epilog="exit status: 0 no regression, 1 output not written, 2 a file is not a JSON report, "
        "3 a new or regressed finding or a route regression",
    )
    parser.add_argument("base", metavar="BASE.json", help="the baseline report")
    parser.add_argument("new", metavar="NEW.json", help="the report to check")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the diff to FILE instead of stdout")
    args = parser.parse_args(argv)
    from amqadf_agent.analyzer.diff import ReportError, diff_reports, load_report

    try:
        changes = diff_reports(load_report(args.base), load_report(args.new))
    except ReportError as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    if args.format == "json":
        import json

        text = json.dumps(changes.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        text = "\n".join(changes.text_lines()) + "\n"
    try:
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OUTPUT_ERROR
    except OSError as error:
        _error(f"cannot write {args.output or 'stdout'}: {error.strerror or error}")
        return EXIT_OUTPUT_ERROR
    return EXIT_FINDINGS if changes.regression else EXIT_OK


def _error(message: str) -> None:
    """One line on stderr; control characters of the data in it (a file name, say) escaped."""
    from amqadf_agent.analyzer.report_values import shown

    print(f"{PROG}: {shown(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``amqadf-analyze``; returns the exit status (``--help`` and usage errors exit via argparse)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["diff"]:
        return diff_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and args.prometheus is None:
        parser.error("give at least one PATH, or --prometheus URL")

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
    baseline = None
    if args.baseline is not None:
        from amqadf_agent.analyzer.diff import ReportError, load_report

        try:
            baseline = load_report(args.baseline)
        except ReportError as error:
            _error(f"--baseline {error}")
            return EXIT_BAD_INPUT
    try:
        since_ns = parse_time(args.since) if args.since else None
        until_ns = parse_time(args.until) if args.until else None
    except ValueError as error:
        _error(str(error))
        return EXIT_BAD_INPUT

    # Imported here, not at the top, so that --help stays fast.
    from amqadf_agent.analyzer.run import AnalysisOptions, analyze
    from amqadf_agent.errors import AmqadfError

    options = AnalysisOptions(
        paths=args.paths,
        prometheus=args.prometheus,
        step=args.step,
        slow_query_ms=args.slow_query_ms,
        window=args.window,
        since_ns=since_ns,
        until_ns=until_ns,
        service=args.service,
        cpu_count=args.cpu_count,
        strict=args.strict,
        explain=args.explain,
    )
    try:
        analysis = analyze(options, progress=sys.stderr)
    except AmqadfError as error:
        _error(str(error))
        return error.exit_code
    except OSError as error:  # the reader turns input errors into problems; this is a last resort
        _error(str(error))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130

    summary = analysis.summary
    if summary.records == 0:
        _error(_no_records_message(args.paths, args.prometheus, analysis.stats))
        return EXIT_BAD_INPUT

    from amqadf_agent.analyzer.report import write_report

    try:
        if args.output is None:
            write_report(analysis, args.format, sys.stdout, args.source_root)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                write_report(analysis, args.format, out, args.source_root)
    except BrokenPipeError:  # `amqadf-analyze ... | head`: not an error worth a message
        _silence_stdout()
        return EXIT_OUTPUT_ERROR
    except OSError as error:
        target = args.output if args.output is not None else "stdout"
        _error(f"cannot write {target}: {error.strerror or error}")
        return EXIT_OUTPUT_ERROR

    if summary.problem_count:
        _error(skipped_warning(summary.problem_count, summary.problems))
    if baseline is not None:
        from amqadf_agent.analyzer.diff import diff_reports
        from amqadf_agent.analyzer.report import report_data

        changes = diff_reports(baseline, report_data(analysis))
        for line in changes.text_lines():
            _error(line.strip())
        if changes.regression:
            _error(f"a regression against the baseline {args.baseline}: exit {EXIT_FINDINGS}")
            return EXIT_FINDINGS
    if args.fail_on is not None:
        floor = SEVERITY_NAMES.index(args.fail_on)
        failing = [r for r in analysis.recommendations if SEVERITY_NAMES.index(r.severity) >= floor]
        if failing:
            _error(f"{len(failing)} recommendation(s) at or above {args.fail_on}: exit {EXIT_FINDINGS}")
            return EXIT_FINDINGS
    return EXIT_OK


def _no_records_message(paths: list[str], prometheus: str | None, stats: ReadStats) -> str:
    """Why there is no report: the first problem of the input, or where no record was found."""
    if stats.problems:
        more = stats.problem_count - 1
        return stats.problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
    where = []
    if paths:
        where.append(f"{', '.join(paths)} ({stats.files_read} file(s), {stats.lines_read} line(s) read)")
    if prometheus is not None:
        from amqadf_agent.redaction import redact_url

        where.append(f"the metric series the rules need from {redact_url(prometheus)}")
    return f"no telemetry records in {' nor in '.join(where)}"


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
        seconds = float(match.group(1)) * factor
        if not seconds < 1e12:  # about 31 700 years; more digits than a float holds end as infinity
            raise ValueError(f"cannot read time {text[:40]!r}: the duration is too long")
        return now - int(seconds * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use ISO 8601 (2025-01-02T03:04:05Z) or a duration like 15m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1_000_000) * 1000


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
