"""Soak: an application making spans for minutes while its OTLP collector is down.

Does the process's memory level off, or grow for as long as the outage lasts? The span queue is
bounded, so the Python heap should be flat; this also follows the RSS (what the operator sees),
the cost of a span, and the drops the agent counts. Not part of the test suite (it runs for
minutes): ``python tests/bench/soak_outage.py [seconds] [spans per second] [http/protobuf|grpc]``.
It prints one line per sample and a JSON summary as its last line. ``heap_mb`` is what the Python
heap holds at the sample, garbage not yet collected included (dropped spans are freed by the
cyclic collector, so it saws up and down); every sixth sample also collects first and gives
``live_heap_mb``, what is really held: flat when nothing leaks.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import amqadf_agent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import free_port
from support.soak import rss_bytes


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 300.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 5_000.0
    protocol = sys.argv[3] if len(sys.argv) > 3 else "http/protobuf"
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    tracemalloc.start()
    agent = amqadf_agent.start(exporters=["otlp"], service_name="soak", shutdown_timeout=2.0)
    tracer = agent.tracer("soak")
    samples = []
    started = time.monotonic()
    next_sample = started
    made = 0
    while (now := time.monotonic()) - started < seconds:
        batch_started = now
        for _ in range(int(rate / 10)):
            with tracer.start_as_current_span("work", attributes={"payload": "x" * 128}):
                pass
        made += int(rate / 10)
        per_span_us = (time.monotonic() - batch_started) / (rate / 10) * 1e6
        if now >= next_sample:
            assert agent.stats is not None
            dropped = sum(agent.stats.snapshot()[1].values())
            live = {}
            if len(samples) % 6 == 0:
                gc.collect()
                live = {"live_heap_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 1)}
            sample = {
                **live,
                "t": round(now - started, 1),
                "rss_mb": round(rss_bytes() / 2**20, 1),
                "heap_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 1),
                "span_us": round(per_span_us, 1),
                "made": made,
                "dropped_counted": dropped,
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            next_sample += 10.0
        time.sleep(max(0.0, 0.1 - (time.monotonic() - batch_started)))
    before = time.monotonic()
    finished = agent.shutdown()
    print(
        json.dumps(
            {
                "protocol": protocol,
                "seconds": seconds,
                "rate": rate,
                "samples": samples,
                "shutdown_seconds": round(time.monotonic() - before, 3),
                "shutdown_finished": finished,
            }
        )
    )


if __name__ == "__main__":
    main()
