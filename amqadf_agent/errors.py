"""Every error the package raises on purpose, in one shallow tree.

``AmqadfError`` is the root: ``except AmqadfError`` catches all of them. The command-line tools
turn any of them into one line on stderr and the error's ``exit_code``, never a traceback.

    AmqadfError
    ├── ConfigError            a setting is invalid (names the setting and the value it got)
    │   └── ConfigFileError    a configuration file cannot be read or parsed (file, line, column)
    ├── SecretNotFoundError    no provider has the secret (names it and the providers tried, never a value)
    ├── MissingExtraError      an optional dependency is not installed (names the pip extra)
    ├── AgentStartError        the agent could not start (the reason, in one line)
    ├── NoHealthyWorkerError   a load balancer has no worker that can take a request
    ├── CircuitOpenError       a circuit breaker did not let a call through (carries retry_after)
    ├── RateLimitedError       a rate limiter did not permit a request (carries retry_after)
    ├── ProcessUnavailableError  a process cannot be read (pid and reason)
    │   ├── ProcessNotFoundError
    │   └── ProcessAccessDeniedError
    └── TelemetryInputError    the analyzer cannot read its input (file, line and reason)
"""

from __future__ import annotations

import math


class AmqadfError(Exception):
    """Root of every error amqadf-agent raises on purpose."""

    exit_code: int = 1


class ConfigError(AmqadfError, ValueError):
    """A setting is invalid. The message starts with the setting's name."""

    exit_code = 2

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason}")


class ConfigFileError(ConfigError):
    """A configuration file is unreadable or malformed: the message names the file, line and column."""

    exit_code = 1

    def __init__(self, file: str, reason: str, line: int | None = None, column: int | None = None) -> None:
        self.file = file
        self.line = line
        self.column = column
        location = file
        if line is not None:
            location += f":{line}"
            if column is not None:
                location += f":{column}"
        super().__init__(location, reason)


class SecretNotFoundError(AmqadfError, LookupError):
    """No secret provider has the secret. Names the secret and where it was looked for, never a value."""

    def __init__(self, name: str, tried: list[str]) -> None:
        self.name = name
        self.tried = list(tried)
        where = "; ".join(self.tried) if self.tried else "no provider is configured"
        super().__init__(f"secret {name!r} not found (tried: {where})")


class MissingExtraError(AmqadfError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs the {module!r} package: pip install 'amqadf-agent[{extra}]'")


class AgentStartError(AmqadfError, RuntimeError):
    """The agent could not start; the application runs on without it."""


class TelemetryInputError(AmqadfError):
    """The analyzer cannot read an input: the message names the file, the line and the reason."""

    exit_code = 2


class ReaderProcessError(AmqadfError, RuntimeError):
    """The analyzer's reading process (``analyzer.pipeline``) died or failed before the end."""


class NoHealthyWorkerError(AmqadfError, RuntimeError):
    """No worker can take a request: none is registered, or none is healthy and panic mode is off."""

    def __init__(self, balancer: str, registered: int) -> None:
        self.balancer = balancer
        self.registered = registered
        if registered:
            message = (
                f"load balancer {balancer!r}: none of its {registered} workers is healthy "
                "(ejected or failing its health check) and panic mode is off (panic_threshold=0)"
            )
        else:
            message = f"load balancer {balancer!r} has no worker registered"
        super().__init__(message)


class CircuitOpenError(AmqadfError, RuntimeError):
    """The breaker did not let a call through (open, forced open, or half-open probes all taken).

    ``retry_after`` is the number of seconds until the breaker lets a probe through, by its clock:
    the rest of the open timeout, 0.0 when half-open (a probe slot may free at any moment), and
    ``math.inf`` when forced open (only ``reset()`` lets calls through again).
    """

    def __init__(self, breaker: str, retry_after: float, state: str = "open") -> None:
        self.breaker = breaker
        self.retry_after = retry_after
        self.state = state
        when = "until it is reset" if math.isinf(retry_after) else f"next probe in {retry_after:.3f} s"
        super().__init__(f"circuit breaker {breaker!r} is {state}: call not permitted ({when})")


class RateLimitedError(AmqadfError, RuntimeError):
    """A rate limiter did not permit a request. ``retry_after``: seconds until it would be."""

    def __init__(self, limiter: str, retry_after: float, key: str = "default") -> None:
        self.limiter = limiter
        self.retry_after = retry_after
        self.key = key
        super().__init__(f"rate limiter {limiter!r} rejected key {key!r}: retry after {retry_after:.3f} s")


class ProcessUnavailableError(AmqadfError, LookupError):
    """A process cannot be read: it does not exist (any more) or this user may not read it."""

    def __init__(self, pid: int, reason: str) -> None:
        self.pid = pid
        self.reason = reason
        super().__init__(f"process {pid}: {reason}")


class ProcessNotFoundError(ProcessUnavailableError):
    """No process has this pid (it exited, was reaped, or never existed)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid, "no such process (it has exited or never existed)")


class ProcessAccessDeniedError(ProcessUnavailableError):
    """The process exists but this user may not read it."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid, "access denied (the process belongs to another user; run as that user)")
