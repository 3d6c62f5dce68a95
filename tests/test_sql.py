"""SQL normalization and classification (``amqadf_agent.analyzer.sql``)."""

from __future__ import annotations

import random

import pytest

from amqadf_agent import statements
from amqadf_agent.analyzer import sql
from amqadf_agent.analyzer.sql import analyze, normalize


def test_literals_comments_spacing_and_case_give_the_same_text() -> None:
    variants = [
        "SELECT name FROM users WHERE id = 5 AND email = 'bob@example.com'",
        "select  name\n from Users where id=42 and email='it''s me' -- trailing comment",
        "/* lead */ SELECT name FROM users WHERE id = 7 AND email = 'x';",
    ]
    assert {normalize(v) for v in variants} == {"SELECT name FROM users WHERE id = ? AND email = ?"}


def test_in_lists_numbers_and_placeholders_collapse() -> None:
    assert normalize("SELECT a FROM t WHERE id IN (1, 2, 3)") == "SELECT a FROM t WHERE id IN (?)"
    assert normalize("select a from t where id in (?,?)") == "SELECT a FROM t WHERE id IN (?)"
    assert normalize("SELECT a FROM t WHERE x = -4.5e3 AND y = $1 AND z = %s") == (
        "SELECT a FROM t WHERE x = ? AND y = ? AND z = ?"
    )
    assert normalize("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')") == "INSERT INTO t (a, b) VALUES (?, ?)"
    assert normalize("SELECT t1.a FROM t1") == "SELECT t1.a FROM t1"  # digits inside names stay


def test_unparsable_statement_uses_the_fallback_without_literals() -> None:
    info = analyze("FROBNICATE widgets 42 'secret-4242' now")
    assert not info.parsed
    assert "secret" not in info.normalized and "42" not in info.normalized
    assert info.normalized == "FROBNICATE widgets ? ? now"


def test_classification() -> None:
    info = analyze("SELECT a FROM t WHERE a = ? AND b > ? ORDER BY c")
    assert (info.kind, info.tables, info.filter_columns, info.sort_columns) == (
        "SELECT",
        ("t",),
        ("a", "b"),
        ("c",),
    )
    assert info.has_placeholders and not info.select_star and not info.has_limit
    assert analyze("SELECT * FROM t LIMIT 10").select_star
    assert analyze("SELECT * FROM t LIMIT 10").has_limit
    assert not analyze("UPDATE t SET a = 1").has_where
    assert analyze("DELETE FROM t WHERE a = 1").has_where
    assert analyze("UPDATE t SET a = 1").kind == "UPDATE"


def test_literal_digest_tells_literals_apart_without_holding_them() -> None:
    one, same, other = (analyze(f"SELECT a FROM t WHERE b = '{v}'") for v in ("x", "x", "y"))
    assert one.literal_digest == same.literal_digest != other.literal_digest
    assert "x" not in one.literal_digest or len(one.literal_digest) == 16
    assert analyze("SELECT a FROM t WHERE b = ?").literal_digest == ""


def test_normalize_call_memo_gives_what_analyze_gives_and_stays_bounded() -> None:
    from amqadf_agent.analyzer import sql

    bound = "SELECT sku, qty FROM order_items WHERE order_id = ?"
    literal = "SELECT sku, qty FROM order_items WHERE order_id = 42"
    for statement in (bound, bound, literal, literal):  # the second of each from the memo (if kept)
        info = sql.analyze(statement)
        assert sql.normalize_call(statement) == (info.normalized, info.has_placeholders, info.literal_digest)
    assert bound in sql._call_memo and literal not in sql._call_memo  # literal-bearing: never kept
    for i in range(sql._CALL_MEMO_MAX + 10):
        sql.normalize_call(f"SELECT a FROM t{i} WHERE id = ?")
    assert len(sql._call_memo) <= sql._CALL_MEMO_MAX


# The tokenizer before the split-based one (``re.sub`` with a callback over one pattern), which
# statements that are not ASCII still take: the reference the fast paths must agree with, token for
# token, on any text.
reference_shape = statements.shape_unicode


