"""start()/shutdown(): resource, global providers, idempotence, self-metrics, the guard, never raising."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import free_port

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.runtime import agent as agent_mod
from amqadf_agent.runtime import resource as resource_mod
from amqadf_agent.runtime import selfmetrics

AGENT_THREAD_PREFIXES = ("OtelBatch", "OtelPeriodicExportingMetricReader", "amqadf-")


class RaisingExporter(SpanExporter):
    """An exporter whose every export raises (a collector that is on fire)."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise RuntimeError("collector on fire")

    def shutdown(self) -> None:
        pass


class BlockingExporter(SpanExporter):
    """An exporter whose export hangs until released (a dead collector with a long timeout)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def start_in_memory(**overrides: Any) -> tuple[Any, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    agent = amqadf_agent.start(
        exporters=["none"], span_exporters=[spans], metric_readers=[reader], **overrides
    )
    assert agent.running, agent.error
    return agent, spans, reader


def collect(reader: InMemoryMetricReader) -> MetricsData:
    data = reader.get_metrics_data()
    assert data is not None
    return data


def metric_points(data: MetricsData, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    found: dict[frozenset[tuple[str, Any]], Any] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[frozenset(point.attributes.items())] = point
    return found


def find_metric(data: MetricsData, name: str) -> Any:
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric
    raise AssertionError(f"{name} not collected")


def warnings_with(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and needle in r.getMessage()
    ]


# --- the resource ------------------------------------------------------------------------------------


def test_spans_and_metrics_carry_the_resource() -> None:
    agent, spans, reader = start_in_memory(
        service_name="checkout", service_version="2.1.0", environment="staging"
    )
    with agent.tracer("test").start_as_current_span("work"):
        pass
    agent.meter("test").create_counter("test.work").add(1)
    assert agent.force_flush()

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["work"]
    data = collect(reader)
    resources = [finished[0].resource.attributes] + [rm.resource.attributes for rm in data.resource_metrics]
    assert len(resources) == 2
    for attrs in resources:
        assert attrs[semconv.ATTR_SERVICE_NAME] == "checkout"
        assert attrs[semconv.ATTR_SERVICE_VERSION] == "2.1.0"
        assert attrs[semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME] == "staging"
        instance = attrs[semconv.ATTR_SERVICE_INSTANCE_ID]
        assert str(uuid.UUID(instance)) == instance
        assert attrs[semconv.ATTR_HOST_NAME] == socket.gethostname()
        assert attrs[semconv.ATTR_PROCESS_PID] == os.getpid()
        assert attrs[semconv.ATTR_TELEMETRY_DISTRO_NAME] == semconv.DISTRO_NAME
        assert attrs[semconv.ATTR_TELEMETRY_DISTRO_VERSION]
        assert attrs["telemetry.sdk.name"] == "opentelemetry"
        assert attrs["telemetry.sdk.language"] == "python"
        assert attrs["telemetry.sdk.version"]
    # One resource, one instance id, for both signals and the handle.
    assert resources[0][semconv.ATTR_SERVICE_INSTANCE_ID] == resources[1][semconv.ATTR_SERVICE_INSTANCE_ID]
    assert agent.service_instance_id == resources[0][semconv.ATTR_SERVICE_INSTANCE_ID]


def test_global_providers_are_the_agents() -> None:
    agent, spans, reader = start_in_memory()
    assert trace.get_tracer_provider() is agent.tracer_provider
    assert metrics.get_meter_provider() is agent.meter_provider
    with trace.get_tracer("some.instrumentation").start_as_current_span("from-global"):
        pass
    metrics.get_meter("some.instrumentation").create_counter("global.counter").add(3)
    assert agent.force_flush()
    assert [s.name for s in spans.get_finished_spans()] == ["from-global"]
    points = metric_points(collect(reader), "global.counter")
    assert [p.value for p in points.values()] == [3]


def test_otel_service_name_and_resource_attributes_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=payments,deployment.environment.name=qa"
    )
    agent, _, _ = start_in_memory()
    assert agent.resource is not None
    attrs = agent.resource.attributes
    assert attrs[semconv.ATTR_SERVICE_NAME] == "from-attrs"
    assert attrs["team"] == "payments"
    assert attrs[semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME] == "qa"


def test_otel_service_name_beats_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=payments")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    agent, spans, _ = start_in_memory()
    with agent.tracer().start_as_current_span("work"):
        pass
    assert agent.force_flush()
    attrs = spans.get_finished_spans()[0].resource.attributes
    assert attrs[semconv.ATTR_SERVICE_NAME] == "from-env"
    assert attrs["team"] == "payments"


def test_explicit_service_name_wins_and_other_keys_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=from-attrs,team=payments,deployment.environment.name=qa,service.version=0.9",
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    agent, spans, _ = start_in_memory(service_name="explicit", environment="prod", service_version="1.0")
    with agent.tracer().start_as_current_span("work"):
        pass
    assert agent.force_flush()
    attrs = spans.get_finished_spans()[0].resource.attributes
    assert attrs[semconv.ATTR_SERVICE_NAME] == "explicit"
    assert attrs[semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME] == "prod"
    assert attrs[semconv.ATTR_SERVICE_VERSION] == "1.0"
    assert attrs["team"] == "payments"
    assert attrs[semconv.ATTR_TELEMETRY_DISTRO_NAME] == semconv.DISTRO_NAME


# --- life cycle --------------------------------------------------------------------------------------


def test_start_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    agent, _, _ = start_in_memory(service_name="first")
    assert amqadf_agent.start() is agent
    assert warnings_with(caplog, "already started") == []
    again = amqadf_agent.start(service_name="second")
    assert again is agent
    assert agent.settings.service_name == "first"
    assert len(warnings_with(caplog, "already started")) == 1
    assert amqadf_agent.get_agent() is agent


def test_context_manager_shuts_down_on_exit() -> None:
    spans = InMemorySpanExporter()
    with amqadf_agent.start(exporters=["none"], span_exporters=[spans]) as agent:
        assert agent.running
        assert amqadf_agent.get_agent() is agent
        with agent.tracer().start_as_current_span("inside"):
            pass
    assert not agent.running
    assert amqadf_agent.get_agent() is None
    # Shutdown flushed what was buffered.
    assert [s.name for s in spans.get_finished_spans()] == ["inside"]


def test_shutdown_twice_is_harmless(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    agent, _, _ = start_in_memory()
    assert agent.shutdown() is True
    assert agent.shutdown() is True
    assert amqadf_agent.shutdown() is True
    assert not agent.running
    assert amqadf_agent.get_agent() is None
    assert warnings_with(caplog, "amqadf-agent") == []
    # A handle that was shut down still hands out working (no-op or finished) tracers.
    with agent.tracer().start_as_current_span("after"):
        pass


def test_start_after_shutdown_starts_a_new_agent() -> None:
    first, _, _ = start_in_memory()
    first.shutdown()
    second = amqadf_agent.start(exporters=["none"])
    assert second is not first
    assert second.running
    assert amqadf_agent.get_agent() is second


# --- self-metrics and the guard ----------------------------------------------------------------------


def test_self_metrics_report_cpu_time_per_agent_thread() -> None:
    agent, _, reader = start_in_memory()
    with agent.tracer().start_as_current_span("work"):
        pass
    assert agent.force_flush()
    data = collect(reader)
    metric = find_metric(data, semconv.AGENT_CPU_TIME.name)
    assert metric.unit == "s"
    assert metric.data.is_monotonic
    threads = {dict(p.attributes)[semconv.ATTR_AGENT_THREAD]: p.value for p in metric.data.data_points}
    assert "span_export" in threads
    assert all(value >= 0 for value in threads.values())
    assert set(threads) <= {"span_export", "metric_export", "log_export", "agent"}


def test_application_work_on_helper_threads_is_not_agent_cpu() -> None:
    # GIVEN a function under @timeout (it runs on an amqadf-timeout-* thread) that burns CPU
    from amqadf_agent.resilience.timeout import timeout

    @timeout(5.0, name="burner")
    def burn() -> int:
        deadline, n = time.process_time() + 0.5, 0
        while time.process_time() < deadline:
            n += 1
        return n

    cpu = selfmetrics.ThreadCpu()
    caller = threading.Thread(target=burn)
    caller.start()
    # WHEN the agent's CPU is read while it burns THEN none of it is the agent's
    time.sleep(0.3)
    during = cpu.totals()
    caller.join()
    assert during.get("agent", 0.0) < 0.05, during
    assert selfmetrics._kind("amqadf-timeout-burner") is None
    assert selfmetrics._kind("amqadf-lb-health-pool") is None
    assert selfmetrics._kind("amqadf-resource-monitor") == "agent"
    assert selfmetrics._kind("amqadf-agent-shutdown") == "agent"


def test_the_log_batch_processor_reports_its_queue() -> None:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    logs = InMemoryLogRecordExporter()
    agent, _, reader = start_in_memory(capture_logs=True, log_exporters=[logs])
    logging.getLogger("app").warning("hello")
    assert agent.force_flush()
    data = collect(reader)
    capacity = find_metric(data, semconv.SDK_LOG_QUEUE_CAPACITY.name)
    assert [p.value for p in capacity.data.data_points] == [2048]
    processed = find_metric(data, semconv.SDK_LOG_PROCESSED.name)
    assert sum(p.value for p in processed.data.data_points) >= 1
    assert find_metric(data, semconv.SDK_LOG_QUEUE_SIZE.name).unit == semconv.SDK_LOG_QUEUE_SIZE.unit


def test_self_metrics_off_reports_no_agent_metrics() -> None:
    agent, _, reader = start_in_memory(self_metrics=False)
    agent.meter().create_counter("user.counter").add(1)
    data = collect(reader)
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "user.counter" in names
    assert not names & {
        semconv.AGENT_CPU_TIME.name,
        semconv.AGENT_EXPORT_FAILURES.name,
        semconv.AGENT_DROPPED.name,
    }


def test_a_raising_exporter_is_counted_logged_once_and_never_reaches_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    raising = RaisingExporter()
    healthy = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    agent = amqadf_agent.start(exporters=["none"], span_exporters=[raising, healthy], metric_readers=[reader])
    batches = 4
    for i in range(batches):
        with agent.tracer().start_as_current_span(f"work-{i}"):
            pass
        with agent.tracer().start_as_current_span(f"more-{i}"):
            pass
        assert agent.force_flush()  # each flush is one failed batch of 2 spans; nothing raises
    assert raising.calls == batches
    # The healthy exporter beside it got everything.
    assert len(healthy.get_finished_spans()) == 2 * batches

    data = collect(reader)
    key = frozenset(
        {
            semconv.ATTR_AGENT_SIGNAL: "traces",
            semconv.ATTR_AGENT_EXPORTER: "RaisingExporter",
            semconv.ATTR_ERROR_TYPE: "RuntimeError",
        }.items()
    )
    failures = metric_points(data, semconv.AGENT_EXPORT_FAILURES.name)
    dropped = metric_points(data, semconv.AGENT_DROPPED.name)
    assert set(failures) == {key}
    assert failures[key].value == batches
    assert set(dropped) == {key}
    assert dropped[key].value == 2 * batches

    logged = warnings_with(caplog, "RaisingExporter")
    assert len(logged) == 1, logged
    assert "RuntimeError" in logged[0]
    assert "collector on fire" in logged[0]
    # Nor did the SDK log a traceback per batch.
    assert not [r for r in caplog.records if r.exc_info]


def test_seconds_histogram_of_user_code_gets_the_seconds_buckets() -> None:
    agent, _, reader = start_in_memory()
    meter = agent.meter("user.code")
    meter.create_histogram("app.job.duration", unit="s").record(0.2)
    meter.create_histogram("app.job.size", unit="By").record(2000)
    data = collect(reader)
    seconds = list(metric_points(data, "app.job.duration").values())
    assert len(seconds) == 1
    assert tuple(seconds[0].explicit_bounds) == semconv.SECONDS_BUCKETS
    assert seconds[0].count == 1
    assert sum(seconds[0].bucket_counts) == 1
    # 0.2 s lands in (0.1, 0.25], not in the first bucket.
    assert seconds[0].bucket_counts[semconv.SECONDS_BUCKETS.index(0.25)] == 1
    # The View matches the unit only: other histograms keep the SDK's defaults.
    other = list(metric_points(data, "app.job.size").values())
    assert tuple(other[0].explicit_bounds) != semconv.SECONDS_BUCKETS


def test_observable_instruments_carry_no_exemplars_and_histograms_keep_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN exemplars for every measurement (the SDK reads the filter when the provider is made)
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_on")
    agent, _, reader = start_in_memory()
    meter = agent.meter("user.code")
    meter.create_observable_gauge("app.queue.depth", [lambda options: [Observation(3)]])
    meter.create_observable_counter("app.items", [lambda options: [Observation(7)]])
    with agent.tracer("user.code").start_as_current_span("job"):
        meter.create_histogram("app.job.duration", unit="s").record(0.2)
    data = collect(reader)
    # THEN the observable points have none (taken in the collection's context, they could only
    # be exemplars without a trace), while the histogram recorded in a span keeps its exemplar
    for name in ("app.queue.depth", "app.items"):
        (point,) = metric_points(data, name).values()
        assert point.exemplars == [], name
    (histogram,) = metric_points(data, "app.job.duration").values()
    assert len(histogram.exemplars) == 1 and histogram.exemplars[0].trace_id
    # (control: the same observable gauge on a provider without the agent's views has one)
    bare_reader = InMemoryMetricReader()
    bare = MeterProvider(metric_readers=[bare_reader]).get_meter("bare")
    bare.create_observable_gauge("app.queue.depth", [lambda options: [Observation(3)]])
    (bare_point,) = metric_points(collect(bare_reader), "app.queue.depth").values()
    assert len(bare_point.exemplars) == 1


def test_seconds_histogram_with_advisory_boundaries_keeps_them() -> None:
    # The View is for histograms that say nothing; boundaries the instrument advises must win
    # (a batch job timed in seconds up to minutes needs buckets beyond 10 s).
    agent, _, reader = start_in_memory()
    advised = (1.0, 60.0, 600.0)
    histogram = agent.meter("user.code").create_histogram(
        "app.batch.duration", unit="s", explicit_bucket_boundaries_advisory=list(advised)
    )
    histogram.record(30.0)
    [point] = metric_points(collect(reader), "app.batch.duration").values()
    assert tuple(point.explicit_bounds) == advised
    assert list(point.bucket_counts) == [0, 1, 0, 0]


# --- never raise, never hang -------------------------------------------------------------------------


def _agent_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(AGENT_THREAD_PREFIXES) and t.is_alive()}


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom in build")


@pytest.mark.parametrize(
    ("target", "name"),
    [(resource_mod, "build_resource"), (selfmetrics, "register")],
    ids=["resource", "selfmetrics"],
)
def test_start_never_raises(
    target: Any,
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _agent_threads()
    monkeypatch.setattr(target, name, _boom)
    spans = InMemorySpanExporter()
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path, span_exporters=[spans])

    assert isinstance(agent, agent_mod.Agent)
    assert agent.running is False
    assert agent.error is not None
    assert "RuntimeError" in agent.error
    assert "boom in build" in agent.error
    assert amqadf_agent.get_agent() is None
    err = capsys.readouterr().err
    starting = [line for line in err.splitlines() if line.startswith("amqadf-agent: could not start")]
    assert len(starting) == 1, err
    assert "boom in build" in starting[0]

    # The application runs on: no-op tracer and meter, no global provider set.
    with agent.tracer().start_as_current_span("still works"):
        pass
    agent.meter().create_counter("c").add(1)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert agent.shutdown() is True

    # Nothing keeps exporting in the background.
    deadline = time.monotonic() + 2.0
    while _agent_threads() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _agent_threads() - before
    assert spans.get_finished_spans() == ()


def _open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@pytest.mark.parametrize(
    ("target", "name"),
    [(resource_mod, "build_resource"), (selfmetrics, "register")],
    ids=["resource", "selfmetrics"],
)
def test_failed_start_leaves_no_open_files(
    target: Any, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target, name, _boom)
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path)
    assert agent.error is not None
    assert _open_files_under(tmp_path) == []


def _proc_files_open() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, gone already
            continue
        if target.startswith("/proc/") and not target.endswith("/fd"):
            found.append(target)
    return found


def test_shutdown_closes_the_proc_files_the_resource_collection_kept_open() -> None:
    agent, _, reader = start_in_memory()
    from amqadf_agent.monitoring import resources

    assert resources._default is not None
    resources._default._snapshot = None  # not the fresh sample of an earlier test's collection
    collect(reader)
    assert "/proc/meminfo" in _proc_files_open()  # kept between collections
    agent.shutdown()
    assert _proc_files_open() == []


@contextlib.contextmanager
def hanging_export() -> Iterator[tuple[agent_mod.Agent, BlockingExporter]]:
    """A started agent whose one span's export hangs until the block ends; yields it and the exporter."""
    blocking = BlockingExporter()
    agent = amqadf_agent.start(exporters=["none"], span_exporters=[blocking])
    try:
        with agent.tracer().start_as_current_span("stuck"):
            pass
        yield agent, blocking
    finally:
        blocking.release.set()


