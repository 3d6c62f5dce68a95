"""Per-span cost of the sanitizing span processor, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_sanitize.py [--repeat 15] [--number 5000] [--before DIR]

Target (private by default, at no noticeable cost): at most 2 µs median added per span with a
statement when the statement was seen before (the rewrite is memoized by its text) or with a signed
URL, and nothing measurable for a span without a statement, URL or named attribute. A memo miss (a
statement never seen: every literal differs and the memo holds 4096) pays the tokenizer. Rows:

* ``processor on_end alone``: what the processor adds to a span, on real SDK spans (their
  ``BoundedAttributes`` and ``BoundedList``s) built and ended beforehand with no processor, named as
  instrumentations name them (``GET /orders``, ``SELECT``, ``GET``), then spans whose name holds the
  text itself (a statement with literals, a signed URL), as ``tracer.start_span(sql)`` or ``(url)``
  makes them;
* ``span ...``: a whole span through an SDK TracerProvider (start, two ``set_attribute``, end) with
  no processor and with the sanitizing processor in front; ``added`` is the median over rounds of
  the difference within a round (with minus without), which cancels most of a busy machine's drift.

Every row is measured in each of ``--repeat`` rounds, the rows one after the other within a round
(interleaved: a burst of load hits every row alike), ``--number`` spans a row a round. Figures are ns
of the process's CPU time per span (time spent waiting for a core on a busy machine is left out):
the best and the median round.

``--before DIR`` compares another tree (``git archive main | tar -x -C DIR``) with this checkout:
each round runs in a new process that imports ``amqadf_agent`` from one or the other, alternating
(the two cannot share one process), and the table shows both medians and the change.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor

TARGET_ADDED_NS = 2000
STATEMENT = "SELECT id, email, total FROM orders WHERE customer_id = 4242 AND status = 'paid' LIMIT 20"
URL = "https://bucket.s3.amazonaws.com/r/7.pdf?X-Amz-Credential=AKIAX&X-Amz-Signature=deadbeef"
#: Rows whose median counts against the target (a memo miss and a text in the name are shown only).
TARGET_ROWS = ("no statement", "statement seen before (memo hit)", "signed url.full", "new signed url.full")


def unique(template: str) -> Iterator[str]:
    """``template`` with a number never used before on every call: a memo miss each time."""
    for n in itertools.count():
        yield template.format(n)


def on_end_rows() -> dict[str, Callable[[], ReadableSpan]]:
    """Row name: a function that makes one ended SDK span of that kind (no processor sees it)."""
    tracer = TracerProvider().get_tracer("bench")
    statements = unique(
        "SELECT id, email, total FROM orders WHERE customer_id = {} AND status = 'paid' LIMIT 20"
    )
    urls = unique("https://bucket.s3.amazonaws.com/r/{}.pdf?X-Amz-Credential=AKIAX&X-Amz-Signature=deadbeef")

    def span(name: str, **attributes: object) -> ReadableSpan:
        made = tracer.start_span(name)
        for key, value in attributes.items():
            made.set_attribute(key, value)  # type: ignore[arg-type]
        made.end()
        return made  # type: ignore[return-value]

    return {
        "no statement": lambda: span(
            "GET /orders", **{"http.route": "/orders", "http.response.status_code": 200}
        ),
        "statement seen before (memo hit)": lambda: span(
            "SELECT", **{"db.system": "postgresql", "db.statement": STATEMENT}
        ),
        "new statement (memo miss)": lambda: span(
            "SELECT", **{"db.system": "postgresql", "db.statement": next(statements)}
        ),
        "signed url.full": lambda: span("GET", **{"http.request.method": "GET", "url.full": URL}),
        "new signed url.full": lambda: span("GET", **{"http.request.method": "GET", "url.full": next(urls)}),
        "statement as the name, seen before": lambda: span(STATEMENT),
        "signed URL as the name": lambda: span(f"GET {URL}"),
    }


def time_on_end(processor: SanitizingSpanProcessor, make: Callable[[], ReadableSpan], number: int) -> float:
    """CPU ns per ``on_end`` over ``number`` spans made beforehand."""
    spans = [make() for _ in range(number)]
    on_end = processor.on_end
    start = time.process_time()
    for span in spans:
        on_end(span)
    return (time.process_time() - start) / number * 1e9


def span_rows(sanitize: bool) -> dict[str, Callable[[], object]]:
    provider = TracerProvider()
    if sanitize:
        provider.add_span_processor(SanitizingSpanProcessor())
    tracer = provider.get_tracer("bench")

    def plain() -> None:
        with tracer.start_as_current_span("GET /orders") as span:
            span.set_attribute("http.route", "/orders")
            span.set_attribute("http.response.status_code", 200)

    def statement() -> None:
        with tracer.start_as_current_span("SELECT orders") as span:
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("db.statement", STATEMENT)

    def url() -> None:
        with tracer.start_as_current_span("GET") as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.full", URL)

    return {"no statement": plain, "a statement seen before": statement, "a signed url.full": url}


def time_calls(fn: Callable[[], object], number: int) -> float:
    start = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - start) / number * 1e9


def best_median(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


ALONE = "processor on_end alone: "
PLAIN, SANITIZED = "SDK span, ", "SDK span + processor, "


class Round:
    """The rows of one process, measured a round at a time."""

    def __init__(self) -> None:
        self.processor = SanitizingSpanProcessor()
        self.alone_rows = on_end_rows()
        self.without, self.with_ = span_rows(False), span_rows(True)

    def measure(self, number: int) -> dict[str, float]:
        """CPU ns per span of every row, one after the other (row title: figure)."""
        figures = {}
        for name, make in self.alone_rows.items():
            figures[ALONE + name] = time_on_end(self.processor, make, number)
        for name in self.without:
            figures[PLAIN + name] = time_calls(self.without[name], number)
            figures[SANITIZED + name] = time_calls(self.with_[name], number)
        return figures


def subprocess_round(number: int, pythonpath: str) -> dict[str, float]:
    """One round in a new process that imports ``amqadf_agent`` from ``pythonpath`` first."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    done = subprocess.run(
        [sys.executable, __file__, "--round", "--number", str(number)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),  # not the checkout: its amqadf_agent would come first
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def added(rounds: list[dict[str, float]], name: str) -> float:
    """Median over rounds of the whole span's cost with the processor minus without, within a round."""
    return statistics.median(r[SANITIZED + name] - r[PLAIN + name] for r in rounds)


