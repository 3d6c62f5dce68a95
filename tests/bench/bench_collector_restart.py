"""What a Collector restart costs the application: span timings while the real Collector is up, down
and up again, and where each span went.

    .venv/bin/python tests/bench/bench_collector_restart.py [seconds per phase] [spans/s] [grpc|http/protobuf]

Builds the project's Collector (collector-config/build.sh, cached), runs it with file-export.yaml on
loopback ports, and starts the agent in this process exporting OTLP to it. Three phases of equal
length: the Collector up, stopped, started again on the same ports. In each, the application makes
spans at a fixed rate on its own thread, timing each ``start_as_current_span`` block (what the
application pays), and the table shows the per-span time (p50, p99, max) and the spans made per
phase. After the agent's shutdown (timed: it flushes within ``shutdown_timeout``) and the
Collector's, it counts the spans of each phase that reached the Collector's file and the spans the
agent counted as dropped (``amqadf.agent.telemetry.dropped`` and queue-full drops, read from its own
file export).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.collector import CONFIG_DIR, CollectorServer, counted_losses

import amqadf_agent
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read

PHASES = ("up", "down", "up again")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 500.0
    protocol = sys.argv[3] if len(sys.argv) > 3 else "http/protobuf"
    with tempfile.TemporaryDirectory(prefix="amqadf-bench-collector-") as tmp:
        work = Path(tmp)
        collector = CollectorServer(CONFIG_DIR / "file-export.yaml", work).start()
        endpoint = collector.otlp_grpc if protocol == "grpc" else collector.otlp_http
        agent = amqadf_agent.start(
            service_name="bench-collector-restart",
            exporters=["otlp", "file"],
            output_dir=str(work / "agent"),
            otlp_protocol=protocol,
            otlp_endpoint=endpoint,
            shutdown_timeout=5.0,
            metric_interval=1.0,
        )
        tracer = agent.tracer_provider.get_tracer("bench")
        timings: dict[str, list[float]] = {phase: [] for phase in PHASES}
        made: dict[str, set[str]] = {phase: set() for phase in PHASES}
        try:
            for phase in PHASES:
                if phase == "down":
                    collector.stop()
                elif phase == "up again":
                    collector.start()
                interval, next_at = 1.0 / rate, time.monotonic()
                end = next_at + seconds
                while time.monotonic() < end:
                    started = time.perf_counter()
                    with tracer.start_as_current_span("work", attributes={"phase": phase}) as span:
                        pass
                    timings[phase].append(time.perf_counter() - started)
                    made[phase].add(format(span.get_span_context().span_id, "016x"))
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            shutdown_started = time.monotonic()
            agent.shutdown()
            shutdown_s = time.monotonic() - shutdown_started
            collector.stop()
        arrived = {r.span_id for r in read([collector.telemetry]) if isinstance(r, SpanRecord)}
        lost = counted_losses(work / "agent", "traces")
    print(
        f"{protocol}, {rate:.0f} spans/s, {seconds:.0f} s per phase; agent shutdown took {shutdown_s:.2f} s"
    )
    print(f"{'phase':<10} {'spans':>7} {'arrived':>8} {'p50 µs':>8} {'p99 µs':>8} {'max ms':>8}")
    for phase in PHASES:
        values = timings[phase]
        print(
            f"{phase:<10} {len(made[phase]):>7} {len(made[phase] & arrived):>8} "
            f"{percentile(values, 0.5) * 1e6:>8.1f} {percentile(values, 0.99) * 1e6:>8.1f} "
            f"{max(values, default=0.0) * 1e3:>8.2f}"
        )
    missing = sum(len(spans) for spans in made.values()) - len(arrived)
    print(f"missing at the Collector: {missing} spans; counted as lost by the agent: {lost}")


if __name__ == "__main__":
    main()
