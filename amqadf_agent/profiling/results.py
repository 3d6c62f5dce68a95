"""What a profile found: the result types, and the call tree read from pyinstrument and memray.

The renderers (``report.py``) and the span writer (``spans.py``) read these results and nothing
else, so they never need the profiler itself. pyinstrument and memray are imported inside the
functions that read their output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyinstrument.frame import Frame
    from pyinstrument.session import Session

__all__ = [
    "AllocationSite",
    "CallNode",
    "FunctionStat",
    "MemoryProfileResult",
    "ProfileResult",
    "ProfilerStats",
    "aggregate",
    "attach",
    "attached_profiled",
    "build_tree",
    "hot_path",
    "read_memray",
    "read_tree",
    "real_children",
]


@dataclasses.dataclass(frozen=True)
class FunctionStat:
    """One function of a CPU profile, summed over every place it appears in the call tree.

    ``self_time`` is the time spent in the function's own code (its time minus its callees');
    ``total_time`` includes its callees and counts a recursive function once per outermost call.
    ``qualname`` is the qualified name (``module.Class.function`` as far as known; the module comes
    from the file of an imported module), the ``code.function.name`` of the self-time counter.
    """

    function: str
    file: str
    line: int
    self_time: float
    total_time: float
    qualname: str = ""


@dataclasses.dataclass
class CallNode:
    """A node of the call tree: a function at one call path, with its total and self time (s)."""

    function: str
    file: str
    line: int
    total_time: float
    self_time: float
    children: list[CallNode] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, eq=False)
class ProfileResult:
    """A CPU profile of one call.

    ``duration`` is wall time and ``cpu_time`` the process's CPU time over the call (all threads).
    ``profiled`` is False when pyinstrument could not start (another profiler was active): the
    call ran unprofiled and only ``duration``, ``cpu_time`` and the outcome are known.
    ``session`` is pyinstrument's ``Session`` (the renderers read it), ``None`` when unprofiled.
    """

    function: str
    duration: float
    cpu_time: float
    return_value: Any
    error: BaseException | None
    top_functions: tuple[FunctionStat, ...]
    call_tree: CallNode | None
    sample_count: int
    profiled: bool
    session: Session | None = dataclasses.field(default=None, repr=False)
    #: The hot path (see ``hot_path()``), outermost first; empty when unprofiled.
    hot_path: tuple[CallNode, ...] = ()
    #: Where the full profile was saved (``artifacts_dir``), or ``None``.
    artifact: str | None = None


@dataclasses.dataclass(frozen=True)
class AllocationSite:
    """Where memory still held at the peak was allocated: the innermost Python frame and its stack."""

    function: str
    file: str
    line: int
    bytes: int
    count: int
    #: Python frames (function, file, line), innermost first.
    stack: tuple[tuple[str, str, int], ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class MemoryProfileResult:
    """A memory profile of one call (memray).

    ``peak_memory`` is the highest heap size reached while tracking (bytes), ``total_allocations``
    and ``total_bytes`` count every allocation made, and ``top_sites`` are the sites holding the
    most memory at the peak. ``total_bytes`` is ``None`` when this memray version cannot tell.
    """

    function: str
    duration: float
    return_value: Any
    error: BaseException | None
    peak_memory: int
    total_allocations: int
    total_bytes: int | None
    top_sites: tuple[AllocationSite, ...]
    profiled: bool
    #: Where the full profile was saved (``artifacts_dir``), or ``None``.
    artifact: str | None = None


@dataclasses.dataclass(frozen=True)
class ProfilerStats:
    """What a profiler did: profiles taken by kind, profiles that could not start, budget skips."""

    profiles: dict[str, int]
    failed_to_start: dict[str, int]
    skipped_by_budget: int
    #: Artifact files written, and the ones that could not be (directory unwritable, disk full…).
    artifacts_written: int = 0
    artifact_failures: int = 0


def attach(exc: BaseException, result: ProfileResult | MemoryProfileResult) -> None:
    """Attach the profile of a call that raised to its exception, as ``__amqadf_profile__``."""
    # An exception type that refuses attributes keeps propagating as it is.
    with contextlib.suppress(Exception):
        exc.__amqadf_profile__ = result  # type: ignore[attr-defined]


def attached_profiled(exc: BaseException) -> bool:
    """Whether the call that raised ``exc`` ran under the profiler (its attached result says so)."""
    return bool(getattr(getattr(exc, "__amqadf_profile__", None), "profiled", False))


# --- the call tree ------------------------------------------------------------------------------
def hot_path(tree: CallNode, share: float = 0.1, max_depth: int = 12) -> tuple[CallNode, ...]:
    """Where the time went: from ``tree``'s root, the heaviest child at each level, while a frame
    holds at least ``share`` of the root's total time; at most ``max_depth`` frames."""
    total = tree.total_time
    path: list[CallNode] = []
    node: CallNode | None = tree
    while node is not None and len(path) < max_depth and total > 0 and node.total_time >= share * total:
        path.append(node)
        node = max(node.children, key=lambda c: c.total_time, default=None)
    return tuple(path)


