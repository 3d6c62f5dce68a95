"""OTLP protobuf for spans, written from the direct encoder's dicts instead of the SDK's messages.

The SDK's OTLP/HTTP span exporter builds a protobuf message per span, attribute and value, then
serialises them: about 41 µs a span, the largest part of a traced request's cost in the process
(tests/bench/bench_export_encoding.py). ``otlp_json_encode`` already turns a batch into the proto
JSON mapping of that very message (the SDK encoder's ``to_dict``, key for key) in a few µs; here
those dicts are written in the protobuf wire format, each message's fields in field-number order
as the protobuf runtime writes them, so the bytes are the SDK's (``tests/test_otlp_proto_encode.py``
compares them). A batch the direct encoder does not take is encoded by the SDK, as before.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Sequence
from typing import Any

from amqadf_agent.runtime import otlp_json_encode

_logger = logging.getLogger(__name__)

Json = dict[str, Any]

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_SMALL = [bytes([n]) for n in range(128)]
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
#: the direct encoder shares between spans and batches: looked up by identity (the entry holds
#: the dict, so its id is not reused while the entry lives). Emptied when full.
_pairs: dict[int, tuple[Json, bytes]] = {}
_PAIRS_MAX = 4096


def _key_values(tag: bytes, pairs: Sequence[Json]) -> bytes:
    """Repeated ``KeyValue`` under field ``tag``."""
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


_NO_TRACE = "0" * 32


def _span(span: Json) -> bytes:
    """The one message written per span: its fields written out rather than looked up in a table."""
    get = span.get
    trace_id = span["traceId"]
    if trace_id == _NO_TRACE:  # a span without a context: the SDK's encoder refuses the batch
        raise otlp_json_encode.Unsupported("a span without a context")
    out = [b"\x0a\x10" + bytes.fromhex(trace_id), b"\x12\x08" + bytes.fromhex(span["spanId"])]
    value = get("traceState")
    if value:
        out.append(_text(b"\x1a", value))
    value = get("parentSpanId")
    if value:
        out.append(b"\x22\x08" + bytes.fromhex(value))
    value = get("name")
    if value:
        out.append(_text(b"\x2a", value))
    out.append(b"\x30" + _varint(span["kind"]))
    value = get("startTimeUnixNano")
    if value:
        out.append(b"\x39" + _pack_fixed64(int(value)))
    value = get("endTimeUnixNano")
    if value:
        out.append(b"\x41" + _pack_fixed64(int(value)))
    value = get("attributes")
    if value:
        out.append(_key_values(b"\x4a", value))
    value = get("droppedAttributesCount")
    if value:
        out.append(b"\x50" + _varint(value))
    for event in get("events", ()):
        out.append(_field(b"\x5a", _message(event, _EVENT)))
    value = get("droppedEventsCount")
    if value:
        out.append(b"\x60" + _varint(value))
    for link in get("links", ()):
        out.append(_field(b"\x6a", _message(link, _LINK)))
    value = get("droppedLinksCount")
    if value:
        out.append(b"\x70" + _varint(value))
    status = get("status")
    if status is not None:
        out.append(_field(b"\x7a", _message(status, _STATUS) if status else b""))
    value = get("flags")
    if value:
        out.append(b"\x85\x01" + _pack_fixed32(value))
    return b"".join(out)


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


def encode_spans(spans: Sequence[Any]) -> bytes:
    """``ExportTraceServiceRequest`` for ``spans``, serialised: the SDK's ``encode_spans`` bytes."""
    out = []
    for resource_spans in otlp_json_encode.encode_spans(spans).get("resourceSpans", ()):
        parts = [_field(b"\x0a", _message(resource_spans["resource"], _RESOURCE))]
        for scope_spans in resource_spans["scopeSpans"]:
            scoped = [_field(b"\x0a", _message(scope_spans["scope"], _SCOPE))]
            scoped += [_field(b"\x12", _span(span)) for span in scope_spans["spans"]]
            schema_url = scope_spans.get("schemaUrl")
            if schema_url:
                scoped.append(_text(b"\x1a", schema_url))
            parts.append(_field(b"\x12", b"".join(scoped)))
        schema_url = resource_spans.get("schemaUrl")
        if schema_url:
            parts.append(_text(b"\x1a", schema_url))
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
