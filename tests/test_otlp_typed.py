"""The reader's typed path (msgspec Structs) reads a span line exactly as the general path (orjson, then
checks) does, or leaves the line to it: never a different record, never a record where the general
path finds a problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqadf_agent.analyzer import otlp_files
from amqadf_agent.analyzer.otlp_json import _records_of
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.analyzer.otlp_typed import _span_records
from amqadf_agent.analyzer.otlp_values import _InvalidLine

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def general(line: bytes) -> list[Any] | str:
    """What the general path makes of a line: its records, or the problem it reports."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return f"not JSON: {error}"
    try:
        records = _records_of(obj)
    except _InvalidLine as error:
        return f"bad: {error}"
    except RecursionError:
        return "too deep"
    return "ignored" if records is None else records


def check(line: bytes) -> bool:
    """The typed path's records equal the general path's (by repr: 1 and 1.0 differ, NaN equals
    itself), or it left the line to the general path. True when the typed path took the line."""
    typed = _span_records(line)
    if typed is None:
        return False
    expected = general(line)
    assert isinstance(expected, list), (line, expected)
    assert repr(typed) == repr(expected), line
    return True


def kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def line_of(spans: list[Any], resource: Any = None, scope: Any = None, **extra: Any) -> bytes:
    resource_spans: dict[str, Any] = {"scopeSpans": [{"spans": spans}]}
    if resource is not None:
        resource_spans["resource"] = resource
    if scope is not None:
        resource_spans["scopeSpans"][0]["scope"] = scope
    # json, not orjson: it writes integers beyond 64 bits, as other producers may.
    return json.dumps({"resourceSpans": [resource_spans], **extra}).encode()


def span(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": SPAN,
        "name": "op",
        "kind": 3,
        "startTimeUnixNano": "1000",
        "endTimeUnixNano": "3000",
    }
    out.update(fields)
    return {key: value for key, value in out.items() if value is not ...}


TAKEN = [
    span(),
    span(attributes=[kv("a", {"stringValue": "x"}), kv("n", {"intValue": "42"}), kv("m", {"intValue": 7})]),
    span(
        attributes=[
            kv("d", {"doubleValue": 1.5}),
            kv("i", {"doubleValue": 2}),
            kv("s", {"doubleValue": "NaN"}),
        ]
    ),
    span(
        attributes=[
            kv("b", {"boolValue": True}),
            kv("null", None),
            kv("empty", {}),
            kv("nv", {"stringValue": None}),
        ]
    ),
    span(attributes=[kv("arr", {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "-3"}]}})]),
    span(
        attributes=[
            kv("kvl", {"kvlistValue": {"values": [kv("x", {"boolValue": False})]}}),
            kv("nk", {"kvlistValue": None}),
        ]
    ),
    span(
        attributes=[
            kv("by", {"bytesValue": "aGk="}),
            kv("dup", {"stringValue": "1"}),
            kv("dup", {"stringValue": "2"}),
        ]
    ),
    span(
        attributes=[
            kv("big", {"intValue": "18446744073709551615"}),
            kv("neg", {"intValue": "-9223372036854775808"}),
        ]
    ),
    span(traceId=TRACE.upper(), parentSpanId="", startTimeUnixNano=1000, endTimeUnixNano=None),
    span(status={}, kind=None, name=None),
    span(status={"code": 2, "message": "boom"}, flags=257, traceState="a=b", droppedAttributesCount=0),
    span(events=[{"timeUnixNano": "5", "name": "exception", "attributes": [kv("k", {"stringValue": "v"})]}]),
    span(links=[{"traceId": TRACE, "spanId": SPAN, "attributes": []}], droppedLinksCount=1),
    span(attributes=[]),
]
LEFT = [
    span(kind="SPAN_KIND_CLIENT"),  # an enum by name
    span(status={"code": "STATUS_CODE_ERROR"}),
    span(startTimeUnixNano=1000.0),  # an int64 as a float
    span(startTimeUnixNano=2**70),  # out of the 64-bit range: orjson reads a float
    span(attributes=[kv("huge", {"intValue": 2**64})]),
    span(trace_id=TRACE),  # snake_case: an unknown field
    span(spanId=...),  # missing: a problem for the general path
    span(traceId="0" * 32),
    span(traceId="zz"),
    span(attributes=[kv("x", {"stringValue": 1})]),
    span(attributes=[{"key": None, "value": {"stringValue": "x"}}]),
    span(attributes=[kv("x", {"intValue": "1.5"})]),
    span(attributes=[kv("x", {"bytesValue": "!!"})]),
    span(attributes=[kv("x", {"arrayValue": {"values": [None]}})]),
    span(attributes=[kv("x", {"stringValue": "x", "extra": 1})]),
    span(status=[]),
    span(kind=True),
]


@pytest.mark.parametrize("value", TAKEN, ids=range(len(TAKEN)))
def test_the_typed_path_takes_common_lines_and_reads_them_as_the_general_path_does(value: Any) -> None:
    assert check(line_of([value], resource={"attributes": [kv("service.name", {"stringValue": "s"})]}))


@pytest.mark.parametrize("value", LEFT, ids=range(len(LEFT)))
def test_the_typed_path_leaves_unusual_lines_to_the_general_path(value: Any) -> None:
    assert not check(line_of([value]))


