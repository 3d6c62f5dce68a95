"""Each call counted once: one database call recorded by two instrumentations becomes one call.

With ``opentelemetry-bootstrap``'s usual set, SQLAlchemy's instrumentation and the DB-API one
(``sqlite3``, ``psycopg``) both record every query: the SQLAlchemy span does not become the current
span, so the DB-API span is its *sibling* with the same statement; where it does, the DB-API span is
its *child*. Counted twice, an N+1 of 600 queries shows 1200 calls and the database time doubles.

Two db client spans are one call when they are in the same trace, have the same statement, come from
two different instrumentation scopes, overlap in time, and are siblings (same parent) or parent and
child. The span kept is the one nearest the application: the parent, else the one whose time
contains the other's (the ORM's span wraps the driver's), else the first seen.

``collapse`` does this over a list of calls (the endpoint view, per request); ``CallDeduplicator`` over
the stream of db spans on its way to the database rules: it holds the last ``window`` db spans back,
which is enough since an exporter writes the two spans of one call next to each other (they end
within microseconds), and forwards the kept ones. A span is compared with the last ``TWIN_SCAN`` held
spans of its trace and statement, the newest first: a statement with bind parameters repeats
verbatim in its trace (an N+1: hundreds of calls), and comparing each call with every one held made
a trace of 30,000 of them take minutes. The agent prevents the duplicates at the source
(``runtime.instrumentation_dedup``); this side handles telemetry from any other agent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, Final, NamedTuple

from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.semconv import (
    ATTR_DB_QUERY_TEXT,
    ATTR_DB_STATEMENT_OLD,
    ATTR_DB_SYSTEM_NAME,
    ATTR_DB_SYSTEM_OLD,
)

__all__ = ["Call", "CallDeduplicator", "collapse"]

#: Db spans held back while looking for their twin (an exporter writes the twins side by side).
DEFAULT_WINDOW: Final = 256
#: Held spans of the same trace and statement a new one is compared with, the newest first.
TWIN_SCAN: Final = 32


class Call(NamedTuple):
    """What deduplication needs of one call."""

    start_ns: int
    end_ns: int
    #: The statement (db) or URL (http): twins have the same.
    what: str
    scope: str
    parent_span_id: str
    span_id: str


def _call(span: SpanRecord, statement: str) -> Call:
    return Call(span.start_ns, span.end_ns, statement, span.scope_name, span.parent_span_id, span.span_id)


def twins(kept: Call, other: Call) -> bool:
    """True when ``kept`` and ``other`` are one call seen by two instrumentations."""
    return (
        kept.what == other.what
        and kept.scope != other.scope
        and kept.start_ns <= other.end_ns
        and other.start_ns <= kept.end_ns
        and (
            kept.parent_span_id == other.parent_span_id
            or kept.span_id == other.parent_span_id
            or other.span_id == kept.parent_span_id
        )
    )


def outer(first: Call, second: Call) -> bool:
    """True when ``first`` (seen first) is the one to keep of two twins: nearest the application."""
    if second.span_id == first.parent_span_id:
        return False
    if first.span_id == second.parent_span_id:
        return True
    contains_second = first.start_ns <= second.start_ns and second.end_ns <= first.end_ns
    contains_first = second.start_ns <= first.start_ns and first.end_ns <= second.end_ns
    return contains_second or not contains_first


def collapse(calls: Iterable[Call]) -> list[Call]:
    """``calls`` of one trace with every twin pair reduced to the call kept (see the module docstring)."""
    kept: list[Call] = []
    by_what: dict[str, list[int]] = {}
    for call in sorted(calls):
        slots = by_what.setdefault(call.what, [])
        for slot in slots:
            seen = kept[slot]
            if twins(seen, call):
                if not outer(seen, call):
                    kept[slot] = call
                break
        else:
            slots.append(len(kept))
            kept.append(call)
    return kept


class CallDeduplicator:
    """Pass db client spans on to ``sink``, each call once; ``flush()`` at the end of the input."""

    def __init__(self, sink: Callable[[SpanRecord], None], window: int = DEFAULT_WINDOW) -> None:
        self.sink = sink
        self.window = window
        #: Entries ``[span, (trace id, statement)]`` in arrival order; the index finds them by key.
        self._held: deque[list[Any]] = deque()
        self._index: dict[tuple[str, str], list[list[Any]]] = {}
        #: Spans dropped as the twin of one kept.
        self.duplicates = 0
        #: (kept scope, dropped scope) -> spans dropped.
        self.scopes: dict[tuple[str, str], int] = {}

    def add(self, span: SpanRecord) -> None:
        """Hold ``span`` back for its twin, or pass it on at once when it is no db call."""
        attributes = span.attributes
        statement = attributes.get(ATTR_DB_QUERY_TEXT) or attributes.get(ATTR_DB_STATEMENT_OLD)
        if not isinstance(statement, str) or not (
            attributes.get(ATTR_DB_SYSTEM_NAME) or attributes.get(ATTR_DB_SYSTEM_OLD)
        ):
            self.sink(span)
            return
        key = (span.trace_id, statement)
        held = self._index.get(key)
        entry: list[Any]
        if held is not None:  # the same statement in the same trace: a twin, or a repeat
            call = _call(span, statement)
            scope, start_ns, end_ns = call.scope, call.start_ns, call.end_ns
            for entry in islice(reversed(held), TWIN_SCAN):
                other = entry[0]  # (twins: two scopes, overlapping; checked here before building a Call)
                if other.scope_name == scope or other.start_ns > end_ns or start_ns > other.end_ns:
                    continue
                seen = _call(other, statement)
                if twins(seen, call):
                    if outer(seen, call):
                        self._merged(seen.scope, call.scope)
                    else:  # the new span wraps the held one: keep it in its place
                        self._merged(call.scope, seen.scope)
                        entry[0] = span
                    return
            entry = [span, key]
            held.append(entry)
        else:  # the common case: nothing built but the entry
            entry = [span, key]
            self._index[key] = [entry]
        self._held.append(entry)
        if len(self._held) > self.window:
            self._release()

    def _merged(self, kept: str, dropped: str) -> None:
        self.duplicates += 1
        self.scopes[kept, dropped] = self.scopes.get((kept, dropped), 0) + 1

    def _release(self) -> None:
        span, key = self._held.popleft()
        held = self._index.get(key)
        if held is not None:
            if len(held) == 1:
                del self._index[key]
            elif held[0][0] is span:  # a key's entries are held in arrival order: the oldest goes
                del held[0]
            else:
                held[:] = [entry for entry in held if entry[0] is not span]
        self.sink(span)

    def flush(self) -> None:
        """Pass on every span still held."""
        while self._held:
            self._release()

    def to_json(self) -> dict[str, Any]:
        """``summary.duplicates`` of the JSON report."""
        return {
            "merged": self.duplicates,
            "scopes": [
                {"kept": kept, "dropped": dropped, "spans": spans}
                for (kept, dropped), spans in sorted(self.scopes.items())
            ],
        }
