"""``from_config`` constructors: the resilience and autoscaler groups of a ProductionConfig, applied.

Each test checks behaviour (attempts made, a breaker tripping, a call cut short, a decision held),
not only the attributes; time is injected, so nothing waits for real beyond a tiny timeout.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from support.clock import FakeClock

from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.config.schema import AutoscalerConfig, ResilienceConfig
from amqadf_agent.errors import CircuitOpenError, ConfigError
from amqadf_agent.resilience.circuit_breaker import CircuitBreaker
from amqadf_agent.resilience.retry import RetryPolicy
from amqadf_agent.resilience.timeout import CallTimeoutError, timeout_from_config
from amqadf_agent.scaling.autoscaler import AutoScaler, ScalingMetrics


def config_of(**groups: Any) -> ProductionConfig:
    config = ProductionConfig.load(environ={}, overrides=groups)
    assert config.validate() == (True, [])
    return config


def always_failing(calls: list[int], error: type[Exception] = ConnectionError) -> Any:
    def fn() -> None:
        calls.append(1)
        raise error("down")

    return fn


# --- RetryPolicy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [False, True], ids=["config", "resilience-group"])
def test_retry_attempts_count_the_first_call(group: bool) -> None:
    config = config_of(resilience={"retry_attempts": 4, "retry_base_delay": 0.2, "retry_max_delay": 0.5})
    clock = FakeClock(0.0)
    source: Any = config.resilience if group else config
    policy = RetryPolicy.from_config(source, jitter="none", sleep=clock.sleep, clock=clock)
    assert (policy.max_retries, policy.initial_backoff_time, policy.max_backoff) == (3, 0.2, 0.5)
    calls: list[int] = []
    with pytest.raises(ConnectionError) as caught:
        policy.call(always_failing(calls))
    assert len(calls) == 4  # 4 attempts: the call and 3 retries
    assert caught.value.__amqadf_attempts__ == 4  # type: ignore[attr-defined]
    assert clock.sleeps == [0.2, 0.4, 0.5]  # doubled from the base, capped by retry_max_delay


def test_default_jitter_stays_under_the_configured_cap() -> None:
    clock = FakeClock(0.0)
    policy = RetryPolicy.from_config(
        config_of(resilience={"retry_attempts": 6, "retry_max_delay": 0.3}), sleep=clock.sleep
    )
    with pytest.raises(ConnectionError):
        policy.call(always_failing([]))
    assert len(clock.sleeps) == 5 and all(0 <= delay <= 0.3 for delay in clock.sleeps)


def test_one_attempt_never_retries_and_keywords_override_the_config() -> None:
    clock = FakeClock(0.0)
    calls: list[int] = []
    once = RetryPolicy.from_config(config_of(resilience={"retry_attempts": 1}), sleep=clock.sleep)
    with pytest.raises(ConnectionError):
        once.call(always_failing(calls))
    assert (len(calls), clock.sleeps) == (1, [])

    calls.clear()
    only_timeouts = RetryPolicy.from_config(
        ProductionConfig.load(environ={}), retryable_exceptions=(TimeoutError,), sleep=clock.sleep
    )
    with pytest.raises(ValueError):
        only_timeouts.call(always_failing(calls, ValueError))
    assert len(calls) == 1  # not retryable: raised at once


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            ResilienceConfig(retry_attempts=0),
            "resilience.retry_attempts: must be a positive whole number, got 0",
        ),
        (
            ResilienceConfig(retry_base_delay=2.0, retry_max_delay=1.0),
            "resilience.retry_base_delay: must be at most resilience.retry_max_delay (2.0 > 1.0)",
        ),
        ({"retry_attempts": 3}, "config: must be a ProductionConfig or its resilience group, got dict"),
    ],
)
def test_retry_from_a_bad_config_names_the_field(source: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy.from_config(source)
    assert str(caught.value) == message


# --- CircuitBreaker ---------------------------------------------------------------------------------


def test_breaker_trips_on_the_configured_failure_rate_and_reopens_after_the_open_timeout() -> None:
    clock = FakeClock(0.0)
    config = config_of(resilience={"breaker_failure_rate": 0.5, "breaker_open_timeout": 20})
    breaker = CircuitBreaker.from_config(config, name="payments", clock=clock)
    assert breaker.name == "payments"
    for _ in range(5):
        breaker.call(lambda: None)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            breaker.call(always_failing([]))
    assert breaker.state == "closed"  # 4 of 9: below 50 %, and under the 10 calls the window needs
    with pytest.raises(ConnectionError):
        breaker.call(always_failing([]))
    assert breaker.state == "open"  # 5 of 10 = 50 %
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    clock.now += 19.9
    assert breaker.state == "open"
    clock.now += 0.2
    assert breaker.state == "half_open"


def test_breaker_from_config_has_no_consecutive_failure_trip_unless_asked() -> None:
    clock = FakeClock(0.0)
    rate_only = CircuitBreaker.from_config(ResilienceConfig(), clock=clock)
    for _ in range(9):  # a plain CircuitBreaker() would open at 5 consecutive failures
        with pytest.raises(ConnectionError):
            rate_only.call(always_failing([]))
    assert rate_only.state == "closed"
    with_count = CircuitBreaker.from_config(ResilienceConfig(), failure_threshold=3, clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            with_count.call(always_failing([]))
    assert with_count.state == "open"


def test_breaker_from_a_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        CircuitBreaker.from_config(ResilienceConfig(breaker_failure_rate=1.5))
    assert (
        str(caught.value) == "resilience.breaker_failure_rate: must be a number above 0, at most 1, got 1.5"
    )


# --- timeout ----------------------------------------------------------------------------------------


def test_timeout_from_config_cuts_the_wait_at_the_configured_limit() -> None:
    release = threading.Event()

    @timeout_from_config(ResilienceConfig(timeout=0.05), name="slow")
    def slow() -> str:
        release.wait(10)
        return "late"

    try:
        with pytest.raises(CallTimeoutError) as caught:
            slow()
    finally:
        release.set()
    assert (caught.value.name, caught.value.seconds) == ("slow", 0.05)

    @timeout_from_config(config_of(resilience={"timeout": 5}))
    def fast() -> str:
        return "ok"

    assert fast() == "ok"


def test_timeout_from_a_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        timeout_from_config(ResilienceConfig(timeout=-1))
    assert str(caught.value) == "resilience.timeout: must be a positive number, got -1"


# --- AutoScaler -------------------------------------------------------------------------------------


def test_autoscaler_respects_the_configured_bounds_and_cpu_target() -> None:
    clock = FakeClock(0.0)
    config = config_of(autoscaler={"min_instances": 2, "max_instances": 4, "target_cpu": 0.5})
    scaler = AutoScaler.from_config(config, clock=clock)
    assert (scaler.min_instances, scaler.max_instances, scaler.targets) == (2, 4, {"cpu_target": 0.5})
    up = scaler.get_scaling_decision(3, ScalingMetrics(cpu_utilization=1.0))
    assert (up.recommendation, up.target_instances) == (6, 4)  # ceil(3 * 1.0/0.5), held at the max
    # Memory is not a target the config names: it does not drive the count.
    held = scaler.get_scaling_decision(4, ScalingMetrics(cpu_utilization=0.5, memory_utilization=1.0))
    assert held.target_instances == 4


def test_autoscaler_scale_down_waits_for_the_configured_stabilization_window() -> None:
    clock = FakeClock(0.0)
    scaler = AutoScaler.from_config(
        AutoscalerConfig(min_instances=1, max_instances=10, target_cpu=0.5, scale_down_stabilization=30.2),
        clock=clock,
    )
    assert scaler.scale_down.stabilization_window_seconds == 31  # rounded up to whole seconds
    assert scaler.get_scaling_decision(4, ScalingMetrics(cpu_utilization=0.5)).target_instances == 4
    clock.now = 20
    assert scaler.get_scaling_decision(4, ScalingMetrics(cpu_utilization=0.25)).target_instances == 4
    clock.now = 40
    assert scaler.get_scaling_decision(4, ScalingMetrics(cpu_utilization=0.25)).target_instances == 2


def test_autoscaler_keywords_override_the_config() -> None:
    scaler = AutoScaler.from_config(AutoscalerConfig(), memory_target=0.8, max_instances=3)
    assert scaler.targets == {"cpu_target": 0.7, "memory_target": 0.8}
    assert scaler.max_instances == 3


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (
            AutoscalerConfig(min_instances=5, max_instances=3),
            "autoscaler.min_instances: must be at most autoscaler.max_instances (5 > 3)",
        ),
        (
            AutoscalerConfig(min_instances=0),
            "autoscaler.min_instances: must be a positive whole number (no scale-to-zero), got 0",
        ),
        (
            AutoscalerConfig(scale_down_stabilization=7200),
            "autoscaler.scale_down_stabilization: must be a number of seconds from 0 to 3600, got 7200",
        ),
        (
            ResilienceConfig(),
            "config: must be a ProductionConfig or its autoscaler group, got ResilienceConfig",
        ),
    ],
)
def test_autoscaler_from_a_bad_config_names_the_field(group: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AutoScaler.from_config(group)
    assert str(caught.value) == message


def test_a_config_file_asking_for_scale_to_zero_is_refused_by_validate(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("autoscaler: {min_instances: 0}\n", encoding="utf-8")
    ok, errors = ProductionConfig.from_file(path).validate()
    assert not ok
    assert errors == ["autoscaler.min_instances: must be a positive whole number (no scale-to-zero), got 0"]


# --- all of them from one YAML file -------------------------------------------------------------------


def test_every_component_from_one_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text(
        "service: {name: checkout}\n"
        "resilience:\n"
        "  retry_attempts: 2\n"
        "  retry_base_delay: 0.05\n"
        "  retry_max_delay: 0.05\n"
        "  timeout: 0.05\n"
        "  breaker_failure_rate: 0.25\n"
        "  breaker_open_timeout: 12\n"
        "autoscaler:\n"
        "  min_instances: 3\n"
        "  max_instances: 6\n"
        "  target_cpu: 0.6\n"
        "  scale_down_stabilization: 60\n",
        encoding="utf-8",
    )
    config = ProductionConfig.from_file(path, environ={})
    assert config.validate() == (True, [])
    clock = FakeClock(0.0)

    calls: list[int] = []
    with pytest.raises(ConnectionError):
        RetryPolicy.from_config(config, sleep=clock.sleep).call(always_failing(calls))
    assert len(calls) == 2 and len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.05

    breaker = CircuitBreaker.from_config(config, name="inventory", clock=clock, minimum_calls=4)
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    with pytest.raises(ConnectionError):
        breaker.call(always_failing([]))
    assert breaker.state == "open"  # 1 of 4 = 25 %
    clock.now += 12
    assert breaker.state == "half_open"

    release = threading.Event()

    @timeout_from_config(config)
    def stuck() -> None:
        release.wait(10)

    try:
        with pytest.raises(CallTimeoutError):
            stuck()
    finally:
        release.set()

    scaler = AutoScaler.from_config(config, clock=clock)
    assert (scaler.min_instances, scaler.max_instances, scaler.targets) == (3, 6, {"cpu_target": 0.6})
    assert scaler.scale_down.stabilization_window_seconds == 60
    assert scaler.get_scaling_decision(3, ScalingMetrics(cpu_utilization=0.1)).target_instances == 3
    assert scaler.get_scaling_decision(5, ScalingMetrics(cpu_utilization=1.0)).target_instances == 6
