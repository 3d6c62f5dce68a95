"""The spans of a profile: one ``amqadf.profile`` span per profiled call, its hot path as children.

The profile span carries the call's duration and outcome, and one ``amqadf.profile.function`` event
per top function (CPU) or allocation site (memory). The hot path of a CPU profile (from the profiled
function, the heaviest callee at each level while it holds at least ``hot_path_share`` of the
profile, at most ``hot_path_depth`` frames) becomes nested ``amqadf.profile.frame`` child spans laid
out in the profile's interval in proportion to their time.

Writing telemetry never hurts the profiled call: a failure is logged (``ProfileSpans.failed``) and the
profile goes on without its span. The OpenTelemetry API is imported inside the functions that use it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from amqadf_agent import semconv
from amqadf_agent.profiling.results import CallNode, MemoryProfileResult, ProfileResult

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["ProfileSpans", "activated", "frame_spans"]

# Attribute keys of profile spans and their events: the contract's (semconv.py), by short names.
ATTR_CODE_FUNCTION_NAME = semconv.ATTR_CODE_FUNCTION_NAME
ATTR_CODE_FILE_PATH = semconv.ATTR_CODE_FILE_PATH
ATTR_CODE_LINE_NUMBER = semconv.ATTR_CODE_LINE_NUMBER
ATTR_DURATION = semconv.ATTR_PROFILER_DURATION
ATTR_CPU_TIME = semconv.ATTR_PROFILER_CPU_TIME
ATTR_SAMPLE_COUNT = semconv.ATTR_PROFILER_SAMPLE_COUNT
ATTR_PROFILED = semconv.ATTR_PROFILER_PROFILED
ATTR_SELF_TIME = semconv.ATTR_PROFILER_SELF_TIME
ATTR_TOTAL_TIME = semconv.ATTR_PROFILER_TOTAL_TIME
ATTR_PEAK_MEMORY = semconv.ATTR_PROFILER_PEAK_MEMORY
ATTR_TOTAL_ALLOCATIONS = semconv.ATTR_PROFILER_TOTAL_ALLOCATIONS
ATTR_TOTAL_BYTES = semconv.ATTR_PROFILER_TOTAL_BYTES
ATTR_SITE_BYTES = semconv.ATTR_PROFILER_SITE_BYTES
ATTR_SITE_ALLOCATIONS = semconv.ATTR_PROFILER_SITE_ALLOCATIONS
ATTR_FRAME_DEPTH = semconv.ATTR_PROFILER_FRAME_DEPTH


class ProfileSpans:
    """Starts and ends the profile spans of one profiler.

    Args:
        tracer: tracer of the spans; ``None``: ``get_tracer(semconv.SCOPE_NAME)`` at each span.
        log: where failures are logged (the profiler's logger).
        warned: the profiler's set of messages already logged as warnings (shared, so a telemetry
            failure is a warning once per profiler, whichever part of it failed).
    """

    __slots__ = ("_log", "_tracer", "_warned")

    def __init__(self, tracer: Tracer | None, log: logging.Logger, warned: set[str]) -> None:
        self._tracer, self._log, self._warned = tracer, log, warned

    def tracer(self) -> Tracer:
        """The tracer given, else the global provider's (read at each span)."""
        if self._tracer is not None:
            return self._tracer
        from opentelemetry import trace

        return trace.get_tracer(semconv.SCOPE_NAME)

    def start(self, kind: str, fn: Callable[..., Any], name: str) -> tuple[Span | None, int]:
        """The profile span of ``fn`` (``None`` if the tracer fails) and its start (ns since the epoch)."""
        start_ns = time.time_ns()
        try:
            from opentelemetry.trace import SpanKind

            attributes: dict[str, str | int] = {
                semconv.ATTR_PROFILER_KIND: kind,
                semconv.ATTR_PROFILER_FUNCTION: name,
                ATTR_CODE_FUNCTION_NAME: name,
            }
            code = getattr(inspect.unwrap(fn), "__code__", None)
            if code is not None:
                attributes[ATTR_CODE_FILE_PATH] = code.co_filename
                attributes[ATTR_CODE_LINE_NUMBER] = code.co_firstlineno
            span = self.tracer().start_span(
                semconv.SPAN_PROFILE, kind=SpanKind.INTERNAL, attributes=attributes, start_time=start_ns
            )
            return span, start_ns
        except Exception:
            self.failed()
            return None, start_ns

    def end(
        self,
        span: Span | None,
        result: ProfileResult | MemoryProfileResult,
        error: BaseException | None,
        interval_ns: tuple[int, int] | None,
    ) -> None:
        """Write the result on ``span`` and end it; ``interval_ns`` (start, end) lays out the hot path."""
        if span is None:
            return
        try:
            span.set_attribute(ATTR_DURATION, result.duration)
            span.set_attribute(ATTR_PROFILED, result.profiled)
            if result.artifact is not None:
                span.set_attribute(semconv.ATTR_PROFILER_ARTIFACT, result.artifact)
            if isinstance(result, ProfileResult) and result.hot_path and interval_ns is not None:
                frame_spans(self.tracer(), span, result.hot_path, *interval_ns)
            if isinstance(result, ProfileResult):
                span.set_attribute(ATTR_CPU_TIME, result.cpu_time)
                span.set_attribute(ATTR_SAMPLE_COUNT, result.sample_count)
                for stat in result.top_functions:
                    span.add_event(
                        semconv.EVENT_PROFILE_FUNCTION,
                        {
                            ATTR_CODE_FUNCTION_NAME: stat.function,
                            ATTR_CODE_FILE_PATH: stat.file,
                            ATTR_CODE_LINE_NUMBER: stat.line,
                            ATTR_SELF_TIME: stat.self_time,
                            ATTR_TOTAL_TIME: stat.total_time,
                        },
                    )
            else:
                span.set_attribute(ATTR_PEAK_MEMORY, result.peak_memory)
                span.set_attribute(ATTR_TOTAL_ALLOCATIONS, result.total_allocations)
                if result.total_bytes is not None:
                    span.set_attribute(ATTR_TOTAL_BYTES, result.total_bytes)
                for site in result.top_sites:
                    span.add_event(
                        semconv.EVENT_PROFILE_FUNCTION,
                        {
                            ATTR_CODE_FUNCTION_NAME: site.function,
                            ATTR_CODE_FILE_PATH: site.file,
                            ATTR_CODE_LINE_NUMBER: site.line,
                            ATTR_SITE_BYTES: site.bytes,
                            ATTR_SITE_ALLOCATIONS: site.count,
                        },
                    )
            if error is not None:
                from opentelemetry.trace import Status, StatusCode

                span.set_attribute(semconv.ATTR_ERROR_TYPE, type(error).__qualname__)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()
        except Exception:
            self.failed()

    def failed(self) -> None:
        """Log a failure to write telemetry (inside its ``except``): a warning once, then debug."""
        first = "telemetry" not in self._warned
        self._warned.add("telemetry")
        self._log.log(
            logging.WARNING if first else logging.DEBUG,
            "recording a profile span failed; profiling goes on",
            exc_info=True,
        )


