"""System and process resources from psutil: samples, a bounded history, limits, and OTel metrics.

Why this shape: a full useful psutil sample costs ~0.2-0.4 ms, while ``psutil.net_connections()``
alone costs ~8-9 ms (80% of the contrib ``system-metrics`` collect, docs/design.md), so connections are
counted only when asked for (``include_connections=True``). Every observable instrument reads one
cached sample per collection: the first callback of a collection takes it, the others reuse it
(a sample younger than ``_COLLECTION_MAX_AGE`` seconds is reused).

Units: the ``*_percent`` fields are percentages (0-100, as psutil gives them); the thresholds of
``check_resource_limits`` and every ``*.utilization`` metric are **fractions** (0-1). Byte counts
are bytes, rates bytes per second, times seconds.

psutil is a core dependency and is imported here; OpenTelemetry is imported only by
``instrument()`` and when a limit breach is written on a span.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import psutil

from amqadf_agent import semconv
from amqadf_agent.errors import (
    ConfigError,
    ProcessAccessDeniedError,
    ProcessNotFoundError,
    ProcessUnavailableError,
)
from amqadf_agent.monitoring import procfs
from amqadf_agent.monitoring._instruments import Point, SharedInstruments

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "DiskUsage",
    "ProcessAccessDeniedError",
    "ProcessMetrics",
    "ProcessNotFoundError",
    "ProcessUnavailableError",
    "ResourceMetrics",
    "ResourceMonitor",
    "register_with_agent",
]

_log = logging.getLogger(__name__)

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


# --- errors (to move to errors.py) ----------------------------------------------------------------
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
class _Snapshot:
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


# --- the monitor ----------------------------------------------------------------------------------
Callback = Callable[["ResourceMetrics"], object]

_MONITORS: weakref.WeakSet[ResourceMonitor] = weakref.WeakSet()


class ResourceMonitor:
    """Samples the machine and this process with psutil; keeps a bounded history; checks limits.

    Args:
        update_interval: seconds between samples of ``start_monitoring``.
        history_size: how many samples ``get_history`` keeps (the oldest are dropped).
        clock: monotonic seconds, for rates and sample ages (inject a fake one in tests).
        psutil_module: the psutil to use (default: the real one; tests pass a fake).
        include_connections: also count open inet connections in every sample
            (``psutil.net_connections()``, ~8-9 ms each: off by default).
    """

    def __init__(
        self,
        update_interval: float = 5.0,
        history_size: int = 100,
        *,
        clock: Callable[[], float] = time.monotonic,
        psutil_module: Any = None,
        include_connections: bool = False,
    ) -> None:
        _check_interval(update_interval)
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size <= 0:
            raise ConfigError("history_size", f"must be a positive integer, got {history_size!r}")
        if not callable(clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {clock!r}")
        self.update_interval = float(update_interval)
        self.history_size = history_size
        self.include_connections = bool(include_connections)
        self._clock = clock
        self._ps: Any = psutil if psutil_module is None else psutil_module
        # The real psutil on Linux: the collection path reads /proc itself where psutil is slow.
        self._procfs_possible = procfs.AVAILABLE and self._ps is psutil
        self._history: collections.deque[ResourceMetrics] = collections.deque(maxlen=history_size)
        #: Callbacks of ``start_monitoring`` that raised (each is logged, the first as a warning).
        self.callback_errors = 0
        #: Samples of the monitoring thread that failed (logged like callback errors).
        self.sample_errors = 0
        self._warned = False
        self._breaches: dict[str, int] = {}
        self._limits_checked = False  # no limit checked yet: no breach counter series
        self._callback: Callback | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = False
        self._reset_state()
        _MONITORS.add(self)

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
        self._snapshot: _Snapshot | None = None

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

    def _collection_snapshot(self) -> _Snapshot:
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
            snap = _Snapshot(
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

    # --- limits -----------------------------------------------------------------------------------
    def check_resource_limits(
        self,
        cpu_threshold: float = 0.8,
        memory_threshold: float = 0.8,
        disk_threshold: float = 0.8,
        *,
        metrics: ResourceMetrics | None = None,
    ) -> tuple[bool, list[str]]:
        """Whether a resource is over its limit, and one warning per breach.

        Thresholds are **fractions** from 0 to 1 (0.8 means 80%), compared with the sample's
        percentages divided by 100; a resource is over its limit when its share is strictly greater
        than the threshold. Every mount of ``metrics.disks`` is checked against ``disk_threshold``.
        Each kind over its limit adds one to ``amqadf.resource.limit_breaches`` and writes an
        ``amqadf.resource.limit_exceeded`` event on the current span when one is recording.

        Args:
            metrics: the sample to check (default: a new one from ``get_system_metrics``).

        Raises:
            ConfigError: a threshold is not a number from 0 to 1 (e.g. 80 instead of 0.8).
        """
        thresholds = {
            "cpu_threshold": cpu_threshold,
            "memory_threshold": memory_threshold,
            "disk_threshold": disk_threshold,
        }
        for name, value in thresholds.items():
            _check_fraction(name, value)
        sample = self.get_system_metrics() if metrics is None else metrics
        warnings: list[str] = []
        # (kind, value, threshold, extra attributes) of each breach
        breaches: list[tuple[str, float, float, dict[str, str]]] = []
        cpu = sample.cpu_percent / 100.0
        if cpu > cpu_threshold:
            warnings.append(f"CPU at {sample.cpu_percent:.1f}% is over its limit of {cpu_threshold:.0%}")
            breaches.append(("cpu", cpu, cpu_threshold, {}))
        memory = sample.memory_percent / 100.0
        if memory > memory_threshold:
            warnings.append(
                f"memory at {sample.memory_percent:.1f}% is over its limit of {memory_threshold:.0%}"
            )
            breaches.append(("memory", memory, memory_threshold, {}))
        worst: DiskUsage | None = None
        for disk in sample.disks:
            if disk.percent / 100.0 > disk_threshold:
                warnings.append(
                    f"disk {disk.mountpoint} at {disk.percent:.1f}% is over its limit of {disk_threshold:.0%}"
                )
                if worst is None or disk.percent > worst.percent:
                    worst = disk
        if worst is not None:
            mount = {semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT: worst.mountpoint}
            breaches.append(("disk", worst.percent / 100.0, disk_threshold, mount))
        with self._lock:
            self._limits_checked = True
            for kind, *_ in breaches:
                self._breaches[kind] = self._breaches.get(kind, 0) + 1
        if breaches:
            _add_breach_events(breaches)
        return bool(breaches), warnings

    @property
    def limit_breaches(self) -> dict[str, int]:
        """Checks in which each kind (cpu, memory, disk) was over its limit, so far."""
        with self._lock:
            return dict(self._breaches)

    # --- background sampling ----------------------------------------------------------------------
    def start_monitoring(self, callback: Callback | None = None) -> None:
        """Sample now and then every ``update_interval`` seconds in a daemon thread.

        ``callback(metrics)`` runs after each sample, in that thread. If it raises, the error is
        logged (a warning the first time, debug after) and counted in ``callback_errors``; sampling
        goes on. Calling this while running replaces the callback. A forked child resumes sampling.
        """
        if callback is not None and not callable(callback):
            raise ConfigError("callback", f"must be callable with one ResourceMetrics, got {callback!r}")
        with self._lock:
            self._callback = callback
            if self._running and self._thread is not None and self._thread.is_alive():
                return
            self._running = True
            self._spawn()

    def stop_monitoring(self, timeout: float = 5.0) -> bool:
        """Stop the thread; True when it ended within ``timeout`` seconds (a slow callback may hold it)."""
        with self._lock:
            self._running = False
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def monitoring(self) -> bool:
        """True while the sampling thread runs."""
        thread = self._thread
        return self._running and thread is not None and thread.is_alive()

    def _spawn(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="amqadf-resource-monitor", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                metrics = self.get_system_metrics()
            except Exception:
                self.sample_errors += 1
                self._warn_once("a resource sample failed; sampling goes on")
            else:
                callback = self._callback
                if callback is not None:
                    try:
                        callback(metrics)
                    except Exception:
                        self.callback_errors += 1
                        self._warn_once(f"the monitoring callback {callback!r} raised; sampling goes on")
            stop.wait(self.update_interval)

    def _warn_once(self, message: str) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        _log.log(level, "resource monitor: %s", message, exc_info=True)

    def _after_fork_in_child(self) -> None:
        """Fresh locks and baselines (the child is another process); resume sampling if it ran."""
        self._reset_state()
        self._thread = None
        if self._running:
            self._spawn()

    # --- metrics ----------------------------------------------------------------------------------
    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report this machine and process through the contract's ``system.*`` and ``process.*``.

        Default provider: the global one. One psutil sample per collection feeds every instrument.
        The provider holds the monitor weakly: keep a reference to it. Report one monitor per
        provider (two would add their values). A failure is logged, never raised.
        """
        try:
            _SHARED.register(self, meter_provider)
        except Exception:
            _log.warning("cannot report resources as metrics; the monitor keeps working", exc_info=True)

    def __repr__(self) -> str:
        state = "monitoring" if self.monitoring else "idle"
        return (
            f"ResourceMonitor(update_interval={self.update_interval}, "
            f"history_size={self.history_size}) <{state}>"
        )


