"""A forked child (gunicorn, multiprocessing) gets its own working agent: own file, own instance id."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import amqadf_agent
from amqadf_agent import semconv
from amqadf_agent.analyzer.model import MetricRecord, SpanRecord
from amqadf_agent.analyzer.otlp_reader import ReadStats, read


def read_records(path: Path) -> list[Any]:
    stats = ReadStats()
    records = list(read(path, strict=True, stats=stats))
    assert stats.problem_count == 0
    return records


def spans_in(path: Path) -> dict[str, SpanRecord]:
    return {r.name: r for r in read_records(path) if isinstance(r, SpanRecord)}


def start_file_agent(tmp_path: Path) -> Any:
    agent = amqadf_agent.start(exporters=["file"], output_dir=tmp_path, service_name="forky")
    assert agent.running, agent.error
    return agent


def child_work(span_name: str, counter_name: str, report: Path) -> None:
    """What the child does: a span, a metric, then the agent's shutdown (which flushes).

    It writes what its agent handle says its identity is to ``report`` (not a telemetry file name).
    """
    agent = amqadf_agent.get_agent()
    assert agent is not None and agent.running
    report.write_text(f"{os.getpid()} {agent.service_instance_id}")
    with agent.tracer("child").start_as_current_span(span_name) as span:
        span.set_attribute("pid", os.getpid())
    agent.meter("child").create_counter(counter_name).add(1)
    assert amqadf_agent.shutdown() is True


def test_a_child_that_exports_nothing_leaves_no_file(tmp_path: Path) -> None:
    # a child forked to exec, or one job's short-lived worker leaving through os._exit: no empty
    # traces.<pid>.jsonl, metrics.<pid>.jsonl, logs.<pid>.jsonl for each of them
    agent = start_file_agent(tmp_path)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert agent.shutdown()
    assert not [p.name for p in tmp_path.iterdir() if f".{pid}." in p.name]
    assert (tmp_path / "traces.jsonl").exists()  # the parent's, from its start


def test_os_fork_child_gets_its_own_file_and_instance_id(tmp_path: Path) -> None:
    agent = start_file_agent(tmp_path)
    parent_id = agent.service_instance_id
    assert parent_id
    tracer = agent.tracer("parent")
    with tracer.start_as_current_span("parent-before-fork"):
        pass
    assert agent.force_flush()

    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            child_work("child-span", "child.counter", tmp_path / "child-identity.txt")
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    with tracer.start_as_current_span("parent-after-fork"):
        pass
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert agent.running  # the child's shutdown did not stop the parent's agent
    assert agent.service_instance_id == parent_id
    assert agent.shutdown()

    child_file = tmp_path / f"traces.{pid}.jsonl"
    assert child_file.exists(), sorted(p.name for p in tmp_path.iterdir())
    child_spans = spans_in(child_file)
    assert set(child_spans) == {"child-span"}
    child_resource = child_spans["child-span"].resource
    child_id = child_resource[semconv.ATTR_SERVICE_INSTANCE_ID]
    assert child_id and child_id != parent_id
    assert child_resource[semconv.ATTR_SERVICE_NAME] == "forky"
    assert child_spans["child-span"].attributes["pid"] == pid

    parent_spans = spans_in(tmp_path / "traces.jsonl")
    assert set(parent_spans) == {"parent-before-fork", "parent-after-fork"}
    for span in parent_spans.values():
        assert span.resource[semconv.ATTR_SERVICE_INSTANCE_ID] == parent_id
        assert span.resource[semconv.ATTR_PROCESS_PID] == os.getpid()

    # The child's metrics are its own too, with its own identity.
    child_metrics = [
        r for r in read_records(tmp_path / f"metrics.{pid}.jsonl") if isinstance(r, MetricRecord)
    ]
    counters = [r for r in child_metrics if r.name == "child.counter"]
    assert counters
    assert all(r.resource[semconv.ATTR_SERVICE_INSTANCE_ID] == child_id for r in child_metrics)
    parent_metrics = [r for r in read_records(tmp_path / "metrics.jsonl") if isinstance(r, MetricRecord)]
    assert all(r.name != "child.counter" for r in parent_metrics)
    assert all(r.resource[semconv.ATTR_SERVICE_INSTANCE_ID] == parent_id for r in parent_metrics)

    # Reading the whole directory finds both processes, each span once.
    everything = [r for r in read_records(tmp_path) if isinstance(r, SpanRecord)]
    assert sorted(r.name for r in everything) == ["child-span", "parent-after-fork", "parent-before-fork"]

    # The child's telemetry says who the child is, and its agent handle agrees with it.
    assert child_resource[semconv.ATTR_PROCESS_PID] == pid
    assert (tmp_path / "child-identity.txt").read_text() == f"{pid} {child_id}"


def test_a_child_that_asks_for_the_first_logger_writes_its_own_logs_file(tmp_path: Path) -> None:
    # Without capture_logs the logger provider builds the log SDK at the first logger: in the child
    # here, after the fork, and in the parent after that; each writes its own file.
    agent = start_file_agent(tmp_path)
    from opentelemetry._logs import LogRecord

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            agent.logger_provider.get_logger("child").emit(LogRecord(body="from the child"))
            assert amqadf_agent.shutdown() is True
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    agent.logger_provider.get_logger("parent").emit(LogRecord(body="from the parent"))
    assert agent.shutdown()
    child = (tmp_path / f"logs.{pid}.jsonl").read_text()
    parent = (tmp_path / "logs.jsonl").read_text()
    assert "from the child" in child and "from the parent" not in child
    assert "from the parent" in parent and "from the child" not in parent


def _process_target(report: Path) -> None:
    child_work("mp-child-span", "mp.counter", report)


def test_multiprocessing_fork_process_gets_its_own_agent(tmp_path: Path) -> None:
    agent = start_file_agent(tmp_path)
    parent_id = agent.service_instance_id
    with agent.tracer("parent").start_as_current_span("parent-span"):
        pass

    process = multiprocessing.get_context("fork").Process(
        target=_process_target, args=(tmp_path / "child-identity.txt",)
    )
    process.start()
    process.join(30)
    assert process.exitcode == 0
    child_pid = process.pid
    assert child_pid is not None
    assert agent.shutdown()

    child_spans = spans_in(tmp_path / f"traces.{child_pid}.jsonl")
    assert set(child_spans) == {"mp-child-span"}
    resource = child_spans["mp-child-span"].resource
    assert resource[semconv.ATTR_SERVICE_INSTANCE_ID] != parent_id

    parent_spans = spans_in(tmp_path / "traces.jsonl")
    # The span still queued in the parent at fork time is exported once, by the parent only.
    assert set(parent_spans) == {"parent-span"}
    assert parent_spans["parent-span"].resource[semconv.ATTR_SERVICE_INSTANCE_ID] == parent_id
    assert parent_spans["parent-span"].resource[semconv.ATTR_PROCESS_PID] == os.getpid()

    # The child's telemetry says who the child is, and its agent handle agrees with it.
    assert resource[semconv.ATTR_PROCESS_PID] == child_pid
    assert (tmp_path / "child-identity.txt").read_text() == (
        f"{child_pid} {resource[semconv.ATTR_SERVICE_INSTANCE_ID]}"
    )


# --- children that never call shutdown(): multiprocessing ends them with os._exit, not atexit ----------

SPANS_PER_CHILD = 200


def _spans_in_children(tmp_path: Path) -> int:
    """Spans exported by processes other than this one (each writes traces.<pid>.jsonl)."""
    total = 0
    for path in tmp_path.glob("traces.*.jsonl"):
        if path.stat().st_size == 0:  # a child that exported nothing
            continue
        total += sum(1 for r in read_records(path) if isinstance(r, SpanRecord))
    return total


def _make_spans(count: int) -> int:
    """A child's work: ``count`` spans, and nothing about the agent."""
    tracer = amqadf_agent.get_agent().tracer("child")  # type: ignore[union-attr]
    for i in range(count):
        with tracer.start_as_current_span("child-work") as span:
            span.set_attribute("i", i)
    return count


