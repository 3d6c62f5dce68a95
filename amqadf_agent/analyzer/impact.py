"""What each fix is worth: the time a database or call finding's fix would save, per route and in
instances.

``ImpactFeed`` reads the server spans (one a request: its trace, service, route and duration) in the
analysis' one pass, the db calls of each trace from the database rules (per request, per statement
shape: calls, time, first start and last end), and what each trace-shape finding would save in each
trace from the trace-shape rules.
``estimate`` then prices each finding whose fix can be priced:

* **N+1** (``n_plus_one``): the loop of n calls of the statement in a request becomes one batched
  query (``IN (...)`` of the n ids) costing one turn of the loop plus ``share`` of a turn for each
  further id (``batch_turns_per_id``, by database): ``saved = loop - loop / n * (1 + share * (n - 1))``,
  ``loop`` being the wall time from the start of the first call to the end of the last (each turn's own work
  between the calls, an ORM building the statement and the rows, included: it goes with the loop);
* **verified index** (``index_candidate`` with the planner's ``verified`` verdict,
  ``analyzer.explain``): every call of the statement takes the planner's cost ratio of its time:
  ``saved = time * (1 - cost_after / cost_before)``;
* **call shapes** (``rules.trace_shapes``): N+1 HTTP calls batched into one request
  (``saved = covered - longest``: the time the calls cover, overlapping ones counted once), an MN+1
  sequence loaded once for all items (``total - one sequence``), serialized independent calls run
  concurrently (``sum - longest``), redundant calls made once (``covered - the first``: all but one
  when they run one after another): each request saves what the rule found it would save in its
  trace.

Each request's duration loses its saving (never below zero); the **p95 of each affected route** is
given before and after. After an N+1's fix, that p95 is not the p95 of each request less its saving,
a time for a median request: a loop spreads over hundreds of turns the interruptions (other
processes on the CPU, the garbage collector, other threads holding the GIL) that a request a few
turns long meets whole or not at all (that p95 came under the fixed route's measured one in 7 runs
of 9, by up to 58%, on tests/apps/orders_app.py). The route's median time after the fix is turned
into a length in turns of the loop, and the p95 is that of the stretches of the loops of that
length, at every position (``_p95_at_loop_pace``; the estimate's evidence ``p95_after`` says on what
it rests). The **scaling
timeline** is then replayed (``rules.scaling``) with every window's response times scaled by the
ratio of its requests' p95 after/before (each request less its saving) and its queue depth by the
ratio of their mean durations (Little's law), the CPU left as it is (a database wait costs the
service little CPU): the instances the scaler wanted at peak, before and after the fix.

Assumptions, stated in every estimate so a reader can disagree: the db calls of a request are on its
critical path (sequential, synchronous); a batched query still pays, for each id, its binding, its
lookup and its rows (``batch_turns_per_id`` of a turn: the spans tell a turn's time, not how much of it
is the statement's round trip and how much the id's rows, so the share is measured, not read from the
input); the planner's cost ratio holds for the observed durations (on SQLite a lower bound: a
statement's span ends at its first row, its scan goes on as the rows are fetched). A slow query
without a verified index is not priced (no fix is known to work).

Memory: per request a key and three numbers, per (request, statement shape) a key and four numbers,
at most ``MAX_REQUESTS`` requests and ``CALL_ROWS_PER_REQUEST`` times as many pairs (the first ones;
beyond that they are counted, not kept: the estimate then covers the requests kept, and says how many
were not); per db call its start and its pair's row, ``CALL_STARTS_PER_REQUEST`` times
``MAX_REQUESTS`` at most (a request whose calls of the statement were not all kept is priced at its
time less its saving).

Cost: about 0.8 µs of CPU a span on top of the database rules' 2.9 (+25% on them; the whole analysis
costs about 7 µs a span), measured by tests/bench/bench_impact.py on the shared 2-core machine;
keeping each db call's start (two appends to arrays) is within the noise of ``add_calls``' 1.4 µs a
call, and the stretches of the loops take about 0.1 s at the end for the bench's N+1.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, TextIO

from amqadf_agent.analyzer.explain import Verdict
from amqadf_agent.analyzer.model import REQUEST_SPAN_KINDS, Record, SpanRecord, service_name
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.analyzer.rules.database import DatabaseRules
from amqadf_agent.analyzer.rules.pool_sizing import quantile
from amqadf_agent.analyzer.rules.scaling import ScalingRuleConfig
from amqadf_agent.analyzer.windows import Window
from amqadf_agent.semconv import ATTR_HTTP_ROUTE

if TYPE_CHECKING:
    from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeRules

__all__ = ["MAX_PRICED", "MAX_REQUESTS", "Estimate", "ImpactFeed", "estimate", "ranked"]

#: Requests (server spans) kept for the estimates, about 150 bytes each, and (request, statement) pairs
#: of db calls, ``CALL_ROWS_PER_REQUEST`` times as many, about 150 bytes each: some 45 MB at most.
MAX_REQUESTS: Final = 50_000
CALL_ROWS_PER_REQUEST: Final = 5
#: Findings priced (the most time at stake first); the others have no estimate.
MAX_PRICED: Final = 50
#: Starts of db calls kept (16 bytes each, some 16 MB at most), ``CALL_STARTS_PER_REQUEST`` times
#: ``MAX_REQUESTS``: the turns of the loops, for the spread of a fixed request's time.
CALL_STARTS_PER_REQUEST: Final = 20
#: What a batched query pays for each id beyond the first, in turns of the loop it replaces: the id's
#: bind, its index lookup and its rows stay in the batch; the round trip, the statement's build and its
#: span go. Measured on tests/apps/orders_app.py (SQLAlchemy 2.0, an ``IN`` of 400 ids of 3 rows each:
#: the median of /orders/batched against that of /orders less its loop, in the same run, the loop's
#: mean turn): 0.026 of a turn an id on SQLite in the median of 13 runs (0.015-0.029, 0.029 on a quiet
#: machine) and 0.047 on PostgreSQL 15 in 10 (0.034-0.062), whose server plans and runs the ``IN``
#: list (its span alone 24 times a call's); the batch took 11 and 20 turns beyond one. Each database
#: its own share (``BATCH_TURNS_PER_ID``, by ``db.system``); any other, or several, the middle of the
#: two. A share of the turn's own work outside its call instead (the round trip paid once) varied
#: more: 0.03-0.08 on SQLite, 0.07-0.15 on PostgreSQL.
BATCH_TURN_PER_ID: Final = 0.04
BATCH_TURNS_PER_ID: Final = {"sqlite": 0.026, "postgresql": 0.047}
ASSUMPTIONS: Final = (
    "the db calls of a request run one after the other on its critical path",
    "the service's CPU does not change (a database wait costs it little CPU)",
)


def _n_plus_one_formula(per_id: float) -> str:
    return (
        f"saved per request = loop_ms - loop_ms / n * (1 + {per_id} * (n - 1)) (loop_ms: from the "
        "start of the first of the n calls of the statement in the request to the end of the last; the "
        f"loop becomes one batched query costing one turn of it plus {per_id} of a turn for each "
        "further id)"
    )


def batch_turns_per_id(db_system: object) -> float:
    """What a batched query pays an id beyond the first, in turns, for a finding's ``db_system``."""
    systems = {s.strip() for s in str(db_system or "").split(",") if s.strip()}
    return (
        BATCH_TURNS_PER_ID.get(systems.pop(), BATCH_TURN_PER_ID) if len(systems) == 1 else BATCH_TURN_PER_ID
    )


