"""The Vault and AWS Secrets Manager providers, with their real clients against loopback endpoints.

- AWS: ``boto3`` (the real client) against ``moto`` in server mode on a free loopback port.
- Vault: ``hvac`` (the real client) against ``tests/support/vault_stub.py``, a loopback HTTP server that
  stands in for Vault, which cannot be installed here. It answers the KV v2 read, AppRole login and
  token lookup endpoints as Vault's HTTP API documentation specifies, checking ``X-Vault-Token`` and
  ``X-Vault-Namespace`` (403 for a wrong token, 404 for a missing path).

No mocks of hvac or boto3. A planted value must never appear in an error, a ``repr`` or a log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from support import free_port
from support.clock import FakeClock
from support.vault_stub import VaultStub

from amqadf_agent.config import vault as vault_module
from amqadf_agent.config.aws import AwsSecretsManagerProvider
from amqadf_agent.config.production import ProductionConfig
from amqadf_agent.config.secrets import SecretProviderError, SecretResolver
from amqadf_agent.config.vault import VaultProvider
from amqadf_agent.errors import ConfigError, MissingExtraError, SecretNotFoundError

PLANTED = "planted-s3cr3t-value-9f2c"
TOKEN = "hvs.planted-root-token-77ab"
REGION = "us-east-1"


# -- AWS Secrets Manager (moto server) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def sm(moto_url: str, aws_env: None, request: pytest.FixtureRequest) -> object:
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    prefix = f"t{abs(hash(request.node.name)) % 10**8}/"
    client.create_secret(Name=prefix + "api_key", SecretString=PLANTED)
    client.create_secret(
        Name=prefix + "db", SecretString=json.dumps({"user": "app", "password": PLANTED, "port": 5432})
    )
    client.prefix = prefix  # type: ignore[attr-defined]
    return client


def test_aws_plain_and_json_key(sm: object, moto_url: str) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    provider = AwsSecretsManagerProvider(REGION, prefix=prefix, endpoint_url=moto_url, timeout=5)
    assert provider.lookup("api_key") == PLANTED
    assert provider.lookup("db#password") == PLANTED
    assert provider.lookup("db#user") == "app"
    assert provider.lookup("db#port") == "5432"
    assert provider.lookup("db#missing") is None
    assert PLANTED not in repr(provider)


def test_aws_missing_secret_names_it_and_the_provider(sm: object, moto_url: str) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    provider = AwsSecretsManagerProvider(REGION, prefix=prefix, endpoint_url=moto_url)
    assert provider.lookup("nope") is None
    with pytest.raises(SecretNotFoundError) as caught:
        SecretResolver([provider]).get("nope")
    assert str(caught.value) == f"secret 'nope' not found (tried: aws ({prefix}nope in {REGION}))"


def test_aws_key_of_a_plain_secret_is_a_clear_error_without_the_value(
    sm: object, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    provider = AwsSecretsManagerProvider(REGION, prefix=prefix, endpoint_url=moto_url)
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretProviderError) as caught:
        provider.lookup("api_key#x")
    assert "not JSON" in str(caught.value) and "'api_key#x'" in str(caught.value)
    with pytest.raises(SecretNotFoundError) as missing:
        SecretResolver([provider]).get("api_key#x")
    assert "aws" in str(missing.value) and "not JSON" in str(missing.value)
    for text in (str(caught.value), repr(caught.value), str(missing.value), caplog.text):
        assert PLANTED not in text


def test_aws_region_is_required_and_separates_secrets(sm: object, moto_url: str) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"secrets\.aws\.region: required"):
        AwsSecretsManagerProvider(None, endpoint_url=moto_url)
    other = AwsSecretsManagerProvider("eu-west-1", prefix=prefix, endpoint_url=moto_url)
    assert other.lookup("api_key") is None  # secrets live in their region
    assert other.region == "eu-west-1"


def test_aws_region_from_the_environment(sm: object, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    provider = AwsSecretsManagerProvider(prefix=sm.prefix, endpoint_url=moto_url)  # type: ignore[attr-defined]
    assert provider.region == REGION
    assert provider.lookup("api_key") == PLANTED


def test_aws_ttl_refresh(sm: object, moto_url: str) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    clock = FakeClock()
    resolver = SecretResolver(
        [AwsSecretsManagerProvider(REGION, prefix=prefix, endpoint_url=moto_url)], ttl=60, clock=clock
    )
    assert resolver.get("api_key").get_secret_value() == PLANTED
    sm.put_secret_value(SecretId=prefix + "api_key", SecretString="rotated")  # type: ignore[attr-defined]
    clock.now += 30
    assert resolver.get("api_key").get_secret_value() == PLANTED  # cached
    clock.now += 30
    assert resolver.get("api_key").get_secret_value() == "rotated"  # expired: refreshed


def test_aws_unreachable_endpoint_is_wrapped(aws_env: None) -> None:
    provider = AwsSecretsManagerProvider(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(SecretProviderError, match="cannot reach Secrets Manager in us-east-1"):
        provider.lookup("x")


def test_aws_config_wiring(sm: object, moto_url: str, tmp_path: Path) -> None:
    prefix = sm.prefix  # type: ignore[attr-defined]
    config = ProductionConfig.load(
        environ={},
        overrides={
            "secrets": {
                "providers": ["env", "aws"],
                "aws": {"region": REGION, "prefix": prefix, "endpoint_url": moto_url, "timeout": 3},
            },
            "exporter.api_key": {"secret": "db#password"},
        },
    )
    assert config.validate() == (True, [])
    assert config.exporter.api_key is not None
    assert config.exporter.api_key.get_secret_value() == PLANTED
    assert config.secrets.aws.region == REGION
    text = json.dumps(config.to_dict())
    assert PLANTED not in text and repr(config).find(PLANTED) == -1


# -- Vault (stub server, real hvac) ---------------------------------------------------------------------


@pytest.fixture
def vault() -> Iterator[VaultStub]:
    stub = VaultStub().start()
    stub.add_token(TOKEN)
    stub.put("app/api_key", {"value": PLANTED})
    stub.put("app/db", {"user": "app", "password": PLANTED})
    try:
        yield stub
    finally:
        stub.stop()


def test_vault_token_auth_reads_kv2(vault: VaultStub) -> None:
    provider = VaultProvider(vault.url, token=TOKEN, path_prefix="app/", timeout=5)
    assert provider.lookup("api_key") == PLANTED
    assert provider.lookup("db#user") == "app"
    assert provider.lookup("db#nope") is None
    read = [r for r in vault.requests if r.method == "GET"]
    assert read[0].path == "/v1/secret/data/app/api_key"
    assert read[0].headers["X-Vault-Token"] == TOKEN
    assert TOKEN not in repr(provider) and PLANTED not in repr(provider)


def test_vault_ambiguous_secret_needs_a_key(vault: VaultStub) -> None:
    provider = VaultProvider(vault.url, token=TOKEN, path_prefix="app/")
    with pytest.raises(SecretProviderError, match=r"2 keys; name one as 'db#KEY'") as caught:
        provider.lookup("db")
    assert PLANTED not in str(caught.value)


def test_vault_missing_path_is_not_found(vault: VaultStub) -> None:
    provider = VaultProvider(vault.url, token=TOKEN, mount="secret")
    with pytest.raises(SecretNotFoundError) as caught:
        SecretResolver([provider]).get("nope/x")
    assert (
        str(caught.value) == f"secret 'nope/x' not found (tried: vault (secret/data/nope/x at {vault.url}))"
    )


def test_vault_wrong_token_is_a_clear_error_without_the_token(
    vault: VaultStub, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "hvs.wrong-token-planted-55"
    provider = VaultProvider(vault.url, token=wrong, path_prefix="app/")
    with caplog.at_level(logging.DEBUG), pytest.raises(SecretProviderError) as caught:
        provider.lookup("api_key")
    message = str(caught.value)
    assert "permission denied (HTTP 403)" in message and "'api_key'" in message and "vault" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(SecretNotFoundError) as missing:
        SecretResolver([provider]).get("api_key")
    assert "permission denied (HTTP 403)" in str(missing.value)
    for text in (message, repr(caught.value), str(missing.value), caplog.text):
        assert wrong not in text and PLANTED not in text and TOKEN not in text


def test_vault_approle_login_and_relogin_after_expiry(vault: VaultStub) -> None:
    vault.add_approle("role-1", "secret-1")
    provider = VaultProvider(
        vault.url, auth_method="approle", role_id="role-1", secret_id="secret-1", path_prefix="app/"
    )
    assert provider.lookup("api_key") == PLANTED
    login = [r for r in vault.requests if r.method == "POST"]
    assert [r.path for r in login] == ["/v1/auth/approle/login"]
    issued = next(r for r in vault.requests if r.method == "GET").headers["X-Vault-Token"]
    assert issued.startswith("hvs.")
    vault.revoke(issued)  # the token expires: the provider logs in again, once
    assert provider.lookup("db#user") == "app"
    assert len([r for r in vault.requests if r.method == "POST"]) == 2


def test_vault_approle_bad_credentials(vault: VaultStub) -> None:
    vault.add_approle("role-1", "secret-1")
    provider = VaultProvider(vault.url, auth_method="approle", role_id="role-1", secret_id="wrong-secret-id")
    with pytest.raises(SecretProviderError) as caught:
        provider.lookup("app/api_key")
    assert "AppRole login" in str(caught.value) and "wrong-secret-id" not in str(caught.value)


def test_vault_namespace_header(vault: VaultStub) -> None:
    vault.add_token("ns-token", namespace="team-a")
    vault.put("cfg", {"value": "in-namespace"}, namespace="team-a")
    provider = VaultProvider(vault.url, token="ns-token", namespace="team-a")
    assert provider.lookup("cfg") == "in-namespace"
    assert vault.requests[-1].headers["X-Vault-Namespace"] == "team-a"
    assert "namespace team-a" in provider.describe("cfg")
    root = VaultProvider(vault.url, token=TOKEN)
    assert root.lookup("cfg") is None  # not in the root namespace


def test_vault_tls_verify_options(vault: VaultStub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vault_module._warned_insecure.discard(vault.url)
    with caplog.at_level(logging.WARNING, logger="amqadf_agent.config.vault"):
        first = VaultProvider(vault.url, token=TOKEN, verify=False)
        VaultProvider(vault.url, token=TOKEN, verify=False)
    warnings = [r for r in caplog.records if "TLS verification" in r.getMessage()]
    assert len(warnings) == 1
    assert first.verify is False and first.lookup("app/api_key") == PLANTED
    with pytest.raises(ConfigError, match=r"secrets\.vault\.verify: CA file '.*nope.pem' does not exist"):
        VaultProvider(vault.url, token=TOKEN, verify=tmp_path / "nope.pem")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert VaultProvider(vault.url, token=TOKEN, verify=ca).verify == str(ca)


def _self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that is its own CA (``cryptography``, which moto needs anyway)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "vault.pem", directory / "vault-key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert), str(key_file)


def test_vault_over_tls_verifies_the_server_against_the_given_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = _self_signed_certificate(tmp_path)
    stub = VaultStub().start(tls=(cert, key))
    stub.add_token(TOKEN)
    stub.put("app/api_key", {"value": PLANTED})
    try:
        assert stub.url.startswith("https://")
        # The system's CAs do not know this server: refused, with a message that says TLS.
        with pytest.raises(SecretProviderError) as caught:
            VaultProvider(stub.url, token=TOKEN, verify=True).lookup("app/api_key")
        message = str(caught.value)
        assert "TLS verification of https://127.0.0.1" in message, message
        assert "set secrets.vault.verify to the CA file" in message
        assert PLANTED not in message and TOKEN not in message
        assert not stub.requests  # nothing was sent over the unverified connection
        # The operator's CA file: verified, read.
        assert VaultProvider(stub.url, token=TOKEN, verify=cert).lookup("app/api_key") == PLANTED
    finally:
        stub.stop()


def test_https_to_a_plain_http_vault_is_a_handshake_failure_not_a_ca_problem(vault: VaultStub) -> None:
    url = vault.url.replace("http://", "https://")
    with pytest.raises(SecretProviderError) as caught:
        VaultProvider(url, token=TOKEN, verify=False).lookup("app/api_key")
    message = str(caught.value)
    assert f"TLS handshake with {url} failed" in message, message
    assert "verify" not in message and TOKEN not in message


def test_vault_unreachable_is_wrapped() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider = VaultProvider(url, token=TOKEN, timeout=1)
    with pytest.raises(SecretProviderError, match="cannot reach") as caught:
        provider.lookup("x")
    assert TOKEN not in str(caught.value)


def test_vault_credentials_are_required() -> None:
    with pytest.raises(ConfigError, match=r"secrets\.vault\.token: required"):
        VaultProvider("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"secrets\.vault\.role_id: required"):
        VaultProvider("http://127.0.0.1:1", auth_method="approle")


def test_vault_ttl_refresh(vault: VaultStub) -> None:
    clock = FakeClock()
    resolver = SecretResolver([VaultProvider(vault.url, token=TOKEN)], ttl=10, clock=clock)
    assert resolver.get("app/api_key").get_secret_value() == PLANTED
    vault.put("app/api_key", {"value": "rotated"})
    assert resolver.get("app/api_key").get_secret_value() == PLANTED
    clock.now += 10
    assert resolver.get("app/api_key").get_secret_value() == "rotated"


# -- missing extras -----------------------------------------------------------------------------------


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'amqadf-agent\[vault\]'") as caught:
        VaultProvider("http://127.0.0.1:1", token=TOKEN)
    assert caught.value.extra == "vault" and "'hvac'" in str(caught.value)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'amqadf-agent\[aws\]'") as aws:
        AwsSecretsManagerProvider(REGION)
    assert aws.value.extra == "aws" and "'boto3'" in str(aws.value)
    config = ProductionConfig.load(
        environ={},
        overrides={
            "secrets.providers": ["env", "vault"],
            "secrets.vault": {"url": "http://x.test", "token": "t"},
        },
    )
    ok, errors = config.validate()
    assert not ok and any(e.startswith("secrets.providers: the vault secret provider needs") for e in errors)


# -- the resolver does not hold its global lock over a lookup ------------------------------------------


def test_a_slow_provider_does_not_block_other_names() -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow:
        name = "slow"

        def lookup(self, name: str) -> str | None:
            if name == "slow":
                entered.set()
                release.wait(5)
            return "v-" + name

        def describe(self, name: str) -> str:
            return "slow"

    resolver = SecretResolver([Slow()])
    waiter = threading.Thread(target=resolver.get, args=("slow",))
    waiter.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert resolver.get("fast").get_secret_value() == "v-fast"  # not behind the slow lookup
    assert time.monotonic() - started < 1
    release.set()
    waiter.join(5)
    assert resolver.get("slow").get_secret_value() == "v-slow"


# -- configuration wiring -----------------------------------------------------------------------------


def test_config_resolves_through_env_then_vault(vault: VaultStub, tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(
        "secrets:\n"
        "  providers: [env, vault]\n"
        "  vault:\n"
        f"    url: {vault.url}\n"
        "    path_prefix: app/\n"
        "    token: {secret: vault_token}\n"
        "    timeout: 3\n"
        "exporter:\n"
        "  api_key: {secret: api_key}\n"
    )
    config = ProductionConfig.load(config_file, environ={"VAULT_TOKEN": TOKEN})
    assert config.validate() == (True, [])
    assert config.exporter.api_key is not None
    assert config.exporter.api_key.get_secret_value() == PLANTED
    assert config.get_secret("db#user").get_secret_value() == "app"
    assert config.sources["secrets.vault.url"].startswith("file ")
    data = config.to_dict()
    assert data["secrets"]["vault"]["token"] == "[secure]"
    assert data["secrets"]["providers"] == ["env", "vault"]
    text = json.dumps(data) + repr(config)
    assert PLANTED not in text and TOKEN not in text


def test_config_vault_approle_from_env_variables(vault: VaultStub) -> None:
    vault.add_approle("role-9", "sid-9", namespace="ns1")
    vault.put("k", {"value": "ns-value"}, namespace="ns1")
    environ = {
        "AMQADF_SECRETS__PROVIDERS": "vault",
        "AMQADF_SECRETS__VAULT__URL": vault.url,
        "AMQADF_SECRETS__VAULT__AUTH_METHOD": "approle",
        "AMQADF_SECRETS__VAULT__NAMESPACE": "ns1",
        "ROLE_ID": "role-9",
        "SECRET_ID": "sid-9",
    }
    config = ProductionConfig.load(
        environ=environ,
        overrides={
            "secrets.vault.role_id": {"secret": "role_id"},
            "secrets.vault.secret_id": {"secret": "secret_id"},
        },
    )
    assert config.validate() == (True, [])
    assert config.get_secret("k").get_secret_value() == "ns-value"


def test_config_validation_errors_have_paths(tmp_path: Path) -> None:
    config = ProductionConfig.load(
        environ={},
        overrides={
            "secrets": {
                "providers": ["vault", "aws", "ldap"],
                "vault": {
                    "url": "not a url",
                    "auth_method": "kerberos",
                    "verify": str(tmp_path / "missing-ca.pem"),
                    "timeout": -1,
                    "tokn": "x",
                },
                "aws": {"endpoint_url": "ftp://x", "timeout": "soon"},
            }
        },
    )
    ok, errors = config.validate()
    assert not ok
    assert (
        "secrets.providers: must be a list of env, file, vault, aws, got ['vault', 'aws', 'ldap']" in errors
    )
    assert "secrets.vault.url: must be a URL, got 'not a url'" in errors
    assert "secrets.vault.auth_method: must be one of token, approle, got 'kerberos'" in errors
    assert any(
        e.startswith("secrets.vault.verify: must be true, false or the path of an existing CA")
        for e in errors
    )
    assert "secrets.vault.timeout: must be a positive number, got -1" in errors
    assert "secrets.vault.tokn: unknown key (did you mean 'secrets.vault.token'?)" in errors
    assert "secrets.aws.endpoint_url: must be a URL, got 'ftp://x'" in errors
    assert "secrets.aws.timeout: must be a positive number, got 'soon'" in errors


def test_config_provider_requirements(vault: VaultStub, aws_env: None) -> None:
    config = ProductionConfig.load(environ={}, overrides={"secrets.providers": ["vault", "aws"]})
    errors = config.validate()[1]
    assert "secrets.vault.url: required when secrets.providers includes vault" in errors
    assert any(e.startswith("secrets.aws.region: required") for e in errors)
    config = ProductionConfig.load(
        environ={},
        overrides={"secrets.providers": ["vault"], "secrets.vault": {"url": vault.url}},
    )
    assert "secrets.vault.token: required when secrets.vault.auth_method is token" in config.validate()[1]
    config = ProductionConfig.load(
        environ={},
        overrides={
            "secrets.providers": ["vault"],
            "secrets.vault": {"url": vault.url, "token": {"secret": "vt"}},
        },
    )
    errors = config.validate()[1]
    assert [e for e in errors if e.startswith("secrets.vault.token")] == [
        "secrets.vault.token: secret 'vt' not found (tried: env ($VT); file ($VT_FILE, /run/secrets/vt))"
    ]
    config = ProductionConfig.load(environ={}, overrides={"secrets.vault": 5})
    assert "secrets.vault: must be a mapping" in config.validate()[1]
    config = ProductionConfig.load(environ={}, overrides={"secrets.vault.token": 5})
    assert "secrets.vault.token: must be a string or {secret: NAME}, got [secure]" in config.validate()[1]
