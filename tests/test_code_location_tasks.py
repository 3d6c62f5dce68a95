"""Calls issued as asyncio tasks of their own: located where the application awaits them.

``asyncio.gather(*(client.get(u) for u in urls))`` runs each call on a task whose stack has no
application frame; the code location is then the application's coroutine that awaits the task, at
the line of its ``await`` (``runtime.task_origin``), for gather, ``create_task``, ``TaskGroup`` and
``wait_for``. A task nothing awaits, and a call outside any event loop, get no location.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from amqadf_agent import semconv
from amqadf_agent.runtime.code_location import CodeLocationProcessor, application_stack
from amqadf_agent.runtime.task_origin import awaiting_frames

FUNCTION, FILE, LINE = (
    semconv.ATTR_CODE_FUNCTION_NAME,
    semconv.ATTR_CODE_FILE_PATH,
    semconv.ATTR_CODE_LINE_NUMBER,
)
#: A client library's coroutines: a module named like one (``httpx``), so no frame of it is the
#: application's. ``call`` starts a client span two library frames down and yields to the loop
#: (as a real call waits for its answer), then returns what ``stack`` gives, called there;
#: ``call_in_thread`` starts one on a thread of its own.
LIBRARY = """
import asyncio
import threading
from opentelemetry.trace import SpanKind

async def _send(tracer, stack):
    span = tracer.start_span("GET", kind=SpanKind.CLIENT)
    await asyncio.sleep(0)
    span.end()
    return stack() if stack is not None else None

async def call(tracer, stack=None):
    return await _send(tracer, stack)

def call_in_thread(tracer):
    thread = threading.Thread(target=lambda: tracer.start_span("GET", kind=SpanKind.CLIENT).end())
    thread.start()
    thread.join()
"""


@pytest.fixture
def library() -> Any:
    namespace: dict[str, Any] = {"__name__": "httpx._fake_client"}
    exec(compile(LIBRARY, "/venv/lib/python3.11/site-packages/httpx/_fake_client.py", "exec"), namespace)
    calls = {name: staticmethod(namespace[name]) for name in ("call", "call_in_thread")}
    return type("Library", (), calls)


@pytest.fixture
def located() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(CodeLocationProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("httpx"), exporter
    provider.shutdown()


def _line(marker: str) -> int:
    """The line of this file that ends with the comment ``# marker``."""
    with open(__file__) as source:
        [line] = [n for n, text in enumerate(source, 1) if text.rstrip().endswith("# " + marker)]
    return line


def _locations(exporter: InMemorySpanExporter) -> list[tuple[Any, Any, Any]]:
    spans = exporter.get_finished_spans()
    assert spans
    return [(s.attributes.get(FUNCTION), s.attributes.get(FILE), s.attributes.get(LINE)) for s in spans]  # type: ignore[union-attr]


def test_calls_issued_with_gather_are_located_at_the_gather(
    located: tuple[Any, InMemorySpanExporter], library: Any
) -> None:
    tracer, exporter = located

    async def catalog() -> None:
        await asyncio.gather(*(library.call(tracer) for _ in range(3)))  # gather

    asyncio.run(catalog())
    where = (catalog.__qualname__, __file__, _line("gather"))
    assert _locations(exporter) == [where] * 3


def test_a_task_awaited_a_task_group_and_wait_for_are_located_at_their_await(
    located: tuple[Any, InMemorySpanExporter], library: Any
) -> None:
    tracer, exporter = located

    async def orders() -> None:
        task = asyncio.create_task(library.call(tracer))
        await task  # awaited
        async with asyncio.TaskGroup() as group:  # group
            group.create_task(library.call(tracer))
        await asyncio.wait_for(library.call(tracer), timeout=5)  # wait_for

    asyncio.run(orders())
    lines = [line for _function, _file, line in _locations(exporter)]
    assert lines == [_line("awaited"), _line("group"), _line("wait_for")]
    assert {function for function, _file, _line in _locations(exporter)} == {orders.__qualname__}


def test_the_innermost_awaiting_application_frame_is_the_location(
    located: tuple[Any, InMemorySpanExporter], library: Any
) -> None:
    tracer, exporter = located

    async def fetch_all() -> None:
        await asyncio.gather(library.call(tracer), library.call(tracer))  # inner

    async def page() -> None:
        await fetch_all()

    asyncio.run(page())
    assert {line for _function, _file, line in _locations(exporter)} == {_line("inner")}


def test_a_coroutine_of_the_application_in_the_task_is_located_there(
    located: tuple[Any, InMemorySpanExporter], library: Any
) -> None:
    # asyncio.gather(fetch(i)...) with fetch the application's: the task's own stack has its frame
    tracer, exporter = located

    async def fetch() -> None:
        await library.call(tracer)  # own

    async def page() -> None:
        await asyncio.gather(fetch(), fetch())

    asyncio.run(page())
    assert {line for _function, _file, line in _locations(exporter)} == {_line("own")}


def test_a_task_nothing_awaits_and_a_call_outside_a_loop_get_no_location(
    located: tuple[Any, InMemorySpanExporter], library: Any
) -> None:
    tracer, exporter = located

    async def fire_and_forget() -> None:
        task = asyncio.create_task(library.call(tracer))
        while not task.done():  # not awaited: polled
            await asyncio.sleep(0)

    asyncio.run(fire_and_forget())
    library.call_in_thread(tracer)  # a library's thread, no event loop: nothing to follow, nothing raised
    assert _locations(exporter) == [(None, None, None)] * 2


def test_callbacks_that_hold_no_awaiter_give_no_frames() -> None:
    seen: list[list[Any]] = []

    async def child() -> None:
        seen.append(awaiting_frames(lambda frame: True))

    async def main() -> None:
        task = asyncio.create_task(child())
        holder = {"not a future": 1}
        task.add_done_callback(lambda _t: holder.clear())  # a closure with no future in it
        task.add_done_callback(print)  # a builtin with no __self__ of interest
        while not task.done():
            await asyncio.sleep(0)

    asyncio.run(main())
    assert seen == [[]]


def test_the_stack_of_a_gathered_call_runs_out_to_the_awaiting_coroutines(library: Any) -> None:
    tracer = TracerProvider().get_tracer("httpx")
    stack: Callable[[], str] = lambda: application_stack(1)  # noqa: E731 # stack lambda

    async def load() -> list[Any]:
        return await asyncio.gather(library.call(tracer, stack))  # stack gather

    async def view() -> list[Any]:
        return await load()  # stack view

    [text] = asyncio.run(view())
    # outermost first: the awaiting coroutines, then the task's own application frame (the lambda);
    # neither the event loop nor this test, which started the loop, is in it
    assert text.splitlines() == [
        f'  File "{__file__}", line {_line("stack view")}, in {view.__qualname__}',
        f'  File "{__file__}", line {_line("stack gather")}, in {load.__qualname__}',
        f'  File "{__file__}", line {_line("stack lambda")}, in {stack.__qualname__}',
    ]