@pytest.mark.parametrize(
    "line",
    [
        b'{"resourceSpans": []}',
        b'{"resourceSpans": [{}]}',
        b'{"resourceSpans": [{"resource": null, "scopeSpans": null}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"scope": null, "spans": null}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"scope": {"name": null}, "spans": []}]}]}',
        line_of([span()], resource={}, scope={"name": "n", "version": "1", "attributes": []}),
        line_of([span()], schemaUrl_at_the_top=1),
        orjson.dumps({"resourceSpans": [], "resourceMetrics": []}),
        orjson.dumps({"resourceSpans": None}),
        b'{"resourceSpans": [], "x": 1e400}',
        b'{"resourceSpans": [{"schemaUrl": "\xff"}]}',
        b'{"resourceSpans": [{"schemaUrl": "\\ud800"}]}',
        b"[]",
        b'{"resourceProfiles": []}',
    ],
)
def test_edge_lines_are_read_alike(line: bytes) -> None:
    check(line)


def test_a_line_the_general_path_finds_bad_is_never_taken() -> None:
    for value in LEFT:
        line = line_of([value])
        if not isinstance(general(line), list):
            assert _span_records(line) is None


# Values of every JSON kind, the usual ones and the odd ones, for any field.
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["", "1000", "-1", "+1", "1e3", " 1", "NaN", "SPAN_KIND_SERVER", "STATUS_CODE_OK", TRACE, SPAN]
    ),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
)


def _spans(odd: bool) -> st.SearchStrategy[list[Any]]:
    """Span lists: every field valid, in the encodings producers use (``odd=False``), or any field
    possibly odd (``odd=True``)."""

    def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(valid, _ODD) if odd else valid

    # Valid: up to 20 digits (both paths read any such text); odd: longer, a problem for both.
    int64_text = st.from_regex(r"-?[0-9]{1,22}" if odd else r"-?[0-9]{1,20}", fullmatch=True)
    int64 = st.integers(-(2**63), 2**64 - 1)
    leaf = st.one_of(
        st.fixed_dictionaries({"stringValue": mostly(st.text(max_size=8))}),
        st.fixed_dictionaries({"intValue": mostly(st.one_of(int64, int64_text))}),
        st.fixed_dictionaries(
            {
                "doubleValue": mostly(
                    st.one_of(
                        st.floats(allow_nan=False, allow_infinity=False), st.integers() if odd else int64
                    )
                )
            }
        ),
        st.fixed_dictionaries({"boolValue": mostly(st.booleans())}),
        st.fixed_dictionaries(
            {"bytesValue": mostly(st.sampled_from(["aGk=", "aGk", "a-_b", *(["!"] if odd else [])]))}
        ),
        st.just({}),
    )
    any_value = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.fixed_dictionaries(
                {
                    "arrayValue": st.one_of(
                        st.none(), st.fixed_dictionaries({"values": st.lists(inner, max_size=3)})
                    )
                }
            ),
            st.fixed_dictionaries(
                {
                    "kvlistValue": st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {"values": st.lists(st.builds(kv, st.text(max_size=3), inner), max_size=3)}
                        ),
                    )
                }
            ),
        ),
        max_leaves=6,
    )
    attributes = mostly(
        st.one_of(
            st.none(), st.lists(st.builds(kv, st.sampled_from(["a", "b", "db.x"]), any_value), max_size=4)
        )
    )
    time = mostly(st.one_of(st.integers(0, 2**64 - 1), st.from_regex(r"[0-9]{1,20}", fullmatch=True)))
    text = mostly(st.one_of(st.none(), st.text(max_size=5)))
    fields = {
        "traceId": mostly(st.sampled_from([TRACE, TRACE.upper()])),
        "spanId": mostly(st.sampled_from([SPAN, SPAN.upper()])),
        "parentSpanId": mostly(st.sampled_from(["", SPAN, "0" * 16])),
        "name": text,
        "kind": mostly(st.one_of(st.none(), st.integers(0, 6))),
        "startTimeUnixNano": time,
        "endTimeUnixNano": time,
        "attributes": attributes,
        "status": mostly(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {}, optional={"code": mostly(st.one_of(st.none(), st.integers(0, 2))), "message": text}
                ),
            )
        ),
        "events": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"timeUnixNano": time, "name": text, "attributes": attributes}
                ),
                max_size=2,
            )
        ),
        "links": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"traceId": st.just(TRACE), "spanId": st.just(SPAN)}, optional={"attributes": attributes}
                ),
                max_size=2,
            )
        ),
        "flags": mostly(st.integers(0, 2**32)),
    }
    return st.lists(
        st.fixed_dictionaries({}, optional=fields).map(lambda chosen: {**span(), **chosen}),
        min_size=1,
        max_size=3,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spans=_spans(odd=False))
def test_valid_span_lines_are_read_alike(spans: list[Any]) -> None:
    # Every field valid, in the encodings producers write: the typed path takes the line, and reads it
    # as the general path does.
    assert check(line_of(spans, resource={"attributes": [kv("service.name", {"stringValue": "s"})]}))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=_spans(odd=True),
    resource=st.one_of(st.none(), st.fixed_dictionaries({}, optional={"attributes": _ODD})),
    scope=st.one_of(st.none(), st.fixed_dictionaries({}, optional={"name": _ODD, "version": _ODD})),
)
def test_any_span_line_is_read_alike(spans: list[Any], resource: Any, scope: Any) -> None:
    check(line_of(spans, resource=resource, scope=scope))


def test_a_file_reads_the_same_through_either_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [line_of([value, span(spanId="c" * 16, parentSpanId=SPAN)]) for value in TAKEN + LEFT]
    lines.insert(3, b"{not json")
    lines.append(orjson.dumps({"resourceMetrics": []}))
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    def read_with_stats() -> tuple[str, ReadStats]:
        stats = ReadStats()
        return repr(list(read(path, stats=stats))), stats

    typed = read_with_stats()
    monkeypatch.setattr(otlp_files, "_span_records", lambda line, make=None: None)
    assert read_with_stats() == typed
    assert typed[1].problem_count > 0
