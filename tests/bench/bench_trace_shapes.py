"""CPU cost per span of the trace-shape and pool rules beside the database rules, on the analyzer bench's
traffic and on traffic where every trace has calls to analyse.

    .venv/bin/python tests/bench/bench_trace_shapes.py [--size-mb 30] [--repeat 3]

- bench traffic: the file ``bench_analyzer.py`` generates (four services, HTTP server, internal,
  HTTP client and db client spans; about half of them db spans), read once into memory; each rule
  then reads every span record as ``analyzer.run`` feeds it;
- every trace busy: 10 000 traces of a server span and 12 slow HTTP calls to one URL template plus
  three slow independent queries: every trace is described and every rule runs (the worst case).

Rows show the best CPU time (``time.process_time``, steadier than wall time on a shared machine) of
``--repeat`` runs, in microseconds per span, and the findings made. The reader's own cost is not in
these figures (``bench_analyzer.py`` measures the whole path).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, Record, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.rules.database import DatabaseRules
from amqadf_agent.analyzer.rules.pool import PoolRules
from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeRules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyzer import generate

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def busy_traces(traces: int = 10_000) -> list[Record]:
    """Every trace: a server span, 12 HTTP calls of 30 ms to one template, three 60 ms queries."""
    resource = {"service.name": "shop"}
    out: list[Record] = []
    ids = iter(range(1, 10**9))
    for t in range(traces):
        trace = f"{t + 1:032x}"
        root = f"{next(ids):016x}"
        start = T0 + t * 1000 * MS
        out.append(
            SpanRecord(trace, root, "", "GET /orders/{id}", SPAN_KIND_SERVER, start, start + 900 * MS, 0, "",
                       {"http.route": "/orders/{id}"}, (), resource, "bench")
        )  # fmt: skip
        at = start
        for i in range(12):
            attrs = {"http.request.method": "GET", "url.full": f"http://inventory/stock/{t * 100 + i}"}
            out.append(SpanRecord(trace, f"{next(ids):016x}", root, "GET", SPAN_KIND_CLIENT, at, at + 30 * MS,
                                  0, "", attrs, (), resource, "bench"))  # fmt: skip
            at += 31 * MS
        for table in ("orders", "banners", "settings"):
            attrs = {"db.system.name": "postgresql", "db.query.text": f"SELECT count(*) FROM {table}"}
            span_id = f"{next(ids):016x}"
            out.append(SpanRecord(trace, span_id, root, "SELECT", SPAN_KIND_CLIENT, at, at + 60 * MS,
                                  0, "", attrs, (), resource, "bench"))  # fmt: skip
            at += 61 * MS
    return out


def cost(records: list[Record], make: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Best CPU seconds over ``repeat`` runs of one rule over ``records``, and its findings."""
    best = float("inf")
    found = 0
    for _ in range(repeat):
        rules = make()
        add = rules.add_span if isinstance(rules, DatabaseRules) else rules.add  # type: ignore[attr-defined]
        started = time.process_time()
        for record in records:
            if type(record) is SpanRecord:
                add(record)
        found = len(rules.recommendations())  # type: ignore[attr-defined]
        best = min(best, time.process_time() - started)
    return best, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=30.0, help="size of the bench file (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (default 3)")
    args = parser.parse_args(argv)
    gc.set_threshold(50_000, 10, 10)  # as analyzer.run sets it for its pass
    with tempfile.TemporaryDirectory() as tmp:
        path, half = Path(tmp) / "traces.jsonl", Path(tmp) / "half.jsonl"
        generate(path, half, args.size_mb)
        bench = list(read(path))
    inputs = {"bench traffic": bench, "every trace busy": busy_traces()}
    rows = (
        ("database rules", DatabaseRules),
        ("trace-shape rules", TraceShapeRules),
        ("pool rules", PoolRules),
    )
    print(f"{'input':18} {'rules':18} {'spans':>9} {'us/span':>8} {'findings':>8}")
    for label, records in inputs.items():
        spans = sum(type(r) is SpanRecord for r in records)
        for name, make in rows:
            seconds, found = cost(records, make, args.repeat)
            print(f"{label:18} {name:18} {spans:>9,} {seconds / spans * 1e6:>8.2f} {found:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
