"""Cost of one feature-flag evaluation, beside a blake2b-bucketed evaluation. Prints a table.

    .venv/bin/python tests/bench/bench_flags.py [--repeat 7] [--number 200000]

Rows: a flag fully on, off, unknown, and a 30% rollout evaluated for a key (the one case that
hashes), through ``FeatureFlags.enabled`` and ``ProductionConfig.feature_enabled``; and the same
rollout bucketed with a blake2b digest, the obvious stable hash, for comparison.

Target: an evaluation costs well under a microsecond.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from hashlib import blake2b

from amqadf_agent.config.flags import BUCKETS, FeatureFlag, FeatureFlags
from amqadf_agent.config.production import ProductionConfig

TARGET_NS = 1000.0


def measure(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """(best, median) ns per call, the loop's own cost subtracted."""

    def empty() -> None:
        return None

    runs: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        mid = time.perf_counter()
        for _ in range(number):
            empty()
        end = time.perf_counter()
        runs.append(max(0.0, (mid - start) - (end - mid)) / number * 1e9)
    return min(runs), statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args(argv)

    flags = FeatureFlags(
        {
            "on": FeatureFlag("on", True),
            "off": FeatureFlag("off", False),
            "rollout": FeatureFlag("rollout", True, 30.0),
        }
    )
    config = ProductionConfig.load(
        overrides={"feature_flags": {"rollout": {"enabled": True, "percentage": 30.0}}}, environ={}
    )

    def blake2b_rollout() -> bool:
        digest = blake2b(b"rollout\x00tenant-42", digest_size=8).digest()
        return int.from_bytes(digest, "big") % BUCKETS < 3000

    rows: list[tuple[str, Callable[[], object]]] = [
        ("FeatureFlags.enabled: on", lambda: flags.enabled("on")),
        ("FeatureFlags.enabled: off", lambda: flags.enabled("off", "tenant-42")),
        ("FeatureFlags.enabled: unknown flag", lambda: flags.enabled("nope", "tenant-42")),
        ("FeatureFlags.enabled: 30% rollout, keyed", lambda: flags.enabled("rollout", "tenant-42")),
        ("ProductionConfig.feature_enabled: rollout", lambda: config.feature_enabled("rollout", "tenant-42")),
        ("blake2b bucket (the alternative), keyed", blake2b_rollout),
    ]
    print(f"ns per evaluation, best/median of {args.repeat} x {args.number}")
    print(f"{'operation':<44} {'best':>8} {'median':>8}")
    worst = 0.0
    for name, fn in rows:
        best, median = measure(fn, args.number, args.repeat)
        if not name.startswith("blake2b"):
            worst = max(worst, median)
        print(f"{name:<44} {best:8.0f} {median:8.0f}")
    verdict = "meets" if worst < TARGET_NS else "MISSES"
    print(f"\nslowest evaluation: {worst:.0f} ns (median) {verdict} the {TARGET_NS:.0f} ns target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
