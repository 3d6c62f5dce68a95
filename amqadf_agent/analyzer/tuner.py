"""``PerformanceTuner``: the seed's API, answered by the analyzer's rules.

``optimize_database_queries(query_logs)`` takes records ``{'query': str, 'execution_time': float
(seconds), 'rows_returned': int}`` and returns a list of recommendation dicts, most total time first,
each ``Recommendation.to_dict()`` (see ``amqadf_agent.analyzer.recommendation``)::

    {"fingerprint", "category": "database", "rule", "severity", "title", "action",
     "subject": <normalized statement>, "confidence", "impact_s",
     "evidence": {"numbers": {"calls", "total_ms", "mean_ms", "p95_ms", "max_ms", "rows_mean",
                              "rows_max", ...}, "formula", "threshold", "window", "trace_ids", "span_ids"}}

It builds the same statement statistics as the span rules (``rules.database``), so slow queries,
``SELECT *``, large results without ``LIMIT``, ``UPDATE``/``DELETE`` without ``WHERE``, index
candidates and identical repeated queries are found the same way. Query logs carry no trace structure:
N+1 detection needs spans, and the records are treated as one unit of work for repeated queries. Any
number of records is analysed (the caller chose them); confidence is lower for few calls. Malformed
records (no query text, a non-numeric time) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules

__all__ = ["PerformanceTuner"]

_LOG_TRACE = "query-log"


class PerformanceTuner:
    """Tuning advice from plain records (the seed's API)."""

    def __init__(self, database: DatabaseRuleConfig | None = None) -> None:
        self.database = replace(database or DatabaseRuleConfig(), min_db_spans=1)

    def optimize_database_queries(self, query_logs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Recommendations for ``query_logs`` as dicts (see the module docstring), ranked by total time."""
        rules = DatabaseRules(self.database)
        for index, record in enumerate(query_logs):
            query = record.get("query") if isinstance(record, Mapping) else None
            seconds = record.get("execution_time") if isinstance(record, Mapping) else None
            if not isinstance(query, str) or not query.strip():
                continue
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                continue
            rows = record.get("rows_returned")
            rows = rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else None
            rules.add_call(
                query,
                float(seconds),
                rows,
                trace_id=_LOG_TRACE,
                span_id=f"{index:016x}",
                parent_span_id=_LOG_TRACE,
                start_ns=0,
                end_ns=0,
            )
        found = []
        for recommendation in rules.recommendations():
            data = recommendation.to_dict()
            # Query logs have no traces: the span ids are the indexes of the records, in hex.
            data["evidence"]["trace_ids"] = [t for t in data["evidence"]["trace_ids"] if t != _LOG_TRACE]
            found.append(data)
        return found
