"""Cache rules over the ``amqadf.cache.*`` metrics (docs/design.md, Algorithms: Cache).

Per cache (``amqadf.cache.name``, all instances together): requests and hits from
``amqadf.cache.requests`` (``amqadf.cache.result`` = hit | miss), evictions, expirations (counter
increments between points: ``deltas.CounterDeltas``), and the size and max size (the last value of
each instance, summed; the largest size seen as well). The rules:

* **grow**: evictions are high (``evictions >= 10 %`` of the misses and ``>= 1 %`` of the requests) and
  the hit rate is still improvable (``< 0.95``): a larger cache would keep what it now evicts;
* **shrink**: the largest size seen stays well below the max (``< 50 %``) and nothing was evicted: the
  memory reserved for the rest sits idle;
* **TTL**: expirations dominate the misses (``expirations >= 50 %`` of the misses and more than the
  evictions) while the hit rate is below ``0.8``: entries expire before they are reused;
* **eviction policy** (``eviction_policy``): the cache is full (the largest size seen ``>= 95 %`` of the
  max, or for Redis ``amqadf.cache.memory.usage >= 90 %`` of ``amqadf.cache.memory.limit``), nearly
  every miss evicts an entry (``evictions >= 90 %`` of the misses) and the hit rate is low (``< 0.5``):
  the recency order keeps churning (a scan, or a working set far larger than the cache), so most
  entries leave before their first reuse. A frequency-based admission policy (W-TinyLFU, e.g.
  ``cachetools.LFUCache``; Redis ``maxmemory-policy allkeys-lfu``) or a separate cache for the
  scanning traffic keeps the reused entries. When the memory is at its limit, growing is not an
  option and the finding says so;
* **evicted before the TTL** (``evicted_before_ttl``): a cache with a TTL (some expirations) that is
  full and evicts at least 4 times as often as entries expire: its size, not its TTL, decides how long
  entries live. Grow it until expirations take over, or shorten the TTL so that expired entries make
  room instead of live ones (``InstrumentedCache`` and ``cachetools.TTLCache`` reclaim expired entries
  before evicting).

The last two read the same counters less directly (what a cache would do under another policy is not
measured), so their confidence is capped at ``policy_max_confidence`` (0.6).

A point whose value no count or size can be (NaN, infinite, negative, beyond uint64) is skipped
(``skipped_points``); the points around it still count.

Below ``min_requests`` requests for a cache no recommendation is made; confidence grows with requests
(from 0.3 up to 0.95 at ``full_confidence_requests``). Cache findings come from metrics only: their
evidence has no trace or span ids (its formula says so).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from amqadf_agent.analyzer.deltas import CounterDeltas
from amqadf_agent.analyzer.model import MetricRecord, NumberPoint, Record, service_instance_id, service_name
from amqadf_agent.analyzer.plausible import is_count
from amqadf_agent.analyzer.recommendation import Evidence, Recommendation
from amqadf_agent.semconv import (
    ATTR_CACHE_NAME,
    ATTR_CACHE_RESULT,
    CACHE_EVICTIONS,
    CACHE_EXPIRATIONS,
    CACHE_MAX_SIZE,
    CACHE_MEMORY_LIMIT,
    CACHE_MEMORY_USAGE,
    CACHE_REQUESTS,
    CACHE_SIZE,
)

__all__ = ["CacheRuleConfig", "CacheRules", "CacheStats", "cache_findings"]

CATEGORY = "cache"
REQUESTS = CACHE_REQUESTS.name
EVICTIONS = CACHE_EVICTIONS.name
EXPIRATIONS = CACHE_EXPIRATIONS.name
SIZE = CACHE_SIZE.name
MAX_SIZE = CACHE_MAX_SIZE.name
MEMORY_USAGE = CACHE_MEMORY_USAGE.name
MEMORY_LIMIT = CACHE_MEMORY_LIMIT.name
_LEVELS = frozenset((SIZE, MAX_SIZE, MEMORY_USAGE, MEMORY_LIMIT))
_NAMES = frozenset((REQUESTS, EVICTIONS, EXPIRATIONS)) | _LEVELS
#: Caches kept, by name; the points of further caches are counted in ``points_not_kept``, not read (a
#: cache per tenant: 40,000 of them held 100 MB and filled the report).
MAX_CACHES: Final = 1000
#: Said in the formula of every cache finding.
#: The data floor: a cache with fewer requests gets no recommendation (its numbers are still shown).
MIN_REQUESTS: Final = 100
METRICS_ONLY = "from metrics only (amqadf.cache.*): no trace or span ids to cite"


@dataclass(frozen=True, slots=True)
class CacheRuleConfig:
    """Thresholds of the cache rules."""

    min_requests: int = MIN_REQUESTS
    full_confidence_requests: int = 10_000
    grow_evictions_per_miss: float = 0.1
    grow_evictions_per_request: float = 0.01
    improvable_hit_rate: float = 0.95
    shrink_fill: float = 0.5
    ttl_expirations_per_miss: float = 0.5
    ttl_max_hit_rate: float = 0.8
    #: Full: the largest size seen at this share of the max (memory: ``memory_full`` of the limit).
    full_fill: float = 0.95
    memory_full: float = 0.9
    #: Eviction policy: nearly every miss evicts, and the hit rate stays below this.
    policy_evictions_per_miss: float = 0.9
    policy_max_hit_rate: float = 0.5
    #: Evicted before the TTL: evictions at least this many times the expirations.
    evictions_per_expiration: float = 4.0
    #: Cap on the confidence of the eviction-policy and evicted-before-TTL findings.
    policy_max_confidence: float = 0.6


@dataclass(slots=True)
class CacheStats:
    """What was observed of one cache."""

    name: str
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    size: int = 0
    max_size: int = 0
    peak_size: int = 0
    #: Bytes used and allowed (Redis ``used_memory``/``maxmemory``), the last value of each instance
    #: summed; 0 when not reported.
    memory_usage: int = 0
    memory_limit: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    _size_by_instance: dict[str, int] = field(default_factory=dict)
    _max_by_instance: dict[str, int] = field(default_factory=dict)
    _memory_by_instance: dict[str, int] = field(default_factory=dict)
    _limit_by_instance: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``cache`` entry of the JSON report."""
        return {
            "name": self.name,
            "hit_rate": round(self.hit_rate, 6),
            "requests": self.requests,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "size": self.size,
            "max_size": self.max_size,
        }


