"""Builds the contract's instruments and shares one set of them per meter provider.

Why shared: the SDK keeps the first instrument registered under a name and silently drops the
callbacks of any later observable instrument of the same name (with a warning), so one instrument
set per cache would report the first cache only. Instead each kind of object (caches, pools) gets
one set per meter provider, whose callbacks walk a weak registry of the live objects: 100 caches,
one instrument set, 100 series, and a cache that is garbage-collected simply stops reporting.

Nothing here imports OpenTelemetry at module level: importing it costs ~20 ms, which the
``import`` of a cache module must not pay; ``register()`` imports it on first use.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from amqadf_agent import semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import (
        CallbackOptions,
        Histogram,
        Instrument,
        Meter,
        MeterProvider,
        Observation,
    )

    Callback = Callable[[CallbackOptions], Iterable[Observation]]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: One data point an object contributes to an observable instrument: value and attributes.
Point = tuple[float, dict[str, str]]
#: Attribute items sorted by key: one series, whatever order a reading builds its dict in.
AttrKey = tuple[tuple[str, str], ...]
#: Distinct attribute sets remembered per registry; beyond this the memo is cleared (churning
#: attributes, such as mounts coming and going, must not grow it without bound).
_CANONICAL_MAX = 4096
#: How one object is read for one observable instrument, at collection time.
Reading = Callable[[T], Iterable[Point]]


def create_histogram(meter: Meter, inst: semconv.Instrument) -> Histogram:
    """A histogram from a contract entry, with its explicit buckets (seconds need them: docs/design.md)."""
    if inst.kind != "histogram":
        raise ValueError(f"{inst.name} is a {inst.kind}, not a histogram")
    return meter.create_histogram(
        inst.name,
        unit=inst.unit,
        description=inst.description,
        explicit_bucket_boundaries_advisory=inst.buckets,
    )


def create_instrument(
    meter: Meter, inst: semconv.Instrument, callbacks: Sequence[Callback] = ()
) -> Instrument:
    """An instrument of ``meter`` whose name, kind, unit and description all come from the contract."""
    name, unit, description, kind = inst.name, inst.unit, inst.description, inst.kind
    observable = kind.startswith("observable_")
    if callbacks and not observable:
        raise ValueError(f"{name} is a {kind}: callbacks only apply to observable instruments")
    if kind == "histogram":
        return create_histogram(meter, inst)
    if kind == "counter":
        return meter.create_counter(name, unit, description)
    if kind == "updowncounter":
        return meter.create_up_down_counter(name, unit, description)
    if kind == "gauge":
        return meter.create_gauge(name, unit, description)
    if kind == "observable_counter":
        return meter.create_observable_counter(name, list(callbacks), unit, description)
    if kind == "observable_updowncounter":
        return meter.create_observable_up_down_counter(name, list(callbacks), unit, description)
    if kind == "observable_gauge":
        return meter.create_observable_gauge(name, list(callbacks), unit, description)
    raise ValueError(f"{name}: unknown instrument kind {kind!r}")


@functools.lru_cache(maxsize=1)
def _observation_class() -> type[Observation]:
    """``opentelemetry.metrics.Observation``, imported once (an import statement in a callback
    costs a lookup through the import system at every collection)."""
    from opentelemetry.metrics import Observation

    return Observation


def _ref(provider: MeterProvider) -> Callable[[], MeterProvider | None]:
    """A weak reference when the provider allows one (a test's provider must be able to die)."""
    try:
        return weakref.ref(provider)
    except TypeError:
        return lambda: provider


class _Registry(Generic[T]):
    """The live objects of one kind reporting through one meter provider, and its histograms."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: being reported must never keep a cache or a pool alive. The references are kept
        # as a tuple replaced (under the lock) on each change, so a collection (15 callbacks for
        # the resource monitor) reads it without copying a WeakSet under a lock each time.
        self._refs: tuple[weakref.ReferenceType[T], ...] = ()
        self._seen: weakref.WeakSet[T] = weakref.WeakSet()  # what add() has taken already
        self.histograms: dict[str, Histogram] = {}
        self.warned = False
        # Attribute items as a reading gives them -> (sorted items, the dict exported for them).
        # Sorting per point per collection would cost about a quarter of a resource collection's CPU; the
        # attribute sets of one registry are few and stable, so each is sorted once.
        self.canonical: dict[tuple[tuple[str, str], ...], tuple[AttrKey, dict[str, str]]] = {}

    def add(self, obj: T) -> None:
        with self._lock:
            if obj in self._seen:
                return
            self._seen.add(obj)
            refs = self._refs
            if len(refs) >= 2 * len(self._seen) + 8:  # mostly dead (no collection pruned them): drop
                refs = tuple(ref for ref in refs if ref() is not None)
            self._refs = (*refs, weakref.ref(obj))

    def members(self) -> list[T]:
        refs = self._refs  # one read: the tuple is never changed, only replaced
        if len(refs) == 1 and (only := refs[0]()) is not None:  # the usual case, without the loop
            return [only]
        objects = [obj for ref in refs if (obj := ref()) is not None]
        if len(objects) < len(refs):  # some died: drop their references
            with self._lock:
                self._refs = tuple(ref for ref in self._refs if ref() is not None)
        return objects


class SharedInstruments(Generic[T]):
    """One set of a kind's instruments per meter provider, fed by a weak registry of live objects.

    ``observed`` pairs each observable contract entry with the function that reads one object;
    ``recorded`` lists the histograms the objects record into themselves (returned by ``register``).
    Points of objects with equal attributes (two caches given the same name) are summed, so they
    make one series instead of two conflicting observations of one series. ``distinct``: a reading
    never repeats an attribute set within one object (true of the resource monitor), so the points
    of a lone object go to the SDK as they are, without the summing.
    """

    def __init__(
        self,
        what: str,
        observed: Sequence[tuple[semconv.Instrument, Reading[T]]],
        recorded: Sequence[semconv.Instrument] = (),
        *,
        distinct: bool = False,
    ) -> None:
        self._what = what
        self._distinct = distinct
        self._observed = tuple(observed)
        self._recorded = tuple(recorded)
        self._lock = threading.Lock()
        self._by_provider: weakref.WeakKeyDictionary[MeterProvider, _Registry[T]] = (
            weakref.WeakKeyDictionary()
        )
        self._unweakable: dict[int, tuple[MeterProvider, _Registry[T]]] = {}
        # The global provider when an object was last registered on it, and its registry.
        self._global: tuple[Callable[[], MeterProvider | None], _Registry[T]] | None = None

    def report(
        self, obj: T, meter_provider: MeterProvider | None, log: logging.Logger, what: str
    ) -> dict[str, Histogram] | None:
        """:meth:`register`, with a failure logged on ``log`` ("cannot report {what} as metrics") and
        never raised into the application (docs/design.md, principle 2); None after a failure."""
        try:
            return self.register(obj, meter_provider)
        except Exception:
            log.warning("cannot report %s as metrics; it keeps working", what, exc_info=True)
            return None

    def register(self, obj: T, meter_provider: MeterProvider | None) -> dict[str, Histogram]:
        """Report ``obj`` through ``meter_provider`` (default: the global one); the histograms by name.

        Before the SDK is set, the global provider is the API's proxy, which later forwards every
        instrument to the real provider. So a cache instrumented at import time (set on the proxy)
        and one instrumented after start-up (on the real provider) must share the proxy's set: a
        second set on the real provider would duplicate every name and lose its callbacks.
        """
        from opentelemetry import metrics

        current = metrics.get_meter_provider()
        provider = current if meter_provider is None else meter_provider
        with self._lock:
            registry = self._lookup(provider)
            if registry is None and provider is current:
                registry = self._forwarding_to(provider)
                if registry is not None:
                    self._store(provider, registry)
            if registry is None:
                registry = self._create(provider)
                self._store(provider, registry)
            if provider is current:
                self._global = (_ref(provider), registry)
        registry.add(obj)
        return registry.histograms

    def _forwarding_to(self, provider: MeterProvider) -> _Registry[T] | None:
        """The registry of an earlier global provider that now hands out ``provider``'s meter.

        That is the API's proxy once the SDK has been set (it returns the real provider's meter,
        which the SDK caches per scope). Only public API is used to find out: no private classes.
        """
        if self._global is None:
            return None
        earlier_ref, registry = self._global
        earlier = earlier_ref()
        if earlier is None or earlier is provider:
            return None
        try:
            same = earlier.get_meter(semconv.SCOPE_NAME) is provider.get_meter(semconv.SCOPE_NAME)
        except Exception:
            return None
        return registry if same else None

    def _lookup(self, provider: MeterProvider) -> _Registry[T] | None:
        try:
            return self._by_provider.get(provider)
        except TypeError:  # not weakly referenceable or not hashable
            entry = self._unweakable.get(id(provider))
            return entry[1] if entry is not None and entry[0] is provider else None

    def _store(self, provider: MeterProvider, registry: _Registry[T]) -> None:
        try:
            self._by_provider[provider] = registry
        except TypeError:
            self._unweakable[id(provider)] = (provider, registry)

    def _create(self, provider: MeterProvider) -> _Registry[T]:
        registry: _Registry[T] = _Registry()
        meter = provider.get_meter(semconv.SCOPE_NAME)
        for inst, reading in self._observed:
            create_instrument(meter, inst, [self._callback(registry, inst, reading)])
        registry.histograms = {inst.name: create_histogram(meter, inst) for inst in self._recorded}
        return registry

    def _callback(self, registry: _Registry[T], inst: semconv.Instrument, reading: Reading[T]) -> Callback:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            try:
                return self._observe(registry, inst, reading)
            except Exception:  # a callback must never raise into the SDK
                self._warn_once(registry, "collecting %s failed", inst.name)
                return []

        return callback

    def _observe(
        self, registry: _Registry[T], inst: semconv.Instrument, reading: Reading[T]
    ) -> list[Observation]:
        Observation = _observation_class()
        members = registry.members()
        if self._distinct and len(members) == 1:  # one object whose points never repeat: as they are
            try:
                return [Observation(value, attributes) for value, attributes in reading(members[0])]
            except Exception:
                self._warn_once(registry, "reading %s from %r failed; skipped", inst.name, members[0])
                return []
        canonical = registry.canonical
        totals: dict[AttrKey, list[Any]] = {}  # sorted items -> [summed value, exported attributes]
        for obj in members:
            try:
                points = list(reading(obj))
            except Exception:  # skip this object, report the others
                self._warn_once(registry, "reading %s from %r failed; skipped", inst.name, obj)
                continue
            for value, attributes in points:
                raw = tuple(attributes.items())
                known = canonical.get(raw)
                if known is None:
                    key = tuple(sorted(raw))
                    if len(canonical) >= _CANONICAL_MAX:
                        canonical.clear()
                    # A private dict, built once: nothing outside this module ever sees it mutable.
                    known = canonical[raw] = (key, dict(key))
                key = known[0]
                entry = totals.get(key)
                if entry is None:
                    totals[key] = [value, known[1]]
                else:
                    entry[0] += value
        return [Observation(value, exported) for value, exported in totals.values()]

    def _warn_once(self, registry: _Registry[T], message: str, *args: object) -> None:
        # Telemetry failures are logged once per provider, never raised (docs/design.md, principle 2);
        # later ones at debug level, so a broken object does not flood the log every collection.
        level = logging.DEBUG if registry.warned else logging.WARNING
        registry.warned = True
        _log.log(level, "%s metrics: " + message, self._what, *args, exc_info=True)
