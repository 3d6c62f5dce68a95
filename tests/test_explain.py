"""The planner's verdict on index candidates, against a real PostgreSQL 15 with hypopg and real SQLite."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port
from support.postgres_server import PostgresServer

from amqadf_agent.analyzer.explain import (
    MIN_COST_DROP,
    NO_DSN_REASON,
    Candidate,
    apply_verdicts,
    explain_candidates,
)
from amqadf_agent.analyzer.rules.database import DatabaseRules

BY_CUSTOMER = Candidate("SELECT id, total FROM orders WHERE customer_id = ?", "orders", ("customer_id",))
BY_STATUS = Candidate("SELECT id, total FROM orders WHERE status = ?", "orders", ("status",))
BY_ID = Candidate("SELECT total FROM orders WHERE id = ?", "orders", ("id",))


@pytest.fixture(scope="module")
def shop(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of 50 000 orders by 5 000 customers, two statuses, hypopg installed."""
    if not postgres_server.has_hypopg:
        pytest.fail("hypopg is missing: apt-get install -y postgresql-15-hypopg (.ci/install-deps)")
    dsn = postgres_server.create_database("explain_shop")
    postgres_server.psql(
        "CREATE EXTENSION hypopg; "
        "CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, "
        "total numeric NOT NULL); "
        "INSERT INTO orders (customer_id, status, total) SELECT g % 5000, "
        "CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END, g FROM generate_series(1, 50000) g; "
        "ANALYZE orders;",
        "explain_shop",
    )
    yield dsn


def _indexes(server: PostgresServer) -> str:
    sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'orders' ORDER BY 1"
    return server.psql(sql, "explain_shop")


def test_postgres_verifies_a_selective_index_and_writes_nothing(
    shop: str, postgres_server: PostgresServer
) -> None:
    before = _indexes(postgres_server)
    [verdict] = explain_candidates([BY_CUSTOMER], shop)
    assert verdict.verdict == "verified", verdict.reason
    assert verdict.cost_before is not None and verdict.cost_after is not None
    assert verdict.cost_after <= verdict.cost_before * (1 - MIN_COST_DROP)
    assert verdict.plan_before == "Seq Scan on orders"
    assert "Scan using the hypothetical index" in verdict.plan_after
    assert verdict.create_index == 'CREATE INDEX CONCURRENTLY ON "orders" ("customer_id");'
    # hypopg's index lived in the session's memory only: the database has the same indexes.
    assert _indexes(postgres_server) == before == "orders_pkey\n"


def test_postgres_does_not_suggest_an_index_the_planner_would_not_use(shop: str) -> None:
    [verdict] = explain_candidates([BY_STATUS], shop)  # two values: half the table either way
    assert verdict.verdict == "not suggested"
    assert verdict.reason in ("the planner would not use it",) or "falls only" in verdict.reason
    assert verdict.create_index == ""


def test_postgres_existing_index_covers_the_leading_columns(shop: str) -> None:
    [verdict] = explain_candidates([BY_ID], shop)
    assert verdict.verdict == "not suggested"
    assert verdict.reason == "the existing index orders_pkey already covers (id)"


def test_postgres_unplannable_statement_is_one_line_and_the_rest_goes_on(shop: str) -> None:
    broken = Candidate("SELECT nope FROM orders WHERE customer_id = ?", "orders", ("customer_id",))
    missing = Candidate("SELECT id FROM invoices WHERE customer_id = ?", "invoices", ("customer_id",))
    verdicts = explain_candidates([broken, missing, BY_CUSTOMER], shop)
    assert [v.verdict for v in verdicts] == ["unverified", "unverified", "verified"]
    assert verdicts[0].reason.startswith("cannot plan SELECT nope FROM orders WHERE customer_id = ?: ")
    assert "nope" in verdicts[0].reason and "\n" not in verdicts[0].reason
    assert verdicts[1].reason.startswith("table invoices not found in postgresql://[secure]@127.0.0.1:")


