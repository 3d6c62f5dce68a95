"""End to end: a Flask app calling a local service with ``requests`` under the agent (the real
Flask and requests instrumentations), its telemetry analysed: the N+1 HTTP loop, the three
independent calls made one after another and the repeated GET are found on the route that makes
them; the healthy ``/health`` endpoint (one call) gives nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amqadf_agent.analyzer.run import AnalysisOptions, analyze
from amqadf_agent.cli.analyze import main

APP = Path(__file__).resolve().parent / "apps" / "http_calls_app.py"
ROUTE = "/orders/<int:order_id>"


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The app's telemetry directory and the port its local service listened on."""
    out = tmp_path_factory.mktemp("http-calls") / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="shop", AMQADF_CODE_LOCATION="1")
    proc = subprocess.run(
        [sys.executable, str(APP)], env=env, cwd=out.parent, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "app finished", proc.stdout
    port = int(proc.stdout.splitlines()[-2].removeprefix("inventory port="))
    return out, port


def test_n_plus_one_serialized_and_redundant_calls_found(telemetry: tuple[Path, int]) -> None:
    out, port = telemetry
    peer = f"127.0.0.1:{port}"
    found = {
        r.rule: r for r in analyze(AnalysisOptions(paths=(out,))).recommendations if r.category == "calls"
    }

    n1 = found["n_plus_one_http"]
    assert n1.subject == f"GET {peer}/stock/{{id}}"
    numbers = n1.evidence.numbers
    assert numbers["largest"] == 12
    assert numbers["traces_affected"] == 2
    assert numbers["route"] == ROUTE
    assert numbers["service"] == "shop"
    assert float(numbers["time_saved_ms"]) >= 2 * 11 * 30  # each stock answer waits 30 ms
    assert len(n1.evidence.trace_ids) == 2

    serialized = found["serialized_calls"]
    assert (
        serialized.subject
        == f"GET {peer}/pricing/{{id}} | GET {peer}/reviews | GET {peer}/shipping/{{id}}/quote"
    )
    assert serialized.evidence.numbers["largest"] == 3
    assert float(serialized.evidence.numbers["time_saved_ms"]) >= 2 * 2 * 80

    redundant = found["redundant_calls"]
    assert redundant.subject == f"GET {peer}/flags"
    assert redundant.evidence.numbers["largest"] == 2
    assert "app=shop" not in json.dumps(redundant.to_dict())

    assert found["chatty_service"].subject == peer  # 17 calls to one peer per order
    assert set(found) == {"n_plus_one_http", "serialized_calls", "redundant_calls", "chatty_service"}
    # the healthy control: /health and its one call appear in no finding
    for recommendation in found.values():
        assert "/ping" not in recommendation.subject
        assert recommendation.evidence.numbers["route"] == ROUTE


def _line_of(needle: str) -> int:
    """The line of the app's source that holds ``needle`` (once)."""
    [line] = [n for n, text in enumerate(APP.read_text().splitlines(), 1) if needle in text]
    return line


def test_call_findings_name_the_lines_that_made_the_calls(telemetry: tuple[Path, int]) -> None:
    out, _port = telemetry
    found = {
        r.rule: r for r in analyze(AnalysisOptions(paths=(out,))).recommendations if r.category == "calls"
    }
    # the N+1 loop: every call from the one line of the loop
    [loop] = found["n_plus_one_http"].locations
    assert (loop.file, loop.line, loop.count, loop.share) == (str(APP), _line_of("/stock/{item}"), 24, 1.0)
    assert loop.function.startswith("order")
    # the three independent calls: one line each, a third of the calls each
    serialized = found["serialized_calls"].locations
    lines = [_line_of(f"{{base}}/{part}") for part in ("pricing", "reviews", "shipping")]
    assert sorted((loc.line, loc.count) for loc in serialized) == [(line, 2) for line in lines]
    assert all(loc.function == "order" and loc.file == str(APP) for loc in serialized)
    # the repeated GET: the two lines that make it
    repeated = sorted(loc.line for loc in found["redundant_calls"].locations)
    assert repeated == [_line_of("flags = http.get"), _line_of("again = http.get")]
    # the healthy control's call is on no finding's list
    health = _line_of("/ping")
    assert all(loc.line != health for r in found.values() for loc in r.locations)


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_every_format_shows_the_call_findings(
    telemetry: tuple[Path, int], fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _port = telemetry
    target = tmp_path / f"report.{fmt}"
    assert main([str(out), "--format", fmt, "-o", str(target)]) == 0
    report = target.read_text()
    for rule in ("n_plus_one_http", "serialized_calls", "redundant_calls"):
        assert f"calls/{rule}" in report or f'"rule": "{rule}"' in report, (fmt, rule)
    assert "N+1 HTTP calls" in report
    if fmt == "json":
        categories = {r["category"] for r in json.loads(report)["recommendations"]}
        assert "calls" in categories


def test_sarif_places_the_n_plus_one_http_on_its_loop(
    telemetry: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _port = telemetry
    target = tmp_path / "report.sarif"
    assert main([str(out), "--format", "sarif", "-o", str(target)]) == 0
    results = json.loads(target.read_text())["runs"][0]["results"]
    [n1] = [r for r in results if r["ruleId"] == "calls/n_plus_one_http"]
    physical = n1["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == str(APP).lstrip("/")
    assert physical["region"] == {"startLine": _line_of("/stock/{item}")}
    [serialized] = [r for r in results if r["ruleId"] == "calls/serialized_calls"]
    lines = [serialized["locations"][0], *serialized["relatedLocations"]]
    assert sorted(loc["physicalLocation"]["region"]["startLine"] for loc in lines) == [
        _line_of(f"{{base}}/{part}") for part in ("pricing", "reviews", "shipping")
    ]
    # AND with the directory the app ran from as the source root, its file is named as in the checkout
    repo = Path(__file__).parents[1]
    assert main([str(out), "--format", "sarif", "--source-root", str(repo), "-o", str(target)]) == 0
    results = json.loads(target.read_text())["runs"][0]["results"]
    [n1] = [r for r in results if r["ruleId"] == "calls/n_plus_one_http"]
    artifact = n1["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": str(APP.relative_to(repo)), "uriBaseId": "%SRCROOT%"}


def test_the_call_fixes_are_priced_on_the_route_that_makes_the_calls(telemetry: tuple[Path, int]) -> None:
    out, _port = telemetry
    analysis = analyze(AnalysisOptions(paths=(out,)))
    found = {r.rule: r for r in analysis.recommendations if r.category == "calls"}
    estimates = {e["rule"]: e for e in analysis.sections["impact"]["estimates"]}
    # the N+1, the serialized calls and the repeated GET each save time on the orders route only
    for rule in ("n_plus_one_http", "serialized_calls", "redundant_calls"):
        priced = estimates[rule]
        assert priced["fingerprint"] == found[rule].fingerprint
        [route] = priced["routes"]
        assert (route["route"], route["requests"]) == (ROUTE, 2), rule
        assert route["p95_after_ms"] < route["p95_before_ms"], rule
        # what the fix saves in all is what the rule found each trace would save
        assert priced["saved_ms"] == pytest.approx(
            float(found[rule].evidence.numbers["time_saved_ms"]), abs=0.01
        )
        assert priced["requests_affected"] == 2
        assert priced["formula"].startswith("saved per request = ")
    assert estimates["n_plus_one_http"]["saved_ms"] >= 2 * 11 * 30  # 11 of 12 calls of 30 ms, twice
    assert "chatty_service" not in estimates  # no fix known to save a given time
    # and the ranking puts the priced call findings by what they save
    order = [r.rule for r in analysis.recommendations if r.rule in estimates]
    saved = [estimates[rule]["saved_ms"] for rule in order]
    assert saved == sorted(saved, reverse=True)
