"""Linux ``/proc`` readers for the resource monitor's collection path, cheaper than psutil's.

Why: one collection reads the same few kernel files every time, and psutil's general-purpose
readers spend most of their time around the read: ``disk_io_counters(perdisk=True)`` ~66 µs,
``net_io_counters(pernic=True)`` ~40 µs, ``virtual_memory()`` ~28 µs, ``cpu_times()`` ~17 µs, and
``Process.oneshot()`` with the six readings the monitor takes ~67 µs plus ``is_running()`` ~13 µs
here. These read the same files and compute the same values as psutil 7
(``tests/test_procfs.py`` compares them on the machine) in a fraction of that
(``tests/bench/bench_resource_monitor.py``).

Each file is opened once and re-read from offset 0 with ``pread`` (the kernel regenerates a /proc
file's text on every read): an open and a close cost more than the read itself here (~13 µs per
file against ~5). The descriptors (at most seven, close-on-exec) are re-opened in a forked child,
whose ``/proc/self`` is another process.

Every reader returns ``None`` when a file is missing, unreadable or not in the expected format;
the monitor then uses psutil for that reading. Nothing here raises.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import NamedTuple

__all__ = [
    "AVAILABLE",
    "Memory",
    "OwnProcess",
    "close",
    "cpu_times",
    "disk_bytes",
    "memory",
    "net_bytes",
    "own_process",
]

#: The kernel counts /proc/diskstats sectors in 512-byte units, whatever the device's sector size.
_SECTOR = 512
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Bytes asked for per read, and the most read of one file.
_READ_SIZE = 16384
_MAX_READ = 16 * 1024 * 1024
#: True where these readers can work (Linux with /proc mounted).
AVAILABLE = sys.platform.startswith("linux") and os.path.exists("/proc/self/statm")


class _File(NamedTuple):
    """A kept /proc file: its descriptor and its identity."""

    fd: int
    ino: int
    dev: int


class _Held:
    """The kept /proc files, by path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.files: dict[str, _File] = {}

    def close(self) -> None:
        files, self.files = self.files, {}
        for file in files.values():
            _close_if_ours(file)


_held = _Held()


def _ours(file: _File) -> bool:
    """Whether ``file.fd`` is still the file we opened: code that closes descriptors it does not
    own (``os.closerange``) may have closed it, and a new file of the application may have its
    number now. That one must be neither read nor closed."""
    try:
        st = os.fstat(file.fd)
    except OSError:
        return False
    return st.st_ino == file.ino and st.st_dev == file.dev


def _close_if_ours(file: _File) -> None:
    if _ours(file):
        with contextlib.suppress(OSError):
            os.close(file.fd)


def _open(path: str) -> _File:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    return _File(fd, st.st_ino, st.st_dev)


def _read(path: str, whole: bool = True) -> bytes | None:
    """The text of a /proc file, read through its kept descriptor; None when unreadable.

    A file listing one record per device (``/proc/net/dev``, ``/proc/diskstats``) comes a page
    (~4 KB) per read whatever the size asked for, so it is read on until a read returns nothing.
    ``whole=False`` stops after the first read (enough for a first line). ``pread`` never moves the
    descriptor's offset.
    """
    held = _held
    with held.lock:
        if held.pid != os.getpid():  # forked without the at-fork hook: the parent's /proc/self
            held.close()
            held.pid = os.getpid()
        file = held.files.get(path)
        if file is not None and not _ours(file):
            del held.files[path]  # no longer ours: forget it, never close it
            file = None
        try:
            if file is None:
                file = held.files[path] = _open(path)
            data = os.pread(file.fd, _READ_SIZE, 0)
            if not whole or not data:
                return data
            chunks = [data]
            offset = len(data)
            while chunk := os.pread(file.fd, _READ_SIZE, offset):
                chunks.append(chunk)
                offset += len(chunk)
                if offset > _MAX_READ:
                    return None  # not a file this module reads: never half of one
        except OSError:
            if file is not None:
                held.files.pop(path, None)
                _close_if_ours(file)
            return None
        return data if len(chunks) == 1 else b"".join(chunks)


