"""ResourceMonitor: exact arithmetic on a fake psutil, sanity against the real one, metrics, fork."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import collect

from amqadf_agent import semconv
from amqadf_agent.errors import AmqadfError, ConfigError
from amqadf_agent.monitoring import resources
from amqadf_agent.monitoring.resources import (
    ProcessAccessDeniedError,
    ProcessNotFoundError,
    ResourceMetrics,
    ResourceMonitor,
)

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
VMem = namedtuple("VMem", "total available percent used free active inactive buffers cached")
Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv")
PCpu = namedtuple("PCpu", "user system children_user children_system")
PMem = namedtuple("PMem", "rss vms")
PIO = namedtuple("PIO", "read_count write_count read_bytes write_bytes")
PCtx = namedtuple("PCtx", "voluntary involuntary")

CONTRACT = [
    semconv.SYSTEM_CPU_UTILIZATION,
    semconv.SYSTEM_CPU_LOGICAL_COUNT,
    semconv.SYSTEM_MEMORY_USAGE,
    semconv.SYSTEM_MEMORY_UTILIZATION,
    semconv.SYSTEM_FILESYSTEM_USAGE,
    semconv.SYSTEM_FILESYSTEM_UTILIZATION,
    semconv.SYSTEM_DISK_IO,
    semconv.SYSTEM_NETWORK_IO,
    semconv.PROCESS_CPU_UTILIZATION,
    semconv.PROCESS_CPU_TIME,
    semconv.PROCESS_MEMORY_USAGE,
    semconv.PROCESS_MEMORY_VIRTUAL,
    semconv.PROCESS_THREAD_COUNT,
    semconv.PROCESS_FD_COUNT,
    semconv.RESOURCE_LIMIT_BREACHES,
]


class FakePsutil:
    """The part of psutil the monitor uses; every value is set by the test, every call counted."""

    NoSuchProcess = psutil.NoSuchProcess
    AccessDenied = psutil.AccessDenied

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.cpu = CpuTimes(100.0, 0.0, 50.0, 800.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.memory_percent = 40.0
        self.disk_percent = {"/": 50.0, "/data": 10.0}
        self.disk = {"sda": (1000, 2000), "sda1": (1000, 2000), "nvme0n1": (10, 0), "loop0": (0, 0)}
        self.net = {"eth0": (5000, 100), "lo": (1, 1), "ifb0": (0, 0)}
        self.proc_cpu = (1.0, 0.5)
        self.missing_pids: set[int] = set()
        self.denied_pids: set[int] = set()
        self.unreadable_mounts: set[str] = set()

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def cpu_count(self, logical: bool = True) -> int:
        assert logical, "the CPU cap counts logical CPUs"
        return 2

    def cpu_times(self) -> CpuTimes:
        self._count("cpu_times")
        return self.cpu

    def virtual_memory(self) -> VMem:
        self._count("virtual_memory")
        total = 1000
        used = int(total * self.memory_percent / 100)
        return VMem(total, total - used, self.memory_percent, used, total - used - 300, 0, 0, 100, 200)

    def disk_partitions(self, all: bool = False) -> list[Part]:
        self._count("disk_partitions")
        assert all is False, "pseudo file systems must be skipped"
        return [Part("/dev/sda1", m, "ext4", "rw") for m in self.disk_percent] + [
            Part("/dev/sdb1", m, "ext4", "rw") for m in self.unreadable_mounts
        ]

    def disk_usage(self, path: str) -> Usage:
        self._count("disk_usage")
        if path in self.unreadable_mounts:
            raise PermissionError(13, "denied", path)
        percent = self.disk_percent[path]
        return Usage(100, int(percent), 100 - int(percent), percent)

    def disk_io_counters(self, perdisk: bool = False) -> dict[str, DiskIO]:
        self._count("disk_io_counters")
        assert perdisk
        return {k: DiskIO(1, 1, r, w) for k, (r, w) in self.disk.items()}

    def net_io_counters(self, pernic: bool = False) -> dict[str, NetIO]:
        self._count("net_io_counters")
        assert pernic
        return {k: NetIO(sent, recv, 1, 1) for k, (recv, sent) in self.net.items()}

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.25, 0.125)

    def net_connections(self, kind: str = "inet") -> list[object]:
        self._count("net_connections")
        return [object(), object(), object()]

    def Process(self, pid: int | None = None) -> FakeProcess:
        self._count("Process")
        pid = os.getpid() if pid is None else pid
        if pid in self.missing_pids:
            raise psutil.NoSuchProcess(pid)
        return FakeProcess(self, pid)


class FakeProcess:
    def __init__(self, ps: FakePsutil, pid: int) -> None:
        self.ps, self.pid = ps, pid

    def _check(self) -> None:
        if self.pid in self.ps.missing_pids:
            raise psutil.NoSuchProcess(self.pid)
        if self.pid in self.ps.denied_pids:
            raise psutil.AccessDenied(self.pid)

    def is_running(self) -> bool:
        return self.pid not in self.ps.missing_pids

    def oneshot(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def cpu_times(self) -> PCpu:
        self._check()
        self.ps._count("proc.cpu_times")
        return PCpu(self.ps.proc_cpu[0], self.ps.proc_cpu[1], 0.0, 0.0)

    def memory_info(self) -> PMem:
        self._check()
        return PMem(10_000, 50_000)

    def num_threads(self) -> int:
        return 3

    def num_fds(self) -> int:
        return 7

    def io_counters(self) -> PIO:
        return PIO(1, 1, 11, 22)

    def num_ctx_switches(self) -> PCtx:
        return PCtx(5, 6)

    def create_time(self) -> float:
        return time.time() - 10.0


@pytest.fixture
def fake() -> FakePsutil:
    return FakePsutil()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def monitor(fake: FakePsutil, clock: FakeClock) -> Iterator[ResourceMonitor]:
    m = ResourceMonitor(update_interval=0.05, history_size=5, clock=clock, psutil_module=fake)
    yield m
    m.stop_monitoring(timeout=2.0)


def points(metric: Any) -> dict[tuple[tuple[str, Any], ...], float]:
    return {tuple(sorted(p.attributes.items())): p.value for p in metric.data.data_points}


# --- samples on a fake psutil -----------------------------------------------------------------------
def test_rates_from_two_samples_are_exact_bytes_per_second(
    monitor: ResourceMonitor, fake: FakePsutil, clock: FakeClock
) -> None:
    first = monitor.get_system_metrics()
    assert first.interval is None
    assert first.disk_read_bytes_per_s is None and first.network_recv_bytes_per_s is None
    # since boot: busy = 1 - (idle + iowait) / total = 1 - 850/1000
    assert first.cpu_percent == pytest.approx(15.0)

    clock.now += 2.0
    fake.disk = {"sda": (5000, 2400), "sda1": (5000, 2400), "nvme0n1": (1010, 0), "loop0": (0, 0)}
    fake.net = {"eth0": (9000, 700), "lo": (201, 201), "ifb0": (0, 0)}
    fake.cpu = CpuTimes(160.0, 0.0, 70.0, 900.0, 70.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    second = monitor.get_system_metrics()

    assert second.interval == 2.0
    # sda1 is a partition of sda: counted once. (4000 + 1000) / 2 s, (400 + 0) / 2 s
    assert second.disk_read_bytes_per_s == 2500.0
    assert second.disk_write_bytes_per_s == 200.0
    assert second.network_recv_bytes_per_s == (4000 + 200) / 2
    assert second.network_sent_bytes_per_s == (600 + 200) / 2
    # deltas: user 60, system 20, idle 100, iowait 20 -> busy 80/200
    assert second.cpu_percent == pytest.approx(40.0)
    assert second.memory_percent == 40.0
    assert second.memory_total == 1000 and second.memory_used == 400 and second.memory_available == 600
    assert second.load_average == (0.5, 0.25, 0.125)
    assert [(d.mountpoint, d.percent) for d in second.disks] == [("/", 50.0), ("/data", 10.0)]
    assert second.network_connections is None
    assert "net_connections" not in fake.calls


def test_a_counter_reset_or_a_new_device_counts_no_negative_bytes(
    monitor: ResourceMonitor, fake: FakePsutil, clock: FakeClock
) -> None:
    monitor.get_system_metrics()
    clock.now += 1.0
    fake.net = {"eth0": (10, 10), "wlan0": (10**9, 10**9)}  # eth0 reset, wlan0 appeared
    sample = monitor.get_system_metrics()
    assert sample.network_recv_bytes_per_s == 0.0
    assert sample.network_sent_bytes_per_s == 0.0


def test_history_is_a_bounded_ring_buffer(monitor: ResourceMonitor, clock: FakeClock) -> None:
    taken = []
    for _ in range(8):
        clock.now += 1
        taken.append(monitor.get_system_metrics())
    history = monitor.get_history()
    assert len(history) == 5
    assert history == taken[-5:]
    history.clear()  # a copy
    assert len(monitor.get_history()) == 5


def test_an_unreadable_mount_is_skipped_not_fatal(monitor: ResourceMonitor, fake: FakePsutil) -> None:
    fake.unreadable_mounts = {"/mnt/stale"}
    sample = monitor.get_system_metrics()
    assert [d.mountpoint for d in sample.disks] == ["/", "/data"]


def test_connections_are_counted_only_when_asked(fake: FakePsutil, clock: FakeClock) -> None:
    m = ResourceMonitor(clock=clock, psutil_module=fake, include_connections=True)
    assert m.get_system_metrics().network_connections == 3
    assert fake.calls["net_connections"] == 1


def test_process_metrics_from_fake(monitor: ResourceMonitor, fake: FakePsutil, clock: FakeClock) -> None:
    first = monitor.get_process_metrics(4242)
    assert first.pid == 4242
    # first sight: the average since the process started (1.5 CPU-s over ~10 s)
    assert first.cpu_percent == pytest.approx(15.0, rel=0.05)
    clock.now += 2.0
    fake.proc_cpu = (2.5, 1.0)
    second = monitor.get_process_metrics(4242)
    assert second.cpu_percent == pytest.approx(100.0 * 2.0 / 2.0)  # 2 CPU-s in 2 s = one full CPU
    assert (second.rss, second.vms, second.num_threads, second.num_fds) == (10_000, 50_000, 3, 7)
    assert (second.io_read_bytes, second.io_write_bytes) == (11, 22)
    assert (second.ctx_switches_voluntary, second.ctx_switches_involuntary) == (5, 6)
    assert (second.cpu_user, second.cpu_system) == (2.5, 1.0)


def test_missing_and_denied_processes_give_clear_errors(monitor: ResourceMonitor, fake: FakePsutil) -> None:
    fake.missing_pids.add(999_999)
    with pytest.raises(ProcessNotFoundError, match=r"process 999999: no such process") as info:
        monitor.get_process_metrics(999_999)
    assert isinstance(info.value, AmqadfError) and info.value.pid == 999_999
    assert info.value.__cause__ is None and info.value.__suppress_context__

    fake.denied_pids.add(1)
    with pytest.raises(ProcessAccessDeniedError, match=r"process 1: access denied"):
        monitor.get_process_metrics(1)
    with pytest.raises(ConfigError, match="pid"):
        monitor.get_process_metrics(-3)


# --- limits -----------------------------------------------------------------------------------------
def _metrics(cpu: float, memory: float, disks: dict[str, float]) -> ResourceMetrics:
    return ResourceMetrics(
        timestamp=0.0, interval=1.0, cpu_percent=cpu, cpu_count=2, memory_percent=memory,
        memory_total=100, memory_used=int(memory), memory_available=100 - int(memory),
        disks=tuple(
            resources.DiskUsage(m, "/dev/x", "ext4", 100, int(p), 100 - int(p), p) for m, p in disks.items()
        ),
        disk_read_bytes_per_s=0.0, disk_write_bytes_per_s=0.0, network_recv_bytes_per_s=0.0,
        network_sent_bytes_per_s=0.0, load_average=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cpu", "memory", "disk", "expected"),
    [
        (80.0, 80.0, 80.0, set()),  # at the threshold: not over it
        (80.1, 79.9, 79.9, {"cpu"}),
        (79.9, 80.1, 80.0, {"memory"}),
        (0.0, 0.0, 80.5, {"disk"}),
        (100.0, 100.0, 100.0, {"cpu", "memory", "disk"}),
    ],
)
def test_limits_at_and_around_the_thresholds(
    monitor: ResourceMonitor, cpu: float, memory: float, disk: float, expected: set[str]
) -> None:
    exceeded, warnings = monitor.check_resource_limits(
        0.8, 0.8, 0.8, metrics=_metrics(cpu, memory, {"/": disk})
    )
    assert exceeded is bool(expected)
    assert {w.split()[0].lower() for w in warnings} == expected
    assert set(monitor.limit_breaches) == expected


def test_limits_on_a_fresh_sample_by_default(monitor: ResourceMonitor, fake: FakePsutil) -> None:
    fake.disk_percent = {"/": 95.0, "/data": 85.0}
    exceeded, warnings = monitor.check_resource_limits(disk_threshold=0.9)
    assert exceeded
    assert warnings == ["disk / at 95.0% is over its limit of 90%"]
    assert monitor.check_resource_limits(cpu_threshold=1.0, memory_threshold=1.0, disk_threshold=1.0) == (
        False,
        [],
    )
    assert monitor.limit_breaches == {"disk": 1}


def test_the_agents_limit_watch_logs_each_mount_once_even_one_named_with_at(
    monitor: ResourceMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the agent's watch over the disks, and two mounts whose names differ only after an " at "
    thresholds = {"cpu_threshold": 1.0, "memory_threshold": 1.0, "disk_threshold": 0.9}
    watch = resources._LimitWatch(monitor, thresholds)
    full = _metrics(0.0, 0.0, {"/srv at a": 95.0, "/srv at b": 96.0})
    # WHEN both are over their limit in two samples in a row
    with caplog.at_level(logging.WARNING, logger="amqadf_agent.monitoring.resources"):
        watch(full)
        watch(full)
    # THEN each mount was logged once, when it went over
    assert [r.getMessage() for r in caplog.records] == [
        "amqadf-agent: disk /srv at a at 95.0% is over its limit of 90%",
        "amqadf-agent: disk /srv at b at 96.0% is over its limit of 90%",
    ]


@pytest.mark.parametrize("name", ["cpu_threshold", "memory_threshold", "disk_threshold"])
def test_a_percentage_threshold_is_rejected_with_a_hint(monitor: ResourceMonitor, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        monitor.check_resource_limits(**{name: 80})  # type: ignore[arg-type]
    assert info.value.setting == name
    assert "a fraction from 0 to 1" in info.value.reason
    assert "did you mean 0.8 for 80%?" in info.value.reason
    for bad in (-0.1, float("nan"), True, "0.8", 1000):
        with pytest.raises(ConfigError, match=name):
            monitor.check_resource_limits(**{name: bad})  # type: ignore[arg-type]


def test_a_breach_is_an_event_on_the_recording_span(monitor: ResourceMonitor) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("work"):
        monitor.check_resource_limits(metrics=_metrics(95.0, 10.0, {"/": 85.0, "/b": 90.0}))
    (span,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert events == [
        (semconv.EVENT_RESOURCE_LIMIT, {
            semconv.ATTR_RESOURCE_KIND: "cpu",
            "amqadf.resource.value": 0.95,
            "amqadf.resource.threshold": 0.8,
        }),
        (semconv.EVENT_RESOURCE_LIMIT, {
            semconv.ATTR_RESOURCE_KIND: "disk",
            "amqadf.resource.value": 0.9,
            "amqadf.resource.threshold": 0.8,
            semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT: "/b",
        }),
    ]  # fmt: skip


def test_bad_constructor_arguments(fake: FakePsutil) -> None:
    for kwargs in (
        {"update_interval": 0},
        {"update_interval": float("inf")},
        {"history_size": 0},
        {"history_size": 1.5},
    ):
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            ResourceMonitor(psutil_module=fake, **kwargs)


# --- metrics ----------------------------------------------------------------------------------------
def test_instruments_follow_the_contract_and_read_one_sample_per_collection(
    fake: FakePsutil, clock: FakeClock
) -> None:
    monitor = ResourceMonitor(clock=clock, psutil_module=fake)
    reader = InMemoryMetricReader()
    monitor.instrument(MeterProvider(metric_readers=[reader]))
    monitor.check_resource_limits(metrics=_metrics(90.0, 0.0, {}))

    got = collect(reader)
    emitted = [i for i in semconv.INSTRUMENTS if "monitoring.resources" in i.emitted_by]
    assert len(CONTRACT) == 15 and {i.name for i in CONTRACT} == {i.name for i in emitted}
    assert {k for k in got if k in {i.name for i in semconv.INSTRUMENTS}} == {i.name for i in CONTRACT}
    for inst in CONTRACT:
        assert inst.name in got, inst.name
        assert got[inst.name].unit == inst.unit, inst.name
        for key in points(got[inst.name]):
            assert {k for k, _ in key} == set(inst.attributes), inst.name
    # every instrument above, one psutil sample
    assert fake.calls["cpu_times"] == 1
    assert fake.calls["virtual_memory"] == 1
    assert fake.calls["disk_io_counters"] == 1
    assert fake.calls["net_io_counters"] == 1
    assert fake.calls["proc.cpu_times"] == 1
    assert "net_connections" not in fake.calls

    mem = points(got[semconv.SYSTEM_MEMORY_USAGE.name])
    assert mem[((semconv.ATTR_SYSTEM_MEMORY_STATE, "used"),)] == 400
    assert mem[((semconv.ATTR_SYSTEM_MEMORY_STATE, "cached"),)] == 200
    util = points(got[semconv.SYSTEM_MEMORY_UTILIZATION.name])
    assert util[((semconv.ATTR_SYSTEM_MEMORY_STATE, "used"),)] == 0.4
    cpu = points(got[semconv.SYSTEM_CPU_UTILIZATION.name])
    assert cpu[((semconv.ATTR_CPU_MODE, "idle"),)] == pytest.approx(0.8)
    assert sum(cpu.values()) == pytest.approx(1.0)
    disk_io = points(got[semconv.SYSTEM_DISK_IO.name])
    assert disk_io[((semconv.ATTR_DISK_IO_DIRECTION, "read"), (semconv.ATTR_SYSTEM_DEVICE, "sda"))] == 1000
    assert {dict(k)[semconv.ATTR_SYSTEM_DEVICE] for k in disk_io} == {"sda", "sda1", "nvme0n1"}  # not loop0
    net = points(got[semconv.SYSTEM_NETWORK_IO.name])
    assert {dict(k)[semconv.ATTR_NETWORK_INTERFACE_NAME] for k in net} == {"eth0", "lo"}  # not ifb0
    assert (
        net[((semconv.ATTR_NETWORK_INTERFACE_NAME, "eth0"), (semconv.ATTR_NETWORK_IO_DIRECTION, "receive"))]
        == 5000
    )
    fs = points(got[semconv.SYSTEM_FILESYSTEM_UTILIZATION.name])
    used_root = (
        (semconv.ATTR_SYSTEM_DEVICE, "/dev/sda1"),
        (semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT, "/"),
        (semconv.ATTR_SYSTEM_FILESYSTEM_STATE, "used"),
    )
    assert fs[used_root] == 0.5
    assert points(got[semconv.PROCESS_MEMORY_USAGE.name]) == {(): 10_000}
    assert points(got[semconv.PROCESS_FD_COUNT.name]) == {(): 7}
    assert points(got[semconv.SYSTEM_CPU_LOGICAL_COUNT.name]) == {(): 2}  # fake.cpu_count(logical=True)
    breaches = points(got[semconv.RESOURCE_LIMIT_BREACHES.name])
    assert breaches == {
        ((semconv.ATTR_RESOURCE_KIND, "cpu"),): 1,
        ((semconv.ATTR_RESOURCE_KIND, "memory"),): 0,
        ((semconv.ATTR_RESOURCE_KIND, "disk"),): 0,
    }

    collect(reader)  # same instant: the cached sample is reused
    assert fake.calls["cpu_times"] == 1
    clock.now += 1.0  # a later collection takes a new one
    fake.proc_cpu = (2.0, 0.5)  # one CPU-s in 1 s on 2 CPUs: utilization 0.5
    got = collect(reader)
    assert fake.calls["cpu_times"] == 2 and fake.calls["proc.cpu_times"] == 2
    proc_cpu = points(got[semconv.PROCESS_CPU_UTILIZATION.name])
    assert proc_cpu == {((semconv.ATTR_CPU_MODE, "user"),): 0.5, ((semconv.ATTR_CPU_MODE, "system"),): 0.0}
    assert points(got[semconv.PROCESS_CPU_TIME.name]) == {
        ((semconv.ATTR_CPU_MODE, "user"),): 2.0,
        ((semconv.ATTR_CPU_MODE, "system"),): 0.5,
    }


def test_instruments_against_the_real_psutil() -> None:
    monitor = ResourceMonitor()
    reader = InMemoryMetricReader()
    monitor.instrument(MeterProvider(metric_readers=[reader]))
    # no limit checked yet (the agent's default monitor checks none): no breach series at all
    assert semconv.RESOURCE_LIMIT_BREACHES.name not in collect(reader)
    # from the first check on, every kind has a series, starting from zero
    monitor.check_resource_limits(cpu_threshold=1.0, memory_threshold=1.0, disk_threshold=1.0)
    got = collect(reader)
    for inst in CONTRACT:
        assert inst.name in got and got[inst.name].unit == inst.unit, inst.name
    assert points(got[semconv.RESOURCE_LIMIT_BREACHES.name]) == {
        ((semconv.ATTR_RESOURCE_KIND, kind),): 0 for kind in ("cpu", "memory", "disk")
    }

    rss = psutil.Process().memory_info().rss
    (usage,) = points(got[semconv.PROCESS_MEMORY_USAGE.name]).values()
    assert abs(usage - rss) <= 0.2 * rss
    (threads,) = points(got[semconv.PROCESS_THREAD_COUNT.name]).values()
    assert threads == pytest.approx(threading.active_count(), abs=3)
    (fds,) = points(got[semconv.PROCESS_FD_COUNT.name]).values()
    assert points(got[semconv.SYSTEM_CPU_LOGICAL_COUNT.name]) == {(): psutil.cpu_count(logical=True)}
    assert fds == pytest.approx(psutil.Process().num_fds(), abs=5)
    for inst in (
        semconv.SYSTEM_CPU_UTILIZATION,
        semconv.SYSTEM_MEMORY_UTILIZATION,
        semconv.SYSTEM_FILESYSTEM_UTILIZATION,
        semconv.PROCESS_CPU_UTILIZATION,
    ):
        values = points(got[inst.name]).values()
        assert values, inst.name
        assert all(0.0 <= v <= 1.0 for v in values), (inst.name, values)
    used = points(got[semconv.SYSTEM_MEMORY_USAGE.name])[((semconv.ATTR_SYSTEM_MEMORY_STATE, "used"),)]
    assert abs(used - psutil.virtual_memory().used) <= 0.2 * psutil.virtual_memory().total
    real_mounts = {p.mountpoint for p in psutil.disk_partitions(all=False)}
    seen = {
        dict(k)[semconv.ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT]
        for k in points(got[semconv.SYSTEM_FILESYSTEM_USAGE.name])
    }
    assert seen <= real_mounts and "/proc" not in seen


def test_real_samples_agree_with_psutil() -> None:
    monitor = ResourceMonitor()
    sample = monitor.get_system_metrics()
    vm = psutil.virtual_memory()
    assert sample.memory_total == vm.total
    assert sample.memory_percent == pytest.approx(vm.percent, abs=5)
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert sample.cpu_count == psutil.cpu_count()
    time.sleep(0.05)
    second = monitor.get_system_metrics()
    assert second.interval is not None and second.interval > 0
    assert second.disk_read_bytes_per_s is not None and second.disk_read_bytes_per_s >= 0
    assert second.network_recv_bytes_per_s is not None and second.network_recv_bytes_per_s >= 0
    me = monitor.get_process_metrics()
    real = psutil.Process()
    assert me.pid == os.getpid()
    assert abs(me.rss - real.memory_info().rss) <= 0.2 * me.rss
    assert me.num_threads == real.num_threads()
    assert me.cpu_percent >= 0.0


def test_real_psutil_never_calls_net_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    # The monitor turns any error of a psutil reading into None, so a stand-in that raised would
    # go unnoticed: this one records its calls, and the test asserts on the record.
    calls: list[tuple[object, ...]] = []

    def recorded(*args: object, **kwargs: object) -> list[object]:
        calls.append(args)
        return []

    monkeypatch.setattr(psutil, "net_connections", recorded)
    # GIVEN a monitor with the defaults, WHEN it is collected, sampled and checked
    monitor = ResourceMonitor()
    reader = InMemoryMetricReader()
    monitor.instrument(MeterProvider(metric_readers=[reader]))
    collect(reader)
    monitor.get_system_metrics()
    monitor.check_resource_limits()
    # THEN it never counted connections
    assert calls == []
    # AND the stand-in is the function a monitor asked for connections calls
    assert ResourceMonitor(include_connections=True).get_system_metrics().network_connections == 0
    assert len(calls) == 1


def test_a_reaped_child_gives_a_clear_error() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessNotFoundError, match=rf"process {pid}: no such process"):
        ResourceMonitor().get_process_metrics(pid)


def test_register_with_agent_keeps_one_default_monitor() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    first = resources.register_with_agent(provider)
    assert resources.register_with_agent(provider) is first
    del first
    assert semconv.PROCESS_MEMORY_USAGE.name in collect(reader)  # alive: the module holds it


# --- background sampling ----------------------------------------------------------------------------
def test_start_and_stop_monitoring_with_a_real_thread(monitor: ResourceMonitor) -> None:
    seen: list[ResourceMetrics] = []
    three = threading.Event()

    def callback(metrics: ResourceMetrics) -> None:
        assert threading.current_thread().name == "amqadf-resource-monitor"
        assert threading.current_thread().daemon
        seen.append(metrics)
        if len(seen) >= 3:
            three.set()

    monitor.start_monitoring(callback)
    assert monitor.monitoring
    assert three.wait(2.0)
    assert monitor.stop_monitoring(timeout=1.0)
    assert not monitor.monitoring
    count = len(seen)
    time.sleep(0.12)
    assert len(seen) == count
    kept = min(count, 5)
    assert monitor.get_history()[-kept:] == seen[-kept:]


def test_a_failing_callback_is_isolated_logged_once_and_counted(
    monitor: ResourceMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    calls = threading.Semaphore(0)

    def broken(metrics: ResourceMetrics) -> None:
        calls.release()
        raise RuntimeError("boom")

    with caplog.at_level(logging.DEBUG, logger="amqadf_agent.monitoring.resources"):
        monitor.start_monitoring(broken)
        for _ in range(3):
            assert calls.acquire(timeout=2.0)
        monitor.stop_monitoring(timeout=1.0)
    assert monitor.callback_errors >= 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "callback" in warnings[0].getMessage()
    assert len(monitor.get_history()) >= 3  # sampling went on


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads running
def test_monitoring_resumes_in_a_forked_child(monitor: ResourceMonitor) -> None:
    r, w = os.pipe()

    def callback(metrics: ResourceMetrics) -> None:
        if os.getpid() != parent:
            os.write(w, b"x")

    parent = os.getpid()
    monitor.start_monitoring(callback)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not monitor.monitoring:
                time.sleep(0.01)
            time.sleep(0.2)  # a few intervals of 0.05 s
            thread_names = [t.name for t in threading.enumerate()]
            code = 0 if monitor.monitoring and "amqadf-resource-monitor" in thread_names else 2
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
        monitor.stop_monitoring(timeout=1.0)
        os.close(w)
        assert os.waitstatus_to_exitcode(status) == 0
        data = b""
        while chunk := os.read(r, 1024):
            data += chunk
        assert b"x" in data, "the callback never ran in the child"
    finally:
        os.close(r)


def test_importing_the_module_imports_no_opentelemetry_api_or_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, amqadf_agent.monitoring.resources as r; "
        "r.ResourceMonitor().check_resource_limits(0, 0, 0); "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.metrics', "
        "'opentelemetry.trace', 'opentelemetry.sdk'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failing_sample_is_counted_and_sampling_goes_on(monitor: ResourceMonitor, fake: FakePsutil) -> None:
    failures = {"left": 2}
    real = fake.cpu_times

    def flaky() -> CpuTimes:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("/proc unreadable")
        return real()

    fake.cpu_times = flaky  # type: ignore[method-assign]
    sampled = threading.Event()
    monitor.start_monitoring(lambda metrics: sampled.set())
    assert sampled.wait(2.0)
    assert monitor.stop_monitoring(timeout=1.0)
    assert monitor.sample_errors == 2


def test_start_twice_replaces_the_callback_and_keeps_one_thread(monitor: ResourceMonitor) -> None:
    second = threading.Event()
    monitor.start_monitoring(lambda metrics: None)
    monitor.start_monitoring(lambda metrics: second.set())
    assert second.wait(2.0)
    assert [t.name for t in threading.enumerate()].count("amqadf-resource-monitor") == 1
    assert "monitoring" in repr(monitor)
    monitor.stop_monitoring(timeout=1.0)
    assert "idle" in repr(monitor)
    with pytest.raises(ConfigError, match="callback"):
        monitor.start_monitoring(42)  # type: ignore[arg-type]


def test_a_field_denied_on_its_own_is_none_not_an_error(monitor: ResourceMonitor) -> None:
    def denied(self: FakeProcess) -> PIO:
        raise psutil.AccessDenied(self.pid)

    FakeProcess.io_counters, saved = denied, FakeProcess.io_counters  # type: ignore[method-assign]
    try:
        sample = monitor.get_process_metrics(4242)
    finally:
        FakeProcess.io_counters = saved  # type: ignore[method-assign]
    assert sample.io_read_bytes is None and sample.io_write_bytes is None
    assert sample.rss == 10_000


def test_no_event_without_a_recording_span(monitor: ResourceMonitor) -> None:
    from opentelemetry import trace

    assert not trace.get_current_span().is_recording()
    exceeded, _ = monitor.check_resource_limits(metrics=_metrics(99.0, 0.0, {}))
    assert exceeded and monitor.limit_breaches == {"cpu": 1}


def test_a_collection_rates_its_own_interval_whatever_samples_in_between(
    fake: FakePsutil, clock: FakeClock
) -> None:
    # GIVEN a collection at t=0, then a sample of the monitoring thread (or get_system_metrics) at
    # t=5 s, then the next collection at t=10 s
    monitor = ResourceMonitor(clock=clock, psutil_module=fake)
    reader = InMemoryMetricReader()
    monitor.instrument(MeterProvider(metric_readers=[reader]))
    fake.cpu = CpuTimes(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    fake.net = {"eth0": (1, 1)}
    collect(reader)
    monitor.get_system_metrics()
    clock.now += 5.0  # 0-5 s: every CPU busy in user mode, 5000 bytes received
    fake.cpu = CpuTimes(10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    fake.net = {"eth0": (5001, 1)}
    between = monitor.get_system_metrics()
    assert between.cpu_percent == 100.0 and between.network_recv_bytes_per_s == 1000.0
    clock.now += 5.0  # 5-10 s: every CPU idle, nothing received
    fake.cpu = CpuTimes(10.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    # WHEN the next collection runs
    got = collect(reader)
    # THEN its utilization covers 0-10 s (half busy), not the 5 s since the other sample (idle)
    cpu = points(got[semconv.SYSTEM_CPU_UTILIZATION.name])
    assert cpu[((semconv.ATTR_CPU_MODE, "user"),)] == pytest.approx(0.5)
    assert cpu[((semconv.ATTR_CPU_MODE, "idle"),)] == pytest.approx(0.5)
    # AND the samples keep their own baseline: the next one covers 5-10 s
    assert monitor.get_system_metrics().cpu_percent == 0.0
