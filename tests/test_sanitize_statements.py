"""``db.query.summary`` over joins, comma lists, subqueries and CTEs; MongoDB filters without values.

The summary follows the database conventions: each operation and its targets in the order written,
at most 255 characters, read from the words of the one tokenizer (``statements.split``). MongoDB
instrumentations write the command with ``str()`` of its filter as ``db.statement`` (and some
applications and older instrumentations as the span name): its values become ``?``, its keys stay.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from support.sanitizing import sanitizing_provider

from amqadf_agent import semconv, statements
from amqadf_agent.runtime.sanitize import sanitize_name

EMAIL = "ann.mongo@example.com"


def _summary(statement: str) -> str:
    return statements.summary(statements.sanitize(statement))


@pytest.mark.parametrize(
    ("statement", "summary"),
    [
        # a subquery in FROM, then more of the comma list
        (
            "SELECT a FROM (SELECT * FROM orders o JOIN customers c ON o.id = c.id) a, b",
            "SELECT SELECT orders customers b",
        ),
        ("SELECT * FROM a, (SELECT x FROM inner_t) s, c WHERE a.x = s.x", "SELECT a SELECT inner_t c"),
        # joins, and a comma after an ON condition or a USING list
        ("SELECT * FROM a LEFT OUTER JOIN b ON a.id = b.id, c", "SELECT a b c"),
        ("SELECT * FROM a JOIN b USING (id), c CROSS JOIN d", "SELECT a b c d"),
        ("SELECT * FROM a JOIN b ON (a.id = b.id AND f(a.x, 1)), c", "SELECT a b c"),
        ("SELECT * FROM a o, b AS p, c WHERE o.x IN (1, 2, 3)", "SELECT a b c"),
        # CTEs: each subquery in order, then the main query's targets
        (
            "WITH x AS (SELECT id FROM a WHERE z = 1) SELECT * FROM x JOIN y ON x.id = y.id",
            "SELECT a SELECT x y",
        ),
        (
            "WITH x AS (SELECT id FROM a), y AS (SELECT id FROM b) SELECT * FROM x, y",
            "SELECT a SELECT b SELECT x y",
        ),
        # INSERT ... SELECT, subqueries outside FROM
        ("INSERT INTO t SELECT * FROM u", "INSERT t SELECT u"),
        ("INSERT INTO t (a, b) SELECT a, b FROM u, v WHERE u.id = v.id", "INSERT t SELECT u v"),
        ("SELECT (SELECT max(x) FROM z) AS m, a FROM t", "SELECT SELECT z t"),
        ("SELECT * FROM a WHERE id IN (SELECT aid FROM b), c", "SELECT a SELECT b"),
        ("UPDATE t SET a = (SELECT b FROM u) WHERE id = 1", "UPDATE t SELECT u"),
        ("DELETE FROM t USING u, v WHERE t.id = u.id", "DELETE t u v"),
        # quoted and schema-qualified names, as written
        ('SELECT * FROM "song list", "public"."artists"', 'SELECT "song list" "public"."artists"'),
        (
            "SELECT * FROM [dbo].[Orders] o JOIN `shop`.`items` i ON o.id = i.oid",
            "SELECT [dbo].[Orders] `shop`.`items`",
        ),
        ('SELECT t.* FROM public."Orders" t, s.plain', 'SELECT public."Orders" s.plain'),
        ("SELECT a FROM t; SELECT b FROM u", "SELECT t SELECT u"),
        # MERGE: the target, then the source (a table or a subquery), then the actions in order
        (
            "MERGE INTO t USING src ON t.id = src.id WHEN MATCHED THEN UPDATE SET a = 1 "
            "WHEN NOT MATCHED THEN INSERT (id, a) VALUES (src.id, 1)",
            "MERGE t src UPDATE INSERT",
        ),
        ("MERGE INTO public.t AS x USING public.src s ON x.id = s.id", "MERGE public.t public.src"),
        (
            "MERGE INTO t USING (SELECT * FROM a JOIN b USING (id)) s ON t.id = s.id "
            "WHEN MATCHED THEN DELETE",
            "MERGE t SELECT a b DELETE",
        ),
        # an index: the table it is on, not its own name; USING names a method there, not a table
        ("CREATE INDEX i ON t (a, b)", "CREATE INDEX t"),
        (
            "create unique index concurrently if not exists i on only public.t using btree (a)",
            "create index public.t",
        ),
        ("CREATE INDEX i USING BTREE ON t (c)", "CREATE INDEX t"),
        ("CREATE NONCLUSTERED INDEX i ON [dbo].[t] (a) WHERE x = 1", "CREATE INDEX [dbo].[t]"),
        ("DROP INDEX i ON t", "DROP INDEX t"),
        ("drop Index i on t", "drop Index t"),
        ("DROP INDEX IF EXISTS i", "DROP INDEX"),
        ("CREATE TABLE t (a int, INDEX idx (a))", "CREATE t"),
        # MongoDB: the command, as written
        ("find {'email': 'a@b.c'}", "find"),
    ],
)
def test_summary_names_every_target_in_order(statement: str, summary: str) -> None:
    assert _summary(statement) == summary


_KEYWORDS = {
    "AS", "ON", "JOIN", "FROM", "WHERE", "SELECT", "USING", "LEFT", "RIGHT", "FULL", "INNER", "OUTER",
    "CROSS", "NATURAL", "GROUP", "ORDER", "LIMIT", "OFFSET", "FETCH", "HAVING", "WINDOW", "UNION",
    "INTERSECT", "EXCEPT", "RETURNING", "FOR", "WITH", "SET", "VALUES", "VALUE", "DEFAULT", "ONLY",
    "LATERAL", "IF", "NOT", "EXISTS", "INTO", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE",
    "UPSERT", "CALL", "EXEC", "EXECUTE", "CREATE", "DROP", "ALTER", "TRUNCATE", "KEY", "DO", "STRAIGHT_JOIN",
}  # fmt: skip
_NAMES = st.from_regex(r"\A[a-z_][a-z0-9_]{0,11}\Z").filter(lambda name: name.upper() not in _KEYWORDS)
_QUOTED = st.from_regex(r'\A"[a-z ]{1,8}"\Z')
_TABLE = st.one_of(
    _NAMES,
    _QUOTED,
    st.tuples(_NAMES, _NAMES).map(".".join),
    st.tuples(_QUOTED, _QUOTED).map(".".join),
)


@st.composite
def _from_items(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A FROM clause of tables and subqueries, joined by commas and joins: (SQL, expected targets)."""
    sql: list[str] = []
    expected: list[str] = []
    for index in range(draw(st.integers(1, 5))):
        connector = draw(st.sampled_from([",", "JOIN", "LEFT JOIN", "CROSS JOIN", "NATURAL JOIN"]))
        if index:
            sql.append(connector)
        if draw(st.booleans()):
            table = draw(_TABLE)
            sql.append(table)
            expected.append(table)
        else:
            inner = draw(_TABLE)
            sql.append(f"(SELECT c FROM {inner} WHERE c IN (1, 'x'))")
            expected.extend(["SELECT", inner])
        alias = draw(st.one_of(st.none(), _NAMES))
        if alias is not None:
            sql.append(draw(st.sampled_from(["", "AS "])) + alias)
        if index and connector in ("JOIN", "LEFT JOIN"):
            sql.append(draw(st.sampled_from(["ON a.id = b.id", "USING (id)", "ON f(a.x, 2) = b.y"])))
    return " ".join(sql), expected