def _confidence(requests: int, full: int) -> float:
    share = min(1.0, math.log1p(max(requests, 0)) / math.log1p(max(full, 1)))
    return round(0.3 + 0.65 * share, 3)


class CacheRules:
    """Feed records with ``add``; read ``stats()`` and ``recommendations()``."""

    #: The kinds of span ``add`` reads: none (it reads metrics only), so a caller may skip every span.
    SPAN_KINDS: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        config: CacheRuleConfig | None = None,
        *,
        service: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        self.config = config or CacheRuleConfig()
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        self._caches: dict[str, CacheStats] = {}
        self._deltas = CounterDeltas()
        #: Points left out for a number no count or size can be (``analyzer.plausible``).
        self.skipped_points = 0
        self.points_not_kept = 0

    def add(self, record: Record) -> None:
        if type(record) is not MetricRecord or record.name not in _NAMES:
            return
        if self.service is not None and service_name(record.resource) != self.service:
            return
        instance = service_instance_id(record.resource)
        for point in record.points:
            if not isinstance(point, NumberPoint) or point.value is None:
                continue
            name = point.attributes.get(ATTR_CACHE_NAME)
            if not isinstance(name, str):
                continue
            if name not in self._caches and len(self._caches) >= MAX_CACHES:
                self.points_not_kept += 1
                continue
            if not is_count(point.value):  # NaN, infinite, negative: no count or size
                self.skipped_points += 1
                continue
            key: Hashable = (instance, record.name, name, point.attributes.get(ATTR_CACHE_RESULT))
            in_range = point.time_ns > 0 and not (
                (self.since_ns is not None and point.time_ns < self.since_ns)
                or (self.until_ns is not None and point.time_ns > self.until_ns)
            )
            if record.name in _LEVELS:
                if not in_range:
                    continue
                stats = self._stats(name, point.time_ns)
                value = int(point.value)
                if record.name == SIZE:
                    stats._size_by_instance[instance] = value
                    stats.size = sum(stats._size_by_instance.values())
                    stats.peak_size = max(stats.peak_size, stats.size)
                elif record.name == MAX_SIZE:
                    stats._max_by_instance[instance] = value
                    stats.max_size = sum(stats._max_by_instance.values())
                elif record.name == MEMORY_USAGE:
                    stats._memory_by_instance[instance] = value
                    stats.memory_usage = sum(stats._memory_by_instance.values())
                else:
                    stats._limit_by_instance[instance] = value
                    stats.memory_limit = sum(stats._limit_by_instance.values())
                continue
            delta = round(self._deltas.delta(key, record.aggregation_temporality, point, self.since_ns))
            if not in_range:
                continue
            stats = self._stats(name, point.time_ns)
            if record.name == REQUESTS:
                result = point.attributes.get(ATTR_CACHE_RESULT)
                if result == "hit":
                    stats.hits += delta
                elif result == "miss":
                    stats.misses += delta
            elif record.name == EVICTIONS:
                stats.evictions += delta
            else:
                stats.expirations += delta

    def _stats(self, name: str, time_ns: int) -> CacheStats:
        stats = self._caches.get(name)
        if stats is None:
            stats = self._caches[name] = CacheStats(name)
        stats.start_ns = time_ns if stats.start_ns is None else min(stats.start_ns, time_ns)
        stats.end_ns = time_ns if stats.end_ns is None else max(stats.end_ns, time_ns)
        return stats

    def stats(self) -> list[CacheStats]:
        """Every cache seen, by name."""
        return [self._caches[name] for name in sorted(self._caches)]

    def recommendations(self) -> list[Recommendation]:
        found: list[Recommendation] = []
        for stats in self.stats():
            found.extend(cache_findings(stats, self.config))
        return sorted(found, key=Recommendation.sort_key)


