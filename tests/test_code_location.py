"""The application's line on client spans (``runtime.code_location``), and N+1s caught as they happen."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.clock import FakeClock

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanEvent, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules, analyze_spans
from amqadf_agent.runtime.code_location import CodeLocationProcessor, application_stack
from amqadf_agent.runtime.n_plus_one import NPlusOneProcessor

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


def library_client(depth: int) -> Any:
    """``call(tracer)`` that starts and ends a client span ``depth`` library frames below its caller
    (an ORM's or an HTTP client's frames between the application and the instrumentation)."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy.orm.inner", "CLIENT": SpanKind.CLIENT}
    source = "def level0(tracer):\n    tracer.start_span('q', kind=CLIENT).end()\n" + "".join(
        f"def level{i}(tracer):\n    level{i - 1}(tracer)\n" for i in range(1, depth + 1)
    )
    exec(compile(source, "/venv/lib/python3.11/site-packages/sqlalchemy/orm/inner.py", "exec"), namespace)
    return namespace[f"level{depth}"]


def test_call_paths_of_several_scopes_and_depths_each_get_their_own_line(
    located: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    # GIVEN two instrumentation scopes whose calls sit at different depths below the application,
    # and one scope whose call paths differ in depth (an ORM's query and its flush)
    provider, exporter = located
    shallow, deep = library_client(2), library_client(12)
    orm, http = provider.get_tracer("orm"), provider.get_tracer("http")

    def first_path() -> None:
        shallow(orm)  # first path

    def second_path() -> None:
        deep(http)  # second path

    def third_path() -> None:
        deep(orm)  # third path

    expected = {
        "first_path": line_of(first_path, "# first path"),
        "second_path": line_of(second_path, "# second path"),
        "third_path": line_of(third_path, "# third path"),
    }

    def nested(levels: int, path: Callable[[], None]) -> None:
        """The application's own frames around the call (known as the application's: one of them
        starts a span itself): a distance learned on a deeper path lands on one of them, which must
        not be taken for the caller."""
        if levels:
            nested(levels - 1, path)
        else:
            provider.get_tracer("app").start_span("direct", kind=SpanKind.CLIENT).end()
            path()

    # WHEN they alternate, so that each learned distance is tried on the other paths
    for _ in range(3):
        for path in (first_path, second_path, third_path, first_path):
            nested(15, path)
    # THEN every span names the application's line that called into the library
    spans = [span for span in exporter.get_finished_spans() if span.name == "q"]
    assert len(spans) == 12
    for span in spans:
        assert span.attributes is not None
        function = span.attributes[FUNCTION]
        assert isinstance(function, str) and function.rsplit(".", 1)[-1] in expected, function
        assert span.attributes[LINE] == expected[function.rsplit(".", 1)[-1]]
        assert span.attributes[FILE] == __file__


@pytest.mark.parametrize("framework_frames", range(6, 14))
def test_a_distance_learned_on_a_deeper_path_never_names_an_outer_application_frame(
    located: tuple[TracerProvider, InMemorySpanExporter], framework_frames: int
) -> None:
    # GIVEN the application's middleware calling its view through a web framework's frames, and the
    # view's queries reaching the instrumentation through 2 and 12 frames of an ORM, so that the
    # deep path's distance, tried on the shallow path, lands on the middleware for one of the sizes
    provider, exporter = located
    orm = provider.get_tracer("orm")
    shallow, deep = library_client(2), library_client(12)
    framework = library(framework_frames, "/venv/lib/python3.11/site-packages/flask/app.py")

    def view() -> None:
        application_stack()  # as the N+1 watch takes it: every frame out from here is classified
        deep(orm)
        shallow(orm)  # the shallow query

    def middleware() -> None:
        # a query of its own (a session look-up): the middleware is known as the application's
        provider.get_tracer("auth").start_span("session", kind=SpanKind.CLIENT).end()
        framework(view)

    # WHEN the view runs twice (both distances learned, then tried)
    middleware()
    middleware()
    # THEN every query names the view, never the middleware
    queries = [s for s in exporter.get_finished_spans() if s.attributes and s.name == "q"]
    functions = [span.attributes[FUNCTION] for span in queries if span.attributes]
    assert len(functions) == 4
    assert all(str(function).endswith(".view") for function in functions), functions


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


def test_the_agent_records_locations_only_when_turned_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting, expected in ((None, False), ("true", True)):
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


# --- N+1 caught as it happens -------------------------------------------------------------------


@pytest.fixture
def watched() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor]]:
    """A tracer provider with the code-location and N+1 processors (on a fake clock)."""
    clock = FakeClock()
    watch = NPlusOneProcessor(clock=clock)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(CodeLocationProcessor())
    provider.add_span_processor(watch)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter, clock, watch
    provider.shutdown()


