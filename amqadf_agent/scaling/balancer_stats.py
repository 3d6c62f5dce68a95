"""What a load balancer reports: its snapshot types and the readings behind its instruments.

``LoadBalancer.stats()`` builds the snapshots under the balancer's lock; the instruments read them on
the SDK's collection thread. Neither needs the balancer's internals, so they live apart from its
strategies. ``amqadf_agent.scaling.load_balancer`` re-exports the two snapshot types.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from amqadf_agent import semconv
from amqadf_agent.monitoring._instruments import Point, SharedInstruments

if TYPE_CHECKING:
    from amqadf_agent.scaling.load_balancer import LoadBalancer

__all__ = ["SHARED", "LoadBalancerStats", "WorkerStats"]


@dataclasses.dataclass(frozen=True)
class WorkerStats:
    """A snapshot of one worker's counters and health."""

    name: str
    weight: float
    #: Smooth weighted round robin's current weight for this worker: ``weight`` unless failures
    #: lowered it (it recovers by 1 per selection round).
    effective_weight: float
    #: Requests in flight (acquired and not released).
    active: int
    #: Times the worker was selected, by ``select_worker()`` or ``acquire()``.
    selections: int
    successes: int
    failures: int
    #: Sum of the latencies (seconds) of the requests released with one.
    latency_sum: float
    #: Failures since the last success or ejection.
    consecutive_failures: int
    #: Times outlier detection ejected the worker (the multiplier of its ejection time).
    ejections: int
    #: Clock time at which an ejected worker comes back; None while it is not ejected.
    ejected_until: float | None
    #: The last active health check passed (True when the worker has no health check).
    health_check_ok: bool

    @property
    def healthy(self) -> bool:
        """Neither ejected nor failing its health check."""
        return self.ejected_until is None and self.health_check_ok


@dataclasses.dataclass(frozen=True)
class LoadBalancerStats:
    """A consistent snapshot of a balancer (taken under its lock)."""

    name: str
    strategy: str
    #: True while too few workers are healthy and every worker is a candidate.
    panic: bool
    #: In registration order.
    workers: tuple[WorkerStats, ...]

    def worker(self, name: str) -> WorkerStats:
        """The snapshot of the worker called ``name``; ``KeyError`` if it is not registered."""
        for w in self.workers:
            if w.name == name:
                return w
        raise KeyError(name)


# --- collection-time readings (called by the SDK's collection thread, never on the hot path) -------
def _attributes(balancer: str, worker: str) -> dict[str, str]:
    return {semconv.ATTR_LB_NAME: balancer, semconv.ATTR_LB_WORKER: worker}


def _selections(lb: LoadBalancer) -> list[Point]:
    s = lb.stats()
    return [(w.selections, _attributes(s.name, w.name)) for w in s.workers]


def _requests(lb: LoadBalancer) -> list[Point]:
    s = lb.stats()
    points: list[Point] = []
    for w in s.workers:
        for outcome, value in ((semconv.OUTCOME_SUCCESS, w.successes), (semconv.OUTCOME_FAILURE, w.failures)):
            points.append((value, {**_attributes(s.name, w.name), semconv.ATTR_TASK_OUTCOME: outcome}))
    return points


def _active(lb: LoadBalancer) -> list[Point]:
    s = lb.stats()
    return [(w.active, _attributes(s.name, w.name)) for w in s.workers]


def _healthy(lb: LoadBalancer) -> list[Point]:
    s = lb.stats()
    return [(1 if w.healthy else 0, _attributes(s.name, w.name)) for w in s.workers]


def _ejections(lb: LoadBalancer) -> list[Point]:
    s = lb.stats()
    return [(w.ejections, _attributes(s.name, w.name)) for w in s.workers]


#: The instruments every instrumented balancer reports through (one set per meter provider).
SHARED: SharedInstruments[LoadBalancer] = SharedInstruments(
    "load balancer",
    [
        (semconv.LB_SELECTIONS, _selections),
        (semconv.LB_REQUESTS, _requests),
        (semconv.LB_ACTIVE_REQUESTS, _active),
        (semconv.LB_WORKER_HEALTHY, _healthy),
        (semconv.LB_EJECTIONS, _ejections),
    ],
)