# --- helpers --------------------------------------------------------------------------------------
def _check_interval(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("update_interval", f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError("update_interval", f"must be a positive number of seconds, got {value!r}")


def _check_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a fraction from 0 to 1 (e.g. 0.8 for 80%), got {value!r}")
    if value < 0 or value > 1:
        hint = f"; did you mean {value / 100:g} for {value:g}%?" if 1 < value <= 100 else ""
        raise ConfigError(name, f"must be a fraction from 0 to 1, not a percentage: got {value!r}{hint}")


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


def _add_breach_events(breaches: list[tuple[str, float, float, dict[str, str]]]) -> None:
    """One event per breach on the current span, if any span is recording."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # OpenTelemetry never imported: no span can be current
        return
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for kind, value, threshold, extra in breaches:
            span.add_event(
                semconv.EVENT_RESOURCE_LIMIT,
                {
                    semconv.ATTR_RESOURCE_KIND: kind,
                    semconv.ATTR_RESOURCE_VALUE: round(value, 6),
                    semconv.ATTR_RESOURCE_THRESHOLD: threshold,
                    **extra,
                },
            )
    except Exception:
        _log.debug("could not add a resource limit event", exc_info=True)


# --- collection-time readings (called by the SDK's collection thread) -----------------------------
def _system_cpu(monitor: ResourceMonitor) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_CPU_MODE: mode}) for mode, value in snap.cpu_modes.items()]


def _cpu_logical_count(monitor: ResourceMonitor) -> Iterable[Point]:
    # psutil.cpu_count(logical=True) as the shared sample holds it: the analyzer's CPU cap.
    return [(monitor._collection_snapshot().system.cpu_count, {})]


def _memory_usage(monitor: ResourceMonitor) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_SYSTEM_MEMORY_STATE: s}) for s, value in snap.memory_states.items()]


def _memory_utilization(monitor: ResourceMonitor) -> Iterable[Point]:
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


def _fs_usage(monitor: ResourceMonitor) -> Iterable[Point]:
    points: list[Point] = []
    for disk in monitor._collection_snapshot().system.disks:
        points.append((disk.used, _fs_attributes(disk, "used")))
        points.append((disk.free, _fs_attributes(disk, "free")))
    return points


def _fs_utilization(monitor: ResourceMonitor) -> Iterable[Point]:
    points: list[Point] = []
    for disk in monitor._collection_snapshot().system.disks:
        size = disk.used + disk.free
        if size > 0:
            points.append((disk.used / size, _fs_attributes(disk, "used")))
            points.append((disk.free / size, _fs_attributes(disk, "free")))
    return points


def _disk_io(monitor: ResourceMonitor) -> Iterable[Point]:
    points: list[Point] = []
    for device, (read, write) in monitor._collection_snapshot().disk_counters.items():
        points.append((read, {semconv.ATTR_SYSTEM_DEVICE: device, semconv.ATTR_DISK_IO_DIRECTION: "read"}))
        points.append((write, {semconv.ATTR_SYSTEM_DEVICE: device, semconv.ATTR_DISK_IO_DIRECTION: "write"}))
    return points


def _network_io(monitor: ResourceMonitor) -> Iterable[Point]:
    points: list[Point] = []
    for nic, (recv, sent) in monitor._collection_snapshot().net_counters.items():
        iface = {semconv.ATTR_NETWORK_INTERFACE_NAME: nic}
        points.append((recv, {**iface, semconv.ATTR_NETWORK_IO_DIRECTION: "receive"}))
        points.append((sent, {**iface, semconv.ATTR_NETWORK_IO_DIRECTION: "transmit"}))
    return points


def _process_cpu_utilization(monitor: ResourceMonitor) -> Iterable[Point]:
    snap = monitor._collection_snapshot()
    return [(value, {semconv.ATTR_CPU_MODE: mode}) for mode, value in snap.process_cpu.items()]


def _process_cpu_time(monitor: ResourceMonitor) -> Iterable[Point]:
    process = monitor._collection_snapshot().process
    return [
        (process.cpu_user, {semconv.ATTR_CPU_MODE: "user"}),
        (process.cpu_system, {semconv.ATTR_CPU_MODE: "system"}),
    ]


def _process_rss(monitor: ResourceMonitor) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.rss, {})]


def _process_vms(monitor: ResourceMonitor) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.vms, {})]


def _process_threads(monitor: ResourceMonitor) -> Iterable[Point]:
    return [(monitor._collection_snapshot().process.num_threads, {})]


def _process_fds(monitor: ResourceMonitor) -> Iterable[Point]:
    fds = monitor._collection_snapshot().process.num_fds
    return [] if fds is None else [(fds, {})]


def _limit_breaches(monitor: ResourceMonitor) -> Iterable[Point]:
    # Not from the sample: breaches are counted by check_resource_limits. All three kinds are
    # reported from the first check on, so a rate over the counter has a zero to begin from; a
    # monitor whose limits are never checked (the agent's default) reports no series at all.
    if not monitor._limits_checked:
        return []
    counts = monitor.limit_breaches
    return [(counts.get(kind, 0), {semconv.ATTR_RESOURCE_KIND: kind}) for kind in ("cpu", "memory", "disk")]


_SHARED: SharedInstruments[ResourceMonitor] = SharedInstruments(
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

# --- the agent's default monitor and fork ---------------------------------------------------------
_default: ResourceMonitor | None = None
_default_lock = threading.Lock()


def register_with_agent(
    meter_provider: MeterProvider | None,
    *,
    update_interval: float | None = None,
    cpu_threshold: float | None = None,
    memory_threshold: float | None = None,
) -> ResourceMonitor:
    """The process's default monitor, reported through ``meter_provider``; made on first call.

    For ``amqadf_agent.start()``: it keeps the monitor alive (the provider holds it weakly), so
    calling it again with the same provider changes nothing. With a threshold (a fraction, as
    ``check_resource_limits`` takes it) the monitor also samples every ``update_interval`` seconds
    in its thread and checks each sample: a breach is counted in ``amqadf.resource.limit_breaches``
    and logged when a resource goes over its limit (not again until it has come back under).
    It never raises: a bad value is logged and left out.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = ResourceMonitor()
        monitor = _default
    monitor.instrument(meter_provider)
    try:
        if update_interval is not None:
            _check_interval(update_interval)
            monitor.update_interval = float(update_interval)
        limits = {"cpu_threshold": cpu_threshold, "memory_threshold": memory_threshold}
        given = {name: value for name, value in limits.items() if value is not None}
        for name, value in given.items():
            _check_fraction(name, value)
        if given:
            # A kind without a threshold is never over it: every share is at most 1.
            thresholds = {"cpu_threshold": 1.0, "memory_threshold": 1.0, "disk_threshold": 1.0, **given}
            monitor.start_monitoring(_LimitWatch(monitor, thresholds))
    except ConfigError as exc:
        _log.warning("amqadf-agent: resource monitor: %s; limits are not checked", exc)
    return monitor


class _LimitWatch:
    """The agent's monitoring callback: checks each sample against the configured limits and logs
    a resource when it goes over (once per excursion, not at every sample)."""

    def __init__(self, monitor: ResourceMonitor, thresholds: dict[str, float]) -> None:
        self._monitor, self._thresholds = monitor, thresholds
        self._over: frozenset[str] = frozenset()

    def __call__(self, metrics: ResourceMetrics) -> None:
        _, warnings = self._monitor.check_resource_limits(**self._thresholds, metrics=metrics)
        # "CPU at 93.0% is over ..." -> "CPU"; "disk /data at ..." -> "disk /data"
        over = {warning.split(" at ", 1)[0]: warning for warning in warnings}
        for what, warning in over.items():
            if what not in self._over:
                _log.warning("amqadf-agent: %s", warning)
        self._over = frozenset(over)

    def __repr__(self) -> str:
        return f"<resource limit watch {self._thresholds}>"


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for monitor in list(_MONITORS):
        try:
            monitor._after_fork_in_child()
        except Exception:  # the child must run on whatever happens here
            _log.warning("resource monitor: could not reset after fork", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
