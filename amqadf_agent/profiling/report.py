"""Renders profile results as text, a complete HTML page, or speedscope JSON.

CPU profiles with a pyinstrument session use pyinstrument's own HTML and speedscope renderers
(imported here, when a report is asked for); everything else is rendered from the result alone.
"""

from __future__ import annotations

import html
import json
from typing import Any

from amqadf_agent.profiling.results import CallNode, MemoryProfileResult, ProfileResult

#: The speedscope file format's schema URL (the ``$schema`` key of every speedscope file).
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
#: Call-tree nodes below this share of the total are left out of the text report.
TREE_MIN_SHARE = 0.01
TREE_MAX_LINES = 60


def render(result: ProfileResult | MemoryProfileResult, format: str = "text") -> str:
    """``result`` rendered as ``text``, ``html`` or ``speedscope``."""
    if format == "text":
        return text(result)
    if format == "html":
        if isinstance(result, ProfileResult) and result.session is not None:
            from pyinstrument.renderers.html import HTMLRenderer

            return str(HTMLRenderer().render(result.session))
        return _html_page(result)
    if format == "speedscope":
        if isinstance(result, ProfileResult):
            if result.session is not None:
                from pyinstrument.renderers.speedscope import SpeedscopeRenderer

                return str(SpeedscopeRenderer().render(result.session))
            return json.dumps(_speedscope_document(result.function, []))
        return _memory_speedscope(result)
    raise ValueError(f"unknown report format {format!r}: use 'text', 'html' or 'speedscope'")


def text(result: ProfileResult | MemoryProfileResult) -> str:
    """A plain-text report: summary, top functions (or allocation sites), and the call tree."""
    if isinstance(result, ProfileResult):
        return _cpu_text(result)
    return _memory_text(result)


def _outcome(lines: list[str], result: ProfileResult | MemoryProfileResult, unprofiled: str) -> bool:
    """Add the lines for an exception and for a call that ran unprofiled (saying ``unprofiled``);
    whether there is a profile to show after them."""
    if result.error is not None:
        lines.append(f"  raised {type(result.error).__qualname__}: {result.error}")
    if not result.profiled:
        lines.append(f"  not profiled: {unprofiled}")
    return result.profiled


def _cpu_text(result: ProfileResult) -> str:
    lines = [
        f"CPU profile of {result.function}",
        f"  duration {result.duration:.6f} s   cpu {result.cpu_time:.6f} s   samples {result.sample_count}",
    ]
    if not _outcome(lines, result, "another profiler was active (the call ran unprofiled)"):
        return "\n".join(lines) + "\n"
    total = result.call_tree.total_time if result.call_tree is not None else 0.0
    lines += ["", "Top functions by self time:", "    self (s)  self %   total (s)  function  (location)"]
    for stat in result.top_functions:
        share = 100.0 * stat.self_time / total if total else 0.0
        lines.append(
            f"  {stat.self_time:10.6f}  {share:5.1f}%  {stat.total_time:10.6f}  "
            f"{stat.function}  ({stat.file}:{stat.line})"
        )
    if result.call_tree is not None:
        lines += ["", "Call tree (total s, self s):"]
        lines += _tree_lines(result.call_tree, total)
    return "\n".join(lines) + "\n"


def _tree_lines(root: CallNode, total: float) -> list[str]:
    lines: list[str] = []
    stack: list[tuple[CallNode, int]] = [(root, 0)]
    hidden = 0
    while stack:
        node, depth = stack.pop()
        if (total and node.total_time < TREE_MIN_SHARE * total) or len(lines) >= TREE_MAX_LINES:
            hidden += 1
            continue
        lines.append(
            f"  {'  ' * depth}{node.total_time:.6f} {node.self_time:.6f} {node.function}  "
            f"({node.file}:{node.line})"
        )
        children = sorted(node.children, key=lambda c: c.total_time)
        stack.extend((child, depth + 1) for child in children)
    if hidden:
        lines.append(f"  ({hidden} smaller call paths not shown)")
    return lines


def _memory_text(result: MemoryProfileResult) -> str:
    total_bytes = "unknown" if result.total_bytes is None else _size(result.total_bytes)
    lines = [
        f"Memory profile of {result.function}",
        f"  duration {result.duration:.6f} s   peak {_size(result.peak_memory)}   "
        f"allocations {result.total_allocations} ({total_bytes})",
    ]
    if not _outcome(lines, result, "memray could not track the call (it ran untracked)"):
        return "\n".join(lines) + "\n"
    lines += ["", "Top allocation sites at the peak:", "        bytes   count  function  (location)"]
    for site in result.top_sites:
        lines.append(
            f"  {_size(site.bytes):>11}  {site.count:6d}  {site.function}  ({site.file}:{site.line})"
        )
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable


def _html_page(result: ProfileResult | MemoryProfileResult) -> str:
    title = html.escape(f"Profile of {result.function}")
    body = html.escape(text(result))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n<pre>{body}</pre>\n</body>\n</html>\n"
    )


def _speedscope_document(name: str, profiles: list[dict[str, Any]], frames: Any = ()) -> dict[str, Any]:
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "activeProfileIndex": 0 if profiles else None,
        "exporter": "amqadf-agent",
        "shared": {"frames": list(frames)},
        "profiles": profiles,
    }


def _memory_speedscope(result: MemoryProfileResult) -> str:
    """Allocation sites at the peak as a speedscope "sampled" profile weighted in bytes."""
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str, int], int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for site in result.top_sites:
        stack = site.stack or ((site.function, site.file, site.line),)
        sample = []
        for frame in reversed(stack):  # speedscope wants the outermost frame first
            if frame not in index:
                index[frame] = len(frames)
                frames.append({"name": frame[0], "file": frame[1], "line": frame[2]})
            sample.append(index[frame])
        samples.append(sample)
        weights.append(site.bytes)
    profile = {
        "type": "sampled",
        "name": f"Memory at peak of {result.function}",
        "unit": "bytes",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }
    return json.dumps(_speedscope_document(f"Memory profile of {result.function}", [profile], frames))
