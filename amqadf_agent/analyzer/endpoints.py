"""The endpoint view: per route, how busy, failing and slow it is, and where its time goes.

An APM user's first question is "which endpoints are slow, failing or busy, and why"; every SERVER
span carries the answer. A *route* is, per ``service.name``:

* ``METHOD http.route`` of a SERVER span (the method from ``http.request.method`` or the older
  ``http.method``; the route alone without one);
* ``rpc.service/rpc.method`` of a SERVER span without ``http.route``;
* ``consume <messaging.destination.name>`` of a CONSUMER span;
* the span name where nothing else exists.

Per route: requests, errors (status ERROR, or an HTTP status of 500 or more), p50/p95/p99 of the
server span durations (nearest rank over a reservoir of ``MAX_SAMPLES``), and the CLIENT children of
the request split into database calls (``db.system.name``/``db.system``), outbound HTTP calls and
other client calls, as calls and time per request. A database span that names no statement nor
operation (SQLAlchemy's ``connect``: a connection taken from the pool, or opened) is not a call: its
time, a wait for the database, counts in the database time. The share of the request's time is db,
http and ``other`` (the rest of the server span: the application's own code, waits, internal spans);
db and http there are the time at least one call of the kind ran (calls issued concurrently,
overlapping, count once), where the time per request is the calls' total.

Children are attributed to the SERVER span of the same trace and service that arrives after them (an
exporter sends a child before its parent: children end first); the first such server span of a
trace takes them (a trace that re-enters one service is counted under its first route). A call that
ends after its request (a query a timed-out request left running, a task it did not wait for) arrives
after it: it is still the request's, counted with its calls and, apart, as a call *after the response*
with the time it ran on past the request's end (the database kept working for a client that had given
up). The last ``MAX_PENDING_TRACES`` requests (of all services) are remembered for that: a call whose
start falls within one of them and whose end is after it. A call seen
by two instrumentations (the ORM's span and the DB-API's beside or inside it) is counted once
(``analyzer.dedup.collapse``). Memory: per service at most ``MAX_PENDING_TRACES`` traces whose client
spans (referenced, not copied) wait for their server span, and at most ``MAX_PENDING_CALLS`` such
spans in all (the oldest traces are dropped, counted in ``dropped_calls``: a background job has no
server span; an exporter sends a request's spans in one batch, so few wait), ``MAX_ROUTES`` routes
(the rest go to one ``(other routes)`` row), and for linking findings to routes at most
``MAX_LINKED_TRACES`` trace ids of requests that ran enough or slow enough queries to be a database
or call finding's example (two serialized queries, a repeated one, an N+1, a slow query), or HTTP
calls enough (N+1 HTTP, serialized, chatty, a repeated GET).

``link(recommendations)`` names on each route the findings whose example traces ran under it.
"""

from __future__ import annotations

import itertools
import math
import random
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from amqadf_agent.analyzer.dedup import Call, collapse
from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    STATUS_CODE_ERROR,
    Record,
    SpanRecord,
    covered_ns,
    service_name,
)
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.semconv import (
    ATTR_DB_OPERATION_NAME,
    ATTR_DB_OPERATION_OLD,
    ATTR_DB_QUERY_SUMMARY,
    ATTR_DB_QUERY_TEXT,
    ATTR_DB_STATEMENT_OLD,
    ATTR_DB_SYSTEM_NAME,
    ATTR_DB_SYSTEM_OLD,
    ATTR_HTTP_METHOD_OLD,
    ATTR_HTTP_REQUEST_METHOD,
    ATTR_HTTP_RESPONSE_STATUS_CODE,
    ATTR_HTTP_ROUTE,
    ATTR_HTTP_STATUS_CODE_OLD,
)

__all__ = ["EndpointRules", "RouteStats"]

#: Routes kept; the traffic of any further route is counted under ``OTHER_ROUTE``.
MAX_ROUTES: Final = 500
#: Routes the JSON report lists (by total time); the text, Markdown and HTML show fewer.
TOP_ROUTES: Final = 50
#: Durations kept per route for its percentiles (8 bytes each).
MAX_SAMPLES: Final = 1024
#: Traces whose client spans wait for their server span.
MAX_PENDING_TRACES: Final = 10_000
#: Client spans waiting for their request, in all: a trace of 300,000 queries held each one's record.
MAX_PENDING_CALLS: Final = 50_000
#: Trace ids remembered to link findings to routes.
MAX_LINKED_TRACES: Final = 100_000
#: A request with this many db calls may hold a finding (the smallest: two serialized queries, or one
#: repeated; an N+1 needs 5).
LINK_MIN_DB_CALLS: Final = 2
#: A request with this many outbound HTTP calls may hold a call finding (the smallest: a GET made twice).
LINK_MIN_HTTP_CALLS: Final = 2
OTHER_ROUTE: Final = "(other routes)"