def test_shutdown_deadline_with_a_hanging_exporter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with hanging_export() as (agent, blocking):
        began = time.monotonic()
        finished = agent.shutdown(timeout=0.5)
        elapsed = time.monotonic() - began
        assert finished is False
        assert elapsed < 2.0
        assert blocking.entered.is_set()  # the export was really hanging, not skipped
        assert not agent.running
        assert amqadf_agent.get_agent() is None
        logged = warnings_with(caplog, "did not finish")
        assert len(logged) == 1, logged
        assert "0.5s" in logged[0]


def test_force_flush_deadline_with_a_hanging_exporter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with hanging_export() as (agent, _):
        began = time.monotonic()
        assert agent.force_flush(timeout=0.3) is False
        assert time.monotonic() - began < 2.0
        assert len(warnings_with(caplog, "flush did not finish within 0.3s")) == 1


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("target", "name"),
    [(resource_mod, "build_resource"), (selfmetrics, "register")],
    ids=["resource", "selfmetrics"],
)
def test_failed_start_stops_the_prometheus_endpoint(
    target: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(target, name, _boom)
    agent = amqadf_agent.start(exporters=["prometheus"], prometheus_port=port)
    assert agent.error is not None
    assert not _listening(port), f"the Prometheus endpoint on port {port} is still serving"


# -- sampling, log level, namespace ----------------------------------------------------------------
def _spans_of_twenty_roots(**overrides: Any) -> int:
    agent, spans, _ = start_in_memory(**overrides)
    try:
        tracer = agent.tracer("sampling-test")
        for _ in range(20):
            with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
                pass
        assert agent.force_flush()
        return len(spans.get_finished_spans())
    finally:
        agent.shutdown()


def test_sample_ratio_reaches_the_tracer_providers_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert _spans_of_twenty_roots(sample_ratio=1.0) == 40
    assert _spans_of_twenty_roots(sample_ratio=0.0) == 0  # children follow their unsampled parent


def test_otel_traces_sampler_is_honoured_unless_a_ratio_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert _spans_of_twenty_roots() == 0
    assert _spans_of_twenty_roots(sample_ratio=1.0) == 40  # an explicit setting wins


def test_log_level_sets_the_agents_logger_and_shutdown_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQADF_LOG_LEVEL", raising=False)
    monkeypatch.delenv("OTEL_LOG_LEVEL", raising=False)
    own = logging.getLogger("amqadf_agent")
    before = own.level
    agent, _, _ = start_in_memory(log_level="error")
    assert (agent.settings.log_level, own.level) == ("ERROR", logging.ERROR)
    agent.shutdown()
    assert own.level == before
    # Not given: the application's logging is left alone.
    agent, _, _ = start_in_memory()
    assert agent.settings.log_level is None and own.level == before
    agent.shutdown()


def test_a_bad_log_level_is_named_and_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQADF_LOG_LEVEL", "loud")
    before = logging.getLogger("amqadf_agent").level
    agent, _, _ = start_in_memory()
    try:
        assert agent.settings.log_level is None
        assert any(
            p.setting == "AMQADF_LOG_LEVEL" and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(p)
            for p in agent.problems
        ), agent.problems
        assert logging.getLogger("amqadf_agent").level == before
    finally:
        agent.shutdown()


def test_service_namespace_reaches_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    agent, spans, _ = start_in_memory(service_namespace="payments")
    try:
        with agent.tracer().start_as_current_span("op"):
            pass
        assert agent.force_flush()
        (span,) = spans.get_finished_spans()
        assert span.resource.attributes[semconv.ATTR_SERVICE_NAMESPACE] == "payments"
    finally:
        agent.shutdown()


def test_a_deferred_logger_provider_that_cannot_build_gives_loggers_that_do_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry._logs import LogRecord, NoOpLogger

    from amqadf_agent.runtime.providers import DeferredLoggerProvider

    def build() -> Any:
        raise OSError("disk gone")

    deferred = DeferredLoggerProvider(build)
    with caplog.at_level(logging.WARNING, logger="amqadf_agent"):
        first, second = deferred.get_logger("a"), deferred.get_logger("b")
    first.emit(LogRecord(body="dropped"))  # never raises into the caller
    assert isinstance(first, NoOpLogger) and isinstance(second, NoOpLogger)
    assert [r.getMessage() for r in caplog.records] == ["amqadf-agent: OpenTelemetry logs are off: disk gone"]
    assert deferred.provider is None and deferred.force_flush() is True
    deferred.shutdown()
