"""Scaling rules: a load ramp scales up, the CPU-only HPA differs when latency drives, joint reasoning."""

from __future__ import annotations

from amqadf_agent.analyzer.recommendation import Evidence, Recommendation
from amqadf_agent.analyzer.rules.scaling import analyze_scaling
from amqadf_agent.analyzer.windows import Window
from amqadf_agent.scaling.autoscaler import ScalingMetrics

S = 1_000_000_000


def windows(cpus: list[float], p95s: list[float]) -> list[Window]:
    return [
        Window(
            i * 60 * S,
            (i + 1) * 60 * S,
            2,
            100,
            0,
            "spans",
            60.0,
            ScalingMetrics(cpu_utilization=c, response_time_p95=p, error_rate=0.0),
        )
        for i, (c, p) in enumerate(zip(cpus, p95s, strict=True))
    ]


def db_finding(rule: str, service: str | None = None) -> Recommendation:
    evidence = Evidence({"service": service} if service else {}, "", "")
    return Recommendation(
        "database", rule, "high", "N+1", "fix", "SELECT ? FROM t", evidence, 0.9, impact_s=5.0
    )


def test_cpu_ramp_scales_up_like_the_cpu_only_hpa() -> None:
    result = analyze_scaling(windows([0.5, 0.9, 1.0], [0.1, 0.1, 0.1]), window_seconds=60)
    data = result.to_json()
    actions = [step["action"] for step in data["timeline"]]
    assert actions[1:] == ["scale_up", "scale_up"]
    assert [s["target"] for s in data["timeline"]] == [s["cpu_only_target"] for s in data["timeline"]]
    assert data["recommendation"]["action"] == "scale_up"
    assert [r.rule for r in result.recommendations] == ["scale_up"]
    assert data["timeline"][0]["time"] == "1970-01-01T00:00:00.000Z"


def test_latency_drives_where_the_cpu_only_hpa_stays() -> None:
    result = analyze_scaling(windows([0.3, 0.3, 0.3], [0.2, 1.0, 1.5]), window_seconds=60)
    timeline = result.to_json()["timeline"]
    assert [s["target"] for s in timeline] == [2, 4, 6]
    assert [s["cpu_only_target"] for s in timeline] == [1, 1, 1]  # plain HPA would scale down on CPU
    up = result.recommendations[0]
    assert up.rule == "scale_up" and up.evidence.numbers["limiting_metric"] == "response_time_p95"


def test_database_first_when_latency_is_high_and_an_n_plus_one_exists() -> None:
    result = analyze_scaling(
        windows([0.3, 0.3, 0.3], [0.2, 1.0, 1.5]), window_seconds=60, service="shop",
        database_findings=[db_finding("n_plus_one"), db_finding("select_star")],
    )  # fmt: skip
    ranked = sorted(result.recommendations, key=Recommendation.sort_key)
    assert [r.rule for r in ranked] == ["database_first", "scale_up"]
    assert ranked[0].evidence.numbers["database_findings"] == 1
    assert "after the database fixes" in ranked[1].action


def test_database_first_names_the_service_of_each_finding() -> None:
    result = analyze_scaling(
        windows([0.3, 0.3, 0.3], [0.2, 1.0, 1.5]), window_seconds=60, service="shop",
        database_findings=[db_finding("n_plus_one", "shop")],
    )  # fmt: skip
    first = next(r for r in result.recommendations if r.rule == "database_first")
    assert "n_plus_one in shop: SELECT ? FROM t" in first.action


def test_no_joint_reasoning_when_latency_is_fine_or_db_is_elsewhere() -> None:
    healthy = analyze_scaling(
        windows([0.7, 0.7, 0.7], [0.1, 0.1, 0.1]),
        window_seconds=60,
        database_findings=[db_finding("n_plus_one")],
    )
    assert healthy.recommendations == ()
    elsewhere = analyze_scaling(
        windows([0.3, 0.3], [1.0, 1.5]), window_seconds=60,
        database_findings=[db_finding("n_plus_one")], db_services={"a", "b"},
    )  # fmt: skip
    assert [r.rule for r in elsewhere.recommendations] == ["scale_up"]


def test_too_little_data_gives_a_timeline_but_no_recommendation() -> None:
    result = analyze_scaling(windows([0.95], [0.1]), window_seconds=60)
    assert len(result.to_json()["timeline"]) == 1 and result.recommendations == ()
    assert analyze_scaling([], window_seconds=60).to_json()["recommendation"] is None
