"""Trace ids in the application's own log lines, without a handler the application did not ask for."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import amqadf_agent
from amqadf_agent.runtime import log_correlation
from amqadf_agent.runtime.log_correlation import SERVICE_NAME, SPAN_ID, TRACE_ID, TRACE_SAMPLED

structlog = pytest.importorskip("structlog")


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    factory = logging.getLogRecordFactory()
    yield
    log_correlation.uninstall()
    logging.setLogRecordFactory(factory)
    structlog.reset_defaults()


@pytest.fixture
def tracer() -> Iterator[Any]:
    provider = TracerProvider()
    yield provider.get_tracer("test")
    provider.shutdown()


def _ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@pytest.fixture
def stream() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    """A handler on the root logger, with no formatter: the logging module's default format."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield handler, buffer
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_record_inside_a_span_carries_its_ids_and_the_service(tracer: Any) -> None:
    log_correlation.install("shop")
    with tracer.start_as_current_span("request") as span:
        record = logging.getLogger("app").makeRecord("app", logging.INFO, __file__, 1, "hello", (), None)
    trace_id, span_id = _ids(span)
    assert (record.otelTraceID, record.otelSpanID, record.otelServiceName) == (trace_id, span_id, "shop")
    assert record.otelTraceSampled is True


def test_a_record_without_a_current_span_is_left_as_it_is() -> None:
    log_correlation.install("shop")
    record = logging.getLogger("app").makeRecord("app", logging.INFO, __file__, 1, "hello", (), None)
    assert not {TRACE_ID, SPAN_ID, SERVICE_NAME, TRACE_SAMPLED} & set(record.__dict__)


def test_the_default_format_shows_the_ids_inside_a_span_only(
    tracer: Any, stream: tuple[logging.Handler, io.StringIO]
) -> None:
    handler, buffer = stream
    log_correlation.install("shop")
    log = logging.getLogger("app.orders")
    log.info("outside")
    with tracer.start_as_current_span("request") as span:
        log.info("inside %d", 7)
    trace_id, span_id = _ids(span)
    assert buffer.getvalue().splitlines() == ["outside", f"[trace_id={trace_id} span_id={span_id}] inside 7"]
    log_correlation.uninstall()
    assert handler.formatter is None  # put back


def test_a_basic_config_handler_added_after_install_shows_them_too(tracer: Any) -> None:
    log_correlation.install("shop")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        with tracer.start_as_current_span("request") as span:
            logging.getLogger("app").warning("slow")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    trace_id, span_id = _ids(span)
    assert buffer.getvalue() == f"WARNING:app:[trace_id={trace_id} span_id={span_id}] slow\n"


def test_a_format_the_application_chose_is_left_alone_and_can_use_the_fields(
    tracer: Any, stream: tuple[logging.Handler, io.StringIO]
) -> None:
    handler, buffer = stream
    handler.setFormatter(logging.Formatter("%(levelname)s %(otelTraceID)s %(message)s"))
    log_correlation.install("shop")
    with tracer.start_as_current_span("request") as span:
        logging.getLogger("app").info("paid")
    assert buffer.getvalue() == f"INFO {_ids(span)[0]} paid\n"


class JsonFormatter(logging.Formatter):
    """A structured formatter, as python-json-logger's: every field of the record that is not standard."""

    STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in self.STANDARD}
        return json.dumps({"message": record.getMessage(), **fields})


def test_a_structured_formatter_gets_them_as_fields(
    tracer: Any, stream: tuple[logging.Handler, io.StringIO]
) -> None:
    handler, buffer = stream
    handler.setFormatter(JsonFormatter())
    log_correlation.install("shop")
    with tracer.start_as_current_span("request") as span:
        logging.getLogger("app").info("paid", extra={"order": 7})
    logging.getLogger("app").info("idle")
    inside, outside = (json.loads(line) for line in buffer.getvalue().splitlines())
    trace_id, span_id = _ids(span)
    assert inside == {
        "message": "paid",
        "order": 7,
        TRACE_ID: trace_id,
        SPAN_ID: span_id,
        SERVICE_NAME: "shop",
        TRACE_SAMPLED: True,
    }
    assert outside == {"message": "idle"}


def test_a_field_already_set_by_another_factory_is_not_written_twice(tracer: Any) -> None:
    previous = logging.getLogRecordFactory()

    def contrib_like(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.otelTraceID = "theirs"
        return record

    logging.setLogRecordFactory(contrib_like)
    log_correlation.install("shop")
    with tracer.start_as_current_span("request"):
        record = logging.getLogger("app").makeRecord("app", logging.INFO, __file__, 1, "x", (), None)
    assert record.otelTraceID == "theirs"
    log_correlation.uninstall()
    assert logging.getLogRecordFactory() is contrib_like


def test_structlog_events_get_trace_and_span_ids(tracer: Any) -> None:
    buffer = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer(sort_keys=True)],
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    log_correlation.install("shop")
    log = structlog.get_logger()
    with tracer.start_as_current_span("request") as span:
        log.info("paid", order=7)
    log.info("idle")
    inside, outside = (json.loads(line) for line in buffer.getvalue().splitlines())
    trace_id, span_id = _ids(span)
    assert inside == {"event": "paid", "order": 7, "trace_id": trace_id, "span_id": span_id}
    assert outside == {"event": "idle"}
    log_correlation.uninstall()
    assert log_correlation.structlog_processor not in structlog.get_config()["processors"]


def test_start_correlates_without_adding_a_handler_and_shutdown_puts_it_back(
    tmp_path: Path, stream: tuple[logging.Handler, io.StringIO]
) -> None:
    _, buffer = stream
    factory = logging.getLogRecordFactory()
    handlers = list(logging.getLogger().handlers)
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=tmp_path,
        service_name="shop",
        self_metrics=False,
        resource_monitor=False,
    )
    assert agent.running, agent.error
    assert logging.getLogger().handlers == handlers
    with agent.tracer("test").start_as_current_span("request") as span:
        logging.getLogger("app").info("paid")
    trace_id, span_id = _ids(span)
    assert buffer.getvalue() == f"[trace_id={trace_id} span_id={span_id}] paid\n"
    assert agent.shutdown()
    assert logging.getLogRecordFactory() is factory
    assert not log_correlation.installed()


def test_otel_python_log_correlation_false_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_LOG_CORRELATION", "false")
    factory = logging.getLogRecordFactory()
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=tmp_path, self_metrics=False, resource_monitor=False
    )
    assert agent.running, agent.error
    assert not log_correlation.installed()
    assert logging.getLogRecordFactory() is factory
    assert agent.shutdown()


def test_exported_log_records_keep_their_body_and_carry_the_ids_once(
    tmp_path: Path, stream: tuple[logging.Handler, io.StringIO]
) -> None:
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=tmp_path, self_metrics=False, resource_monitor=False, capture_logs=True
    )
    assert agent.running, agent.error
    with agent.tracer("test").start_as_current_span("request") as span:
        logging.getLogger("app").warning("paid %d", 7)
    assert agent.shutdown()
    records = [
        record
        for line in (tmp_path / "logs.jsonl").read_text().splitlines()
        for rl in json.loads(line)["resourceLogs"]
        for sl in rl["scopeLogs"]
        for record in sl["logRecords"]
    ]
    (record,) = [r for r in records if r["body"].get("stringValue") == "paid 7"]  # no prefix in the body
    assert record["traceId"].lower() == _ids(span)[0]
    assert not {TRACE_ID, SPAN_ID, SERVICE_NAME, TRACE_SAMPLED} & {
        a["key"] for a in record.get("attributes", [])
    }
