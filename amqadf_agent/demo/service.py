"""A small but realistic shop service, instrumented by the agent, for ``amqadf-agent demo``.

Worker threads serve simulated HTTP requests. They read a SQLite database through the real
OpenTelemetry sqlite3 instrumentation (so the db spans are the ones users get), use a cache, and
call a flaky downstream dependency. Problems are planted for the analyzer to find:

* ``GET /customers/{id}/orders`` loads each order's items with its own query: an N+1 over
  ``order_items``, whose ``order_id`` column has no index (each query scans the table).
* ``GET /reports/bought-together`` runs one slow self-join (about 1 s here: twice the analyzer's
  default 500 ms slow-query threshold).
* the ``inventory`` dependency fails about one call in ten and is slow at times; it has three
  replicas behind a ``LoadBalancer``, and one of them goes bad for a while (outlier ejection).
* the ``orders`` cache is smaller than the working set, so it evicts.

An ``AutoScaler`` watches the service every few seconds (CPU, request rate, error rate, p95, queue
depth) and decides how many instances it would run; its decisions are emitted as telemetry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from amqadf_agent import semconv
from amqadf_agent.config.secrets import Secret
from amqadf_agent.errors import CircuitOpenError, RateLimitedError
from amqadf_agent.monitoring.cache import InstrumentedCache, instrument_lru_cache
from amqadf_agent.monitoring.redis_info import RedisCacheMonitor
from amqadf_agent.monitoring.requests import record_request
from amqadf_agent.monitoring.worker_pool import InstrumentedThreadPoolExecutor
from amqadf_agent.profiling.profiler import PerformanceProfiler
from amqadf_agent.resilience import timeout as timeout_mod
from amqadf_agent.resilience.circuit_breaker import OPEN, CircuitBreaker
from amqadf_agent.resilience.fallback import GracefulDegradation
from amqadf_agent.resilience.rate_limit import RateLimiter
from amqadf_agent.resilience.retry import RetryBudget, RetryPolicy
from amqadf_agent.resilience.stores import RedisStore
from amqadf_agent.scaling.autoscaler import AutoScaler, ScalingMetrics
from amqadf_agent.scaling.autoscaler_telemetry import AutoScalerTelemetry
from amqadf_agent.scaling.load_balancer import LoadBalancer

log = logging.getLogger("amqadf_agent.demo.shop")
log.setLevel(logging.INFO)  # the demo's own events (scaling decisions) are exported as log records

CUSTOMERS = 500
ORDERS = 20_000
ITEMS_PER_ORDER = 7
SKUS = 300

#: (route, share of requests); the slow report is scheduled separately.
ROUTES = (
    ("/orders/{id}", 0.55),
    ("/customers/{id}/orders", 0.20),
    ("/products/{sku}/availability", 0.25),
)
REPORT_ROUTE = "/reports/bought-together"
INVENTORY_REPLICAS = ("inventory-1", "inventory-2", "inventory-3")
#: inventory-3 fails most calls during this part of the run (seconds from the start).
BAD_REPLICA, BAD_WINDOW = "inventory-3", (4.0, 14.0)
#: During this part of the run every replica is down: the breaker opens and availability degrades.
OUTAGE_WINDOW = (16.0, 20.0)
#: On a busy machine the few calls of those 4 s may not trip the breaker (it wants 10 calls, 30%
#: failed, in 10 s): the outage then goes on until the breaker has opened once, at most to here.
OUTAGE_LATEST_END = 40.0
#: The report's time limit: it takes ~1 s here; the limit is for a machine in real trouble.
REPORT_TIMEOUT = 3.0
#: How long close() waits for reports that outlasted their timeout.
REPORT_DRAIN_S = 10.0

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total REAL, created_at TEXT);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, sku TEXT, qty INTEGER, price REAL
);
"""


def create_database(path: Path, seed: int = 7) -> None:
    """Seed the shop's data (done once, before instrumentation, so seeding makes no spans)."""
    rnd = random.Random(seed)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(i, f"customer-{i}", rnd.choice("ABC")) for i in range(CUSTOMERS)],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [
                (i, rnd.randrange(CUSTOMERS), round(rnd.random() * 100, 2), f"2026-11-{1 + i % 25:02d}")
                for i in range(ORDERS)
            ],
        )
        conn.executemany(
            "INSERT INTO order_items (order_id, sku, qty, price) VALUES (?, ?, ?, ?)",
            [
                (order, f"sku-{rnd.randrange(SKUS)}", rnd.randrange(1, 5), round(rnd.random() * 20, 2))
                for order in range(ORDERS)
                for _ in range(ITEMS_PER_ORDER)
            ],
        )
        conn.commit()
    finally:
        conn.close()


