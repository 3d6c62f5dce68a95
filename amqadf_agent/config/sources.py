"""Where configuration values come from: files, the environment, ``${VAR}`` interpolation.

Every source becomes a flat mapping of key paths (``("exporter", "endpoint")``) to raw values, and a
label per path saying where it came from; ``schema`` checks the paths and parses the values.

- Files: ``.yaml``/``.yml``, ``.json`` or ``.toml`` by suffix. A malformed file raises
  ``ConfigFileError`` with the file, line and column; an unreadable one names the file and the reason.
- Environment: ``AMQADF_EXPORTER__ENDPOINT`` is ``exporter.endpoint`` (``__`` nests) and beats the
  rest; the flat variables of each key (``AMQADF_EXPORTERS``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` ...) are
  those of the table in ``schema``, the same ``start()`` reads, in the same order.
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

from amqadf_agent.config import schema
from amqadf_agent.config.validators import log_level
from amqadf_agent.errors import ConfigFileError

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


_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def read_variable(environ: Mapping[str, str], variable: str) -> str | None:
    """The value of ``variable`` as given, stripped; None when it is unset or blank."""
    return environ.get(variable, "").strip() or None


def otel_log_level(environ: Mapping[str, str]) -> str | None:
    """The level of ``OTEL_LOG_LEVEL`` when it names one of ours (or an alias), else None.

    Every OpenTelemetry SDK reads it, with names of its own ("none", "verbose"): anything we do not
    know is left to those SDKs, never reported as a problem of ours.
    """
    return log_level(environ.get("OTEL_LOG_LEVEL", ""))


def environment_layer(environ: Mapping[str, str]) -> tuple[dict[Path_, Any], dict[Path_, str]]:
    """The configuration in ``environ``: values by key path, and the variable each came from."""
    values: dict[Path_, Any] = {}
    labels: dict[Path_, str] = {}

    def put(path: Path_, value: Any, variable: str) -> None:
        values[path] = value
        labels[path] = variable

    # Lowest first: the variables with a syntax of their own, each key's variables (the first one
    # set wins), the AMQADF_ nested names.
    level = otel_log_level(environ)
    if level is not None:
        put(("log_level",), level, "OTEL_LOG_LEVEL")
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() in ("service.name", "service.version", "service.namespace") and value.strip():
            put(("service", key.strip().split(".")[1]), unquote(value.strip()), "OTEL_RESOURCE_ATTRIBUTES")
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in _RATIO_SAMPLERS and environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        put(("sampling", "ratio"), environ["OTEL_TRACES_SAMPLER_ARG"].strip(), "OTEL_TRACES_SAMPLER_ARG")
    for path in schema.all_leaves():
        for variable in schema.leaf_field(path).metadata["env"]:
            found = read_variable(environ, variable)
            if found is not None:
                put(path, found, variable)
                break
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