def query(provider: TracerProvider, statement: str, scope: str = "sqlalchemy") -> None:
    """One db client span, as an instrumentation makes it: attributes set after the start."""
    span = provider.get_tracer(scope).start_span("SELECT", kind=SpanKind.CLIENT)
    span.set_attribute(semconv.ATTR_DB_SYSTEM_NAME, "sqlite")
    span.set_attribute(semconv.ATTR_DB_QUERY_TEXT, statement)
    span.end()


def load_items(provider: TracerProvider, orders: list[int]) -> None:
    for order in orders:
        query(provider, f"SELECT * FROM items WHERE order_id = {order}")  # the loop's query


def handle_request(provider: TracerProvider, orders: list[int]) -> None:
    with provider.get_tracer("web").start_as_current_span("GET /orders", kind=SpanKind.SERVER):
        load_items(provider, orders)  # the caller


def events_of(exporter: InMemorySpanExporter, name: str = "GET /orders") -> list[Any]:
    return [
        event
        for span in exporter.get_finished_spans()
        if span.name == name
        for event in span.events
        if event.name == semconv.EVENT_DB_N_PLUS_ONE
    ]


def test_the_fifth_call_of_one_shape_under_one_parent_marks_the_parent_with_the_loop_stack(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, _, _ = watched
    handle_request(provider, list(range(12)))
    (event,) = events_of(exporter)
    attributes = dict(event.attributes)
    assert attributes[semconv.ATTR_DB_QUERY_TEXT] == "SELECT * FROM items WHERE order_id = ?"
    assert attributes[semconv.ATTR_N_PLUS_ONE_CALLS] == 5
    assert attributes[semconv.ATTR_DB_SYSTEM_NAME] == "sqlite"
    assert attributes[FUNCTION] == "query"
    assert attributes[FILE] == __file__
    stack = attributes[semconv.ATTR_CODE_STACKTRACE].splitlines()
    loop_line = line_of(load_items, "the loop's query")
    caller_line = line_of(handle_request, "the caller")
    assert f'  File "{__file__}", line {loop_line}, in load_items' in stack
    assert f'  File "{__file__}", line {caller_line}, in handle_request' in stack
    assert stack.index(f'  File "{__file__}", line {caller_line}, in handle_request') < stack.index(
        f'  File "{__file__}", line {loop_line}, in load_items'
    )
    assert not any("opentelemetry" in line or "amqadf_agent" in line for line in stack)
    assert "order_id = 3" not in str(attributes)  # shapes only: no literal leaves the process


def test_four_calls_are_not_an_n_plus_one(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, _, _ = watched
    handle_request(provider, [1, 2, 3, 4])
    assert events_of(exporter) == []


def test_one_event_per_shape_per_interval(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, clock, _ = watched
    handle_request(provider, list(range(6)))
    clock.advance(59)
    handle_request(provider, list(range(6)))
    assert len(events_of(exporter)) == 1
    clock.advance(2)
    handle_request(provider, list(range(6)))
    assert len(events_of(exporter)) == 2


def test_one_query_seen_by_two_instrumentations_is_counted_once_per_instrumentation(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, _, _ = watched
    with provider.get_tracer("web").start_as_current_span("GET /orders", kind=SpanKind.SERVER):
        for order in range(3):  # SQLAlchemy's span and the DB-API's, side by side, per query
            query(provider, f"SELECT * FROM items WHERE order_id = {order}", "sqlalchemy")
            query(provider, f"SELECT * FROM items WHERE order_id = {order}", "sqlite3")
    assert events_of(exporter) == []


def test_counts_are_per_parent(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, _, _ = watched
    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER):
        for _ in range(3):
            with tracer.start_as_current_span("one order"):
                load_items(provider, [1, 2])
    assert events_of(exporter, "one order") == []


def test_memory_is_bounded_and_freed_when_parents_end() -> None:
    watch = NPlusOneProcessor(max_parents=8, max_statements=4)
    provider = TracerProvider()
    provider.add_span_processor(watch)
    tracer = provider.get_tracer("web")
    open_parents = [tracer.start_span(f"job {i}") for i in range(50)]
    for parent in open_parents:
        with trace.use_span(parent, end_on_exit=False):
            for statement in range(10):
                query(provider, f"SELECT a{statement} FROM t")
    assert len(watch._parents) <= 8
    assert len(watch._shapes) <= 4
    for parent in open_parents:
        parent.end()
    assert watch._parents == {}


def test_a_parent_of_another_process_is_left_alone(
    watched: tuple[TracerProvider, InMemorySpanExporter, FakeClock, NPlusOneProcessor],
) -> None:
    provider, exporter, _, watch = watched
    remote = trace.NonRecordingSpan(
        trace.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(remote):
        load_items(provider, list(range(6)))
    assert watch._parents == {}
    assert len(exporter.get_finished_spans()) == 6


def test_the_stack_trace_is_bounded() -> None:
    captured: list[str] = []

    def recurse(n: int) -> None:
        if n:
            recurse(n - 1)
        else:
            captured.append(application_stack(max_chars=300))

    recurse(50)
    assert 0 < len(captured[0]) <= 300
    assert captured[0].splitlines()[-1].endswith("in " + recurse.__qualname__)


# --- a real Flask + SQLAlchemy application, analyzed --------------------------------------------

APPS = Path(__file__).parent / "apps"
ORM_APP = APPS / "orm_locations_app.py"
#: Orders of the app: enough lazy loads that a run passes the analyzer's 50 ms even on a fast machine.
ORDERS = 1000


def _load_orm_app() -> Any:
    spec = importlib.util.spec_from_file_location("orm_locations_app", ORM_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy resolves the models' annotations in their module
    spec.loader.exec_module(module)
    return module


def _analyze(directory: Path, fmt: str = "json") -> str:
    return subprocess.run(
        [sys.executable, "-m", "amqadf_agent.cli.analyze", str(directory), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def orm_telemetry(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The telemetry of the ORM app under the agent (file exporter) and the real Flask and SQLAlchemy
    instrumentations: three requests that run the N+1, three that load the same in one query; on
    in-memory SQLite, then on the tests' PostgreSQL 15 through psycopg."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    from amqadf_agent.runtime import agent as agent_mod

    out = tmp_path_factory.mktemp("orm-telemetry")
    app_module = _load_orm_app()
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=out,
        service_name="orm-shop",
        code_location=True,
        self_metrics=False,
        resource_monitor=False,
    )
    url = "sqlite://"
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database("orm_locations").replace("postgresql://", "postgresql+psycopg://", 1)
    engine = app_module.make_engine(url, orders=ORDERS)
    SQLAlchemyInstrumentor().instrument(engine=engine)
    app = app_module.create_app(engine)
    FlaskInstrumentor().instrument_app(app)
    try:
        client = app.test_client()
        for path in ("/orders", "/orders/joined") * 3:
            assert client.get(path).json == {"total": 2 * ORDERS}
    finally:
        FlaskInstrumentor().uninstrument_app(app)
        SQLAlchemyInstrumentor().uninstrument()
        agent.shutdown()
        agent_mod._agent = None
        engine.dispose()
    return out


def test_the_n_plus_one_finding_names_the_line_that_loops(orm_telemetry: Path) -> None:
    app_module = sys.modules["orm_locations_app"]
    report = json.loads(_analyze(orm_telemetry))
    (n1,) = [r for r in report["recommendations"] if r["rule"] == "n_plus_one"]
    assert "order_items" in n1["subject"]
    # every lazy load came from the loop's line: one location, all the calls
    assert n1["locations"] == [
        {
            "file": str(ORM_APP),
            "line": app_module.N_PLUS_ONE_LINE,
            "function": app_module.N_PLUS_ONE_FUNCTION,
            "count": 3 * ORDERS,
            "share": 1.0,
        }
    ]
    stack = n1["stacktrace"].splitlines()
    assert stack[-1] == (
        f'  File "{ORM_APP}", line {app_module.N_PLUS_ONE_LINE}, in {app_module.N_PLUS_ONE_FUNCTION}'
    )
    assert stack[-2].endswith("in create_app.<locals>.orders")  # the view that called the loop
    assert all(str(ORM_APP) in line or "test_code_location" in line for line in stack)


def test_the_healthy_endpoint_adds_no_location_to_the_n_plus_one(orm_telemetry: Path) -> None:
    report = json.loads(_analyze(orm_telemetry))
    for finding in report["recommendations"]:
        lines = {location["function"] for location in finding["locations"]}
        assert not ({"item_counts", "item_counts_joined"} <= lines), finding["title"]
        if finding["rule"] != "n_plus_one":
            assert finding["stacktrace"] is None


def test_every_format_shows_the_location_and_the_stack(orm_telemetry: Path) -> None:
    app_module = sys.modules["orm_locations_app"]
    where = f"{ORM_APP}:{app_module.N_PLUS_ONE_LINE}"
    text = _analyze(orm_telemetry, "text")
    assert f"code:       {where} item_counts (3,000 calls, 100%)" in text
    assert f'File "{ORM_APP}", line {app_module.N_PLUS_ONE_LINE}, in item_counts' in text
    markdown = _analyze(orm_telemetry, "markdown")
    assert f"   - Code: `{where}` `item_counts` (3,000 calls, 100%)" in markdown
    assert "Stack of the N+1 as the agent caught it" in markdown
    html = _analyze(orm_telemetry, "html")
    assert f"<code>{where}</code>" in html
    assert "<summary>Stack of the N+1 as the agent caught it</summary>" in html
    sarif = json.loads(_analyze(orm_telemetry, "sarif"))
    [n1] = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "database/n_plus_one"]
    physical = n1["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == str(ORM_APP).lstrip("/")
    assert physical["region"] == {"startLine": app_module.N_PLUS_ONE_LINE}
    assert n1["locations"][0]["message"] == {"text": "item_counts; 3,000 calls, 100%"}


# --- the analyzer's side, on hand-made spans ------------------------------------------------------


def _db_span(index: int, location: dict[str, Any], parent: str = "00000000000000aa") -> SpanRecord:
    start = 1_700_000_000_000_000_000 + index * 20_000_000
    return SpanRecord(
        trace_id="ab" * 16,
        span_id=f"{index + 1:016x}",
        parent_span_id=parent,
        name="SELECT",
        kind=SPAN_KIND_CLIENT,
        start_ns=start,
        end_ns=start + 11_000_000,
        status_code=0,
        status_message="",
        attributes={
            "db.system.name": "postgresql",
            "db.query.text": f"SELECT * FROM items WHERE order_id = {index}",
            **location,
        },
        events=(),
        resource={"service.name": "shop"},
        scope_name="test",
    )


def test_findings_rank_the_top_five_locations_by_calls_with_their_share() -> None:
    spans = []
    for line, calls in ((10, 6), (20, 5), (30, 4), (40, 3), (50, 2), (60, 1)):
        location = {FILE: "app.py", LINE: line, FUNCTION: f"f{line}"}
        spans += [_db_span(len(spans), location) for _ in range(calls)]
    found = analyze_spans(spans, DatabaseRuleConfig(min_db_spans=1))
    (n1,) = [r for r in found if r.rule == "n_plus_one"]
    assert [(loc.line, loc.count) for loc in n1.locations] == [(10, 6), (20, 5), (30, 4), (40, 3), (50, 2)]
    assert n1.locations[0].share == pytest.approx(6 / 21)
    assert str(n1.locations[0]) == "app.py:10 f10"
    assert all(r.locations == n1.locations for r in found)  # every finding of the statement
    assert n1.stacktrace == ""  # no event from the agent: no stack


def test_the_older_code_attribute_names_are_read() -> None:
    old = {"code.filepath": "legacy.py", "code.lineno": 7, "code.function": "load"}
    found = analyze_spans([_db_span(i, old) for i in range(5)], DatabaseRuleConfig(min_db_spans=1))
    assert [loc.to_dict() for loc in found[0].locations] == [
        {"file": "legacy.py", "line": 7, "function": "load", "count": 5, "share": 1.0}
    ]


def test_the_stack_of_the_agents_event_goes_to_the_n_plus_one_of_its_statement_only() -> None:
    stack = '  File "app.py", line 3, in view\n  File "app.py", line 9, in load'
    event = SpanEvent(
        0,
        semconv.EVENT_DB_N_PLUS_ONE,
        {
            semconv.ATTR_DB_QUERY_TEXT: "SELECT * FROM items WHERE order_id = ?",
            semconv.ATTR_CODE_STACKTRACE: stack,
        },
    )
    parent = dataclasses.replace(
        _db_span(99, {}), span_id="00000000000000aa", parent_span_id="", kind=2, events=(event,)
    )
    spans = [_db_span(i, {FILE: "app.py", LINE: 9, FUNCTION: "load"}) for i in range(5)]
    rules = DatabaseRules(DatabaseRuleConfig(min_db_spans=1))
    for span in [*spans, parent]:
        rules.add_span(span)
    found = rules.recommendations()
    assert [r.stacktrace for r in found if r.rule == "n_plus_one"] == [stack]
    assert all(r.stacktrace == "" for r in found if r.rule != "n_plus_one")
    (n1,) = [r for r in found if r.rule == "n_plus_one"]
    assert n1.to_dict()["stacktrace"] == stack


# --- every client span: under the zero-code start, and an HTTP client ------------------------------


def test_zero_code_start_puts_the_application_line_on_db_spans(tmp_path: Path) -> None:
    """``opentelemetry-instrument`` with our distro and the sqlite3 instrumentation, no code change."""
    app = APPS / "sqlite_app.py"
    out = tmp_path / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(
        OTEL_PYTHON_DISTRO="amqadf",
        OTEL_PYTHON_CONFIGURATOR="amqadf",
        AMQADF_OUTPUT_DIR=str(out),
        AMQADF_CODE_LOCATION="true",
        OTEL_SERVICE_NAME="zc",
    )
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    proc = subprocess.run(
        [str(launcher), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    source = app.read_text(encoding="utf-8").splitlines()
    db_spans = [
        record
        for record in read(out / "traces.jsonl", strict=True)
        if isinstance(record, SpanRecord) and record.kind == SPAN_KIND_CLIENT
    ]
    assert len(db_spans) == 5  # CREATE, three INSERTs, SELECT
    for span in db_spans:
        assert span.attributes[FILE] == str(app)
        assert span.attributes[FUNCTION] == "main"
        line = source[span.attributes[LINE] - 1]
        assert "cursor.execute(" in line, line


def test_an_http_client_span_carries_the_line_that_sent_the_request() -> None:
    import http.server
    import threading

    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    exporter = InMemorySpanExporter()
    agent = amqadf_agent.start(
        exporters=["none"],
        span_exporters=[exporter],
        code_location=True,
        self_metrics=False,
        resource_monitor=False,
    )
    RequestsInstrumentor().instrument()
    try:

        def fetch() -> int:
            return requests.get(f"http://127.0.0.1:{server.server_port}/", timeout=5).status_code  # sent

        assert fetch() == 204
    finally:
        RequestsInstrumentor().uninstrument()
        server.shutdown()
        agent.force_flush()
        agent.shutdown()
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert span.attributes is not None
    assert span.attributes[FILE] == __file__
    assert span.attributes[FUNCTION].endswith("<locals>.fetch")
    assert span.attributes[LINE] == line_of(fetch, "# sent")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_gets_a_free_lock_and_no_parents_of_its_parent() -> None:
    watch = NPlusOneProcessor()
    provider = TracerProvider()
    provider.add_span_processor(watch)
    parent = provider.get_tracer("web").start_span("GET /orders")
    with trace.use_span(parent, end_on_exit=False):
        query(provider, "SELECT 1")
    assert watch._parents
    with watch._lock:  # held by this thread at the fork, as another thread might hold it
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if the lock is free and the parents are gone
            os._exit(0 if watch._lock.acquire(timeout=2) and not watch._parents else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent.end()