class DownstreamError(ConnectionError):
    """The inventory service failed."""


@dataclasses.dataclass
class Progress:
    """What the terminal shows; updated by the workers under a lock."""

    requests: int = 0
    errors: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def record(self, seconds: float, failed: bool) -> None:
        with self.lock:
            self.requests += 1
            self.errors += failed
            self.latencies.append(seconds)
            if len(self.latencies) > 2000:
                del self.latencies[:1000]

    def p95(self) -> float:
        with self.lock:
            data = sorted(self.latencies)
        return data[min(len(data) - 1, int(len(data) * 0.95))] if data else 0.0


class ShopService:
    """The service: request handlers, their database, cache and downstream client."""

    def __init__(
        self,
        db_path: Path,
        *,
        workers: int = 4,
        seed: int = 11,
        inventory_key: Secret | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.db_path = db_path
        #: Sent to the inventory service as a bearer token when given; unwrapped only for the call.
        self.inventory_key = inventory_key
        self.rnd = random.Random(seed)
        self.rnd_lock = threading.Lock()
        self.tracer = trace.get_tracer("amqadf_agent.demo")
        meter = _meter()
        db = semconv.DB_CLIENT_OPERATION_DURATION
        self.db_duration: Histogram = meter.create_histogram(
            db.name,
            unit=db.unit,
            description=db.description,
            explicit_bucket_boundaries_advisory=list(db.buckets or ()),
        )
        # No connection pool: each worker thread opens its own sqlite connection, so the workers are
        # the connections (what the analyzer caps the worker pool by).
        connections = semconv.DB_CLIENT_CONNECTION_MAX
        sqlite_pool = [Observation(workers, {semconv.ATTR_DB_CLIENT_CONNECTION_POOL_NAME: "sqlite"})]

        def _connection_max(_options: CallbackOptions) -> list[Observation]:
            return sqlite_pool

        meter.create_observable_up_down_counter(
            connections.name,
            callbacks=[_connection_max],
            unit=connections.unit,
            description=connections.description,
        )
        self.cache: InstrumentedCache[int, dict[str, Any]] = InstrumentedCache(
            "orders", max_size=400, ttl=30.0
        )
        self.cache.instrument()
        self.pool = InstrumentedThreadPoolExecutor(max_workers=workers, name="request-workers")
        instrument_lru_cache(_sku_label, "sku-labels")  # reports the module's lru_cache (no wrapper)
        self.pool.instrument()
        self.progress = Progress()
        self._local = threading.local()
        self.started = time.monotonic()
        self.inventory = LoadBalancer(
            "power_of_two", name="inventory", base_ejection_time=5.0, random=random.Random(seed)
        )
        for replica in INVENTORY_REPLICAS:
            self.inventory.register_worker(replica)
        self.inventory.instrument()
        self.scaler = AutoScaler(
            min_instances=2,
            max_instances=12,
            target_utilization=0.7,
            request_rate_target=8.0,
            response_time_p95_target=0.25,
            error_rate_target=0.05,
        )
        self.scaler_telemetry = AutoScalerTelemetry(self.scaler, "amqadf-demo-shop", tracer=self.tracer)
        self.instances = 2
        # Resilience around the inventory dependency: a retry (a new replica each attempt) inside a
        # breaker; while the breaker is open, availability degrades to "unknown" instead of failing.
        self.inventory_retry = RetryPolicy(
            max_retries=2,
            initial_backoff_time=0.02,
            max_backoff=0.2,
            retryable_exceptions=(DownstreamError,),
            budget=RetryBudget(max_tokens=20, token_ratio=0.2),
            name="inventory",
        )
        self.inventory_retry.instrument()
        # With --redis: the breaker and the rate limiter are shared by every demo process, and
        # availability answers are cached in Redis for two seconds (its INFO becomes cache metrics).
        self.redis: Any = None
        store: RedisStore | None = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)
            store = RedisStore(redis_url)
            self.redis_monitor = RedisCacheMonitor(redis_url, name="redis")
        self.inventory_breaker = CircuitBreaker(
            failure_threshold=None,
            failure_rate=0.3,
            sliding_window_type="time",
            sliding_window_size=10,
            minimum_calls=10,
            timeout=3.0,
            half_open_max_calls=2,
            name="inventory",
            store=store,
        )
        self.inventory_breaker.instrument()
        self._breaker_opened = threading.Event()
        self.inventory_breaker.add_listener(
            lambda _breaker, _from, to: self._breaker_opened.set() if to == OPEN else None
        )
        GracefulDegradation.instrument()
        timeout_mod.instrument()
        # The expensive customer-orders page is rate limited; excess requests get 429.
        self.orders_limiter = RateLimiter(rate=3.0, burst=5, name="customer-orders", store=store)
        self.orders_limiter.instrument()
        # The slow report (one every few seconds) is profiled each time: pyinstrument, as spans.
        # (No time budget: a production service keeps the default, at most ~2% of wall time.)
        self.profiler = PerformanceProfiler(
            sample_rate=1.0, max_overhead=None, random=random.Random(seed), tracer=self.tracer
        )
        self.profiler.instrument()
        # A report that outlasts its timeout goes on in the timeout's thread; close() waits for it, so
        # its query's span and the profile span around it are both exported (or neither).
        self._reports_running = 0
        self._reports_done = threading.Condition()
        self._report = timeout_mod.timeout(REPORT_TIMEOUT, name="bought-together-report")(
            self._counted(self.profiler.sampled(self._report_query))
        )

    def _counted(self, fn: Callable[[], list[tuple[Any, ...]]]) -> Callable[[], list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            with self._reports_done:
                self._reports_running += 1
            try:
                return fn()
            finally:
                with self._reports_done:
                    self._reports_running -= 1
                    self._reports_done.notify_all()

        return run

    # --- infrastructure ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path)  # instrumented: every cursor.execute is a db span
            self._local.conn = conn
        return conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self._db().cursor()
        started = time.perf_counter()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()
            # The sqlite3 instrumentation makes spans only; the metric a dashboard needs is recorded here.
            self.db_duration.record(
                time.perf_counter() - started,
                {
                    semconv.ATTR_DB_SYSTEM_NAME: "sqlite",
                    semconv.ATTR_DB_OPERATION_NAME: sql.split(None, 1)[0],
                },
            )

    def _random(self, fn: Callable[[random.Random], Any]) -> Any:
        with self.rnd_lock:
            return fn(self.rnd)

    # --- handlers ------------------------------------------------------------------------------
    def get_order(self, order_id: int) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            rows = self._query("SELECT id, customer_id, total FROM orders WHERE id = ?", (order_id,))
            items = self._query("SELECT sku, qty, price FROM order_items WHERE order_id = ?", (order_id,))
            return {"order": rows[0] if rows else None, "items": items}

        return self.cache.get_or_set(order_id, load)

    def customer_orders(self, customer_id: int) -> list[dict[str, Any]]:
        orders = self._query(
            "SELECT id, total FROM orders WHERE customer_id = ? ORDER BY id DESC LIMIT 20", (customer_id,)
        )
        # The N+1: one query per order instead of one query for all of them.
        return [
            {
                "id": oid,
                "items": self._query("SELECT sku, qty, price FROM order_items WHERE order_id = ?", (oid,)),
            }
            for oid, _total in orders
        ]

    def availability(self, sku: str) -> dict[str, Any]:
        _sku_label(sku)  # a small in-process lru_cache, instrumented
        if self.redis is not None:
            try:
                if self.redis.get(f"amqadf-demo:stock:{sku}") is not None:
                    return {"sku": sku, "in_stock": True, "cached": True}
            except Exception:
                pass
        answer = self._availability(sku)
        if self.redis is not None and answer.get("in_stock"):
            with contextlib.suppress(Exception):
                self.redis.set(f"amqadf-demo:stock:{sku}", b"1", px=2000)
        return answer

    @GracefulDegradation.with_fallback(
        fallback_function=lambda exc: {"in_stock": None, "degraded": type(exc).__name__},
        exceptions=(CircuitOpenError,),
        name="inventory-availability",
    )
    def _availability(self, sku: str) -> dict[str, Any]:
        return self.inventory_breaker.call(self.inventory_retry.call, self._stock, sku)

    def _stock(self, sku: str) -> dict[str, Any]:
        with (
            self.inventory.acquire() as replica,
            self.tracer.start_as_current_span(
                "GET",
                kind=SpanKind.CLIENT,
                attributes={
                    semconv.ATTR_HTTP_REQUEST_METHOD: "GET",
                    semconv.ATTR_SERVER_ADDRESS: f"{replica}.internal",
                    "url.full": f"http://{replica}.internal/stock/{sku}",
                },
            ) as span,
        ):
            delay = self._random(lambda r: r.lognormvariate(math.log(0.012), 0.6))
            elapsed = time.monotonic() - self.started
            bad = replica == BAD_REPLICA and BAD_WINDOW[0] <= elapsed < BAD_WINDOW[1]
            outage = OUTAGE_WINDOW[0] <= elapsed < OUTAGE_WINDOW[1] or (
                OUTAGE_WINDOW[1] <= elapsed < OUTAGE_LATEST_END and not self._breaker_opened.is_set()
            )
            failed = self._random(lambda r: r.random() < (0.9 if bad or outage else 0.07))
            _send(self._auth_headers())
            time.sleep(min(delay, 0.5))
            if failed:
                span.set_attribute(semconv.ATTR_HTTP_RESPONSE_STATUS_CODE, 503)
                span.set_status(Status(StatusCode.ERROR))
                raise DownstreamError(f"{replica}.internal answered 503 Service Unavailable")
            span.set_attribute(semconv.ATTR_HTTP_RESPONSE_STATUS_CODE, 200)
        return {"sku": sku, "in_stock": True}

    def _auth_headers(self) -> dict[str, str]:
        """The inventory key as a bearer token; no header at all when no key is configured."""
        if not self.inventory_key:
            return {}
        return {"authorization": f"Bearer {self.inventory_key.get_secret_value()}"}

    def report(self) -> list[tuple[Any, ...]]:
        return self._report()

    def _report_query(self) -> list[tuple[Any, ...]]:
        # Pairs of SKUs bought together, per customer tier, with their revenue: ~840 000 joined rows
        # grouped and sorted, about 1 s here (twice the analyzer's 500 ms slow-query threshold).
        return self._query(
            "SELECT a.sku, b.sku, c.tier, COUNT(DISTINCT o.customer_id) AS n, "
            "SUM(b.qty * b.price) AS revenue FROM order_items a "
            "JOIN order_items b ON a.order_id = b.order_id AND a.sku <> b.sku "
            "JOIN orders o ON o.id = a.order_id JOIN customers c ON c.id = o.customer_id "
            "GROUP BY a.sku, b.sku, c.tier ORDER BY n DESC, revenue DESC LIMIT 10"
        )

    # --- the server ----------------------------------------------------------------------------
    def handle(self, route: str, argument: Any) -> int:
        """Serve one request as an HTTP server span; returns the status code."""
        started = time.perf_counter()
        status = 200
        error_type: str | None = None
        with (
            record_request(route, "GET") as request,  # http.server.request.duration, as instrumentations do
            self.tracer.start_as_current_span(
                f"GET {route}",
                kind=SpanKind.SERVER,
                attributes={semconv.ATTR_HTTP_REQUEST_METHOD: "GET", semconv.ATTR_HTTP_ROUTE: route},
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
        ):
            try:
                if route == "/orders/{id}":
                    self.get_order(int(argument))
                elif route == "/customers/{id}/orders":
                    wait = self.orders_limiter.retry_after()  # takes a unit when permitted
                    if wait:
                        raise RateLimitedError("customer-orders", wait)
                    self.customer_orders(int(argument))
                elif route == "/products/{sku}/availability":
                    self.availability(str(argument))
                else:
                    self.report()
            except RateLimitedError:
                status, error_type = 429, "429"
            except timeout_mod.CallTimeoutError as exc:
                status, error_type = 504, "timeout"
                span.record_exception(exc)
            except DownstreamError as exc:
                status, error_type = 503, "503"
                span.record_exception(exc)
                log.warning("%s failed: %s", route, exc)
            except Exception as exc:
                status, error_type = 500, type(exc).__qualname__
                span.record_exception(exc)
            span.set_attribute(semconv.ATTR_HTTP_RESPONSE_STATUS_CODE, status)
            request.status_code = status
            if error_type is not None:
                request.error_type = error_type
                span.set_attribute(semconv.ATTR_ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR))
        self.progress.record(time.perf_counter() - started, status >= 500)
        return status

    def next_request(self) -> tuple[str, Any]:
        def pick(r: random.Random) -> tuple[str, Any]:
            x = r.random()
            route = ROUTES[-1][0]
            for candidate, share in ROUTES:
                if x < share:
                    route = candidate
                    break
                x -= share
            if route == "/orders/{id}":
                # A skewed working set: some orders are hot, most are not.
                return route, min(ORDERS - 1, int(r.paretovariate(1.2) * 40) % ORDERS)
            if route == "/customers/{id}/orders":
                return route, r.randrange(CUSTOMERS)
            return route, f"sku-{r.randrange(SKUS)}"

        return self._random(pick)  # type: ignore[no-any-return]

    def run(
        self,
        duration: float,
        rate: float,
        *,
        on_tick: Callable[[float], None] | None = None,
        report_every: float = 5.0,
        scale_every: float = 3.0,
    ) -> None:
        """Offer ``rate`` requests per second (Poisson arrivals, with bursts) for ``duration`` seconds."""
        start = time.monotonic()
        next_report = start + 1.0
        next_tick = start + 1.0
        next_scale = start + min(scale_every, 1.0)  # a first decision early, then every scale_every
        window = _Window.begin(self.progress)
        pending = []
        while (now := time.monotonic()) - start < duration:
            if now >= next_scale:
                window = self._decide(window)
                next_scale = now + scale_every
            if now >= next_report:
                pending.append(self.pool.submit(self.handle, REPORT_ROUTE, None))
                next_report = now + report_every
            route, argument = self.next_request()
            pending.append(self.pool.submit(self.handle, route, argument))
            # Every 10th second is a burst at three times the rate: the pool's queue fills.
            burst = 3.0 if int(now - start) % 10 == 9 else 1.0
            wait: float = self._random(functools.partial(_interarrival, rate * burst))
            time.sleep(wait)
            if on_tick is not None and now >= next_tick:
                on_tick(now - start)
                next_tick += 1.0
            pending = [f for f in pending if not f.done()]
        for future in pending:
            future.result()

    def _decide(self, window: _Window) -> _Window:
        """One autoscaler evaluation over the last window; the demo 'runs' what it decides."""
        now = _Window.begin(self.progress)
        seconds = max(1e-6, now.at - window.at)
        requests = now.requests - window.requests
        cpu = (now.cpu - window.cpu) / seconds / (os.cpu_count() or 1)
        metrics = ScalingMetrics(
            cpu_utilization=min(1.0, max(0.0, cpu)),
            request_rate=requests / seconds,
            error_rate=(now.errors - window.errors) / requests if requests else None,
            queue_depth=self.pool.stats().queued,
            response_time_p95=self.progress.p95() or None,
        )
        decision = self.scaler.get_scaling_decision(self.instances, metrics)
        self.instances = decision.target_instances
        log.info("autoscaler: %s", decision.reason)
        return now

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._reports_done:  # reports past their timeout, still running (bounded wait)
            self._reports_done.wait_for(lambda: self._reports_running == 0, timeout=REPORT_DRAIN_S)
        self.inventory.stop_health_checks()
        self.scaler_telemetry.close()


@dataclasses.dataclass(frozen=True)
class _Window:
    """Counters at the start of an autoscaler window."""

    at: float
    requests: int
    errors: int
    cpu: float

    @classmethod
    def begin(cls, progress: Progress) -> _Window:
        times = os.times()
        with progress.lock:
            return cls(time.monotonic(), progress.requests, progress.errors, times.user + times.system)


@functools.lru_cache(maxsize=64)
def _sku_label(sku: str) -> str:
    """Display name of a SKU: a pure lookup, cached in-process (300 SKUs, 64 slots: it evicts)."""
    return sku.replace("-", " ").upper()


def _send(headers: dict[str, str]) -> None:
    """Stands in for the HTTP client: the headers go on the wire, never into telemetry."""
    if not headers.get("authorization", "Bearer x").startswith("Bearer "):
        raise DownstreamError("inventory: malformed authorization header")


def _interarrival(rate: float, rnd: random.Random) -> float:
    return rnd.expovariate(rate)


def _meter() -> Any:
    from opentelemetry import metrics

    return metrics.get_meter("amqadf_agent.demo")
