"""Secrets: never shown, resolved through providers in order, cached with a TTL, thread-safe."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest
from support.clock import FakeClock

from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.config.secrets import (
    EnvironmentProvider,
    FileProvider,
    Secret,
    SecretResolver,
    build_providers,
)
from amqadf_agent.errors import AmqadfError, SecretNotFoundError
from amqadf_agent.runtime import agent as agent_mod

PLANTED = "s3cr3t-PLANTED-7c1e"


class CountingProvider:
    """A provider that counts lookups (a fake, like OTel's in-memory exporters)."""

    def __init__(self, name: str, values: dict[str, str]) -> None:
        self.name = name
        self.values = values
        self.calls = 0
        self._lock = threading.Lock()

    def lookup(self, name: str) -> str | None:
        with self._lock:
            self.calls += 1
        return self.values.get(name)

    def describe(self, name: str) -> str:
        return f"{self.name} ({name})"


# -- the Secret type ------------------------------------------------------------------------------


def test_a_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(PLANTED, "api_key")
    assert repr(secret) == "Secret(name='api_key', value='[secure]')"
    assert str(secret) == "[secure]"
    assert f"{secret}|{secret!s}|{secret:>10}" == "[secure]|[secure]|  [secure]"
    assert PLANTED not in repr([secret, {"k": secret}])
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("app").warning("key is %s, %r", secret, secret)
        logging.getLogger("app").warning("key is %s", {"api_key": secret})
    assert PLANTED not in caplog.text
    assert "[secure]" in caplog.text
    with pytest.raises(TypeError) as caught:
        json.dumps({"key": secret})
    assert PLANTED not in str(caught.value)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
    assert secret.get_secret_value() == PLANTED


def test_a_planted_secret_appears_nowhere_in_the_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "environment: production\nservice: {name: s}\nexporter:\n  api_key: {secret: otlp_token}\n"
        f"  headers: {{x-literal: {PLANTED}-lit}}\n  timeout: soon\nprofiler: {{sample_rate: 2}}\n",
        encoding="utf-8",
    )
    environ = {"OTLP_TOKEN": PLANTED}
    with caplog.at_level(logging.DEBUG):
        config = ProductionConfig.load(file, environ=environ)
        valid, errors = config.validate()
    assert config.exporter.api_key is not None
    assert config.exporter.api_key.get_secret_value() == PLANTED
    assert not valid
    shown = [repr(config), str(config.exporter), repr(config.exporter), json.dumps(config.to_dict()), *errors]
    shown.append(caplog.text)
    for text in shown:
        assert PLANTED not in text


def test_a_wrongly_typed_secret_is_redacted_in_the_error() -> None:
    config = ProductionConfig.load(environ={}, overrides={"exporter.api_key": [PLANTED]})
    assert config.validate()[1] == ["exporter.api_key: must be a string or {secret: NAME}, got [secure]"]
    headers = ProductionConfig.load(environ={}, overrides={"exporter.headers": {"a": [PLANTED]}})
    assert headers.validate()[1] == [
        "exporter.headers: must be a mapping of header names to values, got [secure]"
    ]


def test_a_planted_secret_is_not_in_the_telemetry_of_a_run_that_uses_it(tmp_path: Path) -> None:
    out = tmp_path / "telemetry"
    config = ProductionConfig.load(
        environ={"OTLP_TOKEN": PLANTED},
        overrides={
            "service.name": "secret-demo",
            "exporter.output_dir": str(out),
            "exporter.api_key": {"secret": "otlp_token"},
            "exporter.headers": {"authorization": {"secret": "otlp_token"}},
        },
    )
    assert config.validate() == (True, [])
    with agent_mod.start(config, capture_logs=True) as agent:
        assert agent.running
        tracer = agent.tracer("test")
        key = config.get_secret("otlp_token")
        with tracer.start_as_current_span("call-backend") as span:
            span.set_attribute("auth", str(key))  # what a careless user might do
            span.set_attribute("config", json.dumps(config.to_dict()))
            logging.getLogger("app").warning("calling with %s (%r)", key, key)
        agent.force_flush()
    written = "".join(path.read_text(encoding="utf-8") for path in out.rglob("*") if path.is_file())
    assert "call-backend" in written and "[secure]" in written
    assert PLANTED not in written


# -- providers ------------------------------------------------------------------------------------


def test_environment_provider_reads_the_upper_case_name_with_a_prefix() -> None:
    provider = EnvironmentProvider(environ={"API_KEY": "a", "APP_DB_PASSWORD": "b"})
    assert provider.lookup("api_key") == "a"
    assert provider.lookup("api-key") == "a"
    assert provider.lookup("missing") is None
    assert EnvironmentProvider("APP_", {"APP_DB_PASSWORD": "b"}).lookup("db.password") == "b"


def test_file_provider_name_file_convention_then_directory(tmp_path: Path) -> None:
    mount = tmp_path / "run-secrets"
    mount.mkdir()
    (mount / "db_password").write_text("from-dir\n", encoding="utf-8")
    (mount / "api_key").write_text("dir-key", encoding="utf-8")
    pointed = tmp_path / "elsewhere.txt"
    pointed.write_text("from-name-file\r\n", encoding="utf-8")
    provider = FileProvider(mount, environ={"API_KEY_FILE": str(pointed)})
    assert provider.lookup("api_key") == "from-name-file"  # NAME_FILE first, trailing newline dropped
    assert provider.lookup("db_password") == "from-dir"
    assert provider.lookup("missing") is None
    assert provider.lookup("../etc/passwd") is None  # names are not paths
    assert (
        FileProvider(mount, environ={"API_KEY_FILE": str(tmp_path / "gone")}).lookup("api_key") == "dir-key"
    )


