"""The settings of a :class:`~amqadf_agent.resilience.circuit_breaker.CircuitBreaker`, checked once.

A breaker is built from keywords (``CircuitBreaker(failure_threshold=3, timeout=10.0)``) or from a
``CircuitBreakerConfig``; either way every value passes through here, so a bad one is one
``ConfigError`` naming the setting, whatever the way in. One config can serve several breakers
(``dataclasses.replace(config, name="payments")`` for another name).

Rates are fractions in (0, 1] (``failure_rate=0.5``), as every other threshold of the package
(resource limits, the analyzer's utilization targets). The percentage forms
``failure_rate_threshold``/``slow_call_rate_threshold`` are still accepted, with a
``DeprecationWarning``, and become the fraction: the config holds one value per rate.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from amqadf_agent.errors import ConfigError

if TYPE_CHECKING:
    from amqadf_agent.resilience.stores import BreakerStore

__all__ = ["CircuitBreakerConfig"]


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)


def _positive(parameter: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if not _number(value) or not cast(float, value) > 0:
        raise ConfigError(parameter, f"must be a number > 0, got {value!r}")
    return float(cast(float, value))


def _positive_int(parameter: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(parameter, f"must be an integer >= 1, got {value!r}")
    return value


def _fraction(parameter: str, value: object) -> float | None:
    if value is None:
        return None
    if not _number(value) or not 0 < cast(float, value) <= 1:
        raise ConfigError(parameter, f"must be a fraction in (0, 1] (0.5 is 50 %), got {value!r}")
    return float(cast(float, value))


#: The deprecated percentage settings and the fraction each stands for.
DEPRECATED_PERCENT: dict[str, str] = {
    "failure_rate_threshold": "failure_rate",
    "slow_call_rate_threshold": "slow_call_rate",
}


def rates_from_percent(settings: dict[str, Any], *, stacklevel: int) -> None:
    """Turn the deprecated percentages in ``settings`` into their fractions, in place, with a warning.

    ``stacklevel`` counts from this function to the caller the warning should name.
    """
    for old, new in DEPRECATED_PERCENT.items():
        percent = settings.get(old)
        if percent is None:
            continue
        if settings.get(new) is not None:
            raise ConfigError(old, f"is the percentage form of {new}: give {new} only")
        if not _number(percent) or not 0 < cast(float, percent) <= 100:
            raise ConfigError(old, f"must be a percentage in (0, 100], got {percent!r}")
        warnings.warn(
            f"{old} is deprecated: use {new}, a fraction ({old}={percent!r} is "
            f"{new}={float(percent) / 100.0!r})",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        settings[new] = float(percent) / 100.0
        settings[old] = None


def _exception_types(parameter: str, value: object) -> tuple[type[BaseException], ...]:
    types = (value,) if isinstance(value, type) else value
    if not isinstance(types, (tuple, list, frozenset, set)) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in types
    ):
        raise ConfigError(parameter, f"must be exception classes, got {value!r}")
    return tuple(types)


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerConfig:
    """What a circuit breaker trips on, how long it stays open, and where its state lives.

    Numbers are stored as floats and exception classes as tuples (a single class is accepted).

    Attributes:
        failure_threshold: Consecutive failures that open the breaker (``None``: no such trip).
        timeout: Seconds open before the first probe.
        half_open_max_calls: Probes at the same time when half-open; that many successes close.
        name: The ``amqadf.circuit_breaker.name`` of its telemetry and its key in a shared store.
        failure_rate: Open at this failure rate over the window, a fraction in (0, 1].
        slow_call_rate: Open at this slow-call rate over the window, a fraction in (0, 1].
        failure_rate_threshold: Deprecated: ``failure_rate`` in percent; read back as None.
        slow_call_rate_threshold: Deprecated: ``slow_call_rate`` in percent; read back as None.
        slow_call_duration: Seconds from which a call is slow (required with the slow-call rate).
        sliding_window_type: ``"count"`` (the last N calls) or ``"time"`` (the last N seconds).
        sliding_window_size: N of the window.
        minimum_calls: Calls the window must hold before a rate can trip (at most N for a count window).
        timeout_multiplier: Growth of the open timeout per trip without a successful close (>= 1).
        max_timeout: The cap of that growth, >= ``timeout``.
        max_half_open_time: Seconds half-open before the breaker opens again (``None``: no limit).
        ignored_exceptions: Exceptions that count neither as success nor as failure.
        failure_exceptions: Only these count as failures (``None``: every exception not ignored).
        clock: Seconds (monotonic), for open times, windows and call durations.
        store: ``RedisStore`` to share the state across processes; ``None``/``MemoryStore``: local.
        sync_interval: Seconds between reads of the shared state while nothing happens locally.

    Raises:
        ConfigError: naming the setting whose value is invalid.
    """

    failure_threshold: int | None = 5
    timeout: float = 60.0
    half_open_max_calls: int = 3
    name: str = "circuit_breaker"
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    failure_rate_threshold: float | None = None
    slow_call_rate_threshold: float | None = None
    slow_call_duration: float | None = None
    sliding_window_type: str = "count"
    sliding_window_size: int = 100
    minimum_calls: int = 10
    timeout_multiplier: float = 1.0
    max_timeout: float | None = None
    max_half_open_time: float | None = None
    ignored_exceptions: tuple[type[BaseException], ...] = ()
    failure_exceptions: tuple[type[BaseException], ...] | None = None
    clock: Callable[[], float] = time.monotonic
    store: BreakerStore | None = None
    sync_interval: float = 0.5

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {}
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", f"must be a non-empty string, got {self.name!r}")
        _positive_int("failure_threshold", self.failure_threshold, optional=True)
        checked["timeout"] = _positive("timeout", self.timeout)
        _positive_int("half_open_max_calls", self.half_open_max_calls)
        rates = {name: getattr(self, name) for name in (*DEPRECATED_PERCENT, *DEPRECATED_PERCENT.values())}
        # Frames: rates_from_percent, __post_init__, the dataclass's __init__, its caller.
        rates_from_percent(rates, stacklevel=3)
        checked["failure_rate_threshold"] = checked["slow_call_rate_threshold"] = None
        checked["failure_rate"] = _fraction("failure_rate", rates["failure_rate"])
        checked["slow_call_rate"] = _fraction("slow_call_rate", rates["slow_call_rate"])
        checked["slow_call_duration"] = _positive(
            "slow_call_duration", self.slow_call_duration, optional=True
        )
        if checked["slow_call_rate"] is not None and self.slow_call_duration is None:
            raise ConfigError("slow_call_duration", "is required when slow_call_rate is set")
        if self.sliding_window_type not in ("count", "time"):
            raise ConfigError(
                "sliding_window_type", f"must be 'count' or 'time', got {self.sliding_window_type!r}"
            )
        _positive_int("sliding_window_size", self.sliding_window_size)
        _positive_int("minimum_calls", self.minimum_calls)
        if not _number(self.timeout_multiplier) or self.timeout_multiplier < 1:
            raise ConfigError("timeout_multiplier", f"must be a number >= 1, got {self.timeout_multiplier!r}")
        checked["timeout_multiplier"] = float(self.timeout_multiplier)
        max_timeout = checked["max_timeout"] = _positive("max_timeout", self.max_timeout, optional=True)
        if max_timeout is not None and max_timeout < checked["timeout"]:
            raise ConfigError(
                "max_timeout", f"must be >= timeout ({self.timeout!r}), got {self.max_timeout!r}"
            )
        checked["max_half_open_time"] = _positive(
            "max_half_open_time", self.max_half_open_time, optional=True
        )
        checked["ignored_exceptions"] = _exception_types("ignored_exceptions", self.ignored_exceptions)
        if self.failure_exceptions is not None:
            checked["failure_exceptions"] = _exception_types("failure_exceptions", self.failure_exceptions)
        if not callable(self.clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {self.clock!r}")
        if self.store is not None and not callable(getattr(self.store, "breaker", None)):
            raise ConfigError("store", f"must be a MemoryStore or RedisStore, got {self.store!r}")
        checked["sync_interval"] = _positive("sync_interval", self.sync_interval)
        for field, value in checked.items():
            object.__setattr__(self, field, value)  # frozen: the normalized value, set once here
