"""A Celery worker application: order summaries with an N+1 over sqlite3, and a healthy ping task.

It knows nothing of the agent. ``orders.summarize`` reads an order's item ids, then each item's
quantity with a query of its own (the N+1: ``ITEMS`` queries a task), through sqlite3's connection
shortcut ``conn.execute``; ``health.ping`` does nothing. The broker is ``CELERY_BROKER`` (a Redis
URL), the database ``ORDERS_DB`` (``seed()`` creates it). Run as a user runs a worker:
``celery -A celery_app worker --pool prefork``, under ``amqadf-agent run``.
"""

from __future__ import annotations

import os
import sqlite3
import time

from celery import Celery

ORDERS = 10
ITEMS = 25
#: The N+1's statement, as the spans carry it.
ITEM_QUERY = "SELECT qty FROM items WHERE id = ?"

app = Celery("shop", broker=os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)


def _database() -> str:
    return os.environ.get("ORDERS_DB", "orders.db")


def seed() -> None:
    conn = sqlite3.connect(_database())
    conn.executescript(
        """
        DROP TABLE IF EXISTS items;
        CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER, sku TEXT, qty INTEGER);
        """
    )
    rows = [(order, f"sku-{n}", n) for order in range(1, ORDERS + 1) for n in range(ITEMS)]
    conn.executemany("INSERT INTO items (order_id, sku, qty) VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(_database())
    # SQLite answers from the page cache in microseconds; a database over a network takes
    # milliseconds a query, what makes an N+1 cost time: every 4 VM steps wait 1 ms.
    conn.set_progress_handler(lambda: time.sleep(0.001) or 0, 4)
    return conn


@app.task(name="orders.summarize")
def summarize(order_id: int) -> int:
    conn = _connect()
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM items WHERE order_id = ?", (order_id,))]
        return sum(conn.execute(ITEM_QUERY, (item,)).fetchone()[0] for item in ids)  # the N+1
    finally:
        conn.close()


@app.task(name="health.ping")
def ping() -> str:
    return "pong"
