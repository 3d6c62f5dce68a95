"""AutoScaler: the Kubernetes HPA algorithm (worked examples, windows, policies), its guards,
simulate(), the HPA manifest, the emitter, and the wall that keeps OpenTelemetry out of the engine."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import logging
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import collect, points

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.scaling.autoscaler import (
    ACTIONS,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    LIMITS,
    AutoScaler,
    ScalingDecision,
    ScalingMetrics,
    ScalingPolicy,
    ScalingRules,
)
from amqadf_agent.scaling.autoscaler_telemetry import AutoScalerTelemetry, instrument

ROOT = Path(__file__).resolve().parents[1]


def cpu(value: float | None, **more: Any) -> ScalingMetrics:
    return ScalingMetrics(cpu_utilization=value, **more)


def scaler(clock: FakeClock | None = None, **kwargs: Any) -> AutoScaler:
    """A CPU-only scaler on a fake clock (memory off, so a missing memory value holds nothing)."""
    kwargs.setdefault("memory_target", None)
    kwargs.setdefault("min_instances", 1)
    kwargs.setdefault("max_instances", 100)
    return AutoScaler(clock=clock or FakeClock(), **kwargs)


NO_DOWN_WINDOW = ScalingRules(0, DEFAULT_SCALE_DOWN.policies)
SHORT_DOWN_WINDOW = ScalingRules(60, DEFAULT_SCALE_DOWN.policies)


# --- the worked examples of the Kubernetes HPA documentation ----------------------------------------
# desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]
@pytest.mark.parametrize("current", [1, 2, 3, 4])
def test_a_metric_at_twice_its_target_doubles_the_count(current: int) -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of replicas
    # will be doubled, since 200.0 / 100.0 == 2.0"
    d = scaler(cpu_target=0.1).get_scaling_decision(current, cpu(0.2))
    assert (d.action, d.target_instances, d.limited_by) == ("scale_up", 2 * current, None)
    assert d.desired_by_metric == {"cpu_utilization": 2 * current}
    assert d.ratio_by_metric["cpu_utilization"] == pytest.approx(2.0)
    assert d.limiting_metric == "cpu_utilization" and d.recommendation == 2 * current


@pytest.mark.parametrize(("current", "halved"), [(2, 1), (4, 2), (6, 3), (7, 4)])
def test_a_metric_at_half_its_target_halves_the_count(current: int, halved: int) -> None:
    # "If the current value is instead 50m, you'll halve the number of replicas"; a fresh
    # controller has no past recommendation in its window, so the scale-down happens at once.
    d = scaler(cpu_target=0.1).get_scaling_decision(current, cpu(0.05))
    assert (d.action, d.target_instances, d.limited_by) == ("scale_down", halved, None)


def test_the_same_examples_with_a_per_instance_request_rate() -> None:
    # A Pods metric with an averageValue: the total divided by the count, against the target.
    s = scaler(cpu_target=None, request_rate_target=100.0)
    assert s.get_scaling_decision(3, ScalingMetrics(request_rate=600.0)).target_instances == 6
    assert (
        scaler(cpu_target=None, request_rate_target=100.0)
        .get_scaling_decision(4, ScalingMetrics(request_rate=200.0))
        .target_instances
        == 2
    )


@pytest.mark.parametrize("ratio", [1.05, 0.95, 1.1, 0.9, 1.0])
def test_a_ratio_within_the_tolerance_changes_nothing(ratio: float) -> None:
    # "The control plane skips any scaling action if the ratio is sufficiently close to 1.0
    # (within a globally-configurable tolerance, 0.1 by default)."
    d = scaler(cpu_target=0.5).get_scaling_decision(10, cpu(0.5 * ratio))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 10, "tolerance")
    assert d.desired_by_metric == {"cpu_utilization": 10}
    assert "tolerance" in d.reason


def test_just_outside_the_tolerance_scales() -> None:
    d = scaler(cpu_target=0.5).get_scaling_decision(10, cpu(0.5 * 1.11))
    assert (d.action, d.target_instances) == ("scale_up", 12)  # ceil(10 * 1.11)
    d = scaler(cpu_target=0.5).get_scaling_decision(10, cpu(0.5 * 0.89))
    assert (d.action, d.target_instances) == ("scale_down", 9)  # ceil(10 * 0.89)


def test_the_blog_example_50_replicas_at_90_percent_against_75_go_to_60() -> None:
    # Kubernetes blog, "HPA configurable tolerance" (v1.33): 50 * (90 / 75) = 60.
    d = scaler(cpu_target=0.75).get_scaling_decision(50, cpu(0.90))
    assert d.target_instances == 60


def test_the_largest_desired_count_over_the_metrics_wins() -> None:
    s = scaler(
        memory_target=0.7,
        request_rate_target=50.0,
        queue_depth_target=5.0,
        response_time_p95_target=0.4,
    )
    metrics = ScalingMetrics(
        cpu_utilization=0.7,
        memory_utilization=0.35,
        request_rate=300.0,
        queue_depth=50,
        response_time_p95=0.6,
    )
    d = s.get_scaling_decision(5, metrics)
    assert d.desired_by_metric == {
        "cpu_utilization": 5,  # within the tolerance
        "memory_utilization": 3,  # ceil(5 * 0.5)
        "request_rate": 6,  # 300 / 5 = 60 per instance against 50
        "queue_depth": 10,  # 50 / 5 = 10 per instance against 5
        "response_time_p95": 8,  # ceil(5 * 0.6 / 0.4)
    }
    assert (d.target_instances, d.limiting_metric) == (10, "queue_depth")


def test_a_hot_service_of_five_scales_up_to_seven_on_cpu() -> None:
    auto_scaler = AutoScaler(min_instances=2, max_instances=10, target_utilization=0.7, clock=FakeClock())
    metrics = ScalingMetrics(
        cpu_utilization=0.9,
        memory_utilization=0.85,
        request_rate=200.0,
        error_rate=0.05,
        queue_depth=50,
        response_time_p50=0.2,
        response_time_p95=0.8,
        response_time_p99=2.0,
    )
    decision = auto_scaler.get_scaling_decision(current_instances=5, metrics=metrics)
    assert (decision.action, decision.target_instances, decision.current_instances) == ("scale_up", 7, 5)
    assert decision.desired_by_metric == {"cpu_utilization": 7, "memory_utilization": 7}
    assert decision.limiting_metric == "cpu_utilization"
    assert decision.reason == "cpu_utilization at 1.29x its target recommends 7: 5 → 7"
    assert decision.timestamp == 1000.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.target_instances = 3  # type: ignore[misc]


# --- stabilization ------------------------------------------------------------------------------------
def test_a_scale_down_is_held_for_300_s_by_stabilization_and_released_after() -> None:
    clock = FakeClock(0.0)
    s = scaler(clock)
    assert s.get_scaling_decision(10, cpu(0.7)).limited_by == "tolerance"  # recommends 10 at t=0
    for t in range(15, 300, 15):
        clock.now = float(t)
        d = s.get_scaling_decision(10, cpu(0.35))  # recommends 5
        assert (d.action, d.target_instances, d.limited_by) == ("no_action", 10, "stabilization"), t
        assert d.recommendation == 5
        assert "highest recommendation of the last 300 s" in d.reason
    clock.now = 300.0  # the t=0 recommendation leaves the window
    d = s.get_scaling_decision(10, cpu(0.35))
    assert (d.action, d.target_instances, d.limited_by) == ("scale_down", 5, None)


def test_a_scale_down_goes_to_the_highest_recommendation_of_the_window() -> None:
    clock = FakeClock(0.0)
    s = scaler(clock)
    s.get_scaling_decision(10, cpu(0.7))  # 10 at t=0
    clock.now = 100.0
    s.get_scaling_decision(10, cpu(0.56))  # 8 at t=100
    clock.now = 301.0  # 10 has left, 8 is still there
    d = s.get_scaling_decision(10, cpu(0.35))
    assert (d.target_instances, d.limited_by) == (8, "stabilization")


def test_a_scale_up_window_takes_the_lowest_recommendation() -> None:
    clock = FakeClock(0.0)
    s = scaler(clock, scale_up=ScalingRules(60, DEFAULT_SCALE_UP.policies))
    s.get_scaling_decision(5, cpu(0.7))  # 5 at t=0
    for t in (15, 30, 45):
        clock.now = float(t)
        d = s.get_scaling_decision(5, cpu(1.0))  # recommends 8
        assert (d.target_instances, d.limited_by) == (5, "stabilization")
        assert "lowest recommendation of the last 60 s" in d.reason
    clock.now = 60.0
    d = s.get_scaling_decision(5, cpu(1.0))
    assert (d.action, d.target_instances) == ("scale_up", 8)


def test_a_flapping_metric_does_not_make_the_scaler_oscillate() -> None:
    # A load that alternates every 15 s between 6.3 and 3.5 instances' worth of CPU, for 10
    # minutes; the utilization is the load spread over the instances running.
    def run(scale_down: ScalingRules) -> list[ScalingDecision]:
        clock = FakeClock(0.0)
        s = scaler(clock, scale_down=scale_down)
        current, decisions = 5, []
        for step in range(40):
            load = 6.3 if step % 2 == 0 else 3.5
            d = s.get_scaling_decision(current, cpu(min(1.0, load / current)))
            decisions.append(d)
            current = d.target_instances
            clock.advance(15)
        return decisions

    def direction_changes(decisions: list[ScalingDecision]) -> int:
        moves = [d.action for d in decisions if d.action != "no_action"]
        return sum(1 for a, b in itertools.pairwise(moves) if a != b)

    stable = run(DEFAULT_SCALE_DOWN)
    assert direction_changes(stable) == 0
    # Up to the peak (5 → 8, as 1.0 is the utilization's ceiling; then 8 → 9), then held there.
    assert [(d.current_instances, d.target_instances) for d in stable if d.changed] == [(5, 8), (8, 9)]
    assert {d.limited_by for d in stable[3:]} == {"tolerance", "stabilization"}
    # Without the scale-down window the same load makes it flap at every step.
    assert direction_changes(run(NO_DOWN_WINDOW)) >= 30


# --- rate policies and bounds ------------------------------------------------------------------------
def test_a_huge_spike_at_2_goes_to_at_most_6_per_15_s() -> None:
    clock = FakeClock(0.0)
    s = scaler(clock, cpu_target=0.1)
    d = s.get_scaling_decision(2, cpu(1.0))  # recommends 20
    assert (d.target_instances, d.recommendation, d.limited_by) == (6, 20, "policy")  # max(2*2, 2+4)
    assert "scale-up policies allow 6" in d.reason
    clock.now = 5.0  # same period: the period began at 2
    d = s.get_scaling_decision(6, cpu(1.0))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 6, "policy")
    clock.now = 15.0  # a new period, from 6: max(12, 10)
    d = s.get_scaling_decision(6, cpu(1.0))
    assert (d.target_instances, d.limited_by) == (12, "policy")


def test_select_policy_min_takes_the_smaller_change() -> None:
    rules = ScalingRules(0, DEFAULT_SCALE_UP.policies, select_policy="Min")
    d = scaler(scale_up=rules, cpu_target=0.1).get_scaling_decision(10, cpu(1.0))
    assert (d.target_instances, d.limited_by) == (14, "policy")  # min(10*2, 10+4)


def test_select_policy_disabled_never_scales_that_way() -> None:
    rules = ScalingRules(0, DEFAULT_SCALE_DOWN.policies, select_policy="Disabled")
    d = scaler(scale_down=rules).get_scaling_decision(10, cpu(0.1))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 10, "policy")
    d = scaler(scale_down=rules).get_scaling_decision(10, cpu(1.0))
    assert d.action == "scale_up"


def test_scale_down_by_a_percent_policy() -> None:
    clock = FakeClock(0.0)
    down = ScalingRules(0, (ScalingPolicy("Percent", 50, 60),))
    s = scaler(clock, scale_down=down)
    d = s.get_scaling_decision(10, cpu(0.07))  # recommends ceil(10 * 0.1) = 1
    assert (d.target_instances, d.limited_by) == (5, "policy")
    clock.now = 30.0  # same 60 s period, which began at 10: 10 * 50% = 5 already reached
    d = s.get_scaling_decision(5, cpu(0.07))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 5, "policy")
    clock.now = 60.0  # a new period from 5: floor(5 * 50%) = 2
    d = s.get_scaling_decision(5, cpu(0.07))
    assert (d.target_instances, d.limited_by) == (2, "policy")


def test_scale_down_by_a_pods_policy_and_periods_that_overlap() -> None:
    clock = FakeClock(0.0)
    down = ScalingRules(0, (ScalingPolicy("Pods", 2, 30), ScalingPolicy("Percent", 10, 60)), "Max")
    s = scaler(clock, scale_down=down)
    # Max = the bigger change: max(10-2, floor(10*0.9)=9) → the lower limit, 8.
    assert s.get_scaling_decision(10, cpu(0.07)).target_instances == 8
    clock.now = 30.0  # Pods period over (from 8: 6), Percent period from 10: 9 → the lower, 6
    assert s.get_scaling_decision(8, cpu(0.07)).target_instances == 6


def test_the_hpa_documentations_scale_down_policy_example() -> None:
    # kubernetes.io, "Horizontal Pod Autoscaling", scaling policies: Pods 4 and Percent 10 per 60 s,
    # the bigger change wins (selectPolicy Max). From 80 replicas to 10: 8 go first, then 10% of 72
    # rounded up (8), and so on; below 40 replicas the Pods policy (4) is the bigger change.
    clock = FakeClock(0.0)
    down = ScalingRules(0, (ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)), "Max")
    s = scaler(clock, scale_down=down, min_instances=10)
    counts = [80]
    while counts[-1] > 10 and len(counts) < 40:
        decision = s.get_scaling_decision(counts[-1], cpu(0.001))  # wants 1, the minimum is 10
        counts.append(decision.target_instances)
        clock.now += 60.0  # one period per step
    assert counts[:8] == [80, 72, 64, 57, 51, 45, 40, 36]
    assert counts[7:] == [36, 32, 28, 24, 20, 16, 12, 10]


def test_bounds_clamp_the_target() -> None:
    d = scaler(max_instances=10, cpu_target=0.1).get_scaling_decision(8, cpu(1.0))
    assert (d.target_instances, d.limited_by) == (10, "bounds")
    assert "max_instances 10" in d.reason
    d = scaler(min_instances=3, scale_down=NO_DOWN_WINDOW).get_scaling_decision(8, cpu(0.07))
    assert (d.target_instances, d.limited_by) == (3, "bounds")


@pytest.mark.parametrize(
    ("current", "target", "action"), [(15, 10, "scale_down"), (1, 2, "scale_up"), (0, 2, "scale_up")]
)
def test_a_count_outside_the_bounds_goes_to_the_bound_whatever_the_metrics(
    current: int, target: int, action: str
) -> None:
    d = scaler(min_instances=2, max_instances=10).get_scaling_decision(current, cpu(None))
    assert (d.action, d.target_instances, d.limited_by) == (action, target, "bounds")


def test_cooldown_holds_a_change_after_a_change() -> None:
    clock = FakeClock(0.0)
    s = scaler(clock, cooldown=60.0)
    assert s.get_scaling_decision(5, cpu(0.9)).target_instances == 7
    clock.now = 30.0
    d = s.get_scaling_decision(7, cpu(1.0))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 7, "cooldown")
    clock.now = 60.0
    assert s.get_scaling_decision(7, cpu(1.0)).target_instances == 10
    # Off by default: the same sequence scales at t=30.
    clock2 = FakeClock(0.0)
    s2 = scaler(clock2)
    s2.get_scaling_decision(5, cpu(0.9))
    clock2.now = 30.0
    assert s2.get_scaling_decision(7, cpu(1.0)).target_instances == 10


# --- guards: error rate and missing metrics -----------------------------------------------------------
def test_an_error_rate_over_its_target_blocks_a_scale_down_but_not_a_scale_up() -> None:
    d = scaler(error_rate_target=0.02).get_scaling_decision(10, cpu(0.1, error_rate=0.05))
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 10, "error_rate")
    assert d.recommendation == 2 and "error rate 0.05 is above its target 0.02" in d.reason
    d = scaler(error_rate_target=0.02).get_scaling_decision(10, cpu(0.1, error_rate=0.01))
    assert (d.action, d.target_instances) == ("scale_down", 2)
    d = scaler(error_rate_target=0.02).get_scaling_decision(5, cpu(0.9, error_rate=0.5))
    assert (d.action, d.target_instances) == ("scale_up", 7)


def test_a_missing_error_rate_blocks_a_scale_down_when_it_is_guarded() -> None:
    d = scaler(error_rate_target=0.02).get_scaling_decision(10, cpu(0.1))
    assert (d.action, d.limited_by) == ("no_action", "missing_metric")
    assert "error_rate missing" in d.reason


def test_a_missing_metric_holds_a_scale_down_and_allows_a_scale_up() -> None:
    s = scaler(memory_target=0.7)
    d = s.get_scaling_decision(10, cpu(0.1))  # memory missing
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", 10, "missing_metric")
    assert "memory_utilization missing" in d.reason
    d = s.get_scaling_decision(5, cpu(0.9))  # memory missing, but a scale-up is safe
    assert (d.action, d.target_instances) == ("scale_up", 7)
    d = s.get_scaling_decision(5, ScalingMetrics())
    assert (d.action, d.limiting_metric, d.limited_by) == ("no_action", None, "missing_metric")
    assert d.reason == "no metric available (cpu_utilization, memory_utilization missing): 5 instances kept"


def test_metrics_are_validated_and_named() -> None:
    for field, value in [
        ("cpu_utilization", 1.5),
        ("memory_utilization", -0.1),
        ("error_rate", 2.0),
        ("request_rate", -1.0),
        ("queue_depth", float("nan")),
        ("response_time_p95", float("inf")),
        ("cpu_utilization", True),
        ("response_time_p50", "fast"),
    ]:
        with pytest.raises(ConfigError) as info:
            ScalingMetrics(**{field: value})  # type: ignore[arg-type]
        assert info.value.setting == field
    assert ScalingMetrics(cpu_utilization=1, memory_utilization=0, queue_depth=0).cpu_utilization == 1


# --- properties -------------------------------------------------------------------------------------
fractions = st.floats(0.0, 1.0, allow_nan=False)
maybe = st.none() | fractions
policy = st.builds(
    ScalingPolicy, st.sampled_from(["Pods", "Percent"]), st.integers(1, 200), st.sampled_from([15, 30, 60])
)
rules = st.builds(
    ScalingRules,
    st.sampled_from([0, 15, 60, 300]),
    st.lists(policy, min_size=1, max_size=3).map(tuple),
    st.sampled_from(["Max", "Min", "Disabled"]),
)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(1, 10))
    return {
        "min_instances": lo,
        "max_instances": draw(st.integers(lo, lo + 40)),
        "cpu_target": draw(st.floats(0.05, 1.0)),
        "memory_target": draw(st.none() | st.floats(0.05, 1.0)),
        "request_rate_target": draw(st.none() | st.floats(1.0, 500.0)),
        "tolerance": draw(st.sampled_from([0.0, 0.05, 0.1, 0.3])),
        "scale_up": draw(rules),
        "scale_down": draw(rules),
        "cooldown": draw(st.sampled_from([0.0, 0.0, 30.0])),
    }


steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 15.0, 30.0, 120.0, 301.0]),  # seconds since the previous step
        st.none() | st.integers(0, 60),  # an outside change of the count; None: the last target
        maybe,
        maybe,
        st.none() | st.floats(0.0, 20000.0),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(configs(), st.integers(0, 60), steps)
def test_the_target_is_always_within_the_bounds_and_the_reason_one_line(
    config: dict[str, Any], start: int, series: list[tuple[float, int | None, Any, Any, Any]]
) -> None:
    clock = FakeClock(0.0)
    s = AutoScaler(clock=clock, **config)
    current = start
    for dt, override, cpu_value, memory, rate in series:
        clock.advance(dt)
        current = override if override is not None else current
        d = s.get_scaling_decision(
            current, ScalingMetrics(cpu_utilization=cpu_value, memory_utilization=memory, request_rate=rate)
        )
        assert s.min_instances <= d.target_instances <= s.max_instances
        assert d.action in ACTIONS and (d.limited_by is None or d.limited_by in LIMITS)
        step = d.target_instances - current
        assert d.action == ("scale_up" if step > 0 else "scale_down" if step < 0 else "no_action")
        assert "\n" not in d.reason and d.reason
        current = d.target_instances


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.1, 0.8),
    st.floats(0.1, 0.8),
    st.floats(-0.999, 0.999),
    st.floats(-0.999, 0.999),
    st.sampled_from([0.05, 0.1, 0.2]),
    st.integers(1, 50),
)
def test_no_action_inside_the_tolerance(
    cpu_target: float, memory_target: float, u: float, v: float, tolerance: float, current: int
) -> None:
    s = AutoScaler(
        1, 50, cpu_target=cpu_target, memory_target=memory_target, tolerance=tolerance, clock=FakeClock()
    )
    metrics = ScalingMetrics(
        cpu_utilization=cpu_target * (1 + u * tolerance),
        memory_utilization=memory_target * (1 + v * tolerance),
    )
    d = s.get_scaling_decision(current, metrics)
    assert (d.action, d.target_instances, d.limited_by) == ("no_action", current, "tolerance")


@settings(max_examples=200, deadline=None)
@given(configs(), st.integers(1, 50), steps)
def test_a_missing_metric_never_scales_down(
    config: dict[str, Any], start: int, series: list[tuple[float, int | None, Any, Any, Any]]
) -> None:
    clock = FakeClock(0.0)
    config["memory_target"] = 0.7  # two metrics, so one can be missing
    s = AutoScaler(clock=clock, **config)
    current = min(max(start, s.min_instances), s.max_instances)
    for dt, _, cpu_value, memory, rate in series:
        clock.advance(dt)
        d = s.get_scaling_decision(
            current, ScalingMetrics(cpu_utilization=cpu_value, memory_utilization=memory, request_rate=rate)
        )
        if cpu_value is None or memory is None or (rate is None and "request_rate_target" in s.targets):
            assert d.action != "scale_down", d
        current = d.target_instances


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(0, 60), fractions, fractions, maybe, st.none() | st.floats(0.0, 20000.0))
def test_higher_utilization_never_gives_a_lower_target(
    config: dict[str, Any], current: int, a: float, b: float, memory: float | None, rate: float | None
) -> None:
    low, high = sorted((a, b))

    def target(utilization: float) -> int:
        fresh = AutoScaler(clock=FakeClock(), **config)
        metrics = ScalingMetrics(cpu_utilization=utilization, memory_utilization=memory, request_rate=rate)
        return fresh.get_scaling_decision(current, metrics).target_instances

    assert target(low) <= target(high)


class ReferenceHPA:
    """A plain port of the HPA controller's loops (horizontal.go), every recommendation and scale
    event kept in lists and filtered by time on each call: the engine's pruned, dominance-ordered
    deques must give the same counts."""

    def __init__(
        self, lo: int, hi: int, target: float, tolerance: float, up: ScalingRules, down: ScalingRules
    ):
        self.lo, self.hi, self.target, self.tolerance, self.up, self.down = (
            lo,
            hi,
            target,
            tolerance,
            up,
            down,
        )
        self.recommendations: list[tuple[float, int]] = []
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []

    def step(self, now: float, current: int, utilization: float) -> int:
        if current > self.hi or current < self.lo:
            desired = self.hi if current > self.hi else self.lo
        else:
            ratio = utilization / self.target
            if abs(ratio - 1.0) <= self.tolerance + 1e-9:
                proposal = current
            else:
                proposal = math.ceil(ratio * current - 1e-9)
            desired = self.rate(now, current, self.stabilize(now, current, proposal))
        if desired > current:
            self.up_events.append((now, desired - current))
        elif desired < current:
            self.down_events.append((now, current - desired))
        return desired

    def stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.up.stabilization_window_seconds
        down_cutoff = now - self.down.stabilization_window_seconds
        up_rec = down_rec = desired
        for t, r in self.recommendations:
            if t > up_cutoff:
                up_rec = min(r, up_rec)
            if t > down_cutoff:
                down_rec = max(r, down_rec)
        self.recommendations.append((now, desired))
        recommendation = current
        if recommendation < up_rec:
            recommendation = up_rec
        if recommendation > down_rec:
            recommendation = down_rec
        return recommendation

    def changes(self, events: list[tuple[float, int]], now: float, period: int) -> int:
        return sum(c for t, c in events if t > now - period)

    def limit(self, now: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for p in rules.policies:
            start = (
                current
                - self.changes(self.up_events, now, p.period_seconds)
                + self.changes(self.down_events, now, p.period_seconds)
            )
            if p.type == "Pods":
                proposals.append(start + p.value if up else start - p.value)
            elif up:
                proposals.append(math.ceil(Fraction(start) * (1 + Fraction(p.value, 100))))
            else:
                proposals.append(math.trunc(Fraction(start) * (1 - Fraction(p.value, 100))))
        # For scaling up, Max is the largest limit; for scaling down, the smallest.
        return (max if (rules.select_policy == "Max") == up else min)(proposals)

    def rate(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            allowed = min(max(self.limit(now, current, self.up, True), current), self.hi)
            return min(desired, allowed)
        if desired < current:
            allowed = max(min(self.limit(now, current, self.down, False), current), self.lo)
            return max(desired, allowed)
        return desired


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(0, 60), steps)
def test_the_engine_matches_a_plain_port_of_the_hpa_controller(
    config: dict[str, Any], start: int, series: list[tuple[float, int | None, Any, Any, Any]]
) -> None:
    config.update(memory_target=None, request_rate_target=None, cooldown=0.0)
    clock = FakeClock(0.0)
    s = AutoScaler(clock=clock, **config)
    reference = ReferenceHPA(
        config["min_instances"],
        config["max_instances"],
        config["cpu_target"],
        config["tolerance"],
        config["scale_up"],
        config["scale_down"],
    )
    current = start
    for dt, override, cpu_value, _, _ in series:
        clock.advance(dt)
        current = override if override is not None else current
        utilization = 0.5 if cpu_value is None else cpu_value
        d = s.get_scaling_decision(current, cpu(utilization))
        assert d.target_instances == reference.step(clock.now, current, utilization)
        current = d.target_instances


# --- simulate ---------------------------------------------------------------------------------------
def load_series() -> list[tuple[float, int | None, ScalingMetrics]]:
    cpus = [0.7, 0.95, 1.0, 0.6, 0.3, 0.3, 0.3, 0.72, 0.2, 0.2, 0.2, 0.9] * 3
    series: list[tuple[float, int | None, ScalingMetrics]] = [
        (15.0 * i, None, cpu(u, error_rate=0.01)) for i, u in enumerate(cpus)
    ]
    series[0] = (0.0, 4, series[0][2])
    series[10] = (150.0, 3, series[10][2])  # someone scaled it by hand
    return series


def test_simulate_gives_the_decisions_of_a_fresh_scaler_stepped_with_the_same_clock() -> None:
    live_clock = FakeClock(5.0)
    config: dict[str, Any] = {"cooldown": 20.0, "error_rate_target": 0.05, "scale_down": SHORT_DOWN_WINDOW}
    live = scaler(live_clock, **config)
    live.get_scaling_decision(9, cpu(0.2, error_rate=0.01))  # live state that must not leak in
    listened: list[ScalingDecision] = []
    live.add_listener(listened.append)

    timeline = live.simulate(load_series())

    clock = FakeClock()
    fresh = scaler(clock, **config)
    expected: list[ScalingDecision] = []
    previous = 0
    for timestamp, current, metrics in load_series():
        clock.now = timestamp
        d = fresh.get_scaling_decision(previous if current is None else current, metrics)
        expected.append(d)
        previous = d.target_instances
    assert timeline == expected
    assert len(timeline) == 36 and {d.action for d in timeline} == set(ACTIONS)
    assert [d.timestamp for d in timeline] == [15.0 * i for i in range(36)]
    assert timeline[1].current_instances == timeline[0].target_instances  # fed back
    # The live scaler is untouched: its history, windows, listeners and clock.
    assert len(live.get_history()) == 1 and listened == []
    # Its own cooldown (from its first decision, at the same instant) still holds it.
    assert live.get_scaling_decision(9, cpu(0.2, error_rate=0.01)).limited_by == "cooldown"


def test_simulate_starts_from_start_instances_and_rejects_bad_series() -> None:
    s = scaler()
    timeline = s.simulate([(0.0, None, cpu(0.9)), (15.0, None, cpu(0.9))], start_instances=5)
    assert [(d.current_instances, d.target_instances) for d in timeline] == [(5, 7), (7, 9)]
    assert s.simulate([]) == []
    with pytest.raises(ConfigError, match=r"series\[0\]: current_instances is None"):
        s.simulate([(0.0, None, cpu(0.9))])
    with pytest.raises(ConfigError, match=r"series\[1\]: timestamps must not decrease"):
        s.simulate([(10.0, 5, cpu(0.9)), (5.0, None, cpu(0.9))])
    with pytest.raises(ConfigError, match=r"series\[0\]"):
        s.simulate([(0.0, 5)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"series\[0\]: timestamp"):
        s.simulate([("soon", 5, cpu(0.9))])  # type: ignore[list-item]


# --- history and listeners --------------------------------------------------------------------------
def test_the_history_is_bounded_and_oldest_first() -> None:
    s = scaler(history_size=3)
    decisions = [s.get_scaling_decision(n, cpu(0.7)) for n in range(1, 6)]
    assert s.get_history() == decisions[-3:]


def test_a_failing_listener_is_logged_once_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    s = scaler()
    seen: list[ScalingDecision] = []

    def broken(decision: ScalingDecision) -> None:
        raise RuntimeError("listener bug")

    s.add_listener(broken)
    s.add_listener(seen.append)
    with caplog.at_level(logging.DEBUG, logger="amqadf_agent.scaling.autoscaler"):
        for _ in range(3):
            s.get_scaling_decision(5, cpu(0.7))
    assert len(seen) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "listener" in warnings[0].getMessage()
    assert s.remove_listener(broken) and not s.remove_listener(broken)
    s.get_scaling_decision(5, cpu(0.7))
    assert len(seen) == 4
    with pytest.raises(ConfigError, match="callback"):
        s.add_listener("not callable")  # type: ignore[arg-type]


# --- bad parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"min_instances": 0}, "min_instances"),
        ({"min_instances": -1}, "min_instances"),
        ({"min_instances": 1.5}, "min_instances"),
        ({"min_instances": 5, "max_instances": 4}, "max_instances"),
        ({"target_utilization": 0.0}, "target_utilization"),
        ({"target_utilization": 1.5}, "target_utilization"),
        ({"target_utilization": "70%"}, "target_utilization"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"tolerance": float("nan")}, "tolerance"),
        ({"cpu_target": 0.0}, "cpu_target"),
        ({"memory_target": 2.0}, "memory_target"),
        ({"request_rate_target": 0.0}, "request_rate_target"),
        ({"queue_depth_target": -5}, "queue_depth_target"),
        ({"response_time_p95_target": float("inf")}, "response_time_p95_target"),
        ({"error_rate_target": 1.5}, "error_rate_target"),
        ({"cpu_target": None, "memory_target": None}, "cpu_target"),
        ({"scale_up": {"policies": []}}, "scale_up"),
        ({"scale_down": None}, "scale_down"),
        ({"cooldown": -1.0}, "cooldown"),
        ({"history_size": 0}, "history_size"),
        ({"clock": 5}, "clock"),
    ],
)
def test_bad_parameters_are_rejected_by_name(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        AutoScaler(**kwargs)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: ScalingPolicy("Replicas", 1, 15), "ScalingPolicy.type"),  # type: ignore[arg-type]
        (lambda: ScalingPolicy("Pods", 0, 15), "ScalingPolicy.value"),
        (lambda: ScalingPolicy("Percent", 2.5, 15), "ScalingPolicy.value"),  # type: ignore[arg-type]
        (lambda: ScalingPolicy("Pods", 1, 0), "ScalingPolicy.period_seconds"),
        (lambda: ScalingPolicy("Pods", 1, 1801), "ScalingPolicy.period_seconds"),
        (lambda: ScalingRules(-1, DEFAULT_SCALE_UP.policies), "ScalingRules.stabilization_window_seconds"),
        (lambda: ScalingRules(3601, DEFAULT_SCALE_UP.policies), "ScalingRules.stabilization_window_seconds"),
        (lambda: ScalingRules(0, ()), "ScalingRules.policies"),
        (lambda: ScalingRules(0, ("Pods",)), "ScalingRules.policies[0]"),  # type: ignore[arg-type]
        (lambda: ScalingRules(0, DEFAULT_SCALE_UP.policies, "Fastest"), "ScalingRules.select_policy"),  # type: ignore[arg-type]
    ],
)
def test_bad_rules_are_rejected_by_name(build: Any, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.setting == setting


def test_bad_decision_arguments_are_rejected_by_name() -> None:
    s = scaler()
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match=r"^current_instances: "):
            s.get_scaling_decision(bad, cpu(0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^metrics: "):
        s.get_scaling_decision(3, {"cpu_utilization": 0.5})  # type: ignore[arg-type]
    assert s.get_history() == []


# --- the Kubernetes manifest --------------------------------------------------------------------------
def test_the_default_scaler_exports_the_default_hpa() -> None:
    manifest = AutoScaler(2, 10, 0.7).to_hpa_manifest("shop")
    assert manifest == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            },
        },
    }


def test_every_target_and_rule_reaches_the_manifest() -> None:
    s = AutoScaler(
        1,
        30,
        cpu_target=0.6,
        memory_target=None,
        request_rate_target=100.0,
        queue_depth_target=2.5,
        response_time_p95_target=0.25,
        error_rate_target=0.01,
        tolerance=0.05,
        scale_down=ScalingRules(600, (ScalingPolicy("Pods", 1, 60), ScalingPolicy("Percent", 10, 60)), "Min"),
        cooldown=120.0,
    )
    manifest = s.to_hpa_manifest(
        "shop-hpa",
        namespace="prod",
        target_name="shop",
        target_kind="StatefulSet",
        metric_names={"queue_depth": "jobs_waiting"},
    )
    assert json.loads(json.dumps(manifest)) == manifest  # plain data: kubectl apply -f takes the JSON
    assert manifest["metadata"]["namespace"] == "prod"
    assert manifest["metadata"]["annotations"] == {
        "amqadf-agent/not-in-hpa": "error_rate_target=0.01 (no scale-down above it); cooldown=120s"
    }
    spec = manifest["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "shop"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 30)
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "http_server_requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": "100"},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "jobs_waiting"},
                "target": {"type": "AverageValue", "averageValue": "2500m"},
            },
        },
        {
            "type": "External",
            "external": {
                "metric": {"name": "http_server_request_duration_p95_seconds"},
                "target": {"type": "Value", "value": "250m"},
            },
        },
    ]
    assert spec["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 600,
        "selectPolicy": "Min",
        "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60},
            {"type": "Percent", "value": 10, "periodSeconds": 60},
        ],
        "tolerance": "50m",
    }
    assert spec["behavior"]["scaleUp"]["tolerance"] == "50m"
    with pytest.raises(ConfigError, match=r"^metric_names: unknown key 'p99'"):
        s.to_hpa_manifest("x", metric_names={"p99": "latency"})
    with pytest.raises(ConfigError, match=r"^name: "):
        s.to_hpa_manifest("")


# --- the emitter ------------------------------------------------------------------------------------
def test_the_emitter_reports_the_contract_instruments() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clock = FakeClock(0.0)
    s = scaler(clock)
    telemetry = AutoScalerTelemetry(s, "shop", meter_provider=provider)
    s.get_scaling_decision(5, cpu(0.9))  # scale_up, none
    clock.now = 15.0
    s.get_scaling_decision(7, cpu(0.72))  # no_action, tolerance
    clock.now = 30.0
    s.get_scaling_decision(7, cpu(0.3))  # no_action, stabilization

    found = collect(reader)
    for inst in (semconv.SCALER_CURRENT, semconv.SCALER_DESIRED, semconv.SCALER_DECISIONS):
        assert found[inst.name].unit == inst.unit
        for attrs in points(found[inst.name]):
            assert {key for key, _ in attrs} == set(inst.attributes)
    name = (semconv.ATTR_SCALER_NAME, "shop")
    assert points(found[semconv.SCALER_CURRENT.name]) == {frozenset({name}): 7}
    assert points(found[semconv.SCALER_DESIRED.name]) == {frozenset({name}): 7}

    def key(action: str, limited_by: str) -> frozenset[tuple[str, Any]]:
        return frozenset(
            {name, (semconv.ATTR_SCALER_ACTION, action), (semconv.ATTR_SCALER_LIMITED_BY, limited_by)}
        )

    assert points(found[semconv.SCALER_DECISIONS.name]) == {
        key("scale_up", "none"): 1,
        key("no_action", "tolerance"): 1,
        key("no_action", "stabilization"): 1,
    }
    assert telemetry.counts() == {
        ("scale_up", "none"): 1,
        ("no_action", "tolerance"): 1,
        ("no_action", "stabilization"): 1,
    }

    telemetry.close()
    s.get_scaling_decision(7, cpu(0.3))
    assert sum(telemetry.counts().values()) == 3
    assert reader.get_metrics_data() is None  # closed: no point at all


def test_a_decision_that_changes_the_count_is_an_event_on_the_recording_span() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    s = scaler(FakeClock(0.0))
    instrument(s, "shop", meter_provider=MeterProvider())
    with tracer.start_as_current_span("reconcile"):
        s.get_scaling_decision(5, cpu(0.72))  # no change: no event
        s.get_scaling_decision(5, cpu(0.9))  # 5 → 7
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == semconv.EVENT_SCALING_DECISION
    assert dict(event.attributes or {}) == {
        semconv.ATTR_SCALER_NAME: "shop",
        semconv.ATTR_SCALER_ACTION: "scale_up",
        semconv.ATTR_SCALER_LIMITED_BY: "none",
        semconv.ATTR_SCALER_METRIC: "cpu_utilization",
        "amqadf.autoscaler.current": 5,
        "amqadf.autoscaler.target": 7,
        "amqadf.autoscaler.reason": "cpu_utilization at 1.29x its target recommends 7: 5 → 7",
    }
    # Outside any span: no event, and nothing raises.
    s.get_scaling_decision(7, cpu(1.0))
    assert len(exporter.get_finished_spans()) == 1


def test_with_a_tracer_a_change_outside_any_span_gets_its_own_span() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    s = scaler(FakeClock(0.0))
    AutoScalerTelemetry(s, "shop", meter_provider=MeterProvider(), tracer=tracer_provider.get_tracer("test"))
    s.get_scaling_decision(5, cpu(0.72))
    s.get_scaling_decision(5, cpu(0.9))
    (span,) = exporter.get_finished_spans()
    assert span.name == semconv.EVENT_SCALING_DECISION
    assert [e.name for e in span.events] == [semconv.EVENT_SCALING_DECISION]


def test_the_emitter_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"^name: "):
        AutoScalerTelemetry(scaler(), "", meter_provider=MeterProvider())
    with pytest.raises(ConfigError, match=r"^scaler: "):
        AutoScalerTelemetry(object(), "shop")  # type: ignore[arg-type]


# --- the wall -----------------------------------------------------------------------------------------
def test_importing_the_engine_loads_no_opentelemetry_and_no_psutil() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, amqadf_agent.scaling.autoscaler; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'psutil'))))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("engine_module", ["autoscaler.py", "hpa.py"])
def test_the_engine_imports_only_the_standard_library_and_the_errors(engine_module: str) -> None:
    # the engine and its manifest export: the analyzer imports them
    tree = ast.parse((ROOT / "amqadf_agent" / "scaling" / engine_module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            allowed = module in ("amqadf_agent.errors", "amqadf_agent.scaling.hpa")
            assert allowed or top in sys.stdlib_module_names, module
