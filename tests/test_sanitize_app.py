"""A real Flask app with sqlite3 and requests, under the agent: planted secrets never reach a file.

The app writes SQL with literals (an e-mail address, a card number), calls a URL with a signed query
string and is itself called with a token in its query. With the agent's defaults none of these
values is in any exported file, the analyzer still finds the N+1, the slow query and the identical
repeats from the sanitized text (the same findings as from the raw text), and the app's own log
lines carry the trace id of the request's span, which the exported trace and the report both show.
The off switch exports the raw text.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import amqadf_agent
from amqadf_agent.redaction import REDACTED

flask = pytest.importorskip("flask")
requests = pytest.importorskip("requests")
FlaskInstrumentor = pytest.importorskip("opentelemetry.instrumentation.flask").FlaskInstrumentor
RequestsInstrumentor = pytest.importorskip("opentelemetry.instrumentation.requests").RequestsInstrumentor
SQLite3Instrumentor = pytest.importorskip("opentelemetry.instrumentation.sqlite3").SQLite3Instrumentor

EMAIL = "ann.secret@example.com"
CARD = "4111111111111111"
SIGNATURE = "deadbeefcafe0123signature"
CREDENTIAL = "AKIAPLANTEDCREDENTIAL"
TOKEN = "tok-planted-7781"
SECRETS = (EMAIL, CARD, SIGNATURE, CREDENTIAL, TOKEN)
#: What the analyzer finds in the app's telemetry, sanitized or not: (rule, statement).
FINDINGS = {
    ("n_plus_one", "SELECT id, card FROM customers WHERE PAUSE(?) = ? AND id = ?"),
    ("slow_query", "SELECT COUNT(*) FROM customers WHERE card = ? AND PAUSE(?) = ?"),
    ("index_candidate", "SELECT COUNT(*) FROM customers WHERE card = ? AND PAUSE(?) = ?"),
    ("repeated_identical", "SELECT card FROM customers WHERE email = ? AND id = ?"),
}


class _Storage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def storage() -> Iterator[str]:
    """A local HTTP server standing in for an object store that takes signed URLs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _pause(ms: int) -> int:
    time.sleep(ms / 1000)
    return 0


def _app(storage: str) -> Any:
    app = flask.Flask("shop")
    log = logging.getLogger("shop.orders")

    @app.get("/orders/<int:customer>")
    def orders(customer: int) -> dict[str, Any]:
        log.warning("loading orders of customer %d", customer)
        conn = sqlite3.connect(":memory:")
        conn.create_function("pause", 1, _pause)
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE customers (id INTEGER, email TEXT, card TEXT)")
        cursor.execute(f"INSERT INTO customers (id, email, card) VALUES ({customer}, '{EMAIL}', '{CARD}')")
        cursor.execute(f"SELECT id FROM customers WHERE email = '{EMAIL}'")
        for order in range(6):  # N+1: one query per order, ~12 ms each
            cursor.execute(f"SELECT id, card FROM customers WHERE pause(12) = 0 AND id = {order}")
        for _ in range(3):  # the same query and values three times: a cache candidate
            cursor.execute(f"SELECT card FROM customers WHERE email = '{EMAIL}' AND id = {customer}")
        cursor.execute(f"SELECT COUNT(*) FROM customers WHERE card = '{CARD}' AND pause(520) = 0")  # slow
        conn.close()
        url = f"{storage}/receipts/{customer}.pdf?X-Amz-Credential={CREDENTIAL}&X-Amz-Signature={SIGNATURE}"
        requests.get(url, timeout=5)
        return {"ok": True}

    return app


def _run(tmp_path: Path, storage: str, **settings: Any) -> tuple[Path, str]:
    """Start the agent, serve one request, stop; the output directory and the app's log lines."""
    out = tmp_path / "telemetry"
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=out, service_name="shop", resource_monitor=False, **settings
    )
    assert agent.running, agent.error
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)  # the app's own logging, default format
    root = logging.getLogger()
    root.addHandler(handler)
    app = _app(storage)
    FlaskInstrumentor().instrument_app(app)
    SQLite3Instrumentor().instrument()
    RequestsInstrumentor().instrument()
    try:
        response = app.test_client().get(f"/orders/7?token={TOKEN}")
        assert response.status_code == 200
    finally:
        RequestsInstrumentor().uninstrument()
        SQLite3Instrumentor().uninstrument()
        FlaskInstrumentor().uninstrument_app(app)
        root.removeHandler(handler)
        assert agent.shutdown()
    return out, lines.getvalue()


def _spans(out: Path) -> list[dict[str, Any]]:
    found = []
    for line in (out / "traces.jsonl").read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                found.extend(ss["spans"])
    return found


def _exported_bytes(out: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file())


def _report(out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from amqadf_agent.cli.analyze import main as analyze

    capsys.readouterr()
    assert analyze([str(out), "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _findings(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["rule"], r["subject"]) for r in report["recommendations"] if r["category"] == "database"}


def test_planted_values_never_reach_an_exported_file_and_the_findings_stand(
    tmp_path: Path, storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, log_lines = _run(tmp_path / "private", storage)
    exported = _exported_bytes(out)
    assert exported
    for secret in SECRETS:
        assert secret.encode() not in exported, secret
    spans = _spans(out)
    statements = [
        a["value"]["stringValue"]
        for s in spans
        for a in s["attributes"]
        if a["key"] in ("db.statement", "db.query.text")
    ]
    assert "SELECT id FROM customers WHERE email = ?" in statements
    urls = [
        a["value"]["stringValue"]
        for s in spans
        for a in s["attributes"]
        if a["key"] in ("url.full", "http.url", "http.target", "url.query")
    ]
    assert any(f"X-Amz-Signature={REDACTED}" in url for url in urls), urls  # the name is kept
    assert any(f"token={REDACTED}" in url for url in urls), urls
    report = _report(out, capsys)
    assert _findings(report) == FINDINGS
    for secret in SECRETS:
        assert secret not in json.dumps(report)

    # The app's log line carries the trace id of the request's span; the trace and the report show it.
    (server,) = [s for s in spans if s["kind"] in (2, "SPAN_KIND_SERVER")]
    trace_id = server["traceId"].lower()
    (line,) = [line for line in log_lines.splitlines() if "loading orders" in line]
    assert line.startswith(f"[trace_id={trace_id} span_id={server['spanId'].lower()}] ")
    (n_plus_one,) = [r for r in report["recommendations"] if r["rule"] == "n_plus_one"]
    assert trace_id in n_plus_one["evidence"]["trace_ids"]


def test_the_off_switch_exports_the_raw_text_and_the_same_findings(
    tmp_path: Path, storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _run(tmp_path, storage, sanitize=False)
    raw = _exported_bytes(out)
    assert EMAIL.encode() in raw
    assert SIGNATURE.encode() in raw
    assert _findings(_report(out, capsys)) == FINDINGS


def test_under_the_zero_code_start_too(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="private-app", AMQADF_RESOURCE_MONITOR="false")
    app = Path(__file__).resolve().parent / "apps" / "private_app.py"
    proc = subprocess.run(
        [sys.executable, str(app)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    assert printed[-1] == "app finished", proc.stdout
    trace_id = printed[-2].removeprefix("trace_id=")
    assert f"INFO:private_app:[trace_id={trace_id} span_id=" in proc.stderr, proc.stderr
    exported = _exported_bytes(out)
    assert b"INSERT INTO customers (email) VALUES (?)" in exported
    assert EMAIL.encode() not in exported
