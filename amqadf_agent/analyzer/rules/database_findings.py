"""The database rules' findings about one statement shape: its aggregates (``StatementStats``), the
thresholds (``DatabaseRuleConfig``) and the wording, numbers and confidence of each finding.

``rules.database`` streams the db spans into these aggregates and detects the N+1 runs and repeats
(``Occurrences``); ``statement_findings`` turns them into recommendations, in the order the rules are
listed there.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from amqadf_agent.analyzer.recommendation import CodeLocation, Evidence, Recommendation, Severity
from amqadf_agent.analyzer.sql import SqlInfo

__all__ = ["DatabaseRuleConfig", "Occurrences", "StatementStats", "confidence", "statement_findings"]

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
    #: Buffered db calls of unfinished traces, all traces together (see ``rules.database``).
    max_buffered_calls: int = 50_000
    max_samples: int = 2048
    #: Distinct statements kept; the calls of further ones are counted, not analysed (``not_kept``).
    max_statements: int = 10_000


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


class Occurrences:
    """What one detector (N+1 runs, identical or undecided repeats) found of one statement, all traces
    together."""

    __slots__ = ("count", "examples", "largest", "services", "time_s", "traces")

    def __init__(self) -> None:
        self.services: set[str] = set()
        self.count = 0
        self.traces = 0
        self.largest = 0
        self.time_s = 0.0
        self.examples: list[tuple[str, str]] = []


def statement_findings(
    stats: StatementStats,
    config: DatabaseRuleConfig,
    stacktrace: str,
    n1: Occurrences | None,
    same: Occurrences | None,
    undecided: Occurrences | None,
) -> list[Recommendation]:
    """Every finding about one statement shape: ``stacktrace`` is the application's stack of an N+1
    of it, ``n1``/``same``/``undecided`` what the detectors found of it (``None``: nothing)."""
    findings = _StatementFindings(stats, config)
    findings.stacktrace = stacktrace
    if n1 is not None:
        _n_plus_one(findings, n1)
    if stats.p95_s >= config.slow_query_s:
        _slow_query(findings)
    _statement_shape(findings)
    if same is not None:
        _repeated_identical(findings, same)
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


def _n_plus_one(findings: _StatementFindings, n1: Occurrences) -> None:
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


def _repeated_identical(findings: _StatementFindings, same: Occurrences) -> None:
    findings.add(
        "repeated_identical",
        "medium" if same.largest >= 10 else "low",
        f"Identical query repeated in one trace (up to {same.largest}x): {findings.short}",
        "Run it once per request and reuse the result, or cache it.",
        "count of executions with the same statement and the same literals in one trace",
        f"repeats in one trace >= {findings.config.identical_min_repeats}",
        _repeat_numbers(same),
        same.examples,
        services=same.services,
    )


def _repeated_undecided(findings: _StatementFindings, same: Occurrences) -> None:
    findings.add(
        "repeated_undecided",
        "info",
        f"Repeated query in one trace (up to {same.largest}x), cannot tell if identical: {findings.short}",
        "The statement was sanitized without a digest of its values: let the agent record"
        " amqadf.db.query.values_digest (an amqadf-agent with sanitize on does) to tell.",
        "count of executions of the same sanitized statement, values unknown, in one trace",
        f"repeats in one trace >= {findings.config.identical_min_repeats}",
        _repeat_numbers(same),
        same.examples,
        services=same.services,
    )


def _repeat_numbers(same: Occurrences) -> dict[str, int | float | str]:
    """The numbers of a repeated query, identical or undecided."""
    return {
        "traces_affected": same.traces,
        "max_repeats_in_trace": same.largest,
        "repeated_time_ms": round(same.time_s * 1000, 3),
    }


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
