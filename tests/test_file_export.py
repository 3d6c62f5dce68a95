"""The file exporter: OTLP JSON lines that the official decoder and our reader both read exactly."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto_json.collector.metrics.v1.metrics_service import ExportMetricsServiceRequest
from opentelemetry.proto_json.collector.trace.v1.trace_service import ExportTraceServiceRequest

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.analyzer.model import MetricRecord, SpanRecord
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.runtime.file_exporter import RotatingLineWriter

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
INT_TEXT = re.compile(r"-?[0-9]+")
#: About two flushed lines of 2 spans (~1.6 kB each, with the resource) per file.
MAX_BYTES = 4000
BACKUP = re.compile(r"traces-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}(\.\d+)?\.jsonl")


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path.name}: last line is not complete"
    lines = data.split(b"\n")[:-1]
    assert all(lines), f"{path.name}: empty line"
    return lines


def spans_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for rs in raw["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def hex_ids(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def records(*paths: Path) -> tuple[list[Any], ReadStats]:
    stats = ReadStats()
    out = list(read(list(paths), strict=True, stats=stats))
    return out, stats


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Any]:
    """An agent writing files; spans (parent/child, an event, attributes), a counter and a histogram."""
    agent = amqadf_agent.start(
        exporters=["file"], output_dir=tmp_path, service_name="file-test", self_metrics=False
    )
    assert agent.running, agent.error
    assert agent.output_dir == tmp_path
    tracer = agent.tracer("test.scope")
    with tracer.start_as_current_span("parent") as parent:
        parent.set_attribute("http.route", "/orders")
        parent.set_attribute("order.count", 7)
        parent.set_attribute("big.int", 2**62)
        with tracer.start_as_current_span("child") as child:
            child.add_event("retry", {"attempt": 2})
    meter = agent.meter("test.scope")
    meter.create_counter("orders.placed").add(5, {"region": "eu"})
    histogram = meter.create_histogram("orders.duration", unit="s")
    histogram.record(0.02)
    histogram.record(0.3)
    assert agent.shutdown()
    return {"dir": tmp_path, "parent": parent, "child": child}


def test_traces_file_is_otlp_json_lines(exported: dict[str, Any]) -> None:
    path = exported["dir"] / "traces.jsonl"
    lines = lines_of(path)
    assert lines
    raw_spans: dict[str, dict[str, Any]] = {}
    for line in lines:
        raw = orjson.loads(line)
        assert set(raw) == {"resourceSpans"}
        # The official decoder reads every line.
        request = ExportTraceServiceRequest.from_dict(raw)
        assert request.resource_spans
        decoded = {
            span.span_id.hex(): span
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }
        for span in spans_of(raw):
            raw_spans[span["spanId"]] = span
            # The decoder and the raw JSON agree on the ids: hex, not base64.
            assert decoded[span["spanId"]].trace_id.hex() == span["traceId"]
    parent_trace, parent_id = hex_ids(exported["parent"])
    child_trace, child_id = hex_ids(exported["child"])
    assert set(raw_spans) == {parent_id, child_id}

    parent = raw_spans[parent_id]
    child = raw_spans[child_id]
    for span in (parent, child):
        assert HEX32.fullmatch(span["traceId"])
        assert HEX16.fullmatch(span["spanId"])
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            assert isinstance(span[key], str) and INT_TEXT.fullmatch(span[key])
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
        assert isinstance(span["kind"], int)  # enums are numbers
    assert parent["traceId"] == parent_trace
    assert child["traceId"] == child_trace == parent_trace
    assert child["parentSpanId"] == parent_id
    assert not parent.get("parentSpanId")

    attrs = {a["key"]: a["value"] for a in parent["attributes"]}
    assert attrs["http.route"] == {"stringValue": "/orders"}
    assert attrs["order.count"] == {"intValue": "7"}  # int64 as a decimal string
    assert attrs["big.int"] == {"intValue": str(2**62)}
    [event] = child["events"]
    assert event["name"] == "retry"
    assert isinstance(event["timeUnixNano"], str)
    assert event["attributes"] == [kv("attempt", {"intValue": "2"})]


def test_metrics_file_is_otlp_json_lines(exported: dict[str, Any]) -> None:
    lines = lines_of(exported["dir"] / "metrics.jsonl")
    assert lines
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        raw = orjson.loads(line)
        assert set(raw) == {"resourceMetrics"}
        request = ExportMetricsServiceRequest.from_dict(raw)
        assert request.resource_metrics
        for rm in raw["resourceMetrics"]:
            resource = {a["key"]: a["value"] for a in rm["resource"]["attributes"]}
            assert resource[semconv.ATTR_SERVICE_NAME] == {"stringValue": "file-test"}
            assert isinstance(resource[semconv.ATTR_PROCESS_PID]["intValue"], str)
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    found[metric["name"]] = metric  # the last (cumulative) line wins

    counter = found["orders.placed"]["sum"]
    assert counter["isMonotonic"] is True
    assert counter["aggregationTemporality"] == 2  # cumulative, as an enum number
    [point] = counter["dataPoints"]
    assert point["asInt"] == "5"
    assert isinstance(point["startTimeUnixNano"], str) and isinstance(point["timeUnixNano"], str)
    assert point["attributes"] == [kv("region", {"stringValue": "eu"})]

    histogram = found["orders.duration"]
    assert histogram["unit"] == "s"
    [hpoint] = histogram["histogram"]["dataPoints"]
    assert hpoint["count"] == "2"
    assert all(isinstance(c, str) for c in hpoint["bucketCounts"])
    assert tuple(hpoint["explicitBounds"]) == semconv.SECONDS_BUCKETS
    assert hpoint["sum"] == pytest.approx(0.32)


def test_analyzer_reader_reads_the_agents_files(exported: dict[str, Any]) -> None:
    read_back, stats = records(exported["dir"])
    assert stats.problem_count == 0
    spans = {r.span_id: r for r in read_back if isinstance(r, SpanRecord)}
    _, parent_id = hex_ids(exported["parent"])
    trace_id, child_id = hex_ids(exported["child"])
    assert set(spans) == {parent_id, child_id}
    assert spans[child_id].parent_span_id == parent_id
    assert spans[child_id].trace_id == trace_id
    assert spans[parent_id].attributes["order.count"] == 7
    assert spans[parent_id].service == "file-test"
    assert spans[child_id].events[0].name == "retry"
    metrics = {r.name: r for r in read_back if isinstance(r, MetricRecord)}
    assert metrics["orders.placed"].points[-1].value == 5


def _collector_style(raw: dict[str, Any]) -> dict[str, Any]:
    """What the Collector's file exporter writes for the same data: extra fields the SDK leaves out."""
    out = orjson.loads(orjson.dumps(raw))
    for rs in out["resourceSpans"]:
        rs["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
        rs["resource"]["droppedAttributesCount"] = 0
        for ss in rs["scopeSpans"]:
            ss["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
            ss["scope"]["version"] = "1.0.0"
            for span in ss["spans"]:
                span["flags"] = 257
                span["droppedAttributesCount"] = 0
                span["droppedEventsCount"] = 0
                span["traceState"] = ""
                span.setdefault("parentSpanId", "")
    return out


def test_reader_reads_agent_and_collector_files_alike(exported: dict[str, Any], tmp_path: Path) -> None:
    agent_file = exported["dir"] / "traces.jsonl"
    collector_dir = tmp_path / "collector"
    collector_dir.mkdir()
    collector_file = collector_dir / "traces.json"
    collector_file.write_bytes(
        b"".join(orjson.dumps(_collector_style(orjson.loads(line))) + b"\n" for line in lines_of(agent_file))
    )
    # The hand-written file is itself valid OTLP JSON for the official decoder.
    for line in lines_of(collector_file):
        ExportTraceServiceRequest.from_dict(orjson.loads(line))

    def ids(path: Path) -> set[tuple[str, str, str]]:
        spans, stats = records(path)
        assert stats.problem_count == 0
        return {(s.trace_id, s.span_id, s.parent_span_id) for s in spans if isinstance(s, SpanRecord)}

    from_agent = ids(agent_file)
    from_collector = ids(collector_file)
    trace_id, child_id = hex_ids(exported["child"])
    _, parent_id = hex_ids(exported["parent"])
    assert from_agent == from_collector == {(trace_id, parent_id, ""), (trace_id, child_id, parent_id)}


def _make_spans(tmp_path: Path, count: int, max_backups: int) -> list[str]:
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=tmp_path,
        file_max_bytes=MAX_BYTES,
        file_max_backups=max_backups,
        self_metrics=False,
    )
    assert agent.running, agent.error
    tracer = agent.tracer("rotation")
    made = []
    for i in range(count):
        with tracer.start_as_current_span(f"span-{i}") as span:
            span.set_attribute("i", i)
        made.append(hex_ids(span)[1])
        if i % 2 == 1:
            assert agent.force_flush()  # one line of 2 spans
    assert agent.shutdown()
    return made


def _check_all_lines_complete(paths: list[Path]) -> None:
    for path in paths:
        for line in lines_of(path):
            ExportTraceServiceRequest.from_dict(orjson.loads(line))


def test_rotation_keeps_every_span_when_backups_suffice(tmp_path: Path) -> None:
    made = _make_spans(tmp_path, 40, max_backups=1000)
    backups = sorted(p for p in tmp_path.iterdir() if p.name.startswith("traces-"))
    assert len(backups) >= 5
    assert all(BACKUP.fullmatch(p.name) for p in backups), [p.name for p in backups]
    files = [*backups, tmp_path / "traces.jsonl"]
    _check_all_lines_complete(files)
    # A rotated file is rotated once it would pass the limit: one line may exceed it, two may not.
    for path in backups:
        assert len(lines_of(path)) == 1 or path.stat().st_size <= MAX_BYTES
    assert any(len(lines_of(path)) > 1 for path in backups)
    spans, stats = records(tmp_path)
    span_ids = [s.span_id for s in spans if isinstance(s, SpanRecord)]
    assert stats.problem_count == 0
    assert sorted(span_ids) == sorted(made)  # nothing lost, nothing twice


def test_rotation_prunes_to_max_backups(tmp_path: Path) -> None:
    made = _make_spans(tmp_path, 60, max_backups=3)
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("traces-")]
    assert 1 <= len(backups) <= 3
    assert all(BACKUP.fullmatch(p.name) for p in backups)
    files = [*backups, tmp_path / "traces.jsonl"]
    _check_all_lines_complete(files)
    in_files = sum(len(spans_of(orjson.loads(line))) for path in files for line in lines_of(path))
    spans, stats = records(tmp_path)
    span_ids = [s.span_id for s in spans if isinstance(s, SpanRecord)]
    assert stats.problem_count == 0
    assert len(span_ids) == in_files
    assert len(span_ids) < len(made)  # pruning removed the oldest
    assert len(set(span_ids)) == len(span_ids)
    assert set(span_ids) <= set(made)
    # What was kept is the newest: the last spans made are all there.
    assert set(made[-4:]) <= set(span_ids)
    assert made[0] not in span_ids