def cache_findings(stats: CacheStats, config: CacheRuleConfig | None = None) -> list[Recommendation]:
    """Grow / shrink / TTL / eviction-policy findings for one cache (none below ``min_requests``)."""
    config = config or CacheRuleConfig()
    if stats.requests < config.min_requests:
        return []
    findings = _CacheFindings(stats, config)
    _size(findings)
    _ttl(findings)
    _policy(findings)
    return findings.out


class _CacheFindings:
    """The findings of one cache, and what each of them repeats: its numbers and confidence."""

    def __init__(self, stats: CacheStats, config: CacheRuleConfig) -> None:
        self.stats = stats
        self.config = config
        self.hit_rate = stats.hit_rate
        self.misses = max(stats.misses, 0)
        self.numbers: dict[str, int | float | str] = {
            "requests": stats.requests,
            "hits": stats.hits,
            "misses": self.misses,
            "hit_rate": round(self.hit_rate, 4),
            "evictions": stats.evictions,
            "expirations": stats.expirations,
            "size": stats.size,
            "peak_size": stats.peak_size,
            "max_size": stats.max_size,
        }
        if stats.memory_limit > 0:
            self.numbers.update(memory_usage_bytes=stats.memory_usage, memory_limit_bytes=stats.memory_limit)
        self.confidence = _confidence(stats.requests, config.full_confidence_requests)
        self.out: list[Recommendation] = []

    def add(
        self,
        rule: str,
        severity: str,
        title: str,
        action: str,
        formula: str,
        threshold: str,
        confidence: float | None = None,
        extra: dict[str, int | float | str] | None = None,
    ) -> None:
        stats = self.stats
        self.out.append(
            Recommendation(
                category=CATEGORY,
                rule=rule,
                severity="medium" if severity == "medium" else "low",
                title=title,
                action=action,
                subject=stats.name,
                evidence=Evidence(
                    numbers={**self.numbers, **(extra or {})},
                    formula=f"{formula}; {METRICS_ONLY}",
                    threshold=f"{threshold}; data floor: >= {self.config.min_requests} requests",
                    window_start_ns=stats.start_ns,
                    window_end_ns=stats.end_ns,
                ),
                confidence=self.confidence if confidence is None else confidence,
            )
        )


def _size(findings: _CacheFindings) -> None:
    """Grow a cache that evicts while its hit rate can improve; else shrink one that never fills."""
    stats, config, hit_rate = findings.stats, findings.config, findings.hit_rate
    if (
        stats.evictions >= config.grow_evictions_per_miss * max(findings.misses, 1)
        and stats.evictions >= config.grow_evictions_per_request * stats.requests
        and stats.evictions > 0
        and hit_rate < config.improvable_hit_rate
    ):
        suggested = max(stats.max_size * 2, stats.max_size + 1) if stats.max_size else None
        findings.add(
            "grow",
            "medium",
            f"Cache {stats.name} evicts while its hit rate is {hit_rate:.0%}: grow it",
            f"Raise max size of cache {stats.name}"
            + (f" from {stats.max_size} to about {suggested} entries" if suggested else "")
            + "; keep growing only while the hit rate keeps rising.",
            "hit_rate = hits / (hits + misses); evictions counted between points",
            f"evictions >= {config.grow_evictions_per_miss:g} * misses and >= "
            f"{config.grow_evictions_per_request:g} * requests, hit_rate < {config.improvable_hit_rate:g}",
        )
    elif (
        stats.max_size > 0 and stats.evictions == 0 and stats.peak_size < config.shrink_fill * stats.max_size
    ):
        suggested = max(int(stats.peak_size * 1.25) + 1, 1)
        findings.add(
            "shrink",
            "low",
            f"Cache {stats.name} never fills past {stats.peak_size}/{stats.max_size}: shrink it",
            f"Lower max size of cache {stats.name} to about {suggested} entries (peak plus 25 %); the "
            "memory kept for the rest is idle.",
            "fill = peak_size / max_size",
            f"fill < {config.shrink_fill:g} and evictions == 0",
        )