def worst_target(rounds: list[dict[str, float]]) -> float:
    return max(statistics.median(r[ALONE + name] for r in rounds) for name in TARGET_ROWS)


def verdict(rounds: list[dict[str, float]]) -> str:
    worst = worst_target(rounds)
    sdk_statement = statistics.median(r[PLAIN + "a statement seen before"] for r in rounds)
    within = "within" if worst <= TARGET_ADDED_NS else "OVER"
    return (
        f"most added per span (memo hit, URL, plain; on_end alone): {worst:.0f} ns median, {within} the "
        f"{TARGET_ADDED_NS} ns target; {worst / sdk_statement:.0%} of the SDK's own span with a statement"
    )


def print_table(rounds: list[dict[str, float]]) -> None:
    print(f"{'CPU ns per span':58} {'best':>8} {'median':>8} {'added':>8}")
    for title in rounds[0]:
        best, median = best_median([r[title] for r in rounds])
        shown = f"{added(rounds, title.removeprefix(SANITIZED)):8.0f}" if title.startswith(SANITIZED) else ""
        print(f"{title:58} {best:8.0f} {median:8.0f} {shown}")
    print(f"\n{verdict(rounds)}")


def print_comparison(before: list[dict[str, float]], after: list[dict[str, float]], where: str) -> None:
    print(f"before: amqadf_agent from {where}; after: this checkout; rounds alternate, one process each")
    print(f"{'CPU ns per span (median; best)':58} {'before':>15} {'after':>15} {'change':>7}")
    for title in after[0]:
        old = [r[title] for r in before if title in r]
        new = [r[title] for r in after]
        if not old:
            continue
        change = statistics.median(new) / statistics.median(old) - 1
        print(
            f"{title:58} {statistics.median(old):7.0f};{min(old):7.0f} "
            f"{statistics.median(new):7.0f};{min(new):7.0f} {change:+7.0%}"
        )
    for name in span_rows(False):
        print(f"{'added to a whole span, ' + name:58} {added(before, name):15.0f} {added(after, name):15.0f}")
    print(f"\nbefore: {verdict(before)}\nafter:  {verdict(after)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="a copy of another tree (git archive main | tar -x -C DIR): its amqadf_agent and this "
        "one, each round in a new process, alternating",
    )
    parser.add_argument("--round", action="store_true", help=argparse.SUPPRESS)  # one round, as JSON
    args = parser.parse_args(argv)
    if args.round:
        print(json.dumps(Round().measure(args.number)))
        return 0
    if args.before:
        this_tree = str(Path(__file__).resolve().parents[2])
        before: list[dict[str, float]] = []
        after: list[dict[str, float]] = []
        for _ in range(args.repeat):
            before.append(subprocess_round(args.number, str(Path(args.before).resolve())))
            after.append(subprocess_round(args.number, this_tree))
        print_comparison(before, after, args.before)
        return 0
    rows = Round()
    print_table([rows.measure(args.number) for _ in range(args.repeat)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
