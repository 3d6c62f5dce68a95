"""The demo's companion for tests/test_dashboards.py: what the demo does not produce, for the panels.

Run as ``python dashboard_companion.py SECONDS`` with ``OTEL_EXPORTER_PROMETHEUS_PORT`` set; it is
scraped as a second instance of the demo's service. For SECONDS it

- samples resources with a ResourceMonitor whose limits are all 0, so every sample is a limit
  breach (the demo samples no resources);
- exports traces and metrics over OTLP to a loopback port where nothing listens, so every export
  fails (``amqadf.agent.export.failures``, ``amqadf.agent.telemetry.dropped``);
- keeps a span queue of 4 and starts bursts of spans, so the batch span processor drops spans
  because its queue is full (``otel.sdk.processor.span.processed`` with ``error.type=queue_full``);
- asks a rate limiter whose RedisStore points at the same dead port, so every decision falls back
  to local state (``amqadf.state_store.fallbacks``).

The dead port is a socket bound here and never listened on: a connection to it is refused at
once, and no other process can take the port while this one runs.
"""

from __future__ import annotations

import socket
import sys
import time

import amqadf_agent
from amqadf_agent.monitoring.resources import ResourceMonitor
from amqadf_agent.resilience.rate_limit import RateLimiter
from amqadf_agent.resilience.stores import RedisStore

#: The demo's service name: both processes are instances of one service (one Prometheus job).
SERVICE = "amqadf-demo-shop"
#: Span queue capacity; a burst of SPANS_PER_TICK spans overflows it while the exporter is failing.
QUEUE = 4
SPANS_PER_TICK = 40


def main(seconds: float) -> None:
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = dead.getsockname()[1]

    agent = amqadf_agent.start(
        service_name=SERVICE,
        exporters=["prometheus", "otlp"],
        otlp_protocol="http/protobuf",
        otlp_endpoint=f"http://127.0.0.1:{port}",
        otlp_timeout=1.0,
        max_queue_size=QUEUE,
        span_export_delay=0.2,
        metric_interval=1.0,
        shutdown_timeout=1.0,
    )
    assert agent.running, agent.error
    monitor = ResourceMonitor(update_interval=1.0)
    monitor.instrument()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, retry_interval=1.0)
    limiter = RateLimiter(1000, name="dashboard-companion", store=store)
    limiter.instrument()
    tracer = agent.tracer_provider.get_tracer("dashboard-companion")

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # thresholds of 0: every sample breaches, so the limit-breach panels have data
        monitor.check_resource_limits(cpu_threshold=0.0, memory_threshold=0.0, disk_threshold=0.0)
        for _ in range(SPANS_PER_TICK):
            with tracer.start_as_current_span("companion.burst"):
                pass
        for _ in range(5):
            limiter.try_acquire()
        time.sleep(1.0)
    agent.shutdown()
    store.close()
    dead.close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
