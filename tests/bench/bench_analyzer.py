"""End-to-end ``amqadf-analyze`` on a large OTLP JSON trace file, beside raw JSON parsing and DuckDB.

    .venv/bin/python tests/bench/bench_analyzer.py [--size-mb 210] [--repeat 3] [--dir DIR] [--keep]

Generates an OTLP JSON lines trace file of ``--size-mb`` MB (as the Collector's ``file`` exporter
writes it: one ``{"resourceSpans": ...}`` export request per line, four resources of one batch each)
and a second file of half that size (the first half of the same lines), into a temporary directory
or ``--dir``. The traffic is four services at a fixed request rate: HTTP server spans with their
attributes, internal spans, HTTP client spans and db client spans (``db.system.name``,
``db.query.text`` with literals) in nested parent/child trees, an N+1 run (8 consecutive product
lookups under one parent) in part of the order traces, a slow report query, ~2% server errors. The
half file therefore covers half the time range.

Beside the rows, a per-rule table: the first ``--rule-spans`` spans of the half file read into memory
once, then each rule fed all of them and finished (its ``recommendations()``/``windows()``), timed
alone in this process, in CPU seconds: where the rules' share of the time goes, and what each rule costs.

Each row runs in its own subprocess, timed from spawn to exit (interpreter start and imports
included), its peak RSS read with ``os.wait4`` (``ru_maxrss`` of that child alone). Rows run
``--repeat`` times in interleaved rounds; the table shows each row's fastest run and the largest peak
RSS of its runs (the machine is shared: the fastest run is the one least disturbed). spans/s is the
file's span count over that wall time; every row checks it saw that count.

- amqadf-analyze as chosen: the command (``analyze.main``), ``FILE --format json -o /dev/null``: read,
  every rule, the report (the whole product path), on both files. An input this large is read by a
  forked child process (``analyzer.pipeline``) while the rules run in the parent when a CPU is free for
  the child (``analyzer.run._free_cpus``); the row says in how many of its runs it was, and its peak
  RSS is then the larger of the two processes' (what ``wait4`` reports);
- amqadf-analyze in one process: the same, with the reading child turned off
  (``analyzer.run.PIPELINE_MIN_BYTES`` raised): the one-process rate the targets are about;
- otlp_reader.read only: the analyzer's reader building its records, no rules (where the time goes);
- amqadf-analyze, the code at ``--before DIR``: the same end-to-end run with the package imported
  from DIR (``git archive main | tar -x -C DIR``), to show what a change costs (before/after spans/s);
- orjson.loads per line / json.loads per line: parse each line and count the spans, nothing more
  (the floor any Python reader of this format pays);
- DuckDB read_json: ``read_json(format='newline_delimited')`` with resourceSpans, scopeSpans and spans
  unnested and counted, with DuckDB's default threads (all cores) and memory limit; "not installed
  (pip install duckdb)" without it.

Targets: in one process at least 140 000 spans/s end to end and at least half the rate of
orjson.loads alone, and peak RSS under 300 MB that does not grow with the input size (here: the full
file's peak within 10% of the half file's).

About half the generated spans are db client spans, the analyzer's costliest kind (each statement
is tokenized to normalize it and hash its literals). Measured on the 2-core development machine
(2026-11-27, best of 3, quiet): ~141 000 spans/s end to end with the reading child and ~107 000 in one
process, 64 MB peak RSS; the reader alone ~196 000, orjson.loads alone ~285 000, DuckDB ~38 000
(1.1 GB). Since then the endpoint, dedup, trace-shape, impact, HTTP-call and pool rules were added:
on 2026-12-06, under a load of ~5 from other work (so in CPU seconds, best of 3, on the 105 MB file),
one process took 3.35 s for 146 000 spans (43 000 spans/s), the reader alone 0.83 s, orjson.loads
alone 0.64 s: 0.19 of the parse rate; peak RSS 129 MB (105 MB on the half file: the rules' buffers
grow to their bounds). Under that load the command chose one process in every run (17.2 s for the
220 MB file), where the code that forked whenever it had two CPUs took 21.6 s.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

BIN = Path(sys.executable).parent
TARGET_SPANS_PER_S = 140_000
#: End to end at least this share of the rate of orjson.loads alone (parse the lines, count the spans).
TARGET_PARSE_SHARE = 0.5
TARGET_RSS_MB = 300
#: "does not grow with the input size": the full file's peak RSS at most this much above the half's.
RSS_GROWTH_TOLERANCE = 0.10

#: 2026-11-26T10:00:00Z: fixed, so every run analyses the same data.
BASE_NS = 1_795_687_200 * 1_000_000_000
#: Root requests per second (all services together); sets how much time a file covers.
REQUESTS_PER_S = 40
#: Traces per export line and resource (one batch of a service), and services per line.
TRACES_PER_BATCH = 12
MS = 1_000_000


# --- the generated telemetry ----------------------------------------------------------------------


def _s(key: str, value: str) -> dict[str, object]:
    return {"key": key, "value": {"stringValue": value}}


def _i(key: str, value: int) -> dict[str, object]:
    return {"key": key, "value": {"intValue": str(value)}}


def _resource(service: str, instance: int, version: str) -> dict[str, object]:
    return {
        "attributes": [
            _s("service.name", service),
            _s("service.version", version),
            _s("service.instance.id", f"{service}-{instance:02d}-7f9c4b"),
            _s("deployment.environment.name", "production"),
            _s("host.name", f"ip-10-0-{instance}-{len(service) * 7}.ec2.internal"),
            _s("telemetry.sdk.name", "opentelemetry"),
            _s("telemetry.sdk.language", "python"),
            _s("telemetry.sdk.version", "1.45.1"),
            _s("process.runtime.name", "cpython"),
            _s("process.runtime.version", "3.12.7"),
            _i("process.pid", 4000 + instance),
        ],
        "droppedAttributesCount": 0,
    }


_SCOPE_HTTP = {"name": "opentelemetry.instrumentation.fastapi", "version": "0.66b1"}


@dataclass
class _Gen:
    """One trace at a time, as lists of OTLP JSON span dicts (shared attribute lists reused)."""

    rng: random.Random

    def ids(self) -> tuple[str, str]:
        return f"{self.rng.getrandbits(128):032x}", f"{self.rng.getrandbits(64):016x}"

    def span_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    @staticmethod
    def span(
        trace_id: str,
        span_id: str,
        parent: str,
        name: str,
        kind: int,
        start: int,
        end: int,
        attributes: list[dict[str, object]],
        error: bool = False,
    ) -> dict[str, object]:
        out: dict[str, object] = {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "flags": 257 if parent else 256,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": attributes,
            "status": {"code": 2, "message": "Internal Server Error"} if error else {},
        }
        return out

    def server(
        self, trace_id: str, root: str, method: str, route: str, path: str, start: int, end: int, status: int
    ) -> dict[str, object]:
        attributes = [
            _s("http.request.method", method),
            _s("url.scheme", "https"),
            _s("url.path", path),
            _s("http.route", route),
            _i("http.response.status_code", status),
            _s("server.address", "api.shop.example"),
            _i("server.port", 443),
            _s("network.protocol.version", "1.1"),
            _s("client.address", f"10.1.{self.rng.randrange(256)}.{self.rng.randrange(256)}"),
            _s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
        ]
        if status >= 500:
            attributes.append(_s("error.type", str(status)))
        return self.span(trace_id, root, "", f"{method} {route}", 2, start, end, attributes, status >= 500)

    def db(
        self, trace_id: str, parent: str, operation: str, table: str, statement: str, start: int, ms: float
    ) -> dict[str, object]:
        attributes = [
            _s("db.system.name", "postgresql"),
            _s("db.namespace", "shop"),
            _s("db.operation.name", operation),
            _s("db.collection.name", table),
            _s("db.query.text", statement),
            _s("server.address", "db-primary.internal"),
            _i("server.port", 5432),
        ]
        return self.span(
            trace_id,
            self.span_id(),
            parent,
            f"{operation} {table}",
            3,
            start,
            start + int(ms * MS),
            attributes,
        )

    def order_trace(self, start: int) -> list[dict[str, object]]:
        """orders: GET /api/orders/{id}: an internal span, two lookups, an N+1 over the items in 1/3."""
        rng = self.rng
        trace_id, root = self.ids()
        order = rng.randrange(1, 2_000_000)
        load = self.span_id()
        t = start + 2 * MS
        spans = [
            self.db(
                trace_id,
                load,
                "SELECT",
                "orders",
                f"SELECT id, customer_id, status, total FROM orders WHERE id = {order}",
                t,
                1.5 + rng.random(),
            ),
        ]
        t += 3 * MS
        spans.append(
            self.db(
                trace_id,
                load,
                "SELECT",
                "order_items",
                f"SELECT product_id, quantity FROM order_items WHERE order_id = {order}",
                t,
                2 + rng.random(),
            )
        )
        t += 3 * MS
        if rng.random() < 0.33:  # the N+1: one product query per item
            for _ in range(8):
                product = rng.randrange(1, 50_000)
                ms = 6 + 4 * rng.random()
                spans.append(
                    self.db(
                        trace_id,
                        load,
                        "SELECT",
                        "products",
                        f"SELECT * FROM products WHERE id = {product}",
                        t,
                        ms,
                    )
                )
                t += int(ms * MS) + MS // 5
        else:
            spans.append(
                self.db(
                    trace_id,
                    load,
                    "SELECT",
                    "products",
                    "SELECT id, name, price FROM products WHERE id IN "
                    f"({', '.join(str(rng.randrange(1, 50_000)) for _ in range(4))})",
                    t,
                    3 + 2 * rng.random(),
                )
            )
            t += 5 * MS
        end = t + 2 * MS
        status = 500 if rng.random() < 0.02 else 200
        spans.append(
            self.span(
                trace_id,
                load,
                root,
                "load_order",
                1,
                start + MS,
                end - MS,
                [_s("code.function", "load_order")],
            )
        )
        spans.append(
            self.server(trace_id, root, "GET", "/api/orders/{id}", f"/api/orders/{order}", start, end, status)
        )
        return spans

    def checkout_trace(self, start: int) -> list[dict[str, object]]:
        """payments: POST /api/checkout: an insert, a call to the card processor, an update."""
        rng = self.rng
        trace_id, root = self.ids()
        order = rng.randrange(1, 2_000_000)
        amount = rng.randrange(100, 100_000) / 100
        t = start + MS
        spans = [
            self.db(
                trace_id,
                root,
                "INSERT",
                "payments",
                "INSERT INTO payments (order_id, amount, currency, state) "
                f"VALUES ({order}, {amount}, 'EUR', 'pending')",
                t,
                2 + rng.random(),
            )
        ]
        t += 4 * MS
        call_ms = 40 + 80 * rng.random()
        spans.append(
            self.span(
                trace_id,
                self.span_id(),
                root,
                "POST",
                3,
                t,
                t + int(call_ms * MS),
                [
                    _s("http.request.method", "POST"),
                    _s("url.full", "https://psp.example/v1/charges"),
                    _s("server.address", "psp.example"),
                    _i("server.port", 443),
                    _i("http.response.status_code", 200),
                ],
            )
        )
        t += int(call_ms * MS) + MS
        spans.append(
            self.db(
                trace_id,
                root,
                "UPDATE",
                "orders",
                f"UPDATE orders SET status = 'paid', paid_at = now() WHERE id = {order}",
                t,
                2 + rng.random(),
            )
        )
        t += 4 * MS
        status = 503 if rng.random() < 0.02 else 201
        spans.append(self.server(trace_id, root, "POST", "/api/checkout", "/api/checkout", start, t, status))
        return spans

    def catalog_trace(self, start: int) -> list[dict[str, object]]:
        """inventory: GET /api/products: a category page, or (1 in 50) a slow stock report."""
        rng = self.rng
        trace_id, root = self.ids()
        t = start + MS
        if rng.random() < 0.02:
            ms = 550 + 300 * rng.random()
            statement = (
                "SELECT p.category, sum(s.quantity) FROM stock s JOIN products p ON p.id = s.product_id "
                f"WHERE s.warehouse_id = {rng.randrange(1, 40)} GROUP BY p.category ORDER BY 2 DESC"
            )
            spans = [self.db(trace_id, root, "SELECT", "stock", statement, t, ms)]
            route = "/api/reports/stock"
        else:
            ms = 3 + 6 * rng.random()
            category = rng.choice(("books", "garden", "toys", "kitchen", "audio", "sports"))
            statement = (
                f"SELECT id, name, price FROM products WHERE category = '{category}' AND price < "
                f"{rng.randrange(10, 500)} ORDER BY price LIMIT 50"
            )
            spans = [self.db(trace_id, root, "SELECT", "products", statement, t, ms)]
            spans[0]["attributes"].append(_i("db.response.returned_rows", rng.randrange(0, 51)))  # type: ignore[union-attr]
            route = "/api/products"
        t += int(ms * MS) + 2 * MS
        status = 500 if rng.random() < 0.02 else 200
        spans.append(self.server(trace_id, root, "GET", route, route, start, t, status))
        return spans

    def frontend_trace(self, start: int) -> list[dict[str, object]]:
        """frontend: GET /: render spans and two HTTP client calls to the API."""
        rng = self.rng
        trace_id, root = self.ids()
        t = start + MS
        spans = []
        for path in ("/api/products", "/api/cart"):
            ms = 5 + 10 * rng.random()
            spans.append(
                self.span(
                    trace_id,
                    self.span_id(),
                    root,
                    "GET",
                    3,
                    t,
                    t + int(ms * MS),
                    [
                        _s("http.request.method", "GET"),
                        _s("url.full", f"http://api.internal{path}"),
                        _s("server.address", "api.internal"),
                        _i("server.port", 80),
                        _i("http.response.status_code", 200),
                    ],
                )
            )
            t += int(ms * MS) + MS
        render = 4 + 4 * rng.random()
        spans.append(
            self.span(
                trace_id,
                self.span_id(),
                root,
                "render home.html",
                1,
                t,
                t + int(render * MS),
                [_s("template", "home.html")],
            )
        )
        t += int(render * MS) + MS
        spans.append(self.server(trace_id, root, "GET", "/", "/", start, t, 200))
        return spans


SERVICES = (
    ("orders", "2.14.0", _Gen.order_trace),
    ("payments", "1.8.3", _Gen.checkout_trace),
    ("inventory", "3.1.0", _Gen.catalog_trace),
    ("frontend", "5.0.2", _Gen.frontend_trace),
)


def generate(path: Path, half: Path, size_mb: float, seed: int = 7) -> tuple[int, int, int]:
    """Write ``path`` (>= ``size_mb`` MB) and ``half`` (its first lines, >= half the size).
    Returns (spans in path, spans in half, bytes of half)."""
    gen = _Gen(random.Random(seed))
    target = int(size_mb * 1024 * 1024)
    resources = [
        [_resource(service, instance, version) for instance in range(2)] for service, version, _ in SERVICES
    ]
    written = spans = 0
    half_spans = half_bytes = -1
    now = BASE_NS
    step = 1_000_000_000 // REQUESTS_PER_S
    batch = 0
    with open(path, "wb") as out, open(half, "wb") as half_out:
        while written < target:
            resource_spans = []
            for (_, _, make), instances in zip(SERVICES, resources, strict=True):
                items: list[dict[str, object]] = []
                for _ in range(TRACES_PER_BATCH):
                    items.extend(make(gen, now))
                    now += gen.rng.randrange(2 * step)  # mean: one step
                resource_spans.append(
                    {
                        "resource": instances[batch % 2],
                        "scopeSpans": [{"scope": _SCOPE_HTTP, "spans": items}],
                        "schemaUrl": "https://opentelemetry.io/schemas/1.30.0",
                    }
                )
                spans += len(items)
            batch += 1
            line = orjson.dumps({"resourceSpans": resource_spans}) + b"\n"
            out.write(line)
            written += len(line)
            if half_spans < 0:
                half_out.write(line)
                if written >= target // 2:
                    half_spans, half_bytes = spans, written
    return spans, half_spans, half_bytes


# --- the rows ---------------------------------------------------------------------------------------

_PARSE = """
import sys, {module}
spans = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        for rs in {module}.loads(line).get("resourceSpans", ()):
            for ss in rs.get("scopeSpans", ()):
                spans += len(ss.get("spans", ()))
