"""Read the ``resilience`` group of a ``ProductionConfig`` without importing the config package.

The ``from_config`` constructors (``RetryPolicy``, ``CircuitBreaker``, ``timeout``) take a
``ProductionConfig`` or its ``ResilienceConfig`` group. They find the values by duck typing, so
importing a resilience module never imports ``amqadf_agent.config``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from amqadf_agent.errors import ConfigError


def group_values(config: object, group: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of ``names`` in group ``group`` of ``config`` (a ``ProductionConfig``) or of ``config``
    itself (the group), each checked again by its schema parser.

    A group built by hand (``ResilienceConfig(retry_attempts=0)``) is not checked when it is built;
    here a bad value is one ``ConfigError`` naming the field (``resilience.retry_attempts: ...``).

    Raises:
        ConfigError: ``config`` has no such group, or a value is invalid.
    """
    section = getattr(config, group, config)
    if not all(hasattr(section, name) for name in names):
        raise ConfigError(
            "config", f"must be a ProductionConfig or its {group} group, got {type(config).__name__}"
        )
    values = {name: getattr(section, name) for name in names}
    if dataclasses.is_dataclass(section):
        for field in dataclasses.fields(section):
            parse = field.metadata.get("parse")
            if field.name not in values or parse is None:
                continue
            try:
                values[field.name] = parse(values[field.name])
            except (TypeError, ValueError):
                expected = field.metadata.get("expected", "valid")
                raise ConfigError(
                    f"{group}.{field.name}", f"must be {expected}, got {values[field.name]!r}"
                ) from None
    return values
