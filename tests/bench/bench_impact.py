"""What pricing fixes (``analyzer.impact``) adds to the analysis' one pass. Prints a table.

    .venv/bin/python tests/bench/bench_impact.py [--size-mb 55] [--repeat 3]

Generates the OTLP JSON traces of tests/bench/bench_analyzer.py (four services, HTTP server spans,
db client spans with an N+1 run and a slow query; about half the spans are db spans), reads them into
records once, then times in CPU seconds (``time.process_time``: the machine is shared) what the
database rules cost per record without and with an ``ImpactFeed`` (its server spans, and each
trace's db calls handed over by the rules), and the estimates at the end. Each row is the fastest of
``--repeat`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_analyzer import generate

from amqadf_agent.analyzer.impact import ImpactFeed, estimate
from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.rules.database import DatabaseRules


def one_pass(records: list[SpanRecord], with_feed: bool) -> tuple[float, float, int]:
    """(CPU s of the pass and the findings, CPU s of the estimates, estimates made)."""
    rules = DatabaseRules()
    feed = ImpactFeed(rules) if with_feed else None
    start = time.process_time()
    for record in records:
        if record.kind == SPAN_KIND_CLIENT:
            rules.add_span(record)
        elif feed is not None and record.kind == SPAN_KIND_SERVER:
            feed.add(record)
    found = rules.recommendations()
    passed = time.process_time() - start
    if feed is None:
        return passed, 0.0, 0
    start = time.process_time()
    estimates = estimate(feed, found)
    return passed, time.process_time() - start, len(estimates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=55.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        full, half = Path(tmp) / "traces.jsonl", Path(tmp) / "half.jsonl"
        generate(full, half, args.size_mb)
        records = [r for r in read([full]) if type(r) is SpanRecord]
    gc.set_threshold(50_000, 10, 10)  # as analyzer.run does
    best: dict[bool, tuple[float, float, int]] = {}
    for _ in range(args.repeat):
        for with_feed in (False, True):
            result = one_pass(records, with_feed)
            if with_feed not in best or result[0] < best[with_feed][0]:
                best[with_feed] = result
    count = len(records)
    print(f"{count:,} spans ({args.size_mb:g} MB), best of {args.repeat}, CPU time")
    print(f"{'row':<44}{'pass s':>9}{'us/span':>10}{'estimates s':>13}{'estimates':>11}")
    for with_feed, label in ((False, "database rules"), (True, "database rules + ImpactFeed")):
        passed, priced, made = best[with_feed]
        extra = f"{priced:>13.3f}{made:>11}" if with_feed else f"{'-':>13}{'-':>11}"
        print(f"{label:<44}{passed:>9.3f}{passed / count * 1e6:>10.2f}{extra}")
    added = best[True][0] - best[False][0]
    share = added / best[False][0] * 100
    print(f"ImpactFeed adds {added / count * 1e6:.2f} us/span ({share:+.0f}% on the database rules)")


if __name__ == "__main__":
    main()