print(spans)
"""
#: The command as installed (``analyze.main``), which says whether it read in a second process.
_AUTO = """
import sys
from amqadf_agent.analyzer import run
from amqadf_agent.cli import analyze
chosen = []
wants = run._wants_pipeline
run._wants_pipeline = lambda paths: chosen.append(wants(paths)) or chosen[-1]
status = analyze.main(sys.argv[1:])
print("two" if any(chosen) else "one")
sys.exit(status)
"""
_ONE_PROCESS = """
import sys
from amqadf_agent.analyzer import run
from amqadf_agent.cli import analyze
run.PIPELINE_MIN_BYTES = 1 << 62
sys.exit(analyze.main(sys.argv[1:]))
"""
_AT = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from amqadf_agent.cli import analyze
assert analyze.__file__.startswith(sys.path[0]), analyze.__file__
sys.exit(analyze.main(sys.argv[1:]))
"""
_READER = """
import sys
from amqadf_agent.analyzer.otlp_reader import read
spans = 0
for record in read(sys.argv[1]):
    spans += 1
print(spans)
"""
_DUCKDB = """
import sys, duckdb
con = duckdb.connect()
query = '''
SELECT count(*) FROM (
  SELECT unnest(ss.spans) AS span FROM (
    SELECT unnest(rs.scopeSpans) AS ss FROM (
      SELECT unnest(resourceSpans) AS rs
      FROM read_json(?, format = 'newline_delimited', maximum_object_size = 268435456))))
'''
print(con.execute(query, [sys.argv[1]]).fetchone()[0])
"""