#: The trace-shape rules' savings, as each rule computes them in a trace.
_SHAPE_FORMULAS: Final = {
    "n_plus_one_http": "saved per request = covered_ms - longest_ms of the calls to the URL template under "
    "one parent (covered_ms: the time at least one of them ran, their total when made one after another; "
    "one batched request costing what the longest call cost)",
    "mn_plus_one": "saved per request = the repeated sequence's total_ms - one sequence's (each kind of "
    "data loaded once for all items)",
    "serialized_calls": "saved per request = sum of the independent calls' durations - the longest (run "
    "concurrently, the request waits for the longest only)",
    "redundant_calls": "saved per request = the time the identical calls cover less the first's duration"
    " (every one but the first when they run one after another)",
}
_SHAPE_ASSUMPTIONS: Final = (
    "the calls of a request are on its critical path: made one after the other, it waits for each in "
    "turn; issued concurrently (overlapping), for the time they cover",
    "a batched or concurrent call costs what the longest of the calls cost",
    "the service's CPU does not change (a wait for a call costs it little CPU)",
)
#: Python's sqlite3 runs a statement up to its first row in ``execute`` and the rest as the rows are
#: fetched, after the span: a scan that finds its first match early is mostly outside the span's time.
_SQLITE_FIRST_ROW: Final = (
    "on SQLite a statement's span ends at its first row (the driver finds the others as they are "
    "fetched, after the span), so the time the index would save is mostly not in the observed time: "
    "this saving is a lower bound"
)
#: Stretches of a loop taken for the p95 after an N+1's fix (fewer when there are many loops: each
#: round sorts them all), and rounds fitting their length.
_STRETCHES_PER_LOOP: Final = 64
_STRETCHES_IN_ALL: Final = 200_000
_PACE_ROUNDS: Final = 4
_AT_LOOP_PACE: Final = (
    "a fixed request goes at the pace its loop went: the route's p95 after the fix is that of the "
    "stretches of the loops as long as the median request after it (the interruptions a loop spreads "
    "over its turns, a short request meets whole or not at all); the garbage collector's full "
    "collections, which no span shows, come as often after the fix and spread alike (a batch keeping "
    "its rows alive brings them sooner, and into the fixed requests: the p95 after is then too low)"
)
_P95_EACH_REQUEST: Final = "each request at its time less its saving (no loop's call starts kept)"
_INDEX_FORMULA: Final = (
    "saved per request = time_ms * (1 - cost_after / cost_before) (the planner's cost ratio applied "
    "to the observed time of the statement)"
)


