"""Never hurt the host: exporters that cannot raise, failures logged once and counted.

Every exporter the agent builds is wrapped here. A failure (collector down, disk full, a bug in
an encoder) becomes one warning the first time it happens, then a count in
``amqadf.agent.export.failures`` and ``amqadf.agent.telemetry.dropped``; it never reaches the
application, and it never floods the application's logs. The same rate limit is put on the
OpenTelemetry SDK's and exporters' own loggers, which otherwise warn on every failed batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from amqadf_agent.runtime.log_export import GuardedLogExporter as GuardedLogExporter

logger = logging.getLogger("amqadf_agent")

#: Loggers of the SDK and exporters that repeat one warning per failed batch.
NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk.metrics._internal.instrument",  # a failing observable callback, every collection
    "opentelemetry.sdk.trace.export",
)


class ExportStats:
    """Plain counters on the export path, read by observable instruments at collection time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures: Counter[tuple[str, str, str]] = Counter()
        self.dropped: Counter[tuple[str, str, str]] = Counter()
        self._warned: set[tuple[str, str, str]] = set()
        #: Set when the shutdown deadline has passed: every export fails at once, counted.
        self.closed = False
        #: Exports under way: token -> (signal, exporter, items), until they return or the deadline.
        self._in_flight: dict[int, tuple[str, str, int]] = {}
        self._next_token = 0

    def begin(self, signal: str, exporter: str, items: int) -> int | None:
        """An export starts: its token, or None when the deadline has passed (then counted here)."""
        with self._lock:
            if self.closed:
                self.dropped[(signal, exporter, "shutdown_deadline")] += items
                self.failures[(signal, exporter, "shutdown_deadline")] += 1
                return None
            self._next_token += 1
            self._in_flight[self._next_token] = (signal, exporter, items)
            return self._next_token

    def finish(self, token: int) -> bool:
        """An export returned: True when its outcome is still to be counted (False: the deadline
        passed while it ran, and its items were counted as dropped then)."""
        with self._lock:
            return self._in_flight.pop(token, None) is not None

    def close(self) -> None:
        """The deadline has passed: every export still under way is counted as dropped now."""
        with self._lock:
            self.closed = True
            for signal, exporter, items in self._in_flight.values():
                self.dropped[(signal, exporter, "shutdown_deadline")] += items
                self.failures[(signal, exporter, "shutdown_deadline")] += 1
            self._in_flight.clear()

    def drop_queued(self, signal: str, exporter: str, items: int) -> None:
        """Count what was still queued for ``exporter`` at the deadline."""
        if items:
            with self._lock:
                self.dropped[(signal, exporter, "shutdown_deadline")] += items

    def record_failure(
        self, signal: str, exporter: str, error_type: str, items: int, detail: str, warn: bool = True
    ) -> None:
        key = (signal, exporter, error_type)
        with self._lock:
            self.failures[key] += 1
            self.dropped[key] += items
            first = warn and key not in self._warned
            self._warned.add(key)
        if first:
            logger.warning(
                "amqadf-agent: %s export to %s failed (%s: %s); dropping data and counting it in "
                "amqadf.agent.telemetry.dropped, further failures of this kind are not logged",
                signal,
                exporter,
                error_type,
                detail or "no detail",
            )

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int]]:
        with self._lock:
            return dict(self.failures), dict(self.dropped)


#: The guarded exporters alive in this process, for ``stop_exports``.
_guards: weakref.WeakSet[_Guarded] = weakref.WeakSet()