# Attribute names of RPC and messaging spans (OpenTelemetry semantic conventions).
_RPC_SERVICE: Final = "rpc.service"
_RPC_METHOD: Final = "rpc.method"
_MESSAGING_DESTINATION: Final = "messaging.destination.name"
_URL_FULL: Final = "url.full"
_HTTP_URL_OLD: Final = "http.url"

# Kinds of child call.
_DB: Final = 0
_HTTP: Final = 1
_OTHER: Final = 2
#: A database span with no statement nor operation: a connection taken or opened (time, not a call).
_DB_CONNECT: Final = 3
_DB_KINDS: Final = (_DB, _DB_CONNECT)
_HTTP_KINDS: Final = (_HTTP,)


class RouteStats:
    """Counters of one route."""

    __slots__ = (
        "db_busy_s",
        "db_calls",
        "db_s",
        "errors",
        "findings",
        "http_busy_s",
        "http_calls",
        "http_s",
        "late_calls",
        "late_s",
        "method",
        "requests",
        "route",
        "samples",
        "service",
        "total_s",
    )

    def __init__(self, service: str, method: str, route: str) -> None:
        self.service = service
        self.method = method
        self.route = route
        self.requests = 0
        self.errors = 0
        self.total_s = 0.0
        self.db_calls = 0
        self.db_s = 0.0
        self.http_calls = 0
        self.http_s = 0.0
        #: Of the requests' time, the time at least one db (http) call ran: the share's numerator.
        self.db_busy_s = 0.0
        self.http_busy_s = 0.0
        #: Calls that ended after their request, and the time they ran on past its end.
        self.late_calls = 0
        self.late_s = 0.0
        self.samples: array[float] = array("d")
        #: Fingerprint -> rule of the findings seen under this route.
        self.findings: dict[str, str] = {}

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the sampled durations, seconds."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]

    def to_dict(self) -> dict[str, Any]:
        requests = self.requests or 1
        total = self.total_s
        db = min(self.db_busy_s, total)
        http = min(self.http_busy_s, max(total - db, 0.0))
        share = {"db": 0.0, "http": 0.0, "other": 0.0}
        if total > 0:
            share = {
                "db": round(db / total, 4),
                "http": round(http / total, 4),
                "other": round(max(total - db - http, 0.0) / total, 4),
            }

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "service": self.service,
            "method": self.method,
            "route": self.route,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / requests, 4),
            "total_ms": round(total * 1000, 3),
            "p50_ms": ms(self.quantile(0.5)),
            "p95_ms": ms(self.quantile(0.95)),
            "p99_ms": ms(self.quantile(0.99)),
            "db_calls_per_request": round(self.db_calls / requests, 3),
            "db_ms_per_request": round(self.db_s * 1000 / requests, 3),
            "http_calls_per_request": round(self.http_calls / requests, 3),
            "http_ms_per_request": round(self.http_s * 1000 / requests, 3),
            "share": share,
            "calls_after_response": self.late_calls,
            "ms_after_response": round(self.late_s * 1000, 3),
            "findings": [{"fingerprint": f, "rule": r} for f, r in sorted(self.findings.items())],
        }


#: A client call waiting for its request: (kind, the span); what the request needs of it is read when
#: the request arrives (an exporter sends both within one batch, mostly).
_PendingCall = tuple[int, SpanRecord]
#: A request counted: its route, start and end (ns).
_Answered = tuple[RouteStats, int, int]


