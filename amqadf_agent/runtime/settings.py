"""The agent's runtime settings: explicit argument > environment variable > default.

A bad value never stops the host application: it becomes a one-line problem that names the
setting, and the setting falls back to its default (as the OpenTelemetry SDK does for
``OTEL_METRIC_EXPORT_INTERVAL``). ``ProductionConfig`` builds on these fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from amqadf_agent.config.secrets import REDACTED, Secret
from amqadf_agent.config.sources import LOG_LEVELS, log_level
from amqadf_agent.errors import ConfigError

#: Exporter names the agent knows.
EXPORTERS = ("file", "otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Everything ``amqadf_agent.start()`` needs to know. Each field names its environment variable."""

    #: ``service.name``; ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``).
    service_name: str | None = None
    #: ``service.version``; ``AMQADF_SERVICE_VERSION``.
    service_version: str | None = None
    #: ``service.namespace`` (a group of services: a team, a product); ``AMQADF_SERVICE_NAMESPACE``
    #: (or ``service.namespace`` in ``OTEL_RESOURCE_ATTRIBUTES``).
    service_namespace: str | None = None
    #: ``deployment.environment.name``; ``AMQADF_ENVIRONMENT``.
    environment: str = "development"
    #: Where telemetry goes, several at once; ``AMQADF_EXPORTERS`` (comma-separated).
    exporters: tuple[str, ...] = ("file",)
    #: Directory of the ``file`` exporter; ``AMQADF_OUTPUT_DIR``.
    output_dir: Path = Path("telemetry")
    #: A file is rotated when it grows past this size; ``AMQADF_FILE_MAX_BYTES``.
    file_max_bytes: int = 64 * 1024 * 1024
    #: Rotated files kept per signal (oldest removed first); ``AMQADF_FILE_MAX_BACKUPS``.
    file_max_backups: int = 10
    #: ``grpc`` or ``http/protobuf``; ``OTEL_EXPORTER_OTLP_PROTOCOL``.
    otlp_protocol: str = "http/protobuf"
    #: Base OTLP endpoint; ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporters also read the per-signal ones).
    otlp_endpoint: str | None = None
    #: Headers (gRPC metadata) sent with every OTLP export: lower-cased name -> ``Secret`` (a plain
    #: string given here becomes one). Shown as ``[secure]`` in ``repr``. Empty: the exporters read
    #: ``OTEL_EXPORTER_OTLP_HEADERS`` themselves; given: they win over the variables' headers of the
    #: same name, the others are still sent.
    otlp_headers: Mapping[str, Secret] = dataclasses.field(default_factory=dict, hash=False)
    #: Seconds an OTLP export may take. None: the exporters read ``OTEL_EXPORTER_OTLP_TIMEOUT``
    #: (seconds, as the Python exporters read it; default 10).
    otlp_timeout: float | None = None
    #: Address of the ``prometheus`` pull endpoint; ``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT``.
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    #: Seconds between metric collections; ``AMQADF_METRIC_INTERVAL`` (``OTEL_METRIC_EXPORT_INTERVAL``: ms).
    metric_interval: float = 15.0
    #: Seconds between span batch exports; ``OTEL_BSP_SCHEDULE_DELAY`` in ms.
    span_export_delay: float = 5.0
    #: Spans held while the exporter is slow or down; beyond it they are dropped and counted.
    max_queue_size: int = 2048
    #: Fraction of root traces sampled (children follow their parent); ``AMQADF_SAMPLE_RATIO``.
    sample_ratio: float = 1.0
    #: Export Python ``logging`` records as OTel logs; ``AMQADF_CAPTURE_LOGS``.
    capture_logs: bool = False
    #: How long exit waits for the last export; ``AMQADF_SHUTDOWN_TIMEOUT``.
    shutdown_timeout: float = 5.0
    #: Report the agent's own CPU time, failures and drops; ``AMQADF_SELF_METRICS``.
    self_metrics: bool = True
    #: Report system.* and process.* metrics (one psutil sample per collection); ``AMQADF_RESOURCE_MONITOR``.
    resource_monitor: bool = True
    #: Seconds between resource monitor samples; ``AMQADF_RESOURCE_INTERVAL``.
    resource_interval: float = 5.0
    #: CPU utilization (0..1] above which the monitor reports pressure (None: no threshold);
    #: ``AMQADF_RESOURCE_CPU_THRESHOLD``.
    resource_cpu_threshold: float | None = None
    #: Memory utilization (0..1] above which the monitor reports pressure (None: no threshold);
    #: ``AMQADF_RESOURCE_MEMORY_THRESHOLD``.
    resource_memory_threshold: float | None = None
    #: Sampled profiling by ``@profiled`` is on (the decorator is the opt-in); false turns every
    #: ``@profiled`` into a plain call; ``AMQADF_PROFILER_ENABLED``.
    profiler_enabled: bool = True
    #: Fraction of ``@profiled`` calls profiled; ``AMQADF_PROFILER_SAMPLE_RATE``.
    profiler_sample_rate: float = 0.01
    #: Level of the agent's own ``amqadf_agent`` logger (DEBUG, INFO, WARNING, ERROR, CRITICAL);
    #: None leaves it to the application's logging; ``AMQADF_LOG_LEVEL`` or ``OTEL_LOG_LEVEL``.
    log_level: str | None = None

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
                shown = repr(value)
            parts.append(f"{field.name}={shown}")
        return f"AgentSettings({', '.join(parts)})"


