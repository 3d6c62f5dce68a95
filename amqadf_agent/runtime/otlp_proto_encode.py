"""OTLP protobuf for spans, written straight from the SDK's span objects.

The SDK's OTLP/HTTP span exporter builds a protobuf message per span, attribute and value, then
serialises them: about 41 µs a span, the largest part of a traced request's cost in the process
(tests/bench/bench_export_encoding.py). Here each span is written in the protobuf wire format as it
is read, its fields in field-number order as the protobuf runtime writes them, ids as their bytes,
so the bytes are the SDK's (``tests/test_otlp_proto_encode.py`` compares them). The batch is grouped
by resource and scope as in ``otlp_json_encode`` (whose span reader this shares); resources,
scopes and the key-values of repeating string attributes are encoded once and kept. The rarer
parts (events, links, values other than strings, numbers and booleans) are written from
``otlp_json_encode``'s dicts. A batch the direct encoder does not take is encoded by the SDK.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from amqadf_agent.runtime import otlp_json_encode
from amqadf_agent.runtime.otlp_json_encode import _KIND, _UNCACHED
from amqadf_agent.runtime.otlp_json_encode import _STATUS as _STATUS_CODE

_logger = logging.getLogger(__name__)

Json = dict[str, Any]

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_SMALL = [bytes([n]) for n in range(128)]
#: Span fields whose few values are written whole: kind (field 6, by the SDK's value), status
#: without a description (field 15, by code), flags (field 16: whether the parent is remote).
_KIND_FIELD = [b"\x30" + bytes([value + 1]) for value in range(len(SpanKind))]
_STATUS_BYTES = [b"\x7a\x00", b"\x7a\x02\x18\x01", b"\x7a\x02\x18\x02"]
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)
_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _varint(value: int) -> bytes:
    if value < 0x80:
        if value < 0:
            value += 1 << 64  # int64: two's complement, ten bytes
        else:
            return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _text(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode())


def _any_value(value: Json) -> bytes:
    """``AnyValue`` from its JSON mapping (one member of the oneof, or none)."""
    for name, payload in value.items():
        if name == "stringValue":
            return _text(b"\x0a", payload)
        if name == "boolValue":
            return b"\x10\x01" if payload else b"\x10\x00"
        if name == "intValue":
            number = int(payload)
            if not -(1 << 63) <= number < 1 << 63:  # the SDK drops such an attribute (and logs it)
                raise otlp_json_encode.Unsupported("an integer outside int64")
            return b"\x18" + _varint(number)
        if name == "doubleValue":
            return b"\x21" + _pack_double(_FLOATS.get(payload, payload) if type(payload) is str else payload)
        if name == "arrayValue":
            values = b"".join([_field(b"\x0a", _any_value(v)) for v in payload.get("values", ())])
            return _field(b"\x2a", values)
        if name == "kvlistValue":
            return _field(b"\x32", _key_values(b"\x0a", payload.get("values", ())))
        if name == "bytesValue":
            return _field(b"\x3a", base64.b64decode(payload))
        raise otlp_json_encode.Unsupported(name)
    return b""


#: The encoded ``KeyValue`` (its length, then its fields) of the string key-value dicts, which
#: the direct JSON encoder shares between spans and batches (resources, scopes, events): looked up
#: by identity (the entry holds the dict, so its id is not reused while the entry lives). Emptied
#: when full.
_pairs: dict[int, tuple[Json, bytes]] = {}
_PAIRS_MAX = 4096


def _key_values(tag: bytes, pairs: Sequence[Json]) -> bytes:
    """Repeated ``KeyValue`` under field ``tag``, from their JSON mapping."""
    out = []
    for pair in pairs:
        hit = _pairs.get(id(pair))
        if hit is not None and hit[0] is pair:
            out.append(tag + hit[1])
            continue
        key = pair.get("key")
        value = pair["value"]
        body = (_text(b"\x0a", key) if key else b"") + _field(b"\x12", _any_value(value))
        encoded = _varint(len(body)) + body
        if "stringValue" in value:
            if len(_pairs) >= _PAIRS_MAX:
                _pairs.clear()
            _pairs[id(pair)] = (pair, encoded)
        out.append(tag + encoded)
    return b"".join(out)


#: ``KeyValue`` of string attributes (its length, then its fields), per key then value.
_string_pairs = otlp_json_encode.StringPairs()
_INT64_MIN = -(1 << 63)
_INT64_END = 1 << 63


def _attributes(attributes: Any) -> bytes:
    """A span's attributes as repeated ``KeyValue`` (field 9); the common value types inline.

    The loop is the shape of ``otlp_json_encode._attributes``, written out in each: a shared loop
    would cost a call per attribute, on every span of every request.
    """
    items = otlp_json_encode.attribute_items(attributes)
    cache = _string_pairs
    tables = cache.tables.get
    out: list[bytes] = []
    append = out.append
    for key, value in items:
        kind = type(value)
        if kind is str:
            table = tables(key)
            encoded = table.get(value) if table is not None else None
            if encoded is None:
                name = key.encode()
                text = value.encode()
                any_value = b"\x0a" + _varint(len(text)) + text
                body = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(any_value)) + any_value
                encoded = b"\x4a" + _varint(len(body)) + body
                if table is not _UNCACHED:
                    cache.keep(key, value, encoded)
            append(encoded)
            continue
        if kind is int:
            if not _INT64_MIN <= value < _INT64_END:  # the SDK drops such an attribute (and logs it)
                raise otlp_json_encode.Unsupported("an integer outside int64")
            any_value = b"\x18" + _varint(value)
        elif kind is bool:
            any_value = b"\x10\x01" if value else b"\x10\x00"
        elif kind is float:
            any_value = b"\x21" + _pack_double(value)
        else:
            any_value = _any_value(otlp_json_encode._any_value(value))
        name = key.encode()
        body = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(any_value)) + any_value
        append(b"\x4a" + _varint(len(body)) + body)
    return b"".join(out)


def _span(span: Any) -> bytes:
    """The span as field 2 of ``ScopeSpans``: its fields written out rather than looked up in a table."""
    fields = otlp_json_encode.span_fields(span)
    context = fields.context
    if context is None:  # the SDK's encoder refuses the batch
        raise otlp_json_encode.Unsupported("a span without a context")
    out = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")
    ]
    trace_state = context.trace_state
    if trace_state:
        out.append(_text(b"\x1a", ",".join([f"{k}={v}" for k, v in trace_state.items()])))
    if fields.parent:
        out.append(b"\x22\x08" + fields.parent.span_id.to_bytes(8, "big"))
        flags = _FLAGS_REMOTE if fields.parent.is_remote else _FLAGS_LOCAL
    else:
        flags = _FLAGS_LOCAL
    if fields.name:
        out.append(_text(b"\x2a", fields.name))
    # Enum members hash in Python: read the value of an exact member, look up anything else.
    out.append(_KIND_FIELD[fields.kind._value_ if type(fields.kind) is SpanKind else _KIND[fields.kind] - 1])
    if fields.start:
        out.append(b"\x39" + _pack_fixed64(fields.start))
    if fields.end:
        out.append(b"\x41" + _pack_fixed64(fields.end))
    if fields.attributes:
        out.append(_attributes(fields.attributes))
    if fields.dropped_attributes:
        out.append(b"\x50" + _varint(fields.dropped_attributes))
    for event in fields.events or ():
        out.append(_field(b"\x5a", _message(otlp_json_encode._event(event), _EVENT)))
    if fields.dropped_events:
        out.append(b"\x60" + _varint(fields.dropped_events))
    for link in fields.links or ():
        out.append(_field(b"\x6a", _message(otlp_json_encode._link(link), _LINK)))
    if fields.dropped_links:
        out.append(b"\x70" + _varint(fields.dropped_links))
    if fields.status is not None:
        code = fields.status.status_code
        code = code._value_ if type(code) is StatusCode else _STATUS_CODE[code]
        description = fields.status.description
        if description:
            message = _text(b"\x12", description)
            out.append(_field(b"\x7a", message + b"\x18" + _SMALL[code] if code else message))
        else:
            out.append(_STATUS_BYTES[code])
    out.append(flags)
    body = b"".join(out)
    return b"\x12" + _varint(len(body)) + body


# The messages other than the span, as (JSON key, tag, kind) in field-number order: a field is
# written when its value is not the default (proto3), as the protobuf runtime does.
_TEXT, _VARINT, _FIXED32, _FIXED64, _BYTES, _ATTRIBUTES = range(6)
_STATUS = (("message", b"\x12", _TEXT), ("code", b"\x18", _VARINT))
_EVENT = (
    ("timeUnixNano", b"\x09", _FIXED64),
    ("name", b"\x12", _TEXT),
    ("attributes", b"\x1a", _ATTRIBUTES),
    ("droppedAttributesCount", b"\x20", _VARINT),
)
_LINK = (
    ("traceId", b"\x0a", _BYTES),
    ("spanId", b"\x12", _BYTES),
    ("traceState", b"\x1a", _TEXT),
    ("attributes", b"\x22", _ATTRIBUTES),
    ("droppedAttributesCount", b"\x28", _VARINT),
    ("flags", b"\x35", _FIXED32),
)
_SCOPE = (
    ("name", b"\x0a", _TEXT),
    ("version", b"\x12", _TEXT),
    ("attributes", b"\x1a", _ATTRIBUTES),
    ("droppedAttributesCount", b"\x20", _VARINT),
)
_RESOURCE = (("attributes", b"\x0a", _ATTRIBUTES), ("droppedAttributesCount", b"\x10", _VARINT))


def _message(node: Json, fields: tuple[tuple[str, bytes, int], ...]) -> bytes:
    out = []
    for key, tag, kind in fields:
        value = node.get(key)
        if not value:
            continue
        if kind == _TEXT:
            out.append(_text(tag, value))
        elif kind == _VARINT:
            out.append(tag + _varint(value))
        elif kind == _ATTRIBUTES:
            out.append(_key_values(tag, value))
        elif kind == _FIXED64:
            out.append(tag + _pack_fixed64(int(value)))
        elif kind == _FIXED32:
            out.append(tag + _pack_fixed32(value))
        else:  # ids, in hex
            out.append(_field(tag, bytes.fromhex(value)))
    return b"".join(out)


#: Resources and scopes with their encoded fields (tag, length, message), held by identity (the
#: entry holds the object, so its id is not reused while the entry lives); cleared when full
#: (they are few per process).
_resources: dict[int, tuple[Any, bytes]] = {}
_scopes: dict[int, tuple[Any, bytes]] = {}
_CACHE_MAX = 256


def _cached(cache: dict[int, tuple[Any, bytes]], node: Any, as_json: Any, fields: Any) -> bytes:
    """``node`` (a resource or scope) as field 1 of its parent message, from ``cache`` if there."""
    hit = cache.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    encoded = _field(b"\x0a", _message(as_json(node), fields))
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[id(node)] = (node, encoded)
    return encoded


def encode_spans(spans: Sequence[Any]) -> bytes:
    """``ExportTraceServiceRequest`` for ``spans``, serialised: the SDK's ``encode_spans`` bytes."""
    out = []
    for resource, scopes in otlp_json_encode.group(spans, _span):
        parts = [_cached(_resources, resource, otlp_json_encode._resource, _RESOURCE)]
        for scope, encoded in scopes:
            scoped = b"".join([_cached(_scopes, scope, otlp_json_encode._scope, _SCOPE), *encoded])
            if scope is not None and scope.schema_url:
                scoped += _text(b"\x1a", scope.schema_url)
            parts.append(_field(b"\x12", scoped))
        if resource.schema_url:
            parts.append(_text(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(out)


def spans_body(spans: Sequence[Any]) -> bytes:
    """The protobuf body for ``spans``; by the SDK encoder where the fast path cannot write one."""
    try:
        return encode_spans(spans)
    except Exception as exc:  # the SDK's own path decides what such a batch becomes
        _logger.debug("amqadf-agent: spans encoded by the SDK encoder: %r", exc)
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans

    return bytes(sdk_encode_spans(spans).SerializePartialToString())
