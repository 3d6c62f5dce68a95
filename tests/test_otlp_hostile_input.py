"""Input that is not telemetry never hangs the reader, nor makes it spend time or memory out of
proportion: special files, decompression bombs, runs of blank or bad lines, a line over the limit,
invalid UTF-8 and binary (protobuf) files each end as a problem of one line, read or skipped alike
in lenient and strict mode."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from amqadf_agent.analyzer import otlp_files
from amqadf_agent.analyzer.otlp_reader import (
    MAX_BAD_LINES_IN_A_ROW,
    MAX_GZIP_RATIO,
    MAX_LINE_BYTES,
    ReadStats,
    read,
)
from amqadf_agent.analyzer.pipeline import read_pipelined
from amqadf_agent.errors import TelemetryInputError

MIB = 1024 * 1024
SPAN_LINE = orjson.dumps(
    {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "op",
                                "kind": 2,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "3000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
)


def read_all(*paths: Any, strict: bool = False) -> tuple[list[Any], ReadStats]:
    """``read`` in a thread: a reader that blocks (in ``open`` of a FIFO, say) fails the test instead
    of hanging the suite. The wait is a safety net, not a measure: the reads here take milliseconds."""
    stats = ReadStats()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(list(read(list(paths), strict=strict, stats=stats)))
        except TelemetryInputError as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the reader blocked"
    if isinstance(outcome[0], TelemetryInputError):
        raise outcome[0]
    return outcome[0], stats


def gzip_of(unit: bytes, total: int) -> bytes:
    """About ``total`` bytes of ``unit`` repeated, gzipped at the cost of compressing 1 MiB: gzip
    members, each of 1 MiB, concatenated (a reader reads them as one stream)."""
    member = gzip.compress(unit * (MIB // len(unit)), compresslevel=9)
    return member * (total // MIB)


# --- special files -------------------------------------------------------------------------------------


def test_a_fifo_in_a_directory_is_skipped_as_a_problem(tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(SPAN_LINE + b"\n")
    fifo = tmp_path / "logs.jsonl"
    os.mkfifo(fifo)
    records, stats = read_all(tmp_path)
    assert len(records) == 1
    assert stats.problems == [f"{fifo}: not a regular file (a FIFO)"]
    with pytest.raises(TelemetryInputError, match=r"logs\.jsonl: not a regular file \(a FIFO\)$"):
        read_all(tmp_path, strict=True)


def test_a_fifo_named_on_the_command_line_is_a_problem(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    records, stats = read_all(fifo)
    assert records == [] and stats.files_read == 0
    assert stats.problems == [f"{fifo}: not a regular file (a FIFO)"]
    with pytest.raises(TelemetryInputError, match=r"pipe: not a regular file \(a FIFO\)$"):
        read_all(fifo, strict=True)


def test_a_character_device_is_a_problem_not_an_endless_read() -> None:
    records, stats = read_all("/dev/zero")
    assert records == [] and stats.problems == ["/dev/zero: not a regular file (a character device)"]
    with pytest.raises(TelemetryInputError, match="character device"):
        read_all("/dev/zero", strict=True)


def test_a_socket_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        records, stats = read_all(tmp_path)
    assert records == [] and stats.problems == [f"{path}: not a regular file (a socket)"]


# --- sizes ---------------------------------------------------------------------------------------------


def test_a_gzip_of_newlines_is_read_only_up_to_the_expansion_limit(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(gzip_of(b"\n", 100 * MIB))
    records, stats = read_all(path)
    assert records == []
    assert 0 < stats.lines_read < 100 * MIB  # stopped early, not at the end of the newlines
    assert stats.problem_count == 1
    assert f"gzip data expanding more than {MAX_GZIP_RATIO} times" in stats.problems[0]
    assert stats.problems[0].startswith(f"{path}:{stats.lines_read}: ")


def test_a_gzip_that_real_telemetry_fills_is_read_whole(tmp_path: Path) -> None:
    # 2 MiB of the same span line (past the first check of the expansion) compresses far less
    # than a bomb: distinct ids and times, as in any export.
    lines = [
        SPAN_LINE.replace(b"b7ad6b7169203331", f"{i:016x}".encode()).replace(b'"3000"', f'"{i}"'.encode())
        for i in range(1, 2 * MIB // len(SPAN_LINE) + 2)
    ]
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    records, stats = read_all(path)
    assert len(records) == len(lines) and stats.problem_count == 0


def test_runs_of_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    # A run of blank lines longer than any buffer, with spaces and CRs, then a bad line: its number
    # is right, so every blank line was counted.
    blank = b"\n" * (3 * MIB) + b"  \r\n\t\n" * 1000
    path = tmp_path / "t.jsonl"
    path.write_bytes(SPAN_LINE + b"\n" + blank + b"   " + SPAN_LINE + b"\n" + blank + b"{nope\n   ")
    records, stats = read_all(path)
    blank_lines = blank.count(b"\n")
    assert len(records) == 2
    assert stats.lines_read == 1 + blank_lines + 1 + blank_lines + 1 + 1
    assert [problem.split(": ")[0] for problem in stats.problems] == [f"{path}:{2 * blank_lines + 3}"]


def test_a_gzip_of_empty_objects_stops_after_a_run_of_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(gzip_of(b"{}\n", 100 * MIB))
    records, stats = read_all(path)
    assert records == [] and stats.lines_read == MAX_BAD_LINES_IN_A_ROW
    assert stats.problem_count == MAX_BAD_LINES_IN_A_ROW + 1
    assert stats.problems[0] == f"{path}:1: no resourceSpans, resourceMetrics or resourceLogs"
    with pytest.raises(TelemetryInputError, match=":1: no resourceSpans"):
        read_all(path, strict=True)


def test_the_run_of_bad_lines_ends_in_one_problem_that_says_the_rest_was_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_files, "MAX_BAD_LINES_IN_A_ROW", 5)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"nope\n" * 20 + SPAN_LINE + b"\n")
    records, stats = read_all(path)
    assert records == [] and stats.lines_read == 5 and stats.problem_count == 6
    assert stats.problems[-1] == f"{path}:5: 5 lines in a row are not OTLP JSON, the rest of the file skipped"


def test_bad_lines_between_good_ones_do_not_stop_the_file(tmp_path: Path) -> None:
    chunk = b"{}\n" * (MAX_BAD_LINES_IN_A_ROW - 1) + SPAN_LINE + b"\n"
    path = tmp_path / "t.jsonl"
    path.write_bytes(chunk * 3)
    records, stats = read_all(path)
    assert len(records) == 3 and stats.problem_count == 3 * (MAX_BAD_LINES_IN_A_ROW - 1)


def test_a_line_over_the_limit_is_skipped_holding_no_more_than_the_limit(tmp_path: Path) -> None:
    # A valid line (unknown fields are ignored) a little over the limit, then a good one.
    path = tmp_path / "long.jsonl"
    with path.open("wb") as out:
        out.write(b'{"resourceSpans": [], "padding": "')
        for _ in range(MAX_LINE_BYTES // MIB + 6):
            out.write(b"a" * MIB)
        out.write(b'"}\n' + SPAN_LINE + b"\n")
    script = textwrap.dedent(
        f"""
        import resource, sys
        from amqadf_agent.analyzer.otlp_reader import ReadStats, read
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats = ReadStats()
        records = list(read({str(path)!r}, stats=stats))
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        print(len(records), grown, stats.problems)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    count, grown, problems = result.stdout.split(" ", 2)
    assert count == "1"
    assert f"{path}:1: line longer than {MAX_LINE_BYTES} bytes" in problems
    # Reading it whole (and parsing it) would take several times its size.
    assert int(grown) < 1.5 * MAX_LINE_BYTES