@contextmanager
def activated(span: Span | None) -> Iterator[None]:
    """Make ``span`` current for the call, so spans the function starts are its children."""
    if span is None:
        yield
        return
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        context.detach(token)


def frame_spans(tracer: Tracer, parent: Span, path: tuple[CallNode, ...], start_ns: int, end_ns: int) -> None:
    """The hot path as nested child spans of ``parent`` within ``[start_ns, end_ns]``.

    Frame times are real seconds, compressed if the root does not fit the interval; the root
    ends where the call ended, each callee starts after the time of the siblings before it in
    pyinstrument's order (first seen first), and no child outlasts its parent.
    """
    from opentelemetry import trace

    root = path[0]
    available = max(end_ns - start_ns, 0)
    scale = 1e9 if root.total_time * 1e9 <= available else available / max(root.total_time, 1e-12)
    frame_start = end_ns - int(root.total_time * scale)
    frame_end = end_ns
    opened: list[tuple[Span, int]] = []
    context = trace.set_span_in_context(parent)
    previous: CallNode | None = None
    try:
        for depth, node in enumerate(path):
            if previous is not None:
                before = 0.0
                for sibling in previous.children:
                    if sibling is node:
                        break
                    before += sibling.total_time
                frame_start = min(frame_start + int(before * scale), frame_end)
                frame_end = min(frame_start + int(node.total_time * scale), frame_end)
            span = tracer.start_span(
                semconv.SPAN_PROFILE_FRAME,
                context=context,
                start_time=frame_start,
                attributes={
                    ATTR_CODE_FUNCTION_NAME: node.function,
                    ATTR_CODE_FILE_PATH: node.file,
                    ATTR_CODE_LINE_NUMBER: node.line,
                    ATTR_SELF_TIME: node.self_time,
                    ATTR_TOTAL_TIME: node.total_time,
                    ATTR_FRAME_DEPTH: depth,
                },
            )
            opened.append((span, frame_end))
            context = trace.set_span_in_context(span, context)
            previous = node
    finally:
        for span, end in reversed(opened):  # innermost first, as a real call stack ends
            span.end(end_time=end)
