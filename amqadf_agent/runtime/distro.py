"""Zero-code start through ``opentelemetry-instrument``: our distro and configurator.

``OTEL_PYTHON_DISTRO=amqadf OTEL_PYTHON_CONFIGURATOR=amqadf opentelemetry-instrument python app.py``
starts the agent (exporters, resource, self-metrics) and then every installed OpenTelemetry
instrumentation, except those that would report what the agent already reports under the same
names (``DUPLICATES``). ``opentelemetry-instrument`` swallows a failing configurator and leaves the
app on no-op providers; ``start()`` never raises and says on stderr when it could not start.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

#: The entry-point name under which both are registered (pyproject.toml).
NAME = "amqadf"
#: Instrumentations (entry-point names) our distro skips while the agent's resource monitor runs:
#: the contrib ``system_metrics`` reports ``system.*`` and ``process.*`` under the same names, so
#: every series would come twice (a conflict for Prometheus) at ~20x the collection cost.
DUPLICATES = ("system_metrics",)
_log = logging.getLogger(__name__)


class AmqadfDistro(BaseDistro):  # type: ignore[misc]
    """Selecting the distro is enough: it also selects our configurator if none was chosen."""

    def _configure(self, **kwargs: Any) -> None:
        from amqadf_agent.runtime import instrumentation_conflicts

        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)
        instrumentation_conflicts.install()  # before the configurators load: see the module

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Every instrumentation but those the running agent makes redundant (``DUPLICATES``)."""
        if entry_point.name in DUPLICATES and _monitor_reports():
            _log.debug("amqadf-agent: %s skipped: the resource monitor reports it", entry_point.name)
            return
        super().load_instrumentor(entry_point, **kwargs)
        if entry_point.name == "sqlalchemy":  # one span per query, not one per instrumentation
            from amqadf_agent.runtime.instrumentation_dedup import install

            install()
        elif entry_point.name == "sqlite3":  # conn.execute(...) recorded too, not only cursors'
            from amqadf_agent.runtime import sqlite3_shortcuts

            sqlite3_shortcuts.install()


class AmqadfConfigurator(_BaseConfigurator):
    """Starts the agent before the instrumentations are loaded, except in multiprocessing's resource
    tracker (``is_multiprocessing_helper``)."""

    def _configure(self, **kwargs: Any) -> None:
        from amqadf_agent.runtime import agent, server_signals

        if is_multiprocessing_helper():
            _log.debug("amqadf-agent: not started in multiprocessing's resource tracker")
            return
        if agent.start().running:
            # the instrumentations import wrapt next: its post-import hook costs nothing more here
            server_signals.watch_uvicorn(agent._at_exit, may_import=True)


#: How multiprocessing starts its resource tracker: ``python -c '<this>;main(fd)'``.
_RESOURCE_TRACKER = "from multiprocessing.resource_tracker import main"


def is_multiprocessing_helper() -> bool:
    """Whether this process is multiprocessing's resource tracker, a process of its own that the spawn
    and forkserver start methods launch with the application's environment (so with the zero-code
    start) and that never runs application code. An agent there would report one more instance of
    the service, serving nothing, for as long as the application runs."""
    return any(arg.startswith(_RESOURCE_TRACKER) for arg in getattr(sys, "orig_argv", ()))


def _monitor_reports() -> bool:
    from amqadf_agent.runtime.agent import get_agent

    agent = get_agent()
    return agent is not None and agent.settings.resource_monitor
