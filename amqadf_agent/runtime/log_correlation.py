"""Trace ids in the application's own log lines: the log line a reader finds first leads to the trace.

``install`` wraps the ``logging`` record factory: a record made while a valid span is current gets
``otelTraceID``, ``otelSpanID`` (lower-case hex), ``otelServiceName`` and ``otelTraceSampled``, the
fields (and names) of opentelemetry-instrumentation-logging, so a format or a dashboard written for
it works unchanged. Without a current span a record is left as it is; a field already on the record
(another factory set it) is never written twice. Structured formatters that dump a record's fields
(a ``logging.Formatter`` subclass reading ``record.__dict__``) get them as fields.

No handler is ever added. A stream handler that shows the default format (no formatter, or
``logging.basicConfig``'s ``BASIC_FORMAT``) gets a formatter that puts
``[trace_id=… span_id=…]`` before the message of a record that has them, and the same line
otherwise; it is put back by ``uninstall``. Handlers the application adds to the root logger later
(``basicConfig`` after a zero-code start) are found on the first record made inside a span.

``structlog`` (when installed) gets ``structlog_processor`` first in its configured processors:
``trace_id`` and ``span_id`` as fields of the event. An application that configures structlog after
the agent started adds it itself. structlog is not imported for this: when the application has not
imported it yet, the processor is added right after its first import (it costs tens of ms).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = [
    "SERVICE_NAME",
    "SPAN_ID",
    "TRACE_ID",
    "TRACE_SAMPLED",
    "install",
    "installed",
    "structlog_processor",
    "uninstall",
    "without_fields",
]

TRACE_ID = "otelTraceID"
SPAN_ID = "otelSpanID"
SERVICE_NAME = "otelServiceName"
TRACE_SAMPLED = "otelTraceSampled"
#: What the default format shows before the message of a record made inside a span.
PREFIX = "[trace_id=%(otelTraceID)s span_id=%(otelSpanID)s] "

_lock = threading.Lock()


class _State:
    def __init__(self, previous: Callable[..., logging.LogRecord], service: str) -> None:
        self.previous = previous
        self.service = service
        self.factory: Callable[..., logging.LogRecord] | None = None
        #: handler -> the formatter it had (None: the logging module's default one).
        self.formatters: dict[logging.Handler, logging.Formatter | None] = {}
        #: The root logger's handlers when they were last looked at.
        self.handlers: list[logging.Handler] = []
        self.structlog: Any = None
        #: Waits for structlog's first import, when it was not imported at ``install``.
        self.watcher: _StructlogImport | None = None


_state: _State | None = None


class CorrelatedFormatter(logging.Formatter):
    """The default format, with the trace and span ids before the message when the record has them."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        fmt = self._style._fmt
        self._correlated = logging.PercentStyle(fmt.replace("%(message)s", PREFIX + "%(message)s", 1))

    def formatMessage(self, record: logging.LogRecord) -> str:
        if TRACE_ID in record.__dict__ and SPAN_ID in record.__dict__:
            return self._correlated.format(record)
        return super().formatMessage(record)


def install(service_name: str = "") -> None:
    """Correlate every ``logging`` record made from now on with the current span (idempotent)."""
    global _state
    with _lock:
        if _state is not None:
            _state.service = service_name
            return
        state = _State(logging.getLogRecordFactory(), service_name)
        state.factory = _factory(state)
        logging.setLogRecordFactory(state.factory)
        _state = state
        _show_in_default_format(state)
        if "structlog" in sys.modules:
            state.structlog = _install_structlog()
        else:
            _watch_structlog_import(state)


def uninstall() -> None:
    """Put the record factory, the default formatters and structlog's processors back."""
    global _state
    with _lock:
        state, _state = _state, None
        if state is None:
            return
        if logging.getLogRecordFactory() is state.factory:
            logging.setLogRecordFactory(state.previous)
        for handler, formatter in state.formatters.items():
            if isinstance(handler.formatter, CorrelatedFormatter):
                handler.formatter = formatter
        _stop_watching(state)
        if state.structlog is not None:
            _uninstall_structlog(state.structlog)


def installed() -> bool:
    return _state is not None