class EndpointRules:
    """Feed every record (``add``), then read ``routes()``/``to_json()``."""

    #: The span kinds read: requests (server, consumer) and their calls (client).
    SPAN_KINDS: ClassVar[frozenset[int]] = frozenset({SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_CONSUMER})

    def __init__(
        self,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        slow_query_s: float = 0.5,
    ) -> None:
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.slow_query_s = slow_query_s
        self._routes: dict[tuple[str, str, str], RouteStats] = {}
        self._other: RouteStats | None = None
        #: Per ``service.name``, trace id -> its calls waiting for the request, oldest trace first.
        self._pending_of: dict[str, OrderedDict[str, list[_PendingCall]]] = {}
        self._pending: OrderedDict[str, list[_PendingCall]] = OrderedDict()
        #: Per ``service.name``, trace id -> its request counted (route, start, end), for the calls
        #: that end after it; the latest ``MAX_PENDING_TRACES`` of all services, oldest first in
        #: ``_answered_order`` (one bound for all: 300 services kept 2,000 each, 180 MB).
        self._answered_of: dict[str, dict[str, _Answered]] = {}
        self._answered: dict[str, _Answered] = {}
        self._answered_order: deque[tuple[dict[str, _Answered], str]] = deque()
        self._linked: dict[str, RouteStats] = {}
        #: Requests with a slow query apart (rare, and their examples are the slowest, so they may come
        #: after ``_linked`` is full of requests with a few calls).
        self._linked_slow: dict[str, RouteStats] = {}
        #: Client spans held in the pending lists, and those dropped unattributed (``MAX_PENDING_CALLS``).
        self._pending_calls = 0
        self.dropped_calls = 0
        self._rng = random.Random(0)
        self._last_resource: object = None
        self._service = ""
        self._keep = True
        #: Child calls counted once although two instrumentations recorded them.
        self.duplicates = 0

    def add(self, record: Record) -> None:
        """Take a span into account (other records are ignored)."""
        if type(record) is not SpanRecord:
            return
        if record.resource is not self._last_resource:
            self._last_resource = record.resource
            self._service = name = service_name(record.resource)
            self._keep = self.service is None or name == self.service
            pending_of = self._pending_of.get(name)
            if pending_of is None:
                pending_of = self._pending_of[name] = OrderedDict()
            self._pending = pending_of
            answered_of = self._answered_of.get(name)
            if answered_of is None:
                answered_of = self._answered_of[name] = {}
            self._answered = answered_of
        if not self._keep:
            return
        kind = record.kind
        if kind == SPAN_KIND_CLIENT:  # the hot path: keep a reference, decide nothing yet
            attributes = record.attributes
            if attributes.get(ATTR_DB_SYSTEM_NAME) or attributes.get(ATTR_DB_SYSTEM_OLD):
                # (most db spans name their statement: the first name _names_work reads)
                call = (
                    _DB if attributes.get(ATTR_DB_QUERY_TEXT) or _names_work(attributes) else _DB_CONNECT,
                    record,
                )
            elif attributes.get(ATTR_HTTP_REQUEST_METHOD) or attributes.get(ATTR_HTTP_METHOD_OLD):
                call = (_HTTP, record)
            else:
                call = (_OTHER, record)
            pending = self._pending.get(record.trace_id)
            if pending is None:
                answered = self._answered.get(record.trace_id)
                if answered is not None and answered[1] <= record.start_ns <= answered[2] < record.end_ns:
                    self._add_late(answered[0], call, answered[2])
                    return
                self._pending[record.trace_id] = [call]
                if len(self._pending) > MAX_PENDING_TRACES:
                    dropped = len(self._pending.popitem(last=False)[1])
                    self._pending_calls -= dropped
                    self.dropped_calls += dropped
            else:
                pending.append(call)
            self._pending_calls += 1
            if self._pending_calls > MAX_PENDING_CALLS:
                self._shed()
        elif kind in (SPAN_KIND_SERVER, SPAN_KIND_CONSUMER):
            self._add_request(record)

    def _add_request(self, span: SpanRecord) -> None:
        end_ns = span.end_ns
        if (self.since_ns is not None and end_ns < self.since_ns) or (
            self.until_ns is not None and end_ns > self.until_ns
        ):
            self._pending_calls -= len(self._pending.pop(span.trace_id, ()))
            return
        method, route = route_of(span)
        stats = self._route(self._service, method, route)
        duration = max(end_ns - span.start_ns, 0) / 1e9
        stats.requests += 1
        stats.total_s += duration
        if _failed(span):
            stats.errors += 1
        samples = stats.samples
        if len(samples) < MAX_SAMPLES:
            samples.append(duration)
        else:
            slot = int(self._rng.random() * stats.requests)  # randrange costs ~10x this
            if slot < MAX_SAMPLES:
                samples[slot] = duration
        answered = self._answered
        if span.trace_id not in answered:  # the first request of the trace takes its late calls
            answered[span.trace_id] = (stats, span.start_ns, end_ns)
            order = self._answered_order
            order.append((answered, span.trace_id))
            if len(order) > MAX_PENDING_TRACES:
                of_service, trace_id = order.popleft()
                del of_service[trace_id]
        pending = self._pending.pop(span.trace_id, None)
        if pending is None:
            return
        self._pending_calls -= len(pending)
        # One pass: counts and times per kind; twins are possible only with two scopes of one kind.
        counts = [0, 0, 0, 0]
        times = [0, 0, 0, 0]
        longest_db = 0
        scopes: list[str | None] = [None, None, None, None]
        mixed = False
        for kind, call in pending:
            start, end, scope = call.start_ns, call.end_ns, call.scope_name
            took = end - start if end > start else 0
            counts[kind] += 1
            times[kind] += took
            if kind == _DB and took > longest_db:
                longest_db = took
            if end > end_ns:
                stats.late_calls += 1
                stats.late_s += (end - end_ns) / 1e9
            seen = scopes[kind]
            if seen is None:
                scopes[kind] = scope
            elif seen != scope:
                mixed = True
        timed: list[tuple[int, Any]] = pending  # (kind, a span or a Call): their time, for _busy
        if mixed:
            timed = [(k, c) for k, c in pending if k == _DB_CONNECT]
            for kind in (_DB, _HTTP):
                calls = [_call(kind, c) for k, c in pending if k == kind]
                kept = collapse(calls)
                self.duplicates += len(calls) - len(kept)
                counts[kind] = len(kept)
                times[kind] = sum(max(c.end_ns - c.start_ns, 0) for c in kept)
                timed += [(kind, c) for c in kept]
        stats.db_calls += counts[_DB]
        stats.db_s += (times[_DB] + times[_DB_CONNECT]) / 1e9
        stats.http_calls += counts[_HTTP]
        stats.http_s += times[_HTTP] / 1e9
        if counts[_DB] or counts[_DB_CONNECT]:
            stats.db_busy_s += _busy(timed, _DB_KINDS, span.start_ns, end_ns) / 1e9
        if counts[_HTTP]:
            stats.http_busy_s += _busy(timed, _HTTP_KINDS, span.start_ns, end_ns) / 1e9
        if longest_db >= self.slow_query_s * 1e9:
            if len(self._linked_slow) < MAX_LINKED_TRACES:
                self._linked_slow.setdefault(span.trace_id, stats)
        elif (counts[_DB] >= LINK_MIN_DB_CALLS or counts[_HTTP] >= LINK_MIN_HTTP_CALLS) and len(
            self._linked
        ) < MAX_LINKED_TRACES:
            self._linked.setdefault(span.trace_id, stats)

    def _shed(self) -> None:
        """Drop the oldest waiting traces, this service's first, until ``MAX_PENDING_CALLS`` holds."""
        for pending_of in itertools.chain((self._pending,), self._pending_of.values()):
            while pending_of and self._pending_calls > MAX_PENDING_CALLS:
                dropped = len(pending_of.popitem(last=False)[1])
                self._pending_calls -= dropped
                self.dropped_calls += dropped
            if self._pending_calls <= MAX_PENDING_CALLS:
                return

    def _add_late(self, stats: RouteStats, call: _PendingCall, request_end_ns: int) -> None:
        """A call of a request counted already, which ended after it."""
        kind, span = call
        took = max(span.end_ns - span.start_ns, 0)
        within = max(request_end_ns - span.start_ns, 0) / 1e9  # of the request's time
        if kind == _DB:
            stats.db_calls += 1
            stats.db_s += took / 1e9
            stats.db_busy_s += within
            if took >= self.slow_query_s * 1e9 and len(self._linked_slow) < MAX_LINKED_TRACES:
                self._linked_slow.setdefault(span.trace_id, stats)
        elif kind == _DB_CONNECT:
            stats.db_s += took / 1e9
            stats.db_busy_s += within
        elif kind == _HTTP:
            stats.http_calls += 1
            stats.http_s += took / 1e9
            stats.http_busy_s += within
        stats.late_calls += 1
        stats.late_s += (span.end_ns - request_end_ns) / 1e9

    def _route(self, service: str, method: str, route: str) -> RouteStats:
        key = (service, method, route)
        stats = self._routes.get(key)
        if stats is None:
            if len(self._routes) >= MAX_ROUTES:
                if self._other is None:
                    self._other = RouteStats("", "", OTHER_ROUTE)
                return self._other
            stats = self._routes[key] = RouteStats(service, method, route)
        return stats

    def link(self, recommendations: Iterable[Recommendation]) -> None:
        """Name each finding on the routes its example traces ran under."""
        for recommendation in recommendations:
            for trace_id in recommendation.evidence.trace_ids:
                stats = self._linked.get(trace_id) or self._linked_slow.get(trace_id)
                if stats is not None:
                    stats.findings[recommendation.fingerprint] = (
                        f"{recommendation.category}/{recommendation.rule}"
                    )

    def routes(self) -> list[RouteStats]:
        """Every route kept (and the ``(other routes)`` row), most total time first."""
        every = list(self._routes.values())
        if self._other is not None:
            every.append(self._other)
        return sorted(every, key=lambda r: (-r.total_s, r.service, r.route, r.method))

    def to_json(self, limit: int = TOP_ROUTES) -> list[dict[str, Any]]:
        """The ``top_routes`` section of the JSON report."""
        return [stats.to_dict() for stats in self.routes()[:limit]]


