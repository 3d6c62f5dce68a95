"""Reports an :class:`~amqadf_agent.scaling.autoscaler.AutoScaler`'s decisions as OpenTelemetry.

Why a separate module: the decision engine is imported by the analyzer, which must not load
OpenTelemetry (docs/design.md, Walls); this module is the only part of the autoscaler that does.

What it emits (names from ``semconv``):

* ``amqadf.autoscaler.instances.current`` and ``.desired``: observable gauges of the last decision;
* ``amqadf.autoscaler.decisions``: an observable counter by action and by the rule that limited
  the decision (``amqadf.autoscaler.limited_by``; ``"none"`` when no rule did);
* for a decision that changes the count, the event ``amqadf.autoscaler.decision`` on the current
  span if it is recording (else, when a tracer was given, on a short span of that name).

Decisions are counted in plain ints by a listener on the scaler and read at collection time
(docs/design.md, principle 1); a decision that changes the count is rare, so it may write a span event.
Telemetry failures are logged, never raised into the scaler (principle 2).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from opentelemetry import trace

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.scaling.autoscaler import AutoScaler, ScalingDecision

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import Attributes

__all__ = ["AutoScalerTelemetry", "instrument"]

_log = logging.getLogger(__name__)

#: ``amqadf.autoscaler.limited_by`` of a decision no rule limited (attribute values cannot be None).
LIMITED_BY_NONE = "none"
_ATTR_CURRENT = semconv.ATTR_SCALER_CURRENT
_ATTR_TARGET = semconv.ATTR_SCALER_TARGET
_ATTR_REASON = semconv.ATTR_SCALER_REASON


class AutoScalerTelemetry:
    """Reports one scaler's decisions, under ``name`` (the ``amqadf.autoscaler.name`` attribute).

    Creating it adds a listener to ``scaler``, which keeps this object alive as long as the scaler
    lives; the metric instruments hold it weakly (one instrument set per meter provider is shared
    by all scalers, see ``monitoring._instruments``). :meth:`close` detaches it.

    Args:
        scaler: The scaler to report.
        name: Its name in the telemetry.
        meter_provider: Where the instruments live; default the global provider.
        tracer: When given, a decision that changes the count while no span is recording gets a
            span of its own, named ``amqadf.autoscaler.decision``, carrying the event.
    """

    def __init__(
        self,
        scaler: AutoScaler,
        name: str,
        meter_provider: MeterProvider | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if not isinstance(scaler, AutoScaler):
            raise ConfigError("scaler", f"must be an AutoScaler, got {scaler!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        self._scaler = scaler
        self._name = name
        self._tracer = tracer
        self._lock = threading.Lock()
        self._closed = False
        self._counts: dict[tuple[str, str], int] = {}
        last = scaler.get_history()[-1:]
        self._current: int | None = last[0].current_instances if last else None
        self._desired: int | None = last[0].target_instances if last else None
        self._event_failed = False
        scaler.add_listener(self._on_decision)
        _SHARED.report(self, meter_provider, _log, f"autoscaler {name!r}")

    @property
    def name(self) -> str:
        return self._name

    def counts(self) -> dict[tuple[str, str], int]:
        """Decisions so far by ``(action, limited_by)``, as the counter reports them (a copy)."""
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        """Stop listening to the scaler and stop reporting."""
        self._closed = True
        self._scaler.remove_listener(self._on_decision)

    def __repr__(self) -> str:
        return f"AutoScalerTelemetry(name={self._name!r})"

    def _on_decision(self, decision: ScalingDecision) -> None:
        key = (decision.action, decision.limited_by or LIMITED_BY_NONE)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._current = decision.current_instances
            self._desired = decision.target_instances
        if decision.changed:
            self._emit_event(decision)

    def _emit_event(self, decision: ScalingDecision) -> None:
        """The one place that writes the decision event (span events may move to log records)."""
        try:
            attributes = self._event_attributes(decision)
            span: Span = trace.get_current_span()
            if span.is_recording():
                span.add_event(semconv.EVENT_SCALING_DECISION, attributes)
            elif self._tracer is not None:
                with self._tracer.start_as_current_span(
                    semconv.EVENT_SCALING_DECISION, attributes={semconv.ATTR_SCALER_NAME: self._name}
                ) as own:
                    own.add_event(semconv.EVENT_SCALING_DECISION, attributes)
        except Exception:
            level = logging.DEBUG if self._event_failed else logging.WARNING
            self._event_failed = True
            _log.log(level, "autoscaler %r: cannot write the decision event", self._name, exc_info=True)

    def _event_attributes(self, decision: ScalingDecision) -> Attributes:
        attributes: dict[str, str | int] = {
            semconv.ATTR_SCALER_NAME: self._name,
            semconv.ATTR_SCALER_ACTION: decision.action,
            semconv.ATTR_SCALER_LIMITED_BY: decision.limited_by or LIMITED_BY_NONE,
            _ATTR_CURRENT: decision.current_instances,
            _ATTR_TARGET: decision.target_instances,
            _ATTR_REASON: decision.reason,
        }
        if decision.limiting_metric is not None:
            attributes[semconv.ATTR_SCALER_METRIC] = decision.limiting_metric
        return attributes

    # --- collection-time readings (the SDK's collection thread) ---------------------------------------
    def _gauge(self, value: int | None) -> list[Point]:
        if self._closed or value is None:
            return []
        return [(value, {semconv.ATTR_SCALER_NAME: self._name})]

    def _current_points(self) -> list[Point]:
        return self._gauge(self._current)

    def _desired_points(self) -> list[Point]:
        return self._gauge(self._desired)

    def _decision_points(self) -> list[Point]:
        if self._closed:
            return []
        return [
            (
                count,
                {
                    semconv.ATTR_SCALER_NAME: self._name,
                    semconv.ATTR_SCALER_ACTION: action,
                    semconv.ATTR_SCALER_LIMITED_BY: limited_by,
                },
            )
            for (action, limited_by), count in self.counts().items()
        ]


def instrument(
    scaler: AutoScaler,
    name: str,
    meter_provider: MeterProvider | None = None,
    tracer: Tracer | None = None,
) -> AutoScalerTelemetry:
    """Report ``scaler`` under ``name``: the same as ``AutoScalerTelemetry(scaler, name, …)``."""
    return AutoScalerTelemetry(scaler, name, meter_provider, tracer)


_SHARED: SharedInstruments[AutoScalerTelemetry] = SharedInstruments(
    "autoscaler",
    [
        (semconv.SCALER_CURRENT, AutoScalerTelemetry._current_points),
        (semconv.SCALER_DESIRED, AutoScalerTelemetry._desired_points),
        (semconv.SCALER_DECISIONS, AutoScalerTelemetry._decision_points),
    ],
)
