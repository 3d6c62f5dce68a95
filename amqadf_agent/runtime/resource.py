"""The OpenTelemetry Resource: who is speaking (service, instance, environment, host, process).

Precedence, lowest first: what the agent detects < ``OTEL_RESOURCE_ATTRIBUTES`` < ``OTEL_SERVICE_NAME``
< settings given explicitly (``start(service_name=...)``). ``service.instance.id`` is a UUID per process,
the SDK's own (``ServiceInstanceIdResourceDetector``): a forked child gets a new one, which the
providers merge into their resource and ``renew_instance_id`` writes into the agent's.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

from opentelemetry.sdk.resources import OTELResourceDetector, Resource, ServiceInstanceIdResourceDetector
from opentelemetry.util.types import AttributeValue

from amqadf_agent import semconv
from amqadf_agent.runtime.settings import AgentSettings


def agent_version() -> str:
    """The package's own ``__version__``: ``importlib.metadata`` would cost ~15 ms of every start
    (``tests/test_package.py`` holds the two equal)."""
    from amqadf_agent import __version__

    return __version__


def build_resource(settings: AgentSettings, explicit: set[str] | None = None) -> Resource:
    """The resource for this process. ``explicit`` names settings the caller gave on purpose."""
    explicit = explicit or set()
    detected: dict[str, Any] = {
        semconv.ATTR_SERVICE_INSTANCE_ID: _instance_id(),
        semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME: settings.environment,
        semconv.ATTR_HOST_NAME: socket.gethostname(),
        semconv.ATTR_HOST_ARCH: _arch(),
        semconv.ATTR_OS_TYPE: sys.platform if sys.platform != "win32" else "windows",
        semconv.ATTR_PROCESS_PID: os.getpid(),
        semconv.ATTR_PROCESS_EXECUTABLE_NAME: os.path.basename(sys.executable or "python"),
        semconv.ATTR_PROCESS_RUNTIME_NAME: sys.implementation.name,
        semconv.ATTR_PROCESS_RUNTIME_VERSION: platform.python_version(),
        semconv.ATTR_TELEMETRY_DISTRO_NAME: semconv.DISTRO_NAME,
        semconv.ATTR_TELEMETRY_DISTRO_VERSION: agent_version(),
    }
    if settings.service_version:
        detected[semconv.ATTR_SERVICE_VERSION] = settings.service_version
    from_env = dict(OTELResourceDetector().detect().attributes)
    attrs: dict[str, AttributeValue] = {**detected, **from_env}
    if settings.service_name:
        # An explicit setting or OTEL_SERVICE_NAME/AMQADF_SERVICE_NAME (resolved in settings).
        attrs[semconv.ATTR_SERVICE_NAME] = settings.service_name
    if "environment" in explicit or semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME not in from_env:
        attrs[semconv.ATTR_DEPLOYMENT_ENVIRONMENT_NAME] = settings.environment
    if "service_version" in explicit and settings.service_version:
        attrs[semconv.ATTR_SERVICE_VERSION] = settings.service_version
    if settings.service_namespace:  # given on purpose (OTEL_RESOURCE_ATTRIBUTES is in from_env)
        attrs[semconv.ATTR_SERVICE_NAMESPACE] = settings.service_namespace
    # Resource.create adds telemetry.sdk.* and the unknown_service default for service.name.
    return Resource.create(attrs)


def renew_instance_id(resource: Resource) -> str:
    """Give ``resource`` (shared by every tracer and meter) a new instance id and pid, in place.

    Called in a forked child: the providers, tracers and instrumentations all hold this one
    Resource object, and the global providers cannot be replaced, so the object itself changes.
    """
    from opentelemetry.attributes import BoundedAttributes

    new_id = _instance_id()
    attrs = dict(resource.attributes)
    attrs[semconv.ATTR_SERVICE_INSTANCE_ID] = new_id
    attrs[semconv.ATTR_PROCESS_PID] = os.getpid()
    resource._attributes = BoundedAttributes(attributes=attrs, immutable=True)
    return new_id


def _instance_id() -> str:
    """The SDK's own per-process id: the providers renew theirs from it after ``fork``, so both agree."""
    detected = ServiceInstanceIdResourceDetector().detect().attributes
    return str(detected[semconv.ATTR_SERVICE_INSTANCE_ID])


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
