"""amqadf-agent: an OpenTelemetry-native production agent for Python services.

``import amqadf_agent`` costs almost nothing: public names are loaded on first use (PEP 562), so
neither the OpenTelemetry SDK nor psutil is imported until something needs it.

    import amqadf_agent
    agent = amqadf_agent.start(service_name="checkout")   # or: with amqadf_agent.start(): ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public names, by the module that defines them: the one table behind ``__getattr__`` and ``__all__``.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "amqadf_agent.analyzer.tuner": ("PerformanceTuner",),
    "amqadf_agent.config.production": ("ProductionConfig",),
    "amqadf_agent.config.secrets": ("Secret",),
    "amqadf_agent.errors": (
        "AgentStartError",
        "AmqadfError",
        "CircuitOpenError",
        "ConfigError",
        "ConfigFileError",
        "MissingExtraError",
        "NoHealthyWorkerError",
        "ProcessUnavailableError",
        "RateLimitedError",
        "SecretNotFoundError",
        "TelemetryInputError",
    ),
    "amqadf_agent.monitoring.cache": (
        "InstrumentedCache",
        "instrument_lru_cache",
        "record_cache",
        "track_cachetools",
    ),
    "amqadf_agent.monitoring.redis_info": ("RedisCacheMonitor",),
    "amqadf_agent.monitoring.requests": ("record_request", "track_request"),
    "amqadf_agent.monitoring.resources": ("ProcessMetrics", "ResourceMetrics", "ResourceMonitor"),
    "amqadf_agent.monitoring.worker_pool": ("InstrumentedThreadPool", "InstrumentedThreadPoolExecutor"),
    "amqadf_agent.profiling.profiler": ("PerformanceProfiler", "profiled"),
    "amqadf_agent.resilience.circuit_breaker": ("CircuitBreaker", "CircuitBreakerConfig"),
    "amqadf_agent.resilience.fallback": ("GracefulDegradation",),
    "amqadf_agent.resilience.rate_limit": ("RateLimiter",),
    "amqadf_agent.resilience.retry": ("RetryBudget", "RetryPolicy", "retry_with_policy"),
    "amqadf_agent.resilience.stores": ("MemoryStore", "RedisStore"),
    "amqadf_agent.resilience.timeout": ("CallTimeoutError", "timeout", "timeout_from_config"),
    "amqadf_agent.runtime.agent": ("Agent", "get_agent", "shutdown", "start"),
    "amqadf_agent.runtime.settings": ("AgentSettings",),
    "amqadf_agent.scaling.autoscaler": (
        "AutoScaler",
        "ScalingDecision",
        "ScalingMetrics",
        "ScalingPolicy",
        "ScalingRules",
    ),
    "amqadf_agent.scaling.load_balancer": ("LoadBalancer",),
}

_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    # Type checkers and IDEs cannot read the table above, so they get the same names as imports;
    # ``X as X`` marks each one re-exported (mypy strict cannot evaluate a computed ``__all__``).
    # tests/test_package.py holds these imports equal to ``_EXPORTS``.
    from amqadf_agent.analyzer.tuner import PerformanceTuner as PerformanceTuner
    from amqadf_agent.config.production import ProductionConfig as ProductionConfig
    from amqadf_agent.config.secrets import Secret as Secret
    from amqadf_agent.errors import AgentStartError as AgentStartError
    from amqadf_agent.errors import AmqadfError as AmqadfError
    from amqadf_agent.errors import CircuitOpenError as CircuitOpenError
    from amqadf_agent.errors import ConfigError as ConfigError
    from amqadf_agent.errors import ConfigFileError as ConfigFileError
    from amqadf_agent.errors import MissingExtraError as MissingExtraError
    from amqadf_agent.errors import NoHealthyWorkerError as NoHealthyWorkerError
    from amqadf_agent.errors import ProcessUnavailableError as ProcessUnavailableError
    from amqadf_agent.errors import RateLimitedError as RateLimitedError
    from amqadf_agent.errors import SecretNotFoundError as SecretNotFoundError
    from amqadf_agent.errors import TelemetryInputError as TelemetryInputError
    from amqadf_agent.monitoring.cache import InstrumentedCache as InstrumentedCache
    from amqadf_agent.monitoring.cache import instrument_lru_cache as instrument_lru_cache
    from amqadf_agent.monitoring.cache import record_cache as record_cache
    from amqadf_agent.monitoring.cache import track_cachetools as track_cachetools
    from amqadf_agent.monitoring.redis_info import RedisCacheMonitor as RedisCacheMonitor
    from amqadf_agent.monitoring.requests import record_request as record_request
    from amqadf_agent.monitoring.requests import track_request as track_request
    from amqadf_agent.monitoring.resources import ProcessMetrics as ProcessMetrics
    from amqadf_agent.monitoring.resources import ResourceMetrics as ResourceMetrics
    from amqadf_agent.monitoring.resources import ResourceMonitor as ResourceMonitor
    from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPool as InstrumentedThreadPool
    from amqadf_agent.monitoring.worker_pool import (
        InstrumentedThreadPoolExecutor as InstrumentedThreadPoolExecutor,
    )
    from amqadf_agent.profiling.profiler import PerformanceProfiler as PerformanceProfiler
    from amqadf_agent.profiling.profiler import profiled as profiled
    from amqadf_agent.resilience.circuit_breaker import CircuitBreaker as CircuitBreaker
    from amqadf_agent.resilience.circuit_breaker import CircuitBreakerConfig as CircuitBreakerConfig
    from amqadf_agent.resilience.fallback import GracefulDegradation as GracefulDegradation
    from amqadf_agent.resilience.rate_limit import RateLimiter as RateLimiter
    from amqadf_agent.resilience.retry import RetryBudget as RetryBudget
    from amqadf_agent.resilience.retry import RetryPolicy as RetryPolicy
    from amqadf_agent.resilience.retry import retry_with_policy as retry_with_policy
    from amqadf_agent.resilience.stores import MemoryStore as MemoryStore
    from amqadf_agent.resilience.stores import RedisStore as RedisStore
    from amqadf_agent.resilience.timeout import CallTimeoutError as CallTimeoutError
    from amqadf_agent.resilience.timeout import timeout as timeout
    from amqadf_agent.resilience.timeout import timeout_from_config as timeout_from_config
    from amqadf_agent.runtime.agent import Agent as Agent
    from amqadf_agent.runtime.agent import get_agent as get_agent
    from amqadf_agent.runtime.agent import shutdown as shutdown
    from amqadf_agent.runtime.agent import start as start
    from amqadf_agent.runtime.settings import AgentSettings as AgentSettings
    from amqadf_agent.scaling.autoscaler import AutoScaler as AutoScaler
    from amqadf_agent.scaling.autoscaler import ScalingDecision as ScalingDecision
    from amqadf_agent.scaling.autoscaler import ScalingMetrics as ScalingMetrics
    from amqadf_agent.scaling.autoscaler import ScalingPolicy as ScalingPolicy
    from amqadf_agent.scaling.autoscaler import ScalingRules as ScalingRules
    from amqadf_agent.scaling.load_balancer import LoadBalancer as LoadBalancer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'amqadf_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