@settings(max_examples=150, deadline=None)
@given(_from_items(), st.sampled_from(["", " WHERE a = 1", " GROUP BY a", " ORDER BY a LIMIT 5"]))
def test_summary_of_any_from_clause_is_its_targets_in_order(items: tuple[str, list[str]], tail: str) -> None:
    sql, targets = items
    summary = _summary(f"SELECT a, b FROM {sql}{tail}")
    expected = " ".join(["SELECT", *targets])
    if len(expected) <= statements.SUMMARY_MAX_CHARS:
        assert summary == expected
    else:
        assert expected.startswith(summary + " ")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_summary_of_any_text_is_short_and_holds_no_literal(text: str) -> None:
    summary = _summary(text)
    assert len(summary) <= statements.SUMMARY_MAX_CHARS
    assert "'" not in summary


@settings(max_examples=100, deadline=None)
@given(st.lists(_NAMES, min_size=1, max_size=60))
def test_a_long_summary_is_cut_between_words(tables: list[str]) -> None:
    summary = _summary("SELECT * FROM " + ", ".join(tables))
    full = " ".join(["SELECT", *tables])
    assert len(summary) <= statements.SUMMARY_MAX_CHARS
    assert full.startswith(summary)
    assert len(full) == len(summary) or full[len(summary)] == " "


