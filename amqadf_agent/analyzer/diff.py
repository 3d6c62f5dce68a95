"""Two JSON reports compared, for a CI gate: what is new, resolved or worse, and which routes slowed.

``amqadf-analyze diff BASE.json NEW.json`` and ``amqadf-analyze --baseline BASE.json`` compare a
report with a baseline (both ``--format json`` output, schema version 2 or 3):

* findings by fingerprint (stable: rule and subject, never run data): **new** (only in NEW),
  **resolved** (only in BASE), **regressed** (in both, with a higher severity or at least
  ``FINDING_MARGIN`` more time at stake), **unchanged**;
* routes (``top_routes``, version 3 on both sides) by service, method and route: a **p95
  regression** when NEW's p95 is at least ``P95_MARGIN`` over BASE's and at least ``P95_FLOOR_MS``
  more (the noise floor), an **error-rate regression** when it rose by ``ERROR_RATE_FLOOR`` or more;
  routes with fewer than ``MIN_REQUESTS`` requests on either side are not compared (too few to tell).

A regression (a new or regressed finding, a route regression) is what fails the gate: exit 3. The
thresholds are in every line that reports one, so that a developer sees why the build failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from amqadf_agent.analyzer.recommendation import severity_rank
from amqadf_agent.analyzer.report_values import items, number, shown

__all__ = ["ReportDiff", "ReportError", "diff_reports", "load_report"]

#: A route's p95 regressed when it grew by this share of the baseline's ...
P95_MARGIN: Final = 0.2
#: ... and by at least this many milliseconds (below, the difference is noise).
P95_FLOOR_MS: Final = 10.0
#: A route's error rate regressed when it rose by this much (absolute: 0.02 = 2 points).
ERROR_RATE_FLOOR: Final = 0.02
#: Routes with fewer requests than this on either side are not compared.
MIN_REQUESTS: Final = 20
#: A finding in both reports regressed when its time at stake grew by this share.
FINDING_MARGIN: Final = 0.5
#: Rounding slack in the comparisons: 0.03 - 0.01 is 0.0199999... in floating point.
_EPSILON: Final = 1e-9
#: Report schema versions this module reads.
VERSIONS: Final = (2, 3)


class ReportError(ValueError):
    """A file that is not a JSON report of ``amqadf-analyze``: the message is one line naming it."""


@dataclass(slots=True)
class ReportDiff:
    """What changed from ``base`` to ``new``."""

    new: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    regressed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    route_regressions: list[dict[str, Any]] = field(default_factory=list)
    #: Routes compared (present with enough requests in both reports).
    routes_compared: int = 0

    @property
    def regression(self) -> bool:
        """True when the gate fails: a new or regressed finding, or a route regression."""
        return bool(self.new or self.regressed or self.route_regressions)

    def to_json(self) -> dict[str, Any]:
        return {
            "regression": self.regression,
            "new": self.new,
            "resolved": self.resolved,
            "regressed": self.regressed,
            "unchanged": self.unchanged,
            "route_regressions": self.route_regressions,
            "routes_compared": self.routes_compared,
            "thresholds": {
                "p95_margin": P95_MARGIN,
                "p95_floor_ms": P95_FLOOR_MS,
                "error_rate_floor": ERROR_RATE_FLOOR,
                "min_requests": MIN_REQUESTS,
                "finding_margin": FINDING_MARGIN,
            },
        }

    def text_lines(self) -> list[str]:
        """The diff as text, one line per change."""
        lines = [
            f"Findings: {len(self.new)} new, {len(self.regressed)} regressed, {len(self.resolved)} resolved, "
            f"{len(self.unchanged)} unchanged; routes: {len(self.route_regressions)} regressed of "
            f"{self.routes_compared} compared"
        ]
        for label, found in (("new", self.new), ("regressed", self.regressed), ("resolved", self.resolved)):
            for finding in found:
                lines.append(
                    f"  {label}: [{shown(finding['severity'])}] {shown(finding['rule'])} "
                    f"{shown(finding['title'])} ({shown(finding['fingerprint'])})"
                    + (f": {shown(finding['why'])}" if finding.get("why") else "")
                )
        for route in self.route_regressions:
            lines.append(f"  route regressed: {shown(route['route'])}: {shown(route['why'])}")
        return lines


def load_report(path: str) -> dict[str, Any]:
    """Read a JSON report; ``ReportError`` (one line naming ``path``) when it is not one."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as error:
        raise ReportError(f"{path}: cannot read it: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ReportError(
            f"{path}: not JSON ({error}): give a report of amqadf-analyze --format json"
        ) from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ReportError(f"{path}: not an amqadf-analyze JSON report (no schema_version): use --format json")
    if data["schema_version"] not in VERSIONS:
        raise ReportError(
            f"{path}: report schema version {data['schema_version']!r} is not one this version reads "
            f"({', '.join(map(str, VERSIONS))})"
        )
    return data


