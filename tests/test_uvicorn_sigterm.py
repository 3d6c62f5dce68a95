"""uvicorn stopped by SIGTERM (a deploy, Kubernetes): the agent's last export is not lost.

uvicorn shuts down gracefully, then raises the SIGTERM it caught again with the default
disposition: the process dies of it and ``atexit`` never runs. Without ``runtime.server_signals``
every metric of the server process (and of each ``--workers`` child) was lost at each stop.
Real uvicorn, started as a user starts it under ``amqadf-agent run``, on a loopback port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import free_port

from amqadf_agent.analyzer.model import MetricRecord, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read

VENV_BIN = Path(sys.executable).parent
APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
def ping() -> dict[str, str]:
    return {"ping": "pong"}
"""


def _serve_then_stop(tmp_path: Path, workers: int) -> tuple[int, Path, list[int]]:
    """The server's exit status, its telemetry directory, and the pids that served."""
    (tmp_path / "sigterm_app.py").write_text(APP)
    out, port = tmp_path / "telemetry", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    argv = [
        str(VENV_BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out),
        "--service-name", "api", "--",
        sys.executable, "-m", "uvicorn", "sigterm_app:app", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(re.findall(r"Application startup complete", log.read_text())) < workers:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as answer:
                assert answer.status == 200
        proc.send_signal(signal.SIGTERM)  # at once: nothing was exported by the metric interval yet
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    served = sorted({int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log.read_text())})
    return status, out, served


@pytest.mark.parametrize("workers", [1, 2])
def test_the_servers_metrics_are_exported_when_sigterm_stops_it(tmp_path: Path, workers: int) -> None:
    status, out, served = _serve_then_stop(tmp_path, workers)
    # a single server dies of the signal it raised again, as uvicorn means it to; a supervisor exits
    assert status == (-signal.SIGTERM if workers == 1 else 0)
    assert len(served) == workers
    spans = [r for r in read(out / "traces.jsonl", strict=True) if isinstance(r, SpanRecord)]
    assert {s.resource["process.pid"] for s in spans if s.name == "GET /ping"} <= set(served)
    metrics = [r for r in read(out / "metrics.jsonl", strict=True) if isinstance(r, MetricRecord)]
    reporting = {r.resource["process.pid"] for r in metrics}
    assert set(served) <= reporting  # each server process exported its metrics before it died
