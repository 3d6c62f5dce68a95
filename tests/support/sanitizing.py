"""A tracer provider with the agent's sanitizing processor before an in-memory exporter."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor


def sanitizing_provider(
    span_limits: SpanLimits | None = None, **options: Any
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """``(provider, exporter)``: every span ends through ``SanitizingSpanProcessor(**options)`` into
    ``exporter``, as in the agent; ``span_limits`` as the SDK's (its defaults when None)."""
    provider = TracerProvider(shutdown_on_exit=False, span_limits=span_limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SanitizingSpanProcessor(**options))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter
