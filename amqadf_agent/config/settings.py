"""``AgentSettings``: the flat view of the settings table that ``amqadf_agent.start()`` runs on.

Each field is a key of ``config.schema`` (its default comes from there) under its flat name:
``otlp_endpoint`` is ``exporter.endpoint``. ``ProductionConfig.to_agent_settings`` builds one, and
``runtime.settings.resolve`` builds one from ``start()``'s arguments and the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amqadf_agent.config import schema
from amqadf_agent.config.secrets import Secret
from amqadf_agent.redaction import REDACTED, redact_url

#: Exporter names the agent knows.
EXPORTERS = schema.EXPORTERS
OTLP_PROTOCOLS = schema.OTLP_PROTOCOLS

#: The runtime keys whose default differs from the table's: None means "not set", and the SDK (or
#: the application's logging) decides. ``environment`` here is ``deployment.environment.name``, any
#: name a team uses; only a ``ProductionConfig`` limits it to the three profiles.
RUNTIME_DEFAULTS: dict[str, Any] = {"otlp_timeout": None, "log_level": None}


def _default(setting: str) -> Any:
    if setting in RUNTIME_DEFAULTS:
        return RUNTIME_DEFAULTS[setting]
    return schema.default_of(schema.runtime_keys()[setting])


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Everything ``amqadf_agent.start()`` needs to know. Each field names its environment variable."""

    #: ``service.name``; ``OTEL_SERVICE_NAME`` (or ``AMQADF_SERVICE_NAME``).
    service_name: str | None = _default("service_name")
    #: ``service.version``; ``AMQADF_SERVICE_VERSION``.
    service_version: str | None = _default("service_version")
    #: ``service.namespace`` (a group of services: a team, a product); ``AMQADF_SERVICE_NAMESPACE``
    #: (or ``service.namespace`` in ``OTEL_RESOURCE_ATTRIBUTES``).
    service_namespace: str | None = _default("service_namespace")
    #: ``deployment.environment.name``; ``AMQADF_ENVIRONMENT``.
    environment: str = _default("environment")
    #: Where telemetry goes, several at once; ``AMQADF_EXPORTERS`` (comma-separated).
    exporters: tuple[str, ...] = _default("exporters")
    #: Directory of the ``file`` exporter; ``AMQADF_OUTPUT_DIR``.
    output_dir: Path = _default("output_dir")  # noqa: RUF009 - a Path never changes
    #: A file is rotated when it grows past this size; ``AMQADF_FILE_MAX_BYTES``.
    file_max_bytes: int = _default("file_max_bytes")
    #: Rotated files kept per signal (oldest removed first); ``AMQADF_FILE_MAX_BACKUPS``.
    file_max_backups: int = _default("file_max_backups")
    #: ``grpc``, ``http/protobuf`` or ``http/json``; ``OTEL_EXPORTER_OTLP_PROTOCOL``.
    otlp_protocol: str = _default("otlp_protocol")
    #: Base OTLP endpoint; ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporters also read the per-signal
    #: ones). A password in it shows as ``[secure]`` in ``repr``.
    otlp_endpoint: str | None = _default("otlp_endpoint")
    #: Headers (gRPC metadata) sent with every OTLP export: lower-cased name -> ``Secret`` (a plain
    #: string given here becomes one). Shown as ``[secure]`` in ``repr``. Empty: the exporters read
    #: ``OTEL_EXPORTER_OTLP_HEADERS`` themselves; given: they win over the variables' headers of the
    #: same name, the others are still sent.
    otlp_headers: Mapping[str, Secret] = dataclasses.field(default_factory=dict, hash=False)
    #: Seconds an OTLP export may take. None: the exporters read ``OTEL_EXPORTER_OTLP_TIMEOUT``
    #: (seconds, as the Python exporters read it; default 10).
    otlp_timeout: float | None = _default("otlp_timeout")
    #: Address of the ``prometheus`` pull endpoint; ``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT``.
    prometheus_host: str = _default("prometheus_host")
    prometheus_port: int = _default("prometheus_port")
    #: Seconds between metric collections; ``AMQADF_METRIC_INTERVAL`` (``OTEL_METRIC_EXPORT_INTERVAL``: ms).
    metric_interval: float = _default("metric_interval")
    #: Seconds between span batch exports; ``OTEL_BSP_SCHEDULE_DELAY`` in ms.
    span_export_delay: float = _default("span_export_delay")
    #: Spans held while the exporter is slow or down; beyond it they are dropped and counted.
    max_queue_size: int = _default("max_queue_size")
    #: Fraction of root traces sampled (children follow their parent); ``AMQADF_SAMPLE_RATIO``.
    sample_ratio: float = _default("sample_ratio")
    #: Export Python ``logging`` records as OTel logs; ``AMQADF_CAPTURE_LOGS``.
    capture_logs: bool = _default("capture_logs")
    #: How long exit waits for the last export; ``AMQADF_SHUTDOWN_TIMEOUT``.
    shutdown_timeout: float = _default("shutdown_timeout")
    #: Report the agent's own CPU time, failures and drops; ``AMQADF_SELF_METRICS``.
    self_metrics: bool = _default("self_metrics")
    #: Report system.* and process.* metrics (one psutil sample per collection); ``AMQADF_RESOURCE_MONITOR``.
    resource_monitor: bool = _default("resource_monitor")
    #: Seconds between resource monitor samples; ``AMQADF_RESOURCE_INTERVAL``.
    resource_interval: float = _default("resource_interval")
    #: CPU utilization (0..1] above which the monitor reports pressure (None: no threshold);
    #: ``AMQADF_RESOURCE_CPU_THRESHOLD``.
    resource_cpu_threshold: float | None = _default("resource_cpu_threshold")
    #: Memory utilization (0..1] above which the monitor reports pressure (None: no threshold);
    #: ``AMQADF_RESOURCE_MEMORY_THRESHOLD``.
    resource_memory_threshold: float | None = _default("resource_memory_threshold")
    #: Sampled profiling by ``@profiled`` is on (the decorator is the opt-in); false turns every
    #: ``@profiled`` into a plain call; ``AMQADF_PROFILER_ENABLED``.
    profiler_enabled: bool = _default("profiler_enabled")
    #: Fraction of ``@profiled`` calls profiled; ``AMQADF_PROFILER_SAMPLE_RATE``.
    profiler_sample_rate: float = _default("profiler_sample_rate")
    #: Level of the agent's own ``amqadf_agent`` logger (DEBUG, INFO, WARNING, ERROR, CRITICAL);
    #: None leaves it to the application's logging; ``AMQADF_LOG_LEVEL`` or ``OTEL_LOG_LEVEL``.
    log_level: str | None = _default("log_level")
    #: Statements and URLs leave sanitized (literals as ``?``, no passwords or query values);
    #: ``AMQADF_SANITIZE``.
    sanitize: bool = _default("sanitize")
    #: Attribute keys, globs or bare names whose values are exported as ``[secure]``;
    #: ``AMQADF_REDACT_ATTRIBUTES`` (comma-separated).
    redact_attributes: tuple[str, ...] = _default("redact_attributes")
    #: Keep the db bind parameters instrumentations capture; ``AMQADF_KEEP_DB_PARAMETERS``.
    keep_db_parameters: bool = _default("keep_db_parameters")
    #: Trace ids on the application's log records; ``AMQADF_LOG_CORRELATION`` or
    #: ``OTEL_PYTHON_LOG_CORRELATION``.
    log_correlation: bool = _default("log_correlation")
    #: The application's calling line on client spans (``code.*``) and N+1 events;
    #: ``AMQADF_CODE_LOCATION``.
    code_location: bool = _default("code_location")

    def __post_init__(self) -> None:
        headers = self.otlp_headers
        if isinstance(headers, Mapping) and not all(
            isinstance(k, str) and k == k.lower() and isinstance(v, Secret) for k, v in headers.items()
        ):
            normalized = {
                k.lower() if isinstance(k, str) else k: Secret(v, k) if isinstance(v, str) else v
                for k, v in headers.items()
            }
            object.__setattr__(self, "otlp_headers", normalized)

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "otlp_headers":
                shown = (
                    "{" + ", ".join(f"{k!r}: {REDACTED!r}" for k in value) + "}"
                    if isinstance(value, Mapping)
                    else repr(REDACTED)
                )
            else:
                shown = repr(redact_url(value) if isinstance(value, str) else value)
            parts.append(f"{field.name}={shown}")
        return f"AgentSettings({', '.join(parts)})"
