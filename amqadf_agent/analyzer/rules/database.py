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

Memory: one pass; at most ``max_statements`` distinct statements (10 000: a table per tenant makes
hundreds of thousands; the calls of the others are counted in ``calls_not_kept``, and the report
says so), per statement a few counters and at most ``max_samples`` durations (a
reservoir of 2048 doubles, 16 KB, for p95: its nearest-rank p95 is within about a percentile of the
exact one); per trace, compact tuples of its db spans, at most ``max_buffered_calls`` in all
(50 000, about 17 MB; when more arrive, the traces seen first are analysed and dropped). A trace is
thus analysed whole when its db spans arrive within 50 000 db spans of each other, as an exporter's
batches of a trace do; a trace spread wider is analysed in parts (an N+1 run or a repeat split
across them can be missed).

This module streams the spans into the per-statement aggregates and detects the runs and repeats in
the per-trace buffers; the aggregates, thresholds and the findings' wording are in
``rules.database_findings``, the statement parsing in ``analyzer.sql``.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, Record, SpanRecord, code_location, service_name
from amqadf_agent.analyzer.plausible import is_count
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.analyzer.rules.database_findings import (
    DatabaseRuleConfig,
    Occurrences,
    StatementStats,
    statement_findings,
)
from amqadf_agent.analyzer.sql import SqlInfo, analyze, normalize_call
from amqadf_agent.semconv import (
    ATTR_CODE_FILE_PATH,
    ATTR_CODE_FILEPATH_OLD,
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


class DatabaseRules:
    """Feed db calls (``add_span`` or ``add_call``), then ask for ``recommendations()``."""

    def __init__(self, config: DatabaseRuleConfig | None = None) -> None:
        self.config = config or DatabaseRuleConfig()
        self.db_calls = 0
        #: Calls of statements beyond ``config.max_statements`` distinct ones.
        self.calls_not_kept = 0
        self._stats: dict[str, StatementStats] = {}
        self._ids: dict[str, int] = {}
        #: ``_stats`` and ``_ids`` together: one look-up per call on the hot path.
        self._entries: dict[str, tuple[StatementStats, int]] = {}
        self._by_id: list[str] = []
        #: Ids of statements that manage the connection or transaction, not data (see ``_runs``).
        self._housekeeping: set[int] = set()
        self._traces: dict[str, list[_Call]] = {}
        # The keys of _traces in insertion order: next(iter(dict)) after many deletions from the front
        # walks over every deleted slot, which would make flushing the oldest trace cost O(traces).
        self._trace_order: deque[str] = deque()
        self._buffered = 0
        self._n_plus_one: dict[int, Occurrences] = {}
        self._identical: dict[int, Occurrences] = {}
        self._undecided: dict[int, Occurrences] = {}
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
        if filename and stats is not None:
            self._locate(stats, filename, attributes)

    def _locate(self, stats: StatementStats, filename: object, attributes: Mapping[str, object]) -> None:
        """Count the call's code location (``model.code_location``)."""
        key = code_location(filename, attributes)
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
    ) -> StatementStats | None:
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
            if len(self._by_id) >= self.config.max_statements:  # a table per tenant, generated SQL
                self.db_calls += 1
                self.calls_not_kept += 1
                return None
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
            slot = int(self._rng.random() * calls)  # randrange costs ~10x this
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
                    finding = self._n_plus_one.setdefault(run[0][3], Occurrences())
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
                finding = found.setdefault(statement_id, Occurrences())
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
        """Every finding about one statement shape."""
        statement_id = self._ids[stats.info.normalized]
        return statement_findings(
            stats,
            self.config,
            self._stacks.get(stats.info.normalized, ""),
            self._n_plus_one.get(statement_id),
            self._identical.get(statement_id),
            self._undecided.get(statement_id),
        )


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
