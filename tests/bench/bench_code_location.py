"""Cost of the code location on a client span, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_code_location.py [--repeat 7] [--number 20000]

Rows, per CLIENT span started and ended through the SDK (no exporter), in a tracer provider whose
span processors are composed as the agent composes them (``providers.span_processors``: a hook a
processor leaves empty is not called):

* the SDK's span alone, then with the agent's ``CodeLocationProcessor`` and ``NPlusOneProcessor``,
  started by an application frame directly (``depth 0``) and by a library 10 and 40 frames below
  the application (an ORM query is 30-40 frames deep: SQLAlchemy's ``Query.all`` to the
  instrumentation's ``before_cursor_execute``), and from 10 and 40 in turn (one instrumentation,
  two call paths);
* a real SQLAlchemy ORM query on in-memory SQLite under the SQLAlchemy instrumentation, with and
  without the processor (the whole query, so the difference is the figure that matters);
* four db client spans with a statement under one parent span, per db span: the N+1 watch's
  bookkeeping added too (the parent span's own cost shared among the four);
* the frame walk alone (``application_frame``) from 40 library frames.

Columns: the SDK's own cost (median µs of CPU), then the median added by the code location alone
and by the code location with the N+1 watch (over the runs, each against the run beside it).

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


def measure(fns: list[Callable[[], object]], number: int, repeat: int) -> list[list[float]]:
    """ns of this thread's CPU time per call of each function, one list of runs per function.

    The runs alternate between the functions, and CPU time rather than wall time is counted: on a
    shared machine the wall time of a run swings by 2x with the other processes' load.
    """
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, runs, strict=True):
            getattr(fn, "prepare", lambda: None)()
            start = time.thread_time_ns()
            for _ in range(number):
                fn()
            out.append((time.thread_time_ns() - start) / number)
    return runs


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
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)

    # One provider, the processors switched on and off between runs: the SQLAlchemy instrumentation
    # can be installed once only, and the runs alternate so that both sides see the same load.
    provider = TracerProvider(active_span_processor=span_processors())
    switch = _Switch(provider)
    tracer = provider.get_tracer("bench")

    def span() -> None:
        tracer.start_span("SELECT", kind=SpanKind.CLIENT).end()

    in_library = _library_start(tracer)
    rows: list[tuple[str, list[list[float]]]] = []
    for depth in (0, 10, 40):
        if depth:
            below = _library_module(depth - 1)
            runs = measure(switch.each(functools.partial(below, in_library)), args.number, args.repeat)
        else:
            runs = measure(switch.each(span), args.number, args.repeat)
        rows.append((f"client span, {depth} library frames", runs))

    shallow, deep = _library_module(9), _library_module(39)

    def alternating() -> None:
        shallow(in_library)
        deep(in_library)

    runs = measure(switch.each(alternating), args.number // 2, args.repeat)
    rows.append(("client span, 10 and 40 frames in turn", [[r / 2 for r in run] for run in runs]))

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
        f"{'case':<40} {'SDK µs':>7} {'+location µs':>13} {'added %':>8} {'+N+1 watch µs':>14} {'added %':>8}"
    )
    for name, (without, located_runs, both_runs) in rows:
        base = statistics.median(without)
        located = statistics.median([b - a for a, b in zip(without, located_runs, strict=True)])
        both = statistics.median([b - a for a, b in zip(without, both_runs, strict=True)])
        print(
            f"{name:<40} {base / 1000:7.2f} {located / 1000:13.2f} {located / base * 100:7.1f}%"
            f" {both / 1000:14.2f} {both / base * 100:7.1f}%"
        )
    walk_ns = statistics.median(walk_alone) - statistics.median(bare)
    print(f"{'frame walk alone, 40 library frames':<40} {'':>9} {'':>13} {walk_ns / 1000:9.2f}")
    print(f"target: added <= {TARGET_NS / 1000:.1f} µs and <= 10% of the SDK's span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
