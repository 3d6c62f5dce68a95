"""N+1 queries caught as they happen: the application's stack of the loop, on the span it runs under.

The analyzer finds an N+1 afterwards, from the spans; what the spans cannot tell it is the loop and
its callers, only the line of each call. While the call is running the agent can see its whole stack,
so this span processor counts the db client spans per (parent span, statement shape, instrumentation)
and, when a count reaches ``threshold`` (5: the analyzer's and Sentry's N+1 rule), adds one span
event ``amqadf.db.n_plus_one`` to the parent span with the statement shape (``db.query.text``, never
a literal), the calls so far, the calling line (``code.*``) and the application's stack
(``code.stacktrace``). At most once per statement shape per ``interval_s`` (60 s) in the process:
the stack of one loop is the same every time.

Memory is bounded: the counts of at most ``max_parents`` open parent spans (the oldest dropped beyond
it; a parent's counts go when it ends), shapes of at most ``max_statements`` statement texts
(``statements.shape``, the tokenizer the analyzer uses; cleared when full) and the last event time of
at most ``max_statements`` shapes. Per db span: a dict look-up or two when it starts and ends.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, SpanKind

from amqadf_agent import semconv
from amqadf_agent.runtime.code_location import (
    application_frame,
    application_stack,
    awaiting_frame,
    describe,
)
from amqadf_agent.statements import shape

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["MAX_STACKTRACE_CHARS", "NPlusOneProcessor"]

#: Characters of ``code.stacktrace`` kept (the innermost frames; 32 frames at most).
MAX_STACKTRACE_CHARS = 4096
_CLIENT = SpanKind.CLIENT
_QUERY_TEXT, _STATEMENT_OLD = semconv.ATTR_DB_QUERY_TEXT, semconv.ATTR_DB_STATEMENT_OLD


class _Parent:
    """One open parent span of db calls: the span (to add the event to) and its counts."""

    __slots__ = ("counts", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        #: (statement shape, instrumentation scope) -> calls so far. Two instrumentations of one
        #: query (SQLAlchemy's and the DB-API's) are counted apart, not as two calls.
        self.counts: dict[tuple[str, str], int] = {}


def _after_fork(ref: weakref.ref[NPlusOneProcessor]) -> None:
    """In a forked child: a new lock (the parent's may have been held by another thread at the
    fork) and no parents (the parent process's spans never end here)."""
    processor = ref()
    if processor is not None:
        processor._lock = threading.Lock()
        processor._parents = {}


class NPlusOneProcessor(SpanProcessor):
    """Counts db client spans per parent and statement shape; marks the parent when an N+1 starts."""

    def __init__(
        self,
        threshold: int = 5,
        interval_s: float = 60.0,
        *,
        max_parents: int = 1024,
        max_statements: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.interval_s = interval_s
        self.max_parents = max_parents
        self.max_statements = max_statements
        self._clock = clock
        self._parents: dict[int, _Parent] = {}
        self._shapes: dict[str, str] = {}
        self._reported: dict[str, float] = {}
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a forked child keeps the providers, so this processor
            this = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(this))

    # The hooks run for every span on the application's thread: they read the SDK span's fields
    # (``_kind``, ``_parent``, ``_attributes``), not its properties, which cost a call each and, for
    # ``attributes``, a new mapping proxy read through Python-level ``__getitem__``; any other span
    # goes through ``_fields``. Likewise a ``SpanContext``'s span id is read as the tuple item its
    # ``span_id`` property returns, and the scope's name as its ``_name``: 3-4 property calls a db
    # span otherwise, a third of the watch's cost.

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            kind, parent_context_of_span = span._kind, span._parent
        except AttributeError:
            kind, parent_context_of_span = span.kind, span.parent
        if kind is not _CLIENT or parent_context_of_span is None:
            return
        parent_id = (
            parent_context_of_span[1]
            if type(parent_context_of_span) is SpanContext
            else parent_context_of_span.span_id
        )
        if parent_id in self._parents:
            return
        parent = trace.get_current_span(parent_context)
        if parent.get_span_context().span_id != parent_id or not parent.is_recording():
            return  # a remote parent, or one of another process: nothing to add the event to
        with self._lock:
            parents = self._parents
            while len(parents) >= self.max_parents:  # the oldest first: most likely never to end
                try:
                    parents.pop(next(iter(parents)), None)
                except (RuntimeError, StopIteration):  # an end in another thread changed it
                    continue
            parents.setdefault(parent_id, _Parent(parent))

    def on_end(self, span: ReadableSpan) -> None:
        parents = self._parents
        if not parents:
            return  # no client span under a local parent is running: nothing to count
        try:
            context, kind, parent, attributes, scope = (
                span._context,
                span._kind,
                span._parent,
                span._attributes,
                span._instrumentation_scope,
            )
        except AttributeError:
            context, kind, parent, attributes, scope = (
                span.context,
                span.kind,
                span.parent,
                span.attributes,
                span.instrumentation_scope,
            )
        if context is not None:  # it was a parent: its calls are over
            parents.pop(context[1] if type(context) is SpanContext else context.span_id, None)
        if kind is not _CLIENT or parent is None:
            return
        entry = parents.get(parent[1] if type(parent) is SpanContext else parent.span_id)
        if entry is None:
            return
        if type(attributes) is BoundedAttributes:
            attributes = attributes._dict
        elif attributes is None:
            return
        statement = attributes.get(_QUERY_TEXT) or attributes.get(_STATEMENT_OLD)
        if not isinstance(statement, str):
            return
        text = self._shapes.get(statement)
        if text is None:
            text = self._shape(statement)
        try:
            scope_name = scope._name  # type: ignore[union-attr]  # the property's field
        except AttributeError:  # no scope, or another scope class
            scope_name = scope.name if scope else ""
        key = (text, scope_name)
        counts = entry.counts
        count = counts[key] = counts.get(key, 0) + 1
        if count == self.threshold:
            self._report(entry.span, text, count, attributes)

    def _shape(self, statement: str) -> str:
        text = shape(statement)[0]
        if len(self._shapes) >= self.max_statements:
            self._shapes.clear()
        self._shapes[statement] = text
        return text

    def _report(self, parent: Any, text: str, count: int, attributes: Any) -> None:
        """The event on ``parent``, unless this shape was reported less than ``interval_s`` ago."""
        now = self._clock()
        with self._lock:
            last = self._reported.get(text)
            if last is not None and now - last < self.interval_s:
                return
            if len(self._reported) >= self.max_statements:
                self._reported = {k: t for k, t in self._reported.items() if now - t < self.interval_s}
                if len(self._reported) >= self.max_statements:
                    return  # as many loops at once as the bound: the rest wait for the interval
            self._reported[text] = now
        event: dict[str, Any] = {
            semconv.ATTR_DB_QUERY_TEXT: text,
            semconv.ATTR_N_PLUS_ONE_CALLS: count,
        }
        system = attributes.get(semconv.ATTR_DB_SYSTEM_NAME) or attributes.get(semconv.ATTR_DB_SYSTEM_OLD)
        if isinstance(system, str):
            event[semconv.ATTR_DB_SYSTEM_NAME] = system
        # the call is still running: its application frames are here, or await its task
        frame = application_frame(2) or awaiting_frame()
        if frame is not None:
            name, filename, line = describe(frame)
            event[semconv.ATTR_CODE_FUNCTION_NAME] = name
            event[semconv.ATTR_CODE_FILE_PATH] = filename
            event[semconv.ATTR_CODE_LINE_NUMBER] = line
            event[semconv.ATTR_CODE_STACKTRACE] = application_stack(2, max_chars=MAX_STACKTRACE_CHARS)
        parent.add_event(semconv.EVENT_DB_N_PLUS_ONE, event)

    def shutdown(self) -> None:
        self._parents.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
