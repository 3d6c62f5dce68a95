"""How the report renderers (Markdown, HTML) read and show values of the JSON report.

The report may come from an older or newer schema, or be hand-made: every reader here accepts any
shape and gives a neutral value (``{}``, ``[]``, ``None``, ``MISSING``) rather than raising.

Strings of the data (a ``service.name``, a statement, a file name) are the producer's, not ours:
``shown`` escapes their control characters before a report or an error line prints them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

#: Shown where a value is missing or not a number.
MISSING: Final = "n/a"

#: C0 controls (newline and tab included: in a data string they would break the report's layout),
#: DEL and C1 controls, each to its ``\xNN`` escape.
_CONTROL_ESCAPES: Final = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
#: Unicode's bidirectional controls (embeddings, overrides, isolates and marks): raw, they reorder
#: what follows them on screen, so a statement or name could show other text than it holds.
_BIDI_CONTROLS: Final = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL_ESCAPES.update({code: f"\\u{code:04x}" for code in _BIDI_CONTROLS})
#: What HTML shows as its escape: the controls above but the whitespace a ``<pre>`` keeps.
_HTML_ESCAPES: Final = {code: text for code, text in _CONTROL_ESCAPES.items() if chr(code) not in "\t\n\r"}
#: What JSON text keeps as a ``\uXXXX`` escape rather than raw (it escapes C0 controls itself): the
#: same string to a parser, and nothing a terminal or an editor acts on when the JSON is shown.
_JSON_ESCAPES: Final = {
    code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *_BIDI_CONTROLS, 0x2028, 0x2029)
}


def shown(value: object) -> str:
    """``value`` as text with its control characters escaped (``ESC`` as ``\\x1b``): a string from the
    telemetry cannot move the cursor, retitle the terminal or clear the screen of whoever reads it."""
    return str(value).translate(_CONTROL_ESCAPES)


def shown_in_html(value: object) -> str:
    """``value`` with its control characters but tab and line breaks escaped, before HTML escaping."""
    return str(value).translate(_HTML_ESCAPES)


def json_text_safe(text: str) -> str:
    """JSON ``text`` with C1 and bidirectional controls as ``\\uXXXX`` escapes (still valid JSON).

    Outside strings JSON text is ASCII, so every such character is inside a string, where its
    escape stands for the same character."""
    return text.translate(_JSON_ESCAPES)


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Mapping[str, Any]]:
    """The mappings of a list (anything else in it is skipped); ``[]`` for a non-list."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def number(value: object) -> float | None:
    """A finite int or float as a float; ``None`` for booleans, NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def num(value: object, digits: int = 2) -> str:
    """A number with at most ``digits`` decimals (integers stay integers); ``n/a`` when missing."""
    result = number(value)
    if result is None:
        return MISSING
    if isinstance(value, int):
        return f"{value:,}"
    return f"{result:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{result:,.0f}"


def percent(value: object) -> str:
    """A fraction as a percentage with one decimal."""
    result = number(value)
    return MISSING if result is None else f"{result * 100:.1f}%"


def ms(value: object, *, seconds: bool = False) -> str:
    """A duration in milliseconds (given in seconds when ``seconds``)."""
    result = number(value)
    if result is None:
        return MISSING
    if seconds:
        result *= 1000
    return f"{result:,.1f} ms" if result < 100 else f"{result:,.0f} ms"


#: Services and metric names the text, Markdown and HTML reports list (a fleet's Collector file names
#: hundreds; the JSON report lists every one): the services with most records, the first metric names.
SHOWN_SERVICES: Final = 50
SHOWN_METRIC_NAMES: Final = 100


def busiest(services: list[Any], limit: int) -> list[Any]:
    """The ``limit`` services (a ``ServiceSummary`` or its JSON object) with most records, in their order."""
    if len(services) <= limit:
        return services

    def records(service: Any) -> float:
        total = 0.0
        for key in ("spans", "metric_records", "logs"):
            value = service.get(key) if isinstance(service, Mapping) else getattr(service, key, 0)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total += value
        return total

    kept = {id(service) for service in sorted(services, key=records, reverse=True)[:limit]}
    return [service for service in services if id(service) in kept]


def data_quality_line(section: object) -> str:
    """One line on what the rules ignored (the report's ``data_quality``), ``""`` when nothing. The
    bounds past which things are counted, not kept, are the rules' (docs/analyzer.md names them).

    Points with an impossible number (NaN, negative, beyond any real one) are left out of each part
    that read them; a histogram delta whose interval is implausibly long is counted at its end time
    instead of spread over the windows it claims to cover.
    """
    quality = mapping(section)
    skipped = [
        f"{part} {int(count)}"
        for part, value in mapping(quality.get("skipped_points")).items()
        if (count := number(value) or 0) > 0
    ]
    intervals = int(number(quality.get("implausible_intervals")) or 0)
    not_analysed = int(number(quality.get("db_calls_not_analysed")) or 0)
    findings_not_kept = int(number(quality.get("call_findings_not_kept")) or 0)
    not_kept = [
        f"{part} {int(count)}"
        for part, value in mapping(quality.get("points_not_kept")).items()
        if (count := number(value) or 0) > 0
    ]
    said = []
    if skipped:
        said.append(f"points with impossible values left out ({', '.join(shown(s) for s in skipped)})")
    if intervals:
        said.append(f"{intervals} histogram interval(s) too long to spread, counted at their end time")
    if not_analysed:
        said.append(
            f"{not_analysed:,} db call(s) of statements beyond the distinct ones kept, counted but not"
            " analysed"
        )
    if findings_not_kept:
        said.append(
            f"{findings_not_kept:,} occurrence(s) of call findings beyond those kept (each its own URL"
            " or call sequence), not reported"
        )
    if not_kept:
        said.append(
            f"points of caches or pools beyond those kept left out ({', '.join(shown(s) for s in not_kept)})"
        )
    return f"Data quality: {'; '.join(said)}." if said else ""


#: The columns of the cache and worker-pool tables, the same in the Markdown and HTML reports.
CACHE_HEADER: Final = ("Cache", "Hit rate", "Requests", "Evictions", "Expirations", "Size / max")
POOL_HEADER: Final = (
    "Pool",
    "Max workers",
    "Utilization",
    "Queue wait p95",
    "Tasks/s",
    "Mean latency",
    "Little's law L",
    "Peak busy (p95)",
    "Recommended",
)


def cache_row(cache: Mapping[str, Any], name: str) -> list[str]:
    """A cache's row of the cache table; ``name``: its name cell, in the report's own markup."""
    return [
        name,
        percent(cache.get("hit_rate")),
        num(cache.get("requests")),
        num(cache.get("evictions")),
        num(cache.get("expirations")),
        f"{num(cache.get('size'))} / {num(cache.get('max_size'))}",
    ]


def pool_row(pool: Mapping[str, Any], name: str) -> list[str]:
    """A worker pool's row of the pool table; ``name``: its name cell, in the report's own markup."""
    return [
        name,
        num(pool.get("max_workers")),
        percent(pool.get("utilization")),
        ms(pool.get("queue_wait_p95"), seconds=True) + at_peaks(pool),
        num(pool.get("throughput"), 1),
        ms(pool.get("latency_mean"), seconds=True),
        num(pool.get("littles_law_concurrency")),
        num(pool.get("busy_peak")),
        num(pool.get("recommended")) + saturated(pool),
    ]


def saturated(pool: Mapping[str, Any]) -> str:
    """`` (saturated at peaks)`` after the recommended size of a pool whose tasks wait at peaks."""
    return " (saturated at peaks)" if pool.get("saturated_at_peaks") is True else ""


def at_peaks(pool: Mapping[str, Any]) -> str:
    """`` (… at peaks)`` after the queue wait p95 of a pool: the p95 over windows, when it is higher."""
    peak, wait = number(pool.get("queue_wait_p95_peak")), number(pool.get("queue_wait_p95"))
    return f" ({ms(peak, seconds=True)} at peaks)" if peak is not None and peak > (wait or 0.0) else ""


def services(query: Mapping[str, Any]) -> list[str]:
    """The ``services`` of a top query (names only; anything else is skipped)."""
    value = query.get("services")
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []


def query_table(
    queries: Sequence[Mapping[str, Any]], code: Callable[[object], str]
) -> tuple[list[str], list[list[str]], str]:
    """The top-queries table: its header, rows and column alignment (``l``/``r`` a column); ``code``
    marks up a statement or a service name in the report's own markup."""
    # Which service runs a statement matters when the report covers several (a fleet).
    fleet = len({name for query in queries for name in services(query)}) > 1
    rows = [
        [
            str(rank),
            code(query.get("statement", "")),
            *([", ".join(code(name) for name in services(query)) or MISSING] if fleet else []),
            num(query.get("calls")),
            ms(query.get("total_ms")),
            ms(query.get("mean_ms")),
            ms(query.get("p95_ms")),
        ]
        for rank, query in enumerate(queries, 1)
    ]
    header = ["#", "Statement", *(["Services"] if fleet else []), "Calls", "Total", "Mean", "p95"]
    return header, rows, "rllrrrr" if fleet else "rlrrrr"
