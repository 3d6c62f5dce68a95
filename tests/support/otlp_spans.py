"""Writing spans as an OTLP JSON lines file, as the file exporter writes them, for analyzer tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER, CLIENT, INTERNAL = 2, 3, 1


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
