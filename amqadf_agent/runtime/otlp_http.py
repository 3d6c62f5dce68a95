"""A ``requests`` session for the OTLP/HTTP exporters whose ``close()`` also ends requests in flight.

An exporter's ``shutdown()`` closes its session, and ``Session.close()`` closes only the idle
pooled connections: a request waiting on a collector that never answers would go on to its
timeout (10 s by default), past the agent's shutdown deadline. This session knows its open
connections and shuts their sockets down when it is closed, and opens no new one after, so the
export in flight fails at once (and is counted as dropped).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from typing import Any

#: The SDK's variables that name a session factory of the user's (e.g. for credentials); with
#: one set, the exporter builds its session itself.
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER",
)


def session_kwargs(signal: str) -> dict[str, Any]:
    """``{"session": ...}`` for one OTLP/HTTP exporter, or ``{}`` where the user provides one."""
    if any(os.environ.get(name.format(signal=signal.upper())) for name in _CREDENTIAL_PROVIDERS):
        return {}
    return {"session": interruptible_session()}


def interruptible_session() -> Any:
    """A ``requests.Session`` whose ``close()`` shuts down the sockets of requests in flight."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    open_connections: weakref.WeakSet[Any] = weakref.WeakSet()
    closed = threading.Event()

    class Connection(HTTPConnection):
        def connect(self) -> None:
            if closed.is_set():
                raise ConnectionRefusedError("the exporter is shut down")
            super().connect()
            open_connections.add(self)

    class TLSConnection(Connection, HTTPSConnection):  # Connection.connect, then HTTPSConnection's
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    class Session(requests.Session):
        def close(self) -> None:
            closed.set()
            for connection in list(open_connections):
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            super().close()

    session = Session()
    adapter = Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
