"""An RQ worker under ``amqadf-agent run``: each job's spans exported before its work horse ends.

RQ's default worker forks a work horse for every job, and the horse leaves through ``os._exit`` as
soon as its job is done: without the agent's flush at the end of ``perform_job`` every span of every
job is lost. A real ``rq worker --burst`` on a real ``redis-server`` runs three jobs (tests/apps/
rq_jobs.py: a span and a sqlite3 query each); every job's spans are in the files, each horse's in
a file of its own, and a horse exports no metrics (one instance a job) and leaves no empty file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from support.redis_server import REDIS_SERVER, RedisServer

from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read

APPS = Path(__file__).resolve().parent / "apps"
VENV_BIN = Path(sys.executable).parent
JOBS = 3


def test_every_job_s_spans_are_exported_before_its_horse_ends(tmp_path: Path) -> None:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.fail(f"{REDIS_SERVER} is not installed: apt-get install -y redis-server (.ci/run does)")
    broker = RedisServer()
    broker.start()
    try:
        queue = Queue(connection=Redis(port=broker.port))
        for n in range(JOBS):
            queue.enqueue("rq_jobs.lookup", n)
        out = tmp_path / "telemetry"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
        env["PYTHONPATH"] = str(APPS)
        run = subprocess.run(
            [str(VENV_BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out),
             "--service-name", "jobs", "--",
             str(VENV_BIN / "rq"), "worker", "--burst", "--url", broker.url],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert queue.finished_job_registry.count == JOBS, run.stderr
    finally:
        broker.stop()
    horses = sorted(p for p in out.glob("traces.*.jsonl"))
    spans = [r for path in horses for r in read(path, strict=True) if isinstance(r, SpanRecord)]
    assert sorted(s.name for s in spans) == ["SELECT"] * JOBS + [f"job {n}" for n in range(JOBS)]
    assert len(horses) == JOBS  # a horse a job, each its own file
    for path in horses:  # each query under its job's span, in its horse's file
        by_name = {r.name.split()[0]: r for r in read(path) if isinstance(r, SpanRecord)}
        job, query = by_name["job"], by_name["SELECT"]
        assert query.parent_span_id == job.span_id
    # a horse exports no metrics, and leaves no empty file (the worker's own files are there)
    assert not list(out.glob("metrics.*.jsonl")) and not list(out.glob("logs.*.jsonl"))
    assert (out / "metrics.jsonl").stat().st_size > 0
