"""The typed fields of ``ProductionConfig``, grouped, and how raw values become them.

Each group is a frozen dataclass; each field carries its parser and what it expects, so an error reads
``exporter.endpoint: must be a URL, got 'foo'``. A secret's given value is never shown (``[secure]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from amqadf_agent.config.secrets import PROVIDERS, REDACTED, Secret
from amqadf_agent.config.sources import LOG_LEVELS, log_level, parse_headers

KeyPath = tuple[str, ...]

ENVIRONMENTS = ("development", "staging", "production")
EXPORTERS = ("file", "otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """A secret named in the configuration (``{secret: NAME}``), resolved through the providers."""

    name: str


# -- parsers: each returns the typed value or raises ValueError -------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _log_level(value: Any) -> str:
    level = log_level(value) if isinstance(value, str) else None
    if level is None:
        raise ValueError
    return level


def _choice(*options: str, upper: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        text = value.strip().upper() if upper else value.strip().lower()
        if text not in options:
            raise ValueError
        return text

    return parse


def _url(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    return text


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError


def _number(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = float(value)
        if math.isnan(number) or number > high or number < low or (low_open and number == low):
            raise ValueError
        return number

    return parse


def _optional_number(
    low: float, high: float = math.inf, *, low_open: bool = False
) -> Callable[[Any], float | None]:
    number = _number(low, high, low_open=low_open)
    return lambda value: None if value is None else number(value)


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ValueError
        return number

    return parse


def _names(*options: str) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError
        if not all(isinstance(item, str) for item in items):
            raise ValueError
        names = tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
        if not names or any(name not in options for name in names):
            raise ValueError
        return names

    return parse


def _path(value: Any) -> Path:
    return Path(_text(value))


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


#: RFC 9110 ``token``: the characters a header (and a gRPC metadata key) name may use.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _header_name(value: Any) -> str:
    text = _text(value).lower()
    if not _HEADER_NAME.match(text):
        raise ValueError
    return text


def _headers(value: Any) -> dict[str, Secret | SecretRef]:
    if isinstance(value, str):
        value = parse_headers(value)
    if not isinstance(value, Mapping):
        raise ValueError
    headers: dict[str, Secret | SecretRef] = {}
    for key, item in value.items():
        parsed = _secret(item)
        if not isinstance(key, str) or parsed is None:
            raise ValueError
        headers[_header_name(key)] = parsed
    return headers


def _verify(value: Any) -> bool | Path:
    """True, False, or the path of a CA bundle that exists."""
    try:
        return _bool(value)
    except ValueError:
        pass
    path = _path(value)
    if not path.is_file():
        raise ValueError
    return path


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


def _field(default: Any, parse: Callable[[Any], Any], expected: str, *, secret: bool = False) -> Any:
    meta = {"parse": parse, "expected": expected, "secret": secret}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_POSITIVE = "a positive number"
_RATIO = "a number from 0 to 1"


# -- the groups ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Who emits the telemetry (the OTel resource)."""

    #: ``service.name``; ``OTEL_SERVICE_NAME``. Required in staging and production.
    name: str | None = _field(None, _optional_text, "a non-empty string")
    #: ``service.version``.
    version: str | None = _field(None, _optional_text, "a non-empty string")
    #: ``service.namespace``.
    namespace: str | None = _field(None, _optional_text, "a non-empty string")