def test_rotating_writer_concurrent_writes_are_whole_lines(tmp_path: Path) -> None:
    writer = RotatingLineWriter(tmp_path, "lines", max_bytes=50_000, max_backups=1000)
    threads_n, per_thread = 8, 300
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                # Sizes up to ~9 kB: larger than PIPE_BUF, so atomicity is not free.
                payload = {"t": t, "i": i, "pad": "x" * ((t * 977 + i * 131) % 9000)}
                writer.write(orjson.dumps(payload) + b"\n")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert errors == []

    files = sorted(tmp_path.glob("lines*.jsonl"))
    assert len(files) > 1  # it rotated while the threads were writing
    seen = set()
    for path in files:
        for line in lines_of(path):
            obj = orjson.loads(line)
            key = (obj["t"], obj["i"])
            assert key not in seen
            seen.add(key)
            assert obj["pad"] == "x" * ((obj["t"] * 977 + obj["i"] * 131) % 9000)
    assert len(seen) == threads_n * per_thread


def test_rotating_writer_after_close_refuses(tmp_path: Path) -> None:
    writer = RotatingLineWriter(tmp_path, "closed", max_bytes=1000, max_backups=2)
    writer.write(b"{}\n")
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"{}\n")
    assert (tmp_path / "closed.jsonl").read_bytes() == b"{}\n"


