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

``optimize_cache_settings(cache_stats)`` takes one cache's ``{'hit_rate': 0..1, 'eviction_count': int,
'total_size_mb': float, 'max_size_mb': float}`` (optionally ``'name'``; or a list of them) and returns
a list of dicts, empty for a healthy cache. Grow: evictions while the hit rate is below 0.95 and the
cache is at least 90 % full (double the max); shrink: no evictions and under half full (peak plus
25 %). Each dict is a ``Recommendation.to_dict()`` (``fingerprint``, ``category: "cache"``, ``rule``,
``severity``, ``title``, ``subject``: the cache name or its index, ``confidence``, ``impact_s``) in
which the seed's keys keep their meaning: ``action`` is ``"grow"`` or ``"shrink"`` (what to change, in
words, is in ``change``), ``reason`` says why, ``recommended_max_size_mb`` the new max, ``cache`` the name
or index, and ``evidence`` holds the seed's numbers (``hit_rate``, ``eviction_count``, ``total_size_mb``,
``max_size_mb``, ``fill``, ``threshold``) beside ``numbers``, ``formula``, ``window`` (null),
``trace_ids`` and ``span_ids`` (empty: one snapshot of counters, no traces). Confidence is 0.5: one
snapshot, without the request count that would tell how much data it summarizes.

``optimize_worker_threads(metrics) -> int`` takes ``{'cpu_utilization': 0..1, 'current_threads': int,
'throughput': tasks/s, 'avg_latency': seconds}`` and returns the recommended thread count: Little's law
``ceil(throughput * avg_latency / 0.7)`` (at least 1); when CPU-bound (``cpu_utilization >= 0.85``) never
more than ``current_threads``. ``analyze_worker_threads(metrics)`` returns the same with its evidence.

``analyze_telemetry(paths, ...)`` runs the whole analysis of exported telemetry (OTLP JSON files, as
``amqadf-analyze`` reads them: ``analyzer.run.analyze``) and returns its recommendations as dicts, ranked;
the slow-query threshold is this tuner's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from amqadf_agent.analyzer.recommendation import Evidence, Recommendation, Severity
from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules
from amqadf_agent.analyzer.rules.pool_sizing import littles_law, recommend_workers

__all__ = ["PerformanceTuner"]

