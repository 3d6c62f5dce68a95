"""The Kubernetes ``HorizontalPodAutoscaler`` equivalent to an autoscaler, as a manifest dict.

Why a module of its own: the decision engine (``autoscaler.py``) decides; this maps its settings
onto the ``autoscaling/v2`` object and reads only the scaler's public settings. Like the engine, the
analyzer may reach it, so it imports the standard library and ``amqadf_agent.errors`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from amqadf_agent.errors import ConfigError

__all__ = ["HpaSettings", "hpa_manifest"]

#: HPA's cluster-wide default tolerance: a scaler with another one writes ``behavior.*.tolerance``.
_HPA_TOLERANCE: Final = 0.1
_EPS: Final = 1e-9  # floating-point noise, as in the engine's ratios


class _Rules(Protocol):
    def as_hpa(self) -> dict[str, Any]: ...


class HpaSettings(Protocol):
    """What the manifest reads of a scaler (:class:`~amqadf_agent.scaling.autoscaler.AutoScaler`)."""

    @property
    def min_instances(self) -> int: ...
    @property
    def max_instances(self) -> int: ...
    @property
    def tolerance(self) -> float: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def scale_up(self) -> _Rules: ...
    @property
    def scale_down(self) -> _Rules: ...
    @property
    def targets(self) -> dict[str, float]: ...


def hpa_manifest(
    scaler: HpaSettings,
    name: str,
    *,
    namespace: str | None = None,
    target_name: str | None = None,
    target_kind: str = "Deployment",
    target_api_version: str = "apps/v1",
    metric_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``autoscaling/v2`` HorizontalPodAutoscaler equivalent to ``scaler``, as a dict
    (``json.dumps`` it for ``kubectl apply -f``).

    CPU and memory become ``Resource`` metrics with ``averageUtilization`` in percent; request
    rate and queue depth ``Pods`` metrics with a per-pod ``averageValue``; the p95 latency an
    ``External`` metric with a ``Value`` target (HPA then scales by ``value / target``, as
    here). Those three need a custom/external metrics adapter (e.g. prometheus-adapter)
    serving them under ``metric_names`` (keys: ``request_rate``, ``queue_depth``,
    ``response_time_p95``). A tolerance other than HPA's cluster default 0.1 is written as
    ``behavior.*.tolerance`` (Kubernetes 1.33+, feature gate ``HPAConfigurableTolerance``).
    What HPA cannot express (the error-rate guard, the cooldown) is listed in the annotation
    ``amqadf-agent/not-in-hpa``.

    Args:
        scaler: The scaler (an :class:`~amqadf_agent.scaling.autoscaler.AutoScaler`).
        name: The HPA's ``metadata.name``.
        namespace: Its namespace; omitted when None.
        target_name: The scaled workload's name; default ``name``.
        target_kind: The workload's kind.
        target_api_version: The workload's API version.
        metric_names: Adapter metric names, overriding the defaults.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty string, got {name!r}")
    names = {
        "request_rate": "http_server_requests_per_second",
        "queue_depth": "queue_depth",
        "response_time_p95": "http_server_request_duration_p95_seconds",
    }
    for key, value in (metric_names or {}).items():
        if key not in names:
            raise ConfigError("metric_names", f"unknown key {key!r}; known: {', '.join(names)}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"metric_names[{key!r}]", f"must be a non-empty string, got {value!r}")
        names[key] = value
    t = scaler.targets
    hpa_metrics: list[dict[str, Any]] = []
    for resource, key in (("cpu", "cpu_target"), ("memory", "memory_target")):
        if key in t:
            hpa_metrics.append(
                {
                    "type": "Resource",
                    "resource": {
                        "name": resource,
                        "target": {"type": "Utilization", "averageUtilization": round(t[key] * 100)},
                    },
                }
            )
    for metric, key in (("request_rate", "request_rate_target"), ("queue_depth", "queue_depth_target")):
        if key in t:
            hpa_metrics.append(
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": names[metric]},
                        "target": {"type": "AverageValue", "averageValue": _quantity(t[key])},
                    },
                }
            )
    if "response_time_p95_target" in t:
        hpa_metrics.append(
            {
                "type": "External",
                "external": {
                    "metric": {"name": names["response_time_p95"]},
                    "target": {"type": "Value", "value": _quantity(t["response_time_p95_target"])},
                },
            }
        )
    scale_up, scale_down = scaler.scale_up.as_hpa(), scaler.scale_down.as_hpa()
    if abs(scaler.tolerance - _HPA_TOLERANCE) > _EPS:
        scale_up["tolerance"] = scale_down["tolerance"] = _quantity(scaler.tolerance)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    not_in_hpa = []
    error_target = t.get("error_rate_target")
    if error_target is not None:
        not_in_hpa.append(f"error_rate_target={error_target:g} (no scale-down above it)")
    if scaler.cooldown > 0:
        not_in_hpa.append(f"cooldown={scaler.cooldown:g}s")
    if not_in_hpa:
        metadata["annotations"] = {"amqadf-agent/not-in-hpa": "; ".join(not_in_hpa)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target_api_version,
                "kind": target_kind,
                "name": target_name or name,
            },
            "minReplicas": scaler.min_instances,
            "maxReplicas": scaler.max_instances,
            "metrics": hpa_metrics,
            "behavior": {"scaleUp": scale_up, "scaleDown": scale_down},
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: ``"100"``, ``"500m"``, else the decimal number."""
    if value == int(value):
        return str(int(value))
    milli = round(value * 1000)
    if abs(milli - value * 1000) < 1e-6:
        return f"{milli}m"
    return repr(value)
