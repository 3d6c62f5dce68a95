"""The /proc readers of the collection path give psutil's values, read on the same machine."""

from __future__ import annotations

import mmap
import os
import select
import signal
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
    # psutil lists /proc/self/fd, and counts the listing's own descriptor
    assert ours.num_fds == num_fds - 1
    assert ours.vms == memory.vms
    assert abs(ours.rss - memory.rss) <= 1024 * 1024  # psutil's read allocates a little
    assert 0 <= times.user - ours.user <= 0.05 and 0 <= times.system - ours.system <= 0.05
    assert ours.io_read_bytes is not None and ours.io_write_bytes is not None
    assert io.read_bytes - ours.io_read_bytes >= 0 and io.write_bytes - ours.io_write_bytes >= 0
    assert 0 <= ctx.voluntary - ours.ctx_voluntary <= 100
    assert 0 <= ctx.involuntary - ours.ctx_involuntary <= 100


def test_an_unreadable_file_gives_none_and_the_monitor_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN /proc files that cannot be opened (none kept open from an earlier read)
    procfs.close()
    real_open = os.open

    def denied(path: str, *args: int, **kwargs: int) -> int:
        if str(path).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    # WHEN read THEN nothing raises, every reader says None
    assert procfs.disk_bytes() is None and procfs.net_bytes() is None and procfs.own_process() is None
    assert procfs.cpu_times() is None and procfs.memory() is None
    assert procfs.own_process(counters=False) is None
    monkeypatch.undo()
    # AND a monitor whose fast readers fail still samples, through psutil
    monitor = ResourceMonitor()
    monitor.get_process_metrics()
    monkeypatch.setattr(procfs, "own_process", lambda counters=True: None)
    monkeypatch.setattr(procfs, "disk_bytes", lambda: None)
    monkeypatch.setattr(procfs, "net_bytes", lambda: None)
    monkeypatch.setattr(procfs, "cpu_times", lambda: None)
    monkeypatch.setattr(procfs, "memory", lambda: None)
    sample, process = monitor.get_system_metrics(), monitor.get_process_metrics()
    assert process.pid == os.getpid() and process.rss > 0
    assert sample.memory_total == psutil.virtual_memory().total


def test_garbled_files_give_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbled = tmp_path / "garbled"
    garbled.write_bytes(b"header\nheader\nnot a table at all\n")
    monkeypatch.setattr(procfs, "_read", lambda path, whole=True: garbled.read_bytes())
    assert procfs.disk_bytes() is None
    assert procfs.net_bytes() is None
    assert procfs.own_process() is None
    assert procfs.own_process(counters=False) is None
    assert procfs.cpu_times() is None
    assert procfs.memory() is None


def test_the_monitor_reads_its_own_process_without_psutil_after_the_first_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitor = ResourceMonitor()
    first = monitor.get_process_metrics()  # first sight: psutil (the process start time)
    monitor._collection_snapshot()  # the collection's own first sight (it keeps its own baseline)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("psutil read on the collection path")

    for method in ("cpu_times", "memory_info", "num_threads", "num_fds", "io_counters", "is_running"):
        monkeypatch.setattr(psutil.Process, method, forbidden)
    monkeypatch.setattr(psutil, "disk_io_counters", forbidden)
    monkeypatch.setattr(psutil, "net_io_counters", forbidden)
    monkeypatch.setattr(psutil, "cpu_times", forbidden)
    monkeypatch.setattr(psutil, "virtual_memory", forbidden)
    second = monitor.get_process_metrics()
    monitor.get_system_metrics()
    monitor._snapshot = None  # a new collection, however soon
    monitor._collection_snapshot()
    assert second.num_threads >= 1 and second.rss > 0
    assert second.cpu_user >= first.cpu_user


def test_a_procfs_path_of_psutils_own_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host's /proc mounted elsewhere (psutil.PROCFS_PATH): every reading must come from there.
    monitor = ResourceMonitor()
    assert monitor._procfs
    monkeypatch.setattr(psutil, "PROCFS_PATH", "/host/proc")
    assert not monitor._procfs


def test_cpu_times_are_psutils_by_mode() -> None:
    ours = procfs.cpu_times()
    theirs = psutil.cpu_times()  # read a moment later: equal, or a few ticks ahead
    assert ours is not None
    assert set(ours) == {"user", "nice", "system", "idle", "iowait", "interrupt", "steal"}
    expected = {
        "user": theirs.user,
        "nice": theirs.nice,
        "system": theirs.system,
        "idle": theirs.idle,
        "iowait": theirs.iowait,
        "interrupt": theirs.irq + theirs.softirq,
        "steal": theirs.steal,
    }
    for mode, seconds in ours.items():
        if mode == "iowait":  # the kernel's iowait count may go down (proc(5))
            assert abs(expected[mode] - seconds) <= 0.5 * psutil.cpu_count()
        else:
            assert 0 <= expected[mode] - seconds <= 0.5 * psutil.cpu_count(), mode


