"""Database rules over db client spans [Sentry performance detectors, PgHero, pg_stat_statements].

A db client span is a span of kind CLIENT with ``db.system.name`` (or the older ``db.system``) whose
statement is in ``db.query.text`` (or the older ``db.statement``). Statements are grouped by their
normalized text (``sql.analyze``: literals to ``?``, ``IN`` lists collapsed) with calls, total, mean,
p95 and, when ``db.response.returned_rows`` is set to a count (not negative, at most uint64), rows.
A span without a statement but with a ``db.query.summary`` (``SELECT orders``: an instrumentation
that records no query text) is grouped by its summary: it counts for the N+1 and slow-query rules,
not for the ones that read the statement's text (index candidate, ``SELECT *``, ``LIMIT``, ``WHERE``)
nor for identical queries (its values are unknown).
The rules:

* **N+1**: at least 5 *consecutive* sibling db spans (same parent, ordered by start time) with the same
  normalized statement, at least 50 ms together (Sentry's rule); transaction and connection statements
  (``BEGIN``, ``SAVEPOINT``, ``COMMIT`` ...) between them, and queries overlapping them (issued
  concurrently), do not break the run (``_runs``);
* **slow query**: p95 at or above 500 ms;
* **index candidate**: the filter and sort columns of a slow single-table query (a candidate to check
  with ``EXPLAIN``, not a certainty);
* ``SELECT *``; **large result without LIMIT** (when rows are known); ``UPDATE``/``DELETE`` without
  ``WHERE``;
* **identical queries** in one trace (same normalized statement *and* the same literals): a cache
  candidate. A statement with bind placeholders counts only when its span carries the parameter
  values (``db.query.parameter.<key>``, or the older ``db.statement.parameters`` that DB-API
  instrumentations record with ``capture_parameters=True``); otherwise it is skipped, its parameters
  being unknown. Only a digest of the values is kept, never the values. A statement the agent
  sanitized (literals as ``?``) is compared by the ``amqadf.db.query.values_digest`` it carries;
  one sanitized without it is reported as **cannot tell** (``repeated_undecided``, info) when it
  repeats in one trace, never as identical.

Every finding names the services the queries came from (the span's resource ``service.name``) in
its title ("N+1 queries in shop: ...") and in ``evidence.numbers["service"]`` (comma-separated, sorted),
so a fleet-wide analysis says which service to fix: the services of the runs for an N+1, of the calls
at or over the slow threshold for a slow query and its index candidate, of the repeats for identical
queries, of every call otherwise. A statement shape shared by several services stays one finding (its
subject, and so its fingerprint, is the statement alone) that lists them all.

Findings are ranked by the statement's total time (calls * mean). Below ``min_db_spans`` db spans no
recommendation is made at all; confidence grows with the number of calls. Only normalized statements
reach the output, never a literal.

Memory: one pass; per distinct statement a few counters and at most ``max_samples`` durations (a
reservoir of 2048 doubles, 16 KB, for p95: its nearest-rank p95 is within about a percentile of the
exact one); per trace, compact tuples of its db spans, at most ``max_buffered_calls`` in all
(50 000, about 17 MB; when more arrive, the traces seen first are analysed and dropped). A trace is
thus analysed whole when its db spans arrive within 50 000 db spans of each other, as an exporter's
batches of a trace do; a trace spread wider is analysed in parts (an N+1 run or a repeat split
across them can be missed).

One module over 600 lines: the per-trace buffers, the statement statistics and the findings drawn
from both are one pass over one state; the statement parsing stands apart (``analyzer.sql``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import operator
import random
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, Record, SpanRecord, service_name
from amqadf_agent.analyzer.plausible import is_count
from amqadf_agent.analyzer.recommendation import CodeLocation, Evidence, Recommendation, Severity
from amqadf_agent.analyzer.sql import SqlInfo, analyze, normalize_call
from amqadf_agent.semconv import (
    ATTR_CODE_FILE_PATH,
    ATTR_CODE_FILEPATH_OLD,
    ATTR_CODE_FUNCTION_NAME,
    ATTR_CODE_FUNCTION_OLD,
    ATTR_CODE_LINE_NUMBER,
    ATTR_CODE_LINENO_OLD,
    ATTR_CODE_STACKTRACE,
    ATTR_DB_QUERY_PARAMETER_PREFIX,
    ATTR_DB_QUERY_SANITIZED,
    ATTR_DB_QUERY_SUMMARY,
    ATTR_DB_QUERY_TEXT,
    ATTR_DB_QUERY_VALUES_DIGEST,
    ATTR_DB_RESPONSE_RETURNED_ROWS,
    ATTR_DB_STATEMENT_OLD,
    ATTR_DB_STATEMENT_PARAMETERS_OLD,
    ATTR_DB_SYSTEM_NAME,
    ATTR_DB_SYSTEM_OLD,
    EVENT_DB_N_PLUS_ONE,
)

__all__ = ["DatabaseRuleConfig", "DatabaseRules", "StatementStats", "analyze_spans"]

CATEGORY = "database"


@dataclass(frozen=True, slots=True)
class DatabaseRuleConfig:
    """Thresholds of the database rules (defaults from Sentry's detectors and docs/design.md)."""

    slow_query_s: float = 0.5
    n_plus_one_min_count: int = 5
    n_plus_one_min_total_s: float = 0.05
    identical_min_repeats: int = 3
    large_result_rows: int = 1000
    #: Fewer db calls than this in the whole input: no recommendation at all.
    min_db_spans: int = 10
    #: Calls of a statement at which confidence reaches its maximum.
    full_confidence_calls: int = 100
    max_examples: int = 3
    #: Code locations (``code.*`` of the spans) listed per finding, and counted per statement.
    max_locations: int = 5
    max_counted_locations: int = 64
    #: Buffered db calls of unfinished traces, all traces together (see the module docstring).
    max_buffered_calls: int = 50_000
    max_samples: int = 2048


def confidence(calls: int, full: int) -> float:
    """0.3 for one call, rising logarithmically to 0.95 at ``full`` calls."""
    if calls <= 0:
        return 0.0
    share = min(1.0, math.log1p(calls) / math.log1p(max(full, 1)))
    return round(0.3 + 0.65 * share, 3)


class StatementStats:
    """Aggregates of one normalized statement (pg_stat_statements-style)."""

    __slots__ = (
        "calls",
        "end_ns",
        "examples",
        "info",
        "locations",
        "max_s",
        "rows_known",
        "rows_max",
        "rows_total",
        "samples",
        "services",
        "slow_examples",
        "slow_services",
        "start_ns",
        "systems",
        "total_s",
    )

    def __init__(self, info: SqlInfo) -> None:
        self.info = info
        self.systems: set[str] = set()
        #: ``service.name`` -> calls from it (empty when the calls came without a service).
        self.services: dict[str, int] = {}
        #: Services of the calls at or over the slow-query threshold.
        self.slow_services: set[str] = set()
        self.calls = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self.samples: array[float] = array("d")  # 8 bytes a sample, not a float object's 32
        self.rows_known = 0
        self.rows_total = 0
        self.rows_max = 0
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.examples: list[tuple[str, str]] = []
        self.slow_examples: list[tuple[float, str, str]] = []
        #: (file, line, function) -> calls from there (``code.*`` of the spans), a bounded number.
        self.locations: dict[tuple[str, int, str], int] = {}

    @property
    def mean_s(self) -> float:
        return self.total_s / self.calls if self.calls else 0.0

    @property
    def p95_s(self) -> float:
        """Nearest-rank 95th percentile of the (sampled) durations."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


# A db call kept per trace: (parent span id, start ns, end ns, statement id, literal digest or "",
# span id, service.name or ""). Small on purpose: only these are buffered until a trace is analysed.
# The digest "" means bind parameters unknown; _UNDECIDED, a statement sanitized without its values.
_Call = tuple[str, int, int, int, str, str, str]
#: Siblings in start order (span id breaks ties).
_BY_START = operator.itemgetter(1, 5)
_UNDECIDED = "?"


#: Statements that manage a connection or a transaction (and the drivers' liveness ``SELECT ?``): an
#: ORM issues them between the queries of a loop, and they do not end an N+1 run (getsentry/sentry#93090
#: is the same problem with pool checkouts between the queries).
_HOUSEKEEPING = re.compile(
    r"\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|START\s+TRANSACTION|END|SET|RESET|DISCARD|SHOW"
    r"|SELECT\s+\?\s*;?\s*$)",
    re.IGNORECASE,
).match


def _summary_info(summary: str) -> SqlInfo:
    """What a ``db.query.summary`` tells of the statements it stands for: their operation and tables.

    Their clauses are unknown, so the rules that read them find nothing: no ``WHERE`` or ``LIMIT``
    is reported missing, no ``SELECT *`` or filter column is seen, and the values count as unknown.
    """
    operation, _, tables = summary.partition(" ")
    return SqlInfo(
        normalized=summary,
        kind=operation.upper(),
        tables=tuple(table.lower() for table in tables.split()),
        filter_columns=(),
        sort_columns=(),
        select_star=False,
        has_limit=True,
        has_where=True,
        has_placeholders=True,
        literal_digest="",
        parsed=False,
    )


def _runs(group: list[_Call], housekeeping: set[int], min_run: int) -> list[list[_Call]]:
    """The N+1 runs among one parent's db calls (in start order): calls of one statement, of which no
    two consecutive ones have a call of another statement wholly between them.

    Housekeeping statements are passed over, and a call of another statement that overlaps a run's
    calls was issued concurrently with them, so it does not end the run either (N+1 queries issued
    concurrently, as in getsentry/sentry#49805). Spans that are not db calls never reach these rules.
    """
    calls = [c for c in group if c[3] not in housekeeping]
    by_statement: dict[int, list[int]] = {}
    for index, call in enumerate(calls):
        by_statement.setdefault(call[3], []).append(index)
    runs: list[list[_Call]] = []
    for indexes in by_statement.values():
        if len(indexes) < min_run:
            continue
        run = [calls[indexes[0]]]
        for before, after in itertools.pairwise(indexes):
            first, then = calls[before], calls[after]
            if any(
                other[1] >= first[2] and other[2] <= then[1] and other[3] != first[3]
                for other in calls[before + 1 : after]
            ):
                if len(run) >= min_run:
                    runs.append(run)
                run = []
            run.append(then)
        if len(run) >= min_run:
            runs.append(run)
    return runs


class _Finding:
    __slots__ = ("count", "examples", "largest", "services", "time_s", "traces")

    def __init__(self) -> None:
        self.services: set[str] = set()
        self.count = 0
        self.traces = 0
        self.largest = 0
        self.time_s = 0.0
        self.examples: list[tuple[str, str]] = []


class DatabaseRules:
    """Feed db calls (``add_span`` or ``add_call``), then ask for ``recommendations()``."""

    def __init__(self, config: DatabaseRuleConfig | None = None) -> None:
        self.config = config or DatabaseRuleConfig()
        self.db_calls = 0
        self._stats: dict[str, StatementStats] = {}
        self._ids: dict[str, int] = {}
        #: ``_stats`` and ``_ids`` together: one look-up per call on the hot path.
        self._entries: dict[str, tuple[StatementStats, int]] = {}
        self._by_id: list[str] = []
        #: Ids of statements that manage the connection or transaction, not data (see ``_runs``).
        self._housekeeping: set[int] = set()
        self._traces: dict[str, list[_Call]] = {}
        # The keys of _traces in insertion order: next(iter(dict)) after many deletions from the front
        # walks over every deleted slot, which made flushing the oldest trace cost O(traces).
        self._trace_order: deque[str] = deque()
        self._buffered = 0
        self._n_plus_one: dict[int, _Finding] = {}
        self._identical: dict[int, _Finding] = {}
        self._undecided: dict[int, _Finding] = {}
        self._rng = random.Random(0)
        self._last_resource: object = None
        self._last_service = ""
        #: Called with each trace's db calls before they are analysed and forgotten (``analyzer.impact``
        #: prices fixes per request from them): ``(trace id, [(parent span id, start ns, end ns,
        #: statement id, ...,  service), ...])``.
        self.trace_listener: Callable[[str, list[_Call]], None] | None = None
        #: normalized statement -> the application's stack of an N+1 of it the agent caught.
        self._stacks: dict[str, str] = {}

    def add_span(self, span: SpanRecord) -> None:
        """Take ``span`` into account if it is a db client span with a statement; ignore it otherwise.

        Any span may carry the agent's N+1 event (on the parent of the run): its stack is kept."""
        if span.events:
            self._read_events(span)
        if span.kind != SPAN_KIND_CLIENT:
            return
        attributes = span.attributes
        system = attributes.get(ATTR_DB_SYSTEM_NAME) or attributes.get(ATTR_DB_SYSTEM_OLD)
        if not system:
            return
        statement = attributes.get(ATTR_DB_QUERY_TEXT) or attributes.get(ATTR_DB_STATEMENT_OLD)
        summary = False
        if not isinstance(statement, str) or not statement.strip():
            statement = attributes.get(ATTR_DB_QUERY_SUMMARY)  # the label when there is no text
            if not isinstance(statement, str) or not statement.strip():
                return
            summary = True
        rows = attributes.get(ATTR_DB_RESPONSE_RETURNED_ROWS)
        resource = span.resource
        if resource is not self._last_resource:  # records of one resource share its mapping
            self._last_resource = resource
            self._last_service = service_name(resource)
        start_ns, end_ns = span.start_ns, span.end_ns
        stats = self._add(
            statement,
            max(end_ns - start_ns, 0) / 1e9,  # span.duration_s
            rows if isinstance(rows, int) and not isinstance(rows, bool) and is_count(rows) else None,
            system if type(system) is str else str(system),
            self._last_service,
            span.trace_id,
            span.span_id,
            span.parent_span_id,
            start_ns,
            end_ns,
            None if summary else attributes,
            summary,
        )
        filename = attributes.get(ATTR_CODE_FILE_PATH) or attributes.get(ATTR_CODE_FILEPATH_OLD)
        if filename:
            self._locate(stats, filename, attributes)

    def _locate(self, stats: StatementStats, filename: object, attributes: Mapping[str, object]) -> None:
        """Count the call's code location (current ``code.*`` names, else the older ones)."""
        line = attributes.get(ATTR_CODE_LINE_NUMBER) or attributes.get(ATTR_CODE_LINENO_OLD)
        function = attributes.get(ATTR_CODE_FUNCTION_NAME) or attributes.get(ATTR_CODE_FUNCTION_OLD)
        key = (
            str(filename),
            line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else 0,
            str(function) if function else "",
        )
        locations = stats.locations
        if key in locations:
            locations[key] += 1
        elif len(locations) < self.config.max_counted_locations:
            locations[key] = 1

    def _read_events(self, span: SpanRecord) -> None:
        """Keep the stack of each N+1 the agent caught, by normalized statement (the first one seen)."""
        for event in span.events:
            if event.name != EVENT_DB_N_PLUS_ONE:
                continue
            statement = event.attributes.get(ATTR_DB_QUERY_TEXT)
            stack = event.attributes.get(ATTR_CODE_STACKTRACE)
            if isinstance(statement, str) and isinstance(stack, str) and stack:
                key = normalize_call(statement)[0]
                if key not in self._stacks and len(self._stacks) < self.config.max_buffered_calls:
                    self._stacks[key] = stack

    def add_call(
        self,
        statement: str,
        duration_s: float,
        rows: int | None = None,
        *,
        db_system: str = "",
        service: str = "",
        trace_id: str = "",
        span_id: str = "",
        parent_span_id: str = "",
        start_ns: int = 0,
        end_ns: int = 0,
    ) -> None:
        """One execution of ``statement`` (raw text; only its normalized form is kept) by ``service``
        (its ``service.name``; ``""``: unknown)."""
        self._add(
            statement,
            duration_s,
            rows,
            db_system,
            service,
            trace_id,
            span_id,
            parent_span_id,
            start_ns,
            end_ns,
        )

    def _add(
        self,
        statement: str,
        duration_s: float,
        rows: int | None,
        db_system: str,
        service: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, object] | None = None,
        summary: bool = False,
    ) -> StatementStats:
        # The hot path: once per db call. The statement's SqlInfo is built only when it is new.
        if summary:  # a db.query.summary in place of the statement: its values are unknown
            key, placeholders, digest = " ".join(statement.split()), True, ""
        else:
            key, placeholders, digest = normalize_call(statement)
        if placeholders and attributes is not None:
            values = attributes.get(ATTR_DB_QUERY_VALUES_DIGEST)
            bound = values if type(values) is str and values else _parameters_digest(attributes)
            if bound:  # the values are known: identical calls can be recognized after all
                placeholders, digest = False, bound + digest
            elif attributes.get(ATTR_DB_QUERY_SANITIZED) is True:
                placeholders, digest = False, _UNDECIDED
        entry = self._entries.get(key)
        if entry is None:
            stats = self._stats[key] = StatementStats(_summary_info(key) if summary else analyze(statement))
            self._ids[key] = len(self._by_id)
            entry = self._entries[key] = (stats, len(self._by_id))
            if _HOUSEKEEPING(key):
                self._housekeeping.add(len(self._by_id))
            self._by_id.append(key)
        stats, statement_id = entry
        config = self.config
        self.db_calls += 1
        if db_system:
            stats.systems.add(db_system)
        slow = duration_s >= config.slow_query_s
        if service:
            services = stats.services
            services[service] = services.get(service, 0) + 1
            if slow:
                stats.slow_services.add(service)
        calls = stats.calls = stats.calls + 1
        stats.total_s += duration_s
        if duration_s > stats.max_s:
            stats.max_s = duration_s
        samples = stats.samples
        if len(samples) < config.max_samples:
            samples.append(duration_s)
        else:
            slot = self._rng.randrange(calls)
            if slot < config.max_samples:
                samples[slot] = duration_s
        if rows is not None:
            stats.rows_known += 1
            stats.rows_total += rows
            if rows > stats.rows_max:
                stats.rows_max = rows
        if start_ns > 0:
            if stats.start_ns is None or start_ns < stats.start_ns:
                stats.start_ns = start_ns
            last = end_ns if end_ns > start_ns else start_ns
            if stats.end_ns is None or last > stats.end_ns:
                stats.end_ns = last
        if trace_id:
            if len(stats.examples) < config.max_examples:
                stats.examples.append((trace_id, span_id))
            if slow:
                stats.slow_examples.append((duration_s, trace_id, span_id))
                stats.slow_examples.sort(key=lambda e: (-e[0], e[1], e[2]))
                del stats.slow_examples[config.max_examples :]
            call = (
                parent_span_id,
                start_ns,
                end_ns,
                statement_id,
                "" if placeholders else digest or "-",
                span_id,
                service,
            )
            calls_of_trace = self._traces.get(trace_id)
            if calls_of_trace is None:
                self._traces[trace_id] = [call]
                self._trace_order.append(trace_id)
            else:
                calls_of_trace.append(call)
            self._buffered += 1
            while self._buffered > config.max_buffered_calls and self._traces:
                oldest = self._trace_order.popleft()
                self._flush(oldest, self._traces.pop(oldest))
        return stats

    def _flush(self, trace_id: str, calls: list[_Call]) -> None:
        """Analyse one trace's db calls for N+1 and identical queries, then forget them."""
        self._buffered -= len(calls)
        if self.trace_listener is not None:
            self.trace_listener(trace_id, calls)
        config = self.config
        if len(calls) < min(config.n_plus_one_min_count, config.identical_min_repeats):
            return  # too few calls for either finding (most traces)
        siblings: dict[str, list[_Call]] = {}
        for call in calls:
            siblings.setdefault(call[0], []).append(call)
        seen_n1: set[int] = set()
        min_run = config.n_plus_one_min_count
        for parent, group in siblings.items():
            if not parent or len(group) < min_run:
                continue  # root db spans have no common parent to repeat under; too few for a run
            group.sort(key=_BY_START)
            for run in _runs(group, self._housekeeping, min_run):
                total = sum(max(c[2] - c[1], 0) for c in run) / 1e9
                if len(run) >= config.n_plus_one_min_count and total >= config.n_plus_one_min_total_s:
                    finding = self._n_plus_one.setdefault(run[0][3], _Finding())
                    finding.count += 1
                    if run[0][3] not in seen_n1:
                        seen_n1.add(run[0][3])
                        finding.traces += 1
                    finding.largest = max(finding.largest, len(run))
                    finding.time_s += total
                    finding.services.update(c[6] for c in run if c[6])
                    if len(finding.examples) < config.max_examples:
                        finding.examples.append((trace_id, run[0][5]))
        if len(calls) < config.identical_min_repeats:
            return
        repeats: dict[tuple[int, str], list[_Call]] = {}
        for call in calls:
            if call[4]:  # "" = bind placeholders: parameters unknown, cannot call them identical
                repeats.setdefault((call[3], call[4]), []).append(call)
        for (statement_id, digest), same in repeats.items():
            if len(same) >= config.identical_min_repeats:
                found = self._undecided if digest == _UNDECIDED else self._identical
                finding = found.setdefault(statement_id, _Finding())
                finding.count += len(same)
                finding.traces += 1
                finding.largest = max(finding.largest, len(same))
                finding.time_s += sum(max(c[2] - c[1], 0) for c in same) / 1e9
                finding.services.update(c[6] for c in same if c[6])
                if len(finding.examples) < config.max_examples:
                    finding.examples.append((trace_id, min(same, key=lambda c: c[1])[5]))

    def services(self) -> set[str]:
        """The ``service.name`` of every service whose calls were counted (the db spans' services)."""
        return {service for stats in self._stats.values() for service in stats.services}

    def statement_id(self, normalized: str) -> int | None:
        """The id the calls given to ``trace_listener`` carry for a normalized statement."""
        return self._ids.get(normalized)

    def statements(self) -> list[StatementStats]:
        """Statement aggregates, most total time first."""
        return sorted(self._stats.values(), key=lambda s: (-s.total_s, s.info.normalized))

    def recommendations(self) -> list[Recommendation]:
        """Every finding, ranked by the statement's total time (most first). Flushes the trace buffers."""
        for trace_id in list(self._traces):
            self._flush(trace_id, self._traces.pop(trace_id))
        self._trace_order.clear()
        if self.db_calls < self.config.min_db_spans:
            return []
        found: list[Recommendation] = []
        for stats in self._stats.values():
            found.extend(self._statement_findings(stats))
        return sorted(found, key=Recommendation.sort_key)

    def _statement_findings(self, stats: StatementStats) -> list[Recommendation]:
        """Every finding about one statement shape, in the order the rules are listed above."""
        findings = _StatementFindings(stats, self.config)
        findings.stacktrace = self._stacks.get(stats.info.normalized, "")
        statement_id = self._ids[stats.info.normalized]
        n1 = self._n_plus_one.get(statement_id)
        if n1 is not None:
            _n_plus_one(findings, n1)
        if stats.p95_s >= self.config.slow_query_s:
            _slow_query(findings)
        _statement_shape(findings)
        same = self._identical.get(statement_id)
        if same is not None:
            _repeated_identical(findings, same)
        undecided = self._undecided.get(statement_id)
        if undecided is not None and same is None:
            _repeated_undecided(findings, undecided)
        return findings.out


class _StatementFindings:
    """The findings of one statement shape, and what each of them repeats: its numbers, examples,
    services and confidence."""

    def __init__(self, stats: StatementStats, config: DatabaseRuleConfig) -> None:
        self.stats = stats
        self.config = config
        statement = stats.info.normalized
        #: The statement as a title shows it.
        self.short = statement if len(statement) <= 80 else statement[:77] + "..."
        self.numbers = _numbers(stats)
        self.confidence = confidence(stats.calls, config.full_confidence_calls)
        self.locations = _locations(stats, config.max_locations)
        #: The application's stack of an N+1 of this statement, when the agent caught one.
        self.stacktrace = ""
        self.out: list[Recommendation] = []

    def add(
        self,
        rule: str,
        severity: Severity,
        title: str,
        action: str,
        formula: str,
        threshold: str,
        extra: dict[str, int | float | str] | None = None,
        sample: list[tuple[str, str]] | None = None,
        certainty: float | None = None,
        services: Iterable[str] = (),
        stacktrace: str = "",
    ) -> None:
        """One finding; the services (``services``, else every one that ran the statement) go in the
        title before the statement, examples default to the statement's own."""
        stats = self.stats
        chosen = sample if sample is not None else stats.examples
        named = sorted(set(services) or stats.services)
        head, colon, tail = title.partition(": ")
        title = f"{head.rstrip()} in {_label(named)}{colon}{tail}" if named else title
        service = {"service": ", ".join(named)} if named else {}
        self.out.append(
            Recommendation(
                category=CATEGORY,
                rule=rule,
                severity=severity,
                title=title,
                action=action,
                subject=stats.info.normalized,
                evidence=Evidence(
                    numbers={**self.numbers, **service, **(extra or {})},
                    formula=formula,
                    threshold=threshold,
                    window_start_ns=stats.start_ns,
                    window_end_ns=stats.end_ns,
                    trace_ids=tuple(dict.fromkeys(t for t, _ in chosen if t)),
                    span_ids=tuple(s for _, s in chosen if s),
                ),
                confidence=self.confidence if certainty is None else certainty,
                impact_s=stats.total_s,
                locations=self.locations,
                stacktrace=stacktrace,
            )
        )


def _n_plus_one(findings: _StatementFindings, n1: _Finding) -> None:
    config = findings.config
    severity: Severity = "high" if n1.time_s >= 1.0 or n1.traces >= 10 else "medium"
    findings.add(
        "n_plus_one",
        severity,
        f"N+1 queries: {findings.short}",
        "Load these rows with one query for all parents (a JOIN or WHERE ... IN (...)), or eager "
        "loading in the ORM, instead of one query per parent row.",
        "run = consecutive sibling spans (same parent, by start time) with this statement; "
        "run_ms = sum of their durations",
        f"run length >= {config.n_plus_one_min_count} and run_ms >= {config.n_plus_one_min_total_s * 1000:g}",
        {
            "runs": n1.count,
            "traces_affected": n1.traces,
            "longest_run": n1.largest,
            "time_in_runs_ms": round(n1.time_s * 1000, 3),
        },
        n1.examples,
        min(0.95, findings.confidence + 0.1 * min(n1.count, 3)),
        n1.services,
        findings.stacktrace,
    )


def _slow_query(findings: _StatementFindings) -> None:
    """The slow query, and for a single-table one the columns an index could cover."""
    stats, config = findings.stats, findings.config
    info = stats.info
    p95 = stats.p95_s
    slow_sample = [(t, s) for _, t, s in stats.slow_examples] or stats.examples
    findings.add(
        "slow_query",
        "high" if p95 >= 4 * config.slow_query_s else "medium",
        f"Slow query (p95 {p95 * 1000:.0f} ms): {findings.short}",
        "Check the plan with EXPLAIN ANALYZE; add an index, narrow the query, or precompute "
        "its result if it serves a report.",
        "p95_ms = nearest-rank 95th percentile of the call durations",
        f"p95_ms >= {config.slow_query_s * 1000:g}",
        sample=slow_sample,
        services=stats.slow_services,
    )
    joined = " JOIN " in info.normalized.upper()
    columns = tuple(dict.fromkeys((*info.filter_columns, *info.sort_columns)))
    if (
        info.parsed
        and len(info.tables) == 1
        and not joined
        and info.kind in ("SELECT", "UPDATE", "DELETE")
        and columns
    ):
        table = info.tables[0]
        findings.add(
            "index_candidate",
            "low",
            f"Index candidate on {table} ({', '.join(columns)})",
            f"Candidate only: check with EXPLAIN whether {table} is scanned; if so, consider "
            f"CREATE INDEX ON {table} ({', '.join(columns)}) (equality columns first).",
            "columns = WHERE columns, then ORDER BY columns, of a slow single-table query",
            f"p95_ms >= {config.slow_query_s * 1000:g}",
            {"table": table, "columns": ", ".join(columns)},
            slow_sample,
            min(findings.confidence, 0.5),
            stats.slow_services,
        )


def _statement_shape(findings: _StatementFindings) -> None:
    """What the statement's text alone tells: SELECT *, no LIMIT on a large result, no WHERE."""
    stats, config, short = findings.stats, findings.config, findings.short
    info = stats.info
    if info.select_star:
        findings.add(
            "select_star",
            "low",
            f"SELECT * : {short}",
            "Name the columns the code uses: fewer bytes read and sent, and covering indexes "
            "become possible.",
            "statement selects *",
            "any SELECT *",
        )
    large = stats.rows_known > 0 and stats.rows_max >= config.large_result_rows
    if info.kind == "SELECT" and not info.has_limit and large:
        findings.add(
            "unbounded_result",
            "medium",
            f"Large result without LIMIT ({stats.rows_max} rows): {short}",
            "Page the result (LIMIT with keyset pagination) or aggregate in the database.",
            "rows_max = largest db.response.returned_rows",
            f"no LIMIT and rows_max >= {config.large_result_rows}",
        )
    if info.kind in ("UPDATE", "DELETE") and not info.has_where:
        findings.add(
            "missing_where",
            "high",
            f"{info.kind} without WHERE: {short}",
            f"Make sure every row is meant to change; otherwise add a WHERE clause to the {info.kind}.",
            f"{info.kind} statement has no WHERE clause",
            "any UPDATE/DELETE without WHERE",
        )


def _repeated_identical(findings: _StatementFindings, same: _Finding) -> None:
    findings.add(
        "repeated_identical",
        "medium" if same.largest >= 10 else "low",
        f"Identical query repeated in one trace (up to {same.largest}x): {findings.short}",
        "Run it once per request and reuse the result, or cache it.",
        "count of executions with the same statement and the same literals in one trace",
        f"repeats in one trace >= {findings.config.identical_min_repeats}",
        {
            "traces_affected": same.traces,
            "max_repeats_in_trace": same.largest,
            "repeated_time_ms": round(same.time_s * 1000, 3),
        },
        same.examples,
        services=same.services,
    )


def _repeated_undecided(findings: _StatementFindings, same: _Finding) -> None:
    findings.add(
        "repeated_undecided",
        "info",
        f"Repeated query in one trace (up to {same.largest}x), cannot tell if identical: {findings.short}",
        "The statement was sanitized without a digest of its values: let the agent record"
        " amqadf.db.query.values_digest (an amqadf-agent with sanitize on does) to tell.",
        "count of executions of the same sanitized statement, values unknown, in one trace",
        f"repeats in one trace >= {findings.config.identical_min_repeats}",
        {
            "traces_affected": same.traces,
            "max_repeats_in_trace": same.largest,
            "repeated_time_ms": round(same.time_s * 1000, 3),
        },
        same.examples,
        services=same.services,
    )


def _label(services: list[str], shown: int = 3) -> str:
    """``a, b and c`` or, beyond ``shown`` services, ``a, b, c and 2 more``."""
    if len(services) <= shown:
        return services[0] if len(services) == 1 else ", ".join(services[:-1]) + " and " + services[-1]
    return ", ".join(services[:shown]) + f" and {len(services) - shown} more"


def _locations(stats: StatementStats, shown: int) -> tuple[CodeLocation, ...]:
    """The ``shown`` lines most of the statement's calls came from, with their share of all calls."""
    return CodeLocation.ranked(stats.locations, stats.calls, shown)


def _numbers(stats: StatementStats) -> dict[str, int | float | str]:
    numbers: dict[str, int | float | str] = {
        "calls": stats.calls,
        "total_ms": round(stats.total_s * 1000, 3),
        "mean_ms": round(stats.mean_s * 1000, 3),
        "p95_ms": round(stats.p95_s * 1000, 3),
        "max_ms": round(stats.max_s * 1000, 3),
    }
    if stats.systems:
        numbers["db_system"] = ", ".join(sorted(stats.systems))
    if stats.rows_known:
        numbers["rows_mean"] = round(stats.rows_total / stats.rows_known, 3)
        numbers["rows_max"] = stats.rows_max
    return numbers


def analyze_spans(
    records: Iterable[Record], config: DatabaseRuleConfig | None = None
) -> list[Recommendation]:
    """Run the database rules over ``records`` (non-span records are skipped)."""
    rules = DatabaseRules(config)
    for record in records:
        if type(record) is SpanRecord:
            rules.add_span(record)
    return rules.recommendations()


def _parameters_digest(attributes: Mapping[str, object]) -> str:
    """A digest of the bind parameters a db span carries (``""``: none): the values never leave it."""
    parameters = attributes.get(ATTR_DB_STATEMENT_PARAMETERS_OLD)
    if parameters is not None:
        text = str(parameters)
    else:
        named = sorted(
            (key, str(value))
            for key, value in attributes.items()
            if key.startswith(ATTR_DB_QUERY_PARAMETER_PREFIX)
        )
        if not named:
            return ""
        text = "\x00".join(f"{key}\x01{value}" for key, value in named)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