# -- MongoDB filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "sanitized"),
    [
        (
            "find {'email': 'a@b.c', 'age': {'$gt': 30}, 'ok': True, 'gone': None, 'n': -5.5e3}",
            "find {'email': ?, 'age': {'$gt': ?}, 'ok': ?, 'gone': ?, 'n': ?}",
        ),
        (
            'find {"email": "a\\"b@c.d", "tags": ["x", "y"], "k": null}',
            'find {"email": ?, "tags": [?, ?], "k": ?}',
        ),
        (
            "aggregate [{'$match': {'_id': ObjectId('65a1b2c3d4e5f60718293a4b')}}, {'$limit': 5}]",
            "aggregate [{'$match': {'_id': ObjectId(?)}}, {'$limit': ?}]",
        ),
        (
            "insert [{'email': \"O'Brien@x.y\", 'at': datetime.datetime(2024, 1, 2, 3, 4)}]",
            "insert [{'email': ?, 'at': datetime.datetime(?, ?, ?, ?, ?)}]",
        ),
        ("mydb.find.{'email': 'ann@x'}", "mydb.find.{'email': ?}"),
        ("find {email: /^ann@/i, name: 'x'}", "find {email: ?, name: ?}"),  # a shell's regex literal
        ("find {'email': 'ann@exam", "find {'email': ?"),  # cut short by an attribute length limit
        ("find {}", "find {}"),
    ],
)
def test_a_mongodb_filter_loses_its_values_and_keeps_its_keys(statement: str, sanitized: str) -> None:
    assert statements.sanitize(statement) == sanitized
    assert sanitize_name(statement) == sanitized


def test_sql_with_brackets_is_no_document() -> None:
    assert statements.sanitize("SELECT [x] FROM [t] WHERE a = 'b'") == "SELECT [x] FROM [t] WHERE a = ?"
    assert statements.is_document_command("SELECT [x] FROM t") is None


def _pymongo_spans(commands: list[dict[str, Any]]) -> list[ReadableSpan]:
    """The spans the real pymongo instrumentation makes of ``commands`` (its listener driven with
    pymongo's own events: no server needed), through the sanitizing processor."""
    from opentelemetry.instrumentation.pymongo import CommandTracer  # the test extra installs both
    from pymongo import monitoring

    provider, exporter = sanitizing_provider()
    listener = CommandTracer(provider.get_tracer("pymongo"), capture_statement=True)
    address = ("db.internal", 27017)
    for request_id, command in enumerate(commands):
        listener.started(monitoring.CommandStartedEvent(command, "shop", request_id, address, 1))
        name = next(iter(command))
        reply = {"ok": 1}
        duration = datetime.timedelta(microseconds=800)
        listener.succeeded(monitoring.CommandSucceededEvent(duration, reply, name, request_id, address, 1))
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def test_the_real_pymongo_instrumentations_statements_leave_without_values() -> None:
    import bson  # pymongo's

    when = datetime.datetime(2024, 5, 6, 7, 8)
    commands = [
        {"find": "users", "filter": {"email": EMAIL, "_id": bson.ObjectId(), "at": {"$gt": when}}},
        {"insert": "users", "documents": [{"email": EMAIL, "card": "4111111111111111"}]},
        {"aggregate": "users", "pipeline": [{"$match": {"email": EMAIL}}], "cursor": {}},
        {"update": "users", "updates": [{"q": {"email": EMAIL}, "u": {"$set": {"pin": "8642"}}}]},
    ]
    spans = _pymongo_spans(commands)
    assert [span.attributes["db.statement"] for span in spans] == [  # type: ignore[index]
        "find {'email': ?, '_id': ObjectId(?), 'at': {'$gt': datetime.datetime(?, ?, ?, ?, ?)}}",
        "insert [{'email': ?, 'card': ?}]",
        "aggregate [{'$match': {'email': ?}}]",
        "update [{'q': {'email': ?}, 'u': {'$set': {'pin': ?}}}]",
    ]
    for span in spans:
        attributes = dict(span.attributes or {})
        text = repr(attributes) + span.name
        for secret in (EMAIL, "4111111111111111", "8642", "2024"):
            assert secret not in text
        assert re.fullmatch(r"[0-9a-f]{16}", attributes[semconv.ATTR_DB_QUERY_VALUES_DIGEST])
        assert attributes[semconv.ATTR_DB_QUERY_SANITIZED] is True
        assert attributes[semconv.ATTR_DB_QUERY_SUMMARY] == span.name.split(".")[-1]  # find, insert, ...


