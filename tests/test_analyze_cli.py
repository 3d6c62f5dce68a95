"""``amqadf-analyze`` and the summary behind it: exit codes, formats, one-line errors, the import walls."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.analyzer.summary import (
    SCHEMA_VERSION,
    format_duration,
    render_skipped_text,
    render_text,
    summarize,
    to_json,
)
from amqadf_agent.cli.analyze import main

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
REPO = Path(__file__).resolve().parent.parent

#: What the analyzer must never import (docs/design.md, "Walls").
FORBIDDEN_PREFIXES = (
    "opentelemetry.sdk",
    "opentelemetry.metrics",
    "opentelemetry.trace",
    "opentelemetry.exporter",
    "psutil",
    "amqadf_agent.runtime",
    "amqadf_agent.monitoring",
)
#: The only modules of the package the analyzer may load.
ALLOWED_PACKAGE_MODULES = (
    "amqadf_agent.semconv",
    "amqadf_agent.errors",
    "amqadf_agent.statements",
    "amqadf_agent.redaction",
    "amqadf_agent.scaling.autoscaler",
)


def kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def span_export(service: str, instance: str, span_id: str, start: int, end: int) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [kv("service.name", service), kv("service.instance.id", instance)]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": span_id,
                                "name": "GET /",
                                "kind": 2,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(end),
                            }
                        ],
                    }
                ],
            }
        ]
    }


def metric_export(service: str, name: str, times: list[int], start: int) -> dict[str, Any]:
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [kv("service.name", service)]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": name,
                                "sum": {
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": str(start),
                                            "timeUnixNano": str(t),
                                            "asInt": "1",
                                        }
                                        for t in times
                                    ],
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }


T0 = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z


@pytest.fixture
def telemetry(tmp_path: Path) -> Path:
    """A directory like the agent writes: traces, rotated traces (gzip), metrics."""
    directory = tmp_path / "telemetry"
    directory.mkdir()
    lines = [
        span_export("checkout", "pod-a", "1" * 16, T0 + 1_000, T0 + 5_000_000),
        span_export("checkout", "pod-b", "2" * 16, T0 + 2_000, T0 + 3_000),
    ]
    (directory / "traces.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    (directory / "traces-2026-11-26T10-00-00.000.jsonl.gz").write_bytes(
        gzip.compress(orjson.dumps(span_export("checkout", "pod-a", "3" * 16, T0, T0 + 10)) + b"\n")
    )
    # The cumulative start (T0 - 1h) is when counting began, not an observation: not in the time range.
    metrics = metric_export(
        "inventory", "amqadf.cache.requests", [T0 + 60_000_000_000, T0 + 30], T0 - 3600 * 10**9
    )
    (directory / "metrics.jsonl").write_bytes(orjson.dumps(metrics) + b"\n")
    return directory


# --- summary ------------------------------------------------------------------------------------------


def test_summarize_counts_services_instances_and_time_range(telemetry: Path) -> None:
    stats = ReadStats()
    summary = summarize(read(telemetry, stats=stats), stats)
    assert (summary.files_read, summary.lines_read) == (3, 4)
    assert (summary.spans, summary.metric_records, summary.data_points, summary.logs) == (3, 1, 2, 0)
    assert summary.records == 4
    assert list(summary.services) == ["checkout", "inventory"]
    checkout, inventory = summary.services.values()
    assert checkout.name == "checkout"
    assert checkout.instance_ids == ("pod-a", "pod-b") and checkout.spans == 3
    assert (inventory.instance_ids, inventory.spans, inventory.metric_records) == ((), 0, 1)
    assert summary.start_ns == T0
    assert summary.end_ns == T0 + 60_000_000_000
    assert summary.metric_names == ("amqadf.cache.requests",)
    assert summary.problem_count == 0 and summary.problems == ()


def test_summary_of_the_official_examples() -> None:
    stats = ReadStats()
    summary = summarize(read(FIXTURES, stats=stats), stats)
    assert list(summary.services) == ["my.service"]
    assert (summary.spans, summary.metric_records, summary.data_points, summary.logs) == (1, 3, 3, 1)
    assert summary.start_ns == 1544712660000000000 and summary.end_ns == 1544712661000000000
    assert summary.metric_names == ("my.counter", "my.gauge", "my.histogram")


def test_render_text_and_to_json(telemetry: Path) -> None:
    (telemetry / "bad.jsonl").write_bytes(b"oops\n")
    stats = ReadStats()
    summary = summarize(read(telemetry, stats=stats), stats)
    out = io.StringIO()
    render_text(summary, out)
    text = out.getvalue()
    assert "checkout" in text and "pod-a, pod-b" in text and "inventory" in text
    assert "amqadf.cache.requests" in text
    assert "time range: 2026-" in text and "(1m)" in text
    assert f"{telemetry / 'bad.jsonl'}:1" not in text  # the locations end the report, not the summary
    render_skipped_text(summary, out)
    tail = out.getvalue()[len(text) :].splitlines()
    assert tail[:2] == ["", "Skipped input (1 problem(s) skipped)"] and len(tail) == 3
    assert tail[2].startswith(f"  {telemetry / 'bad.jsonl'}:1: not JSON")

    data = to_json(summary)
    assert json.loads(json.dumps(data)) == data  # plain JSON-ready values only
    assert data["schema_version"] == SCHEMA_VERSION == 3
    assert data["summary"]["counts"] == {"spans": 3, "metric_records": 1, "data_points": 2, "logs": 0}
    assert (
        data["summary"]["time_range"]["start_ns"] == T0
        and data["summary"]["time_range"]["duration_s"] == 60.0
    )
    assert data["summary"]["services"][0] == {
        "name": "checkout",
        "instance_ids": ["pod-a", "pod-b"],
        "spans": 3,
        "metric_records": 0,
        "logs": 0,
    }
    assert data["summary"]["problems"]["count"] == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.015, "15ms"), (4.25, "4.2s"), (60, "1m"), (3723, "1h 2m 3s"), (90061, "1d 1h 1m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- the command ---------------------------------------------------------------------------------------


def test_text_report_on_a_directory(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(telemetry)]) == 0
    captured = capsys.readouterr()
    assert "Telemetry summary" in captured.out
    assert "checkout" in captured.out and "3 spans" in captured.out
    assert captured.err == ""


def test_json_report(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(telemetry), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema_version"] == 3
    assert [s["name"] for s in data["summary"]["services"]] == ["checkout", "inventory"]


def test_output_file(telemetry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.json"
    assert main([str(telemetry), "--format", "json", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(target.read_text())["summary"]["counts"]["spans"] == 3


def test_unwritable_output_is_one_line(
    telemetry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(telemetry), "-o", str(tmp_path / "no" / "such" / "dir" / "r.txt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("amqadf-analyze: cannot write ")


def test_missing_path_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here"
    assert main([str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"amqadf-analyze: {missing}: no such file or directory\n"
    assert captured.out == ""


def test_directory_without_telemetry_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "telemetry"
    empty.mkdir()
    assert main([f"{empty}/"]) == 2
    assert capsys.readouterr().err == f"amqadf-analyze: {empty}/: no OTLP JSON files found\n"


def test_files_without_records_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"resourceSpans": []}\n')
    assert main([str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"amqadf-analyze: no telemetry records in {path}")


def test_bad_lines_are_skipped_with_a_warning(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (telemetry / "zz.jsonl").write_bytes(b"{broken\n")
    assert main([str(telemetry)]) == 0
    captured = capsys.readouterr()
    assert "checkout" in captured.out
    assert captured.err.count("\n") == 1
    assert f"skipped 1 problem(s) in the input: {telemetry / 'zz.jsonl'}:1: not JSON" in captured.err


def test_strict_stops_at_the_first_bad_line(telemetry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (telemetry / "zz.jsonl").write_bytes(b"{broken\n")
    assert main([str(telemetry), "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"amqadf-analyze: {telemetry / 'zz.jsonl'}:1: not JSON")
    assert captured.err.count("\n") == 1


def test_missing_path_among_good_ones_is_reported_not_fatal(
    telemetry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(telemetry), str(tmp_path / "nope")]) == 0
    assert "no such file or directory" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert "usage: amqadf-analyze" in capsys.readouterr().err


# --- real processes: no traceback, and the walls ------------------------------------------------------


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_console_run_on_bad_input_prints_no_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    for argv in ([str(tmp_path / "missing")], [str(garbage)], [str(garbage), "--strict"]):
        result = subprocess.run(
            [sys.executable, "-m", "amqadf_agent.cli.analyze", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("amqadf-analyze: ")


WALL_CHECK = """
    import sys
    from amqadf_agent.cli.analyze import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
    modules = sorted(sys.modules)
    import json
    print(json.dumps({"code": code, "modules": modules}), file=sys.stderr)
