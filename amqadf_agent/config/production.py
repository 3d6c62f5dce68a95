"""``ProductionConfig``: layered, typed, validated configuration with secrets and feature flags.

Layers, lowest first: built-in defaults < the environment profile (development, staging,
production) < the file (and its ``environments.<env>`` section) < environment variables
(``AMQADF_*`` with ``__`` nesting, and the standard ``OTEL_*``) < explicit overrides. Building a
configuration never raises for a bad value: ``validate()`` returns every problem at once, each with
its key path. Only a file that cannot be read or parsed raises (``ConfigFileError``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from amqadf_agent.config import schema
from amqadf_agent.config.flags import FeatureFlag, FeatureFlags
from amqadf_agent.config.secrets import (
    Secret,
    SecretProvider,
    SecretResolver,
    build_providers,
)
from amqadf_agent.config.settings import AgentSettings
from amqadf_agent.config.sources import environment_layer, interpolate, load_file, split_overrides
from amqadf_agent.config.validators import did_you_mean
from amqadf_agent.errors import ConfigError, MissingExtraError, SecretNotFoundError
from amqadf_agent.redaction import REDACTED, redact_url

KeyPath = tuple[str, ...]

#: What each environment changes from the built-in defaults (a file or variable still wins).
PROFILES: dict[str, dict[str, Any]] = {
    "development": {"log_level": "DEBUG"},
    "staging": {"log_level": "INFO"},
    "production": {"log_level": "WARNING", "profiler": {"sample_rate": 0.001}},
}

#: The most a profiler may sample in production (docs/design.md: profiling in production must be sampled).
PRODUCTION_MAX_PROFILER_RATE = 0.1
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass
class _Layer:
    name: str
    values: dict[KeyPath, Any]
    labels: dict[KeyPath, str] = dataclasses.field(default_factory=dict)

    def label(self, path: KeyPath) -> str:
        return self.labels.get(path, self.name)


class ProductionConfig:
    """The agent's configuration. Build it with ``load``, ``from_env`` or ``from_file``.

    Attributes:
        environment: development, staging or production.
        log_level: the agent's log level.
        service, exporter, sampling, resource_monitor, profiler, resilience, autoscaler, agent,
            telemetry, secrets: the typed groups (see ``amqadf_agent.config.schema``).
        feature_flags: flag name -> ``FeatureFlag``.
        sources: dotted key path -> the layer its value came from.
    """

    environment: str
    log_level: str
    service: schema.ServiceConfig
    exporter: schema.ExporterConfig
    sampling: schema.SamplingConfig
    resource_monitor: schema.ResourceMonitorConfig
    profiler: schema.ProfilerConfig
    resilience: schema.ResilienceConfig
    autoscaler: schema.AutoscalerConfig
    agent: schema.AgentRuntimeConfig
    telemetry: schema.TelemetryConfig
    secrets: schema.SecretsConfig

    def __init__(
        self,
        *,
        file: str | Path | None = None,
        environment: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        use_environment: bool = True,
        environ: Mapping[str, str] | None = None,
        secret_providers: Sequence[SecretProvider] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.file = Path(file) if file is not None else None
        self._errors: list[str] = []
        self.sources: dict[str, str] = {}
        typed = self._parse(self._merge(self._layers(env, environment, overrides, use_environment)))
        self._assign_groups(typed)
        providers = (
            list(secret_providers) if secret_providers is not None else self._build_providers(env, clock)
        )
        self._resolver = SecretResolver(providers, ttl=self.secrets.cache_ttl, clock=clock)
        self.exporter = self._exporter_with_secrets()
        self.feature_flags = _flags(typed)
        self._flags = FeatureFlags(self.feature_flags)

    # -- building: layers, merge, parse, groups -----------------------------------------------------

    def _layers(
        self,
        env: Mapping[str, str],
        environment: str | None,
        overrides: Mapping[str, Any] | None,
        use_environment: bool,
    ) -> list[_Layer]:
        """Every layer, lowest first; the environment is settled first, as it picks the profile and
        the file's ``environments.<env>`` section."""
        file_data: dict[str, Any] = {}
        if self.file is not None:
            file_data = interpolate(load_file(self.file), env, self._errors)
        sections = file_data.pop("environments", None)
        file_layer = _Layer(f"file {self.file}", schema.flatten(file_data))
        env_layer = _environment_variables(env) if use_environment else _Layer("env", {})
        override_layer = _Layer("override", schema.flatten(split_overrides(overrides or {})))
        argument_layer = _Layer(
            "argument", {("environment",): environment} if environment is not None else {}
        )
        given = [file_layer, env_layer, override_layer, argument_layer]
        chosen = _chosen_environment(given)
        section_layer = _Layer(f"file {self.file} (environments.{chosen})", self._section(sections, chosen))
        profile_layer = _Layer(f"profile {chosen}", schema.flatten(PROFILES[chosen]))
        return [profile_layer, file_layer, section_layer, env_layer, override_layer, argument_layer]

    def _section(self, sections: Any, chosen: str) -> dict[KeyPath, Any]:
        """The values of the file's ``environments.<chosen>``; every malformed section is an error."""
        if sections is None:
            return {}
        if not isinstance(sections, Mapping):
            self._errors.append("environments: must be a mapping of environment names to settings")
            return {}
        values: dict[KeyPath, Any] = {}
        for name, overlay in sections.items():
            if name not in schema.ENVIRONMENTS:
                hint = did_you_mean(str(name), schema.ENVIRONMENTS, cutoff=0.5)
                self._errors.append(f"environments.{name}: unknown environment{hint}")
            elif not isinstance(overlay, Mapping):
                self._errors.append(f"environments.{name}: must be a mapping")
            elif name == chosen:
                values = schema.flatten(overlay)
        return values

    def _merge(self, layers: list[_Layer]) -> dict[KeyPath, tuple[Any, str]]:
        """Key path -> (raw value, its layer), the highest layer winning; unknown paths are errors."""
        merged: dict[KeyPath, tuple[Any, str]] = {}
        for layer in layers:
            for path, value in layer.values.items():
                problem = schema.check_path(path)
                if problem is not None:
                    self._errors.append(_with_variable(problem, layer.label(path)))
                    continue
                merged[path] = (value, layer.label(path))
        return merged

    def _parse(self, merged: dict[KeyPath, tuple[Any, str]]) -> dict[KeyPath, Any]:
        """Every key's typed value: the merged one when it parses, else the default (and an error)."""
        typed: dict[KeyPath, Any] = {}
        flag_names = sorted({p[1] for p in merged if p[0] == "feature_flags"})
        flag_paths = [("feature_flags", name, field) for name in flag_names for field in schema.FLAG_FIELDS]
        for path in schema.all_leaves() + flag_paths:
            source = "default"
            typed[path] = schema.default_of(path)
            if path in merged:
                raw, label = merged[path]
                value, problem = schema.parse_value(path, raw, _variable_of(label))
                if problem is None:
                    typed[path], source = value, label
                else:
                    self._errors.append(_with_variable(problem, label))
            self.sources[".".join(path)] = source
        return typed

    def _assign_groups(self, typed: dict[KeyPath, Any]) -> None:
        self.environment = typed[("environment",)]
        self.log_level = typed[("log_level",)]
        for group in schema.GROUPS:
            group_values: dict[str, Any] = {name: typed[(group, name)] for name in schema.group_fields(group)}
            for sub, sub_type in schema.SUBGROUPS.items():
                if sub[0] == group:
                    names = schema.subgroup_fields(sub)
                    group_values[sub[1]] = sub_type(**{name: typed[(sub[0], sub[1], name)] for name in names})
            setattr(self, group, schema.GROUPS[group](**group_values))

    def _exporter_with_secrets(self) -> schema.ExporterConfig:
        """``exporter`` with its ``{secret: NAME}`` references resolved (an unresolved one is an error)."""
        return dataclasses.replace(
            self.exporter,
            api_key=self._resolve_ref("exporter.api_key", self.exporter.api_key),
            headers={
                key: resolved
                for key, value in self.exporter.headers.items()
                if (resolved := self._resolve_ref(f"exporter.headers.{key}", value)) is not None
            },
        )

    def _build_providers(self, env: Mapping[str, str], clock: Callable[[], float]) -> list[SecretProvider]:
        """The providers of ``secrets.providers``; a provider that cannot be built is an error of its own.

        The credentials of a network provider (``secrets.vault.token``...) are resolved by the local
        providers (env, file) only, never by a network provider.
        """
        settings = self.secrets
        local = build_providers(
            ("env", "file"), directory=settings.directory, env_prefix=settings.env_prefix, environ=env
        )
        bootstrap = SecretResolver(local, ttl=0, clock=clock)
        providers: list[SecretProvider] = []
        for name in settings.providers:
            try:
                if name in ("env", "file"):
                    providers.extend(
                        build_providers(
                            (name,), directory=settings.directory, env_prefix=settings.env_prefix, environ=env
                        )
                    )
                elif name == "vault":
                    provider = self._vault_provider(bootstrap)
                    if provider is not None:
                        providers.append(provider)
                elif name == "aws":
                    from amqadf_agent.config.aws import AwsSecretsManagerProvider

                    aws = settings.aws
                    providers.append(
                        AwsSecretsManagerProvider(
                            aws.region, prefix=aws.prefix, endpoint_url=aws.endpoint_url, timeout=aws.timeout
                        )
                    )
            except MissingExtraError as exc:
                self._errors.append(f"secrets.providers: {exc}")
            except ConfigError as exc:
                self._errors.append(str(exc))
        return providers

    def _vault_provider(self, bootstrap: SecretResolver) -> SecretProvider | None:
        from amqadf_agent.config.vault import VaultProvider

        vault = self.secrets.vault
        if vault.url is None:
            if not any(error.startswith("secrets.vault.url:") for error in self._errors):
                self._errors.append("secrets.vault.url: required when secrets.providers includes vault")
            return None
        credentials: dict[str, Secret | None] = {}
        unresolved = False
        for field in ("token", "role_id", "secret_id"):
            value = getattr(vault, field)
            credentials[field] = self._resolve_ref(f"secrets.vault.{field}", value, bootstrap)
            unresolved = unresolved or (value is not None and credentials[field] is None)
        if unresolved:
            return None  # the unresolved reference is already reported
        return VaultProvider(
            vault.url,
            mount=vault.mount,
            path_prefix=vault.path_prefix,
            auth_method=vault.auth_method,
            token=credentials["token"],
            role_id=credentials["role_id"],
            secret_id=credentials["secret_id"],
            approle_mount=vault.approle_mount,
            namespace=vault.namespace,
            verify=vault.verify,
            timeout=vault.timeout,
        )

    def _resolve_ref(
        self,
        where: str,
        value: Secret | schema.SecretRef | None,
        resolver: SecretResolver | None = None,
    ) -> Secret | None:
        if not isinstance(value, schema.SecretRef):
            return value
        try:
            return (resolver or self._resolver).get(value.name)
        except SecretNotFoundError as exc:
            self._errors.append(f"{where}: {exc}")
            return None

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        file: str | Path | None = None,
        environment: str | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        secret_providers: Sequence[SecretProvider] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ProductionConfig:
        """Every layer: defaults, the profile of ``environment``, ``file``, the environment, ``overrides``.

        Args:
            file: a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file (optional).
            environment: development, staging or production; beats every other layer.
            overrides: settings by dotted path (``{"exporter.endpoint": ...}``) or nested mappings.
            environ: the environment to read (default ``os.environ``).
            secret_providers: replaces the providers named by ``secrets.providers``.
            clock: monotonic seconds for the secret cache.

        Raises:
            ConfigFileError: ``file`` cannot be read or parsed (file, line and column).
        """
        return cls(
            file=file,
            environment=environment,
            overrides=overrides,
            environ=environ,
            secret_providers=secret_providers,
            clock=clock,
        )

    @classmethod
    def from_env(
        cls,
        environment: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        secret_providers: Sequence[SecretProvider] | None = None,
    ) -> ProductionConfig:
        """Defaults, the profile, and ``AMQADF_*``/``OTEL_*`` variables."""
        return cls(environment=environment, environ=environ, secret_providers=secret_providers)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        environment: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        secret_providers: Sequence[SecretProvider] | None = None,
    ) -> ProductionConfig:
        """Defaults, the profile and the file only (``${VAR}`` in the file still reads ``environ``)."""
        return cls(
            file=path,
            environment=environment,
            use_environment=False,
            environ=environ,
            secret_providers=secret_providers,
        )

    # -- use ---------------------------------------------------------------------------------------

    def validate(self) -> tuple[bool, list[str]]:
        """``(True, [])`` or ``(False, every problem)``; each message starts with its key path."""
        errors = list(self._errors)
        if self.autoscaler.min_instances > self.autoscaler.max_instances:
            errors.append(
                "autoscaler.min_instances: must be at most autoscaler.max_instances "
                f"({self.autoscaler.min_instances} > {self.autoscaler.max_instances})"
            )
        if self.resilience.retry_base_delay > self.resilience.retry_max_delay:
            errors.append(
                "resilience.retry_base_delay: must be at most resilience.retry_max_delay "
                f"({self.resilience.retry_base_delay} > {self.resilience.retry_max_delay})"
            )
        if "none" in self.exporter.exporters and len(self.exporter.exporters) > 1:
            errors.append("exporter.exporters: 'none' cannot be combined with other exporters")
        if self.environment in ("staging", "production") and not self.service.name:
            errors.append(f"service.name: required in {self.environment}")
        if self.environment == "production":
            errors.extend(self._production_rules())
        return not errors, errors

    def _production_rules(self) -> list[str]:
        errors = []
        if "console" in self.exporter.exporters:
            errors.append("exporter.exporters: the console exporter is not allowed in production")
        endpoint = self.exporter.endpoint
        if endpoint is not None and not self.exporter.insecure:
            parts = urlsplit(endpoint)
            if parts.scheme != "https" and parts.hostname not in _LOCAL_HOSTS:
                errors.append(
                    f"exporter.endpoint: must use https for a remote host in production, got "
                    f"'{parts.scheme}://{parts.hostname}' (set exporter.insecure to allow plain http)"
                )
        if self.log_level == "DEBUG":
            errors.append("log_level: DEBUG is not allowed in production")
        if self.profiler.enabled and self.profiler.sample_rate > PRODUCTION_MAX_PROFILER_RATE:
            errors.append(
                f"profiler.sample_rate: must be at most {PRODUCTION_MAX_PROFILER_RATE} in production, "
                f"got {self.profiler.sample_rate}"
            )
        return errors

    def get_secret(self, name: str) -> Secret:
        """The secret ``name`` from the providers (cached for ``secrets.cache_ttl`` seconds).

        Raises:
            SecretNotFoundError: no provider has it (the message names the providers tried).
        """
        return self._resolver.get(name)

    def feature_enabled(self, name: str, key: str | None = None) -> bool:
        """Whether flag ``name`` is on (for ``key``, in a percentage rollout). Unknown flags are off."""
        return self._flags.enabled(name, key)

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration as plain data; every secret, and a URL's password, is ``[secure]``."""
        result: dict[str, Any] = {"environment": self.environment, "log_level": self.log_level}
        for group in schema.GROUPS:
            value = getattr(self, group)
            result[group] = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        result["feature_flags"] = {
            name: {"enabled": flag.enabled, "percentage": flag.percentage}
            for name, flag in sorted(self.feature_flags.items())
        }
        return result

    def to_agent_settings(self) -> AgentSettings:
        """The runtime's ``AgentSettings`` (what ``amqadf_agent.start`` builds the providers from)."""
        exporter = self.exporter
        monitor = self.resource_monitor
        # A timeout nobody set is left to the exporters (they read OTEL_EXPORTER_OTLP_*_TIMEOUT).
        timeout = None if self.sources.get("exporter.timeout") == "default" else exporter.timeout
        return AgentSettings(
            service_name=self.service.name,
            service_version=self.service.version,
            service_namespace=self.service.namespace,
            environment=self.environment,
            exporters=exporter.exporters,
            output_dir=exporter.output_dir,
            file_max_bytes=exporter.file_max_bytes,
            file_max_backups=exporter.file_max_backups,
            otlp_protocol=exporter.protocol,
            otlp_endpoint=exporter.endpoint,
            otlp_headers=self._otlp_headers(),
            otlp_timeout=timeout,
            prometheus_host=exporter.prometheus_host,
            prometheus_port=exporter.prometheus_port,
            metric_interval=exporter.metric_interval,
            span_export_delay=exporter.span_export_delay,
            max_queue_size=exporter.max_queue_size,
            sample_ratio=self.sampling.ratio,
            capture_logs=self.agent.capture_logs,
            shutdown_timeout=self.agent.shutdown_timeout,
            self_metrics=self.agent.self_metrics,
            resource_monitor=monitor.enabled,
            resource_interval=monitor.interval,
            resource_cpu_threshold=monitor.cpu_threshold,
            resource_memory_threshold=monitor.memory_threshold,
            profiler_enabled=self.profiler.enabled,
            profiler_sample_rate=self.profiler.sample_rate,
            # Every environment profile sets one (development DEBUG, staging INFO, production
            # WARNING): a ProductionConfig always sets the agent's logger level; a plain start() does not.
            log_level=self.log_level,
            sanitize=self.telemetry.sanitize,
            redact_attributes=self.telemetry.redact_attributes,
            keep_db_parameters=self.telemetry.keep_db_parameters,
            log_correlation=self.telemetry.log_correlation,
            code_location=self.agent.code_location,
        )

    def _otlp_headers(self) -> dict[str, Secret]:
        """The headers of every OTLP export: ``exporter.headers`` plus ``exporter.api_key``.

        The key goes in ``exporter.api_key_header``: as ``Bearer <key>`` in ``authorization``, as it
        is in any other header; a header of that name in ``exporter.headers`` wins. References
        (``{secret: NAME}``) were resolved through the providers when the configuration was built;
        one that could not be is left out (and is a ``validate()`` error).
        """
        exporter = self.exporter
        headers = {
            name: value
            for name, value in exporter.headers.items()
            if isinstance(value, Secret)  # an unresolved SecretRef is already an error
        }
        key = exporter.api_key
        if isinstance(key, Secret) and exporter.api_key_header not in headers:
            name = exporter.api_key_header
            raw = key.get_secret_value()
            if name == "authorization" and not raw.lower().startswith("bearer "):
                raw = "Bearer " + raw  # a key given with its scheme keeps it (no "Bearer Bearer")
            value = raw
            headers[name] = Secret(value, "exporter.api_key")
        return headers

    def __repr__(self) -> str:
        where = f", file={str(self.file)!r}" if self.file is not None else ""
        return f"ProductionConfig(environment={self.environment!r}, service={self.service.name!r}{where})"


