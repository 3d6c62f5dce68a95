"""The file exporter on hostile or unlucky ground: a planted fallback directory, a full disk.

These tests run as root where they can (as CI does), the case that matters: root ignores file
permissions, so only the owner, mode and symlink checks stand between its telemetry and a file
another user chose.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import dropped_spans

import amqadf_agent
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.runtime.file_exporter import RotatingLineWriter

OTHER_UID = 65534  # nobody


def _unwritable_output_dir(tmp_path: Path) -> Path:
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory\n")
    return afile / "sub"  # cannot be created even by root


def _secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "root-only"
    secret.write_bytes(b"root's own data\n")
    secret.chmod(0o600)
    return secret


@pytest.fixture
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /tmp (sticky, world-writable): the tests plant nothing in the real one."""
    root = tmp_path / "systmp"
    root.mkdir()
    root.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _start_with_fallback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> tuple[amqadf_agent.Agent, str]:
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=_unwritable_output_dir(tmp_path), self_metrics=False
    )
    assert agent.running, agent.error
    with agent.tracer("app").start_as_current_span("work"):
        pass
    assert agent.shutdown()
    lines = [r.getMessage() for r in caplog.records if "AMQADF_OUTPUT_DIR" in r.getMessage()]
    assert len(lines) == 1, lines
    return agent, lines[0]


def _assert_private(directory: Path) -> None:
    info = os.lstat(directory)
    assert stat.S_ISDIR(info.st_mode)
    assert info.st_uid == os.getuid()
    assert stat.S_IMODE(info.st_mode) & 0o077 == 0, oct(info.st_mode)
    assert (directory / "traces.jsonl").read_bytes().count(b"\n") == 1


