"""End to end: a real SQLAlchemy 2.0 ORM loop on SQLite under the agent, each lazy load inside its
own SAVEPOINT: the N+1 is found although SAVEPOINT and RELEASE statements come between its queries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, analyze_spans

APP = Path(__file__).resolve().parent / "apps" / "orm_savepoint_app.py"
ORDERS = 8


def test_n_plus_one_between_savepoints(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="orm")
    proc = subprocess.run(
        [sys.executable, str(APP), str(tmp_path / "app.db")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == [f"items={3 * ORDERS}", "app finished"], proc.stdout
    spans = [r for r in read(out / "traces.jsonl", strict=True) if type(r) is SpanRecord]
    statements = [str(s.attributes.get("db.statement", "")) for s in spans]
    assert sum(s.startswith("SAVEPOINT") for s in statements) >= ORDERS  # they are there, between
    # SQLite answers in microseconds: the time floor is lifted, the run detection is what is tested
    found = analyze_spans(spans, DatabaseRuleConfig(n_plus_one_min_total_s=0.0))
    n1 = [r for r in found if r.rule == "n_plus_one"]
    assert [r.subject.split(" FROM ")[1].split()[0] for r in n1] == ["items"], [r.subject for r in n1]
    assert int(n1[0].evidence.numbers["longest_run"]) >= ORDERS
    assert not [r for r in n1 if "SAVEPOINT" in r.subject]