#: ``trace id + "\0" + service``: one request. A string, not a tuple: the garbage collector does not
#: track strings, and it would walk every tuple kept (the input's millions of spans made the collector
#: cost as much as the rest of this module).
_RequestKey = str


#: The largest time an ``array('q')`` holds.
_MAX_NS: Final = 2**63 - 1


class _Request:
    __slots__ = ("duration_s", "end_ns", "route")

    def __init__(self, route: str, duration_s: float, end_ns: int) -> None:
        self.route = route
        self.duration_s = duration_s
        self.end_ns = end_ns


class ImpactFeed:
    """Reads the requests and their db calls (a ``RuleFeed`` of ``analyzer.run``).

    Kept in arrays indexed through string keys (no container per request or call): the feed sees
    every server span and db call, and the analysis must stay fast and small
    (tests/bench/bench_analyzer.py). The db calls come from the database rules, which have normalized
    them already: each trace's calls as the rules analyse and forget it.
    """

    SPAN_KINDS: ClassVar[frozenset[int]] = REQUEST_SPAN_KINDS

    def __init__(
        self,
        database: DatabaseRules,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        max_requests: int = MAX_REQUESTS,
        shapes: TraceShapeRules | None = None,
    ) -> None:
        self.database = database
        database.trace_listener = self.add_calls
        if shapes is not None:
            shapes.saving_listener = self.add_saving
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.max_requests = max_requests
        self.max_call_rows = CALL_ROWS_PER_REQUEST * max_requests
        #: Server spans and db calls not kept (beyond ``max_requests`` and ``max_call_rows``).
        self.dropped = 0
        self.dropped_calls = 0
        # Requests: key -> row of the request columns.
        self._requests: dict[str, int] = {}
        self._route_ids: dict[str, int] = {}
        self._routes: list[str] = []
        self._request_route = array("l")
        self._request_duration = array("d")
        self._request_end = array("q")
        # Calls: statement id -> request key -> row of the call columns (calls, seconds, first start,
        # last end of the statement in the request).
        self._calls: dict[int, dict[str, int]] = {}
        self._call_count = array("l")
        self._call_time = array("d")
        self._call_first = array("q")
        self._call_last = array("q")
        # Each call's start and the row of its (request, statement): the turns of a loop.
        self.max_call_starts = CALL_STARTS_PER_REQUEST * max_requests
        self._start_row = array("l")
        self._start_ns = array("q")
        # Savings of the trace-shape findings: (rule, subject) -> request key -> seconds.
        self._savings: dict[tuple[str, str], dict[str, float]] = {}
        self._saving_rows = 0
        self._last_resource: object = None
        self._last_service = ""

    def add(self, record: Record) -> None:
        """A server span, or a consumer's (a message processed): one request (its db calls come from
        the database rules, ``add_calls``)."""
        if type(record) is not SpanRecord or record.kind not in REQUEST_SPAN_KINDS:
            return
        end_ns = record.end_ns
        if self.since_ns is not None and end_ns < self.since_ns:
            return
        if self.until_ns is not None and end_ns > self.until_ns:
            return
        if record.resource is not self._last_resource:  # records of one resource share its mapping
            self._last_resource = record.resource
            self._last_service = service_name(record.resource)
        service = self._last_service
        if self.service is not None and service != self.service:
            return
        key = record.trace_id + "\0" + service
        if key in self._requests:
            return  # a nested server span of the same request: the outer one is the request
        if len(self._requests) >= self.max_requests:
            self.dropped += 1
            return
        route = record.attributes.get(ATTR_HTTP_ROUTE)
        name = route if isinstance(route, str) and route else record.name
        route_id = self._route_ids.get(name)
        if route_id is None:
            route_id = self._route_ids[name] = len(self._routes)
            self._routes.append(name)
        self._requests[key] = len(self._request_end)
        self._request_route.append(route_id)
        self._request_duration.append(max(end_ns - record.start_ns, 0) / 1e9)
        # Within what the arrays hold: OTLP allows any uint64, a hostile file anything the reader takes.
        self._request_end.append(min(max(end_ns, 0), _MAX_NS))

    def add_calls(self, trace_id: str, calls: Sequence[tuple[Any, ...]]) -> None:
        """One trace's db calls as the database rules buffer them (``DatabaseRules.trace_listener``):
        ``(parent span id, start ns, end ns, statement id, ..., service)``; the rules have already
        applied the service and time filters and normalized the statements."""
        index = self._calls
        count, time_s, first, last = self._call_count, self._call_time, self._call_first, self._call_last
        service: str | None = None
        key = ""
        # Checked once a trace, not once a call: the bound is passed by at most one trace's calls.
        keep_starts = len(self._start_ns) < self.max_call_starts
        start_row, start_ns_of = self._start_row.append, self._start_ns.append
        rows_now = len(count)  # len(count), kept as rows are added
        max_rows = self.max_call_rows
        for call in calls:
            start_ns, end_ns, statement_id = call[1], call[2], call[3]
            if call[-1] is not service:  # one service in a trace, nearly always: its key built once
                service = call[-1]
                key = trace_id + "\0" + service
            if not 0 <= start_ns <= end_ns <= _MAX_NS:  # odd input: kept in range, duration >= 0
                start_ns = min(max(start_ns, 0), _MAX_NS)
                end_ns = min(max(end_ns, start_ns), _MAX_NS)
            rows = index.get(statement_id)
            if rows is None:
                rows = index[statement_id] = {}
            row = rows.get(key)
            if row is None:
                if rows_now >= max_rows:
                    self.dropped_calls += 1
                    continue
                rows[key] = rows_now
                if keep_starts:
                    start_row(rows_now)
                    start_ns_of(start_ns)
                rows_now += 1
                count.append(1)
                time_s.append((end_ns - start_ns) / 1e9)  # (in range: end_ns >= start_ns)
                first.append(start_ns)
                last.append(end_ns)
                continue
            if keep_starts:
                start_row(row)
                start_ns_of(start_ns)
            count[row] += 1
            time_s[row] += (end_ns - start_ns) / 1e9
            if start_ns < first[row]:
                first[row] = start_ns
            if end_ns > last[row]:
                last[row] = end_ns

    def add_saving(self, rule: str, subject: str, trace_id: str, service: str, saved_s: float) -> None:
        """What a trace-shape finding would save in one trace (``TraceShapeRules.saving_listener``)."""
        if not math.isfinite(saved_s) or saved_s <= 0:
            return
        key = trace_id + "\0" + service
        of_finding = self._savings.setdefault((rule, subject), {})
        if key in of_finding:
            of_finding[key] += saved_s
        elif self._saving_rows >= self.max_call_rows:
            self.dropped_calls += 1
        else:
            self._saving_rows += 1
            of_finding[key] = saved_s

    def savings_of(self, rule: str, subject: str) -> dict[_RequestKey, float]:
        """Per request: what the trace-shape finding ``(rule, subject)`` would save in it."""
        return dict(self._savings.get((rule, subject), {}))

    @property
    def requests(self) -> dict[_RequestKey, _Request]:
        """Every request kept, by key (built when asked: for the estimates, once)."""
        routes, route = self._routes, self._request_route
        duration, end = self._request_duration, self._request_end
        return {key: _Request(routes[route[i]], duration[i], end[i]) for key, i in self._requests.items()}

    @property
    def call_rows(self) -> int:
        """(request, statement) pairs kept."""
        return len(self._call_count)

    def calls_of(self, statement_id: int | None) -> dict[_RequestKey, tuple[int, float, int, int]]:
        """Per request: calls, seconds, first start and last end of a statement (its id in the
        database rules)."""
        count, time_s, first, last = self._call_count, self._call_time, self._call_first, self._call_last
        return {
            key: (count[row], time_s[row], first[row], last[row])
            for key, row in self._rows_of(statement_id).items()
        }

    def turns_of(self, statement_ids: Iterable[int | None]) -> dict[int, dict[_RequestKey, list[int]]]:
        """Per statement, per request whose calls of it all had their start kept: those starts in order
        and the end of the last call, the bounds of the loop's turns (a turn: from one call's start to
        the next one's). One pass over the starts kept (up to a million) for all the statements."""
        owners: dict[int, tuple[int, _RequestKey]] = {}
        for statement_id in statement_ids:
            if statement_id is not None:
                owners.update((row, (statement_id, key)) for key, row in self._rows_of(statement_id).items())
        starts: dict[int, list[int]] = {}
        for row, start_ns in zip(self._start_row, self._start_ns, strict=True):
            if row in owners:
                of_row = starts.get(row)
                if of_row is None:
                    starts[row] = [start_ns]
                else:
                    of_row.append(start_ns)
        count, last = self._call_count, self._call_last
        out: dict[int, dict[_RequestKey, list[int]]] = {}
        for row, of_row in starts.items():
            if len(of_row) == count[row]:
                statement_id, key = owners[row]
                out.setdefault(statement_id, {})[key] = [*sorted(of_row), last[row]]  # (an end >= its start)
        return out

    def _rows_of(self, statement_id: int | None) -> dict[_RequestKey, int]:
        """Per request: the row of its calls of a statement."""
        if statement_id is None:
            return {}
        return self._calls.get(statement_id, {})


