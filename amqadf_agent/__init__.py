"""amqadf-agent: an OpenTelemetry-native production agent for Python services.

``import amqadf_agent`` costs almost nothing: public names are loaded on first use (PEP 562), so
neither the OpenTelemetry SDK nor psutil is imported until something needs it.

    import amqadf_agent
    agent = amqadf_agent.start(service_name="checkout")   # or: with amqadf_agent.start(): ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amqadf_agent.analyzer.tuner import PerformanceTuner
    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.config.secrets import Secret
    from amqadf_agent.errors import (
        AgentStartError,
        AmqadfError,
        CircuitOpenError,
        ConfigError,
        ConfigFileError,
        MissingExtraError,
        NoHealthyWorkerError,
        ProcessUnavailableError,
        RateLimitedError,
        SecretNotFoundError,
        TelemetryInputError,
    )
    from amqadf_agent.monitoring.cache import (
        InstrumentedCache,
        instrument_lru_cache,
        record_cache,
        track_cachetools,
    )
    from amqadf_agent.monitoring.redis_info import RedisCacheMonitor
    from amqadf_agent.monitoring.requests import record_request, track_request
    from amqadf_agent.monitoring.resources import ProcessMetrics, ResourceMetrics, ResourceMonitor
    from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPool, InstrumentedThreadPoolExecutor
    from amqadf_agent.profiling.profiler import PerformanceProfiler, profiled
    from amqadf_agent.resilience.circuit_breaker import CircuitBreaker
    from amqadf_agent.resilience.fallback import GracefulDegradation
    from amqadf_agent.resilience.rate_limit import RateLimiter
    from amqadf_agent.resilience.retry import RetryBudget, RetryPolicy, retry_with_policy
    from amqadf_agent.resilience.stores import MemoryStore, RedisStore
    from amqadf_agent.resilience.timeout import CallTimeoutError, timeout, timeout_from_config
    from amqadf_agent.runtime.agent import Agent, get_agent, shutdown, start
    from amqadf_agent.runtime.settings import AgentSettings
    from amqadf_agent.scaling.autoscaler import (
        AutoScaler,
        ScalingDecision,
        ScalingMetrics,
        ScalingPolicy,
        ScalingRules,
    )
    from amqadf_agent.scaling.load_balancer import LoadBalancer

__version__ = "0.1.0"

_LAZY = {
    "Agent": "amqadf_agent.runtime.agent",
    "AgentSettings": "amqadf_agent.runtime.settings",
    "AgentStartError": "amqadf_agent.errors",
    "AmqadfError": "amqadf_agent.errors",
    "AutoScaler": "amqadf_agent.scaling.autoscaler",
    "CallTimeoutError": "amqadf_agent.resilience.timeout",
    "CircuitBreaker": "amqadf_agent.resilience.circuit_breaker",
    "CircuitOpenError": "amqadf_agent.errors",
    "ConfigError": "amqadf_agent.errors",
    "ConfigFileError": "amqadf_agent.errors",
    "GracefulDegradation": "amqadf_agent.resilience.fallback",
    "InstrumentedCache": "amqadf_agent.monitoring.cache",
    "InstrumentedThreadPool": "amqadf_agent.monitoring.worker_pool",
    "InstrumentedThreadPoolExecutor": "amqadf_agent.monitoring.worker_pool",
    "RedisCacheMonitor": "amqadf_agent.monitoring.redis_info",
    "instrument_lru_cache": "amqadf_agent.monitoring.cache",
    "profiled": "amqadf_agent.profiling.profiler",
    "record_cache": "amqadf_agent.monitoring.cache",
    "record_request": "amqadf_agent.monitoring.requests",
    "track_cachetools": "amqadf_agent.monitoring.cache",
    "track_request": "amqadf_agent.monitoring.requests",
    "LoadBalancer": "amqadf_agent.scaling.load_balancer",
    "MemoryStore": "amqadf_agent.resilience.stores",
    "MissingExtraError": "amqadf_agent.errors",
    "NoHealthyWorkerError": "amqadf_agent.errors",
    "PerformanceProfiler": "amqadf_agent.profiling.profiler",
    "PerformanceTuner": "amqadf_agent.analyzer.tuner",
    "ProcessMetrics": "amqadf_agent.monitoring.resources",
    "ProcessUnavailableError": "amqadf_agent.errors",
    "ProductionConfig": "amqadf_agent.config.production",
    "RateLimitedError": "amqadf_agent.errors",
    "RateLimiter": "amqadf_agent.resilience.rate_limit",
    "RedisStore": "amqadf_agent.resilience.stores",
    "ResourceMetrics": "amqadf_agent.monitoring.resources",
    "ResourceMonitor": "amqadf_agent.monitoring.resources",
    "RetryBudget": "amqadf_agent.resilience.retry",
    "RetryPolicy": "amqadf_agent.resilience.retry",
    "Secret": "amqadf_agent.config.secrets",
    "SecretNotFoundError": "amqadf_agent.errors",
    "ScalingDecision": "amqadf_agent.scaling.autoscaler",
    "ScalingMetrics": "amqadf_agent.scaling.autoscaler",
    "ScalingPolicy": "amqadf_agent.scaling.autoscaler",
    "ScalingRules": "amqadf_agent.scaling.autoscaler",
    "TelemetryInputError": "amqadf_agent.errors",
    "get_agent": "amqadf_agent.runtime.agent",
    "retry_with_policy": "amqadf_agent.resilience.retry",
    "shutdown": "amqadf_agent.runtime.agent",
    "start": "amqadf_agent.runtime.agent",
    "timeout": "amqadf_agent.resilience.timeout",
    "timeout_from_config": "amqadf_agent.resilience.timeout",
}

__all__ = [
    "Agent",
    "AgentSettings",
    "AgentStartError",
    "AmqadfError",
    "AutoScaler",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "ConfigFileError",
    "GracefulDegradation",
    "InstrumentedCache",
    "InstrumentedThreadPool",
    "InstrumentedThreadPoolExecutor",
    "LoadBalancer",
    "MemoryStore",
    "MissingExtraError",
    "NoHealthyWorkerError",
    "PerformanceProfiler",
    "PerformanceTuner",
    "ProcessMetrics",
    "ProcessUnavailableError",
    "ProductionConfig",
    "RateLimitedError",
    "RateLimiter",
    "RedisCacheMonitor",
    "RedisStore",
    "ResourceMetrics",
    "ResourceMonitor",
    "RetryBudget",
    "RetryPolicy",
    "ScalingDecision",
    "ScalingMetrics",
    "ScalingPolicy",
    "ScalingRules",
    "Secret",
    "SecretNotFoundError",
    "TelemetryInputError",
    "__version__",
    "get_agent",
    "instrument_lru_cache",
    "profiled",
    "record_cache",
    "record_request",
    "retry_with_policy",
    "shutdown",
    "start",
    "timeout",
    "timeout_from_config",
    "track_cachetools",
    "track_request",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'amqadf_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
