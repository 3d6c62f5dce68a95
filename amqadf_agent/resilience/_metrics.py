"""How every resilience policy joins its shared instrument set: one registration, one registry.

Each policy module keeps its own ``SharedInstruments`` (its instruments and collection-time
readings); what they all do alike lives here: register an owner so that a telemetry failure is
logged and never raised into the application (docs/design.md, principle 2), instrument the state
store beside it, and, for the decorators that report every decorated function at once, keep the
live members weakly.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Generic, TypeVar

from amqadf_agent.monitoring._instruments import SharedInstruments

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

T = TypeVar("T")
M = TypeVar("M")


def register(
    shared: SharedInstruments[T],
    owner: T,
    meter_provider: MeterProvider | None,
    log: logging.Logger,
    what: str,
    *,
    store: object = None,
) -> None:
    """Report ``owner`` through ``shared`` on ``meter_provider`` (default: the global one).

    A failure is logged on ``log`` as "cannot report {what} as metrics", never raised. ``store``
    (a state store, or None) is instrumented on the same provider when it can be.
    """
    shared.report(owner, meter_provider, log, what)
    store_instrument = getattr(store, "instrument", None)
    if callable(store_instrument):
        store_instrument(meter_provider)


class Members(Generic[M]):
    """The one object a decorator registers: every live member, held weakly.

    A decorated function that is garbage-collected stops reporting; the lock makes ``members()``
    a consistent list while other threads decorate.
    """

    __slots__ = ("__weakref__", "_lock", "_members")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: weakref.WeakSet[M] = weakref.WeakSet()

    def add(self, member: M) -> None:
        with self._lock:
            self._members.add(member)

    def members(self) -> list[M]:
        with self._lock:
            return list(self._members)
