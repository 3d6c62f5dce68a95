"""The /proc readers of the collection path give psutil's values, read on the same machine."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

from amqadf_agent.monitoring import procfs
from amqadf_agent.monitoring.resources import ResourceMonitor


def test_the_readers_are_used_here() -> None:
    # CI and the supported production platform are Linux: the fast path must be on there.
    assert procfs.AVAILABLE
    assert ResourceMonitor()._procfs


def test_disk_bytes_are_psutils_per_disk_counters() -> None:
    ours = procfs.disk_bytes()
    theirs = psutil.disk_io_counters(perdisk=True)
    assert ours is not None and set(ours) == set(theirs)
    for name, (read, written) in ours.items():
        # psutil read a moment later: equal, or a little ahead on a busy disk
        assert 0 <= theirs[name].read_bytes - read <= 64 * 1024 * 1024, name
        assert 0 <= theirs[name].write_bytes - written <= 64 * 1024 * 1024, name


def test_net_bytes_are_psutils_per_interface_counters() -> None:
    ours = procfs.net_bytes()
    theirs = psutil.net_io_counters(pernic=True)
    assert ours is not None and set(ours) == set(theirs)
    for name, (received, sent) in ours.items():
        assert 0 <= theirs[name].bytes_recv - received <= 16 * 1024 * 1024, name
        assert 0 <= theirs[name].bytes_sent - sent <= 16 * 1024 * 1024, name


def test_own_process_is_what_psutil_reads() -> None:
    # GIVEN a few extra threads and an extra open file, so the counts are not trivially 1 and 3
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with open(__file__, "rb"):
            ours = procfs.own_process()
            proc = psutil.Process()
            with proc.oneshot():
                times, memory = proc.cpu_times(), proc.memory_info()
                num_threads, num_fds = proc.num_threads(), proc.num_fds()
                io, ctx = proc.io_counters(), proc.num_ctx_switches()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert ours is not None
    assert ours.num_threads == num_threads >= 4
    assert ours.num_fds == num_fds
    assert ours.vms == memory.vms
    assert abs(ours.rss - memory.rss) <= 1024 * 1024  # psutil's read allocates a little
    assert 0 <= times.user - ours.user <= 0.05 and 0 <= times.system - ours.system <= 0.05
    assert ours.io_read_bytes is not None and ours.io_write_bytes is not None
    assert io.read_bytes - ours.io_read_bytes >= 0 and io.write_bytes - ours.io_write_bytes >= 0
    assert 0 <= ctx.voluntary - ours.ctx_voluntary <= 100
    assert 0 <= ctx.involuntary - ours.ctx_involuntary <= 100


def test_an_unreadable_file_gives_none_and_the_monitor_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN /proc files that cannot be read
    real_open = open

    def denied(path: object, *args: object, **kwargs: object) -> object:
        if str(path).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", denied)
    # WHEN read THEN nothing raises, every reader says None
    assert procfs.disk_bytes() is None and procfs.net_bytes() is None and procfs.own_process() is None
    monkeypatch.undo()
    # AND a monitor whose fast readers fail still samples, through psutil
    monitor = ResourceMonitor()
    monitor.get_process_metrics()
    monkeypatch.setattr(procfs, "own_process", lambda: None)
    monkeypatch.setattr(procfs, "disk_bytes", lambda: None)
    monkeypatch.setattr(procfs, "net_bytes", lambda: None)
    sample, process = monitor.get_system_metrics(), monitor.get_process_metrics()
    assert process.pid == os.getpid() and process.rss > 0
    assert sample.memory_total == psutil.virtual_memory().total


def test_garbled_files_give_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbled = tmp_path / "garbled"
    garbled.write_bytes(b"header\nheader\nnot a table at all\n")
    monkeypatch.setattr(procfs, "_read", lambda path: garbled.read_bytes())
    assert procfs.disk_bytes() is None
    assert procfs.net_bytes() is None
    assert procfs.own_process() is None


def test_the_monitor_reads_its_own_process_without_psutil_after_the_first_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitor = ResourceMonitor()
    first = monitor.get_process_metrics()  # first sight: psutil (the process start time)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("psutil read on the collection path")

    for method in ("cpu_times", "memory_info", "num_threads", "num_fds", "io_counters", "is_running"):
        monkeypatch.setattr(psutil.Process, method, forbidden)
    monkeypatch.setattr(psutil, "disk_io_counters", forbidden)
    monkeypatch.setattr(psutil, "net_io_counters", forbidden)
    second = monitor.get_process_metrics()
    monitor.get_system_metrics()
    assert second.num_threads >= 1 and second.rss > 0
    assert second.cpu_user >= first.cpu_user


def test_a_procfs_path_of_psutils_own_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host's /proc mounted elsewhere (psutil.PROCFS_PATH): every reading must come from there.
    monitor = ResourceMonitor()
    assert monitor._procfs
    monkeypatch.setattr(psutil, "PROCFS_PATH", "/host/proc")
    assert not monitor._procfs
