"""A streaming reader of OTLP JSON files: the format the Collector's ``file`` exporter, the Python SDK's
``opentelemetry-exporter-otlp-json-file`` and the agent write.

Each line of such a file is one export request: ``{"resourceSpans": [...]}``, ``{"resourceMetrics": [...]}``
or ``{"resourceLogs": [...]}``. Ids are hex, int64 values decimal strings, enums ints. Other producers
(the official examples of the OTLP repository) write one pretty-printed document per file, upper-case
ids and int64 values as JSON numbers; the specification allows all of it, so this reader accepts it too.

The reader is a generator from end to end: it holds at most one line (or one document, up to a cap) of
records at a time, so memory stays bounded whatever the size of the input. Bad input never raises by
default: a bad line is skipped and counted in ``ReadStats`` as ``file:line: reason``. With
``strict=True`` the first problem raises ``TelemetryInputError`` with that message instead.

Span lines, the bulk of any trace file, are decoded by msgspec into typed structures (see "span lines,
decoded into typed structures" below); any other line, and any span line in an encoding that path does
not take, is parsed by orjson and checked field by field. Both give the same records.

Nothing here imports the OpenTelemetry SDK or API: the analyzer must run without the agent's runtime.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, cast

import msgspec
import orjson
from msgspec import UNSET, Struct, UnsetType

from amqadf_agent.analyzer.model import (
    Attributes,
    LogRecord,
    MetricRecord,
    Record,
    SpanEvent,
    SpanLink,
    SpanRecord,
    Value,
)
from amqadf_agent.analyzer.otlp_json import _records_of
from amqadf_agent.analyzer.otlp_values import (
    _EMPTY,
    _SPAN_IDS,
    _TRACE_IDS,
    _Bad,
    _bytes,
    _float,
    _id,
    _int,
    _memo_id,
)
from amqadf_agent.errors import TelemetryInputError

PathArg: TypeAlias = str | os.PathLike[str]

#: A longer line is a bad line (and is skipped without being held in memory whole).
MAX_LINE_BYTES: Final = 256 * 1024 * 1024
#: A pretty-printed document larger than this is bad input rather than something to parse whole.
MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
#: How many problem messages ``ReadStats`` keeps; all are counted.
MAX_PROBLEMS_KEPT: Final = 100
#: File names a directory is searched for (each also with ``.gz``). Collector rotation keeps the
#: extension (``traces-2026-11-26T10-00-00.000.jsonl``), so rotated files match too.
FILE_SUFFIXES: Final = (".json", ".jsonl", ".ndjson")

_GZIP_MAGIC: Final = b"\x1f\x8b"
_BOM: Final = b"\xef\xbb\xbf"
_READ_ERRORS: Final = (OSError, EOFError, zlib.error)
_DRAIN_CHUNK: Final = 1024 * 1024
#: The read buffer of a file: an export line is often 100 KB or more, which the default 8 KB buffer
#: reads in a dozen system calls and pieces (reading the lines of the benchmark file took twice as long).
_READ_BUFFER: Final = 1024 * 1024


@dataclass(slots=True)
class ReadStats:
    """What a read saw: files, lines, records by signal, and the problems it skipped.

    Pass one to ``read`` and look at it once the records are consumed; it accumulates over calls.
    """

    files_read: int = 0
    lines_read: int = 0
    #: Records by signal: ``spans`` (span records), ``metrics`` (metric records), ``logs``.
    records: dict[str, int] = field(default_factory=lambda: {"spans": 0, "metrics": 0, "logs": 0})
    #: Lines holding only a signal this reader does not read (e.g. ``resourceProfiles``).
    ignored_lines: int = 0
    #: Every problem met, counted; ``problems`` keeps the first ``MAX_PROBLEMS_KEPT`` messages.
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def total_records(self) -> int:
        """Records of every signal."""
        return sum(self.records.values())

    def add_problem(self, message: str) -> None:
        """Count a problem (``file:line: reason``), keeping the first messages."""
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(message)


def read(
    paths: PathArg | Iterable[PathArg],
    *,
    strict: bool = False,
    stats: ReadStats | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> Iterator[Record]:
    """Yield the span, metric and log records of OTLP JSON files, lazily.

    ``paths`` are files (read whatever their name, plain or gzip) and directories (searched
    recursively for ``*.json``, ``*.jsonl``, ``*.ndjson``, each optionally ``.gz``; hidden entries are
    skipped). Records come in file order, then line order; no time order is promised.
    """
    reader = _Reader(stats if stats is not None else ReadStats(), strict, max_line_bytes, max_document_bytes)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for display, path in reader.files(paths):
        # The records of one line come as a list: one generator frame between the caller and them.
        for records in reader.read_file(display, path):
            yield from records


# --- files and lines ---------------------------------------------------------------------------------


class _Reader:
    """One ``read`` call's settings and statistics."""

    __slots__ = ("make_span", "max_document_bytes", "max_line_bytes", "named", "stats", "strict")

    def __init__(
        self,
        stats: ReadStats,
        strict: bool,
        max_line_bytes: int,
        max_document_bytes: int,
        make_span: Callable[..., Any] = SpanRecord,
    ) -> None:
        #: What the typed path builds a span with (``SpanRecord``, or a tuple of its fields for
        #: ``analyzer.pipeline``, which builds the records in the other process).
        self.make_span = make_span
        #: Files named as such (not found in a directory): one of these being empty is a problem.
        self.named: set[str] = set()
        self.stats = stats
        self.strict = strict
        self.max_line_bytes = max_line_bytes
        self.max_document_bytes = max_document_bytes

    def problem(self, message: str) -> None:
        """Raise in strict mode, else count and go on."""
        if self.strict:
            raise TelemetryInputError(message)
        self.stats.add_problem(message)

    def files(self, paths: Iterable[PathArg]) -> Iterator[tuple[str, str]]:
        """``(name to show, path to open)`` of every file to read; missing paths are problems."""
        for path in paths:
            top = os.fspath(path)
            try:
                mode = os.stat(top).st_mode
            except FileNotFoundError:
                self.problem(f"{top}: no such file or directory")
                continue
            except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
                self.problem(f"{top}: {_os_reason(error)}")
                continue
            if not stat.S_ISDIR(mode):
                self.named.add(top)
                yield top, top
            else:
                found = 0
                for display in self._walk(top):
                    found += 1
                    yield display, display
                if not found:
                    self.problem(f"{top}: no OTLP JSON files found")

    def _walk(self, top: str) -> Iterator[str]:
        """Matching files under ``top``, sorted per directory, hidden entries and symlinked dirs skipped."""
        errors: list[OSError] = []
        for root, dirnames, filenames in os.walk(top, onerror=errors.append):
            for error in errors:
                self.problem(f"{error.filename or root}: {_os_reason(error)}")
            errors.clear()
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith(".") and _is_telemetry_name(name):
                    yield os.path.join(root, name)
        for error in errors:
            self.problem(f"{error.filename or top}: {_os_reason(error)}")

    def read_file(self, display: str, path: str) -> Iterator[list[Any]]:
        """Records of one file, plain or gzip (told by its first bytes, not its name), line by line;
        spans of the typed path as ``make_span`` builds them."""
        try:
            # closed by the with below; a non-default buffer size makes typeshed's open() a BinaryIO
            raw = cast(io.BufferedReader, open(path, "rb", buffering=_READ_BUFFER))  # noqa: SIM115
        except OSError as error:
            self.problem(f"{display}: cannot open: {_os_reason(error)}")
            return
        with raw:
            self.stats.files_read += 1
            try:
                is_gzip = raw.peek(2)[:2] == _GZIP_MAGIC
            except _READ_ERRORS as error:
                self.problem(f"{display}:1: read error: {_os_reason(error)}")
                return
            if is_gzip:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield from self._read_lines(display, path, unzipped, is_gzip)
            else:
                yield from self._read_lines(display, path, raw, is_gzip)

    def _read_lines(
        self, display: str, path: str, stream: io.BufferedIOBase, is_gzip: bool
    ) -> Iterator[list[Any]]:
        """JSON Lines, falling back to one document when the first line is the start of one."""
        stats = self.stats
        limit = self.max_line_bytes
        read_error = "corrupt gzip data" if is_gzip else "read error"
        lineno = 0
        seen_data = False
        while True:
            try:
                line = stream.readline(limit + 1)
            except _READ_ERRORS as error:
                self.problem(f"{display}:{lineno + 1}: {read_error}: {_os_reason(error)}")
                return
            if not line:
                break
            lineno += 1
            stats.lines_read += 1
            if len(line) > limit:
                seen_data = True
                self.problem(f"{display}:{lineno}: line longer than {limit} bytes")
                if not line.endswith(b"\n"):
                    try:
                        _drain_line(stream)
                    except _READ_ERRORS as error:
                        self.problem(f"{display}:{lineno}: {read_error}: {_os_reason(error)}")
                        return
                continue
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if not line or line.isspace():  # what "not line.strip()" tells, without copying the line
                continue
            first = not seen_data
            seen_data = True
            records = _span_records(line, self.make_span)
            if records is not None:
                stats.records["spans"] += len(records)
                yield records
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                if first and line.lstrip()[:1] in (b"{", b"[") and self._looks_like_document(path):
                    yield from self._read_document(display, path, lineno)
                    return
                self.problem(f"{display}:{lineno}: {_json_reason(error, line)}")
                continue
            records = self._walk_line(display, lineno, obj)
            del obj
            yield records
        # An empty file in a directory is no problem: the agent creates logs.jsonl before any log,
        # and a just-rotated file is empty until the next export. A file named on its own is read
        # for its content: that it has none is worth saying.
        if not seen_data and display in self.named:
            self.problem(f"{display}: empty file, no telemetry in it")

    def _looks_like_document(self, path: str) -> bool:
        """True when the second non-blank line of a file continues the first (a pretty-printed document).

        In JSON Lines every line starts a new object with ``{`` in column 0; inside a document the
        next line is a key, an indented value or a closing bracket.
        """
        if not os.path.isfile(path):  # a pipe cannot be read twice
            return False
        data_lines = 0
        try:
            with _open(path) as stream:
                line = stream.readline(self.max_line_bytes + 1)
                if line.startswith(_BOM):
                    line = line[len(_BOM) :]
                while line:
                    if line.strip():
                        data_lines += 1
                        if data_lines == 2:
                            return not line.startswith(b"{")
                    line = stream.readline(self.max_line_bytes + 1)
        except _READ_ERRORS:
            pass
        return False

    def _read_document(self, display: str, path: str, lines_done: int) -> Iterator[list[Any]]:
        """The whole file as one JSON document (up to the size cap)."""
        cap = self.max_document_bytes
        try:
            with _open(path) as stream:
                blob = stream.read(cap + 1)
        except _READ_ERRORS as error:
            self.problem(f"{display}:{lines_done}: read error: {_os_reason(error)}")
            return
        lines = blob.count(b"\n") + (0 if blob.endswith(b"\n") else 1)
        self.stats.lines_read += max(lines - lines_done, 0)
        if len(blob) > cap:
            self.problem(f"{display}: a multi-line JSON document larger than {cap} bytes")
            return
        if blob.startswith(_BOM):
            blob = blob[len(_BOM) :]
        try:
            obj = orjson.loads(blob)
        except orjson.JSONDecodeError as error:
            self.problem(f"{display}:{error.lineno}: not a valid JSON document: {error.msg}")
            return
        del blob
        records = self._walk_line(display, 1, obj)
        del obj  # the parsed document can be large: keep only the records while they are consumed
        yield records

    def _walk_line(self, display: str, lineno: int, obj: Any) -> list[Record]:
        """The records of one parsed line (or document): all of them, or none and a problem."""
        try:
            records = _records_of(obj)
        except _Bad as error:
            self.problem(f"{display}:{lineno}: {error}")
            return []
        except RecursionError:
            self.problem(f"{display}:{lineno}: values nested too deeply")
            return []
        if records is None:
            self.stats.ignored_lines += 1
            return []
        counts = self.stats.records
        if records:
            # Records come spans first, then metrics, then logs: same first and last kind, all that kind.
            kind = type(records[0])
            if type(records[-1]) is kind:
                counts[_SIGNAL[kind]] += len(records)
            else:
                for record in records:
                    counts[_SIGNAL[type(record)]] += 1
        return records


