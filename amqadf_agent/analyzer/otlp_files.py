"""Files and lines: the files a read covers, opened plain, gzip or zstd, split into lines (or read as one
pretty-printed document), each line handed to the typed path and, when it declines, to the general
path; every problem counted in ``ReadStats`` or, in strict mode, raised. About 600 lines: the
checks on what a file is (FIFO, device, binary, UTF-16, gzip bomb) belong with its opening.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final, TypeAlias, cast

import orjson

from amqadf_agent.analyzer.model import LogRecord, MetricRecord, Record, SpanRecord
from amqadf_agent.analyzer.otlp_json import _records_of
from amqadf_agent.analyzer.otlp_typed import _span_records
from amqadf_agent.analyzer.otlp_values import _InvalidLine
from amqadf_agent.analyzer.otlp_wrappers import unwrap
from amqadf_agent.errors import TelemetryInputError

PathArg: TypeAlias = str | os.PathLike[str]
_Stream: TypeAlias = io.BufferedReader | gzip.GzipFile

#: A longer line is skipped as a problem, read in pieces rather than held whole. An export line is
#: usually about 100 KB; the records of a line take several times its size while they are built, so
#: the limit bounds the reader's memory too.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
#: A pretty-printed document larger than this is bad input rather than something to parse whole.
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
#: After this many lines in a row that are problems (no telemetry between them), the rest of a file is
#: skipped as one more problem: it is not OTLP JSON, and each further line would cost time to say so.
MAX_BAD_LINES_IN_A_ROW: Final = 1000
#: A gzip file that expands to more than this many times the compressed bytes read so far is not
#: read further (one problem). OTLP JSON compresses about 15 times (the file of
#: tests/bench/bench_analyzer.py, gzip -9); a file of newlines, or of one short line repeated, reaches
#: deflate's limit of about 1000.
MAX_GZIP_RATIO: Final = 200
#: How many problem messages ``ReadStats`` keeps; all are counted.
MAX_PROBLEMS_KEPT: Final = 100
#: File names a directory is searched for (each also with ``.gz`` or ``.zst``). Rotation keeps the extension,
#: the agent's (``traces-2026-11-26T10-00-00.000.jsonl``) and the Collector's
#: (``traces-2026-11-26T10-00-00.000-size.jsonl``), so rotated files match too.
FILE_SUFFIXES: Final = (".json", ".jsonl", ".ndjson")

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: The extra that installs ``zstandard``, needed for the Collector's zstd-compressed files only.
ZSTD_EXTRA: Final = "amqadf-agent[zstd]"
_BOM: Final = b"\xef\xbb\xbf"
_READ_ERRORS: Final = (OSError, EOFError, zlib.error)
_DRAIN_CHUNK: Final = 1024 * 1024
#: The expansion of a gzip file is first checked once this much is read, then every _GZIP_CHECK_EVERY.
_GZIP_CHECK_FROM: Final = 1024 * 1024
_GZIP_CHECK_EVERY: Final = 256 * 1024
#: How a file is opened: without waiting for a FIFO's writer, not inherited by a child, and (on
#: Windows) without newline translation; the flags a platform lacks are 0.
_OPEN_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
_SPECIAL_KINDS: Final = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)
#: How much of a file's start is looked at to tell JSON text from a binary file.
_SNIFF_BYTES: Final = 4096
#: Bytes that JSON text never holds raw (JSON's whitespace is space, tab, CR and LF).
_CONTROL_BYTES: Final = bytes(byte for byte in range(32) if byte not in b"\t\n\r")
#: After this many blank lines in a row, the rest of the run is skipped a buffer at a time (each look
#: at the buffer copies it, which a single blank line between lines is not worth).
_BLANK_RUN_TO_SKIP: Final = 64
#: How many bytes of blank lines are skipped between two checks of the gzip budget.
_SKIP_AT_ONCE: Final = 256 * 1024
_BLANK_RUN: Final = re.compile(rb"[ \t\n\r\x0b\x0c]*").match
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
        """Records of one file, plain, gzip or zstd (told by its first bytes, not its name), line by
        line; spans of the typed path as ``make_span`` builds them."""
        try:
            # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer (and is then skipped);
            # it changes nothing for a regular file.
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as error:
            kind = _special_kind(path)  # a socket cannot be opened at all
            reason = _not_regular(kind) if kind else f"cannot open: {_os_reason(error)}"
            self.problem(f"{display}: {reason}")
            return
        kind = _special_kind(fd)
        if kind:
            os.close(fd)
            self.problem(f"{display}: {_not_regular(kind)}")
            return
        # closed by the with below; a non-default buffer size makes typeshed's open() a BinaryIO
        raw = cast(io.BufferedReader, open(fd, "rb", buffering=_READ_BUFFER))  # noqa: SIM115
        with raw:
            self.stats.files_read += 1
            try:
                head = raw.peek(8)[:8]
            except _READ_ERRORS as error:
                self.problem(f"{display}:1: read error: {_os_reason(error)}")
                return
            if head[:2] == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield from self._read_lines(display, path, unzipped, raw)
            elif _ZSTD_MAGIC in (head[:4], head[4:8]):
                zstandard = _zstandard()
                if zstandard is None:
                    self.problem(
                        f"{display}: zstd-compressed (the Collector's file exporter with compression:"
                        f" zstd); install {ZSTD_EXTRA} to read it: pip install '{ZSTD_EXTRA}'"
                    )
                    return
                framed = head[:4] != _ZSTD_MAGIC
                unzstd = _ZstdStream(raw, framed, zstandard, self.max_line_bytes)
                stream = cast(io.BufferedReader, io.BufferedReader(unzstd, _READ_BUFFER))
                yield from self._read_lines(display, path, stream, raw)
            else:
                yield from self._read_lines(display, path, raw, None)

    def _read_lines(
        self, display: str, path: str, stream: _Stream, compressed: io.BufferedReader | None
    ) -> Iterator[list[Any]]:
        """JSON Lines, falling back to one document when the first line is the start of one."""
        stats = self.stats
        try:
            head = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
            wide = _wide_encoding(head)
            kind = "" if wide else _binary_kind(head)
        except _READ_ERRORS as error:
            self.problem(f"{display}:1: {_read_error(compressed, stream)}: {_os_reason(error)}")
            return
        if kind:
            self.problem(f"{display}: {kind}; the analyzer reads OTLP JSON (exported with the JSON encoding)")
            return
        if wide:
            self.problem(
                f"{display}: the file is {wide}, not UTF-8; convert it with iconv -f {wide} -t UTF-8"
            )
            return
        seen_data = False
        bad_in_a_row = 0
        problems_at_start = stats.problem_count
        for lineno, line in self._lines(display, stream, compressed):
            first = not seen_data
            seen_data = True
            if line is None:  # over the limit: a problem already
                continue
            records = _span_records(line, self.make_span)
            if records is not None:
                stats.records["spans"] += len(records)
                bad_in_a_row = 0
                yield records
                continue
            problems_before = stats.problem_count
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                if first and line.lstrip()[:1] in (b"{", b"[") and self._looks_like_document(path):
                    yield from self._read_document(display, path, lineno)
                    return
                self.problem(f"{display}:{lineno}: {_json_reason(error, line)}")
            else:
                records = self._walk_line(display, lineno, obj)
                del obj
                yield records
            if stats.problem_count == problems_before:
                bad_in_a_row = 0
                continue
            bad_in_a_row += 1
            if bad_in_a_row >= MAX_BAD_LINES_IN_A_ROW:
                self.problem(
                    f"{display}:{lineno}: {bad_in_a_row} lines in a row are not OTLP JSON,"
                    " the rest of the file skipped"
                )
                return
        # An empty file in a directory is no problem: the agent creates logs.jsonl before any log,
        # and a just-rotated file is empty until the next export. A file named on its own is read
        # for its content: that it has none is worth saying (unless reading it was a problem).
        if not seen_data and display in self.named and stats.problem_count == problems_at_start:
            self.problem(f"{display}: empty file, no telemetry in it")

    def _lines(
        self, display: str, stream: _Stream, compressed: io.BufferedReader | None
    ) -> Iterator[tuple[int, bytes | None]]:
        """``(line number, line)`` of every line that is not blank; ``None`` for a line over the
        limit, a problem then. Ends early, with a problem, on a read error or when the gzip file
        under ``stream`` (``compressed``) expands more than ``MAX_GZIP_RATIO`` times."""
        stats = self.stats
        limit = self.max_line_bytes
        budget = _GzipBudget(compressed, "zstd" if _is_zstd(stream) else "gzip")
        step = min(limit + 1, _DRAIN_CHUNK)
        readline = stream.readline
        lineno = 0
        blank_run = 0
        try:
            while True:
                line = readline(step)
                size = len(line)
                if size == step and not line.endswith(b"\n"):  # a line longer than one piece
                    line, size = _rest_of_line(stream, line, limit)
                if not line:
                    return
                lineno += 1
                stats.lines_read += 1
                if budget.spend(size):
                    self.problem(budget.message(display, lineno))
                    return
                if size > limit:
                    self.problem(f"{display}:{lineno}: {_too_long(limit)}")
                    if not line.endswith(b"\n") and _drain_line(stream, budget):
                        self.problem(budget.message(display, lineno))
                        return
                    yield lineno, None
                    continue
                if lineno == 1 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                if line and not line.isspace():  # what "line.strip()" tells, without copying the line
                    blank_run = 0
                    yield lineno, line
                    continue
                # A long run of blank lines (padding, a file of newlines) is skipped a buffer at a
                # time, not a line at a time; a blank line between lines is only read.
                blank_run += 1
                if blank_run < _BLANK_RUN_TO_SKIP:
                    continue
                lines, size = _skip_blank_lines(stream)
                lineno += lines
                stats.lines_read += lines
                if budget.spend(size):
                    self.problem(budget.message(display, lineno))
                    return
        except _READ_ERRORS as error:
            self.problem(f"{display}:{lineno + 1}: {_read_error(compressed, stream)}: {_os_reason(error)}")

    def _looks_like_document(self, path: str) -> bool:
        """True when the second non-blank line of a file continues the first (a pretty-printed document).

        In JSON Lines every line starts a new object with ``{`` in column 0; inside a document the
        next line is a key, an indented value or a closing bracket. Only the first
        ``max_document_bytes`` are looked at: a larger document is not read anyway.
        """
        if not os.path.isfile(path):  # a pipe cannot be read twice
            return False
        data_lines = 0
        size = 0
        try:
            with _open(path) as stream:
                line = stream.readline(self.max_line_bytes + 1)
                if line.startswith(_BOM):
                    line = line[len(_BOM) :]
                while line and size <= self.max_document_bytes:
                    size += len(line)
                    if line.strip():
                        data_lines += 1
                        if data_lines == 2:
                            return not line.startswith(b"{")
                    else:
                        size += _skip_blank_lines(stream)[1]
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
            bad = _invalid_utf8_at(blob)
            if bad >= 0:
                line_start = blob.rfind(b"\n", 0, bad) + 1
                bad_line = blob.count(b"\n", 0, bad) + 1
                where = f"{bad_line}: invalid UTF-8 at byte {bad - line_start + 1}"
            else:
                where = f"{error.lineno}: not a valid JSON document: {error.msg}"
            self.problem(f"{display}:{where}")
            return
        del blob
        records = self._walk_line(display, 1, obj)
        del obj  # the parsed document can be large: keep only the records while they are consumed
        yield records

    def _walk_line(self, display: str, lineno: int, obj: Any) -> list[Record]:
        """The records of one parsed line (or document): all of them, or none and a problem."""
        try:
            obj = unwrap(obj)  # Jaeger's and Tempo's envelopes around OTLP
            records = None if obj is None else _records_of(obj)
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
    if lower.endswith((".gz", ".zst")):
        lower = lower.rsplit(".", 1)[0]
    return lower.endswith(FILE_SUFFIXES)


@contextmanager
def _open(path: str) -> Iterator[_Stream]:
    """A binary stream of a file's content, uncompressed when it starts like gzip or zstd (not by
    its name)."""
    with open(path, "rb") as raw:
        head = raw.peek(8)[:8]
        zstandard = _zstandard() if _ZSTD_MAGIC in (head[:4], head[4:8]) else None
        if head[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        elif zstandard is not None:
            framed = head[:4] != _ZSTD_MAGIC
            unzstd = _ZstdStream(raw, framed, zstandard, MAX_DOCUMENT_BYTES)
            yield cast(io.BufferedReader, io.BufferedReader(unzstd))
        else:
            yield raw


def _zstandard() -> ModuleType | None:
    """The ``zstandard`` module (the ``zstd`` extra), imported only when a zstd file is read."""
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


class _ZstdStream(io.RawIOBase):
    """A zstd file of the Collector's ``file`` exporter, read as JSON lines.

    Two layouts: zstd frames end to end holding JSON lines (the Collector's
    ``exporter.file.nativeCompression`` gate), or ``framed``: each export request its own zstd frame
    after the frame's 4-byte big-endian length (the default), where a newline follows each request.
    """

    def __init__(self, raw: io.BufferedReader, framed: bool, zstandard: ModuleType, limit: int) -> None:
        self._raw = raw
        self._framed = framed
        self._limit = limit
        self._dctx = zstandard.ZstdDecompressor()
        self._error: type[Exception] = zstandard.ZstdError
        self._frame: Any = None
        self._newline = False
        if not framed:
            self._frame = self._dctx.stream_reader(raw, read_across_frames=True, closefd=False)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._readinto(memoryview(buffer).cast("B"))
        except self._error as error:
            raise OSError(str(error)) from None

    def _readinto(self, view: memoryview) -> int:
        while True:
            if self._newline:
                self._newline = False
                view[0] = 0x0A
                return 1
            if self._frame is None and not self._next_frame():
                return 0
            count = int(self._frame.readinto(view))
            if count or not self._framed:
                return count
            self._frame = None
            self._newline = True

    def _next_frame(self) -> bool:
        """Open the next length-prefixed frame; False at the end of the file."""
        prefix = self._raw.read(4)
        if not prefix:
            return False
        size = int.from_bytes(prefix, "big")
        if len(prefix) < 4 or size > self._limit:
            raise OSError(f"not a zstd frame length: {prefix.hex()}")
        data = self._raw.read(size)
        if len(data) < size:
            raise OSError(f"truncated zstd frame ({len(data)} of {size} bytes)")
        self._frame = self._dctx.stream_reader(data)
        return True


def _is_zstd(stream: _Stream) -> bool:
    return isinstance(getattr(stream, "raw", None), _ZstdStream)


def _special_kind(target: str | int) -> str:
    """What a file that is not a regular file is (``"a FIFO"``, ...); ``""`` for a regular file, or
    one that cannot be looked at (opening it says why)."""
    try:
        mode = os.stat(target).st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISREG(mode):
        return ""
    for is_kind, kind in _SPECIAL_KINDS:
        if is_kind(mode):
            return kind
    return "a special file"


def _not_regular(kind: str) -> str:
    return f"not a regular file ({kind})"


#: Byte order marks of the encodings that JSON text may not use (UTF-32 first: its LE mark starts
#: with UTF-16's), and the NUL pattern of their first four bytes when there is no mark: JSON starts
#: with two ASCII characters (RFC 4627, section 3).
_WIDE_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_WIDE_PATTERNS: Final = (
    (re.compile(rb"\x00\x00\x00[^\x00]", re.S), "UTF-32BE"),
    (re.compile(rb"[^\x00]\x00\x00\x00", re.S), "UTF-32LE"),
    (re.compile(rb"\x00[^\x00]\x00[^\x00]", re.S), "UTF-16BE"),
    (re.compile(rb"[^\x00]\x00[^\x00]\x00", re.S), "UTF-16LE"),
)


def _wide_encoding(head: bytes) -> str:
    """The UTF-16 or UTF-32 encoding a file's first bytes are in, or ``""``: a text editor or
    PowerShell's ``>`` writes these, and read as UTF-8 every line of them would be a problem."""
    for mark, name in _WIDE_BOMS:
        if head.startswith(mark):
            return name
    for pattern, name in _WIDE_PATTERNS:
        if pattern.match(head):
            return name
    return ""


