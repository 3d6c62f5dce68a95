"""Per request in one process: where the CPU of an instrumented request goes. Prints a table.

    .venv/bin/python tests/bench/bench_request_path.py [--rounds 3] [--requests 1000] [--profile]

The web bench's application (tests/bench/web_app.py) driven by Flask's test client, in a child
process started as the web bench starts its server: ``none`` (no instrumentation), ``plain otlp``
(``opentelemetry-instrument`` with opentelemetry-distro, OTLP/HTTP to a sink that keeps nothing),
``amqadf otlp`` / ``amqadf json`` / ``amqadf file`` (``amqadf-agent run``). No server and no load
generator share the CPU, so the figures move less than the web bench's; they count the whole
process (the request thread and the batch processor's export thread alike), per request, over the
last ``--requests`` of each run (after as many warm-up requests).

With ``--profile``, each instrumented configuration is run once more under ``cProfile`` (the
request thread only) and the functions that cost most, by own time, are printed per package:
the agent's, the SDK's, the instrumentations', Flask's, the rest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench_web import _command, _sink  # noqa: E402  (the web bench's configurations, unchanged)

CONFIGS = ("none", "plain otlp", "amqadf otlp", "amqadf json", "amqadf file")
ENDPOINTS = ("/", "/db")


def _child(path: str, requests: int, profile: bool) -> None:
    """Run in the configured process: warm up, then time ``requests`` requests of ``path``."""
    sys.path.insert(0, str(HERE))
    from web_app import app

    client = app.test_client()
    for _ in range(requests):
        client.get(path)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu, thread = time.process_time(), time.thread_time()
    for _ in range(requests):
        client.get(path)
    cpu, thread = time.process_time() - cpu, time.thread_time() - thread
    if profiler is not None:
        profiler.disable()
        _report(profiler, requests)
    print(f"RESULT {cpu * 1e6 / requests:.1f} {thread * 1e6 / requests:.1f}", flush=True)


def _group(filename: str) -> str:
    if "amqadf_agent" in filename:
        return "agent"
    for part, name in (
        ("opentelemetry/sdk", "sdk"),
        ("opentelemetry/instrumentation", "instrumentation"),
        ("opentelemetry/util", "instrumentation"),
        ("opentelemetry/semconv", "instrumentation"),
        ("opentelemetry", "api"),
        ("flask", "flask"),
        ("werkzeug", "flask"),
    ):
        if part in filename:
            return name
    return "other"


def _report(profiler: object, requests: int) -> None:
    import pstats

    stats = pstats.Stats(profiler)  # type: ignore[arg-type]
    rows = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in rows.items():
        group = _group(filename)
        groups[group] = groups.get(group, 0.0) + tottime
        functions.append((tottime, group, f"{Path(filename).name}:{line}({name})", _nc))
    total = sum(groups.values())
    print(f"PROFILE own time per request, request thread, {total * 1e6 / requests:.0f} µs profiled:")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"PROFILE   {group:<16}{seconds * 1e6 / requests:8.1f} µs  {seconds / total:6.1%}")
    for tottime, group, name, calls in sorted(functions, reverse=True)[:45]:
        print(
            f"PROFILE     {tottime * 1e6 / requests:7.2f} µs  {calls / requests:5.1f}/req  {group:<16}{name}"
        )


def _run(config: str, path: str, requests: int, sink: int, profile: bool) -> tuple[float, float]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        argv, env = _command(config, 0, sink, Path(tmp))
        python = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--requests", str(requests)]
        if profile:
            python.append("--profile")
        command = (
            python
            if config == "none"
            else [*argv[: argv.index(str(Path(sys.executable).parent / "gunicorn"))], *python]
        )
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{config}: {done.stderr[-2000:]}")
    result = None
    for line in done.stdout.splitlines():
        if line.startswith("PROFILE"):
            print(line[8:])
        elif line.startswith("RESULT"):
            _, cpu, thread = line.split()
            result = (float(cpu), float(thread))
    if result is None:
        raise RuntimeError(f"{config}: no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.profile)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with _sink() as sink:
        if args.profile:
            for path in endpoints:
                for config in configs:
                    if config != "none":
                        print(f"\n== {config} {path}")
                        _run(config, path, args.requests, sink, True)
        for _ in range(args.rounds):
            for path in endpoints:
                for config in configs:
                    results.setdefault((path, config), []).append(
                        _run(config, path, args.requests, sink, False)
                    )
    print(f"\n{args.rounds} rounds of {args.requests} requests (Flask test client, one process); medians\n")
    print(f"{'endpoint':<9}{'configuration':<14}{'µs CPU/req':>12}{'request thread':>16}{'vs plain':>10}")
    for path in endpoints:
        medians = {
            c: tuple(statistics.median(r[i] for r in results[(path, c)]) for i in range(2)) for c in configs
        }
        plain = medians.get("plain otlp")
        for config in configs:
            cpu, thread = medians[config]
            versus = f"{cpu / plain[0]:.2f}x" if plain and config.startswith("amqadf") else ""
            print(f"{path:<9}{config:<14}{cpu:>12.1f}{thread:>16.1f}{versus:>10}")


if __name__ == "__main__":
    main()
