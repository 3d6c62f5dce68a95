"""Where a client call came from: the application's frame, on every database and HTTP client span.

A finding that says "N+1 queries" is only useful once it also says *which line loops*. The span
processor here puts the application's calling frame on each CLIENT span as it starts, with the
OpenTelemetry code attributes (``code.function.name``, ``code.file.path``, ``code.line.number``).
The application's frame is the first one, walking out from the instrumentation, that is none of: the
standard library, an installed package (site-packages: SQLAlchemy, psycopg, requests, the
OpenTelemetry instrumentations), a package named in ``LIBRARY_MODULES`` wherever it is installed, or
the agent itself (its demo service excepted: that one *is* an application).

An application installed into site-packages (``pip install .`` of the service itself) is taken for
a library, like every installed package: its spans then carry no location.

Cost: whether a code object belongs to the application is decided once and cached by code object,
and the distance from the instrumentation to the application is learned (``application_frame``), so
finding the frame costs about 0.5 µs even 40 frames deep. With the processor calls and the three
attributes a client span costs about 2 µs more, over the 1.5 µs budget, so ``agent.code_location``
is off by default (``tests/bench/bench_code_location.py`` measures it beside the SDK's own span).
"""

from __future__ import annotations

import contextlib
import os
import site
import sys
import sysconfig
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from amqadf_agent import semconv

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "LIBRARY_MODULES",
    "CodeLocationProcessor",
    "application_frame",
    "application_stack",
    "describe",
    "is_application",
]

#: Top-level packages that are never the application, even when they are not in site-packages (an
#: editable install, a vendored copy): the agent, OpenTelemetry, and the libraries whose internals
#: sit between application code and a client span.
LIBRARY_MODULES = frozenset(
    {
        "amqadf_agent",
        "opentelemetry",
        "wrapt",
        "sqlalchemy",
        "psycopg",
        "psycopg2",
        "requests",
        "urllib3",
        "httpx",
        "httpcore",
        "redis",
        "flask",
        "werkzeug",
        "django",
        "starlette",
        "fastapi",
        "gunicorn",
    }
)
#: Packages of the agent that are applications themselves.
_APPLICATION_MODULES = ("amqadf_agent.demo",)

#: Frames kept in a stack trace (``code.stacktrace``): the innermost ones.
MAX_STACK_FRAMES = 32


