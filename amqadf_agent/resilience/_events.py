"""The one place the resilience policies write span events (retry, give-up, fallback, timeout).

Events are written only for rare things (docs/design.md, principle 1), on the current span and only when it
is recording. Keeping it here means moving them to log records later is a change of one function.
OpenTelemetry is imported on the first event, never when a policy module is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

_log = logging.getLogger(__name__)

#: The ``error.type`` of a retry or give-up caused by a result, not an exception (OTel's fallback value).
OTHER_ERROR_TYPE = "_OTHER"


def error_type(exc: BaseException | None) -> str:
    """``error.type`` for an exception: its class's qualified name, as the rest of the package uses."""
    return OTHER_ERROR_TYPE if exc is None else type(exc).__qualname__


def add_event(name: str, attributes: Mapping[str, str | int | float]) -> None:
    """Add event ``name`` to the current span if it is recording; never raises into the caller."""
    try:
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, dict(attributes))
    except Exception:  # telemetry must never break the call it describes (docs/design.md, principle 2)
        _log.debug("cannot add span event %s", name, exc_info=True)
