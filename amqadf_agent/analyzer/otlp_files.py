"""Files and lines: the files a read covers, opened plain or gzip, split into lines (or read as one
pretty-printed document), each line handed to the typed path and, when it declines, to the general
path; every problem counted in ``ReadStats`` or, in strict mode, raised.
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

import orjson

from amqadf_agent.analyzer.model import LogRecord, MetricRecord, Record, SpanRecord
from amqadf_agent.analyzer.otlp_json import _records_of
from amqadf_agent.analyzer.otlp_typed import _span_records
from amqadf_agent.analyzer.otlp_values import _InvalidLine
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
#: reads in a dozen system calls and pieces (twice the time to split the benchmark file into lines).
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
        except _InvalidLine as error:
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
