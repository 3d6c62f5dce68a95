"""Startup cost and idle CPU of the agent, beside its peers. Prints a table; asserts nothing.

    .venv/bin/python tests/bench/bench_startup.py [--runs 15] [--idle-seconds 30] [--start-only]

Targets: ``start()`` at most 1.3x an SDK set up by hand with the same exporters;
``import amqadf_agent`` and ``amqadf-analyze --help`` under 150 ms each;
the agent's steady CPU while an app idles with default settings under 0.5% of one core.
Wall times include the interpreter's own start (the ``python -c pass`` row), as a user sees them:
with bytecode caches, as after any ``pip install`` (``PYTHONDONTWRITEBYTECODE`` is dropped, and one
unmeasured round writes the caches), not compiling every module from source at each start.
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


#: ``start()`` beside an SDK set up by hand with the same exporters (the file exporter's three,
#: guarded, batch spans, periodic metrics, batch logs): the time from the first import to a
#: configured SDK, measured inside the process, so the interpreter's own start is not in it.
START_APPS = {
    "amqadf_agent.start() defaults (file exporter)": (
        "import amqadf_agent\nagent = amqadf_agent.start(service_name='startup')\n"
    ),
    "OTel SDK by hand, same file exporters": (
        "from pathlib import Path\n"
        "from opentelemetry import trace, metrics\n"
        "from opentelemetry._logs import set_logger_provider\n"
        "from opentelemetry.sdk.resources import Resource\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader\n"
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "from opentelemetry.sdk._logs.export import BatchLogRecordProcessor\n"
        "from amqadf_agent.runtime.file_exporter import (\n"
        "    FileLogExporter, FileMetricExporter, FileSpanExporter, RotatingLineWriter)\n"
        "out = Path('telemetry'); out.mkdir(exist_ok=True)\n"
        "def writer(stem): return RotatingLineWriter(out, stem, 64 << 20, 10)\n"
        "res = Resource.create({'service.name': 'startup'})\n"
        "tp = TracerProvider(resource=res)\n"
        "tp.add_span_processor(BatchSpanProcessor(FileSpanExporter(writer('traces'))))\n"
        "trace.set_tracer_provider(tp)\n"
        "metrics.set_meter_provider(MeterProvider(resource=res, metric_readers=["
        "PeriodicExportingMetricReader(FileMetricExporter(writer('metrics')))]))\n"
        "lp = LoggerProvider(resource=res)\n"
        "lp.add_log_record_processor(BatchLogRecordProcessor(FileLogExporter(writer('logs'))))\n"
        "set_logger_provider(lp)\n"
    ),
}


def start_cost(setup: str, cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """(ms, MiB): time from before the first import to after ``setup``, and the RSS it added."""
    code = (
        "import time, resource\n"
        "t0 = time.perf_counter(); rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        + setup
        + "t1 = time.perf_counter(); rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "import os\n"
        "print((t1 - t0) * 1000, (rss1 - rss0) / 1024)\n"
        "os._exit(0)\n"  # not the exit flush: only the start is measured
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )
    ms, mib = out.stdout.strip().splitlines()[-1].split()
    return float(ms), float(mib)


def start_table(runs: int, env: dict[str, str]) -> None:
    """Ours beside the hand-built SDK, in interleaved rounds, each start in a fresh interpreter."""
    times: dict[str, list[float]] = {label: [] for label in START_APPS}
    memory: dict[str, list[float]] = {label: [] for label in START_APPS}
    with tempfile.TemporaryDirectory() as tmp:
        for setup in START_APPS.values():  # unmeasured: writes the bytecode caches
            start_cost(setup, tmp, env)
        for _ in range(runs):
            for label, setup in START_APPS.items():
                ms, mib = start_cost(setup, tmp, env)
                times[label].append(ms)
                memory[label].append(mib)
    peer = statistics.median(times["OTel SDK by hand, same file exporters"])
    print(f"start() beside an SDK set up by hand, {runs} interleaved rounds (target: at most 1.3x)")
    print(f"{'setup':55} {'min ms':>8} {'median ms':>10} {'x hand':>7} {'+RSS MiB':>9}")
    for label in START_APPS:
        median = statistics.median(times[label])
        print(
            f"{label:55} {min(times[label]):8.1f} {median:10.1f} {median / peer:7.2f}"
            f" {statistics.median(memory[label]):9.1f}"
        )
    print()


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
    parser.add_argument("--start-only", action="store_true", help="only start() beside the hand-built SDK")
    args = parser.parse_args()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AMQADF_", "OTEL_")) and k != "PYTHONDONTWRITEBYTECODE"
    }

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
    start_table(args.runs, env)
    if args.start_only:
        return
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
