"""uvicorn stopped by SIGTERM: the agent flushes before uvicorn lets the signal end the process.

uvicorn (0.29 and later) catches SIGINT and SIGTERM while it serves, shuts down gracefully, then puts
back the handlers it found and raises the signals it caught again, so that the process ends as the
signal says. SIGTERM's disposition is usually the default one: the process then dies of it at once,
``atexit`` never runs, and the agent's last export (every metric since the last interval, spans not
yet sent) is lost on every stop, Kubernetes' included. uvicorn's ``--workers`` children end the same
way.

``watch_uvicorn`` wraps ``uvicorn.server.Server.capture_signals``, now or when ``uvicorn.server`` is
imported: when the server's graceful shutdown is over and a signal it caught has the default
disposition (it is about to end the process), the agent is shut down, within its deadline, before
uvicorn raises it again; uvicorn's handlers are still in place then, so a second signal does not cut
the flush short. A SIGINT (Python's own handler: ``KeyboardInterrupt``, then ``atexit``) and a
server that stopped for another reason are left to ``atexit``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["watch_uvicorn"]

_MODULE = "uvicorn.server"
_watched = False


def watch_uvicorn(shutdown: Callable[[], None], may_import: bool = False) -> None:
    """Have uvicorn's servers call ``shutdown`` before a caught signal ends the process: at once when
    uvicorn is imported (the application started the agent from a module uvicorn imported), else
    when it is, through wrapt's post-import hooks, if wrapt is imported already (the instrumentations
    import it) or ``may_import`` (its import costs tens of milliseconds: not for ``start()``)."""
    global _watched
    if _watched:
        return
    module = sys.modules.get(_MODULE)
    if module is not None:
        _watched = True
        _wrap(module, shutdown)
        return
    if "wrapt" not in sys.modules and not may_import:
        return
    try:
        from wrapt import register_post_import_hook
    except ImportError:  # (opentelemetry-instrumentation's dependency: always there with it)
        return
    _watched = True
    register_post_import_hook(lambda imported: _wrap(imported, shutdown), _MODULE)


def _wrap(module: Any, shutdown: Callable[[], None]) -> None:
    server = getattr(module, "Server", None)
    original = getattr(server, "capture_signals", None)
    if server is None or original is None or getattr(original, "_amqadf_agent", False):
        return  # another uvicorn: nothing to wrap (before 0.29 it did not raise the signal again)

    @contextlib.contextmanager
    def capture_signals(self: Any) -> Iterator[None]:
        # the dispositions uvicorn will put back: the default one ends the process when raised
        ending = {sig for sig in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(sig) == signal.SIG_DFL}
        with original(self):
            try:
                yield
            finally:
                if ending.intersection(getattr(self, "_captured_signals", ()) or ()):
                    with contextlib.suppress(Exception):  # never into uvicorn's shutdown
                        shutdown()

    capture_signals._amqadf_agent = True  # type: ignore[attr-defined]
    server.capture_signals = capture_signals
