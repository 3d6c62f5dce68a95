"""The agent measures itself: CPU of its background threads, failed exports, dropped data.

CPU time is read per thread from ``/proc/self/task/<tid>/stat`` (Linux) at collection time, for
the threads the agent and the SDK start (batch processors, the metric reader, our own). Reading
one stat file costs a few microseconds; nothing is measured on the application's hot path.
A thread that exits (or is replaced after ``fork``) keeps its time in the running total, so the
counter stays monotonic.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from amqadf_agent import semconv
from amqadf_agent.runtime.guard import ExportStats

#: Thread-name prefixes of the agent's and the SDK's background threads, and how they are reported.
THREAD_KINDS = (
    ("OtelBatchSpanRecordProcessor", "span_export"),
    ("OtelBatchLogRecordProcessor", "log_export"),
    ("OtelPeriodicExportingMetricReader", "metric_export"),
    # The agent's own threads only: not ``amqadf-timeout-*`` (they run the application's function
    # under @timeout) nor ``amqadf-lb-health-*`` (the application's health checks).
    ("amqadf-agent-", "agent"),
    ("amqadf-resource-monitor", "agent"),
)

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_seconds(native_id: int) -> float | None:
    """user+system CPU seconds of one thread of this process, or None where not available."""
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    # After the command name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


class ThreadCpu:
    """Monotonic CPU seconds per kind of agent thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[int, tuple[str, float]] = {}
        self._retired: dict[str, float] = {}

    def totals(self) -> dict[str, float]:
        current: dict[int, tuple[str, float]] = {}
        for thread in threading.enumerate():
            kind = _kind(thread.name)
            if kind is None or thread.native_id is None:
                continue
            seconds = thread_cpu_seconds(thread.native_id)
            if seconds is not None:
                current[thread.native_id] = (kind, seconds)
        with self._lock:
            for tid, (kind, seconds) in self._last.items():
                if tid not in current:
                    self._retired[kind] = self._retired.get(kind, 0.0) + seconds
            self._last = current
            totals = dict(self._retired)
        for kind, seconds in current.values():
            totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._last = {}
        self._retired = {}


def _kind(name: str) -> str | None:
    for prefix, kind in THREAD_KINDS:
        if name.startswith(prefix):
            return kind
    return None


def register(meter_provider: MeterProvider, stats: ExportStats, cpu: ThreadCpu) -> None:
    """Create the agent-health instruments of the contract on ``meter_provider``."""
    meter = meter_provider.get_meter(semconv.SCOPE_NAME)

    def cpu_callback(_options: CallbackOptions) -> Iterable[Observation]:
        try:
            totals = cpu.totals()
        except Exception:
            return []
        return [Observation(seconds, {semconv.ATTR_AGENT_THREAD: kind}) for kind, seconds in totals.items()]

    def _series(index: int) -> Iterable[Observation]:
        counts = stats.snapshot()[index]
        return [
            Observation(
                value,
                {
                    semconv.ATTR_AGENT_SIGNAL: signal,
                    semconv.ATTR_AGENT_EXPORTER: exporter,
                    semconv.ATTR_ERROR_TYPE: error_type,
                },
            )
            for (signal, exporter, error_type), value in counts.items()
        ]

    def failures_callback(_options: CallbackOptions) -> Iterable[Observation]:
        return _series(0)

    def dropped_callback(_options: CallbackOptions) -> Iterable[Observation]:
        return _series(1)

    for inst, callback in (
        (semconv.AGENT_CPU_TIME, cpu_callback),
        (semconv.AGENT_EXPORT_FAILURES, failures_callback),
        (semconv.AGENT_DROPPED, dropped_callback),
    ):
        meter.create_observable_counter(
            inst.name, callbacks=[callback], unit=inst.unit, description=inst.description
        )
