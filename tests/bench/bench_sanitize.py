"""Per-span cost of the sanitizing span processor, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_sanitize.py [--repeat 7] [--number 20000]

Target (private by default, at no noticeable cost): at most 2 µs median added per span with a
statement when the statement was seen before (the rewrite is memoized by its text), and nothing
measurable for a span without a statement, URL or named attribute. A memo miss (a statement never
seen: every literal differs and the memo holds 4096) pays the tokenizer. Rows:

* ``span ...``: a whole span through an SDK TracerProvider (start, two or three ``set_attribute``,
  end), with no processor at all, then with the sanitizing processor in front;
* ``processor on_end alone``: what the processor adds to a span, measured on spans built beforehand
  (whole-span rows differ by less than the noise of a busy machine), named as instrumentations name
  them (``GET /orders``, ``SELECT``, ``GET``), then two spans whose name holds the text itself (a
  statement with literals, a signed URL), as ``tracer.start_span(sql)`` or ``(url)`` makes them.

Each figure is ns per span: the best and the median of ``--repeat`` runs of ``--number`` spans;
``added`` is the median with the processor minus the median of the same span without it.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit
from collections.abc import Callable, Iterator

from opentelemetry.sdk.trace import TracerProvider

from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor

TARGET_ADDED_NS = 2000
STATEMENT = "SELECT id, email, total FROM orders WHERE customer_id = 4242 AND status = 'paid' LIMIT 20"
URL = "https://bucket.s3.amazonaws.com/r/7.pdf?X-Amz-Credential=AKIAX&X-Amz-Signature=deadbeef"


def measure(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    per_call = [run / number * 1e9 for run in runs]
    return min(per_call), statistics.median(per_call)


def unique_statements() -> Iterator[str]:
    """A statement never seen before on every call: a memo miss each time."""
    for n in itertools.count():
        yield f"SELECT id, email, total FROM orders WHERE customer_id = {n} AND status = 'paid' LIMIT 20"


def span_rows(sanitize: bool) -> dict[str, Callable[[], object]]:
    provider = TracerProvider()
    if sanitize:
        provider.add_span_processor(SanitizingSpanProcessor())
    tracer = provider.get_tracer("bench")
    fresh = unique_statements()

    def plain() -> None:
        with tracer.start_as_current_span("GET /orders") as span:
            span.set_attribute("http.route", "/orders")
            span.set_attribute("http.response.status_code", 200)

    def statement() -> None:
        with tracer.start_as_current_span("SELECT orders") as span:
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("db.statement", STATEMENT)

    def new_statement() -> None:
        with tracer.start_as_current_span("SELECT orders") as span:
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("db.statement", next(fresh))

    def url() -> None:
        with tracer.start_as_current_span("GET") as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.full", URL)

    return {
        "span, no statement": plain,
        "span with a statement, seen before (memo hit)": statement,
        "span with a new statement (memo miss)": new_statement,
        "span with a signed url.full": url,
    }


def on_end_rows(count: int) -> dict[str, Callable[[], object]]:
    """The processor's ``on_end`` alone, each call on a fresh ended span (built beforehand)."""
    from opentelemetry.sdk.trace import ReadableSpan

    processor = SanitizingSpanProcessor()
    fresh = unique_statements()
    # (span name, attributes): the names instrumentations give such spans, then names that hold text
    kinds: dict[str, tuple[str, Callable[[], dict[str, object]]]] = {
        "no statement": ("GET /orders", lambda: {"http.route": "/orders", "http.response.status_code": 200}),
        "statement seen before (memo hit)": (
            "SELECT",
            lambda: {"db.system": "postgresql", "db.statement": STATEMENT},
        ),
        "new statement (memo miss)": (
            "SELECT",
            lambda: {"db.system": "postgresql", "db.statement": next(fresh)},
        ),
        "signed url.full": ("GET", lambda: {"http.request.method": "GET", "url.full": URL}),
        "statement as the name, seen before": (STATEMENT, dict),
        "signed URL as the name": (f"GET {URL}", dict),
    }
    rows: dict[str, Callable[[], object]] = {}
    for kind, (name, attributes) in kinds.items():
        spans = iter([ReadableSpan(name=name, attributes=attributes()) for _ in range(count)])
        rows[kind] = lambda spans=spans: processor.on_end(next(spans))  # type: ignore[misc]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args(argv)
    number, repeat = args.number, args.repeat
    sdk = {name: measure(fn, number, repeat) for name, fn in span_rows(False).items()}
    full = {name: measure(fn, number, repeat) for name, fn in span_rows(True).items()}
    alone = {name: measure(fn, number, repeat) for name, fn in on_end_rows(number * repeat).items()}
    print(f"{'ns per span':58} {'best':>8} {'median':>8}")
    for title, table in (("SDK span, no processor", sdk), ("SDK span + sanitizing processor", full)):
        for name, (best, median) in table.items():
            print(f"{title + ': ' + name.removeprefix('span').strip(', '):58} {best:8.0f} {median:8.0f}")
    worst = 0.0
    for name, (best, median) in alone.items():
        if "memo miss" not in name and "as the name" not in name:
            worst = max(worst, median)
        print(f"{'processor on_end alone: ' + name:58} {best:8.0f} {median:8.0f}")
    sdk_statement = sdk["span with a statement, seen before (memo hit)"][1]
    verdict = "within" if worst <= TARGET_ADDED_NS else "OVER"
    print(
        f"\nmost added per span (memo hit, URL, plain): {worst:.0f} ns median, {verdict} the "
        f"{TARGET_ADDED_NS} ns target; {worst / sdk_statement:.0%} of the SDK's own span with a statement"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