def _busy(calls: list[tuple[int, Any]], kinds: tuple[int, ...], start_ns: int, end_ns: int) -> int:
    """The time within ``[start_ns, end_ns]`` at least one of ``calls`` (kind, a span or a ``Call``) of
    ``kinds`` ran, ns: calls that overlap (issued concurrently) count once. One pass while they come
    one after another (the common case, in the order an exporter sends them); else sorted and merged."""
    busy = 0
    last_end = -1
    for kind, call in calls:
        if kind not in kinds:
            continue
        call_start, call_end = call.start_ns, call.end_ns
        if call_start < last_end:
            ordered = sorted((c.start_ns, c.end_ns) for k, c in calls if k in kinds)
            return covered_ns(ordered, start_ns, end_ns)
        last_end = call_end
        within = min(call_end, end_ns) - max(call_start, start_ns)
        if within > 0:
            busy += within
    return busy


def _call(kind: int, span: SpanRecord) -> Call:
    """What deduplication compares of a client span: its statement (db) or URL (http)."""
    attributes = span.attributes
    if kind == _DB:
        what = attributes.get(ATTR_DB_QUERY_TEXT) or attributes.get(ATTR_DB_STATEMENT_OLD) or span.name
    else:
        what = attributes.get(_URL_FULL) or attributes.get(_HTTP_URL_OLD) or span.name
    text = what if isinstance(what, str) else str(what)
    return Call(span.start_ns, span.end_ns, text, span.scope_name, span.parent_span_id, span.span_id)


