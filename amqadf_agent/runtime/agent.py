"""``start()`` / ``shutdown()``: the agent's life in a host process.

One agent per process. ``start()`` is idempotent and never raises into the application: bad
settings fall back with a one-line message each, and a failure to start at all leaves a handle
that does nothing and says why once on stderr. A forked child keeps a working agent with a new
``service.instance.id``. Exit flushes with a deadline, so a dead collector cannot hang shutdown.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.runtime import children, server_signals
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
    from amqadf_agent.runtime.exporters import Exporters
    from amqadf_agent.runtime.guard import ExportStats
    from amqadf_agent.runtime.providers import DeferredLoggerProvider
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
        logger_provider: LoggerProvider | DeferredLoggerProvider | None = None,
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
        #: Without ``capture_logs``, a provider that builds the SDK's at the first logger asked for.
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

    def force_flush(self, timeout: float | None = None, *, metrics: bool = True) -> bool:
        """Export what is buffered now; True when every provider finished within ``timeout``.

        ``metrics=False``: spans and logs only (a process about to vanish whose metrics are not
        worth an instance of their own, see ``children``)."""
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        flush = self._flush_all if metrics else self._flush_spans_and_logs
        return _with_deadline("flush", budget, flush)

    def _flush_all(self, budget_ms: int) -> None:
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                provider.force_flush(budget_ms)

    def _flush_spans_and_logs(self, budget_ms: int) -> None:
        for provider in (self.tracer_provider, self.logger_provider):
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
        _wait_for_overrunning_calls(OVERRUN_SHARE * (budget - (time.monotonic() - started)))
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
        after_fork = getattr(self.logger_provider, "after_fork_in_child", None)
        if after_fork is not None:
            after_fork()

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
        if config is not None and not isinstance(config, (AgentSettings, Mapping)):
            from amqadf_agent.config.production import ProductionConfig  # not for a plain start()

            if isinstance(config, ProductionConfig):
                valid, messages = config.validate()
                if not valid:
                    return _refused(messages)
                config = _set_fields(config.to_agent_settings())
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


def _refused(messages: list[str]) -> Agent:
    """The handle of an invalid ``ProductionConfig``: its messages on stderr, never raised."""
    for message in messages:
        print(f"amqadf-agent: {message}", file=sys.stderr)
    print("amqadf-agent: invalid configuration; the application runs without telemetry", file=sys.stderr)
    refused = [ConfigError("configuration", message) for message in messages]
    return Agent(AgentSettings(), refused, error="invalid configuration: " + "; ".join(messages))


def _set_fields(settings: AgentSettings) -> dict[str, Any]:
    """The fields of ``settings`` that are set (not None), as they are: ``asdict()`` would deep-copy
    the header secrets. A field left None is still read from the environment by ``resolve``."""
    return {
        f.name: value
        for f in dataclasses.fields(settings)
        if (value := getattr(settings, f.name)) is not None
    }


class _Extra(NamedTuple):
    spans: list[SpanExporter]
    readers: list[MetricReader]
    logs: list[LogRecordExporter]


def _build(settings: AgentSettings, problems: list[ConfigError], explicit: set[str], extra: _Extra) -> Agent:
    from opentelemetry import metrics, trace
    from opentelemetry._logs import set_logger_provider

    from amqadf_agent.runtime import instrumentation_conflicts, providers
    from amqadf_agent.runtime.guard import ExportStats, quiet_noisy_loggers
    from amqadf_agent.runtime.resource import build_resource

    quiet_noisy_loggers()
    instrumentation_conflicts.install()
    stats = ExportStats()
    resource = build_resource(settings, explicit)
    built = _exporters(settings, stats, problems, extra)
    created: list[Any] = []
    try:
        made = providers.build(settings, explicit, resource, built, stats, created)
        _configure_profiler(settings, explicit)
        _set_globals(trace, metrics, set_logger_provider, made.tracer, made.meter, made.logger)
        handler = providers.log_handler(made.logger) if settings.capture_logs else None
        if settings.log_correlation:  # trace ids on the application's own log records
            from amqadf_agent.runtime import log_correlation

            log_correlation.install(str(resource.attributes.get(semconv.ATTR_SERVICE_NAME, "")))
            built.closers.append(log_correlation.uninstall)
    except BaseException:
        _close_all(created, built)
        raise

    # Last: nothing after this can fail, so a start that fails leaves the level as it was.
    restore_log_level = _configure_log_level(settings.log_level)
    return Agent(
        settings,
        problems,
        resource=resource,
        tracer_provider=made.tracer,
        meter_provider=made.meter,
        logger_provider=made.logger,
        stats=stats,
        cpu=made.cpu,
        output_dir=built.output_dir,
        closers=built.closers,
        log_handler=handler,
        restore_log_level=restore_log_level,
    )


def _exporters(
    settings: AgentSettings, stats: ExportStats, problems: list[ConfigError], extra: _Extra
) -> Exporters:
    """The exporters the settings name, guarded, with the caller's own beside them."""
    from amqadf_agent.runtime import exporters
    from amqadf_agent.runtime.guard import GuardedSpanExporter

    late: list[ConfigError] = []
    # Without captured logs (nor log exporters of the caller's), the log SDK waits for a logger.
    built = exporters.build(settings, stats, late, logs=settings.capture_logs or bool(extra.logs))
    for problem in late:  # found while building exporters: reported like the others
        logger.warning("amqadf-agent: %s", problem)
    problems.extend(late)
    built.spans.extend(GuardedSpanExporter(e, type(e).__name__, stats) for e in extra.spans)
    built.readers.extend(extra.readers)
    if extra.logs:
        from amqadf_agent.runtime.log_export import GuardedLogExporter

        built.logs.extend(GuardedLogExporter(e, type(e).__name__, stats) for e in extra.logs)
    return built