def test_fallback_directory_is_created_private(
    tmp_path: Path, system_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent, line = _start_with_fallback(tmp_path, caplog)
    shared = system_tmp / f"amqadf-telemetry-{os.getuid()}"
    assert agent.output_dir == shared
    _assert_private(shared)
    assert f"writing to {str(shared)!r}" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a directory of another user takes root")
def test_fallback_directory_of_another_user_is_not_written_through(
    tmp_path: Path, system_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN another user's directory at the well-known name, with traces.jsonl a symlink to a
    # file only root may read
    secret = _secret_file(tmp_path)
    planted = system_tmp / f"amqadf-telemetry-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    (planted / "traces.jsonl").symlink_to(secret)
    os.chown(planted, OTHER_UID, OTHER_UID)
    # WHEN a root process falls back to the temporary directory
    agent, line = _start_with_fallback(tmp_path, caplog)
    # THEN nothing reaches the planted directory or the file it points at
    assert secret.read_bytes() == b"root's own data\n"
    assert sorted(p.name for p in planted.iterdir()) == ["traces.jsonl"]
    assert agent.output_dir is not None and agent.output_dir != planted
    assert agent.output_dir.parent == system_tmp
    _assert_private(agent.output_dir)
    # and the one warning says where the telemetry went, and why not to the usual place
    assert f"writing to {str(agent.output_dir)!r}" in line
    assert f"belongs to uid {OTHER_UID}" in line


def test_fallback_name_that_is_a_symlink_is_not_followed(
    tmp_path: Path, system_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (system_tmp / f"amqadf-telemetry-{os.getuid()}").symlink_to(elsewhere)
    agent, line = _start_with_fallback(tmp_path, caplog)
    assert list(elsewhere.iterdir()) == []
    assert agent.output_dir is not None and agent.output_dir.parent == system_tmp
    _assert_private(agent.output_dir)
    assert "is a symlink" in line


def test_fallback_directory_open_to_others_is_not_used(
    tmp_path: Path, system_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = system_tmp / f"amqadf-telemetry-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    agent, line = _start_with_fallback(tmp_path, caplog)
    assert list(shared.iterdir()) == []
    assert agent.output_dir is not None and agent.output_dir != shared
    _assert_private(agent.output_dir)
    assert "is open to other users (mode 777)" in line


def test_writer_does_not_follow_a_symlinked_file(tmp_path: Path) -> None:
    secret = _secret_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "traces.jsonl").symlink_to(secret)
    with pytest.raises(OSError):
        RotatingLineWriter(out, "traces", max_bytes=10_000, max_backups=1)
    assert secret.read_bytes() == b"root's own data\n"


def test_symlinked_file_in_output_dir_sends_telemetry_to_the_private_fallback(
    tmp_path: Path, system_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = _secret_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "traces.jsonl").symlink_to(secret)
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(exporters=["file"], output_dir=out, self_metrics=False)
    assert agent.running, agent.error
    with agent.tracer("app").start_as_current_span("work"):
        pass
    assert agent.shutdown()
    assert secret.read_bytes() == b"root's own data\n"
    assert agent.output_dir is not None and agent.output_dir.parent == system_tmp
    _assert_private(agent.output_dir)


# --- a full disk: a failed batch leaves no torn line, and later batches are whole ----------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB file system (tmpfs), full after a few batches, as a disk fills in production."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (CI runs as root, where it can): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _span_ids(path: Path) -> list[str]:
    stats = ReadStats()
    found = [r.span_id for r in read(path, strict=True, stats=stats) if isinstance(r, SpanRecord)]
    assert stats.problem_count == 0
    return found


def _spans_only_agent(disk: Path, **settings: Any) -> amqadf_agent.Agent:
    """An agent writing its spans, and no metrics at all, to ``disk`` (the room a test frees is for
    the spans); a batch is exported when the test flushes."""
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=disk,
        metric_interval=60,
        span_export_delay=60,
        self_metrics=False,
        resource_monitor=False,
        service_name="full-disk",
        **settings,
    )
    assert agent.running, agent.error
    return agent


def _ten_spans(agent: amqadf_agent.Agent) -> list[str]:
    """One exported line of 10 spans (about 4 KB): the ids of the spans made."""
    made = []
    for i in range(10):
        with agent.tracer("app").start_as_current_span("work", attributes={"pad": "p" * 200, "i": i}) as span:
            pass
        made.append(format(span.get_span_context().span_id, "016x"))
    assert agent.force_flush(timeout=5.0)
    return made


def test_disk_that_fills_and_frees_keeps_every_line_whole_and_counts_what_was_lost(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"f" * 32_000)  # freed later, as an operator frees a disk
    agent = _spans_only_agent(small_disk)
    before_full: list[str] = []
    rounds = 0
    while dropped_spans(agent) == 0:
        assert rounds < 40, "the disk never filled"
        made = _ten_spans(agent)
        if dropped_spans(agent) == 0:
            before_full += made
        rounds += 1
    lost = 10 + sum(len(_ten_spans(agent)) for _ in range(2))  # still full: dropped and counted
    assert dropped_spans(agent) == lost

    filler.unlink()
    after_freed = [span for _ in range(3) for span in _ten_spans(agent)]
    assert dropped_spans(agent) == lost  # the disk has room again: nothing more lost
    assert agent.shutdown(timeout=5.0)

    traces = small_disk / "traces.jsonl"
    data = traces.read_bytes()
    assert data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        orjson.loads(line)  # every line whole: none torn, none glued to another
    assert _span_ids(traces) == before_full + after_freed


def test_rotation_goes_on_after_a_full_disk_frees_and_every_span_is_on_disk_or_counted(
    small_disk: Path,
) -> None:
    # GIVEN files that rotate at every batch, on a disk half taken by a filler
    filler = small_disk / "filler"
    filler.write_bytes(b"f" * 32_000)
    agent = _spans_only_agent(
        small_disk,
        file_max_bytes=6_000,
        file_max_backups=100,  # none pruned: every span written stays on disk
    )
    made = 0

    def batch() -> None:
        nonlocal made
        made += len(_ten_spans(agent))

    def dropped() -> int:
        return dropped_spans(agent)

    def trace_files() -> set[str]:
        return {path.name for path in small_disk.glob("traces*.jsonl")}

    # WHEN the disk fills up (two more batches are tried on the full disk), then is freed
    rounds = 0
    while dropped() == 0:
        assert rounds < 40, "the disk never filled"
        batch()
        rounds += 1
    batch()
    batch()
    lost = dropped()
    files_when_full = trace_files()
    filler.unlink()
    for _ in range(3):  # each in a file of its own, two 4 KiB pages: 24 KiB of the 31 freed
        batch()
    assert agent.shutdown(timeout=5.0)

    # THEN writing and rotation went on: new backups after the disk had room again
    assert lost == 30 and dropped() == lost
    assert len(trace_files() - files_when_full) >= 1
    # AND every span made is in a file or counted as dropped, every line whole
    on_disk = 0
    for name in trace_files():
        data = (small_disk / name).read_bytes()
        assert data == b"" or data.endswith(b"\n")
        on_disk += len(_span_ids(small_disk / name))
    assert on_disk + lost == made


def test_short_write_past_the_file_size_limit_leaves_whole_lines(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel writes up to the limit, then fails (EFBIG), as on a full disk."""
    script = f"""
import os, resource
from pathlib import Path
from amqadf_agent.runtime.file_exporter import RotatingLineWriter

_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (25_000, hard))
writer = RotatingLineWriter(Path({str(tmp_path)!r}), "lines", max_bytes=1_000_000, max_backups=1)
outcomes = []
for i in range(5):
    try:
        writer.write(str(i).encode() * 9_999 + b"\\n")
        outcomes.append("ok")
    except OSError as exc:
        outcomes.append(type(exc).__name__)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
writer.write(b"5" * 9_999 + b"\\n")
print(" ".join(outcomes))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "ok", "OSError", "OSError", "OSError"]
    lines = (tmp_path / "lines.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [line[:1] for line in lines[:-1]] == [b"0", b"1", b"5"]
    assert all(len(line) == 9_999 for line in lines[:-1])
