"""Runtime settings: explicit > environment > default, and a bad value is one problem, never a crash."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

import amqadf_agent
from amqadf_agent.errors import ConfigError
from amqadf_agent.runtime.settings import EXPORTERS, AgentSettings, resolve

DEFAULTS = AgentSettings()


def problems_of(**environ: str) -> list[ConfigError]:
    return resolve(environ=environ)[1]


def one_problem(problems: list[ConfigError]) -> ConfigError:
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert isinstance(problem, ConfigError)
    return problem


# --- defaults and precedence ------------------------------------------------------------------------


def test_defaults_without_environment() -> None:
    settings, problems = resolve(environ={})
    assert problems == []
    assert settings == AgentSettings()
    assert settings.service_name is None
    assert settings.environment == "development"
    assert settings.exporters == ("file",)
    assert settings.output_dir == Path("telemetry")
    assert settings.otlp_protocol == "http/protobuf"
    assert settings.metric_interval == 15.0
    assert settings.span_export_delay == 5.0
    assert settings.sample_ratio == 1.0
    assert settings.prometheus_port == 9464
    assert settings.capture_logs is False
    assert settings.self_metrics is True


def test_resolve_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQADF_ENVIRONMENT", "from-os-environ")
    assert resolve()[0].environment == "from-os-environ"
    # environ={} means "this environment", not "os.environ".
    assert resolve(environ={})[0].environment == "development"


def test_environment_variables_are_read() -> None:
    settings, problems = resolve(
        environ={
            "OTEL_SERVICE_NAME": "checkout",
            "AMQADF_SERVICE_VERSION": "1.2.3",
            "AMQADF_ENVIRONMENT": "staging",
            "AMQADF_EXPORTERS": "otlp",
            "AMQADF_OUTPUT_DIR": "/var/tmp/x",
            "AMQADF_FILE_MAX_BYTES": "1000",
            "AMQADF_FILE_MAX_BACKUPS": "3",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "9000",
            "AMQADF_METRIC_INTERVAL": "2.5",
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "AMQADF_SAMPLE_RATIO": "0.25",
            "AMQADF_CAPTURE_LOGS": "yes",
            "AMQADF_SHUTDOWN_TIMEOUT": "1.5",
            "AMQADF_SELF_METRICS": "off",
        }
    )
    assert problems == []
    assert settings.service_name == "checkout"
    assert settings.service_version == "1.2.3"
    assert settings.environment == "staging"
    assert settings.exporters == ("otlp",)
    assert settings.output_dir == Path("/var/tmp/x")
    assert settings.file_max_bytes == 1000
    assert settings.file_max_backups == 3
    assert settings.otlp_endpoint == "http://collector:4318"
    assert settings.prometheus_host == "0.0.0.0"
    assert settings.prometheus_port == 9000
    assert settings.metric_interval == 2.5
    assert settings.span_export_delay == 0.25  # OTEL_BSP_SCHEDULE_DELAY is milliseconds
    assert settings.max_queue_size == 100
    assert settings.sample_ratio == 0.25
    assert settings.capture_logs is True
    assert settings.shutdown_timeout == 1.5
    assert settings.self_metrics is False


def test_explicit_beats_environment_beats_default() -> None:
    env = {"AMQADF_ENVIRONMENT": "staging", "AMQADF_SAMPLE_RATIO": "0.5"}
    settings, problems = resolve(overrides={"environment": "production"}, environ=env)
    assert problems == []
    assert settings.environment == "production"  # explicit
    assert settings.sample_ratio == 0.5  # environment
    assert settings.shutdown_timeout == DEFAULTS.shutdown_timeout  # default


def test_overrides_beat_config_mapping_and_config_beats_environment() -> None:
    env = {"AMQADF_ENVIRONMENT": "staging", "AMQADF_SERVICE_VERSION": "9"}
    settings, problems = resolve(
        {"environment": "from-config", "service_version": "1.0"},
        {"environment": "from-override"},
        environ=env,
    )
    assert problems == []
    assert settings.environment == "from-override"
    assert settings.service_version == "1.0"


def test_agent_settings_as_config_only_its_non_default_fields_are_explicit() -> None:
    env = {"AMQADF_ENVIRONMENT": "staging", "AMQADF_SAMPLE_RATIO": "0.5"}
    settings, problems = resolve(AgentSettings(sample_ratio=0.1), environ=env)
    assert problems == []
    assert settings.sample_ratio == 0.1  # given
    assert settings.environment == "staging"  # left at its default: the environment fills it


def test_explicit_none_means_not_given() -> None:
    settings, problems = resolve(overrides={"service_name": None}, environ={"OTEL_SERVICE_NAME": "svc"})
    assert problems == []
    assert settings.service_name == "svc"


def test_explicit_none_metric_interval_still_reads_otel_metric_export_interval() -> None:
    # Like every other field, None means "not given"; OTEL_METRIC_EXPORT_INTERVAL must still apply.
    settings, problems = resolve(
        overrides={"metric_interval": None}, environ={"OTEL_METRIC_EXPORT_INTERVAL": "30000"}
    )
    assert problems == []
    assert settings.metric_interval == 30.0


def test_otel_service_name_beats_amqadf_service_name() -> None:
    env = {"OTEL_SERVICE_NAME": "otel", "AMQADF_SERVICE_NAME": "amqadf"}
    assert resolve(environ=env)[0].service_name == "otel"
    assert resolve(environ={"AMQADF_SERVICE_NAME": "amqadf"})[0].service_name == "amqadf"


def test_blank_environment_values_are_ignored() -> None:
    settings, problems = resolve(environ={"AMQADF_ENVIRONMENT": "   ", "AMQADF_EXPORTERS": ""})
    assert problems == []
    assert settings.environment == "development"
    assert settings.exporters == ("file",)


# --- metric interval: seconds (ours) or milliseconds (OpenTelemetry's) --------------------------------


def test_otel_metric_export_interval_is_milliseconds() -> None:
    settings, problems = resolve(environ={"OTEL_METRIC_EXPORT_INTERVAL": "30000"})
    assert problems == []
    assert settings.metric_interval == 30.0


def test_amqadf_metric_interval_is_seconds_and_wins_over_the_otel_one() -> None:
    env = {"AMQADF_METRIC_INTERVAL": "2", "OTEL_METRIC_EXPORT_INTERVAL": "30000"}
    settings, problems = resolve(environ=env)
    assert problems == []
    assert settings.metric_interval == 2.0


def test_explicit_metric_interval_wins_over_both_variables() -> None:
    env = {"AMQADF_METRIC_INTERVAL": "2", "OTEL_METRIC_EXPORT_INTERVAL": "30000"}
    assert resolve(overrides={"metric_interval": 7}, environ=env)[0].metric_interval == 7.0
    assert resolve(overrides={"metric_interval": 7}, environ=env)[1] == []


def test_bad_otel_metric_export_interval_names_the_variable_and_the_value() -> None:
    problem = one_problem(problems_of(OTEL_METRIC_EXPORT_INTERVAL="soon"))
    assert str(problem).startswith("OTEL_METRIC_EXPORT_INTERVAL")
    assert "'soon'" in str(problem)
    assert resolve(environ={"OTEL_METRIC_EXPORT_INTERVAL": "soon"})[0].metric_interval == 15.0


def test_negative_otel_metric_export_interval_shows_the_value_that_was_given() -> None:
    # The user wrote -1000 (milliseconds); the message must show that, not the converted -1.0 s.
    problem = one_problem(problems_of(OTEL_METRIC_EXPORT_INTERVAL="-1000"))
    assert str(problem).startswith("OTEL_METRIC_EXPORT_INTERVAL")
    assert "-1000" in str(problem)


# --- OTLP protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("grpc", "grpc"), ("http/protobuf", "http/protobuf")])
def test_otlp_protocol_from_environment(value: str, expected: str) -> None:
    settings, problems = resolve(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": value})
    assert problems == []
    assert settings.otlp_protocol == expected


def test_otlp_protocol_is_case_insensitive() -> None:
    assert resolve(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC"})[0].otlp_protocol == "grpc"


def test_unsupported_otlp_protocol_is_a_problem() -> None:
    problem = one_problem(problems_of(OTEL_EXPORTER_OTLP_PROTOCOL="http/xml"))
    assert str(problem).startswith("OTEL_EXPORTER_OTLP_PROTOCOL")
    assert "'http/xml'" in str(problem)
    assert resolve(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/xml"})[0].otlp_protocol == "http/protobuf"
    # the three the specification names are taken
    for protocol in ("grpc", "http/protobuf", "http/json"):
        assert resolve(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol})[0].otlp_protocol == protocol


# --- exporters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("file, otlp", ("file", "otlp")),
        ("file,otlp,file", ("file", "otlp")),
        (" FILE , Otlp ,", ("file", "otlp")),
        ("none", ("none",)),
        ("none,file", ("file",)),
        ("console,none,prometheus", ("console", "prometheus")),
    ],
)
def test_exporters_parsing(value: str, expected: tuple[str, ...]) -> None:
    settings, problems = resolve(environ={"AMQADF_EXPORTERS": value})
    assert problems == []
    assert settings.exporters == expected


def test_exporters_explicit_list_or_string() -> None:
    assert resolve(overrides={"exporters": ["otlp", "file", "otlp"]}, environ={})[0].exporters == (
        "otlp",
        "file",
    )
    assert resolve(overrides={"exporters": "console"}, environ={})[0].exporters == ("console",)


def test_every_known_exporter_name_is_accepted() -> None:
    for name in EXPORTERS:
        settings, problems = resolve(environ={"AMQADF_EXPORTERS": name})
        assert problems == []
        assert settings.exporters == (name,)


# --- bad values: one problem each, naming the setting and the value; the default is used -----------

BAD_ENV = [
    ("AMQADF_EXPORTERS", "file,bogus", "bogus", "exporters"),
    ("AMQADF_METRIC_INTERVAL", "soon", "soon", "metric_interval"),
    ("AMQADF_METRIC_INTERVAL", "-5", "-5", "metric_interval"),
    ("AMQADF_METRIC_INTERVAL", "0", "0", "metric_interval"),
    ("AMQADF_METRIC_INTERVAL", "nan", "nan", "metric_interval"),
    ("AMQADF_SHUTDOWN_TIMEOUT", "inf", "inf", "shutdown_timeout"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000", "70000", "prometheus_port"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "0", "0", "prometheus_port"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "http", "http", "prometheus_port"),
    ("AMQADF_SAMPLE_RATIO", "1.5", "1.5", "sample_ratio"),
    ("AMQADF_SAMPLE_RATIO", "-0.1", "-0.1", "sample_ratio"),
    ("AMQADF_CAPTURE_LOGS", "maybe", "maybe", "capture_logs"),
    ("AMQADF_SELF_METRICS", "2", "2", "self_metrics"),
    ("AMQADF_FILE_MAX_BYTES", "-1", "-1", "file_max_bytes"),
    ("AMQADF_FILE_MAX_BYTES", "1.5", "1.5", "file_max_bytes"),
    ("AMQADF_FILE_MAX_BACKUPS", "many", "many", "file_max_backups"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "0", "max_queue_size"),
]


@pytest.mark.parametrize(("variable", "value", "shown", "field"), BAD_ENV)
def test_bad_environment_value_is_one_problem_naming_the_variable(
    variable: str, value: str, shown: str, field: str
) -> None:
    settings, problems = resolve(environ={variable: value})
    problem = one_problem(problems)
    assert str(problem).startswith(variable + ":")
    assert problem.setting == variable
    assert shown in str(problem)
    assert getattr(settings, field) == getattr(DEFAULTS, field)


BAD_EXPLICIT = [
    ("exporters", ["file", "bogus"], "bogus"),
    ("exporters", [], "[]"),
    ("metric_interval", "soon", "soon"),
    ("metric_interval", -5, "-5"),
    ("prometheus_port", 70000, "70000"),
    ("sample_ratio", 1.5, "1.5"),
    ("capture_logs", "maybe", "maybe"),
    ("self_metrics", "maybe", "maybe"),
    ("file_max_backups", True, "True"),
    ("otlp_protocol", "udp", "udp"),
    ("service_name", "   ", "'   '"),
    ("environment", 42, "42"),
]


@pytest.mark.parametrize(("field", "value", "shown"), BAD_EXPLICIT)
def test_bad_explicit_value_is_one_problem_naming_the_field(field: str, value: Any, shown: str) -> None:
    settings, problems = resolve(overrides={field: value}, environ={})
    problem = one_problem(problems)
    assert str(problem).startswith(field + ":")
    assert problem.setting == field
    assert shown in str(problem)
    assert getattr(settings, field) == getattr(DEFAULTS, field)


def test_problem_says_which_default_is_used() -> None:
    problem = one_problem(problems_of(AMQADF_METRIC_INTERVAL="soon"))
    assert "15.0" in str(problem)
    problem = one_problem(problems_of(AMQADF_EXPORTERS="file,bogus"))
    assert "using file" in str(problem)


def test_several_bad_values_give_one_problem_each() -> None:
    settings, problems = resolve(
        environ={
            "AMQADF_METRIC_INTERVAL": "soon",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "70000",
            "AMQADF_SAMPLE_RATIO": "1.5",
            "AMQADF_ENVIRONMENT": "fine",
        }
    )
    assert sorted(p.setting for p in problems) == [
        "AMQADF_METRIC_INTERVAL",
        "AMQADF_SAMPLE_RATIO",
        "OTEL_EXPORTER_PROMETHEUS_PORT",
    ]
    assert settings.environment == "fine"  # the good ones still apply


def test_a_bad_explicit_value_does_not_fall_back_to_the_environment() -> None:
    # The explicit value was wrong: the default is used (not the environment's), as documented.
    settings, problems = resolve(overrides={"sample_ratio": 1.5}, environ={"AMQADF_SAMPLE_RATIO": "0.5"})
    assert one_problem(problems).setting == "sample_ratio"
    assert settings.sample_ratio == 1.0


def test_unknown_key_hints_at_the_close_one() -> None:
    settings, problems = resolve(overrides={"sevice_name": "checkout"}, environ={})
    problem = one_problem(problems)
    assert str(problem).startswith("sevice_name:")
    assert "did you mean 'service_name'" in str(problem)
    assert settings.service_name is None


def test_unknown_key_without_close_match_has_no_hint() -> None:
    problem = one_problem(resolve(overrides={"zzzz": 1}, environ={})[1])
    assert str(problem).startswith("zzzz:")
    assert "did you mean" not in str(problem)


def test_unknown_key_in_config_mapping() -> None:
    problem = one_problem(resolve({"exporter": "file"}, environ={})[1])
    assert str(problem).startswith("exporter:")
    assert "did you mean 'exporters'" in str(problem)


# --- through start(): the application never notices --------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and needle in r.getMessage()
    ]


def _span_ids_in(path: Path) -> set[str]:
    ids = set()
    for line in path.read_bytes().splitlines():
        for rs in orjson.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                ids.update(span["spanId"] for span in ss["spans"])
    return ids


def test_start_with_unwritable_output_dir_falls_back_and_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory\n")
    bad = afile / "sub"  # cannot be created even by root
    fallback_root = tmp_path / "systmp"
    fallback_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback_root))
    caplog.set_level(logging.WARNING)

    agent = amqadf_agent.start(exporters=["file"], output_dir=bad, self_metrics=False)
    assert agent.running
    assert agent.error is None
    lines = _warnings(caplog, "AMQADF_OUTPUT_DIR")
    assert len(lines) == 1, lines
    assert str(bad) in lines[0]
    assert agent.output_dir is not None
    assert agent.output_dir != bad
    assert agent.output_dir.parent == fallback_root
    assert [p.setting for p in agent.problems] == ["AMQADF_OUTPUT_DIR"]

    # The application's code keeps working, and its spans land in the fallback directory.
    with agent.tracer("app").start_as_current_span("work") as span:
        span.set_attribute("n", 1)
        result = sum(range(10))
    assert result == 45
    assert agent.shutdown()
    expected = format(span.get_span_context().span_id, "016x")
    assert _span_ids_in(agent.output_dir / "traces.jsonl") == {expected}
    assert not bad.exists()


def test_start_with_unknown_exporter_warns_and_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(exporters=["file", "bogus"], output_dir=tmp_path, self_metrics=False)
    assert agent.running
    lines = _warnings(caplog, "bogus")
    assert len(lines) == 1, lines
    assert lines[0].startswith("amqadf-agent: exporters:")
    assert agent.settings.exporters == ("file",)
    assert agent.output_dir == tmp_path
    with agent.tracer("app").start_as_current_span("work") as span:
        pass
    assert agent.shutdown()
    assert _span_ids_in(tmp_path / "traces.jsonl") == {format(span.get_span_context().span_id, "016x")}


def test_start_with_unknown_exporter_keeps_the_valid_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # "console,bogus": the console exporter was asked for and is valid; a typo in another name
    # must not replace it with the default file exporter (which would also write into the cwd).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMQADF_EXPORTERS", "console,bogus")
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(self_metrics=False)
    assert agent.running
    assert len(_warnings(caplog, "bogus")) == 1
    assert agent.settings.exporters == ("console",)
    assert agent.output_dir is None


def test_start_with_non_numeric_interval_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AMQADF_METRIC_INTERVAL", "soon")
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(exporters=["none"])
    assert agent.running
    lines = _warnings(caplog, "AMQADF_METRIC_INTERVAL")
    assert len(lines) == 1, lines
    assert "'soon'" in lines[0]
    assert agent.settings.metric_interval == DEFAULTS.metric_interval
    assert [p.setting for p in agent.problems] == ["AMQADF_METRIC_INTERVAL"]


def test_start_with_unknown_keyword_warns_with_hint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    agent = amqadf_agent.start(exporters=["none"], sevice_name="checkout")
    assert agent.running
    lines = _warnings(caplog, "sevice_name")
    assert len(lines) == 1, lines
    assert "did you mean 'service_name'" in lines[0]
    assert agent.settings.service_name is None


# --- OTLP headers and timeout; resource monitor and profiler settings -------------------------------

PLANTED = "hdr-PLANTED-5e1b"  # a header value: never shown


def test_otlp_headers_become_secrets_with_lowercase_names_and_are_redacted() -> None:
    settings, problems = resolve({"otlp_headers": {"X-Api-Key": PLANTED}, "otlp_timeout": 2}, environ={})
    assert problems == []
    assert list(settings.otlp_headers) == ["x-api-key"]
    assert settings.otlp_headers["x-api-key"].get_secret_value() == PLANTED
    assert settings.otlp_timeout == 2.0
    direct = AgentSettings(otlp_headers={"Authorization": PLANTED})
    for shown in (repr(settings), str(settings), repr(direct), f"{direct}"):
        assert PLANTED not in shown
    assert "otlp_headers={'authorization': '[secure]'}" in repr(direct)
    # Settings with a Secret copy and compare like any others (start() uses dataclasses.asdict).
    assert dataclasses.asdict(direct)["otlp_headers"]["authorization"].get_secret_value() == PLANTED
    assert resolve(direct, environ={})[0] == direct


def test_headers_and_timeout_are_left_to_the_exporters_by_default() -> None:
    # The exporters read OTEL_EXPORTER_OTLP_HEADERS/_TIMEOUT themselves: resolve() passes nothing.
    environ = {"OTEL_EXPORTER_OTLP_HEADERS": f"x-key={PLANTED}", "OTEL_EXPORTER_OTLP_TIMEOUT": "3"}
    settings, problems = resolve(environ=environ)
    assert problems == []
    assert (dict(settings.otlp_headers), settings.otlp_timeout) == ({}, None)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (f"x-key={PLANTED}", "otlp_headers: must be a mapping of header names to values; no headers sent"),
        ({"bad name": PLANTED}, "otlp_headers: 'bad name' is not a header name; no headers sent"),
        ({"x-key\n": PLANTED}, "otlp_headers: 'x-key\\n' is not a header name; no headers sent"),
        (
            {"x-key": [PLANTED]},
            "otlp_headers: the value of 'x-key' must be a string or a Secret; no headers sent",
        ),
    ],
)
def test_bad_headers_are_one_problem_that_never_shows_a_value(headers: Any, message: str) -> None:
    settings, problems = resolve({"otlp_headers": headers}, environ={})
    assert str(one_problem(problems)) == message
    assert dict(settings.otlp_headers) == {}


def test_bad_timeout_is_one_problem() -> None:
    settings, problems = resolve({"otlp_timeout": 0}, environ={})
    assert str(one_problem(problems)) == "otlp_timeout: must be a positive number, got 0; ignored"
    assert settings.otlp_timeout is None


def test_resource_monitor_and_profiler_defaults_and_environment() -> None:
    assert (
        DEFAULTS.resource_interval,
        DEFAULTS.resource_cpu_threshold,
        DEFAULTS.resource_memory_threshold,
        DEFAULTS.profiler_enabled,
        DEFAULTS.profiler_sample_rate,
    ) == (5.0, None, None, True, 0.01)
    settings, problems = resolve(
        environ={
            "AMQADF_RESOURCE_INTERVAL": "2.5",
            "AMQADF_RESOURCE_CPU_THRESHOLD": "0.8",
            "AMQADF_RESOURCE_MEMORY_THRESHOLD": "1",
            "AMQADF_PROFILER_ENABLED": "false",
            "AMQADF_PROFILER_SAMPLE_RATE": "0.05",
        }
    )
    assert problems == []
    assert (settings.resource_interval, settings.resource_cpu_threshold) == (2.5, 0.8)
    assert settings.resource_memory_threshold == 1.0
    assert (settings.profiler_enabled, settings.profiler_sample_rate) == (False, 0.05)
    # An explicit value beats the environment.
    explicit, _ = resolve({"resource_interval": 1}, environ={"AMQADF_RESOURCE_INTERVAL": "9"})
    assert explicit.resource_interval == 1.0


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("AMQADF_RESOURCE_INTERVAL", "0", "must be a positive number, got '0'; using 5.0"),
        ("AMQADF_RESOURCE_CPU_THRESHOLD", "0", "must be a number above 0, at most 1, got '0'; ignored"),
        (
            "AMQADF_RESOURCE_MEMORY_THRESHOLD",
            "90%",
            "must be a number above 0, at most 1, got '90%'; ignored",
        ),
        ("AMQADF_PROFILER_ENABLED", "maybe", "must be true or false, got 'maybe'; using True"),
        ("AMQADF_PROFILER_SAMPLE_RATE", "2", "must be a number from 0 to 1, got '2'; using 0.01"),
    ],
)
def test_bad_resource_and_profiler_variables_are_one_line_each(variable: str, raw: str, message: str) -> None:
    settings, problems = resolve(environ={variable: raw})
    problem = one_problem(problems)
    assert str(problem) == f"{variable}: {message}"
    assert "\n" not in str(problem)
    assert settings == DEFAULTS


def test_otel_log_level_is_read_when_it_names_a_level_and_ignored_otherwise() -> None:
    settings, problems = resolve(environ={"OTEL_LOG_LEVEL": "warn"})
    assert (settings.log_level, problems) == ("WARNING", [])
    settings, problems = resolve(environ={"OTEL_LOG_LEVEL": "none"})  # another SDK's name
    assert (settings.log_level, problems) == (None, [])
    settings, problems = resolve(environ={"AMQADF_LOG_LEVEL": "loud", "OTEL_LOG_LEVEL": "info"})
    # Ours is wrong: said, and ignored; the standard variable's level then applies.
    assert settings.log_level == "INFO" and [p.setting for p in problems] == ["AMQADF_LOG_LEVEL"]


def test_a_bad_output_dir_is_one_problem_not_an_exception() -> None:
    settings, problems = resolve(overrides={"output_dir": "   "}, environ={})
    assert str(one_problem(problems)) == "output_dir: must be a directory path, got '   '; using telemetry"
    assert settings.output_dir == DEFAULTS.output_dir