def _quiet_file_agent(tmp_path: Path) -> Any:
    # Nothing is exported on a timer: what reaches the files is what the children's exit flushed
    # (or what filled a batch of 512 on its own). The queue holds all 6,000 spans: these tests are
    # about the exit, not about a worker that makes spans faster than a busy disk takes them.
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=tmp_path,
        service_name="forky",
        span_export_delay=60,
        metric_interval=60,
        max_queue_size=8192,
    )
    assert agent.running, agent.error
    return agent


def test_multiprocessing_children_export_their_spans_without_calling_shutdown(tmp_path: Path) -> None:
    agent = _quiet_file_agent(tmp_path)
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_make_spans, args=(SPANS_PER_CHILD,)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert agent.shutdown()
    assert sorted(p.name for p in tmp_path.glob("traces.*.jsonl")) == sorted(
        f"traces.{process.pid}.jsonl" for process in processes
    )
    assert _spans_in_children(tmp_path) == 3 * SPANS_PER_CHILD


def test_pool_workers_export_their_spans_when_the_pool_is_closed(tmp_path: Path) -> None:
    agent = _quiet_file_agent(tmp_path)
    pool = multiprocessing.get_context("fork").Pool(3)
    assert sum(pool.map(_make_spans, [SPANS_PER_CHILD] * 30, chunksize=1)) == 6000
    pool.close()
    pool.join()
    assert agent.shutdown()
    assert _spans_in_children(tmp_path) == 6000


