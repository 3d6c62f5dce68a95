"""zstd-compressed files, in the two layouts the Collector's ``file`` exporter writes with
``compression: zstd``: each request a frame after its 4-byte length (the default), or frames of JSON
lines end to end (the ``exporter.file.nativeCompression`` gate). The real Collector's output is read
in tests/test_collector_real.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard

from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_files import ZSTD_EXTRA
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.errors import TelemetryInputError


def request(first: int, count: int) -> bytes:
    """One ExportTraceServiceRequest of ``count`` spans, as compact JSON (no newline)."""
    spans = [
        {
            "traceId": "ab" * 16,
            "spanId": f"{first + i + 1:016x}",
            "name": "work",
            "kind": 1,
            "startTimeUnixNano": "1767000000000000000",
            "endTimeUnixNano": "1767000000001000000",
        }
        for i in range(count)
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


REQUESTS = [request(i * 10, 10) for i in range(5)]
SPAN_IDS = {f"{i + 1:016x}" for i in range(50)}


def framed(requests: list[bytes]) -> bytes:
    """The Collector's default: a 4-byte big-endian length, then the request's zstd frame."""
    out = b""
    for body in requests:
        frame = zstandard.ZstdCompressor().compress(body)
        out += len(frame).to_bytes(4, "big") + frame
    return out


def native(requests: list[bytes]) -> bytes:
    """The native layout: one zstd frame per write, each holding JSON lines."""
    return b"".join(zstandard.ZstdCompressor().compress(body + b"\n") for body in requests)


def span_ids(path: Path, **kwargs: Any) -> tuple[set[str], ReadStats]:
    stats = ReadStats()
    records = list(read([path], stats=stats, **kwargs))
    return {r.span_id for r in records if isinstance(r, SpanRecord)}, stats


@pytest.mark.parametrize("layout", [framed, native], ids=["framed", "native"])
def test_both_layouts_read_like_plain_lines(tmp_path: Path, layout: Any) -> None:
    # the Collector keeps the configured name (traces.jsonl) whether it compresses or not
    (tmp_path / "traces.jsonl").write_bytes(layout(REQUESTS))
    ids, stats = span_ids(tmp_path, strict=True)
    assert ids == SPAN_IDS
    assert stats.files_read == 1 and stats.lines_read == len(REQUESTS) and stats.problem_count == 0


def test_a_zst_name_is_found_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl.zst").write_bytes(native(REQUESTS[:2]))
    (tmp_path / "traces-2026-12-06T17-35-55.570-size.jsonl").write_bytes(framed(REQUESTS[2:]))
    (tmp_path / "notes.zst").write_bytes(native(REQUESTS[:1]))  # not a telemetry name
    ids, stats = span_ids(tmp_path, strict=True)
    assert ids == SPAN_IDS and stats.files_read == 2


def test_a_corrupt_frame_is_one_problem_naming_zstd(tmp_path: Path) -> None:
    data = bytearray(framed(REQUESTS))
    second = 4 + int.from_bytes(data[:4], "big")  # where the second request's length starts
    data[second + 12 : second + 20] = b"\xff" * 8  # inside the second frame's compressed block
    path = tmp_path / "traces.jsonl"
    path.write_bytes(bytes(data))
    ids, stats = span_ids(path)
    assert ids == {f"{i + 1:016x}" for i in range(10)}  # the first request, before the damage
    assert stats.problem_count == 1
    assert stats.problems[0].startswith(f"{path}:2: corrupt zstd data: "), stats.problems
    assert "\n" not in stats.problems[0]


def test_a_truncated_file_is_a_problem(tmp_path: Path) -> None:
    data = framed(REQUESTS)
    path = tmp_path / "traces.jsonl"
    path.write_bytes(data[:-5])
    ids, stats = span_ids(path)
    assert ids == {f"{i + 1:016x}" for i in range(40)}
    assert stats.problem_count == 1 and "truncated zstd frame" in stats.problems[0], stats.problems


def test_a_zstd_bomb_stops_at_the_ratio(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(b"\n" * (64 * 1024 * 1024)))
    ids, stats = span_ids(path)
    assert not ids and stats.problem_count == 1
    assert "zstd data expanding more than" in stats.problems[0], stats.problems


def test_without_zstandard_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard raises ImportError
    path = tmp_path / "traces.jsonl"
    path.write_bytes(framed(REQUESTS))
    ids, stats = span_ids(path)
    assert not ids and stats.problem_count == 1
    problem = stats.problems[0]
    assert problem.startswith(f"{path}: zstd-compressed") and "\n" not in problem
    assert f"pip install '{ZSTD_EXTRA}'" in problem
    with pytest.raises(TelemetryInputError, match=r"amqadf-agent\[zstd\]"):
        span_ids(path, strict=True)


def test_the_reader_imports_zstandard_only_for_a_zstd_file() -> None:
    import subprocess

    code = (
        "import sys; from amqadf_agent.analyzer.otlp_reader import read; "
        "list(read(['tests/fixtures/otlp'])); print('zstandard' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
