"""The one settings table: ``start()`` and ``ProductionConfig`` read each key and variable alike."""

from __future__ import annotations

from typing import Any

import pytest

from amqadf_agent.config import schema
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.config.settings import RUNTIME_DEFAULTS, AgentSettings
from amqadf_agent.runtime.settings import RUNTIME_PARSERS, resolve

#: (setting, key path, variable) for every variable start() reads, but where start() reads a key
#: otherwise on purpose (RUNTIME_PARSERS: any environment name, a gRPC host:port endpoint).
VARIABLES = [
    (setting, path, variable)
    for setting, path in sorted(schema.runtime_keys().items())
    if setting not in RUNTIME_PARSERS and not schema.leaf_field(path).metadata["sdk_reads_env"]
    for variable in schema.leaf_field(path).metadata["env"]
]


def test_every_agent_setting_is_a_key_of_the_table() -> None:
    fields = set(AgentSettings.__dataclass_fields__)
    assert set(schema.runtime_keys()) == fields
    assert len(VARIABLES) >= 25


@pytest.mark.parametrize("setting", sorted(set(schema.runtime_keys()) - set(RUNTIME_DEFAULTS)))
def test_agent_settings_defaults_are_the_table_defaults(setting: str) -> None:
    assert getattr(AgentSettings(), setting) == schema.default_of(schema.runtime_keys()[setting])


@pytest.mark.parametrize("raw", ["bogus", "0", "-1", "2.5", "yes"])
@pytest.mark.parametrize(("setting", "path", "variable"), VARIABLES)
def test_a_variable_means_the_same_to_start_and_to_production_config(
    setting: str, path: tuple[str, ...], variable: str, raw: str
) -> None:
    environ = {variable: raw}
    settings, problems = resolve(environ=environ)
    config = ProductionConfig.from_env(environ=environ)
    typed: Any = getattr(config, path[0]) if len(path) == 1 else getattr(getattr(config, path[0]), path[1])
    _, errors = config.validate()
    dotted = ".".join(path)
    config_errors = [error for error in errors if error.startswith(f"{dotted}:")]
    if not problems:
        assert config_errors == []
        assert getattr(settings, setting) == typed
        return
    assert [problem.setting for problem in problems] == [variable]
    expected = schema.parser_of(path)[0].expected
    assert str(problems[0]).startswith(f"{variable}: must be {expected}, got {raw!r}; ")
    assert config_errors == [f"{dotted}: must be {expected}, got {raw!r} [env {variable}]"]


def test_one_did_you_mean_for_both() -> None:
    _, problems = resolve(overrides={"exporter": "file"}, environ={})
    config = ProductionConfig.load(overrides={"exporter.exporter": "file"}, environ={})
    assert "(did you mean 'exporters'?)" in str(problems[0])
    assert "(did you mean 'exporter.exporters'?)" in config.validate()[1][0]