def _names_work(attributes: Mapping[str, object]) -> bool:
    """Whether a database span names a statement or an operation (a call, not a connection)."""
    return bool(
        attributes.get(ATTR_DB_QUERY_TEXT)
        or attributes.get(ATTR_DB_STATEMENT_OLD)
        or attributes.get(ATTR_DB_QUERY_SUMMARY)
        or attributes.get(ATTR_DB_OPERATION_NAME)
        or attributes.get(ATTR_DB_OPERATION_OLD)
    )


def route_of(span: SpanRecord) -> tuple[str, str]:
    """``(method, route)`` of a server or consumer span (see the module docstring)."""
    attributes = span.attributes
    route = attributes.get(ATTR_HTTP_ROUTE)
    method = attributes.get(ATTR_HTTP_REQUEST_METHOD) or attributes.get(ATTR_HTTP_METHOD_OLD) or ""
    if isinstance(route, str) and route:
        return (method if isinstance(method, str) else str(method), route)
    rpc_service = attributes.get(_RPC_SERVICE)
    if isinstance(rpc_service, str) and rpc_service:
        rpc_method = attributes.get(_RPC_METHOD)
        return (
            "",
            f"{rpc_service}/{rpc_method}" if isinstance(rpc_method, str) and rpc_method else rpc_service,
        )
    if span.kind == SPAN_KIND_CONSUMER:
        destination = attributes.get(_MESSAGING_DESTINATION)
        if isinstance(destination, str) and destination:
            return ("", f"consume {destination}")
    return ("", span.name)


def _failed(span: SpanRecord) -> bool:
    if span.status_code == STATUS_CODE_ERROR:
        return True
    code = span.attributes.get(ATTR_HTTP_RESPONSE_STATUS_CODE) or span.attributes.get(
        ATTR_HTTP_STATUS_CODE_OLD
    )
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    return isinstance(code, int) and not isinstance(code, bool) and code >= 500
