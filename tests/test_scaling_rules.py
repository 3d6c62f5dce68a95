"""Scaling rules: a load ramp scales up, the CPU-only HPA differs when latency drives, joint reasoning."""

from __future__ import annotations

import dataclasses

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


def _spans_windows(p95s: list[float]) -> list[Window]:
    """Windows rebuilt from SERVER spans: 20 spans per 60 s window, all lasting its p95, except span 0
    of each window, which lasts twice as long (its id: ``f"{window:02d}" * 8``)."""
    from amqadf_agent.analyzer.model import SpanRecord
    from amqadf_agent.analyzer.windows import WindowAggregator

    agg = WindowAggregator(60)
    resource = {"service.name": "shop", "service.instance.id": "i-1"}
    for w, p95 in enumerate(p95s):
        for i in range(20):
            duration = p95 * (2 if i == 0 else 1)
            end = (1_700_000_040 + w * 60 + 30) * S + i * 1_000_000
            span_id = f"{w:02d}" * 8 if i == 0 else f"{w:02d}{i:014x}"
            agg.add(
                SpanRecord(f"{w:032x}", span_id, "", "GET /", 2, end - int(duration * S), end, 0, "",
                           {"http.response.status_code": 200}, (), resource, "t")
            )  # fmt: skip
    return agg.windows()


def test_scaling_findings_carry_the_slowest_server_spans_of_the_windows_that_drove_them() -> None:
    # GIVEN latency that rises in windows 1 and 2 (the scale-up windows)
    result = analyze_scaling(_spans_windows([0.1, 1.0, 1.5]), window_seconds=60)
    (up,) = result.recommendations
    assert up.rule == "scale_up" and up.evidence.numbers["scale_up_decisions"] == 2
    # THEN its examples are the slowest spans of those windows, slowest first, trace and span ids
    assert up.evidence.span_ids[:2] == ("02" * 8, "01" * 8)  # 3.0 s, 2.0 s
    assert len(up.evidence.span_ids) == 3 and up.evidence.span_ids[2].startswith("02")  # a 1.5 s one
    assert up.evidence.trace_ids == (f"{2:032x}", f"{1:032x}")
    assert up.to_dict()["evidence"]["span_ids"] == list(up.evidence.span_ids)
    # ... and never a span of the healthy window 0
    assert not any(s.startswith("00") for s in up.evidence.span_ids)

    # database_first: the slow windows' spans first, then the database findings' examples
    db = Recommendation(
        "database", "n_plus_one", "high", "N+1", "fix", "SELECT ? FROM t",
        Evidence({}, "", "", trace_ids=("dd" * 16,), span_ids=("ee" * 8,)), 0.9, impact_s=5.0,
    )  # fmt: skip
    joint = analyze_scaling(
        _spans_windows([0.1, 1.0, 1.5]), window_seconds=60, service="shop", database_findings=[db]
    )
    first = next(r for r in joint.recommendations if r.rule == "database_first")
    assert first.evidence.span_ids[:2] == ("02" * 8, "01" * 8) and first.evidence.span_ids[-1] == "ee" * 8
    assert "dd" * 16 in first.evidence.trace_ids

    # scale_down: the over-provisioned windows' spans
    down = analyze_scaling(
        [
            dataclasses.replace(
                w,
                instances=6,
                metrics=dataclasses.replace(
                    w.metrics, cpu_utilization=0.1, memory_utilization=0.1, queue_depth=0.0
                ),
            )
            for w in _spans_windows([0.05] * 8)
        ],
        window_seconds=60,
    )
    (shrink,) = down.recommendations
    assert shrink.rule == "scale_down" and len(shrink.evidence.span_ids) == 3
    assert set(shrink.evidence.span_ids) <= {f"{w:02d}" * 8 for w in range(8)} | {
        f"{w:02d}{i:014x}" for w in range(8) for i in range(20)
    }


