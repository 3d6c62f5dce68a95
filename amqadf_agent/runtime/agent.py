"""``start()`` / ``shutdown()``: the agent's life in a host process.

One agent per process. ``start()`` is idempotent and never raises into the application: bad
settings fall back with a one-line message each, and a failure to start at all leaves a handle
that does nothing and says why once on stderr. A forked child keeps a working agent with a new
``service.instance.id``. Exit flushes with a deadline, so a dead collector cannot hang shutdown.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.runtime import children
from amqadf_agent.runtime.settings import AgentSettings, resolve

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.runtime.guard import ExportStats
    from amqadf_agent.runtime.selfmetrics import ThreadCpu

logger = logging.getLogger("amqadf_agent")

_lock = threading.RLock()
_agent: Agent | None = None
_hooks_installed = False


class Agent:
    """A handle on the running agent: its settings, providers and what it had to fall back on."""

    def __init__(
        self,
        settings: AgentSettings,
        problems: list[ConfigError],
        *,
        resource: Resource | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        stats: ExportStats | None = None,
        cpu: ThreadCpu | None = None,
        output_dir: Path | None = None,
        closers: list[Any] | None = None,
        log_handler: logging.Handler | None = None,
        restore_log_level: Callable[[], None] | None = None,
        error: str | None = None,
    ) -> None:
        self.settings = settings
        #: Settings that were invalid, each with the default used instead.
        self.problems = problems
        self.resource = resource
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.stats = stats
        self.cpu = cpu
        #: Where the file exporter writes (None when it is off).
        self.output_dir = output_dir
        #: Why the agent is not running, when it could not start.
        self.error = error
        self._closers = closers or []
        self._log_handler = log_handler
        self._restore_log_level = restore_log_level
        self._running = error is None
        self._shutdown_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def service_instance_id(self) -> str | None:
        if self.resource is None:
            return None
        value = self.resource.attributes.get(semconv.ATTR_SERVICE_INSTANCE_ID)
        return str(value) if value is not None else None

    def tracer(self, name: str = semconv.SCOPE_NAME) -> Tracer:
        """A tracer of this agent's provider (a no-op tracer when the agent is not running)."""
        from opentelemetry import trace

        if self.tracer_provider is None:
            return trace.NoOpTracer()
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str = semconv.SCOPE_NAME) -> Meter:
        """A meter of this agent's provider (a no-op meter when the agent is not running)."""
        from opentelemetry import metrics

        if self.meter_provider is None:
            return metrics.NoOpMeter(name)
        return self.meter_provider.get_meter(name)

    def force_flush(self, timeout: float | None = None) -> bool:
        """Export what is buffered now; True when every provider finished within ``timeout``."""
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        return _with_deadline("flush", budget, self._flush_all)

    def _flush_all(self, budget_ms: int) -> None:
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                provider.force_flush(budget_ms)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop, within ``timeout`` seconds (default: the ``shutdown_timeout`` setting).

        Returns False when the deadline passed; what was still unsent is dropped, and the
        application is never kept waiting longer.
        """
        global _agent
        started = time.monotonic()  # the deadline counts from here: every step below is in it
        with self._shutdown_lock:
            if not self._running:
                return True
            self._running = False
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            for own in list(logger.handlers):
                if getattr(own, "_amqadf_stderr", False):
                    logger.removeHandler(own)
        if self._restore_log_level is not None:  # now, not after the flush (it has a deadline)
            self._restore_log_level()
        finished = _with_deadline("shutdown", budget - (time.monotonic() - started), self._shutdown_all)
        if not finished and self.stats is not None:
            from amqadf_agent.runtime.guard import stop_exports

            stop_exports(self.stats)  # nothing is sent after the application was told it is over
        with _lock:
            if _agent is self:
                _agent = None
        return finished

    def _shutdown_all(self, budget_ms: int) -> None:
        # The three at once: traces stuck on a slow collector must not use up the time of the
        # metrics' and logs' last export.
        steps: list[Callable[[], object]] = []
        if self.tracer_provider is not None:
            steps.append(self.tracer_provider.shutdown)
        if self.meter_provider is not None:
            meter_provider = self.meter_provider
            steps.append(lambda: meter_provider.shutdown(timeout_millis=budget_ms))
        if self.logger_provider is not None:
            steps.append(self.logger_provider.shutdown)
        threads = [
            threading.Thread(target=_logged(step), name=f"amqadf-agent-shutdown-{n}", daemon=True)
            for n, step in enumerate(steps)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # (the caller waits with the deadline)
        for close in self._closers:
            try:
                close()
            except Exception as exc:
                logger.debug("amqadf-agent: closing %r failed: %r", close, exc)

    def _after_fork_in_child(self) -> None:
        from amqadf_agent.runtime.resource import renew_instance_id

        self._shutdown_lock = threading.Lock()
        if self.resource is not None:
            renew_instance_id(self.resource)
        if self.cpu is not None:
            self.cpu.reset_after_fork()
        if self.stats is not None:
            self.stats.__init__()  # type: ignore[misc]  # fresh counters and lock: the child's own

    def __enter__(self) -> Agent:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "running" if self._running else (f"not running: {self.error}" if self.error else "stopped")
        return (
            f"<Agent {state} service={self.settings.service_name!r} "
            f"exporters={','.join(self.settings.exporters)}>"
        )


def _logged(step: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            step()
        except Exception as exc:
            logger.warning("amqadf-agent: shutdown failed: %s", exc)

    return run


def _with_deadline(what: str, budget: float, fn: Any) -> bool:
    """Run ``fn(budget_ms)`` in a daemon thread; give up waiting after ``budget`` seconds."""
    budget = max(0.001, budget)
    budget_ms = max(1, int(budget * 1000))
    done = threading.Event()

    def run() -> None:
        try:
            fn(budget_ms)
        except Exception as exc:
            logger.warning("amqadf-agent: %s failed: %s", what, exc)
        finally:
            done.set()

    worker = threading.Thread(target=run, name=f"amqadf-agent-{what}", daemon=True)
    worker.start()
    if not done.wait(budget):
        logger.warning(
            "amqadf-agent: %s did not finish within %.1fs (is the collector reachable?); "
            "unsent telemetry is dropped",
            what,
            budget,
        )
        return False
    return True


def start(
    config: AgentSettings | Mapping[str, Any] | ProductionConfig | None = None,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    log_exporters: Sequence[LogRecordExporter] = (),
    **overrides: Any,
) -> Agent:
    """Start the agent for this process, or return the one already running.

    Args:
        config: settings (an ``AgentSettings`` or a mapping of its fields); environment variables
            fill what it leaves out. A ``ProductionConfig`` is validated first: an invalid one is
            refused (its messages on stderr, a handle that is not running) and never raises.
        span_exporters, metric_readers, log_exporters: your own exporters (a vendor's, or the SDK's
            in-memory ones in tests), used beside those named in the settings; exporters are guarded
            like the agent's own.
        **overrides: individual settings, e.g. ``service_name="checkout"``, ``exporters=["otlp"]``.

    Returns:
        The agent handle, also a context manager that shuts the agent down on exit. It never
        raises: a setting that is invalid is reported and replaced by its default, and if the agent
        cannot start at all, the handle says why (``agent.error``) and the application runs on.
    """
    global _agent
    with _lock:
        if _agent is not None and _agent.running:
            if config is not None or overrides or span_exporters or metric_readers or log_exporters:
                logger.warning("amqadf-agent: already started; the settings of this start() call are ignored")
            return _agent
        from amqadf_agent.config.production import ProductionConfig

        if isinstance(config, ProductionConfig):
            # A ProductionConfig: an invalid one is refused with its messages, never raised.
            valid, messages = config.validate()
            if not valid:
                for message in messages:
                    print(f"amqadf-agent: {message}", file=sys.stderr)
                print(
                    "amqadf-agent: invalid configuration; the application runs without telemetry",
                    file=sys.stderr,
                )
                refused = [ConfigError("configuration", message) for message in messages]
                return Agent(AgentSettings(), refused, error="invalid configuration: " + "; ".join(messages))
            given = config.to_agent_settings()
            # The fields as they are (asdict() would deep-copy the header secrets).
            config = {
                f.name: value
                for f in dataclasses.fields(given)
                if (value := getattr(given, f.name)) is not None
            }
        settings, problems = resolve(config, overrides)
        for problem in problems:
            logger.warning("amqadf-agent: %s", problem)
        explicit = set(overrides) | (set(config) if isinstance(config, Mapping) else set())
        # Before the providers exist: our fork hook must run before theirs (they merge the child's
        # new identity onto the resource our hook has just renewed).
        _install_process_hooks()
        try:
            extra = _Extra(list(span_exporters), list(metric_readers), list(log_exporters))
            _agent = _build(settings, problems, explicit, extra)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            print(
                f"amqadf-agent: could not start ({reason}); the application runs without telemetry",
                file=sys.stderr,
            )
            return Agent(settings, problems, error=f"{type(exc).__name__}: {exc}")
        return _agent


class _Extra(NamedTuple):
    spans: list[SpanExporter]
    readers: list[MetricReader]
    logs: list[LogRecordExporter]


def _build(settings: AgentSettings, problems: list[ConfigError], explicit: set[str], extra: _Extra) -> Agent:
    from opentelemetry import metrics, trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from amqadf_agent.runtime import exporters as exporters_mod
    from amqadf_agent.runtime import selfmetrics
    from amqadf_agent.runtime.guard import (
        ExportStats,
        GuardedLogExporter,
        GuardedSpanExporter,
        quiet_noisy_loggers,
    )
    from amqadf_agent.runtime.resource import build_resource

    quiet_noisy_loggers()
    stats = ExportStats()
    resource = build_resource(settings, explicit)
    late: list[ConfigError] = []
    built = exporters_mod.build(settings, stats, late)
    for problem in late:  # found while building exporters: reported like the others
        logger.warning("amqadf-agent: %s", problem)
    problems.extend(late)
    built.spans.extend(GuardedSpanExporter(e, type(e).__name__, stats) for e in extra.spans)
    built.readers.extend(extra.readers)
    built.logs.extend(GuardedLogExporter(e, type(e).__name__, stats) for e in extra.logs)

    created: list[Any] = []
    try:
        interval_ms = settings.metric_interval * 1000
        readers = [
            PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
            for exporter in built.metrics
        ] + built.readers
        meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, views=metric_views(), shutdown_on_exit=False
        )
        created.append(meter_provider)

        sampler = None
        if "sample_ratio" in explicit or "OTEL_TRACES_SAMPLER" not in os.environ:
            sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
        tracer_provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        created.append(tracer_provider)
        for span_exporter in built.spans:
            with _sdk_processor_metrics(settings.self_metrics):
                processor = BatchSpanProcessor(
                    span_exporter,
                    max_queue_size=settings.max_queue_size,
                    schedule_delay_millis=settings.span_export_delay * 1000,
                    max_export_batch_size=min(512, settings.max_queue_size),
                    meter_provider=meter_provider,
                )
            tracer_provider.add_span_processor(processor)

        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        created.append(logger_provider)
        for log_exporter in built.logs:
            with _sdk_processor_metrics(settings.self_metrics):
                log_processor = BatchLogRecordProcessor(log_exporter, meter_provider=meter_provider)
            logger_provider.add_log_record_processor(log_processor)

        cpu = selfmetrics.ThreadCpu()
        if settings.self_metrics:
            selfmetrics.register(meter_provider, stats, cpu)
        if settings.resource_monitor:
            from amqadf_agent.monitoring.resources import register_with_agent

            monitor = register_with_agent(  # never raises
                meter_provider,
                update_interval=settings.resource_interval,
                cpu_threshold=settings.resource_cpu_threshold,
                memory_threshold=settings.resource_memory_threshold,
            )
            if monitor.monitoring:  # limits configured: its thread ends with the agent
                built.closers.append(lambda: monitor.stop_monitoring(timeout=0.5))
            from amqadf_agent.monitoring import procfs

            built.closers.append(procfs.close)  # the /proc files its collections keep open
        _configure_profiler(settings, explicit)

        _set_globals(trace, metrics, set_logger_provider, tracer_provider, meter_provider, logger_provider)

        handler = None
        if settings.capture_logs:
            with warnings.catch_warnings():
                # Deprecated in SDK 1.45 in favour of opentelemetry-instrumentation-logging's handler;
                # the SDK's still works, and moving is a dependency decision of its own.
                warnings.simplefilter("ignore", DeprecationWarning)
                sdk_handler = LoggingHandler(logger_provider=logger_provider)
            handler = _capture_logs(sdk_handler)

    except BaseException:
        for provider in reversed(created):
            _with_deadline("cleanup", 1.0, lambda _ms, p=provider: p.shutdown())
        for close in built.closers:
            close()
        closables: list[Any] = [*built.spans, *built.metrics, *built.logs]
        for exporter in closables:
            exporter.shutdown()  # guarded: never raises; closes the files
        raise

    # Last: nothing after this can fail, so a start that fails leaves the level as it was.
    restore_log_level = _configure_log_level(settings.log_level)
    return Agent(
        settings,
        problems,
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        stats=stats,
        cpu=cpu,
        output_dir=built.output_dir,
        closers=built.closers,
        log_handler=handler,
        restore_log_level=restore_log_level,
    )


def _configure_profiler(settings: AgentSettings, explicit: set[str]) -> None:
    """What ``@profiled`` does by default: the configuration's ``profiler`` group, for the settings
    given (by the config, an override or the environment), so that a plain ``start()`` leaves
    what the application set itself alone. Never raises."""
    from amqadf_agent.profiling.profiler import configure_default_profiler

    defaults = AgentSettings()
    given = {
        option: getattr(settings, field)
        for option, field in (("enabled", "profiler_enabled"), ("sample_rate", "profiler_sample_rate"))
        if field in explicit or getattr(settings, field) != getattr(defaults, field)
    }
    if not given:
        return
    try:
        configure_default_profiler(**given)
    except Exception as exc:  # validated by resolve(); a failure here must not stop the agent
        logger.warning("amqadf-agent: profiler settings not applied: %s", exc)


def _configure_log_level(level: str | None) -> Callable[[], None] | None:
    """Set the ``amqadf_agent`` logger's level; the function that puts the earlier one back.

    The agent's own logger only: the application's logging configuration is its own.
    """
    if level is None:
        return None
    earlier = logger.level
    logger.setLevel(level)

    def restore() -> None:
        if logger.level == logging.getLevelName(level):  # unless someone changed it since
            logger.setLevel(earlier)

    return restore


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


def _set_globals(
    trace: Any,
    metrics: Any,
    set_logger_provider: Any,
    tracer_provider: Any,
    meter_provider: Any,
    logger_provider: Any,
) -> None:
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        logger.warning(
            "amqadf-agent: a global TracerProvider was already set; instrumentations keep using it, "
            "and the agent's providers are reachable through the agent handle only"
        )
        return
    trace.set_tracer_provider(tracer_provider)
    if isinstance(metrics.get_meter_provider(), metrics_internal._ProxyMeterProvider):
        metrics.set_meter_provider(meter_provider)
    if isinstance(logs_internal.get_logger_provider(), logs_internal.ProxyLoggerProvider):
        set_logger_provider(logger_provider)


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_watch_multiprocessing_children, after_in_child=_after_fork_in_child)


def _watch_multiprocessing_children() -> None:
    children.watch(_at_exit, _shutdown_budget)


def _shutdown_budget() -> float:
    agent = _agent
    return agent.settings.shutdown_timeout if agent is not None and agent.running else 0.0


def _at_exit() -> None:
    agent = _agent
    if agent is not None and agent.running:
        agent.shutdown()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    agent = _agent
    if agent is not None and agent.running:
        try:
            agent._after_fork_in_child()
        except Exception as exc:
            print(f"amqadf-agent: could not renew the agent in a forked child: {exc}", file=sys.stderr)


def get_agent() -> Agent | None:
    """The running agent, or None."""
    agent = _agent
    return agent if agent is not None and agent.running else None


def shutdown(timeout: float | None = None) -> bool:
    """Shut down the running agent, if any (see ``Agent.shutdown``)."""
    agent = _agent
    return agent.shutdown(timeout) if agent is not None else True
