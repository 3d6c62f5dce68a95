"""Writing spans as an OTLP JSON lines file, as the file exporter writes them, for analyzer tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER, CLIENT, INTERNAL = 2, 3, 1
MS = 1_000_000
T0 = 1_767_000_000_000_000_000
#: The statement of the planted N+1, and the two instrumentation scopes that may both record it.
N1 = "SELECT id, sku FROM items WHERE order_id = 7"
ORM = "opentelemetry.instrumentation.sqlalchemy"
DBAPI = "opentelemetry.instrumentation.sqlite3"


@dataclass
class Span:
    """One span to write; ``scope`` is the instrumentation scope name."""

    trace_id: str
    span_id: str
    parent: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    scope: str = "test"
    error: bool = False
    service: str = "shop"
    instance: str = "shop-1"


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def write_spans(path: Path, spans: Iterable[Span]) -> Path:
    """Write ``spans`` as one export request per (service, instance, scope) group, in order."""
    lines = []
    for span in spans:
        resource = {
            "attributes": [
                {"key": "service.name", "value": _value(span.service)},
                {"key": "service.instance.id", "value": _value(span.instance)},
            ]
        }
        body = {
            "traceId": span.trace_id,
            "spanId": span.span_id,
            "parentSpanId": span.parent,
            "name": span.name,
            "kind": span.kind,
            "startTimeUnixNano": str(span.start_ns),
            "endTimeUnixNano": str(span.end_ns),
            "attributes": [{"key": k, "value": _value(v)} for k, v in span.attributes.items()],
            "status": {"code": 2} if span.error else {},
        }
        request = {
            "resourceSpans": [
                {"resource": resource, "scopeSpans": [{"scope": {"name": span.scope}, "spans": [body]}]}
            ]
        }
        lines.append(json.dumps(request))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def orders(requests: int, *, twins: str | None) -> list[Span]:
    """``requests`` of GET /orders/{id}, each 6 db calls (an N+1); each call also recorded by the
    DB-API instrumentation as a sibling (``twins="sibling"``) or a child (``"child"``)."""
    spans: list[Span] = []
    for r in range(requests):
        trace = f"{r + 1:032x}"
        server = f"{r + 1:08x}00000000"
        start = T0 + r * 1000 * MS
        for q in range(6):
            orm_id = f"{r + 1:08x}{q + 1:08x}"
            at = start + 10 * MS + q * 12 * MS
            db = {"db.system": "sqlite", "db.statement": N1}
            if twins is not None:
                parent = orm_id if twins == "child" else server
                spans.append(
                    Span(
                        trace,
                        f"{r + 1:08x}{q + 101:08x}",
                        parent,
                        "SELECT",
                        CLIENT,
                        at + MS,
                        at + 9 * MS,
                        db,
                        DBAPI,
                    )
                )
            spans.append(Span(trace, orm_id, server, "SELECT", CLIENT, at, at + 10 * MS, db, ORM))
        attributes = {
            "http.route": "/orders/{id}",
            "http.request.method": "GET",
            "http.response.status_code": 200,
        }
        spans.append(Span(trace, server, "", "GET /orders/{id}", SERVER, start, start + 100 * MS, attributes))
    return spans


def payments(requests: int, duration_ms: int = 250) -> list[Span]:
    """POST /pay (``duration_ms`` each): one outbound HTTP call each, every fourth request fails (502)."""
    spans: list[Span] = []
    for r in range(requests):
        trace = f"{r + 5001:032x}"
        server = f"{r + 5001:016x}"
        start = T0 + r * 1000 * MS + 500 * MS
        http = {"http.request.method": "POST", "url.full": "https://psp.example/charge"}
        spans.append(
            Span(trace, f"{r + 9001:016x}", server, "POST", CLIENT, start + 5 * MS, start + 205 * MS, http)
        )
        code = 502 if r % 4 == 0 else 200
        attributes = {"http.route": "/pay", "http.method": "POST", "http.status_code": code}
        spans.append(
            Span(trace, server, "", "POST /pay", SERVER, start, start + duration_ms * MS, attributes)
        )
    return spans
