"""Linux ``/proc`` readers for the resource monitor's collection path, cheaper than psutil's.

Why: one collection reads the same few kernel files every time, and psutil's general-purpose
readers spend most of their time around the read: ``disk_io_counters(perdisk=True)`` ~66 µs,
``net_io_counters(pernic=True)`` ~40 µs, and ``Process.oneshot()`` with the six readings the
monitor takes ~67 µs plus ``is_running()`` ~13 µs here. These read the same files and compute the
same values as psutil 7 (``tests/test_resource_monitor.py`` compares them on the machine) in a
fraction of that (``tests/bench/bench_resource_monitor.py``).

Every reader returns ``None`` when a file is missing, unreadable or not in the expected format;
the monitor then uses psutil for that reading. Nothing here raises.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

__all__ = ["AVAILABLE", "OwnProcess", "disk_bytes", "net_bytes", "own_process"]

#: The kernel counts /proc/diskstats sectors in 512-byte units, whatever the device's sector size.
_SECTOR = 512
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: True where these readers can work (Linux with /proc mounted).
AVAILABLE = sys.platform.startswith("linux") and os.path.exists("/proc/self/statm")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except OSError:
        return None


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
    """This process's readings, with psutil's meaning and units."""

    user: float
    system: float
    rss: int
    vms: int
    num_threads: int
    num_fds: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    ctx_voluntary: int
    ctx_involuntary: int


def _field(data: bytes, key: bytes) -> int:
    """The integer after ``key`` (e.g. ``b"\\nThreads:"``) in a ``/proc/<pid>/status``-style file."""
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"\n", start)])


def own_process() -> OwnProcess | None:
    """This process, as psutil's ``cpu_times``, ``memory_info``, ``num_threads``, ``num_fds``,
    ``io_counters`` and ``num_ctx_switches`` give it (the same files, read once each)."""
    statm, status = _read("/proc/self/statm"), _read("/proc/self/status")
    if statm is None or status is None:
        return None
    try:
        vms_pages, rss_pages = statm.split()[:2]
        threads = _field(status, b"\nThreads:")
        voluntary = _field(status, b"\nvoluntary_ctxt_switches:")
        involuntary = _field(status, b"\nnonvoluntary_ctxt_switches:")
    except ValueError:
        return None
    try:
        fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    io = _read("/proc/self/io")  # absent without CONFIG_TASK_IO_ACCOUNTING, denied in some sandboxes
    read_bytes = write_bytes = None
    if io is not None:
        try:
            read_bytes, write_bytes = _field(b"\n" + io, b"\nread_bytes:"), _field(io, b"\nwrite_bytes:")
        except ValueError:
            read_bytes = write_bytes = None
    times = os.times()  # the process's own user and system time, from the same kernel counters
    return OwnProcess(
        user=times.user,
        system=times.system,
        rss=int(rss_pages) * _PAGE,
        vms=int(vms_pages) * _PAGE,
        num_threads=threads,
        num_fds=fds,
        io_read_bytes=read_bytes,
        io_write_bytes=write_bytes,
        ctx_voluntary=voluntary,
        ctx_involuntary=involuntary,
    )
