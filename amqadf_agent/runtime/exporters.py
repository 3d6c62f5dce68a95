"""Build the exporters named in the settings, several at once, each behind the guard.

Every failure to build one (a missing extra, a port in use, an unwritable directory) becomes a
one-line problem naming the setting, and a safe fallback: the other exporters still run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.trace.export import SpanExporter

from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.runtime.file_exporter import FileMetricExporter, FileSpanExporter, RotatingLineWriter
from amqadf_agent.runtime.guard import ExportStats, GuardedMetricExporter, GuardedSpanExporter
from amqadf_agent.runtime.settings import AgentSettings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}


@dataclasses.dataclass
class Exporters:
    """What the providers are wired to."""

    spans: list[SpanExporter] = dataclasses.field(default_factory=list)
    #: Push exporters; each gets its own periodic reader.
    metrics: list[MetricExporter] = dataclasses.field(default_factory=list)
    #: Pull readers (Prometheus).
    readers: list[MetricReader] = dataclasses.field(default_factory=list)
    logs: list[LogRecordExporter] = dataclasses.field(default_factory=list)
    #: The log exporters of ``build(logs=False)``, not made yet: ``make_logs`` makes them when the
    #: first logger is asked for. Until then the log SDK is not imported.
    deferred_logs: list[Callable[[], LogRecordExporter]] = dataclasses.field(default_factory=list)
    #: Called at shutdown (e.g. stop the Prometheus HTTP server).
    closers: list[Callable[[], Any]] = dataclasses.field(default_factory=list)
    #: Where the file exporter writes, when it is on.
    output_dir: Path | None = None

    def add_logs(self, make: Callable[[], LogRecordExporter], now: bool) -> None:
        """Make a log exporter now, or keep ``make`` for ``make_logs``."""
        if now:
            self.logs.append(make())
        else:
            self.deferred_logs.append(make)

    def make_logs(self) -> list[LogRecordExporter]:
        """The deferred log exporters, made (each one that fails is logged and left out)."""
        made: list[LogRecordExporter] = []
        for make in self.deferred_logs:
            try:
                made.append(make())
            except Exception as exc:
                logging.getLogger("amqadf_agent").warning("amqadf-agent: a log exporter is off: %s", exc)
        self.deferred_logs.clear()
        return made


def build(
    settings: AgentSettings, stats: ExportStats, problems: list[ConfigError], logs: bool = True
) -> Exporters:
    """The exporters ``settings`` name. ``logs=False``: the log exporters are only deferred
    (``Exporters.deferred_logs``), for a start that does not capture logs."""
    out = Exporters()
    for name in settings.exporters:
        try:
            if name == "file":
                _file(settings, stats, problems, out, logs)
            elif name == "otlp":
                _otlp(settings, stats, out, logs)
            elif name == "prometheus":
                _prometheus(settings, out)
            elif name == "console":
                _console(stats, out, logs)
        except MissingExtraError as exc:
            problems.append(ConfigError("exporters", f"{exc}; the {name} exporter is off"))
        except OSError as exc:
            problems.append(
                ConfigError(f"exporters.{name}", f"cannot start: {exc}; the {name} exporter is off")
            )
    return out


def _file(
    settings: AgentSettings, stats: ExportStats, problems: list[ConfigError], out: Exporters, logs_now: bool
) -> None:
    directory = settings.output_dir
    try:
        writers = _writers(directory, settings)
    except OSError as exc:
        fallback, refused = _private_fallback_dir()
        why = f" ({refused})" if refused else ""
        problems.append(
            ConfigError(
                "AMQADF_OUTPUT_DIR",
                f"cannot write to {str(directory)!r} ({exc.strerror or exc}); "
                f"writing to {str(fallback)!r}{why}",
            )
        )
        directory = fallback
        writers = _writers(directory, settings)
    out.output_dir = directory
    traces, metrics, logs = writers
    out.spans.append(GuardedSpanExporter(FileSpanExporter(traces), "file", stats))
    out.metrics.append(GuardedMetricExporter(FileMetricExporter(metrics), "file", stats))

    def file_logs() -> LogRecordExporter:
        from amqadf_agent.runtime.file_log_exporter import FileLogExporter
        from amqadf_agent.runtime.log_export import GuardedLogExporter

        return GuardedLogExporter(FileLogExporter(logs), "file", stats)

    out.add_logs(file_logs, logs_now)
    if not logs_now:
        out.closers.append(logs.close)  # opened now (logs.jsonl exists from the start); closed twice is fine


def _private_fallback_dir() -> tuple[Path, str]:
    """A directory that only this user can enter, in the system's temporary directory.

    The temporary directory is writable by everyone: another user can create the well-known name
    ``amqadf-telemetry-<uid>`` first, as a directory of theirs or a symlink, and receive (or
    redirect, through symlinks inside it) whatever a root process writes there. The well-known name
    is used only when this call creates it (mode 0700) or when it is a real directory of this user
    that nobody else may enter; otherwise a fresh ``mkdtemp`` directory is used.

    Returns:
        The directory, and why the well-known name was refused ('' when it was used).
    """
    import tempfile  # only for this fallback: it imports shutil, bz2, lzma (~2 ms of every start)

    uid = os.getuid() if hasattr(os, "getuid") else None
    shared = Path(tempfile.gettempdir()) / f"amqadf-telemetry-{uid or 0}"
    try:
        os.mkdir(shared, 0o700)
        return shared, ""
    except FileExistsError:
        pass
    refused = _not_private(os.lstat(shared), uid)
    if not refused:
        return shared, ""
    fresh = tempfile.mkdtemp(prefix=f"{shared.name}-")  # created 0700, a name nobody could guess
    return Path(fresh), f"{str(shared)!r} {refused}"


def _not_private(info: os.stat_result, uid: int | None) -> str:
    """Why a directory found at the well-known name is not safe to write in ('' when it is)."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if uid is not None and info.st_uid != uid:
        return f"belongs to uid {info.st_uid}"
    if uid is not None and info.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def _writers(directory: Path, settings: AgentSettings) -> tuple[RotatingLineWriter, ...]:
    opened: list[RotatingLineWriter] = []
    try:
        for stem in ("traces", "metrics", "logs"):
            opened.append(
                RotatingLineWriter(directory, stem, settings.file_max_bytes, settings.file_max_backups)
            )
    except OSError:
        for writer in opened:
            writer.close()
        raise
    return tuple(opened)


