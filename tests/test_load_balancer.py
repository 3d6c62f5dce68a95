"""LoadBalancer: exact strategy behaviour, outlier ejection and panic with a fake clock, health checks,
thread safety, parameter checks, and the exported metrics and span event."""

from __future__ import annotations

import collections
import gc
import hashlib
import itertools
import logging
import os
import random
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.clock import FakeClock
from support.metrics import collect, points

from amqadf_agent import semconv
from amqadf_agent.errors import AmqadfError, ConfigError
from amqadf_agent.scaling.load_balancer import (
    STRATEGIES,
    LoadBalancer,
    NoHealthyWorkerError,
    WorkerStats,
)


def make(strategy: str = "round_robin", workers: Any = 4, **kwargs: Any) -> LoadBalancer:
    """A balancer with ``workers`` (a count, or a name -> weight mapping) registered in order."""
    lb = LoadBalancer(strategy, **kwargs)
    named = {f"w{i}": 1.0 for i in range(workers)} if isinstance(workers, int) else workers
    for name, weight in named.items():
        lb.register_worker(name, weight=weight)
    return lb


def fail(lb: LoadBalancer, worker: str, times: int = 1) -> None:
    for _ in range(times):
        lb.release(worker, success=False)


def selected(lb: LoadBalancer, calls: int, key: object = None) -> list[str]:
    return [lb.select_worker(key) for _ in range(calls)]


def ejected(lb: LoadBalancer) -> set[str]:
    return {w.name for w in lb.stats().workers if w.ejected_until is not None}


def ring_owner(lb: LoadBalancer, keys: list[str]) -> dict[str, str]:
    return {key: lb.select_worker(key) for key in keys}


KEYS = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(20_000)]


# --- round robin and smooth weighted round robin --------------------------------------------------
def test_round_robin_takes_each_worker_in_turn() -> None:
    lb = make("round_robin", 3)
    assert selected(lb, 7) == ["w0", "w1", "w2", "w0", "w1", "w2", "w0"]
    assert [w.selections for w in lb.stats().workers] == [3, 2, 2]


def test_smooth_weighted_round_robin_follows_nginx_order() -> None:
    # GIVEN nginx's example weights WHEN selecting THEN a a b a c a a, period after period:
    # smooth, never five a's in a row as a naive weighted round robin would give.
    lb = make("weighted_round_robin", {"a": 5, "b": 1, "c": 1})
    assert "".join(selected(lb, 14)) == "aabacaa" * 2


@pytest.mark.parametrize(
    "weights",
    [{"a": 5, "b": 3, "c": 2, "d": 1}, {"a": 2.5, "b": 1.5, "c": 1.0}, {"a": 1, "b": 1}],
)
def test_smooth_weighted_distribution_is_within_1_percent_of_the_weights(weights: dict[str, float]) -> None:
    lb = make("weighted_round_robin", weights)
    counts = collections.Counter(selected(lb, 100_000))
    total = sum(weights.values())
    for name, weight in weights.items():
        expected = 100_000 * weight / total
        assert abs(counts[name] - expected) <= 0.01 * expected, (name, counts[name], expected)


def test_effective_weight_drops_on_failure_and_recovers_by_one_per_round() -> None:
    # nginx: a failure takes weight/max_fails off the effective weight; every selection round
    # gives each candidate 1 back, up to its weight.
    lb = make("weighted_round_robin", {"a": 10, "b": 10}, consecutive_failures=5)
    fail(lb, "a", 3)  # 3 < 5: not ejected, but 3 * 10/5 off
    assert lb.stats().worker("a").effective_weight == 4.0
    assert lb.stats().worker("b").effective_weight == 10.0
    picks = selected(lb, 6)
    # While a recovers (4, 5, … 9 in the six rounds), b gets most of the traffic.
    assert picks.count("b") > picks.count("a")
    assert lb.stats().worker("a").effective_weight == 10.0
    # A success resets the run of failures but not the effective weight (nginx too).
    lb.release("a", success=True)
    fail(lb, "a", 4)
    lb.release("a", success=True)
    assert lb.stats().worker("a").effective_weight == 2.0
    fail(lb, "a", 4)
    assert ejected(lb) == set()
    assert lb.stats().worker("a").effective_weight == 0.0  # floored at 0
    lb.select_worker()
    assert lb.stats().worker("a").effective_weight == 1.0