_PIECES = [
    "SELECT", " ", "a", "1", "0x1F", "0xZ", ".5", "1.", "1e5", "1E-", "e", "'x'", "''", "'a''b'",
    "'\\''", "N'q'", "e'", "x'0A'", "$$a$$", "$$", "$", "$a", "?", "%s", "%(n)s", "%", ":name", ":",
    "a:b", '"Q"', '"a', "`b`", "[c]", "[", "]", "--c\n", "--", "/* c */", "/*", "\n", "\t", ";", "(",
    ")", ",", " IN (", "?, ?", "VALUES", "(1, 2), (3, 4)", "t", "a.b", "x$", "_9", "é", "٣", "-", "/",
    "*", "=", "'", '"', "\\", "0",
]  # fmt: skip


def test_the_tokenizer_agrees_with_the_reference_on_any_text() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        statement = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 12)))
        assert sql.shape(statement) == reference_shape(statement), statement


def test_normalize_call_agrees_with_the_reference_whatever_its_memos_hold() -> None:
    # Statements ending in digits, many per head: the tail memo is filled, then hit.
    rng = random.Random(11)
    heads = ["".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 8))) for _ in range(300)]
    heads += [
        "SELECT a FROM t WHERE x = 1.",
        "SELECT a FROM t WHERE x = :abc",
        "WHERE y = $",
        "x -- c ",
        "a = 'b'",
    ]
    for _ in range(20_000):
        statement = rng.choice(heads) + str(rng.randrange(0, 10 ** rng.randrange(1, 4)))
        text, placeholders, digest = reference_shape(statement)
        expected = (sql._structure(text).normalized, placeholders, digest)
        assert sql.normalize_call(statement) == expected, statement
    assert sql._tail_memo  # the statements above did use it


def test_a_unicode_digit_is_a_number_as_before() -> None:
    text, placeholders, digest = sql.shape("SELECT a FROM t WHERE x = ٣")
    assert text == "SELECT a FROM t WHERE x = ?" and not placeholders
    assert digest == sql.hash_literals("٣") != sql.hash_literals("3")


def test_postgres_casts_of_placeholders_are_parsed() -> None:
    # SQLAlchemy's psycopg dialect writes %(name)s::TYPE; sqlglot reads the cast only as CAST(? AS TYPE).
    info = sql.analyze(
        "SELECT a FROM t WHERE b = %(b_1)s::VARCHAR AND c IN (%(c_1_1)s::INTEGER, %(c_1_2)s::INTEGER)"
    )
    assert info.parsed
    assert info.normalized == "SELECT a FROM t WHERE b = CAST(? AS VARCHAR) AND c IN (?)"
    assert info.filter_columns == ("b", "c")


def test_sqlglot_reads_a_bounded_number_of_shapes_an_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each shape costs sqlglot about 1 ms: beyond the budget, new shapes get the regular expressions;
    # a shape read before reads the same after; reset() gives the next analysis the whole budget.
    monkeypatch.setattr(sql, "MAX_PARSED_TEXTS", 3)
    sql.reset()
    try:
        first = [analyze(f"select a from t{number} where b = ?") for number in range(5)]
        assert [info.parsed for info in first] == [True, True, True, False, False]
        assert first[3].normalized == "SELECT a FROM t3 WHERE b = ?"  # keywords upper case all the same
        assert first[3].tables == ("t3",) and first[3].has_where
        sql._structure.cache_clear()  # (evicted from the small cache: still sqlglot's reading)
        assert analyze("select a from t0 where b = ?").parsed
        sql.reset()
        assert analyze("select a from t4 where b = ?").parsed
    finally:
        sql.reset()


def test_a_statement_too_long_for_sqlglot_gets_the_regular_expressions() -> None:
    union = " UNION ALL ".join(f"select a{i} from t{i} where c = {i}" for i in range(1500))
    assert len(union) > sql.MAX_PARSED_CHARS
    info = analyze(union)
    assert not info.parsed
    assert info.normalized.startswith("SELECT a0 FROM t0 WHERE c = ? UNION ALL SELECT a1")
    assert "t1499" in info.tables and info.kind == "SELECT"
    assert analyze("select a from t where c = 1").parsed  # a short one still sqlglot's
