"""End to end: a FastAPI app on uvicorn calling a local service with ``httpx.AsyncClient``, started as a
user starts it (``amqadf-agent run -- python -m uvicorn ...``: the FastAPI, ASGI and httpx
instrumentations), driven over HTTP, stopped with SIGINT, its telemetry analysed.

What the ASGI instrumentation adds is checked not to count: its INTERNAL ``http send`` spans under each
request are neither requests nor calls. The N+1 awaited call by call, the three independent calls one
after another and the repeated GET are found on the orders route, and listed on its endpoint row; the
N+1 issued at once with ``asyncio.gather`` on the catalog route is found too, but its calls already
overlap, so batching them saves only the time they cover beyond the longest one, not the sum of the
others, and they share the route's time once; ``/health`` (one call) gives nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import json_report

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.analyzer.run import AnalysisOptions, analyze
from amqadf_agent.cli.analyze import main

APPS = Path(__file__).resolve().parent / "apps"
APP = APPS / "fastapi_app.py"
VENV_BIN = Path(sys.executable).parent
ORDERS = "/orders/{order_id}"
ORDER_IDS = (1, 2)
CATALOG_PAGES = 2
HEALTH_CHECKS = 3
#: Calls per request: flags, 12 stock, pricing, reviews, shipping, flags again; 12 availability; a ping.
CALLS = {ORDERS: 17, "/catalog": 12, "/health": 1}


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """The first match of ``pattern`` in the file ``path`` the process writes to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text() if path.exists() else "")
        if found:
            return found.group(1)
        assert proc.poll() is None, path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}: {path.read_text()}")


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The app's telemetry directory and its local service's peer (``127.0.0.1:PORT``)."""
    work = tmp_path_factory.mktemp("fastapi")
    out = work / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env["AMQADF_CODE_LOCATION"] = "1"
    argv = [
        str(VENV_BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out),
        "--service-name", "shop", "--",
        sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(APPS),
        "--host", "127.0.0.1", "--port", "0",
    ]  # fmt: skip
    stdout, stderr = work / "stdout.txt", work / "stderr.txt"
    with stdout.open("wb") as o, stderr.open("wb") as e:
        proc = subprocess.Popen(argv, env=env, cwd=work, stdout=o, stderr=e)
    try:
        inventory = _wait_for(stdout, r"inventory port=(\d+)", proc)
        base = "http://127.0.0.1:" + _wait_for(stderr, r"Uvicorn running on http://127\.0\.0\.1:(\d+)", proc)
        paths = (
            [f"/orders/{n}" for n in ORDER_IDS] + ["/catalog"] * CATALOG_PAGES + ["/health"] * HEALTH_CHECKS
        )
        for path in paths:
            with urllib.request.urlopen(base + path, timeout=10) as answer:
                assert answer.status == 200, path
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down; the agent flushes at exit
        assert proc.wait(timeout=30) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Finished server process" in stderr.read_text()
    return out, f"127.0.0.1:{inventory}"


def _calls(out: Path) -> dict[str, Recommendation]:
    found = [r for r in analyze(AnalysisOptions(paths=(out,))).recommendations if r.category == "calls"]
    by_subject = {f"{r.rule} {r.subject}": r for r in found}
    assert len(by_subject) == len(found), [r.title for r in found]
    return by_subject


def test_the_asgi_spans_are_neither_requests_nor_calls(telemetry: tuple[Path, str]) -> None:
    out, _peer = telemetry
    spans = [r for r in read(out / "traces.jsonl", strict=True) if isinstance(r, SpanRecord)]
    servers = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    routes = sorted(str(s.attributes["http.route"]) for s in servers)
    assert routes == sorted([ORDERS] * 2 + ["/catalog"] * 2 + ["/health"] * 3)
    # what the data holds: the ASGI instrumentation's "http send" spans beside the calls, one httpx span
    # a call (nothing else records them)
    internal = [s for s in spans if s.kind == SPAN_KIND_INTERNAL]
    assert internal and all(s.name.endswith(" http send") for s in internal)
    assert {s.attributes.get("asgi.event.type") for s in internal} == {
        "http.response.start",
        "http.response.body",
    }
    clients = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    assert {s.scope_name for s in clients} == {"opentelemetry.instrumentation.httpx"}
    assert len(clients) == 2 * CALLS[ORDERS] + 2 * CALLS["/catalog"] + 3 * CALLS["/health"]


def test_endpoint_rows_count_each_request_and_call_once(
    telemetry: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _peer = telemetry
    report = json_report(out, tmp_path)
    rows = {row["route"]: row for row in report["top_routes"]}
    assert set(rows) == {ORDERS, "/catalog", "/health"}
    for route, requests in ((ORDERS, 2), ("/catalog", CATALOG_PAGES), ("/health", HEALTH_CHECKS)):
        row = rows[route]
        assert (row["service"], row["method"], row["requests"], row["errors"]) == ("shop", "GET", requests, 0)
        assert row["http_calls_per_request"] == CALLS[route], route
        assert row["db_calls_per_request"] == 0
        assert row["calls_after_response"] == 0
    rules = {route: sorted(f["rule"] for f in row["findings"]) for route, row in rows.items()}
    assert rules == {
        ORDERS: [
            "calls/chatty_service",
            "calls/n_plus_one_http",
            "calls/redundant_calls",
            "calls/serialized_calls",
        ],
        "/catalog": ["calls/n_plus_one_http"],
        "/health": [],
    }
    # the catalog's calls overlap: their time in the request is the time they cover, not their sum
    catalog = rows["/catalog"]
    assert catalog["share"]["http"] < 1.0 and catalog["share"]["other"] > 0.0
    assert report["summary"]["duplicates"] == {"merged": 0, "scopes": []}
    # and the text report's table
    assert main([str(out), "-o", str(tmp_path / "report.txt")]) == 0
    text = (tmp_path / "report.txt").read_text()
    assert "Endpoints by total time (3)" in text
    for route, requests in ((ORDERS, 2), ("/catalog", CATALOG_PAGES), ("/health", HEALTH_CHECKS)):
        [line] = [line for line in text.splitlines() if line.startswith(f"  shop: GET {route}: ")]
        assert f": {requests} req, errors 0.0%," in line
        assert f"http/req {CALLS[route]} (" in line


def test_the_orders_route_findings(telemetry: tuple[Path, str]) -> None:
    out, peer = telemetry
    found = _calls(out)
    n1 = found[f"n_plus_one_http GET {peer}/stock/{{id}}"]
    numbers = n1.evidence.numbers
    assert (numbers["largest"], numbers["calls"], numbers["traces_affected"]) == (12, 24, 2)
    assert numbers["route"] == ORDERS and numbers["service"] == "shop"
    # awaited one by one: batched, each request saves all but the longest of its 30 ms calls
    assert float(numbers["time_saved_ms"]) >= 2 * 11 * 30

    serialized = found[
        f"serialized_calls GET {peer}/pricing/{{id}} | GET {peer}/reviews | GET {peer}/shipping/{{id}}/quote"
    ]
    assert serialized.evidence.numbers["largest"] == 3
    assert serialized.evidence.numbers["route"] == ORDERS
    assert float(serialized.evidence.numbers["time_saved_ms"]) >= 2 * 2 * 80

    redundant = found[f"redundant_calls GET {peer}/flags"]
    assert redundant.evidence.numbers["largest"] == 2
    assert redundant.evidence.numbers["route"] == ORDERS

    chatty = found[f"chatty_service {peer}"]  # 17 calls to one peer per order
    assert (chatty.evidence.numbers["largest"], chatty.evidence.numbers["route"]) == (17, ORDERS)


def test_the_concurrent_n_plus_one_is_found_and_priced_at_what_batching_saves(
    telemetry: tuple[Path, str],
) -> None:
    out, peer = telemetry
    analysis = analyze(AnalysisOptions(paths=(out,)))
    found = {f"{r.rule} {r.subject}": r for r in analysis.recommendations if r.category == "calls"}
    n1 = found[f"n_plus_one_http GET {peer}/availability/{{id}}"]
    numbers = n1.evidence.numbers
    assert (numbers["largest"], numbers["calls"], numbers["traces_affected"]) == (12, 24, 2)
    assert numbers["route"] == "/catalog"
    # issued with asyncio.gather: the finding says so, and does not ask to make them concurrent
    assert numbers["concurrent_occurrences"] == 2
    assert n1.title.startswith("N+1 HTTP calls (up to 12, issued concurrently): ")
    assert "run concurrently already" in n1.action
    assert "concurrent_occurrences" not in found[f"n_plus_one_http GET {peer}/stock/{{id}}"].evidence.numbers
    # the 12 calls of 30 ms ran at once: a batched call saves the time they covered beyond the longest,
    # less than each page took, not the 11 other calls' time (what the orders' loop saves)
    estimate = next(e for e in analysis.sections["impact"]["estimates"] if e["fingerprint"] == n1.fingerprint)
    [route] = estimate["routes"]
    assert (route["route"], route["requests"]) == ("/catalog", 2)
    assert estimate["saved_ms"] == pytest.approx(float(numbers["time_saved_ms"]), abs=0.01)
    assert 0 < estimate["saved_ms_per_affected_request"] < route["p95_before_ms"]
    assert any("issued concurrently (overlapping)" in a for a in estimate["assumptions"])
    assert float(numbers["time_saved_ms"]) < 2 * 11 * 30 / 2


def _line_of(needle: str) -> int:
    """The line of the app's source that holds ``needle`` (once)."""
    [line] = [n for n, text in enumerate(APP.read_text().splitlines(), 1) if needle in text]
    return line


