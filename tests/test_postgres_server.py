"""The PostgreSQL the tests start (tests/support/postgres_server.py) is real and usable."""

from __future__ import annotations

import psycopg
from support.postgres_server import PostgresServer


def test_the_server_answers_sql_through_psycopg_and_psql(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database("support_check")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE t (id int primary key, v text)")
        conn.execute("INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 100) g")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert postgres_server.psql("SELECT count(*) FROM t", "support_check").strip() == "100"
    assert postgres_server.psql("SHOW server_version_num").strip() >= "150000"


def test_hypopg_is_available_for_hypothetical_indexes(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database("support_hypopg")
    assert postgres_server.has_hypopg, "apt-get install -y postgresql-15-hypopg (.ci/install-deps does)"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION hypopg")
        conn.execute("CREATE TABLE t (id int, v int)")
        row = conn.execute("SELECT indexname FROM hypopg_create_index('CREATE INDEX ON t (v)')").fetchone()
        assert row is not None and "t_v" in row[0]
