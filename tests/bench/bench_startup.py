"""Startup cost and idle CPU of the agent, beside its peers. Prints a table; asserts nothing.

    .venv/bin/python tests/bench/bench_startup.py [--runs 15] [--idle-seconds 30]

Targets: ``import amqadf_agent`` and ``amqadf-analyze --help`` under 150 ms each;
the agent's steady CPU while an app idles with default settings under 0.5% of one core.
Wall times include the interpreter's own start (the ``python -c pass`` row), as a user sees them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

IDLE_APPS = {
    "python, no telemetry": "",
    "amqadf_agent.start() defaults (file exporter)": (
        "import amqadf_agent\nagent = amqadf_agent.start(service_name='idle')\n"
    ),
    "OTel SDK by hand (batch spans + periodic metrics, 60 s)": (
        "from opentelemetry import trace, metrics\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader, ConsoleMetricExporter\n"
        "import io\n"
        "sink = io.StringIO()\n"
        "tp = TracerProvider(); tp.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sink)))\n"
        "trace.set_tracer_provider(tp)\n"
        "metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader("
        "ConsoleMetricExporter(out=sink))]))\n"
    ),
}


def wall(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """(min, median) wall seconds of running argv to completion."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env, timeout=60)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def idle_cpu(setup: str, seconds: float, cwd: str, env: dict[str, str]) -> float:
    """CPU seconds the process used while idling ``seconds`` after ``setup``."""
    code = (
        setup + "import os, time\n"
        "time.sleep(1.0)\n"  # let start-up work (first exports, thread starts) finish
        "t = os.times(); before = t.user + t.system\n"
        f"time.sleep({seconds})\n"
        "t = os.times(); print(t.user + t.system - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=seconds + 60,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}

    rows = [
        ("python -c pass (interpreter start)", [sys.executable, "-c", "pass"]),
        ("python -c 'import amqadf_agent'", [sys.executable, "-c", "import amqadf_agent"]),
        (
            "python -c 'import opentelemetry.sdk.trace' (peer)",
            [sys.executable, "-c", "import opentelemetry.sdk.trace"],
        ),
        ("amqadf-analyze --help", [str(BIN / "amqadf-analyze"), "--help"]),
        ("opentelemetry-instrument --help (peer)", [str(BIN / "opentelemetry-instrument"), "--help"]),
    ]
    print(f"Start-up wall time, {args.runs} runs each (2-core machine; lower is better)")
    print(f"{'command':55} {'min ms':>8} {'median ms':>10}")
    for label, argv in rows:
        best, median = wall(argv, args.runs, env)
        print(f"{label:55} {best * 1000:8.1f} {median * 1000:10.1f}")

    print(f"\nCPU while the app idles for {args.idle_seconds:g} s (share of one core; lower is better)")
    print(f"{'setup':55} {'cpu s':>8} {'% core':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, setup in IDLE_APPS.items():
            used = idle_cpu(setup, args.idle_seconds, tmp, env)
            print(f"{label:55} {used:8.3f} {100 * used / args.idle_seconds:9.3f}%")


if __name__ == "__main__":
    main()
