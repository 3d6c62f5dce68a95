"""Per-span cost of writing a batch of spans as one OTLP line: ours, the SDK's, OTLP/HTTP's. Prints a table.

    .venv/bin/python tests/bench/bench_export_encoding.py [--rounds 21] [--batch 512]

Target (the agent's export costs less than plain OpenTelemetry's): the file exporter's encoding at
least 3x cheaper than the SDK's JSON path, with the same bytes. A batch holds typical spans, half
HTTP server spans (12 attributes, one with an exception event and an error status) and half DB
client spans (a statement and 5 attributes, children of the HTTP spans), from a real SDK
``TracerProvider``. Rows:

* ``SDK JSON``: the SDK's own JSON path, ``encode_spans(spans).to_dict()`` then
  ``orjson.dumps``; the two steps are also shown alone;
* ``direct JSON``: :func:`amqadf_agent.runtime.otlp_json_encode.spans_line` (dicts + ``orjson``);
  its caches are warm, as in a running process: most string attributes repeat (methods, routes,
  hosts); the ``every string value new`` rows encode a new batch each round whose string values
  were never seen (the cache's worst case), the SDK beside it on the same batches;
* ``SDK protobuf``: the OTLP protobuf encoder and ``SerializeToString``, what OTLP/HTTP exported;
  ``direct protobuf``: :func:`amqadf_agent.runtime.otlp_proto_encode.spans_body`, the same bytes
  written straight from the spans (what the agent's OTLP/HTTP exporter sends), its ratio against
  the SDK's protobuf row;
* ``log records``: the same for a batch of log records (a message, three ``code.*`` attributes,
  half of them inside a span).

Each figure is µs of CPU (the thread's, so that other processes on a busy machine do not count) per
span: the median and best of ``--rounds`` rounds; in each round every row encodes the same batch
once, in turn, each after a full garbage collection so that no row pays for another's garbage.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable

import orjson
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.json.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as proto_encode_spans
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from amqadf_agent.runtime.otlp_json_encode import encode_spans, logs_line, spans_line
from amqadf_agent.runtime.otlp_proto_encode import spans_body

STATEMENT = (
    "SELECT o.id, o.total, o.status, c.email FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.customer_id = ? AND o.status = ? ORDER BY o.created_at DESC LIMIT 20"
)


def typical_spans(count: int, unique: bool = False, first: int = 0) -> list[ReadableSpan]:
    """``count`` spans: HTTP server spans, each with a DB client child; ``unique``: no string
    attribute value twice (each ends with the span's number, counted from ``first``), under keys
    prefixed ``new.``."""
    captured = InMemorySpanExporter()
    resource = Resource.create(
        {
            "service.name": "orders",
            "service.version": "1.4.2",
            "deployment.environment": "prod",
            "host.name": "web-3",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(captured))
    http = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b1")
    db = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", "0.66b1")
    for i in range(count // 2):
        tag = f" {first + i}" if unique else ""

        def tagged(attributes: dict[str, str | int]) -> dict[str, str | int]:
            if not unique:
                return attributes
            # Keys of their own too: the cache gives up on a key that shows many values, and these
            # must not make it give up on the keys of the typical batch (methods, hosts, ...).
            return {f"new.{k}": v + tag if isinstance(v, str) else v for k, v in attributes.items()}  # noqa: B023

        with http.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as server:
            server.set_attributes(
                tagged(
                    {
                        "http.request.method": "GET",
                        "url.scheme": "https",
                        "url.path": f"/orders/{i}",
                        "http.route": "/orders/{id}",
                        "server.address": "shop.example.com",
                        "server.port": 443,
                        "client.address": "10.1.2.3",
                        "network.protocol.version": "1.1",
                        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                        "http.response.status_code": 500 if i % 16 == 0 else 200,
                        "http.response.body.size": 1834,
                        "amqadf.handler": "orders.views.show",
                    }
                )
            )
            with db.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT) as query:
                query.set_attributes(
                    tagged(
                        {
                            "db.system": "postgresql",
                            "db.namespace": "shop",
                            "db.operation.name": "SELECT",
                            "db.query.text": STATEMENT,
                            "server.port": 5432,
                        }
                    )
                )
            if i % 16 == 0:
                server.record_exception(RuntimeError("upstream failed"))
                server.set_status(Status(StatusCode.ERROR, "upstream failed"))
    provider.shutdown()
    return list(captured.get_finished_spans())


def typical_logs(count: int) -> list[ReadableLogRecord]:
    """``count`` log records from the ``logging`` bridge's usual fields, half inside a span."""
    captured = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    logger = provider.get_logger("orders.views", "1.4.2")
    tracer = TracerProvider().get_tracer("bench")
    for i in range(count):
        with tracer.start_as_current_span("GET /orders/{id}") if i % 2 else contextlib.nullcontext():
            logger.emit(
                severity_number=SeverityNumber.WARN,
                severity_text="WARNING",
                body=f"order {i} took 412 ms",
                attributes={
                    "code.file.path": "/app/orders/views.py",
                    "code.line.number": 88,
                    "code.function.name": "show",
                },
            )
    provider.shutdown()
    return list(captured.get_finished_logs())


BEFORE = "SDK JSON: encode_spans + to_dict + orjson.dumps (before)"
NEW_BEFORE = "SDK JSON, every string value new"
PROTO_BEFORE = "SDK protobuf: encode_spans + SerializeToString (OTLP/HTTP)"
LOGS_BEFORE = "log records, SDK JSON: encode_logs + to_dict + orjson.dumps"


def rows(
    spans: list[ReadableSpan], fresh: list[list[ReadableSpan]], logs: list[ReadableLogRecord]
) -> list[tuple[str, Callable[[int], object], str]]:
    """(name, what it runs in a round, the row its ratio is against; "" for none)."""
    sdk_message = sdk_encode_spans(spans)
    sdk_dict = sdk_message.to_dict()
    return [
        (BEFORE, lambda _: orjson.dumps(sdk_encode_spans(spans).to_dict()), BEFORE),
        ("  of which encode_spans", lambda _: sdk_encode_spans(spans), ""),
        ("  of which to_dict", lambda _: sdk_message.to_dict(), ""),
        ("  of which orjson.dumps", lambda _: orjson.dumps(sdk_dict), ""),
        ("direct JSON: spans_line (now)", lambda _: spans_line(spans), BEFORE),
        ("  of which encode_spans (dicts)", lambda _: encode_spans(spans), ""),
        (
            PROTO_BEFORE,
            lambda _: proto_encode_spans(spans).SerializeToString(),
            BEFORE,
        ),
        ("direct protobuf: spans_body (OTLP/HTTP, now)", lambda _: spans_body(spans), PROTO_BEFORE),
        (NEW_BEFORE, lambda n: orjson.dumps(sdk_encode_spans(fresh[n]).to_dict()), NEW_BEFORE),
        ("direct JSON, every string value new", lambda n: spans_line(fresh[n]), NEW_BEFORE),
        ("direct protobuf, every string value new", lambda n: spans_body(fresh[n]), ""),
        (LOGS_BEFORE, lambda _: orjson.dumps(sdk_encode_logs(logs).to_dict()), LOGS_BEFORE),
        ("log records, direct JSON: logs_line", lambda _: logs_line(logs), LOGS_BEFORE),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args(argv)
    spans = typical_spans(args.batch)
    # A batch of its own for each round (and the warm-up): no string value is ever seen twice.
    fresh = [typical_spans(args.batch, unique=True, first=n * args.batch) for n in range(args.rounds + 1)]
    for batch in (spans, fresh[0]):
        if spans_line(batch) != orjson.dumps(sdk_encode_spans(batch).to_dict()) + b"\n":
            print("direct JSON differs from the SDK's: the figures below compare different outputs")
        if spans_body(batch) != proto_encode_spans(batch).SerializeToString():
            print("direct protobuf differs from the SDK's: the figures below compare different outputs")
    logs = typical_logs(args.batch)
    if logs_line(logs) != orjson.dumps(sdk_encode_logs(logs).to_dict()) + b"\n":
        print("direct JSON differs from the SDK's for log records")
    table = rows(spans, fresh, logs)
    times: dict[str, list[float]] = {name: [] for name, _, _ in table}
    for _, fn, _ in table:
        fn(args.rounds)  # warm up, the direct encoder's caches too (they persist across batches)
    for n in range(args.rounds):
        for name, fn, _ in table:
            gc.collect()
            start = time.thread_time()
            fn(n)
            times[name].append((time.thread_time() - start) / len(spans) * 1e6)
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    print(f"batch of {len(spans)} spans (or log records), {args.rounds} rounds")
    print(f"{'µs of CPU per span (log record)':62} {'median':>8} {'best':>8} {'vs SDK JSON':>12}")
    for name, _, versus in table:
        ratio = f"{medians[versus] / medians[name]:11.1f}x" if versus else ""
        print(f"{name:62} {medians[name]:8.2f} {min(times[name]):8.2f} {ratio:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
