"""Zero-code start through ``opentelemetry-instrument``: our distro and configurator.

``OTEL_PYTHON_DISTRO=amqadf OTEL_PYTHON_CONFIGURATOR=amqadf opentelemetry-instrument python app.py``
starts the agent (exporters, resource, self-metrics) and then every installed OpenTelemetry
instrumentation. ``opentelemetry-instrument`` swallows a failing configurator and leaves the app
on no-op providers; ``start()`` never raises and says on stderr when it could not start.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

#: The entry-point name under which both are registered (pyproject.toml).
NAME = "amqadf"


class AmqadfDistro(BaseDistro):  # type: ignore[misc]
    """Selecting the distro is enough: it also selects our configurator if none was chosen."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)


class AmqadfConfigurator(_BaseConfigurator):
    """Starts the agent before the instrumentations are loaded."""

    def _configure(self, **kwargs: Any) -> None:
        from amqadf_agent.runtime.agent import start

        start()
