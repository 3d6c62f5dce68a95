"""A demo run configured by a file that uses a secret: the secret is used and never written anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from amqadf_agent.cli.agent import main
from amqadf_agent.runtime.settings import AgentSettings

PLANTED = "planted-4c1d-9f7e-inventory-secret"


def test_a_planted_secret_never_reaches_telemetry_logs_or_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a configuration file whose secret providers have the inventory key (from the environment)
    monkeypatch.setenv("INVENTORY_API_KEY", PLANTED)
    config = tmp_path / "shop.yaml"
    config.write_text(
        "service:\n  version: 9.9.9\nexporter:\n  metric_interval: 1\nsecrets:\n  providers: [env]\n"
    )
    out = tmp_path / "telemetry"

    # WHEN the demo runs with it
    assert main(["demo", "--duration", "3", "--rate", "15", "--out", str(out), "--config", str(config)]) == 0
    captured = capsys.readouterr()

    # THEN the key was found and used (shown redacted), and its value is nowhere
    assert "inventory key: [secure]" in captured.err
    files = sorted(out.glob("*.jsonl"))
    assert {f.name for f in files} >= {"traces.jsonl", "metrics.jsonl", "logs.jsonl"}
    assert (out / "traces.jsonl").stat().st_size > 0
    for path in files:
        assert PLANTED.encode() not in path.read_bytes(), path
    assert PLANTED not in captured.out and PLANTED not in captured.err
    # The file's settings were applied under the demo's own options.
    assert b'"service.version","value":{"stringValue":"9.9.9"}' in (out / "traces.jsonl").read_bytes()


def test_an_invalid_configuration_is_one_line_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("exporter:\n  endpoint: foo\n  metric_intervall: 1\n")
    assert main(["demo", "--duration", "3", "--out", str(tmp_path / "t"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("amqadf-agent: --config: ")
    assert "exporter.endpoint" in err[0] and "did you mean" in err[0]
    assert not (tmp_path / "t").exists()


def test_agent_settings_default_is_untouched_by_the_demo_config() -> None:
    assert AgentSettings().service_version is None
