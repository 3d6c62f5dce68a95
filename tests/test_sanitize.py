"""Private by default: statements, URLs and named attributes leave the process without their values."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.sanitizing import sanitizing_provider

import amqadf_agent
from amqadf_agent import semconv, statements
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.redaction import REDACTED, redact_query, redact_url_full
from amqadf_agent.runtime import sanitize
from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor, values_digest
from amqadf_agent.runtime.settings import resolve

SANITIZED = semconv.ATTR_DB_QUERY_SANITIZED
DIGEST = semconv.ATTR_DB_QUERY_VALUES_DIGEST
CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "telemetry-contract.md"


# -- statements.sanitize ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sanitized"),
    [
        ("SELECT * FROM users WHERE email = 'ann@example.com'", "SELECT * FROM users WHERE email = ?"),
        ("SELECT 1 FROM cards WHERE pan = 4111111111111111", "SELECT ? FROM cards WHERE pan = ?"),
        (
            "SELECT a FROM t WHERE h = X'ff' AND b = 0x1F AND f = 1.5e3",
            "SELECT a FROM t WHERE h = ? AND b = ? AND f = ?",
        ),
        ("SELECT a FROM t WHERE d > DATE '2024-01-31'", "SELECT a FROM t WHERE d > DATE ?"),
        ("SELECT a FROM t WHERE id IN (1, 2, 3, 4)", "SELECT a FROM t WHERE id IN (?)"),
        ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')", "INSERT INTO t (a, b) VALUES (?, ?)"),
        ("SELECT a FROM t WHERE s = $$it's$$", "SELECT a FROM t WHERE s = ?"),
        ("SELECT a FROM t WHERE s = E'\\'x' AND n = N'ü'", "SELECT a FROM t WHERE s = ? AND n = ?"),
    ],
)
def test_sanitize_replaces_every_kind_of_literal(raw: str, sanitized: str) -> None:
    assert statements.sanitize(raw) == sanitized


def test_sanitize_keeps_bind_placeholders_and_identifiers_as_written() -> None:
    raw = 'SELECT "Email", `x1` FROM t WHERE a = %s AND b = $1 AND c = :name AND d = ? AND e = %(k)s'
    assert statements.sanitize(raw) == raw
    assert statements.sanitize_values(raw)[1:] == ((), True)


def test_sanitize_removes_comments_which_may_carry_anything() -> None:
    raw = "SELECT a FROM t /* user=ann@example.com */ WHERE b = 2 -- token 's3cr3t'"
    assert statements.sanitize(raw) == "SELECT a FROM t   WHERE b = ?"


def test_sanitize_of_a_non_ascii_statement_takes_the_same_literals_out() -> None:
    text, literals, placeholders = statements.sanitize_values("SELECT 'Zoë' FROM t WHERE n = ٣ AND m = %s")
    assert text == "SELECT ? FROM t WHERE n = ? AND m = %s"
    assert literals == ("'Zoë'", "٣")
    assert placeholders


def test_sanitize_memo_is_bounded_and_skips_long_statements() -> None:
    assert statements._sanitize_memo.cache_info().maxsize == 4096
    long_insert = "INSERT INTO t VALUES " + ", ".join(f"({n}, 'v{n}')" for n in range(2000))
    before = statements._sanitize_memo.cache_info().currsize
    assert statements.sanitize(long_insert) == "INSERT INTO t VALUES (?, ?)"
    assert statements._sanitize_memo.cache_info().currsize == before


# -- redaction ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "https://s3.amazonaws.com/b/k?AWSAccessKeyId=AKIAX&Signature=abc%3D&Expires=17",
            f"https://s3.amazonaws.com/b/k?AWSAccessKeyId={REDACTED}&Signature={REDACTED}&Expires={REDACTED}",
        ),
        (
            "https://ann:hunter2@db.example.com/x?sig=1",
            f"https://ann:{REDACTED}@db.example.com/x?sig={REDACTED}",
        ),
        ("/search?q=ann%40example.com&debug", f"/search?q={REDACTED}&debug"),
        (
            "https://app.example.com/cb#access_token=tok&state=1",
            f"https://app.example.com/cb#access_token={REDACTED}&state={REDACTED}",
        ),
        ("https://app.example.com/a?x=1#section", f"https://app.example.com/a?x={REDACTED}#section"),
        ("https://app.example.com/plain", "https://app.example.com/plain"),
    ],
)
def test_redact_url_full_takes_out_password_and_query_values_keeping_names(url: str, redacted: str) -> None:
    assert redact_url_full(url) == redacted


def test_redact_query_keeps_a_parameter_without_value() -> None:
    assert redact_query("X-Goog-Signature=ab;flag") == f"X-Goog-Signature={REDACTED};flag"


# -- the processor, through a real SDK tracer provider -----------------------------------------------


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(
        SanitizingSpanProcessor(redact_attributes=["authorization", "user.email", "app.secret.*"])
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _span(provider: TracerProvider, exporter: InMemorySpanExporter, **attributes: Any) -> ReadableSpan:
    exporter.clear()
    with provider.get_tracer("test").start_as_current_span("span") as span:
        for key, value in attributes.items():
            span.set_attribute(key.replace("__", "."), value)
    (finished,) = exporter.get_finished_spans()
    return finished


def test_statement_leaves_sanitized_and_marked(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    span = _span(*spans, db__system="sqlite", db__statement="SELECT * FROM u WHERE email = 'ann@example.com'")
    attrs = dict(span.attributes or {})
    assert attrs["db.statement"] == "SELECT * FROM u WHERE email = ?"
    assert attrs[SANITIZED] is True
    assert len(attrs[DIGEST]) == 16
    assert "ann@example.com" not in repr(attrs)


def test_both_statement_keys_are_sanitized(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    statement = "SELECT a FROM t WHERE id = 42"
    attrs = dict(_span(*spans, db__statement=statement, db__query__text=statement).attributes or {})
    assert attrs["db.statement"] == attrs["db.query.text"] == "SELECT a FROM t WHERE id = ?"


def test_values_digest_tells_same_values_from_other_values(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    def digest(statement: str) -> str:
        return str(dict(_span(*spans, db__statement=statement).attributes or {})[DIGEST])

    assert digest("SELECT a FROM t WHERE id = 42") == digest("SELECT a FROM t WHERE id = 42")
    assert digest("SELECT a FROM t WHERE id = 42") != digest("SELECT a FROM t WHERE id = 43")


def test_values_digest_is_keyed_so_a_short_value_cannot_be_found_by_hashing_candidates() -> None:
    unkeyed = statements.digest(["42"])
    assert values_digest(["42"]) != unkeyed
    assert values_digest(["42"]) != hashlib.blake2b(b"42", digest_size=8).hexdigest()


def test_captured_parameters_are_dropped_and_folded_into_the_digest(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    statement = "SELECT a FROM t WHERE email = ?"
    first = dict(
        _span(*spans, db__statement=statement, db__statement__parameters="('ann@example.com',)").attributes
        or {}
    )
    again = dict(
        _span(*spans, db__statement=statement, db__statement__parameters="('ann@example.com',)").attributes
        or {}
    )
    other = dict(
        _span(*spans, db__statement=statement, db__statement__parameters="('bob@example.com',)").attributes
        or {}
    )
    named = dict(
        _span(*spans, db__query__text=statement, db__query__parameter__0="ann@example.com").attributes or {}
    )
    assert "db.statement.parameters" not in first
    assert not any(key.startswith("db.query.parameter.") for key in named)
    assert first[DIGEST] == again[DIGEST] != other[DIGEST]
    assert DIGEST in named
    assert "ann@example.com" not in repr([first, named])


def test_placeholders_without_captured_values_get_no_digest(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    attrs = dict(_span(*spans, db__statement="SELECT a FROM t WHERE id = %s AND kind = 'x'").attributes or {})
    assert attrs["db.statement"] == "SELECT a FROM t WHERE id = %s AND kind = ?"
    assert attrs[SANITIZED] is True
    assert DIGEST not in attrs  # the values are only partly known: the analyzer must not call them equal


def test_a_statement_of_bind_placeholders_only_is_not_marked_sanitized(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    # Its values were never in the text: sanitizing took nothing the analyzer could have compared.
    attrs = dict(_span(*spans, db__statement="SELECT a FROM t WHERE id = ?").attributes or {})
    assert attrs["db.statement"] == "SELECT a FROM t WHERE id = ?"
    assert SANITIZED not in attrs and DIGEST not in attrs


def test_keep_db_parameters_keeps_them_as_captured() -> None:
    processor = SanitizingSpanProcessor(keep_db_parameters=True)
    out = processor.rewrite(
        {"db.statement": "SELECT a FROM t WHERE id = ?", "db.statement.parameters": "(7,)"}
    )
    assert out is not None
    assert out["db.statement.parameters"] == "(7,)"
    assert DIGEST in out


def _general_rule(processor: SanitizingSpanProcessor, attributes: dict[str, Any], key: str) -> dict[str, Any]:
    """What a span's one statement becomes by the general case of the rewrite (no memoized merge)."""
    rewritten = sanitize._rewrite(attributes[key])
    out = {**attributes, key: rewritten[0]}
    processor._statement(attributes, rewritten, out, True)
    return out


