"""Samples of the machine and of processes from psutil (and ``/proc`` where psutil is slow).

Why this shape: a full useful psutil sample costs ~0.2-0.4 ms, while ``psutil.net_connections()``
alone costs ~8-9 ms (80% of the contrib ``system-metrics`` collect, docs/design.md), so connections are
counted only when asked for (``include_connections=True``). Every observable instrument reads one
cached sample per collection (``ResourceSampler._collection_snapshot``): the first callback of a
collection takes it, the others reuse it (a sample younger than ``_COLLECTION_MAX_AGE`` seconds is
reused).

Units: the ``*_percent`` fields are percentages (0-100, as psutil gives them). Byte counts are
bytes, rates bytes per second, times seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from amqadf_agent.errors import ConfigError, ProcessAccessDeniedError, ProcessNotFoundError
from amqadf_agent.monitoring import procfs

__all__ = ["DiskUsage", "ProcessMetrics", "ResourceMetrics", "ResourceSampler", "Snapshot"]

#: A sample younger than this (seconds, by the monitor's clock) is reused by a collection.
_COLLECTION_MAX_AGE = 0.5
#: The mounted file systems are re-read at most this often (seconds): listing them costs ~50 µs.
_PARTITIONS_TTL = 60.0
#: How many other processes' CPU baselines ``get_process_metrics`` keeps.
_MAX_TRACKED_PIDS = 64
#: Fields of ``psutil.cpu_times()`` by the ``cpu.mode`` they count towards. ``guest`` and
#: ``guest_nice`` are left out: Linux already counts them in ``user`` and ``nice``.
_CPU_MODES: dict[str, tuple[str, ...]] = {
    "user": ("user",),
    "nice": ("nice",),
    "system": ("system",),
    "idle": ("idle",),
    "iowait": ("iowait",),
    "interrupt": ("irq", "softirq", "interrupt", "dpc"),
    "steal": ("steal",),
}
_MEMORY_STATES = ("used", "free", "cached", "buffers")
_PARTITION = re.compile(r"p?\d+")


# --- data model -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DiskUsage:
    """Space of one mounted file system, in bytes."""

    mountpoint: str
    device: str
    fstype: str
    total: int
    used: int
    free: int
    #: used / (used + free) as a percentage (0-100), as ``df`` and psutil compute it.
    percent: float


@dataclasses.dataclass(frozen=True)
class ResourceMetrics:
    """One sample of the machine. Percentages are 0-100; bytes are bytes; rates are bytes/s."""

    #: Wall-clock time of the sample (seconds since the epoch).
    timestamp: float
    #: Seconds since the previous sample by the monitor's clock; None for the first sample.
    interval: float | None
    #: Busy share of all CPUs (not idle, not iowait) since the previous sample (since boot for the
    #: first one), 0-100.
    cpu_percent: float
    cpu_count: int
    memory_percent: float
    memory_total: int
    memory_used: int
    memory_available: int
    #: Real (non-virtual) mounted file systems; one that could not be read is left out.
    disks: tuple[DiskUsage, ...]
    #: I/O rates since the previous sample, summed over whole disks (partitions are not counted
    #: twice) and over all network interfaces; None for the first sample.
    disk_read_bytes_per_s: float | None
    disk_write_bytes_per_s: float | None
    network_recv_bytes_per_s: float | None
    network_sent_bytes_per_s: float | None
    #: 1, 5 and 15 minute load averages; None where the platform has none.
    load_average: tuple[float, float, float] | None
    #: Open inet connections; None unless the monitor was built with ``include_connections=True``
    #: (``psutil.net_connections()`` costs ~8-9 ms).
    network_connections: int | None = None


@dataclasses.dataclass(frozen=True)
class ProcessMetrics:
    """One sample of one process. Bytes are bytes, CPU times seconds."""

    pid: int
    timestamp: float
    #: CPU used since the previous sample of this pid (since the process started for the first),
    #: as a percentage of ONE CPU like ``top`` and psutil: up to 100 x cpu_count.
    cpu_percent: float
    cpu_user: float
    cpu_system: float
    rss: int
    vms: int
    num_threads: int
    #: None where the platform has no file descriptors or this user may not read them.
    num_fds: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    ctx_switches_voluntary: int | None
    ctx_switches_involuntary: int | None


@dataclasses.dataclass
class _ProcState:
    """A psutil.Process kept between samples, with its CPU baseline."""

    proc: Any
    at: float | None = None
    user: float = 0.0
    system: float = 0.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one collection reports: the sample and the raw per-device counters behind it."""

    taken_at: float
    system: ResourceMetrics
    cpu_modes: dict[str, float]
    memory_states: dict[str, int]
    disk_counters: dict[str, tuple[int, int]]
    net_counters: dict[str, tuple[int, int]]
    process: ProcessMetrics
    process_cpu: dict[str, float]


