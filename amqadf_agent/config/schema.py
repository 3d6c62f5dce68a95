"""The one table of settings: every key of ``ProductionConfig`` and of ``start()``, grouped.

Each group is a frozen dataclass; each field is a key: its default, its parser (with the words of
what it expects, so an error reads ``exporter.endpoint: must be a URL, got 'foo'``), and, for the
keys ``start()`` takes, its flat name (``otlp_endpoint``) and the variables that set it. A secret's
given value is never shown (``[secure]``), nor the password of a URL.

One module over 600 lines because it is the one table: split by group, a key's default, parser and
variables could be defined in more than one place.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from amqadf_agent.config import validators as v
from amqadf_agent.config.secrets import PROVIDERS, Secret
from amqadf_agent.redaction import REDACTED, redact_url

KeyPath = tuple[str, ...]

ENVIRONMENTS = ("development", "staging", "production")
EXPORTERS = ("file", "otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf", "http/json")


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """A secret named in the configuration (``{secret: NAME}``), resolved through the providers."""

    name: str


class _Group:
    """A group of settings: its ``repr`` shows secrets, and the password of a URL, as ``[secure]``."""

    def __repr__(self) -> str:
        return show_group(self)


# -- the parsers of this file's fields (the shared ones are in ``validators``) ------------------------


def _secret(value: Any) -> Secret | SecretRef | None:
    if value is None:
        return None
    if isinstance(value, Secret):
        return value
    if isinstance(value, str) and value:
        return Secret(value)
    if isinstance(value, Mapping) and set(value) == {"secret"} and isinstance(value["secret"], str):
        return SecretRef(value["secret"])
    raise ValueError


def _header_value(name: str, value: Any) -> Secret | SecretRef:
    parsed = _secret(value)
    if parsed is None:
        raise ValueError
    return parsed


def _verify(value: Any) -> bool | Path:
    """True, False, or the path of a CA bundle that exists."""
    try:
        return v.boolean(value)
    except ValueError:
        pass
    path = v.path(value)
    if not path.is_file():
        raise ValueError
    return path


_SECRET = v.Parser(_secret, "a string or {secret: NAME}")
_TEXT = v.optional(v.text)
_POSITIVE = v.number(0, low_open=True)
_RATIO = v.number(0, 1)
_FRACTION = v.optional(v.number(0, 1, low_open=True))
_COUNT = v.integer(1)
_DIRECTORY = v.path.expecting("a directory path")


def _field(
    default: Any,
    parse: v.Parser[Any],
    *,
    secret: bool = False,
    setting: str | None = None,
    env: tuple[str, ...] = (),
    sdk_reads_env: bool = False,
) -> Any:
    """A setting: its default and parser, and for ``start()`` its flat name and variables.

    Args:
        setting: the ``AgentSettings`` field (``start()``'s keyword) this setting is.
        env: the variables that set it, the first one set wins (see ``MILLISECONDS`` for units).
        sdk_reads_env: the OTLP exporters read ``env`` themselves, so ``start()`` passes on only a
            value given explicitly; ``ProductionConfig`` reads the variables like any other.
    """
    meta = {
        "parse": parse,
        "expected": parse.expected,
        "secret": secret,
        "setting": setting,
        "env": env,
        "sdk_reads_env": sdk_reads_env,
    }
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


#: Variables in milliseconds (OpenTelemetry's unit), read as seconds (ours).
MILLISECONDS = ("OTEL_METRIC_EXPORT_INTERVAL", "OTEL_BSP_SCHEDULE_DELAY")


def from_variable(variable: str | None, raw: Any) -> Any:
    """``raw`` in the key's unit: the value of a ``MILLISECONDS`` variable as seconds.

    A value that is not a number is left as it is, for the key's parser to report.
    """
    if variable not in MILLISECONDS:
        return raw
    try:
        return float(raw) / 1000.0
    except (TypeError, ValueError):
        return raw


# -- the groups: the one table of settings ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class ServiceConfig(_Group):
    """Who emits the telemetry (the OTel resource)."""

    #: ``service.name``. Required in staging and production.
    name: str | None = _field(
        None, _TEXT, setting="service_name", env=("OTEL_SERVICE_NAME", "AMQADF_SERVICE_NAME")
    )
    #: ``service.version``.
    version: str | None = _field(None, _TEXT, setting="service_version", env=("AMQADF_SERVICE_VERSION",))
    #: ``service.namespace`` (a group of services: a team, a product).
    namespace: str | None = _field(
        None, _TEXT, setting="service_namespace", env=("AMQADF_SERVICE_NAMESPACE",)
    )


@dataclasses.dataclass(frozen=True, repr=False)
class ExporterConfig(_Group):
    """Where telemetry goes, and how often."""

    #: Exporters used at once: file, otlp, prometheus, console, none.
    exporters: tuple[str, ...] = _field(
        ("file",), v.names(*EXPORTERS), setting="exporters", env=("AMQADF_EXPORTERS",)
    )
    #: OTLP endpoint; https for a remote host in production. Its password is shown as ``[secure]``.
    endpoint: str | None = _field(
        None, v.optional(v.url), setting="otlp_endpoint", env=("OTEL_EXPORTER_OTLP_ENDPOINT",)
    )
    #: ``grpc``, ``http/protobuf`` or ``http/json`` (the cheapest to encode: see ``runtime/otlp_http``).
    protocol: str = _field(
        "http/protobuf",
        v.choice(*OTLP_PROTOCOLS),
        setting="otlp_protocol",
        env=("OTEL_EXPORTER_OTLP_PROTOCOL",),
    )
    #: Headers sent with each OTLP export, gRPC metadata included; names are lower-cased, values
    #: are secrets: ``{secret: NAME}`` or a literal.
    headers: dict[str, Secret | SecretRef] = _field(  # noqa: RUF009 - a default_factory
        {},
        v.headers_with(_header_value, text=True),
        secret=True,
        setting="otlp_headers",
        env=("OTEL_EXPORTER_OTLP_HEADERS",),
        sdk_reads_env=True,
    )
    #: An API key for the backend, as a secret, sent in the ``api_key_header`` header of each OTLP
    #: export. A header of that name in ``headers`` wins over it.
    api_key: Secret | SecretRef | None = _field(None, _SECRET, secret=True)  # noqa: RUF009
    #: The header that carries ``api_key``: ``authorization`` (the default) sends
    #: ``Bearer <api_key>``; any other name (``x-api-key``, ``api-key``...) sends the key as it is.
    api_key_header: str = _field("authorization", v.header_name)
    #: Seconds an OTLP export may take. ``OTEL_EXPORTER_OTLP_TIMEOUT`` is read in **seconds**, as the
    #: Python OTLP exporters read it (the specification says milliseconds; the SDK does not), so one
    #: variable means one thing.
    timeout: float = _field(
        10.0, _POSITIVE, setting="otlp_timeout", env=("OTEL_EXPORTER_OTLP_TIMEOUT",), sdk_reads_env=True
    )
    #: Allow plain http to a remote endpoint (refused in production otherwise).
    insecure: bool = _field(False, v.boolean, env=("OTEL_EXPORTER_OTLP_INSECURE",))
    #: Seconds between metric exports.
    metric_interval: float = _field(
        15.0,
        _POSITIVE,
        setting="metric_interval",
        env=("AMQADF_METRIC_INTERVAL", "OTEL_METRIC_EXPORT_INTERVAL"),
    )
    #: Seconds between span batch exports.
    span_export_delay: float = _field(
        5.0, _POSITIVE, setting="span_export_delay", env=("OTEL_BSP_SCHEDULE_DELAY",)
    )
    #: Spans held while an exporter is slow; beyond it they are dropped and counted.
    max_queue_size: int = _field(2048, _COUNT, setting="max_queue_size", env=("OTEL_BSP_MAX_QUEUE_SIZE",))
    #: Directory of the file exporter.
    output_dir: Path = _field(  # noqa: RUF009
        Path("telemetry"), _DIRECTORY, setting="output_dir", env=("AMQADF_OUTPUT_DIR",)
    )
    #: The file exporter rotates a file past this size.
    file_max_bytes: int = _field(
        64 * 1024 * 1024, _COUNT, setting="file_max_bytes", env=("AMQADF_FILE_MAX_BYTES",)
    )
    #: Rotated files kept per signal (oldest removed first).
    file_max_backups: int = _field(10, _COUNT, setting="file_max_backups", env=("AMQADF_FILE_MAX_BACKUPS",))
    #: Address of the prometheus pull endpoint.
    prometheus_host: str = _field(
        "127.0.0.1",
        v.text.expecting("a host name or address"),
        setting="prometheus_host",
        env=("OTEL_EXPORTER_PROMETHEUS_HOST",),
    )
    prometheus_port: int = _field(
        9464, v.port, setting="prometheus_port", env=("OTEL_EXPORTER_PROMETHEUS_PORT",)
    )


@dataclasses.dataclass(frozen=True, repr=False)
class SamplingConfig(_Group):
    """Trace sampling: the fraction of root traces kept (children follow their parent)."""

    ratio: float = _field(1.0, _RATIO, setting="sample_ratio", env=("AMQADF_SAMPLE_RATIO",))


@dataclasses.dataclass(frozen=True, repr=False)
class ResourceMonitorConfig(_Group):
    """The CPU/memory monitor. A configuration that sets nothing starts the same agent as a plain
    ``start()``: both read their defaults here."""

    enabled: bool = _field(True, v.boolean, setting="resource_monitor", env=("AMQADF_RESOURCE_MONITOR",))
    #: Seconds between the monitor's own samples (history, limits); the metrics are sampled once
    #: per collection whatever this says.
    interval: float = _field(5.0, _POSITIVE, setting="resource_interval", env=("AMQADF_RESOURCE_INTERVAL",))
    #: CPU utilization (0..1] above which the monitor reports a limit breach; none: no check (and
    #: no sampling thread).
    cpu_threshold: float | None = _field(
        None, _FRACTION, setting="resource_cpu_threshold", env=("AMQADF_RESOURCE_CPU_THRESHOLD",)
    )
    #: Memory utilization (0..1] above which the monitor reports a limit breach; none: no check.
    memory_threshold: float | None = _field(
        None, _FRACTION, setting="resource_memory_threshold", env=("AMQADF_RESOURCE_MEMORY_THRESHOLD",)
    )


@dataclasses.dataclass(frozen=True, repr=False)
class ProfilerConfig(_Group):
    """The sampled profiler."""

    #: Sampled profiling by ``@profiled`` is on (the decorator itself is the opt-in); false turns
    #: every ``@profiled`` into a plain call.
    enabled: bool = _field(True, v.boolean, setting="profiler_enabled", env=("AMQADF_PROFILER_ENABLED",))
    #: Fraction of calls profiled (at most 0.1 in production).
    sample_rate: float = _field(
        0.01, _RATIO, setting="profiler_sample_rate", env=("AMQADF_PROFILER_SAMPLE_RATE",)
    )


@dataclasses.dataclass(frozen=True, repr=False)
class ResilienceConfig(_Group):
    """Defaults of retry, circuit breaker and timeout.

    Read by ``RetryPolicy.from_config``, ``CircuitBreaker.from_config`` and
    ``timeout.from_config`` (``amqadf_agent.resilience``); nothing applies them on its own.
    """

    #: Attempts in all, the first one included: 3 means one call and at most 2 retries
    #: (``RetryPolicy(max_retries=retry_attempts - 1)``); 1 never retries.
    retry_attempts: int = _field(3, _COUNT)
    #: Seconds: the first backoff cap, doubled per attempt up to ``retry_max_delay``.
    retry_base_delay: float = _field(0.1, _POSITIVE)
    #: Seconds: the longest single wait between attempts.
    retry_max_delay: float = _field(10.0, _POSITIVE)
    #: Seconds a protected call may take.
    timeout: float = _field(30.0, _POSITIVE)
    #: Failure rate over the breaker's sliding window that opens it: a fraction (0..1], as every
    #: rate and threshold of the configuration (``CircuitBreaker.from_config`` converts it).
    breaker_failure_rate: float = _field(0.5, v.number(0, 1, low_open=True))
    #: Seconds a breaker stays open before a probe.
    breaker_open_timeout: float = _field(30.0, _POSITIVE)


@dataclasses.dataclass(frozen=True, repr=False)
class AutoscalerConfig(_Group):
    """Bounds and targets of the autoscaler, read by ``AutoScaler.from_config``."""

    #: The fewest instances asked for (no scale-to-zero, as in the HPA's ``minReplicas``).
    min_instances: int = _field(1, _COUNT.expecting("a positive whole number (no scale-to-zero)"))
    max_instances: int = _field(10, _COUNT)
    #: Target CPU utilization (0..1]; the autoscaler scales on CPU only unless told otherwise.
    target_cpu: float = _field(0.7, v.number(0, 1, low_open=True))
    #: Seconds the scale-down decision looks back (Kubernetes HPA: 300, at most 3600), rounded up to
    #: whole seconds.
    scale_down_stabilization: float = _field(
        300.0, v.number(0, 3600).expecting("a number of seconds from 0 to 3600")
    )


@dataclasses.dataclass(frozen=True, repr=False)
class AgentRuntimeConfig(_Group):
    """The agent's own behaviour."""

    #: Export Python ``logging`` records as OTel logs.
    capture_logs: bool = _field(False, v.boolean, setting="capture_logs", env=("AMQADF_CAPTURE_LOGS",))
    #: Seconds exit waits for the last export.
    shutdown_timeout: float = _field(
        5.0, _POSITIVE, setting="shutdown_timeout", env=("AMQADF_SHUTDOWN_TIMEOUT",)
    )
    #: Report the agent's own CPU time, failures and drops.
    self_metrics: bool = _field(True, v.boolean, setting="self_metrics", env=("AMQADF_SELF_METRICS",))
    #: Put the application's calling line on database and HTTP client spans, and mark an N+1 as it
    #: happens. Off by default: about 2 µs of CPU a client span, over the 1.5 µs budget
    #: (tests/bench/bench_code_location.py).
    code_location: bool = _field(False, v.boolean, setting="code_location", env=("AMQADF_CODE_LOCATION",))


@dataclasses.dataclass(frozen=True, repr=False)
class TelemetryConfig(_Group):
    """What the agent lets leave the process, and what it adds to the application's own logs."""

    #: Statements leave with their literals as ``?`` and URLs without passwords or query values
    #: (false: as the instrumentations wrote them).
    sanitize: bool = _field(True, v.boolean, setting="sanitize", env=("AMQADF_SANITIZE",))
    #: Attribute keys, globs (``http.request.header.*``) or bare names (``authorization``) whose
    #: values are replaced by ``[secure]``.
    redact_attributes: tuple[str, ...] = _field(
        (), v.strings, setting="redact_attributes", env=("AMQADF_REDACT_ATTRIBUTES",)
    )
    #: Keep the bind parameters instrumentations capture (otherwise only a digest of them is kept).
    keep_db_parameters: bool = _field(
        False, v.boolean, setting="keep_db_parameters", env=("AMQADF_KEEP_DB_PARAMETERS",)
    )
    #: Put ``otelTraceID``/``otelSpanID``/``otelServiceName`` on the application's log records.
    log_correlation: bool = _field(
        True,
        v.boolean,
        setting="log_correlation",
        env=("AMQADF_LOG_CORRELATION", "OTEL_PYTHON_LOG_CORRELATION"),
    )


@dataclasses.dataclass(frozen=True, repr=False)
class VaultConfig(_Group):
    """The Vault provider (``secrets.vault``): KV v2, token or AppRole auth."""

    #: The Vault server; required when ``secrets.providers`` lists vault.
    url: str | None = _field(None, v.optional(v.url))
    #: Where the KV v2 engine is mounted.
    mount: str = _field("secret", v.text)
    #: Put before every secret path (``app/``: ``api_key`` is read at ``app/api_key``).
    path_prefix: str = _field("", v.prefix)
    #: ``token`` or ``approle``.
    auth_method: str = _field("token", v.choice("token", "approle"))
    #: The token (``token`` auth): ``{secret: NAME}`` resolved by the env/file providers, or a literal.
    token: Secret | SecretRef | None = _field(None, _SECRET, secret=True)  # noqa: RUF009
    #: The AppRole role id and secret id (``approle`` auth), as ``token``.
    role_id: Secret | SecretRef | None = _field(None, _SECRET, secret=True)  # noqa: RUF009
    secret_id: Secret | SecretRef | None = _field(None, _SECRET, secret=True)  # noqa: RUF009
    #: Where the AppRole auth method is mounted.
    approle_mount: str = _field("approle", v.text)
    #: The Vault namespace (``X-Vault-Namespace``).
    namespace: str | None = _field(None, _TEXT)
    #: Verify the server's certificate: true, false, or the path of a CA bundle.
    verify: bool | Path = _field(  # noqa: RUF009
        True, v.Parser(_verify, "true, false or the path of an existing CA file")
    )
    #: Seconds a request may take.
    timeout: float = _field(10.0, _POSITIVE)


@dataclasses.dataclass(frozen=True, repr=False)
class AwsConfig(_Group):
    """The AWS Secrets Manager provider (``secrets.aws``)."""

    #: The region (default: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``).
    region: str | None = _field(None, _TEXT)
    #: Put before every secret id.
    prefix: str = _field("", v.prefix)
    #: Another endpoint (a VPC endpoint; a local moto server in tests).
    endpoint_url: str | None = _field(None, v.optional(v.url))
    #: Seconds to connect and to read.
    timeout: float = _field(10.0, _POSITIVE)


@dataclasses.dataclass(frozen=True, repr=False)
class SecretsConfig(_Group):
    """How ``get_secret`` resolves names."""

    #: Providers asked in this order.
    providers: tuple[str, ...] = _field(("env", "file"), v.names(*PROVIDERS))
    #: Directory of the file provider (Docker/Kubernetes secret mount).
    directory: Path = _field(Path("/run/secrets"), _DIRECTORY)  # noqa: RUF009
    #: Prefix of environment-variable names (``api_key`` -> ``{prefix}API_KEY``).
    env_prefix: str = _field("", v.prefix)
    #: Seconds a resolved secret is cached.
    cache_ttl: float = _field(300.0, v.number(0))
    #: The vault provider's settings (a sub-group: ``secrets.vault.url``...).
    vault: VaultConfig = dataclasses.field(default_factory=VaultConfig)
    #: The aws provider's settings (``secrets.aws.region``...).
    aws: AwsConfig = dataclasses.field(default_factory=AwsConfig)


@dataclasses.dataclass(frozen=True, repr=False)
class TopLevelConfig(_Group):
    """The two settings outside every group."""

    #: development, staging or production: picks the profile and the file's ``environments.<env>``.
    environment: str = _field(
        "development", v.choice(*ENVIRONMENTS), setting="environment", env=("AMQADF_ENVIRONMENT",)
    )
    #: The agent's own logger level (``OTEL_LOG_LEVEL`` is read too: ``sources.otel_log_level``).
    log_level: str = _field("INFO", v.level, setting="log_level", env=("AMQADF_LOG_LEVEL",))


#: Group name -> dataclass, in the order ``to_dict`` shows them.
GROUPS: dict[str, type[Any]] = {
    "service": ServiceConfig,
    "exporter": ExporterConfig,
    "sampling": SamplingConfig,
    "resource_monitor": ResourceMonitorConfig,
    "profiler": ProfilerConfig,
    "resilience": ResilienceConfig,
    "autoscaler": AutoscalerConfig,
    "agent": AgentRuntimeConfig,
    "telemetry": TelemetryConfig,
    "secrets": SecretsConfig,
}

#: Groups inside a group (``secrets.vault``): key path -> dataclass. Their fields are 3-part paths.
SUBGROUPS: dict[KeyPath, type[Any]] = {("secrets", "vault"): VaultConfig, ("secrets", "aws"): AwsConfig}

#: Top-level settings: name -> field.
TOP_LEVEL: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TopLevelConfig)}

