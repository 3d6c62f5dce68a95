"""An in-process load balancer: five strategies, outlier ejection, panic mode and health checks.

Why: a service that calls a set of equivalent workers (replicas, shards, upstream hosts) needs to
spread calls over them and stop sending calls to the ones that fail. The algorithms are the
proven ones (docs/design.md, "Load balancing"):

* ``round_robin``: each healthy worker in turn.
* ``weighted_round_robin``: nginx's *smooth* weighted round robin. Weights {a: 5, b: 1, c: 1}
  give ``a a b a c a a``, never a burst of five ``a``. A failure lowers the worker's effective
  weight by ``weight / consecutive_failures`` (nginx: ``weight / max_fails``); every selection
  round gives each candidate 1 back, up to its weight (nginx's ``effective_weight++``).
* ``least_connections``: the fewest requests in flight per unit of weight (nginx ``least_conn``);
  ties go round robin, so a balancer used without ``acquire()`` still spreads its calls.
* ``ip_hash``: consistent hashing on a ring with ``virtual_nodes`` points per unit of weight.
  Adding a worker to N moves about 1/(N+1) of the keys, where modulo hashing moves N/(N+1).
  Keys and ring points are hashed with BLAKE2b (8 bytes): stable across processes, unlike the
  salted ``hash()``. A worker's ring points are computed once, at registration.
* ``power_of_two``: Envoy's least request. Two distinct healthy workers drawn at random (two calls
  of ``random.random()``), and the one with the higher ``weight / (active + 1) ** bias`` wins
  (with equal weights, as in Envoy, simply the one with fewer requests in flight and no bias);
  a tie goes to the first drawn.

Health (Envoy's outlier detection): ``consecutive_failures`` failures in a row eject a worker for
``base_ejection_time * times ejected``, at most ``max_ejection_time``; no more than
``max_ejection_percent`` of the workers are ejected at once. When fewer than ``panic_threshold``
percent of the workers are healthy, the balancer panics and selects among *all* workers, as Envoy
does, rather than crushing the few healthy ones. Optional active health checks (a callable per
worker) run on ``check_health()`` or on a daemon thread. An ejected worker comes back when its
time is up, checked on the next selection.

Cost (docs/design.md, principle 1): selection reads a precomputed tuple of candidate workers, rebuilt only
when registrations or health change, and takes no lock except for ``weighted_round_robin`` (whose
state is shared); ``acquire()`` and its release take the lock once each to count the request in
flight and its outcome. Per-call facts are plain counters (``itertools.count`` for selections,
ints under the lock for the rest), read by observable instruments at collection time.
OpenTelemetry is imported only by ``instrument()`` and when a worker is ejected.
Measured on the 2-core box with 8 workers (``tests/bench/bench_load_balancer.py``, best of 7):
a bare ``itertools.cycle`` next() 22 ns; ``select_worker()`` round robin 0.14 µs, least
connections 0.15 µs (0.8 µs when it must scan every worker), smooth weighted round robin 0.8 µs,
power of two 0.4 µs, ip_hash 0.9 µs (0.4 µs of it BLAKE2b); a whole ``with acquire(): pass``
1.2-1.9 µs. The ip_hash ring holds every registered worker and is rebuilt only on registration
(~0.6 ms for 8 workers); an ejected or unhealthy worker is skipped on lookup instead.

Why one module of about 800 lines: the five strategies, outlier ejection, panic mode and health
checks all read and rebuild the one precomputed candidate tuple under the balancer's lock; apart,
that tuple and its lock would have to be public. What it reports (the stats snapshots and the
instruments' readings) is in :mod:`amqadf_agent.scaling.balancer_stats`.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import math
import operator
import random as _random
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, get_args

from amqadf_agent import semconv
from amqadf_agent.errors import ConfigError, NoHealthyWorkerError
from amqadf_agent.scaling.balancer_stats import SHARED, LoadBalancerStats, WorkerStats

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "STRATEGIES",
    "Lease",
    "LoadBalancer",
    "LoadBalancerStats",
    "NoHealthyWorkerError",
    "Strategy",
    "WorkerStats",
]

_log = logging.getLogger(__name__)

Strategy = Literal["round_robin", "least_connections", "weighted_round_robin", "ip_hash", "power_of_two"]
#: The strategies ``LoadBalancer`` accepts.
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)

_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_bisect_right = bisect.bisect_right
_load = operator.attrgetter("load")  # requests in flight per unit of weight


def _count_value(counter: itertools.count[int]) -> int:
    """How many times ``next()`` was called on an ``itertools.count()`` (its repr is ``count(n)``)."""
    return int(repr(counter)[6:-1])


def _hash64(data: bytes) -> int:
    return _from_bytes(_blake2b(data, digest_size=8).digest(), "big")


def _key_bytes(key: object) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    return str(key).encode("utf-8", "surrogatepass")


class _Worker:
    """One registered worker. Mutable fields change under the balancer's lock (``picks`` excepted)."""

    __slots__ = (
        "active",
        "candidate",
        "check_ok",
        "checker",
        "consecutive_failures",
        "current_weight",
        "effective_weight",
        "ejected_until",
        "ejections",
        "failures",
        "latency_sum",
        "load",
        "name",
        "picks",
        "registered",
        "ring_points",
        "successes",
        "weight",
    )

    def __init__(self, name: str, weight: float, checker: Callable[[], object] | None) -> None:
        self.name = name
        self.weight = weight
        self.checker = checker
        self.effective_weight = weight
        self.current_weight = 0.0
        self.active = 0
        self.load = 0.0  # active / weight, kept in step with active (least_connections' key)
        # next() on an itertools.count is one C call, atomic under the GIL: selections are counted
        # exactly without a lock.
        self.picks = itertools.count()
        self.successes = 0
        self.failures = 0
        self.latency_sum = 0.0
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until: float | None = None
        self.check_ok = True
        self.candidate = False  # in the balancer's candidates (set by _rebuild)
        self.registered = True
        self.ring_points: tuple[int, ...] = ()


