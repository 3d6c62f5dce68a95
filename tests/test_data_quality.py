"""The report says what the rules ignored: points with impossible numbers, implausible intervals, db calls
of statements beyond those kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.analyzer.report_values import data_quality_line
from amqadf_agent.cli.analyze import main

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def _kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _metrics(*metrics: dict[str, Any]) -> str:
    resource = {"attributes": [_kv("service.name", "shop"), _kv("service.instance.id", "i-1")]}
    return json.dumps(
        {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": list(metrics)}]}]}
    )


def _cpu(time_ns: int, value: Any) -> dict[str, Any]:
    point = {"timeUnixNano": str(time_ns), "asDouble": value, "attributes": [_kv("cpu.mode", "user")]}
    return {"name": "process.cpu.utilization", "unit": "1", "gauge": {"dataPoints": [point]}}


def _requests(start_ns: int, time_ns: int) -> dict[str, Any]:
    point = {
        "startTimeUnixNano": str(start_ns),
        "timeUnixNano": str(time_ns),
        "count": "10",
        "sum": 1.0,
        "bucketCounts": ["10", "0"],
        "explicitBounds": [0.5],
    }
    return {
        "name": "http.server.request.duration",
        "unit": "s",
        "histogram": {"aggregationTemporality": 1, "dataPoints": [point]},
    }


def _write(path: Path, poisoned: bool) -> Path:
    lines = [
        _metrics(_cpu(T0 + i * 10 * S, 0.5), _requests(T0 + (i - 1) * 10 * S, T0 + i * 10 * S))
        for i in range(12)
    ]
    if poisoned:
        lines.append(_metrics(_cpu(T0 + 55 * S, "NaN"), _cpu(T0 + 65 * S, -3.0)))
        lines.append(_metrics(_requests(1, T0 + 75 * S)))  # an interval back to 1970
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_json_report_counts_what_was_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_write(tmp_path / "m.jsonl", poisoned=True)), "--format", "json"]) == 0
    quality = json.loads(capsys.readouterr().out)["data_quality"]
    assert quality["implausible_intervals"] == 1
    assert quality["skipped_points"]["scaling"] == 2  # the NaN and the negative utilization
    assert set(quality["skipped_points"]) == {"scaling", "cache", "threads"}


def test_a_clean_input_counts_nothing_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_write(tmp_path / "m.jsonl", poisoned=False)), "--format", "json"]) == 0
    quality = json.loads(capsys.readouterr().out)["data_quality"]
    assert quality == {
        "skipped_points": {"scaling": 0, "cache": 0, "threads": 0},
        "implausible_intervals": 0,
        "db_calls_not_analysed": 0,
        "call_findings_not_kept": 0,
        "points_not_kept": {"cache": 0, "threads": 0, "pools": 0},
    }


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_text_markdown_and_html_say_it_in_one_line_only_when_something_was_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    assert main([str(_write(tmp_path / "bad.jsonl", poisoned=True)), "--format", fmt]) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "Data quality" in line]
    assert len(said) == 1, said
    assert "scaling 2" in said[0] and "1 histogram interval" in said[0]
    assert main([str(_write(tmp_path / "good.jsonl", poisoned=False)), "--format", fmt]) == 0
    assert "Data quality" not in capsys.readouterr().out


def test_db_calls_beyond_the_statements_kept_are_said() -> None:
    line = data_quality_line({"db_calls_not_analysed": 290_000})
    assert line == (
        "Data quality: 290,000 db call(s) of statements beyond the distinct ones kept, counted but not"
        " analysed."
    )
    assert data_quality_line({"db_calls_not_analysed": 0}) == ""
    assert data_quality_line({"call_findings_not_kept": 98_000}) == (
        "Data quality: 98,000 occurrence(s) of call findings beyond those kept (each its own URL or call"
        " sequence), not reported."
    )


def _named_points(metric: str, kind: str, attribute: str, names: int, time_ns: int) -> dict[str, Any]:
    points = [
        {
            "startTimeUnixNano": str(T0),
            "timeUnixNano": str(time_ns),
            "asInt": "7",
            "attributes": [_kv(attribute, f"n{i}")],
        }
        for i in range(names)
    ]
    data: dict[str, Any] = {
        "aggregationTemporality": 2,
        "isMonotonic": kind == "counter",
        "dataPoints": points,
    }
    return {"name": metric, "sum": data}


def test_caches_and_pools_beyond_the_bound_are_counted_not_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache, a worker pool and a database per tenant: the first ones are kept, the others' points counted
    from amqadf_agent.analyzer.rules import cache, pool, threads

    monkeypatch.setattr(cache, "MAX_CACHES", 2)
    monkeypatch.setattr(threads, "MAX_POOLS", 2)
    monkeypatch.setattr(pool, "MAX_POOLS", 2)
    lines = [
        _metrics(
            _named_points("amqadf.cache.size", "updown", "amqadf.cache.name", 5, T0 + i * 10 * S),
            _named_points(
                "amqadf.worker_pool.tasks", "counter", "amqadf.worker_pool.name", 5, T0 + i * 10 * S
            ),
            _named_points(
                "db.client.connection.max", "updown", "db.client.connection.pool.name", 5, T0 + i * 10 * S
            ),
        )
        for i in range(1, 3)
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    assert main([str(tmp_path / "m.jsonl"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data_quality"]["points_not_kept"] == {"cache": 6, "threads": 6, "pools": 6}
    assert [c["name"] for c in report["cache"]] == ["n0", "n1"]
    assert [p["pool"] for p in report["threads"]] == ["n0", "n1"]
    assert main([str(tmp_path / "m.jsonl")]) == 0
    assert "beyond those kept left out (cache 6, threads 6, pools 6)" in capsys.readouterr().out
