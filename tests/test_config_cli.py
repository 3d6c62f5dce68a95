"""``amqadf-agent config show|check``: output, redaction, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amqadf_agent.cli.agent import main

FIXTURES = Path(__file__).parent / "fixtures" / "config"
PLANTED = "tok-PLANTED-cli-51d0"


def test_check_a_valid_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTLP_TOKEN", PLANTED)
    path = FIXTURES / "base.toml"
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (environment staging)\n"


def test_check_prints_every_error_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "invalid.yaml"
    assert main(["config", "check", str(path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 9
    assert f"{path}: exporter.endpoint: must be a URL, got 'foo'" in lines
    assert f"{path}: exporter.endpiont: unknown key (did you mean 'exporter.endpoint'?)" in lines
    assert captured.err == f"amqadf-agent config: {path}: 9 problem(s)\n"


def test_check_reads_the_environment_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / "base.yaml"
    monkeypatch.setenv("OTLP_TOKEN", PLANTED)
    monkeypatch.setenv("AMQADF_SAMPLING__RATIO", "7")
    assert main(["config", "check", str(path)]) == 1
    assert (
        "sampling.ratio: must be a number from 0 to 1, got '7' [env AMQADF_SAMPLING__RATIO]"
        in capsys.readouterr().out
    )
    # --no-env ignores the AMQADF_/OTEL_ settings; secrets still come from the environment provider.
    assert main(["config", "check", str(path), "--no-env"]) == 0
    capsys.readouterr()
    monkeypatch.delenv("OTLP_TOKEN")
    assert main(["config", "check", str(path), "--no-env"]) == 1
    assert "exporter.headers.authorization: secret 'otlp_token' not found" in capsys.readouterr().out
    monkeypatch.setenv("OTLP_TOKEN", PLANTED)
    assert main(["config", "check", str(path), "--environment", "production"]) == 1
    monkeypatch.delenv("AMQADF_SAMPLING__RATIO")
    assert main(["config", "check", str(path), "--environment", "production"]) == 0


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("malformed.yaml", ":4:21: invalid YAML"),
        ("malformed.json", ":4:3: invalid JSON"),
        ("malformed.toml", ":3:11: invalid TOML"),
    ],
)
def test_check_malformed_files_give_line_and_column(
    name: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = FIXTURES / name
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}{where}")


def test_unreadable_file_has_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    for action in ("check", "show"):
        done = subprocess.run(
            [sys.executable, "-m", "amqadf_agent.cli.agent", "config", action, str(missing)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr + done.stdout
        assert f"{missing}: no such file" in done.stderr + done.stdout


def test_show_prints_each_value_with_its_layer_and_redacts_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTLP_TOKEN", PLANTED)
    monkeypatch.setenv("AMQADF_EXPORTER__METRIC_INTERVAL", "45")
    path = FIXTURES / "base.yaml"
    assert main(["config", "show", str(path), "--environment", "production"]) == 0
    captured = capsys.readouterr()
    assert PLANTED not in captured.out + captured.err
    lines = {line.split(" = ")[0].strip(): line for line in captured.out.splitlines()[1:]}
    assert lines["environment"].endswith('"production"  # argument')
    assert lines["exporter.headers"].endswith(f'{{"authorization": "[secure]"}}  # file {path}')
    assert lines["exporter.metric_interval"].endswith("45.0  # env AMQADF_EXPORTER__METRIC_INTERVAL")
    assert lines["sampling.ratio"].endswith(f"0.1  # file {path} (environments.production)")
    assert lines["profiler.sample_rate"].endswith("0.001  # profile production")
    assert lines["autoscaler.target_cpu"].endswith("0.7  # default")
    assert lines["feature_flags.new_scaler.percentage"].endswith(
        f"5.0  # file {path} (environments.production)"
    )
    assert captured.err == ""


def test_show_json_and_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["values"]["environment"] == "development"
    assert data["sources"]["log_level"] == "profile development"


def test_show_mentions_problems_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(FIXTURES / "invalid.yaml")]) == 0
    assert "9 problem(s); run 'amqadf-agent config check'" in capsys.readouterr().err