_E2E = "amqadf-analyze --format json (as chosen)"
_ONE = "amqadf-analyze in one process (no child)"
_ORJSON = "orjson.loads per line (count spans)"


@dataclass
class Result:
    wall_s: float
    rss_mb: float
    stdout: str


def run(argv: list[str]) -> Result:
    """Run ``argv`` to completion: wall time, its own peak RSS (``os.wait4``), its stdout."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()  # small: warnings at most
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.decode()[-2000:]}")
    return Result(wall, usage.ru_maxrss / 1024, text)


def per_rule_table(path: Path, max_spans: int) -> None:
    """Time each rule alone over the first ``max_spans`` spans of ``path`` (read once, in memory)."""
    from amqadf_agent.analyzer.dedup import CallDeduplicator
    from amqadf_agent.analyzer.endpoints import EndpointRules
    from amqadf_agent.analyzer.impact import ImpactFeed, estimate
    from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanRecord
    from amqadf_agent.analyzer.otlp_reader import ReadStats, read
    from amqadf_agent.analyzer.rules.cache import CacheRules
    from amqadf_agent.analyzer.rules.database import DatabaseRules
    from amqadf_agent.analyzer.rules.pool import PoolRules
    from amqadf_agent.analyzer.rules.threads import ThreadRules
    from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeRules
    from amqadf_agent.analyzer.summary import summarize
    from amqadf_agent.analyzer.windows import WindowAggregator

    records = []
    for record in read(path):
        records.append(record)
        if len(records) >= max_spans:
            break
    spans = len(records)
    client = [r for r in records if type(r) is SpanRecord and r.kind == SPAN_KIND_CLIENT]

    def database() -> None:
        rules = DatabaseRules()
        for span in client:
            rules.add_span(span)
        rules.recommendations()

    def dedup_then_database() -> None:
        rules = DatabaseRules()
        dedup = CallDeduplicator(rules.add_span)
        for span in client:
            dedup.add(span)
        dedup.flush()
        rules.recommendations()

    def dedup_database_impact() -> None:
        rules = DatabaseRules()
        impact = ImpactFeed(rules)
        dedup = CallDeduplicator(rules.add_span)
        for record in records:
            if type(record) is SpanRecord:
                if record.kind == SPAN_KIND_CLIENT:
                    dedup.add(record)
                elif record.kind in impact.SPAN_KINDS:
                    impact.add(record)
        dedup.flush()
        estimate(impact, rules.recommendations())

    def dedup_alone() -> None:
        dedup = CallDeduplicator(lambda span: None)
        for span in client:
            dedup.add(span)
        dedup.flush()

    def feed(make: object, finish: str) -> object:
        def run_feed() -> None:
            rules = make()  # type: ignore[operator]
            add = rules.add
            kinds = rules.SPAN_KINDS
            for record in records:
                if type(record) is not SpanRecord or record.kind in kinds:
                    add(record)
            getattr(rules, finish)()

        return run_feed

    rows = [
        ("summary (summarize)", lambda: summarize(iter(records), ReadStats())),
        ("database rules (client spans)", database),
        ("call dedup alone (new)", dedup_alone),
        ("call dedup + database rules (new path)", dedup_then_database),
        ("the same + fix impact (ImpactFeed, estimate)", dedup_database_impact),
        ("scaling windows (WindowAggregator)", feed(lambda: WindowAggregator(None), "windows")),
        ("cache rules", feed(CacheRules, "recommendations")),
        ("thread rules", feed(ThreadRules, "recommendations")),
        ("endpoint view (new)", feed(EndpointRules, "to_json")),
        ("trace shapes (TraceShapeRules)", feed(TraceShapeRules, "recommendations")),
        ("connection pools (PoolRules)", feed(PoolRules, "recommendations")),
    ]
    print(f"\nper rule, {spans:,} spans of {path.name} in memory ({len(client):,} client spans); best of 3")
    print(f"{'rule':44} {'CPU s':>8} {'us/span':>8} {'spans/s':>12}")
    for label, work in rows:
        best = min(_timed(work) for _ in range(3))  # type: ignore[arg-type]
        print(f"{label:44} {best:>8.3f} {best / spans * 1e6:>8.2f} {spans / best:>12,.0f}")


def _timed(work: object) -> float:
    """CPU seconds of ``work()``: steadier than wall time on a machine shared with other jobs."""
    t0 = time.process_time()
    work()  # type: ignore[operator]
    return time.process_time() - t0


def has_duckdb() -> bool:
    return subprocess.run([sys.executable, "-c", "import duckdb"], capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size-mb", type=float, default=210.0, help="size of the large file (default 210)")
    parser.add_argument("--dir", help="write the files here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row, interleaved (default 3)")
    parser.add_argument(
        "--before", metavar="DIR", help="also run the package found in DIR end to end (a row), to compare"
    )
    parser.add_argument(
        "--rule-spans", type=int, default=400_000, help="spans for the per-rule table (default 400000)"
    )
    args = parser.parse_args(argv)

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-analyzer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    full, half = workdir / "traces-full.jsonl", workdir / "traces-half.jsonl"
    try:
        t0 = time.perf_counter()
        full_spans, half_spans, _ = generate(full, half, args.size_mb)
        took = time.perf_counter() - t0
        sizes = {full: (full.stat().st_size, full_spans), half: (half.stat().st_size, half_spans)}
        for path, (size, spans) in sizes.items():
            print(f"{path.name}: {size / 1e6:.1f} MB, {spans:,} spans")
        print(f"(generated in {took:.1f} s; {REQUESTS_PER_S} requests/s over 4 services)\n")
        for path in sizes:  # into the page cache, so no row pays the first read from disk
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass

        py = sys.executable
        rows: list[tuple[str, Path, list[str] | None]] = [
            (_E2E, full, [py, "-c", _AUTO, str(full), "--format", "json", "-o", os.devnull]),
            (_E2E, half, [py, "-c", _AUTO, str(half), "--format", "json", "-o", os.devnull]),
            ("amqadf-analyze, code at --before DIR", full,
             [py, "-c", _AT, args.before, str(full), "--format", "json", "-o", os.devnull]
             if args.before else None),
            (_ONE, full,
             [py, "-c", _ONE_PROCESS, str(full), "--format", "json", "-o", os.devnull]),
            ("otlp_reader.read only (records, no rules)", full, [py, "-c", _READER, str(full)]),
            (_ORJSON, full,
             [py, "-c", _PARSE.format(module="orjson"), str(full)]),
            ("json.loads per line (count spans)", full,
             [py, "-c", _PARSE.format(module="json"), str(full)]),
            ("DuckDB read_json (unnest, count spans)", full,
             [py, "-c", _DUCKDB, str(full)] if has_duckdb() else None),
        ]  # fmt: skip
        present = [(label, path, command) for label, path, command in rows if command is not None]
        best: dict[int, Result] = {}
        #: Row -> runs that read in a second process (the automatic choice of the command).
        two_processes: dict[int, int] = {}
        for round_ in range(args.repeat):  # interleaved rounds: a noisy minute spreads over the rows
            print(f"round {round_ + 1} of {args.repeat}...", file=sys.stderr)
            for index, (label, path, command) in enumerate(present):
                assert command is not None
                result = run(command)
                counted = result.stdout.strip()
                if counted in ("one", "two"):
                    two_processes[index] = two_processes.get(index, 0) + (counted == "two")
                if counted.isdigit() and int(counted) != sizes[path][1]:
                    raise RuntimeError(f"{label}: counted {counted} spans, expected {sizes[path][1]}")
                previous = best.get(index)
                if previous is None or result.wall_s < previous.wall_s:
                    # the fastest run's time; the largest peak RSS of all runs
                    rss = max(result.rss_mb, previous.rss_mb if previous else 0.0)
                    best[index] = Result(result.wall_s, rss, result.stdout)
                else:
                    previous.rss_mb = max(previous.rss_mb, result.rss_mb)

        print(f"best wall time of {args.repeat} runs per row, largest peak RSS of them (2-core machine)")
        print(f"{'row':44} {'file':>8} {'spans':>10} {'wall s':>8} {'spans/s':>10} {'peak RSS MB':>12}")
        e2e: dict[Path, Result] = {}
        one_process = parse = None
        index = 0
        for label, path, command in rows:
            size, spans = sizes[path]
            where = f"{size / 1e6:.0f} MB"
            if command is None:
                if label.startswith("DuckDB"):
                    print(f"{label:44} {where:>8} {'not installed (pip install duckdb)':>42}")
                continue
            result = best[index]
            index += 1
            if label == _E2E:
                e2e[path] = result
                label = f"amqadf-analyze as chosen ({two_processes.get(index - 1, 0)}/{args.repeat} 2 procs)"
            elif label == _ONE:
                one_process = result
            elif label == _ORJSON:
                parse = result
            print(
                f"{label:44} {where:>8} {spans:>10,} {result.wall_s:>8.2f} "
                f"{spans / result.wall_s:>10,.0f} {result.rss_mb:>12.1f}"
            )

        per_rule_table(half, args.rule_spans)
        assert one_process is not None and parse is not None
        rate = full_spans / e2e[full].wall_s
        alone = full_spans / one_process.wall_s
        share = alone / (full_spans / parse.wall_s)
        peak = max(r.rss_mb for r in (*e2e.values(), one_process))
        growth = e2e[full].rss_mb / e2e[half].rss_mb - 1
        ok_rate = alone >= TARGET_SPANS_PER_S
        ok_share = share >= TARGET_PARSE_SHARE
        ok_rss = peak < TARGET_RSS_MB
        ok_growth = growth <= RSS_GROWTH_TOLERANCE

        def met(ok: bool) -> str:
            return "met" if ok else "NOT met"

        print(
            f"\nverdict: in one process {alone:,.0f} spans/s (target >= {TARGET_SPANS_PER_S:,}: "
            f"{met(ok_rate)}), {share:.2f} of orjson.loads alone (target >= {TARGET_PARSE_SHARE}: "
            f"{met(ok_share)}); as chosen {rate:,.0f} spans/s; peak RSS {peak:.0f} MB (target < "
            f"{TARGET_RSS_MB}: {met(ok_rss)}); RSS {growth:+.0%} from the half file to the full one "
            f"(target <= {RSS_GROWTH_TOLERANCE:+.0%}: {met(ok_growth)})"
        )
        return 0 if ok_rate and ok_share and ok_rss and ok_growth else 1
    finally:
        if not args.keep:
            for path in (full, half):
                path.unlink(missing_ok=True)
            if not args.dir:
                workdir.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
