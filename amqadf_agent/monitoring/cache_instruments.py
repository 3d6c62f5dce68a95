"""The shared ``amqadf.cache.*`` instrument set and what each cache gives one collection.

Why a module of its own: ``InstrumentedCache``, the wrappers of caches the package does not own
(``cache_wrappers``) and ``RedisCacheMonitor`` all report through one instrument set per meter
provider; each is a ``CacheSource`` read here at collection time, on the SDK's collection thread,
never on a cache's hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from amqadf_agent import semconv
from amqadf_agent.monitoring._instruments import Point, SharedInstruments

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["CacheReading", "CacheSource"]

_log = logging.getLogger(__name__)


class CacheReading(NamedTuple):
    """What one reported cache gives one collection; None leaves that instrument's point out."""

    name: str
    hits: int
    misses: int
    evictions: int | None
    expirations: int | None
    size: int | None
    max_size: int | None
    memory_usage: int | None = None
    memory_limit: int | None = None


class CacheSource(Protocol):
    """Anything that reports through the ``amqadf.cache.*`` set.

    ``fresh`` is True for the first instrument of a collection (``amqadf.cache.requests``, the
    first registered): a source that reads something costly (Redis ``INFO``) reads it then and
    reuses it for the other instruments. None: nothing to report this collection.
    """

    def cache_reading(self, fresh: bool) -> CacheReading | None: ...


def register(source: CacheSource, name: str, meter_provider: MeterProvider | None) -> None:
    """Report ``source`` on ``meter_provider`` (default: global); a failure is logged, never raised."""
    _SHARED.report(source, meter_provider, _log, f"cache {name!r}")


# --- collection-time readings (called by the SDK's collection thread, never on the hot path) -------
def _read(source: CacheSource, fresh: bool = False) -> CacheReading | None:
    return source.cache_reading(fresh)


def _one(reading: CacheReading | None, field: str) -> list[Point]:
    if reading is None:
        return []
    value = getattr(reading, field)
    return [] if value is None else [(value, {semconv.ATTR_CACHE_NAME: reading.name})]


def _requests(source: CacheSource) -> list[Point]:
    r = _read(source, fresh=True)
    if r is None:
        return []
    return [
        (r.hits, {semconv.ATTR_CACHE_NAME: r.name, semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_HIT}),
        (r.misses, {semconv.ATTR_CACHE_NAME: r.name, semconv.ATTR_CACHE_RESULT: semconv.CACHE_RESULT_MISS}),
    ]


def _field(name: str) -> Callable[[CacheSource], list[Point]]:
    def read(source: CacheSource) -> list[Point]:
        return _one(_read(source), name)

    return read


# CACHE_REQUESTS first: its reading is the ``fresh`` one of a collection (the SDK calls the
# callbacks of a meter's observable instruments in the order they were created).
_SHARED: SharedInstruments[CacheSource] = SharedInstruments(
    "cache",
    [
        (semconv.CACHE_REQUESTS, _requests),
        (semconv.CACHE_EVICTIONS, _field("evictions")),
        (semconv.CACHE_EXPIRATIONS, _field("expirations")),
        (semconv.CACHE_SIZE, _field("size")),
        (semconv.CACHE_MAX_SIZE, _field("max_size")),
        (semconv.CACHE_MEMORY_USAGE, _field("memory_usage")),
        (semconv.CACHE_MEMORY_LIMIT, _field("memory_limit")),
    ],
)