def test_the_loop_is_located_on_its_line(telemetry: tuple[Path, str]) -> None:
    out, peer = telemetry
    [loop] = _calls(out)[f"n_plus_one_http GET {peer}/stock/{{id}}"].locations
    assert (loop.file, loop.line, loop.count, loop.share) == (str(APP), _line_of("/stock/{item}"), 24, 1.0)
    assert loop.function.startswith("order")


def test_the_concurrent_loop_is_located_at_its_gather(telemetry: tuple[Path, str]) -> None:
    # each call runs on a task of its own, whose stack holds only the loop, httpx and the
    # instrumentation: the location is the route's coroutine, where it awaits the gather
    out, peer = telemetry
    [gather] = _calls(out)[f"n_plus_one_http GET {peer}/availability/{{id}}"].locations
    assert (gather.file, gather.line, gather.count, gather.share) == (
        str(APP),
        _line_of("await asyncio.gather("),
        24,
        1.0,
    )
    assert gather.function == "catalog"


def test_the_healthy_control_is_in_no_finding(telemetry: tuple[Path, str]) -> None:
    out, peer = telemetry
    found = _calls(out)
    assert set(found) == {
        f"n_plus_one_http GET {peer}/stock/{{id}}",
        f"n_plus_one_http GET {peer}/availability/{{id}}",
        f"serialized_calls GET {peer}/pricing/{{id}} | GET {peer}/reviews | GET {peer}/shipping/{{id}}/quote",
        f"redundant_calls GET {peer}/flags",
        f"chatty_service {peer}",
    }
    for recommendation in found.values():
        assert "/ping" not in recommendation.subject
        assert "/health" not in str(recommendation.evidence.numbers["route"])
