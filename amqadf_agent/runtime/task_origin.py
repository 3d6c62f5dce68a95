"""Who awaits the running asyncio task: the frames a call issued inside a task was issued from.

A call issued as its own task, ``await asyncio.gather(*(client.get(url) for url in urls))``, runs
on a stack that holds the event loop, the task and the library, and no frame of the application:
the application's coroutine that asked for it is suspended at its ``await``, on another task's
stack. Python 3.11 keeps no link from a task to the one that created it, but every task that awaits
a future is in that future's done callbacks, so the running task's callbacks lead to its awaiter:

* ``await task`` (``create_task`` then ``await``): the awaiting task's wake-up method;
* ``asyncio.gather``: a closure that holds the gathering future, whose callbacks hold the awaiter;
* ``asyncio.TaskGroup``: the group's method, and the group knows its parent task;
* ``asyncio.wait_for`` and the like: a ``functools.partial`` over a future the awaiter waits on.

The awaiter's coroutine, followed through what each coroutine awaits (``cr_await``), gives its
suspended frames, the application's among them, each at the line of its ``await``. Only read where
the stack itself has no application frame (``code_location``): it costs a few microseconds, and
any surprise in these internals gives no frames rather than an error.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["awaiting_frames"]

#: Tasks followed outward from the running one (a task awaited by a task awaited by ...).
MAX_TASKS = 4
#: Futures followed from one task to its awaiter (a gathering future, a waiter of ``wait_for``).
MAX_HOPS = 3
#: Coroutines followed inward from a task's own (``cr_await``).
MAX_COROUTINES = 64


def awaiting_frames(wanted: Callable[[FrameType], bool]) -> list[FrameType]:
    """The ``wanted`` frames of the coroutines that await the running task, outermost first (the last
    is the innermost: where the running task's result is awaited); empty outside a task, or when
    nothing awaits it yet."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # no event loop can be running
        return []
    try:
        loop = asyncio.events._get_running_loop()  # None in a thread with no loop, where raising costs
        task = asyncio.current_task(loop) if loop is not None else None
        levels: list[list[FrameType]] = []
        seen = {id(task)}
        for _ in range(MAX_TASKS):
            if task is None:
                break
            task = _awaiter(task, asyncio, MAX_HOPS)
            if task is None or id(task) in seen:
                break
            seen.add(id(task))
            levels.append([frame for frame in _coroutine_frames(task.get_coro()) if wanted(frame)])
    except Exception:  # internals of another version: no frames, never an error in span.start()
        return []
    return [frame for level in reversed(levels) for frame in level]


def _awaiter(future: Any, asyncio: Any, hops: int) -> Any:
    """The task that waits for ``future`` (directly, or through up to ``hops`` futures), or None."""
    for callback, _context in future._callbacks or ():
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):  # its wake-up: ``await future``
            return owner
        parent = getattr(owner, "_parent_task", None)  # a TaskGroup's callback
        if isinstance(parent, asyncio.Task):
            return parent
        if hops:
            for inner in _futures_in(callback, asyncio):
                found = _awaiter(inner, asyncio, hops - 1)
                if found is not None:
                    return found
    return None


def _futures_in(callback: Any, asyncio: Any) -> Iterator[Any]:
    """The futures a callback holds: in its closure (``gather``'s), or bound by ``functools.partial``."""
    values: list[Any] = []
    if isinstance(callback, functools.partial):
        values.extend(callback.args)
        callback = callback.func
    for cell in getattr(callback, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return (value for value in values if isinstance(value, asyncio.Future))


def _coroutine_frames(coroutine: Any) -> Iterator[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    for _ in range(MAX_COROUTINES):
        if coroutine is None:
            return
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            yield frame
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
