"""Never hurt the host (docs/design.md, principle 2): a dead collector, a full disk, a failing callback.

Telemetry failures are logged once and counted, never raised into the application; the span queue
is bounded, so memory stays flat however long the collector is down; shutdown keeps its deadline.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from support import free_port

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.analyzer.model import MetricRecord
from amqadf_agent.analyzer.otlp_reader import read

APPS = Path(__file__).resolve().parent / "apps"
TIMEOUT = 60
SPANS = 10_000
FIRST = 3_000
#: Heap growth allowed between FIRST and SPANS spans, once the queue is full. Holding the 7 000 extra
#: spans (~2.8 KB each here) would take ~20 MB; a bounded queue keeps it to the batches in flight.
MAX_GROWTH_BYTES = 8_000_000
SHUTDOWN_TIMEOUT = 2.0


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(values)
    return env


def _sum_points(points: list[list[Any]], **attrs: str) -> int:
    return sum(int(value) for labels, value in points if all(labels.get(k) == v for k, v in attrs.items()))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_dead_collector_costs_bounded_memory_and_a_bounded_shutdown(tmp_path: Path, protocol: str) -> None:
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        # The exporter gives up on a batch after 1 s (instead of 10 s), so the agent counts the
        # failure while the app still runs.
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        AMQADF_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(APPS / "otlp_flood.py"), str(SPANS)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    wall = time.monotonic() - started

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    stdout = proc.stdout.splitlines()
    assert stdout[-2] == "app finished"
    result = json.loads(stdout[-1])
    print(f"{protocol}: wall {wall:.1f}s, {json.dumps(result, indent=1)}")

    # Memory: what is held stays bounded by the queue, not by the number of spans made.
    memory = {int(k): v for k, v in result["memory"].items()}
    per_span = result["bytes_per_span"]
    assert per_span > 500, per_span  # the reference measurement itself is sane
    growth = max(memory.values()) - memory[0]
    # Holding every span would take SPANS * per_span; the queue (2048) and the batches in flight
    # (512 each) hold about a third of that.
    assert growth < 0.5 * SPANS * per_span, (growth, per_span, memory)
    # Once the queue is full, the heap is flat: 7 000 more spans would add ~7 000 * per_span.
    late = [v for n, v in memory.items() if n >= FIRST]
    assert max(late) - min(late) < min(MAX_GROWTH_BYTES, 0.4 * (SPANS - FIRST) * per_span), memory

    # Every span is accounted for: exported (or handed to the dead exporter), dropped because the
    # bounded queue was full, or still queued; the agent counts what the failed exports dropped.
    metrics = result["metrics"]
    queue = result["max_queue_size"]
    assert _sum_points(metrics["otel.sdk.processor.span.queue.capacity"]) == queue
    processed = metrics["otel.sdk.processor.span.processed"]
    queue_full = _sum_points(processed, **{semconv.ATTR_ERROR_TYPE: "queue_full"})
    queued = _sum_points(metrics["otel.sdk.processor.span.queue.size"])
    assert 0 <= queued <= queue
    # (the export thread drains the queue while the two are observed: a batch or two of 512 drift)
    assert abs(_sum_points(processed) + queued - SPANS) <= 2 * 512, (processed, queued)
    handed_to_exporter = _sum_points(processed) - queue_full
    dropped = metrics[semconv.AGENT_DROPPED.name]
    dropped_spans = _sum_points(
        dropped, **{semconv.ATTR_AGENT_SIGNAL: "traces", semconv.ATTR_AGENT_EXPORTER: "otlp"}
    )
    # Whatever reached the dead exporter was dropped and counted, but for a batch or two in flight.
    # (Whether the queue overflowed first depends on how fast the export fails: not asserted.)
    assert handed_to_exporter - 2 * 512 <= dropped_spans <= handed_to_exporter, (dropped, processed)
    assert queue_full + dropped_spans >= SPANS - queue - 2 * 512, (processed, dropped)
    failures = metrics[semconv.AGENT_EXPORT_FAILURES.name]
    assert (_sum_points(failures, **{semconv.ATTR_AGENT_SIGNAL: "traces"}) >= 1) == (dropped_spans > 0), (
        failures
    )
    print(f"{protocol}: dropped because the queue was full {queue_full}, in failed exports {dropped_spans}")

    # Shutdown keeps its deadline. (The whole run is bounded by the subprocess TIMEOUT only: making
    # 10 000 spans under tracemalloc takes from 3 s to over 12 s on a loaded 2-core machine.)
    assert result["shutdown_timeout"] == SHUTDOWN_TIMEOUT
    assert result["shutdown_seconds"] < SHUTDOWN_TIMEOUT + 1.0, result["shutdown_seconds"]

    # The failures are logged once, not once per batch or per dropped span: a few lines per signal
    # (the three shut down at once, so each may say once that its last export failed).
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) <= 12, proc.stderr
    assert len(set(lines)) == len(lines), proc.stderr
    assert sum("Queue full" in line for line in lines) <= 1, proc.stderr
    ours = [line for line in lines if line.startswith("amqadf-agent: traces export to otlp failed")]
    assert len(ours) == 1, proc.stderr


class _DiskFullOs:
    """The ``os`` module as the file exporter sees it, on a full disk: every write fails."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_is_counted_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from amqadf_agent.runtime import file_exporter

    caplog.set_level(logging.WARNING, logger="amqadf_agent")
    out = tmp_path / "telemetry"
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=str(out), metric_interval=60, span_export_delay=60, service_name="full"
    )
    assert agent.running, agent.error
    monkeypatch.setattr(file_exporter, "os", _DiskFullOs())
    tracer = agent.tracer("app")

    for round_ in (1, 2):
        for i in range(25):
            with tracer.start_as_current_span("work", attributes={"i": i}):
                pass
        assert agent.force_flush(timeout=5.0) is True  # flushing finishes; the export failed quietly
        assert agent.stats is not None
        failures, dropped = agent.stats.snapshot()
        assert failures[("traces", "file", "OSError")] == round_
        assert dropped[("traces", "file", "OSError")] == 25 * round_
        assert failures[("metrics", "file", "OSError")] >= 1

    warnings = [r for r in caplog.records if r.name == "amqadf_agent" and r.levelno == logging.WARNING]
    traces_warnings = [r for r in warnings if "traces export to file failed" in r.getMessage()]
    assert len(traces_warnings) == 1, [r.getMessage() for r in warnings]
    assert "OSError" in traces_warnings[0].getMessage()
    assert "No space left on device" in traces_warnings[0].getMessage()
    metrics_warnings = [r for r in warnings if "metrics export to file failed" in r.getMessage()]
    assert len(metrics_warnings) == 1, [r.getMessage() for r in warnings]

    assert agent.shutdown(timeout=5.0) is True
    assert (out / "traces.jsonl").stat().st_size == 0  # nothing was half-written


