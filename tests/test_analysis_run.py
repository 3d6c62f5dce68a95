"""The analysis as a library call (``analyzer.run``) and its report (``analyzer.report``), no command."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest

from amqadf_agent.analyzer.report import FORMATS, report_data, write_report
from amqadf_agent.analyzer.run import Analysis, AnalysisOptions, analyze
from amqadf_agent.cli.analyze import main

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"


def test_options_are_frozen_and_take_any_path_type() -> None:
    options = AnalysisOptions(paths=[FIXTURES, "x.jsonl"])
    assert options.paths == (str(FIXTURES), "x.jsonl")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.strict = True  # type: ignore[misc]


def test_the_library_call_gives_what_the_command_prints() -> None:
    # GIVEN the fixtures; WHEN analyzed by the library call and by the command
    analysis = analyze(AnalysisOptions(paths=(FIXTURES,)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(FIXTURES), "--format", "json"]) == 0
    # THEN the command's JSON report is the library's
    assert isinstance(analysis, Analysis) and analysis.summary.records > 0
    assert json.loads(out.getvalue()) == json.loads(json.dumps(report_data(analysis)))
    assert analysis.stats.files_read == analysis.summary.files_read > 0
    assert list(analysis.recommendations) == sorted(analysis.recommendations, key=lambda r: r.sort_key())
    assert set(analysis.sections) == {
        "scaling",
        "cache",
        "threads",
        "top_queries",
        "top_routes",
        "duplicates",
        "data_quality",
        "impact",
    }


def test_the_service_filter_applies_to_the_summary() -> None:
    every = analyze(AnalysisOptions(paths=(FIXTURES,)))
    name = next(iter(every.summary.services))
    one = analyze(AnalysisOptions(paths=(FIXTURES,), service=name))
    assert list(one.summary.services) == [name]
    assert one.sections["scaling"]["service"] == name


def test_no_records_is_an_empty_analysis_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    analysis = analyze(AnalysisOptions(paths=(tmp_path,)))
    assert analysis.summary.records == 0 and analysis.recommendations == ()


def test_every_format_writes_and_an_unknown_one_is_refused() -> None:
    analysis = analyze(AnalysisOptions(paths=(FIXTURES,)))
    for fmt in FORMATS:
        out = io.StringIO()
        write_report(analysis, fmt, out)
        assert out.getvalue().strip(), fmt
    with pytest.raises(ValueError, match="unknown report format 'yaml'"):
        write_report(analysis, "yaml", io.StringIO())


def _with_numbers(analysis: Analysis, **numbers: float) -> Analysis:
    """``analysis`` with one more recommendation whose evidence holds ``numbers``."""
    from amqadf_agent.analyzer.recommendation import Evidence, Recommendation

    odd = Recommendation(
        category="threads",
        rule="cpu_bound",
        severity="low",
        title="odd numbers",
        action="none",
        subject="pool",
        evidence=Evidence(numbers=numbers, formula="f", threshold="t"),
        confidence=0.5,
    )
    sections = {**analysis.sections, "threads": [{"pool": "p", "utilization": float("nan")}]}
    return dataclasses.replace(analysis, recommendations=(odd,), sections=sections)


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_json_report_holds_no_nan_or_infinity() -> None:
    # GIVEN evidence and sections with non-finite numbers (NaN, +-Infinity)
    analysis = _with_numbers(
        analyze(AnalysisOptions(paths=(FIXTURES,))),
        cpu_per_busy_thread=float("nan"),
        rate=float("inf"),
        low=float("-inf"),
        calls=3,
    )
    # WHEN written as JSON
    out = io.StringIO()
    write_report(analysis, "json", out)
    # THEN the output is strict JSON, each non-finite number null, the finite ones kept
    report = _strict_json(out.getvalue())
    assert isinstance(report, dict)
    (odd,) = report["recommendations"]
    assert odd["evidence"]["numbers"] == {"cpu_per_busy_thread": None, "rate": None, "low": None, "calls": 3}
    assert report["threads"] == [{"pool": "p", "utilization": None}]
