"""PerformanceProfiler: CPU profiles with pyinstrument, memory profiles with memray, as OTel spans.

What it costs (measured by ``tests/bench/bench_profiler.py``; see docs/design.md):

- pyinstrument hooks every call and return while it profiles: call-heavy code runs ~3-6x slower
  for the duration of the profiled call (recursive ``fib``, the worst case, ~6x here; CPU-bound
  code with few calls much less). A profiled call also builds the span tree (and the artifact).
- memray intercepts every allocation: ~1.7x with its defaults, plus reading the capture file.
- ``@profiled(sample_rate=0.01)`` (or ``@profiler.sampled(rate=0.01)``) profiles 1 call in 100;
  the other calls pay one ``random.random()`` and a comparison (well under a microsecond). The
  average slowdown is therefore about ``rate * (slowdown - 1)``: ~2-5% at ``rate=0.01``.
- ``max_overhead`` (default 2%) bounds it by time whatever the workload, with a token bucket of
  profiling time (``sampling.py``): the sampled cost stays under ~``max_overhead`` even where
  pyinstrument is slowest. A sampled call made inside a profiled call runs plainly: it is already
  in that profile.

Each profile is a span (``amqadf.profile``), with the hot path of a CPU profile as nested
``amqadf.profile.frame`` child spans (``spans.py``); the results are the types of ``results.py``,
which the renderers of ``report.py`` read. With ``artifacts_dir`` the full profile
(speedscope JSON by default) is saved there, named by the ``amqadf.profiler.artifact`` span attribute,
keeping the newest ``max_artifacts`` files. ``instrument()`` reports the profiles taken, the self
time of their top functions and the duration of every call through the profiler (``metrics.py``).

Never hurt the host: pyinstrument refuses to start while another profiler runs in the same thread
or async context (a profile inside a profiled call), and memray allows one tracker per process.
Then the function runs unprofiled, the failure is logged once and counted (``stats()``), and the
result says ``profiled=False``. Telemetry failures are logged, never raised.

pyinstrument, memray and the OpenTelemetry API are imported inside the functions that use them.

Why one module of about 600 lines: ``PerformanceProfiler`` and ``@profiled`` with its default
profiler share the fork hook that resets every profiler's private locks; the results, spans,
sampling, metrics and renderers already stand apart in their own modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import random as _random
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from amqadf_agent.errors import ConfigError, MissingExtraError
from amqadf_agent.profiling import artifacts, report, sampling, spans
from amqadf_agent.profiling.artifacts import ARTIFACT_PREFIX
from amqadf_agent.profiling.metrics import KIND_CPU, KIND_MEMORY, ProfilerMetrics
from amqadf_agent.profiling.results import (
    AllocationSite,
    CallNode,
    FunctionStat,
    MemoryProfileResult,
    ProfileResult,
    ProfilerStats,
    attach,
    hot_path,
    read_memray,
    read_tree,
)
from amqadf_agent.profiling.sampling import DEFAULT_MAX_OVERHEAD

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer
    from pyinstrument.frame import Frame
    from pyinstrument.session import Session

__all__ = [
    "ARTIFACT_PREFIX",
    "DEFAULT_MAX_OVERHEAD",
    "AllocationSite",
    "CallNode",
    "FunctionStat",
    "MemoryProfileResult",
    "PerformanceProfiler",
    "ProfileResult",
    "ProfilerStats",
    "configure_default_profiler",
    "default_profiler",
    "hot_path",
    "profiled",
]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


# --- the profiler ---------------------------------------------------------------------------------
class PerformanceProfiler:
    """Profiles calls on demand (``profile_function``, ``profile_async``, ``profile_memory``) or a
    sampled fraction of them in production (``@profiler.sampled``); each profile is also a span.

    Args:
        interval: pyinstrument's sampling interval in seconds.
        sample_rate: default fraction of calls ``sampled()`` profiles (0 to 1), read at call time.
        top_n: how many top functions (and allocation sites) a result keeps.
        max_overhead: default time budget of ``sampled()``: a fraction of wall time (default
            0.02). Profiling time accrues at this rate (at most ``sampling.BUDGET_WINDOW``
            seconds' worth) and each sampled profile spends its whole cost from it; no sampled
            profile starts while the budget is in debt. ``None``: no budget.
        enabled: ``False`` makes every sampled call a plain call (``profile_function`` still
            profiles); can be switched at run time.
        tracer: tracer of the profile spans; default ``get_tracer(semconv.SCOPE_NAME)``.
        clock: monotonic clock in seconds (durations and the budget); injected by tests.
        random: the random source of ``sampled()``; injected by tests.
        keep: how many results of sampled calls ``recent_results()`` keeps.
        hot_path_share: a frame of the hot path holds at least this share of the profile (0 to 1).
        hot_path_depth: at most this many hot-path frame spans under a profile span (0: none).
        artifacts_dir: where full profiles are saved (created if missing); ``None``: not saved.
        artifact_format: ``speedscope`` (JSON, default) or ``html`` (pyinstrument's page, larger).
        max_artifacts: the newest this many artifact files are kept in ``artifacts_dir``.
    """

    def __init__(
        self,
        *,
        interval: float = 0.001,
        sample_rate: float = 0.01,
        top_n: int = 10,
        max_overhead: float | None = DEFAULT_MAX_OVERHEAD,
        enabled: bool = True,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        random: _random.Random | None = None,
        keep: int = 16,
        hot_path_share: float = 0.1,
        hot_path_depth: int = 12,
        artifacts_dir: str | os.PathLike[str] | None = None,
        artifact_format: Literal["speedscope", "html"] = "speedscope",
        max_artifacts: int = 100,
    ) -> None:
        if not interval > 0:
            raise ConfigError("interval", f"must be a number of seconds > 0, got {interval!r}")
        sampling.check_rate("sample_rate", sample_rate)
        if top_n < 1:
            raise ConfigError("top_n", f"must be an integer >= 1, got {top_n!r}")
        if max_overhead is not None:
            sampling.check_overhead(max_overhead)
        if not 0.0 <= hot_path_share <= 1.0:
            raise ConfigError("hot_path_share", f"must be a fraction in [0, 1], got {hot_path_share!r}")
        if hot_path_depth < 0:
            raise ConfigError("hot_path_depth", f"must be an integer >= 0, got {hot_path_depth!r}")
        if artifact_format not in artifacts.SUFFIXES:
            raise ConfigError("artifact_format", f"must be 'speedscope' or 'html', got {artifact_format!r}")
        if max_artifacts < 1:
            raise ConfigError("max_artifacts", f"must be an integer >= 1, got {max_artifacts!r}")
        self.hot_path_share = hot_path_share
        self.hot_path_depth = hot_path_depth
        self.artifacts_dir = os.fspath(artifacts_dir) if artifacts_dir is not None else None
        self.artifact_format = artifact_format
        self.max_artifacts = max_artifacts
        self._artifact_seq = 0
        self._artifacts_written = 0
        self._artifact_failures = 0
        self.interval = interval
        self.sample_rate = sample_rate
        self.top_n = top_n
        self.max_overhead = max_overhead
        self.enabled = enabled
        self._clock = clock
        self._random = random if random is not None else _random.Random()
        self._lock = threading.Lock()
        _PROFILERS.add(self)
        self._metrics = ProfilerMetrics()
        self._failed = {KIND_CPU: 0, KIND_MEMORY: 0}
        self._sampler = sampling.Sampler(clock, self._random, keep)
        self._warned: set[str] = set()
        self._spans = spans.ProfileSpans(tracer, _log, self._warned)

    # --- CPU ------------------------------------------------------------------------------------
    def profile_function(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> ProfileResult:
        """Call ``fn(*args, **kwargs)`` under pyinstrument and return its profile.

        The return value is ``result.return_value``. If ``fn`` raises, the exception propagates
        unchanged once the profile is recorded; the profile is its ``__amqadf_profile__``.
        """
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"{_qualname(fn)} is a coroutine function: use await profiler.profile_async()")
        name = _qualname(fn)
        span, start_ns = self._spans.start(KIND_CPU, fn, name)
        with spans.activated(span):
            profiler = self._start_pyinstrument(inspect.currentframe())
            start, cpu_start = self._clock(), time.process_time()
            active = sampling.PROFILING.set(True)
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                sampling.PROFILING.reset(active)
                result = self._finish_cpu(name, profiler, start, cpu_start, None, exc, span, start_ns)
                attach(exc, result)
                raise
            sampling.PROFILING.reset(active)
        return self._finish_cpu(name, profiler, start, cpu_start, value, None, span, start_ns)

    async def profile_async(
        self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any
    ) -> ProfileResult:
        """Await ``fn(*args, **kwargs)`` under pyinstrument (async mode) and return its profile.

        Time the coroutine spends waiting shows as ``[await]`` time of the awaiting function.
        """
        # ``profile_function`` again with the call awaited: a sync helper cannot await it, and the
        # frame pyinstrument starts from must be this one.
        name = _qualname(fn)
        span, start_ns = self._spans.start(KIND_CPU, fn, name)
        with spans.activated(span):
            profiler = self._start_pyinstrument(inspect.currentframe())
            start, cpu_start = self._clock(), time.process_time()
            active = sampling.PROFILING.set(True)
            try:
                value = await fn(*args, **kwargs)
            except BaseException as exc:
                sampling.PROFILING.reset(active)
                result = self._finish_cpu(name, profiler, start, cpu_start, None, exc, span, start_ns)
                attach(exc, result)
                raise
            sampling.PROFILING.reset(active)
        return self._finish_cpu(name, profiler, start, cpu_start, value, None, span, start_ns)

    def _start_pyinstrument(self, caller: Any) -> Any:
        """A running pyinstrument ``Profiler``, or ``None`` when it cannot start (never raises)."""
        try:
            from pyinstrument import Profiler
        except ImportError:
            self._failed_to_start(KIND_CPU, "pyinstrument is not installed; calls run unprofiled")
            return None
        profiler = Profiler(interval=self.interval, async_mode="enabled")
        try:
            profiler.start(caller_frame=caller, target_description="amqadf profile")
        except Exception:
            self._failed_to_start(
                KIND_CPU,
                "pyinstrument could not start (another profiler active in this thread or async "
                "context?); the call runs unprofiled",
            )
            return None
        return profiler

    def _finish_cpu(
        self,
        name: str,
        profiler: Any,
        start: float,
        cpu_start: float,
        value: Any,
        error: BaseException | None,
        span: Span | None,
        start_ns: int,
    ) -> ProfileResult:
        end, cpu_end, end_ns = self._clock(), time.process_time(), time.time_ns()
        duration, cpu_time = end - start, cpu_end - cpu_start
        session: Session | None = None
        if profiler is not None:
            try:
                session = profiler.stop()
            except Exception:
                self._failed_to_start(KIND_CPU, "pyinstrument failed to stop; the profile is lost")
        tree: CallNode | None = None
        top: tuple[FunctionStat, ...] = ()
        if session is not None:
            try:
                root = session.root_frame()
                if root is not None:
                    tree, top = read_tree(root, _profiled_roots(root), self.top_n)
            except Exception:
                _log.warning("reading the pyinstrument session of %s failed", name, exc_info=True)
        result = ProfileResult(
            function=name,
            duration=duration,
            cpu_time=cpu_time,
            return_value=value,
            error=error,
            top_functions=top,
            call_tree=tree,
            sample_count=session.sample_count if session is not None else 0,
            profiled=session is not None,
            session=session,
            hot_path=hot_path(tree, self.hot_path_share, self.hot_path_depth) if tree is not None else (),
        )
        if result.profiled:
            result = dataclasses.replace(result, artifact=self._save_artifact(result))
            self._metrics.add_self_times(KIND_CPU, top)
        self._record(KIND_CPU, result.profiled, duration, name)
        self._spans.end(span, result, error, (start_ns, end_ns))
        return result

    # --- memory ---------------------------------------------------------------------------------
    def profile_memory(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> MemoryProfileResult:
        """Call ``fn(*args, **kwargs)`` under ``memray.Tracker`` and return its memory profile.

        Raises:
            MissingExtraError: memray is not installed (``pip install 'amqadf-agent[memory]'``).
        """
        try:
            import memray
        except ImportError:
            raise MissingExtraError("memory profiling", "memory", "memray") from None
        name = _qualname(fn)
        span, _ = self._spans.start(KIND_MEMORY, fn, name)
        directory = tempfile.mkdtemp(prefix="amqadf-memray-")
        path = os.path.join(directory, "profile.bin")
        try:
            with spans.activated(span):
                tracker: Any = memray.Tracker(path, native_traces=False)
                try:
                    tracker.__enter__()
                except Exception:
                    tracker = None
                    self._failed_to_start(
                        KIND_MEMORY,
                        "memray could not start (another Tracker active?); the call runs unprofiled",
                    )
                start = self._clock()
                try:
                    value = fn(*args, **kwargs)
                except BaseException as exc:
                    if tracker is not None:
                        tracker.__exit__(None, None, None)
                    result = self._finish_memory(name, path, tracker is not None, start, None, exc, span)
                    attach(exc, result)
                    raise
                if tracker is not None:
                    tracker.__exit__(None, None, None)
            return self._finish_memory(name, path, tracker is not None, start, value, None, span)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _finish_memory(
        self,
        name: str,
        path: str,
        tracked: bool,
        start: float,
        value: Any,
        error: BaseException | None,
        span: Span | None,
    ) -> MemoryProfileResult:
        end = self._clock()
        peak = allocations = 0
        total_bytes: int | None = None
        sites: tuple[AllocationSite, ...] = ()
        if tracked:
            try:
                peak, allocations, total_bytes, sites = read_memray(path, self.top_n)
            except Exception:
                tracked = False
                self._failed_to_start(KIND_MEMORY, "reading the memray capture failed")
        result = MemoryProfileResult(
            function=name,
            duration=end - start,
            return_value=value,
            error=error,
            peak_memory=peak,
            total_allocations=allocations,
            total_bytes=total_bytes,
            top_sites=sites,
            profiled=tracked,
        )
        if tracked:
            result = dataclasses.replace(result, artifact=self._save_artifact(result))
        self._record(KIND_MEMORY, tracked, end - start, name)
        self._spans.end(span, result, error, None)
        return result

    # --- sampling -------------------------------------------------------------------------------
    @overload
    def sampled(
        self, fn: Callable[P, R], /, *, rate: float | None = None, max_overhead: float | None = None
    ) -> Callable[P, R]: ...

    @overload
    def sampled(
        self, fn: None = None, /, *, rate: float | None = None, max_overhead: float | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def sampled(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        rate: float | None = None,
        max_overhead: float | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: profile a ``rate`` fraction of the calls (CPU); the others run untouched.

        ``rate`` defaults to the profiler's ``sample_rate`` (read at each call, so a later
        configuration applies) and ``max_overhead`` to its own. A sampled call runs unprofiled
        while the time budget is in debt or the profiler is disabled. Async functions are profiled
        with ``profile_async``. The results of sampled calls are spans, and the last few are
        kept in ``recent_results()``. Usable as ``@profiler.sampled`` or ``@profiler.sampled(rate=…)``.
        """
        if rate is not None:
            sampling.check_rate("rate", rate)
        budget = self.max_overhead if max_overhead is None else max_overhead
        if budget is not None:
            sampling.check_overhead(budget)

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            return self._sampler.wrap(self, func, rate, budget)

        return decorate(fn) if fn is not None else decorate

    def recent_results(self) -> list[ProfileResult]:
        """The last results of sampled calls, oldest first."""
        return list(self._sampler.recent)

    # --- reports --------------------------------------------------------------------------------
    def generate_report(
        self,
        result: ProfileResult | MemoryProfileResult,
        format: Literal["text", "html", "speedscope"] = "text",
    ) -> str:
        """Render a result: ``text`` (default), ``html`` (a complete page) or ``speedscope`` (JSON)."""
        return report.render(result, format)

    # --- telemetry ------------------------------------------------------------------------------
    def instrument(self, meter_provider: MeterProvider | None = None) -> None:
        """Report profiles taken (``amqadf.profiler.profiles`` by kind) and the self time of the
        profiles' top functions (``amqadf.profiler.function.self_time``, s, by kind and
        ``code.function.name``; see ``function_self_times()``) on ``meter_provider``, and
        from now on record the wall time of every call through the profiler in the
        ``amqadf.profiler.duration`` histogram (s, ``semconv.SECONDS_BUCKETS``; kind and function).

        Default: the global provider. Idempotent; the provider holds the profiler's metrics weakly
        (they live as long as the profiler). A failure
        is logged, never raised.
        """
        try:
            self._metrics.register(meter_provider)
        except Exception:
            _log.warning("cannot report the profiler as metrics; it keeps working", exc_info=True)

    def function_self_times(self) -> dict[tuple[str, str], float]:
        """Self time (s) of the profiles' top functions, summed by (kind, qualified function name).

        What ``amqadf.profiler.function.self_time`` reports: at most
        ``metrics.MAX_SELF_TIME_FUNCTIONS`` entries, those with the most self time.
        """
        return self._metrics.self_times()

    def stats(self) -> ProfilerStats:
        """Profiles taken and profiles that could not start, by kind; calls skipped by the budget."""
        with self._lock:
            return ProfilerStats(
                self._metrics.profiles(),
                dict(self._failed),
                self._sampler.skipped,
                self._artifacts_written,
                self._artifact_failures,
            )

    def _record(self, kind: str, profiled: bool, duration: float, function: str) -> None:
        try:
            self._metrics.record(kind, profiled, duration, function)
        except Exception:
            self._spans.failed()

    # --- artifacts ------------------------------------------------------------------------------
    def _save_artifact(self, result: ProfileResult | MemoryProfileResult) -> str | None:
        """Save the full profile in ``artifacts_dir``; its path, or ``None`` (never raises)."""
        directory = self.artifacts_dir
        if directory is None:
            return None
        try:
            content = report.render(result, self.artifact_format)
            with self._lock:
                self._artifact_seq += 1
                seq = self._artifact_seq
            kind = KIND_CPU if isinstance(result, ProfileResult) else KIND_MEMORY
            name = artifacts.artifact_name(kind, result.function, seq, self.artifact_format)
            path = artifacts.write(directory, name, content)
            with self._lock:
                self._artifacts_written += 1
            artifacts.prune(directory, self.max_artifacts)
            return path
        except Exception:
            with self._lock:
                self._artifact_failures += 1
                first = "artifact" not in self._warned
                self._warned.add("artifact")
            _log.log(
                logging.WARNING if first else logging.DEBUG,
                "saving a profile in %s failed; profiling goes on without artifacts",
                directory,
                exc_info=True,
            )
            return None

    def _failed_to_start(self, kind: str, message: str) -> None:
        with self._lock:
            self._failed[kind] += 1
            first = message not in self._warned
            self._warned.add(message)
        _log.log(logging.WARNING if first else logging.DEBUG, message, exc_info=first)


# --- the decorator --------------------------------------------------------------------------------
_DEFAULT: PerformanceProfiler | None = None
_DEFAULT_LOCK = threading.Lock()
#: Every profiler, for the fork hook (a lock held by another thread at fork would stay held).
_PROFILERS: weakref.WeakSet[PerformanceProfiler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Fresh locks, and no profile running: the child has only the thread that forked."""
    global _DEFAULT_LOCK
    _DEFAULT_LOCK = threading.Lock()
    for profiler in list(_PROFILERS):
        profiler._lock = threading.Lock()
        profiler._sampler.after_fork()
        profiler._metrics.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_profiler() -> PerformanceProfiler:
    """The process-wide profiler ``@profiled`` uses when given none (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = PerformanceProfiler()
        return _DEFAULT


def configure_default_profiler(*, enabled: bool | None = None, sample_rate: float | None = None) -> None:
    """Set what ``@profiled`` does by default (``amqadf_agent.start`` applies the configuration's
    ``profiler`` group here); decorators applied earlier follow, since they read it at each call."""
    if sample_rate is not None:
        sampling.check_rate("sample_rate", sample_rate)
    profiler = default_profiler()
    if enabled is not None:
        profiler.enabled = bool(enabled)
    if sample_rate is not None:
        profiler.sample_rate = sample_rate


@overload
def profiled(
    fn: Callable[P, R],
    /,
    *,
    sample_rate: float | None = None,
    max_overhead: float | None = None,
    profiler: PerformanceProfiler | None = None,
) -> Callable[P, R]: ...


@overload
def profiled(
    fn: None = None,
    /,
    *,
    sample_rate: float | None = None,
    max_overhead: float | None = None,
    profiler: PerformanceProfiler | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def profiled(
    fn: Callable[P, R] | None = None,
    /,
    *,
    sample_rate: float | None = None,
    max_overhead: float | None = None,
    profiler: PerformanceProfiler | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: CPU-profile a ``sample_rate`` fraction of the calls of a sync or async function.

    ``sample_rate`` and ``max_overhead`` default to the profiler's (``default_profiler()``: 1% of
    calls, at most ~2% of wall time, or what ``amqadf_agent.start`` configured), read at each call.
    ``max_overhead`` is a fraction of wall time: profiled time accrues at that rate and each profile
    spends its duration; no new profile starts while that budget is in debt. ``profiler`` defaults to
    ``default_profiler()``. The other calls pay one random draw; the signature is preserved.
    Usable as ``@profiled`` or ``@profiled(sample_rate=…)``.
    """
    owner = profiler if profiler is not None else default_profiler()
    decorate = owner.sampled(rate=sample_rate, max_overhead=max_overhead)
    return decorate(fn) if fn is not None else decorate


# --- helpers --------------------------------------------------------------------------------------
def _qualname(fn: Callable[..., Any]) -> str:
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


#: The files of the profiler's own frames around a profiled call.
_WRAPPER_FILES = (__file__, spans.__file__)


def _is_wrapper_frame(frame: Frame) -> bool:
    """A frame of the bookkeeping around a profiled call, not of the call: this module's and the
    span writer's own functions and the ``with`` statement's enter and exit (a decorator built on
    ``contextlib``, such as ``@tracer.start_as_current_span``, runs as ``contextlib.inner``: that is
    the call)."""
    if frame.file_path in _WRAPPER_FILES:
        return True
    return frame.file_path == contextlib.__file__ and frame.function in ("__enter__", "__exit__")


def _profiled_roots(root: Frame) -> list[Frame]:
    """The frames the profiled call made, under the wrapper frame pyinstrument started in.

    A sample can land in the wrapper itself, before or after the call (its span bookkeeping, the
    context manager's exit); those frames are dropped so that the tree starts at the function.
    """
    return [c for c in root.children if not c.is_synthetic and not _is_wrapper_frame(c)]
