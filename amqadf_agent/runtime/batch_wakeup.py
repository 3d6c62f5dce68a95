"""The SDK's batch processors keep the wakeup that a full batch sends their worker.

``BatchProcessor.worker`` (opentelemetry-sdk 1.45) clears its wakeup event after its export loop.
A batch that fills in between (the loop has seen the queue short of a batch, the application's
``emit`` sees the event still set and does not set it again) is erased by that ``clear()``: the
worker then sleeps the whole schedule delay while the queue grows, and past ``max_queue_size`` the
oldest spans are dropped (open-telemetry/opentelemetry-python#5400). A burst of spans in a pool
worker lost a few hundred of them that way.

The fix here: the event's ``clear()`` looks at the queue after clearing and sets the event again
when a batch is waiting. Either ``emit`` appends before that look (and the look sees the batch) or
it checks the event after the clear (and sets it itself); no order loses the wakeup. The worst
case is one wakeup that finds less than a batch, as at the end of every schedule delay. Nothing
here raises: an SDK whose processor looks different is left as it is.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref
from typing import Any


class _Wakeup(threading.Event):
    """An event whose ``clear()`` keeps it set while a whole batch waits in ``queue``."""

    def __init__(self, queue: collections.deque[Any], batch_size: int) -> None:
        super().__init__()
        self.queue = queue
        self.batch_size = batch_size

    def clear(self) -> None:
        super().clear()
        if len(self.queue) >= self.batch_size:
            super().set()


def keep_wakeups(processor: object) -> bool:
    """Give ``processor``'s worker (a ``BatchSpanProcessor`` or ``BatchLogRecordProcessor``) the
    event above, now and in every forked child. True when it was given."""
    batch = getattr(processor, "_batch_processor", None)
    if not _install(batch):
        return False
    ref = weakref.ref(batch)

    def after_in_child() -> None:  # (the SDK's own hook, registered before, gave it a plain event)
        target = ref()
        if target is not None:
            _install(target)

    os.register_at_fork(after_in_child=after_in_child)
    return True


def _install(batch: Any) -> bool:
    try:
        queue = batch._queue
        batch_size = batch._max_export_batch_size
        old = batch._worker_awaken
        if not isinstance(queue, collections.deque) or type(old) not in (threading.Event, _Wakeup):
            return False
        batch._worker_awaken = _Wakeup(queue, int(batch_size))
    except (AttributeError, TypeError, ValueError):
        return False
    with contextlib.suppress(Exception):
        old.set()  # the worker waits on the old event: once woken, it waits on the new one
    return True
