"""Zero-code start: ``opentelemetry-instrument`` with our distro, ``amqadf-agent run``, ``amqadf_agent.auto``.

Each test runs a real application (``tests/apps/sqlite_app.py``: sqlite3 through cursors and one
manual span) in a fresh interpreter, with an environment cleared of every ``AMQADF_*``/``OTEL_*``
variable, and reads what it exported with the analyzer's own OTLP JSON reader.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from amqadf_agent import semconv
from amqadf_agent.analyzer.model import SPAN_KIND_CLIENT, MetricRecord, SpanRecord
from amqadf_agent.analyzer.otlp_reader import read

VENV_BIN = Path(sys.executable).parent
APPS = Path(__file__).resolve().parent / "apps"
SQLITE_APP = APPS / "sqlite_app.py"
TIMEOUT = 60


def _load_app_module() -> ModuleType:
    """The app's module, for the statements it runs (loaded from its file, not from sys.path)."""
    spec = importlib.util.spec_from_file_location("_zero_code_sqlite_app", SQLITE_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sqlite_app = _load_app_module()

#: What the app prints when nothing went wrong.
APP_OUTPUT_TAIL = ["rows=[('apple', 3), ('plum', 7)]", "app finished"]


def clean_env(**values: str) -> dict[str, str]:
    """os.environ without any AMQADF_*/OTEL_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    env.update(values)
    return env


def run(argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def spans_in(directory: Path) -> list[SpanRecord]:
    return [r for r in read(directory / "traces.jsonl", strict=True) if isinstance(r, SpanRecord)]


def metrics_in(directory: Path) -> list[MetricRecord]:
    return [r for r in read(directory / "metrics.jsonl", strict=True) if isinstance(r, MetricRecord)]


def _statement(span: SpanRecord) -> object:
    return span.attributes.get(semconv.ATTR_DB_QUERY_TEXT, span.attributes.get(semconv.ATTR_DB_STATEMENT_OLD))


def _db_system(span: SpanRecord) -> object:
    return span.attributes.get(semconv.ATTR_DB_SYSTEM_NAME, span.attributes.get(semconv.ATTR_DB_SYSTEM_OLD))


def assert_app_ran(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2:] == APP_OUTPUT_TAIL, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines


def assert_db_spans(directory: Path, service: str) -> list[SpanRecord]:
    """The app's db client spans landed, children of its manual span, from our distro's resource."""
    spans = spans_in(directory)
    manual = [s for s in spans if s.name == sqlite_app.MANUAL_SPAN]
    assert len(manual) == 1, [s.name for s in spans]
    db = [s for s in spans if s.kind == SPAN_KIND_CLIENT and _db_system(s) == "sqlite"]
    statements = [_statement(s) for s in db]
    assert statements.count(sqlite_app.CREATE) == 1, statements
    assert statements.count(sqlite_app.INSERT) == 3, statements
    assert statements.count(sqlite_app.SELECT) == 1, statements
    for span in db:
        assert span.trace_id == manual[0].trace_id
        assert span.parent_span_id == manual[0].span_id
        assert span.scope_name == "opentelemetry.instrumentation.sqlite3"
    for span in spans:
        assert span.resource[semconv.ATTR_SERVICE_NAME] == service
        assert span.resource[semconv.ATTR_TELEMETRY_DISTRO_NAME] == semconv.DISTRO_NAME
        assert span.resource[semconv.ATTR_SERVICE_INSTANCE_ID]
    return spans


def test_opentelemetry_instrument_with_our_distro(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = clean_env(
        OTEL_PYTHON_DISTRO="amqadf",
        OTEL_PYTHON_CONFIGURATOR="amqadf",
        AMQADF_OUTPUT_DIR=str(out),
        OTEL_SERVICE_NAME="zc",
    )
    proc = run([str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(SQLITE_APP)], env, tmp_path)
    assert_app_ran(proc)
    assert proc.stderr.strip() == ""
    assert_db_spans(out, "zc")
    # The exit flush also wrote the agent's metrics, under the same resource.
    metrics = metrics_in(out)
    assert metrics
    assert {m.service for m in metrics} == {"zc"}


def test_the_contrib_system_metrics_instrumentation_is_skipped_while_the_monitor_reports(
    tmp_path: Path,
) -> None:
    # It reports system.* and process.* under the agent's own names: every series would come twice.
    auto = "import amqadf_agent.auto, runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    launchers = {
        "opentelemetry-instrument": [str(VENV_BIN / "opentelemetry-instrument"), sys.executable],
        "amqadf_agent.auto": [sys.executable, "-c", auto],
    }
    for launcher, argv in launchers.items():
        for monitor, instrumented in (("true", False), ("false", True)):
            env = clean_env(
                OTEL_PYTHON_DISTRO="amqadf",
                AMQADF_OUTPUT_DIR=str(tmp_path / launcher / monitor),
                AMQADF_RESOURCE_MONITOR=monitor,
                OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="redis",
            )
            lines = assert_app_ran(proc := run([*argv, str(SQLITE_APP)], env, tmp_path))
            assert f"system_metrics instrumented={instrumented}" in lines, (launcher, monitor, proc.stdout)
            # the environment the app (and its subprocesses) sees is the user's
            assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis" in lines, (launcher, monitor, proc.stdout)
            assert proc.stderr.strip() == "", (launcher, monitor)


def test_selecting_the_distro_alone_selects_our_configurator(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = clean_env(OTEL_PYTHON_DISTRO="amqadf", AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="distro-only")
    proc = run([str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(SQLITE_APP)], env, tmp_path)
    lines = assert_app_ran(proc)
    assert "OTEL_PYTHON_CONFIGURATOR=amqadf" in lines
    assert_db_spans(out, "distro-only")


def test_amqadf_agent_run_overrides_another_distro(tmp_path: Path) -> None:
    env = clean_env(
        OTEL_PYTHON_DISTRO="other",
        OTEL_PYTHON_CONFIGURATOR="other",
        OTEL_SERVICE_NAME="zc",
    )
    argv = [
        str(VENV_BIN / "amqadf-agent"),
        "run",
        "--exporter",
        "file",
        "--out",
        "telemetry-run",  # relative: to the caller's working directory
        "--",
        sys.executable,
        str(SQLITE_APP),
    ]
    proc = run(argv, env, tmp_path)
    lines = assert_app_ran(proc)
    assert "OTEL_PYTHON_DISTRO=amqadf" in lines, proc.stdout
    assert "OTEL_PYTHON_CONFIGURATOR=amqadf" in lines, proc.stdout
    assert proc.stderr.strip() == ""
    assert_db_spans(tmp_path / "telemetry-run", "zc")


def test_amqadf_agent_run_passes_the_exit_code_through(tmp_path: Path) -> None:
    argv = [
        str(VENV_BIN / "amqadf-agent"),
        "run",
        "--out",
        str(tmp_path / "t"),
        "--",
        sys.executable,
        "-c",
        "import sys; print('bye'); sys.exit(3)",
    ]
    proc = run(argv, clean_env(), tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "bye"


def test_import_amqadf_agent_auto_first(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = clean_env(AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="auto-app")
    proc = run([sys.executable, str(APPS / "auto_app.py")], env, tmp_path)
    assert_app_ran(proc)
    assert proc.stderr.strip() == ""
    assert_db_spans(out, "auto-app")


def test_import_amqadf_agent_auto_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    code = "import amqadf_agent.auto, runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    env = clean_env(AMQADF_OUTPUT_DIR=str(out), OTEL_SERVICE_NAME="auto-c")
    proc = run([sys.executable, "-c", code, str(SQLITE_APP)], env, tmp_path)
    assert_app_ran(proc)
    assert_db_spans(out, "auto-c")


def _broken_dependency(tmp_path: Path) -> Path:
    """A directory shadowing ``orjson`` (which the agent's file exporter needs) with a broken install."""
    broken = tmp_path / "broken-site"
    broken.mkdir()
    (broken / "orjson.py").write_text('raise ImportError("orjson is broken (simulated by the test)")\n')
    return broken


def _assert_one_start_failure_line(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("amqadf-agent: could not start"), stderr
    assert "ImportError" in lines[0] and "orjson is broken" in lines[0]
    assert "runs without telemetry" in lines[0]


def test_agent_that_cannot_start_says_so_once_under_opentelemetry_instrument(tmp_path: Path) -> None:
    # opentelemetry-instrument swallows a failing configurator; ours must say it could not start.
    out = tmp_path / "telemetry"
    env = clean_env(
        OTEL_PYTHON_DISTRO="amqadf",
        OTEL_PYTHON_CONFIGURATOR="amqadf",
        AMQADF_OUTPUT_DIR=str(out),
        PYTHONPATH=str(_broken_dependency(tmp_path)),
        # FastAPI imports orjson too when it is installed (it passes over a missing one, not a broken
        # one): with orjson broken FastAPI cannot be imported, and opentelemetry-instrument's loader
        # prints its traceback when it tries to instrument it. That is FastAPI's failure, not the agent's.
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fastapi",
    )
    proc = run([str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(SQLITE_APP)], env, tmp_path)
    assert_app_ran(proc)
    _assert_one_start_failure_line(proc.stderr)
    assert not (out / "traces.jsonl").exists()


def test_agent_that_cannot_start_says_so_once_under_auto_import(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = clean_env(AMQADF_OUTPUT_DIR=str(out), PYTHONPATH=str(_broken_dependency(tmp_path)))
    proc = run([sys.executable, str(APPS / "auto_app.py")], env, tmp_path)
    assert_app_ran(proc)
    _assert_one_start_failure_line(proc.stderr)
    assert not (out / "traces.jsonl").exists()


def test_unwritable_output_dir_falls_back_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = clean_env(
        AMQADF_OUTPUT_DIR=str(blocker / "telemetry"), TMPDIR=str(tmpdir), OTEL_SERVICE_NAME="fallback"
    )
    proc = run([sys.executable, str(APPS / "auto_app.py")], env, tmp_path)
    assert_app_ran(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("amqadf-agent: AMQADF_OUTPUT_DIR:"), proc.stderr
    fallbacks = list(tmpdir.glob("amqadf-telemetry-*"))
    assert len(fallbacks) == 1
    assert str(fallbacks[0]) in lines[0]
    assert_db_spans(fallbacks[0], "fallback")


def test_bad_setting_is_one_line_and_the_rest_works(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    env = clean_env(
        OTEL_PYTHON_DISTRO="amqadf",
        OTEL_PYTHON_CONFIGURATOR="amqadf",
        AMQADF_OUTPUT_DIR=str(out),
        OTEL_SERVICE_NAME="badset",
        AMQADF_METRIC_INTERVAL="soon",
    )
    proc = run([str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(SQLITE_APP)], env, tmp_path)
    assert_app_ran(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("amqadf-agent: AMQADF_METRIC_INTERVAL"), proc.stderr
    assert "'soon'" in lines[0]
    assert_db_spans(out, "badset")
    assert metrics_in(out), "the metrics were not written"


SPAWNING_APP = """
import multiprocessing, os
from opentelemetry import trace

def work():
    with trace.get_tracer("child").start_as_current_span("child-span"):
        pass

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=work)
    child.start()
    child.join()
    print(os.getpid(), child.pid)
"""


def test_a_spawned_child_reports_and_the_resource_tracker_does_not(tmp_path: Path) -> None:
    # The spawn start method also launches multiprocessing's resource tracker with the application's
    # environment: an agent there would be one more instance of the service, serving nothing.
    app = tmp_path / "spawning.py"
    app.write_text(SPAWNING_APP)
    out = tmp_path / "t"
    argv = [str(VENV_BIN / "amqadf-agent"), "run", "--out", str(out), "--", sys.executable, str(app)]
    proc = run(argv, clean_env(OTEL_SERVICE_NAME="spawner"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    parent, child = (int(pid) for pid in proc.stdout.split())
    assert [span.resource[semconv.ATTR_PROCESS_PID] for span in spans_in(out)] == [child]
    reporting = {metric.resource[semconv.ATTR_PROCESS_PID] for metric in metrics_in(out)}
    assert reporting == {parent, child}
