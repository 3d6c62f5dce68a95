"""Resource limits: which resources of a sample are over their thresholds, as structured breaches.

Thresholds are **fractions** (0-1), compared with the sample's percentages divided by 100; a
resource is over its limit when its share is strictly greater than the threshold. Each breach
carries what it is about (``subject``: ``CPU``, ``memory`` or ``disk <mount>``), so a caller that
follows breaches from sample to sample keys on that rather than on the wording of a warning.
"""

from __future__ import annotations

import dataclasses
import math

from amqadf_agent.errors import ConfigError
from amqadf_agent.monitoring.samples import ResourceMetrics

__all__ = ["LimitBreach", "check_fraction", "counted", "find_breaches"]


@dataclasses.dataclass(frozen=True)
class LimitBreach:
    """One resource over its limit in one sample."""

    #: ``cpu``, ``memory`` or ``disk``: the ``amqadf.resource.kind`` of the counter and the event.
    kind: str
    #: What is over: ``CPU``, ``memory``, or ``disk <mountpoint>`` (one breach per mount).
    subject: str
    #: The sample's percentage (0-100).
    percent: float
    #: The limit, a fraction (0-1).
    threshold: float
    #: The mount of a disk breach; None for CPU and memory.
    mountpoint: str | None = None

    @property
    def share(self) -> float:
        """The sample's value as a fraction, as the threshold is."""
        return self.percent / 100.0

    @property
    def warning(self) -> str:
        """``CPU at 93.0% is over its limit of 80%``."""
        return f"{self.subject} at {self.percent:.1f}% is over its limit of {self.threshold:.0%}"


def check_fraction(name: str, value: object) -> None:
    """Raise ``ConfigError`` unless ``value`` is a threshold from 0 to 1 (hinting at a percentage)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"must be a fraction from 0 to 1 (e.g. 0.8 for 80%), got {value!r}")
    if value < 0 or value > 1:
        hint = f"; did you mean {value / 100:g} for {value:g}%?" if 1 < value <= 100 else ""
        raise ConfigError(name, f"must be a fraction from 0 to 1, not a percentage: got {value!r}{hint}")


def find_breaches(
    sample: ResourceMetrics, cpu_threshold: float, memory_threshold: float, disk_threshold: float
) -> list[LimitBreach]:
    """Every resource of ``sample`` over its threshold: CPU, memory, then each mount in order."""
    breaches: list[LimitBreach] = []
    if sample.cpu_percent / 100.0 > cpu_threshold:
        breaches.append(LimitBreach("cpu", "CPU", sample.cpu_percent, cpu_threshold))
    if sample.memory_percent / 100.0 > memory_threshold:
        breaches.append(LimitBreach("memory", "memory", sample.memory_percent, memory_threshold))
    for disk in sample.disks:
        if disk.percent / 100.0 > disk_threshold:
            subject = f"disk {disk.mountpoint}"
            breaches.append(LimitBreach("disk", subject, disk.percent, disk_threshold, disk.mountpoint))
    return breaches


def counted(breaches: list[LimitBreach]) -> list[LimitBreach]:
    """One breach per kind, as the breach counter and the span events count them: CPU, memory,
    and of the disks the fullest (the first of equally full ones)."""
    kept = [breach for breach in breaches if breach.kind != "disk"]
    worst: LimitBreach | None = None
    for breach in breaches:
        if breach.kind == "disk" and (worst is None or breach.percent > worst.percent):
            worst = breach
    return kept if worst is None else [*kept, worst]