def _metric_names(data: MetricsData | None) -> dict[str, list[Any]]:
    names: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                names.setdefault(metric.name, []).extend(metric.data.data_points)
    return names


def _failing_and_good_instruments(agent: amqadf_agent.Agent) -> None:
    meter = agent.meter("app")

    def broken(_options: CallbackOptions) -> Iterable[Observation]:
        raise RuntimeError("the app's callback is broken")

    def good(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(42, {"k": "v"})]

    meter.create_observable_gauge("app.broken", callbacks=[broken])
    meter.create_observable_gauge("app.good", callbacks=[good])
    meter.create_counter("app.requests").add(3)


def test_failing_callback_does_not_break_other_metrics(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    out = tmp_path / "telemetry"
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=str(out),
        metric_interval=60,
        metric_readers=[reader],
        service_name="cb",
    )
    assert agent.running, agent.error
    _failing_and_good_instruments(agent)
    with agent.tracer("app").start_as_current_span("work"):
        pass

    for _ in range(3):
        names = _metric_names(reader.get_metrics_data())  # must not raise
        assert "app.broken" not in names
        assert [p.value for p in names["app.good"]] == [42]
        assert [p.value for p in names["app.requests"]] == [3]
        # The agent's own observable instruments are collected in the same pass.
        assert semconv.AGENT_CPU_TIME.name in names

    # The exporting path (periodic reader -> file) is not broken either.
    assert agent.force_flush(timeout=5.0) is True
    assert agent.shutdown(timeout=5.0) is True
    exported = {r.name for r in read(out / "metrics.jsonl", strict=True) if isinstance(r, MetricRecord)}
    assert {"app.good", "app.requests", semconv.AGENT_CPU_TIME.name} <= exported
    assert "app.broken" not in exported


