"""The seed's ``PerformanceTuner().optimize_database_queries`` API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig
from amqadf_agent.analyzer.tuner import PerformanceTuner


def test_seed_api_finds_slow_select_star_and_ranks_by_total_time() -> None:
    logs = [
        {"query": "SELECT * FROM orders WHERE customer_id = 17", "execution_time": 0.9, "rows_returned": 3},
        {"query": "SELECT * FROM orders WHERE customer_id = 18", "execution_time": 0.8, "rows_returned": 2},
        {
            "query": "SELECT id FROM users WHERE email = 'secret-4242'",
            "execution_time": 0.01,
            "rows_returned": 1,
        },
        {"query": "SELECT id, name FROM products", "execution_time": 0.2, "rows_returned": 50_000},
        {"query": "DELETE FROM sessions", "execution_time": 0.05, "rows_returned": 0},
        {"query": None, "execution_time": "bad"},
    ]
    found = PerformanceTuner().optimize_database_queries(logs)
    rules = [(r["rule"], r["subject"]) for r in found]
    assert ("slow_query", "SELECT * FROM orders WHERE customer_id = ?") in rules
    assert ("select_star", "SELECT * FROM orders WHERE customer_id = ?") in rules
    assert ("index_candidate", "SELECT * FROM orders WHERE customer_id = ?") in rules
    assert ("unbounded_result", "SELECT id, name FROM products") in rules
    assert ("missing_where", "DELETE FROM sessions") in rules
    assert not any(r["subject"].startswith("SELECT id FROM users") for r in found)
    assert found[0]["subject"] == "SELECT * FROM orders WHERE customer_id = ?"  # most total time first
    slow = next(r for r in found if r["rule"] == "slow_query")
    assert slow["evidence"]["numbers"]["calls"] == 2
    assert slow["evidence"]["numbers"]["total_ms"] == 1700.0
    assert 0 < slow["confidence"] < 0.6  # two calls: little data
    assert "secret-4242" not in json.dumps(found)
    for r in found:
        assert set(r) >= {"fingerprint", "category", "severity", "title", "action", "evidence", "confidence"}


def test_healthy_logs_give_nothing() -> None:
    logs = [
        {"query": "SELECT id FROM t WHERE id = ? LIMIT 1", "execution_time": 0.002, "rows_returned": 1}
    ] * 20
    assert PerformanceTuner().optimize_database_queries(logs) == []
    assert PerformanceTuner().optimize_database_queries([]) == []


def test_seed_cache_settings_grow_shrink_and_healthy() -> None:
    tuner = PerformanceTuner()
    (grow,) = tuner.optimize_cache_settings(
        {"hit_rate": 0.5, "eviction_count": 900, "total_size_mb": 100, "max_size_mb": 100}
    )
    assert grow["action"] == "grow" and grow["recommended_max_size_mb"] == 200
    (shrink,) = tuner.optimize_cache_settings(
        {"hit_rate": 0.9, "eviction_count": 0, "total_size_mb": 10, "max_size_mb": 100}
    )
    assert shrink["action"] == "shrink" and shrink["recommended_max_size_mb"] == 12.5
    healthy = {"hit_rate": 0.97, "eviction_count": 3, "total_size_mb": 80, "max_size_mb": 100}
    assert tuner.optimize_cache_settings(healthy) == []
    assert tuner.optimize_cache_settings([healthy, {"hit_rate": "x"}]) == []


def test_seed_worker_threads() -> None:
    tuner = PerformanceTuner()
    metrics = {"cpu_utilization": 0.3, "current_threads": 4, "throughput": 50.0, "avg_latency": 0.2}
    assert tuner.optimize_worker_threads(metrics) == 15  # ceil(50 * 0.2 / 0.7)
    assert tuner.optimize_worker_threads({**metrics, "cpu_utilization": 0.95}) == 4  # CPU-bound
    rich = tuner.analyze_worker_threads(metrics)
    assert rich["littles_law_concurrency"] == 10.0 and rich["action"] == "grow"


def test_seed_cache_settings_carry_the_recommendation_fields_and_keep_the_seed_keys() -> None:
    tuner = PerformanceTuner()
    stats = {
        "name": "orders",
        "hit_rate": 0.5,
        "eviction_count": 900,
        "total_size_mb": 95,
        "max_size_mb": 100,
    }
    (grow,) = tuner.optimize_cache_settings(stats)
    # The seed's keys
    assert grow["action"] == "grow" and grow["cache"] == "orders" and grow["recommended_max_size_mb"] == 200
    assert "900 evictions" in grow["reason"]
    assert grow["evidence"]["hit_rate"] == 0.5 and grow["evidence"]["fill"] == 0.95
    assert grow["evidence"]["threshold"] == "evictions > 0, hit_rate < 0.95, fill >= 0.9"
    # ... and every field of a recommendation
    assert grow["category"] == "cache" and grow["rule"] == "grow" and grow["severity"] == "medium"
    assert grow["title"] == "Grow cache orders: 100 -> 200 MB" and grow["subject"] == "orders"
    assert grow["fingerprint"].startswith("ca-grow-") and 0 < grow["confidence"] <= 0.5
    assert grow["change"].startswith("Set the max size of cache orders to 200 MB")
    assert grow["evidence"]["numbers"]["recommended_max_size_mb"] == 200
    assert grow["evidence"]["trace_ids"] == [] and grow["evidence"]["span_ids"] == []
    assert grow["evidence"]["formula"].startswith("fill = total_size_mb / max_size_mb")
    # Stable: the same cache and rule give the same fingerprint; another cache another one
    assert tuner.optimize_cache_settings(stats)[0]["fingerprint"] == grow["fingerprint"]
    (other,) = tuner.optimize_cache_settings({**stats, "name": "users"})
    assert other["fingerprint"] != grow["fingerprint"]
    (shrink,) = tuner.optimize_cache_settings(
        {"hit_rate": 0.9, "eviction_count": 0, "total_size_mb": 10, "max_size_mb": 100}
    )
    assert shrink["action"] == "shrink" and shrink["severity"] == "low" and shrink["subject"] == "0"
    assert shrink["fingerprint"] and shrink["title"] == "Shrink cache 0: 100 -> 12.5 MB"
    json.dumps([grow, shrink])  # plain JSON


def test_telemetry_is_analyzed_by_the_same_run_as_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the demo's telemetry (a planted ~1 s report query, N+1 queries)
    from amqadf_agent.cli.agent import main as agent
    from amqadf_agent.cli.analyze import main as analyze

    assert agent(["demo", "--duration", "4", "--out", str(tmp_path), "--rate", "15"]) == 0
    capsys.readouterr()
    # WHEN the tuner and the command analyze it
    found = PerformanceTuner().analyze_telemetry([tmp_path])
    assert analyze([str(tmp_path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # THEN they give the same ranked recommendations
    assert found and "n_plus_one" in [r["rule"] for r in found]
    assert [r["fingerprint"] for r in found] == [r["fingerprint"] for r in report["recommendations"]]
    # AND the tuner's slow-query threshold applies
    strict = PerformanceTuner(DatabaseRuleConfig(slow_query_s=0.001)).analyze_telemetry([tmp_path])
    slow = [r for r in strict if r["rule"] == "slow_query"]
    assert len(slow) > len([r for r in found if r["rule"] == "slow_query"])
