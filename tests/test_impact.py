"""What each fix is worth: exact numbers on made-up spans, then a real app run before and after its fix."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.postgres_server import PostgresServer

from amqadf_agent.analyzer import impact as impact_module
from amqadf_agent.analyzer.impact import ImpactFeed, estimate, ranked
from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.recommendation import Evidence, Recommendation
from amqadf_agent.analyzer.rules.database import DatabaseRules
from amqadf_agent.analyzer.windows import Window
from amqadf_agent.cli.analyze import main as analyze_main
from amqadf_agent.cli.analyze import parse_time
from amqadf_agent.scaling.autoscaler import ScalingMetrics

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
import orders_app  # noqa: E402

RESOURCE = {"service.name": "shop"}
#: The unit tests' database: one without a measured share of its own, so a batch is priced at the
#: middle share (``impact.BATCH_TURN_PER_ID``); SQLite's and PostgreSQL's are checked apart.
DB = "mysql"
LOOP = "SELECT sku FROM order_items WHERE order_id = ?"
MS = 1_000_000


def _span(
    trace: int, span: int, parent: int, kind: int, start_ms: float, end_ms: float, **attrs: object
) -> SpanRecord:
    return SpanRecord(
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        parent_span_id=f"{parent:016x}" if parent else "",
        name="GET /orders" if kind == SPAN_KIND_SERVER else "SELECT",
        kind=kind,
        start_ns=int(start_ms * MS),
        end_ns=int(end_ms * MS),
        status_code=0,
        status_message="",
        attributes=attrs,  # type: ignore[arg-type]
        events=(),
        resource=RESOURCE,
        scope_name="test",
    )


def _request(trace: int, start_ms: float, loop_calls: int, route: str = "/orders") -> list[SpanRecord]:
    """A request of 100 ms: 10 ms of work, then ``loop_calls`` calls of 3 ms with 1 ms between them."""
    spans = [_span(trace, 1, 0, SPAN_KIND_SERVER, start_ms, start_ms + 100, **{"http.route": route})]
    for i in range(loop_calls):
        at = start_ms + 10 + 4 * i
        db = {"db.system": DB, "db.statement": LOOP}
        spans.append(_span(trace, 2 + i, 1, SPAN_KIND_CLIENT, at, at + 3, **db))
    return spans


def _feed_and_findings(spans: list[SpanRecord]) -> tuple[ImpactFeed, list[Recommendation]]:
    rules = DatabaseRules()
    feed = ImpactFeed(rules)
    for span in spans:
        feed.add(span)
        if span.kind == SPAN_KIND_CLIENT:
            rules.add_span(span)
    return feed, rules.recommendations()  # hands each trace's calls to the feed


def test_n_plus_one_saving_is_the_loop_but_one_turn() -> None:
    # GIVEN 20 requests to /orders with a loop of 20 calls (79 ms from the first start to the last end)
    # and 20 to /health without a database
    spans = [s for t in range(20) for s in _request(t + 1, t * 1000, 20)]
    spans += [s for t in range(20) for s in _request(t + 100, t * 1000 + 500, 0, "/health")]
    feed, found = _feed_and_findings(spans)
    # WHEN the fix is priced
    [n1] = estimate(feed, found)
    # THEN each /orders request saves 79 - 79/20 * (1 + 0.04 * 19) = 72.048 ms (the batched query
    # costs one turn and 4% of a turn for each further id), and only /orders is named
    assert n1.rule == "n_plus_one"
    assert n1.requests_affected == 20
    assert n1.saved_s == pytest.approx(20 * 0.072048)
    [route] = n1.routes
    assert (route.route, route.requests) == ("/orders", 20)
    assert route.p95_before_s == pytest.approx(0.1)
    assert route.p95_after_s == pytest.approx(0.1 - 0.072048)
    assert route.saved_median_s == pytest.approx(0.072048)
    assert "loop_ms - loop_ms / n * (1 + 0.04 * (n - 1))" in n1.formula
    assert n1.evidence["batch_turns_per_id"] == 0.04
    assert n1.peak_instances_before is None  # no timeline given
    data = n1.to_dict()
    assert data["saved_ms_per_affected_request"] == pytest.approx(72.048, abs=0.001)
    assert data["routes"][0]["p95_after_ms"] == pytest.approx(27.952, abs=0.001)


def _stalled_request(trace: int, start_ms: float, stall_at: int) -> list[SpanRecord]:
    """A request of 10 ms of work, a loop of 100 turns of 1 ms (calls of 0.5 ms), one of them 40 ms
    longer (the process kept off the CPU), then 10 ms of work."""
    end_ms = start_ms + 10 + 100 + 40 + 10
    spans = [_span(trace, 1, 0, SPAN_KIND_SERVER, start_ms, end_ms, **{"http.route": "/orders"})]
    at = start_ms + 10
    for i in range(100):
        db = {"db.system": DB, "db.statement": LOOP}
        spans.append(_span(trace, 2 + i, 1, SPAN_KIND_CLIENT, at, at + 0.5, **db))
        at += 41 if i == stall_at else 1
    return spans


def test_p95_after_an_n_plus_one_fix_keeps_the_interruptions_a_short_request_meets() -> None:
    # GIVEN 20 requests whose loop of 100 turns was once kept 40 ms off the CPU, at another turn each
    spans = [s for t in range(20) for s in _stalled_request(t + 1, t * 1000, 5 * t + 2)]
    feed, found = _feed_and_findings(spans)
    # WHEN the fix is priced
    [n1] = estimate(feed, found)
    [route] = n1.routes
    # THEN the median request after it is its time less its saving: 20 ms of work and the batch, one
    # turn and 4% of a turn for each further id (4.96 turns of 1.395 ms a turn on average)
    after = 0.16 - (0.1395 - 0.1395 / 100 * (1 + 0.04 * 99))
    assert route.saved_median_s == pytest.approx(0.16 - after)
    # AND its p95 is that of stretches of the loops as long as that (26 turns of 1 ms): more than 5%
    # of them hold the interruption, whole, as a fixed request would meet it; each request less its
    # saving, all alike, would say 27.4 ms
    assert after == pytest.approx(0.0274192, abs=1e-6)
    assert route.p95_after_s == pytest.approx(after + 0.04)
    assert n1.evidence["p95_after"] == (
        "/orders: stretches of 27.4 turns of 20 requests' loops, at every position (the median request "
        "after the fix, 27.4 ms, at the loops' pace)"
    )


def test_two_loops_are_each_priced_from_their_own_turns() -> None:
    # GIVEN the stalled loop on /orders and, on /products, a loop of another statement stalled elsewhere
    spans = [s for t in range(20) for s in _stalled_request(t + 1, t * 1000, 5 * t + 2)]
    other = {"db.system": DB, "db.statement": "SELECT name FROM products WHERE id = ?"}
    for t in range(20):
        trace, start = 100 + t, 50_000 + t * 1000
        spans.append(_span(trace, 1, 0, SPAN_KIND_SERVER, start, start + 200, **{"http.route": "/products"}))
        at = start + 10
        for i in range(120):
            spans.append(_span(trace, 2 + i, 1, SPAN_KIND_CLIENT, at, at + 0.5, **other))
            at += 60 if i == 3 * t + 1 else 1
    feed, found = _feed_and_findings(spans)
    loops = [r for r in found if r.rule == "n_plus_one"]
    assert len(loops) == 2
    # WHEN both fixes are priced together, and each alone
    together = {e.fingerprint: e for e in estimate(feed, loops)}
    alone = {e.fingerprint: e for r in loops for e in estimate(feed, [r])}
    # THEN each is priced from the starts of its own calls, as it is alone
    assert together.keys() == alone.keys() and len(together) == 2
    for fingerprint, priced in together.items():
        assert priced.evidence["p95_after"].startswith(f"{priced.routes[0].route}: stretches of ")
        assert priced.routes == alone[fingerprint].routes
        assert priced.evidence == alone[fingerprint].evidence
    assert len({e.routes[0].p95_after_s for e in together.values()}) == 2


@pytest.mark.parametrize(("system", "per_id"), [("sqlite", 0.026), ("postgresql", 0.047), (DB, 0.04)])
def test_a_batch_is_priced_at_its_databases_share_of_a_turn(system: str, per_id: float) -> None:
    spans = [s for t in range(20) for s in _request(t + 1, t * 1000, 20)]
    spans = [
        replace(s, attributes={**s.attributes, "db.system": system}) if s.kind == SPAN_KIND_CLIENT else s
        for s in spans
    ]
    feed, found = _feed_and_findings(spans)
    [n1] = estimate(feed, found)
    assert n1.evidence["batch_turns_per_id"] == per_id
    assert f"(1 + {per_id} * (n - 1))" in n1.formula
    assert n1.saved_s == pytest.approx(20 * (0.079 - 0.079 / 20 * (1 + per_id * 19)))


def test_without_the_call_starts_the_p95_after_is_each_request_less_its_saving() -> None:
    spans = [s for t in range(20) for s in _stalled_request(t + 1, t * 1000, 5 * t + 2)]
    rules = DatabaseRules()
    feed = ImpactFeed(rules)
    feed.max_call_starts = 0  # none kept (beyond its bound)
    for span in spans:
        feed.add(span)
        if span.kind == SPAN_KIND_CLIENT:
            rules.add_span(span)
    [n1] = estimate(feed, rules.recommendations())
    assert n1.routes[0].p95_after_s == pytest.approx(0.0274192, abs=1e-6)
    assert n1.evidence["p95_after"] == "each request at its time less its saving (no loop's call starts kept)"


def test_findings_are_ranked_by_what_their_fix_saves() -> None:
    spans = [s for t in range(20) for s in _request(t + 1, t * 1000, 20)]
    feed, found = _feed_and_findings(spans)
    big = Recommendation(
        "cache", "low_hit_ratio", "low", "A cache", "Fix it", "c", Evidence({}, "f", "t"), 0.5, impact_s=1.0
    )
    estimates = estimate(feed, [*found, big])
    order = ranked([big, *found], estimates)
    # The N+1 was worth its total time (1.2 s of calls) before; now 1.44 s saved puts it first.
    assert [r.rule for r in order][:2] == ["n_plus_one", "low_hit_ratio"]
    assert order[0].impact_s == pytest.approx(20 * 0.072048)


def _window(index: int, p95_s: float) -> Window:
    metrics = ScalingMetrics(cpu_utilization=0.3, request_rate=10.0, response_time_p95=p95_s)
    start = index * 10_000 * MS
    return Window(start, start + 10_000 * MS, 2, 10.0, 0.0, "spans", 10.0, metrics)


def test_scaling_replay_counts_the_instances_the_fix_saves() -> None:
    # GIVEN windows whose p95 (100 ms) is over a 50 ms target: the scaler wants more instances
    from amqadf_agent.analyzer.rules.scaling import ScalingRuleConfig

    spans = [s for t in range(20) for s in _request(t + 1, t * 1000, 20)]
    feed, found = _feed_and_findings(spans)
    windows = [_window(i, 0.1) for i in range(2)]
    config = ScalingRuleConfig(p95_target_s=0.05)
    [n1] = estimate(feed, found, windows=windows, scaling=config)
    # THEN with the loop gone (p95 28 ms) two instances meet the target again
    assert n1.peak_instances_before is not None and n1.peak_instances_after is not None
    assert n1.peak_instances_before > 2
    assert n1.peak_instances_after == 2
    assert n1.to_dict()["instances"]["saved"] == n1.peak_instances_before - 2


def _run(out: Path, dsn: str) -> str:
    """Serve the app's series; the moment the measured ones start (after the warm-up), ISO 8601."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    argv = [str(out), dsn, str(REQUESTS), str(WARMUP), str(BATCHED)]
    done = subprocess.run(
        [sys.executable, str(APPS / "orders_app.py"), *argv],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.rsplit("measured from ", 1)[1].strip()


def _durations(path: Path, route: str, since: str) -> list[float]:
    since_ns = parse_time(since)
    return sorted(
        (r.end_ns - r.start_ns) / 1e9
        for r in read([path])
        if type(r) is SpanRecord
        and r.kind == SPAN_KIND_SERVER
        and r.end_ns >= since_ns
        and r.attributes.get("http.route") == route
    )


def _median(values: list[float]) -> float:
    return values[len(values) // 2]


def _p95(values: list[float]) -> float:
    return values[math.ceil(0.95 * len(values)) - 1]


@pytest.fixture(params=["sqlite", "postgresql"])
def orders_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(DSN for the app, DSN for --explain) of a seeded shop; the PostgreSQL one with a password
    (the loopback server trusts any) that must never show."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        orders_app.seed(f"sqlite:///{path}")
        yield f"sqlite:///{path}", str(path)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    assert server.has_hypopg, "hypopg is missing: apt-get install -y postgresql-15-hypopg"
    dsn = server.create_database("orders_app")
    server.psql("CREATE EXTENSION hypopg", "orders_app")
    orders_app.seed(dsn)
    yield dsn, dsn.replace("postgres@", "postgres:s3cret-pw@")


#: Series of requests measured (each asks every route but /orders/batched once), the series served
#: before them (not analysed), and the requests to /orders/batched (the N+1 fixed) spread among them:
#: cheap beside the N+1's, so many, for a p95 that is not a few outliers (of 80, the p95 of one half
#: of a run's was up to three times the other half's on the shared 2-core machine).
REQUESTS = 40
WARMUP = 3
BATCHED = 240


def test_orders_app_index_verdicts_and_n_plus_one_saving(orders_db: tuple[str, str], tmp_path: Path) -> None:
    app_dsn, explain_dsn = orders_db
    # GIVEN the app run with its N+1 and, beside it, the fix, analyzed with the planner's verdicts
    since = _run(tmp_path / "run", app_dsn)
    report = tmp_path / "report.json"
    argv = [str(tmp_path / "run"), "--slow-query-ms", "0.05", "--since", since, "--explain", explain_dsn]
    argv += ["--format", "json"]
    assert analyze_main([*argv, "-o", str(report)]) == 0
    text = report.read_text()
    assert "s3cret-pw" not in text
    data = json.loads(text)
    candidates = {
        r["evidence"]["numbers"]["columns"]: r["evidence"]["numbers"]
        for r in data["recommendations"]
        if r["rule"] == "index_candidate" and r["evidence"]["numbers"]["table"] == "orders"
    }
    # THEN the index that helps is verified with its cost drop and statement; the other is not
    assert candidates["customer_id"]["verdict"] == "verified", candidates["customer_id"]["verdict_reason"]
    assert candidates["customer_id"]["cost_drop_pct"] >= 50
    assert "CREATE INDEX" in candidates["customer_id"]["create_index"]
    assert candidates["status"]["verdict"] == "not suggested"
    # AND the fixes are ranked by what they save; the N+1 is priced on /orders only (not /health)
    estimates = data["impact"]["estimates"]
    # (which of the N+1 and the index is worth more depends on this machine's timing: not asserted)
    assert [e["saved_ms"] for e in estimates] == sorted((e["saved_ms"] for e in estimates), reverse=True)
    [n1] = [e for e in estimates if e["rule"] == "n_plus_one"]
    [route] = n1["routes"]
    assert route["route"] == "/orders"
    assert all(r["route"] != "/health" for e in estimates for r in e["routes"])
    # AND an index on SQLite is priced as a lower bound (a statement's span ends at its first row)
    indexes = [e for e in estimates if e["rule"] == "index_candidate"]
    assert indexes
    on_sqlite = app_dsn.startswith("sqlite")
    assert all(("observed_time" in e["evidence"]) == on_sqlite for e in indexes), indexes
    assert all(("lower bound" in " ".join(e["assumptions"])) == on_sqlite for e in indexes), indexes

    # AND the text report says what the fix is worth
    assert analyze_main([*argv[:-2], "-o", str(tmp_path / "report.txt")]) == 0
    shown = (tmp_path / "report.txt").read_text()
    assert "What the fixes are worth" in shown and "/orders: p95 " in shown
    assert "s3cret-pw" not in shown
    # AND so do the Markdown and HTML reports, with the planner's verdict in the index's block
    for fmt in ("markdown", "html"):
        target = tmp_path / f"report.{fmt}"
        assert analyze_main([*argv[:-1], fmt, "-o", str(target)]) == 0
        page = target.read_text()
        assert "What the fixes are worth" in page and "/orders: " in page, fmt
        assert "Planner:" in page and "verified: " in page and "CREATE INDEX" in page, fmt
        assert "s3cret-pw" not in page

    # WHEN the fix (one IN query: /orders/batched, served in the same run) is measured
    before = _durations(tmp_path / "run", "/orders", since)
    after = _durations(tmp_path / "run", "/orders/batched", since)
    assert (len(before), len(after)) == (REQUESTS, BATCHED)
    measured = _median(before) - _median(after)
    predicted = route["saved_median_ms"] / 1000
    # THEN the predicted saving is within 30% of the measured one
    figures = (predicted, measured, _p95(after), route, n1["evidence"])
    assert measured > 0
    assert _within(predicted, measured, 0.3), figures
    # AND the predicted p95 of the route after the fix, from stretches of the loops as long as a fixed
    # request (each request less its saving gave 18-45% less than measured: a loop spreads over hundreds
    # of turns the interruptions that a request a few turns long meets whole), is within 30% of the
    # fixed route's measured p95. That p95, of 240 requests on a busy machine, is a measurement with an
    # error of its own (docs/analyzer.md: 1 run in 20 or so misses, on a few of its requests, e.g. the
    # garbage collector's full collections falling in them): when the first run misses, the app serves its
    # series once more and that run must be within 30%. A model gone wrong (the batched query at one
    # turn, or at the loop's whole time) misses both.
    assert n1["evidence"]["p95_after"].startswith("/orders: stretches of "), figures
    runs = [(route["p95_after_ms"], _p95(after) * 1e3)]
    if not _within(*runs[0], 0.3):
        again = tmp_path / "again"
        since_again = _run(again, app_dsn)
        runs.append(_p95_predicted_and_measured(again, since_again, tmp_path / "again.json"))
    shown_runs = ", ".join(f"predicted {p:.1f} ms, measured {m:.1f} ms" for p, m in runs)
    print(f"\np95 of the fixed route: {shown_runs}")
    assert _within(*runs[-1], 0.3), (runs, figures)


def _within(predicted: float, measured: float, share: float) -> bool:
    return abs(predicted - measured) <= share * measured


def _p95_predicted_and_measured(run: Path, since: str, report: Path) -> tuple[float, float]:
    """(predicted, measured) p95 of the fixed route in ms, for a run of the orders app."""
    argv = [str(run), "--slow-query-ms", "0.05", "--since", since, "--format", "json", "-o", str(report)]
    assert analyze_main(argv) == 0
    [n1] = [e for e in json.loads(report.read_text())["impact"]["estimates"] if e["rule"] == "n_plus_one"]
    after = _durations(run, "/orders/batched", since)
    assert len(after) == BATCHED
    return n1["routes"][0]["p95_after_ms"], _p95(after) * 1e3


def test_memory_is_bounded() -> None:
    rules = DatabaseRules()
    feed = ImpactFeed(rules, max_requests=3)
    for trace in range(20):
        for span in _request(trace + 1, trace * 1000, 5):
            feed.add(span)
            rules.add_span(span)
    rules.recommendations()
    assert (len(feed.requests), feed.dropped) == (3, 17)
    # 5 (request, statement) pairs a request kept: 15 traces' calls, the other 5 traces' 25 calls dropped
    assert (feed.call_rows, feed.dropped_calls) == (15, 5 * 5)


def test_times_beyond_64_bits_do_not_break_the_feed() -> None:
    huge = 2**64 + 5  # odd input that the reader lets through: kept in range, never an error
    spans = [s for t in range(6) for s in _request(t + 1, t * 1000, 6)]
    for span in spans[:7]:
        span.end_ns = huge
    feed, found = _feed_and_findings(spans)
    assert estimate(feed, found)  # priced, not crashed


def test_call_shape_savings_are_bounded_and_only_real_ones_are_kept() -> None:
    feed = ImpactFeed(DatabaseRules(), max_requests=1)  # room for 5 (request, finding) savings
    for trace in range(7):
        feed.add_saving("serialized_calls", "GET a | GET b", f"{trace:032x}", "shop", 0.1)
    feed.add_saving("serialized_calls", "GET a | GET b", f"{0:032x}", "shop", 0.05)  # same request: added
    for odd in (0.0, -1.0, math.nan, math.inf):
        feed.add_saving("n_plus_one_http", "GET c", f"{1:032x}", "shop", odd)
    saved = feed.savings_of("serialized_calls", "GET a | GET b")
    assert len(saved) == 5 and feed.dropped_calls == 2
    assert saved[f"{0:032x}\0shop"] == pytest.approx(0.15)
    assert feed.savings_of("n_plus_one_http", "GET c") == {}


def test_only_the_findings_with_most_time_at_stake_are_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN two N+1 loops: 20 calls a request on /orders, 8 on /products (less time at stake)
    spans = [s for t in range(20) for s in _request(t + 1, t * 1000, 20)]
    other = {"db.system": DB, "db.statement": "SELECT name FROM products WHERE id = ?"}
    for t in range(20):
        trace, start = 100 + t, 50_000 + t * 1000
        spans.append(_span(trace, 1, 0, SPAN_KIND_SERVER, start, start + 100, **{"http.route": "/products"}))
        for i in range(8):
            at = start + 10 + 8 * i
            spans.append(_span(trace, 2 + i, 1, SPAN_KIND_CLIENT, at, at + 7, **other))
    feed, found = _feed_and_findings(spans)
    loops = [r for r in found if r.rule == "n_plus_one"]
    assert len(loops) == 2
    # WHEN at most one finding may be priced
    monkeypatch.setattr(impact_module, "MAX_PRICED", 1)
    # THEN the one with most time at stake is, whatever the order the findings come in
    for order in (loops, loops[::-1]):
        [priced] = estimate(feed, order)
        assert priced.routes[0].route == "/orders"
