"""``amqadf-agent``: the built-in demo end to end (agent -> files -> analyzer), and one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
from collections import defaultdict
from pathlib import Path

import pytest

from amqadf_agent import semconv
from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    HistogramPoint,
    LogRecord,
    MetricRecord,
    SpanRecord,
)
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.cli import analyze
from amqadf_agent.cli.agent import main

#: docs/design.md: an N+1 is >= 5 consecutive sibling db spans with the same statement.
N_PLUS_ONE_MIN = 5
DEMO_SERVICE = "amqadf-demo-shop"


def _statement(span: SpanRecord) -> object:
    return span.attributes.get(semconv.ATTR_DB_QUERY_TEXT, span.attributes.get(semconv.ATTR_DB_STATEMENT_OLD))


def _db_system(span: SpanRecord) -> object:
    return span.attributes.get(semconv.ATTR_DB_SYSTEM_NAME, span.attributes.get(semconv.ATTR_DB_SYSTEM_OLD))


def longest_same_statement_run(db_spans: list[SpanRecord]) -> tuple[int, object]:
    """The longest run of consecutive sibling db spans (one parent, start order) with one statement."""
    by_parent: dict[tuple[str, str], list[SpanRecord]] = defaultdict(list)
    for span in db_spans:
        by_parent[(span.trace_id, span.parent_span_id)].append(span)
    best: tuple[int, object] = (0, None)
    for siblings in by_parent.values():
        siblings.sort(key=lambda s: s.start_ns)
        run, previous = 0, None
        for span in siblings:
            statement = _statement(span)
            run = run + 1 if statement == previous else 1
            previous = statement
            if run > best[0]:
                best = (run, statement)
    return best


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """One 3-second demo for the tests of this module: (output dir, exit code, stdout, stderr).

    Module-scoped, so it runs before the per-test clean-up of conftest.py: it clears the
    AMQADF_*/OTEL_* variables itself.
    """
    out = tmp_path_factory.mktemp("demo") / "t"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("AMQADF_", "OTEL_")):
                mp.delenv(name)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["demo", "--duration", "3", "--out", str(out), "--rate", "15"])
    return out, code, stdout.getvalue(), stderr.getvalue()


def test_demo_writes_telemetry_and_names_the_next_command(demo_run: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = demo_run
    assert code == 0, stderr
    assert (out / "traces.jsonl").stat().st_size > 0
    assert (out / "metrics.jsonl").stat().st_size > 0
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[-1] == f"next: amqadf-analyze {out}", stdout
    assert "Traceback" not in stderr


def test_demo_traces_hold_what_the_analyzer_looks_for(demo_run: tuple[Path, int, str, str]) -> None:
    out, code, _stdout, stderr = demo_run
    assert code == 0, stderr
    spans = [r for r in read(out / "traces.jsonl", strict=True) if isinstance(r, SpanRecord)]
    assert {s.service for s in spans} == {DEMO_SERVICE}

    servers = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert servers
    assert all(s.attributes.get(semconv.ATTR_HTTP_ROUTE) for s in servers)
    assert any(s.name == "GET /reports/bought-together" for s in servers), {s.name for s in servers}

    db = [s for s in spans if s.kind == SPAN_KIND_CLIENT and _db_system(s) == "sqlite"]
    assert db
    assert all(s.scope_name == "opentelemetry.instrumentation.sqlite3" for s in db)
    assert all(isinstance(_statement(s), str) and _statement(s) for s in db)
    server_ids = {s.span_id for s in servers}
    parents = {s.span_id: s.parent_span_id for s in spans}

    def under_a_request(span_id: str) -> bool:  # directly, or through a profile span
        seen = 0
        while span_id and seen < 50:
            if span_id in server_ids:
                return True
            span_id, seen = parents.get(span_id, ""), seen + 1
        return False

    assert all(under_a_request(s.parent_span_id) for s in db)  # db spans sit under the request spans

    run, statement = longest_same_statement_run(db)
    assert run >= N_PLUS_ONE_MIN, (run, statement)
    assert "order_items" in str(statement)


def test_a_report_past_its_timeout_is_exported_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo ends while a timed-out report query still runs: it waits for the query, so the query's
    span and the profile and request spans above it are all in the file (never a span without its
    parent)."""
    from amqadf_agent.demo import service

    for name in list(os.environ):
        if name.startswith(("AMQADF_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(service, "REPORT_TIMEOUT", 0.05)  # the ~1 s report query outlasts it
    out = tmp_path / "t"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        # the report is offered at 1 s; the demo ends before its query can have finished
        assert main(["demo", "--duration", "1.2", "--out", str(out), "--rate", "5"]) == 0
    spans = {r.span_id: r for r in read(out / "traces.jsonl", strict=True) if isinstance(r, SpanRecord)}
    reports = [s for s in spans.values() if "GROUP BY" in str(_statement(s))]
    assert reports, "the timed-out report query's span was not exported"
    for span in spans.values():
        assert not span.parent_span_id or span.parent_span_id in spans, f"{span.name} without its parent"
    (request,) = [s for s in spans.values() if s.name == "GET /reports/bought-together"]
    assert request.attributes.get(semconv.ATTR_HTTP_RESPONSE_STATUS_CODE) == 504


def test_demo_metrics_cover_the_contract(demo_run: tuple[Path, int, str, str]) -> None:
    out, code, _stdout, stderr = demo_run
    assert code == 0, stderr
    metrics = [r for r in read(out / "metrics.jsonl", strict=True) if isinstance(r, MetricRecord)]
    names = {m.name for m in metrics}
    expected = {
        inst.name
        for inst in semconv.INSTRUMENTS
        if inst.name.startswith(
            ("amqadf.cache.", "amqadf.worker_pool.", "amqadf.loadbalancer.", "amqadf.autoscaler.")
        )
        and "redis_info" not in inst.emitted_by  # the demo runs no Redis
    }
    assert len(expected) >= 18  # the contract's cache, pool, balancer and autoscaler instruments
    expected.add(semconv.HTTP_SERVER_REQUEST_DURATION.name)
    # The inventory calls go through a retry policy and a breaker from the first request on.
    expected |= {
        semconv.RETRY_CALLS.name,
        semconv.BREAKER_STATE.name,
        semconv.BREAKER_CALLS.name,
        semconv.RATE_LIMITER_REQUESTS.name,
    }
    assert expected <= names, sorted(expected - names)
    assert {m.service for m in metrics} == {DEMO_SERVICE}
    durations = [m for m in metrics if m.name == semconv.HTTP_SERVER_REQUEST_DURATION.name]
    points = [p for m in durations for p in m.points]
    assert points and all(isinstance(p, HistogramPoint) for p in points)
    # Seconds, with the contract's buckets (not the SDK's millisecond defaults).
    assert {p.explicit_bounds for p in points if isinstance(p, HistogramPoint)} == {semconv.SECONDS_BUCKETS}


def test_demo_exports_the_applications_logs(demo_run: tuple[Path, int, str, str]) -> None:
    out, code, _stdout, stderr = demo_run
    assert code == 0, stderr
    logs = [r for r in read(out / "logs.jsonl", strict=True) if isinstance(r, LogRecord)]
    # Every autoscaler decision is logged (the first after one second); failed downstream calls
    # are logged inside their request's span, so those records carry its trace id.
    assert any(str(r.body).startswith("autoscaler: ") for r in logs), [r.body for r in logs]
    assert all(r.service == DEMO_SERVICE for r in logs)
    assert all(len(r.trace_id) == 32 for r in logs if "failed" in str(r.body))


def test_analyze_reads_what_the_demo_wrote(
    demo_run: tuple[Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, code, _stdout, stderr = demo_run
    assert code == 0, stderr
    assert analyze.main([str(out)]) == 0
    captured = capsys.readouterr()
    assert DEMO_SERVICE in captured.out
    assert captured.err == ""


def _one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("amqadf-agent: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def test_demo_rejects_a_zero_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "0"]) == 2
    captured = capsys.readouterr()
    _one_error_line(captured.err, "--duration")
    assert "Traceback" not in captured.err


def test_run_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run"])
    assert code != 0
    _one_error_line(capsys.readouterr().err, "nothing to run")


def test_run_with_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--", "no-such-command-xyz"])
    assert code != 0
    _one_error_line(capsys.readouterr().err, "no-such-command-xyz")
