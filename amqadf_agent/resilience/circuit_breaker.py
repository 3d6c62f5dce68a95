"""A circuit breaker modelled on resilience4j, with a near-zero closed-state hot path.

States: ``closed`` (calls pass), ``open`` (calls are rejected with :class:`CircuitOpenError` until the
open timeout ends), ``half_open`` (at most ``half_open_max_calls`` probes run at the same time; that
many successes close the breaker, one failure reopens it), and three modes set by hand:
``forced_open`` (reject everything), ``disabled`` (pass everything, count nothing) and
``metrics_only`` (pass everything, count outcomes, never trip). ``reset()`` returns to ``closed``.

Tripping: ``failure_threshold`` consecutive failures, or, when ``failure_rate`` and/or
``slow_call_rate`` are set, a failure rate or slow-call rate (a fraction: 0.5 is half the calls) over
a count- or time-based sliding window once it holds ``minimum_calls`` calls.

Cost (docs/design.md, principle 1): in the closed state without rate-based tripping or slow-call timing, a
successful call costs one attribute check and one integer increment; no lock, no clock, nothing of
OpenTelemetry. The lock is taken only to record a failure or a windowed outcome and around state
changes, never while the user's function runs (pybreaker holds its lock for the whole call).
The per-call counters are plain ints read at collection time by observable instruments; the
unlocked success increment may, rarely, lose a count under heavy thread contention (the GIL can
switch between the read and the write); failures, rejections and transitions are counted under the
lock and are exact. Span events are written only for rare events: a state change and a rejection.

Shared state (``store=RedisStore(url)``): every breaker of one ``name`` on one Redis shares the
**state and the trip decision**: the state and its open-until time, the consecutive-failure count,
the trip count (open-timeout growth) and the half-open probe slots live in the Redis hash
``{namespace}:breaker:{name}`` and change only through atomic Lua scripts (see
:mod:`amqadf_agent.resilience.stores`). What goes to Redis, and when:

* construction: the hash is read (a new instance adopts an open breaker; nothing is reset);
* closed, success: **no round trip**, except one to reset the shared failure count when it is
  known to be non-zero; the shared state is read again at most every ``sync_interval`` seconds
  (on the next call after it has passed), so a breaker tripped elsewhere is seen within that time;
* closed, failure: one script (count, trip at ``failure_threshold``), applied at once;
* open: rejected locally until the open time ends or ``sync_interval`` passes, then asked again;
* half_open: every admission claims a probe slot in Redis (at most ``half_open_max_calls`` across
  all processes) and every probe outcome closes, reopens or frees its slot there;
* ``reset``/``force_open``/``disable``/``metrics_only`` are written to the hash.

Rate-based windows (``failure_rate``, ``slow_call_rate``) stay per process; a
local window trip is written to the hash, so every process opens. With a store the lock-free fast
path is not used: a closed success costs a clock read and the lock (about a microsecond).
Fail open: when Redis does not answer, the breaker decides with its local state (the store logs
one warning per outage, counts every operation served locally in ``amqadf.state_store.fallbacks``
and tries Redis again every ``retry_interval``); once Redis answers, the shared state wins (an
empty Redis after a restart reads as closed).

Why one module of about 850 lines: it is one class whose local and shared paths change the same
lock-guarded state, so they stay side by side; the settings and their checks live in
:mod:`amqadf_agent.resilience.breaker_config`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, ParamSpec, TypeVar, cast

from amqadf_agent import semconv
from amqadf_agent.errors import CircuitOpenError, ConfigError
from amqadf_agent.monitoring._instruments import Point, SharedInstruments
from amqadf_agent.resilience._events import add_event
from amqadf_agent.resilience._metrics import register
from amqadf_agent.resilience.breaker_config import CircuitBreakerConfig, rates_from_percent
from amqadf_agent.resilience.stores import BreakerSnapshot, BreakerStore, MemoryStore

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from amqadf_agent.config.production import ProductionConfig
    from amqadf_agent.config.schema import ResilienceConfig

__all__ = [
    "DISABLED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "METRICS_ONLY",
    "OPEN",
    "STATES",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
FORCED_OPEN: Final = "forced_open"
DISABLED: Final = "disabled"
METRICS_ONLY: Final = "metrics_only"
#: Every state, in the order the state gauge reports them.
STATES: Final = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED, METRICS_ONLY)
#: The interned state constants by name (the code compares states with ``is``).
_STATE_BY_NAME: Final[dict[str, str]] = {s: s for s in STATES}

OUTCOMES: Final = ("success", "failure", "slow_success", "slow_failure", "ignored", "rejected")

Listener = Callable[["CircuitBreaker", str, str], None]
#: What a permitted call carries until its outcome is recorded: (epoch, state it was admitted in).
_Permit = tuple[int, str]
_Transition = tuple[str, str]
#: The constructor's keyword settings (the config's fields) and their defaults.
_SETTINGS: Final[dict[str, Any]] = {f.name: f.default for f in dataclasses.fields(CircuitBreakerConfig)}


class CircuitBreaker:
    """Thread- and asyncio-safe circuit breaker; see the module docstring for its behaviour.

    Use it as ``breaker.call(fn, *args)``, ``await breaker.call_async(coro_fn, *args)``, as a
    decorator on sync or async functions (the signature is preserved), or as ``with breaker:``
    (an exception leaving the block is the call's outcome).

    The settings are the fields of :class:`CircuitBreakerConfig`, given as keywords (which build
    the config) or as ``config=`` alone; mixing the two is a ``ConfigError``.
    """

    def __init__(
        self,
        failure_threshold: int | None = 5,
        timeout: float = 60.0,
        half_open_max_calls: int = 3,
        *,
        name: str = "circuit_breaker",
        failure_rate: float | None = None,
        slow_call_rate: float | None = None,
        failure_rate_threshold: float | None = None,
        slow_call_rate_threshold: float | None = None,
        slow_call_duration: float | None = None,
        sliding_window_type: str = "count",
        sliding_window_size: int = 100,
        minimum_calls: int = 10,
        timeout_multiplier: float = 1.0,
        max_timeout: float | None = None,
        max_half_open_time: float | None = None,
        ignored_exceptions: Iterable[type[BaseException]] | type[BaseException] = (),
        failure_exceptions: Iterable[type[BaseException]] | type[BaseException] | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: BreakerStore | None = None,
        sync_interval: float = 0.5,
        config: CircuitBreakerConfig | None = None,
    ) -> None:
        given = locals()  # the keyword settings, by name: nothing else is defined yet
        if config is None:
            settings = {setting: given[setting] for setting in _SETTINGS}
            rates_from_percent(settings, stacklevel=2)  # the warning names the caller, not this line
            config = CircuitBreakerConfig(**settings)
        elif not isinstance(config, CircuitBreakerConfig):
            raise ConfigError("config", f"must be a CircuitBreakerConfig, got {config!r}")
        else:
            mixed = [setting for setting, default in _SETTINGS.items() if given[setting] != default]
            if mixed:
                raise ConfigError(
                    "config",
                    f"give the settings in config= or as keywords, not both (got {', '.join(mixed)})",
                )
        self._config = config
        # Copied out of the config: the per-call paths read them as plain attributes.
        self._failure_threshold = config.failure_threshold
        self._half_open_max = config.half_open_max_calls
        self._failure_rate = config.failure_rate
        self._slow_rate = config.slow_call_rate
        self._slow_duration = config.slow_call_duration
        self._window_size = config.sliding_window_size
        self._minimum_calls = config.minimum_calls
        if config.sliding_window_type == "count":
            # resilience4j: a count window can never hold more calls than its size.
            self._minimum_calls = min(self._minimum_calls, self._window_size)
        self._ignored = config.ignored_exceptions
        self._failures_only = config.failure_exceptions
        self._clock = config.clock
        self._name = config.name
        # A MemoryStore is the local state itself: the breaker sees no store at all.
        self._store: BreakerStore | None = None if isinstance(config.store, MemoryStore) else config.store
        self._store_config: tuple[str, ...] = (
            str(self._failure_threshold or 0),
            repr(config.timeout * 1e6),
            repr(config.timeout_multiplier),
            repr((config.max_timeout or 0.0) * 1e6),
            str(self._half_open_max),
            repr((config.max_half_open_time or 0.0) * 1e6),
        )
        self._shared_epoch = -1  # the epoch of the shared state last applied (-1: none yet)
        self._next_sync = -math.inf  # the shared state is read again once clock() passes this

        self._windowed = self._failure_rate is not None or self._slow_rate is not None
        # The clock is read around a call only when something needs a duration or a timestamp.
        self._timed = self._slow_duration is not None or (
            self._windowed and config.sliding_window_type == "time"
        )

        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._listener_warned = False
        self._cm_permits: contextvars.ContextVar[tuple[tuple[_Permit, float], ...]] = contextvars.ContextVar(
            f"amqadf_breaker_{id(self)}", default=()
        )

        self._state: str = CLOSED
        # True when a call may take the lock-free path: closed, no window, no timing, no store.
        self._can_fast = not (self._windowed or self._timed or self._store is not None)
        self._fast = self._can_fast
        self._epoch = 0  # bumped on every transition: outcomes of an older state are not applied
        self._consecutive = 0
        self._open_until = 0.0
        self._trips = 0  # consecutive trips without a successful close: grows the open timeout
        self._half_open_since = 0.0
        self._in_flight = 0
        self._probe_successes = 0
        # Count window: deque of (failed, slow); time window: deque of [second, calls, failed, slow].
        self._window: deque[Any] = deque()
        self._w_calls = 0
        self._w_failed = 0
        self._w_slow = 0

        # Outcome counters, read at collection time.
        self._n_success = 0
        self._n_failure = 0
        self._n_slow_success = 0
        self._n_slow_failure = 0
        self._n_ignored = 0
        self._n_rejected = 0
        self._transitions: dict[_Transition, int] = {}
        if self._store is not None:
            self._shared("read")  # a new instance adopts the existing shared state

    @classmethod
    def from_config(
        cls,
        config: ProductionConfig | ResilienceConfig,
        *,
        name: str = "circuit_breaker",
        **overrides: Any,
    ) -> CircuitBreaker:
        """A breaker from the ``resilience`` group of a ``ProductionConfig`` (or the group itself).

        The config describes a **rate-based** breaker: ``resilience.breaker_failure_rate`` is
        ``failure_rate`` (a fraction, as in the config) over the default
        sliding window (the last 100 calls, tripping once it holds ``minimum_calls`` = 10), and
        ``resilience.breaker_open_timeout`` is ``timeout`` (seconds open before a probe). The
        consecutive-failure trip is off (``failure_threshold=None``): the config does not name one.
        Any keyword of the constructor overrides or adds to this::

            breaker = CircuitBreaker.from_config(config, name="payments", failure_threshold=5,
                                                 sliding_window_type="time", sliding_window_size=60)

        Raises:
            ConfigError: naming the field to fix (``resilience.breaker_failure_rate: ...``) or the
                overriding keyword.
        """
        from amqadf_agent.resilience._config import group_values

        values = group_values(config, "resilience", ("breaker_failure_rate", "breaker_open_timeout"))
        kwargs: dict[str, Any] = {
            "failure_threshold": None,
            "timeout": values["breaker_open_timeout"],
            "failure_rate": values["breaker_failure_rate"],
        }
        if "failure_rate_threshold" in overrides:  # the deprecated form overrides the config's rate too
            del kwargs["failure_rate"]
        kwargs.update(overrides)
        return cls(name=name, **kwargs)

    # --- public properties and controls ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The breaker's name: the ``amqadf.circuit_breaker.name`` attribute of its telemetry."""
        return self._name

    @property
    def config(self) -> CircuitBreakerConfig:
        """The settings this breaker runs with, as validated (numbers as floats, classes as tuples)."""
        return self._config

    @property
    def state(self) -> str:
        """The current state; an open breaker whose timeout has ended reads as ``half_open``."""
        if self._store is not None and self._clock() >= self._next_sync:
            self._shared("read")
        state = self._state
        if state is OPEN or state is HALF_OPEN:
            with self._lock:
                done = self._advance_locked(self._clock())
                state = self._state
            self._announce(done)
        return state

    @property
    def store(self) -> BreakerStore | None:
        """The ``store`` given at construction (``None``: local state only)."""
        return self._config.store

    def counts(self) -> dict[str, int]:
        """Calls by outcome since creation (never reset: exported as monotonic counters)."""
        return {
            "success": self._n_success,
            "failure": self._n_failure,
            "slow_success": self._n_slow_success,
            "slow_failure": self._n_slow_failure,
            "ignored": self._n_ignored,
            "rejected": self._n_rejected,
        }

    def transitions(self) -> dict[tuple[str, str], int]:
        """State changes so far, by (from, to)."""
        with self._lock:
            return dict(self._transitions)

    def reset(self) -> None:
        """Back to ``closed`` with empty counts and the base open timeout (from any state or mode)."""
        self._set_mode(CLOSED)

    def force_open(self) -> None:
        """Reject every call until ``reset()`` (resilience4j's FORCED_OPEN)."""
        self._set_mode(FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and count nothing until ``reset()``."""
        self._set_mode(DISABLED)

    def metrics_only(self) -> None:
        """Let every call through and count its outcome, never trip, until ``reset()``."""
        self._set_mode(METRICS_ONLY)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, from_state, to_state)`` after every state change.

        Listeners run outside the lock, in the thread that caused the change. One that raises is
        logged (a warning the first time, then at debug level) and the others still run.
        """
        if not callable(listener):
            raise ConfigError("listener", f"must be callable, got {listener!r}")
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report this breaker through the contract's ``amqadf.circuit_breaker.*`` instruments.

        Default: the global meter provider. Breakers on one provider share one instrument set that
        holds them weakly; idempotent; costs nothing per call. A failure is logged, never raised.
        """
        register(_SHARED, self, meter_provider, _log, f"circuit breaker {self._name!r}", store=self._store)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self._name!r}, state={self._state!r})"

    # --- calling ---------------------------------------------------------------------------------
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` through the breaker; raises :class:`CircuitOpenError` if not permitted."""
        # The lock-free closed path, written out again in call_async and the decorator's wrapper:
        # a shared helper would add a call frame to every successful call (the hot path).
        if self._fast:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._fast_failure(exc)
                raise
            self._n_success += 1
            if self._consecutive:
                self._consecutive = 0
            return result
        return self._call_slow(fn, args, kwargs)

    def _call_slow(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        # Every path but the lock-free closed one: admission, timing, outcome recording.
        permit = self._acquire()
        start = self._clock() if self._timed else 0.0
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record(permit, start, exc)
            raise
        self._record(permit, start, None)
        return result

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await fn(*args, **kwargs)`` through the breaker (the lock is never held across an await)."""
        # ``call``'s two paths, awaited: the fast one inlined as there, the slow one because
        # ``_call_slow`` cannot await.
        if self._fast:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._fast_failure(exc)
                raise
            self._n_success += 1
            if self._consecutive:
                self._consecutive = 0
            return result
        permit = self._acquire()
        start = self._clock() if self._timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record(permit, start, exc)
            raise
        self._record(permit, start, None)
        return result

    def __call__(self, fn: F) -> F:
        """Decorate a sync or async function; ``functools.wraps`` keeps its name and signature."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The closed fast path inlined (as in ``call``): one call frame less per call.
            if self._fast:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    self._fast_failure(exc)
                    raise
                self._n_success += 1
                if self._consecutive:
                    self._consecutive = 0
                return result
            return self._call_slow(fn, args, kwargs)

        return cast(F, wrapper)

    def __enter__(self) -> CircuitBreaker:
        permit = self._acquire()
        start = self._clock() if self._timed else 0.0
        # A context variable, so threads and asyncio tasks sharing the breaker keep their own permits.
        self._cm_permits.set((*self._cm_permits.get(), (permit, start)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._cm_permits.get()
        if not stack:
            return
        (permit, start) = stack[-1]
        self._cm_permits.set(stack[:-1])
        self._record(permit, start, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- internals -------------------------------------------------------------------------------
    def _classify(self, exc: BaseException) -> str:
        """``failure``, ``ignored`` or ``success`` (an exception outside ``failure_exceptions``)."""
        if not isinstance(exc, Exception) or (self._ignored and isinstance(exc, self._ignored)):
            return "ignored"  # also KeyboardInterrupt, SystemExit, asyncio.CancelledError
        if self._failures_only is not None and not isinstance(exc, self._failures_only):
            return "success"  # resilience4j: an unrecorded exception counts as a success
        return "failure"

    def _fast_failure(self, exc: BaseException) -> None:
        kind = self._classify(exc)
        done: list[_Transition] = []
        with self._lock:
            if kind == "ignored":
                self._n_ignored += 1
                return
            if kind == "success":
                self._n_success += 1
                self._consecutive = 0
                return
            self._n_failure += 1
            if self._state is CLOSED:
                self._consecutive += 1
                threshold = self._failure_threshold
                if threshold is not None and self._consecutive >= threshold:
                    done = self._open_locked(self._clock())
        self._announce(done)

    def _acquire(self) -> _Permit:
        if self._store is not None:
            shared = self._acquire_shared()
            if shared is not None:
                return shared
        state = self._state
        if state is CLOSED or state is DISABLED or state is METRICS_ONLY:
            return (self._epoch, state)
        now = self._clock()
        with self._lock:
            done = self._advance_locked(now)
            state = self._state
            if state is CLOSED or state is DISABLED or state is METRICS_ONLY:
                permit: _Permit | None = (self._epoch, state)
            elif state is HALF_OPEN and self._in_flight < self._half_open_max:
                self._in_flight += 1
                permit = (self._epoch, state)
            else:
                permit = None
                self._n_rejected += 1
                if state is OPEN:
                    retry_after = max(0.0, self._open_until - now)
                elif state is HALF_OPEN:
                    retry_after = 0.0
                else:
                    retry_after = math.inf
        self._announce(done)
        if permit is not None:
            return permit
        add_event(
            semconv.EVENT_BREAKER_REJECTED,
            {semconv.ATTR_BREAKER_NAME: self._name, semconv.ATTR_BREAKER_STATE: state},
        )
        raise CircuitOpenError(self._name, retry_after, state)

    def _record(self, permit: _Permit, start: float, exc: BaseException | None) -> None:
        epoch, admitted = permit
        if admitted is DISABLED:
            return
        kind = "success" if exc is None else self._classify(exc)
        now = self._clock() if self._timed else 0.0
        slow = self._slow_duration is not None and kind != "ignored" and now - start >= self._slow_duration
        if self._store is not None and self._record_shared(epoch, admitted, kind, slow, now):
            return
        done: list[_Transition] = []
        with self._lock:
            self._count_locked(kind, slow)
            current = epoch == self._epoch and admitted is self._state
            if admitted is HALF_OPEN:
                if current:
                    self._in_flight -= 1
                    if kind == "failure" or (slow and self._slow_rate is not None):
                        done = self._open_locked(now or self._clock())
                    elif kind == "success":
                        self._probe_successes += 1
                        if self._probe_successes >= self._half_open_max:
                            done = self._transition_locked(CLOSED, now)
            elif admitted is CLOSED and current and kind != "ignored":
                failed = kind == "failure"
                if failed:
                    self._consecutive += 1
                else:
                    self._consecutive = 0
                threshold = self._failure_threshold
                if failed and threshold is not None and self._consecutive >= threshold:
                    done = self._open_locked(now or self._clock())
                elif self._windowed:
                    self._window_add(now, failed, slow)
                    if self._window_trips():
                        done = self._open_locked(now or self._clock())
            elif admitted is METRICS_ONLY and current and kind != "ignored" and self._windowed:
                self._window_add(now, kind == "failure", slow)
        self._announce(done)
        if self._store is not None and (CLOSED, OPEN) in done:
            self._shared("trip")  # a local (window or fallback) trip opens the shared breaker too

    # shared state (``store=``): every method returns having applied the store's answer, if any
    def _shared(self, op: str, arg: str = "") -> BreakerSnapshot | None:
        """Run ``op`` in the store and adopt its answer; ``None`` when the store cannot answer."""
        store = self._store
        assert store is not None
        snapshot = store.breaker(self._name, op, self._store_config, arg)
        if snapshot is None:
            return None
        now = self._clock()
        with self._lock:
            done = self._apply_locked(snapshot, now)
        self._announce(done)
        return snapshot

    def _apply_locked(self, snapshot: BreakerSnapshot, now: float) -> list[_Transition]:
        new = _STATE_BY_NAME.get(snapshot.state, CLOSED)
        done: list[_Transition] = []
        if new is not self._state:
            done = self._transition_locked(new, now)
        elif snapshot.epoch != self._shared_epoch:
            # Another period of the same state (e.g. reopened elsewhere): older permits are stale.
            self._epoch += 1
            self._in_flight = 0
            self._probe_successes = 0
        self._shared_epoch = snapshot.epoch
        if new is OPEN:
            self._open_until = now + snapshot.remaining
        elif new is CLOSED:
            self._consecutive = snapshot.failures
        self._next_sync = now + self._config.sync_interval
        return done

    def _acquire_shared(self) -> _Permit | None:
        """Admission with a store: a permit, :class:`CircuitOpenError`, or ``None`` (decide locally)."""
        now = self._clock()
        state = self._state
        if now < self._next_sync:
            if state is CLOSED or state is DISABLED or state is METRICS_ONLY:
                return (self._epoch, state)  # the hot path: no round trip
            if (state is OPEN and now < self._open_until) or state is FORCED_OPEN:
                self._reject(state, now)
        snapshot = self._shared("acquire")
        if snapshot is None:
            return None
        with self._lock:
            state = self._state
            permit = (self._epoch, state)
            if snapshot.admitted and state is HALF_OPEN:
                self._in_flight += 1
        if snapshot.admitted:
            return permit
        self._reject(state, self._clock())

    def _reject(self, state: str, now: float) -> NoReturn:
        with self._lock:
            self._n_rejected += 1
            if state is OPEN:
                retry_after = max(0.0, self._open_until - now)
            elif state is HALF_OPEN:
                retry_after = 0.0
            else:
                retry_after = math.inf
        add_event(
            semconv.EVENT_BREAKER_REJECTED,
            {semconv.ATTR_BREAKER_NAME: self._name, semconv.ATTR_BREAKER_STATE: state},
        )
        raise CircuitOpenError(self._name, retry_after, state)

    def _count_locked(self, kind: str, slow: bool) -> None:
        """Count one outcome (the caller holds the lock)."""
        if kind == "ignored":
            self._n_ignored += 1
        elif kind == "success":
            if slow:
                self._n_slow_success += 1
            else:
                self._n_success += 1
        elif slow:
            self._n_slow_failure += 1
        else:
            self._n_failure += 1

    def _record_shared(self, epoch: int, admitted: str, kind: str, slow: bool, now: float) -> bool:
        """Record an outcome through the store; False (nothing done) when the local path must do it."""
        if epoch != self._epoch or admitted is not self._state:
            return False  # an outcome of an older state: counted locally, applied nowhere
        if admitted is HALF_OPEN:
            if kind == "failure" or (slow and self._slow_rate is not None):
                op = "probe_fail"
            elif kind == "success":
                op = "probe_ok"
            else:
                op = "probe_release"
        elif admitted is CLOSED and kind == "failure":
            op = "failure"
        elif admitted is CLOSED and kind == "success" and self._consecutive:
            op = "success"  # the shared count is known to be non-zero: reset it
        else:
            return False  # nothing to share (or a windowed outcome): the local path records it
        shared_epoch = self._shared_epoch
        snapshot = self._shared(op, str(shared_epoch))
        if snapshot is None:
            return False  # Redis down: the local state decides
        trip = False
        with self._lock:
            self._count_locked(kind, slow)
            if admitted is HALF_OPEN and self._in_flight > 0 and self._epoch == epoch:
                self._in_flight -= 1
            if admitted is CLOSED and self._windowed and self._state is CLOSED and kind != "ignored":
                self._window_add(now, kind == "failure", slow)
                trip = self._window_trips()
        if trip:
            self._shared("trip")
        return True

    # sliding window (called with the lock held)
    def _window_add(self, now: float, failed: bool, slow: bool) -> None:
        window = self._window
        if self._config.sliding_window_type == "count":
            if len(window) >= self._window_size:
                old_failed, old_slow = window.popleft()
                self._w_calls -= 1
                self._w_failed -= old_failed
                self._w_slow -= old_slow
            window.append((failed, slow))
        else:
            self._window_expire(now)
            second = math.floor(now)
            if window and window[-1][0] == second:
                bucket = window[-1]
            else:
                bucket = [second, 0, 0, 0]
                window.append(bucket)
            bucket[1] += 1
            bucket[2] += failed
            bucket[3] += slow
        self._w_calls += 1
        self._w_failed += failed
        self._w_slow += slow

    def _window_expire(self, now: float) -> None:
        # A time window holds the calls of the last ``sliding_window_size`` whole seconds.
        window = self._window
        oldest = math.floor(now) - self._window_size + 1
        while window and window[0][0] < oldest:
            _, calls, failed, slow = window.popleft()
            self._w_calls -= calls
            self._w_failed -= failed
            self._w_slow -= slow

    def _window_trips(self) -> bool:
        calls = self._w_calls
        if calls < self._minimum_calls:
            return False
        if self._failure_rate is not None and self._w_failed / calls >= self._failure_rate:
            return True
        return self._slow_rate is not None and self._w_slow / calls >= self._slow_rate

    def _window_clear(self) -> None:
        self._window.clear()
        self._w_calls = self._w_failed = self._w_slow = 0

    # state changes (called with the lock held; return what ``_announce`` must report)
    def _advance_locked(self, now: float) -> list[_Transition]:
        """Time-driven changes: open -> half_open when the timeout ends; a stuck half_open -> open."""
        if self._state is OPEN and now >= self._open_until:
            return self._transition_locked(HALF_OPEN, now)
        if (
            self._state is HALF_OPEN
            and self._config.max_half_open_time is not None
            and now - self._half_open_since >= self._config.max_half_open_time
        ):
            return self._open_locked(now)
        return []

    def _open_locked(self, now: float) -> list[_Transition]:
        self._trips += 1
        config = self._config
        duration = config.timeout * config.timeout_multiplier ** (self._trips - 1)
        if config.max_timeout is not None:
            duration = min(duration, config.max_timeout)
        self._open_until = now + duration
        return self._transition_locked(OPEN, now)

    def _transition_locked(self, new: str, now: float) -> list[_Transition]:
        old = self._state
        self._state = new
        self._epoch += 1
        self._consecutive = 0
        self._in_flight = 0
        self._probe_successes = 0
        if new is HALF_OPEN:
            self._half_open_since = now
        elif new is CLOSED:
            self._window_clear()
            if old is HALF_OPEN:
                self._trips = 0
        self._fast = new is CLOSED and self._can_fast
        key = (old, new)
        self._transitions[key] = self._transitions.get(key, 0) + 1
        return [key]

    def _set_mode(self, new: str) -> None:
        with self._lock:
            old = self._state
            if new is CLOSED:
                self._trips = 0
                self._window_clear()
            if old == new and new is CLOSED:
                self._consecutive = 0
                done: list[_Transition] = []
            else:
                done = [] if old == new else self._transition_locked(new, self._clock())
        self._announce(done)
        if self._store is not None:
            self._shared("set", new)

    def _announce(self, done: list[_Transition]) -> None:
        """Outside the lock: the span event and the listeners of each state change."""
        for old, new in done:
            add_event(
                semconv.EVENT_BREAKER_TRANSITION,
                {
                    semconv.ATTR_BREAKER_NAME: self._name,
                    semconv.ATTR_BREAKER_FROM: old,
                    semconv.ATTR_BREAKER_TO: new,
                },
            )
            for listener in self._listeners:
                try:
                    listener(self, old, new)
                except Exception:
                    level = logging.DEBUG if self._listener_warned else logging.WARNING
                    self._listener_warned = True
                    _log.log(
                        level, "circuit breaker %r: listener %r failed", self._name, listener, exc_info=True
                    )


# --- collection-time readings (the SDK's collection thread, never the hot path) -------------------
def _state_points(breaker: CircuitBreaker) -> list[Point]:
    current = breaker.state
    return [
        (1 if s == current else 0, {semconv.ATTR_BREAKER_NAME: breaker.name, semconv.ATTR_BREAKER_STATE: s})
        for s in STATES
    ]


def _call_points(breaker: CircuitBreaker) -> list[Point]:
    return [
        (n, {semconv.ATTR_BREAKER_NAME: breaker.name, semconv.ATTR_BREAKER_OUTCOME: outcome})
        for outcome, n in breaker.counts().items()
    ]


def _transition_points(breaker: CircuitBreaker) -> list[Point]:
    return [
        (
            n,
            {
                semconv.ATTR_BREAKER_NAME: breaker.name,
                semconv.ATTR_BREAKER_FROM: old,
                semconv.ATTR_BREAKER_TO: new,
            },
        )
        for (old, new), n in breaker.transitions().items()
    ]


_SHARED: SharedInstruments[CircuitBreaker] = SharedInstruments(
    "circuit breaker",
    [
        (semconv.BREAKER_STATE, _state_points),
        (semconv.BREAKER_CALLS, _call_points),
        (semconv.BREAKER_TRANSITIONS, _transition_points),
    ],
)
