"""``amqadf-analyze``: read exported telemetry (OTLP JSON files) and report on it.

Only ``argparse`` and ``sys`` are imported at module level, so ``--help`` and usage errors answer at
once; the reader (orjson, the semantic-convention constants) is imported after the arguments parse.
The analyzer never imports the OpenTelemetry SDK or psutil: it runs where the agent is not installed.

Exit status: 0 on success; 2 when no telemetry was found in the given paths, or with ``--strict`` when
an input is unreadable; 1 when the report cannot be written. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing itself is not imported at run time: --help must stay fast
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TextIO

    from amqadf_agent.analyzer.model import Record
    from amqadf_agent.analyzer.recommendation import Recommendation
    from amqadf_agent.analyzer.rules.database import DatabaseRules
    from amqadf_agent.analyzer.summary import Summary

PROG = "amqadf-analyze"
EXIT_OK = 0
EXIT_OUTPUT_ERROR = 1
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Read OTLP JSON telemetry files (as the agent, the OpenTelemetry Collector's file exporter or "
            "the SDK's JSON file exporter write them; plain or gzip) and summarize what they hold."
        ),
        epilog="exit status: 0 ok, 1 report not written, 2 no telemetry found or (with --strict) bad input",
    )
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="+",
        help="a telemetry file, or a directory searched recursively for *.json, *.jsonl (and .gz)",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
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
        "--strict",
        action="store_true",
        help="stop at the first unreadable file or line (exit 2) instead of skipping and counting it",
    )
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``amqadf-analyze``; returns the exit status (``--help`` and usage errors exit via argparse)."""
    args = _parser().parse_args(argv)

    # Imported here, not at the top, so that --help stays fast.
    from amqadf_agent.analyzer.otlp_reader import ReadStats, read
    from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules
    from amqadf_agent.analyzer.summary import summarize
    from amqadf_agent.errors import AmqadfError

    if not args.slow_query_ms > 0:
        _error("--slow-query-ms must be a positive number")
        return EXIT_BAD_INPUT
    stats = ReadStats()
    database = DatabaseRules(DatabaseRuleConfig(slow_query_s=args.slow_query_ms / 1000))
    try:
        # One pass: the rules see every record on its way to the summary.
        summary = summarize(_tap(read(args.paths, strict=args.strict, stats=stats), database), stats)
        recommendations = database.recommendations()
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
            _error(
                f"no telemetry records in {', '.join(args.paths)} "
                f"({stats.files_read} file(s), {stats.lines_read} line(s) read)"
            )
        return EXIT_BAD_INPUT

    try:
        if args.output is None:
            _write(args.format, summary, recommendations, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8") as out:
                _write(args.format, summary, recommendations, out)
    except BrokenPipeError:  # `amqadf-analyze ... | head`: not an error worth a message
        _silence_stdout()
        return EXIT_OUTPUT_ERROR
    except OSError as error:
        target = args.output if args.output is not None else "stdout"
        _error(f"cannot write {target}: {error.strerror or error}")
        return EXIT_OUTPUT_ERROR

    if summary.problem_count:
        _error(
            f"warning: skipped {summary.problem_count} problem(s) in the input; first: {summary.problems[0]}"
        )
    return EXIT_OK


def _tap(records: Iterable[Record], database: DatabaseRules) -> Iterator[Record]:
    """Pass ``records`` through, feeding every span to the database rules on the way."""
    from amqadf_agent.analyzer.model import SpanRecord

    add = database.add_span
    for record in records:
        if type(record) is SpanRecord:
            add(record)
        yield record


def _write(fmt: str, summary: Summary, recommendations: list[Recommendation], out: TextIO) -> None:
    """Write the report in ``fmt`` to ``out``."""
    import json

    from amqadf_agent.analyzer.summary import render_recommendations, render_text, to_json

    if fmt == "json":
        data = to_json(summary)
        data["recommendations"] = [recommendation.to_dict() for recommendation in recommendations]
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        render_text(summary, out)
        render_recommendations(recommendations, out)
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
