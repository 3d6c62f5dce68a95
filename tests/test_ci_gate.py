"""The CI gate: SARIF 2.1.0 output valid against the OASIS schema, ``amqadf-analyze diff`` and
``--baseline`` exiting 3 on a regression, 0 on none, 2 on a file that is no report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.otlp_spans import orders, payments, write_spans

from amqadf_agent.analyzer.diff import diff_reports
from amqadf_agent.analyzer.render_sarif import sarif_log
from amqadf_agent.cli.analyze import main

#: The OASIS SARIF 2.1.0 schema (errata 01, its "id" inside), as published with the standard.
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "sarif-schema-2.1.0.json").read_text("utf-8"))


def _telemetry(directory: Path, *, n_plus_one: bool, pay_ms: int) -> Path:
    directory.mkdir()
    spans = (orders(40, twins=None) if n_plus_one else []) + payments(40, duration_ms=pay_ms)
    write_spans(directory / "traces.jsonl", spans)
    return directory


def _json_report(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str], **kind: Any) -> Path:
    telemetry = _telemetry(tmp_path / name, **kind)
    out = tmp_path / f"{name}.json"
    assert main([str(telemetry), "--format", "json", "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def test_sarif_is_valid_and_has_one_result_per_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = _telemetry(tmp_path / "t", n_plus_one=True, pay_ms=250)
    assert main([str(telemetry), "--format", "sarif"]) == 0
    log = json.loads(capsys.readouterr().out)
    jsonschema.validate(log, SCHEMA)
    assert main([str(telemetry), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "amqadf-analyze"
    results = run["results"]
    assert len(results) == len(report["recommendations"]) > 0
    n1 = next(r for r in results if r["ruleId"] == "database/n_plus_one")
    expected = next(r for r in report["recommendations"] if r["rule"] == "n_plus_one")
    assert n1["partialFingerprints"] == {"amqadf/v1": expected["fingerprint"]}
    assert n1["level"] == {"high": "error", "medium": "warning"}[expected["severity"]]
    assert run["tool"]["driver"]["rules"][n1["ruleIndex"]]["id"] == "database/n_plus_one"
    assert n1["locations"][0]["logicalLocations"][0]["name"] == expected["subject"]
    assert "physicalLocation" not in n1["locations"][0]  # no code.* attributes in this evidence


def test_sarif_physical_location_from_code_attributes() -> None:
    finding = {
        "fingerprint": "db-n-plus-one-1", "category": "database", "rule": "n_plus_one", "severity": "low",
        "title": "N+1", "action": "join", "subject": "SELECT 1", "confidence": 0.5, "impact_s": 1.0,
        "evidence": {"numbers": {"code.file.path": "/app/shop/views.py", "code.line.number": 42},
                     "threshold": "x", "trace_ids": ["a" * 32]},
    }  # fmt: skip
    log = sarif_log({"recommendations": [finding]})
    jsonschema.validate(log, SCHEMA)
    (result,) = log["runs"][0]["results"]
    physical = result["locations"][0]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": "app/shop/views.py"}, "region": {"startLine": 42}}
    assert result["level"] == "note"
    empty = sarif_log({})
    jsonschema.validate(empty, SCHEMA)
    assert empty["runs"][0]["results"] == []


def test_diff_finds_new_findings_and_route_regressions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _json_report(tmp_path, "base", capsys, n_plus_one=False, pay_ms=250)
    new = _json_report(tmp_path, "new", capsys, n_plus_one=True, pay_ms=400)
    assert main(["diff", str(base), str(new)]) == 3
    out = capsys.readouterr().out
    assert "route regressed: shop: POST /pay: p95 250.0 ms -> 400.0 ms" in out
    assert "  new: [" in out and "database/n_plus_one" in out
    # the other way round: faster, and the N+1 resolved: no regression
    assert main(["diff", str(new), str(base), "--format", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert changes["route_regressions"] == [] and changes["new"] == [] and changes["regression"] is False
    assert "database/n_plus_one" in [f["rule"] for f in changes["resolved"]]
    assert main(["diff", str(base), str(base)]) == 0
    assert capsys.readouterr().out.startswith("Findings: 0 new, 0 regressed, 0 resolved")


def test_route_noise_floor_and_margin() -> None:
    def report(p95: float, errors: float, requests: int = 100) -> dict[str, Any]:
        route = {"service": "s", "method": "GET", "route": "/", "requests": requests, "p95_ms": p95,
                 "error_rate": errors}  # fmt: skip
        return {"schema_version": 3, "recommendations": [], "top_routes": [route]}

    assert not diff_reports(report(10, 0), report(19, 0)).regression  # +90% but under the 10 ms floor
    assert not diff_reports(report(200, 0), report(230, 0)).regression  # +30 ms but under +20%
    assert diff_reports(report(200, 0), report(241, 0)).regression
    assert diff_reports(report(200, 0.01), report(200, 0.03)).regression  # +2 points of errors
    assert not diff_reports(report(200, 0.01), report(200, 0.02)).regression
    assert not diff_reports(report(200, 0, 10), report(900, 0.5, 10)).regression  # too few requests


def test_baseline_exits_3_on_a_regression_and_0_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _json_report(tmp_path, "base", capsys, n_plus_one=True, pay_ms=250)
    same = _telemetry(tmp_path / "same", n_plus_one=True, pay_ms=250)
    assert main([str(same), "--format", "json", "-o", str(tmp_path / "r.json"), "--baseline", str(base)]) == 0
    slower = _telemetry(tmp_path / "slower", n_plus_one=True, pay_ms=500)
    assert main([str(slower), "-o", str(tmp_path / "r.txt"), "--baseline", str(base)]) == 3
    err = capsys.readouterr().err
    assert "route regressed: shop: POST /pay: p95 250.0 ms -> 500.0 ms" in err
    assert f"a regression against the baseline {base}: exit 3" in err


def test_a_file_that_is_no_report_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceSpans": []}')
    assert main(["diff", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"amqadf-analyze: {bad}: not an amqadf-analyze JSON report (no schema_version): use --format json"
    ]
    telemetry = _telemetry(tmp_path / "t", n_plus_one=False, pay_ms=250)
    assert main([str(telemetry), "--baseline", str(tmp_path / "missing.json")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("amqadf-analyze: --baseline ") and "missing.json: cannot read it" in line
    old = tmp_path / "v9.json"
    old.write_text('{"schema_version": 9}')
    assert main(["diff", str(old), str(old)]) == 2
    assert "report schema version 9 is not one this version reads (2, 3)" in capsys.readouterr().err
