"""Feature flags: on/off, and percentage rollouts that give a key the same answer every time.

A key's bucket (0..9999) is a blake2b hash of the flag name and the key, so it is the same across
processes, restarts and machines (unlike ``hash()``), and a key in a 10% rollout stays in it when the
rollout grows to 20%. An evaluation is a dict lookup and, for a partial rollout, one hash: no lock,
no allocation beyond the hash input, and no telemetry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from hashlib import blake2b

#: Buckets per flag: a percentage has two decimals of resolution.
BUCKETS = 10_000


def bucket(flag: str, key: str) -> int:
    """The stable bucket (0..9999) of ``key`` for ``flag``."""
    digest = blake2b(f"{flag}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclasses.dataclass(frozen=True)
class FeatureFlag:
    """One flag: off unless ``enabled``; when on, ``percentage`` (0..100) of keys get it."""

    name: str
    #: The flag is on (for ``percentage`` of keys).
    enabled: bool = False
    #: Share of keys that see the flag when it is on; 100 means everyone (also calls without a key).
    percentage: float = 100.0


class FeatureFlags:
    """Evaluates flags; build it once, call ``enabled`` as often as needed."""

    __slots__ = ("_table", "flags")

    def __init__(self, flags: Mapping[str, FeatureFlag]) -> None:
        self.flags = dict(flags)
        #: name -> threshold in buckets (0: off, BUCKETS: everyone).
        self._table: dict[str, int] = {
            name: (round(flag.percentage * (BUCKETS // 100)) if flag.enabled else 0)
            for name, flag in self.flags.items()
        }

    def enabled(self, name: str, key: str | None = None) -> bool:
        """Whether ``name`` is on for ``key``. Unknown flags are off; a partial rollout needs a key."""
        threshold = self._table.get(name, 0)
        if threshold >= BUCKETS:
            return True
        if threshold <= 0 or key is None:
            return False
        return bucket(name, key) < threshold