def test_other_strategies_keep_the_configured_weight() -> None:
    lb = make("round_robin", {"a": 3})
    fail(lb, "a", 2)
    assert lb.stats().worker("a").effective_weight == 3.0


# --- least connections ------------------------------------------------------------------------------
def test_least_connections_picks_the_fewest_in_flight() -> None:
    lb = make("least_connections", 3)
    held = [lb.acquire() for _ in range(3)]  # one each (ties go round robin)
    assert sorted(lease.worker for lease in held) == ["w0", "w1", "w2"]
    held.append(lb.acquire())
    held.append(lb.acquire())
    in_flight = {w.name: w.active for w in lb.stats().workers}
    assert sorted(in_flight.values()) == [1, 2, 2]
    least = min(in_flight, key=in_flight.__getitem__)
    assert selected(lb, 5) == [least] * 5
    for lease in held:
        with lease:
            pass
    assert [w.active for w in lb.stats().workers] == [0, 0, 0]


def test_least_connections_divides_by_weight() -> None:
    lb = make("least_connections", {"big": 4, "small": 1})
    leases = [lb.acquire() for _ in range(5)]
    # Loads active/weight stay balanced: big takes 4 requests for small's 1.
    assert collections.Counter(lease.worker for lease in leases) == {"big": 4, "small": 1}


def test_least_connections_breaks_ties_round_robin_without_acquire() -> None:
    lb = make("least_connections", 3)
    assert collections.Counter(selected(lb, 300)) == {"w0": 100, "w1": 100, "w2": 100}


# --- power of two choices ---------------------------------------------------------------------------
def predict_power_of_two(replica: random.Random, workers: tuple[WorkerStats, ...], bias: float) -> str:
    """The documented rule: two distinct indexes from two random() calls; higher score wins."""
    n = len(workers)
    i = int(replica.random() * n)
    j = int(replica.random() * (n - 1))
    j += j >= i
    a, b = workers[i], workers[j]
    if len({w.weight for w in workers}) == 1:
        return b.name if b.active < a.active else a.name
    score_a = a.weight / (a.active + 1) ** bias
    score_b = b.weight / (b.active + 1) ** bias
    return b.name if score_b > score_a else a.name


@pytest.mark.parametrize(
    ("weights", "bias"),
    [
        ({"w0": 1, "w1": 1, "w2": 1, "w3": 1, "w4": 1}, 1.0),
        ({"w0": 1, "w1": 2, "w2": 3, "w3": 4}, 1.0),
        ({"w0": 1, "w1": 2, "w2": 3, "w3": 4}, 0.5),
        ({"w0": 1, "w1": 2, "w2": 3, "w3": 4}, 2.0),
    ],
)
def test_power_of_two_is_exact_with_a_seeded_random(weights: dict[str, float], bias: float) -> None:
    rng = random.Random(7)
    lb = make("power_of_two", weights, random=rng, active_request_bias=bias)
    replica = random.Random(7)
    leases = []
    for _ in range(60):  # each acquire changes the loads the next choice sees
        expected = predict_power_of_two(replica, lb.stats().workers, bias)
        lease = lb.acquire()
        assert lease.worker == expected
        leases.append(lease)
    for _ in range(200):
        expected = predict_power_of_two(replica, lb.stats().workers, bias)
        assert lb.select_worker() == expected


def test_power_of_two_never_picks_the_most_loaded_worker() -> None:
    lb = make("power_of_two", 4, random=random.Random(3))
    leases = [lb.acquire() for _ in range(12)]
    with lb.acquire():
        pass
    most = max(lb.stats().workers, key=lambda w: w.active)
    assert sum(w.active == most.active for w in lb.stats().workers) == 1
    assert most.name not in selected(lb, 500)
    del leases


