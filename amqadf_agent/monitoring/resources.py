"""ResourceMonitor: samples of the machine and this process, limits, a sampling thread, OTel metrics.

The monitor puts together what its modules do: ``samples`` takes psutil samples (and keeps their
history and rate baselines), ``limits`` finds the resources over their thresholds, and
``resource_readers`` reports the shared sample of each collection through the contract's
``system.*`` and ``process.*`` instruments. Here: the limit checks' counter and span events, the
background sampling thread, and the agent's default monitor.

Units: the ``*_percent`` fields are percentages (0-100, as psutil gives them); the thresholds of
``check_resource_limits`` and every ``*.utilization`` metric are **fractions** (0-1).

psutil is a core dependency and is imported by ``samples``; OpenTelemetry is imported only by
``instrument()`` and when a limit breach is written on a span.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from amqadf_agent import semconv
from amqadf_agent.errors import (
    ConfigError,
    ProcessAccessDeniedError,
    ProcessNotFoundError,
    ProcessUnavailableError,
)
from amqadf_agent.monitoring.limits import LimitBreach, check_fraction, counted, find_breaches
from amqadf_agent.monitoring.resource_readers import SHARED
from amqadf_agent.monitoring.samples import DiskUsage, ProcessMetrics, ResourceMetrics, ResourceSampler

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


# --- the monitor ----------------------------------------------------------------------------------
Callback = Callable[["ResourceMetrics"], object]

_MONITORS: weakref.WeakSet[ResourceMonitor] = weakref.WeakSet()


class ResourceMonitor(ResourceSampler):
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
        super().__init__(
            history_size, clock=clock, psutil_module=psutil_module, include_connections=include_connections
        )
        self.update_interval = float(update_interval)
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
        _MONITORS.add(self)

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
        breaches = self._check_limits(
            cpu_threshold=cpu_threshold,
            memory_threshold=memory_threshold,
            disk_threshold=disk_threshold,
            metrics=metrics,
        )
        return bool(breaches), [breach.warning for breach in breaches]

    def _check_limits(
        self,
        *,
        cpu_threshold: float,
        memory_threshold: float,
        disk_threshold: float,
        metrics: ResourceMetrics | None,
    ) -> list[LimitBreach]:
        """``check_resource_limits`` with its breaches as data: one per resource over (every mount)."""
        thresholds = {
            "cpu_threshold": cpu_threshold,
            "memory_threshold": memory_threshold,
            "disk_threshold": disk_threshold,
        }
        for name, value in thresholds.items():
            check_fraction(name, value)
        sample = self.get_system_metrics() if metrics is None else metrics
        breaches = find_breaches(sample, cpu_threshold, memory_threshold, disk_threshold)
        by_kind = counted(breaches)
        with self._lock:
            self._limits_checked = True
            for breach in by_kind:
                self._breaches[breach.kind] = self._breaches.get(breach.kind, 0) + 1
        if by_kind:
            _add_breach_events(by_kind)
        return breaches

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
        SHARED.report(self, meter_provider, _log, "resources")

    def __repr__(self) -> str:
        state = "monitoring" if self.monitoring else "idle"
        return (
            f"ResourceMonitor(update_interval={self.update_interval}, "
            f"history_size={self.history_size}) <{state}>"
        )


# --- helpers --------------------------------------------------------------------------------------
# --- helpers --------------------------------------------------------------------------------------
def _check_interval(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("update_interval", f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError("update_interval", f"must be a positive number of seconds, got {value!r}")


def _add_breach_events(breaches: list[LimitBreach]) -> None:
    """One event per breach on the current span, if any span is recording."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # OpenTelemetry never imported: no span can be current
        return
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for breach in breaches:
            attributes: dict[str, str | float] = {
                semconv.ATTR_RESOURCE_KIND: breach.kind,
                semconv.ATTR_RESOURCE_VALUE: round(breach.share, 6),
                semconv.ATTR_RESOURCE_THRESHOLD: breach.threshold,
            }
            if breach.mountpoint is not None:
                attributes[semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT] = breach.mountpoint
            span.add_event(semconv.EVENT_RESOURCE_LIMIT, attributes)
    except Exception:
        _log.debug("could not add a resource limit event", exc_info=True)


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
            check_fraction(name, value)
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
        breaches = self._monitor._check_limits(**self._thresholds, metrics=metrics)
        over = {breach.subject: breach for breach in breaches}
        for subject, breach in over.items():
            if subject not in self._over:
                _log.warning("amqadf-agent: %s", breach.warning)
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
