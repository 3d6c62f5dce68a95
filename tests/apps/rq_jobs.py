"""Jobs for an RQ worker (tests/test_rq_worker.py): each one a span of its own around a sqlite3 query.

It knows nothing of the agent. RQ's default worker runs each job in a work horse forked for it.
"""

from __future__ import annotations

import sqlite3

from opentelemetry import trace


def lookup(n: int) -> int:
    with trace.get_tracer("rq_jobs").start_as_current_span(f"job {n}", kind=trace.SpanKind.CONSUMER):
        db = sqlite3.connect(":memory:")
        try:
            return int(db.execute("SELECT ? * 2", (n,)).fetchone()[0])
        finally:
            db.close()
