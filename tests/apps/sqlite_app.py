"""An application for the zero-code tests: sqlite3 through cursors and one manual span.

It knows nothing of the agent. It prints the distro/configurator variables it was started with
(so a test can see what a launcher put in its environment), then what it computed.
"""

from __future__ import annotations

import os
import sqlite3

from opentelemetry import trace

CREATE = "CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL)"
INSERT = "INSERT INTO fruit (name, qty) VALUES (?, ?)"
SELECT = "SELECT name, qty FROM fruit WHERE qty > ? ORDER BY name"
#: The manual span; every db span of the app is its child.
MANUAL_SPAN = "restock"


def main() -> None:
    for name in ("OTEL_PYTHON_DISTRO", "OTEL_PYTHON_CONFIGURATOR", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"):
        print(f"{name}={os.environ.get(name)}")
    try:  # installed with the test extra: our distro must skip it while the resource monitor reports
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    except ImportError:
        print("system_metrics=not installed")
    else:  # an instrumentor is a singleton: this is the one opentelemetry-instrument would have used
        print(f"system_metrics instrumented={SystemMetricsInstrumentor().is_instrumented_by_opentelemetry}")
    conn = sqlite3.connect(":memory:")
    try:
        with trace.get_tracer("zero-code-app").start_as_current_span(MANUAL_SPAN):
            cursor = conn.cursor()
            cursor.execute(CREATE)
            for fruit, qty in (("apple", 3), ("pear", 0), ("plum", 7)):
                cursor.execute(INSERT, (fruit, qty))
            cursor.execute(SELECT, (0,))
            rows = cursor.fetchall()
            cursor.close()
    finally:
        conn.close()
    print(f"rows={rows}")
    print("app finished")


if __name__ == "__main__":
    main()