def _env_or_none(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return name, value.strip()
    return None


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    number = int(value)
    if number <= 0:
        raise ValueError
    return number


def _port(value: Any) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise ValueError
    return number


def _ratio(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError
    return number


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0.0 < number <= 1.0:
        raise ValueError
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


class _PartlyKnown(ValueError):
    """Some exporter names are unknown: the known ones are kept, the unknown one is reported."""

    def __init__(self, known: tuple[str, ...], unknown: str) -> None:
        super().__init__(unknown)
        self.known, self.unknown = known, unknown


def _exporters(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    if "none" in names and len(names) > 1:
        names = tuple(name for name in names if name != "none")
    known = tuple(name for name in names if name in EXPORTERS)
    unknown = [name for name in names if name not in EXPORTERS]
    if not names or not known:
        raise ValueError(unknown[0] if unknown else "")
    if unknown:
        raise _PartlyKnown(known, unknown[0])
    return names


def _log_level(value: Any) -> str:
    level = log_level(value)
    if level is None:
        raise ValueError
    return level


def _protocol(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in OTLP_PROTOCOLS:
        raise ValueError
    return text


#: RFC 9110 ``token``: the characters a header (and a gRPC metadata key) name may use.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _headers(value: Any) -> dict[str, Secret]:
    """A mapping of header names to strings or ``Secret``s; the message never shows a value."""
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping of header names to values")
    headers: dict[str, Secret] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"{str(key)[:40]!r} is not a header name")
        if isinstance(item, str):
            item = Secret(item, key.lower())
        if not isinstance(item, Secret):
            raise ValueError(f"the value of {key!r} must be a string or a Secret")
        headers[key.lower()] = item
    return headers


_EXPECTED = {
    _positive_float: "a positive number",
    _fraction: "a number above 0, at most 1",
    _positive_int: "a positive whole number",
    _port: "a port number from 1 to 65535",
    _ratio: "a number from 0 to 1",
    _bool: "true or false",
    _text: "a non-empty string",
    _exporters: "a comma-separated list of " + ", ".join(EXPORTERS),
    _protocol: "one of " + ", ".join(OTLP_PROTOCOLS),
    _log_level: "one of " + ", ".join(LOG_LEVELS),
}


def resolve(
    config: AgentSettings | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[AgentSettings, list[ConfigError]]:
    """Merge defaults, environment, ``config`` and ``overrides`` into settings and a list of problems.

    Never raises for a bad *value*: the problem is returned and the default is used. An unknown
    *key* in ``config``/``overrides`` is a programming error and is reported the same way.
    """
    env = os.environ if environ is None else environ
    defaults = AgentSettings()
    explicit: dict[str, Any] = {}
    if isinstance(config, AgentSettings):
        # Not dataclasses.asdict: the fields are read as they are (a Secret is not copied).
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        explicit = {k: v for k, v in fields.items() if v != getattr(defaults, k)}
    elif config is not None:
        explicit.update(config)
    # An override of None means "not given": it leaves the config's value (or the default) in place.
    explicit.update({key: value for key, value in (overrides or {}).items() if value is not None})

    problems: list[ConfigError] = []
    known = {field.name for field in dataclasses.fields(AgentSettings)}
    for key in list(explicit):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(ConfigError(key, f"unknown setting{hint}; ignored"))
            del explicit[key]

    values: dict[str, Any] = {}

    def pick(
        field: str,
        parse: Callable[[Any], T],
        env_names: tuple[str, ...] = (),
        env_parse: Callable[[str], Any] | None = None,
    ) -> None:
        source: tuple[str, Any, bool] | None = None
        if field in explicit and explicit[field] is not None:
            source = (field, explicit[field], False)
        elif (found := _env_or_none(env, *env_names)) is not None:
            source = (found[0], found[1], env_parse is not None)
        if source is None:
            return
        name, raw, convert = source
        try:
            values[field] = parse(env_parse(raw) if convert and env_parse else raw)
        except _PartlyKnown as exc:
            values[field] = exc.known
            problems.append(
                ConfigError(name, f"unknown exporter {exc.unknown!r} in {raw!r}; using {','.join(exc.known)}")
            )
        except (TypeError, ValueError):
            default = getattr(defaults, field)
            shown = ",".join(default) if isinstance(default, tuple) else default
            fallback = "ignored" if default is None else f"using {shown}"
            problems.append(
                ConfigError(name, f"must be {_EXPECTED[parse]}, got {raw!r}; {fallback}")  # type: ignore[index]
            )

    def ms_to_s(text: str) -> float | str:
        try:
            return float(text) / 1000.0
        except ValueError:
            return text

    pick("service_name", _text, ("OTEL_SERVICE_NAME", "AMQADF_SERVICE_NAME"))
    pick("service_version", _text, ("AMQADF_SERVICE_VERSION",))
    pick("service_namespace", _text, ("AMQADF_SERVICE_NAMESPACE",))
    pick("environment", _text, ("AMQADF_ENVIRONMENT",))
    pick("exporters", _exporters, ("AMQADF_EXPORTERS",))
    pick("output_dir", lambda v: Path(_text(str(v))), ("AMQADF_OUTPUT_DIR",))
    pick("file_max_bytes", _positive_int, ("AMQADF_FILE_MAX_BYTES",))
    pick("file_max_backups", _positive_int, ("AMQADF_FILE_MAX_BACKUPS",))
    pick("otlp_protocol", _protocol, ("OTEL_EXPORTER_OTLP_PROTOCOL",))
    pick("otlp_endpoint", _text, ("OTEL_EXPORTER_OTLP_ENDPOINT",))
    pick("prometheus_host", _text, ("OTEL_EXPORTER_PROMETHEUS_HOST",))
    pick("prometheus_port", _port, ("OTEL_EXPORTER_PROMETHEUS_PORT",))
    if explicit.get("metric_interval") is not None or _env_or_none(env, "AMQADF_METRIC_INTERVAL"):
        pick("metric_interval", _positive_float, ("AMQADF_METRIC_INTERVAL",))
    else:
        pick("metric_interval", _positive_float, ("OTEL_METRIC_EXPORT_INTERVAL",), ms_to_s)
    pick("span_export_delay", _positive_float, ("OTEL_BSP_SCHEDULE_DELAY",), ms_to_s)
    pick("max_queue_size", _positive_int, ("OTEL_BSP_MAX_QUEUE_SIZE",))
    pick("sample_ratio", _ratio, ("AMQADF_SAMPLE_RATIO",))
    pick("capture_logs", _bool, ("AMQADF_CAPTURE_LOGS",))
    pick("shutdown_timeout", _positive_float, ("AMQADF_SHUTDOWN_TIMEOUT",))
    pick("self_metrics", _bool, ("AMQADF_SELF_METRICS",))
    pick("resource_monitor", _bool, ("AMQADF_RESOURCE_MONITOR",))
    pick("resource_interval", _positive_float, ("AMQADF_RESOURCE_INTERVAL",))
    pick("resource_cpu_threshold", _fraction, ("AMQADF_RESOURCE_CPU_THRESHOLD",))
    pick("resource_memory_threshold", _fraction, ("AMQADF_RESOURCE_MEMORY_THRESHOLD",))
    pick("profiler_enabled", _bool, ("AMQADF_PROFILER_ENABLED",))
    pick("profiler_sample_rate", _ratio, ("AMQADF_PROFILER_SAMPLE_RATE",))
    pick("log_level", _log_level, ("AMQADF_LOG_LEVEL",))
    if "log_level" not in values and explicit.get("log_level") is None:
        # Every OpenTelemetry SDK reads OTEL_LOG_LEVEL, with names of its own ("none"): one we
        # know is taken, anything else is left to them (not a problem of ours).
        other = _env_or_none(env, "OTEL_LOG_LEVEL")
        level = log_level(other[1]) if other is not None else None
        if level is not None:
            values["log_level"] = level
    # The OTLP exporters read OTEL_EXPORTER_OTLP_TIMEOUT and _HEADERS themselves (and the
    # per-signal ones): only what is given explicitly is passed on.
    pick("otlp_timeout", _positive_float)
    if "otlp_headers" in explicit:
        try:
            values["otlp_headers"] = _headers(explicit["otlp_headers"])
        except ValueError as exc:  # the message names keys, never a value
            problems.append(ConfigError("otlp_headers", f"{exc}; no headers sent"))

    return dataclasses.replace(defaults, **values), problems
