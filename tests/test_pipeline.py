"""Reading in a second process gives what reading in this one gives: the same records in the same
order, the same statistics and problems, the same --strict error, and the same report."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from amqadf_agent.analyzer import pipeline, run
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.analyzer.pipeline import read_pipelined
from amqadf_agent.cli import analyze
from amqadf_agent.errors import ReaderProcessError, TelemetryInputError

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
TRACE = "0af7651916cd43dd8448eb211c80319c"


def kv(key: str, value: Any) -> dict[str, Any]:
    return {
        "key": key,
        "value": {"stringValue": value} if isinstance(value, str) else {"intValue": str(value)},
    }


def db_line(batch: int, service: str = "shop") -> bytes:
    """One export of 3 traces, each a server span and 6 identical-shape db calls (an N+1)."""
    spans = []
    for t in range(3):
        trace = f"{batch + 1:016x}{t:016x}"
        root = f"{batch * 10 + t + 1:016x}"
        start = 1_700_000_000_000_000_000 + (batch * 3 + t) * 1_000_000_000
        spans.append(
            {
                "traceId": trace,
                "spanId": root,
                "name": "GET /orders",
                "kind": 2,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 90_000_000),
                "attributes": [kv("http.request.method", "GET"), kv("http.response.status_code", 200)],
                "status": {},
            }
        )
        for i in range(6):
            begin = start + (i + 1) * 10_000_000
            spans.append(
                {
                    "traceId": trace,
                    "spanId": f"{batch:08x}{t:04x}{i + 1:04x}",
                    "parentSpanId": root,
                    "name": "SELECT products",
                    "kind": 3,
                    "startTimeUnixNano": str(begin),
                    "endTimeUnixNano": str(begin + 12_000_000),
                    "attributes": [
                        kv("db.system.name", "postgresql"),
                        kv("db.query.text", f"SELECT * FROM products WHERE id = {batch * 100 + i}"),
                    ],
                }
            )
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [kv("service.name", service)]},
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
    )


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Span lines (typed path), metric and log lines (general path), bad lines, an empty file."""
    lines = [db_line(batch) for batch in range(20)]
    lines[5:5] = [b"{not json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}']
    (tmp_path / "traces.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for name in ("metrics.json", "logs.json", "trace.json"):  # pretty-printed documents
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    return tmp_path


def both(paths: Any, **kwargs: Any) -> tuple[tuple[str, ReadStats], tuple[str, ReadStats]]:
    here, there = ReadStats(), ReadStats()
    # (with another thread running, read_pipelined reads here instead: nothing would be compared)
    assert threading.active_count() == 1, threading.enumerate()
    return (
        (repr(list(read(paths, stats=here, **kwargs))), here),
        (repr(list(read_pipelined(paths, stats=there, **kwargs))), there),
    )


def test_records_and_statistics_are_the_same(mixed: Path) -> None:
    here, there = both([mixed, mixed / "missing.jsonl"])
    assert there == here
    stats = there[1]
    assert stats.records["spans"] > 0 and stats.records["metrics"] > 0 and stats.records["logs"] > 0
    assert stats.problem_count == 3, stats.problems  # not JSON, a bad trace id, the missing file


def test_statistics_accumulate_over_reads(mixed: Path) -> None:
    stats = ReadStats()
    list(read(mixed / "traces.jsonl", stats=stats))
    list(read_pipelined(mixed / "traces.jsonl", stats=stats))
    alone = ReadStats()
    list(read(mixed / "traces.jsonl", stats=alone))
    assert stats.lines_read == 2 * alone.lines_read and stats.files_read == 2
    assert stats.records["spans"] == 2 * alone.records["spans"]
    assert stats.problem_count == 2 * alone.problem_count and stats.problems == alone.problems * 2


def test_strict_raises_the_same_error(mixed: Path) -> None:
    with pytest.raises(TelemetryInputError) as here:
        list(read(mixed / "traces.jsonl", strict=True))
    with pytest.raises(TelemetryInputError) as there:
        list(read_pipelined(mixed / "traces.jsonl", strict=True))
    assert str(there.value) == str(here.value)


def children() -> set[str]:
    """Process ids of this process's children, zombies included (Linux)."""
    return {
        pid for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()
    }


def test_stopping_early_ends_the_child(mixed: Path) -> None:
    before = children()
    records = read_pipelined(mixed / "traces.jsonl")
    next(records)
    assert len(children() - before) == 1
    started = time.monotonic()
    records.close()  # kills and reaps the child
    assert time.monotonic() - started < 5
    assert children() == before


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        status = analyze.main(argv)
    return status, out.getvalue()


def test_the_report_is_the_same(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [str(mixed / "traces.jsonl"), "--format", "json"]
    monkeypatch.setattr(run, "_wants_pipeline", lambda paths: False)
    alone = run_cli(argv)
    monkeypatch.setattr(run, "_wants_pipeline", lambda paths: True)
    piped = run_cli(argv)
    assert piped == alone
    report = json.loads(piped[1])
    assert any(r["rule"] == "n_plus_one" for r in report["recommendations"])


def cpus(monkeypatch: pytest.MonkeyPatch, mine: int, machine: int, running: list[int | None]) -> None:
    """``mine`` CPUs for this process of ``machine``, and ``running`` tasks at each read of /proc/stat."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(mine)))
    monkeypatch.setattr(os, "cpu_count", lambda: machine)
    reads = iter(running)
    monkeypatch.setattr(run, "_running_tasks", lambda: next(reads))
    monkeypatch.setattr(run, "FREE_CPU_SAMPLE_GAP_S", 0.0)


def test_the_cli_reads_large_inputs_in_a_second_process_when_a_cpu_is_free(
    mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "PIPELINE_MIN_BYTES", 1)
    cpus(monkeypatch, 2, 2, [1, 1, 1])  # this process alone runs: the other CPU is free
    assert run._wants_pipeline([str(mixed)])
    # a small input: never
    monkeypatch.setattr(run, "PIPELINE_MIN_BYTES", 1 << 40)
    cpus(monkeypatch, 2, 2, [1, 1, 1])
    assert not run._wants_pipeline([str(mixed)])


@pytest.mark.parametrize(
    ("mine", "machine", "running", "free"),
    [
        (2, 2, [1, 1, 1], 1.0),  # alone on two CPUs
        (2, 2, [2, 2, 2], 0.0),  # another busy process: no CPU for the child
        (2, 2, [2, 1, 1], 2 / 3),  # one busy a third of the time: under the bar
        (4, 4, [2, 3, 2], 1 + 2 / 3),
        (1, 8, [1, 1, 1], 0.0),  # one CPU for this process, whatever the machine has
        (2, 8, [8, 8, 8], 0.0),  # our two among eight, all eight busy elsewhere
    ],
)
def test_the_free_cpus_are_those_beside_this_process_and_the_running_tasks(
    monkeypatch: pytest.MonkeyPatch, mine: int, machine: int, running: list[int], free: float
) -> None:
    cpus(monkeypatch, mine, machine, running)
    assert run._free_cpus() == pytest.approx(free)
    cpus(monkeypatch, mine, machine, running)
    monkeypatch.setattr(run, "_input_reaches", lambda paths, size: True)
    assert run._wants_pipeline(["x"]) == (free >= run.PIPELINE_MIN_FREE_CPUS)


def test_without_proc_stat_the_load_average_tells_the_free_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus(monkeypatch, 2, 2, [None])
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 3.0, 3.0))
    assert run._free_cpus() == pytest.approx(0.8)
    cpus(monkeypatch, 2, 2, [None])
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert run._free_cpus() == pytest.approx(-0.5)


def test_running_tasks_are_read_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_bytes(b"cpu  1 2 3 4\nctxt 99\nprocs_running 3\nprocs_blocked 0\n")
    assert run._running_tasks(str(stat)) == 3
    stat.write_bytes(b"cpu  1 2 3 4\nprocs_running x\n")
    assert run._running_tasks(str(stat)) is None
    stat.write_bytes(b"cpu  1 2 3 4\n")
    assert run._running_tasks(str(stat)) is None
    assert run._running_tasks(str(tmp_path / "missing")) is None
    if os.path.exists("/proc/stat"):
        running = run._running_tasks()
        assert running is not None and running >= 1  # this test runs


def test_a_reading_process_that_dies_is_one_line_not_a_traceback(
    mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a reading process killed before it says anything (the OOM killer, say)
    assert threading.active_count() == 1, threading.enumerate()
    monkeypatch.setattr(pipeline, "_child", lambda paths, strict, write_fd: os._exit(9))
    with pytest.raises(ReaderProcessError, match="ended before the end of the input"):
        list(read_pipelined(mixed / "traces.jsonl"))
    # AND through the command: an exit code and one line on stderr
    monkeypatch.setattr(run, "_wants_pipeline", lambda paths: True)
    status, _ = run_cli([str(mixed / "traces.jsonl"), "--format", "json"])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "reading process ended" in err
