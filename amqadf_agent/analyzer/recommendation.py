"""The one shape every rule's finding takes: a ``Recommendation`` carrying its ``Evidence``.

docs/design.md, principle 4: every recommendation carries the numbers, the formula, the threshold crossed,
example trace and span ids, the time window, a confidence and a stable fingerprint.

``Recommendation.to_dict()`` is the JSON shape (``recommendations`` in ``amqadf-analyze --format json``)::

    {
      "fingerprint": "db-n-plus-one-3f2a9c0e1b7d4a55",   # stable: rule + subject, never run data
      "category": "database",                           # database | scaling | cache | threads | calls
      "rule": "n_plus_one",
      "severity": "high",                               # info | low | medium | high | critical
      "title": "N+1 queries: ...",
      "action": "what to change",
      "subject": "SELECT ... WHERE order_id = ?",       # what it is about (a normalized statement)
      "confidence": 0.8,                                # 0..1, lower when data is scarce
      "impact_s": 0.83,                                 # the ranking key: time at stake, in seconds
      "evidence": {
        "numbers": {"calls": 304, ...},
        "formula": "...", "threshold": "...",
        "window": {"start_ns": ..., "end_ns": ..., "start": "ISO 8601", "end": "ISO 8601"} | null,
        "trace_ids": [...], "span_ids": [...]
      },
      "locations": [{"file": "app.py", "line": 12, "function": "orders", "count": 300, "share": 0.99}],
      "stacktrace": "  File \"app.py\", line 12, in orders\n..." | null
    }
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "SEVERITIES",
    "CodeLocation",
    "Evidence",
    "Recommendation",
    "Severity",
    "fingerprint",
    "severity_rank",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
#: Severities from the least to the most severe.
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "low", "medium", "high", "critical")

Number = int | float | str


def severity_rank(severity: str) -> int:
    """0 for ``info`` … 4 for ``critical``; ValueError for anything else."""
    return SEVERITIES.index(severity)


def fingerprint(category: str, rule: str, subject: str) -> str:
    """A stable id for a finding: the same rule on the same subject gives the same id in every run."""
    digest = hashlib.sha256(f"{category}\x00{rule}\x00{subject}".encode()).hexdigest()[:16]
    return f"{category[:2]}-{rule.replace('_', '-')}-{digest}"


def format_time(time_ns: int) -> str:
    """An epoch time in ns as ISO 8601 UTC with milliseconds (what a reader compares with dashboards)."""
    try:
        moment = datetime.datetime.fromtimestamp(time_ns // 1_000_000 / 1000, tz=datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):  # a producer's clock far outside what a date can show
        return f"{time_ns}ns since the epoch"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_window(start_ns: int, end_ns: int) -> dict[str, Any]:
    """A time window as the JSON report gives it: in ns since the epoch and in ISO 8601."""
    start, end = format_time(start_ns), format_time(end_ns)
    return {"start_ns": start_ns, "end_ns": end_ns, "start": start, "end": end}


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a recommendation was made, in numbers a reader can check."""

    #: The measured values (``calls``, ``p95_ms`` …): plain numbers or short labels, never raw data.
    numbers: Mapping[str, Number]
    #: How the decisive number was computed, e.g. ``total_ms = calls * mean_ms``.
    formula: str
    #: The threshold crossed, e.g. ``p95_ms >= 500``.
    threshold: str
    #: The observation window (ns since the epoch), or ``None`` when unknown.
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    #: Example trace ids and span ids (lower-case hex), a few of them.
    trace_ids: tuple[str, ...] = ()
    span_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        window: dict[str, Any] | None = None
        if self.window_start_ns is not None and self.window_end_ns is not None:
            window = time_window(self.window_start_ns, self.window_end_ns)
        return {
            "numbers": dict(self.numbers),
            "formula": self.formula,
            "threshold": self.threshold,
            "window": window,
            "trace_ids": list(self.trace_ids),
            "span_ids": list(self.span_ids),
        }


@dataclass(frozen=True, slots=True)
class CodeLocation:
    """A line of the application that the finding's calls came from (the spans' ``code.*``)."""

    file: str
    line: int
    function: str
    #: Calls of the finding's subject from this line, and their share of all its calls (0..1).
    count: int
    share: float

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.function}" if self.function else f"{self.file}:{self.line}"

    @staticmethod
    def ranked(counts: dict[tuple[str, int, str], int], calls: int, shown: int) -> tuple[CodeLocation, ...]:
        """The ``shown`` lines of ``counts`` ((file, line, function) -> calls) most calls came from,
        each with its share of all ``calls``."""
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:shown]
        total = max(calls, 1)
        return tuple(
            CodeLocation(file=file, line=line, function=function, count=count, share=count / total)
            for (file, line, function), count in top
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "count": self.count,
            "share": round(self.share, 4),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One finding: what to change, how sure we are, and the evidence."""

    category: str
    rule: str
    severity: Severity
    title: str
    #: What to change.
    action: str
    #: What the finding is about (a normalized statement, a cache name …); part of the fingerprint.
    subject: str
    evidence: Evidence
    #: 0..1; lower when data is scarce.
    confidence: float
    #: Time at stake in seconds (the ranking key: total time of the statement for database findings).
    impact_s: float = 0.0
    fingerprint: str = field(default="")
    #: Where the calls came from, most calls first (at most 5); empty when the spans carry no ``code.*``.
    locations: tuple[CodeLocation, ...] = ()
    #: The application's stack when the agent caught the finding as it happened (an N+1), else "".
    stacktrace: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.category, self.rule, self.subject))

    def sort_key(self) -> tuple[float, int, str]:
        """Most time at stake first, then the most severe, then by fingerprint (a stable order)."""
        return (-self.impact_s, -severity_rank(self.severity), self.fingerprint)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (see the module docstring)."""
        return {
            "fingerprint": self.fingerprint,
            "category": self.category,
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "action": self.action,
            "subject": self.subject,
            "confidence": round(self.confidence, 3),
            "impact_s": round(self.impact_s, 6),
            "evidence": self.evidence.to_dict(),
            "locations": [location.to_dict() for location in self.locations],
            "stacktrace": self.stacktrace or None,
        }