def close() -> None:
    """Close the kept descriptors (they are opened again on the next read)."""
    with _held.lock:
        _held.close()


def _after_fork_in_child() -> None:
    global _held
    stale, _held = _held, _Held()  # a fresh lock: the parent's may have been held at the fork
    stale.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def cpu_times() -> dict[str, float] | None:
    """Seconds all CPUs spent per ``cpu.mode`` since boot, as the monitor maps ``psutil.cpu_times()``:
    ``irq`` and ``softirq`` as ``interrupt``; ``guest`` and ``guest_nice`` left out (Linux already
    counts them in ``user`` and ``nice``)."""
    data = _read("/proc/stat", whole=False)  # the first line; the rest can be tens of KB
    if data is None:
        return None
    try:
        fields = data[: data.index(b"\n")].split()
        if len(fields) < 5 or fields[0] != b"cpu":
            return None
        ticks = [int(x) / _TICKS for x in fields[1:9]]
    except (ValueError, IndexError):
        return None
    modes = {"user": ticks[0], "nice": ticks[1], "system": ticks[2], "idle": ticks[3]}
    n = len(ticks)
    if n > 4:
        modes["iowait"] = ticks[4]
    if n > 5:
        modes["interrupt"] = sum(ticks[5:7])
    if n > 7:
        modes["steal"] = ticks[7]
    return modes


class Memory(NamedTuple):
    """The machine's memory in bytes, as ``psutil.virtual_memory()`` (Linux) computes it."""

    total: int
    available: int
    percent: float
    used: int
    free: int
    buffers: int
    cached: int


def _kib(text: bytes, key: bytes) -> int:
    """The number after ``key`` in ``/proc/meminfo`` (kB); 0 when the line is absent."""
    start = text.find(key)
    if start < 0:
        return 0
    start += len(key)
    return int(text[start : text.index(b"\n", start)].split()[0])


def memory() -> Memory | None:
    """``psutil.virtual_memory()``'s fields from ``/proc/meminfo``; None on kernels without
    ``MemAvailable`` (before 3.14: psutil estimates it from other files) or when it reads 0."""
    data = _read("/proc/meminfo")
    if data is None:
        return None
    text = b"\n" + data
    try:
        total, free = _kib(text, b"\nMemTotal:") * 1024, _kib(text, b"\nMemFree:") * 1024
        available = _kib(text, b"\nMemAvailable:") * 1024
        buffers = _kib(text, b"\nBuffers:") * 1024
        cached = (_kib(text, b"\nCached:") + _kib(text, b"\nSReclaimable:")) * 1024
    except (ValueError, IndexError):
        return None
    if available <= 0 or total <= 0:
        return None
    if available > total:  # psutil: a container's distorted view; take free instead
        available = free
    used = total - available
    return Memory(
        total=total,
        available=available,
        percent=round(used / total * 100, 1),
        used=used,
        free=free,
        buffers=buffers,
        cached=cached,
    )


def disk_bytes() -> dict[str, tuple[int, int]] | None:
    """Bytes read and written per block device and partition, as ``disk_io_counters(perdisk=True)``."""
    data = _read("/proc/diskstats")
    if data is None:
        return None
    result: dict[str, tuple[int, int]] = {}
    try:
        for line in data.splitlines():
            fields = line.split()
            n = len(fields)
            if n == 14 or n >= 18:  # a disk (Linux 2.6+; 4.18 and 5.5 add fields at the end)
                read_sectors, written_sectors = fields[5], fields[9]
            elif n == 7:  # a partition on Linux 2.6
                read_sectors, written_sectors = fields[4], fields[6]
            elif n == 15:  # Linux 2.4: the name is one field later
                result[fields[3].decode()] = (int(fields[6]) * _SECTOR, int(fields[10]) * _SECTOR)
                continue
            else:
                return None
            result[fields[2].decode()] = (int(read_sectors) * _SECTOR, int(written_sectors) * _SECTOR)
    except (ValueError, UnicodeDecodeError):
        return None
    return result