def test_power_of_two_is_reproducible_and_uses_every_worker() -> None:
    first = selected(make("power_of_two", 8, random=random.Random(11)), 2000)
    second = selected(make("power_of_two", 8, random=random.Random(11)), 2000)
    assert first == second
    assert set(first) == {f"w{i}" for i in range(8)}


# --- consistent hashing -----------------------------------------------------------------------------
def test_ip_hash_maps_a_key_to_the_same_worker() -> None:
    lb = make("ip_hash", 5)
    assert len(set(selected(lb, 50, key="192.168.0.7"))) == 1
    assert lb.select_worker(b"192.168.0.7") == lb.select_worker("192.168.0.7")
    assert lb.select_worker(42) == lb.select_worker("42")


def test_adding_a_worker_remaps_about_one_in_n_plus_one_keys_unlike_modulo_hashing() -> None:
    n = 9
    lb = make("ip_hash", n)
    before = ring_owner(lb, KEYS)
    lb.register_worker("w9")
    after = ring_owner(lb, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    fraction = len(moved) / len(KEYS)
    assert 0.5 / (n + 1) < fraction < 1.5 / (n + 1), fraction
    assert {after[k] for k in moved} == {"w9"}  # keys move only to the new worker

    # Contrast: modulo hashing with the same stable hash moves about n/(n+1) of the keys.
    def bucket(key: str, buckets: int) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % buckets

    modulo = sum(bucket(k, n) != bucket(k, n + 1) for k in KEYS) / len(KEYS)
    assert modulo > 0.8 * n / (n + 1), modulo


def test_removing_or_ejecting_a_worker_moves_only_its_keys() -> None:
    lb = make("ip_hash", 6, consecutive_failures=1)
    keys = KEYS[:5000]
    before = ring_owner(lb, keys)
    fail(lb, "w2")
    assert ejected(lb) == {"w2"}
    during = ring_owner(lb, keys)
    assert all(during[k] == before[k] for k in keys if before[k] != "w2")
    assert "w2" not in during.values()
    # Its keys spread over the others (virtual nodes), not all onto its neighbour.
    assert len({during[k] for k in keys if before[k] == "w2"}) >= 4
    lb.deregister_worker("w2")
    assert ring_owner(lb, keys) == during


def test_ip_hash_shares_follow_the_weights() -> None:
    lb = make("ip_hash", {"a": 1, "b": 2, "c": 1})
    counts = collections.Counter(ring_owner(lb, KEYS).values())
    assert counts["b"] / len(KEYS) == pytest.approx(0.5, abs=0.05)
    assert counts["a"] / len(KEYS) == pytest.approx(0.25, abs=0.05)


def test_ip_hash_is_stable_across_processes() -> None:
    # hash() is salted per process (PYTHONHASHSEED); the ring must not be.
    code = (
        "from amqadf_agent.scaling.load_balancer import LoadBalancer\n"
        "lb = LoadBalancer('ip_hash')\n"
        "for i in range(5): lb.register_worker(f'w{i}')\n"
        "print(','.join(lb.select_worker(f'10.0.0.{i}') for i in range(200)))\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(result.stdout.strip())
    lb = make("ip_hash", 5)
    outputs.add(",".join(lb.select_worker(f"10.0.0.{i}") for i in range(200)))
    assert len(outputs) == 1


def test_ip_hash_needs_a_key() -> None:
    lb = make("ip_hash", 2)
    with pytest.raises(ConfigError) as info:
        lb.select_worker()
    assert info.value.setting == "key"


# --- outlier ejection, panic mode -------------------------------------------------------------------
def test_ejection_after_consecutive_failures_and_return_after_base_time() -> None:
    clock = FakeClock()
    lb = make(consecutive_failures=3, base_ejection_time=10, max_ejection_time=25, clock=clock)
    fail(lb, "w0", 2)
    assert ejected(lb) == set()
    fail(lb, "w0")
    assert ejected(lb) == {"w0"}
    stats = lb.stats().worker("w0")
    assert (stats.ejected_until, stats.ejections, stats.consecutive_failures) == (1010.0, 1, 0)
    assert "w0" not in selected(lb, 30)
    assert lb.healthy_workers == ("w1", "w2", "w3")

    clock.advance(9.999)
    assert "w0" not in selected(lb, 30)
    clock.advance(0.001)  # 10 s: back, noticed by the next selection
    assert "w0" in selected(lb, 4)
    assert ejected(lb) == set()

    # Second ejection: 2 * base; third: 3 * base capped at max_ejection_time.
    for times_ejected, duration in ((2, 20.0), (3, 25.0)):
        fail(lb, "w0", 3)
        stats = lb.stats().worker("w0")
        assert (stats.ejections, stats.ejected_until) == (times_ejected, clock.now + duration)
        clock.advance(duration - 0.001)
        assert "w0" not in selected(lb, 30)
        clock.advance(0.001)
        assert "w0" in selected(lb, 4)


def test_a_success_resets_the_run_of_failures() -> None:
    lb = make(consecutive_failures=3)
    fail(lb, "w1", 2)
    lb.release("w1", success=True)
    fail(lb, "w1", 2)
    assert ejected(lb) == set()
    fail(lb, "w1")
    assert ejected(lb) == {"w1"}


def test_max_ejection_percent_is_respected() -> None:
    clock = FakeClock()
    lb = make(consecutive_failures=1, base_ejection_time=30, clock=clock)  # default max 50%
    fail(lb, "w0")
    fail(lb, "w1")
    fail(lb, "w2")  # a third of four would be 75%: w2 stays a candidate
    assert ejected(lb) == {"w0", "w1"}
    assert lb.stats().worker("w2").consecutive_failures == 1
    assert set(selected(lb, 10)) == {"w2", "w3"}
    clock.advance(30)  # w0 and w1 come back, so w2's next failure ejects it
    fail(lb, "w2")
    assert ejected(lb) == {"w2"}


def test_a_single_worker_is_never_ejected_by_default() -> None:
    lb = make(workers=1, consecutive_failures=1)
    fail(lb, "w0", 10)
    assert ejected(lb) == set()
    assert lb.select_worker() == "w0"


def test_panic_mode_selects_among_all_workers_when_too_few_are_healthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    lb = make(consecutive_failures=1, max_ejection_percent=100, base_ejection_time=5, clock=clock)
    fail(lb, "w0")
    fail(lb, "w1")
    # 2 of 4 healthy is 50%, not below the 50% threshold: no panic.
    assert not lb.panic
    assert set(selected(lb, 8)) == {"w2", "w3"}
    with caplog.at_level(logging.WARNING, logger="amqadf_agent.scaling.load_balancer"):
        fail(lb, "w2")
    assert lb.panic and lb.stats().panic
    assert "panics" in caplog.text
    assert collections.Counter(selected(lb, 40)) == {"w0": 10, "w1": 10, "w2": 10, "w3": 10}
    clock.advance(5)
    assert set(selected(lb, 8)) == {"w0", "w1", "w2", "w3"}
    assert not lb.panic


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_healthy_worker_raises_when_panic_mode_is_off(strategy: str) -> None:
    lb = make(strategy, 2, consecutive_failures=1, max_ejection_percent=100, panic_threshold=0)
    fail(lb, "w0")
    assert set(selected(lb, 20, key="k")) == {"w1"}
    fail(lb, "w1")
    with pytest.raises(NoHealthyWorkerError, match="panic mode is off") as info:
        lb.select_worker("k")
    assert isinstance(info.value, AmqadfError)
    assert info.value.registered == 2
    with pytest.raises(NoHealthyWorkerError):
        lb.acquire("k")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_uses_all_workers_in_panic(strategy: str) -> None:
    lb = make(strategy, 3, consecutive_failures=1, max_ejection_percent=100, random=random.Random(5))
    for name in ("w0", "w1", "w2"):
        fail(lb, name)
    assert lb.panic
    picks = ring_owner(lb, KEYS[:300]).values() if strategy == "ip_hash" else selected(lb, 300)
    assert set(picks) == {"w0", "w1", "w2"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_worker_raises_for_every_strategy(strategy: str) -> None:
    lb = LoadBalancer(strategy, name="empty")
    with pytest.raises(NoHealthyWorkerError, match="'empty' has no worker registered"):
        lb.select_worker("k")
    lb.register_worker("only")
    assert lb.select_worker("k") == "only"
    lb.deregister_worker("only")
    with pytest.raises(NoHealthyWorkerError):
        lb.acquire("k")


# --- active health checks ---------------------------------------------------------------------------
class FakeChecker:
    """A health check whose answer the test sets; counts its calls."""

    def __init__(self, result: object = True) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_check_health_takes_failing_workers_out_and_back() -> None:
    lb = LoadBalancer("round_robin")
    a, b = FakeChecker(), FakeChecker()
    lb.register_worker("a", health_check=a)
    lb.register_worker("b", health_check=b)
    lb.register_worker("c")  # no check: always healthy
    assert lb.check_health() == {"a": True, "b": True}

    a.result = False
    b.result = ConnectionError("refused")  # a check that raises is a failure
    assert lb.check_health() == {"a": False, "b": False}
    assert lb.stats().worker("a").health_check_ok is False
    # 1 of 3 healthy is below the 50% panic threshold: all three stay candidates.
    assert lb.panic
    b.result = 1  # truthy
    assert lb.check_health() == {"a": False, "b": True}
    assert not lb.panic
    assert set(selected(lb, 6)) == {"b", "c"}
    a.result = True
    lb.check_health()
    assert set(selected(lb, 6)) == {"a", "b", "c"}
    assert (a.calls, b.calls) == (4, 4)


def test_health_checks_run_on_a_daemon_thread_until_stopped() -> None:
    lb = LoadBalancer("round_robin", name="bg")
    called = threading.Event()
    calls = itertools.count()

    def check() -> bool:
        if next(calls) >= 2:
            called.set()
        return False

    lb.register_worker("a", health_check=check)
    lb.register_worker("b")
    lb.start_health_checks(0.01)
    try:
        assert called.wait(5.0)
        threads = [t for t in threading.enumerate() if t.name == "amqadf-lb-health-bg"]
        assert len(threads) == 1 and threads[0].daemon
        assert lb.healthy_workers == ("b",)
    finally:
        lb.stop_health_checks()
    assert not threads[0].is_alive()
    count = next(calls)
    time.sleep(0.05)
    assert next(calls) == count + 1  # no call since the stop
    with pytest.raises(ConfigError) as info:
        lb.start_health_checks(0)
    assert info.value.setting == "interval"


def test_the_health_check_thread_does_not_keep_the_balancer_alive() -> None:
    lb = LoadBalancer("round_robin", name="gone")
    lb.register_worker("a", health_check=lambda: True)
    lb.start_health_checks(0.01)
    ref = weakref.ref(lb)
    del lb
    gc.collect()
    deadline = time.monotonic() + 5
    while ref() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
        gc.collect()
    assert ref() is None
    while any(t.name == "amqadf-lb-health-gone" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


# --- acquire / release -----------------------------------------------------------------------------
def test_acquire_counts_in_flight_and_records_outcome_and_latency() -> None:
    clock = FakeClock()
    lb = make("round_robin", 2, clock=clock)
    with lb.acquire() as worker:
        assert worker == "w0"
        assert lb.stats().worker("w0").active == 1
        clock.advance(0.25)
    with pytest.raises(ValueError, match="boom"), lb.acquire() as worker:
        assert worker == "w1"
        clock.advance(0.5)
        raise ValueError("boom")
    lease = lb.acquire()
    with lease:
        lease.fail()  # a failure without an exception (say, a 503 answer)
    w0, w1 = lb.stats().workers
    assert (w0.active, w0.successes, w0.failures, w0.latency_sum, w0.selections) == (0, 1, 1, 0.25, 2)
    assert (w1.active, w1.successes, w1.failures, w1.latency_sum, w1.selections) == (0, 0, 1, 0.5, 1)


def test_an_abandoned_request_leaves_the_count_without_an_outcome() -> None:
    lb = make("round_robin", 1)
    with pytest.raises(KeyboardInterrupt), lb.acquire():
        raise KeyboardInterrupt
    w = lb.stats().worker("w0")
    assert (w.active, w.successes, w.failures) == (0, 0, 0)


def test_release_without_with() -> None:
    lb = make("least_connections", 2)
    worker = lb.acquire().worker
    assert lb.stats().worker(worker).active == 1
    lb.release(worker, success=False, latency=0.125)
    w = lb.stats().worker(worker)
    assert (w.active, w.failures, w.latency_sum) == (0, 1, 0.125)
    lb.release(worker)  # not in flight: outcome recorded, count stays at zero
    assert (lb.stats().worker(worker).active, lb.stats().worker(worker).successes) == (0, 1)
    lb.release("unknown")  # ignored


def test_deregister_while_in_flight() -> None:
    lb = make("round_robin", 3, consecutive_failures=1)
    lease = lb.acquire()
    assert lease.worker == "w0"
    assert lb.deregister_worker("w0") is True
    assert lb.deregister_worker("w0") is False
    assert lb.workers == ("w1", "w2")
    assert "w0" not in selected(lb, 10)
    with pytest.raises(OSError), lease:  # finishing on a removed worker neither raises nor ejects
        raise OSError("connection reset")
    assert ejected(lb) == set()
    assert [w.name for w in lb.stats().workers] == ["w1", "w2"]
    lb.register_worker("w0")  # the name is free again; a new worker with fresh counters
    assert lb.stats().worker("w0").failures == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_8_threads_acquiring_concurrently_keep_exact_totals(strategy: str) -> None:
    lb = make(strategy, 4, consecutive_failures=3, clock=FakeClock())
    per_thread = 1500
    barrier = threading.Barrier(9)
    seen: list[collections.Counter[tuple[str, str]]] = []
    errors: list[BaseException] = []

    def client(index: int) -> None:
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        barrier.wait()
        try:
            for i in range(per_thread):
                key = f"10.0.{index}.{i % 50}"
                if i % 5 == 0:
                    counts[lb.select_worker(key), "selected"] += 1
                try:
                    with lb.acquire(key) as worker:
                        counts[worker, "selected"] += 1
                        if i % 4 == 0:
                            counts[worker, "failure"] += 1
                            raise RuntimeError("flaky")
                        counts[worker, "success"] += 1
                except RuntimeError:
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        seen.append(counts)

    def churn() -> None:  # registrations at any time: a worker comes and goes
        barrier.wait()
        for _ in range(200):
            lb.register_worker("extra", weight=2)
            lb.deregister_worker("extra")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=churn))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    total: collections.Counter[tuple[str, str]] = sum(seen, collections.Counter())
    stats = lb.stats()
    assert lb.workers == ("w0", "w1", "w2", "w3")
    for w in stats.workers:
        assert w.active == 0
        assert w.selections == total[w.name, "selected"]
        assert (w.successes, w.failures) == (total[w.name, "success"], total[w.name, "failure"])
    # Every call is accounted for: on the four workers, or on "extra" while it was registered.
    calls = 8 * per_thread
    assert sum(n for (name, what), n in total.items() if what == "success") == calls - calls // 4
    assert sum(n for (name, what), n in total.items() if what == "selected") == calls + calls // 5


# --- bad parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"strategy": "random"}, "strategy"),
        ({"name": ""}, "name"),
        ({"consecutive_failures": -1}, "consecutive_failures"),
        ({"consecutive_failures": 2.5}, "consecutive_failures"),
        ({"base_ejection_time": 0}, "base_ejection_time"),
        ({"base_ejection_time": float("nan")}, "base_ejection_time"),
        ({"max_ejection_time": -1}, "max_ejection_time"),
        ({"base_ejection_time": 60, "max_ejection_time": 30}, "max_ejection_time"),
        ({"max_ejection_percent": 101}, "max_ejection_percent"),
        ({"max_ejection_percent": -5}, "max_ejection_percent"),
        ({"panic_threshold": 150}, "panic_threshold"),
        ({"panic_threshold": True}, "panic_threshold"),
        ({"active_request_bias": -1}, "active_request_bias"),
        ({"virtual_nodes": 0}, "virtual_nodes"),
        ({"random": 42}, "random"),
        ({"clock": 3.0}, "clock"),
    ],
)
def test_bad_parameters_raise_config_error_naming_the_parameter(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoadBalancer(**kwargs)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="least_conn") as info:
        LoadBalancer("least_conn")
    for strategy in STRATEGIES:
        assert strategy in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "setting"),
    [
        (("w", 0), {}, "weight"),
        (("w", -1.5), {}, "weight"),
        (("w", float("inf")), {}, "weight"),
        (("w", True), {}, "weight"),
        (("w", "2"), {}, "weight"),
        (("",), {}, "name"),
        (("dup",), {}, "name"),
        (("w",), {"health_check": "http://w/health"}, "health_check"),
    ],
)
def test_bad_workers_raise_config_error_naming_the_parameter(
    args: tuple[Any, ...], kwargs: dict[str, Any], setting: str
) -> None:
    lb = LoadBalancer()
    lb.register_worker("dup")
    with pytest.raises(ConfigError) as info:
        lb.register_worker(*args, **kwargs)
    assert info.value.setting == setting
    assert lb.workers == ("dup",)


