"""The file exporter on hostile or unlucky ground: a planted fallback directory, a full disk.

These tests run as root where they can (as CI does), the case that matters: root ignores file
permissions, so only the owner, mode and symlink checks stand between its telemetry and a file
another user chose.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest

import amqadf_agent
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
