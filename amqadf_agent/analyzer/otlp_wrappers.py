"""Trace exports that wrap OTLP in another envelope, unwrapped for the reader.

Query APIs of trace stores answer with OTLP spans inside their own envelope, and users save those
answers to files:

* Jaeger's api_v3 (``/api/v3/traces/{id}``): ``{"result": {"resourceSpans": [...]}}``, one such
  object per line when streamed; an error comes as ``{"error": {"message": ...}}``;
* Grafana Tempo's ``/api/traces/{id}``: ``{"batches": [...]}`` (the ``resourceSpans`` under another
  name, older versions with ``instrumentationLibrarySpans``), and ``/api/v2/traces/{id}``:
  ``{"trace": {"resourceSpans": [...]}}``.

Both write protobuf's JSON mapping: trace and span ids in base64 (OTLP/JSON wants hex) and enums by
name (which the reader accepts anyway). ``unwrap`` returns the plain export request with the ids
converted to hex; what it cannot convert is left for the reader to report as it does for any line
(``file:line: spans[0].traceId: expected 32 hex digits ...``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from amqadf_agent.analyzer.otlp_values import _InvalidLine

__all__ = ["unwrap"]

_SIGNALS: Final = ("resourceSpans", "resourceMetrics", "resourceLogs")
#: Id field -> its length in bytes.
_ID_BYTES: Final = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def unwrap(obj: Any) -> Any:
    """The OTLP export request inside a Jaeger api_v3 or Tempo answer, ``None`` for an empty answer;
    anything else unchanged.

    Raises ``_InvalidLine`` (a problem of the line) for an error answer or a wrapper around no object.
    """
    if type(obj) is not dict or any(key in obj for key in _SIGNALS):
        return obj  # a plain export request (the common case) or not an object at all
    if "result" in obj:  # Jaeger api_v3
        inner = obj["result"]
        where = "result"
    elif "trace" in obj:  # Tempo /api/v2/traces
        inner = obj["trace"]
        where = "trace"
    elif "batches" in obj:  # Tempo /api/traces
        inner = {"resourceSpans": obj["batches"]}
        where = "batches"
    elif "error" in obj and len(obj) == 1:
        error = obj["error"]
        message = error.get("message") if type(error) is dict else error
        raise _InvalidLine(f"an error answer of the trace store, no telemetry: {str(message)[:200]}")
    else:
        return obj
    if type(inner) is not dict:
        raise _InvalidLine(f"{where}: expected an object holding resourceSpans")
    if not any(key in inner for key in _SIGNALS):
        return None  # an empty answer (a trace not found): nothing to read, and no problem
    resources = inner.get("resourceSpans")
    if type(resources) is list:
        inner = dict(inner, resourceSpans=[_resource(entry) for entry in resources])
    return inner


def _resource(entry: Any) -> Any:
    """One resource's spans with scope names as OTLP has them today and hex ids."""
    if type(entry) is not dict:
        return entry  # the reader reports it
    entry = dict(entry)
    if "scopeSpans" not in entry and "instrumentationLibrarySpans" in entry:
        entry["scopeSpans"] = [
            dict(scope, scope=scope.get("instrumentationLibrary")) if type(scope) is dict else scope
            for scope in entry.pop("instrumentationLibrarySpans")
        ]
    scopes = entry.get("scopeSpans")
    if type(scopes) is list:
        entry["scopeSpans"] = [_scope(scope) for scope in scopes]
    return entry


def _scope(scope: Any) -> Any:
    if type(scope) is not dict or type(scope.get("spans")) is not list:
        return scope
    return dict(scope, spans=[_span(span) for span in scope["spans"]])


def _span(span: Any) -> Any:
    if type(span) is not dict:
        return span
    span = dict(span)
    for key, size in _ID_BYTES.items():
        if key in span:
            span[key] = _hex_id(span[key], size)
    links = span.get("links")
    if type(links) is list:
        span["links"] = [
            dict(
                link,
                traceId=_hex_id(link.get("traceId"), 16),
                spanId=_hex_id(link.get("spanId"), 8),
            )
            if type(link) is dict
            else link
            for link in links
        ]
    return span


def _hex_id(value: Any, size: int) -> Any:
    """A base64 id as hex; a hex id, or anything that does not decode to ``size`` bytes, unchanged."""
    if type(value) is not str or not value:
        return value
    if len(value) == 2 * size and _HEX_DIGITS.issuperset(value):
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex() if len(raw) == size else value