def _binary_kind(head: bytes) -> str:
    """Why the first bytes of a file are not JSON text, or ``""``: JSON starts with ``{`` or ``[`` and
    holds no control characters, where protobuf (or any binary file) is full of them."""
    text = head[len(_BOM) :] if head.startswith(_BOM) else head
    start = text.lstrip(b" \t\r\n")[:1]
    if not start or start in (b"{", b"["):
        return ""
    controls = len(text) - len(text.translate(None, _CONTROL_BYTES))
    if controls * 100 < len(text):
        return ""
    return "looks binary (OTLP protobuf?)"


def _skip_blank_lines(stream: _Stream) -> tuple[int, int]:
    """Skip the blank lines at the stream's position a buffer at a time, up to about
    ``_SKIP_AT_ONCE`` bytes; (lines, bytes) skipped.

    What is left starts with a line that is not blank, or a blank one (the buffer cut it, or enough
    was skipped for the caller to check its budget): ``readline`` reads it as usual.
    """
    lines = size = 0
    while size < _SKIP_AT_ONCE:
        buffered = stream.peek(1)
        blanks = _BLANK_RUN(buffered)
        last = buffered.rfind(b"\n", 0, blanks.end() if blanks else 0)
        if last < 0:
            return lines, size
        stream.read(last + 1)
        lines += buffered.count(b"\n", 0, last + 1)
        size += last + 1
    return lines, size