def _is_telemetry_name(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    return lower.endswith(FILE_SUFFIXES)


@contextmanager
def _open(path: str) -> Iterator[io.BufferedIOBase]:
    """A binary stream of a file's content, uncompressed when it starts like gzip (not by its name)."""
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


def _drain_line(stream: io.BufferedIOBase) -> None:
    """Skip the rest of an over-long line without holding it."""
    while True:
        chunk = stream.readline(_DRAIN_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


def _os_reason(error: BaseException) -> str:
    reason = (error.strerror if isinstance(error, OSError) else None) or str(error) or type(error).__name__
    return reason[:1].lower() + reason[1:]


def _json_reason(error: orjson.JSONDecodeError, line: bytes) -> str:
    if not line.endswith(b"\n"):
        return f"not JSON (truncated last line?): {error.msg}"
    return f"not JSON: {error.msg} at column {error.colno}"


_SIGNAL: Final[dict[type, str]] = {SpanRecord: "spans", MetricRecord: "metrics", LogRecord: "logs"}


# --- span lines, decoded into typed structures -----------------------------------------------------
#
# The common line, a span export request, is decoded by msgspec into the Structs below instead of by
# orjson into dicts: msgspec checks the types while it decodes (no dict is built, no key looked up),
# which made the reader about 1.6 times as fast (tests/bench/bench_analyzer.py). Every field the OTLP/JSON
# encoding defines for spans is declared, and unknown fields are forbidden, so this path sees every
# value of the line. It accepts a line only in the encodings the general path (orjson, then _walk)
# reads the same way: anything else (metrics or logs, an unknown field, a snake_case key, an enum by
# name, an int64 as a float or out of the 64-bit range, a bad id, invalid UTF-8, a JSON error) makes
# ``_span_records`` return None, and the line is read again by the general path, which alone decides
# what a line holds and reports its problems. The records are the same either way (a test compares).
# The field names below are the OTLP/JSON ones (camelCase), as they come.


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


class _Other(Exception):
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
    except (_Bad, _Other, RecursionError):
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
                        raise _Other
                    status_message = status.message or ""
                kind = span.kind or 0
                if not _INT_MIN <= kind < _INT_END:
                    raise _Other
                trace_id = span.traceId
                trace_id = (trace_id is not None and trace_ids.get(trace_id)) or _memo_id(
                    trace_id, 32, "traceId", True, trace_ids
                )
                span_id = span.spanId
                span_id = (span_id is not None and span_ids.get(span_id)) or _memo_id(
                    span_id, 16, "spanId", True, span_ids
                )
                parent = span.parentSpanId
                parent = (parent is not None and span_ids.get(parent)) or _memo_id(
                    parent, 16, "parentSpanId", False, span_ids
                )
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
    """``_int`` of a decoded int64: an int the general path would have read as a float is _Other."""
    if type(value) is int:
        if _INT_MIN <= value < _INT_END:
            return value
        raise _Other
    return _int(value, "")  # a string (or None): the same rules, a bad one raises _Bad


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
            raise _Other
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