@dataclass(frozen=True, slots=True)
class RouteImpact:
    route: str
    requests: int
    p95_before_s: float
    p95_after_s: float
    #: The median saving of the route's requests that save anything.
    saved_median_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "requests": self.requests,
            "saved_median_ms": round(self.saved_median_s * 1000, 3),
            "p95_before_ms": round(self.p95_before_s * 1000, 3),
            "p95_after_ms": round(self.p95_after_s * 1000, 3),
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """What one finding's fix would save, and how that was computed."""

    fingerprint: str
    rule: str
    title: str
    #: Seconds saved over the whole input, and the requests that would save some.
    saved_s: float
    requests_affected: int
    formula: str
    assumptions: tuple[str, ...]
    routes: tuple[RouteImpact, ...] = ()
    #: Instances the scaler wanted at peak, before and after the fix (``None``: no timeline).
    peak_instances_before: int | None = None
    peak_instances_after: int | None = None
    evidence: dict[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        instances = None
        if self.peak_instances_before is not None and self.peak_instances_after is not None:
            instances = {
                "peak_before": self.peak_instances_before,
                "peak_after": self.peak_instances_after,
                "saved": self.peak_instances_before - self.peak_instances_after,
            }
        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "title": self.title,
            "saved_ms": round(self.saved_s * 1000, 3),
            "saved_ms_per_affected_request": round(self.saved_s * 1000 / max(self.requests_affected, 1), 3),
            "requests_affected": self.requests_affected,
            "routes": [route.to_dict() for route in self.routes],
            "instances": instances,
            "formula": self.formula,
            "assumptions": list(self.assumptions),
            "evidence": dict(self.evidence),
        }


