"""Turn off real waiting in every resilience policy, for users' own test suites.

Like ``stamina.set_testing``: while testing mode is on, retry policies compute their delays (and
report them in span events) but never sleep, neither with their injected ``sleep`` nor with
``async_sleep``; a ``RateLimiter.acquire`` that would wait is permitted at once (its ``timeout`` is
still checked: a wait longer than the timeout still raises ``RateLimitedError``). Only the slow
paths read the flag; the success path never does. Circuit breakers and timeouts never sleep: an
open breaker is moved on with its injected clock, a timeout is the call's own duration.

    from amqadf_agent.resilience.testing import no_waiting

    with no_waiting():
        client.fetch()   # retried at once, however long the backoff
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_testing = False


def is_testing() -> bool:
    """Whether policies skip their sleeps right now."""
    return _testing


def set_testing(testing: bool) -> bool:
    """Turn testing mode on or off for the whole process; returns the previous state."""
    global _testing
    with _lock:
        previous = _testing
        _testing = bool(testing)
    return previous


@contextmanager
def no_waiting() -> Iterator[None]:
    """Testing mode inside the block; the previous state comes back on exit, even on an error."""
    previous = set_testing(True)
    try:
        yield
    finally:
        set_testing(previous)
