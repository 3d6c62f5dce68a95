"""Cost of the code location on a client span, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_code_location.py [--repeat 15] [--number 20000]

Rows, per CLIENT span started and ended through the SDK (no exporter), in a tracer provider whose
span processors are composed as the agent composes them (``providers.span_processors``: a hook a
processor leaves empty is not called):

* the SDK's span alone, then with the agent's ``CodeLocationProcessor`` and ``NPlusOneProcessor``,
  started by an application frame directly (``depth 0``) and by a library 10 and 40 frames below
  the application (an ORM query is 30-40 frames deep: SQLAlchemy's ``Query.all`` to the
  instrumentation's ``before_cursor_execute``), and from 10 and 40 in turn (one instrumentation,
  two call paths); each row with a tracer of its own, as each instrumentation has (the paths out
  to the application that the code location learns are its instrumentation scope's);
* a real SQLAlchemy ORM query on in-memory SQLite under the SQLAlchemy instrumentation, with and
  without the processor (the whole query, so the difference is the figure that matters);
* four db client spans with a statement under one parent span, per db span: the N+1 watch's
  bookkeeping added too (the parent span's own cost shared among the four);
* the frame walk alone (``application_frame``) from 40 library frames.

Columns: the SDK's own cost (median µs of CPU over the rounds), then what the code location alone
and the code location with the N+1 watch add: in each round the difference from the SDK's span
alone, run in turns with it (``measure``), and of those differences the median and, in brackets,
the lower and upper quartiles (half the rounds fall between them: the noise of the machine). The
frame walk is shown the same way, against the same library frames calling an empty function.

Target (a code location costs next to nothing beside the SDK's span): at most 1.5 µs median added
per client span, at most 10% of the SDK's span cost.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from amqadf_agent.runtime.code_location import CodeLocationProcessor, application_frame
from amqadf_agent.runtime.n_plus_one import NPlusOneProcessor
from amqadf_agent.runtime.providers import span_processors

TARGET_NS = 1500.0
#: Calls of one function in a turn (``measure``): about 3-4 ms of a client span's.
CHUNK = 250


def measure(
    fns: list[Callable[[], object]], number: int, repeat: int, chunk: int = CHUNK
) -> list[list[float]]:
    """ns of this thread's CPU time per call of each function, one value per round per function.

    Within each round every function runs ``number`` times in turns of ``chunk`` calls (the first
    function's turn, the second's, ..., the first's again), so that a burst of load from the other
    processes falls on all of them alike; CPU time rather than wall time is counted: on a shared
    machine the wall time of a run swings by 2x with the other processes' load. One turn of each
    runs untimed before the first round (the caches and learned paths of a first call).
    """
    prepares = [getattr(fn, "prepare", lambda: None) for fn in fns]
    for fn, prepare in zip(fns, prepares, strict=True):
        prepare()
        for _ in range(chunk):
            fn()
    runs: list[list[float]] = [[] for _ in fns]
    turns = [min(chunk, number - start) for start in range(0, number, chunk)]
    clock = time.thread_time_ns
    for _ in range(repeat):
        spent = [0] * len(fns)
        for calls in turns:
            for i, fn in enumerate(fns):
                prepares[i]()
                start = clock()
                for _ in range(calls):
                    fn()
                spent[i] += clock() - start
        for out, ns in zip(runs, spent, strict=True):
            out.append(ns / number)
    return runs


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile of ``values``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4)
    return low, median, high


class _Switch:
    """The agent's processors (code location, then the N+1 watch) in a provider, or none.

    They are put in and taken out of the provider's processor list itself (the SDK's private
    tuple): a processor wrapping them would be a frame of this file, which the code location takes
    for the application's.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._active = provider._active_span_processor
        located, watch = CodeLocationProcessor(), NPlusOneProcessor()
        self._sets: tuple[tuple[Any, ...], ...] = ((), (located,), (located, watch))

    def each(self, fn: Callable[[], object]) -> list[Callable[[], object]]:
        """``fn`` with no processor, with the code location, with both (switched outside the timed
        loop, see ``measure``)."""
        variants: list[Callable[[], object]] = []
        for processors in self._sets:

            def prepare(processors: tuple[Any, ...] = processors) -> None:
                self._active._span_processors = processors

            switched = functools.partial(fn)  # its own object for each variant
            switched.prepare = prepare  # type: ignore[attr-defined]
            variants.append(switched)
        return variants


def _span(tracer: Any) -> None:
    """Starts and ends a client span from the application's frame (this file's)."""
    tracer.start_span("SELECT", kind=SpanKind.CLIENT).end()