def _library_directories() -> tuple[str, ...]:
    """The standard library's and the installed packages' directories, each ending in a separator."""
    paths = sysconfig.get_paths()
    found = {paths.get(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # an old virtualenv's site module has none
        found.update(site.getsitepackages())
    user = getattr(site, "USER_SITE", None)
    if isinstance(user, str):
        found.add(user)
    return tuple(sorted(os.path.join(os.path.realpath(p), "") for p in found if p))


_LIBRARY_DIRECTORIES = _library_directories()
_PACKAGE_DIRECTORIES = ("/site-packages/", "/dist-packages/", "\\site-packages\\")
#: code object -> (function name, file) when it is the application's, () when not. Bounded by the
#: code objects of the process.
_cache: dict[CodeType, tuple[str, str] | tuple[()]] = {}
_NOT_APPLICATION: tuple[()] = ()
#: code object of a library frame -> how many frames out the application's frame was last found.
_jumps: dict[CodeType, int] = {}


def _classify(frame: FrameType) -> tuple[str, str] | tuple[()]:
    code = frame.f_code
    filename = code.co_filename
    # co_qualname (Class.method) is Python 3.11's; 3.10 has the bare name only.
    located = (getattr(code, "co_qualname", code.co_name), filename)
    if not filename or filename.startswith("<"):  # <frozen ...>, <string>: not a file to point at
        return _NOT_APPLICATION
    module = frame.f_globals.get("__name__")
    if isinstance(module, str):
        if module.startswith(_APPLICATION_MODULES):
            return located
        if module.partition(".")[0] in LIBRARY_MODULES:
            return _NOT_APPLICATION
    if any(part in filename for part in _PACKAGE_DIRECTORIES):
        return _NOT_APPLICATION
    real = os.path.realpath(filename) if not filename.startswith(_LIBRARY_DIRECTORIES) else filename
    return _NOT_APPLICATION if real.startswith(_LIBRARY_DIRECTORIES) else located


def is_application(frame: FrameType) -> bool:
    """Whether ``frame`` runs the application's code (cached by code object)."""
    known = _cache.get(frame.f_code)
    if known is None:
        known = _cache[frame.f_code] = _classify(frame)
    return bool(known)


def application_frame(depth: int = 1) -> FrameType | None:
    """The innermost application frame of the caller's stack, or None (the call came from a library
    with no application code above it, e.g. the agent's own threads).

    Reading ``f_back`` makes CPython build a frame object for every frame walked (most of the
    walk's cost), while ``sys._getframe(n)`` skips to the n-th frame in C and builds only that one.
    So the distance from the first frame (the instrumentation's) to the application's is learned
    per code object, and the next call from there jumps: the frame found must be the application's
    and the one below it a library's, else the frames are walked one by one again. A jump can miss
    an application frame that sits between two library frames below the learned distance (code the
    library calls back, issuing a query itself): then the outer application frame is reported.
    """
    cache = _cache
    first = sys._getframe(depth)
    jump = _jumps.get(first.f_code)
    if jump is not None:
        try:
            found = sys._getframe(depth + jump)
            below = sys._getframe(depth + jump - 1)
        except ValueError:  # a shallower stack than last time
            pass
        else:
            if cache.get(found.f_code) and cache.get(below.f_code) == _NOT_APPLICATION:
                return found
    frame: FrameType | None = first
    walked = 0
    while frame is not None:
        code = frame.f_code
        known = cache.get(code)
        if known is None:
            known = cache[code] = _classify(frame)
        if known:
            if walked:
                _jumps[first.f_code] = walked
            return frame
        frame = frame.f_back
        walked += 1
    return None


def describe(frame: FrameType) -> tuple[str, str, int]:
    """``(function name, file, line)`` of ``frame``."""
    known = _cache.get(frame.f_code) or _classify(frame)
    if known:
        return known[0], known[1], frame.f_lineno
    code = frame.f_code
    return getattr(code, "co_qualname", code.co_name), code.co_filename, frame.f_lineno


def application_stack(depth: int = 1, limit: int = MAX_STACK_FRAMES, max_chars: int = 4096) -> str:
    """The application's frames of the caller's stack, innermost last, as Python prints a traceback
    (``File "app.py", line 12, in orders``); at most ``limit`` frames and ``max_chars`` characters,
    the outermost frames dropped first."""
    lines: list[str] = []
    size = 0
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None and len(lines) < limit:
        known = _cache.get(frame.f_code)
        if known is None:
            known = _cache[frame.f_code] = _classify(frame)
        if known:
            name, filename = known
            line = f'  File "{filename}", line {frame.f_lineno}, in {name}'
            size += len(line) + 1
            if size > max_chars + 1:
                break
            lines.append(line)
        frame = frame.f_back
    lines.reverse()
    return "\n".join(lines)


_FUNCTION = semconv.ATTR_CODE_FUNCTION_NAME
_FILE = semconv.ATTR_CODE_FILE_PATH
_LINE = semconv.ATTR_CODE_LINE_NUMBER
_CLIENT = SpanKind.CLIENT


class CodeLocationProcessor(SpanProcessor):
    """Puts the application's calling frame on every CLIENT span as it starts.

    A span that already carries ``code.function.name`` (set by its instrumentation) is left as it is.
    ``Span.set_attributes`` validates each value under a lock, about 1.1 µs per attribute here: more
    than the whole budget of this processor. The three values are known to be valid (two strings and
    an int), so while the span's attribute mapping is the SDK's ``BoundedAttributes`` with room for
    them and no value-length limit, they go into its dict directly; otherwise through
    ``set_attributes``.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.kind is not _CLIENT:
            return
        # Out from here: the SDK's span start, then the instrumentation, then the libraries.
        frame = application_frame(2)
        if frame is None:
            return
        name, filename = _cache[frame.f_code]  # type: ignore[misc]  # an application frame's
        try:
            bounded: Any = span._attributes
            store = bounded._dict
            maxlen = bounded.maxlen
            direct = (
                type(store) is dict
                and not bounded._immutable
                and bounded.max_value_len is None
                and (maxlen is None or len(store) + 3 <= maxlen)
            )
        except AttributeError:  # another SDK's span, or another layout of the SDK's
            direct = False
        if direct:
            if _FUNCTION not in store:
                store[_FUNCTION] = name
                store[_FILE] = filename
                store[_LINE] = frame.f_lineno
        elif not (span.attributes or {}).get(_FUNCTION):
            span.set_attributes({_FUNCTION: name, _FILE: filename, _LINE: frame.f_lineno})

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
