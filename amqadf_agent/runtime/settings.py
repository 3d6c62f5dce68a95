"""``resolve``: ``start()``'s arguments, the environment and the defaults, merged into ``AgentSettings``.

Explicit argument > environment variable > default, for each key of the one settings table
(``config.schema``). A bad value never stops the host application: it becomes a one-line problem
that names the setting, and the setting falls back to its default (as the OpenTelemetry SDK does for
``OTEL_METRIC_EXPORT_INTERVAL``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from amqadf_agent.config import schema
from amqadf_agent.config import validators as v
from amqadf_agent.config.settings import EXPORTERS, OTLP_PROTOCOLS, AgentSettings
from amqadf_agent.config.sources import otel_log_level, read_variable
from amqadf_agent.errors import ConfigError

__all__ = ["EXPORTERS", "OTLP_PROTOCOLS", "AgentSettings", "resolve"]

#: Where ``start()`` reads a key otherwise than a ``ProductionConfig`` does: the deployment's
#: environment may have any name (``qa-eu``), and an endpoint may be gRPC's ``host:port``; headers
#: are a mapping of literal strings or ``Secret``s (no ``{secret: NAME}``: nothing resolves it here).
RUNTIME_PARSERS: dict[str, v.Parser[Any]] = {
    "environment": v.text,
    "otlp_endpoint": v.text,
    "otlp_headers": v.headers,
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
    problems: list[ConfigError] = []
    explicit = _known_only(_explicit(config, overrides), problems)
    values: dict[str, Any] = {}
    for setting, path in schema.runtime_keys().items():
        source = _source(setting, path, explicit, env)
        if source is not None:
            _parse_into(values, problems, setting, *source)
    if "log_level" not in values and explicit.get("log_level") is None:
        level = otel_log_level(env)  # a name we do not know is another SDK's, not a problem
        if level is not None:
            values["log_level"] = level
    return dataclasses.replace(AgentSettings(), **values), problems


def _explicit(
    config: AgentSettings | Mapping[str, Any] | None, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What the caller gave: ``config``'s values that differ from the defaults, then ``overrides``."""
    explicit: dict[str, Any] = {}
    if isinstance(config, AgentSettings):
        defaults = AgentSettings()
        # Not dataclasses.asdict: the fields are read as they are (a Secret is not copied).
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        explicit = {k: value for k, value in fields.items() if value != getattr(defaults, k)}
    elif config is not None:
        explicit.update(config)
    # An override of None means "not given": it leaves the config's value (or the default) in place.
    explicit.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return explicit


def _known_only(explicit: dict[str, Any], problems: list[ConfigError]) -> dict[str, Any]:
    """``explicit`` without the keys ``AgentSettings`` does not have, each one a problem."""
    known = {field.name for field in dataclasses.fields(AgentSettings)}
    for key in [key for key in explicit if key not in known]:
        problems.append(ConfigError(key, f"unknown setting{v.did_you_mean(key, known)}; ignored"))
        del explicit[key]
    return explicit


def _source(
    setting: str, path: schema.KeyPath, explicit: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[str, Any, Any] | None:
    """Where ``setting`` comes from: ``(name shown in a problem, value, value as given)``, or None."""
    if explicit.get(setting) is not None:
        return setting, explicit[setting], explicit[setting]
    meta = schema.leaf_field(path).metadata
    if meta["sdk_reads_env"]:
        return None  # the exporters read these variables themselves: only an explicit value is passed
    for variable in meta["env"]:
        found = read_variable(env, variable)
        if found is not None:
            return variable, schema.from_variable(variable, found), found
    return None


def _parse_into(
    values: dict[str, Any], problems: list[ConfigError], setting: str, name: str, raw: Any, given: Any
) -> None:
    """Parse one value into ``values``; a bad one is a problem naming ``name`` and the default is kept."""
    parse = RUNTIME_PARSERS.get(setting) or schema.parser_of(schema.runtime_keys()[setting])[0]
    try:
        value = parse(raw)
    except v.PartlyKnown as exc:
        values[setting] = _without_none(exc.known)
        known = ",".join(values[setting])
        problems.append(ConfigError(name, f"unknown exporter {exc.unknown!r} in {given!r}; using {known}"))
        return
    except (TypeError, ValueError) as exc:
        problems.append(ConfigError(name, _bad_value(setting, parse, exc, given)))
        return
    values[setting] = _without_none(value) if setting == "exporters" else value


def _without_none(names: tuple[str, ...]) -> tuple[str, ...]:
    """``none`` beside other exporters means nothing: the others are used."""
    return tuple(name for name in names if name != "none") if len(names) > 1 else names


def _bad_value(setting: str, parse: v.Parser[Any], exc: Exception, given: Any) -> str:
    if setting == "otlp_headers":  # the message names keys, never a value
        return f"{exc}; no headers sent"
    default = getattr(AgentSettings(), setting)
    shown = ",".join(default) if isinstance(default, tuple) else default
    fallback = "ignored" if default is None else f"using {shown}"
    return f"must be {parse.expected}, got {schema.show(given, False)}; {fallback}"