def test_failing_callback_is_logged_once_not_at_every_collection(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Principle 2: a telemetry failure is logged once. The SDK logs a failing callback with its
    # traceback at every collection (every metric_interval, forever) unless the agent rate-limits it.
    from amqadf_agent.runtime import guard

    if guard._installed_filter is not None:  # the process-wide rate limit: forget earlier tests
        monkeypatch.setattr(guard._installed_filter, "_last", {})
    caplog.set_level(logging.WARNING)
    reader = InMemoryMetricReader()
    agent = amqadf_agent.start(exporters=["none"], metric_readers=[reader], service_name="cb")
    assert agent.running, agent.error
    _failing_and_good_instruments(agent)
    for _ in range(3):
        assert "app.good" in _metric_names(reader.get_metrics_data())
    failed = [r for r in caplog.records if "Callback failed" in r.getMessage()]
    assert len(failed) == 1, f"logged {len(failed)} times in 3 collections"


CAPTURE_LOGS_APP = """
import time
import amqadf_agent

agent = amqadf_agent.start(exporters=["otlp"], capture_logs=True)
tracer = agent.tracer("app")
for i in range(600):  # more than one batch: the export starts at once
    with tracer.start_as_current_span("work"):
        pass
deadline = time.monotonic() + 8
while ("traces", "otlp", "export_failed") not in agent.stats.snapshot()[0] and time.monotonic() < deadline:
    time.sleep(0.1)
print("failures", sorted(agent.stats.snapshot()[0]))
agent.shutdown()
print("app finished")
"""


def test_export_failure_reaches_stderr_when_logs_are_captured(tmp_path: Path) -> None:
    # With capture_logs the agent puts an OTel LoggingHandler on the root logger. Python then no
    # longer prints unhandled warnings to stderr (logging.lastResort), so the agent's one warning
    # about the dead collector must still reach stderr, not only the dead collector's log pipeline.
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        AMQADF_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", CAPTURE_LOGS_APP],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "('traces', 'otlp', 'export_failed')" in proc.stdout  # the failure happened and was counted
    assert proc.stdout.splitlines()[-1] == "app finished"
    ours = [
        line for line in proc.stderr.splitlines() if line.startswith("amqadf-agent: traces export to otlp")
    ]
    assert len(ours) == 1, proc.stderr


class _StuckExporter(SpanExporter):
    """A collector that takes forever: the first batch waits until released, so the queue fills."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_dropped_spans_build_no_log_record_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # During an outage the SDK warns once per span it drops from its full queue. The rate limit
    # decides before a record is built: a record (the caller's frame, a LogRecord) costs more
    # than dropping the span.
    from amqadf_agent.runtime import guard

    if guard._installed_filter is not None:  # the process-wide rate limit: forget earlier tests
        monkeypatch.setattr(guard._installed_filter, "_last", {})
    built: list[logging.LogRecord] = []
    make = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        built.append(record)
        return record

    logging.setLogRecordFactory(counting)
    stuck = _StuckExporter()
    try:
        agent = amqadf_agent.start(
            exporters=["none"],
            span_exporters=[stuck],
            max_queue_size=64,
            span_export_delay=60,
            self_metrics=False,
            service_name="outage",
        )
        assert agent.running, agent.error
        tracer = agent.tracer("app")
        for _ in range(2000):
            with tracer.start_as_current_span("work"):
                pass
    finally:
        logging.setLogRecordFactory(make)
        stuck.release.set()
    assert agent.shutdown(timeout=5.0)
    queue_full = [r for r in built if "Queue full" in str(r.msg)]
    assert len(queue_full) == 1, len(queue_full)  # the first drop is still said, once
    assert queue_full[0].funcName == "emit"  # and names the SDK's own caller, not the limit's
