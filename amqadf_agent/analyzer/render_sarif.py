"""``amqadf-analyze --format sarif``: the findings as SARIF 2.1.0, what code-scanning tools read.

GitHub code scanning, GitLab, Azure DevOps and most IDE SARIF viewers show a SARIF log's results
beside the code and track them across builds by fingerprint, so the analyzer's findings land where
developers already look. One run, tool ``amqadf-analyze``; one rule per ``category/rule`` that has a
finding; one result per finding (``Recommendation``):

* ``ruleId`` ``category/rule``; ``level`` from the severity: critical and high ``error``, medium
  ``warning``, low and info ``note``;
* ``message`` the title and the action; ``partialFingerprints["amqadf/v1"]`` the finding's
  fingerprint (stable: rule and subject, never run data);
* a physical location (file, line) from the finding's code ``locations``: the line with the most of
  its calls as the result's location, the others as ``relatedLocations``, each with its function and
  share of the calls; without ``locations``, from the evidence when it names a source file
  (``code.file.path`` or the older ``code.filepath``, with ``code.line.number``/``code.lineno``);
  paths become relative URI references (the leading ``/`` dropped, the rest percent-encoded); a
  path under a ``source_roots`` directory (``--source-root``: where the application ran, ``/app`` in
  its container) becomes relative to it, with ``uriBaseId`` ``%SRCROOT%``, which code scanning
  resolves against the repository's checkout; a logical location, the finding's subject (a
  statement, a route, a pool), always;
* ``properties``: the evidence numbers, threshold, confidence, time at stake and example trace ids.

It renders the JSON report's dict, like the Markdown and HTML renderers; only the standard library
is imported. The output is checked against the OASIS SARIF 2.1.0 schema in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO
from urllib.parse import quote

from amqadf_agent.analyzer.report_values import items, mapping, number

__all__ = ["render", "sarif_log"]

SARIF_SCHEMA: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL: Final = "amqadf-analyze"
LEVELS: Final = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
FINGERPRINT_KEY: Final = "amqadf/v1"
_FILE_KEYS: Final = ("code.file.path", "code.filepath")
_LINE_KEYS: Final = ("code.line.number", "code.lineno")
#: The base id of paths relative to a source root (the name code-scanning tools know).
SRCROOT: Final = "%SRCROOT%"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("amqadf-agent")
    except Exception:  # not installed (a source checkout): the schema does not need it
        return "0"


def _uri(path: str) -> str:
    """A file path as a relative URI reference (what code scanning maps onto the checkout)."""
    return quote(path.replace("\\", "/").lstrip("/"), safe="/@-._~!$&'()*+,;=")


def _roots(source_roots: Sequence[str]) -> tuple[str, ...]:
    """Each root with ``/`` separators and one trailing ``/``, the longest first."""
    cleaned = {root.replace("\\", "/").rstrip("/") + "/" for root in source_roots if root.strip("/\\")}
    return tuple(sorted(cleaned, key=len, reverse=True))


def _artifact(path: str, roots: tuple[str, ...]) -> dict[str, Any]:
    normal = path.replace("\\", "/")
    for root in roots:
        if normal.startswith(root) and len(normal) > len(root):
            return {"uri": _uri(normal[len(root) :]), "uriBaseId": SRCROOT}
    return {"uri": _uri(path)}


def _physical(path: str, line: float | None, roots: tuple[str, ...] = ()) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact(path, roots)}
    if line is not None and line >= 1:
        physical["region"] = {"startLine": int(line)}
    return physical


def _code_locations(
    recommendation: Mapping[str, Any], roots: tuple[str, ...]
) -> list[tuple[dict[str, Any], str]]:
    """The finding's ``locations`` (most calls first) as physical locations, each with a message
    naming the function and its share of the calls."""
    out = []
    for location in items(recommendation.get("locations")):
        path = location.get("file")
        if not isinstance(path, str) or not path:
            continue
        function = location.get("function")
        share = number(location.get("share"))
        calls = number(location.get("count"))
        said = [str(function)] if isinstance(function, str) and function else []
        if calls is not None and share is not None:
            said.append(f"{int(calls):,} calls, {share:.0%}")
        out.append((_physical(path, number(location.get("line")), roots), "; ".join(said)))
    return out


def _location(
    recommendation: Mapping[str, Any], roots: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The result's ``locations`` and ``relatedLocations``: the line with the most of the finding's
    calls (``locations[0]``), else the evidence's ``code.*``; the other lines as related locations."""
    evidence = mapping(recommendation.get("evidence"))
    numbers = mapping(evidence.get("numbers"))
    location: dict[str, Any] = {}
    code = _code_locations(recommendation, roots)
    related: list[dict[str, Any]] = []
    if code:
        location["physicalLocation"], said = code[0]
        if said:
            location["message"] = {"text": said}
        for index, (physical, said) in enumerate(code[1:], 1):
            one: dict[str, Any] = {"id": index, "physicalLocation": physical}
            if said:
                one["message"] = {"text": said}
            related.append(one)
    else:
        path = next((numbers[k] for k in _FILE_KEYS if isinstance(numbers.get(k), str) and numbers[k]), None)
        if path is not None:
            line = next((number(numbers.get(k)) for k in _LINE_KEYS if number(numbers.get(k))), None)
            location["physicalLocation"] = _physical(str(path), line, roots)
    subject = recommendation.get("subject")
    if isinstance(subject, str) and subject:
        location["logicalLocations"] = [
            {"name": subject[:1000], "kind": str(recommendation.get("category", ""))}
        ]
    return ([location] if location else []), related


