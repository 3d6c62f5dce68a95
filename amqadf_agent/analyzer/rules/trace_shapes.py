"""Trace-shape rules: how a request's outbound calls are arranged [Sentry performance detectors,
perf-sentinel].

Spans are buffered per trace (a compact tuple each) and each trace's span tree is read once, when the
trace is flushed: at the end of the input, or, the oldest first, when more than ``max_buffered_spans``
spans wait (a trace whose spans arrive further apart than that is read in parts). A *call* is a CLIENT
span that is an HTTP call (``rules.http_calls``: method and URL template) or a database query (its
normalized statement, ``analyzer.sql``). The rules, each a finding of category ``calls``:

* **N+1 HTTP** (``n_plus_one_http``): at least 10 calls to the same method and URL template under one
  parent, at least 300 ms together; time that could be saved: the time the calls cover less the longest
  (one batched call): all but the longest when they ran one after another, little when they were issued
  concurrently (overlapping: the request waited for them together already).
* **MN+1** (``mn_plus_one``): a sequence of 2 to 5 distinct calls repeated at least 3 times in a row
  under one parent, at least 100 ms together (a loop doing several calls per item).
* **Serialized calls** (``serialized_calls``): at least 2 consecutive non-overlapping sibling queries,
  or 3 HTTP calls, that do not depend on each other (reads made once under the parent; a query with a
  bind parameter may use a previous result, as Sentry's detector holds, and is not counted); in parallel
  they would take the longest one: time saved = total - longest, at least 100 ms and at least 10% of
  the parent.
* **Fan-out** (``fan_out``): more than 20 children under one span, not mostly one query or URL (a loop is an
  N+1, reported by those rules with its saving); the ASGI instrumentation's spans of the messages a
  request sends and receives (``asgi.event.type``) are not children of it.
* **Chatty service** (``chatty_service``): at least 15 HTTP calls to one peer in one trace.
* **Redundant calls** (``redundant_calls``): the same GET (same URL, query included) at least twice in
  one trace, not counting failed calls (retries).

Findings are aggregated over traces by rule and subject (the URL template, the call sequence, the
parent span's name, the peer); each names the routes (``http.route`` of the trace's first SERVER or
CONSUMER span, else that span's name) and services it was seen in, example trace and span ids, the
code locations its calls came from (the client spans' ``code.*``, as for the database findings:
file, line, function, share of the calls), and the time at stake, which ranks it (``impact_s``: the
time that could be saved, or the time in the calls for fan-out and chatty).
Below ``min_traces`` traces with calls in the whole input no finding is made.

One module over 600 lines: the detectors share one bounded per-trace buffer and one pass over each
trace's spans; apart, each would buffer and walk the trace again.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    SPAN_KIND_UNSPECIFIED,
    STATUS_CODE_ERROR,
    CodeWhere,
    Record,
    SpanRecord,
    code_location,
    covered_ns,
    service_name,
)
from amqadf_agent.analyzer.recommendation import CodeLocation, Evidence, Recommendation, Severity
from amqadf_agent.analyzer.rules.http_calls import http_target, url_template
from amqadf_agent.analyzer.sql import normalize_call
from amqadf_agent.semconv import (
    ATTR_ASGI_EVENT_TYPE,
    ATTR_CODE_FILE_PATH,
    ATTR_CODE_FILEPATH_OLD,
    ATTR_DB_QUERY_TEXT,
    ATTR_DB_STATEMENT_OLD,
    ATTR_DB_SYSTEM_NAME,
    ATTR_DB_SYSTEM_OLD,
    ATTR_HTTP_ROUTE,
)

__all__ = ["TraceShapeConfig", "TraceShapeRules", "analyze_trace_shapes"]

CATEGORY: Final = "calls"

# Thresholds, each with its source.
#: Sentry's N+1 API Calls detector: 10 calls to one URL pattern, 300 ms together.
N_PLUS_ONE_HTTP_MIN_CALLS: Final = 10
N_PLUS_ONE_HTTP_MIN_TOTAL_S: Final = 0.3
#: Sentry's N+1 DB (MN+1) detector: a pattern of up to 5 spans, repeated 3 times, 100 ms together.
MN_PLUS_ONE_MAX_PATTERN: Final = 5
MN_PLUS_ONE_MIN_REPEATS: Final = 3
MN_PLUS_ONE_MIN_TOTAL_S: Final = 0.1
#: Sentry's Consecutive DB Queries (2 queries) and Consecutive HTTP (3 calls) detectors; the time saved
#: at least 100 ms and at least 10% of the parent span (Sentry's min_time_saved and ratio).
SERIALIZED_MIN_QUERIES: Final = 2
SERIALIZED_MIN_HTTP: Final = 3
SERIALIZED_MIN_SAVED_S: Final = 0.1
SERIALIZED_MIN_SAVED_RATIO: Final = 0.1
#: perf-sentinel's fan-out detector: more than 20 children under one parent.
FAN_OUT_MAX_CHILDREN: Final = 20
#: perf-sentinel's chatty-service detector: 15 outbound calls in one trace.
CHATTY_MIN_CALLS: Final = 15
#: perf-sentinel's redundant-call detector: the same call with the same parameters twice in a trace.
REDUNDANT_MIN_REPEATS: Final = 2

#: Methods whose calls read only: calls with them can run in any order.
_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_DIGITS: Final = "0123456789"
#: What may precede a number literal ending a statement (not a name like ``t1``).
_LITERAL_BOUNDARY: Final = frozenset(" =<>(,+-*/")
_SELECT: Final = re.compile(r"\s*\(?\s*(?:SELECT|WITH)\b", re.IGNORECASE).match

# Kinds of buffered span.
_OTHER: Final = 0
_HTTP: Final = 1
_DB: Final = 2


#: A span as buffered: (parent span id, span id, start ns, end ns, kind, statement | URL | name,
#: HTTP method or "", failed, service.name, code location or None). A plain tuple: the cheapest to
#: build once per span.
_Raw = tuple[str, str, int, int, int, str, str, bool, str, CodeWhere | None]
#: Spans in start order (span id breaks ties); the same positions in ``_Raw`` and ``_Span``.
_BY_START: Final = operator.itemgetter(2, 1)
#: Statements remembered with their shape (the memo is emptied when full).
_MEMO_MAX: Final = 4096


def _mostly_one_call(kids: list[_Span]) -> bool:
    """More than half of ``kids`` are one query or one URL template: repetition, not fan-out."""
    counts = Counter((kid.kind, kid.key) for kid in kids if kid.kind != _OTHER)
    return bool(counts) and max(counts.values()) * 2 > len(kids)


class _Span(NamedTuple):
    """What a trace buffer keeps of one span."""

    parent: str
    span_id: str
    start_ns: int
    end_ns: int
    #: ``_OTHER``, ``_HTTP`` or ``_DB``.
    kind: int
    #: ``METHOD host/template`` of an HTTP call, the normalized statement of a query, else the name.
    key: str
    #: Of an HTTP call: its method and whole URL (kept in the buffer only); ``""`` otherwise.
    identity: str
    peer: str
    #: A call that reads only and uses no result of an earlier one (the module docstring).
    independent: bool
    failed: bool
    service: str
    #: The call's code location (``code.*``), ``None`` when the span has none.
    where: CodeWhere | None


@dataclass(frozen=True, slots=True)
class TraceShapeConfig:
    """Thresholds of the trace-shape rules (the module constants, overridable for tests)."""

    n_plus_one_http_min_calls: int = N_PLUS_ONE_HTTP_MIN_CALLS
    n_plus_one_http_min_total_s: float = N_PLUS_ONE_HTTP_MIN_TOTAL_S
    mn_plus_one_max_pattern: int = MN_PLUS_ONE_MAX_PATTERN
    mn_plus_one_min_repeats: int = MN_PLUS_ONE_MIN_REPEATS
    mn_plus_one_min_total_s: float = MN_PLUS_ONE_MIN_TOTAL_S
    serialized_min_queries: int = SERIALIZED_MIN_QUERIES
    serialized_min_http: int = SERIALIZED_MIN_HTTP
    serialized_min_saved_s: float = SERIALIZED_MIN_SAVED_S
    serialized_min_saved_ratio: float = SERIALIZED_MIN_SAVED_RATIO
    fan_out_max_children: int = FAN_OUT_MAX_CHILDREN
    chatty_min_calls: int = CHATTY_MIN_CALLS
    redundant_min_repeats: int = REDUNDANT_MIN_REPEATS
    #: Fewer traces with calls (or a fan-out) than this in the whole input: no finding at all.
    min_traces: int = 1
    max_examples: int = 3
    #: Code locations listed per finding (most calls first), and counted per finding.
    max_locations: int = 5
    max_counted_locations: int = 64
    #: Spans of unfinished traces kept, all traces together: about 450 bytes each with the ids and the
    #: statement or URL text they keep alive (23 MB when full, measured on the analyzer bench's traffic).
    max_buffered_spans: int = 50_000
    #: Findings (rule and subject) kept; occurrences of further ones are counted in ``not_kept``.
    max_findings: int = 2_000


class _Finding:
    """One rule on one subject, over every trace it was seen in."""

    __slots__ = (
        "calls",
        "concurrent",
        "end_ns",
        "examples",
        "largest",
        "last_trace",
        "locations",
        "occurrences",
        "routes",
        "saved_s",
        "services",
        "start_ns",
        "time_s",
        "traces",
    )

    def __init__(self) -> None:
        self.occurrences = 0
        #: Occurrences whose calls overlapped (issued concurrently).
        self.concurrent = 0
        #: Traces it was seen in (a trace's occurrences are noted one after another, when it is read).
        self.traces = 0
        self.last_trace = ""
        self.calls = 0
        self.largest = 0
        self.time_s = 0.0
        self.saved_s = 0.0
        self.routes: set[str] = set()
        self.services: set[str] = set()
        self.examples: list[tuple[str, str]] = []
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        #: (file, line, function) -> the finding's calls from there, a bounded number of lines.
        self.locations: dict[CodeWhere, int] = {}


class TraceShapeRules:
    """Feed every record (``add``), then ask for ``recommendations()``."""

    #: Every kind: a parent of calls and a fan-out can be any span.
    SPAN_KINDS: ClassVar[frozenset[int]] = frozenset(
        {
            SPAN_KIND_UNSPECIFIED,
            SPAN_KIND_INTERNAL,
            SPAN_KIND_SERVER,
            SPAN_KIND_CLIENT,
            SPAN_KIND_PRODUCER,
            SPAN_KIND_CONSUMER,
        }
    )

    def __init__(
        self,
        config: TraceShapeConfig | None = None,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        self.config = config or TraceShapeConfig()
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        #: Whether a time filter is set at all (most runs: none, one test per span).
        self._timed = since_ns is not None or until_ns is not None
        self._traces: dict[str, list[_Raw]] = {}
        self._statements: dict[str, tuple[str, bool]] = {}
        self._statement_heads: dict[str, tuple[str, bool]] = {}
        self._urls: dict[str, tuple[str, str]] = {}
        self._routes: dict[str, str] = {}
        self._order: deque[str] = deque()
        self._buffered = 0
        self._traces_read = 0
        self._findings: dict[tuple[str, str], _Finding] = {}
        #: Occurrences of findings beyond ``config.max_findings`` (each URL of a crawler its own).
        self.not_kept = 0
        #: Told of each finding's saving in a trace: ``(rule, subject, trace id, service, seconds)``
        #: (``impact.ImpactFeed`` prices the fixes per request with it).
        self.saving_listener: Callable[[str, str, str, str, float], None] | None = None
        self._last_resource: object = None
        self._last_service = ""
        self._keep = True

    def add(self, record: Record) -> None:
        """Take a span into account (other records and spans outside the filters are skipped).

        The hot path, once per span: only references are kept here (the statement or URL text the
        span already holds); statements are normalized and URLs templated when a trace is read.
        """
        if type(record) is not SpanRecord:
            return
        span = record
        if span.resource is not self._last_resource:
            self._last_resource = span.resource
            self._last_service = service_name(span.resource)
            self._keep = self.service is None or self._last_service == self.service
        if not self._keep:
            return
        end_ns = span.end_ns
        if self._timed and (
            (self.since_ns is not None and end_ns < self.since_ns)
            or (self.until_ns is not None and end_ns > self.until_ns)
        ):
            return
        kind, text, method, where = _OTHER, span.name, "", None
        if span.kind == SPAN_KIND_CLIENT:
            attributes = span.attributes
            filename = attributes.get(ATTR_CODE_FILE_PATH) or attributes.get(ATTR_CODE_FILEPATH_OLD)
            if filename:
                where = code_location(filename, attributes)
            statement = attributes.get(ATTR_DB_QUERY_TEXT) or attributes.get(ATTR_DB_STATEMENT_OLD)
            if isinstance(statement, str) and (
                attributes.get(ATTR_DB_SYSTEM_NAME) or attributes.get(ATTR_DB_SYSTEM_OLD)
            ):
                kind, text = _DB, statement
            else:
                target = http_target(attributes)
                if target is not None:
                    kind, (method, text) = _HTTP, target
        elif (span.kind == SPAN_KIND_SERVER or span.kind == SPAN_KIND_CONSUMER) and (
            span.trace_id not in self._routes
        ):
            route = span.attributes.get(ATTR_HTTP_ROUTE)
            self._routes[span.trace_id] = route if isinstance(route, str) and route else span.name
        elif span.kind == SPAN_KIND_INTERNAL and ATTR_ASGI_EVENT_TYPE in span.attributes:
            return  # a message of the request's own, not work it started: no child of a fan-out
        entry: _Raw = (
            span.parent_span_id,
            span.span_id,
            span.start_ns,
            end_ns,
            kind,
            text,
            method,
            span.status_code == STATUS_CODE_ERROR,
            self._last_service,
            where,
        )
        spans = self._traces.get(span.trace_id)
        if spans is None:
            self._traces[span.trace_id] = [entry]
            self._order.append(span.trace_id)
        else:
            spans.append(entry)
        self._buffered += 1
        if self._buffered > self.config.max_buffered_spans:
            while self._buffered > self.config.max_buffered_spans and self._order:
                oldest = self._order.popleft()
                self._flush(oldest, self._traces.pop(oldest))

    def recommendations(self) -> list[Recommendation]:
        """Every finding, most time at stake first. Flushes the trace buffers."""
        while self._order:
            oldest = self._order.popleft()
            self._flush(oldest, self._traces.pop(oldest))
        if self._traces_read < self.config.min_traces:
            return []
        found = [self._recommendation(rule, subject, f) for (rule, subject), f in self._findings.items()]
        return sorted(found, key=Recommendation.sort_key)

    # -- one trace -------------------------------------------------------------------------------------

    def _flush(self, trace_id: str, raw: list[_Raw]) -> None:
        self._buffered -= len(raw)
        route = self._routes.pop(trace_id, "")
        if len(raw) < 2:
            return
        config = self.config
        # One pass over the raw tuples; only the calls of parents with two or more, the children of a
        # wide parent and the HTTP calls are described (most traces stop here, or convert a few).
        sizes: dict[str, int] = {}
        calls_by_parent: dict[str, list[_Raw]] = {}
        http: list[_Raw] = []
        # No parent in a trace this small has children enough for a fan-out: none counted (most traces).
        count_children = len(raw) > config.fan_out_max_children
        for entry in raw:
            parent_id = entry[0]
            kind = entry[4]
            if parent_id:
                if count_children:
                    sizes[parent_id] = sizes.get(parent_id, 0) + 1
                if kind:
                    group = calls_by_parent.get(parent_id)
                    if group is None:
                        calls_by_parent[parent_id] = [entry]
                    else:
                        group.append(entry)
            if kind == _HTTP:
                http.append(entry)
        wide = [p for p, n in sizes.items() if n > config.fan_out_max_children]
        busy = [p for p, group in calls_by_parent.items() if len(group) >= 2 and self._may_find(group)]
        if len(http) < config.chatty_min_calls and len({(r[6], r[5]) for r in http}) == len(http):
            http = []  # neither chatty nor a repeated call
        if not wide and not busy and not http:
            return
        self._traces_read += 1
        by_id = {entry[1]: entry for entry in raw} if wide or busy else {}
        for parent_id in wide:
            kids = sorted((self._span(r) for r in raw if r[0] == parent_id), key=_BY_START)
            if _mostly_one_call(kids):
                continue  # a loop over one query or URL: the N+1 rules report it, with its saving
            parent_raw = by_id.get(parent_id)
            name = parent_raw[5] if parent_raw is not None else f"span {parent_id}"
            self._note("fan_out", name, trace_id, route, kids, 0.0)
        for parent_id in busy:
            calls = sorted((self._span(r) for r in calls_by_parent[parent_id]), key=_BY_START)
            parent_raw = by_id.get(parent_id)
            parent = None if parent_raw is None else self._span(parent_raw)
            if len(calls) >= config.n_plus_one_http_min_calls:
                self._n_plus_one_http(trace_id, route, calls)
            if len(calls) >= 2 * config.mn_plus_one_min_repeats:
                self._mn_plus_one(trace_id, route, calls)
            self._serialized(trace_id, route, parent, calls)
        if http:
            self._per_trace(trace_id, route, [self._span(r) for r in http])

    def _may_find(self, group: list[_Raw]) -> bool:
        """Whether the calls under one parent take time enough for a finding: a run's saving is at
        most the group's total minus its longest call, and each rule needs its total."""
        config = self.config
        durations = [max(r[3] - r[2], 0) for r in group]
        total = sum(durations) / 1e9
        if total - max(durations) / 1e9 >= config.serialized_min_saved_s:
            return True
        if len(group) >= 2 * config.mn_plus_one_min_repeats and total >= config.mn_plus_one_min_total_s:
            return True
        return len(group) >= config.n_plus_one_http_min_calls and total >= config.n_plus_one_http_min_total_s

    def _span(self, raw: _Raw) -> _Span:
        """A buffered span with its call described (statement shape, URL template)."""
        parent, span_id, start_ns, end_ns, kind, text, method, failed, service, where = raw
        key, identity, peer, independent = text, "", "", False
        if kind == _DB:
            key, independent = self._statement(text)
        elif kind == _HTTP:
            known_url = self._urls.get(text)
            if known_url is None:
                if len(self._urls) >= _MEMO_MAX:
                    self._urls.clear()
                known_url = self._urls[text] = url_template("http:" + text if text[:2] == "//" else text)
            peer, template = known_url
            # the URL itself tells identical calls apart; it stays in this buffer, never in a finding
            key, identity = f"{method} {template}", f"{method} {text}"
            independent = method in _READ_METHODS
        return _Span(
            parent, span_id, start_ns, end_ns, kind, key, identity, peer, independent, failed, service, where
        )

    def _statement(self, text: str) -> tuple[str, bool]:
        """``(normalized statement, independent)``, remembered: by the text, or for a statement ending
        in a number (``WHERE id = 42``, the commonest literal) by the text before it."""
        known = self._statements.get(text)
        if known is not None:
            return known
        head = text.rstrip(_DIGITS)
        by_head = len(head) < len(text) and head[-1:] in _LITERAL_BOUNDARY
        if by_head:
            known = self._statement_heads.get(head)
            if known is not None:
                return known
        key, placeholders, _digest = normalize_call(text)
        known = (key, not placeholders and _SELECT(key) is not None)
        memo = self._statement_heads if by_head else self._statements
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[head if by_head else text] = known
        return known

    def _note(
        self,
        rule: str,
        subject: str,
        trace_id: str,
        route: str,
        calls: list[_Span],
        saved_s: float,
    ) -> None:
        finding = self._findings.get((rule, subject))
        if finding is None:
            if len(self._findings) >= self.config.max_findings:
                self.not_kept += 1
                return
            finding = self._findings[(rule, subject)] = _Finding()
        finding.occurrences += 1
        if trace_id != finding.last_trace:
            finding.traces += 1
            finding.last_trace = trace_id
        finding.calls += len(calls)
        finding.largest = max(finding.largest, len(calls))
        finding.time_s += sum(_duration(c) for c in calls)
        finding.saved_s += saved_s
        if saved_s > 0 and self.saving_listener is not None:
            self.saving_listener(rule, subject, trace_id, calls[0].service, saved_s)
        if route:
            finding.routes.add(route)
        finding.services.update(c.service for c in calls if c.service)
        locations = finding.locations
        for call in calls:
            where = call.where
            if where is None:
                continue
            if where in locations:
                locations[where] += 1
            elif len(locations) < self.config.max_counted_locations:
                locations[where] = 1
        if len(finding.examples) < self.config.max_examples:
            finding.examples.append((trace_id, calls[0].span_id))
        start = min(c.start_ns for c in calls)
        end = max(c.end_ns for c in calls)
        if start > 0:
            finding.start_ns = start if finding.start_ns is None else min(finding.start_ns, start)
            finding.end_ns = end if finding.end_ns is None else max(finding.end_ns, end)

    def _n_plus_one_http(self, trace_id: str, route: str, calls: list[_Span]) -> None:
        config = self.config
        groups: dict[str, list[_Span]] = {}
        for call in calls:
            if call.kind == _HTTP:
                groups.setdefault(call.key, []).append(call)
        for key, group in groups.items():
            if len(group) < config.n_plus_one_http_min_calls:
                continue
            total = sum(_duration(c) for c in group)
            if total >= config.n_plus_one_http_min_total_s:
                # Calls issued concurrently (asyncio.gather, a thread pool) already overlap: the request
                # waits for the time they cover, and a batched call saves that less the longest.
                longest = max(_duration(c) for c in group)
                covered = _covered(group)
                self._note("n_plus_one_http", key, trace_id, route, group, covered - longest)
                finding = self._findings.get(("n_plus_one_http", key))
                if covered < 0.99 * total and finding is not None:
                    finding.concurrent += 1

    def _mn_plus_one(self, trace_id: str, route: str, calls: list[_Span]) -> None:
        config = self.config
        keys = [c.key for c in calls]
        n = len(keys)
        i = 0
        while i < n:
            best: tuple[int, int] | None = None  # (pattern length, repeats)
            for length in range(2, config.mn_plus_one_max_pattern + 1):
                if i + length * config.mn_plus_one_min_repeats > n:
                    break
                pattern = keys[i : i + length]
                if len(set(pattern)) != length:
                    continue
                repeats = 1
                while keys[i + repeats * length : i + (repeats + 1) * length] == pattern:
                    repeats += 1
                if repeats >= config.mn_plus_one_min_repeats and (
                    best is None or length * repeats > best[0] * best[1]
                ):
                    best = (length, repeats)
            if best is None:
                i += 1
                continue
            length, repeats = best
            run = calls[i : i + length * repeats]
            total = sum(_duration(c) for c in run)
            if total >= config.mn_plus_one_min_total_s:
                # Batched, each of the pattern's calls would run once: the repeats after the first go.
                once = sum(_duration(c) for c in run[:length])
                sequence = " -> ".join(keys[i : i + length])
                self._note("mn_plus_one", sequence, trace_id, route, run, total - once)
            i += length * repeats

    def _serialized(self, trace_id: str, route: str, parent: _Span | None, calls: list[_Span]) -> None:
        # A call made more than once under the parent is a loop (the N+1 rules), not one of a few
        # independent calls.
        counts: dict[str, int] = {}
        for call in calls:
            counts[call.key] = counts.get(call.key, 0) + 1
        run: list[_Span] = []
        for call in calls:
            single = call.independent and counts[call.key] == 1
            if run and (
                call.kind != run[-1].kind or not single or call.start_ns < max(c.end_ns for c in run)
            ):
                self._serialized_run(trace_id, route, parent, run)
                run = []
            if single:
                run.append(call)
        self._serialized_run(trace_id, route, parent, run)

    def _serialized_run(self, trace_id: str, route: str, parent: _Span | None, run: list[_Span]) -> None:
        config = self.config
        if not run:
            return
        needed = config.serialized_min_http if run[0].kind == _HTTP else config.serialized_min_queries
        if len(run) < needed:
            return
        total = sum(_duration(c) for c in run)
        saved = total - max(_duration(c) for c in run)
        if saved < config.serialized_min_saved_s:
            return
        if parent is not None and saved < config.serialized_min_saved_ratio * _duration(parent):
            return
        self._note("serialized_calls", " | ".join(c.key for c in run), trace_id, route, run, saved)

    def _per_trace(self, trace_id: str, route: str, http: list[_Span]) -> None:
        """Chatty service and redundant calls: over the whole trace, whatever the parents."""
        config = self.config
        by_peer: dict[str, list[_Span]] = {}
        same: dict[str, list[_Span]] = {}
        for call in http:
            if call.peer:
                by_peer.setdefault(call.peer, []).append(call)
            if call.key.startswith("GET ") and not call.failed:
                same.setdefault(call.identity, []).append(call)
        for peer, calls in by_peer.items():
            if len(calls) >= config.chatty_min_calls:
                calls.sort(key=lambda s: (s.start_ns, s.span_id))
                self._note("chatty_service", peer, trace_id, route, calls, 0.0)
        for calls in same.values():
            if len(calls) >= config.redundant_min_repeats:
                calls.sort(key=lambda s: (s.start_ns, s.span_id))
                # The time they cover less the first's: all but one when they come one after another,
                # little when they were issued together (concurrent repeats cost load, not latency).
                saved = max(_covered(calls) - _duration(calls[0]), 0.0)
                self._note("redundant_calls", calls[0].key, trace_id, route, calls, saved)

    # -- findings --------------------------------------------------------------------------------------

    def _recommendation(self, rule: str, subject: str, f: _Finding) -> Recommendation:
        config = self.config
        short = subject if len(subject) <= 100 else subject[:97] + "..."
        traces = f.traces
        numbers: dict[str, int | float | str] = {
            "occurrences": f.occurrences,
            "traces_affected": traces,
            "calls": f.calls,
            "largest": f.largest,
            "time_in_calls_ms": round(f.time_s * 1000, 3),
        }
        if f.saved_s:
            numbers["time_saved_ms"] = round(f.saved_s * 1000, 3)
        if f.concurrent:
            numbers["concurrent_occurrences"] = f.concurrent
        if f.routes:
            numbers["route"] = ", ".join(sorted(f.routes)[:5])
        if f.services:
            numbers["service"] = ", ".join(sorted(f.services))
        impact = f.saved_s
        severity: Severity = "high" if f.saved_s >= 1.0 or traces >= 10 else "medium"
        if rule == "n_plus_one_http":
            title = f"N+1 HTTP calls (up to {f.largest} in a row): {short}"
            action = (
                "Fetch these resources with one batched request (an endpoint taking a list of ids), "
                "or concurrently, instead of one request per item."
            )
            if f.concurrent == f.occurrences:
                title = f"N+1 HTTP calls (up to {f.largest}, issued concurrently): {short}"
                action = (
                    "These calls run concurrently already, so the request waits about as long as the "
                    "longest: fetch the resources with one batched request (an endpoint taking a list of "
                    "ids) to make one request to the peer instead of one per item."
                )
            formula = (
                "calls = client calls to this URL template under one parent; saved = covered - longest "
                "(covered: the time at least one of the calls ran)"
            )
            threshold = (
                f"calls >= {config.n_plus_one_http_min_calls} and total_ms >= "
                f"{config.n_plus_one_http_min_total_s * 1000:g} (Sentry N+1 API calls)"
            )
        elif rule == "mn_plus_one":
            title = f"MN+1: a sequence of calls repeated per item: {short}"
            action = (
                "The loop makes the same calls for every item: load each kind of data once for all "
                "items (a JOIN, WHERE ... IN (...), a batched request)."
            )
            formula = "repeats of the sequence in a row under one parent; saved = total - one sequence"
            threshold = (
                f"2..{config.mn_plus_one_max_pattern} distinct calls, repeats >= "
                f"{config.mn_plus_one_min_repeats}, total_ms >= {config.mn_plus_one_min_total_s * 1000:g} "
                "(Sentry N+1 DB, MN+1)"
            )
        elif rule == "serialized_calls":
            title = f"Independent calls run one after another ({f.largest}): {short}"
            action = (
                "These calls do not use each other's results: issue them concurrently (a thread pool, "
                "asyncio.gather) so that the request waits for the longest one only."
            )
            formula = "saved = sum of the durations - the longest"
            threshold = (
                f"queries >= {config.serialized_min_queries} or HTTP calls >= "
                f"{config.serialized_min_http}, non-overlapping, reads made once under the parent; "
                f"saved_ms >= {config.serialized_min_saved_s * 1000:g} and >= "
                f"{config.serialized_min_saved_ratio:.0%} of the parent (Sentry consecutive DB/HTTP)"
            )
        elif rule == "fan_out":
            impact = f.time_s
            severity = "medium" if f.largest > 5 * config.fan_out_max_children else "low"
            title = f"Fan-out: up to {f.largest} child spans under {short}"
            action = (
                "One operation starts many sub-operations: batch them, or bound their number "
                "(paging, a limit on concurrent work)."
            )
            formula = "children = spans whose parent is this span"
            threshold = f"children > {config.fan_out_max_children} (perf-sentinel fan-out)"
        elif rule == "chatty_service":
            impact = f.time_s
            severity = "medium" if f.largest >= 3 * config.chatty_min_calls else "low"
            title = f"Chatty service: up to {f.largest} HTTP calls to {short} per request"
            action = (
                "Each request talks to this peer many times: add a batch endpoint, cache its answers "
                "for the request, or move the logic next to the data."
            )
            formula = "calls = HTTP client calls to this peer in one trace"
            threshold = f"calls per trace >= {config.chatty_min_calls} (perf-sentinel chatty service)"
        else:  # redundant_calls
            severity = "medium" if f.largest >= 5 else "low"
            title = f"Identical HTTP GET repeated in one trace (up to {f.largest}x): {short}"
            action = "Make the request once per request handled and reuse its answer, or cache it."
            formula = (
                "repeats = successful GETs with the same URL and query in a trace; saved = the time the"
                " repeats cover - the first's (all but one when they run one after another)"
            )
            threshold = f"repeats >= {config.redundant_min_repeats} (perf-sentinel redundant calls)"
        share = min(1.0, math.log1p(traces) / math.log1p(20))
        return Recommendation(
            category=CATEGORY,
            rule=rule,
            severity=severity,
            title=title,
            action=action,
            subject=subject,
            evidence=Evidence(
                numbers=numbers,
                formula=formula,
                threshold=threshold,
                window_start_ns=f.start_ns,
                window_end_ns=f.end_ns,
                trace_ids=tuple(dict.fromkeys(t for t, _ in f.examples)),
                span_ids=tuple(s for _, s in f.examples),
            ),
            confidence=round(0.5 + 0.45 * share, 3),
            impact_s=impact,
            locations=_locations(f, config.max_locations),
        )


def _locations(f: _Finding, shown: int) -> tuple[CodeLocation, ...]:
    """The ``shown`` lines most of the finding's calls came from, with their share of all its calls."""
    return CodeLocation.ranked(f.locations, f.calls, shown)


def _duration(span: _Span) -> float:
    return max(span.end_ns - span.start_ns, 0) / 1e9


def _covered(calls: list[_Span]) -> float:
    """The time at least one of ``calls`` (in start order) ran, seconds (``model.covered_ns``)."""
    return covered_ns((call.start_ns, call.end_ns) for call in calls) / 1e9


def analyze_trace_shapes(
    records: Iterable[Record], config: TraceShapeConfig | None = None
) -> list[Recommendation]:
    """Run the trace-shape rules over ``records`` (non-span records are skipped)."""
    rules = TraceShapeRules(config)
    for record in records:
        rules.add(record)
    return rules.recommendations()