def estimate(
    feed: ImpactFeed,
    recommendations: Iterable[Recommendation],
    verdicts: Iterable[Verdict] = (),
    windows: Sequence[Window] = (),
    scaling: ScalingRuleConfig | None = None,
) -> list[Estimate]:
    """An estimate for each finding whose fix can be priced, most time saved first: the first
    ``MAX_PRICED`` of them by time at stake (pricing one reads every request kept: 6,000 findings of
    repeated calls to distinct URLs took minutes)."""
    ratios = {
        (v.candidate.statement, v.candidate.table, v.candidate.columns): v.cost_ratio
        for v in verdicts
        if v.verdict == "verified" and v.cost_ratio is not None
    }
    out: list[Estimate] = []
    requests = feed.requests
    recommendations = list(recommendations)
    loops = feed.turns_of(
        feed.database.statement_id(r.subject)
        for r in recommendations
        if r.rule == "n_plus_one" and r.category == "database"
    )
    for recommendation in sorted(recommendations, key=Recommendation.sort_key):
        if len(out) >= MAX_PRICED:
            break
        shape_formula = _SHAPE_FORMULAS.get(recommendation.rule)
        if shape_formula is not None and recommendation.category != "database":
            shape_saved = feed.savings_of(recommendation.rule, recommendation.subject)
            if shape_saved:
                priced = _estimate(
                    requests,
                    feed,
                    recommendation,
                    shape_saved,
                    shape_formula,
                    _SHAPE_ASSUMPTIONS,
                    {},
                    windows,
                    scaling,
                )
                out.append(priced)
            continue
        if recommendation.category != "database":
            continue
        statement = recommendation.subject
        numbers = recommendation.evidence.numbers
        ratio: float | None = None
        per_id = batch_turns_per_id(numbers.get("db_system"))
        if recommendation.rule == "n_plus_one":
            formula = _n_plus_one_formula(per_id)
            extra: dict[str, float | int | str] = {"batch_turns_per_id": per_id}
            assumptions: tuple[str, ...] = (
                *ASSUMPTIONS,
                f"a batched query costs one turn of the loop plus {per_id} of a turn for each "
                "further id (its binding, lookup and rows; measured with SQLAlchemy 2.0 at 3 rows an id: "
                f"0.026 on SQLite, 0.047 on PostgreSQL, {BATCH_TURN_PER_ID} for another database; not read "
                "from this input)",
                _AT_LOOP_PACE,
            )
        elif recommendation.rule == "index_candidate" and numbers.get("verdict") == "verified":
            columns = tuple(c.strip() for c in str(numbers.get("columns", "")).split(","))
            ratio = ratios.get((statement, str(numbers.get("table", "")), columns))
            if ratio is None:
                continue
            formula = _INDEX_FORMULA
            extra = {"cost_ratio": round(ratio, 6)}
            assumptions = (*ASSUMPTIONS, "the planner's cost ratio holds for the observed durations")
            if "sqlite" in str(numbers.get("db_system", "")):
                extra["observed_time"] = "to the first row"
                assumptions = (*assumptions, _SQLITE_FIRST_ROW)
        else:
            continue
        statement_id = feed.database.statement_id(statement)
        calls = feed.calls_of(statement_id)
        saved = {key: _saving(totals, ratio, per_id) for key, totals in calls.items()}
        turns = None
        if recommendation.rule == "n_plus_one":
            turns = {} if statement_id is None else loops.get(statement_id, {})
        priced = _estimate(
            requests, feed, recommendation, saved, formula, assumptions, extra, windows, scaling, turns
        )
        out.append(priced)
    return sorted(out, key=lambda e: (-e.saved_s, e.fingerprint))