def sarif_log(report: Mapping[str, Any], source_roots: Sequence[str] = ()) -> dict[str, Any]:
    """The SARIF log of ``report`` (the JSON report's dict); paths under one of ``source_roots``
    relative to it."""
    roots = _roots(source_roots)
    recommendations = items(report.get("recommendations"))
    rules: dict[str, int] = {}
    descriptors: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for recommendation in recommendations:
        rule_id = f"{recommendation.get('category', '')}/{recommendation.get('rule', '')}"
        if rule_id not in rules:
            rules[rule_id] = len(descriptors)
            descriptors.append(
                {
                    "id": rule_id,
                    "name": str(recommendation.get("rule", "")),
                    "shortDescription": {"text": rule_id},
                }
            )
        evidence = mapping(recommendation.get("evidence"))
        title, action = str(recommendation.get("title", "")), str(recommendation.get("action", ""))
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": rules[rule_id],
            "level": LEVELS.get(str(recommendation.get("severity", "")), "note"),
            "message": {"text": f"{title}. {action}" if action else title},
            "partialFingerprints": {FINGERPRINT_KEY: str(recommendation.get("fingerprint", ""))},
            "properties": {
                "severity": recommendation.get("severity"),
                "confidence": recommendation.get("confidence"),
                "impact_s": recommendation.get("impact_s"),
                "numbers": dict(mapping(evidence.get("numbers"))),
                "threshold": evidence.get("threshold"),
                "trace_ids": list(evidence.get("trace_ids") or []),
            },
        }
        locations, related = _location(recommendation, roots)
        if locations:
            result["locations"] = locations
        if related:
            result["relatedLocations"] = related
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": TOOL, "version": _version(), "rules": descriptors}},
        "results": results,
    }
    if len(roots) == 1:  # where %SRCROOT% stood (several roots: none, each path had its own)
        run["originalUriBaseIds"] = {SRCROOT: {"uri": "file:///" + quote(roots[0].lstrip("/"), safe="/:")}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render(report: Mapping[str, Any], file: TextIO, source_roots: Sequence[str] = ()) -> None:
    """Write the SARIF log of ``report`` to ``file``."""
    log = sarif_log(report, source_roots)
    file.write(json.dumps(log, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