def _ext_pymongo_span(sanitize: bool = True) -> dict[str, Any]:
    """The attributes of a span as the older ext-pymongo instrumentation wrote them: the command in
    ``db.statement``, ``str()`` of the filter and of the pipeline in ``db.mongo.*``."""
    provider, exporter = sanitizing_provider(sanitize=sanitize)
    with provider.get_tracer("ext-pymongo").start_as_current_span("mongodb.find") as span:
        span.set_attribute("db.type", "mongodb")
        span.set_attribute("db.statement", "find users")
        span.set_attribute("db.mongo.filter", str({"email": EMAIL, "age": {"$gt": 30}, "ok": True}))
        span.set_attribute("db.mongo.pipeline", str([{"$match": {"card": "4111111111111111"}}]))
        span.set_attribute("db.mongo.sort", "[('age', 1)]")
    (finished,) = exporter.get_finished_spans()
    provider.shutdown()
    return dict(finished.attributes or {})


def test_the_older_ext_pymongo_filter_and_pipeline_lose_their_values_and_keep_their_keys() -> None:
    attributes = _ext_pymongo_span()
    assert attributes["db.mongo.filter"] == "{'email': ?, 'age': {'$gt': ?}, 'ok': ?}"
    assert attributes["db.mongo.pipeline"] == "[{'$match': {'card': ?}}]"
    assert attributes["db.mongo.sort"] == "[('age', 1)]"  # names and directions only: not watched
    assert attributes["db.statement"] == "find users"
    for secret in (EMAIL, "4111111111111111", "30"):
        assert secret not in repr(attributes)


def test_the_older_ext_pymongo_filter_leaves_as_written_with_sanitize_off() -> None:
    assert EMAIL in _ext_pymongo_span(sanitize=False)["db.mongo.filter"]


# -- a literal cut off by a length limit --------------------------------------------------------------


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        ("SELECT * FROM users WHERE email = 'ann.mongo@exam", "SELECT * FROM users WHERE email = ?"),
        ("SELECT * FROM users WHERE note = 'it''s ann.mongo@exam", "SELECT * FROM users WHERE note = ?"),
        ("SELECT * FROM users WHERE email = E'ann\\", "SELECT * FROM users WHERE email = ?"),
        ("SELECT $$ann.mongo@exam", "SELECT ?"),
        ("SELECT * FROM users WHERE name = 'Zoë ann.mongo@exam", "SELECT * FROM users WHERE name = ?"),
    ],
)
def test_a_string_cut_off_at_the_end_is_a_literal(cut: str, expected: str) -> None:
    assert statements.sanitize(cut) == expected
    assert statements.shape(cut)[0] == expected


def test_a_statement_truncated_by_the_attribute_length_limit_leaks_no_part_of_its_literal() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    provider, exporter = sanitizing_provider(SpanLimits(max_attribute_length=48))
    statement = f"SELECT * FROM users WHERE email = '{EMAIL}' AND active = 1"
    with provider.get_tracer("test").start_as_current_span("q") as span:
        span.set_attribute("db.statement", statement)
    (finished,) = exporter.get_finished_spans()
    text = dict(finished.attributes or {})["db.statement"]
    assert text == "SELECT * FROM users WHERE email = ?"
    assert "ann" not in text
