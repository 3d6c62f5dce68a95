"""The HashiCorp Vault secret provider: KV version 2 through ``hvac`` (the ``vault`` extra).

A secret name is a path under ``mount`` (after ``path_prefix``), with an optional ``#key``:
``db/creds#password`` reads the key ``password`` of the secret at ``{path_prefix}db/creds``. Without a
key, a secret with a single key (or with a key called ``value``) gives that key's value.

Authentication is a token or AppRole (``role_id`` + ``secret_id``; the client token it returns is
renewed by logging in again when Vault answers 403). ``namespace`` sets ``X-Vault-Namespace``
(Vault Enterprise / HCP). ``verify`` is True, False (accepted, with a warning logged once per URL)
or the path of a CA bundle, which must exist.

Nothing this module raises or logs carries a secret value or a token: ``hvac``'s exceptions keep the
response body and the request, so they are replaced by ``SecretProviderError`` (``from None``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Any

from amqadf_agent.config.secrets import Secret, SecretProviderError
from amqadf_agent.errors import ConfigError, MissingExtraError

logger = logging.getLogger(__name__)

AUTH_METHODS = ("token", "approle")

_warned_insecure: set[str] = set()
_warned_lock = threading.Lock()


def _import_hvac() -> Any:
    try:
        return importlib.import_module("hvac")
    except ImportError:
        raise MissingExtraError("the vault secret provider", "vault", "hvac") from None


def _warn_insecure_once(url: str) -> None:
    with _warned_lock:
        if url in _warned_insecure:
            return
        _warned_insecure.add(url)
    logger.warning(
        "amqadf-agent: TLS verification of the Vault server %s is disabled (secrets.vault.verify: false)",
        url,
    )


def split_name(name: str) -> tuple[str, str | None]:
    """``path#key`` -> ``(path, key)``; ``path`` -> ``(path, None)``."""
    path, sep, key = name.partition("#")
    return path.strip("/"), (key if sep else None)


