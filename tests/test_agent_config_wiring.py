"""start(ProductionConfig): the resource_monitor and profiler groups reach the running components."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support.metrics import collect, points

from amqadf_agent import semconv
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.monitoring import resources
from amqadf_agent.profiling.profiler import configure_default_profiler, default_profiler
from amqadf_agent.runtime import agent as agent_mod


def _config(tmp_path: Path, **overrides: object) -> ProductionConfig:
    return ProductionConfig.load(
        environ={},
        overrides={"exporter.exporters": ["file"], "exporter.output_dir": str(tmp_path), **overrides},
    )


def _breaches(reader: InMemoryMetricReader) -> dict[str, float]:
    metric = collect(reader).get(semconv.RESOURCE_LIMIT_BREACHES.name)
    found = points(metric) if metric is not None else {}
    return {dict(attrs)[semconv.ATTR_RESOURCE_KIND]: value for attrs, value in found.items()}


def test_configured_limits_are_checked_in_the_background_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a memory limit every machine is over (1%) and samples every 50 ms
    config = _config(
        tmp_path, **{"resource_monitor.interval": 0.05, "resource_monitor.memory_threshold": 0.01}
    )
    reader = InMemoryMetricReader()
    caplog.set_level(logging.WARNING, logger="amqadf_agent")
    agent = agent_mod.start(config, metric_readers=[reader])
    try:
        assert agent.running, agent.error
        monitor = resources._default
        assert monitor is not None and monitor.monitoring and monitor.update_interval == 0.05
        # WHEN a few samples have been taken
        deadline = time.monotonic() + 5.0
        while _breaches(reader).get("memory", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # THEN each one counted a memory breach, and the log said it once
        assert _breaches(reader)["memory"] >= 3
        said = [r.getMessage() for r in caplog.records if "memory at" in r.getMessage()]
        assert len(said) == 1 and "is over its limit of 1%" in said[0], said
    finally:
        agent.shutdown()
    # AND the agent's shutdown stopped the sampling thread
    assert not monitor.monitoring


def test_no_limits_no_thread(tmp_path: Path) -> None:
    with agent_mod.start(exporters=["file"], output_dir=str(tmp_path)) as agent:
        assert agent.running
        monitor = resources._default
        assert monitor is not None and not monitor.monitoring


def test_the_profiler_group_sets_what_profiled_does(tmp_path: Path) -> None:
    profiler = default_profiler()
    before = (profiler.enabled, profiler.sample_rate)
    try:
        with agent_mod.start(
            _config(tmp_path, **{"profiler.enabled": False, "profiler.sample_rate": 0.05})
        ) as agent:
            assert agent.running, agent.error
            assert (profiler.enabled, profiler.sample_rate) == (False, 0.05)
    finally:
        configure_default_profiler(enabled=before[0], sample_rate=before[1])


def test_a_plain_start_leaves_the_applications_profiler_settings_alone(tmp_path: Path) -> None:
    profiler = default_profiler()
    before = (profiler.enabled, profiler.sample_rate)
    try:
        configure_default_profiler(enabled=False, sample_rate=0.2)
        with agent_mod.start(exporters=["file"], output_dir=str(tmp_path)) as agent:
            assert agent.running
            assert (profiler.enabled, profiler.sample_rate) == (False, 0.2)
    finally:
        configure_default_profiler(enabled=before[0], sample_rate=before[1])


def test_exporter_secrets_in_the_config_start_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config carrying header secrets must start (its settings are not deep-copied) and not leak them.
    monkeypatch.setenv("VENDOR_KEY", "s3cr3t-value")
    config = ProductionConfig.load(
        environ={"VENDOR_KEY": "s3cr3t-value"},
        overrides={
            "exporter.exporters": ["otlp"],
            "exporter.endpoint": "http://127.0.0.1:4318",
            "exporter.api_key": {"secret": "VENDOR_KEY"},
            "exporter.headers": {"x-team": "platform"},
            "agent.shutdown_timeout": 0.5,  # nothing listens there: do not wait for the export
        },
    )
    with agent_mod.start(config) as agent:
        assert agent.running, agent.error
        assert "s3cr3t-value" not in repr(agent) and "s3cr3t-value" not in repr(agent.settings)


def test_config_log_level_and_namespace_reach_the_running_agent(tmp_path: Path) -> None:
    own = logging.getLogger("amqadf_agent")
    before = own.level
    config = _config(tmp_path, log_level="error", **{"service.namespace": "payments"})
    agent = agent_mod.start(config)
    try:
        assert agent.running, agent.error
        assert own.level == logging.ERROR
        assert agent.resource is not None
        assert agent.resource.attributes[semconv.ATTR_SERVICE_NAMESPACE] == "payments"
    finally:
        agent.shutdown()
    assert own.level == before


def test_each_environment_profile_gives_the_agents_log_level() -> None:
    levels = {
        environment: ProductionConfig.load(environment=environment, environ={}).to_agent_settings().log_level
        for environment in ("development", "staging", "production")
    }
    assert levels == {"development": "DEBUG", "staging": "INFO", "production": "WARNING"}
