"""The web bench's application: Flask with two endpoints, and nothing of the agent.

* ``GET /``: a small JSON answer (the framework and the server span alone);
* ``GET /db``: five queries on a SQLite file through ``sqlite3`` (the DB-API instrumentation's
  spans: a DB-heavy request).

Served by gunicorn (``gunicorn -k gthread -w 1 --threads 4 web_app:app``); the database is
``WEB_BENCH_DB`` (created and filled at import when missing).
"""

from __future__ import annotations

import os
import sqlite3
import threading

from flask import Flask, jsonify

DB = os.environ.get("WEB_BENCH_DB", "/tmp/amqadf-web-bench.db")
_local = threading.local()


def _seed() -> None:
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    if conn.execute("SELECT COUNT(*) FROM item").fetchone()[0] == 0:
        conn.executemany(
            "INSERT INTO item (name, price) VALUES (?, ?)", [(f"item-{i}", i * 1.5) for i in range(1000)]
        )
    conn.commit()
    conn.close()


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(DB)
    return conn


_seed()
app = Flask("web-bench")


@app.get("/")
def hello() -> object:
    return jsonify({"hello": "world"})


@app.get("/db")
def db() -> object:
    cursor = _conn().cursor()
    rows = []
    for i in range(5):
        cursor.execute("SELECT id, name, price FROM item WHERE id = ?", (i * 97 + 1,))
        rows.append(cursor.fetchone())
    return jsonify(rows)
