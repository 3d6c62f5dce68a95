"""End to end: a Celery worker (prefork pool, Redis broker) under ``amqadf-agent run``, its telemetry
analysed.

The worker is started as a user starts one (``amqadf-agent run -- celery -A celery_app worker --pool
prefork``: the Celery and sqlite3 instrumentations), given tasks through a real ``redis-server``,
and stopped with SIGTERM as soon as they are done (a deploy's warm shutdown). What is checked:

* nothing is lost at the stop: billiard's pool children end in ``os._exit``, so only the agent's
  receiver of Celery's ``worker_process_shutdown`` flushes their last spans and their metrics;
* a task is a request: each task name is an endpoint row, the tasks count in the scaling windows,
  and the pool's children are the serving instances (the master, which runs no task, is not);
* the N+1 of ``orders.summarize`` (written with sqlite3's ``conn.execute``) is found, on its
  task's row, and priced; ``health.ping`` is in no finding.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import json_report
from support.redis_server import REDIS_SERVER, RedisServer

from amqadf_agent.analyzer.model import SPAN_KIND_CONSUMER, MetricRecord, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.run import AnalysisOptions, analyze

APPS = Path(__file__).resolve().parent / "apps"
VENV_BIN = Path(sys.executable).parent
PINGS = 5


def _load_app() -> ModuleType:
    """tests/apps/celery_app.py in this process: its constants, its seeding, its client to send tasks."""
    spec = importlib.util.spec_from_file_location("celery_app", APPS / "celery_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


celery_app = _load_app()


@pytest.fixture(scope="module")
def worker_telemetry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The telemetry directory of a worker that ran every task and was then stopped."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.fail(f"{REDIS_SERVER} is not installed: apt-get install -y redis-server (.ci/run does)")
    work = tmp_path_factory.mktemp("celery")
    broker = RedisServer()
    broker.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
        env.update(CELERY_BROKER=broker.url, ORDERS_DB=str(work / "orders.db"), PYTHONPATH=str(APPS))
        os.environ["ORDERS_DB"] = env["ORDERS_DB"]
        celery_app.seed()
        out = work / "telemetry"
        argv = [
            str(VENV_BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out),
            "--service-name", "worker", "--",
            str(VENV_BIN / "celery"), "-A", "celery_app", "worker", "--pool", "prefork",
            "--concurrency", "2", "--loglevel", "info", "--without-heartbeat", "--without-mingle",
            "--without-gossip",
        ]  # fmt: skip
        log = work / "worker.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, env=env, cwd=work, stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_for(log, lambda text: "ready." in text, proc)
            celery_app.app.conf.broker_url = broker.url
            for order in range(1, celery_app.ORDERS + 1):
                celery_app.app.send_task("orders.summarize", args=(order,))
            for _ in range(PINGS):
                celery_app.app.send_task("health.ping")
            tasks = celery_app.ORDERS + PINGS
            _wait_for(log, lambda text: len(re.findall(r"Task \S+ succeeded", text)) >= tasks, proc)
            proc.send_signal(signal.SIGTERM)  # at once: the children's last spans are not exported yet
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        yield out
    finally:
        os.environ.pop("ORDERS_DB", None)
        broker.stop()


def _wait_for(path: Path, done: Any, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(path.read_text(errors="replace")):
            return
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.1)
    raise AssertionError(f"timed out; the worker said: {path.read_text(errors='replace')[-3000:]}")


def _records(out: Path) -> list[Any]:
    # (the master's traces file is empty: it runs no task)
    paths = [
        p
        for p in sorted(out.glob("*.jsonl"))
        if p.name.startswith(("traces", "metrics")) and p.stat().st_size
    ]
    return [record for path in paths for record in read(path, strict=True)]


def test_a_stopped_prefork_worker_loses_no_span_and_no_metric(worker_telemetry: Path) -> None:
    records = _records(worker_telemetry)
    tasks = sorted(r.name for r in records if isinstance(r, SpanRecord) and r.kind == SPAN_KIND_CONSUMER)
    assert tasks == ["run/health.ping"] * PINGS + ["run/orders.summarize"] * celery_app.ORDERS
    # each pool child exported its own metrics at its end (the metric interval had not come yet)
    children = {
        r.resource["process.pid"]
        for r in records
        if isinstance(r, SpanRecord) and r.kind == SPAN_KIND_CONSUMER
    }
    with_metrics = {r.resource.get("process.pid") for r in records if isinstance(r, MetricRecord)}
    assert children and children <= with_metrics


def test_tasks_are_requests_of_their_own_rows(worker_telemetry: Path, tmp_path: Path) -> None:
    report = json_report(worker_telemetry, tmp_path)
    rows = {row["route"]: row for row in report["top_routes"]}
    assert {route: row["requests"] for route, row in rows.items()} == {
        "run/orders.summarize": 10,
        "run/health.ping": PINGS,
    }
    summarize = rows["run/orders.summarize"]
    assert summarize["db_calls_per_request"] == 1 + celery_app.ITEMS  # the ids, then one query an item
    assert [f["rule"] for f in summarize["findings"]] == ["database/n_plus_one"]
    assert rows["run/health.ping"]["findings"] == []
    # the tasks count as requests; the master, which ran none, is no serving instance
    scaling = report["scaling"]
    assert scaling["insufficient_data"]["requests"] == celery_app.ORDERS + PINGS  # (too few to scale)
    assert max(window["current"] for window in scaling["timeline"]) == 2  # the pool's two children
    [master] = scaling["non_serving_instances"]
    assert master["service"] == "worker"


def test_the_n_plus_one_of_a_task_is_found_and_priced(worker_telemetry: Path) -> None:
    analysis = analyze(AnalysisOptions(paths=(worker_telemetry,)))
    [n1] = [r for r in analysis.recommendations if r.rule == "n_plus_one"]
    assert n1.subject.endswith("SELECT qty FROM items WHERE id = ?")
    numbers = n1.evidence.numbers
    assert (numbers["calls"], numbers["longest_run"], numbers["traces_affected"]) == (
        celery_app.ORDERS * celery_app.ITEMS,
        celery_app.ITEMS,
        celery_app.ORDERS,
    )
    estimate = next(e for e in analysis.sections["impact"]["estimates"] if e["fingerprint"] == n1.fingerprint)
    [route] = estimate["routes"]
    assert (route["route"], route["requests"]) == ("run/orders.summarize", 10)
    assert 0 < estimate["saved_ms_per_affected_request"] < route["p95_before_ms"]
