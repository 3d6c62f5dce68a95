"""Soak: what an application pays, and what the agent keeps, with its OTLP collector up, gone, or silent.

Three runs of the same application, each in a process of its own: the collector answers (a
local OTLP/HTTP receiver that counts the spans it gets), its port is closed (connection refused
at once), or it is black-holed (the port listens but never accepts: every request waits for the
exporter's timeout). Each run makes spans at a steady rate for minutes and reports the cost of a
span as the application sees it (p50/p99 of every span's start-to-end, in µs), the RSS every
10 s (does it level off?), how every span ended (received by the collector, or counted as
dropped by the agent or by the SDK's bounded queue; what was queued or in flight at the shutdown
deadline is counted as dropped by then, so "unaccounted" should read 0) and the time
``shutdown()`` took against its deadline. Not part of the test suite (it runs for minutes):

    python tests/bench/soak_collector.py [seconds per run] [spans per second] [up,closed,black-holed]

It prints one JSON line per sample and per run, and a Markdown table at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import dropped_spans, free_port
from support.soak import cost_buckets, count_queue_drops, percentile, rss_mb, timed_spans

SHUTDOWN_TIMEOUT = 5.0

RECEIVER = r"""
import signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

spans = 0
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global spans
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with lock:
                spans += n
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the runner closes it
print(spans, flush=True)
"""


def application(endpoint: str, seconds: float, rate: float) -> dict[str, object]:
    """The application's side of one run, in this process: spans at ``rate`` for ``seconds``."""
    queue_drops = count_queue_drops()

    import amqadf_agent

    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    agent = amqadf_agent.start(exporters=["otlp"], service_name="soak", shutdown_timeout=SHUTDOWN_TIMEOUT)
    assert agent.running, agent.error
    tracer = agent.tracer("soak")
    costs = cost_buckets()
    made = 0
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    next_sample = started
    per_tick = int(rate / 10)
    while (now := time.monotonic()) - started < seconds:
        timed_spans(tracer, per_tick, costs)
        made += per_tick
        if now >= next_sample:
            rss.append((round(now - started), round(rss_mb(), 1)))
            print(json.dumps({"t": rss[-1][0], "rss_mb": rss[-1][1], "made": made}), flush=True)
            next_sample += 10.0
        time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))
    before = time.monotonic()
    finished = agent.shutdown()
    shutdown_s = time.monotonic() - before
    exporter_drops = dropped_spans(agent)
    return {
        "made": made,
        "p50_us": round(percentile(costs, 0.50), 1),
        "p99_us": round(percentile(costs, 0.99), 1),
        "rss_mb": rss,
        "dropped_by_exporter": exporter_drops,
        "dropped_queue_full": sum(queue_drops.values()),
        "shutdown_s": round(shutdown_s, 2),
        "shutdown_finished": finished,
    }


def run(mode: str, seconds: float, rate: float) -> dict[str, object]:
    """One run in a fresh process, against a collector in the state ``mode`` names."""
    receiver = None
    hole = None
    if mode == "up":
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
    elif mode == "closed":
        port = free_port()
    else:  # black-holed: connections queue in the backlog, no request is ever read or answered
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hole.bind(("127.0.0.1", 0))
        hole.listen(4096)
        port = hole.getsockname()[1]
    child = subprocess.run(
        [sys.executable, __file__, "--app", f"http://127.0.0.1:{port}", str(seconds), str(rate)],
        capture_output=True,
        text=True,
    )
    sys.stderr.write(child.stderr[-2000:])
    lines = child.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(mode, line, flush=True)
    result: dict[str, object] = {"mode": mode, **json.loads(lines[-1])}
    received = 0
    if receiver is not None:
        out, _ = receiver.communicate("", timeout=30)
        received = int(out.strip().splitlines()[-1])
    if hole is not None:
        hole.close()
    result["received"] = received
    made = result["made"]
    assert isinstance(made, int)
    accounted = received + int(result["dropped_by_exporter"]) + int(result["dropped_queue_full"])  # type: ignore[call-overload]
    result["queued_at_deadline"] = made - accounted
    print(json.dumps(result), flush=True)
    return result


def table(results: list[dict[str, object]], seconds: float, rate: float) -> str:
    rows = [
        f"`python tests/bench/soak_collector.py {' '.join(sys.argv[1:])}` ({os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, shutdown deadline {SHUTDOWN_TIMEOUT:g} s)",
        "",
        "| collector | span p50 µs | span p99 µs | RSS MB at 10 s → mid → end | spans made | received | "
        "dropped, counted (exporter + queue full) | unaccounted when shutdown returned | shutdown s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rss = r["rss_mb"]
        assert isinstance(rss, list)
        marks = [rss[min(1, len(rss) - 1)][1], rss[len(rss) // 2][1], rss[-1][1]]
        rows.append(
            f"| {r['mode']} | {r['p50_us']} | {r['p99_us']} | {' → '.join(str(m) for m in marks)} | "
            f"{r['made']} | {r['received']} | {r['dropped_by_exporter']} + {r['dropped_queue_full']} | "
            f"{r['queued_at_deadline']} | {r['shutdown_s']} |"
        )
    return "\n".join(rows)


def main() -> None:
    if sys.argv[1:2] == ["--app"]:
        print(json.dumps(application(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))), flush=True)
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 150.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 2_000.0
    modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["up", "closed", "black-holed"]
    results = [run(mode, seconds, rate) for mode in modes]
    print(table(results, seconds, rate))


if __name__ == "__main__":
    main()
