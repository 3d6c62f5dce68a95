"""sqlite3's connection shortcuts traced: ``conn.execute(sql)`` recorded as ``conn.cursor().execute(sql)``.

The sqlite3 instrumentation wraps ``sqlite3.connect`` and traces the cursors a connection makes, but
sqlite3's ``Connection.execute`` and ``executemany`` make their cursor in C, out of its reach: every
query issued through them (the Flask tutorial's style, and much code that uses sqlite3 directly)
gives no span at all (open-telemetry/opentelemetry-python-contrib#3082). ``install()`` makes the
connection proxy the instrumentation returns for a sqlite3 connection answer both itself, doing what
sqlite3 documents that they do (a new cursor, its method, the cursor returned) through the proxy's
traced ``cursor()``. The cursor returned is sqlite3's own, as it was: ``fetchone()``, ``rowcount``
and ``lastrowid`` behave as before. ``executescript`` stays untraced, as it is on a cursor.

Our distro calls ``install()`` right after it loads the sqlite3 instrumentation; connections made
before that are sqlite3's own and were never traced.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["install", "uninstall"]

_original: Any = None


def install() -> None:
    """Trace the shortcuts of the sqlite3 connections the DB-API instrumentation wraps from now on."""
    global _original
    from opentelemetry.instrumentation import dbapi

    if _original is not None:
        return
    _original = dbapi.get_traced_connection_proxy
    proxy_class = _proxy_class(dbapi.TracedConnectionProxy)

    def get_traced_connection_proxy(
        connection: Any, db_api_integration: Any, *args: Any, **kwargs: Any
    ) -> Any:  # (the names of the instrumentation's own function, which callers may pass by keyword)
        if isinstance(connection, sqlite3.Connection):
            return proxy_class(connection, db_api_integration)
        return _original(connection, db_api_integration, *args, **kwargs)

    dbapi.get_traced_connection_proxy = get_traced_connection_proxy


def uninstall() -> None:
    """Stop wrapping new connections (those wrapped before keep their traced shortcuts)."""
    global _original
    from opentelemetry.instrumentation import dbapi

    if _original is not None:
        dbapi.get_traced_connection_proxy = _original
        _original = None


def _proxy_class(base: type[Any]) -> type[Any]:
    class SQLite3ConnectionProxy(base):  # type: ignore[misc]
        """The instrumentation's connection proxy, with sqlite3's two query shortcuts traced."""

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.execute(*args, **kwargs)
            return cursor.__wrapped__  # sqlite3's cursor, as Connection.execute returns it

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.executemany(*args, **kwargs)
            return cursor.__wrapped__

    return SQLite3ConnectionProxy
