"""Each database call recorded once: no DB-API span inside a SQLAlchemy span.

With ``opentelemetry-bootstrap``'s usual set, SQLAlchemy's instrumentation and a DB-API one
(``sqlite3``, ``psycopg``, ``psycopg2``, ``mysql`` ...) both record every query: the SQLAlchemy span
does not become the current span, so the driver's span is its sibling with the same statement. Every
query then counts twice (an N+1 of 600 queries shows 1200 calls) and database time doubles.

``install()`` registers a SQLAlchemy ``do_execute``/``do_executemany``/``do_execute_no_params``
listener on every dialect: when the statement has a SQLAlchemy span (the instrumentation keeps it on
the execution context as ``_otel_span``), the driver call runs with instrumentation suppressed (the
``suppress_instrumentation`` context key every OpenTelemetry instrumentation honours), so the DB-API
instrumentation records nothing and the ORM's span, the one nearest the application, is the call.
Without a SQLAlchemy span (SQLAlchemy not instrumented, or an engine made before it was) the listener
steps aside and the driver's span is recorded as usual. The context is restored by a ``with`` block,
whatever the driver raises. The analyzer merges such twins too (``analyzer.dedup``), for telemetry
of other agents.

Our distro calls ``install()`` right after it loads the SQLAlchemy instrumentation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.instrumentation.utils import suppress_instrumentation

__all__ = ["install", "installed", "uninstall"]

#: Where the SQLAlchemy instrumentation keeps the span of the statement being executed.
SPAN_ATTRIBUTE: Final = "_otel_span"
_EVENTS: Final = ("do_execute", "do_executemany", "do_execute_no_params")
_log = logging.getLogger(__name__)
_listeners: dict[str, Any] = {}


def _do_execute(cursor: Any, statement: Any, parameters: Any, context: Any) -> bool:
    if getattr(context, SPAN_ATTRIBUTE, None) is None:
        return False  # no SQLAlchemy span: let the driver's instrumentation record the call
    with suppress_instrumentation():
        context.dialect.do_execute(cursor, statement, parameters, context)
    return True


def _do_executemany(cursor: Any, statement: Any, parameters: Any, context: Any) -> bool:
    if getattr(context, SPAN_ATTRIBUTE, None) is None:
        return False
    with suppress_instrumentation():
        context.dialect.do_executemany(cursor, statement, parameters, context)
    return True


def _do_execute_no_params(cursor: Any, statement: Any, context: Any) -> bool:
    if getattr(context, SPAN_ATTRIBUTE, None) is None:
        return False
    with suppress_instrumentation():
        context.dialect.do_execute_no_params(cursor, statement, context)
    return True


def install() -> bool:
    """Register the listeners (once); False when SQLAlchemy is not importable."""
    if _listeners:
        return True
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Dialect
    except ImportError:
        return False
    listeners: tuple[Callable[..., bool], ...] = (_do_execute, _do_executemany, _do_execute_no_params)
    for name, listener in zip(_EVENTS, listeners, strict=True):
        event.listen(Dialect, name, listener)
        _listeners[name] = listener
    _log.debug("amqadf-agent: DB-API spans inside SQLAlchemy spans are suppressed")
    return True


def installed() -> bool:
    """True while the listeners are registered."""
    return bool(_listeners)


def uninstall() -> None:
    """Remove the listeners: both instrumentations record every call again."""
    if not _listeners:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Dialect

    for name, listener in _listeners.items():
        event.remove(Dialect, name, listener)
    _listeners.clear()