def _library_module(depth: int) -> Callable[[Callable[[], object]], object]:
    """A function that calls ``fn`` under ``depth`` frames of a module named like a library."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy._bench_frames"}
    source = "def level0(fn):\n    return fn()\n" + "".join(
        f"def level{i}(fn):\n    return level{i - 1}(fn)\n" for i in range(1, depth + 1)
    )
    exec(compile(source, "/site-packages/sqlalchemy/_bench_frames.py", "exec"), namespace)
    return namespace[f"level{depth}"]  # type: ignore[no-any-return]


def _library_start(tracer: Any) -> Callable[[], object]:
    """Starts and ends a client span from a function of a module named like a library: with
    ``_library_module(n)`` around it, n + 1 library frames sit between the application and the span
    (as an ORM's and its instrumentation's do)."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy._bench_start", "CLIENT": SpanKind.CLIENT}
    source = "def start(tracer):\n    tracer.start_span('SELECT', kind=CLIENT).end()\n"
    exec(compile(source, "/site-packages/sqlalchemy/_bench_start.py", "exec"), namespace)
    return functools.partial(namespace["start"], tracer)


def _orm(provider: TracerProvider) -> tuple[Callable[[], object], Callable[[], None]]:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import Integer, create_engine, select
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id = mapped_column(Integer, primary_key=True)
        order_id = mapped_column(Integer, nullable=True)

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(engine=engine, tracer_provider=provider)
    session = Session(engine)
    session.add_all([Item(id=i) for i in range(1, 4)])
    session.commit()
    query = select(Item).where(Item.order_id.is_(None))

    def run() -> object:
        return session.scalars(query).all()

    def close() -> None:
        session.close()
        instrumentor.uninstrument()

    return run, close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)

    # One provider, the processors switched on and off between runs: the SQLAlchemy instrumentation
    # can be installed once only, and the runs alternate so that both sides see the same load.
    provider = TracerProvider(active_span_processor=span_processors())
    switch = _Switch(provider)
    rows: list[tuple[str, list[list[float]]]] = []
    for depth in (0, 10, 40):
        # A tracer a row: the paths the code location learns are its instrumentation scope's, so
        # a row's spans do not also try the paths of the rows before it.
        tracer = provider.get_tracer(f"bench, {depth} library frames")
        if depth:
            below = _library_module(depth - 1)
            started = functools.partial(below, _library_start(tracer))
        else:
            started = functools.partial(_span, tracer)
        runs = measure(switch.each(started), args.number, args.repeat)
        rows.append((f"client span, {depth} library frames", runs))

    shallow, deep = _library_module(9), _library_module(39)
    in_library = _library_start(provider.get_tracer("bench, 10 and 40 library frames"))

    def alternating() -> None:
        shallow(in_library)
        deep(in_library)

    runs = measure(switch.each(alternating), args.number // 2, args.repeat)
    rows.append(("client span, 10 and 40 frames in turn", [[r / 2 for r in run] for run in runs]))
    tracer = provider.get_tracer("bench, db spans")

    def db_span() -> None:
        # A db span under a parent, its statement set after the start (as instrumentations do):
        # what the N+1 watch looks at; 4 calls a parent, so no event is ever added.
        with tracer.start_as_current_span("GET /orders"):
            for _ in range(4):
                client = tracer.start_span("SELECT", kind=SpanKind.CLIENT)
                client.set_attribute("db.query.text", "SELECT * FROM items WHERE order_id = ?")
                client.end()

    runs = measure(switch.each(db_span), args.number // 4, args.repeat)
    rows.append(("4 db spans under a parent, per db span", [[r / 4 for r in run] for run in runs]))

    query, close = _orm(provider)
    runs = measure(switch.each(query), max(args.number // 10, 100), args.repeat)
    close()
    rows.append(("SQLAlchemy ORM query (whole query)", runs))

    walk = _library_module(40)
    walk_alone, bare = measure(
        [lambda: walk(application_frame), lambda: walk(lambda: None)], args.number, args.repeat
    )

    print(
        f"{'case':<40} {'SDK µs':>7} {'+location µs (quartiles)':>25} {'added %':>8}"
        f" {'+N+1 watch µs (quartiles)':>26} {'added %':>8}"
    )
    for name, (without, located_runs, both_runs) in rows:
        base = statistics.median(without)
        cells = []
        for runs_with in (located_runs, both_runs):
            low, added, high = _quartiles([b - a for a, b in zip(without, runs_with, strict=True)])
            spread = f"({low / 1000:.2f} to {high / 1000:.2f})"
            cells.append(f"{added / 1000:6.2f} {spread:>18} {added / base * 100:7.1f}%")
        print(f"{name:<40} {base / 1000:7.2f} {cells[0]:>34} {cells[1]:>35}")
    low, walk_ns, high = _quartiles([a - b for a, b in zip(walk_alone, bare, strict=True)])
    walk = f"{walk_ns / 1000:6.2f} ({low / 1000:.2f} to {high / 1000:.2f})"
    print(f"{'frame walk alone, 40 library frames':<40} {'':>7} {walk:>25}")
    print(f"target: added <= {TARGET_NS / 1000:.1f} µs and <= 10% of the SDK's span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
