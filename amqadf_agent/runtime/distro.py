"""Zero-code start through ``opentelemetry-instrument``: our distro and configurator.

``OTEL_PYTHON_DISTRO=amqadf OTEL_PYTHON_CONFIGURATOR=amqadf opentelemetry-instrument python app.py``
starts the agent (exporters, resource, self-metrics) and then every installed OpenTelemetry
instrumentation, except those that would report what the agent already reports under the same
names (``DUPLICATES``). ``opentelemetry-instrument`` swallows a failing configurator and leaves the
app on no-op providers; ``start()`` never raises and says on stderr when it could not start.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

#: The entry-point name under which both are registered (pyproject.toml).
NAME = "amqadf"
#: Instrumentations (entry-point names) skipped while the agent's resource monitor runs: the contrib
#: ``system_metrics`` reports ``system.*`` and ``process.*`` under the same names, so every series
#: would come twice (a conflict for Prometheus) at ~20x the collection cost.
DUPLICATES = ("system_metrics",)
_DISABLED = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"


class AmqadfDistro(BaseDistro):  # type: ignore[misc]
    """Selecting the distro is enough: it also selects our configurator if none was chosen."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)


class AmqadfConfigurator(_BaseConfigurator):
    """Starts the agent before the instrumentations are loaded."""

    def _configure(self, **kwargs: Any) -> None:
        from amqadf_agent.runtime.agent import start

        agent = start()
        if agent.running and agent.settings.resource_monitor:
            skip_instrumentations(DUPLICATES)


def skip_instrumentations(names: tuple[str, ...]) -> None:
    """Add ``names`` to ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, which ``opentelemetry-instrument``
    reads after the configurator has run; the user's own entries are kept."""
    current = [name.strip() for name in os.environ.get(_DISABLED, "").split(",") if name.strip()]
    missing = [name for name in names if name not in current]
    if missing:
        os.environ[_DISABLED] = ",".join(current + missing)
