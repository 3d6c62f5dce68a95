"""Autoscaling rules: the windows (``analyzer.windows``) replayed through ``AutoScaler.simulate()``.

Each window gives one step ``(window end in seconds, instances seen, ScalingMetrics)``; the instance
count is the number of distinct ``service.instance.id`` seen in the window (at least 1), what really
ran, not the previous decision. The scaler (``ScalingRuleConfig.scaler()``) scales on CPU and memory
(target 0.7 / 0.8), p95 latency (target ``p95_target_s``) and queue depth per instance, with an
error-rate guard. Beside it a plain CPU-target HPA (CPU only, target 0.7) replays the same steps:
``cpu_only_target`` in the timeline shows where latency or queueing drove a different answer.

Joint reasoning: when the p95 of a window is above the target and the database rules found an N+1 or a
slow query (``database_findings``) on the same service, a ``scaling/database_first`` recommendation says
so, and is ranked before the scale-up recommendation: more instances multiply the database load that
causes the latency. The database findings name their services (``evidence.numbers["service"]``, also
in the listing of this recommendation); they count as the same service when a service was chosen (the
database rules then saw only its spans), or when the db spans came from that one service only
(``db_services``).

Example trace and span ids: the slowest SERVER spans (``Window.slowest``) of the windows that drove
each finding: the scale-up windows for ``scale_up``, the scale-down windows (else the last) for
``scale_down``, the windows over the p95 target for ``database_first`` (then the examples of the
database findings it defers to). None when the windows were rebuilt from metrics only (no spans).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from amqadf_agent.analyzer.recommendation import Evidence, Recommendation, format_time
from amqadf_agent.analyzer.windows import Window
from amqadf_agent.scaling.autoscaler import AutoScaler, ScalingDecision, ScalingMetrics

__all__ = ["ScalingResult", "ScalingRuleConfig", "analyze_scaling"]

CATEGORY = "scaling"
_DB_CAUSES = ("n_plus_one", "slow_query")
#: Data floors: fewer windows or requests than these give a timeline but no scaling decision (a
#: single 1 s request must not say "scale to 2"); the report says ``insufficient_data`` instead.
MIN_WINDOWS: Final = 2
MIN_REQUESTS: Final = 20


@dataclass(frozen=True, slots=True)
class ScalingRuleConfig:
    """The scaler replayed, and the minimum of data."""

    min_instances: int = 1
    max_instances: int = 20
    cpu_target: float = 0.7
    memory_target: float = 0.8
    p95_target_s: float = 0.5
    queue_depth_target: float | None = 10.0
    error_rate_target: float = 0.05
    #: Fewer windows than this: a timeline, but no recommendation object.
    min_windows: int = MIN_WINDOWS
    #: Fewer requests than this in all windows together (when requests were observed at all): the same.
    min_requests: int = MIN_REQUESTS

    def scaler(self) -> AutoScaler:
        return AutoScaler(
            self.min_instances,
            self.max_instances,
            cpu_target=self.cpu_target,
            memory_target=self.memory_target,
            response_time_p95_target=self.p95_target_s,
            queue_depth_target=self.queue_depth_target,
            error_rate_target=self.error_rate_target,
        )

    def cpu_only_scaler(self) -> AutoScaler:
        return AutoScaler(self.min_instances, self.max_instances, cpu_target=0.7, memory_target=None)


@dataclass(frozen=True, slots=True)
class ScalingResult:
    """The timeline, the current recommendation, and the findings."""

    window_seconds: int
    service: str | None
    windows: tuple[Window, ...]
    decisions: tuple[ScalingDecision, ...]
    cpu_only: tuple[ScalingDecision, ...]
    recommendations: tuple[Recommendation, ...]
    #: Why no decision was drawn (a data floor not met), or ``None``.
    insufficient_data: dict[str, Any] | None = None
    #: Instances that served no request, left out of the counts and means, with their resource use.
    non_serving_instances: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``scaling`` section of the JSON report (see ``analyzer.summary``)."""
        timeline = []
        for window, decision, cpu in zip(self.windows, self.decisions, self.cpu_only, strict=True):
            metrics = {
                field.name: _round(getattr(window.metrics, field.name))
                for field in dataclasses.fields(ScalingMetrics)
            }
            timeline.append(
                {
                    "time": format_time(window.start_ns),
                    "time_ns": window.start_ns,
                    "current": decision.current_instances,
                    "target": decision.target_instances,
                    "action": decision.action,
                    "limited_by": decision.limited_by,
                    "reason": decision.reason,
                    "metrics": metrics,
                    "cpu_only_target": cpu.target_instances,
                }
            )
        recommendation = None
        if self.decisions and self.insufficient_data is None:
            last = self.decisions[-1]
            recommendation = {
                "action": last.action,
                "current": last.current_instances,
                "target": last.target_instances,
                "reason": last.reason,
            }
        return {
            "window_seconds": self.window_seconds,
            "service": self.service,
            "timeline": timeline,
            "recommendation": recommendation,
            "insufficient_data": self.insufficient_data,
            "non_serving_instances": list(self.non_serving_instances),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def analyze_scaling(
    windows: Sequence[Window],
    *,
    window_seconds: int,
    service: str | None = None,
    database_findings: Iterable[Recommendation] = (),
    db_services: Iterable[str] = (),
    config: ScalingRuleConfig | None = None,
    non_serving_instances: Sequence[dict[str, Any]] = (),
) -> ScalingResult:
    """Replay ``windows`` and reason about the result (see the module docstring)."""
    config = config or ScalingRuleConfig()
    steps = [(w.end_ns / 1e9, w.instances, w.metrics) for w in windows]
    decisions = tuple(config.scaler().simulate(steps))
    cpu_only = tuple(config.cpu_only_scaler().simulate(steps))
    found: list[Recommendation] = []
    insufficient = _insufficient(windows, config)
    if insufficient is None:
        found = _findings(
            windows, decisions, cpu_only, service, list(database_findings), set(db_services), config
        )
    return ScalingResult(
        window_seconds,
        service,
        tuple(windows),
        decisions,
        cpu_only,
        tuple(found),
        insufficient,
        tuple(non_serving_instances),
    )


def _insufficient(windows: Sequence[Window], config: ScalingRuleConfig) -> dict[str, Any] | None:
    """The data floor not met, or ``None``: at least ``min_windows`` windows and, when requests were
    observed, ``min_requests`` of them (metrics-only data, CPU and memory, has no request floor)."""
    requests = sum(w.requests for w in windows)
    observed = any(w.request_source for w in windows)
    if len(windows) >= config.min_windows and (not observed or requests >= config.min_requests):
        return None
    return {
        "windows": len(windows),
        "requests": round(requests, 3),
        "min_windows": config.min_windows,
        "min_requests": config.min_requests,
        "reason": f"{len(windows)} window(s) and {requests:g} request(s): a scaling decision needs at "
        f"least {config.min_windows} windows and {config.min_requests} requests",
    }


def _examples(
    windows: Sequence[Window], indexes: Iterable[int], limit: int = 3
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Trace and span ids of the ``limit`` slowest SERVER spans of the windows at ``indexes``."""
    spans = sorted((e for i in indexes for e in windows[i].slowest), reverse=True)[:limit]
    return tuple(dict.fromkeys(t for _, t, _ in spans)), tuple(s for _, _, s in spans)


@dataclass(frozen=True, slots=True)
class _Replay:
    """The replayed windows and decisions the findings are about, and what every finding repeats."""

    windows: Sequence[Window]
    decisions: Sequence[ScalingDecision]
    cpu_only: Sequence[ScalingDecision]
    subject: str
    confidence: float
    config: ScalingRuleConfig

    def evidence(
        self, numbers: dict[str, int | float | str], formula: str, threshold: str, indexes: Iterable[int]
    ) -> Evidence:
        """Evidence over all the windows, with example spans from the windows at ``indexes``."""
        trace_ids, span_ids = _examples(self.windows, indexes)
        requests = round(sum(w.requests for w in self.windows), 3)
        floor = f"; data floor: >= {self.config.min_windows} windows, >= {self.config.min_requests} requests"
        return Evidence(
            numbers={**numbers, "requests": requests},
            formula=formula,
            threshold=threshold + floor,
            window_start_ns=self.windows[0].start_ns,
            window_end_ns=self.windows[-1].end_ns,
            trace_ids=trace_ids,
            span_ids=span_ids,
        )


#: The formula of the scale-up and scale-down findings.
_HPA_FORMULA = "desired = ceil(current * value / target) per metric, the max (Kubernetes HPA)"


def _findings(
    windows: Sequence[Window],
    decisions: Sequence[ScalingDecision],
    cpu_only: Sequence[ScalingDecision],
    service: str | None,
    database_findings: list[Recommendation],
    db_services: set[str],
    config: ScalingRuleConfig,
) -> list[Recommendation]:
    replay = _Replay(
        windows,
        decisions,
        cpu_only,
        service or "(all services)",
        round(min(0.95, 0.3 + 0.05 * len(windows)), 3),
        config,
    )
    ups = [i for i, d in enumerate(decisions) if d.action == "scale_up"]
    slow = [
        i
        for i, w in enumerate(windows)
        if w.metrics.response_time_p95 is not None and w.metrics.response_time_p95 > config.p95_target_s
    ]
    same_service = service is not None or len(db_services) <= 1
    causes = [r for r in database_findings if r.category == "database" and r.rule in _DB_CAUSES]
    out: list[Recommendation] = []
    db_first = bool(slow and causes and same_service)
    db_impact = max((r.impact_s for r in causes), default=0.0)
    if db_first:
        out.append(_database_first(replay, slow, causes, len(ups), db_impact))
    if ups:
        out.append(_scale_up(replay, ups, db_first, db_impact))
    elif decisions[-1].action == "scale_down":
        out.append(_scale_down(replay))
    return out


def _database_first(
    replay: _Replay, slow: list[int], causes: list[Recommendation], scale_ups: int, db_impact: float
) -> Recommendation:
    """Windows over the p95 target while the database rules found N+1 or slow queries: fix those first."""
    worst_p95 = max((replay.windows[i].metrics.response_time_p95 or 0.0) for i in slow)
    listed = "; ".join(
        f"{r.rule}"
        + (f" in {svc}" if (svc := r.evidence.numbers.get("service")) else "")
        + f": {r.subject[:80]}"
        for r in causes[:3]
    )
    evidence = replay.evidence(
        {
            "windows_over_p95_target": len(slow),
            "worst_p95_ms": round(worst_p95 * 1000, 3),
            "database_findings": len(causes),
            "database_time_s": round(sum(r.impact_s for r in causes), 6),
            "scale_up_decisions": scale_ups,
        },
        "windows with response_time_p95 > target, and N+1 / slow-query findings",
        f"response_time_p95 > {replay.config.p95_target_s * 1000:g} ms and a database finding",
        slow,
    )
    # Then the examples of the database findings it defers to.
    trace_ids = (*evidence.trace_ids, *(t for r in causes for t in r.evidence.trace_ids))
    span_ids = (*evidence.span_ids, *(s for r in causes for s in r.evidence.span_ids))
    return Recommendation(
        category=CATEGORY,
        rule="database_first",
        severity="high",
        title=f"p95 latency {worst_p95 * 1000:.0f} ms is explained by database time: fix the queries "
        "before adding instances",
        action=f"Fix the database findings first ({listed}); more instances would multiply the "
        "load on the database that causes the latency. Re-evaluate scaling afterwards.",
        subject=replay.subject,
        evidence=dataclasses.replace(
            evidence, trace_ids=tuple(dict.fromkeys(trace_ids))[:6], span_ids=span_ids[:6]
        ),
        confidence=replay.confidence,
        impact_s=db_impact + 1e-6,
    )


def _scale_up(replay: _Replay, ups: list[int], db_first: bool, db_impact: float) -> Recommendation:
    decisions, cpu_only, config, subject = replay.decisions, replay.cpu_only, replay.config, replay.subject
    last = decisions[-1]
    peak_target = max(d.target_instances for d in decisions)
    first_up = decisions[ups[0]]
    disagreements = sum(
        1 for d, c in zip(decisions, cpu_only, strict=True) if d.target_instances != c.target_instances
    )
    note = " after the database fixes above" if db_first else ""
    return Recommendation(
        category=CATEGORY,
        rule="scale_up",
        severity="medium",
        title=f"Scale {subject} to {peak_target} instances at peak (now {last.current_instances})",
        action=f"Allow up to {peak_target} instances{note}: the replayed autoscaler asked for "
        f"{len(ups)} scale-up(s); first: {first_up.reason}",
        subject=subject,
        evidence=replay.evidence(
            {
                "windows": len(replay.windows),
                "scale_up_decisions": len(ups),
                "peak_target": peak_target,
                "current": last.current_instances,
                "final_target": last.target_instances,
                "limiting_metric": first_up.limiting_metric or "",
                "cpu_only_hpa_peak_target": max(c.target_instances for c in cpu_only),
                "windows_where_cpu_only_hpa_differs": disagreements,
            },
            _HPA_FORMULA,
            f"cpu > {config.cpu_target:g}, memory > {config.memory_target:g}, "
            f"p95 > {config.p95_target_s:g} s, queue/instance > {config.queue_depth_target}, "
            "beyond the 0.1 tolerance",
            ups,
        ),
        confidence=replay.confidence,
        impact_s=0.0 if db_first else db_impact,
    )


def _scale_down(replay: _Replay) -> Recommendation:
    decisions, subject = replay.decisions, replay.subject
    last = decisions[-1]
    downs = [i for i, d in enumerate(decisions) if d.action == "scale_down"] or [len(replay.windows) - 1]
    return Recommendation(
        category=CATEGORY,
        rule="scale_down",
        severity="low",
        title=f"{subject} is over-provisioned: {last.current_instances} -> {last.target_instances}",
        action=f"Run {last.target_instances} instances: {last.reason}",
        subject=subject,
        evidence=replay.evidence(
            {
                "windows": len(replay.windows),
                "current": last.current_instances,
                "target": last.target_instances,
            },
            _HPA_FORMULA,
            "every metric below its target beyond the 0.1 tolerance",
            downs,
        ),
        confidence=replay.confidence,
    )