def _close_all(created: list[Any], built: Exporters) -> None:
    """Undo a start that failed half-way: providers, then closers, then exporters."""
    for provider in reversed(created):
        _with_deadline("cleanup", 1.0, lambda _ms, p=provider: p.shutdown())
    for close in built.closers:
        close()
    closables: list[Any] = [*built.spans, *built.metrics, *built.logs]
    for exporter in closables:
        exporter.shutdown()  # guarded: never raises; closes the files


def _configure_profiler(settings: AgentSettings, explicit: set[str]) -> None:
    """What ``@profiled`` does by default: the configuration's ``profiler`` group, for the settings
    given (by the config, an override or the environment), so that a plain ``start()`` leaves
    what the application set itself alone. Never raises."""
    defaults = AgentSettings()
    given = {
        option: getattr(settings, field)
        for option, field in (("enabled", "profiler_enabled"), ("sample_rate", "profiler_sample_rate"))
        if field in explicit or getattr(settings, field) != getattr(defaults, field)
    }
    if not given:
        return
    from amqadf_agent.profiling.profiler import configure_default_profiler  # only when asked

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
    server_signals.watch_uvicorn(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_watch_multiprocessing_children, after_in_child=_after_fork_in_child)


def _watch_multiprocessing_children() -> None:
    children.watch(_at_exit, _shutdown_budget, _flush_spans_and_logs)


def _flush_spans_and_logs() -> None:
    agent = _agent
    if agent is not None and agent.running:
        agent.force_flush(metrics=False)


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


#: The share of the shutdown deadline given to calls still running past their ``@timeout`` (their
#: spans are exported if they end within it); the flush has the rest.
OVERRUN_SHARE = 0.5


def _wait_for_overrunning_calls(seconds: float) -> None:
    """Let sync calls that outlived their ``@timeout`` end (at most ``seconds``), when any may run:
    only if the application imported the timeout module (not imported here for nothing)."""
    module = sys.modules.get("amqadf_agent.resilience.timeout")
    if module is None or seconds <= 0:
        return
    try:
        still = module.wait_for_overrunning(seconds)
    except Exception as exc:  # never in the application's way
        logger.debug("amqadf-agent: waiting for calls past their timeout failed: %r", exc)
        return
    if still:
        logger.debug("amqadf-agent: %d call(s) past their timeout still running at shutdown", still)


def shutdown(timeout: float | None = None) -> bool:
    """Shut down the running agent, if any (see ``Agent.shutdown``)."""
    agent = _agent
    return agent.shutdown(timeout) if agent is not None else True
