"""sqlite3's ``conn.execute``/``conn.executemany`` recorded by the agent (``runtime.sqlite3_shortcuts``).

The sqlite3 instrumentation alone traces cursors only: a query through the connection's shortcut
gives no span (open-telemetry/opentelemetry-python-contrib#3082). With the agent, each gives one span,
the cursor path still one, results unchanged; under the zero-code start, an N+1 written with
``conn.execute`` (the Flask tutorial's style) is found by the analyzer.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from amqadf_agent.analyzer.run import AnalysisOptions, analyze
from amqadf_agent.runtime import sqlite3_shortcuts

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def instrumented() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    SQLite3Instrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        SQLite3Instrumentor().uninstrument()
        sqlite3_shortcuts.uninstall()


def _statements(exporter: InMemorySpanExporter) -> list[str]:
    return [str((span.attributes or {}).get("db.statement")) for span in exporter.get_finished_spans()]


def test_without_the_agent_the_connection_shortcuts_give_no_span(instrumented: InMemorySpanExporter) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    db.cursor().execute("SELECT 1")
    assert _statements(instrumented) == ["SELECT 1"]  # what upstream records: the cursor's only


def test_each_shortcut_gives_one_span_and_the_same_results(instrumented: InMemorySpanExporter) -> None:
    sqlite3_shortcuts.install()
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    inserted = db.execute("INSERT INTO t (name) VALUES (?)", ("a",))
    assert isinstance(inserted, sqlite3.Cursor) and (inserted.lastrowid, inserted.rowcount) == (1, 1)
    many = db.executemany("INSERT INTO t (name) VALUES (?)", [("b",), ("c",)])
    assert many.rowcount == 2
    row = db.execute("SELECT id, name FROM t WHERE name = ?", ("c",)).fetchone()
    assert (row["id"], row["name"]) == (3, "c")  # the connection's row factory, as before
    cursor = db.cursor()
    cursor.execute("SELECT count(*) FROM t")
    assert cursor.fetchone()[0] == 3
    with pytest.raises(sqlite3.OperationalError):  # errors as sqlite3 raises them, and recorded
        db.execute("SELECT nothing FROM nowhere")
    assert _statements(instrumented) == [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO t (name) VALUES (?)",
        "INSERT INTO t (name) VALUES (?)",
        "SELECT id, name FROM t WHERE name = ?",
        "SELECT count(*) FROM t",  # a cursor's query: once, as before
        "SELECT nothing FROM nowhere",
    ]
    assert instrumented.get_finished_spans()[-1].status.is_ok is False
    with sqlite3.connect(":memory:") as inside:  # the connection as a context manager: still the proxy
        inside.execute("SELECT 2")
    assert _statements(instrumented)[-1] == "SELECT 2"


def test_an_n_plus_one_through_conn_execute_is_found_under_the_zero_code_start(tmp_path: Path) -> None:
    app = tmp_path / "tutorial_app.py"
    app.write_text(
        textwrap.dedent(
            """
            import sqlite3, time
            from opentelemetry import trace

            db = sqlite3.connect(":memory:")
            db.set_progress_handler(lambda: time.sleep(0.001) or 0, 4)  # a disk, not the page cache
            db.execute("CREATE TABLE post (id INTEGER PRIMARY KEY, author_id INTEGER)")
            db.execute("CREATE TABLE user (id INTEGER PRIMARY KEY, name TEXT)")
            db.executemany("INSERT INTO user (name) VALUES (?)", [(f"u{i}",) for i in range(20)])
            db.executemany("INSERT INTO post (author_id) VALUES (?)", [(i % 20 + 1,) for i in range(40)])
            tracer = trace.get_tracer("tutorial")
            for _ in range(3):
                with tracer.start_as_current_span("GET /", kind=trace.SpanKind.SERVER):
                    for post in db.execute("SELECT id, author_id FROM post").fetchall():
                        db.execute("SELECT name FROM user WHERE id = ?", (post[1],)).fetchone()
            """
        )
    )
    out = tmp_path / "telemetry"
    run = subprocess.run(
        [str(VENV_BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out), "--",
         sys.executable, str(app)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    found = [r for r in analyze(AnalysisOptions(paths=(out,))).recommendations if r.rule == "n_plus_one"]
    [n1] = found
    assert "FROM user WHERE id = ?" in n1.subject
    assert (n1.evidence.numbers["calls"], n1.evidence.numbers["longest_run"]) == (120, 40)
