"""The analyzer: reads exported telemetry and turns it into a report.

It runs without the agent's runtime: it imports ``semconv``, ``errors``, ``orjson`` and the standard
library only (never the OpenTelemetry SDK or psutil), so ``amqadf-analyze`` installs and starts fast.
Import the submodules (``otlp_reader``, ``model``, ``summary``) directly; this package re-exports nothing.
"""