_LOG_TRACE = "query-log"
#: Confidence of a cache snapshot's advice (see the module docstring).
_CACHE_SNAPSHOT_CONFIDENCE = 0.5


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

    def analyze_telemetry(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[dict[str, Any]]:
        """Recommendations (``Recommendation.to_dict()``, ranked) of the telemetry files or directories
        at ``paths``: the analysis ``amqadf-analyze`` runs, with this tuner's slow-query threshold.

        Unreadable files and lines are skipped (as without ``--strict``); no records: no recommendations.
        """
        # The reader and every rule: imported on first use, not with the seed's API.
        from amqadf_agent.analyzer.run import AnalysisOptions, analyze

        options = AnalysisOptions(
            paths=tuple(paths),
            slow_query_ms=self.database.slow_query_s * 1000,
            service=service,
            since_ns=since_ns,
            until_ns=until_ns,
        )
        return [recommendation.to_dict() for recommendation in analyze(options).recommendations]

    def optimize_cache_settings(
        self, cache_stats: Mapping[str, Any] | Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Grow/shrink advice for one cache's stats, or for each of a list of them (see the docstring)."""
        items = [cache_stats] if isinstance(cache_stats, Mapping) else list(cache_stats)
        out: list[dict[str, Any]] = []
        for index, stats in enumerate(items):
            hit_rate = _number(stats.get("hit_rate"))
            evictions = _number(stats.get("eviction_count"))
            size = _number(stats.get("total_size_mb"))
            max_size = _number(stats.get("max_size_mb"))
            if hit_rate is None or evictions is None or size is None or max_size is None or max_size <= 0:
                continue
            fill = size / max_size
            evidence = {
                "hit_rate": hit_rate,
                "eviction_count": evictions,
                "total_size_mb": size,
                "max_size_mb": max_size,
                "fill": round(fill, 4),
            }
            name = stats.get("name", index)
            if evictions > 0 and hit_rate < 0.95 and fill >= 0.9:
                target = round(max_size * 2, 3)
                out.append(
                    _cache_advice(
                        name,
                        "grow",
                        "medium",
                        target,
                        f"{evictions:g} evictions at {fill:.0%} full while the hit rate is "
                        f"{hit_rate:.0%}: a larger cache keeps what it now evicts",
                        "new max = 2 * max_size_mb",
                        "evictions > 0, hit_rate < 0.95, fill >= 0.9",
                        evidence,
                    )
                )
            elif evictions == 0 and fill < 0.5:
                target = round(max(size * 1.25, 1.0), 3)
                out.append(
                    _cache_advice(
                        name,
                        "shrink",
                        "low",
                        target,
                        f"only {fill:.0%} full and nothing evicted: the rest of the memory is idle",
                        "new max = max(1.25 * total_size_mb, 1)",
                        "evictions == 0, fill < 0.5",
                        evidence,
                    )
                )
        return out

    def analyze_worker_threads(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The recommended thread count with its evidence (the richer form of ``optimize_worker_threads``)."""
        cpu = _number(metrics.get("cpu_utilization")) or 0.0
        current_raw = _number(metrics.get("current_threads"))
        current = max(int(current_raw), 1) if current_raw is not None else 1
        throughput = max(_number(metrics.get("throughput")) or 0.0, 0.0)
        latency = max(_number(metrics.get("avg_latency")) or 0.0, 0.0)
        needed = littles_law(throughput, latency)
        recommended, caps = recommend_workers(throughput, latency, target_utilization=0.7)
        cpu_bound = cpu >= 0.85
        if cpu_bound and recommended > current:
            recommended = current
            caps.append(f"CPU-bound (cpu_utilization {cpu:.0%}): more threads would not add throughput")
        return {
            "recommended_threads": recommended,
            "current_threads": current,
            "action": "grow" if recommended > current else "shrink" if recommended < current else "keep",
            "littles_law_concurrency": round(needed, 6),
            "formula": "recommended = ceil(throughput * avg_latency / 0.7), at least 1",
            "cpu_bound": cpu_bound,
            "caps": caps,
        }

    def optimize_worker_threads(self, metrics: Mapping[str, Any]) -> int:
        """The recommended number of worker threads (see the module docstring)."""
        return int(self.analyze_worker_threads(metrics)["recommended_threads"])


def _cache_advice(
    name: object,
    action: str,
    severity: Severity,
    target_mb: float,
    reason: str,
    formula: str,
    threshold: str,
    numbers: dict[str, float],
) -> dict[str, Any]:
    """One ``optimize_cache_settings`` result: a recommendation's dict with the seed's keys kept."""
    subject = str(name)
    verb = "Grow" if action == "grow" else "Shrink"
    recommendation = Recommendation(
        category="cache",
        rule=action,
        severity=severity,
        title=f"{verb} cache {subject}: {numbers['max_size_mb']:g} -> {target_mb:g} MB",
        action=f"Set the max size of cache {subject} to {target_mb:g} MB: {reason}.",
        subject=subject,
        evidence=Evidence(
            numbers={**numbers, "recommended_max_size_mb": target_mb},
            formula=f"fill = total_size_mb / max_size_mb; {formula}",
            threshold=threshold,
        ),
        confidence=_CACHE_SNAPSHOT_CONFIDENCE,
    )
    data = recommendation.to_dict()
    data["change"] = data["action"]
    data.update(cache=name, action=action, recommended_max_size_mb=target_mb, reason=reason)
    data["evidence"] = {**data["evidence"], **numbers}
    return data


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
