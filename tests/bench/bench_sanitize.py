"""Per-span cost of the sanitizing span processor, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_sanitize.py [--repeat 15] [--number 5000] [--chunk 250] [--before DIR]

Target (private by default, at no noticeable cost): at most 2 µs median added per span with a
statement when the statement was seen before (the rewrite is memoized by its text) or with a signed
URL, and nothing measurable for a span without a statement, URL or named attribute. A memo miss (a
statement never seen: every literal differs and the memo holds 4096) pays the tokenizer. Rows:

* ``processor on_end alone``: what the processor adds to a span, on real SDK spans (their
  ``BoundedAttributes`` and ``BoundedList``s) built and ended beforehand with no processor, named as
  instrumentations name them (``GET /orders``, ``SELECT``, ``GET``), then spans whose name holds the
  text itself (a statement with literals, a signed URL), as ``tracer.start_span(sql)`` or ``(url)``
  makes them;
* ``whole SDK span``: a whole span through an SDK TracerProvider (start, two ``set_attribute``, end)
  whose processors are composed as the agent composes them (``providers.span_processors``: the
  processor's empty ``on_start`` is not called), with no processor and with the sanitizing one.
  The two are measured in turns of ``--chunk`` spans within a round (without, with, with,
  without, ...), so a burst of load falls on both alike; ``added`` is the median over rounds of
  the difference within a round (with minus without), beside the difference of the two bests and
  the spread (quartiles) of the differences.

Every row is measured in each of ``--repeat`` rounds, the rows one after the other within a round
(interleaved: a burst of load hits every row alike), ``--number`` spans a row a round. Figures are ns
of the process's CPU time per span (time spent waiting for a core on a busy machine is left out):
the best and the median round.

``--before DIR`` compares another tree (``git archive main | tar -x -C DIR``) with this checkout in
one process: the processor class is imported from each tree, and every row is measured with one and
then the other (which goes first alternates by round), on spans from the same factories; the table
shows both medians and bests and the change of the median.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from amqadf_agent.runtime.providers import span_processors
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


def span_rows(processor: type[SanitizingSpanProcessor] | None) -> dict[str, Callable[[], object]]:
    """Row name: a function that makes one whole span, through ``processor`` (None: no processor)."""
    # Composed as the agent composes its processors: a hook the processor leaves empty is not called.
    provider = TracerProvider(active_span_processor=span_processors())
    if processor is not None:
        provider.add_span_processor(processor())
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

    urls = unique("https://bucket.s3.amazonaws.com/r/{}.pdf?X-Amz-Credential=AKIAX&X-Amz-Signature=deadbeef")

    def new_url() -> None:  # signed afresh: a memo miss every time (the URL is built on both sides)
        with tracer.start_as_current_span("GET") as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.full", next(urls))

    return {
        "no statement": plain,
        "a statement seen before": statement,
        "a signed url.full": url,
        "a new signed url.full": new_url,
    }


def time_pair(
    without: Callable[[], object], with_: Callable[[], object], number: int, chunk: int
) -> tuple[float, float]:
    """CPU ns per call of ``without`` and of ``with_``, ``number`` calls each in turns of ``chunk``
    (without, with, with, without, ...): load that comes and goes falls on both alike."""
    totals = [0.0, 0.0]
    sides = (without, with_)
    turns = max(number // chunk, 1)
    for turn in range(turns):
        for side in (0, 1) if turn % 2 == 0 else (1, 0):
            fn = sides[side]
            start = time.process_time()
            for _ in range(chunk):
                fn()
            totals[side] += time.process_time() - start
    return totals[0] / (turns * chunk) * 1e9, totals[1] / (turns * chunk) * 1e9


def best_median(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


ALONE = "processor on_end alone: "
PLAIN, SANITIZED = "SDK span, ", "SDK span + processor, "
#: A row: measured over ``number`` spans, the figures it gives by title (CPU ns per span).
Row = Callable[[int], dict[str, float]]


def _alone(
    title: str, processor: SanitizingSpanProcessor, make: Callable[[], ReadableSpan], number: int
) -> dict[str, float]:
    return {title: time_on_end(processor, make, number)}


def _whole(
    name: str, without: Callable[[], object], with_: Callable[[], object], chunk: int, number: int
) -> dict[str, float]:
    plain, sanitized = time_pair(without, with_, number, chunk)
    return {PLAIN + name: plain, SANITIZED + name: sanitized}


def rows_of(
    processor: type[SanitizingSpanProcessor], alone_rows: dict[str, Callable[[], ReadableSpan]], chunk: int
) -> dict[str, Row]:
    """Row title: a function that measures it (a whole span's row: with and without the processor)."""
    instance = processor()
    without, with_ = span_rows(None), span_rows(processor)
    rows: dict[str, Row] = {}
    for name, make in alone_rows.items():
        rows[ALONE + name] = functools.partial(_alone, ALONE + name, instance, make)
    for name in without:
        rows[SANITIZED + name] = functools.partial(_whole, name, without[name], with_[name], chunk)
    return rows


def processor_from(tree: str) -> type[SanitizingSpanProcessor]:
    """``SanitizingSpanProcessor`` as ``tree`` defines it, beside this checkout's in one process:
    the modules of ``amqadf_agent`` are set aside while ``tree``'s are imported, then put back (the
    class keeps its own modules through its functions' globals)."""
    ours = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "amqadf_agent"}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, tree)
    try:
        module = importlib.import_module("amqadf_agent.runtime.sanitize")
        if not Path(module.__file__ or "").resolve().is_relative_to(Path(tree).resolve()):
            raise SystemExit(f"amqadf_agent was not imported from {tree}")
        return module.SanitizingSpanProcessor  # type: ignore[no-any-return]
    finally:
        sys.path.remove(tree)
        for name in [name for name in sys.modules if name.split(".")[0] == "amqadf_agent"]:
            del sys.modules[name]
        sys.modules.update(ours)