def _ttl(findings: _CacheFindings) -> None:
    stats, config, hit_rate = findings.stats, findings.config, findings.hit_rate
    if (
        stats.expirations >= config.ttl_expirations_per_miss * max(findings.misses, 1)
        and stats.expirations > stats.evictions
        and hit_rate < config.ttl_max_hit_rate
    ):
        findings.add(
            "ttl",
            "medium",
            f"Cache {stats.name} loses its entries to the TTL before reuse (hit rate {hit_rate:.0%})",
            f"Lengthen the TTL of cache {stats.name} if the data may be that stale, or refresh entries "
            "ahead of expiry; size is not the problem.",
            "expirations counted between points; share = expirations / misses",
            f"expirations >= {config.ttl_expirations_per_miss:g} * misses, expirations > evictions, "
            f"hit_rate < {config.ttl_max_hit_rate:g}",
        )


def _policy(findings: _CacheFindings) -> None:
    """The findings about a full cache: its eviction policy churns, or it evicts before the TTL."""
    stats, config, hit_rate, misses = findings.stats, findings.config, findings.hit_rate, findings.misses
    no_room = stats.memory_limit > 0 and stats.memory_usage >= config.memory_full * stats.memory_limit
    full = no_room or (stats.max_size > 0 and stats.peak_size >= config.full_fill * stats.max_size)
    policy_conf = min(findings.confidence, config.policy_max_confidence)
    fill = round(stats.peak_size / stats.max_size, 4) if stats.max_size else 0.0
    per_miss = round(stats.evictions / misses, 4) if misses else 0.0
    if (
        full
        and stats.evictions > 0
        and stats.evictions >= config.policy_evictions_per_miss * max(misses, 1)
        and hit_rate < config.policy_max_hit_rate
    ):
        room = (
            f"its memory is at the limit ({stats.memory_usage}/{stats.memory_limit} bytes), so growing "
            "is not an option"
            if no_room
            else "growing helps only if the reused entries then fit"
        )
        findings.add(
            "eviction_policy",
            "medium" if no_room else "low",
            f"Cache {stats.name} evicts on almost every miss at a {hit_rate:.0%} hit rate: try a "
            "frequency-based eviction policy",
            f"Nearly every miss of cache {stats.name} evicts an entry ({stats.evictions} evictions for "
            f"{misses} misses) while it is full and hits {hit_rate:.0%}: the recency order churns (a scan, "
            f"or a working set far larger than the cache) and {room}. Use a frequency-based admission "
            "policy that keeps reused entries and refuses one-hit wonders (W-TinyLFU; cachetools.LFUCache; "
            "Redis maxmemory-policy allkeys-lfu), or give the scanning traffic its own cache or none.",
            "evictions_per_miss = evictions / misses; fill = peak_size / max_size (or memory usage / "
            "limit); hit_rate = hits / (hits + misses)",
            f"full (fill >= {config.full_fill:g} or memory >= {config.memory_full:g} * limit), "
            f"evictions >= {config.policy_evictions_per_miss:g} * misses, "
            f"hit_rate < {config.policy_max_hit_rate:g}",
            policy_conf,
            {"evictions_per_miss": per_miss, "fill": fill},
        )
    if (
        full
        and stats.expirations > 0
        and stats.evictions >= config.evictions_per_expiration * stats.expirations
        and stats.evictions >= config.grow_evictions_per_request * stats.requests
    ):
        ratio = round(stats.evictions / stats.expirations, 2)
        findings.add(
            "evicted_before_ttl",
            "low",
            f"Cache {stats.name} evicts entries {ratio:g}x as often as they expire: its size, not its TTL, "
            "decides how long they live",
            f"Entries of cache {stats.name} are evicted for room before their TTL ends ({stats.evictions} "
            f"evictions, {stats.expirations} expirations, full). Grow it until expirations take over (the "
            "TTL then bounds both staleness and size), or shorten the TTL so that expired entries, not "
            "live ones, make room (InstrumentedCache and cachetools.TTLCache reclaim expired entries "
            "before evicting).",
            "evictions_per_expiration = evictions / expirations; fill = peak_size / max_size",
            f"full, expirations > 0, evictions >= {config.evictions_per_expiration:g} * expirations and "
            f">= {config.grow_evictions_per_request:g} * requests",
            policy_conf,
            {"evictions_per_expiration": ratio, "fill": fill},
        )