def _plain(value: Any) -> Any:
    if isinstance(value, (Secret, schema.SecretRef)):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact_url(value)  # an endpoint's password
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _environment_variables(env: Mapping[str, str]) -> _Layer:
    values, variables = environment_layer(env)
    layer = _Layer("env", {})
    for path, value in values.items():
        key = schema.normalize(path)
        layer.values[key] = value
        layer.labels[key] = f"env {variables[path]}"
    return layer


def _chosen_environment(layers: list[_Layer]) -> str:
    """The environment the highest layer that names a valid one says (development by default)."""
    chosen = "development"
    for layer in layers:
        if ("environment",) in layer.values:
            value, problem = schema.parse_value(("environment",), layer.values[("environment",)])
            if problem is None:
                chosen = value
    return chosen


def _variable_of(label: str) -> str | None:
    """The environment variable a value's layer label names (``env OTEL_BSP_SCHEDULE_DELAY``)."""
    return label[len("env ") :] if label.startswith("env ") else None


def _with_variable(problem: str, label: str) -> str:
    """An error from the environment says which variable to fix."""
    return problem + (f" [{label}]" if label.startswith("env") else "")


def _flags(typed: Mapping[KeyPath, Any]) -> dict[str, FeatureFlag]:
    flags: dict[str, FeatureFlag] = {}
    for path, value in typed.items():
        if path[0] == "feature_flags":
            flag = flags.get(path[1], FeatureFlag(path[1]))
            flags[path[1]] = dataclasses.replace(flag, **{path[2]: value})
    return flags