def _factory(state: _State) -> Callable[..., logging.LogRecord]:
    from opentelemetry.trace import get_current_span

    previous = state.previous
    root = logging.getLogger()

    def correlated(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = get_current_span().get_span_context()
        if not context.is_valid:
            return record
        fields = record.__dict__
        if TRACE_ID not in fields:
            fields[TRACE_ID] = format(context.trace_id, "032x")
            fields[SPAN_ID] = format(context.span_id, "016x")
            fields[SERVICE_NAME] = state.service
            fields[TRACE_SAMPLED] = context.trace_flags.sampled
        if root.handlers != state.handlers:  # a handler was added since: the default format?
            _show_in_default_format(state)
        return record

    return correlated


def _show_in_default_format(state: _State) -> None:
    """Give the root logger's handlers that show the default format one that shows the ids too."""
    handlers = logging.getLogger().handlers
    state.handlers = list(handlers)
    for handler in handlers:
        if handler in state.formatters or not isinstance(handler, logging.StreamHandler):
            continue  # text lines only: an exporting handler (capture_logs) keeps its plain body
        formatter = handler.formatter
        if formatter is None:
            handler.setFormatter(CorrelatedFormatter())
        elif type(formatter) is logging.Formatter and formatter._fmt == logging.BASIC_FORMAT:
            handler.setFormatter(CorrelatedFormatter(logging.BASIC_FORMAT, formatter.datefmt))
        else:
            continue  # the application chose a format: its fields are on the record
        state.formatters[handler] = formatter


def without_fields(handler: logging.Handler) -> logging.Handler:
    """``handler`` (the SDK's ``LoggingHandler``) exporting records without the correlation fields.

    An exported log record carries its trace and span ids natively; the fields would repeat them
    as attributes.
    """
    attributes_of = getattr(handler, "_get_attributes", None)
    if attributes_of is None:
        return handler

    def without(record: logging.LogRecord) -> Any:
        attributes = attributes_of(record)
        for name in (TRACE_ID, SPAN_ID, SERVICE_NAME, TRACE_SAMPLED):
            attributes.pop(name, None)
        return attributes

    handler._get_attributes = without  # type: ignore[attr-defined]
    return handler


def structlog_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """A structlog processor: ``trace_id`` and ``span_id`` of the current span, unless already set."""
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if context.is_valid and "trace_id" not in event_dict:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


class _StructlogImport:
    """Finds nothing itself: it hooks the loader of structlog's first import, so that the processor
    is added once the module exists, as if it had been imported at ``install``. A lookup that is
    not an import (``importlib.util.find_spec``) gets a hooked spec that is never executed, and the
    finder stays for the import itself. A finder needs only ``find_spec``: the base class
    ``importlib.abc.MetaPathFinder`` would import ``importlib.resources`` and ``tempfile`` (~4 ms)."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self._looking = threading.local()  # our own lookup below must not find us again

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "structlog" or getattr(self._looking, "now", False):
            return None
        self._looking.now = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking.now = False
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        state = self.state

        def exec_then_install(module: Any) -> None:
            exec_module(module)
            with _lock:
                _stop_watching(state)
                if _state is state and state.structlog is None:
                    state.structlog = _install_structlog(module)

        loader.exec_module = exec_then_install  # type: ignore[method-assign]
        return spec


def _watch_structlog_import(state: _State) -> None:
    state.watcher = _StructlogImport(state)
    sys.meta_path.insert(0, state.watcher)


def _stop_watching(state: _State) -> None:
    watcher, state.watcher = state.watcher, None
    if watcher is not None and watcher in sys.meta_path:
        sys.meta_path.remove(watcher)


def _install_structlog(structlog: Any = None) -> Any:
    """Put ``structlog_processor`` first in structlog's processors; the module, or None."""
    if structlog is None:
        import structlog

    processors = list(structlog.get_config().get("processors", []))
    if structlog_processor not in processors:
        structlog.configure(processors=[structlog_processor, *processors])
    return structlog


def _uninstall_structlog(structlog: Any) -> None:
    processors = list(structlog.get_config().get("processors", []))
    if structlog_processor in processors:
        processors.remove(structlog_processor)
        structlog.configure(processors=processors)
