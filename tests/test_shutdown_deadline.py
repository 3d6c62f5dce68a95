"""Shutdown keeps its deadline with a black-holed collector: one that accepts and never answers.

The deadline is the whole shutdown: ``shutdown()`` returns by then, and nothing of the agent is
still sending afterwards (what is left is dropped and counted), so the exit that follows is the
interpreter's own. Timings are generous (a 1 s deadline, 2 s allowed): the machine is shared.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

DEADLINE = 1.0
SPANS = 2000  # fewer than the queue holds (2048): none is refused by a full queue

APP = """
import json, logging, sys, threading, time
import amqadf_agent

agent = amqadf_agent.start(exporters=["otlp"], service_name="black-hole", capture_logs=True)
tracer = agent.tracer("app")
for i in range(%(spans)d):
    with tracer.start_as_current_span("work"):
        pass
agent.meter("app").create_counter("requests").add(1)
logging.getLogger("app").warning("one record")
started = time.monotonic()
finished = agent.shutdown()
took = time.monotonic() - started

def sending():
    prefixes = ("Otel", "amqadf-agent")
    return sorted(t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(prefixes))

# What still runs a moment after shutdown() returned (a gRPC call cut at the deadline ends at once).
until = time.monotonic() + 1.0
while sending() and time.monotonic() < until:
    time.sleep(0.05)
dropped = {"/".join(k): v for k, v in agent.stats.snapshot()[1].items()}
print(json.dumps({"finished": finished, "took": took, "still_running": sending(), "dropped": dropped}))
"""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback collector that accepts every connection and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def _run(endpoint: str, protocol: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        AMQADF_SHUTDOWN_TIMEOUT=str(DEADLINE),
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
    )
    proc = subprocess.run(
        [sys.executable, "-c", APP % {"spans": SPANS}], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_shutdown_returns_by_the_deadline(black_hole: str, protocol: str) -> None:
    result = _run(black_hole, protocol)
    assert result["finished"] is False  # the collector never answered
    took = result["took"]
    assert isinstance(took, float) and took < 2 * DEADLINE, result


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_nothing_of_the_agent_runs_on_after_the_deadline_and_what_it_dropped_is_counted(
    black_hole: str, protocol: str
) -> None:
    # The call or request in flight is ended at the deadline, not left to its own timeout (10 s).
    result = _run(black_hole, protocol)
    assert result["still_running"] == [], result
    # Every span is accounted for: what was queued at the deadline was dropped and counted, not
    # left for a thread to try after the application was told that shutdown was over.
    dropped = result["dropped"]
    assert isinstance(dropped, dict)
    assert sum(n for key, n in dropped.items() if key.startswith("traces/")) == SPANS, result
    assert dropped.get("traces/otlp/shutdown_deadline", 0) > 0, result
    # Said once, by the shutdown, not again by each signal's exporter.
    stderr = str(result["stderr"])
    assert stderr.count("shutdown did not finish within") == 1, stderr
    assert "shutdown_deadline" not in stderr, stderr