@dataclasses.dataclass(frozen=True)
class ExporterConfig:
    """Where telemetry goes, and how often."""

    #: Exporters used at once: file, otlp, prometheus, console, none.
    exporters: tuple[str, ...] = _field(("file",), _names(*EXPORTERS), "a list of " + ", ".join(EXPORTERS))
    #: OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``); https for a remote host in production.
    endpoint: str | None = _field(None, _url, "a URL")
    #: ``grpc`` or ``http/protobuf``.
    protocol: str = _field("http/protobuf", _choice(*OTLP_PROTOCOLS), "one of " + ", ".join(OTLP_PROTOCOLS))
    #: Headers sent with each OTLP export (``OTEL_EXPORTER_OTLP_HEADERS``), gRPC metadata included;
    #: names are lower-cased, values are secrets: ``{secret: NAME}`` or a literal.
    headers: dict[str, Secret | SecretRef] = _field(  # noqa: RUF009 - a default_factory
        {}, _headers, "a mapping of header names to values", secret=True
    )
    #: An API key for the backend, as a secret, sent in the ``api_key_header`` header of each OTLP
    #: export. A header of that name in ``headers`` wins over it.
    api_key: Secret | SecretRef | None = _field(  # noqa: RUF009 - returns dataclasses.field
        None, _secret, "a string or {secret: NAME}", secret=True
    )
    #: The header that carries ``api_key``: ``authorization`` (the default) sends
    #: ``Bearer <api_key>``; any other name (``x-api-key``, ``api-key``...) sends the key as it is.
    api_key_header: str = _field("authorization", _header_name, "a header name such as x-api-key")
    #: Seconds an OTLP export may take. ``OTEL_EXPORTER_OTLP_TIMEOUT`` is read in **seconds**, as the
    #: Python OTLP exporters read it (the specification says milliseconds; the SDK does not).
    timeout: float = _field(10.0, _number(0, low_open=True), _POSITIVE)
    #: Allow plain http to a remote endpoint (refused in production otherwise).
    insecure: bool = _field(False, _bool, "true or false")
    #: Seconds between metric exports.
    metric_interval: float = _field(15.0, _number(0, low_open=True), _POSITIVE)
    #: Seconds between span batch exports.
    span_export_delay: float = _field(5.0, _number(0, low_open=True), _POSITIVE)
    #: Spans held while an exporter is slow; beyond it they are dropped and counted.
    max_queue_size: int = _field(2048, _integer(1), "a positive whole number")
    #: Directory of the file exporter.
    output_dir: Path = _field(Path("telemetry"), _path, "a directory path")  # noqa: RUF009
    #: The file exporter rotates a file past this size.
    file_max_bytes: int = _field(64 * 1024 * 1024, _integer(1), "a positive whole number")
    #: Rotated files kept per signal.
    file_max_backups: int = _field(10, _integer(1), "a positive whole number")
    #: Address of the prometheus pull endpoint.
    prometheus_host: str = _field("127.0.0.1", _text, "a host name or address")
    prometheus_port: int = _field(9464, _integer(1, 65535), "a port number from 1 to 65535")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Trace sampling: the fraction of root traces kept (children follow their parent)."""

    ratio: float = _field(1.0, _number(0, 1), _RATIO)


@dataclasses.dataclass(frozen=True)
class ResourceMonitorConfig:
    """The CPU/memory monitor. Defaults are the runtime's (``AgentSettings``): a configuration
    that sets nothing starts the same agent as a plain ``start()``."""

    enabled: bool = _field(True, _bool, "true or false")
    #: Seconds between the monitor's own samples (history, limits); the metrics are sampled once
    #: per collection whatever this says.
    interval: float = _field(5.0, _number(0, low_open=True), _POSITIVE)
    #: CPU utilization (0..1] above which the monitor reports a limit breach; none: no check (and
    #: no sampling thread).
    cpu_threshold: float | None = _field(
        None, _optional_number(0, 1, low_open=True), "a number above 0, at most 1"
    )
    #: Memory utilization (0..1] above which the monitor reports a limit breach; none: no check.
    memory_threshold: float | None = _field(
        None, _optional_number(0, 1, low_open=True), "a number above 0, at most 1"
    )


@dataclasses.dataclass(frozen=True)
class ProfilerConfig:
    """The sampled profiler."""

    #: Sampled profiling by ``@profiled`` is on (the decorator itself is the opt-in); false turns
    #: every ``@profiled`` into a plain call.
    enabled: bool = _field(True, _bool, "true or false")
    #: Fraction of calls profiled (at most 0.1 in production).
    sample_rate: float = _field(0.01, _number(0, 1), _RATIO)


@dataclasses.dataclass(frozen=True)
class ResilienceConfig:
    """Defaults of retry, circuit breaker and timeout.

    Read by ``RetryPolicy.from_config``, ``CircuitBreaker.from_config`` and
    ``timeout.from_config`` (``amqadf_agent.resilience``); nothing applies them on its own.
    """

    #: Attempts in all, the first one included: 3 means one call and at most 2 retries
    #: (``RetryPolicy(max_retries=retry_attempts - 1)``); 1 never retries.
    retry_attempts: int = _field(3, _integer(1), "a positive whole number")
    #: Seconds: the first backoff cap, doubled per attempt up to ``retry_max_delay``.
    retry_base_delay: float = _field(0.1, _number(0, low_open=True), _POSITIVE)
    #: Seconds: the longest single wait between attempts.
    retry_max_delay: float = _field(10.0, _number(0, low_open=True), _POSITIVE)
    #: Seconds a protected call may take.
    timeout: float = _field(30.0, _number(0, low_open=True), _POSITIVE)
    #: Failure rate (0..1] over the breaker's sliding window that opens it.
    breaker_failure_rate: float = _field(0.5, _number(0, 1, low_open=True), "a number above 0, at most 1")
    #: Seconds a breaker stays open before a probe.
    breaker_open_timeout: float = _field(30.0, _number(0, low_open=True), _POSITIVE)


@dataclasses.dataclass(frozen=True)
class AutoscalerConfig:
    """Bounds and targets of the autoscaler, read by ``AutoScaler.from_config``."""

    #: The fewest instances asked for (no scale-to-zero, as in the HPA's ``minReplicas``).
    min_instances: int = _field(1, _integer(1), "a positive whole number (no scale-to-zero)")
    max_instances: int = _field(10, _integer(1), "a positive whole number")
    #: Target CPU utilization (0..1]; the autoscaler scales on CPU only unless told otherwise.
    target_cpu: float = _field(0.7, _number(0, 1, low_open=True), "a number above 0, at most 1")
    #: Seconds the scale-down decision looks back (Kubernetes HPA: 300, at most 3600), rounded up to
    #: whole seconds.
    scale_down_stabilization: float = _field(300.0, _number(0, 3600), "a number of seconds from 0 to 3600")


@dataclasses.dataclass(frozen=True)
class AgentRuntimeConfig:
    """The agent's own behaviour."""

    #: Export Python ``logging`` records as OTel logs.
    capture_logs: bool = _field(False, _bool, "true or false")
    #: Seconds exit waits for the last export.
    shutdown_timeout: float = _field(5.0, _number(0, low_open=True), _POSITIVE)
    #: Report the agent's own CPU time, failures and drops.
    self_metrics: bool = _field(True, _bool, "true or false")


