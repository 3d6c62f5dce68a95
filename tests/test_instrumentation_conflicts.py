"""A library outside its instrumentation's range: one line of ours that says so, and what to do.

SQLAlchemy 2.1 is outside the range of the SQLAlchemy instrumentation installed here (0.66b1:
``sqlalchemy >= 1.0.0, < 2.1.0``). Installing both versions in one environment is impossible, so a
directory with SQLAlchemy 2.1.0's metadata goes first on the path: OpenTelemetry's own check reads
that version (as it would a real 2.1.0) while the 2.0 package still imports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

import amqadf_agent
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.runtime.instrumentation_conflicts import describe

BIN = Path(sys.executable).parent
APP = """
import sqlalchemy
engine = sqlalchemy.create_engine("sqlite://")
with engine.connect() as conn:
    conn.execute(sqlalchemy.text("SELECT 1")).all()
"""


def _sqlalchemy_21(tmp_path: Path) -> Path:
    meta = tmp_path / "site" / "SQLAlchemy-2.1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: SQLAlchemy\nVersion: 2.1.0\n")
    return meta.parent


def _zero_code(tmp_path: Path, site: Path | None) -> tuple[str, int]:
    """(stderr, SQLAlchemy spans) of the app under ``amqadf-agent run``."""
    env = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    out = tmp_path / "telemetry"
    argv = [str(BIN / "amqadf-agent"), "run", "--exporter", "file", "--out", str(out), "--"]
    done = subprocess.run(
        [*argv, sys.executable, "-c", APP],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = [r for r in read(sorted(out.glob("traces*.jsonl"))) if isinstance(r, SpanRecord)]
    return done.stderr, sum(1 for s in spans if "sqlalchemy" in s.scope_name)


def test_zero_code_says_on_one_line_that_sqlalchemy_21_makes_no_spans(tmp_path: Path) -> None:
    stderr, spans = _zero_code(tmp_path, _sqlalchemy_21(tmp_path))
    [line] = [line for line in stderr.splitlines() if "sqlalchemy" in line.lower()]
    instrumentation = (
        f"opentelemetry-instrumentation-sqlalchemy {version('opentelemetry-instrumentation-sqlalchemy')}"
    )
    assert line.startswith("amqadf-agent: sqlalchemy 2.1.0 is installed, but " + instrumentation), line
    assert "supports only sqlalchemy >=1.0.0, <2.1.0" in line
    assert "make no spans" in line and "Install a sqlalchemy version in that range" in line
    assert "extra ==" not in line  # the requirement's marker is not the user's business
    assert spans == 0  # what the line says is true


def test_zero_code_with_a_supported_version_says_nothing(tmp_path: Path) -> None:
    stderr, spans = _zero_code(tmp_path, None)
    assert "sqlalchemy" not in stderr.lower(), stderr
    assert spans >= 1


def test_an_application_that_instruments_itself_gets_the_line_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path / "t", self_metrics=False)
    monkeypatch.syspath_prepend(str(_sqlalchemy_21(tmp_path)))
    try:
        with caplog.at_level(logging.ERROR):
            SQLAlchemyInstrumentor().instrument()
        assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    finally:
        SQLAlchemyInstrumentor().uninstrument()
        assert agent.shutdown()
    [record] = [r for r in caplog.records if "sqlalchemy" in r.getMessage()]
    assert record.getMessage().startswith("amqadf-agent: sqlalchemy 2.1.0 is installed, but the sqlalchemy")


def test_the_line_for_other_requirements() -> None:
    line = describe('psycopg >= 3.1.0; extra == "instruments"', "psycopg 3.0.18", "psycopg")
    assert line.startswith("amqadf-agent: psycopg 3.0.18 is installed, but ")
    assert "supports only psycopg >=3.1.0:" in line
    # an unparsable requirement is quoted as it is, never an error
    assert "supports only ???:" in describe("???", "thing 1.0")


def test_beside_opentelemetry_distro_choosing_ours_is_quiet_and_another_choice_still_warns(
    tmp_path: Path,
) -> None:
    assert version("opentelemetry-distro")  # installed with the test extra, as bootstrap suggests
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(
        OTEL_PYTHON_DISTRO="amqadf", AMQADF_OUTPUT_DIR=str(tmp_path / "t"), OTEL_TRACES_EXPORTER="none"
    )
    launcher = [str(BIN / "opentelemetry-instrument"), sys.executable, "-c", "pass"]
    quiet = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    # the user chose the other configurator: ours is skipped, and upstream says so
    env["OTEL_PYTHON_CONFIGURATOR"] = "configurator"
    told = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "Configuration of amqadf not loaded because configurator is set" in told.stderr, told.stderr
