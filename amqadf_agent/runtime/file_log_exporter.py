"""``FileLogExporter``: log records as OTLP JSON lines, beside ``file_exporter``'s spans and metrics.

Apart from it (which still gives it by name) because its base class is the log SDK's: a start
without ``capture_logs`` imports that only when an instrumentation first asks for a logger.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from amqadf_agent.runtime.file_exporter import RotatingLineWriter
from amqadf_agent.runtime.otlp_json_encode import logs_line

__all__ = ["FileLogExporter"]


class FileLogExporter(LogRecordExporter):
    """Log records as OTLP JSON lines in ``logs.jsonl``."""

    def __init__(self, writer: RotatingLineWriter) -> None:
        self.writer = writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        self.writer.write(logs_line(batch))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