def _finding(recommendation: Mapping[str, Any], why: str = "") -> dict[str, Any]:
    return {
        "fingerprint": str(recommendation.get("fingerprint", "")),
        "rule": f"{recommendation.get('category', '')}/{recommendation.get('rule', '')}",
        "severity": str(recommendation.get("severity", "")),
        "title": str(recommendation.get("title", "")),
        **({"why": why} if why else {}),
    }


def _rank(recommendation: Mapping[str, Any]) -> int:
    try:
        return severity_rank(str(recommendation.get("severity", "")))
    except ValueError:
        return -1


def _route_key(route: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(route.get("service", "")), str(route.get("method", "")), str(route.get("route", "")))


def _route_label(key: tuple[str, str, str]) -> str:
    service, method, route = key
    label = f"{method} {route}".strip()
    return f"{service}: {label}" if service else label


def diff_reports(base: Mapping[str, Any], new: Mapping[str, Any]) -> ReportDiff:
    """Compare ``new`` with the baseline ``base`` (see the module docstring)."""
    out = ReportDiff()
    before = {str(r.get("fingerprint")): r for r in items(base.get("recommendations"))}
    after = {str(r.get("fingerprint")): r for r in items(new.get("recommendations"))}
    for fingerprint, finding in after.items():
        old = before.get(fingerprint)
        if old is None:
            out.new.append(_finding(finding))
            continue
        worse = _rank(finding) > _rank(old)
        old_impact, new_impact = number(old.get("impact_s")) or 0.0, number(finding.get("impact_s")) or 0.0
        grew = old_impact > 0 and new_impact >= old_impact * (1 + FINDING_MARGIN)
        if worse:
            out.regressed.append(
                _finding(finding, f"severity {old.get('severity')} -> {finding.get('severity')}")
            )
        elif grew:
            out.regressed.append(
                _finding(
                    finding,
                    f"time at stake {old_impact:.3g} s -> {new_impact:.3g} s "
                    f"(>= +{FINDING_MARGIN:.0%} regresses)",
                )
            )
        else:
            out.unchanged.append(_finding(finding))
    out.resolved = [_finding(r) for fingerprint, r in before.items() if fingerprint not in after]
    old_routes = {_route_key(r): r for r in items(base.get("top_routes"))}
    for route in items(new.get("top_routes")):
        key = _route_key(route)
        old = old_routes.get(key)
        if old is None:
            continue
        if min(number(old.get("requests")) or 0, number(route.get("requests")) or 0) < MIN_REQUESTS:
            continue
        out.routes_compared += 1
        reasons = []
        old_p95, new_p95 = number(old.get("p95_ms")), number(route.get("p95_ms"))
        if (
            old_p95 is not None
            and new_p95 is not None
            and new_p95 >= old_p95 * (1 + P95_MARGIN) - _EPSILON
            and new_p95 - old_p95 >= P95_FLOOR_MS - _EPSILON
        ):
            reasons.append(
                f"p95 {old_p95:.1f} ms -> {new_p95:.1f} ms (regresses at >= +{P95_MARGIN:.0%} "
                f"and >= +{P95_FLOOR_MS:g} ms)"
            )
        old_errors, new_errors = number(old.get("error_rate")), number(route.get("error_rate"))
        if (
            old_errors is not None
            and new_errors is not None
            and new_errors - old_errors >= ERROR_RATE_FLOOR - _EPSILON
        ):
            reasons.append(
                f"error rate {old_errors:.1%} -> {new_errors:.1%} "
                f"(regresses at >= +{ERROR_RATE_FLOOR:.0%} points)"
            )
        if reasons:
            out.route_regressions.append(
                {
                    "route": _route_label(key),
                    "service": key[0],
                    "method": key[1],
                    "path": key[2],
                    "p95_ms": [old_p95, new_p95],
                    "error_rate": [old_errors, new_errors],
                    "why": "; ".join(reasons),
                }
            )
    return out