def test_file_provider_unreadable_file_is_logged_without_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "k").mkdir()  # a directory where a file should be: reading it fails
    with caplog.at_level(logging.WARNING):
        assert FileProvider(tmp_path, environ={}).lookup("k") is None
    assert "cannot be read" in caplog.text


def test_providers_are_tried_in_the_configured_order(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file", encoding="utf-8")
    environ = {"TOKEN": "from-env"}
    env_first = SecretResolver(build_providers(["env", "file"], directory=tmp_path, environ=environ))
    file_first = SecretResolver(build_providers(["file", "env"], directory=tmp_path, environ=environ))
    assert env_first.get("token").get_secret_value() == "from-env"
    assert file_first.get("token").get_secret_value() == "from-file"
    config = ProductionConfig.load(
        environ=environ, overrides={"secrets": {"providers": ["file", "env"], "directory": str(tmp_path)}}
    )
    assert config.get_secret("token").get_secret_value() == "from-file"
    with pytest.raises(ValueError):
        build_providers(["vault"])


def test_a_missing_secret_names_it_and_the_providers_tried(tmp_path: Path) -> None:
    (tmp_path / "other").write_text(PLANTED, encoding="utf-8")
    config = ProductionConfig.load(
        environ={"OTHER": PLANTED}, overrides={"secrets": {"directory": str(tmp_path)}}
    )
    with pytest.raises(SecretNotFoundError) as caught:
        config.get_secret("db_password")
    error = caught.value
    assert isinstance(error, AmqadfError)
    assert error.name == "db_password"
    assert str(error) == (
        f"secret 'db_password' not found (tried: env ($DB_PASSWORD); "
        f"file ($DB_PASSWORD_FILE, {tmp_path / 'db_password'}))"
    )
    assert PLANTED not in str(error) and PLANTED not in repr(error)


def test_a_failing_provider_is_named_without_its_message() -> None:
    class Broken:
        name = "broken"

        def lookup(self, name: str) -> str | None:
            raise RuntimeError(f"leaked {PLANTED}")

        def describe(self, name: str) -> str:
            return "broken"

    resolver = SecretResolver([Broken(), CountingProvider("memory", {"x": "1"})])
    assert resolver.get("x").get_secret_value() == "1"
    with pytest.raises(SecretNotFoundError) as caught:
        resolver.get("y")
    assert str(caught.value) == "secret 'y' not found (tried: broken failed: RuntimeError; memory (y))"


def test_no_provider_configured() -> None:
    with pytest.raises(SecretNotFoundError, match="no provider is configured"):
        SecretResolver([]).get("x")


# -- cache ----------------------------------------------------------------------------------------


def test_ttl_cache_reuses_then_refreshes() -> None:
    clock = FakeClock()
    provider = CountingProvider("memory", {"k": "v1"})
    resolver = SecretResolver([provider], ttl=60.0, clock=clock)
    assert resolver.get("k").get_secret_value() == "v1"
    provider.values["k"] = "v2"
    clock.now += 59.9
    assert resolver.get("k").get_secret_value() == "v1"  # cached
    assert provider.calls == 1
    clock.now += 0.1
    assert resolver.get("k").get_secret_value() == "v2"  # expired: refreshed
    assert provider.calls == 2
    resolver.invalidate("k")
    provider.values["k"] = "v3"
    assert resolver.get("k").get_secret_value() == "v3"
    resolver.invalidate()
    del provider.values["k"]
    with pytest.raises(SecretNotFoundError):
        resolver.get("k")


def test_ttl_zero_never_caches() -> None:
    provider = CountingProvider("memory", {"k": "v"})
    resolver = SecretResolver([provider], ttl=0)
    resolver.get("k")
    resolver.get("k")
    assert provider.calls == 2


def test_config_cache_ttl_and_injected_clock() -> None:
    clock = FakeClock()
    provider = CountingProvider("memory", {"k": "v"})
    config = ProductionConfig.load(
        environ={}, overrides={"secrets.cache_ttl": 10}, secret_providers=[provider], clock=clock
    )
    config.get_secret("k")
    config.get_secret("k")
    clock.now += 10
    config.get_secret("k")
    assert provider.calls == 2


def test_concurrent_access_asks_the_provider_once() -> None:
    provider = CountingProvider("memory", {f"k{i}": str(i) for i in range(5)})
    resolver = SecretResolver([provider], ttl=300.0)
    barrier = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(200):
            for i in range(5):
                value = resolver.get(f"k{i}").get_secret_value()
                with lock:
                    results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert provider.calls == 5  # one lookup per name, however many threads asked
    assert sorted(set(results)) == ["0", "1", "2", "3", "4"]
    assert len(results) == 8 * 200 * 5


def test_default_providers_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQADF_TEST_SECRET", PLANTED)
    assert os.environ["AMQADF_TEST_SECRET"] == PLANTED
    config = ProductionConfig.from_env()
    assert config.get_secret("amqadf_test_secret").get_secret_value() == PLANTED