def added(rounds: list[dict[str, float]], name: str) -> tuple[float, float, float, float]:
    """What the processor adds to a whole span: the median over rounds of the difference within a
    round (with minus without), the difference of the two bests, and the quartiles of the differences."""
    differences = [r[SANITIZED + name] - r[PLAIN + name] for r in rounds]
    median = statistics.median(differences)
    q1, _, q3 = statistics.quantiles(differences, n=4) if len(differences) > 1 else (median, 0, median)
    bests = min(r[SANITIZED + name] for r in rounds) - min(r[PLAIN + name] for r in rounds)
    return median, bests, q1, q3


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
    print(f"{'CPU ns per span':58} {'best':>8} {'median':>8}   added: median, bests, quartiles")
    for title in rounds[0]:
        best, median = best_median([r[title] for r in rounds])
        shown = ""
        if title.startswith(SANITIZED):
            difference, bests, q1, q3 = added(rounds, title.removeprefix(SANITIZED))
            shown = f"{difference:8.0f} {bests:8.0f}   {q1:.0f}..{q3:.0f}"
        print(f"{title:58} {best:8.0f} {median:8.0f} {shown}")
    print(f"\n{verdict(rounds)}")


def print_comparison(before: list[dict[str, float]], after: list[dict[str, float]], where: str) -> None:
    print(f"before: amqadf_agent from {where}; after: this checkout; each row measured with both in turn")
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
    for name in span_rows(None):
        (old_median, old_bests, *_), (new_median, new_bests, *_) = added(before, name), added(after, name)
        print(
            f"{'added to a whole span, ' + name:58} {old_median:7.0f};{old_bests:7.0f} "
            f"{new_median:7.0f};{new_bests:7.0f}"
        )
    print(f"\nbefore: {verdict(before)}\nafter:  {verdict(after)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=250, help="spans a turn in a whole span's row")
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="another tree (git archive main | tar -x -C DIR): its processor and this one's, row by row",
    )
    args = parser.parse_args(argv)
    alone_rows = on_end_rows()
    after_rows = rows_of(SanitizingSpanProcessor, alone_rows, args.chunk)
    if not args.before:
        print_table([measure(after_rows, args.number) for _ in range(args.repeat)])
        return 0
    before_rows = rows_of(processor_from(args.before), alone_rows, args.chunk)
    before: list[dict[str, float]] = []
    after: list[dict[str, float]] = []
    for round_ in range(args.repeat):
        before.append({})
        after.append({})
        for title in after_rows:
            sides = [(before_rows, before), (after_rows, after)]
            for rows, figures in sides if round_ % 2 == 0 else reversed(sides):
                figures[-1].update(rows[title](args.number))
    print_comparison(before, after, args.before)
    return 0


def measure(rows: dict[str, Row], number: int) -> dict[str, float]:
    """One round: every row in turn, ``number`` spans each."""
    return {title: figure for row in rows.values() for title, figure in row(number).items()}


if __name__ == "__main__":
    raise SystemExit(main())