class VaultProvider:
    """Secrets from a Vault KV v2 engine.

    Args:
        url: the Vault server, such as ``https://vault.example.com:8200``.
        mount: where the KV v2 engine is mounted (``secret``).
        path_prefix: put before every secret path (``app/`` reads ``api_key`` at ``app/api_key``).
        auth_method: ``token`` or ``approle``.
        token: the token (``token`` auth).
        role_id, secret_id: the AppRole credentials (``approle`` auth).
        approle_mount: where the AppRole auth method is mounted (``approle``).
        namespace: the Vault namespace (``X-Vault-Namespace``), if any.
        verify: verify the server's TLS certificate (True), do not (False), or with this CA bundle.
        timeout: seconds a request may take.

    Raises:
        MissingExtraError: ``hvac`` is not installed.
        ConfigError: a missing credential, an unknown auth method or a CA bundle that does not exist.
    """

    name = "vault"

    def __init__(
        self,
        url: str,
        *,
        mount: str = "secret",
        path_prefix: str = "",
        auth_method: str = "token",
        token: Secret | str | None = None,
        role_id: Secret | str | None = None,
        secret_id: Secret | str | None = None,
        approle_mount: str = "approle",
        namespace: str | None = None,
        verify: bool | str | Path = True,
        timeout: float = 10.0,
    ) -> None:
        hvac = _import_hvac()
        if auth_method not in AUTH_METHODS:
            raise ConfigError("secrets.vault.auth_method", f"must be one of {', '.join(AUTH_METHODS)}")
        if auth_method == "token" and not token:
            raise ConfigError("secrets.vault.token", "required when secrets.vault.auth_method is token")
        if auth_method == "approle" and not role_id:
            raise ConfigError("secrets.vault.role_id", "required when secrets.vault.auth_method is approle")
        if auth_method == "approle" and not secret_id:
            raise ConfigError("secrets.vault.secret_id", "required when secrets.vault.auth_method is approle")
        tls: bool | str
        if isinstance(verify, bool):
            tls = verify
            if not verify:
                _warn_insecure_once(url)
        else:
            if not Path(verify).is_file():
                raise ConfigError("secrets.vault.verify", f"CA file {str(verify)!r} does not exist")
            tls = str(verify)
        self.url = url.rstrip("/")
        self.mount = mount.strip("/")
        self.path_prefix = path_prefix.lstrip("/")
        self.auth_method = auth_method
        self.namespace = namespace
        self.verify = tls
        self.timeout = timeout
        self.approle_mount = approle_mount.strip("/")
        self._token = _wrap(token)
        self._role_id = _wrap(role_id)
        self._secret_id = _wrap(secret_id)
        self._hvac = hvac
        self._client_lock = threading.Lock()
        self._client: Any = None

    def __repr__(self) -> str:
        return (
            f"VaultProvider(url={self.url!r}, mount={self.mount!r}, auth_method={self.auth_method!r}, "
            f"namespace={self.namespace!r})"
        )

    # -- the client --------------------------------------------------------------------------------

    def _new_client(self, name: str) -> Any:
        token = self._token.get_secret_value() if self._token is not None else None
        client = self._hvac.Client(
            url=self.url,
            token=token,
            namespace=self.namespace,
            verify=self.verify,
            timeout=self.timeout,
        )
        if self.auth_method == "approle":
            assert self._role_id is not None and self._secret_id is not None
            try:
                client.auth.approle.login(
                    role_id=self._role_id.get_secret_value(),
                    secret_id=self._secret_id.get_secret_value(),
                    mount_point=self.approle_mount,
                )
            except Exception as exc:
                raise self._error(name, exc, during="AppRole login") from None
        return client

    def _get_client(self, name: str, *, fresh: bool = False) -> Any:
        with self._client_lock:
            if self._client is None or fresh:
                self._client = None
                self._client = self._new_client(name)
            return self._client

    # -- lookup ------------------------------------------------------------------------------------

    def secret_path(self, name: str) -> str:
        """The path under the mount where ``name`` is read (without its ``#key``)."""
        path, _ = split_name(name)
        return f"{self.path_prefix}{path}" if self.path_prefix else path

    def lookup(self, name: str) -> str | None:
        path, key = split_name(name)
        if not path:
            return None
        data = self._read(name)
        if data is None:
            return None
        if key is None:
            if "value" in data:
                key = "value"
            elif len(data) == 1:
                key = next(iter(data))
            else:
                raise SecretProviderError(
                    "vault", name, f"the secret has {len(data)} keys; name one as '{path}#KEY'"
                )
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise SecretProviderError("vault", name, f"the key {key!r} does not hold a string")
        return value

    def _read(self, name: str) -> dict[str, Any] | None:
        exceptions = self._hvac.exceptions
        for attempt in (1, 2):
            client = self._get_client(name, fresh=attempt == 2)
            try:
                response = client.secrets.kv.v2.read_secret_version(
                    path=self.secret_path(name), mount_point=self.mount, raise_on_deleted_version=True
                )
            except exceptions.InvalidPath:
                return None
            except exceptions.Forbidden as exc:
                if self.auth_method == "approle" and attempt == 1:
                    continue  # the AppRole token may have expired: log in again, once
                raise self._error(name, exc) from None
            except Exception as exc:
                raise self._error(name, exc) from None
            try:
                data = response["data"]["data"]
            except (KeyError, TypeError):
                raise SecretProviderError("vault", name, "malformed response (no data.data)") from None
            if not isinstance(data, dict):
                raise SecretProviderError("vault", name, "malformed response (data.data is not a mapping)")
            return data
        return None  # pragma: no cover - the loop returns or raises

    def _error(self, name: str, exc: BaseException, during: str = "read") -> SecretProviderError:
        """A safe error for ``exc``: its type and status, never its message, URL or body."""
        exceptions = self._hvac.exceptions
        if isinstance(exc, exceptions.Forbidden):
            how = "token" if self.auth_method == "token" else "AppRole credentials"
            reason = f"permission denied (HTTP 403) during {during}; check the {how} and its policy"
        elif isinstance(exc, exceptions.InvalidRequest):
            reason = f"invalid request (HTTP 400) during {during}"
        elif isinstance(exc, exceptions.VaultError):
            reason = f"Vault error during {during} ({type(exc).__name__})"
        elif (tls := _tls_failure(exc)) == "verify":
            reason = (
                f"TLS verification of {self.url} failed during {during}; "
                "set secrets.vault.verify to the CA file that signed its certificate"
            )
        elif tls == "tls":
            reason = f"TLS handshake with {self.url} failed during {during} (does it speak https?)"
        else:
            reason = f"cannot reach {self.url} during {during} ({type(exc).__name__})"
        return SecretProviderError("vault", name, reason)

    def describe(self, name: str) -> str:
        _, key = split_name(name)
        where = f"{self.mount}/data/{self.secret_path(name)}"
        if key is not None:
            where += f"#{key}"
        namespace = f", namespace {self.namespace}" if self.namespace else ""
        return f"vault ({where} at {self.url}{namespace})"


def _wrap(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def _tls_failure(exc: BaseException) -> str | None:
    """``"verify"`` when ``exc`` is a certificate that failed verification, ``"tls"`` for another TLS
    failure (a handshake, or https spoken to a plain-HTTP port), ``None`` for no TLS failure at all.

    requests wraps urllib3's error, which keeps the ``ssl`` one in ``reason``, args or the chain.
    """
    import ssl

    found: str | None = None
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(item):
            return "verify"
        if isinstance(item, ssl.SSLError) or type(item).__name__ == "SSLError":
            found = "tls"
        pending.extend((item.__cause__, item.__context__, getattr(item, "reason", None), *item.args))
    return found
