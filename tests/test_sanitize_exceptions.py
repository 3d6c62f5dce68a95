"""Values a database error puts in an exception message do not leave in exception events, span
statuses or captured log records; a message without a statement or a key's value is left as it is."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from support.sanitizing import sanitizing_provider

import amqadf_agent
from amqadf_agent.runtime.sanitize import sanitize_message

EMAIL = "ann.secret@example.com"
#: What psycopg says when a unique key is taken.
PSYCOPG = (
    'duplicate key value violates unique constraint "users_email_key"\n'
    f"DETAIL:  Key (email)=({EMAIL}) already exists."
)


class UniqueViolation(Exception):
    pass


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            PSYCOPG,
            'duplicate key value violates unique constraint "users_email_key"\n'
            "DETAIL:  Key (email)=(?) already exists.",
        ),
        (
            "(sqlite3.IntegrityError) UNIQUE constraint failed: users.email\n"
            f"[SQL: INSERT INTO users (email, n) VALUES (?, 5)]\n[parameters: ('{EMAIL}', 3)]",
            "(sqlite3.IntegrityError) UNIQUE constraint failed: users.email\n"
            "[SQL: INSERT INTO users (email, n) VALUES (?, ?)]\n[parameters: [secure]]",
        ),
        (
            f"syntax error at or near \"FORM\"\nLINE 1: SELECT * FORM users WHERE email = '{EMAIL}'",
            'syntax error at or near "FORM"\nLINE 1: SELECT * FORM users WHERE email = ?',
        ),
        (
            f"lookup failed: SELECT id FROM users WHERE email = '{EMAIL}'",
            "lookup failed: SELECT id FROM users WHERE email = ?",
        ),
        # A block without its closing bracket runs to the end; a key's value to the line's last ")".
        (f"[SQL: SELECT 1 FROM t WHERE e = '{EMAIL}'", "[SQL: SELECT ? FROM t WHERE e = ?"),
        (f"k=({EMAIL} and on", "k=(?)"),
        ('Key (a, b)=(1, f(2)) is not present in "t".', 'Key (a, b)=(?) is not present in "t".'),
        # A statement too long for the tokenizer's time to stay in bounds is replaced whole.
        ("LINE 1: SELECT " + "[x " * 3000, "LINE 1: [secure]"),
        # No statement and no key's value: left as it is (the rule is conservative).
        ("UNIQUE constraint failed: users.email", "UNIQUE constraint failed: users.email"),
        (f"could not mail {EMAIL}", f"could not mail {EMAIL}"),
        ("select the 3 'best' ones", "select the 3 'best' ones"),
    ],
)
def test_sanitize_message(message: str, expected: str) -> None:
    assert sanitize_message(message) == expected


def test_exception_events_and_status_lose_the_values() -> None:
    provider, exporter = sanitizing_provider()
    tracer = provider.get_tracer("test")
    with pytest.raises(UniqueViolation), tracer.start_as_current_span("insert"):
        raise UniqueViolation(PSYCOPG)
    (span,) = exporter.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert "Key (email)=(?) already exists." in str(event.attributes["exception.message"])
    assert "Key (email)=(?) already exists." in str(event.attributes["exception.stacktrace"])
    assert event.attributes["exception.type"].endswith("UniqueViolation")  # type: ignore[union-attr]
    assert span.status.description is not None and "Key (email)=(?)" in span.status.description
    assert EMAIL not in repr(span.to_json())


def test_a_real_sqlite3_check_failure_loses_its_literal_and_keeps_its_words() -> None:
    provider, exporter = sanitizing_provider()
    tracer = provider.get_tracer("test")
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE users (email TEXT UNIQUE CHECK (email <> '{EMAIL}'))")
    db.execute("INSERT INTO users VALUES ('a@example.org')")
    with tracer.start_as_current_span("insert"):
        for value in (EMAIL, "a@example.org"):
            try:
                db.execute("INSERT INTO users VALUES (?)", (value,))
            except sqlite3.IntegrityError as exc:
                trace.get_current_span().record_exception(exc)  # as an instrumentation does
    (span,) = exporter.get_finished_spans()
    messages = [str(e.attributes["exception.message"]) for e in span.events if e.attributes]
    assert messages == ["CHECK constraint failed: email <> ?", "UNIQUE constraint failed: users.email"]
    assert EMAIL not in span.to_json()


def test_the_off_switch_keeps_the_message() -> None:
    provider, exporter = sanitizing_provider(sanitize=False)
    tracer = provider.get_tracer("test")
    with pytest.raises(UniqueViolation), tracer.start_as_current_span("insert"):
        raise UniqueViolation(PSYCOPG)
    (span,) = exporter.get_finished_spans()
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.message"] == PSYCOPG


def _log_files(out: Path) -> str:
    return "".join(path.read_text() for path in sorted(out.rglob("logs*.jsonl")))


def _capturing_agent(out: Path, **settings: Any) -> Any:
    """An agent that exports the application's log records to files under ``out``."""
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=out,
        service_name="shop",
        resource_monitor=False,
        capture_logs=True,
        **settings,
    )
    assert agent.running, agent.error
    return agent


def test_captured_log_records_are_sanitized_and_redacted(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    agent = _capturing_agent(out, redact_attributes=["user.email"])
    log = logging.getLogger("shop.orders")
    try:
        try:
            raise UniqueViolation(PSYCOPG)
        except UniqueViolation as exc:
            log.error("insert failed: %s", exc, exc_info=True, extra={"user.email": EMAIL})
        log.warning("order %s paid", 42, extra={"order.id": 42})
    finally:
        assert agent.shutdown()
    exported = _log_files(out)
    assert "insert failed" in exported and "Key (email)=(?) already exists." in exported
    assert "[secure]" in exported  # the user's attribute
    assert "order 42 paid" in exported  # a line without values of a database is left as it is
    assert EMAIL not in exported


def test_captured_log_records_keep_their_text_with_sanitize_off(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    agent = _capturing_agent(out, sanitize=False)
    try:
        logging.getLogger("shop.orders").error("insert failed: %s", PSYCOPG)
    finally:
        assert agent.shutdown()
    assert EMAIL in _log_files(out)
