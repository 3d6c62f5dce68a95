"""Per request: the agent beside plain OpenTelemetry, on a real server under load. Prints a table.

    .venv/bin/python tests/bench/bench_web.py [--rounds 3] [--seconds 8] [--connections 8]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). The application (tests/bench/web_app.py: Flask,
``/`` and ``/db`` with five SQLite queries) runs on gunicorn, 1 worker x 4 threads, on loopback,
started in each of these ways:

* ``none``: no instrumentation;
* ``plain otlp``: ``opentelemetry-instrument`` with ``opentelemetry-distro`` (its distro and
  configurator: the SDK as upstream sets it up), OTLP/HTTP (protobuf) traces and metrics to a sink
  on loopback that answers 200 and keeps nothing;
* ``plain file``: the same with the upstream OTLP JSON file exporter (``otlp_json_file``, to stdout
  sent to a file);
* ``amqadf otlp`` / ``amqadf file``: ``amqadf-agent run --exporter otlp|file``;
* ``amqadf json``: the same over OTLP/HTTP with JSON bodies (``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``),
  compared with ``plain otlp``.

With ``--baseline DIR`` (a copy of another version's package: the directory that holds its
``amqadf_agent/``), the ``base otlp`` / ``base json`` / ``base file`` rows run that version (put first
on ``PYTHONPATH``) beside this one in the same rounds, for a before/after comparison.

Each round starts every configuration in turn (interleaved, so a machine that gets busier slows all
of them alike), waits until it answers, warms it for 2 s, then runs ``wrk`` for ``--seconds``. CPU
per request is the server's (master and worker, user + system, from /proc) over the requests wrk
made; p50/p99 are wrk's. Figures are medians over the rounds; ``cpu vs plain`` compares a row with
the plain row of the same exporter kind. Targets: CPU per request at most 0.8x plain, p99 no worse.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")
CONFIGS = ("none", "plain otlp", "amqadf otlp", "amqadf json", "plain file", "amqadf file")
BASE = ("base otlp", "base json", "base file")
ENDPOINTS = ("/", "/db")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that keeps nothing (an empty protobuf answer is a full success)."""

    #: Bytes received per path, to check that a configuration exported at all.
    received: dict[str, int] = {}

    def do_POST(self) -> None:
        size = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.received[self.path] = self.received.get(self.path, 0) + size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _sink() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


def _command(
    config: str, port: int, sink: int, work: Path, baseline: str | None = None
) -> tuple[list[str], dict[str, str]]:
    gunicorn = [
        str(BIN / "gunicorn"),
        "-k",
        "gthread",
        "-w",
        "1",
        "--threads",
        "4",
        "-b",
        f"127.0.0.1:{port}",
    ]
    gunicorn += ["--chdir", str(HERE), "--log-level", "warning", "web_app:app"]
    env = {**os.environ, "WEB_BENCH_DB": str(work / "web.db"), "OTEL_SERVICE_NAME": "web-bench"}
    for key in [k for k in env if k.startswith(("OTEL_", "AMQADF_"))]:
        if key != "OTEL_SERVICE_NAME":
            del env[key]
    env["OTEL_SERVICE_NAME"] = "web-bench"
    endpoint = f"http://127.0.0.1:{sink}"
    if config == "none":
        return gunicorn, env
    if config.startswith("plain"):
        kind = "otlp_proto_http" if config.endswith("otlp") else "otlp_json_file"
        env.update(
            OTEL_PYTHON_DISTRO="distro",  # opentelemetry-distro's: not ours, which is installed too
            OTEL_PYTHON_CONFIGURATOR="configurator",
            OTEL_TRACES_EXPORTER=kind,
            OTEL_METRICS_EXPORTER=kind,
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        return [str(BIN / "opentelemetry-instrument"), *gunicorn], env
    kind = config.split()[1]
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    if config.startswith("base"):
        if not baseline:
            raise ValueError(f"{config}: needs --baseline")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (baseline, env.get("PYTHONPATH", "")) if p)
    if kind == "json":
        kind, env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "otlp", "http/json"
    agent = [str(BIN / "amqadf-agent"), "run", "--exporter", kind, "--out", str(work / "telemetry"), "--"]
    return [*agent, *gunicorn], env


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children, from /proc."""
    total = 0.0
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    pids.extend(int(c) for c in (task / "children").read_text().split())
    return total


def _wait_ready(port: int, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not answer within {deadline_s:.0f} s")


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_SCALE = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, seconds: float, connections: int) -> tuple[int, float, float, float]:
    """(requests, req/s, p50 ms, p99 ms) of one wrk run."""
    done = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {m[0]: float(m[1]) * _SCALE[m[2]] for m in _LATENCY.findall(out)}
    return requests, rate, latency["50"], latency["99"]


def _measure(
    config: str, path: str, args: argparse.Namespace, sink: int
) -> tuple[float, float, float, float]:
    """(req/s, p50 ms, p99 ms, CPU ms per request) of one configuration on one endpoint."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        argv, env = _command(config, port, sink, work, args.baseline)
        with open(work / "server.out", "wb") as out:
            server = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                _wait_ready(port)
                url = f"http://127.0.0.1:{port}{path}"
                _wrk(url, 2, args.connections)  # warm up
                before = _tree_cpu(server.pid)
                sent_before = _Sink.received.get("/v1/traces", 0)
                requests, rate, p50, p99 = _wrk(url, args.seconds, args.connections)
                cpu = _tree_cpu(server.pid) - before
                time.sleep(6)  # a schedule delay: what the run made is exported
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
        exported = _Sink.received.get("/v1/traces", 0) - sent_before
        if config.endswith("file"):
            exported = sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and p.name != "web.db")
        if config != "none" and exported == 0:
            raise RuntimeError(f"{config}: no telemetry came out (see its output in {work})")
    return rate, p50, p99, cpu * 1000 / max(requests, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS + BASE)
    )
    parser.add_argument("--baseline", metavar="DIR", help="another version's package, for the base rows")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_web: wrk is not installed (apt-get install -y wrk)")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    with _sink() as sink:
        for round_ in range(args.rounds):
            for path in ENDPOINTS:
                for config in configs:
                    measured = _measure(config, path, args, sink)
                    results.setdefault((path, config), []).append(measured)
                    print(f"  {path} {config}: " + " ".join(f"{v:.3f}" for v in measured), file=sys.stderr)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\n{args.rounds} rounds of {args.seconds:g} s, wrk -c {args.connections}; medians\n")
    header = f"{'endpoint':<9}{'configuration':<14}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"
    print(header + f"{'cpu vs plain':>14}")
    print("-" * (len(header) + 14))
    for path in ENDPOINTS:
        medians = {
            config: tuple(statistics.median(r[i] for r in results[(path, config)]) for i in range(4))
            for config in configs
        }
        for config in configs:
            rate, p50, p99, cpu = medians[config]
            kind = "otlp" if config.endswith("json") else config.split()[-1]
            plain = medians.get("plain " + kind) if config.startswith(("amqadf", "base")) else None
            versus = f"{cpu / plain[3]:.2f}x" if plain and plain[3] > 0 else ""
            print(f"{path:<9}{config:<14}{rate:>8.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>12.3f}{versus:>14}")


if __name__ == "__main__":
    main()