class _GzipBudget:
    """How far a gzip file has expanded while it is read, against ``MAX_GZIP_RATIO``."""

    __slots__ = ("compressed", "kind", "next_check", "unzipped")

    def __init__(self, compressed: io.BufferedReader | None, kind: str = "gzip") -> None:
        self.compressed = compressed
        self.kind = kind
        self.unzipped = 0
        self.next_check = _GZIP_CHECK_FROM if compressed is not None else math.inf

    def spend(self, size: int) -> bool:
        """Count ``size`` more bytes read; True once the file has expanded too far to read on."""
        self.unzipped += size
        if self.unzipped < self.next_check:
            return False
        self.next_check = self.unzipped + _GZIP_CHECK_EVERY
        compressed = self.compressed
        return compressed is not None and self.unzipped > MAX_GZIP_RATIO * compressed.tell()

    def message(self, display: str, lineno: int) -> str:
        return (
            f"{display}:{lineno}: {self.kind} data expanding more than {MAX_GZIP_RATIO} times "
            f"({self.unzipped} bytes read): not telemetry (a decompression bomb?), the rest skipped"
        )


def _rest_of_line(stream: _Stream, line: bytes, limit: int) -> tuple[bytes, int]:
    """A line that ``line`` (a first piece of ``_DRAIN_CHUNK`` or ``limit + 1`` bytes) starts, as
    ``(line, its size)``, holding no more than ``limit`` bytes: a line over the limit comes as
    ``(its last piece read, its size so far)``, the pieces before dropped (the caller drains the rest)."""
    step = len(line)
    pieces = [line]
    size = step
    while size <= limit and not line.endswith(b"\n"):
        line = stream.readline(min(step, limit + 1 - size))
        if not line:
            break
        pieces.append(line)
        size += len(line)
    if size > limit:
        return pieces[-1], size
    return b"".join(pieces), size