def test_scaling_findings_from_metrics_only_have_no_example_ids() -> None:
    # Control: windows rebuilt from metrics (no SERVER spans) give no ids to cite.
    (up,) = analyze_scaling(windows([0.5, 0.9, 1.0], [0.1, 0.1, 0.1]), window_seconds=60).recommendations
    assert up.rule == "scale_up" and up.evidence.trace_ids == () and up.evidence.span_ids == ()


def test_confidence_is_lower_with_few_windows_and_none_below_the_minimum() -> None:
    # GIVEN the same CPU overload seen over 2 and over 12 windows
    few = analyze_scaling(windows([0.95] * 2, [0.1] * 2), window_seconds=60).recommendations
    many = analyze_scaling(windows([0.95] * 12, [0.1] * 12), window_seconds=60).recommendations
    assert [r.rule for r in few] == [r.rule for r in many] == ["scale_up"]
    assert few[0].confidence == 0.4 and many[0].confidence == 0.9  # 0.3 + 0.05 per window, at most 0.95
    # THEN below min_windows (2): a timeline, no recommendation at all
    one = analyze_scaling(windows([0.95], [0.1]), window_seconds=60)
    assert one.recommendations == () and one.to_json()["timeline"][0]["action"] == "scale_up"


def test_a_single_slow_request_gives_no_scaling_decision(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from support.otlp_spans import SERVER, Span, write_spans

    from amqadf_agent.analyzer.report import report_data
    from amqadf_agent.analyzer.run import AnalysisOptions, analyze

    t0 = 1_767_000_000 * S
    one = Span("a" * 32, "b" * 16, "", "GET /", SERVER, t0, t0 + S, {"http.route": "/"})
    report = report_data(analyze(AnalysisOptions(paths=(write_spans(tmp_path / "t.jsonl", [one]),))))
    scaling = report["scaling"]
    assert scaling["recommendation"] is None
    assert [r for r in report["recommendations"] if r["category"] == "scaling"] == []
    floor = scaling["insufficient_data"]
    assert floor["requests"] == 1 and floor["min_requests"] == 20 and floor["min_windows"] == 2
    assert "needs at least 2 windows and 20 requests" in floor["reason"]


def test_too_few_requests_over_many_windows_gives_no_decision() -> None:
    few = [dataclasses.replace(w, requests=3) for w in windows([0.9, 1.0, 1.0], [2.0, 2.0, 2.0])]
    result = analyze_scaling(few, window_seconds=60)
    assert result.recommendations == () and result.to_json()["recommendation"] is None
    assert result.insufficient_data is not None and result.insufficient_data["requests"] == 9
    enough = [dataclasses.replace(w, requests=7) for w in few]  # 21 requests: over the floor
    result = analyze_scaling(enough, window_seconds=60)
    assert [r.rule for r in result.recommendations] == ["scale_up"] and result.insufficient_data is None
    up = result.recommendations[0].evidence
    assert up.numbers["requests"] == 21 and "data floor: >= 2 windows, >= 20 requests" in up.threshold


def test_the_reports_say_why_there_is_no_decision(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from support.otlp_spans import SERVER, Span, write_spans

    from amqadf_agent.analyzer.report import write_report
    from amqadf_agent.analyzer.run import AnalysisOptions, analyze

    t0 = 1_767_000_000 * S
    one = Span("a" * 32, "b" * 16, "", "GET /", SERVER, t0, t0 + S, {"http.route": "/"})
    analysis = analyze(AnalysisOptions(paths=(write_spans(tmp_path / "t.jsonl", [one]),)))
    text, markdown = io.StringIO(), io.StringIO()
    write_report(analysis, "text", text)
    write_report(analysis, "markdown", markdown)
    assert "  no decision: 1 window(s) and 1 request(s): a scaling decision needs" in text.getvalue()
    assert "**No scaling decision:** 1 window(s) and 1 request(s)" in markdown.getvalue()