def _frame_key(frame: Frame) -> tuple[str, str, int]:
    return frame.function, frame.file_path or "", frame.line_no or 0


def real_children(frame: Frame) -> list[Frame]:
    return [c for c in frame.children if not c.is_synthetic]


def read_tree(root: Frame, roots: list[Frame], top_n: int) -> tuple[CallNode, tuple[FunctionStat, ...]]:
    """The call tree of a profile and its ``top_n`` functions by self time; ``roots`` are the
    frames the profiled call made under pyinstrument's ``root``. The tree starts at the profiled
    function (or at ``root`` when the call made several frames)."""
    tree = build_tree(roots[0], real_children(roots[0])) if len(roots) == 1 else build_tree(root, roots)
    return tree, tuple(aggregate(roots)[:top_n])


def build_tree(root: Frame, roots: list[Frame]) -> CallNode:
    """A light copy of pyinstrument's frame tree (iterative: deep recursion must not overflow)."""
    function, file, line = _frame_key(root)
    top = CallNode(function, file, line, root.time, root.total_self_time)
    stack: list[tuple[Frame, CallNode]] = [(frame, top) for frame in reversed(roots)]
    while stack:
        frame, parent = stack.pop()
        function, file, line = _frame_key(frame)
        node = CallNode(function, file, line, frame.time, frame.total_self_time)
        parent.children.append(node)
        stack.extend((child, node) for child in reversed(real_children(frame)))
    return top


def aggregate(roots: list[Frame]) -> list[FunctionStat]:
    """Self and total time per function over the tree, by self time (largest first)."""
    self_times: dict[tuple[str, str, int], float] = {}
    total_times: dict[tuple[str, str, int], float] = {}
    class_names: dict[tuple[str, str, int], str] = {}
    # (frame, keys of its ancestors): a recursive function's total time counts its outermost call.
    stack: list[tuple[Frame, frozenset[tuple[str, str, int]]]] = [(f, frozenset()) for f in roots]
    while stack:
        frame, ancestors = stack.pop()
        key = _frame_key(frame)
        self_times[key] = self_times.get(key, 0.0) + frame.total_self_time
        if key not in class_names:
            class_names[key] = getattr(frame, "class_name", None) or ""
        if key not in ancestors:
            total_times[key] = total_times.get(key, 0.0) + frame.time
        inner = ancestors | {key}
        stack.extend((child, inner) for child in real_children(frame))
    stats = [
        FunctionStat(
            function,
            file,
            line,
            self_times[key],
            total_times.get(key, 0.0),
            _qualified(function, file, class_names.get(key, "")),
        )
        for key in self_times
        for function, file, line in (key,)
    ]
    stats.sort(key=lambda s: (-s.self_time, -s.total_time, s.function))
    return stats


def _qualified(function: str, file: str, class_name: str) -> str:
    """``module.Class.function`` as far as known (module: the imported module of ``file``)."""
    name = f"{class_name}.{function}" if class_name else function
    module = _module_of(file)
    return f"{module}.{name}" if module else name


@functools.lru_cache(maxsize=1024)
def _module_of(file: str) -> str:
    """The name of the imported module whose ``__file__`` is ``file``, or ``""`` (cached)."""
    if not file or file.startswith("<"):
        return ""
    target = os.path.normcase(os.path.abspath(file))
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.normcase(os.path.abspath(path)) == target:
            return "" if name == "__main__" else name
    return ""


# --- memray captures ----------------------------------------------------------------------------
def read_memray(path: str, top_n: int) -> tuple[int, int, int | None, tuple[AllocationSite, ...]]:
    """Peak, allocation count, bytes allocated and the top sites at the peak, from a capture file."""
    from memray import FileReader

    reader = FileReader(path)
    try:
        metadata = reader.metadata
        by_site: dict[tuple[str, str, int], list[Any]] = {}
        for record in reader.get_high_watermark_allocation_records(merge_threads=True):
            stack = tuple((str(f), str(p), int(n)) for f, p, n in record.stack_trace())
            key = stack[0] if stack else ("<unknown>", "", 0)
            entry = by_site.setdefault(key, [0, 0, stack])
            entry[0] += record.size
            entry[1] += record.n_allocations
    finally:
        reader.close()
    sites = sorted(
        (
            AllocationSite(function, file, line, size, count, stack)
            for (function, file, line), (size, count, stack) in by_site.items()
        ),
        key=lambda s: (-s.bytes, -s.count),
    )
    return metadata.peak_memory, metadata.total_allocations, _total_bytes(path), tuple(sites[:top_n])


def _total_bytes(path: str) -> int | None:
    """Bytes allocated over the capture, through the statistics ``memray stats`` prints."""
    try:
        from memray._memray import compute_statistics

        return int(compute_statistics(path, num_largest=1).total_memory_allocated)
    except Exception:  # not in this memray version: the total is unknown, not wrong
        return None