def _drain_line(stream: _Stream, budget: _GzipBudget) -> bool:
    """Skip the rest of an over-long line without holding it; True when the gzip budget ran out."""
    while True:
        chunk = stream.readline(_DRAIN_CHUNK)
        if budget.spend(len(chunk)):
            return True
        if not chunk or chunk.endswith(b"\n"):
            return False


def _read_error(compressed: io.BufferedReader | None, stream: _Stream) -> str:
    if compressed is None:
        return "read error"
    return "corrupt zstd data" if _is_zstd(stream) else "corrupt gzip data"


def _too_long(limit: int) -> str:
    return f"line longer than {limit} bytes (the most the analyzer reads as one line), skipped"


def _os_reason(error: BaseException) -> str:
    reason = (error.strerror if isinstance(error, OSError) else None) or str(error) or type(error).__name__
    return reason[:1].lower() + reason[1:]


def _invalid_utf8_at(data: bytes) -> int:
    """The offset of the first byte of ``data`` that is not valid UTF-8, or -1."""
    if data.isascii():
        return -1
    try:
        data.decode()
    except UnicodeDecodeError as error:
        return error.start
    return -1


def _json_reason(error: orjson.JSONDecodeError, line: bytes) -> str:
    bad = _invalid_utf8_at(line)
    if bad >= 0:  # orjson checks the whole text first, and calls it "surrogates not allowed"
        return f"invalid UTF-8 at byte {bad + 1}"
    if not line.endswith(b"\n"):
        return f"not JSON (truncated last line?): {error.msg}"
    return f"not JSON: {error.msg} at column {error.colno}"


_SIGNAL: Final[dict[type, str]] = {SpanRecord: "spans", MetricRecord: "metrics", LogRecord: "logs"}
