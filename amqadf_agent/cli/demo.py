"""``amqadf-agent demo``: run the built-in shop service under the agent and write its telemetry.

It ends by printing the command that analyses what it wrote.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.runtime.settings import EXPORTERS


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="run a built-in service workload instrumented by the agent",
        description=(
            "Serve simulated requests from worker threads: SQLite queries (with a planted N+1 and a slow "
            "query), a cache, a flaky downstream dependency; all of it exported by the agent."
        ),
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, metavar="SECONDS", help="how long (default 30)"
    )
    parser.add_argument(
        "--out", default="telemetry", metavar="DIR", help="output directory (default ./telemetry)"
    )
    parser.add_argument(
        "--exporter",
        action="append",
        choices=EXPORTERS,
        help="where telemetry goes (repeat for several; default: file)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second offered (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads serving requests (default 4)")
    parser.add_argument(
        "--metric-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="metric export interval (default 2)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share the breaker and the rate limiter through this Redis, cache availability answers in it "
        "and report its INFO as cache metrics (needs the `redis` extra)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a ProductionConfig file (YAML/JSON/TOML) for the agent's settings; the demo's own options win. "
        "If its secret providers have `inventory_api_key`, the demo sends it to the inventory service",
    )
    parser.set_defaults(execute=execute)


def _load_config(path: str) -> tuple[Any, Any]:
    """The configuration and the inventory key from it (None when its providers do not have one)."""
    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.errors import SecretNotFoundError

    config = ProductionConfig.load(file=path)  # ConfigFileError: one line from the CLI
    valid, errors = config.validate()
    if not valid:
        raise ConfigError("--config", f"{path} is invalid: " + "; ".join(errors))
    try:
        return config, config.get_secret("inventory_api_key")
    except SecretNotFoundError:
        return config, None


def execute(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    out = stream or sys.stderr
    for name in ("duration", "rate", "workers", "metric_interval"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}", f"must be positive, got {getattr(args, name)}")
    try:
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    except ImportError as exc:
        raise MissingExtraError("the demo", "demo", "opentelemetry-instrumentation-sqlite3") from exc

    import amqadf_agent
    from amqadf_agent.demo.service import ShopService, create_database

    if args.redis:
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("the demo's --redis", "redis", "redis") from exc
    config, inventory_key = _load_config(args.config) if args.config else (None, None)
    out_dir = Path(args.out)
    if out_dir.is_dir() and any(out_dir.glob("*.jsonl")):
        print(
            f"note: {out_dir}/ already holds telemetry; this run adds to it (remove it for a clean analysis)",
            file=out,
        )

    with tempfile.TemporaryDirectory(prefix="amqadf-demo-") as tmp:
        db_path = Path(tmp) / "shop.db"
        print("seeding the shop database ...", file=out)
        create_database(db_path)

        own = config is None  # with --config, the file says which version and environment this is
        agent = amqadf_agent.start(
            config,
            service_name="amqadf-demo-shop",
            exporters=args.exporter or ["file"],
            output_dir=str(out_dir),
            metric_interval=args.metric_interval,
            span_export_delay=1.0,
            max_queue_size=16384,
            capture_logs=True,
            service_version=amqadf_agent.__version__ if own else None,
            environment="demo" if own else None,
        )
        if not agent.running:
            print(f"amqadf-agent demo: the agent did not start ({agent.error})", file=out)
            return 1
        instrumentor = SQLite3Instrumentor()
        instrumentor.instrument()
        service = ShopService(
            db_path, workers=args.workers, inventory_key=inventory_key, redis_url=args.redis
        )
        if inventory_key is not None:
            print(f"inventory key: {inventory_key} (from the providers of {args.config})", file=out)
        tty = out.isatty()
        print(
            f"serving ~{args.rate:g} requests/s on {args.workers} workers for {args.duration:g}s "
            f"(exporters: {', '.join(agent.settings.exporters)})",
            file=out,
        )

        def tick(elapsed: float) -> None:
            p = service.progress
            line = (
                f"  {elapsed:5.0f}s  requests {p.requests:6d}  errors {p.errors:5d}  "
                f"p95 {p.p95() * 1000:7.1f} ms  queued {service.pool.stats().queued:3d}  "
                f"instances {service.instances:2d}  inventory up {len(service.inventory.healthy_workers)}/3"
            )
            if tty:
                print("\r" + line, end="", file=out, flush=True)
            elif int(elapsed) % 5 == 0:
                print(line, file=out, flush=True)

        started = time.monotonic()
        try:
            service.run(args.duration, args.rate, on_tick=tick)
        finally:
            service.close()
            instrumentor.uninstrument()
            if tty:
                print(file=out)
            flushed = agent.shutdown()
        p = service.progress
        print(
            f"done in {time.monotonic() - started:.1f}s: {p.requests} requests, {p.errors} errors, "
            f"p95 {p.p95() * 1000:.1f} ms" + ("" if flushed else " (the last export did not finish in time)"),
            file=out,
        )
        if agent.output_dir is not None:
            files = sorted(agent.output_dir.glob("*.jsonl"))
            sizes = ", ".join(f"{f.name} {f.stat().st_size / 1024:.0f} KiB" for f in files)
            print(f"telemetry written to {agent.output_dir}/: {sizes}", file=out)
            print(f"\nnext: amqadf-analyze {agent.output_dir}", file=sys.stdout)
    return 0
