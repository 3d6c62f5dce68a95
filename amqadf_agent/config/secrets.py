"""Secrets: a value that never shows itself, and the providers it is resolved through.

A ``Secret`` prints as ``[secure]`` in ``repr``, ``str``, f-strings, logs and ``to_dict()``; only
``get_secret_value()`` unwraps it, at the call that uses it. ``SecretResolver`` asks its providers in
order (environment variables, then files, by default), caches what it finds for ``ttl`` seconds and
is safe to share between threads. A secret nobody has raises ``SecretNotFoundError``, which names the
secret and where it was looked for, never a value.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from amqadf_agent.errors import AmqadfError, SecretNotFoundError
from amqadf_agent.redaction import REDACTED

logger = logging.getLogger(__name__)


class Secret:
    """A secret value: ``[secure]`` wherever it is shown, unwrapped only by ``get_secret_value()``.

    Args:
        value: the secret itself.
        name: what the secret is called (shown in ``repr``; never the value).
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str | None = None) -> None:
        self._value = value
        self.name = name

    def get_secret_value(self) -> str:
        """The secret itself. Call it where the value is used, and keep the result out of logs."""
        return self._value

    def __repr__(self) -> str:
        if self.name is None:
            return f"Secret({REDACTED!r})"
        return f"Secret(name={self.name!r}, value={REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return format(REDACTED, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac  # here: it imports hashlib, which loads OpenSSL (~5 ms of every start)

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled; pass its name and resolve it where it is used")

    # A Secret never changes, so a copy is the Secret itself (``dataclasses.asdict`` and
    # ``copy.deepcopy`` of settings that hold one work; pickling still does not).
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


class SecretProviderError(AmqadfError, RuntimeError):
    """A provider failed to answer (denied, unreachable, malformed). The message is safe to show.

    It names the provider and the secret and why, never a value, a token or a response body: a
    network provider wraps its client's exceptions in this one (``from None``) for that reason.
    """

    def __init__(self, provider: str, name: str, reason: str) -> None:
        self.provider = provider
        self.name = name
        self.reason = reason
        super().__init__(f"{provider}: cannot read secret {name!r}: {reason}")


class SecretProvider(Protocol):
    """Where secrets come from: ``lookup`` returns the value, or None when it does not have it."""

    name: str

    def lookup(self, name: str) -> str | None: ...

    def describe(self, name: str) -> str:
        """Where this provider looks for ``name`` (for error messages: places, never values)."""
        ...


def env_name(name: str, prefix: str = "") -> str:
    """The environment-variable spelling of a secret name: ``api-key`` -> ``API_KEY``."""
    return prefix + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class EnvironmentProvider:
    """Secrets from environment variables: ``api_key`` is read from ``{prefix}API_KEY``."""

    name = "env"

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self._environ = environ

    def lookup(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(env_name(name, self.prefix))
        return value if value else None

    def describe(self, name: str) -> str:
        return f"env (${env_name(name, self.prefix)})"


class FileProvider:
    """Secrets from files: ``$API_KEY_FILE`` names a file (the Docker convention), or ``directory/api_key``.

    ``directory`` is a Docker or Kubernetes secret mount such as ``/run/secrets``. A trailing newline
    is removed from what is read.
    """

    name = "file"

    def __init__(
        self,
        directory: str | Path | None = "/run/secrets",
        prefix: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.prefix = prefix
        self._environ = environ

    def _candidates(self, name: str) -> list[tuple[str, Path]]:
        environ = os.environ if self._environ is None else self._environ
        found: list[tuple[str, Path]] = []
        variable = env_name(name, self.prefix) + "_FILE"
        if environ.get(variable):
            found.append((f"${variable}", Path(environ[variable])))
        if self.directory is not None and "/" not in name and name not in ("", ".", ".."):
            found.append((str(self.directory / name), self.directory / name))
        return found

    def lookup(self, name: str) -> str | None:
        for label, path in self._candidates(name):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("amqadf-agent: secret file %s cannot be read (%s)", label, exc.strerror)
                continue
            return text.rstrip("\r\n")
        return None

    def describe(self, name: str) -> str:
        variable = "$" + env_name(name, self.prefix) + "_FILE"
        places = [variable]
        if self.directory is not None:
            places.append(str(self.directory / name))
        return f"file ({', '.join(places)})"


class SecretResolver:
    """Resolves secret names through ``providers`` in order, with a TTL cache; thread-safe.

    Args:
        providers: asked in this order; the first that has the secret wins.
        ttl: seconds a resolved value is reused before the providers are asked again (0: never cached).
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        providers: Sequence[SecretProvider],
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = list(providers)
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[Secret, float]] = {}
        # ``_lock`` guards the cache and ``_name_locks`` only, never a lookup: a network provider
        # (Vault, AWS) may wait seconds, and other names must not wait behind it. The per-name lock
        # makes concurrent callers of the same name share one lookup.
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}

    def _cached(self, name: str) -> Secret | None:
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            return None

    def get(self, name: str) -> Secret:
        """The secret called ``name``; raises ``SecretNotFoundError`` when no provider has it."""
        found = self._cached(name)
        if found is not None:
            return found
        with self._lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            found = self._cached(name)  # another thread may have resolved it while this one waited
            if found is not None:
                return found
            tried: list[str] = []
            for provider in self.providers:
                try:
                    value = provider.lookup(name)
                except SecretProviderError as exc:  # its message is safe by construction
                    tried.append(f"{provider.describe(name)} failed: {exc.reason}")
                    continue
                except Exception as exc:  # a provider's failure must not leak into the message
                    tried.append(f"{provider.describe(name)} failed: {type(exc).__name__}")
                    continue
                if value is not None:
                    secret = Secret(value, name)
                    with self._lock:
                        if self.ttl > 0:
                            self._cache[name] = (secret, self._clock() + self.ttl)
                    return secret
                tried.append(provider.describe(name))
            with self._lock:
                self._cache.pop(name, None)
            raise SecretNotFoundError(name, tried)

    def invalidate(self, name: str | None = None) -> None:
        """Forget one cached secret (or all), so the next ``get`` asks the providers again."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)


#: Provider names a configuration may list in ``secrets.providers``.
PROVIDERS = ("env", "file", "vault", "aws")


def build_providers(
    order: Sequence[str],
    *,
    directory: str | Path | None = "/run/secrets",
    env_prefix: str = "",
    environ: Mapping[str, str] | None = None,
) -> list[SecretProvider]:
    """The local providers named in ``order`` (``env`` and ``file``), configured.

    ``vault`` and ``aws`` need their settings: ``ProductionConfig`` builds them (see
    ``amqadf_agent.config.vault`` and ``amqadf_agent.config.aws``).
    """
    providers: list[SecretProvider] = []
    for name in order:
        if name == "env":
            providers.append(EnvironmentProvider(env_prefix, environ))
        elif name == "file":
            providers.append(FileProvider(directory, env_prefix, environ))
        else:
            raise ValueError(name)
    return providers