def _saving(totals: tuple[int, float, int, int], ratio: float | None, per_id: float) -> float:
    """One request's saving: the N+1 formula without a cost ratio, the index formula with one."""
    calls, time_s, first_ns, last_ns = totals
    if ratio is not None:
        return time_s * (1 - ratio)
    loop_s = max(last_ns - first_ns, 0) / 1e9
    if calls < 2:
        return 0.0
    return loop_s - loop_s / calls * (1 + per_id * (calls - 1))


def _estimate(
    requests: dict[_RequestKey, _Request],
    feed: ImpactFeed,
    recommendation: Recommendation,
    saved: dict[_RequestKey, float],
    formula: str,
    assumptions: tuple[str, ...],
    extra: dict[str, float | int | str],
    windows: Sequence[Window],
    scaling: ScalingRuleConfig | None,
    turns: dict[_RequestKey, list[int]] | None = None,
) -> Estimate:
    """Price one finding from each request's saving; with ``turns`` (an N+1's loops), each route's
    p95 after the fix is the p95 of stretches of those loops (``_p95_at_loop_pace``)."""
    affected = [key for key, value in saved.items() if value > 0 and key in requests]
    routes = {requests[key].route for key in affected}
    of_route: dict[str, list[tuple[_RequestKey, float]]] = {route: [] for route in routes}
    for key, request in requests.items():
        if request.route in of_route:
            of_route[request.route].append((key, request.duration_s))
    by_route: list[RouteImpact] = []
    bases: list[str] = []
    for route in sorted(routes):
        before = of_route[route]
        durations = [d for _, d in before]
        after = [max(d - saved.get(key, 0.0), 0.0) for key, d in before]
        savings = sorted(saved[key] for key, _ in before if saved.get(key, 0.0) > 0)
        median = savings[len(savings) // 2] if savings else 0.0
        p95_after = _p95(after)
        if turns:
            at_pace = _p95_at_loop_pace(before, saved, turns)
            if at_pace is not None:
                p95_after, basis = at_pace
                bases.append(f"{route}: {basis}")
        by_route.append(RouteImpact(route, len(before), _p95(durations), p95_after, median))
    peak_before, peak_after = _replay(requests, saved, windows, scaling)
    total = sum(saved[key] for key in affected)
    evidence: dict[str, float | int | str] = {
        "requests_kept": len(requests),
        "requests_not_kept": feed.dropped,
        "db_calls_not_kept": feed.dropped_calls,
        **extra,
    }
    if turns is not None:
        evidence["p95_after"] = "; ".join(bases) or _P95_EACH_REQUEST
    return Estimate(
        recommendation.fingerprint,
        recommendation.rule,
        recommendation.title,
        total,
        len(affected),
        formula,
        assumptions,
        tuple(by_route),
        peak_before,
        peak_after,
        evidence,
    )


def _p95_at_loop_pace(
    before: list[tuple[_RequestKey, float]],
    saved: dict[_RequestKey, float],
    turns: dict[_RequestKey, list[int]],
) -> tuple[float, str] | None:
    """A route's p95 after an N+1's fix, and what it is based on (``None``: no loop's turns kept).

    The fixed request is served at the pace the loops went: its time is the wall time of a stretch
    of a loop doing as much work. Each request less its saving is a time for a median request, not
    for the tail: a loop spreads over hundreds of turns the interruptions (other processes on the
    CPU, the garbage collector, other threads holding the GIL) that a request a few turns long
    meets whole or not at all. So the route's median time after the fix (each request less its
    saving) is converted into a number of turns, ``t``, whose stretches of the loops take that time
    in the median, and the p95 is that of the stretches of ``t`` turns at every position of every
    loop (each request weighing one, however many positions it has). A request of the route without
    the loop, or with the loop shorter than ``t`` turns, weighs one at its own time less its saving.
    """
    after = {key: max(d - saved.get(key, 0.0), 0.0) for key, d in before}
    loops = [(key, turns[key]) for key, _ in before if key in turns and len(turns[key]) > 2]
    if not loops:
        return None
    target_s = _weighted_quantile([(after[key], 1.0) for key, _ in loops], 0.5)
    turn_s = _weighted_quantile([((b[-1] - b[0]) / 1e9 / (len(b) - 1), 1.0) for _, b in loops], 0.5)
    if target_s <= 0 or turn_s <= 0:
        return None
    length = target_s / turn_s
    for _ in range(_PACE_ROUNDS):  # the stretches' median time meets the target: a few rounds do
        stretches, _ = _stretches(loops, length)
        median_s = _weighted_quantile(stretches, 0.5) if stretches else 0.0
        if median_s <= 0:
            return None
        length *= target_s / median_s
    stretches, hosted = _stretches(loops, length)
    if not hosted:
        return None
    rest = [(value, 1.0) for key, value in after.items() if key not in hosted]
    p95 = _weighted_quantile(stretches + rest, 0.95)
    basis = (
        f"stretches of {length:.1f} turns of {len(hosted)} requests' loops, at every position (the "
        f"median request after the fix, {target_s * 1000:.1f} ms, at the loops' pace)"
    )
    if rest:
        basis += f", {len(rest)} requests at their time less their saving"

    return p95, basis


def _stretches(
    loops: list[tuple[_RequestKey, list[int]]], length: float
) -> tuple[list[tuple[float, float]], set[_RequestKey]]:
    """(seconds, weight) of the stretches of ``length`` turns of each loop (its turns' bounds) at
    up to ``_STRETCHES_PER_LOOP`` positions spread along it (``_STRETCHES_IN_ALL`` in all), each loop
    weighing one in all; and the requests whose loop is long enough for one."""
    whole = int(length)
    part = length - whole
    per_loop = max(min(_STRETCHES_PER_LOOP, _STRETCHES_IN_ALL // max(len(loops), 1)), 1)
    out: list[tuple[float, float]] = []
    hosted: set[_RequestKey] = set()
    for key, bounds in loops:
        positions = len(bounds) - 1 - whole  # a stretch ends in a turn of the loop (``part`` of it)
        if positions <= 0:
            continue
        hosted.add(key)
        if positions <= per_loop:  # every position: the stretch from each turn's start on
            weight = 1.0 / positions
            out += [
                ((turn + part * (after - turn) - first) / 1e9, weight)
                for first, turn, after in zip(
                    bounds[:positions], bounds[whole : whole + positions], bounds[whole + 1 :], strict=True
                )
            ]
            continue
        # ``per_loop`` positions a step of more than one turn apart: distinct, and in order.
        step = positions / per_loop
        weight = 1.0 / per_loop
        for i in range(per_loop):
            j = int(i * step)
            turn = bounds[j + whole]
            out.append(((turn + part * (bounds[j + whole + 1] - turn) - bounds[j]) / 1e9, weight))
    return out, hosted


def _weighted_quantile(values: list[tuple[float, float]], q: float) -> float:
    """Nearest-rank quantile of (value, weight) pairs (with weights of one, ``_p95``'s)."""
    ordered = sorted(values)
    weights = [w for _, w in ordered]
    # The weight reached at each value, in order (weights are never negative: it never falls), and
    # the first value where it reaches the quantile's share of the total (sums of fractions of one).
    reached = list(itertools.accumulate(weights))
    at = bisect.bisect_left(reached, q * sum(weights) * (1 - 1e-9))
    if at < len(ordered):
        return ordered[at][0]
    return ordered[-1][0] if ordered else 0.0


def _replay(
    requests: dict[_RequestKey, _Request],
    saved: dict[_RequestKey, float],
    windows: Sequence[Window],
    scaling: ScalingRuleConfig | None,
) -> tuple[int | None, int | None]:
    """The scaler's peak target over ``windows`` as they were, and with the saving applied."""
    if not windows:
        return None, None
    config = scaling or ScalingRuleConfig()
    starts = [w.start_ns for w in windows]
    last_end = windows[-1].end_ns
    inside: list[list[tuple[float, float]]] = [[] for _ in windows]
    for key, request in requests.items():
        i = bisect.bisect_right(starts, request.end_ns) - 1  # the window starting last at or before it
        if i < 0 or request.end_ns > last_end:
            continue
        if request.end_ns >= windows[i].end_ns and not (i == len(windows) - 1 and request.end_ns == last_end):
            continue  # in a gap between windows
        inside[i].append((request.duration_s, max(request.duration_s - saved.get(key, 0.0), 0.0)))
    steps_before = []
    steps_after = []
    for window, pairs in zip(windows, inside, strict=True):
        metrics = window.metrics
        step = (window.end_ns / 1e9, window.instances, metrics)
        steps_before.append(step)
        if not pairs:
            steps_after.append(step)
            continue
        p95_ratio = _ratio(_p95([a for _, a in pairs]), _p95([b for b, _ in pairs]))
        mean_ratio = _ratio(sum(a for _, a in pairs), sum(b for b, _ in pairs))

        def scaled(value: float | None, ratio: float) -> float | None:
            return None if value is None else value * ratio

        changed = dataclasses.replace(
            metrics,
            response_time_p50=scaled(metrics.response_time_p50, p95_ratio),
            response_time_p95=scaled(metrics.response_time_p95, p95_ratio),
            response_time_p99=scaled(metrics.response_time_p99, p95_ratio),
            queue_depth=scaled(metrics.queue_depth, mean_ratio),
        )
        steps_after.append((window.end_ns / 1e9, window.instances, changed))
    before = [d.target_instances for d in config.scaler().simulate(steps_before)]
    after = [d.target_instances for d in config.scaler().simulate(steps_after)]
    return (max(before), max(after)) if before and after else (None, None)


def _ratio(after: float, before: float) -> float:
    return after / before if before > 0 else 1.0


def _p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (0 for none)."""
    return quantile(0.95, values) or 0.0


def ranked(recommendations: Iterable[Recommendation], estimates: Iterable[Estimate]) -> list[Recommendation]:
    """``recommendations`` ranked by impact: a priced finding's ``impact_s`` becomes the time its fix
    would save; the others keep the time at stake."""
    saved = {e.fingerprint: e.saved_s for e in estimates}
    out = [
        dataclasses.replace(r, impact_s=saved[r.fingerprint]) if r.fingerprint in saved else r
        for r in recommendations
    ]
    return sorted(out, key=lambda r: r.sort_key())


def to_json(estimates: Sequence[Estimate]) -> dict[str, Any]:
    """The ``impact`` section of the JSON report."""
    return {"estimates": [e.to_dict() for e in estimates]}


def render_text(section: dict[str, Any] | None, file: TextIO) -> None:
    """The ``impact`` section as text, when a fix was priced (nothing otherwise)."""
    from amqadf_agent.analyzer.render_impact import p95_basis
    from amqadf_agent.analyzer.report_values import shown

    estimates = (section or {}).get("estimates") or []
    if not estimates:
        return
    w = file.write
    w(f"\nWhat the fixes are worth ({len(estimates)})\n")
    for item in estimates:
        each, count = item["saved_ms_per_affected_request"], item["requests_affected"]
        w(f"  {shown(item['title'])}\n    saves {item['saved_ms']:.1f} ms in all, {each:.1f} ms in each of ")
        w(f"{count} requests\n")
        for route in item["routes"]:
            w(
                f"    {shown(route['route'])}: p95 {route['p95_before_ms']:.1f} -> "
                f"{route['p95_after_ms']:.1f} ms ({route['requests']} requests)\n"
            )
        instances = item.get("instances")
        if instances:
            w(f"    instances at peak: {instances['peak_before']} -> {instances['peak_after']}\n")
        w(f"    how: {shown(item['formula'])}\n")
        if basis := p95_basis(item):
            w(f"    {shown(basis)}\n")
        assumptions = "; ".join(str(a) for a in item.get("assumptions") or [])
        if assumptions:  # as the Markdown and HTML reports say them: what a user may disagree with
            w(f"    assumes: {shown(assumptions)}\n")