def _ring_points(name: str, weight: float, virtual_nodes: int) -> tuple[int, ...]:
    """The worker's points on the hash ring: ``virtual_nodes`` per unit of weight, at least one."""
    count = max(1, round(virtual_nodes * weight))
    prefix = name.encode("utf-8", "surrogatepass") + b"\x00"
    return tuple(_hash64(prefix + str(i).encode()) for i in range(count))


class Lease:
    """One request in flight on a worker, from ``LoadBalancer.acquire()`` to its release.

    As a context manager it yields the worker's name; leaving the block releases the worker with
    the outcome (an ``Exception`` is a failure and propagates) and the latency measured by the
    balancer's clock. Without ``with``, read ``worker`` and call ``LoadBalancer.release()``.
    """

    __slots__ = ("_balancer", "_failed", "_start", "_worker")

    def __init__(self, balancer: LoadBalancer, worker: _Worker, start: float) -> None:
        self._balancer = balancer
        self._worker = worker
        self._start = start
        self._failed = False

    @property
    def worker(self) -> str:
        """The name of the selected worker."""
        return self._worker.name

    def fail(self) -> None:
        """Count this request as a failure when the block ends, although nothing was raised."""
        self._failed = True

    def __enter__(self) -> str:
        return self._worker.name

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        balancer = self._balancer
        latency = balancer._clock() - self._start
        if exc_type is None:
            success: bool | None = not self._failed
        elif issubclass(exc_type, Exception):
            success = False
        else:
            # KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError: the request was
            # abandoned, not failed by the worker; it leaves the in-flight count with no outcome.
            success = None
        balancer._finish(self._worker, success, latency)

    def __repr__(self) -> str:
        return f"Lease(worker={self._worker.name!r})"


