"""Per-span cost of the sanitizing span processor, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_sanitize.py [--repeat 15] [--number 5000]

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
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Iterator

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args(argv)
    number, repeat = args.number, args.repeat
    processor = SanitizingSpanProcessor()
    alone_rows = on_end_rows()
    without, with_ = span_rows(False), span_rows(True)
    alone: dict[str, list[float]] = {name: [] for name in alone_rows}
    whole: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in without}
    for _ in range(repeat):
        for name, make in alone_rows.items():
            alone[name].append(time_on_end(processor, make, number))
        for name in without:
            whole[name][0].append(time_calls(without[name], number))
            whole[name][1].append(time_calls(with_[name], number))
    print(f"{'CPU ns per span':58} {'best':>8} {'median':>8} {'added':>8}")
    worst = 0.0
    for name, values in alone.items():
        best, median = best_median(values)
        if name in TARGET_ROWS:
            worst = max(worst, median)
        print(f"{'processor on_end alone: ' + name:58} {best:8.0f} {median:8.0f}")
    for name, (plain, sanitized) in whole.items():
        added = statistics.median(b - a for a, b in zip(plain, sanitized, strict=True))
        for title, values in (("SDK span", plain), ("SDK span + processor", sanitized)):
            best, median = best_median(values)
            shown = f"{added:8.0f}" if values is sanitized else ""
            print(f"{title + ', ' + name:58} {best:8.0f} {median:8.0f} {shown}")
    sdk_statement = statistics.median(whole["a statement seen before"][0])
    verdict = "within" if worst <= TARGET_ADDED_NS else "OVER"
    print(
        f"\nmost added per span (memo hit, URL, plain; on_end alone): {worst:.0f} ns median, {verdict} the "
        f"{TARGET_ADDED_NS} ns target; {worst / sdk_statement:.0%} of the SDK's own span with a statement"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
