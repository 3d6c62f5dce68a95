"""What the agent builds on the OpenTelemetry log SDK: the guarded log exporter and the log
sanitizer. They live apart from ``guard`` and ``sanitize`` (which still give them by name) because
their base classes are the log SDK's: a start without ``capture_logs`` imports it only when an
instrumentation first asks the global logger provider for a logger. ``FileLogExporter`` is in
``file_log_exporter`` for the same reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from amqadf_agent.runtime.guard import ExportStats, _Guarded, _quietly, _safe_call
from amqadf_agent.runtime.sanitize import EXCEPTION_TEXT_KEYS, SanitizingSpanProcessor, sanitize_message

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadWriteLogRecord

__all__ = ["GuardedLogExporter", "SanitizingLogProcessor"]

logger = logging.getLogger("amqadf_agent.runtime.sanitize")


class GuardedLogExporter(LogRecordExporter, _Guarded):
    signal = "logs"

    def __init__(self, inner: LogRecordExporter, name: str, stats: ExportStats) -> None:
        self.inner, self.name, self.stats = inner, name, stats
        self._register()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = _safe_call(self.stats, "logs", self.name, len(batch), lambda: self.inner.export(batch), self)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._shutdown_inner(self.inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(_quietly(lambda: self.inner.force_flush(timeout_millis)))


class SanitizingLogProcessor(LogRecordProcessor):
    """Rewrites the application's log records before the processors after it (the exporters).

    Attributes go through the same rules as a span's (``redact_attributes``, and statements and
    URLs when ``sanitize`` is on); with ``sanitize`` on, the body and the exception attributes go
    through ``sanitize_message``.
    """

    def __init__(self, *, sanitize: bool = True, redact_attributes: Iterable[str] = ()) -> None:
        self.sanitize = sanitize
        self._attributes = SanitizingSpanProcessor(sanitize=sanitize, redact_attributes=redact_attributes)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            self._rewrite(log_record)
        except Exception:  # never into the application's logging call
            logger.debug("could not sanitize a log record", exc_info=True)

    def _rewrite(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        attributes = record.attributes
        if attributes:
            changed = dict(self._attributes.rewrite(attributes) or {})
            if self.sanitize:
                for key in EXCEPTION_TEXT_KEYS:
                    value = changed.get(key, attributes.get(key))
                    if isinstance(value, str):
                        changed[key] = sanitize_message(value)
            for key, value in changed.items():
                if attributes.get(key) != value:
                    attributes[key] = value  # type: ignore[index]
        if self.sanitize and isinstance(record.body, str):
            record.body = sanitize_message(record.body)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
