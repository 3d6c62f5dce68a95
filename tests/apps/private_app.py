"""An application for the privacy tests: zero-code start, SQL with a literal, its own logging.

It knows nothing of the agent: it configures logging with the defaults (stderr), writes an e-mail
address into a statement and logs inside its span; it prints the span's trace id, then "app finished".
"""

import amqadf_agent.auto  # noqa: F401, I001 - the first import: starts the agent and the instrumentations

import logging
import sqlite3

from opentelemetry import trace

EMAIL = "ann.secret@example.com"

logging.basicConfig(level=logging.INFO)
conn = sqlite3.connect(":memory:")
with trace.get_tracer("private-app").start_as_current_span("checkout") as span:
    logging.getLogger("private_app").info("charging the card")
    cursor = conn.cursor()
    cursor.execute("CREATE TABLE customers (email TEXT)")
    cursor.execute(f"INSERT INTO customers (email) VALUES ('{EMAIL}')")
    cursor.close()
    print(f"trace_id={span.get_span_context().trace_id:032x}")
conn.close()
print("app finished")
