"""The demo with --redis: breaker and rate limiter shared through a real Redis, whose INFO is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_client
from support.redis_server import RedisServer

from amqadf_agent import semconv
from amqadf_agent.analyzer.model import MetricRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.cli.agent import main
from amqadf_agent.resilience.circuit_breaker import CircuitBreaker
from amqadf_agent.resilience.stores import RedisStore


def test_demo_shares_its_breaker_and_limiter_and_reports_redis_as_a_cache(
    redis_server: RedisServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN another process's breaker of the same name tripped through the same Redis
    other = CircuitBreaker(
        failure_threshold=1, timeout=60.0, name="inventory", store=RedisStore(redis_server.url)
    )
    with pytest.raises(ZeroDivisionError):
        other.call(lambda: 1 / 0)
    client = redis_client.Redis.from_url(redis_server.url)
    assert client.hget("amqadf:breaker:inventory", "state") == b"open"
    # WHEN the demo runs with that Redis
    out = tmp_path / "telemetry"
    code = main(["demo", "--duration", "4", "--rate", "20", "--out", str(out), "--redis", redis_server.url])
    assert code == 0, capsys.readouterr().err
    # The limiter's and the breaker's updates ran as Lua scripts in Redis.
    scripts = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert scripts >= 10, client.info("commandstats")

    metrics = [r for r in read(out / "metrics.jsonl", strict=True) if isinstance(r, MetricRecord)]
    # THEN the demo's breaker honours the shared open state: its inventory calls are rejected
    rejected = [
        p.value
        for m in metrics
        if m.name == semconv.BREAKER_CALLS.name
        for p in m.points
        if p.attributes.get(semconv.ATTR_BREAKER_NAME) == "inventory"
        and p.attributes.get(semconv.ATTR_BREAKER_OUTCOME) == "rejected"
    ]
    assert rejected and max(rejected) > 0
    redis_series = {
        m.name for m in metrics for p in m.points if p.attributes.get(semconv.ATTR_CACHE_NAME) == "redis"
    }
    assert {
        semconv.CACHE_REQUESTS.name,
        semconv.CACHE_MEMORY_USAGE.name,
        semconv.CACHE_SIZE.name,
    } <= redis_series
    lru = {
        m.name for m in metrics for p in m.points if p.attributes.get(semconv.ATTR_CACHE_NAME) == "sku-labels"
    }
    assert semconv.CACHE_REQUESTS.name in lru


def test_demo_without_the_redis_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    code = main(["demo", "--duration", "1", "--out", str(tmp_path / "t"), "--redis", "redis://127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "pip install 'amqadf-agent[redis]'" in err[0]