def stop_exports(stats: ExportStats) -> None:
    """The shutdown deadline has passed: end the exports of the agent that counts in ``stats``.

    What is still queued is dropped at once, and counted before this returns, instead of being
    tried after the application was told shutdown is over: the batches in flight, and what waits in
    each batch processor's queue. So every item handed to the agent is, when ``shutdown()``
    returns, either exported or counted in ``amqadf.agent.telemetry.dropped``. (A batch in flight is
    counted as dropped even if its request, ending later, still gets through: the application was
    told it is over.) Each exporter is then shut down, which stops an OTLP exporter's retries and
    cancels its gRPC calls in flight. (An HTTP request in flight runs on until its own timeout, in a
    daemon thread that never holds up the exit.)
    """
    stats.close()
    guards = [guard for guard in list(_guards) if guard.stats is stats]
    for guard in guards:
        if guard._batch is not None:
            guard._batch._shutdown_timeout_exceeded = True  # its worker takes no further batch
    for guard in guards:
        if guard._batch is not None:
            stats.drop_queued(guard.signal, guard.name, _take_queue(guard._batch, guard))
    for guard in guards:
        guard._shutdown_inner(guard.inner.shutdown)


def _reset_after_fork() -> None:
    """A forked child has none of its parent's exports under way."""
    for guard in list(_guards):
        guard._busy = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


#: How long ``stop_exports`` waits for a batch processor's worker to let go of its queue.
QUEUE_WAIT = 0.2


def _take_queue(batch: Any, guard: _Guarded) -> int:
    """Empty the queue of the SDK's ``BatchProcessor`` ``batch`` and say how many items it held.

    Its worker pops a batch and then hands it to the exporter (``guard``), holding the export
    lock; once told to take no further batch, it pops nothing more after that hand-over. So the
    count is exact when the lock is ours (the worker is between batches) or when the worker is
    inside ``guard`` (its pops are done; what it holds is counted in flight). Only a worker that
    holds the lock without reaching the exporter within ``QUEUE_WAIT`` leaves a count made anyway.
    """
    lock = batch._export_lock
    until = time.monotonic() + QUEUE_WAIT
    while True:
        if lock.acquire(timeout=0.005):
            try:
                return _clear(batch._queue)
            finally:
                lock.release()
        if guard._busy or time.monotonic() >= until:
            return _clear(batch._queue)


def _clear(queue: Any) -> int:
    count = len(queue)
    queue.clear()
    return count


def watch_queue(exporter: Any, processor: Any) -> None:
    """Let ``stop_exports`` count what ``processor`` (the SDK's batch span or log processor) still
    holds for ``exporter`` at the deadline. A processor of another shape is left alone."""
    batch = getattr(processor, "_batch_processor", None)
    if isinstance(exporter, _Guarded) and all(
        hasattr(batch, name) for name in ("_queue", "_export_lock", "_shutdown_timeout_exceeded")
    ):
        exporter._batch = batch


def _safe_call(
    stats: ExportStats,
    signal: str,
    name: str,
    items: int,
    fn: Callable[[], Any],
    guard: _Guarded | None = None,
) -> bool:
    """Run an export; True when it succeeded. Nothing escapes."""
    token = stats.begin(signal, name, items)
    if token is None:  # the deadline has passed (the shutdown has said so once, for every signal)
        return False
    if guard is not None:
        guard._busy += 1
    try:
        result = fn()
    except BaseException as exc:
        counted = stats.finish(token)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if counted:
            stats.record_failure(signal, name, type(exc).__qualname__, items, str(exc)[:200])
        return False
    finally:
        if guard is not None:
            guard._busy -= 1
    if not stats.finish(token):
        return False  # counted as dropped at the deadline
    if getattr(result, "name", "SUCCESS") != "SUCCESS":
        stats.record_failure(signal, name, "export_failed", items, f"{name} exporter returned {result.name}")
        return False
    return True


class _Guarded:
    """What the three guards share: the inner exporter is shut down once, whoever asks first."""

    inner: Any
    stats: ExportStats
    name: str
    signal: str

    def _register(self) -> None:
        #: The SDK batch processor that feeds this exporter (``watch_queue``), if known.
        self._batch: Any = None
        #: Exports under way in this exporter (read by ``stop_exports``).
        self._busy = 0
        self._shut_down = False
        self._shutdown_lock = threading.Lock()
        _guards.add(self)

    def _shutdown_inner(self, call: Callable[[], Any]) -> None:
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        _quietly(call)