def test_pool_workers_export_their_spans_when_the_with_block_terminates_the_pool(tmp_path: Path) -> None:
    agent = _quiet_file_agent(tmp_path)
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(3) as pool:  # __exit__ is terminate(): SIGTERM
        assert sum(pool.map(_make_spans, [SPANS_PER_CHILD] * 30, chunksize=1)) == 6000
    assert time.monotonic() - started < 30  # the workers died (none waits forever on the queue lock)
    assert agent.shutdown()
    assert _spans_in_children(tmp_path) == 6000


def _make_spans_then_wait(count: int, made: Any) -> None:
    _make_spans(count)
    made.set()
    time.sleep(60)


def test_terminate_of_a_plain_process_stays_the_default_action(tmp_path: Path) -> None:
    _quiet_file_agent(tmp_path)
    context = multiprocessing.get_context("fork")
    made = context.Event()
    process = context.Process(target=_make_spans_then_wait, args=(SPANS_PER_CHILD, made))
    process.start()
    assert made.wait(30)
    process.terminate()
    process.join(30)
    assert process.exitcode == -signal.SIGTERM


def _span_then_busy_in_c(_: int) -> None:
    _make_spans(1)
    hashlib.pbkdf2_hmac("sha256", b"key", b"salt", 50_000_000)  # seconds in C, the GIL released


def test_pool_worker_busy_in_c_when_terminated_exports_and_dies_of_sigterm(tmp_path: Path) -> None:
    # The handler cannot run while the main thread is in C: the watcher thread shuts down instead.
    agent = _quiet_file_agent(tmp_path)
    pool = multiprocessing.get_context("fork").Pool(2)
    pool.map_async(_span_then_busy_in_c, [1, 2], chunksize=1)
    time.sleep(1.5)  # both tasks have made their span and are in C
    started = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - started < 10
    assert [worker.exitcode for worker in pool._pool] == [-signal.SIGTERM] * 2  # type: ignore[attr-defined]
    assert agent.shutdown()
    assert _spans_in_children(tmp_path) == 2


def _exit_on_sigterm(signum: int, frame: object) -> None:
    with open(os.environ["AMQADF_TEST_HANDLER_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")
    raise SystemExit(3)


def _make_spans_with_own_sigterm_handler(count: int) -> tuple[int, int]:
    """``(this worker's pid, spans made)``: a worker that never ran this has no handler of its own."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return os.getpid(), _make_spans(count)


def test_pool_workers_with_their_own_sigterm_handler_export_and_keep_its_exit(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # The task's handler raises SystemExit wherever the signal finds the worker, the middle of
    # multiprocessing's finalizers included: the flush still completes, the handler runs once in each
    # worker it ends, and that worker ends with the handler's exit code (the agent kills nothing).
    handler_log = tmp_path / "handler.log"
    monkeypatch.setenv("AMQADF_TEST_HANDLER_LOG", str(handler_log))
    out = tmp_path / "out"
    agent = _quiet_file_agent(out)
    pids: list[int] = []
    for _ in range(3):  # where SIGTERM lands varies from round to round
        with multiprocessing.get_context("fork").Pool(3) as pool:
            results = pool.map(_make_spans_with_own_sigterm_handler, [SPANS_PER_CHILD] * 30, chunksize=1)
            workers = list(pool._pool)  # type: ignore[attr-defined]
        assert sum(made for _, made in results) == 6000
        ran = {pid for pid, _ in results}
        for worker in workers:
            worker.join(30)
        for worker in workers:
            # 0: the worker took the pool's stop sentinel and left before the signal came (timing); a
            # worker the others left no task to (a busy machine) never set the handler: the signal's
            # default, as without the agent
            expected = {0, 3} if worker.pid in ran else {0, -signal.SIGTERM}
            assert worker.exitcode in expected, (worker.pid, worker.exitcode, ran)
        pids += [worker.pid for worker in workers if worker.exitcode == 3]
    assert pids  # the handler's exit was kept in at least one of nine workers
    assert agent.shutdown()
    assert _spans_in_children(out) == 3 * 6000
    assert sorted(int(pid) for pid in handler_log.read_text().split()) == sorted(pids)