# --- telemetry --------------------------------------------------------------------------------------


def lb_attrs(balancer: str, worker: str, **extra: str) -> frozenset[tuple[str, Any]]:
    return frozenset({semconv.ATTR_LB_NAME: balancer, semconv.ATTR_LB_WORKER: worker, **extra}.items())


def test_metrics_carry_contract_names_units_and_attributes(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    lb = make("round_robin", 2, name="api", consecutive_failures=2)
    lb.instrument(provider)
    with lb.acquire():  # w0, success
        pass
    held = lb.acquire()  # w1, in flight
    lb.select_worker()  # w0
    fail(lb, "w0", 2)  # ejected (1 of 2 workers is the 50% maximum)

    metrics = collect(reader)
    contract = [inst for inst in semconv.INSTRUMENTS if inst.name.startswith("amqadf.loadbalancer.")]
    assert {inst.name for inst in contract} == {
        semconv.LB_SELECTIONS.name,
        semconv.LB_REQUESTS.name,
        semconv.LB_ACTIVE_REQUESTS.name,
        semconv.LB_WORKER_HEALTHY.name,
        semconv.LB_EJECTIONS.name,
    }
    for inst in contract:
        metric = metrics[inst.name]
        assert (metric.unit, metric.description) == (inst.unit, inst.description)
        for attrs in points(metric):
            assert {key for key, _ in attrs} == set(inst.attributes)

    outcome = semconv.ATTR_TASK_OUTCOME
    assert metrics[semconv.LB_SELECTIONS.name].data.is_monotonic is True
    assert points(metrics[semconv.LB_SELECTIONS.name]) == {lb_attrs("api", "w0"): 2, lb_attrs("api", "w1"): 1}
    assert points(metrics[semconv.LB_REQUESTS.name]) == {
        lb_attrs("api", "w0", **{outcome: semconv.OUTCOME_SUCCESS}): 1,
        lb_attrs("api", "w0", **{outcome: semconv.OUTCOME_FAILURE}): 2,
        lb_attrs("api", "w1", **{outcome: semconv.OUTCOME_SUCCESS}): 0,
        lb_attrs("api", "w1", **{outcome: semconv.OUTCOME_FAILURE}): 0,
    }
    assert metrics[semconv.LB_ACTIVE_REQUESTS.name].data.is_monotonic is False
    assert points(metrics[semconv.LB_ACTIVE_REQUESTS.name]) == {
        lb_attrs("api", "w0"): 0,
        lb_attrs("api", "w1"): 1,
    }
    assert type(metrics[semconv.LB_WORKER_HEALTHY.name].data).__name__ == "Gauge"
    assert points(metrics[semconv.LB_WORKER_HEALTHY.name]) == {
        lb_attrs("api", "w0"): 0,
        lb_attrs("api", "w1"): 1,
    }
    assert points(metrics[semconv.LB_EJECTIONS.name]) == {lb_attrs("api", "w0"): 1, lb_attrs("api", "w1"): 0}

    # Read at collection time: the release shows in the next collection.
    with held:
        pass
    assert points(collect(reader)[semconv.LB_ACTIVE_REQUESTS.name])[lb_attrs("api", "w1")] == 0


def test_two_balancers_share_one_instrument_set_and_are_held_weakly(
    reader_provider: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    reader, provider = reader_provider
    first = make("round_robin", 1, name="first")
    second = make("round_robin", 1, name="second")
    first.instrument(provider)
    first.instrument(provider)  # idempotent
    second.instrument(provider)
    first.select_worker()
    selections = points(collect(reader)[semconv.LB_SELECTIONS.name])
    assert selections == {lb_attrs("first", "w0"): 1, lb_attrs("second", "w0"): 0}
    ref = weakref.ref(second)
    del second
    gc.collect()
    assert ref() is None
    assert set(points(collect(reader)[semconv.LB_SELECTIONS.name])) == {lb_attrs("first", "w0")}


def test_instrument_never_raises_on_a_bad_provider(caplog: pytest.LogCaptureFixture) -> None:
    lb = make("round_robin", 1, name="resilient")
    with caplog.at_level(logging.WARNING):
        lb.instrument(object())  # type: ignore[arg-type]
    assert "resilient" in caplog.text
    assert lb.select_worker() == "w0"


def test_an_ejection_adds_an_event_to_the_recording_span() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    lb = make("ip_hash", 3, name="edge", consecutive_failures=3)
    worker = lb.select_worker("client-1")

    span = tracer.start_span("call upstream")
    with trace.use_span(span, end_on_exit=True):
        for _ in range(3):  # the same key hits the same worker each time
            with pytest.raises(TimeoutError), lb.acquire("client-1"):
                raise TimeoutError
    assert ejected(lb) == {worker}
    (finished,) = exporter.get_finished_spans()
    events = [e for e in finished.events if e.name == semconv.EVENT_WORKER_EJECTED]
    assert len(events) == 1
    assert dict(events[0].attributes or {}) == {
        semconv.ATTR_LB_NAME: "edge",
        semconv.ATTR_LB_WORKER: worker,
    }
    # No span, or one that is not recording: the ejection still happens, nothing is raised.
    fail(lb, lb.select_worker("client-1"), 3)
    assert len(ejected(lb)) == 1  # 2 of 3 would pass the 50% maximum


def test_importing_the_module_does_not_import_the_otel_api_or_sdk() -> None:
    code = (
        "import sys, amqadf_agent.scaling.load_balancer as m; "
        "lb = m.LoadBalancer('ip_hash'); lb.register_worker('a'); lb.select_worker('k'); "
        "bad = [n for n in sys.modules if n.startswith(('opentelemetry.metrics', 'opentelemetry.sdk', "
        "'opentelemetry.context', 'opentelemetry.trace'))]; print(bad); assert not bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_repr_and_properties() -> None:
    lb = make("power_of_two", 2, name="r")
    assert (lb.name, lb.strategy, lb.workers) == ("r", "power_of_two", ("w0", "w1"))
    assert "power_of_two" in repr(lb) and "candidates=2" in repr(lb)
    assert repr(lb.acquire()).startswith("Lease(worker=")
    with pytest.raises(KeyError):
        lb.stats().worker("nope")