def _endpoint_kwargs(settings: AgentSettings, signal: str, http: bool) -> dict[str, Any]:
    """Pass the base endpoint only where the exporter would not find a more specific one itself."""
    if not settings.otlp_endpoint or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"):
        return {}
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") == settings.otlp_endpoint:
        return {}  # the exporter reads it, and knows how to add the signal path
    endpoint = settings.otlp_endpoint.rstrip("/")
    return {"endpoint": endpoint + SIGNAL_PATHS[signal] if http else endpoint}


def _options(settings: AgentSettings, signal: str, http: bool) -> dict[str, Any]:
    """The endpoint, headers and timeout to pass to one OTLP exporter (none: it reads the variables).

    Headers: the HTTP exporters put explicit headers over those of ``OTEL_EXPORTER_OTLP_[SIGNAL_]
    HEADERS``; the gRPC ones use explicit headers *instead of* the variables', so for gRPC the
    variables' headers are merged in here, under the explicit ones, and both protocols send the same.
    gRPC metadata keys must be lower case: every name is. Timeout: a per-signal variable
    (``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``...) is more specific than the setting and is left to win,
    as the per-signal endpoint is.
    """
    kwargs = _endpoint_kwargs(settings, signal, http)
    if settings.otlp_headers:
        headers: dict[str, str] = {}
        if not http:
            from opentelemetry.util.re import parse_env_headers

            given = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS") or os.environ.get(
                "OTEL_EXPORTER_OTLP_HEADERS", ""
            )
            headers.update({k.lower(): v for k, v in parse_env_headers(given, liberal=True).items()})
        headers.update({k.lower(): v.get_secret_value() for k, v in settings.otlp_headers.items()})
        kwargs["headers"] = headers
    if settings.otlp_timeout is not None and not os.environ.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT"
    ):
        kwargs["timeout"] = settings.otlp_timeout
    return kwargs


def _otlp(settings: AgentSettings, stats: ExportStats, out: Exporters, logs_now: bool) -> None:
    http = settings.otlp_protocol != "grpc"
    as_json = settings.otlp_protocol == "http/json"
    span_exporter: type[Any]
    metric_exporter: type[Any]
    if http:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        from amqadf_agent.runtime import otlp_http

        if as_json:
            span_exporter, metric_exporter = otlp_http.JsonSpanExporter, otlp_http.JsonMetricExporter
        else:
            span_exporter, metric_exporter = otlp_http.ProtoSpanExporter, OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        span_exporter, metric_exporter = GrpcSpanExporter, GrpcMetricExporter

    def options(signal: str) -> dict[str, Any]:
        # Over HTTP, a session whose close() (at the shutdown deadline) ends a request in flight.
        kwargs = {**_options(settings, signal, http), **(otlp_http.session_kwargs(signal) if http else {})}
        if as_json:
            kwargs["headers"] = {**otlp_http.CONTENT_TYPE, **kwargs.get("headers", {})}
        return kwargs

    out.spans.append(GuardedSpanExporter(span_exporter(**options("traces")), "otlp", stats))
    out.metrics.append(GuardedMetricExporter(metric_exporter(**options("metrics")), "otlp", stats))

    def otlp_logs() -> LogRecordExporter:
        from amqadf_agent.runtime.log_export import GuardedLogExporter

        if as_json:
            return GuardedLogExporter(otlp_http.json_log_exporter(**options("logs")), "otlp", stats)
        if http:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
        return GuardedLogExporter(OTLPLogExporter(**options("logs")), "otlp", stats)

    out.add_logs(otlp_logs, logs_now)


def _prometheus(settings: AgentSettings, out: Exporters) -> None:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise MissingExtraError(
            "the prometheus exporter", "prometheus", "opentelemetry-exporter-prometheus"
        ) from exc
    server, thread = start_http_server(settings.prometheus_port, addr=settings.prometheus_host)
    out.readers.append(PrometheusMetricReader())

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(1.0)

    out.closers.append(close)


def _console(stats: ExportStats, out: Exporters, logs_now: bool) -> None:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    out.spans.append(GuardedSpanExporter(ConsoleSpanExporter(), "console", stats))
    out.metrics.append(GuardedMetricExporter(ConsoleMetricExporter(), "console", stats))

    def console_logs() -> LogRecordExporter:
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        from amqadf_agent.runtime.log_export import GuardedLogExporter

        return GuardedLogExporter(ConsoleLogRecordExporter(), "console", stats)

    out.add_logs(console_logs, logs_now)