#: The fields of each feature flag (``feature_flags.<name>.enabled``); the names are the user's.
FLAG_FIELDS: dict[str, v.Parser[Any]] = {
    "enabled": v.boolean,
    "percentage": v.number(0, 100),
}

#: Keys of a file that are not settings: ``environments.<env>`` overlays the file for one environment.
FILE_ONLY = ("environments",)


def group_fields(group: str) -> dict[str, dataclasses.Field[Any]]:
    """The settings of a group (its sub-groups, such as ``secrets.vault``, are not among them)."""
    return {f.name: f for f in dataclasses.fields(GROUPS[group]) if "parse" in f.metadata}


def subgroup_fields(path: KeyPath) -> dict[str, dataclasses.Field[Any]]:
    """The settings of a sub-group such as ``("secrets", "vault")``."""
    return {f.name: f for f in dataclasses.fields(SUBGROUPS[path])}


def _subgroups_of(group: str) -> list[str]:
    return [path[1] for path in SUBGROUPS if path[0] == group]


def leaf_field(path: KeyPath) -> dataclasses.Field[Any]:
    """The field of a setting (not a feature flag): its default and its metadata."""
    if len(path) == 1:
        return TOP_LEVEL[path[0]]
    if len(path) == 3:
        return subgroup_fields(path[:2])[path[2]]
    return group_fields(path[0])[path[1]]