# --- encodings -----------------------------------------------------------------------------------------


def test_invalid_utf8_is_reported_at_its_byte(tmp_path: Path) -> None:
    line = b'{"resourceSpans": [{"schemaUrl": "caf\xe9"}]}'
    path = tmp_path / "t.jsonl"
    path.write_bytes(SPAN_LINE + b"\n" + line + b"\n")
    records, stats = read_all(path)
    assert len(records) == 1
    column = line.index(b"\xe9") + 1
    assert stats.problems == [f"{path}:2: invalid UTF-8 at byte {column}"]


def test_invalid_utf8_in_a_document_is_reported_at_its_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    bad_line = b'    {"schemaUrl": "\xff"}'
    path.write_bytes(b'{\n  "resourceSpans": [\n' + bad_line + b"\n  ]\n}\n")
    records, stats = read_all(path)
    column = bad_line.index(b"\xff") + 1
    assert records == [] and stats.problems == [f"{path}:3: invalid UTF-8 at byte {column}"]


def protobuf_export() -> bytes:
    spans = [
        Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=i.to_bytes(8, "big"),
            name=f"GET /items/{i}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_000_100_000_000 + i,
        )
        for i in range(1, 500)
    ]
    service = KeyValue(key="service.name", value=AnyValue(string_value="shop"))
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=Resource(attributes=[service]), scope_spans=[ScopeSpans(spans=spans)])
        ]
    )
    return request.SerializeToString()


