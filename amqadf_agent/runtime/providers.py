"""The three SDK providers ``start()`` builds from ``AgentSettings``, and what they are built with.

``agent.py`` owns the agent's life (start, fork, exit); this module only turns settings and
exporters into a meter, a tracer and a logger provider, with the agent's Views, its own metrics and
the resource monitor. Nothing here sets a global or starts anything the caller cannot close.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry._logs import LoggerProvider as ApiLoggerProvider  # the API's (the SDK's is not imported)

from amqadf_agent import semconv
from amqadf_agent.config.settings import AgentSettings
from amqadf_agent.runtime.batch_wakeup import keep_wakeups

if TYPE_CHECKING:
    from opentelemetry._logs import Logger
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.util.types import Attributes

    from amqadf_agent.runtime.exporters import Exporters
    from amqadf_agent.runtime.guard import ExportStats
    from amqadf_agent.runtime.selfmetrics import ThreadCpu

logger = logging.getLogger("amqadf_agent")


class Providers(NamedTuple):
    meter: MeterProvider
    tracer: TracerProvider
    logger: LoggerProvider | DeferredLoggerProvider
    cpu: ThreadCpu


def build(
    settings: AgentSettings,
    explicit: set[str],
    resource: Resource,
    built: Exporters,
    stats: ExportStats,
    created: list[Any],
) -> Providers:
    """The providers, each appended to ``created`` as soon as it exists (the caller shuts them
    down if a later step fails)."""
    from amqadf_agent.runtime import selfmetrics

    meter_provider = _meter_provider(settings, resource, built)
    created.append(meter_provider)
    tracer_provider = _tracer_provider(settings, explicit, resource, built, meter_provider)
    created.append(tracer_provider)
    logger_provider: LoggerProvider | DeferredLoggerProvider
    if not (settings.capture_logs or built.logs):  # logs not captured: the log SDK waits for a logger
        logger_provider = DeferredLoggerProvider(
            lambda: _logger_provider(settings, resource, built.make_logs(), meter_provider)
        )
    else:
        logger_provider = _logger_provider(settings, resource, built.logs, meter_provider)
    created.append(logger_provider)
    cpu = selfmetrics.ThreadCpu()
    if settings.self_metrics:
        selfmetrics.register(meter_provider, stats, cpu)
    if settings.resource_monitor:
        _register_resource_monitor(settings, meter_provider, built)
    return Providers(meter_provider, tracer_provider, logger_provider, cpu)


def _meter_provider(settings: AgentSettings, resource: Resource, built: Exporters) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    interval_ms = settings.metric_interval * 1000
    readers = [
        PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
        for exporter in built.metrics
    ] + built.readers
    return MeterProvider(
        metric_readers=readers, resource=resource, views=metric_views(), shutdown_on_exit=False
    )


def _tracer_provider(
    settings: AgentSettings,
    explicit: set[str],
    resource: Resource,
    built: Exporters,
    meter_provider: MeterProvider,
) -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from amqadf_agent.runtime.guard import watch_queue

    sampler = None  # the SDK's, from OTEL_TRACES_SAMPLER, unless a ratio was given to start()
    if "sample_ratio" in explicit or "OTEL_TRACES_SAMPLER" not in os.environ:
        sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
    tracer_provider = TracerProvider(
        resource=resource,
        sampler=sampler,
        shutdown_on_exit=False,
        active_span_processor=span_processors(),
    )
    if settings.sanitize or settings.redact_attributes:  # first: every later processor sees the result
        from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor

        tracer_provider.add_span_processor(
            SanitizingSpanProcessor(
                sanitize=settings.sanitize,
                keep_db_parameters=settings.keep_db_parameters,
                redact_attributes=settings.redact_attributes,
            )
        )
    if settings.code_location:  # first: the exporters' processors see the spans with it
        from amqadf_agent.runtime.code_location import CodeLocationProcessor
        from amqadf_agent.runtime.n_plus_one import NPlusOneProcessor

        tracer_provider.add_span_processor(CodeLocationProcessor())
        tracer_provider.add_span_processor(NPlusOneProcessor())
    for span_exporter in built.spans:
        with _sdk_processor_metrics(settings.self_metrics):
            processor = BatchSpanProcessor(
                span_exporter,
                max_queue_size=settings.max_queue_size,
                schedule_delay_millis=settings.span_export_delay * 1000,
                max_export_batch_size=min(512, settings.max_queue_size),
                meter_provider=meter_provider,
            )
        keep_wakeups(processor)
        watch_queue(span_exporter, processor)  # what it holds at the deadline is counted
        tracer_provider.add_span_processor(processor)
    return tracer_provider


def span_processors() -> Any:
    """The SDK's ``SynchronousMultiSpanProcessor``, calling only the hooks that do something.

    The SDK's calls each processor's ``on_start``, ``_on_ending`` and ``on_end`` on every span, on
    the application's thread; the agent's batch processors do nothing in the first two, its own
    processors nothing in ``_on_ending``, the sanitizer nothing in ``on_start`` and the code
    location nothing in ``on_end``. This one keeps, for each hook, the processors that define it, in
    the order they were added (the same calls as the SDK's, minus the empty ones).
    """
    from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Hooks whose body is known to be empty: the base class's, and the SDK batch processor's
    # ``on_start`` and ``_on_ending`` (tests/test_export_span_processors.py reads their source).
    empty = {
        name: {getattr(SpanProcessor, name), getattr(BatchSpanProcessor, name)}
        for name in ("on_start", "_on_ending")
    }
    empty["on_end"] = {SpanProcessor.on_end}

    class SpanProcessors(SynchronousMultiSpanProcessor):
        def __init__(self) -> None:
            self._starting: tuple[Any, ...] = ()
            self._ending: tuple[Any, ...] = ()
            self._ended: tuple[Any, ...] = ()
            super().__init__()  # type: ignore[no-untyped-call]

        @property
        def _span_processors(self) -> tuple[SpanProcessor, ...]:
            return self._all

        @_span_processors.setter
        def _span_processors(self, processors: tuple[SpanProcessor, ...]) -> None:
            self._all = processors
            self._starting = tuple(p for p in processors if _defined(p, "on_start", empty))
            self._ending = tuple(p for p in processors if _defined(p, "_on_ending", empty))
            self._ended = tuple(p for p in processors if _defined(p, "on_end", empty))

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            for processor in self._starting:
                processor.on_start(span, parent_context=parent_context)

        def _on_ending(self, span: Any) -> None:
            for processor in self._ending:
                processor._on_ending(span)

        def on_end(self, span: Any) -> None:
            for processor in self._ended:
                processor.on_end(span)

    return SpanProcessors()


def _defined(processor: Any, name: str, empty: dict[str, set[Any]]) -> bool:
    """Whether ``processor``'s hook ``name`` is one that does something."""
    return getattr(type(processor), name, None) not in empty[name]


def _logger_provider(
    settings: AgentSettings, resource: Resource, exporters: list[Any], meter_provider: MeterProvider
) -> LoggerProvider:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from amqadf_agent.runtime.guard import watch_queue

    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    if settings.sanitize or settings.redact_attributes:  # first: the exporters see the result
        from amqadf_agent.runtime.sanitize import SanitizingLogProcessor

        logger_provider.add_log_record_processor(
            SanitizingLogProcessor(sanitize=settings.sanitize, redact_attributes=settings.redact_attributes)
        )
    for log_exporter in exporters:
        with _sdk_processor_metrics(settings.self_metrics):
            log_processor = BatchLogRecordProcessor(log_exporter, meter_provider=meter_provider)
        keep_wakeups(log_processor)
        watch_queue(log_exporter, log_processor)
        logger_provider.add_log_record_processor(log_processor)
    return logger_provider


class DeferredLoggerProvider(ApiLoggerProvider):
    """The global logger provider of a start that does not capture logs.

    Only an OpenTelemetry instrumentation that emits logs or events asks it for a logger; at the
    first one it builds the SDK's provider and its exporters (the log SDK costs ~10 ms of start-up
    that most processes never use). A build that fails is logged once and its loggers do nothing.
    """

    def __init__(self, build: Callable[[], LoggerProvider]) -> None:
        self._build: Callable[[], LoggerProvider] | None = build
        self._provider: LoggerProvider | None = None
        self._lock = threading.Lock()

    @property
    def provider(self) -> LoggerProvider | None:
        """The SDK's provider, once a logger was asked for (None before, and after a failed build)."""
        return self._provider

    def get_logger(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Logger:
        provider = self._provider or self._built()
        if provider is None:
            from opentelemetry._logs import NoOpLogger

            return NoOpLogger(name, version=version, schema_url=schema_url, attributes=attributes)
        return provider.get_logger(name, version, schema_url, attributes)

    def _built(self) -> LoggerProvider | None:
        with self._lock:
            build, self._build = self._build, None
            if build is not None:
                try:
                    self._provider = build()
                except Exception as exc:  # never into the instrumentation asking
                    logger.warning("amqadf-agent: OpenTelemetry logs are off: %s", exc)
            return self._provider

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        provider = self._provider
        return True if provider is None else provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut the SDK's provider down, if built; no logger asked for later builds one."""
        with self._lock:
            self._build = None
            provider = self._provider
        if provider is not None:
            provider.shutdown()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # it may have been held by a thread the child does not have


def _register_resource_monitor(
    settings: AgentSettings, meter_provider: MeterProvider, built: Exporters
) -> None:
    from amqadf_agent.monitoring import procfs
    from amqadf_agent.monitoring.resources import register_with_agent

    monitor = register_with_agent(  # never raises
        meter_provider,
        update_interval=settings.resource_interval,
        cpu_threshold=settings.resource_cpu_threshold,
        memory_threshold=settings.resource_memory_threshold,
    )
    if monitor.monitoring:  # limits configured: its thread ends with the agent
        built.closers.append(lambda: monitor.stop_monitoring(timeout=0.5))
    built.closers.append(procfs.close)  # the /proc files its collections keep open


def log_handler(logger_provider: ApiLoggerProvider) -> logging.Handler:
    """The handler that exports the application's ``logging`` records (``capture_logs``)."""
    from opentelemetry.sdk._logs import LoggingHandler

    with warnings.catch_warnings():
        # Deprecated in SDK 1.45 in favour of opentelemetry-instrumentation-logging's handler;
        # the SDK's still works, and moving is a dependency decision of its own.
        warnings.simplefilter("ignore", DeprecationWarning)
        sdk_handler = LoggingHandler(logger_provider=logger_provider)
    from amqadf_agent.runtime.log_correlation import without_fields

    return _capture_logs(without_fields(sdk_handler))  # the ids are the record's own


def _not_a_diagnostic(record: logging.LogRecord) -> bool:
    """False for the agent runtime's and the SDK's own records (they are not the app's logs)."""
    name = record.name
    return name != "amqadf_agent" and not name.startswith(("amqadf_agent.runtime", "opentelemetry"))


def _capture_logs(handler: logging.Handler) -> logging.Handler:
    """Export the application's log records, but not the agent's or the SDK's own.

    Their diagnostics would feed the pipeline they report on (a warning that the collector is
    down, sent to that collector). And once a handler sits on the root logger, Python stops printing
    unhandled warnings to stderr, so where the app had configured no logging, the agent's own
    warnings get a stderr handler of their own.
    """
    handler.addFilter(_not_a_diagnostic)
    root = logging.getLogger()
    if not root.handlers and not any(getattr(h, "_amqadf_stderr", False) for h in logger.handlers):
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(message)s"))
        stderr.setLevel(logging.WARNING)
        stderr.addFilter(lambda record: not _not_a_diagnostic(record))  # the app's records are exported
        stderr._amqadf_stderr = True  # type: ignore[attr-defined]
        logger.addHandler(stderr)
    root.addHandler(handler)
    return handler


def metric_views() -> list[Any]:
    """The Views of the agent's meter provider.

    - Histograms in seconds get explicit buckets (docs/design.md: the SDK's default ones are for ms).
    - Observable instruments get no exemplar reservoir. Their measurements are taken in the
      collection's own context, never inside a request's span, so a reservoir can only ever hold
      exemplars without a trace; the SDK still pays for one per point at every collection (about
      1 µs each: ~35 µs of a resource collection, ``tests/bench/bench_resource_monitor.py``).
    """
    from opentelemetry.sdk.metrics import (
        ExemplarReservoir,
        Histogram,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
    )
    from opentelemetry.sdk.metrics.view import View

    class NoExemplars(ExemplarReservoir):
        def offer(self, *args: Any, **kwargs: Any) -> None:
            pass

        def collect(self, point_attributes: Any) -> list[Any]:
            return []

    empty = NoExemplars()

    def no_exemplars(aggregation_type: Any) -> Callable[..., ExemplarReservoir]:
        return lambda **options: empty

    seconds = View(instrument_type=Histogram, instrument_unit="s", aggregation=_seconds_aggregation())
    observable = [
        View(instrument_type=kind, exemplar_reservoir_factory=no_exemplars)
        for kind in (ObservableCounter, ObservableGauge, ObservableUpDownCounter)
    ]
    return [seconds, *observable]


def _seconds_aggregation() -> Any:
    """Buckets for histograms in seconds: the instrument's advisory boundaries when it gives them,
    the contract's ``SECONDS_BUCKETS`` otherwise (a View's aggregation would override advice)."""
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation

    class SecondsHistogramAggregation(ExplicitBucketHistogramAggregation):
        def __init__(self) -> None:
            super().__init__(semconv.SECONDS_BUCKETS)
            self._advised = ExplicitBucketHistogramAggregation(None)  # the base reads the advisory

        def _create_aggregation(self, instrument: Any, *args: Any, **kwargs: Any) -> Any:
            advisory = getattr(instrument, "_advisory", None)
            if advisory is not None and advisory.explicit_bucket_boundaries is not None:
                return self._advised._create_aggregation(instrument, *args, **kwargs)
            return super()._create_aggregation(instrument, *args, **kwargs)

    return SecondsHistogramAggregation()


@contextlib.contextmanager
def _sdk_processor_metrics(enabled: bool) -> Iterator[None]:
    """Turn on the SDK's own processor metrics (queue size, items dropped) for one batch processor.

    The SDK reads ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` when a component is built. Setting it
    for the whole process would also turn on per-span counters in the tracer (a few µs on every
    span); the batch processor's metrics cost nothing per span, so only they are enabled.
    """
    name = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
    if not enabled or name in os.environ:
        yield
        return
    os.environ[name] = "true"
    try:
        yield
    finally:
        os.environ.pop(name, None)
