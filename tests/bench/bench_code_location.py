"""Cost of the code location on a client span, beside the SDK's own span cost. Prints a table.

    .venv/bin/python tests/bench/bench_code_location.py [--repeat 7] [--number 20000]

Rows, per CLIENT span started and ended through the SDK (no exporter):

* the SDK's span alone, then with ``CodeLocationProcessor``, from an application frame directly
  (``depth 0``) and from under 10 and 40 frames of a library (an ORM query is 30-40 frames deep:
  SQLAlchemy's ``Query.all`` to the instrumentation's ``before_cursor_execute``);
* a real SQLAlchemy ORM query on in-memory SQLite under the SQLAlchemy instrumentation, with and
  without the processor (the whole query, so the difference is the figure that matters);
* the frame walk alone (``application_frame``) from 40 library frames.

Target (issue 15): at most 1.5 µs median added per client span, at most 10% of the SDK's span cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind

from amqadf_agent.runtime.code_location import CodeLocationProcessor, application_frame

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


class _Switch(SpanProcessor):
    """``CodeLocationProcessor`` that runs only while switched on."""

    def __init__(self) -> None:
        self.enabled = False
        self._located = CodeLocationProcessor()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.enabled:
            self._located.on_start(span, parent_context)

    def on(self, fn: Callable[[], object]) -> Callable[[], object]:
        return self._set(fn, True)

    def off(self, fn: Callable[[], object]) -> Callable[[], object]:
        return self._set(fn, False)

    def _set(self, fn: Callable[[], object], enabled: bool) -> Callable[[], object]:
        """``fn`` with the switch set, the switching outside the timed loop (see ``measure``)."""

        def prepare() -> None:
            self.enabled = enabled

        fn.prepare = prepare  # type: ignore[attr-defined]
        return fn


def _library_module(depth: int) -> Callable[[Callable[[], object]], object]:
    """A function that calls ``fn`` under ``depth`` frames of a module named like a library."""
    namespace: dict[str, Any] = {"__name__": "sqlalchemy._bench_frames"}
    source = "def level0(fn):\n    return fn()\n" + "".join(
        f"def level{i}(fn):\n    return level{i - 1}(fn)\n" for i in range(1, depth + 1)
    )
    exec(compile(source, "/site-packages/sqlalchemy/_bench_frames.py", "exec"), namespace)
    return namespace[f"level{depth}"]  # type: ignore[no-any-return]


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

    # One provider, the processor switched on and off between runs: the SQLAlchemy instrumentation
    # can be installed once only, and the runs alternate so that both sides see the same load.
    switch = _Switch()
    provider = TracerProvider()
    provider.add_span_processor(switch)
    tracer = provider.get_tracer("bench")

    def span() -> None:
        tracer.start_span("SELECT", kind=SpanKind.CLIENT).end()

    rows: list[tuple[str, list[float], list[float]]] = []
    for depth in (0, 10, 40):
        wrap = _library_module(depth) if depth else (lambda fn: fn())
        without, with_location = measure(
            [switch.off(lambda wrap=wrap: wrap(span)), switch.on(lambda wrap=wrap: wrap(span))],
            args.number,
            args.repeat,
        )
        rows.append((f"client span, {depth} library frames", without, with_location))

    query, close = _orm(provider)
    without, with_location = measure(
        [switch.off(query), switch.on(query)], max(args.number // 10, 100), args.repeat
    )
    close()
    rows.append(("SQLAlchemy ORM query (whole query)", without, with_location))

    walk = _library_module(40)
    walk_alone, bare = measure(
        [lambda: walk(application_frame), lambda: walk(lambda: None)], args.number, args.repeat
    )

    print(
        f"{'case':<40} {'SDK µs':>9} {'+location µs':>13} {'added µs':>9} {'added %':>8}"
        f" {'added µs, runs':>16}"
    )
    for name, without, with_location in rows:
        base, located_ns = statistics.median(without), statistics.median(with_location)
        added = [b - a for a, b in zip(without, with_location, strict=True)]
        median_added = statistics.median(added)
        print(
            f"{name:<40} {base / 1000:9.2f} {located_ns / 1000:13.2f} {median_added / 1000:9.2f} "
            f"{median_added / base * 100:7.1f}% {min(added) / 1000:7.2f}..{max(added) / 1000:.2f}"
        )
    walk_ns = statistics.median(walk_alone) - statistics.median(bare)
    print(f"{'frame walk alone, 40 library frames':<40} {'':>9} {'':>13} {walk_ns / 1000:9.2f}")
    print(f"target: added <= {TARGET_NS / 1000:.1f} µs and <= 10% of the SDK's span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