class LoadBalancer:
    """Selects workers by ``strategy``, ejects failing ones and reports what it does as metrics.

    Args:
        strategy: One of ``STRATEGIES``; see the module docstring.
        name: The balancer's name: the ``amqadf.loadbalancer.name`` attribute of its series.
        consecutive_failures: Failures in a row that eject a worker; 0 turns ejection off (and the
            lowering of effective weights on failure).
        base_ejection_time: Seconds of the first ejection; the n-th lasts n times as long.
        max_ejection_time: Cap on one ejection, in seconds.
        max_ejection_percent: At most this percentage of the registered workers is ejected at once.
        panic_threshold: Below this percentage of healthy workers, every worker is a candidate;
            0 turns panic mode off (then no healthy worker raises ``NoHealthyWorkerError``).
        active_request_bias: ``power_of_two`` scores ``weight / (active + 1) ** bias`` when the
            candidates' weights differ.
        virtual_nodes: ``ip_hash`` ring points per unit of weight.
        random: The random generator of ``power_of_two`` (inject a seeded one in tests).
        clock: Seconds, for ejection times and latencies (docs/design.md, principle 5).

    Thread-safe: workers can be registered and deregistered at any time, also while requests
    are in flight on them.
    """

    __slots__ = (
        "__weakref__",
        "_base_ejection_time",
        "_bias",
        "_checks",
        "_clock",
        "_ejected_count",
        "_lock",
        "_max_ejection_percent",
        "_max_ejection_time",
        "_name",
        "_next_return",
        "_panic",
        "_panic_threshold",
        "_pick",
        "_pool",
        "_random",
        "_ring",
        "_rr",
        "_strategy",
        "_threshold",
        "_uniform",
        "_virtual_nodes",
        "_weight_step",
        "_workers",
    )

    def __init__(
        self,
        strategy: Strategy | str = "round_robin",
        *,
        name: str = "default",
        consecutive_failures: int = 5,
        base_ejection_time: float = 30.0,
        max_ejection_time: float = 300.0,
        max_ejection_percent: float = 50.0,
        panic_threshold: float = 50.0,
        active_request_bias: float = 1.0,
        virtual_nodes: int = 160,
        random: _random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(
                "strategy", f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}"
            )
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        _check_int(consecutive_failures, "consecutive_failures", minimum=0)
        _check_number(base_ejection_time, "base_ejection_time", positive=True)
        _check_number(max_ejection_time, "max_ejection_time", positive=True)
        if max_ejection_time < base_ejection_time:
            raise ConfigError(
                "max_ejection_time",
                f"must be >= base_ejection_time ({base_ejection_time!r}), got {max_ejection_time!r}",
            )
        _check_percent(max_ejection_percent, "max_ejection_percent")
        _check_percent(panic_threshold, "panic_threshold")
        _check_number(active_request_bias, "active_request_bias", positive=False)
        _check_int(virtual_nodes, "virtual_nodes", minimum=1)
        if random is not None and not isinstance(random, _random.Random):
            raise ConfigError("random", f"must be a random.Random instance or None, got {random!r}")
        if not callable(clock):
            raise ConfigError("clock", f"must be a callable returning seconds, got {clock!r}")

        self._strategy: str = strategy
        self._name = name
        self._threshold = consecutive_failures
        # Only smooth weighted round robin reads (and restores) effective weights.
        smooth = strategy == "weighted_round_robin"
        self._weight_step = 1.0 / consecutive_failures if consecutive_failures and smooth else 0.0
        self._base_ejection_time = float(base_ejection_time)
        self._max_ejection_time = float(max_ejection_time)
        self._max_ejection_percent = float(max_ejection_percent)
        self._panic_threshold = float(panic_threshold)
        self._bias = float(active_request_bias)
        self._virtual_nodes = virtual_nodes
        self._random: Callable[[], float] = (random if random is not None else _random.Random()).random
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        # Derived state, rebuilt under the lock by _rebuild() and read without it on the hot path.
        self._pool: tuple[_Worker, ...] = ()  # the candidates: healthy workers, or all in panic
        # ip_hash: the ring of all registered workers (sorted points, their owners); rebuilt only
        # when registrations change; a lookup walks past owners that are not candidates.
        self._ring: tuple[list[int], list[_Worker]] = ([], [])
        self._uniform = True  # all candidates have one weight (cheaper comparisons)
        self._panic = False
        self._ejected_count = 0
        self._next_return = math.inf  # earliest end of an ejection
        self._rr = itertools.count()
        self._checks: tuple[threading.Thread, threading.Event] | None = None
        picks: dict[str, Callable[[object], _Worker]] = {
            "round_robin": self._pick_round_robin,
            "least_connections": self._pick_least_connections,
            "weighted_round_robin": self._pick_smooth_weighted,
            "ip_hash": self._pick_hash,
            "power_of_two": self._pick_power_of_two,
        }
        self._pick = picks[strategy]

    # --- configuration --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The balancer's name: the ``amqadf.loadbalancer.name`` attribute of its series."""
        return self._name

    @property
    def strategy(self) -> str:
        """The selection strategy, one of ``STRATEGIES``."""
        return self._strategy

    @property
    def workers(self) -> tuple[str, ...]:
        """Names of the registered workers, in registration order."""
        with self._lock:
            return tuple(self._workers)

    @property
    def healthy_workers(self) -> tuple[str, ...]:
        """Names of the workers neither ejected nor failing their health check."""
        with self._lock:
            self._return_due_locked(self._clock())
            return tuple(w.name for w in self._workers.values() if _is_healthy(w))

    @property
    def panic(self) -> bool:
        """True while too few workers are healthy and every worker is a candidate."""
        return self._panic

    def register_worker(
        self, name: str, weight: float = 1.0, *, health_check: Callable[[], object] | None = None
    ) -> None:
        """Add a worker; it is healthy until a health check or outlier detection says otherwise.

        Args:
            name: Unique among this balancer's workers; what ``select_worker()`` returns.
            weight: Share of the traffic relative to the other workers (> 0).
            health_check: Called by ``check_health()``: a truthy result is healthy; a falsy one
                or an exception is unhealthy.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        _check_number(weight, "weight", positive=True)
        if health_check is not None and not callable(health_check):
            raise ConfigError("health_check", f"must be a callable or None, got {health_check!r}")
        worker = _Worker(name, float(weight), health_check)
        if self._strategy == "ip_hash":  # computed once per worker, outside the lock
            worker.ring_points = _ring_points(name, worker.weight, self._virtual_nodes)
        with self._lock:
            if name in self._workers:
                raise ConfigError("name", f"a worker named {name!r} is already registered")
            self._workers[name] = worker
            self._rebuild(ring=True)

    def deregister_worker(self, name: str) -> bool:
        """Remove a worker; True if it was registered. Requests in flight on it finish normally."""
        with self._lock:
            worker = self._workers.pop(name, None)
            if worker is None:
                return False
            worker.registered = worker.candidate = False
            self._rebuild(ring=True)
        return True

    # --- the hot path -----------------------------------------------------------------------------
    def select_worker(self, key: object = None) -> str:
        """The name of the next worker.

        Args:
            key: For ``ip_hash`` (required there): the client address or any affinity key; str and
                bytes are hashed as they are, anything else as ``str(key)``. Ignored otherwise.

        Raises:
            NoHealthyWorkerError: no worker is registered, or none is healthy and panic mode is off.
        """
        if self._ejected_count and self._clock() >= self._next_return:
            self._return_due()
        return self._pick(key).name

    def acquire(self, key: object = None) -> Lease:
        """Select a worker and count one request in flight on it until the lease is released.

        ``with lb.acquire(key) as worker: ...`` releases on exit: an exception leaving the block
        is a failure (and propagates), otherwise a success; the latency is measured with the
        balancer's clock. Outcomes feed outlier detection. Without ``with``::

            worker = lb.acquire(key).worker
            ...
            lb.release(worker, success=ok, latency=seconds)
        """
        clock = self._clock
        if self._ejected_count and clock() >= self._next_return:
            self._return_due()
        worker = self._pick(key)
        with self._lock:
            active = worker.active = worker.active + 1
            worker.load = active / worker.weight
        return Lease(self, worker, clock())

    def release(self, worker: str, success: bool = True, latency: float | None = None) -> None:
        """End a request acquired on ``worker``: record its outcome and latency (seconds).

        A worker deregistered meanwhile is ignored. After a plain ``select_worker()`` (no
        request counted in flight) this only records the outcome.
        """
        found = self._workers.get(worker)
        if found is not None:
            self._finish(found, bool(success), latency)

    def _finish(self, worker: _Worker, success: bool | None, latency: float | None) -> None:
        """Leave the in-flight count, record the outcome and run outlier detection."""
        ejected: tuple[str, float, int] | None = None
        with self._lock:
            if worker.active > 0:
                active = worker.active = worker.active - 1
                worker.load = active / worker.weight
            if latency is not None:
                worker.latency_sum += latency
            if success:
                worker.successes += 1
                worker.consecutive_failures = 0
            elif success is not None:
                worker.failures += 1
                worker.consecutive_failures += 1
                if self._weight_step:
                    worker.effective_weight = max(
                        0.0, worker.effective_weight - worker.weight * self._weight_step
                    )
                if (
                    self._threshold
                    and worker.consecutive_failures >= self._threshold
                    and worker.ejected_until is None
                    and worker.registered
                ):
                    ejected = self._eject(worker)
        if ejected is not None:
            self._announce_ejection(*ejected)

    # --- strategies (called without the lock, except smooth weighted round robin) -----------------
    def _no_worker(self) -> NoHealthyWorkerError:
        return NoHealthyWorkerError(self._name, len(self._workers))

    def _pick_round_robin(self, key: object) -> _Worker:
        pool = self._pool
        if not pool:
            raise self._no_worker()
        worker = pool[next(self._rr) % len(pool)]
        next(worker.picks)
        return worker

    def _pick_least_connections(self, key: object) -> _Worker:
        pool = self._pool
        n = len(pool)
        if not n:
            raise self._no_worker()
        start = next(self._rr) % n
        worker = pool[start]
        if worker.active:
            # min() keeps the first of equal loads: scanning from a rotating start breaks ties
            # round robin (nginx breaks them by weighted round robin).
            worker = min(pool[start:] + pool[:start], key=_load)
        next(worker.picks)
        return worker

    def _pick_smooth_weighted(self, key: object) -> _Worker:
        # nginx ngx_http_upstream_get_peer(): every candidate's current weight grows by its
        # effective weight; the largest wins (the first of equals) and gives back the total.
        with self._lock:
            pool = self._pool
            if not pool:
                raise self._no_worker()
            best = pool[0]
            best_current = -math.inf
            total = 0.0
            for worker in pool:
                effective = worker.effective_weight
                current = worker.current_weight + effective
                worker.current_weight = current
                total += effective
                if effective < worker.weight:
                    worker.effective_weight = min(worker.weight, effective + 1.0)
                if current > best_current:
                    best = worker
                    best_current = current
            best.current_weight = best_current - total
        next(best.picks)
        return best

    def _pick_hash(self, key: object) -> _Worker:
        if key is None:
            raise ConfigError("key", "the ip_hash strategy needs a key, e.g. the client's address")
        points, owners = self._ring
        if not owners:
            raise self._no_worker()
        i = _bisect_right(points, _hash64(_key_bytes(key)))
        if i == len(owners):
            i = 0
        worker = owners[i]
        if not worker.candidate:
            worker = self._next_candidate(owners, i)
        next(worker.picks)
        return worker

    def _next_candidate(self, owners: list[_Worker], start: int) -> _Worker:
        """The first candidate clockwise from ``start`` (the cold path of an unhealthy owner).

        Skipping the points of a worker that is not a candidate moves its keys, and only its keys,
        as if its points were off the ring.
        """
        n = len(owners)
        for i in range(start + 1, start + n):
            worker = owners[i % n]
            if worker.candidate:
                return worker
        raise self._no_worker()

    def _pick_power_of_two(self, key: object) -> _Worker:
        pool = self._pool
        n = len(pool)
        if n > 1:
            rand = self._random
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a = pool[i]
            b = pool[j]
            if self._uniform:
                worker = b if b.active < a.active else a
            elif self._bias == 1.0:
                worker = b if b.weight * (a.active + 1) > a.weight * (b.active + 1) else a
            else:
                bias = self._bias
                worker = b if b.weight / (b.active + 1) ** bias > a.weight / (a.active + 1) ** bias else a
        elif n:
            worker = pool[0]
        else:
            raise self._no_worker()
        next(worker.picks)
        return worker

    # --- health -----------------------------------------------------------------------------------
    def _rebuild(self, *, ring: bool = False) -> None:
        """Recompute the candidates (and the ring, after a registration change). Lock held."""
        workers = tuple(self._workers.values())
        healthy = tuple(w for w in workers if _is_healthy(w))
        returns = [w.ejected_until for w in workers if w.ejected_until is not None]
        self._ejected_count = len(returns)
        self._next_return = min(returns, default=math.inf)
        panic = (
            bool(workers)
            and self._panic_threshold > 0
            and len(healthy) * 100 < self._panic_threshold * len(workers)
        )
        if panic != self._panic:
            if panic:
                _log.warning(
                    "load balancer %r panics: %d of %d workers healthy (threshold %g%%); "
                    "selecting among all of them",
                    self._name,
                    len(healthy),
                    len(workers),
                    self._panic_threshold,
                )
            else:
                _log.warning("load balancer %r leaves panic mode", self._name)
        self._panic = panic
        pool = workers if panic else healthy
        self._uniform = len({w.weight for w in pool}) <= 1
        for worker in workers:
            worker.candidate = panic or _is_healthy(worker)
        if ring and self._strategy == "ip_hash":
            owner: dict[int, _Worker] = {}
            for worker in workers:
                owner.update(dict.fromkeys(worker.ring_points, worker))
            points = sorted(owner)
            self._ring = (points, [owner[p] for p in points])
        self._pool = pool

    def _eject(self, worker: _Worker) -> tuple[str, float, int] | None:
        """Eject ``worker`` unless that would pass ``max_ejection_percent``. Lock held."""
        now = self._clock()
        self._return_due_locked(now)
        if (self._ejected_count + 1) * 100 > self._max_ejection_percent * len(self._workers):
            return None  # stays a candidate; its next failure tries again
        worker.ejections += 1
        duration = min(self._base_ejection_time * worker.ejections, self._max_ejection_time)
        worker.ejected_until = now + duration
        worker.consecutive_failures = 0
        self._rebuild()
        return worker.name, duration, worker.ejections

    def _return_due(self) -> None:
        with self._lock:
            self._return_due_locked(self._clock())

    def _return_due_locked(self, now: float) -> None:
        """Bring back the workers whose ejection time is up. Lock held."""
        if not self._ejected_count or now < self._next_return:
            return
        for worker in self._workers.values():
            until = worker.ejected_until
            if until is not None and now >= until:
                worker.ejected_until = None
                _log.info("load balancer %r: worker %r is back from ejection", self._name, worker.name)
        self._rebuild()

    def _announce_ejection(self, worker: str, duration: float, ejections: int) -> None:
        """The one place that reports an ejection: a log record and an event on the current span."""
        _log.warning(
            "load balancer %r ejected worker %r for %g s (ejection %d) after %d consecutive failures",
            self._name,
            worker,
            duration,
            ejections,
            self._threshold,
        )
        try:
            from opentelemetry import trace

            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(
                    semconv.EVENT_WORKER_EJECTED,
                    {semconv.ATTR_LB_NAME: self._name, semconv.ATTR_LB_WORKER: worker},
                )
        except Exception:  # telemetry never raises into the caller (docs/design.md, principle 2)
            _log.debug("cannot add the ejection event to the current span", exc_info=True)

    def check_health(self) -> dict[str, bool]:
        """Run every worker's health check now; the result of each, by worker name.

        The checks run one after another, outside the lock; a check that raises is a failure.
        A worker failing its check receives no traffic (unless in panic) until a check passes.
        """
        with self._lock:
            targets = [(w, w.checker) for w in self._workers.values() if w.checker is not None]
        outcomes: list[tuple[_Worker, bool, BaseException | None]] = []
        for worker, checker in targets:
            error: BaseException | None = None
            try:
                ok = bool(checker())
            except Exception as exc:
                ok, error = False, exc
            outcomes.append((worker, ok, error))
        with self._lock:
            changed = False
            for worker, ok, error in outcomes:
                if worker.registered and worker.check_ok != ok:
                    worker.check_ok = ok
                    changed = True
                    if ok:
                        _log.info(
                            "load balancer %r: worker %r passes its health check", self._name, worker.name
                        )
                    else:
                        _log.warning(
                            "load balancer %r: worker %r fails its health check%s",
                            self._name,
                            worker.name,
                            f" ({type(error).__name__}: {error})" if error is not None else "",
                        )
            if changed:
                self._rebuild()
        return {worker.name: ok for worker, ok, _ in outcomes}

    def start_health_checks(self, interval: float) -> None:
        """Run ``check_health()`` now and then every ``interval`` seconds on a daemon thread.

        Restarts the thread if one is running. The thread holds the balancer weakly: it ends when
        ``stop_health_checks()`` is called or the balancer is garbage-collected.
        """
        _check_number(interval, "interval", positive=True)
        stop = threading.Event()
        thread = threading.Thread(
            target=_health_loop,
            args=(weakref.ref(self), float(interval), stop),
            name=f"amqadf-lb-health-{self._name}",
            daemon=True,
        )
        with self._lock:
            previous, self._checks = self._checks, (thread, stop)
        if previous is not None:
            previous[1].set()
        thread.start()

    def stop_health_checks(self, timeout: float | None = 5.0) -> None:
        """Stop the health-check thread, if any, and wait up to ``timeout`` seconds for it."""
        with self._lock:
            checks, self._checks = self._checks, None
        if checks is None:
            return
        thread, stop = checks
        stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)

    # --- observation ------------------------------------------------------------------------------
    def stats(self) -> LoadBalancerStats:
        """A consistent snapshot of every worker's counters and health; the instruments read this."""
        with self._lock:
            self._return_due_locked(self._clock())
            workers = tuple(
                WorkerStats(
                    name=w.name,
                    weight=w.weight,
                    effective_weight=w.effective_weight,
                    active=w.active,
                    selections=_count_value(w.picks),
                    successes=w.successes,
                    failures=w.failures,
                    latency_sum=w.latency_sum,
                    consecutive_failures=w.consecutive_failures,
                    ejections=w.ejections,
                    ejected_until=w.ejected_until,
                    health_check_ok=w.check_ok,
                )
                for w in self._workers.values()
            )
            panic = self._panic
        return LoadBalancerStats(name=self._name, strategy=self._strategy, panic=panic, workers=workers)

    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report this balancer through the contract's ``amqadf.loadbalancer.*`` instruments.

        Default: the global provider (a proxy until the SDK is set, which then forwards). All
        balancers on one provider share one instrument set that holds them weakly, so this is
        idempotent and never keeps a balancer alive. A failure is logged, never raised.
        """
        SHARED.report(self, meter_provider, _log, f"load balancer {self._name!r}")

    def __repr__(self) -> str:
        return (
            f"LoadBalancer(name={self._name!r}, strategy={self._strategy!r}, "
            f"workers={len(self._workers)}, candidates={len(self._pool)}, panic={self._panic})"
        )


def _is_healthy(worker: _Worker) -> bool:
    return worker.ejected_until is None and worker.check_ok


def _health_loop(ref: weakref.ref[LoadBalancer], interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        balancer = ref()
        if balancer is None:
            return
        try:
            balancer.check_health()
        except Exception:  # pragma: no cover - check_health() already contains the checkers' errors
            _log.warning("load balancer %r: health checks failed", balancer.name, exc_info=True)
        del balancer  # hold the balancer only while checking
        stop.wait(interval)


# --- parameter checks -------------------------------------------------------------------------------
def _check_number(value: object, parameter: str, *, positive: bool) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value <= 0 if positive else value < 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(parameter, f"must be a finite number {bound}, got {value!r}")


def _check_int(value: object, parameter: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(parameter, f"must be an integer >= {minimum}, got {value!r}")


def _check_percent(value: object, parameter: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise ConfigError(parameter, f"must be a percentage from 0 to 100, got {value!r}")
