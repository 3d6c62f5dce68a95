"""Where configuration values come from: files, the environment, ``${VAR}`` interpolation.

Every source becomes a flat mapping of key paths (``("exporter", "endpoint")``) to raw values, and a
label per path saying where it came from; ``schema`` checks the paths and parses the values.

- Files: ``.yaml``/``.yml``, ``.json`` or ``.toml`` by suffix. A malformed file raises
  ``ConfigFileError`` with the file, line and column; an unreadable one names the file and the reason.
- Environment: ``AMQADF_EXPORTER__ENDPOINT`` is ``exporter.endpoint`` (``__`` nests); the runtime's
  flat variables (``AMQADF_EXPORTERS``, ``AMQADF_SAMPLE_RATIO`` ...) and the standard ``OTEL_*``
  variables are mapped onto the same fields. An ``AMQADF_`` variable beats an ``OTEL_`` one.
- Strings in files may say ``${VAR}`` or ``${VAR:-default}``; ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from amqadf_agent.errors import ConfigFileError

#: Levels of the agent's logger (``log_level``), as the ``logging`` module names them.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Names other OpenTelemetry SDKs give levels in ``OTEL_LOG_LEVEL`` (and ``WARN``), as ours.
LOG_LEVEL_ALIASES = {
    "WARN": "WARNING",
    "VERBOSE": "DEBUG",
    "TRACE": "DEBUG",
    "ALL": "DEBUG",
    "FATAL": "CRITICAL",
}


def log_level(value: object) -> str | None:
    """The level ``value`` names (``"warn"`` -> ``"WARNING"``), or None when it names none of ours.

    The one reading of a level, for ``ProductionConfig`` and the runtime's settings alike.
    """
    text = str(value).strip().upper()
    text = LOG_LEVEL_ALIASES.get(text, text)
    return text if text in LOG_LEVELS else None


Path_ = tuple[str, ...]

#: Suffixes ``load_file`` reads.
SUFFIXES = (".yaml", ".yml", ".json", ".toml")

_INTERPOLATION = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML, JSON or TOML file (chosen by suffix); an empty file is ``{}``."""
    path = Path(path)
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigFileError(
            name, f"unknown file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(name, "no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(name, "is a directory, not a file") from None
    except PermissionError:
        raise ConfigFileError(name, "permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(name, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigFileError(name, f"cannot be read ({exc.strerror or exc})") from None
    if suffix == ".json":
        data = _parse_json(name, text)
    elif suffix == ".toml":
        data = _parse_toml(name, text)
    else:
        data = _parse_yaml(name, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(name, f"must hold a mapping of settings, not a {type(data).__name__}", 1, 1)
    return data


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise ConfigFileError(name, f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None


def _parse_toml(name: str, text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        column = getattr(exc, "colno", None) or (int(found.group(2)) if found else None)
        reason = getattr(exc, "msg", None) or (message[: found.start()] if found else message)
        raise ConfigFileError(name, f"invalid TOML: {reason}", line, column) from None


def _parse_yaml(name: str, text: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a core dependency
        from amqadf_agent.errors import MissingExtraError

        raise MissingExtraError("reading YAML configuration", "yaml", "pyyaml") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "malformed"
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise ConfigFileError(name, f"invalid YAML: {reason}", line, column) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(name, f"invalid YAML: {exc}") from None


def interpolate(value: Any, environ: Mapping[str, str], errors: list[str], path: Path_ = ()) -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` replaced in every string, recursively.

    A variable that is unset (and has no default) is reported in ``errors`` with its key path and
    replaced by an empty string; ``${VAR:-default}`` also uses the default when ``VAR`` is empty.
    """
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            variable, default = match.group(1), match.group(2)
            found = environ.get(variable)
            if found:
                return found
            if default is not None:
                return default
            if found is None:
                errors.append(f"{'.'.join(path) or '(file)'}: environment variable {variable!r} is not set")
            return ""

        return _INTERPOLATION.sub(replace, value)
    if isinstance(value, dict):
        return {key: interpolate(item, environ, errors, (*path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ, errors, (*path, str(i))) for i, item in enumerate(value)]
    return value


#: The runtime's flat variables (see ``runtime.settings``) and where they land.
AMQADF_FLAT = {
    "AMQADF_ENVIRONMENT": ("environment",),
    "AMQADF_LOG_LEVEL": ("log_level",),
    "AMQADF_SERVICE_NAME": ("service", "name"),
    "AMQADF_SERVICE_VERSION": ("service", "version"),
    "AMQADF_EXPORTERS": ("exporter", "exporters"),
    "AMQADF_OUTPUT_DIR": ("exporter", "output_dir"),
    "AMQADF_FILE_MAX_BYTES": ("exporter", "file_max_bytes"),
    "AMQADF_FILE_MAX_BACKUPS": ("exporter", "file_max_backups"),
    "AMQADF_METRIC_INTERVAL": ("exporter", "metric_interval"),
    "AMQADF_SAMPLE_RATIO": ("sampling", "ratio"),
    "AMQADF_CAPTURE_LOGS": ("agent", "capture_logs"),
    "AMQADF_SHUTDOWN_TIMEOUT": ("agent", "shutdown_timeout"),
    "AMQADF_SELF_METRICS": ("agent", "self_metrics"),
    "AMQADF_RESOURCE_MONITOR": ("resource_monitor", "enabled"),
    "AMQADF_RESOURCE_INTERVAL": ("resource_monitor", "interval"),
    "AMQADF_RESOURCE_CPU_THRESHOLD": ("resource_monitor", "cpu_threshold"),
    "AMQADF_RESOURCE_MEMORY_THRESHOLD": ("resource_monitor", "memory_threshold"),
    "AMQADF_PROFILER_ENABLED": ("profiler", "enabled"),
    "AMQADF_PROFILER_SAMPLE_RATE": ("profiler", "sample_rate"),
}

#: Standard OpenTelemetry variables and where they land; ``True`` marks milliseconds (read as seconds).
OTEL_MAPPED: dict[str, tuple[Path_, bool]] = {
    "OTEL_SERVICE_NAME": (("service", "name"), False),
    "OTEL_EXPORTER_OTLP_ENDPOINT": (("exporter", "endpoint"), False),
    "OTEL_EXPORTER_OTLP_PROTOCOL": (("exporter", "protocol"), False),
    "OTEL_EXPORTER_OTLP_HEADERS": (("exporter", "headers"), False),
    # Seconds, not the specification's milliseconds: the Python OTLP exporters read it in seconds
    # when the agent does not pass a timeout, and one variable must mean one thing.
    "OTEL_EXPORTER_OTLP_TIMEOUT": (("exporter", "timeout"), False),
    "OTEL_EXPORTER_OTLP_INSECURE": (("exporter", "insecure"), False),
    "OTEL_METRIC_EXPORT_INTERVAL": (("exporter", "metric_interval"), True),
    "OTEL_BSP_SCHEDULE_DELAY": (("exporter", "span_export_delay"), True),
    "OTEL_BSP_MAX_QUEUE_SIZE": (("exporter", "max_queue_size"), False),
    "OTEL_EXPORTER_PROMETHEUS_HOST": (("exporter", "prometheus_host"), False),
    "OTEL_EXPORTER_PROMETHEUS_PORT": (("exporter", "prometheus_port"), False),
}

_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def _ms_to_s(text: str) -> Any:
    try:
        return float(text) / 1000.0
    except ValueError:
        return text  # reported by the field's parser, with the variable's name


def parse_headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` syntax: ``key1=value1,key2=value2`` (URL-encoded)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(item)
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def environment_layer(environ: Mapping[str, str]) -> tuple[dict[Path_, Any], dict[Path_, str]]:
    """The configuration in ``environ``: values by key path, and the variable each came from."""
    values: dict[Path_, Any] = {}
    labels: dict[Path_, str] = {}

    def put(path: Path_, value: Any, variable: str) -> None:
        values[path] = value
        labels[path] = variable

    # Lowest first: OTEL_*, then AMQADF_ flat names, then AMQADF_ nested names.
    for variable, (path, millis) in OTEL_MAPPED.items():
        raw = environ.get(variable, "").strip()
        if raw:
            put(path, _ms_to_s(raw) if millis else raw, variable)
    # Every OpenTelemetry SDK reads OTEL_LOG_LEVEL, with names of its own ("none", "verbose"): a
    # level we know (or an alias of one) is taken, anything else is left to those SDKs.
    level = log_level(environ.get("OTEL_LOG_LEVEL", ""))
    if level is not None:
        put(("log_level",), level, "OTEL_LOG_LEVEL")
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "service.name" and value.strip() and ("service", "name") not in values:
            put(("service", "name"), unquote(value.strip()), "OTEL_RESOURCE_ATTRIBUTES")
        elif key.strip() == "service.version" and value.strip():
            put(("service", "version"), unquote(value.strip()), "OTEL_RESOURCE_ATTRIBUTES")
        elif key.strip() == "service.namespace" and value.strip():
            put(("service", "namespace"), unquote(value.strip()), "OTEL_RESOURCE_ATTRIBUTES")
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in _RATIO_SAMPLERS and environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        put(("sampling", "ratio"), environ["OTEL_TRACES_SAMPLER_ARG"].strip(), "OTEL_TRACES_SAMPLER_ARG")
    for variable, path in AMQADF_FLAT.items():
        raw = environ.get(variable, "").strip()
        if raw:
            put(path, raw, variable)
    for variable in sorted(environ):
        if variable.startswith("AMQADF_") and "__" in variable:
            raw = environ[variable].strip()
            if raw:
                path = tuple(part.lower() for part in variable[len("AMQADF_") :].split("__"))
                put(path, raw, variable)
    return values, labels


def split_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides as a nested mapping: ``{"exporter.endpoint": x}`` is ``{"exporter": {"endpoint": x}}``."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        target = nested
        for part in parts[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = target[part] = {}
            target = existing
        if isinstance(value, Mapping) and isinstance(target.get(parts[-1]), dict):
            target[parts[-1]].update(value)
        else:
            target[parts[-1]] = dict(value) if isinstance(value, Mapping) else value
    return nested