@dataclasses.dataclass(frozen=True)
class VaultConfig:
    """The Vault provider (``secrets.vault``): KV v2, token or AppRole auth."""

    #: The Vault server; required when ``secrets.providers`` lists vault.
    url: str | None = _field(None, _url, "a URL")
    #: Where the KV v2 engine is mounted.
    mount: str = _field("secret", _text, "a non-empty string")
    #: Put before every secret path (``app/``: ``api_key`` is read at ``app/api_key``).
    path_prefix: str = _field("", _prefix, "a string")
    #: ``token`` or ``approle``.
    auth_method: str = _field("token", _choice("token", "approle"), "one of token, approle")
    #: The token (``token`` auth): ``{secret: NAME}`` resolved by the env/file providers, or a literal.
    token: Secret | SecretRef | None = _field(  # noqa: RUF009 - returns dataclasses.field
        None, _secret, "a string or {secret: NAME}", secret=True
    )
    #: The AppRole role id and secret id (``approle`` auth), as ``token``.
    role_id: Secret | SecretRef | None = _field(  # noqa: RUF009 - returns dataclasses.field
        None, _secret, "a string or {secret: NAME}", secret=True
    )
    secret_id: Secret | SecretRef | None = _field(  # noqa: RUF009 - returns dataclasses.field
        None, _secret, "a string or {secret: NAME}", secret=True
    )
    #: Where the AppRole auth method is mounted.
    approle_mount: str = _field("approle", _text, "a non-empty string")
    #: The Vault namespace (``X-Vault-Namespace``).
    namespace: str | None = _field(None, _optional_text, "a non-empty string")
    #: Verify the server's certificate: true, false, or the path of a CA bundle.
    verify: bool | Path = _field(True, _verify, "true, false or the path of an existing CA file")  # noqa: RUF009
    #: Seconds a request may take.
    timeout: float = _field(10.0, _number(0, low_open=True), _POSITIVE)


