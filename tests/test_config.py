"""ProductionConfig: layers and their precedence, files, interpolation, validation, flags, start()."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqadf_agent.config.flags import BUCKETS, FeatureFlag, FeatureFlags, bucket
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.config.secrets import Secret
from amqadf_agent.config.sources import interpolate
from amqadf_agent.errors import ConfigError, ConfigFileError
from amqadf_agent.runtime import agent as agent_mod
from amqadf_agent.runtime.settings import AgentSettings

FIXTURES = Path(__file__).parent / "fixtures" / "config"
TOKEN = "tok-PLANTED-0f3c9a"  # a planted secret value: it must never appear where it is not asked for


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- layers ---------------------------------------------------------------------------------------


def test_defaults_alone_are_valid_and_typed() -> None:
    config = ProductionConfig.load(environ={})
    assert config.validate() == (True, [])
    assert config.environment == "development"
    assert config.exporter.exporters == ("file",)
    assert config.sampling.ratio == 1.0
    assert config.autoscaler.min_instances == 1
    assert config.sources["exporter.exporters"] == "default"
    assert config.sources["log_level"] == "profile development"  # development turns DEBUG on
    assert config.log_level == "DEBUG"


def test_each_layer_beats_the_one_below(tmp_path: Path) -> None:
    # GIVEN a value for log_level (and sampling.ratio) in every layer
    file = write(tmp_path, "c.yaml", "log_level: ERROR\nsampling: {ratio: 0.3}\nservice: {name: a}\n")
    environ = {"AMQADF_LOG_LEVEL": "CRITICAL", "AMQADF_SAMPLING__RATIO": "0.4"}
    # THEN: profile < file < env < overrides
    assert ProductionConfig.load(environment="production", environ={}).log_level == "WARNING"
    from_file = ProductionConfig.load(file, environment="production", environ={})
    assert (from_file.log_level, from_file.sources["log_level"]) == ("ERROR", f"file {file}")
    from_env = ProductionConfig.load(file, environment="production", environ=environ)
    assert (from_env.log_level, from_env.sampling.ratio) == ("CRITICAL", 0.4)
    assert from_env.sources["sampling.ratio"] == "env AMQADF_SAMPLING__RATIO"
    overridden = ProductionConfig.load(
        file, "production", environ=environ, overrides={"log_level": "INFO", "sampling": {"ratio": 0.5}}
    )
    assert (overridden.log_level, overridden.sampling.ratio) == ("INFO", 0.5)
    assert overridden.sources["log_level"] == "override"


LAYERS = ("profile", "file", "env", "override")


@settings(max_examples=40, deadline=None)
@given(present=st.lists(st.booleans(), min_size=4, max_size=4))
def test_precedence_property_the_highest_layer_present_wins(
    present: list[bool], tmp_path_factory: Any
) -> None:
    # Each layer sets profiler.sample_rate to its own value; the profile always sets 0.001 (production).
    values = {"file": 0.02, "env": 0.03, "override": 0.04}
    tmp = tmp_path_factory.mktemp("p")
    file = write(tmp, "c.yaml", "profiler: {sample_rate: 0.02}\n") if present[1] else None
    environ = {"AMQADF_PROFILER__SAMPLE_RATE": "0.03"} if present[2] else {}
    overrides = {"profiler.sample_rate": 0.04} if present[3] else None
    config = ProductionConfig.load(
        file, "production" if present[0] else "development", environ=environ, overrides=overrides
    )
    expected = 0.001 if present[0] else 0.01  # the profile's value, or the built-in default
    for layer, on in zip(LAYERS[1:], present[1:], strict=True):
        if on:
            expected = values[layer]
    assert config.profiler.sample_rate == expected


def test_environment_argument_beats_every_layer(tmp_path: Path) -> None:
    file = write(tmp_path, "c.yaml", "environment: staging\n")
    config = ProductionConfig.load(
        file,
        "production",
        environ={"AMQADF_ENVIRONMENT": "development"},
        overrides={"environment": "staging"},
    )
    assert (config.environment, config.sources["environment"]) == ("production", "argument")
    assert (
        ProductionConfig.load(file, environ={"AMQADF_ENVIRONMENT": "development"}).environment
        == "development"
    )


def test_otel_resource_attributes_give_service_name_version_and_namespace() -> None:
    environ = {
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=shop,service.version=2.1%2Brc1,service.namespace=retail"
    }
    config = ProductionConfig.from_env(environ=environ)
    assert (config.service.name, config.service.version, config.service.namespace) == (
        "shop",
        "2.1+rc1",  # values are percent-decoded, as the OTel SDK decodes them
        "retail",
    )
    assert config.sources["service.version"] == "env OTEL_RESOURCE_ATTRIBUTES"
    # OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES (the specification's order).
    both = ProductionConfig.from_env(environ={**environ, "OTEL_SERVICE_NAME": "billing"})
    assert both.service.name == "billing"


def test_otel_variables_map_onto_fields_and_amqadf_wins() -> None:
    environ = {
        "OTEL_SERVICE_NAME": "billing",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={TOKEN},x-team=core",
    }
    config = ProductionConfig.from_env(environ=environ)
    assert config.service.name == "billing"
    assert config.exporter.endpoint == "https://otel.example.com"
    assert config.exporter.protocol == "grpc"
    assert config.exporter.metric_interval == 60.0
    assert config.exporter.span_export_delay == 0.5
    assert config.sampling.ratio == 0.25
    assert config.exporter.headers["x-api-key"].get_secret_value() == TOKEN
    assert config.sources["service.name"] == "env OTEL_SERVICE_NAME"
    both = ProductionConfig.from_env(
        environ={**environ, "AMQADF_SERVICE__NAME": "ours", "AMQADF_SAMPLE_RATIO": "1"}
    )
    assert (both.service.name, both.sampling.ratio) == ("ours", 1.0)


def test_from_file_ignores_the_environment_variables() -> None:
    config = ProductionConfig.from_file(
        FIXTURES / "base.yaml", environ={"AMQADF_SERVICE__NAME": "other", "OTLP_TOKEN": TOKEN}
    )
    assert config.service.name == "checkout"


@pytest.mark.parametrize("name", ["base.yaml", "base.json", "base.toml"])
def test_each_file_format_gives_the_same_configuration(name: str) -> None:
    config = ProductionConfig.from_file(FIXTURES / name, environ={"OTLP_TOKEN": TOKEN})
    assert config.validate() == (True, [])
    assert config.environment == "staging"
    assert config.log_level == "INFO"
    assert config.service.version == "1.4.2"
    assert config.exporter.exporters == ("file", "otlp")
    assert config.exporter.endpoint == "https://collector.example.com:4318"
    assert config.exporter.metric_interval == 30.0
    assert config.exporter.headers["authorization"].get_secret_value() == TOKEN
    assert (config.autoscaler.min_instances, config.autoscaler.max_instances) == (2, 8)
    assert config.feature_flags["new_scaler"] == FeatureFlag("new_scaler", True, 25.0)
    assert config.feature_flags["dark_mode"].enabled is False


def test_file_environment_section_overlays_the_file_for_that_environment() -> None:
    config = ProductionConfig.from_file(FIXTURES / "base.yaml", "production", environ={"OTLP_TOKEN": TOKEN})
    assert (config.log_level, config.sampling.ratio) == ("WARNING", 0.1)
    assert config.feature_flags["new_scaler"].percentage == 5.0
    assert config.sources["sampling.ratio"].endswith("(environments.production)")
    assert config.validate() == (True, [])


def test_interpolation_of_variables_with_and_without_default(tmp_path: Path) -> None:
    text = (
        "service:\n  name: ${SVC}\n  version: v${VERSION:-0.0.1}\n  namespace: $${LITERAL}\n"
        "exporter:\n  endpoint: ${ENDPOINT:-http://localhost:4318}\n  output_dir: ${MISSING}/x\n"
    )
    file = write(tmp_path, "c.yaml", text)
    config = ProductionConfig.from_file(file, environ={"SVC": "orders", "ENDPOINT": ""})
    assert config.service.name == "orders"
    assert config.service.version == "v0.0.1"
    assert config.service.namespace == "${LITERAL}"
    assert config.exporter.endpoint == "http://localhost:4318"  # an empty variable takes the default
    assert config.validate()[1] == ["exporter.output_dir: environment variable 'MISSING' is not set"]


def test_interpolate_walks_lists_and_leaves_other_types() -> None:
    errors: list[str] = []
    data = {"a": ["${X}", 3, True], "b": {"c": "${Y:-d}"}}
    assert interpolate(data, {"X": "x"}, errors) == {"a": ["x", 3, True], "b": {"c": "d"}}
    assert errors == []


# -- malformed files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "column", "reason"),
    [
        ("malformed.yaml", 4, 21, "invalid YAML: mapping values are not allowed here"),
        ("malformed.json", 4, 3, "invalid JSON: Expecting property name enclosed in double quotes"),
        ("malformed.toml", 3, 11, "invalid TOML: Invalid value"),
    ],
)
def test_malformed_files_name_file_line_and_column(name: str, line: int, column: int, reason: str) -> None:
    path = FIXTURES / name
    with pytest.raises(ConfigFileError) as caught:
        ProductionConfig.from_file(path)
    error = caught.value
    assert (error.file, error.line, error.column) == (str(path), line, column)
    assert str(error) == f"{path}:{line}:{column}: {reason}"
    assert isinstance(error, ConfigError)


def test_unreadable_and_unknown_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"nope\.yaml: no such file$"):
        ProductionConfig.from_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigFileError, match=r"unknown file type '\.ini'"):
        ProductionConfig.from_file(write(tmp_path, "c.ini", "a=1"))
    with pytest.raises(ConfigFileError, match="must hold a mapping of settings, not a list"):
        ProductionConfig.from_file(write(tmp_path, "c.json", "[1, 2]"))
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(ConfigFileError, match="is a directory"):
        ProductionConfig.from_file(tmp_path / "d.yaml")
    assert ProductionConfig.from_file(write(tmp_path, "empty.yaml", "")).validate() == (True, [])
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("service:\n  name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigFileError, match=r"latin1\.yaml: not UTF-8 text \(byte 20\)"):
        ProductionConfig.from_file(latin1)


def test_an_unreadable_file_says_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = write(tmp_path, "locked.yaml", "service:\n  name: x\n")
    # CI runs as root, whom file modes do not stop: the operating system's refusal is played by a fake.
    real_read_text = Path.read_text

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigFileError, match=r"locked\.yaml: permission denied$"):
        ProductionConfig.from_file(locked)


# -- validation -----------------------------------------------------------------------------------


def test_every_error_at_once_each_with_its_path() -> None:
    valid, errors = ProductionConfig.from_file(FIXTURES / "invalid.yaml").validate()
    assert not valid
    assert errors == [
        "exporter.endpiont: unknown key (did you mean 'exporter.endpoint'?)",
        "loglevel: unknown key (did you mean 'log_level'?)",
        "exporter.endpoint: must be a URL, got 'foo'",
        "exporter.api_key: must be a string or {secret: NAME}, got [secure]",
        "exporter.timeout: must be a positive number, got 'soon'",
        "sampling.ratio: must be a number from 0 to 1, got 1.5",
        "resource_monitor.cpu_threshold: must be a number above 0, at most 1, got 2",
        "autoscaler.min_instances: must be at most autoscaler.max_instances (9 > 3)",
        "exporter.exporters: the console exporter is not allowed in production",
    ]


def test_wrong_types_name_expected_and_given() -> None:
    config = ProductionConfig.load(
        environ={"AMQADF_AUTOSCALER__MAX_INSTANCES": "many"},
        overrides={
            "exporter": {"prometheus_port": 70000, "exporters": "file,kafka"},
            "agent.capture_logs": 2,
        },
    )
    assert config.validate()[1] == [
        "exporter.exporters: must be a list of file, otlp, prometheus, console, none, got 'file,kafka'",
        "exporter.prometheus_port: must be a port number from 1 to 65535, got 70000",
        "autoscaler.max_instances: must be a positive whole number, got 'many' "
        "[env AMQADF_AUTOSCALER__MAX_INSTANCES]",
        "agent.capture_logs: must be true or false, got 2",
    ]
    assert config.autoscaler.max_instances == 10  # the default stands in for the bad value


def test_unknown_keys_from_every_source_and_misplaced_mappings() -> None:
    config = ProductionConfig.load(
        environ={"AMQADF_EXPORTER__ENDPOIN": "x", "AMQADF_UNRELATED": "ignored"},
        overrides={"sampling": {"ratio": {"x": 1}}, "service": "name", "feature_flags.f.percent": 3},
    )
    assert config.validate()[1] == [
        "exporter.endpoin: unknown key (did you mean 'exporter.endpoint'?) [env AMQADF_EXPORTER__ENDPOIN]",
        "service: must be a mapping",
        "feature_flags.f.percent: unknown key (did you mean 'feature_flags.f.percentage'?)",
        "sampling.ratio: must be a number from 0 to 1, got {'x': 1}",
    ]


def test_environments_section_names_must_be_known(tmp_path: Path) -> None:
    file = write(tmp_path, "c.yaml", "environments:\n  prod: {log_level: ERROR}\n  staging: 3\n")
    assert ProductionConfig.from_file(file).validate()[1] == [
        "environments.prod: unknown environment (did you mean 'production'?)",
        "environments.staging: must be a mapping",
    ]


def test_production_rules() -> None:
    overrides = {
        "service.name": None,
        "exporter.exporters": ["console", "otlp"],
        "exporter.endpoint": "http://collector.example.com:4318",
        "log_level": "debug",
        "profiler": {"enabled": True, "sample_rate": 0.5},
    }
    config = ProductionConfig.load(environment="production", environ={}, overrides=overrides)
    assert config.validate()[1] == [
        "service.name: required in production",
        "exporter.exporters: the console exporter is not allowed in production",
        "exporter.endpoint: must use https for a remote host in production, got "
        "'http://collector.example.com' (set exporter.insecure to allow plain http)",
        "log_level: DEBUG is not allowed in production",
        "profiler.sample_rate: must be at most 0.1 in production, got 0.5",
    ]
    # The same settings are fine in development (DEBUG, console, plain http).
    assert ProductionConfig.load(environ={}, overrides=overrides).validate() == (True, [])


def test_production_allows_plain_http_to_localhost_or_when_insecure_is_set() -> None:
    base = {"service.name": "s", "exporter.endpoint": "http://localhost:4318"}
    assert ProductionConfig.load(environment="production", environ={}, overrides=base).validate() == (
        True,
        [],
    )
    remote = {**base, "exporter.endpoint": "http://otel.internal:4318", "exporter.insecure": True}
    assert ProductionConfig.load(environment="production", environ={}, overrides=remote).validate() == (
        True,
        [],
    )


def test_staging_requires_a_service_name_and_other_cross_field_rules() -> None:
    overrides = {
        "resilience": {"retry_base_delay": 5, "retry_max_delay": 1},
        "exporter.exporters": "none,file",
    }
    errors = ProductionConfig.load(environment="staging", environ={}, overrides=overrides).validate()[1]
    assert errors == [
        "resilience.retry_base_delay: must be at most resilience.retry_max_delay (5.0 > 1.0)",
        "exporter.exporters: 'none' cannot be combined with other exporters",
        "service.name: required in staging",
    ]


def test_an_unresolvable_secret_reference_is_a_validation_error() -> None:
    config = ProductionConfig.load(environ={}, overrides={"exporter.api_key": {"secret": "nope"}})
    (error,) = config.validate()[1]
    assert error.startswith(
        "exporter.api_key: secret 'nope' not found (tried: env ($NOPE); file ($NOPE_FILE, "
    )


# -- output ---------------------------------------------------------------------------------------


def test_to_dict_is_plain_redacted_data() -> None:
    config = ProductionConfig.from_file(FIXTURES / "base.yaml", environ={"OTLP_TOKEN": TOKEN})
    data = config.to_dict()
    text = json.dumps(data)
    assert TOKEN not in text
    assert data["exporter"]["headers"] == {"authorization": "[secure]"}
    assert data["exporter"]["exporters"] == ["file", "otlp"]
    assert data["feature_flags"]["new_scaler"] == {"enabled": True, "percentage": 25.0}
    assert TOKEN not in repr(config) and TOKEN not in str(config.exporter)


def test_to_agent_settings() -> None:
    config = ProductionConfig.load(
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "https://x.example.com"},
        overrides={"service.name": "svc", "exporter.exporters": ["otlp"], "sampling.ratio": 0.2},
    )
    settings = config.to_agent_settings()
    assert isinstance(settings, AgentSettings)
    assert (settings.service_name, settings.exporters, settings.sample_ratio) == ("svc", ("otlp",), 0.2)
    assert settings.otlp_endpoint == "https://x.example.com"
    assert settings.environment == "development"
    # Resource monitor and profiler groups fill the runtime's fields.
    # The same defaults as a plain start(): every 5 s, and no limits (no sampling thread).
    assert (settings.resource_monitor, settings.resource_interval) == (
        True,
        AgentSettings().resource_interval,
    )
    assert (settings.resource_cpu_threshold, settings.resource_memory_threshold) == (None, None)
    assert AgentSettings().resource_cpu_threshold is None
    assert (settings.profiler_enabled, settings.profiler_sample_rate) == (True, 0.01)
    # Nothing set: no headers, and the timeout is left to the exporters.
    assert (dict(settings.otlp_headers), settings.otlp_timeout) == ({}, None)


def test_to_agent_settings_carries_the_monitor_and_profiler_groups() -> None:
    config = ProductionConfig.load(
        environ={"AMQADF_RESOURCE_INTERVAL": "3", "AMQADF_PROFILER_ENABLED": "false"},
        overrides={
            "resource_monitor": {"cpu_threshold": 0.75, "memory_threshold": 0.6},
            "profiler.sample_rate": 0.2,
        },
    )
    assert config.sources["resource_monitor.interval"] == "env AMQADF_RESOURCE_INTERVAL"
    settings = config.to_agent_settings()
    assert settings.resource_interval == 3.0
    assert (settings.resource_cpu_threshold, settings.resource_memory_threshold) == (0.75, 0.6)
    assert (settings.profiler_enabled, settings.profiler_sample_rate) == (False, 0.2)


def test_profiler_is_on_by_default_and_the_decorator_is_the_opt_in() -> None:
    assert ProductionConfig.load(environ={}).profiler.enabled is True
    production = ProductionConfig.load(environ={}, overrides={"service.name": "s"}, environment="production")
    assert production.validate() == (True, [])  # the production profile samples 0.001
    assert production.to_agent_settings().profiler_sample_rate == 0.001


def headers_sent(config: ProductionConfig) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in config.to_agent_settings().otlp_headers.items()}


def test_api_key_is_a_bearer_authorization_header_by_default() -> None:
    config = ProductionConfig.load(
        environ={"OTLP_API_KEY": TOKEN},
        overrides={"exporter.api_key": {"secret": "otlp_api_key"}, "exporter.headers": {"X-Team": "core"}},
    )
    assert config.exporter.api_key_header == "authorization"
    assert headers_sent(config) == {"x-team": "core", "authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(config.to_agent_settings()) + json.dumps(config.to_dict())
    assert config.to_dict()["exporter"]["api_key_header"] == "authorization"


def test_an_api_key_given_with_its_scheme_is_not_prefixed_twice() -> None:
    config = ProductionConfig.load(
        environ={"OTLP_API_KEY": f"Bearer {TOKEN}"},
        overrides={"exporter.api_key": {"secret": "otlp_api_key"}},
    )
    assert headers_sent(config) == {"authorization": f"Bearer {TOKEN}"}


def test_api_key_in_another_header_is_sent_as_it_is() -> None:
    config = ProductionConfig.load(
        environ={}, overrides={"exporter.api_key": TOKEN, "exporter.api_key_header": "X-API-Key"}
    )
    assert headers_sent(config) == {"x-api-key": TOKEN}


def test_an_explicit_header_of_the_same_name_wins_over_the_api_key() -> None:
    config = ProductionConfig.load(
        environ={},
        overrides={"exporter.api_key": "from-key", "exporter.headers": {"Authorization": "Basic abc"}},
    )
    assert headers_sent(config) == {"authorization": "Basic abc"}


def test_a_bad_api_key_header_names_the_field() -> None:
    config = ProductionConfig.load(environ={}, overrides={"exporter.api_key_header": "x api key"})
    assert config.validate() == (
        False,
        ["exporter.api_key_header: must be a header name such as x-api-key, got 'x api key'"],
    )
    assert config.exporter.api_key_header == "authorization"


def test_an_unresolved_header_secret_is_an_error_and_is_not_sent() -> None:
    config = ProductionConfig.load(environ={}, overrides={"exporter.headers": {"x-key": {"secret": "nope"}}})
    ok, errors = config.validate()
    assert not ok and errors[0].startswith("exporter.headers.x-key: secret 'nope' not found")
    assert headers_sent(config) == {}


def test_exporter_timeout_is_passed_only_when_set_and_otel_timeout_is_in_seconds() -> None:
    assert ProductionConfig.load(environ={}).to_agent_settings().otlp_timeout is None
    file_set = ProductionConfig.load(environ={}, overrides={"exporter.timeout": 2.5})
    assert file_set.to_agent_settings().otlp_timeout == 2.5
    # The Python OTLP exporters read OTEL_EXPORTER_OTLP_TIMEOUT in seconds; so does the config.
    from_env = ProductionConfig.from_env(environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "4"})
    assert (from_env.exporter.timeout, from_env.to_agent_settings().otlp_timeout) == (4.0, 4.0)


# -- feature flags --------------------------------------------------------------------------------


def test_flags_on_off_and_unknown() -> None:
    config = ProductionConfig.load(
        environ={"AMQADF_FEATURE_FLAGS__BETA": "true"},
        overrides={"feature_flags": {"off": False, "half": {"enabled": True, "percentage": 50}}},
    )
    assert config.feature_enabled("beta") is True
    assert config.feature_enabled("beta", key="anyone") is True
    assert config.feature_enabled("off", key="x") is False
    assert config.feature_enabled("missing") is False
    assert config.feature_enabled("half") is False  # a partial rollout needs a key
    assert config.sources["feature_flags.beta.enabled"] == "env AMQADF_FEATURE_FLAGS__BETA"


def test_flag_override_by_environment_variable_beats_the_file() -> None:
    config = ProductionConfig.load(
        FIXTURES / "base.yaml",
        environ={"OTLP_TOKEN": TOKEN, "AMQADF_FEATURE_FLAGS__NEW_SCALER__PERCENTAGE": "100"},
    )
    assert config.feature_enabled("new_scaler") is True


def test_rollout_is_stable_across_instances_and_matches_a_known_bucket() -> None:
    flags = FeatureFlags({"f": FeatureFlag("f", True, 30.0)})
    again = FeatureFlags({"f": FeatureFlag("f", True, 30.0)})
    keys = [f"tenant-{i}" for i in range(2000)]
    assert [flags.enabled("f", k) for k in keys] == [again.enabled("f", k) for k in keys]
    # A fixed value (CRC-32 and the finalizer are the same in every process, Python version and
    # machine; hash() is not): changing the hash would move every key of every running rollout.
    assert bucket("new_scaler", "tenant-42") == 7752
    other_process = subprocess.run(
        [
            sys.executable,
            "-c",
            "from amqadf_agent.config.flags import bucket; print(bucket('new_scaler', 'tenant-42'))",
        ],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other_process.stdout.strip() == "7752"
    assert all(0 <= bucket("f", k) < BUCKETS for k in keys)


def test_rollout_share_is_close_to_the_percentage_and_monotonic() -> None:
    keys = [f"user-{i}" for i in range(20000)]
    shares = []
    for percentage in (1.0, 10.0, 25.0, 50.0, 90.0):
        flags = FeatureFlags({"f": FeatureFlag("f", True, percentage)})
        on = {k for k in keys if flags.enabled("f", k)}
        shares.append((percentage, on))
        assert abs(len(on) / len(keys) * 100 - percentage) < 1.5
    for (_, smaller), (_, larger) in itertools.pairwise(shares):
        assert smaller <= larger  # growing a rollout keeps everyone who already had it


def test_flag_names_hash_independently() -> None:
    keys = [f"k{i}" for i in range(4000)]
    a = FeatureFlags({"a": FeatureFlag("a", True, 50.0)})
    b = FeatureFlags({"b": FeatureFlag("b", True, 50.0)})
    both = sum(1 for k in keys if a.enabled("a", k) and b.enabled("b", k))
    assert abs(both / len(keys) - 0.25) < 0.03


def test_flag_evaluation_emits_no_telemetry() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import amqadf_agent

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    config = ProductionConfig.load(
        overrides={"feature_flags": {"f": {"enabled": True, "percentage": 30.0}}}, environ={}
    )
    # The running agent's global providers: whatever the flags could reach, these would see.
    agent = amqadf_agent.start(
        exporters=["none"], span_exporters=[spans], metric_readers=[reader], resource_monitor=False
    )
    try:
        with trace.get_tracer("t").start_as_current_span("request"):
            for i in range(1000):
                config.feature_enabled("f", f"tenant-{i}")
                config.feature_enabled("unknown")
        assert agent.force_flush()
        # The one span is the test's own, without events; no metric speaks of flags.
        (span,) = spans.get_finished_spans()
        assert span.name == "request" and not span.events
        data = reader.get_metrics_data()
        names = {
            m.name
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert not {name for name in names if "flag" in name or "feature" in name}, names
    finally:
        agent.shutdown()


# -- start(config) --------------------------------------------------------------------------------


def test_start_with_a_valid_config_runs_with_its_settings(tmp_path: Path) -> None:
    config = ProductionConfig.load(
        environ={},
        overrides={"service.name": "cfg-svc", "exporter.output_dir": str(tmp_path), "sampling.ratio": 0.5},
    )
    with agent_mod.start(config) as agent:
        assert agent.running
        assert agent.settings.service_name == "cfg-svc"
        assert agent.settings.sample_ratio == 0.5
        assert agent.output_dir == tmp_path
        assert agent.resource is not None
        assert agent.resource.attributes["service.name"] == "cfg-svc"


def test_start_with_an_invalid_config_does_not_start_and_prints_the_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = ProductionConfig.load(
        environ={}, overrides={"exporter.endpoint": "foo", "autoscaler.max_instances": 0}
    )
    agent = agent_mod.start(config)
    assert not agent.running
    assert agent_mod.get_agent() is None
    err = capsys.readouterr().err
    assert "amqadf-agent: exporter.endpoint: must be a URL, got 'foo'" in err
    assert "amqadf-agent: autoscaler.max_instances: must be a positive whole number, got 0" in err
    assert agent.error is not None and "exporter.endpoint: must be a URL" in agent.error


def test_secret_is_a_value_type() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1


def test_a_numeric_flag_key_buckets_as_its_text() -> None:
    flags = FeatureFlags({"f": FeatureFlag("f", True, 50.0)})
    assert [flags.enabled("f", i) for i in range(200)] == [  # type: ignore[arg-type]
        flags.enabled("f", str(i)) for i in range(200)
    ]
    assert bucket("f", 42) == bucket("f", "42")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "level"), [("warn", "WARNING"), ("debug", "DEBUG"), ("verbose", "DEBUG"), ("none", None)]
)
def test_otel_log_level_takes_known_levels_and_leaves_other_sdks_names(value: str, level: str | None) -> None:
    config = ProductionConfig.from_env(environ={"OTEL_LOG_LEVEL": value})
    assert config.validate() == (True, [])
    if level is None:  # not ours: the default stays, and nothing is refused
        assert config.sources["log_level"] != "env OTEL_LOG_LEVEL"
    else:
        assert (config.log_level, config.sources["log_level"]) == (level, "env OTEL_LOG_LEVEL")


def test_a_bad_millisecond_variable_is_reported_as_it_was_given() -> None:
    # The user wrote -1000 (milliseconds): the message shows that, not the converted -1.0 seconds.
    config = ProductionConfig.from_env(environ={"OTEL_METRIC_EXPORT_INTERVAL": "-1000"})
    assert config.validate()[1] == [
        "exporter.metric_interval: must be a positive number, got '-1000' [env OTEL_METRIC_EXPORT_INTERVAL]"
    ]
    assert config.exporter.metric_interval == 15.0
