"""Span links carry attributes too: the processor gives them the span's rules.

A link made when the span starts (``links=[Link(...)]``) and one added later (``span.add_link``)
both reach the exporters with a statement's literals as ``?``, a URL without its password and query
values, and the user's ``redact_attributes`` as ``[secure]``: checked on the bytes of the agent's
file export, with the real SDK tracer provider the agent builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.trace import Link, SpanContext, TraceFlags
from support.sanitizing import sanitizing_provider

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.redaction import REDACTED

EMAIL = "ann.linked@example.com"
SIGNATURE = "linkedsignature0042"
PASSWORD = "hunter2-linked"
TOKEN = "Bearer tok-linked-9"
SECRETS = (EMAIL, SIGNATURE, PASSWORD, TOKEN)
STATEMENT = f"SELECT id FROM users WHERE email = '{EMAIL}'"
URL = f"https://ann:{PASSWORD}@bucket.example.com/r.pdf?X-Amz-Signature={SIGNATURE}"


def _context(span_id: int) -> SpanContext:
    return SpanContext(0x1234 << 64 | span_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def _attributes() -> dict[str, Any]:
    return {
        "db.statement": STATEMENT,
        "url.full": URL,
        "user.email": EMAIL,
        "http.request.header.authorization": TOKEN,
        "messaging.operation": "process",
    }


def _exported_links(directory: Path) -> list[dict[str, Any]]:
    """The attributes of every link in the agent's trace files, as plain values."""
    batches = [
        orjson.loads(line)
        for path in directory.glob("traces*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    links = [
        link
        for batch in batches
        for resource in batch["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
        for link in span.get("links", [])
    ]
    return [{a["key"]: next(iter(a["value"].values())) for a in link.get("attributes", [])} for link in links]


def _expected() -> dict[str, Any]:
    return {
        "db.statement": "SELECT id FROM users WHERE email = ?",
        "url.full": f"https://ann:{REDACTED}@bucket.example.com/r.pdf?X-Amz-Signature={REDACTED}",
        "user.email": REDACTED,
        "http.request.header.authorization": REDACTED,
        "messaging.operation": "process",
    }


@pytest.mark.parametrize("sanitize", [True, False])
def test_link_attributes_leave_by_the_spans_rules_in_the_file_export(tmp_path: Path, sanitize: bool) -> None:
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=tmp_path,
        self_metrics=False,
        resource_monitor=False,
        sanitize=sanitize,
        redact_attributes=["user.email", "authorization"],
    )
    assert agent.running, agent.error
    tracer = agent.tracer("test")
    with tracer.start_as_current_span("consume", links=[Link(_context(1), _attributes())]) as span:
        span.add_link(_context(2), _attributes())
    assert agent.shutdown()
    exported = b"".join(path.read_bytes() for path in sorted(tmp_path.rglob("*")) if path.is_file())
    links = _exported_links(tmp_path)
    assert len(links) == 2
    if sanitize:
        for secret in SECRETS:
            assert secret.encode() not in exported, secret
        assert links == [_expected(), _expected()]
    else:  # the off switch: the user's named keys still go, statements and URLs as written
        off = _expected() | {"db.statement": STATEMENT, "url.full": URL}
        assert links == [off, off]


def test_a_link_gets_no_marks_and_keeps_its_limits_and_dropped_count() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    provider, exporter = sanitizing_provider(SpanLimits(max_link_attributes=4))
    attributes = {"messaging.system": "kafka", "user.email": EMAIL, "db.statement": STATEMENT}
    attributes |= {"url.full": URL, "messaging.operation": "process"}  # five: the SDK drops the oldest
    with provider.get_tracer("t").start_as_current_span("consume", links=[Link(_context(1), attributes)]):
        pass
    ((link,),) = [span.links for span in exporter.get_finished_spans()]
    provider.shutdown()
    assert link.attributes["db.statement"] == "SELECT id FROM users WHERE email = ?"
    assert not {semconv.ATTR_DB_QUERY_SANITIZED, semconv.ATTR_DB_QUERY_SUMMARY} & set(link.attributes)
    assert link.dropped_attributes == 1
    assert link.attributes.maxlen == 4  # type: ignore[union-attr]


def test_a_link_without_those_attributes_is_left_as_it_is() -> None:
    provider, exporter = sanitizing_provider()
    with provider.get_tracer("t").start_as_current_span(
        "consume", links=[Link(_context(1), {"messaging.operation": "process"}), Link(_context(2))]
    ) as span:
        before = [link.attributes for link in span.links]
    ((first, second),) = [span.links for span in exporter.get_finished_spans()]
    provider.shutdown()
    assert first.attributes is before[0]
    assert second.attributes is before[1]
