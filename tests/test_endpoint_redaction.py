"""A password in an endpoint URL (``https://user:pass@collector``) is shown as ``[secure]`` everywhere.

The value itself still reaches the exporters: only what is shown is redacted.
"""

from __future__ import annotations

import json

import pytest

from amqadf_agent.cli.agent import main
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.redaction import redact_url
from amqadf_agent.runtime.settings import AgentSettings, resolve

PASSWORD = "pw-PLANTED-7c3e"
ENDPOINT = f"https://collector-user:{PASSWORD}@collector.example.com:4318"
SHOWN = "https://collector-user:[secure]@collector.example.com:4318"


def _config_show(fmt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    assert main(["config", "show", "--format", fmt]) == 0
    return capsys.readouterr().out


def test_config_show_text_redacts_the_endpoint_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _config_show("text", monkeypatch, capsys)
    assert PASSWORD not in out
    line = next(line for line in out.splitlines() if line.startswith("exporter.endpoint "))
    assert f'"{SHOWN}"' in line
    assert line.endswith("# env OTEL_EXPORTER_OTLP_ENDPOINT")


def test_config_show_json_redacts_the_endpoint_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _config_show("json", monkeypatch, capsys)
    assert PASSWORD not in out
    assert json.loads(out)["values"]["exporter"]["endpoint"] == SHOWN


def test_production_config_repr_and_its_groups_redact_urls_but_keep_the_value() -> None:
    config = ProductionConfig.load(
        overrides={"exporter.endpoint": ENDPOINT, "secrets.vault.url": ENDPOINT}, environ={}
    )
    for shown in (repr(config), repr(config.exporter), repr(config.secrets), str(config.to_dict())):
        assert PASSWORD not in shown
    assert SHOWN in repr(config.exporter)
    assert config.exporter.endpoint == ENDPOINT  # what the exporters are given
    assert config.to_agent_settings().otlp_endpoint == ENDPOINT


def test_agent_settings_repr_redacts_the_endpoint_but_keeps_the_value() -> None:
    settings, problems = resolve(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT})
    assert problems == []
    for shown in (repr(settings), str(settings), repr(AgentSettings(otlp_endpoint=ENDPOINT))):
        assert PASSWORD not in shown
        assert f"otlp_endpoint={SHOWN!r}" in shown
    assert settings.otlp_endpoint == ENDPOINT


def test_an_invalid_endpoint_is_reported_without_its_password() -> None:
    config = ProductionConfig.load(overrides={"exporter.endpoint": f"ftp://u:{PASSWORD}@host"}, environ={})
    valid, errors = config.validate()
    assert not valid
    assert errors == ["exporter.endpoint: must be a URL, got 'ftp://u:[secure]@host'"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (ENDPOINT, SHOWN),
        ("https://token@collector:4318/v1", "https://[secure]@collector:4318/v1"),
        ("https://collector:4318/v1/traces", "https://collector:4318/v1/traces"),
        ("collector:4317", "collector:4317"),
    ],
)
def test_redact_url_replaces_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
