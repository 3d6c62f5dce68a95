"""``import amqadf_agent.auto`` as the first import of an app: the agent starts, then every
installed OpenTelemetry instrumentation, as under ``opentelemetry-instrument``.

Settings come from the environment (``AMQADF_*`` and the standard ``OTEL_*`` variables). Nothing
here raises: if the agent cannot start, one line on stderr says why and the app runs on.
"""

from __future__ import annotations

import sys


def _activate() -> None:
    from amqadf_agent.runtime.agent import start

    agent = start()
    if not agent.running or _under_opentelemetry_instrument():
        return  # opentelemetry-instrument has loaded the instrumentations already
    try:
        from opentelemetry.instrumentation.auto_instrumentation._load import _load_instrumentors

        from amqadf_agent.runtime.distro import AmqadfDistro

        _load_instrumentors(AmqadfDistro())  # type: ignore[no-untyped-call]  # (skips DUPLICATES)
    except Exception as exc:
        print(f"amqadf-agent: could not load instrumentations ({type(exc).__name__}: {exc})", file=sys.stderr)


def _under_opentelemetry_instrument() -> bool:
    site = sys.modules.get("sitecustomize")
    return "auto_instrumentation" in str(getattr(site, "__file__", ""))


_activate()