class GuardedSpanExporter(SpanExporter, _Guarded):
    signal = "traces"

    def __init__(self, inner: SpanExporter, name: str, stats: ExportStats) -> None:
        self.inner, self.name, self.stats = inner, name, stats
        self._register()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = _safe_call(self.stats, "traces", self.name, len(spans), lambda: self.inner.export(spans), self)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._shutdown_inner(self.inner.shutdown)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(_quietly(lambda: self.inner.force_flush(timeout_millis)))


class GuardedMetricExporter(MetricExporter, _Guarded):
    signal = "metrics"

    def __init__(self, inner: MetricExporter, name: str, stats: ExportStats) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner, self.name, self.stats = inner, name, stats
        self._register()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = sum(
            len(metric.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        )
        ok = _safe_call(
            self.stats,
            "metrics",
            self.name,
            points,
            lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis),
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(_quietly(lambda: self.inner.force_flush(timeout_millis)))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown_inner(lambda: self.inner.shutdown(timeout_millis=timeout_millis))


def _quietly(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        logger.debug("amqadf-agent: ignored error during flush/shutdown: %r", exc)
        return False


class RateLimitFilter(logging.Filter):
    """Let the first record of each kind through, then at most one per ``interval`` seconds.

    As a filter it decides once a record exists. On the SDK's and exporters' own loggers it decides
    before (``gate``): during an outage the SDK warns once per dropped span, and building a record
    (the caller's frame, a ``LogRecord``) costs more than dropping the span.
    """

    def __init__(self, interval: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("amqadf-rate-limit")
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, Any], float] = {}
        self._suppressed: Counter[tuple[str, Any]] = Counter()
        self._lock = threading.Lock()

    def admit(self, name: str, msg: Any) -> Any:
        """The message to log now (with how many like it were suppressed since), or None."""
        key = (name, msg)
        now = self.clock()
        try:
            with self._lock:
                last = self._last.get(key)
                if last is not None and now - last < self.interval:
                    self._suppressed[key] += 1
                    return None
                self._last[key] = now
                suppressed = self._suppressed.pop(key, 0)
        except TypeError:  # an unhashable message object: not limited
            return msg
        return f"{msg} ({suppressed} similar messages suppressed)" if suppressed else msg

    def filter(self, record: logging.LogRecord) -> bool:
        msg = self.admit(record.name, record.msg)
        if msg is None:
            return False
        record.msg = msg
        return True

    def gate(self, target: logging.Logger) -> None:
        """Limit ``target``'s records before they are built: its ``_log``, which every level's
        method calls with the message, asks ``admit`` first."""
        build = target._log
        name = target.name

        def _log(
            level: int,
            msg: Any,
            args: Any,
            exc_info: Any = None,
            extra: Any = None,
            stack_info: bool = False,
            stacklevel: int = 1,
        ) -> None:
            admitted = self.admit(name, msg)
            if admitted is not None:
                # One frame more (this one) between the caller and logging's own frames.
                build(level, admitted, args, exc_info, extra, stack_info, stacklevel + 1)

        target._log = _log  # type: ignore[method-assign]


_filter_lock = threading.Lock()
_installed_filter: RateLimitFilter | None = None


def quiet_noisy_loggers() -> None:
    """Put one shared rate limit on the SDK's and exporters' loggers (idempotent)."""
    global _installed_filter
    with _filter_lock:
        if _installed_filter is not None:
            return
        _installed_filter = RateLimitFilter()
        for name in NOISY_LOGGERS:
            _installed_filter.gate(logging.getLogger(name))


def __getattr__(name: str) -> Any:
    """``GuardedLogExporter`` is on the log SDK: it lives in ``log_export``, imported when first used."""
    if name == "GuardedLogExporter":
        from amqadf_agent.runtime import log_export

        return log_export.GuardedLogExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