"""


def _modules_after(*argv: str) -> tuple[int, list[str]]:
    result = _run(WALL_CHECK, *argv)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], report["modules"]


def _assert_walls(modules: list[str]) -> None:
    forbidden = [m for m in modules if m.startswith(FORBIDDEN_PREFIXES)]
    assert forbidden == []
    ours = [
        m
        for m in modules
        if m.startswith("amqadf_agent.")
        and not m.startswith(("amqadf_agent.analyzer", "amqadf_agent.cli"))
        and m not in ALLOWED_PACKAGE_MODULES
        and m != "amqadf_agent.scaling"
    ]
    assert ours == []


def test_analyzing_real_files_stays_inside_the_walls(tmp_path: Path) -> None:
    copy = tmp_path / "otlp"
    shutil.copytree(FIXTURES, copy)
    code, modules = _modules_after(str(copy), "--format", "json")
    assert code == 0
    assert "amqadf_agent.analyzer.otlp_reader" in modules  # the check ran the real thing
    _assert_walls(modules)


def test_help_is_light() -> None:
    code, modules = _modules_after("--help")
    assert code == 0
    _assert_walls(modules)
    # --help answers before the reader, orjson and the semantic conventions are imported.
    heavy = [m for m in modules if m.startswith(("amqadf_agent.analyzer", "orjson", "opentelemetry", "json"))]
    assert heavy == []


def test_importing_every_analyzer_module_stays_inside_the_walls() -> None:
    result = _run(
        """
        import json, sys
        import amqadf_agent.analyzer, amqadf_agent.analyzer.model, amqadf_agent.analyzer.otlp_reader
        import amqadf_agent.analyzer.summary, amqadf_agent.cli.analyze
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert result.returncode == 0, result.stderr
    _assert_walls(json.loads(result.stdout))


