"""Span lines, decoded into typed structures.

The common line, a span export request, is decoded by msgspec into the Structs below instead of by
orjson into dicts: msgspec checks the types while it decodes (no dict is built, no key looked up),
which reads a span line about 1.6 times as fast as the general path (tests/bench/bench_analyzer.py).
Every field the OTLP/JSON encoding defines for spans is declared, and unknown fields are forbidden,
so this path sees every value of the line. It accepts a line only in the encodings the general path
(``otlp_json``: orjson, then ``_walk``) reads the same way: anything else (metrics or logs, an
unknown field, a snake_case key, an enum by name, an int64 as a float or out of the 64-bit range, a
bad id, invalid UTF-8, a JSON error) makes ``_span_records`` return None, and the line is read again
by the general path, which alone decides what a line holds and reports its problems. The records are
the same either way (a test compares). The field names below are the OTLP/JSON ones (camelCase), as
they come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
from msgspec import UNSET, Struct, UnsetType

from amqadf_agent.analyzer.model import Attributes, SpanEvent, SpanLink, SpanRecord, Value
from amqadf_agent.analyzer.otlp_values import (
    _EMPTY,
    _SPAN_IDS,
    _TRACE_IDS,
    _bytes,
    _float,
    _id,
    _int,
    _InvalidLine,
    _memo_id,
)


class _KeyValue(Struct, forbid_unknown_fields=True, gc=False):
    key: str
    value: _AnyValue | None = None


class _ArrayValue(Struct, forbid_unknown_fields=True, gc=False):
    values: list[_AnyValue] | None = None


class _KeyValueList(Struct, forbid_unknown_fields=True, gc=False):
    values: list[_KeyValue] | None = None


class _AnyValue(Struct, forbid_unknown_fields=True, gc=False):
    # UNSET (absent) and None (null) differ: a null stringValue is "", an absent one is another kind.
    stringValue: str | UnsetType | None = UNSET
    boolValue: bool | UnsetType | None = UNSET
    intValue: int | str | UnsetType | None = UNSET
    doubleValue: float | str | UnsetType | None = UNSET
    arrayValue: _ArrayValue | UnsetType | None = UNSET
    kvlistValue: _KeyValueList | UnsetType | None = UNSET
    bytesValue: str | UnsetType | None = UNSET


class _Status(Struct, forbid_unknown_fields=True, gc=False):
    message: str | None = None
    code: int | None = None


class _Event(Struct, forbid_unknown_fields=True, gc=False):
    timeUnixNano: int | str | None = None
    name: str | None = None
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: int | None = None


class _Link(Struct, forbid_unknown_fields=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    traceState: str | None = None
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: int | None = None
    flags: int | None = None


class _Span(Struct, forbid_unknown_fields=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    traceState: str | None = None
    parentSpanId: str | None = None
    flags: int | None = None
    name: str | None = None
    kind: int | None = None
    startTimeUnixNano: int | str | None = None
    endTimeUnixNano: int | str | None = None
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: int | None = None
    events: list[_Event] | None = None
    droppedEventsCount: int | None = None
    links: list[_Link] | None = None
    droppedLinksCount: int | None = None
    status: _Status | None = None


class _Scope(Struct, forbid_unknown_fields=True, gc=False):
    name: str | None = None
    version: str | None = None
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: int | None = None


class _ScopeSpans(Struct, forbid_unknown_fields=True, gc=False):
    scope: _Scope | None = None
    spans: list[_Span] | None = None
    schemaUrl: str | None = None


class _Resource(Struct, forbid_unknown_fields=True, gc=False):
    attributes: list[_KeyValue] | None = None
    droppedAttributesCount: int | None = None


class _ResourceSpans(Struct, forbid_unknown_fields=True, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_ScopeSpans] | None = None
    schemaUrl: str | None = None


class _SpansRequest(Struct, forbid_unknown_fields=True, gc=False):
    resourceSpans: list[_ResourceSpans]


_decode_spans: Final = msgspec.json.Decoder(_SpansRequest).decode
#: orjson reads an integer outside [-2**63, 2**64) as a float; such a value is left to the general path.
_INT_MIN: Final = -(2**63)
_INT_END: Final = 2**64


class _LeftToGeneralPath(Exception):
    """A value the typed path leaves to the general one (never escapes ``_span_records``)."""


def _span_records(line: bytes, make: Callable[..., Any] = SpanRecord) -> list[Any] | None:
    """The span records (``make(fields...)``) of a span export line, or None when the general path
    must read the line."""
    if not line.isascii():
        try:
            line.decode()  # msgspec checks the UTF-8 of what it decodes; orjson of the whole line
        except UnicodeDecodeError:
            return None
    try:
        request = _decode_spans(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError included
        return None
    try:
        return _typed_spans(request, make)
    except (_InvalidLine, _LeftToGeneralPath, RecursionError):
        return None


def _typed_spans(request: _SpansRequest, make: Callable[..., Any]) -> list[Any]:
    # The hot path of the reader: the checks of _walk and _span; a value they would reject raises.
    out: list[Any] = []
    append = out.append
    trace_ids = _TRACE_IDS
    span_ids = _SPAN_IDS
    for resource_spans in request.resourceSpans:
        resource_value = resource_spans.resource
        resource: Attributes = _EMPTY
        if resource_value is not None and resource_value.attributes:
            resource = _typed_kvlist(resource_value.attributes)
        for scope_spans in resource_spans.scopeSpans or ():
            scope = scope_spans.scope
            if scope is None:
                scope_name = scope_version = ""
            else:
                scope_name = scope.name or ""
                scope_version = scope.version or ""
            for span in scope_spans.spans or ():
                status = span.status
                if status is None:
                    status_code, status_message = 0, ""
                else:
                    status_code = status.code or 0
                    if not _INT_MIN <= status_code < _INT_END:
                        raise _LeftToGeneralPath
                    status_message = status.message or ""
                kind = span.kind or 0
                if not _INT_MIN <= kind < _INT_END:
                    raise _LeftToGeneralPath
                trace_id = span.traceId
                trace_id = (trace_id is not None and trace_ids.get(trace_id)) or _memo_id(
                    trace_id, 32, "traceId", True, trace_ids
                )
                span_id = span.spanId
                span_id = (span_id is not None and span_ids.get(span_id)) or _memo_id(
                    span_id, 16, "spanId", True, span_ids
                )
                parent = span.parentSpanId
                if not parent:  # a root span: None or "", the "" _id gives an absent optional id
                    parent = ""
                else:
                    parent = span_ids.get(parent) or _memo_id(parent, 16, "parentSpanId", False, span_ids)
                start = span.startTimeUnixNano
                if type(start) is str and start.isdigit() and start.isascii() and len(start) <= 20:
                    start = int(start)
                else:
                    start = _typed_int(start)
                end = span.endTimeUnixNano
                if type(end) is str and end.isdigit() and end.isascii() and len(end) <= 20:
                    end = int(end)
                else:
                    end = _typed_int(end)
                attributes = span.attributes
                events = span.events
                links = span.links
                append(
                    make(
                        trace_id,
                        span_id,
                        parent,
                        span.name or "",
                        kind,
                        start,
                        end,
                        status_code,
                        status_message,
                        _typed_kvlist(attributes) if attributes else _EMPTY,
                        tuple(
                            SpanEvent(
                                _typed_int(event.timeUnixNano),
                                event.name or "",
                                _typed_kvlist(event.attributes) if event.attributes else _EMPTY,
                            )
                            for event in events
                        )
                        if events
                        else (),
                        resource,
                        scope_name,
                        scope_version,
                        tuple(
                            SpanLink(
                                _id(link.traceId, 32, "link.traceId", required=True),
                                _id(link.spanId, 16, "link.spanId", required=True),
                                _typed_kvlist(link.attributes) if link.attributes else _EMPTY,
                            )
                            for link in links
                        )
                        if links
                        else (),
                    )
                )
    return out


def _typed_int(value: int | str | None) -> int:
    """``_int`` of a decoded int64; an int the general path would read as a float raises
    ``_LeftToGeneralPath``."""
    if type(value) is int:
        if _INT_MIN <= value < _INT_END:
            return value
        raise _LeftToGeneralPath
    return _int(value, "")  # a string (or None): the same rules, a bad one raises _InvalidLine


def _typed_kvlist(entries: list[_KeyValue]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for entry in entries:
        value = entry.value
        if value is None:
            out[entry.key] = None
            continue
        text = value.stringValue
        if type(text) is str:
            out[entry.key] = text
            continue
        number = value.intValue
        if (
            type(number) is str
            and text is UNSET
            and number.isdigit()
            and number.isascii()
            and len(number) <= 20
        ):
            out[entry.key] = int(number)
            continue
        out[entry.key] = _typed_any(value)
    return out


def _typed_any(value: _AnyValue) -> Value:
    """``_any`` of a decoded AnyValue: the first kind set, in the order ``_any`` tries them."""
    text = value.stringValue
    if text is not UNSET:
        return "" if text is None else text
    number = value.intValue
    if number is not UNSET:
        return _typed_int(number)
    double = value.doubleValue
    if double is not UNSET:
        if type(double) is int and not _INT_MIN <= double < _INT_END:
            raise _LeftToGeneralPath
        return _float(double, "doubleValue")
    flag = value.boolValue
    if flag is not UNSET:
        return bool(flag)
    array = value.arrayValue
    if array is not UNSET:
        return [] if array is None else [_typed_any(item) for item in array.values or ()]
    kvlist = value.kvlistValue
    if kvlist is not UNSET:
        return {} if kvlist is None else _typed_kvlist(kvlist.values or [])
    data = value.bytesValue
    if data is not UNSET:
        return _bytes(data, "bytesValue")
    return None
