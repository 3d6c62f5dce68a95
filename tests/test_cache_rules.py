"""Cache rules: grow, shrink and TTL, each with a healthy control; nothing below the minimum of data."""

from __future__ import annotations

import math
from typing import Any

import pytest

from amqadf_agent.analyzer.model import TEMPORALITY_CUMULATIVE, MetricRecord, NumberPoint
from amqadf_agent.analyzer.rules.cache import CacheRules

S = 1_000_000_000
RES: dict[str, Any] = {"service.name": "shop", "service.instance.id": "i-1"}


def feed(
    rules: CacheRules, hits: int, misses: int, evictions: int, expirations: int, size: int, max_size: int
) -> None:
    def rec(name: str, value: int, extra: dict[str, str] | None = None) -> MetricRecord:
        attrs = {"amqadf.cache.name": "orders", **(extra or {})}
        points = (NumberPoint(attrs, S, 2 * S, 0), NumberPoint(attrs, S, 60 * S, value))
        return MetricRecord(name, "", "", "sum", TEMPORALITY_CUMULATIVE, True, points, RES, "t")

    for record in (
        rec("amqadf.cache.requests", hits, {"amqadf.cache.result": "hit"}),
        rec("amqadf.cache.requests", misses, {"amqadf.cache.result": "miss"}),
        rec("amqadf.cache.evictions", evictions),
        rec("amqadf.cache.expirations", expirations),
        rec("amqadf.cache.size", size),
        rec("amqadf.cache.max_size", max_size),
    ):
        rules.add(record)


def rules_of(*args: int) -> list[str]:
    rules = CacheRules()
    feed(rules, *args)
    return [r.rule for r in rules.recommendations()]


def test_grow_when_evicting_with_an_improvable_hit_rate() -> None:
    assert rules_of(500, 500, 400, 0, 1000, 1000) == ["grow"]
    assert rules_of(980, 20, 2, 0, 1000, 1000) == []  # control: hit rate 98 %


def test_shrink_when_far_below_max_and_never_evicting() -> None:
    assert rules_of(900, 100, 0, 0, 100, 1000) == ["shrink"]
    assert rules_of(900, 100, 0, 0, 800, 1000) == []  # control: 80 % full


def test_ttl_when_expirations_dominate_misses() -> None:
    assert rules_of(300, 700, 0, 600, 700, 1000) == ["ttl"]
    assert rules_of(300, 700, 0, 50, 700, 1000) == []  # control: expirations explain few misses


def test_stats_and_minimum_of_data() -> None:
    rules = CacheRules()
    feed(rules, 30, 20, 40, 0, 100, 100)
    (stats,) = rules.stats()
    assert stats.to_dict() == {"name": "orders", "hit_rate": 0.6, "requests": 50, "evictions": 40,
                               "expirations": 0, "size": 100, "max_size": 100}  # fmt: skip
    assert rules.recommendations() == []  # 50 requests < 100


def findings(*args: int, memory: tuple[int, int] | None = None) -> dict[str, Any]:
    rules = CacheRules()
    feed(rules, *args)
    if memory is not None:  # Redis: used_memory and maxmemory
        for name, value in (
            ("amqadf.cache.memory.usage", memory[0]),
            ("amqadf.cache.memory.limit", memory[1]),
        ):
            point = NumberPoint({"amqadf.cache.name": "orders"}, S, 60 * S, value)
            rules.add(MetricRecord(name, "By", "", "sum", TEMPORALITY_CUMULATIVE, False, (point,), RES, "t"))
    return {r.rule: r for r in rules.recommendations()}


def test_eviction_policy_when_nearly_every_miss_evicts_at_a_low_hit_rate() -> None:
    # GIVEN a full cache hitting 20 %, 790 evictions for 800 misses (a scan-like access)
    found = findings(200, 800, 790, 0, 1000, 1000)
    assert set(found) == {"grow", "eviction_policy"}
    policy = found["eviction_policy"]
    assert "LFU" in policy.action and "growing helps only if" in policy.action
    assert policy.evidence.numbers["evictions_per_miss"] == 0.9875 and policy.evidence.numbers["fill"] == 1.0
    assert policy.severity == "low" and policy.confidence <= 0.6  # moderate: the policy is not measured
    assert policy.evidence.threshold.startswith("full (fill >= 0.95")
    assert policy.evidence.threshold.endswith("; data floor: >= 100 requests")
    # Controls: not full (evictions of a shrinking cache), or a hit rate that is fine: no policy advice
    assert set(findings(200, 800, 790, 0, 500, 1000)) == {"grow"}
    assert set(findings(600, 400, 390, 0, 1000, 1000)) == {"grow"}
    assert set(findings(200, 800, 400, 0, 1000, 1000)) == {"grow"}  # half the misses evict


