"""A batch that fills while the SDK worker ends its export loop is exported now, not after the delay."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import amqadf_agent
from amqadf_agent.runtime.batch_wakeup import _Wakeup, keep_wakeups

BATCH = 4


class _Recording(SpanExporter):
    def __init__(self) -> None:
        self.exported: list[ReadableSpan] = []
        self.got = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported.extend(spans)
        self.got.set()
        return SpanExportResult.SUCCESS


def _provider(fixed: bool) -> tuple[TracerProvider, BatchSpanProcessor, _Recording]:
    exporter = _Recording()
    # No timer within the test: only a wakeup exports.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=BATCH)
    if fixed:
        assert keep_wakeups(processor)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor, exporter


def _race(provider: TracerProvider, processor: BatchSpanProcessor, exporter: _Recording) -> None:
    """Fill a batch just before the worker clears its event: the window of the lost wakeup."""
    batch: Any = processor._batch_processor
    event = batch._worker_awaken
    real_clear = event.clear
    tracer = provider.get_tracer("t")
    armed = [True]

    def clear_late() -> None:
        if armed[0] and threading.current_thread() is batch._worker_thread:
            armed[0] = False
            for i in range(BATCH):  # the event is still set: emit does not set it again
                tracer.start_span(f"late-{i}").end()
        real_clear()

    event.clear = clear_late
    for i in range(BATCH):  # a first batch wakes the worker; its clear() is the one that races
        tracer.start_span(f"first-{i}").end()
    assert exporter.got.wait(5)


def test_the_batch_that_fills_before_the_clear_is_exported_at_once() -> None:
    provider, processor, exporter = _provider(fixed=True)
    _race(provider, processor, exporter)
    deadline = time.monotonic() + 5
    while len(exporter.exported) < 2 * BATCH and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(s.name for s in exporter.exported)[-BATCH:] == [f"late-{i}" for i in range(BATCH)]
    provider.shutdown()


def test_without_the_fix_the_sdk_worker_sleeps_on_a_full_batch() -> None:
    # The race above is real in this SDK: with its plain event the late batch waits for the timer.
    provider, processor, exporter = _provider(fixed=False)
    _race(provider, processor, exporter)
    time.sleep(1.0)
    exported = len(exporter.exported)
    provider.shutdown()  # exports the rest
    if exported == 2 * BATCH:
        pytest.fail("the SDK no longer loses the wakeup: keep_wakeups can go")
    assert exported == BATCH
    assert len(exporter.exported) == 2 * BATCH


def test_a_clear_with_less_than_a_batch_queued_clears() -> None:
    provider, processor, _ = _provider(fixed=True)
    event = processor._batch_processor._worker_awaken  # type: ignore[attr-defined]
    assert isinstance(event, _Wakeup)
    provider.get_tracer("t").start_span("one").end()
    event.set()
    event.clear()
    assert not event.is_set()
    provider.shutdown()


def test_the_log_processor_gets_it_too_and_a_forked_child_keeps_it() -> None:
    processor = BatchLogRecordProcessor(InMemoryLogRecordExporter(), schedule_delay_millis=60_000)
    assert keep_wakeups(processor)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the SDK's fork hook gave the child's worker a new, plain event; ours runs after it
        ok = type(processor._batch_processor._worker_awaken) is _Wakeup  # type: ignore[attr-defined]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    provider.shutdown()


def test_a_processor_of_another_shape_is_left_alone() -> None:
    assert not keep_wakeups(object())


def test_the_agent_gives_it_to_its_processors(tmp_path: Any) -> None:
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path, self_metrics=False, capture_logs=True)
    try:
        span_processors = agent.tracer_provider._active_span_processor._span_processors
        batches = [p for p in span_processors if isinstance(p, BatchSpanProcessor)]
        assert batches and all(type(p._batch_processor._worker_awaken) is _Wakeup for p in batches)
        log_processors = agent.logger_provider._multi_log_record_processor._log_record_processors
        log_batches = [p for p in log_processors if isinstance(p, BatchLogRecordProcessor)]
        assert log_batches and all(type(p._batch_processor._worker_awaken) is _Wakeup for p in log_batches)
    finally:
        assert agent.shutdown()