def test_memory_is_psutils_virtual_memory() -> None:
    ours = procfs.memory()
    theirs = psutil.virtual_memory()
    assert ours is not None and ours.total == theirs.total
    slack = 64 * 1024 * 1024  # the machine's memory moves between the two reads
    for field in ("available", "used", "free", "buffers", "cached"):
        assert abs(getattr(ours, field) - getattr(theirs, field)) <= slack, field
    assert ours.used == ours.total - ours.available
    assert ours.percent == pytest.approx(theirs.percent, abs=0.5)


def test_the_collection_reading_counts_threads_as_the_status_file_does() -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(5)]
    for t in threads:
        t.start()
    try:
        light, full = procfs.own_process(counters=False), procfs.own_process()
        theirs = psutil.Process().num_threads()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert light is not None and full is not None
    assert light.num_threads == full.num_threads == theirs >= 6
    assert light.io_read_bytes is None and light.ctx_voluntary is None  # not read: not exported
    assert light.vms == full.vms


def test_a_kept_file_is_read_fresh_each_time_and_whole_however_long(tmp_path: Path) -> None:
    # the same descriptor, read again: the new text (here a regular file rewritten in place)
    path = tmp_path / "counters"
    path.write_bytes(b"a" * 100)
    assert procfs._read(str(path)) == b"a" * 100
    big = bytes(range(256)) * 200  # 51 200 bytes: more than the first read takes
    with open(path, "r+b") as f:
        f.write(big)
    assert procfs._read(str(path)) == big
    # and a /proc figure moves between two reads of the kept descriptor (statm: the RSS)
    before = procfs.own_process()
    ballast = b"x" * (64 * 1024 * 1024)  # written, so resident
    after = procfs.own_process()
    assert before is not None and after is not None and len(ballast)
    assert after.rss - before.rss >= 48 * 1024 * 1024
    procfs.close()


def test_a_file_that_comes_a_page_per_read_is_read_to_its_end() -> None:
    # /proc/self/maps, like /proc/net/dev and /proc/diskstats (one record per line), gives at most
    # a page per read whatever the size asked for; this process's is ~20 KB
    procfs.close()
    fd = os.open("/proc/self/maps", os.O_RDONLY)
    try:
        one_read = os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    with open("/proc/self/maps", "rb") as f:
        whole = f.read()
    assert len(one_read) < len(whole)  # the situation this test is about
    ours = procfs._read("/proc/self/maps")
    assert ours is not None and len(ours) > len(one_read)
    # (mappings may come and go between the reads: the same end, about the same length)
    assert ours.splitlines()[-1] == whole.splitlines()[-1]
    assert abs(len(ours) - len(whole)) < len(whole) // 4
    procfs.close()


def test_many_devices_are_all_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a kernel that hands /proc/net/dev over 100 bytes per read, as it does a page at a time
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: real_pread(fd, min(n, 100), offset))
    procfs.close()
    # WHEN read THEN every interface is there, as psutil (which reads to the end) lists them
    ours = procfs.net_bytes()
    assert ours is not None and set(ours) == set(psutil.net_io_counters(pernic=True))
    procfs.close()


def _statm_vms() -> int:
    """This process's virtual size from a fresh open of /proc/self/statm (not a kept descriptor)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def test_a_forked_child_reads_its_own_process_not_its_parents() -> None:
    # GIVEN the parent's /proc/self files kept open
    parent = procfs.own_process()
    light_parent = procfs.own_process(counters=False)
    assert parent is not None and light_parent is not None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new 256 MB mapping the parent does not have, then read
        try:
            extra = mmap.mmap(-1, 256 * 1024 * 1024)
            child, light = procfs.own_process(), procfs.own_process(counters=False)
            fresh = _statm_vms()
            ok = child is not None and light is not None and len(extra) > 0
            answer = f"{child.vms if ok else -1} {light.vms if ok else -1} {fresh}"  # type: ignore[union-attr]
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 30.0)
    answer = os.read(read_end, 100).decode() if ready else "-1 -1 -1"
    os.close(read_end)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    full, light, fresh = (int(n) for n in answer.split())
    # THEN both readings are the child's own (what a fresh open says), not the parent's
    slack = 32 * 1024 * 1024
    assert abs(full - fresh) <= slack and abs(light - fresh) <= slack
    assert full - parent.vms >= 256 * 1024 * 1024 - slack


def test_a_kept_descriptor_closed_behind_its_back_is_never_read_nor_closed(tmp_path: Path) -> None:
    # GIVEN /proc/meminfo kept open, then closed by code that does not own it (os.closerange),
    # and the application's next file opened under the same number
    procfs.close()
    assert procfs.memory() is not None
    kept = procfs._held.files["/proc/meminfo"].fd
    os.close(kept)
    app_fd = os.open(tmp_path / "app.log", os.O_RDWR | os.O_CREAT)
    try:
        assert app_fd == kept  # the lowest free number: the situation this test is about
        os.write(app_fd, b"the application's own data\n")
        # WHEN the monitor reads memory again
        ours = procfs.memory()
        # THEN it reopened /proc/meminfo, and the application's file is still open and untouched
        assert ours is not None and ours.total == psutil.virtual_memory().total
        assert os.fstat(app_fd).st_size == len(b"the application's own data\n")
        assert os.pread(app_fd, 100, 0) == b"the application's own data\n"
    finally:
        os.close(app_fd)
        procfs.close()