def is_leaf(path: KeyPath) -> bool:
    if len(path) == 1:
        return path[0] in TOP_LEVEL
    if len(path) == 2 and path[0] in GROUPS:
        return path[1] in group_fields(path[0])
    if len(path) == 3 and path[:2] in SUBGROUPS:
        return path[2] in subgroup_fields(path[:2])
    return len(path) == 3 and path[0] == "feature_flags" and path[2] in FLAG_FIELDS


def _is_branch(path: KeyPath) -> bool:
    return (
        (len(path) == 1 and (path[0] in GROUPS or path[0] == "feature_flags"))
        or (len(path) == 2 and path[0] == "feature_flags")
        or path in SUBGROUPS
    )


def flatten(data: Mapping[str, Any], prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    """A nested mapping as key paths -> values, stopping at the fields (``headers`` is one value)."""
    flat: dict[KeyPath, Any] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        if is_leaf(path):
            flat[path] = value
        elif len(path) == 2 and path[0] == "feature_flags" and not isinstance(value, Mapping):
            shorthand = (*path, "enabled")  # ``new_scaler: true`` means ``new_scaler.enabled``
            flat[shorthand] = value
        elif isinstance(value, Mapping) and _is_branch(path):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def normalize(path: KeyPath) -> KeyPath:
    """An environment-variable path: ``feature_flags.x`` means ``feature_flags.x.enabled``."""
    if len(path) == 2 and path[0] == "feature_flags":
        return (*path, "enabled")
    return path


def check_path(path: KeyPath) -> str | None:
    """Why ``path`` is not a setting (with a "did you mean"), or None when it is one."""
    if is_leaf(path):
        return None
    dotted = ".".join(path)
    if _is_branch(path):
        return f"{dotted}: must be a mapping"
    options: list[str]
    if path[0] == "feature_flags":
        options, index = list(FLAG_FIELDS), 2
    elif path[:2] in SUBGROUPS:
        options, index = list(subgroup_fields(path[:2])), 2
    elif path[0] in GROUPS:
        options, index = [*group_fields(path[0]), *_subgroups_of(path[0])], 1
    else:
        options, index = [*TOP_LEVEL, *GROUPS, "feature_flags"], 0
    if index < len(path) and path[index] in options:  # a known field given sub-keys
        return f"{'.'.join(path[: index + 1])}: is a single value, not a mapping"
    if index >= len(path):
        return f"{dotted}: unknown key"
    hint = v.did_you_mean(path[index], options, prefix="".join(f"{part}." for part in path[:index]))
    return f"{dotted}: unknown key{hint}"


def show(value: Any, secret: bool) -> str:
    """A given value as a message shows it: secrets redacted, a URL's password too, long values cut."""
    if secret or isinstance(value, Secret):
        return REDACTED
    text = repr(redact_url(value) if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def parser_of(path: KeyPath) -> tuple[v.Parser[Any], bool]:
    """The parser of a leaf, and whether its value is a secret."""
    if path[0] == "feature_flags":
        return FLAG_FIELDS[path[2]], False
    meta = leaf_field(path).metadata
    return meta["parse"], meta["secret"]


def parse_value(path: KeyPath, raw: Any, variable: str | None = None) -> tuple[Any, str | None]:
    """The typed value of a leaf, or ``(None, message)``; the message shows ``raw`` as given.

    Args:
        variable: the environment variable ``raw`` came from, if any (its unit may differ).
    """
    parse, secret = parser_of(path)
    try:
        return parse(from_variable(variable, raw)), None
    except (TypeError, ValueError):
        return None, f"{'.'.join(path)}: must be {parse.expected}, got {show(raw, secret)}"


def default_of(path: KeyPath) -> Any:
    if path[0] == "feature_flags":
        return False if path[2] == "enabled" else 100.0
    field = leaf_field(path)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def all_leaves() -> list[KeyPath]:
    """Every settings path except the feature flags (whose names are the user's)."""
    return (
        [(name,) for name in TOP_LEVEL]
        + [(g, f) for g in GROUPS for f in group_fields(g)]
        + [(*sub, f) for sub in SUBGROUPS for f in subgroup_fields(sub)]
    )


@functools.cache
def runtime_keys() -> Mapping[str, KeyPath]:
    """The keys ``start()`` takes: its flat name (``otlp_endpoint``) -> the key's path.

    Computed once: the table does not change while the process runs.
    """
    return MappingProxyType(
        {
            leaf_field(path).metadata["setting"]: path
            for path in all_leaves()
            if leaf_field(path).metadata["setting"] is not None
        }
    )


def show_group(group: object) -> str:
    """A group's ``repr``: secrets and the password of a URL as ``[secure]``."""
    parts = []
    for field in dataclasses.fields(group):  # type: ignore[arg-type]
        value = getattr(group, field.name)
        shown = redact_url(value) if isinstance(value, str) else value
        parts.append(f"{field.name}={shown!r}")
    return f"{type(group).__name__}({', '.join(parts)})"
