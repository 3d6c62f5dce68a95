"""Cache rules: grow, shrink and TTL, each with a healthy control; nothing below the minimum of data."""

from __future__ import annotations

from typing import Any

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
