"""Span names, span events and ``db.query.summary``: the rest of what leaves private by default.

Today's OpenTelemetry instrumentations name a db span after the statement's first word; older ones
(and applications calling ``tracer.start_as_current_span(sql)`` or ``(url)``) put the whole text in
the name. The processor sanitizes a name that is a statement with literals or that holds a URL with
a user info or a query, the attributes of every span event, and gives a db span without one a
``db.query.summary`` derived from its sanitized statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.sanitizing import sanitizing_provider

from amqadf_agent import semconv, statements
from amqadf_agent.redaction import REDACTED
from amqadf_agent.runtime import sanitize as sanitize_module
from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor, sanitize_name

SUMMARY = semconv.ATTR_DB_QUERY_SUMMARY
SANITIZED = semconv.ATTR_DB_QUERY_SANITIZED
DIGEST = semconv.ATTR_DB_QUERY_VALUES_DIGEST
EMAIL = "ann.secret@example.com"


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = sanitizing_provider(redact_attributes=["user.email"])
    yield provider, exporter
    provider.shutdown()


def _one(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    exporter.clear()
    return span


# -- span names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "exported"),
    [
        (f"SELECT * FROM users WHERE email = '{EMAIL}'", "SELECT * FROM users WHERE email = ?"),
        ("select id from cards where pan = 4111111111111111", "select id from cards where pan = ?"),
        ("UPDATE users SET pin = '1234' WHERE id = 7", "UPDATE users SET pin = ? WHERE id = ?"),
        ("\n    Delete FROM t WHERE a = 'x'\n", "\n    Delete FROM t WHERE a = ?\n"),  # as written in code
        (
            "GET https://ann:hunter2@api.example.com/v1?sig=abc123&page=2",
            f"GET https://ann:{REDACTED}@api.example.com/v1?sig={REDACTED}&page={REDACTED}",
        ),
        (
            "https://bucket.example.com/r.pdf?X-Amz-Signature=abc",
            f"https://bucket.example.com/r.pdf?X-Amz-Signature={REDACTED}",
        ),
        ("GET /search?token=t0k", f"GET /search?token={REDACTED}"),
    ],
)
def test_a_name_with_a_statements_literals_or_a_urls_secrets_leaves_without_them(
    traced: tuple[TracerProvider, InMemorySpanExporter], name: str, exported: str
) -> None:
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span(name):
        pass
    assert _one(exporter).name == exported


@pytest.mark.parametrize(
    "name",
    [
        "SELECT",  # the DB-API instrumentations' name: the statement's first word
        "SELECT orders",  # the stable conventions' name: the query summary
        "SELECT shop2",  # a database named with a digit: no literal in it
        "SELECT id FROM users WHERE id = ?",  # a statement without literals
        "GET /orders/{id}",
        "DELETE /users/7",  # an HTTP method and a path, not a statement
        "HTTP GET",
        "GET https://api.example.com/v1/orders",
        "process 42 jobs",
    ],
)
def test_other_names_are_left_as_they_are(name: str) -> None:
    assert sanitize_name(name) is name


def test_a_name_seen_before_leaves_as_it_did_the_first_time(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    secret = f"SELECT * FROM users WHERE email = '{EMAIL}'"
    for name, exported in [(secret, "SELECT * FROM users WHERE email = ?"), ("GET /orders", "GET /orders")]:
        for _ in range(2):  # the second one from the name memo
            with provider.get_tracer("app").start_as_current_span(name):
                pass
            assert _one(exporter).name == exported
        assert sanitize_module._name_memo[name] == exported


def test_the_name_memo_is_bounded_and_skips_long_names(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    for n in range(sanitize_module.NAME_MEMO_MAX_ENTRIES + 10):
        tracer.start_span(f"job {n}").end()
    assert 0 < len(sanitize_module._name_memo) <= sanitize_module.NAME_MEMO_MAX_ENTRIES
    long_name = "SELECT a FROM t WHERE id = 7 AND b = '" + "x" * sanitize_module.NAME_MEMO_MAX_CHARS + "'"
    tracer.start_span(long_name).end()
    assert long_name not in sanitize_module._name_memo
    assert exporter.get_finished_spans()[-1].name == "SELECT a FROM t WHERE id = ? AND b = ?"


def test_the_exported_name_is_the_one_the_span_ends_with(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("query") as span:
        span.update_name(f"SELECT id FROM users WHERE email = '{EMAIL}'")
    assert _one(exporter).name == "SELECT id FROM users WHERE email = ?"
    with tracer.start_as_current_span(f"SELECT id FROM users WHERE email = '{EMAIL}'") as span:
        span.update_name("SELECT users")
    assert _one(exporter).name == "SELECT users"


def test_the_off_switch_keeps_the_name(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = sanitizing_provider(sanitize=False, redact_attributes=["user.email"])
    name = f"SELECT id FROM users WHERE email = '{EMAIL}'"
    with provider.get_tracer("app").start_as_current_span(name):
        pass
    assert _one(exporter).name == name


def test_a_failure_on_the_name_never_reaches_the_application(
    traced: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(sanitize_module, "sanitize_name", broken)
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span("SELECT 1 FROM t") as span:
        span.set_attribute("db.statement", "SELECT 1 FROM t")
    exported = _one(exporter)
    assert dict(exported.attributes or {})["db.statement"] == "SELECT ? FROM t"  # the rest still done
    monkeypatch.undo()
    with provider.get_tracer("app").start_as_current_span("SELECT 1 FROM t"):
        pass
    assert _one(exporter).name == "SELECT ? FROM t"  # a name that failed is not kept as it was


def test_a_real_sqlite3_instrumentation_keeps_its_name_and_gets_a_summary() -> None:
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    provider, exporter = sanitizing_provider()
    SQLite3Instrumentor().instrument(tracer_provider=provider)
    try:
        db = sqlite3.connect(":memory:")
        cursor = db.cursor()  # the instrumentation traces a cursor's execute, not the connection's
        cursor.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        cursor.execute(f"INSERT INTO users (email) VALUES ('{EMAIL}')")
        cursor.execute("SELECT u.id FROM users u WHERE u.email = ?", (EMAIL,)).fetchall()
        db.close()
    finally:
        SQLite3Instrumentor().uninstrument()
    spans = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    assert set(spans) == {"CREATE", "INSERT", "SELECT"}
    assert spans["INSERT"]["db.statement"] == "INSERT INTO users (email) VALUES (?)"
    assert spans["INSERT"][SUMMARY] == "INSERT users"
    assert spans["SELECT"][SUMMARY] == "SELECT users"
    assert spans["CREATE"][SUMMARY] == "CREATE users"
    assert EMAIL not in repr(exporter.get_finished_spans())


# -- span events ----------------------------------------------------------------------------------


def test_every_event_loses_statement_literals_url_secrets_and_named_attributes(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span("checkout") as span:
        span.add_event(
            "retry",
            {
                "db.statement": f"SELECT id FROM users WHERE email = '{EMAIL}'",
                "db.statement.parameters": f"('{EMAIL}',)",
                "url.full": "https://api.example.com/pay?card=4111111111111111",
                "user.email": EMAIL,
                "attempt": 2,
            },
        )
        span.add_event("plain", {"attempt": 3})
    retry, plain = _one(exporter).events
    assert dict(retry.attributes or {}) == {
        "db.statement": "SELECT id FROM users WHERE email = ?",  # no marks on an event
        "url.full": f"https://api.example.com/pay?card={REDACTED}",
        "user.email": REDACTED,
        "attempt": 2,
    }
    assert dict(plain.attributes or {}) == {"attempt": 3}


def test_an_exception_event_with_a_statement_key_gets_both_rules(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span("q") as span:
        span.add_event(
            "exception",
            {
                "exception.message": f"Key (email)=({EMAIL}) already exists.",
                "db.query.text": f"INSERT INTO users VALUES ('{EMAIL}')",
            },
        )
    (event,) = _one(exporter).events
    assert dict(event.attributes or {}) == {
        "exception.message": "Key (email)=(?) already exists.",
        "db.query.text": "INSERT INTO users VALUES (?)",
    }


def test_an_event_without_those_keys_is_left_alone(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with provider.get_tracer("app").start_as_current_span("q") as span:
        span.add_event("shaped", {"db.query.text": "SELECT a FROM t WHERE id = ?", "n": 1})
        (live,) = span.events  # type: ignore[attr-defined]
    (event,) = _one(exporter).events
    assert event is live and event.attributes is live.attributes


# -- db.query.summary -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "summary"),
    [
        ("SELECT * FROM wuser_table WHERE username = ?", "SELECT wuser_table"),
        (
            "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders",
            "INSERT shipping_details SELECT orders",
        ),
        ("SELECT * FROM songs s JOIN artists a ON s.artist_id = a.id", "SELECT songs artists"),
        ("SELECT a FROM t1 AS x, public.t2 y WHERE x.id = y.id FOR UPDATE", "SELECT t1 public.t2"),
        (
            "SELECT d FROM (SELECT * FROM orders o JOIN customers c ON o.c = c.id)",
            "SELECT SELECT orders customers",
        ),
        ("WITH recent AS (SELECT id FROM orders) SELECT * FROM recent", "SELECT orders SELECT recent"),
        ("UPDATE orders SET status = ? WHERE id = ?", "UPDATE orders"),
        ('DELETE FROM "Order Items" WHERE id = $1', 'DELETE "Order Items"'),
        ("INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a = ?", "INSERT t"),
        ("INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = ?", "INSERT t"),
        ("CREATE TABLE IF NOT EXISTS t (id int)", "CREATE t"),
        ("CALL refresh_stats(?)", "CALL refresh_stats"),
        ("select id from Users where x = :x", "select Users"),  # the operation as written
        ("Update orders SET a = ? WHERE id = ?", "Update orders"),
        ("begin", "begin"),
        ("SELECT ?", "SELECT"),
        ("BEGIN", "BEGIN"),
        ("SAVEPOINT sa_savepoint_1", "SAVEPOINT"),
        ("", ""),
        ("? ?", ""),
    ],
)
def test_summary_names_each_operation_and_its_tables(statement: str, summary: str) -> None:
    assert statements.summary(statement) == summary


def test_summary_is_cut_between_words_at_255_characters() -> None:
    many = "SELECT a FROM " + ", ".join(f"table_number_{n}" for n in range(40))
    summary = statements.summary(many)
    assert len(summary) <= statements.SUMMARY_MAX_CHARS
    assert summary.startswith("SELECT table_number_0 table_number_1 ")
    assert summary.split()[-1].startswith("table_number_")
    assert statements.summary('SELECT a FROM "' + "x" * 300 + '"') == "SELECT"  # a word too long goes


def test_the_processor_sets_a_summary_and_keeps_an_instrumentations_own() -> None:
    processor = SanitizingSpanProcessor()
    derived = processor.rewrite({"db.query.text": f"SELECT id FROM users WHERE email = '{EMAIL}'"})
    own = processor.rewrite({"db.query.text": "SELECT id FROM users WHERE id = 7", SUMMARY: "get user by id"})
    assert derived is not None and own is not None
    assert derived[SUMMARY] == "SELECT users"
    assert own[SUMMARY] == "get user by id"
    assert processor.rewrite({"http.route": "/users"}) is None
    events = processor.rewrite({"db.query.text": "SELECT id FROM users WHERE id = 7"}, marks=False)
    assert events == {"db.query.text": "SELECT id FROM users WHERE id = ?"}


def test_under_an_attribute_limit_the_marks_give_way_never_the_statement() -> None:
    provider, exporter = sanitizing_provider(SpanLimits(max_span_attributes=4))
    with provider.get_tracer("app").start_as_current_span("q") as span:
        span.set_attribute("db.system", "sqlite")
        span.set_attribute("db.statement", "SELECT a FROM t WHERE id = 7")
    exported = _one(exporter)
    attributes: dict[str, Any] = dict(exported.attributes or {})
    # two of the three added fit: the summary (derivable from the statement) gave way
    assert attributes == {
        "db.system": "sqlite",
        "db.statement": "SELECT a FROM t WHERE id = ?",
        SANITIZED: True,
        DIGEST: attributes[DIGEST],
    }
    assert exported.dropped_attributes == 1


# -- the analyzer on db.query.summary -----------------------------------------------------------------


def _db_span(n: int, attributes: dict[str, Any], duration_ns: int = 10**6, parent: str = "p") -> Any:
    from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanRecord

    t0 = 1_700_000_000_000_000_000
    return SpanRecord(
        "ab" * 16,
        f"{n + 1:016x}",
        parent.ljust(16, "0"),
        "db",
        SPAN_KIND_CLIENT,
        t0 + n * 10**8,
        t0 + n * 10**8 + duration_ns,
        0,
        "",
        {"db.system.name": "postgresql", **attributes},
        (),
        {"service.name": "shop"},
        "test",
    )


def _findings(spans: list[Any]) -> dict[str, Any]:
    from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, analyze_spans

    return {(r.rule, r.subject): r for r in analyze_spans(spans, DatabaseRuleConfig(min_db_spans=1))}


def test_the_analyzer_groups_spans_without_a_statement_by_their_summary() -> None:
    slow = [_db_span(n, {SUMMARY: "SELECT orders"}, duration_ns=6 * 10**8) for n in range(6)]
    updates = [_db_span(10 + n, {SUMMARY: "UPDATE orders"}, parent="q") for n in range(3)]
    found = _findings(slow + updates)
    # slow, and a run of six siblings: an N+1 and a slow query, labelled by the summary
    assert set(found) == {("slow_query", "SELECT orders"), ("n_plus_one", "SELECT orders")}
    assert found[("slow_query", "SELECT orders")].evidence.numbers["calls"] == 6
    # not "UPDATE without WHERE" (its clauses are unknown) nor "identical" (its values are unknown)


def test_a_statement_is_preferred_to_the_summary_and_its_findings_do_not_change() -> None:
    statement = "UPDATE orders SET paid = 1"
    bare = _findings([_db_span(n, {"db.query.text": statement}) for n in range(3)])
    with_summary = _findings(
        [_db_span(n, {"db.query.text": statement, SUMMARY: "UPDATE orders"}) for n in range(3)]
    )
    assert (
        set(bare)
        == set(with_summary)
        == {
            ("missing_where", "UPDATE orders SET paid = ?"),
            ("repeated_identical", "UPDATE orders SET paid = ?"),
        }
    )
    assert _findings([_db_span(0, {})]) == {}  # neither: not a db call the rules can name