def test_logs_file_is_otlp_json_lines_the_official_decoder_reads(tmp_path: Path) -> None:
    import logging

    from opentelemetry.proto_json.collector.logs.v1.logs_service import ExportLogsServiceRequest

    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=tmp_path,
        service_name="log-test",
        capture_logs=True,
        self_metrics=False,
    )
    assert agent.running, agent.error
    app = logging.getLogger("shop.orders")
    app.setLevel(logging.INFO)
    with agent.tracer("t").start_as_current_span("checkout") as span:
        app.warning("order %s declined", "o-17", extra={"order.total": 42})
    assert agent.shutdown()
    records = []
    for line in lines_of(tmp_path / "logs.jsonl"):
        raw = orjson.loads(line)
        assert set(raw) == {"resourceLogs"}
        request = ExportLogsServiceRequest.from_dict(raw)
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                records.extend(sl.log_records)
    [record] = [r for r in records if r.body is not None and "declined" in (r.body.string_value or "")]
    assert record.body.string_value == "order o-17 declined"
    assert record.severity_text == "WARN" and record.severity_number == 13  # SEVERITY_NUMBER_WARN
    # Correlated with the span it was logged in: the same ids, as bytes the decoder read from hex.
    trace_id, span_id = hex_ids(span)
    assert (record.trace_id.hex(), record.span_id.hex()) == (trace_id, span_id)
    attributes = {kv.key: kv.value for kv in record.attributes}
    assert attributes["order.total"].int_value == 42
