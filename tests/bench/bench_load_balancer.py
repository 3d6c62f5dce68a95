"""Hot-path cost of LoadBalancer, per strategy, beside a bare ``itertools.cycle``. Prints a table.

    .venv/bin/python tests/bench/bench_load_balancer.py [--workers 8] [--repeat 7] [--number 200000]

Targets, on the 2-core box with 8 workers: ``select_worker()`` under 1 µs for
round robin, under 2 µs for power_of_two and ip_hash. The ``acquire()`` row is one whole
``with lb.acquire(): pass`` (select, count in flight, two clock reads, release, outcome).
The key-hash rows show what ip_hash pays to hash a key with each stable hash it could use.
Each figure is ns per call: the best and the median of ``--repeat`` runs of ``--number`` calls.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import statistics
import sys
import timeit
import zlib
from collections.abc import Callable

from amqadf_agent.scaling.load_balancer import STRATEGIES, LoadBalancer

TARGETS_NS = {"round_robin": 1000, "power_of_two": 2000, "ip_hash": 2000}


def measure(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per call."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    per_call = [run / number * 1e9 for run in runs]
    return min(per_call), statistics.median(per_call)


def balancer(strategy: str, workers: int) -> LoadBalancer:
    lb = LoadBalancer(strategy, name="bench", random=random.Random(1))
    for i in range(workers):
        lb.register_worker(f"worker-{i}", weight=float(1 + i % 3))
    return lb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args(argv)
    n, number, repeat = args.workers, args.number, args.repeat

    rows: list[tuple[str, float, float, int | None]] = []
    floor = itertools.cycle([f"worker-{i}" for i in range(n)])
    rows.append(("floor: next(itertools.cycle)", *measure(floor.__next__, number, repeat), None))

    keys = [f"10.0.{i // 256}.{i % 256}" for i in range(4096)]
    for strategy in STRATEGIES:
        lb = balancer(strategy, n)
        if strategy == "ip_hash":
            key_iter = itertools.cycle(keys)
            select = lb.select_worker

            def call(
                select: Callable[[object], str] = select, nxt: Callable[[], str] = key_iter.__next__
            ) -> str:
                return select(nxt())

            # 4096 distinct keys in turn; the row includes their next() (~25 ns, the floor row).
            rows.append(
                (f"select_worker() {strategy} (incl. next key)", *measure(call, number, repeat), 2000)
            )
        else:
            rows.append(
                (
                    f"select_worker() {strategy}",
                    *measure(lb.select_worker, number, repeat),
                    TARGETS_NS.get(strategy),
                )
            )

    # least_connections scans all workers only when the rotating first choice has requests in
    # flight; hold one request on each worker to measure the full scan.
    lb = balancer("least_connections", n)
    held = [lb.acquire() for _ in range(n)]
    rows.append(
        (
            "select_worker() least_connections, 1 in flight each",
            *measure(lb.select_worker, number, repeat),
            None,
        )
    )
    del held

    for strategy in STRATEGIES:
        lb = balancer(strategy, n)

        def cycle(lb: LoadBalancer = lb) -> None:
            with lb.acquire("10.0.0.1"):
                pass

        rows.append((f"with acquire(): {strategy}", *measure(cycle, number, repeat), None))

    # Not the hot path: a registration (and, for ip_hash, every health change) rebuilds the
    # candidates and the ring under the lock.
    for strategy in ("round_robin", "ip_hash"):
        lb = balancer(strategy, n)

        def churn(lb: LoadBalancer = lb) -> None:
            lb.register_worker("extra")
            lb.deregister_worker("extra")

        rows.append(
            (
                f"register + deregister a worker: {strategy}",
                *measure(churn, max(1, number // 1000), repeat),
                None,
            )
        )

    data = [k.encode() for k in keys]
    data_iter = itertools.cycle(data)
    blake, md5, crc32, from_bytes = hashlib.blake2b, hashlib.md5, zlib.crc32, int.from_bytes
    hashes: dict[str, Callable[[], object]] = {
        "key hash: blake2b(digest_size=8) (used)": lambda: from_bytes(
            blake(next(data_iter), digest_size=8).digest(), "big"
        ),
        "key hash: md5, first 8 bytes": lambda: from_bytes(md5(next(data_iter)).digest()[:8], "big"),
        "key hash: zlib.crc32 (32 bits, weak mixing)": lambda: crc32(next(data_iter)),
    }
    for label, fn in hashes.items():
        rows.append((label, *measure(fn, number, repeat), None))

    width = max(len(r[0]) for r in rows)
    print(f"LoadBalancer hot path, {n} workers, Python {sys.version.split()[0]}, ns per call")
    print(f"{'operation':<{width}}  {'best':>7}  {'median':>7}  {'target':>7}")
    for label, best, median, target in rows:
        verdict = "" if target is None else f"  <{target:>5}  {'ok' if best < target else 'OVER'}"
        print(f"{label:<{width}}  {best:7.0f}  {median:7.0f}{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
