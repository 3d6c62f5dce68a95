"""Every span the application made is, when ``shutdown()`` returns past its deadline, either
exported or counted as dropped: those in a batch in flight and those still queued are counted at
the deadline, not later by a thread the application no longer waits for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from support import free_port

from amqadf_agent.runtime.guard import ExportStats, GuardedSpanExporter, stop_exports, watch_queue


class StuckExporter(SpanExporter):
    """Takes batches and blocks in the first until released (a collector that never answers)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.set()


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _watched(
    inner: SpanExporter, name: str, stats: ExportStats, **batch: int
) -> tuple[TracerProvider, BatchSpanProcessor]:
    """A provider whose batch processor (queue of 4096) the guard of ``inner`` watches at the deadline."""
    guarded = GuardedSpanExporter(inner, name, stats)
    processor = BatchSpanProcessor(guarded, max_queue_size=4096, **batch)
    watch_queue(guarded, processor)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor


def _traces_dropped(stats: ExportStats) -> dict[str, int]:
    return {"/".join(key[1:]): n for key, n in stats.snapshot()[1].items() if key[0] == "traces"}


def test_the_batch_in_flight_and_the_queue_are_counted_at_the_deadline() -> None:
    stats = ExportStats()
    inner = StuckExporter()
    provider, processor = _watched(inner, "stuck", stats, max_export_batch_size=100)
    tracer = provider.get_tracer("test")
    for _ in range(1000):
        with tracer.start_as_current_span("work"):
            pass
    assert inner.entered.wait(5)  # the worker holds the first batch, in the exporter

    stop_exports(stats)  # the deadline

    # Counted when stop_exports returns: 100 in flight, 900 queued; nothing is counted twice later.
    assert _traces_dropped(stats) == {"stuck/shutdown_deadline": 1000}
    processor.shutdown()
    assert _traces_dropped(stats) == {"stuck/shutdown_deadline": 1000}
    assert len(processor._batch_processor._queue) == 0


def test_what_was_exported_before_the_deadline_is_not_counted_as_dropped() -> None:
    stats = ExportStats()
    inner = CountingExporter()
    provider, processor = _watched(inner, "ok", stats, schedule_delay_millis=60_000)
    tracer = provider.get_tracer("test")
    for _ in range(300):  # fewer than a batch: they wait for the (long) schedule delay
        with tracer.start_as_current_span("work"):
            pass
    provider.force_flush()
    for _ in range(200):
        with tracer.start_as_current_span("work"):
            pass

    stop_exports(stats)

    assert inner.exported == 300
    assert _traces_dropped(stats) == {"ok/shutdown_deadline": 200}
    processor.shutdown()
    assert inner.exported == 300


SPANS = 2000  # fewer than the queue holds (2048): none is refused by a full queue

APP = """
import json, amqadf_agent

agent = amqadf_agent.start(exporters=["otlp"], service_name="closed-port")
tracer = agent.tracer("app")
for i in range(%(spans)d):
    with tracer.start_as_current_span("work"):
        pass
finished = agent.shutdown()
dropped = {"/".join(k): v for k, v in agent.stats.snapshot()[1].items()}  # at once, no waiting
print(json.dumps({"finished": finished, "dropped": dropped}))
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_made_equals_exported_plus_counted_dropped_when_shutdown_returns(protocol: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # refused at once: nothing listens
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        AMQADF_SHUTDOWN_TIMEOUT="0.5",
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
    )
    proc = subprocess.run(
        [sys.executable, "-c", APP % {"spans": SPANS}], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["finished"] is False, result  # the exporter retries until the deadline
    dropped = result["dropped"]
    # Nothing reached the closed port: every span made is counted as dropped, once.
    assert sum(n for key, n in dropped.items() if key.startswith("traces/")) == SPANS, result
    assert dropped.get("traces/otlp/shutdown_deadline", 0) > 0, result


def test_a_forked_child_has_no_export_under_way() -> None:
    # Otherwise a child's stop_exports would take its worker for one inside the exporter and
    # count its queue without waiting for the worker to let go of it.
    guarded = GuardedSpanExporter(CountingExporter(), "ok", ExportStats())
    guarded._busy = 1  # forked while the parent's worker was exporting
    pid = os.fork()
    if pid == 0:
        os._exit(0 if guarded._busy == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert guarded._busy == 1  # the parent's own is left alone
