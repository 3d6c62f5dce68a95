"""The application's line on client spans (``runtime.code_location``), and N+1s caught as they happen."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.runtime.code_location import CodeLocationProcessor, application_stack

FUNCTION, FILE, LINE = (
    semconv.ATTR_CODE_FUNCTION_NAME,
    semconv.ATTR_CODE_FILE_PATH,
    semconv.ATTR_CODE_LINE_NUMBER,
)


@pytest.fixture
def located() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider with the code-location processor, then an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(CodeLocationProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def library(depth: int, filename: str = "/venv/lib/python3.11/site-packages/sqlalchemy/orm/fake.py") -> Any:
    """``call(fn)`` that runs ``fn`` under ``depth`` frames of a module that looks like a library."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy.orm.fake"}
    source = "def level0(fn):\n    return fn()\n" + "".join(
        f"def level{i}(fn):\n    return level{i - 1}(fn)\n" for i in range(1, depth + 1)
    )
    exec(compile(source, filename, "exec"), namespace)
    return namespace[f"level{depth}"]


def line_of(fn: Callable[..., Any], text: str) -> int:
    """The line number of the line of ``fn`` that contains ``text``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def start_client_span(provider: TracerProvider) -> None:
    provider.get_tracer("lib").start_span("SELECT", kind=SpanKind.CLIENT).end()  # the app's call


def app_query(provider: TracerProvider, call: Any) -> None:
    call(lambda: start_client_span(provider))  # app_query's line


def test_a_client_span_carries_the_application_line_that_started_it(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = located
    start_client_span(provider)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[FUNCTION] == "start_client_span"
    assert span.attributes[FILE] == __file__
    assert span.attributes[LINE] == line_of(start_client_span, "the app's call")


def test_library_frames_between_the_application_and_the_span_are_skipped(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = located
    for depth in (3, 40, 3):  # the distance learned from one call must not mislead the next
        exporter.clear()

        def through_library(depth: int = depth) -> None:
            library(depth)(lambda: provider.get_tracer("x").start_span("q", kind=SpanKind.CLIENT).end())

        through_library()
        (span,) = exporter.get_finished_spans()
        assert span.attributes is not None
        assert span.attributes[FILE] == __file__
        assert span.attributes[FUNCTION].endswith("through_library.<locals>.<lambda>")


def test_the_innermost_application_frame_is_named_not_an_outer_caller(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = located
    app_query(provider, library(5))
    app_query(provider, library(5))
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        assert span.attributes[FUNCTION] == "start_client_span"


def test_stdlib_frames_are_skipped(located: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    import contextlib

    provider, exporter = located
    with contextlib.ExitStack() as stack:
        stack.callback(start_client_span, provider)  # called from contextlib's __exit__ at the end
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[FUNCTION] == "start_client_span"


def test_internal_and_server_spans_are_left_alone(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = located
    tracer = provider.get_tracer("x")
    tracer.start_span("work").end()
    tracer.start_span("GET /", kind=SpanKind.SERVER).end()
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        assert FUNCTION not in span.attributes


def test_a_location_set_by_the_instrumentation_is_kept(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = located
    given = {FUNCTION: "theirs", FILE: "their.py", LINE: 7}
    provider.get_tracer("x").start_span("q", kind=SpanKind.CLIENT, attributes=given).end()
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == given


def test_span_limits_are_honoured_through_set_attributes() -> None:
    """With a value-length limit the values go through the SDK's own checks, which cut the path."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attribute_length=8))
    provider.add_span_processor(CodeLocationProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    start_client_span(provider)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[FILE] == __file__[:8]
    assert span.attributes[LINE] == line_of(start_client_span, "the app's call")


def test_a_full_attribute_table_is_handled_by_the_sdk_as_it_handles_any_attribute() -> None:
    """The SDK keeps the newest attributes within its limit and counts what it dropped."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    provider.add_span_processor(CodeLocationProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("x").start_span("q", kind=SpanKind.CLIENT, attributes={"a": 1, "b": 2}).end()
    (span,) = exporter.get_finished_spans()
    assert set(span.attributes or {}) == {FILE, LINE}
    assert span.dropped_attributes == 3


def test_application_stack_lists_only_application_frames_innermost_last() -> None:
    captured: list[str] = []

    def inner() -> None:
        captured.append(application_stack())

    def outer() -> None:
        library(4)(inner)

    outer()
    lines = captured[0].splitlines()
    assert (
        lines[-1] == f'  File "{__file__}", line {line_of(inner, "captured.append")}, in {inner.__qualname__}'
    )
    assert lines[-2].endswith(f"in {outer.__qualname__}")
    assert not any("sqlalchemy" in line or "_pytest" in line for line in lines)


def test_the_agent_records_locations_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting, expected in ((None, True), ("false", False)):
        if setting is not None:
            monkeypatch.setenv("AMQADF_CODE_LOCATION", setting)
        exporter = InMemorySpanExporter()
        agent = amqadf_agent.start(
            exporters=["none"], span_exporters=[exporter], self_metrics=False, resource_monitor=False
        )
        assert agent.settings.code_location is expected
        agent.tracer("app").start_span("SELECT", kind=SpanKind.CLIENT).end()
        agent.force_flush()
        (span,) = exporter.get_finished_spans()
        assert (FUNCTION in (span.attributes or {})) is expected
        agent.shutdown()
        from amqadf_agent.runtime import agent as agent_mod

        agent_mod._agent = None
