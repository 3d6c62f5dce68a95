"""The autoscaling decision engine: the Kubernetes HPA algorithm as a function of observations.

Why: a service (or the analyzer, replaying exported telemetry) asks "how many instances should run
now, and why?" and gets the answer a Kubernetes ``HorizontalPodAutoscaler`` would give, with the
rule that held it back, so the decision can be checked against a cluster's behaviour and exported
as the equivalent ``autoscaling/v2`` manifest (:meth:`AutoScaler.to_hpa_manifest`).

The analyzer imports this module, so it imports the standard library and ``amqadf_agent.errors``
only, and the manifest export ``amqadf_agent.scaling.hpa`` (standard library only too) when a
manifest is asked for: no OpenTelemetry, no psutil (docs/design.md, Walls). The optional emitter
lives in ``amqadf_agent.scaling.autoscaler_telemetry``.

Why this module is longer than the ~600 lines the project aims at: it is one algorithm, the seven
steps below in one class, with the value types it decides on; those types stay beside it because
the analyzer's walls admit this one module of the package (its tests check the modules loaded).

One decision, step by step, as the HPA controller (``pkg/controller/podautoscaler``) does it:

1. **Bounds first.** A current count above ``max_instances`` (below ``min_instances``) goes straight
   to the bound, without consulting the metrics. (HPA treats a count of 0 as "scaling disabled";
   here 0 is below the minimum and is raised to it, so a target is always within the bounds.)
2. **Per metric**, ``ratio = value / target`` (service-wide totals are divided by the current count
   first, as HPA averages a Pods metric over the pods), and the metric's desired count is the
   current count when ``|ratio - 1| <= tolerance``, else ``ceil(current * ratio)``. The
   recommendation is the largest desired count; its metric is the limiting metric.
3. **Missing metrics hold.** When every configured metric is missing, or some are missing and the
   recommendation is below the current count, nothing changes and nothing is recorded (HPA refuses
   to scale down on partial data). A missing metric never causes a scale-down.
4. **Error-rate guard** (not in HPA): no scale-down while the error rate is above its target.
5. **Stabilization.** The recommendation is recorded in a window; the result is the current count
   brought within ``[min of the scale-up window, max of the scale-down window]`` (both windows
   include the new recommendation). Defaults: scale-up 0 s, scale-down 300 s.
6. **Rate policies, then bounds.** Each policy allows a change per period relative to the count at
   the start of the period (``current - added + removed`` in the period): ``Pods`` adds/removes a
   number, ``Percent`` a share (rounded up for scale-up, down for scale-down). ``selectPolicy``
   ``Max`` takes the policy allowing the biggest change, ``Min`` the smallest, ``Disabled`` none.
   Defaults: scale-up ``max(+100 %, +4)`` per 15 s, scale-down ``-100 %`` per 15 s.
7. **Cooldown** (not in HPA, off by default): no change within ``cooldown`` seconds of the last one.

Deviations kept on purpose: ratios are computed in floating point with a 1e-9 guard against
representation noise (``ceil(3.0000000000000004)`` must not give 4), where HPA works partly in
integer milli-units; percent policies use exact integer arithmetic where HPA's float64 gives
``ceil(10 * 1.1) == 12``. A decision is assumed to be carried out: the next call's
``current_instances`` says what really runs, and the rate policies count the changes decided here.

Time comes from the injected ``clock`` (seconds, non-decreasing); :meth:`AutoScaler.simulate`
replays a timeline on a fresh copy. Decisions are cheap (a few µs: ``tests/bench/bench_autoscaler.py``):
the stabilization windows are deques of ``(time, recommendation)`` pruned by time and by dominance,
so the min/max over a window is read from its front in O(1).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, TypeGuard

from amqadf_agent.errors import ConfigError

__all__ = [
    "ACTIONS",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "LIMITS",
    "METRICS",
    "AutoScaler",
    "DecisionListener",
    "ScalingDecision",
    "ScalingMetrics",
    "ScalingPolicy",
    "ScalingRules",
    "SimulationStep",
]

_log = logging.getLogger(__name__)

Action = Literal["scale_up", "scale_down", "no_action"]
LimitedBy = Literal[
    "tolerance", "stabilization", "policy", "bounds", "cooldown", "error_rate", "missing_metric"
]
PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]

SCALE_UP: Final = "scale_up"
SCALE_DOWN: Final = "scale_down"
NO_ACTION: Final = "no_action"
#: Every value of :attr:`ScalingDecision.action` (the ``amqadf.autoscaler.action`` attribute).
ACTIONS: Final[tuple[Action, ...]] = (SCALE_UP, SCALE_DOWN, NO_ACTION)
#: Every value of :attr:`ScalingDecision.limited_by` but None (``amqadf.autoscaler.limited_by``).
LIMITS: Final[tuple[LimitedBy, ...]] = (
    "tolerance",
    "stabilization",
    "policy",
    "bounds",
    "cooldown",
    "error_rate",
    "missing_metric",
)
#: Metrics that can drive the count, named as the fields of :class:`ScalingMetrics`.
METRICS: Final = (
    "cpu_utilization",
    "memory_utilization",
    "request_rate",
    "queue_depth",
    "response_time_p95",
)

_EPS: Final = 1e-9  # guard against floating-point noise in ratios (see the module docstring)
_POLICY_TYPES: Final = ("Pods", "Percent")
_SELECT_POLICIES: Final = ("Max", "Min", "Disabled")
_MAX_WINDOW_SECONDS: Final = 3600  # Kubernetes validation limits, kept so a manifest always applies
_MAX_PERIOD_SECONDS: Final = 1800


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# --- observations -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ScalingMetrics:
    """What the service looks like now; every field is optional (None = missing, never a zero).

    Utilizations are averages over the instances, as fractions in [0, 1]; ``request_rate`` and
    ``queue_depth`` are totals over the whole service (the scaler divides them by the current count
    and compares the average with a per-instance target); response times are in seconds.
    Invalid values raise :class:`~amqadf_agent.errors.ConfigError` naming the field.
    """

    cpu_utilization: float | None = None
    memory_utilization: float | None = None
    #: Requests per second, all instances together.
    request_rate: float | None = None
    #: Share of requests that failed, in [0, 1].
    error_rate: float | None = None
    #: Items waiting, all instances together.
    queue_depth: float | None = None
    response_time_p50: float | None = None
    response_time_p95: float | None = None
    response_time_p99: float | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if not _is_number(value) or not math.isfinite(value):
                raise ConfigError(field.name, f"must be a finite number or None, got {value!r}")
            if field.name in ("cpu_utilization", "memory_utilization", "error_rate"):
                if not 0.0 <= value <= 1.0:
                    raise ConfigError(field.name, f"must be a fraction in [0, 1], got {value!r}")
            elif value < 0:
                raise ConfigError(field.name, f"must be >= 0, got {value!r}")


# --- behaviour (the HPA ``behavior`` section) ---------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """One rate limit: at most ``value`` instances (``Pods``) or percent (``Percent``) per period."""

    type: PolicyType
    value: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.type not in _POLICY_TYPES:
            raise ConfigError("ScalingPolicy.type", f"must be 'Pods' or 'Percent', got {self.type!r}")
        if not _is_int(self.value) or self.value <= 0:
            raise ConfigError("ScalingPolicy.value", f"must be an integer > 0, got {self.value!r}")
        period = self.period_seconds
        if not _is_int(period) or not 0 < period <= _MAX_PERIOD_SECONDS:
            raise ConfigError(
                "ScalingPolicy.period_seconds",
                f"must be an integer in [1, {_MAX_PERIOD_SECONDS}] (as in Kubernetes), got {period!r}",
            )

    def as_hpa(self) -> dict[str, Any]:
        """This policy as an ``HPAScalingPolicy`` of a manifest."""
        return {"type": self.type, "value": self.value, "periodSeconds": self.period_seconds}


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingRules:
    """The behaviour of one direction: stabilization window, rate policies and how to pick one."""

    stabilization_window_seconds: int
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = "Max"

    def __post_init__(self) -> None:
        window = self.stabilization_window_seconds
        if not _is_int(window) or not 0 <= window <= _MAX_WINDOW_SECONDS:
            raise ConfigError(
                "ScalingRules.stabilization_window_seconds",
                f"must be an integer in [0, {_MAX_WINDOW_SECONDS}] (as in Kubernetes), got {window!r}",
            )
        policies = self.policies
        if isinstance(policies, ScalingPolicy) or not isinstance(policies, Iterable):
            raise ConfigError(
                "ScalingRules.policies", f"must be a sequence of ScalingPolicy, got {policies!r}"
            )
        policies = tuple(policies)
        if not policies:
            raise ConfigError("ScalingRules.policies", "needs at least one policy (as in Kubernetes)")
        for i, policy in enumerate(policies):
            if not isinstance(policy, ScalingPolicy):
                raise ConfigError(f"ScalingRules.policies[{i}]", f"must be a ScalingPolicy, got {policy!r}")
        object.__setattr__(self, "policies", policies)
        if self.select_policy not in _SELECT_POLICIES:
            raise ConfigError(
                "ScalingRules.select_policy",
                f"must be 'Max', 'Min' or 'Disabled', got {self.select_policy!r}",
            )

    @property
    def longest_period(self) -> int:
        """The longest policy period in seconds."""
        return max(p.period_seconds for p in self.policies)

    def as_hpa(self) -> dict[str, Any]:
        """These rules as an ``HPAScalingRules`` of a manifest."""
        return {
            "stabilizationWindowSeconds": self.stabilization_window_seconds,
            "selectPolicy": self.select_policy,
            "policies": [p.as_hpa() for p in self.policies],
        }


#: Kubernetes' default scale-up behaviour: no stabilization; +100 % or +4 instances per 15 s,
#: whichever is more.
DEFAULT_SCALE_UP: Final = ScalingRules(
    stabilization_window_seconds=0,
    policies=(ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)),
    select_policy="Max",
)
#: Kubernetes' default scale-down behaviour: the highest recommendation of the last 300 s;
#: down to the minimum in one step (-100 % per 15 s).
DEFAULT_SCALE_DOWN: Final = ScalingRules(
    stabilization_window_seconds=300,
    policies=(ScalingPolicy("Percent", 100, 15),),
    select_policy="Max",
)


# --- decisions ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ScalingDecision:
    """One decision and its evidence."""

    action: Action
    target_instances: int
    current_instances: int
    #: Desired count per metric that had a value (metric name -> count), after the tolerance.
    desired_by_metric: dict[str, int]
    #: ``value / target`` per metric that had a value (per-instance average for totals).
    ratio_by_metric: dict[str, float]
    #: The largest desired count over the metrics (the HPA's recommendation), before any rule.
    recommendation: int
    #: The metric whose desired count is the recommendation; None when no metric had a value.
    limiting_metric: str | None
    #: The rule that held the target away from the recommendation (or kept the count inside the
    #: tolerance); None when the recommendation was followed as is.
    limited_by: LimitedBy | None
    #: One line for a human.
    reason: str
    #: When it was made, from the scaler's clock (seconds).
    timestamp: float

    @property
    def changed(self) -> bool:
        """True when the decision asks for a different count."""
        return self.target_instances != self.current_instances


#: Called with every decision (see :meth:`AutoScaler.add_listener`).
DecisionListener = Callable[[ScalingDecision], object]
#: One step of :meth:`AutoScaler.simulate`: ``(timestamp, current_instances or None, metrics)``.
SimulationStep = tuple[float, int | None, ScalingMetrics]


class _Inherit(enum.Enum):
    """Marks a target that defaults to ``target_utilization``."""

    TARGET_UTILIZATION = "target_utilization"


_INHERIT: Final = _Inherit.TARGET_UTILIZATION


class _Listener:
    __slots__ = ("callback", "warned")

    def __init__(self, callback: DecisionListener) -> None:
        self.callback = callback
        self.warned = False


class AutoScaler:
    """Decides how many instances should run, as the Kubernetes HPA would (see the module docstring).

    Thread-safe: decisions are serialized by a lock; listeners run after it is released.

    Args:
        min_instances: Lowest count to ask for (>= 1; HPA's ``minReplicas``).
        max_instances: Highest count to ask for (>= ``min_instances``).
        target_utilization: Default CPU and memory utilization target, a fraction in (0, 1].
        cpu_target: CPU utilization to aim for, in (0, 1]; default ``target_utilization``;
            None: do not scale on CPU.
        memory_target: Memory utilization to aim for, like ``cpu_target``.
        request_rate_target: Requests per second per instance; None (default): not used.
        queue_depth_target: Waiting items per instance; None (default): not used.
        response_time_p95_target: p95 latency in seconds; the desired count follows
            ``p95 / target`` as a ratio; None (default): not used.
        error_rate_target: A guard, not a driver: no scale-down while the error rate is above it
            (a fraction in (0, 1]); None (default): no guard.
        tolerance: No change while ``|ratio - 1| <= tolerance`` (>= 0; HPA's default 0.1).
        scale_up: Scale-up behaviour; default Kubernetes' (:data:`DEFAULT_SCALE_UP`).
        scale_down: Scale-down behaviour; default Kubernetes' (:data:`DEFAULT_SCALE_DOWN`).
        cooldown: Seconds after a change during which no other change is made (not in HPA);
            0 (default): off.
        history_size: How many decisions :meth:`get_history` keeps.
        clock: Seconds, non-decreasing; default ``time.monotonic``.

    Raises:
        ConfigError: naming the first invalid parameter.
    """

    def __init__(
        self,
        min_instances: int = 1,
        max_instances: int = 10,
        target_utilization: float = 0.7,
        *,
        cpu_target: float | _Inherit | None = _INHERIT,
        memory_target: float | _Inherit | None = _INHERIT,
        request_rate_target: float | None = None,
        queue_depth_target: float | None = None,
        response_time_p95_target: float | None = None,
        error_rate_target: float | None = None,
        tolerance: float = 0.1,
        scale_up: ScalingRules = DEFAULT_SCALE_UP,
        scale_down: ScalingRules = DEFAULT_SCALE_DOWN,
        cooldown: float = 0.0,
        history_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _is_int(min_instances) or min_instances < 1:
            raise ConfigError(
                "min_instances", f"must be an integer >= 1 (no scale-to-zero), got {min_instances!r}"
            )
        if not _is_int(max_instances) or max_instances < min_instances:
            raise ConfigError(
                "max_instances",
                f"must be an integer >= min_instances ({min_instances}), got {max_instances!r}",
            )
        _check_fraction("target_utilization", target_utilization)
        if cpu_target is _INHERIT:
            cpu_target = target_utilization
        if memory_target is _INHERIT:
            memory_target = target_utilization
        targets: dict[str, float] = {}
        for name, value, fraction in (
            ("cpu_target", cpu_target, True),
            ("memory_target", memory_target, True),
            ("request_rate_target", request_rate_target, False),
            ("queue_depth_target", queue_depth_target, False),
            ("response_time_p95_target", response_time_p95_target, False),
            ("error_rate_target", error_rate_target, True),
        ):
            if value is not None:
                targets[name] = _check_target(name, value, fraction=fraction)
        if not any(name != "error_rate_target" for name in targets):
            raise ConfigError(
                "cpu_target",
                "no metric to scale on: set at least one of cpu_target, memory_target, "
                "request_rate_target, queue_depth_target, response_time_p95_target",
            )
        if not _is_number(tolerance) or not math.isfinite(tolerance) or tolerance < 0:
            raise ConfigError("tolerance", f"must be a finite number >= 0, got {tolerance!r}")
        for name, rules in (("scale_up", scale_up), ("scale_down", scale_down)):
            if not isinstance(rules, ScalingRules):
                raise ConfigError(name, f"must be a ScalingRules, got {rules!r}")
        if not _is_number(cooldown) or not math.isfinite(cooldown) or cooldown < 0:
            raise ConfigError("cooldown", f"must be a number of seconds >= 0, got {cooldown!r}")
        if not _is_int(history_size) or history_size < 1:
            raise ConfigError("history_size", f"must be an integer >= 1, got {history_size!r}")
        if not callable(clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {clock!r}")

        # Everything needed to build a fresh copy (simulate()).
        self._config: dict[str, Any] = {
            "min_instances": min_instances,
            "max_instances": max_instances,
            "target_utilization": target_utilization,
            "cpu_target": cpu_target,
            "memory_target": memory_target,
            "request_rate_target": request_rate_target,
            "queue_depth_target": queue_depth_target,
            "response_time_p95_target": response_time_p95_target,
            "error_rate_target": error_rate_target,
            "tolerance": tolerance,
            "scale_up": scale_up,
            "scale_down": scale_down,
            "cooldown": cooldown,
            "history_size": history_size,
        }
        self._min = min_instances
        self._max = max_instances
        self._target_utilization = float(target_utilization)
        self._targets = targets
        self._tolerance = float(tolerance)
        self._tol_low = 1.0 - tolerance - _EPS
        self._tol_high = 1.0 + tolerance + _EPS
        self._scale_up = scale_up
        self._scale_down = scale_down
        self._cooldown = float(cooldown)
        self._clock = clock
        # (field of ScalingMetrics, target, True when the value is a service-wide total)
        self._specs: tuple[tuple[str, float, bool], ...] = tuple(
            (metric, targets[target_name], metric in ("request_rate", "queue_depth"))
            for metric, target_name in (
                ("cpu_utilization", "cpu_target"),
                ("memory_utilization", "memory_target"),
                ("request_rate", "request_rate_target"),
                ("queue_depth", "queue_depth_target"),
                ("response_time_p95", "response_time_p95_target"),
            )
            if target_name in targets
        )
        self._error_target = targets.get("error_rate_target")
        self._up_window_s = scale_up.stabilization_window_seconds
        self._down_window_s = scale_down.stabilization_window_seconds
        self._events_horizon = max(scale_up.longest_period, scale_down.longest_period)

        self._lock = threading.Lock()
        # Stabilization: (time, recommendation) of the last window, pruned by time and by
        # dominance. _up_window keeps recommendations increasing from the front (its front is the
        # window's minimum), _down_window decreasing (front: the maximum). A later entry that is
        # at most (at least) an earlier one outlives it, so the earlier one can never be the min
        # (max) again and is dropped: O(1) amortized per decision whatever the window's length.
        self._up_window: deque[tuple[float, int]] = deque()
        self._down_window: deque[tuple[float, int]] = deque()
        # Changes decided within the longest policy period: (time, instances added / removed).
        self._up_events: deque[tuple[float, int]] = deque()
        self._down_events: deque[tuple[float, int]] = deque()
        self._last_change: float | None = None
        self._history: deque[ScalingDecision] = deque(maxlen=history_size)
        self._listeners: list[_Listener] = []

    @classmethod
    def from_config(cls, config: object, **overrides: Any) -> AutoScaler:
        """A scaler from the ``autoscaler`` group of a ``ProductionConfig`` (or the group itself).

        ``min_instances`` and ``max_instances`` are the bounds; ``target_cpu`` is the CPU target
        (``cpu_target`` and ``target_utilization``); the config names no memory target, so memory is
        not scaled on (``memory_target=None``) unless a keyword says so; ``scale_down_stabilization``
        is the scale-down stabilization window, rounded up to whole seconds, with Kubernetes'
        default scale-down policies (:data:`DEFAULT_SCALE_DOWN`). Any keyword of the constructor
        overrides what the config says::

            scaler = AutoScaler.from_config(config, memory_target=0.8, clock=clock)

        The config is read by duck typing: this module imports no configuration code (the analyzer
        imports it; docs/design.md, Walls).

        Raises:
            ConfigError: naming the field to fix (``autoscaler.min_instances: ...``) or the
                overriding keyword.
        """
        names = ("min_instances", "max_instances", "target_cpu", "scale_down_stabilization")
        section = getattr(config, "autoscaler", config)
        if not all(hasattr(section, name) for name in names):
            raise ConfigError(
                "config", f"must be a ProductionConfig or its autoscaler group, got {type(config).__name__}"
            )
        low, high, cpu, window = (getattr(section, name) for name in names)
        if not _is_int(low) or low < 1:
            raise ConfigError(
                "autoscaler.min_instances", f"must be a positive whole number (no scale-to-zero), got {low!r}"
            )
        if not _is_int(high) or high < 1:
            raise ConfigError("autoscaler.max_instances", f"must be a positive whole number, got {high!r}")
        if high < low and "min_instances" not in overrides and "max_instances" not in overrides:
            raise ConfigError(
                "autoscaler.min_instances", f"must be at most autoscaler.max_instances ({low} > {high!r})"
            )
        if not _is_number(cpu) or not 0.0 < cpu <= 1.0:
            raise ConfigError("autoscaler.target_cpu", f"must be a number above 0, at most 1, got {cpu!r}")
        if not _is_number(window) or not 0 <= window <= _MAX_WINDOW_SECONDS:
            raise ConfigError(
                "autoscaler.scale_down_stabilization",
                f"must be a number of seconds from 0 to {_MAX_WINDOW_SECONDS}, got {window!r}",
            )
        kwargs: dict[str, Any] = {
            "min_instances": low,
            "max_instances": high,
            "target_utilization": cpu,
            "cpu_target": cpu,
            "memory_target": None,
            "scale_down": dataclasses.replace(
                DEFAULT_SCALE_DOWN, stabilization_window_seconds=math.ceil(window)
            ),
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # --- configuration, read-only ---------------------------------------------------------------------
    @property
    def min_instances(self) -> int:
        return self._min

    @property
    def max_instances(self) -> int:
        return self._max

    @property
    def target_utilization(self) -> float:
        return self._target_utilization

    @property
    def tolerance(self) -> float:
        return self._tolerance

    @property
    def cooldown(self) -> float:
        return self._cooldown

    @property
    def scale_up(self) -> ScalingRules:
        return self._scale_up

    @property
    def scale_down(self) -> ScalingRules:
        return self._scale_down

    @property
    def targets(self) -> dict[str, float]:
        """The configured targets by parameter name (``cpu_target`` …); a copy."""
        return dict(self._targets)

    def __repr__(self) -> str:
        targets = ", ".join(f"{k}={v:g}" for k, v in self._targets.items())
        return f"AutoScaler(min_instances={self._min}, max_instances={self._max}, {targets})"

    # --- listeners ----------------------------------------------------------------------------------
    def add_listener(self, callback: DecisionListener) -> None:
        """Call ``callback(decision)`` after every decision, in the deciding thread.

        A callback that raises is logged (a warning the first time, then at debug level) and
        ignored: it never breaks the decision nor the other listeners.
        """
        if not callable(callback):
            raise ConfigError("callback", f"must be callable, got {callback!r}")
        with self._lock:
            self._listeners = [*self._listeners, _Listener(callback)]

    def remove_listener(self, callback: DecisionListener) -> bool:
        """Stop calling ``callback``; True if it was registered."""
        with self._lock:
            kept = [entry for entry in self._listeners if entry.callback != callback]
            removed = len(kept) != len(self._listeners)
            self._listeners = kept
        return removed

    def _notify(self, listeners: list[_Listener], decision: ScalingDecision) -> None:
        for entry in listeners:
            try:
                entry.callback(decision)
            except Exception:
                level = logging.DEBUG if entry.warned else logging.WARNING
                entry.warned = True
                _log.log(level, "autoscaler listener %r failed; ignored", entry.callback, exc_info=True)

    # --- history --------------------------------------------------------------------------------------
    def get_history(self) -> list[ScalingDecision]:
        """The last ``history_size`` decisions, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    # --- the decision ---------------------------------------------------------------------------------
    def get_scaling_decision(self, current_instances: int, metrics: ScalingMetrics) -> ScalingDecision:
        """Decide the count for now, given what runs and how the service is doing.

        Records the decision in the history and in the stabilization window, and, when it changes
        the count, as a scale event for the rate policies (the decision is assumed to be carried
        out). Then calls the listeners.

        Raises:
            ConfigError: ``current_instances`` is not an integer >= 0, or ``metrics`` is not a
                :class:`ScalingMetrics`.
        """
        if type(current_instances) is not int:
            if isinstance(current_instances, bool):
                raise ConfigError("current_instances", f"must be an integer >= 0, got {current_instances!r}")
            try:
                current_instances = operator.index(current_instances)
            except TypeError:
                raise ConfigError(
                    "current_instances", f"must be an integer >= 0, got {current_instances!r}"
                ) from None
        if current_instances < 0:
            raise ConfigError("current_instances", f"must be an integer >= 0, got {current_instances!r}")
        if not isinstance(metrics, ScalingMetrics):
            raise ConfigError("metrics", f"must be a ScalingMetrics, got {metrics!r}")
        with self._lock:
            decision = self._decide(current_instances, metrics)
            self._history.append(decision)
            listeners = self._listeners
        if listeners:
            self._notify(listeners, decision)
        return decision

    def _decide(self, cur: int, metrics: ScalingMetrics) -> ScalingDecision:
        # Called with the lock held.
        now = float(self._clock())
        lo, hi = self._min, self._max

        # 1. bounds first (HPA: "Current number of replicas above Spec.MaxReplicas" …)
        if cur > hi or cur < lo:
            target = hi if cur > hi else lo
            side = f"above max_instances {hi}" if cur > hi else f"below min_instances {lo}"
            reason = f"{cur} instances is {side}: {cur} → {target}"
            self._record_change(now, cur, target)
            return _decision(cur, target, {}, {}, target, None, "bounds", reason, now)

        # 2. per metric
        desired: dict[str, int] = {}
        ratios: dict[str, float] = {}
        rec = -1
        rec_metric: str | None = None
        rec_within = False
        missing: list[str] = []
        tol_low, tol_high = self._tol_low, self._tol_high
        for name, target_value, total in self._specs:
            value = getattr(metrics, name)
            if value is None:
                missing.append(name)
                continue
            ratio = value / cur / target_value if total else value / target_value
            if tol_low <= ratio <= tol_high:
                proposal = cur
                within = True
            else:
                proposal = math.ceil(ratio * cur - _EPS)
                within = False
            desired[name] = proposal
            ratios[name] = ratio
            if proposal > rec:  # the first metric wins a tie, as in HPA
                rec, rec_metric, rec_within = proposal, name, within

        # 3. missing metrics hold; nothing recorded
        if rec_metric is None:
            return _decision(
                cur, cur, desired, ratios, cur, None, "missing_metric",
                f"no metric available ({', '.join(missing)} missing): {cur} instances kept", now,
            )  # fmt: skip
        error_rate = metrics.error_rate
        if rec < cur and self._error_target is not None and error_rate is None:
            missing.append("error_rate")
        if missing and rec < cur:
            return _decision(
                cur, cur, desired, ratios, rec, rec_metric, "missing_metric",
                f"{_says(rec_metric, ratios, rec, cur)}, but {', '.join(missing)} missing: "
                f"no scale-down on partial data, {cur} instances kept",
                now,
            )  # fmt: skip

        # 4. error-rate guard (recorded as "keep the current count" in the window)
        guarded = rec
        error_target = self._error_target
        if rec < cur and error_rate is not None and error_target is not None and error_rate > error_target:
            guarded = cur

        # 5. stabilization (HPA stabilizeRecommendationWithBehaviors)
        stabilized = self._stabilize(now, cur, guarded)
        if guarded != rec:
            return _decision(
                cur, cur, desired, ratios, rec, rec_metric, "error_rate",
                f"{_says(rec_metric, ratios, rec, cur)}, held at {cur} while the error rate "
                f"{error_rate:.3g} is above its target {self._error_target:.3g}",
                now,
            )  # fmt: skip

        # 6. rate policies and bounds (HPA convertDesiredReplicasWithBehaviorRate)
        final = stabilized
        limited: LimitedBy | None = None
        if stabilized > cur:
            limit = max(self._rate_limit(now, cur, up=True), cur)
            allowed = min(limit, hi)
            if stabilized > allowed:
                final = allowed
                limited = "policy" if hi > limit else "bounds"
        elif stabilized < cur:
            limit = min(self._rate_limit(now, cur, up=False), cur)
            allowed = max(limit, lo)
            if stabilized < allowed:
                final = allowed
                limited = "policy" if lo < limit else "bounds"

        # 7. cooldown (ours)
        if (
            final != cur
            and self._cooldown > 0.0
            and self._last_change is not None
            and now - self._last_change < self._cooldown
        ):
            final, limited = cur, "cooldown"

        if limited is None:
            if stabilized != rec:
                limited = "stabilization"
            elif rec == cur and rec_within:
                limited = "tolerance"
        if final != cur:
            self._record_change(now, cur, final)
        reason = _reason(self, cur, final, rec, rec_metric, ratios, stabilized, limited)
        return _decision(cur, final, desired, ratios, rec, rec_metric, limited, reason, now)

    def _stabilize(self, now: float, cur: int, rec: int) -> int:
        """The current count brought within the windows' [min, max]; records ``rec``."""
        up, down = self._up_window, self._down_window
        up_cutoff = now - self._up_window_s
        down_cutoff = now - self._down_window_s
        while up and up[0][0] <= up_cutoff:
            up.popleft()
        while down and down[0][0] <= down_cutoff:
            down.popleft()
        up_rec = rec if not up or up[0][1] >= rec else up[0][1]
        down_rec = rec if not down or down[0][1] <= rec else down[0][1]
        stabilized = cur
        if stabilized < up_rec:
            stabilized = up_rec
        if stabilized > down_rec:
            stabilized = down_rec
        # Record; an entry dominated by the new one can never be the min (max) again.
        if self._up_window_s > 0:
            while up and up[-1][1] >= rec:
                up.pop()
            up.append((now, rec))
        if self._down_window_s > 0:
            while down and down[-1][1] <= rec:
                down.pop()
            down.append((now, rec))
        return stabilized

    def _changes_in(self, now: float, period: int) -> tuple[int, int]:
        cutoff = now - period
        added = sum(change for t, change in self._up_events if t > cutoff)
        removed = sum(change for t, change in self._down_events if t > cutoff)
        return added, removed

    def _rate_limit(self, now: float, cur: int, *, up: bool) -> int:
        """The furthest count the policies allow now (HPA calculateScale{Up,Down}Limit...)."""
        rules = self._scale_up if up else self._scale_down
        if rules.select_policy == "Disabled":
            return cur
        # "Max" picks the policy allowing the biggest change: the highest limit up, the lowest down.
        pick = max if (rules.select_policy == "Max") == up else min
        limits = []
        for policy in rules.policies:
            added, removed = self._changes_in(now, policy.period_seconds)
            start = cur - added + removed  # the count when the period began
            value = policy.value
            if policy.type == "Pods":
                limits.append(start + value if up else start - value)
            elif up:  # Percent, rounded up: a small percent must still allow one more instance
                limits.append(-(-start * (100 + value) // 100))
            else:  # Percent, rounded down (HPA truncates)
                limits.append(start * (100 - value) // 100)
        return pick(limits)

    def _record_change(self, now: float, cur: int, target: int) -> None:
        horizon = now - self._events_horizon
        for events in (self._up_events, self._down_events):
            while events and events[0][0] <= horizon:
                events.popleft()
        if target > cur:
            self._up_events.append((now, target - cur))
        else:
            self._down_events.append((now, cur - target))
        self._last_change = now

    # --- replay ---------------------------------------------------------------------------------------
    def simulate(
        self, series: Iterable[SimulationStep], *, start_instances: int | None = None
    ) -> list[ScalingDecision]:
        """Replay a timeline on a fresh copy of this scaler; the live scaler is not touched.

        Args:
            series: ``(timestamp, current_instances, metrics)`` tuples in time order: timestamp in
                seconds (any origin; the copy's clock reads it), ``current_instances`` an int, or
                None to feed back the previous decision's target (what a cluster that carries out
                every decision would run), and a :class:`ScalingMetrics`.
            start_instances: The count when the first step gives None.

        Returns:
            One decision per step, in order. The copy has the same configuration, an empty
            history, empty windows and no listeners; so the result equals calling a new scaler
            step by step with a clock that returns each timestamp.

        Raises:
            ConfigError: a step is malformed, a timestamp decreases, or a step gives None with no
                earlier decision and no ``start_instances``.
        """
        now = [0.0]
        copy = AutoScaler(**self._config, clock=lambda: now[0])
        decisions: list[ScalingDecision] = []
        previous_time: float | None = None
        previous_target = start_instances
        for i, step in enumerate(series):
            try:
                timestamp, current, metrics = step
            except (TypeError, ValueError):
                raise ConfigError(
                    f"series[{i}]",
                    f"must be a (timestamp, current_instances or None, metrics) tuple, got {step!r}",
                ) from None
            if not _is_number(timestamp) or not math.isfinite(timestamp):
                raise ConfigError(f"series[{i}]", f"timestamp must be a finite number, got {timestamp!r}")
            if previous_time is not None and timestamp < previous_time:
                raise ConfigError(
                    f"series[{i}]", f"timestamps must not decrease: {timestamp!r} after {previous_time!r}"
                )
            if current is None:
                if previous_target is None:
                    raise ConfigError(
                        f"series[{i}]",
                        "current_instances is None and there is no earlier decision: pass start_instances",
                    )
                current = previous_target
            now[0] = float(timestamp)
            decision = copy.get_scaling_decision(current, metrics)
            decisions.append(decision)
            previous_time = timestamp
            previous_target = decision.target_instances
        return decisions

    # --- the equivalent Kubernetes object -----------------------------------------------------------
    def to_hpa_manifest(
        self,
        name: str,
        *,
        namespace: str | None = None,
        target_name: str | None = None,
        target_kind: str = "Deployment",
        target_api_version: str = "apps/v1",
        metric_names: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The equivalent ``autoscaling/v2`` HorizontalPodAutoscaler, as a dict (``json.dumps`` it
        for ``kubectl apply -f``): :func:`amqadf_agent.scaling.hpa.hpa_manifest` of this scaler,
        which says how each setting maps and what each argument is."""
        # ``hpa_manifest``'s signature is written out again here so that the method is typed and
        # documented where users find it; the module is imported only when a manifest is asked for
        # (the analyzer, which replays, never exports).
        from amqadf_agent.scaling.hpa import hpa_manifest

        return hpa_manifest(
            self,
            name,
            namespace=namespace,
            target_name=target_name,
            target_kind=target_kind,
            target_api_version=target_api_version,
            metric_names=metric_names,
        )


# --- helpers ------------------------------------------------------------------------------------------
def _check_fraction(name: str, value: object) -> float:
    if not _is_number(value) or not 0.0 < value <= 1.0:
        raise ConfigError(name, f"must be a fraction in (0, 1], got {value!r}")
    return float(value)


def _check_target(name: str, value: object, *, fraction: bool) -> float:
    if fraction:
        return _check_fraction(name, value)
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(name, f"must be a finite number > 0 or None, got {value!r}")
    return float(value)


def _decision(
    cur: int,
    target: int,
    desired: dict[str, int],
    ratios: dict[str, float],
    rec: int,
    metric: str | None,
    limited: LimitedBy | None,
    reason: str,
    now: float,
) -> ScalingDecision:
    action: Action = SCALE_UP if target > cur else SCALE_DOWN if target < cur else NO_ACTION
    return ScalingDecision(action, target, cur, desired, ratios, rec, metric, limited, reason, now)


def _says(metric: str, ratios: dict[str, float], rec: int, cur: int) -> str:
    """What the metrics say: ``cpu_utilization at 1.29x its target recommends 7``."""
    if rec < cur:
        return f"all metrics below target (highest: {metric} at {ratios[metric]:.2f}x) recommend {rec}"
    return f"{metric} at {ratios[metric]:.2f}x its target recommends {rec}"


def _reason(
    scaler: AutoScaler,
    cur: int,
    final: int,
    rec: int,
    metric: str,
    ratios: dict[str, float],
    stabilized: int,
    limited: LimitedBy | None,
) -> str:
    if limited == "tolerance":
        return (
            f"{metric} at {ratios[metric]:.2f}x its target is within the {scaler.tolerance:g} "
            f"tolerance: {cur} instances kept"
        )
    says = _says(metric, ratios, rec, cur)
    change = f"{cur} → {final}" if final != cur else f"{cur} instances kept"
    if limited is None:
        return f"{says}: {change}"
    if limited == "stabilization":
        if rec < cur:
            window, which = scaler.scale_down.stabilization_window_seconds, "highest"
        else:
            window, which = scaler.scale_up.stabilization_window_seconds, "lowest"
        return f"{says}, held at {stabilized} by the {which} recommendation of the last {window} s: {change}"
    if limited == "cooldown":
        return f"{says}, held during the {scaler.cooldown:g} s cooldown after the last change: {change}"
    direction = "scale-up" if stabilized > cur else "scale-down"
    if limited == "policy":
        return f"{says}; the {direction} policies allow {final} for now: {change}"
    if stabilized > cur:
        return f"{says}; capped at max_instances {scaler.max_instances}: {change}"
    return f"{says}; raised to min_instances {scaler.min_instances}: {change}"
