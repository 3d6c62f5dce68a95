"""The AWS Secrets Manager secret provider, through ``boto3`` (the ``aws`` extra).

A secret name is a secret id (name or ARN) after ``prefix``, with an optional ``#key``:
``prod/db#password`` reads the JSON secret ``{prefix}prod/db`` and returns its key ``password``;
``prod/api_key`` returns the whole secret string. Credentials come from boto3's usual chain
(environment, shared files, instance role); the region from ``region`` or ``AWS_REGION`` /
``AWS_DEFAULT_REGION``.

Nothing this module raises or logs carries a secret value: ``botocore``'s exceptions are replaced by
``SecretProviderError`` naming the error code only (``from None``).
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from typing import Any

from amqadf_agent.config.secrets import SecretProviderError
from amqadf_agent.errors import ConfigError, MissingExtraError

_NOT_FOUND = ("ResourceNotFoundException",)

# botocore logs every response body at DEBUG (``botocore.parsers``), and a GetSecretValue body is
# the secret. While this provider calls Secrets Manager, such records are dropped (other callers'
# botocore logging is untouched).
_calling = threading.local()


class _DropBodiesDuringLookup(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_calling, "active", False):
            return True
        return not str(record.msg).startswith(("Response body", "Response headers"))


_BODY_FILTER = _DropBodiesDuringLookup()


def _install_log_filter() -> None:
    for name in ("botocore.parsers", "botocore.endpoint", "botocore.hooks"):
        target = logging.getLogger(name)
        if _BODY_FILTER not in target.filters:
            target.addFilter(_BODY_FILTER)


def _import_boto3() -> tuple[Any, Any]:
    try:
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
        importlib.import_module("botocore.exceptions")
    except ImportError:
        raise MissingExtraError("the aws secret provider", "aws", "boto3") from None
    return boto3, botocore_config


def split_name(name: str) -> tuple[str, str | None]:
    """``id#key`` -> ``(id, key)``; ``id`` -> ``(id, None)``."""
    secret_id, sep, key = name.partition("#")
    return secret_id, (key if sep else None)


class AwsSecretsManagerProvider:
    """Secrets from AWS Secrets Manager.

    Args:
        region: the AWS region (default: boto3's, from ``AWS_REGION``/``AWS_DEFAULT_REGION``/config).
        prefix: put before every secret id (``prod/`` reads ``api_key`` as ``prod/api_key``).
        endpoint_url: another endpoint (a VPC endpoint, or a local moto server in tests).
        timeout: seconds to connect and seconds to read.

    Raises:
        MissingExtraError: ``boto3`` is not installed.
        ConfigError: no region is configured anywhere.
    """

    name = "aws"

    def __init__(
        self,
        region: str | None = None,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        boto3, botocore_config = _import_boto3()
        _install_log_filter()
        exceptions = importlib.import_module("botocore.exceptions")
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        session = boto3.session.Session(region_name=region)
        self.region: str | None = session.region_name
        if not self.region:
            raise ConfigError(
                "secrets.aws.region",
                "required: set it, or AWS_REGION / AWS_DEFAULT_REGION in the environment",
            )
        config = botocore_config.Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"}
        )
        try:
            self._client = session.client("secretsmanager", endpoint_url=endpoint_url, config=config)
        except exceptions.BotoCoreError as exc:
            raise ConfigError("secrets.aws", f"cannot create the client ({type(exc).__name__})") from None
        self._client_error = exceptions.ClientError
        self._botocore_error = exceptions.BotoCoreError

    def __repr__(self) -> str:
        return f"AwsSecretsManagerProvider(region={self.region!r}, prefix={self.prefix!r})"

    def secret_id(self, name: str) -> str:
        """The secret id ``name`` is read from (without its ``#key``)."""
        secret_id, _ = split_name(name)
        return self.prefix + secret_id

    def lookup(self, name: str) -> str | None:
        secret_id, key = split_name(name)
        if not secret_id:
            return None
        _calling.active = True
        try:
            response = self._client.get_secret_value(SecretId=self.prefix + secret_id)
        except self._client_error as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            if code in _NOT_FOUND:
                return None
            raise SecretProviderError("aws", name, f"Secrets Manager answered {code}") from None
        except self._botocore_error as exc:
            raise SecretProviderError(
                "aws", name, f"cannot reach Secrets Manager in {self.region} ({type(exc).__name__})"
            ) from None
        finally:
            _calling.active = False
        text = response.get("SecretString")
        if text is None:
            binary = response.get("SecretBinary")
            if binary is None:
                return None
            try:
                text = bytes(binary).decode("utf-8")
            except UnicodeDecodeError:
                raise SecretProviderError("aws", name, "the binary secret is not UTF-8 text") from None
        if key is None:
            return str(text)
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretProviderError("aws", name, "the secret is not JSON, so it has no keys") from None
        if not isinstance(data, dict):
            raise SecretProviderError("aws", name, "the secret is not a JSON object, so it has no keys")
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, (dict, list)):
            raise SecretProviderError("aws", name, f"the key {key!r} does not hold a scalar")
        return value if isinstance(value, str) else json.dumps(value)

    def describe(self, name: str) -> str:
        _, key = split_name(name)
        where = self.secret_id(name) + (f"#{key}" if key is not None else "")
        return f"aws ({where} in {self.region})"
