"""The agent's span processor composition: the SDK's calls, minus those of empty hooks."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import amqadf_agent
from amqadf_agent.runtime import providers


class Recording(SpanProcessor):
    """Defines every hook and records each call."""

    def __init__(self, calls: list[tuple[str, str, str]], name: str) -> None:
        self.calls = calls
        self.name = name

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.calls.append((self.name, "on_start", span.name))

    def _on_ending(self, span: Any) -> None:
        self.calls.append((self.name, "_on_ending", span.name))

    def on_end(self, span: Any) -> None:
        self.calls.append((self.name, "on_end", span.name))


class EndOnly(Recording):
    on_start = SpanProcessor.on_start
    _on_ending = SpanProcessor._on_ending


class StartOnly(Recording):
    _on_ending = SpanProcessor._on_ending
    on_end = SpanProcessor.on_end


def _run(active: SynchronousMultiSpanProcessor) -> tuple[list[tuple[str, str, str]], list[Any]]:
    calls: list[tuple[str, str, str]] = []
    exported = InMemorySpanExporter()
    provider = TracerProvider(active_span_processor=active)
    provider.add_span_processor(Recording(calls, "a"))
    provider.add_span_processor(BatchSpanProcessor(exported))
    provider.add_span_processor(EndOnly(calls, "b"))
    provider.add_span_processor(StartOnly(calls, "c"))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as inner:
        inner.set_attribute("k", "v")
    provider.add_span_processor(Recording(calls, "late"))  # added once spans have run
    with tracer.start_as_current_span("after"):
        pass
    provider.force_flush()
    spans = [(s.name, dict(s.attributes or {}), s.parent is not None) for s in exported.get_finished_spans()]
    provider.shutdown()
    return calls, spans


def test_the_same_calls_in_the_same_order_as_the_sdks_minus_empty_hooks() -> None:
    sdk_calls, sdk_spans = _run(SynchronousMultiSpanProcessor())
    calls, spans = _run(providers.span_processors())
    assert calls == sdk_calls
    assert spans == sdk_spans and len(spans) == 3
    assert ("late", "_on_ending", "after") in calls and ("b", "on_end", "inner") in calls
    assert ("c", "on_start", "inner") in calls and not any(c[0] == "c" and c[1] != "on_start" for c in calls)


def test_only_the_hooks_that_do_something_are_kept() -> None:
    active = providers.span_processors()
    batch = BatchSpanProcessor(InMemorySpanExporter())
    recording, end_only, start_only, simple = (
        Recording([], "a"),
        EndOnly([], "b"),
        StartOnly([], "c"),
        SimpleSpanProcessor(InMemorySpanExporter()),
    )
    for processor in (recording, batch, end_only, start_only, simple):
        active.add_span_processor(processor)
    assert active._span_processors == (recording, batch, end_only, start_only, simple)
    # SimpleSpanProcessor's on_start is its own
    assert active._starting == (recording, start_only, simple)
    assert active._ending == (recording, simple)
    assert active._ended == (recording, batch, end_only, simple)
    active.shutdown()


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (SpanProcessor, "on_start"),
        (SpanProcessor, "_on_ending"),
        (SpanProcessor, "on_end"),
        (BatchSpanProcessor, "on_start"),
        (BatchSpanProcessor, "_on_ending"),
    ],
)
def test_the_hooks_taken_as_empty_are_empty(cls: type, name: str) -> None:
    """The SDK's own source: a docstring or ``pass`` and nothing else (a new SDK may change it)."""
    function = ast.parse(textwrap.dedent(inspect.getsource(getattr(cls, name)))).body[0]
    assert isinstance(function, ast.FunctionDef)
    body = [
        node
        for node in function.body
        if not isinstance(node, ast.Pass)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    assert body == []


def test_the_agents_tracer_provider_composes_its_processors_so(tmp_path: Any) -> None:
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path, self_metrics=False)
    try:
        active = agent.tracer_provider._active_span_processor
        assert isinstance(active, SynchronousMultiSpanProcessor)
        # the default processors (the sanitizer, the batch processors) act only when a span ends
        assert not active._starting and not active._ending and active._ended
        assert any(isinstance(p, BatchSpanProcessor) for p in active._span_processors)
        with agent.tracer("t").start_as_current_span("s"):
            pass
    finally:
        assert agent.shutdown()
    assert b'"name":"s"' in b"".join(p.read_bytes() for p in tmp_path.rglob("*.jsonl*"))
