"""OTLP JSON lines on disk, one file per signal, size-rotated: what the analyzer reads.

Each line is one ``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest`` /
``ExportLogsServiceRequest`` in the OTLP JSON encoding (hex ids, int64 as strings), exactly the
shape the OpenTelemetry Collector's ``file`` exporter writes, so ``amqadf-analyze`` reads both.
Spans and log records are encoded by :mod:`.otlp_json_encode` (the SDK encoder's bytes, several
times cheaper); metrics by the SDK's own (``opentelemetry-exporter-otlp-json-common``).
Serialisation is ``orjson``, several times faster than ``json`` on these nested dicts.

A batch is written with one ``os.write`` on an ``O_APPEND`` descriptor, so lines from concurrent
writers never interleave. Rotation follows the Collector (lumberjack): the full file is renamed to
``<stem>-<UTC time>.jsonl`` and the oldest backups beyond ``max_backups`` are removed. A forked
child writes to ``<stem>.<pid>.jsonl`` so that two processes never rotate the same file; it creates
that file with its first line, so a child that exports nothing leaves none.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.exporter.otlp.json.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from amqadf_agent.runtime.otlp_json_encode import spans_line

if TYPE_CHECKING:
    from amqadf_agent.runtime.file_log_exporter import FileLogExporter as FileLogExporter

_logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"
#: A symlink at the file's name is refused, never followed: where the directory is shared (or was
#: planted by another user), a link would send a root process's telemetry into any file.
_OPEN_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)


class RotatingLineWriter:
    """Appends complete lines to ``directory/stem.jsonl``; rotates past ``max_bytes``."""

    def __init__(self, directory: Path, stem: str, max_bytes: int, max_backups: int) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._closed = False
        self._open()
        ref = weakref.ref(self)

        def _after_in_child() -> None:
            writer = ref()
            if writer is not None:
                writer._reopen_in_child()

        os.register_at_fork(after_in_child=_after_in_child)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.stem}{SUFFIX}"

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _reopen_in_child(self) -> None:
        # The parent's lock may have been held at fork time: a new one, and a file of our own,
        # opened by the first write: a child that exports nothing (one forked to exec, a job's
        # short-lived worker) leaves no empty file behind.
        self._lock = threading.Lock()
        if self._closed:
            return
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1
        self._size = 0
        self.stem = f"{self.stem.split('.')[0]}.{os.getpid()}"

    def write(self, data: bytes) -> None:
        """Write ``data`` (one or more whole lines): all of it, or none of it.

        Raises ``OSError`` (disk full, file too large, ...) to the caller, which counts the batch
        as dropped. What a failed write had put in the file is cut off again, so that the file
        still ends on a line boundary and the next batch is a line of its own, not glued to a torn
        one (unless another process appended to the same file meanwhile: its lines are kept).
        """
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path} is closed")
            if self._fd < 0:
                self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            start = os.fstat(self._fd).st_size
            written = 0
            view = memoryview(data)
            try:
                while written < len(data):
                    written += os.write(self._fd, view[written:])
            except OSError:
                self._cut_back(start, written)
                raise
            self._size = start + written

    def _cut_back(self, start: int, written: int) -> None:
        """Remove the ``written`` bytes of a failed write that began at offset ``start``."""
        try:
            size = os.fstat(self._fd).st_size
            # Only when the file ends with exactly what this write left: bytes appended after
            # them by another process sharing the file are that process's whole lines.
            if written and size == start + written:
                os.ftruncate(self._fd, start)
                size = start
            self._size = size
        except OSError as exc:
            _logger.debug("amqadf-agent: cannot cut a torn line off %s: %r", self.path, exc)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        target = self.directory / f"{self.stem}-{stamp}{SUFFIX}"
        n = 1
        while target.exists():
            target = self.directory / f"{self.stem}-{stamp}.{n}{SUFFIX}"
            n += 1
        os.replace(self.path, target)
        self._prune()
        self._open()

    def _prune(self) -> None:
        backups = sorted(
            (p for p in self.directory.glob(f"{self.stem}-*{SUFFIX}")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in backups[: max(0, len(backups) - self.max_backups)]:
            with contextlib.suppress(OSError):
                old.unlink()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _line(message: Any) -> bytes:
    return orjson.dumps(message.to_dict()) + b"\n"


class FileSpanExporter(SpanExporter):
    """Spans as OTLP JSON lines in ``traces.jsonl``."""

    def __init__(self, writer: RotatingLineWriter) -> None:
        self.writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        self.writer.write(spans_line(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class FileMetricExporter(MetricExporter):
    """Metrics as OTLP JSON lines in ``metrics.jsonl`` (cumulative temporality, the SDK default)."""

    def __init__(self, writer: RotatingLineWriter) -> None:
        super().__init__()
        self.writer = writer

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        message = encode_metrics(metrics_data)
        if message.resource_metrics:
            self.writer.write(_line(message))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.writer.close()


def __getattr__(name: str) -> Any:
    """``FileLogExporter`` is on the log SDK: it lives in ``file_log_exporter``, imported when first used."""
    if name == "FileLogExporter":
        from amqadf_agent.runtime import file_log_exporter

        return file_log_exporter.FileLogExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