def test_postgres_without_hypopg_is_unverified(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database("explain_plain")
    postgres_server.psql("CREATE TABLE orders (id int PRIMARY KEY, customer_id int)", "explain_plain")
    [verdict] = explain_candidates([BY_CUSTOMER], dsn)
    assert verdict.verdict == "unverified"
    assert verdict.reason.startswith("hypopg is not installed in postgresql://[secure]@127.0.0.1:")


def test_unreachable_dsn_never_shows_its_password() -> None:
    dsn = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/shop"
    verdicts = explain_candidates([BY_CUSTOMER, BY_STATUS], dsn)
    assert [v.verdict for v in verdicts] == ["unverified", "unverified"]
    reason = verdicts[0].reason
    assert reason.startswith("cannot connect to postgresql://app:[secure]@127.0.0.1:")
    assert "s3cret-pw" not in reason and "\n" not in reason
    assert "s3cret-pw" not in repr(verdicts)


def test_no_dsn_leaves_candidates_unverified() -> None:
    [verdict] = explain_candidates([BY_CUSTOMER], None)
    assert (verdict.verdict, verdict.reason) == ("unverified", NO_DSN_REASON)
    [bad] = explain_candidates([BY_CUSTOMER], "mysql://db/shop")
    assert bad.reason == (
        "cannot use --explain mysql://db/shop: give a postgresql:// URL or a SQLite file path"
    )


@pytest.fixture
def sqlite_shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, status TEXT, total REAL)"
        )
        conn.execute("CREATE INDEX orders_by_total ON orders (total)")
        conn.executemany(
            "INSERT INTO orders (customer_id, status, total) VALUES (?, ?, ?)",
            ((i % 2000, "paid" if i % 2 else "open", float(i)) for i in range(20_000)),
        )
    conn.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sqlite_verdicts_without_touching_the_file(sqlite_shop: Path) -> None:
    digest, mtime = _digest(sqlite_shop), os.stat(sqlite_shop).st_mtime_ns
    by_total = Candidate("SELECT id FROM orders WHERE total > ?", "orders", ("total",))
    verified, low, covered = explain_candidates(
        [BY_CUSTOMER, BY_STATUS, by_total], f"sqlite:///{sqlite_shop}"
    )
    assert verified.verdict == "verified", verified.reason
    assert verified.plan_before == "SCAN orders"
    assert verified.plan_after == "SEARCH orders USING INDEX the new index (customer_id=?)"
    assert verified.cost_before == 20_000 and verified.cost_after is not None and verified.cost_after < 30
    assert verified.create_index == (
        "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);"
    )
    assert low.verdict == "not suggested"  # 10 000 rows per status: not worth an index
    assert covered.verdict == "not suggested"
    assert covered.reason == "the existing index orders_by_total already covers (total)"
    assert (_digest(sqlite_shop), os.stat(sqlite_shop).st_mtime_ns) == (digest, mtime)
    assert not list(sqlite_shop.parent.glob("shop.db-*"))  # no journal nor WAL left behind


def test_sqlite_missing_file_is_one_line(tmp_path: Path) -> None:
    [verdict] = explain_candidates([BY_CUSTOMER], str(tmp_path / "nope.db"))
    assert verdict.verdict == "unverified"
    missing = tmp_path / "nope.db"
    assert verdict.reason == f"cannot open SQLite database {missing}: unable to open database file"
    assert not (tmp_path / "nope.db").exists()


def _slow_findings() -> DatabaseRules:
    rules = DatabaseRules()
    for _ in range(12):
        rules.add_call("SELECT id, total FROM orders WHERE customer_id = 42", 0.8, db_system="sqlite")
    return rules


def test_findings_are_labelled_by_their_verdict(sqlite_shop: Path) -> None:
    found = _slow_findings().recommendations()
    plain, verdicts = apply_verdicts(found, None)
    [candidate] = [r for r in plain if r.rule == "index_candidate"]
    assert candidate.title == "Index candidate on orders (customer_id) (unverified)"
    assert candidate.evidence.numbers["verdict"] == "unverified"

    checked, verdicts = apply_verdicts(found, str(sqlite_shop))
    [candidate] = [r for r in checked if r.rule == "index_candidate"]
    assert [v.verdict for v in verdicts] == ["verified"]
    assert candidate.title.startswith("Index on orders (customer_id): verified by the planner (cost -")
    assert candidate.action.startswith("CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders")
    assert candidate.evidence.numbers["cost_before"] == 20_000
    assert candidate.fingerprint == next(r for r in found if r.rule == "index_candidate").fingerprint
    # The other findings are untouched.
    assert [r for r in checked if r.rule != "index_candidate"] == [
        r for r in found if r.rule != "index_candidate"
    ]


def test_the_dsn_stays_out_of_the_options_repr() -> None:
    from amqadf_agent.analyzer.run import AnalysisOptions

    options = AnalysisOptions(paths=("x",), explain="postgresql://app:s3cret-pw@db/shop")
    assert "s3cret-pw" not in repr(options)
