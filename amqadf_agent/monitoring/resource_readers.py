"""What a metrics collection reads of a resource monitor: the contract's ``system.*`` and
``process.*`` instruments, and the limit-breach counter.

Called by the SDK's collection thread. Every reading but the breach counter's takes the monitor's
one shared sample of this collection (``_collection_snapshot``), so 15 instruments cost one psutil
sample. OpenTelemetry is imported by ``SharedInstruments.register``, never here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from amqadf_agent import semconv
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.monitoring.samples import DiskUsage, Snapshot

__all__ = ["SHARED", "Readable"]


class Readable(Protocol):
    """What the readings need of a monitor (``ResourceMonitor``)."""

    def _collection_snapshot(self) -> Snapshot: ...

    @property
    def _limits_checked(self) -> bool: ...

    @property
    def limit_breaches(self) -> dict[str, int]: ...


def _system_cpu(monitor: Readable) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_CPU_MODE: mode}) for mode, value in snap.cpu_modes.items()]


def _cpu_logical_count(monitor: Readable) -> Iterable[Point]:
    # psutil.cpu_count(logical=True) as the shared sample holds it: the analyzer's CPU cap.
    return [(monitor._collection_snapshot().system.cpu_count, {})]


def _memory_usage(monitor: Readable) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_SYSTEM_MEMORY_STATE: s}) for s, value in snap.memory_states.items()]


def _memory_utilization(monitor: Readable) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    total = snap.system.memory_total
    if total <= 0:
        return []
    return [(value / total, {semconv.ATTR_SYSTEM_MEMORY_STATE: s}) for s, value in snap.memory_states.items()]


def _fs_attributes(disk: DiskUsage, state: str) -> dict[str, str]:
    return {
        semconv.ATTR_SYSTEM_DEVICE: disk.device,
        semconv.ATTR_SYSTEM_FILESYSTEM_STATE: state,
        semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT: disk.mountpoint,
    }


def _fs_usage(monitor: Readable) -> Iterable[Point]:
    points: list[Point] = []
    for disk in monitor._collection_snapshot().system.disks:
        points.append((disk.used, _fs_attributes(disk, "used")))
        points.append((disk.free, _fs_attributes(disk, "free")))
    return points


def _fs_utilization(monitor: Readable) -> Iterable[Point]:
    points: list[Point] = []
    for disk in monitor._collection_snapshot().system.disks:
        size = disk.used + disk.free
        if size > 0:
            points.append((disk.used / size, _fs_attributes(disk, "used")))
            points.append((disk.free / size, _fs_attributes(disk, "free")))
    return points


def _disk_io(monitor: Readable) -> Iterable[Point]:
    points: list[Point] = []
    for device, (read, write) in monitor._collection_snapshot().disk_counters.items():
        points.append((read, {semconv.ATTR_SYSTEM_DEVICE: device, semconv.ATTR_DISK_IO_DIRECTION: "read"}))
        points.append((write, {semconv.ATTR_SYSTEM_DEVICE: device, semconv.ATTR_DISK_IO_DIRECTION: "write"}))
    return points


def _network_io(monitor: Readable) -> Iterable[Point]:
    points: list[Point] = []
    for nic, (recv, sent) in monitor._collection_snapshot().net_counters.items():
        iface = {semconv.ATTR_NETWORK_INTERFACE_NAME: nic}
        points.append((recv, {**iface, semconv.ATTR_NETWORK_IO_DIRECTION: "receive"}))
        points.append((sent, {**iface, semconv.ATTR_NETWORK_IO_DIRECTION: "transmit"}))
    return points


def _process_cpu_utilization(monitor: Readable) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_CPU_MODE: mode}) for mode, value in snap.process_cpu.items()]


def _process_cpu_time(monitor: Readable) -> Iterable[Point]:
    process = monitor._collection_snapshot().process
    return [
        (process.cpu_user, {semconv.ATTR_CPU_MODE: "user"}),
        (process.cpu_system, {semconv.ATTR_CPU_MODE: "system"}),
    ]


def _process_rss(monitor: Readable) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.rss, {})]


def _process_vms(monitor: Readable) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.vms, {})]


def _process_threads(monitor: Readable) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.num_threads, {})]


def _process_fds(monitor: Readable) -> Iterable[Point]:
    fds = monitor._collection_snapshot().process.num_fds
    return [] if fds is None else [(fds, {})]


def _limit_breaches(monitor: Readable) -> Iterable[Point]:
    # Not from the sample: breaches are counted by check_resource_limits. All three kinds are
    # reported from the first check on, so a rate over the counter has a zero to begin from; a
    # monitor whose limits are never checked (the agent's default) reports no series at all.
    if not monitor._limits_checked:
        return []
    counts = monitor.limit_breaches
    return [(counts.get(kind, 0), {semconv.ATTR_RESOURCE_KIND: kind}) for kind in ("cpu", "memory", "disk")]


SHARED: SharedInstruments[Readable] = SharedInstruments(
    "resource monitor",
    [
        (semconv.SYSTEM_CPU_UTILIZATION, _system_cpu),
        (semconv.SYSTEM_CPU_LOGICAL_COUNT, _cpu_logical_count),
        (semconv.SYSTEM_MEMORY_USAGE, _memory_usage),
        (semconv.SYSTEM_MEMORY_UTILIZATION, _memory_utilization),
        (semconv.SYSTEM_FILESYSTEM_USAGE, _fs_usage),
        (semconv.SYSTEM_FILESYSTEM_UTILIZATION, _fs_utilization),
        (semconv.SYSTEM_DISK_IO, _disk_io),
        (semconv.SYSTEM_NETWORK_IO, _network_io),
        (semconv.PROCESS_CPU_UTILIZATION, _process_cpu_utilization),
        (semconv.PROCESS_CPU_TIME, _process_cpu_time),
        (semconv.PROCESS_MEMORY_USAGE, _process_rss),
        (semconv.PROCESS_MEMORY_VIRTUAL, _process_vms),
        (semconv.PROCESS_THREAD_COUNT, _process_threads),
        (semconv.PROCESS_FD_COUNT, _process_fds),
        (semconv.RESOURCE_LIMIT_BREACHES, _limit_breaches),
    ],
    distinct=True,  # one point per cpu.mode, memory state, mount and state, device, direction
)
