"""Reading in a second process: ``read_pipelined`` yields what ``otlp_reader.read`` yields, in the same
order, while a forked child does the reading, so that the caller's rules run on the other core.

Reading (decoding the JSON and checking every value) is about 60% of ``amqadf-analyze``'s time, the
rules the rest. The child runs the reader itself (``otlp_files._Reader``: the same files, lines,
problems and ``--strict`` errors) and sends each line's records through a pipe, pickled: span records
as plain tuples of their fields (what pickle writes and reads fastest), which the parent turns back
into ``SpanRecord``s; other records as they are. Reading the tuples back costs the parent about 1.3 us
a span, against about 5 us to decode and build the record itself (tests/bench/bench_analyzer.py).
The records are equal to ``read``'s (a test compares), and so is every finding.

The pipe and one pickled line bound the memory of both processes; the child stops when the parent
stops reading (it gets a broken pipe, or is killed when the generator is closed). Without
``os.fork`` (Windows) or with other threads running (forking them is unsafe), ``read`` is used
instead. Nothing here imports the OpenTelemetry SDK.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import Any, BinaryIO, Final, NoReturn

from amqadf_agent.analyzer.model import Attributes, Record, SpanRecord
from amqadf_agent.analyzer.otlp_files import MAX_DOCUMENT_BYTES, MAX_LINE_BYTES, PathArg, ReadStats, _Reader
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.otlp_values import _EMPTY
from amqadf_agent.errors import ReaderProcessError, TelemetryInputError

__all__ = ["read_pipelined"]

#: The pipe's capacity (Linux, F_SETPIPE_SZ): with the default 64 KB the two processes wake each other
#: for every 64 KB of a line's ~100 KB of pickled records, which costs more than the second core gives.
PIPE_BYTES: Final = 1 << 20
_F_SETPIPE_SZ: Final = 1031

# Messages from the child, each one pickle: (_SPANS, files read, lines read, [span fields, ...]),
# (_RECORDS, files read, lines read, [record, ...]), then (_END, ReadStats), (_ERROR, message) or
# (_CRASH, traceback).
_SPANS: Final = 0
_RECORDS: Final = 1
_END: Final = 2
_ERROR: Final = 3
_CRASH: Final = 4


def read_pipelined(
    paths: PathArg | Iterable[PathArg], *, strict: bool = False, stats: ReadStats | None = None
) -> Iterator[Record]:
    """``otlp_reader.read(paths, strict=strict, stats=stats)``, read by a forked child process.

    ``stats`` shows the files and lines read so far while the records come, and everything else
    (records by signal, problems) once they are all consumed.
    """
    stats = stats if stats is not None else ReadStats()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not hasattr(os, "fork") or threading.active_count() > 1:
        yield from read(paths, strict=strict, stats=stats)
        return
    read_fd, write_fd = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or a lower limit: slower, not wrong
        pass
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _child(paths, strict, write_fd)
    os.close(write_fd)
    files_before, lines_before = stats.files_read, stats.lines_read
    finished = False
    try:
        with os.fdopen(read_fd, "rb", buffering=PIPE_BYTES) as stream:
            while True:
                try:
                    message = pickle.load(stream)
                except EOFError:
                    raise ReaderProcessError(
                        "the reading process ended before the end of the input (killed? out of memory?)"
                    ) from None
                tag = message[0]
                if tag in (_SPANS, _RECORDS):
                    stats.files_read = files_before + message[1]
                    stats.lines_read = lines_before + message[2]
                    if tag == _SPANS:
                        for fields in message[3]:
                            yield SpanRecord(*fields)
                    else:
                        yield from message[3]
                elif tag == _END:
                    _merge(stats, message[1], files_before, lines_before)
                    finished = True
                    return
                elif tag == _ERROR:
                    raise TelemetryInputError(message[1])
                else:
                    raise ReaderProcessError(f"the reading process failed: {message[1]}")
    finally:
        _reap(pid, kill=not finished)


def _merge(stats: ReadStats, child: ReadStats, files_before: int, lines_before: int) -> None:
    """Add what the child's reader counted to ``stats`` (which may hold an earlier read's counts)."""
    stats.files_read = files_before + child.files_read
    stats.lines_read = lines_before + child.lines_read
    for signal_name, count in child.records.items():
        stats.records[signal_name] = stats.records.get(signal_name, 0) + count
    stats.ignored_lines += child.ignored_lines
    kept = child.problems
    for message in kept:
        stats.add_problem(message)
    stats.problem_count += child.problem_count - len(kept)


def _reap(pid: int, *, kill: bool) -> None:
    """Wait for the child, killing it first when the parent stopped before the end."""
    try:
        if kill:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass


# --- the child ------------------------------------------------------------------------------------------


def _span_fields(*fields: Any) -> tuple[Any, ...]:
    """What the child builds instead of a ``SpanRecord``: its fields, in order."""
    return fields


def _empty_attributes() -> Attributes:
    """The reader's shared empty mapping, by reference (a mappingproxy cannot be pickled)."""
    return _EMPTY


def _reduce_proxy(_proxy: MappingProxyType[str, Any]) -> tuple[Any, tuple[()]]:
    return _empty_attributes, ()  # the reader's only mappingproxy is _EMPTY


def _reduce_span(span: SpanRecord) -> tuple[type[SpanRecord], tuple[Any, ...]]:
    # A span the general path built: its fields, as the typed path sends them.
    return SpanRecord, (
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.kind,
        span.start_ns,
        span.end_ns,
        span.status_code,
        span.status_message,
        span.attributes,
        span.events,
        span.resource,
        span.scope_name,
        span.scope_version,
        span.links,
    )


_DISPATCH: Final[dict[type, Any]] = {
    **copyreg.dispatch_table,
    MappingProxyType: _reduce_proxy,
    SpanRecord: _reduce_span,
}


def _send(out: BinaryIO, message: tuple[Any, ...]) -> None:
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)  # a new memo per message: nothing kept
    pickler.dispatch_table = _DISPATCH
    pickler.dump(message)


def _child(paths: list[PathArg], strict: bool, write_fd: int) -> NoReturn:  # pragma: no cover
    """Read ``paths`` and send their records to the parent; never returns (``os._exit``)."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
        with os.fdopen(write_fd, "wb", buffering=PIPE_BYTES) as out:
            stats = ReadStats()
            reader = _Reader(stats, strict, MAX_LINE_BYTES, MAX_DOCUMENT_BYTES, _span_fields)
            try:
                for display, path in reader.files(paths):
                    for records in reader.read_file(display, path):
                        # The typed path gives span tuples; the general path records (never mixed).
                        tag = _SPANS if records and type(records[0]) is tuple else _RECORDS
                        _send(out, (tag, stats.files_read, stats.lines_read, records))
            except TelemetryInputError as error:
                _send(out, (_ERROR, str(error)))
            except Exception as error:  # a bug: its last line, never a traceback on the user's screen
                _send(out, (_CRASH, "".join(traceback.format_exception_only(error)).strip()))
            else:
                _send(out, (_END, stats))
        status = 0
    except BaseException:  # the parent went away (a broken pipe): nothing to tell anyone
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's inherited stdio buffers