@pytest.mark.parametrize("compressed", [False, True])
def test_a_protobuf_export_is_one_problem_saying_the_file_is_binary(tmp_path: Path, compressed: bool) -> None:
    data = protobuf_export()
    path = tmp_path / ("traces.jsonl.gz" if compressed else "traces.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    records, stats = read_all(tmp_path)
    assert records == [] and stats.problem_count == 1
    assert stats.problems[0].startswith(f"{path}: looks binary (OTLP protobuf?); ")
    assert "the analyzer reads OTLP JSON" in stats.problems[0]
    with pytest.raises(TelemetryInputError, match="looks binary"):
        read_all(path, strict=True)


def test_json_with_a_stray_control_character_is_not_taken_for_binary(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\x01" + SPAN_LINE + b"\n" + SPAN_LINE + b"\n")
    records, stats = read_all(path)
    assert len(records) == 1 and stats.problem_count == 1
    assert stats.problems[0].startswith(f"{path}:1: not JSON")


# --- the reading child of the pipeline -----------------------------------------------------------------


def test_the_pipeline_reads_hostile_input_as_read_does(tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_bytes(SPAN_LINE + b"\n")
    os.mkfifo(tmp_path / "logs.jsonl")
    (tmp_path / "spans.jsonl").write_bytes(protobuf_export())
    (tmp_path / "bomb.jsonl.gz").write_bytes(gzip_of(b"\n", 20 * MIB))
    (tmp_path / "empty-objects.jsonl").write_bytes(b"{}\n" * (MAX_BAD_LINES_IN_A_ROW + 5))
    assert threading.active_count() == 1  # else read_pipelined reads here: nothing would be compared
    here = ReadStats()
    records = repr(list(read(tmp_path, stats=here)))
    there = ReadStats()
    assert repr(list(read_pipelined(tmp_path, stats=there))) == records
    assert there == here
    assert here.problem_count == 1 + 1 + 1 + MAX_BAD_LINES_IN_A_ROW + 1


@pytest.mark.parametrize(
    ("encoding", "named"),
    [
        ("utf-16", "UTF-16"),  # with a byte order mark, as PowerShell's > writes it
        ("utf-16-le", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE"),
        ("utf-32", "UTF-32"),
        ("utf-32-le", "UTF-32LE"),
        ("utf-32-be", "UTF-32BE"),
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_a_utf16_or_utf32_file_is_one_problem_saying_how_to_convert_it(
    tmp_path: Path, encoding: str, named: str, compressed: bool
) -> None:
    text = (SPAN_LINE.decode() + "\n") * 50
    data = text.encode(encoding)
    path = tmp_path / ("traces.jsonl.gz" if compressed else "traces.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    records, stats = read_all(tmp_path)
    assert records == []
    assert stats.problems == [
        f"{path}: the file is {named}, not UTF-8; convert it with iconv -f {named} -t UTF-8"
    ]
    with pytest.raises(TelemetryInputError, match=f"the file is {named}, not UTF-8"):
        read_all(path, strict=True)
    if shutil.which("iconv") is None:
        return
    converted = subprocess.run(
        ["iconv", "-f", named, "-t", "UTF-8"], input=data, capture_output=True, check=True
    ).stdout
    assert converted == text.encode()  # the command the line gives does convert it
