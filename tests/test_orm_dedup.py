"""Each call counted once, on a real Flask + SQLAlchemy 2.0 ORM app under the agent, with the real
SQLAlchemy, DB-API (sqlite3, psycopg) and Flask instrumentations (tests/apps/orm_app.py): 600 lazy
loads are 600 calls, whether the agent suppresses the driver's span or the analyzer merges it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.postgres_server import PostgresServer

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read

APP = Path(__file__).resolve().parent / "apps" / "orm_app.py"
BIN = Path(sys.executable).parent
ORM = "opentelemetry.instrumentation.sqlalchemy"
LAZY_LOADS = 600  # orm_app.REQUESTS * orm_app.AUTHORS


def _run_app(tmp_path: Path, name: str, *args: str, database_url: str | None = None) -> Path:
    out = tmp_path / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env["OTEL_SERVICE_NAME"] = "orm-app"
    if database_url:
        env["DATABASE_URL"] = database_url
    argv = [str(BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out), "--", sys.executable]
    proc = subprocess.run([*argv, str(APP), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip().endswith("app finished"), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return out


def _db_scopes(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in read(out / "traces.jsonl", strict=True):
        if isinstance(record, SpanRecord) and record.kind == SPAN_KIND_CLIENT:
            counts[record.scope_name] = counts.get(record.scope_name, 0) + 1
    return counts


def _analyze(out: Path) -> dict:
    proc = subprocess.run([str(BIN / "amqadf-analyze"), str(out), "--format", "json"], capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def _lazy_load(report: dict) -> dict:
    return next(q for q in report["top_queries"] if q["statement"].startswith("SELECT books.id AS books_id"))


def test_sqlite_each_lazy_load_counted_once(tmp_path: Path) -> None:
    suppressed = _run_app(tmp_path, "agent")
    both = _run_app(tmp_path, "both", "--keep-dbapi-spans")
    # The agent keeps the ORM's span only; without it both instrumentations record each query.
    scopes = _db_scopes(suppressed)
    assert scopes.get("opentelemetry.instrumentation.sqlite3", 0) <= 2 < LAZY_LOADS <= scopes[ORM], scopes
    scopes = _db_scopes(both)
    assert scopes["opentelemetry.instrumentation.sqlite3"] >= LAZY_LOADS and scopes[ORM] >= LAZY_LOADS, scopes
    for out, merged in ((suppressed, False), (both, True)):
        report = _analyze(out)
        n1 = [r for r in report["recommendations"] if r["rule"] == "n_plus_one"]
        assert len(n1) == 1, report["recommendations"]
        numbers = n1[0]["evidence"]["numbers"]
        assert numbers["calls"] == LAZY_LOADS and numbers["longest_run"] == 30, numbers
        assert _lazy_load(report)["calls"] == LAZY_LOADS
        duplicates = report["summary"]["duplicates"]
        assert (duplicates["merged"] >= LAZY_LOADS) is merged, duplicates
        route = report["top_routes"][0]
        assert (route["method"], route["route"], route["requests"]) == ("GET", "/authors", 20)
        assert route["db_calls_per_request"] == 31  # 1 + 30, never doubled; the connects are time, not calls
        assert {"fingerprint": n1[0]["fingerprint"], "rule": "database/n_plus_one"} in route["findings"]


def test_postgres_each_lazy_load_counted_once(tmp_path: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("orm_app").replace("postgresql://", "postgresql+psycopg://", 1)
    suppressed = _run_app(tmp_path, "agent", database_url=url)
    both = _run_app(tmp_path, "both", "--keep-dbapi-spans", database_url=url)
    # the dialect's own queries on connect (version, settings) run outside any SQLAlchemy span
    assert _db_scopes(suppressed).get("opentelemetry.instrumentation.psycopg", 0) <= 5
    assert _db_scopes(both)["opentelemetry.instrumentation.psycopg"] >= LAZY_LOADS
    for out in (suppressed, both):
        assert _lazy_load(_analyze(out))["calls"] == LAZY_LOADS


@pytest.mark.parametrize("event", ["do_execute", "do_executemany", "do_execute_no_params"])
def test_the_listeners_come_and_go(event: str) -> None:
    from sqlalchemy import event as sa_event
    from sqlalchemy.engine import Dialect

    from amqadf_agent.runtime import instrumentation_dedup

    was = instrumentation_dedup.installed()
    try:
        assert instrumentation_dedup.install()
        assert any(sa_event.contains(Dialect, event, fn) for fn in instrumentation_dedup._listeners.values())
        instrumentation_dedup.uninstall()
        assert not instrumentation_dedup.installed()
        assert not any(sa_event.contains(Dialect, event, fn) for fn in (instrumentation_dedup._do_execute,))
    finally:
        if was:
            instrumentation_dedup.install()
        else:
            instrumentation_dedup.uninstall()
