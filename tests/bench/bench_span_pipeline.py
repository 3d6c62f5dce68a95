"""Per span on the application's thread: the agent's tracer provider beside plain OpenTelemetry's.

    .venv/bin/python tests/bench/bench_span_pipeline.py [--rounds 9] [--requests 2000]

A request as the web bench's ``/db`` makes it: a server span with five DB client spans under it
(each with a statement), started and ended through

* ``plain``: a ``TracerProvider`` with one ``BatchSpanProcessor`` (what opentelemetry-distro's
  configurator builds);
* ``agent``: the agent's own provider, from its default settings (the sampler, the sanitizing
  processor, the batch processor with its wakeup and self-metrics, the export guard);
* ``agent, sanitize off``: the same without the sanitizing processor.

The exporter keeps nothing, so only the application thread's work is counted (µs of this thread's
CPU per span; the runs alternate between the three, median and best of ``--rounds``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from amqadf_agent.runtime import providers
from amqadf_agent.runtime.guard import ExportStats, GuardedSpanExporter
from amqadf_agent.runtime.settings import resolve


class _Nothing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def plain() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Nothing()))
    return provider


def agent(**overrides: Any) -> TracerProvider:
    settings, _ = resolve(None, {"exporters": [], **overrides})

    class Built:
        spans = [GuardedSpanExporter(_Nothing(), "nothing", ExportStats())]

    return providers._tracer_provider(settings, set(), Resource.create({}), Built, MeterProvider())  # type: ignore[arg-type]


def requests(provider: TracerProvider, count: int) -> float:
    """µs of this thread's CPU per span, over ``count`` requests of six spans."""
    tracer = provider.get_tracer("bench")
    start = time.thread_time_ns()
    for _ in range(count):
        with tracer.start_as_current_span("GET /db", kind=SpanKind.SERVER) as server:
            server.set_attribute("http.request.method", "GET")
            server.set_attribute("http.route", "/db")
            for _ in range(5):
                with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as client:
                    client.set_attribute("db.system", "sqlite")
                    client.set_attribute("db.statement", "SELECT id, name, price FROM item WHERE id = ?")
    return (time.thread_time_ns() - start) / count / 6 / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    rows = {"plain": plain(), "agent": agent(), "agent, sanitize off": agent(sanitize=False)}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for provider in rows.values():
        requests(provider, 200)  # warm up (the sanitizer's memo too)
    for _ in range(args.rounds):
        for name, provider in rows.items():
            times[name].append(requests(provider, args.requests))
    plain_median = statistics.median(times["plain"])
    print(f"{args.rounds} rounds of {args.requests} requests of 6 spans; µs of CPU per span")
    print(f"{'provider':<22}{'median':>8}{'best':>8}{'vs plain':>10}")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:<22}{median:8.2f}{min(runs):8.2f}{median / plain_median:9.2f}x")
    for provider in rows.values():
        provider.shutdown()


if __name__ == "__main__":
    main()