@dataclasses.dataclass(frozen=True)
class AwsConfig:
    """The AWS Secrets Manager provider (``secrets.aws``)."""

    #: The region (default: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``).
    region: str | None = _field(None, _optional_text, "a non-empty string")
    #: Put before every secret id.
    prefix: str = _field("", _prefix, "a string")
    #: Another endpoint (a VPC endpoint; a local moto server in tests).
    endpoint_url: str | None = _field(None, _url, "a URL")
    #: Seconds to connect and to read.
    timeout: float = _field(10.0, _number(0, low_open=True), _POSITIVE)


@dataclasses.dataclass(frozen=True)
class SecretsConfig:
    """How ``get_secret`` resolves names."""

    #: Providers asked in this order.
    providers: tuple[str, ...] = _field(
        ("env", "file"), _names(*PROVIDERS), "a list of " + ", ".join(PROVIDERS)
    )
    #: Directory of the file provider (Docker/Kubernetes secret mount).
    directory: Path = _field(Path("/run/secrets"), _path, "a directory path")  # noqa: RUF009
    #: Prefix of environment-variable names (``api_key`` -> ``{prefix}API_KEY``).
    env_prefix: str = _field("", lambda v: v if isinstance(v, str) else _text(v), "a string")
    #: Seconds a resolved secret is cached.
    cache_ttl: float = _field(300.0, _number(0), "a number >= 0")
    #: The vault provider's settings (a sub-group: ``secrets.vault.url``...).
    vault: VaultConfig = dataclasses.field(default_factory=VaultConfig)
    #: The aws provider's settings (``secrets.aws.region``...).
    aws: AwsConfig = dataclasses.field(default_factory=AwsConfig)


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
    "secrets": SecretsConfig,
}

#: Groups inside a group (``secrets.vault``): key path -> dataclass. Their fields are 3-part paths.
SUBGROUPS: dict[KeyPath, type[Any]] = {("secrets", "vault"): VaultConfig, ("secrets", "aws"): AwsConfig}

#: Top-level scalar fields: name -> (default, parser, expected).
TOP_LEVEL: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "environment": ("development", _choice(*ENVIRONMENTS), "one of " + ", ".join(ENVIRONMENTS)),
    "log_level": ("INFO", _log_level, "one of " + ", ".join(LOG_LEVELS)),
}

FLAG_FIELDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "enabled": (_bool, "true or false"),
    "percentage": (_number(0, 100), "a number from 0 to 100"),
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


def _leaf_field(path: KeyPath) -> dataclasses.Field[Any]:
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
    close = difflib.get_close_matches(path[index], options, n=1, cutoff=0.6)
    hint = f" (did you mean {'.'.join((*path[:index], close[0]))!r}?)" if close else ""
    return f"{dotted}: unknown key{hint}"


def show(value: Any, secret: bool) -> str:
    """A given value as an error message shows it: secrets redacted, long values cut."""
    if secret or isinstance(value, Secret):
        return REDACTED
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_value(path: KeyPath, raw: Any) -> tuple[Any, str | None]:
    """The typed value of a leaf, or ``(None, message)``."""
    secret = False
    if len(path) == 1:
        _, parse, expected = TOP_LEVEL[path[0]]
    elif path[0] == "feature_flags":
        parse, expected = FLAG_FIELDS[path[2]]
    else:
        field = _leaf_field(path)
        parse, expected, secret = (
            field.metadata["parse"],
            field.metadata["expected"],
            field.metadata["secret"],
        )
    try:
        return parse(raw), None
    except (TypeError, ValueError):
        return None, f"{'.'.join(path)}: must be {expected}, got {show(raw, secret)}"


def default_of(path: KeyPath) -> Any:
    if len(path) == 1:
        return TOP_LEVEL[path[0]][0]
    if path[0] == "feature_flags":
        return False if path[2] == "enabled" else 100.0
    field = _leaf_field(path)
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
