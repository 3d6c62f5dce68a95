"""A default ``start()`` imports only what its settings use: each module here costs start-up time.

Run in a fresh interpreter each, since this test session has long imported all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules a default start() (file exporter, no profiler settings, no ProductionConfig) must not load.
NOT_AT_DEFAULT_START = (
    "structlog",  # log correlation hooks its first import instead
    "pyinstrument",
    "amqadf_agent.profiling.profiler",  # loaded when profiler settings are given
    "amqadf_agent.config.production",  # loaded for a ProductionConfig only
    "amqadf_agent.config.vault",
    "amqadf_agent.analyzer",
    "importlib.metadata",  # ~15 ms: the resource's distro version is the package's __version__
    "opentelemetry.sdk._logs",  # logs not captured: built at the first logger asked for
    "opentelemetry.exporter.otlp.json.common._log_encoder",
    "amqadf_agent.runtime.log_export",
    "amqadf_agent.runtime.file_log_exporter",
    "hashlib",  # loads OpenSSL: imported where a digest is first taken
    "tempfile",  # the file exporter's fallback directory only
    "importlib.abc",  # the structlog import hook needs only find_spec
    "difflib",  # a misspelt setting's suggestion only
    # semconv writes its incubating keys out (the SDK itself loads otel_attributes only)
    *(
        f"opentelemetry.semconv._incubating.attributes.{name}_attributes"
        for name in (
            "cpu",
            "db",
            "deployment",
            "disk",
            "host",
            "http",
            "network",
            "os",
            "process",
            "service",
            "system",
        )
    ),
)


def _run(code: str, cwd: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQADF_", "OTEL_"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("exporters", [None, "none"])
def test_default_start_does_not_import_what_it_does_not_use(tmp_path: Path, exporters: str | None) -> None:
    given = "" if exporters is None else f", exporters=[{exporters!r}]"  # None: the default, file
    code = (
        "import json, sys, amqadf_agent\n"
        f"agent = amqadf_agent.start(service_name='imports'{given})\n"
        f"loaded = [m for m in {NOT_AT_DEFAULT_START!r} if m in sys.modules]\n"
        "print(json.dumps({'running': agent.running, 'loaded': loaded}))\n"
    )
    result = _run(code, tmp_path)
    assert result == {"running": True, "loaded": []}


def test_profiler_settings_still_configure_the_profiler(tmp_path: Path) -> None:
    code = (
        "import json, sys, amqadf_agent\n"
        "agent = amqadf_agent.start(service_name='imports', profiler_sample_rate=0.5)\n"
        "print(json.dumps({'loaded': 'amqadf_agent.profiling.profiler' in sys.modules}))\n"
    )
    assert _run(code, tmp_path) == {"loaded": True}


def test_structlog_imported_after_start_gets_the_processor_first(tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    code = (
        "import json, sys, amqadf_agent\n"
        "from amqadf_agent.runtime import log_correlation\n"
        "agent = amqadf_agent.start(service_name='imports')\n"
        "before = 'structlog' in sys.modules\n"
        "import structlog\n"
        "first = structlog.get_config()['processors'][0] is log_correlation.structlog_processor\n"
        "agent.shutdown()\n"
        "after = log_correlation.structlog_processor in structlog.get_config()['processors']\n"
        "print(json.dumps({'before': before, 'first': first, 'after_shutdown': after}))\n"
    )
    assert _run(code, tmp_path) == {"before": False, "first": True, "after_shutdown": False}


def test_structlog_imported_after_shutdown_is_left_alone(tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    code = (
        "import json, sys, amqadf_agent\n"
        "from amqadf_agent.runtime import log_correlation\n"
        "amqadf_agent.start(service_name='imports').shutdown()\n"
        "import structlog\n"
        "hooked = log_correlation.structlog_processor in structlog.get_config()['processors']\n"
        "print(json.dumps({'hooked': hooked, 'finders': sum(type(f).__module__ == log_correlation.__name__"
        " for f in sys.meta_path)}))\n"
    )
    assert _run(code, tmp_path) == {"hooked": False, "finders": 0}


def test_a_lookup_of_structlog_before_its_import_does_not_lose_the_processor(tmp_path: Path) -> None:
    pytest.importorskip("structlog")
    code = (
        "import importlib.util, json, amqadf_agent\n"
        "from amqadf_agent.runtime import log_correlation\n"
        "agent = amqadf_agent.start(service_name='imports')\n"
        "found = importlib.util.find_spec('structlog') is not None\n"  # 'is it installed?', no import
        "import structlog\n"
        "first = structlog.get_config()['processors'][0] is log_correlation.structlog_processor\n"
        "print(json.dumps({'found': found, 'first': first}))\n"
    )
    assert _run(code, tmp_path) == {"found": True, "first": True}


def test_without_capture_logs_the_logs_api_still_reaches_the_exporters(tmp_path: Path) -> None:
    code = (
        "import json, sys, amqadf_agent\n"
        "from opentelemetry._logs import LogRecord, get_logger\n"
        "agent = amqadf_agent.start(service_name='imports', output_dir='out')\n"
        "before = 'opentelemetry.sdk._logs' in sys.modules\n"
        "get_logger('an.instrumentation').emit(LogRecord(body='through the logs API'))\n"
        "print(json.dumps({'before': before, 'finished': agent.shutdown()}))\n"
    )
    assert _run(code, tmp_path) == {"before": False, "finished": True}
    assert "through the logs API" in (tmp_path / "out" / "logs.jsonl").read_text()


def test_a_logger_asked_for_after_shutdown_builds_nothing(tmp_path: Path) -> None:
    code = (
        "import json, sys, amqadf_agent\n"
        "from opentelemetry._logs import LogRecord, NoOpLogger, get_logger\n"
        "amqadf_agent.start(service_name='imports', output_dir='out').shutdown()\n"
        "late = get_logger('late')\n"
        "late.emit(LogRecord(body='after shutdown'))\n"
        "sdk = 'opentelemetry.sdk._logs' in sys.modules\n"
        "print(json.dumps({'noop': isinstance(late, NoOpLogger), 'sdk': sdk}))\n"
    )
    assert _run(code, tmp_path) == {"noop": True, "sdk": False}
    assert (tmp_path / "out" / "logs.jsonl").read_text() == ""


def test_an_otlp_http_start_without_capture_logs_imports_no_log_sdk(tmp_path: Path) -> None:
    # Over HTTP only: the gRPC exporter package imports the log SDK itself (its exporter.py). The
    # exporter libraries also import hashlib and the others of the list above: only the log SDK is ours.
    code = (
        "import json, os, sys, amqadf_agent\n"
        "agent = amqadf_agent.start(exporters=['otlp'], otlp_protocol='http/protobuf')\n"
        "ours = ('opentelemetry.sdk._logs', 'amqadf_agent.runtime.log_export')\n"
        "print(json.dumps({'running': agent.running, 'loaded': [m for m in ours if m in sys.modules]}))\n"
        "os._exit(0)\n"  # no exit flush towards a collector that is not there
    )
    assert _run(code, tmp_path) == {"running": True, "loaded": []}