_STATEMENTS = [
    "SELECT a FROM t WHERE id = 42",
    "SELECT a FROM t WHERE id = ? AND kind = 'x'",
    "SELECT a FROM t WHERE id = ?",
    "BEGIN",
    "? ?",
]
_EXTRAS: list[dict[str, Any]] = [
    {},
    {"db.statement.parameters": "(7,)"},
    {"db.statement.parameters": ""},
    {"db.query.parameter.0": "ann@example.com"},
    {"x.db.query.parameter.": 1},  # looks like a parameter to the quick test, is none
    {semconv.ATTR_DB_QUERY_SUMMARY: "get t by id"},
    {DIGEST: "an instrumentation's own"},
]


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("key", ["db.statement", "db.query.text"])
@pytest.mark.parametrize("statement", _STATEMENTS)
@pytest.mark.parametrize("extra", _EXTRAS)
def test_a_memoized_statement_gives_what_the_general_rule_gives(
    keep: bool, key: str, statement: str, extra: dict[str, Any]
) -> None:
    processor = SanitizingSpanProcessor(keep_db_parameters=keep)
    attributes = {"db.system": "postgresql", key: statement, **extra}
    expected = _general_rule(processor, attributes, key)
    sanitize._statement_memo.pop(statement, None)
    first = processor.rewrite(attributes)  # a miss
    again = processor.rewrite(attributes)  # a hit
    assert first == again == expected