def net_bytes() -> dict[str, tuple[int, int]] | None:
    """Bytes received and sent per interface, as ``net_io_counters(pernic=True)``."""
    data = _read("/proc/net/dev")
    if data is None:
        return None
    result: dict[str, tuple[int, int]] = {}
    try:
        for line in data.splitlines()[2:]:
            colon = line.rfind(b":")
            if colon <= 0:
                return None
            fields = line[colon + 1 :].split()
            result[line[:colon].strip().decode()] = (int(fields[0]), int(fields[8]))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    return result


class OwnProcess(NamedTuple):
    """This process's readings, with psutil's meaning and units.

    The fields are those of ``samples.ProcessMetrics`` but for the pid, time and CPU share, under
    psutil's names: this module reads files and knows nothing of the monitor's public sample (which
    imports it), and its tests hold each field against psutil's own call.
    """

    user: float
    system: float
    rss: int
    vms: int
    num_threads: int
    num_fds: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    ctx_voluntary: int | None
    ctx_involuntary: int | None


def _field(data: bytes, key: bytes) -> int:
    """The integer after ``key`` (e.g. ``b"\\nThreads:"``) in a ``/proc/<pid>/status``-style file."""
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"\n", start)])


#: Whether the size of ``/proc/self/fd`` is the number of open descriptors (Linux 6.2+): checked
#: once against a listing, since another kernel or a sandbox may give a directory any other size.
_fd_size_counts: bool | None = None


def _fd_count() -> int | None:
    """This process's open descriptors: the size of ``/proc/self/fd`` where that is the count, else
    a listing less the listing's own descriptor (which psutil's ``num_fds`` counts)."""
    global _fd_size_counts
    try:
        if _fd_size_counts:
            return os.stat("/proc/self/fd").st_size
        listed = len(os.listdir("/proc/self/fd")) - 1
        if _fd_size_counts is None:
            # A descriptor opened or closed by another thread in between makes this False: a listing
            # then serves, correct but slower.
            _fd_size_counts = os.stat("/proc/self/fd").st_size == listed
        return listed
    except OSError:
        return None


def own_process(counters: bool = True) -> OwnProcess | None:
    """This process, as psutil's ``cpu_times``, ``memory_info``, ``num_threads``, ``num_fds``,
    ``io_counters`` and ``num_ctx_switches`` give it (the same files, read once each).

    ``counters=False`` is the metrics collection's reading: what it exports, without the I/O and
    context-switch counters (None then), and the thread count from the link count of
    ``/proc/self/task`` (2 + one per thread) instead of reading ``/proc/self/status``: ~8 µs
    instead of ~20.
    """
    statm = _read("/proc/self/statm")
    if statm is None:
        return None
    try:
        vms_pages, rss_pages = statm.split()[:2]
        vms, rss = int(vms_pages) * _PAGE, int(rss_pages) * _PAGE
    except ValueError:
        return None
    read_bytes = write_bytes = voluntary = involuntary = None
    if counters:
        status = _read("/proc/self/status")
        if status is None:
            return None
        try:
            threads = _field(status, b"\nThreads:")
            voluntary = _field(status, b"\nvoluntary_ctxt_switches:")
            involuntary = _field(status, b"\nnonvoluntary_ctxt_switches:")
        except ValueError:
            return None
        io = _read("/proc/self/io")  # absent without CONFIG_TASK_IO_ACCOUNTING, denied in some sandboxes
        if io is not None:
            try:
                read_bytes = _field(b"\n" + io, b"\nread_bytes:")
                write_bytes = _field(io, b"\nwrite_bytes:")
            except ValueError:
                read_bytes = write_bytes = None
    else:
        try:
            threads = os.stat("/proc/self/task").st_nlink - 2
        except OSError:
            return None
        if threads < 1:  # not the layout described above: let psutil count
            return None
    times = os.times()  # the process's own user and system time, from the same kernel counters
    return OwnProcess(
        user=times.user,
        system=times.system,
        rss=rss,
        vms=vms,
        num_threads=threads,
        num_fds=_fd_count(),
        io_read_bytes=read_bytes,
        io_write_bytes=write_bytes,
        ctx_voluntary=voluntary,
        ctx_involuntary=involuntary,
    )