def test_eviction_policy_says_growing_is_no_option_when_memory_is_at_its_limit() -> None:
    # GIVEN a Redis cache at its maxmemory (no entry-count max), evicting on nearly every miss
    found = findings(200, 800, 790, 0, 5000, 0, memory=(990_000, 1_000_000))
    policy = found["eviction_policy"]
    assert policy.severity == "medium" and "growing is not an option" in policy.action
    assert "allkeys-lfu" in policy.action
    assert policy.evidence.numbers["memory_limit_bytes"] == 1_000_000
    # Control: plenty of memory left and no entry-count max: not known to be full
    assert "eviction_policy" not in findings(200, 800, 790, 0, 5000, 0, memory=(300_000, 1_000_000))


def test_evicted_before_ttl_when_size_not_ttl_decides() -> None:
    # GIVEN a full TTL cache that evicts 10x as often as its entries expire
    found = findings(700, 300, 200, 20, 1000, 1000)
    assert set(found) == {"grow", "evicted_before_ttl"}
    early = found["evicted_before_ttl"]
    assert early.evidence.numbers["evictions_per_expiration"] == 10.0
    assert "shorten the TTL" in early.action and early.confidence <= 0.6
    # Controls: expirations keep up (200 < 4 * 100), or no TTL at all (no expirations)
    assert set(findings(700, 300, 200, 100, 1000, 1000)) == {"grow"}
    assert set(findings(700, 300, 200, 0, 1000, 1000)) == {"grow"}


def test_cache_findings_say_they_come_from_metrics_only() -> None:
    for finding in findings(200, 800, 790, 0, 1000, 1000).values():
        assert "from metrics only" in finding.evidence.formula
        assert finding.evidence.trace_ids == () and finding.evidence.span_ids == ()


def test_confidence_is_lower_with_few_requests_and_none_below_the_minimum() -> None:
    # GIVEN the same evicting cache (hit rate 50 %) seen through 10 000, 1 000 and 100 requests
    many, some, few = (findings(5 * n, 5 * n, 4 * n, 0, 1000, 1000)["grow"] for n in (1000, 100, 10))
    assert many.confidence == 0.95 and few.confidence < some.confidence < many.confidence
    assert few.confidence < 0.8
    # THEN below min_requests (100) there is no recommendation at all
    assert findings(49, 50, 40, 0, 1000, 1000) == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1, -1e308, 1e308, 10**30], ids=repr)
@pytest.mark.parametrize(
    "name",
    ["amqadf.cache.requests", "amqadf.cache.evictions", "amqadf.cache.expirations", "amqadf.cache.size",
     "amqadf.cache.max_size", "amqadf.cache.memory.usage", "amqadf.cache.memory.limit"],
)  # fmt: skip
def test_a_point_with_an_impossible_number_is_skipped_and_the_others_still_count(
    name: str, bad: float
) -> None:
    # GIVEN a cache that should grow, and a point holding a number no count or size can be
    healthy, poisoned = CacheRules(), CacheRules()
    feed(healthy, 500, 500, 400, 0, 1000, 1000)
    feed(poisoned, 500, 500, 400, 0, 1000, 1000)
    attrs = {"amqadf.cache.name": "orders", "amqadf.cache.result": "hit"}
    poisoned.add(MetricRecord(name, "", "", "sum", TEMPORALITY_CUMULATIVE, True,
                              (NumberPoint(attrs, S, 30 * S, bad),), RES, "t"))  # fmt: skip
    # WHEN read THEN nothing raises and the point changed nothing
    assert [s.to_dict() for s in poisoned.stats()] == [s.to_dict() for s in healthy.stats()]
    assert poisoned.recommendations() == healthy.recommendations()
    assert (poisoned.skipped_points, healthy.skipped_points) == (1, 0)