def test_the_statement_memo_is_bounded_and_skips_long_statements() -> None:
    processor = SanitizingSpanProcessor()
    for n in range(sanitize.STATEMENT_MEMO_MAX_ENTRIES + 10):
        processor.rewrite({"db.statement": f"SELECT a FROM t WHERE id = {n}"})
    assert 0 < len(sanitize._statement_memo) <= sanitize.STATEMENT_MEMO_MAX_ENTRIES
    long_statement = "SELECT a FROM t WHERE s = '" + "x" * statements.SANITIZE_MEMO_MAX_CHARS + "'"
    out = processor.rewrite({"db.statement": long_statement})
    assert out is not None and out["db.statement"] == "SELECT a FROM t WHERE s = ?"
    assert long_statement not in sanitize._statement_memo


def test_urls_and_named_attributes_are_redacted(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    attrs = dict(
        _span(
            *spans,
            url__full="https://ann:pw@api.example.com/v1?api_key=k123&page=2",
            http__url="https://api.example.com/v1?token=t456",
            http__target="/v1?token=t456",
            url__query="token=t456",
            http__request__header__authorization=("Bearer abc",),
            user__email="ann@example.com",
            app__secret__pin="1234",
            http__route="/v1",
        ).attributes
        or {}
    )
    assert (
        attrs["url.full"] == f"https://ann:{REDACTED}@api.example.com/v1?api_key={REDACTED}&page={REDACTED}"
    )
    assert attrs["http.url"] == f"https://api.example.com/v1?token={REDACTED}"
    assert attrs["http.target"] == f"/v1?token={REDACTED}"
    assert attrs["url.query"] == f"token={REDACTED}"
    assert attrs["http.request.header.authorization"] == REDACTED
    assert attrs["user.email"] == attrs["app.secret.pin"] == REDACTED
    assert attrs["http.route"] == "/v1"
    assert SANITIZED not in attrs  # not a db span


def test_a_span_without_those_attributes_is_left_alone(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("plain") as live:
        live.set_attribute("http.route", "/x")
    (span,) = exporter.get_finished_spans()
    assert span._attributes is live._attributes  # type: ignore[attr-defined]


def test_off_switch_restores_the_raw_text_but_still_redacts_named_attributes() -> None:
    processor = SanitizingSpanProcessor(sanitize=False, redact_attributes=["user.email"])
    raw = {"db.statement": "SELECT 1 WHERE e = 'x'", "url.full": "https://h/?sig=1", "user.email": "a@b"}
    assert processor.rewrite(raw) == {**raw, "user.email": REDACTED}
    assert SanitizingSpanProcessor(sanitize=False).rewrite(raw) is None


def test_a_failure_never_reaches_the_applications_span_end(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    processor = SanitizingSpanProcessor()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def broken(attributes: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(processor, "rewrite", broken)
    with provider.get_tracer("test").start_as_current_span("q") as span:
        span.set_attribute("db.statement", "SELECT 1")
    assert len(exporter.get_finished_spans()) == 1


def test_dropped_attribute_count_survives_the_rewrite() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    provider, exporter = sanitizing_provider(SpanLimits(max_span_attributes=3))
    with provider.get_tracer("test").start_as_current_span("q") as span:
        for n in range(4):
            span.set_attribute(f"a{n}", n)
        span.set_attribute("db.statement", "SELECT 1")
    (finished,) = exporter.get_finished_spans()
    assert finished.dropped_attributes >= 2
    assert dict(finished.attributes or {})["db.statement"] == "SELECT ?"


# -- settings and the agent ---------------------------------------------------------------------------


def test_settings_default_to_private_and_correlated() -> None:
    settings, problems = resolve(environ={})
    assert problems == []
    assert (settings.sanitize, settings.redact_attributes, settings.keep_db_parameters) == (True, (), False)
    assert settings.log_correlation is True


def test_settings_from_the_environment_and_a_production_config() -> None:
    environ = {
        "AMQADF_SANITIZE": "false",
        "AMQADF_REDACT_ATTRIBUTES": "user.email, authorization",
        "AMQADF_KEEP_DB_PARAMETERS": "true",
        "OTEL_PYTHON_LOG_CORRELATION": "false",
    }
    settings, problems = resolve(environ=environ)
    assert problems == []
    assert settings.sanitize is False
    assert settings.redact_attributes == ("user.email", "authorization")
    assert settings.keep_db_parameters is True
    assert settings.log_correlation is False
    config = ProductionConfig.from_env(environ=environ)
    assert config.to_agent_settings().redact_attributes == ("user.email", "authorization")
    assert config.telemetry.log_correlation is False


def test_a_bad_value_is_one_line_naming_the_variable() -> None:
    _, problems = resolve(environ={"AMQADF_SANITIZE": "maybe"})
    assert [str(problem) for problem in problems] == [
        "AMQADF_SANITIZE: must be true or false, got 'maybe'; using True"
    ]


def _exported_statements(directory: Path) -> list[dict[str, Any]]:
    found = []
    for path in directory.glob("traces*.jsonl"):
        for line in path.read_bytes().splitlines():
            for rs in orjson.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        found.append({a["key"]: next(iter(a["value"].values())) for a in span["attributes"]})
    return found


@pytest.mark.parametrize("sanitize", [True, False])
def test_the_agent_puts_the_processor_before_its_exporters(tmp_path: Path, sanitize: bool) -> None:
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=tmp_path, self_metrics=False, resource_monitor=False, sanitize=sanitize
    )
    assert agent.running, agent.error
    with agent.tracer("test").start_as_current_span("query") as span:
        span.set_attribute("db.system", "sqlite")
        span.set_attribute("db.statement", "SELECT a FROM t WHERE email = 'ann@example.com'")
    assert agent.shutdown()
    (attrs,) = _exported_statements(tmp_path)
    if sanitize:
        assert attrs["db.statement"] == "SELECT a FROM t WHERE email = ?"
        assert attrs[SANITIZED] is True
    else:
        assert attrs["db.statement"] == "SELECT a FROM t WHERE email = 'ann@example.com'"
        assert SANITIZED not in attrs


def test_the_contract_page_names_the_attributes() -> None:
    page = CONTRACT.read_text(encoding="utf-8")
    assert f"`{SANITIZED}`" in page
    assert f"`{DIGEST}`" in page


# -- the analyzer on sanitized statements --------------------------------------------------------------


def _db_spans(statements_and_extra: list[tuple[str, dict[str, Any]]], trace: str = "ab" * 16) -> list[Any]:
    from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, SpanRecord

    t0 = 1_700_000_000_000_000_000
    return [
        SpanRecord(
            trace,
            f"{n + 1:016x}",
            f"{n + 100:016x}",
            "SELECT",
            SPAN_KIND_CLIENT,
            t0 + n * 10**8,
            t0 + n * 10**8 + 10**6,
            0,
            "",
            {"db.system": "sqlite", "db.statement": sql, **extra},
            (),
            {"service.name": "shop"},
            "test",
        )
        for n, (sql, extra) in enumerate(statements_and_extra)
    ]


def _rules(spans: list[Any]) -> dict[str, Any]:
    from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, analyze_spans

    return {r.rule: r for r in analyze_spans(spans, DatabaseRuleConfig(min_db_spans=1))}


def _sanitized(statements: list[str]) -> list[tuple[str, dict[str, Any]]]:
    processor = SanitizingSpanProcessor()
    out = []
    for sql in statements:
        attrs = processor.rewrite({"db.statement": sql}) or {"db.statement": sql}
        out.append((attrs.pop("db.statement"), attrs))
    return out


def test_the_analyzer_finds_identical_repeats_of_sanitized_statements_by_their_digest() -> None:
    same = _rules(_db_spans(_sanitized(["SELECT a FROM cfg WHERE k = 'tenant-42'"] * 3)))
    assert same["repeated_identical"].subject == "SELECT a FROM cfg WHERE k = ?"
    assert "repeated_undecided" not in same
    different = _rules(_db_spans(_sanitized([f"SELECT a FROM cfg WHERE k = 'tenant-{n}'" for n in range(3)])))
    assert "repeated_identical" not in different
    assert "repeated_undecided" not in different


def test_the_analyzer_says_it_cannot_tell_when_sanitized_statements_carry_no_digest() -> None:
    stripped = [(sql, {SANITIZED: True}) for sql in ["SELECT a FROM cfg WHERE k = ?"] * 3]
    found = _rules(_db_spans(stripped))
    assert "repeated_identical" not in found
    undecided = found["repeated_undecided"]
    assert undecided.severity == "info"
    assert "cannot tell" in undecided.title
    assert undecided.evidence.numbers["max_repeats_in_trace"] == 3
    # bind placeholders of an unsanitized statement stay as they were: skipped, no finding at all
    assert not {"repeated_identical", "repeated_undecided"} & set(
        _rules(_db_spans([("SELECT a FROM cfg WHERE k = ?", {})] * 3))
    )