@dataclasses.dataclass
class _Baseline:
    """The previous sample's counters of one reader of the monitor, for its rates."""

    at: float | None = None
    cpu: dict[str, float] | None = None
    disk: dict[str, tuple[int, int]] | None = None
    net: dict[str, tuple[int, int]] | None = None
    own: _ProcState | None = None  # this process's CPU baseline


# --- the sampler ----------------------------------------------------------------------------------
class ResourceSampler:
    """Samples the machine and processes with psutil, keeping the baselines rates are computed
    from and a bounded history of the machine's samples (``ResourceMonitor`` builds on it).

    Args:
        history_size: how many samples ``get_history`` keeps (the oldest are dropped).
        clock: monotonic seconds, for rates and sample ages.
        psutil_module: the psutil to use (default: the real one; tests pass a fake).
        include_connections: also count open inet connections in every sample.
    """

    def __init__(
        self,
        history_size: int,
        *,
        clock: Callable[[], float],
        psutil_module: Any,
        include_connections: bool,
    ) -> None:
        self.history_size = history_size
        self.include_connections = bool(include_connections)
        self._clock = clock
        self._ps: Any = psutil if psutil_module is None else psutil_module
        # The real psutil on Linux: the collection path reads /proc itself where psutil is slow.
        self._procfs_possible = procfs.AVAILABLE and self._ps is psutil
        self._history: collections.deque[ResourceMetrics] = collections.deque(maxlen=history_size)
        self._reset_state()

    def _reset_state(self) -> None:
        """Locks, baselines and caches: fresh at construction and in a forked child."""
        self._lock = threading.RLock()
        self._cpu_count = max(1, int(self._ps.cpu_count(logical=True) or 1))
        # Rates and utilizations cover the time since the previous sample of the same reader: the
        # metrics collection keeps its own baselines, so an exported rate covers the collection
        # interval whatever else samples in between (the monitoring thread, get_system_metrics).
        self._samples = _Baseline()
        self._collecting = _Baseline()
        self._partitions: list[Any] = []
        self._partitions_at: float | None = None
        self._pids: collections.OrderedDict[int, _ProcState] = collections.OrderedDict()
        self._snapshot: Snapshot | None = None

    # --- samples ----------------------------------------------------------------------------------
    def get_system_metrics(self) -> ResourceMetrics:
        """Sample the machine now; the sample is also appended to the history.

        Rates (I/O, CPU) cover the time since the previous sample of this monitor, by this call or
        the monitoring thread; a metrics collection keeps its own baseline, so sampling here never
        shortens the interval an exported rate covers.
        """
        return self._take_system()[0]

    def get_process_metrics(self, pid: int | None = None) -> ProcessMetrics:
        """Sample one process (default: this one).

        Raises:
            ProcessNotFoundError: no process has this pid.
            ProcessAccessDeniedError: the process exists but this user may not read it.
            ConfigError: ``pid`` is not a non-negative integer.
        """
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid < 0):
            raise ConfigError("pid", f"must be a non-negative integer process id, got {pid!r}")
        with self._lock:
            return self._take_process(os.getpid() if pid is None else pid)[0]

    def get_history(self) -> list[ResourceMetrics]:
        """The last ``history_size`` samples, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    def _take_system(self, base: _Baseline | None = None) -> tuple[ResourceMetrics, dict[str, Any]]:
        """Sample the machine under the lock; rates since ``base`` (default: the samples' own)."""
        ps = self._ps
        base = self._samples if base is None else base
        with self._lock:
            now = self._clock()
            interval = None if base.at is None else max(now - base.at, 0.0)

            fast = self._procfs
            cpu = procfs.cpu_times() if fast else None
            if cpu is None:
                cpu = _cpu_fields(ps.cpu_times())
            prev_cpu = base.cpu or dict.fromkeys(cpu, 0.0)
            deltas = {mode: max(cpu[mode] - prev_cpu.get(mode, 0.0), 0.0) for mode in cpu}
            total = sum(deltas.values())
            cpu_modes = {mode: (d / total if total > 0 else 0.0) for mode, d in deltas.items()}
            busy = 1.0 - cpu_modes.get("idle", 0.0) - cpu_modes.get("iowait", 0.0) if total > 0 else 0.0

            vm: Any = procfs.memory() if fast else None
            if vm is None:
                vm = ps.virtual_memory()
            memory_states = {s: int(getattr(vm, s)) for s in _MEMORY_STATES if hasattr(vm, s)}

            fast_disk = procfs.disk_bytes() if fast else None
            disk_counters = (
                _moved(fast_disk)
                if fast_disk is not None
                else _per_device(
                    _safe(lambda: ps.disk_io_counters(perdisk=True)), "read_bytes", "write_bytes"
                )
            )
            fast_net = procfs.net_bytes() if fast else None
            net_counters = (
                _moved(fast_net)
                if fast_net is not None
                else _per_device(_safe(lambda: ps.net_io_counters(pernic=True)), "bytes_recv", "bytes_sent")
            )
            disk_rates = _rates(base.disk, disk_counters, interval, _whole_disks(disk_counters))
            net_rates = _rates(base.net, net_counters, interval, frozenset(net_counters))

            load = _safe(ps.getloadavg) if hasattr(ps, "getloadavg") else None
            connections = None
            if self.include_connections:
                conns = _safe(lambda: ps.net_connections(kind="inet"))
                connections = None if conns is None else len(conns)

            metrics = ResourceMetrics(
                timestamp=time.time(),
                interval=interval,
                cpu_percent=round(100.0 * busy, 6),
                cpu_count=self._cpu_count,
                memory_percent=float(vm.percent),
                memory_total=int(vm.total),
                memory_used=int(vm.used),
                memory_available=int(vm.available),
                disks=self._disks(now),
                disk_read_bytes_per_s=disk_rates[0],
                disk_write_bytes_per_s=disk_rates[1],
                network_recv_bytes_per_s=net_rates[0],
                network_sent_bytes_per_s=net_rates[1],
                load_average=None if load is None else (float(load[0]), float(load[1]), float(load[2])),
                network_connections=connections,
            )
            base.at, base.cpu, base.disk, base.net = now, cpu, disk_counters, net_counters
            self._history.append(metrics)
            raw = {
                "now": now,
                "cpu_modes": cpu_modes,
                "memory_states": memory_states,
                "disk_counters": disk_counters,
                "net_counters": net_counters,
            }
            return metrics, raw

    def _disks(self, now: float) -> tuple[DiskUsage, ...]:
        if self._partitions_at is None or now - self._partitions_at >= _PARTITIONS_TTL:
            self._partitions = _safe(lambda: list(self._ps.disk_partitions(all=False))) or []
            self._partitions_at = now
        disks: list[DiskUsage] = []
        seen: set[str] = set()
        for part in self._partitions:
            if part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = self._ps.disk_usage(part.mountpoint)
            except Exception:  # one unreadable mount (gone, stale NFS, denied) never breaks a sample
                continue
            disks.append(
                DiskUsage(
                    mountpoint=part.mountpoint,
                    device=part.device,
                    fstype=part.fstype,
                    total=int(usage.total),
                    used=int(usage.used),
                    free=int(usage.free),
                    percent=float(usage.percent),
                )
            )
        return tuple(disks)

    def _take_process(self, pid: int, collecting: bool = False) -> tuple[ProcessMetrics, dict[str, float]]:
        """Sample ``pid`` under the lock; also the CPU utilization by mode (share of all CPUs).

        ``collecting``: the metrics collection's sample of this process, against the collection's
        own CPU baseline, and which may leave out what no instrument exports (the I/O and
        context-switch counters) where that is cheaper.
        """
        ps = self._ps
        own = pid == os.getpid()
        base = self._collecting if collecting else self._samples
        state = base.own if own else self._pids.get(pid)
        if own and state is not None and state.at is not None and self._procfs:
            fast = procfs.own_process(counters=not collecting)
            if fast is not None:
                return self._own_metrics(state, fast)
        try:
            if state is None or not state.proc.is_running():
                state = _ProcState(ps.Process(pid))
            proc = state.proc
            with proc.oneshot():
                times = proc.cpu_times()
                mem = proc.memory_info()
                threads = int(proc.num_threads())
                fds = _optional(ps, proc, "num_fds")
                io = _optional(ps, proc, "io_counters")
                ctx = _optional(ps, proc, "num_ctx_switches")
                created = float(proc.create_time()) if state.at is None else 0.0
        except ps.NoSuchProcess:
            self._pids.pop(pid, None)
            raise ProcessNotFoundError(pid) from None
        except ps.AccessDenied:
            raise ProcessAccessDeniedError(pid) from None
        if own and fds is not None and self._procfs_possible:
            fds -= 1  # psutil listed /proc/self/fd, and counted the listing's own descriptor
        user, system = float(times.user), float(times.system)
        cpu_percent, by_mode = self._cpu_since(state, user, system, created)
        if own:
            base.own = state
        else:
            self._pids[pid] = state
            self._pids.move_to_end(pid)
            while len(self._pids) > _MAX_TRACKED_PIDS:
                self._pids.popitem(last=False)
        metrics = ProcessMetrics(
            pid=pid,
            timestamp=time.time(),
            cpu_percent=cpu_percent,
            cpu_user=user,
            cpu_system=system,
            rss=int(mem.rss),
            vms=int(mem.vms),
            num_threads=threads,
            num_fds=None if fds is None else int(fds),
            io_read_bytes=None if io is None else int(io.read_bytes),
            io_write_bytes=None if io is None else int(io.write_bytes),
            ctx_switches_voluntary=None if ctx is None else int(ctx.voluntary),
            ctx_switches_involuntary=None if ctx is None else int(ctx.involuntary),
        )
        return metrics, by_mode

    def _cpu_since(
        self, state: _ProcState, user: float, system: float, created: float
    ) -> tuple[float, dict[str, float]]:
        """CPU since the last sample of this process (since ``created`` at first sight), moving the
        baseline: as a percentage of one CPU, and by mode as a share of all CPUs."""
        now = self._clock()
        if state.at is None:  # first sight: the average since the process started
            elapsed = max(time.time() - created, 1e-9)
            d_user, d_system = user, system
        else:
            elapsed = now - state.at
            d_user, d_system = max(user - state.user, 0.0), max(system - state.system, 0.0)
        if elapsed > 0:
            state.at, state.user, state.system = now, user, system
        share = self._cpu_count * elapsed if elapsed > 0 else 0.0
        by_mode = {
            "user": min(d_user / share, 1.0) if share else 0.0,
            "system": min(d_system / share, 1.0) if share else 0.0,
        }
        return ((100.0 * (d_user + d_system) / elapsed) if elapsed > 0 else 0.0), by_mode

    @property
    def _procfs(self) -> bool:
        """Whether this sample may read /proc itself: the real psutil, on Linux, reading this
        machine's /proc (not a ``psutil.PROCFS_PATH`` such as a host's /proc mounted elsewhere)."""
        return self._procfs_possible and getattr(psutil, "PROCFS_PATH", "/proc") == "/proc"

    def _own_metrics(
        self, state: _ProcState, fast: procfs.OwnProcess
    ) -> tuple[ProcessMetrics, dict[str, float]]:
        """This process from ``/proc`` (see ``procfs``): what ``_take_process`` computes from psutil."""
        cpu_percent, by_mode = self._cpu_since(state, fast.user, fast.system, 0.0)
        metrics = ProcessMetrics(
            pid=os.getpid(),
            timestamp=time.time(),
            cpu_percent=cpu_percent,
            cpu_user=fast.user,
            cpu_system=fast.system,
            rss=fast.rss,
            vms=fast.vms,
            num_threads=fast.num_threads,
            num_fds=fast.num_fds,
            io_read_bytes=fast.io_read_bytes,
            io_write_bytes=fast.io_write_bytes,
            ctx_switches_voluntary=fast.ctx_voluntary,
            ctx_switches_involuntary=fast.ctx_involuntary,
        )
        return metrics, by_mode

    def _collection_snapshot(self) -> Snapshot:
        """The sample every instrument of one collection reads: taken once, reused while fresh."""
        snap = self._snapshot  # read without the lock: a snapshot is replaced whole, never changed
        if snap is not None and self._clock() - snap.taken_at < _COLLECTION_MAX_AGE:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is not None and self._clock() - snap.taken_at < _COLLECTION_MAX_AGE:
                return snap
            system, raw = self._take_system(self._collecting)
            process, process_cpu = self._take_process(os.getpid(), collecting=True)
            snap = Snapshot(
                taken_at=raw["now"],
                system=system,
                cpu_modes=raw["cpu_modes"],
                memory_states=raw["memory_states"],
                disk_counters=raw["disk_counters"],
                net_counters=raw["net_counters"],
                process=process,
                process_cpu=process_cpu,
            )
            self._snapshot = snap
            return snap


# --- helpers --------------------------------------------------------------------------------------
def _cpu_fields(times: Any) -> dict[str, float]:
    return {
        mode: float(sum(getattr(times, field, 0.0) or 0.0 for field in fields))
        for mode, fields in _CPU_MODES.items()
        if any(hasattr(times, field) for field in fields)
    }


def _safe(read: Callable[[], Any]) -> Any:
    """A psutil reading that some platforms or containers lack: None instead of an error."""
    try:
        return read()
    except Exception:
        return None


def _optional(ps: Any, proc: Any, method: str) -> Any:
    """A per-process reading that may be missing or denied on its own: None then."""
    read = getattr(proc, method, None)
    if read is None:
        return None
    try:
        return read()
    except ps.NoSuchProcess:
        raise
    except (ps.AccessDenied, NotImplementedError, OSError):
        return None


def _per_device(counters: Any, first: str, second: str) -> dict[str, tuple[int, int]]:
    """Both byte counters per device, leaving out devices that never moved a byte since boot.

    Unused loop devices and idle virtual interfaces would otherwise be a third of all the points
    of a collection (each costs the SDK ~10 µs); a device appears once it has done any I/O.
    """
    if not counters:
        return {}
    pairs = ((name, int(getattr(c, first)), int(getattr(c, second))) for name, c in counters.items())
    return {name: (a, b) for name, a, b in pairs if a or b}


def _moved(counters: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The devices of a ``procfs`` reading that moved a byte since boot (as ``_per_device``)."""
    return {name: pair for name, pair in counters.items() if pair[0] or pair[1]}


def _whole_disks(counters: dict[str, tuple[int, int]]) -> frozenset[str]:
    """Devices that are not partitions of another listed device (sda1 of sda, nvme0n1p1 of nvme0n1)."""
    return _whole_disks_of(frozenset(counters))


@functools.lru_cache(maxsize=8)  # the device set rarely changes: O(n^2) once, not per sample
def _whole_disks_of(names: frozenset[str]) -> frozenset[str]:
    return frozenset(
        name
        for name in names
        if not any(
            other != name and name.startswith(other) and _PARTITION.fullmatch(name[len(other) :])
            for other in names
        )
    )


def _rates(
    before: dict[str, tuple[int, int]] | None,
    after: dict[str, tuple[int, int]],
    interval: float | None,
    counted: frozenset[str],
) -> tuple[float | None, float | None]:
    """Summed per-second rates of both counters over the devices present in both samples."""
    if before is None or not interval:
        return None, None
    first = second = 0
    for name in counted:
        if name in before and name in after:  # a device that came or went counts nothing
            first += max(after[name][0] - before[name][0], 0)  # a counter reset counts nothing
            second += max(after[name][1] - before[name][1], 0)
    return first / interval, second / interval
