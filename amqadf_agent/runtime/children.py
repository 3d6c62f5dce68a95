"""multiprocessing children shut their agent down when they end, as ``atexit`` does in a process.

A forked multiprocessing child ends in ``os._exit``, so ``atexit`` never runs there and what its
batch processors still hold would be lost, uncounted. multiprocessing runs its own finalizers
instead, in the child, after its ``run()``: an after-fork callback, registered once before the
first fork and inherited by every child, adds the agent's shutdown to them. A plain ``os.fork``
child never runs these callbacks: it decides itself how it exits. multiprocessing is not imported
for this: a process that forks through it has imported it already.

Pool workers are also ended by SIGTERM: ``Pool.terminate()``, and so the end of every
``with Pool()`` block, while they wait for tasks that will not come. No finalizer runs then, so a
worker gets a SIGTERM handler that shuts the agent down within its deadline and then dies of the
signal as it would have (see ``_PoolWorkerExit``). Other children keep the default action of
SIGTERM: ``Process.terminate()`` stays immediate. A task that installs a SIGTERM handler of its own
owns the signal from then on: the agent neither runs that handler a second time nor ends the
worker, and the flush that follows the handler's ``sys.exit()`` is not cut short by it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_watching = False
_celery_watched = False
_rq_watched = False


def watch(shutdown: Callable[[], None], budget: Callable[[], float], flush_spans: Callable[[], None]) -> None:
    """Before a fork: have multiprocessing's, Celery's and RQ's children export what they hold when
    they end.

    Args:
        shutdown: shuts the running agent down, within its deadline (a no-op when none runs).
        budget: that deadline in seconds, for the child to bound how long a SIGTERM may wait;
            0 when no agent runs (then the child is left as it is).
        flush_spans: exports the spans and logs buffered, within the deadline (an RQ job's end).
    """
    global _watching
    _watch_celery(shutdown)
    _watch_rq(flush_spans)
    mp_util = sys.modules.get("multiprocessing.util")
    if _watching or mp_util is None:
        return
    _watching = True
    mp_util.register_after_fork(shutdown, lambda at_exit: _in_child(at_exit, budget))  # (a function lives on)


def _watch_celery(shutdown: Callable[[], None]) -> None:
    """Have Celery's pool children call ``shutdown`` as they end.

    Celery's prefork pool is billiard's, not multiprocessing's: its workers end in ``os._exit`` from
    inside their loop, so neither ``atexit`` nor a finalizer runs there, and a worker stopped (a
    warm shutdown, ``--max-tasks-per-child``) loses the spans of its last tasks and every metric it
    had not exported yet. Celery tells its receivers of ``worker_process_shutdown`` in each child
    just before it exits: connected here, before the pool forks, every child inherits the receiver.
    """
    global _celery_watched
    signals = sys.modules.get("celery.signals")
    if _celery_watched or signals is None:
        return
    _celery_watched = True
    signals.worker_process_shutdown.connect(_CeleryChildEnd(shutdown), weak=False)


def _watch_rq(flush_spans: Callable[[], None]) -> None:
    """Have RQ's work horses export their job's spans and logs before they end.

    RQ's default worker forks a work horse for every job, which leaves through ``os._exit`` as soon
    as the job is done, long before a batch processor's next export: every span of every job (its
    queries, its calls, the application's own) was lost. Wrapped here, before the first fork, the
    worker's ``perform_job`` flushes spans and logs when it returns in a horse. Metrics are not:
    each horse is a process (an instance) of its own for one job, and exporting each one's would
    make an instance and a series per job; what a job counts in metrics stays unexported, as before.
    """
    global _rq_watched
    module = sys.modules.get("rq.worker")
    if _rq_watched or module is None:
        return
    _rq_watched = True
    worker = getattr(module, "Worker", None)
    owner = next((c for c in getattr(worker, "__mro__", ()) if "perform_job" in vars(c)), None)
    if owner is None:  # another RQ: nothing to wrap
        return
    original = vars(owner)["perform_job"]

    @functools.wraps(original)
    def perform_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            if getattr(self, "_is_horse", False):  # the forked horse, about to leave by os._exit
                with contextlib.suppress(Exception):  # never into RQ's job handling
                    flush_spans()

    owner.perform_job = perform_job


class _CeleryChildEnd:
    """A receiver of ``worker_process_shutdown``: the agent's shutdown, whatever it is sent."""

    def __init__(self, shutdown: Callable[[], None]) -> None:
        self.shutdown = shutdown

    def __call__(self, *args: object, **kwargs: object) -> None:
        with contextlib.suppress(Exception):  # never into Celery's exit path
            self.shutdown()


def _in_child(shutdown: Callable[[], None], budget: Callable[[], float]) -> None:
    import multiprocessing
    import multiprocessing.util

    if budget() <= 0:  # no agent runs in this child
        return
    ending = _PoolWorkerExit(shutdown, budget)
    # The lowest priority: after the application's own finalizers, which may still make telemetry.
    multiprocessing.util.Finalize(None, ending.finalize, exitpriority=-(2**31))
    # A signal handler that raises while earlier finalizers run ends them all, ours included; the
    # threading module's exit callbacks still run after that, in the child too.
    register_atexit = getattr(threading, "_register_atexit", None)
    if register_atexit is not None:
        register_atexit(ending.last_chance)
    pool = sys.modules.get("multiprocessing.pool")
    target = getattr(multiprocessing.current_process(), "_target", None)
    if pool is not None and target is getattr(pool, "worker", None):
        ending.handle_sigterm()


class _PoolWorkerExit:
    """How a child's agent is shut down: its ``run()`` returns, or (a pool worker) it gets SIGTERM.

    A Python signal handler runs only in the main thread, and only once the main thread is
    interrupted; the kernel may deliver the signal to any thread (the batch processors' too), and
    then a worker waiting on the task queue's lock would wait forever. So the handler comes with a
    watcher thread, woken by the interpreter's wakeup fd on any thread's signal, that sends it on
    to the main thread. When the main thread does not answer within a second (it is in a long
    call into C), the watcher shuts the agent down itself and the worker dies of the signal all
    the same: ``terminate()`` always ends it, later by at most a second and the flush.
    """

    def __init__(self, shutdown: Callable[[], None], budget: Callable[[], float]) -> None:
        self.shutdown = shutdown
        self.budget = budget
        self.finishing = False  # the finalizer is shutting the agent down
        self.handling = False  # the SIGTERM handler is
        self.terminated_by: int | None = None
        self.answered = threading.Event()  # the main thread ran the handler
        self.exiting = threading.Event()  # the finalizer has begun: the worker is on its way out
        self.flushes: list[tuple[threading.Thread, threading.Event]] = []

    def finalize(self) -> None:
        self.finishing = True
        self.exiting.set()
        try:
            raised = self._shielded_shutdown()
        finally:
            self.finishing = False
        if self.terminated_by is not None:
            _die_of(self.terminated_by)
        if raised is not None:
            raise raised

    def last_chance(self) -> None:
        """At thread shutdown: flush when the finalizer never ran (a no-op when it did)."""
        self._shielded_shutdown()

    def _shielded_shutdown(self) -> BaseException | None:
        """Shut down in a thread, so that an application's signal handler cannot cut the flush.

        A handler that raises (``sys.exit()`` on SIGTERM) raises in the main thread, here: the
        wait goes on until the flush is done or its deadline passed, and what the handler raised
        is returned for the caller to raise then. A flush an earlier call started (and a handler
        interrupted the wait for) is waited for too: the agent's second shutdown returns at once.
        """
        deadline = time.monotonic() + self.budget() + 1.0
        raised: BaseException | None = None
        done = threading.Event()  # (not Thread.join: interrupted, it takes the thread for ended)

        def flush() -> None:
            try:
                self.shutdown()
            finally:
                done.set()

        thread = threading.Thread(target=flush, name="amqadf-agent-exit-flush", daemon=True)
        self.flushes.append((thread, done))
        try:
            thread.start()
        except BaseException as exc:
            raised = exc
        for thread, done in self.flushes:
            while (thread.is_alive() and not done.is_set()) and (left := deadline - time.monotonic()) > 0:
                try:
                    done.wait(left)
                except BaseException as exc:  # from a signal handler, not from the flush
                    raised = raised or exc
        return raised

    def handle_sigterm(self) -> None:
        """Install the handler and its watcher, unless the application handles SIGTERM or the wakeup fd."""
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        try:
            previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            previous = None
        if previous != -1:
            if previous is not None:
                signal.set_wakeup_fd(previous)
            os.close(read_end)
            os.close(write_end)
            return
        signal.signal(signal.SIGTERM, self.on_sigterm)
        main = threading.get_ident()
        threading.Thread(
            target=self._watch, args=(read_end, main), name="amqadf-agent-sigterm", daemon=True
        ).start()

        def undo_in_child() -> None:  # a process this worker forks starts with neither
            if signal.getsignal(signal.SIGTERM) == self.on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                for fd in (read_end, write_end):
                    with contextlib.suppress(OSError):
                        os.close(fd)

        os.register_at_fork(after_in_child=undo_in_child)

    def on_sigterm(self, signum: int, frame: object) -> None:
        self.answered.set()
        if self.handling:  # (the watcher is shutting down; it ends the worker)
            return
        if self.finishing:  # the finalizer's flush is under way: it dies of the signal once done
            self.terminated_by = signum
            return
        self.handling = True
        # In a thread: the interrupted main thread may hold a lock that the shutdown needs.
        worker = threading.Thread(target=self.shutdown, name="amqadf-agent-sigterm-flush", daemon=True)
        worker.start()
        worker.join(self.budget() + 1.0)
        _die_of(signum)

    def _watch(self, read_end: int, main: int) -> None:
        while True:
            try:
                got = os.read(read_end, 64)
            except OSError:
                return
            if not got:
                return
            if signal.SIGTERM not in got:
                continue  # another signal with a Python handler (SIGINT): not ours
            if signal.getsignal(signal.SIGTERM) != self.on_sigterm:
                self._pass_on_to_application(main)
                continue
            if not self.handling and self.terminated_by is None:
                with contextlib.suppress(OSError):
                    signal.pthread_kill(main, signal.SIGTERM)
                if not self.answered.wait(1.0):  # the main thread is in a long call into C
                    self.handling = True
                    self.shutdown()
                    _die_of(signal.SIGTERM, from_any_thread=True)
            time.sleep(self.budget() + 2.0)
            _die_of(signal.SIGTERM, from_any_thread=True)  # the handler should have ended it

    def _pass_on_to_application(self, main: int) -> None:
        """The application's own handler has SIGTERM: make sure it runs, once, and end nothing.

        The main thread runs it when the signal reached that thread; only when the worker shows no
        sign of leaving after a second (the signal reached another thread while the main thread
        waits on a lock) is it sent on to the main thread.
        """
        if self.exiting.wait(1.0):
            return
        with contextlib.suppress(OSError):
            signal.pthread_kill(main, signal.SIGTERM)


def _die_of(signum: int, from_any_thread: bool = False) -> None:
    """End as the signal's default action would: no ``finally`` block, no exit handler runs.

    Only the main thread may set a handler through ``signal``; another thread sets the default
    action through the C library, or, where it cannot, ends the process with SIGKILL.
    """
    if not from_any_thread:
        signal.signal(signum, signal.SIG_DFL)
    else:
        try:
            import ctypes

            ctypes.CDLL(None).signal(signum, ctypes.c_void_p(0))  # SIG_DFL
        except (ImportError, OSError, AttributeError):
            signum = signal.SIGKILL
    os.kill(os.getpid(), signum)
