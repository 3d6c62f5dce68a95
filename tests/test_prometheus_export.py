"""The ``prometheus`` exporter: a real pull endpoint on a loopback port, scraped over HTTP."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest
from support import free_port

import amqadf_agent
from amqadf_agent import InstrumentedCache


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_metrics_are_served_with_prometheus_names_and_the_endpoint_closes_at_shutdown() -> None:
    port = free_port()
    agent = amqadf_agent.start(service_name="prom", exporters=["prometheus"], prometheus_port=port)
    assert agent.running and agent.problems == []
    cache: InstrumentedCache[int, int] = InstrumentedCache("users", max_size=2)
    cache.instrument()
    cache.get(1)
    cache.set(1, 1)
    cache.get(1)

    body = _scrape(port)
    lines = body.splitlines()
    # Counters get _total; the contract's attribute keys become labels with underscores.
    hit = [
        line for line in lines if line.startswith("amqadf_cache_requests_total{") and 'result="hit"' in line
    ]
    miss = [
        line for line in lines if line.startswith("amqadf_cache_requests_total{") and 'result="miss"' in line
    ]
    assert len(hit) == 1 and hit[0].endswith(" 1.0"), hit
    assert len(miss) == 1 and miss[0].endswith(" 1.0"), miss
    assert 'amqadf_cache_name="users"' in hit[0]
    # The resource arrives as target_info.
    target = [line for line in lines if line.startswith("target_info{")]
    assert len(target) == 1 and 'service_name="prom"' in target[0], target

    assert agent.shutdown(timeout=5.0)
    with pytest.raises(OSError):
        _scrape(port)


def test_a_port_in_use_is_one_clear_problem_and_the_other_exporters_run(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with caplog.at_level(logging.WARNING, logger="amqadf_agent"):
            agent = amqadf_agent.start(
                exporters=["prometheus", "file"], prometheus_port=port, output_dir=str(tmp_path)
            )
        assert agent.running
        assert [problem.setting for problem in agent.problems] == ["exporters.prometheus"]
        assert "the prometheus exporter is off" in str(agent.problems[0])
        messages = [r.getMessage() for r in caplog.records if "prometheus" in r.getMessage()]
        assert len(messages) == 1, messages
        with agent.tracer().start_as_current_span("still-traced"):
            pass
        assert agent.shutdown(timeout=5.0)
    assert (agent.output_dir is not None) and (agent.output_dir / "traces.jsonl").stat().st_size > 0
