"""Never hurt the host: 10 000 spans while the OTLP collector is down.

Started by tests/test_never_hurt_host.py with ``OTEL_EXPORTER_OTLP_ENDPOINT`` on a closed port. It
measures the Python heap (tracemalloc, after a full garbage collection, so that only what is still
held counts) every ``STEP`` spans, measures what one finished span costs for reference, reads the
agent's and the SDK's own metrics from an in-memory reader, times the shutdown, and prints one JSON
object as its last line of stdout.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc

tracemalloc.start()

from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

import amqadf_agent  # noqa: E402

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
STEP = 1_000
PAYLOAD = "x" * 128


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def bytes_per_span(n: int = 1_000) -> float:
    """What one finished span of the same shape costs while something holds it."""
    tracer = TracerProvider().get_tracer("reference")
    held = []
    before = heap()
    for i in range(n):
        span = tracer.start_span("work", attributes={"i": i, "payload": PAYLOAD})
        span.end()
        held.append(span)
    cost = (heap() - before) / n
    del held
    return cost


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[list[object]]]:
    data = reader.get_metrics_data()
    points: dict[str, list[list[object]]] = {}
    if data is None:
        return points
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    points.setdefault(metric.name, []).append(
                        [dict(point.attributes or {}), getattr(point, "value", None)]
                    )
    return points


def settled(points: dict[str, list[list[object]]]) -> tuple[object, ...]:
    """What changes while the export thread still works: spans processed and dropped, queue size."""
    names = (
        "otel.sdk.processor.span.processed",
        "otel.sdk.processor.span.queue.size",
        "amqadf.agent.telemetry.dropped",
    )
    return tuple(json.dumps(points.get(name), sort_keys=True) for name in names)


def main() -> None:
    per_span = bytes_per_span()  # before the agent's threads run, so that nothing else allocates
    started = time.monotonic()
    reader = InMemoryMetricReader()
    agent = amqadf_agent.start(exporters=["otlp"], service_name="flood", metric_readers=[reader])
    if not agent.running:
        raise SystemExit(f"agent not running: {agent.error}")
    tracer = agent.tracer("flood")
    memory = {0: heap()}
    for i in range(1, TOTAL + 1):
        with tracer.start_as_current_span("work", attributes={"i": i, "payload": PAYLOAD}):
            pass
        if i % STEP == 0:
            memory[i] = heap()
    spans_seconds = time.monotonic() - started
    # The exporter gives up on a batch after OTEL_EXPORTER_OTLP_TIMEOUT; wait (a bounded while) for
    # the agent to count it, then for the export thread to settle: one collection reads the SDK's
    # counters and the agent's at slightly different moments, and failed exports may be fast.
    deadline = time.monotonic() + 8.0
    points = metric_points(reader)
    while "amqadf.agent.telemetry.dropped" not in points and time.monotonic() < deadline:
        time.sleep(0.1)
        points = metric_points(reader)
    previous = None
    while time.monotonic() < deadline:
        current = settled(points)
        if current == previous:
            break
        previous = current
        time.sleep(0.3)
        points = metric_points(reader)
    before = time.monotonic()
    finished = agent.shutdown()
    shutdown_seconds = time.monotonic() - before
    print("app finished")
    print(
        json.dumps(
            {
                "memory": memory,
                "bytes_per_span": per_span,
                "metrics": points,
                "spans_seconds": spans_seconds,
                "shutdown_finished": finished,
                "shutdown_seconds": shutdown_seconds,
                "shutdown_timeout": agent.settings.shutdown_timeout,
                "max_queue_size": agent.settings.max_queue_size,
            }
        )
    )


if __name__ == "__main__":
    main()