def _slow_requests_file(path: Path) -> Path:
    """Two services; `slow` answers in 2 s (an error every request), `fast` in 10 ms."""
    lines = []
    base = 1_700_000_040_000_000_000
    for i in range(40):
        for service, duration, code in (("slow", 2_000_000_000, 503), ("fast", 10_000_000, 200)):
            end = base + i * 3_000_000_000
            export = span_export(service, f"{service}-1", f"{i + 1:016x}", end - duration, end)
            span = export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
            span["attributes"] = [{"key": "http.response.status_code", "value": {"intValue": str(code)}}]
            lines.append(json.dumps(export))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fail_on_exit_codes_and_service_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _slow_requests_file(tmp_path / "t.jsonl")
    assert main([str(data), "--service", "slow", "--format", "json", "--fail-on", "medium"]) == 3
    out = json.loads(capsys.readouterr().out)
    # 2 minutes of data and no --window: 15 s windows, so the timeline has about ten of them
    assert out["scaling"]["service"] == "slow" and out["scaling"]["window_seconds"] == 15
    assert len(out["scaling"]["timeline"]) >= 8
    assert [s["name"] for s in out["summary"]["services"]] == ["slow"]
    assert out["scaling"]["recommendation"]["action"] == "scale_up"
    assert main([str(data), "--service", "fast", "--fail-on", "low", "--format", "json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["scaling"]["timeline"][0]["metrics"]["response_time_p95"] == pytest.approx(0.01)
    with pytest.raises(SystemExit):
        main([str(data), "--fail-on", "bogus"])


def test_since_until_restrict_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _slow_requests_file(tmp_path / "t.jsonl")
    args = [str(data), "--format", "json", "--service", "fast", "--window", "30"]
    assert main([*args, "--since", "2023-11-14T22:15:00Z", "--until", "2023-11-14T22:15:59Z"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["counts"]["spans"] == 20
    assert [s["time"] for s in out["scaling"]["timeline"]] == [
        "2023-11-14T22:15:00.000Z",
        "2023-11-14T22:15:30.000Z",
    ]
    assert main([*args, "--since", "1m"]) == 2  # nothing in the last minute
    capsys.readouterr()
    assert main([*args, "--since", "yesterday"]) == 2
    assert "cannot read time" in capsys.readouterr().err
    assert main([*args, "--since", "9" * 400 + "s"]) == 2  # a float's infinity: one line, no traceback
    assert "the duration is too long" in capsys.readouterr().err


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The console script of the environment running the tests (not a fixed path).
    agent = Path(sys.executable).parent / "amqadf-agent"
    assert agent.exists(), f"{agent} is missing: pip install -e '.[test]'"
    subprocess.run([str(agent), "demo", "--duration", "8", "--out", str(tmp_path / "demo")], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    assert main([str(tmp_path / "demo"), "--format", "json", "--window", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema_version"] == 3
    assert out["scaling"]["timeline"] and out["scaling"]["recommendation"] is not None
    assert "orders" in [c["name"] for c in out["cache"]]
    assert "request-workers" in [p["pool"] for p in out["threads"]]
    assert out["top_queries"] and len(out["top_queries"]) <= 10
    assert "n_plus_one" in [r["rule"] for r in out["recommendations"]]


def test_markdown_and_html_reports_of_the_same_input(telemetry: Path, tmp_path: Path) -> None:
    # GIVEN telemetry of two services; WHEN it is rendered as markdown and html
    md_path, html_path = tmp_path / "r.md", tmp_path / "r.html"
    assert main([str(telemetry), "--format", "markdown", "-o", str(md_path)]) == 0
    assert main([str(telemetry), "--format", "html", "-o", str(html_path)]) == 0
    # THEN both name the services, and the html is one self-contained document
    markdown = md_path.read_text()
    assert markdown.startswith("#") and "checkout" in markdown and "inventory" in markdown
    page = html_path.read_text()
    assert page.lstrip().lower().startswith("<!doctype html>") and "checkout" in page
    assert "http://" not in page and "https://" not in page


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_line_on_a_terminal_for_large_inputs_only(
    telemetry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from amqadf_agent.analyzer import run

    # Small input on a terminal: no progress line.
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([str(telemetry)]) == 0
    assert "record(s)" not in terminal.getvalue()
    # The same input counted as large: one final progress line, on stderr only.
    monkeypatch.setattr(run, "PROGRESS_MIN_BYTES", 1)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([str(telemetry)]) == 0
    assert terminal.getvalue().rstrip("\n").split("\r")[-1].startswith("read 3 file(s)")
    assert "record(s)" not in capsys.readouterr().out
    # Not a terminal: never.
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    assert main([str(telemetry)]) == 0
    assert "record(s)" not in plain.getvalue()


def _cpu_bound_pool_file(path: Path, cpus: int) -> Path:
    """Pool ``w`` of 4 busy workers, 40 tasks/s of 0.1 s, 4 CPU-s/s (CPU-bound), ``cpus`` logical CPUs."""
    start = 1_700_000_000 * 1_000_000_000

    def point(t: int, attrs: dict[str, str], **value: Any) -> dict[str, Any]:
        return {
            "attributes": [kv(k, v) for k, v in attrs.items()],
            "startTimeUnixNano": str(start),
            "timeUnixNano": str(start + t * 1_000_000_000),
            **value,
        }

    pool = {"amqadf.worker_pool.name": "w"}
    lines = []
    for t in range(0, 601, 60):
        done = 40 * t
        metrics = [
            {"name": "amqadf.worker_pool.max_workers", "gauge": {"dataPoints": [point(t, pool, asInt="4")]}},
            {
                "name": "amqadf.worker_pool.workers",
                "gauge": {"dataPoints": [point(t, {**pool, "amqadf.worker_pool.state": "busy"}, asInt="4")]},
            },
            {
                "name": "amqadf.worker_pool.tasks",
                "sum": {
                    "dataPoints": [point(t, {**pool, "amqadf.task.outcome": "success"}, asInt=str(done))],
                    "aggregationTemporality": 2,
                    "isMonotonic": True,
                },
            },
            {
                "name": "amqadf.worker_pool.task.duration",
                "histogram": {
                    "dataPoints": [
                        point(
                            t,
                            pool,
                            count=str(done),
                            sum=done * 0.1,
                            bucketCounts=[str(done)],
                            explicitBounds=[],
                        )
                    ],
                    "aggregationTemporality": 2,
                },
            },
            {
                "name": "process.cpu.time",
                "sum": {
                    "dataPoints": [point(t, {"cpu.mode": "user"}, asDouble=4.0 * t)],
                    "aggregationTemporality": 2,
                    "isMonotonic": True,
                },
            },
            {
                "name": "system.cpu.logical.count",
                "sum": {"dataPoints": [point(t, {}, asInt=str(cpus))], "aggregationTemporality": 2},
            },
        ]
        resource = {"attributes": [kv("service.name", "shop"), kv("service.instance.id", "i-1")]}
        lines.append(
            json.dumps({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": metrics}]}]})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cpu_count_overrides_the_telemetry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _cpu_bound_pool_file(tmp_path / "pool.jsonl", cpus=5)

    def pool_finding(*extra: str) -> dict[str, Any]:
        assert main([str(data), "--format", "json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        (finding,) = [r for r in out["recommendations"] if r["category"] == "threads"]
        return dict(finding)

    # Little's law wants ceil(40 * 0.1 / 0.7) = 6; the telemetry says 5 CPUs: grow to 5.
    grow = pool_finding()
    assert grow["rule"] == "grow_pool" and grow["evidence"]["numbers"]["recommended"] == 5
    assert (
        grow["evidence"]["numbers"]["cpu_count"] == 5 and grow["evidence"]["numbers"]["limited_by"] == "cpu"
    )
    # --cpu-count 2 wins over the telemetry: 2 <= 0.5 * 4 workers, a shrink.
    shrink = pool_finding("--cpu-count", "2")
    assert shrink["rule"] == "shrink_pool" and shrink["evidence"]["numbers"]["recommended"] == 2
    assert shrink["evidence"]["numbers"]["cpu_count"] == 2
    assert main([str(data), "--cpu-count", "0"]) == 2
    assert "--cpu-count" in capsys.readouterr().err


def test_every_report_ends_with_the_skipped_input_and_stderr_names_it(
    telemetry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN five bad lines among good telemetry
    bad = telemetry / "zz.jsonl"
    bad.write_bytes(b"{broken\n" * 5)
    where = [f"{bad}:{n}: not JSON" for n in range(1, 6)]
    for fmt in ("text", "markdown", "html"):
        out = tmp_path / f"report.{fmt}"
        assert main([str(telemetry), "--format", fmt, "-o", str(out)]) == 0
        report = out.read_text()
        # THEN the report ends with the count and every location (after the recommendations)
        tail = report[report.rindex("Skipped input") :]
        assert "5 problem(s)" in tail and all(w in tail for w in where), fmt
        assert report.index("Recommendations") < report.rindex("Skipped input"), fmt
        after = tail.split(where[-1], 1)[1]
        assert "<section" not in after and "##" not in after and "Top queries" not in after, fmt
        assert [tail.index(w) for w in where] == sorted(tail.index(w) for w in where), fmt
        # ... and the last stderr line names the count and the first locations
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "skipped 5 problem(s)" in err and "and 2 more" in err
        assert all(w in err for w in where[:3]) and where[3] not in err
    # Control: no problems, no section and no warning
    bad.unlink()
    assert main([str(telemetry)]) == 0
    captured = capsys.readouterr()
    assert "Skipped input" not in captured.out and captured.err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_report_is_coloured_only_on_a_terminal_without_no_color(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _slow_requests_file(tmp_path / "t.jsonl")  # findings of several severities
    monkeypatch.delenv("NO_COLOR", raising=False)
    # Not a terminal (captured, a pipe, a file): no escape codes at all
    assert main([str(data)]) == 0
    plain = capsys.readouterr().out
    assert "\x1b[" not in plain and "[medium]" in plain
    out = tmp_path / "report.txt"
    assert main([str(data), "-o", str(out)]) == 0 and "\x1b[" not in out.read_text()
    # A terminal: severities coloured
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main([str(data)]) == 0
    coloured = terminal.getvalue()
    assert "\x1b[33m[medium]\x1b[0m" in coloured and "\x1b[1mRecommendations" in coloured
    # ... the same text once the codes are taken out
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    # NO_COLOR set: a terminal gets plain text
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main([str(data)]) == 0 and terminal.getvalue() == plain


# --- control characters from the data ----------------------------------------------------------------

#: Sets the terminal's window title (OSC 0 ... BEL), then clears the screen (CSI 2J).
TERMINAL_ATTACK = "\x1b]0;pwned\x07\x1b[2J"
#: Any control character a terminal acts on: C0 but the report's own newlines, DEL, C1.
CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _hostile_telemetry(path: Path) -> Path:
    """A service, its span names, a statement, a metric and a file name, each carrying TERMINAL_ATTACK."""
    path.mkdir()
    spans = []
    for i in range(12):
        start = 1_700_000_000_000_000_000 + i * 1_000_000_000
        db = [
            kv("db.system.name", "postgresql"),
            kv("db.query.text", f'SELECT a FROM "t{TERMINAL_ATTACK}" WHERE b = {i}'),
        ]
        spans.append(
            {
                "traceId": f"{i + 1:032x}",
                "spanId": f"{i + 1:016x}",
                "name": f"GET /{TERMINAL_ATTACK}",
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 900_000_000),
                "attributes": db,
            }
        )
    resource = {"attributes": [kv("service.name", f"shop{TERMINAL_ATTACK}")]}
    lines = [
        {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]},
        metric_export(
            f"shop{TERMINAL_ATTACK}", f"odd.metric{TERMINAL_ATTACK}", [1_700_000_000], 1_699_999_990
        ),
    ]
    (path / "t.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (path / f"bad{TERMINAL_ATTACK}.jsonl").write_text("{not json\n")
    return path


def test_the_text_report_escapes_control_characters_of_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN telemetry whose names carry terminal escape sequences
    data = _hostile_telemetry(tmp_path / "hostile")
    # WHEN it is reported as text (and as markdown)
    assert main([str(data)]) == 0
    captured = capsys.readouterr()
    assert main([str(data), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    # THEN no control character reaches the terminal, from the report or the stderr warning
    for text in (captured.out, captured.err, markdown):
        assert CONTROLS.search(text) is None, CONTROLS.search(text)
    # AND the names are shown escaped, where they were
    escaped = "\\x1b]0;pwned\\x07\\x1b[2J"
    assert f"shop{escaped}" in captured.out and f"odd.metric{escaped}" in captured.out
    assert f'"t{escaped}"' in captured.out  # the statement, in top queries and the recommendations
    assert f"bad{escaped}.jsonl" in captured.out and f"bad{escaped}.jsonl" in captured.err


def test_coloured_recommendations_write_only_their_own_escape_sequences() -> None:
    from amqadf_agent.analyzer.recommendation import Evidence, Recommendation
    from amqadf_agent.analyzer.summary import render_recommendations

    evidence = Evidence(
        numbers={f"n{TERMINAL_ATTACK}": f"v{TERMINAL_ATTACK}"},
        formula="f",
        threshold=f"t{TERMINAL_ATTACK}",
        trace_ids=(TERMINAL_ATTACK,),
        span_ids=("\x9b2J",),
    )
    hostile = Recommendation(
        category="database",
        rule="slow_query",
        severity="high",
        title=f"slow {TERMINAL_ATTACK}",
        action=f"fix {TERMINAL_ATTACK}",
        subject=f"SELECT {TERMINAL_ATTACK}",
        evidence=evidence,
        confidence=0.5,
    )
    out = io.StringIO()
    render_recommendations([hostile], out, colour=True)
    # Only SGR colour sequences (ESC [ digits ; m) are left once the data's are escaped
    assert CONTROLS.search(re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())) is None
    assert out.getvalue().count("\\x1b]0;pwned\\x07") == 7


def test_a_fleet_lists_its_busiest_services_and_first_metric_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 80 services (49 with two records, one with 60) and 188 metric names: the text, Markdown and HTML
    # reports list 50 services, the busiest, and 100 names, and say how many more the JSON report has
    lines = []
    for number in range(80):
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc-{number:02d}"}}]}
        points = [{"timeUnixNano": "1700000000000000000", "asDouble": 1.0}]
        metrics = [
            {"name": f"m.{number}.{i}", "gauge": {"dataPoints": points}}
            for i in range(2 if number < 49 else 1 if number != 79 else 60)
        ]
        lines.append({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": metrics}]}]})
    path = tmp_path / "fleet.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    assert main([str(path)]) == 0
    text = capsys.readouterr().out
    assert "Services (80)" in text and "  ... and 30 more (every one in --format json)" in text
    assert "\n  svc-79 " in text and "\n  svc-48 " in text and "\n  svc-49 " not in text
    assert "Metrics (188)" in text and "  ... and 88 more (every one in --format json)" in text
    assert main([str(path), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert (
        "`svc-79`" in markdown
        and "`svc-50`" not in markdown
        and ", and 30 more (in the JSON report)" in markdown
    )
    assert main([str(path), "--format", "html"]) == 0
    html = capsys.readouterr().out
    assert "svc-79 (" in html and "svc-49 (" not in html and "and 30 more (in the JSON report)" in html
    assert main([str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["summary"]["services"]) == 80 and len(report["summary"]["metric_names"]) == 188
