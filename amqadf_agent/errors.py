"""Every error the package raises on purpose, in one shallow tree.

``AmqadfError`` is the root: ``except AmqadfError`` catches all of them. The command-line tools
turn any of them into one line on stderr and the error's ``exit_code``, never a traceback.

    AmqadfError
    ├── ConfigError            a setting is invalid (names the setting and the value it got)
    ├── MissingExtraError      an optional dependency is not installed (names the pip extra)
    ├── AgentStartError        the agent could not start (the reason, in one line)
    ├── NoHealthyWorkerError   a load balancer has no worker that can take a request
    └── TelemetryInputError    the analyzer cannot read its input (file, line and reason)
"""

from __future__ import annotations


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
