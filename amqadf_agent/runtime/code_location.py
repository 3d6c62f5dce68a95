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
the paths from the instrumentation out to the application are learned (``application_frame``, taken
inline by the processor) and a call site's three attributes are remembered as one mapping, so a
client span costs about 6% of the SDK's own span in instructions and 0.8-1.0 µs of CPU time here
(9-10%), 0 to 40 library frames deep. With the N+1 watch, which comes with it, a db span under a
parent costs 14% more, so ``agent.code_location`` stays off by default
(``tests/bench/bench_code_location.py`` measures it beside the SDK's own span; docs/performance.md
has the figures).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import site
import sys
import sysconfig
from collections.abc import Hashable, Iterator
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import SpanKind

from amqadf_agent import semconv
from amqadf_agent.runtime.task_origin import awaiting_frames

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "LIBRARY_MODULES",
    "CodeLocationProcessor",
    "application_frame",
    "application_stack",
    "awaiting_frame",
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

_FUNCTION = semconv.ATTR_CODE_FUNCTION_NAME
_FILE = semconv.ATTR_CODE_FILE_PATH
_LINE = semconv.ATTR_CODE_LINE_NUMBER

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


_getframe = sys._getframe
_LIBRARY_DIRECTORIES = _library_directories()
_PACKAGE_DIRECTORIES = ("/site-packages/", "/dist-packages/", "\\site-packages\\")
#: id of a code object -> (function name, file) when it is the application's, () when not. Keyed by
#: id: a code object computes its hash from its names and constants on every look-up (about 1 µs for
#: a small function, more for a large one), an id costs nothing. ``_codes`` holds every code object
#: classified, so that no id is reused by another while its entry is here. Bounded by the code
#: objects of the process.
_cache: dict[int, tuple[str, str] | tuple[()]] = {}
_codes: list[CodeType] = []
_NOT_APPLICATION: tuple[()] = ()
#: id of the code object of a library frame, or another key of a call path (``application_frame``)
#: -> the paths out to the application's frame: (how many frames out, the code object of the
#: library frame just inside the application's, compared by identity), up to ``MAX_JUMPS``, the
#: shortest first (then by the code object's id). Bounded by the code objects and scopes; the code
#: objects are classified, so held by ``_codes`` anyway.
_jumps: dict[Hashable, list[tuple[int, CodeType]]] = {}
#: Paths a key: an ORM has a dozen entry points (a query, a get, a flush, a lazy load...), each a path.
MAX_JUMPS = 16


def _known(frame: FrameType) -> tuple[str, str] | tuple[()]:
    """``_cache``'s entry for ``frame``'s code, classified on first sight."""
    code = frame.f_code
    known = _cache.get(id(code))
    if known is None:
        known = _cache[id(code)] = _classify(frame)
        _codes.append(code)
    return known


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
    return bool(_known(frame))


def application_frame(depth: int = 1, key: Hashable | None = None) -> FrameType | None:
    """The innermost application frame of the caller's stack, or None (the call came from a library
    with no application code above it, e.g. the agent's own threads).

    Reading ``f_back`` makes CPython build a frame object for every frame walked (most of the
    walk's cost), while ``sys._getframe(n)`` skips to the n-th frame in C and builds only that one.
    So each path from the ``depth``-th frame out to the application's is learned per ``key`` (by
    default the code object of that first frame) as its length and the library function the
    application called (the frame just inside the application's); up to ``MAX_JUMPS`` paths a key:
    an ORM's query and its flush reach the instrumentation through different functions and depths,
    and a request takes both. The next call with that key tries them, the shortest first: the
    frame found must be the application's and the one below it that same library function, else
    the frames are walked one by one again. (That function, not any library frame: a longer path's
    length, tried on a shorter path, can land on an outer application frame, a middleware under its
    web framework, with a library frame below it.) A jump can miss an application frame that sits
    between two library frames below the learned distance (code the library calls back, issuing a
    query itself): then the outer application frame is reported. A ``key`` that tells call paths
    apart without a frame (the instrumentation scope of the span) saves building the first frame.
    """
    cache = _cache
    if key is None:
        key = id(sys._getframe(depth).f_code)  # classified by the walk below, so kept alive
    paths = _jumps.get(key)
    if paths is not None:
        for jump, entry in paths:
            try:  # the library frame first: a path that does not match costs one frame, not two
                if sys._getframe(depth + jump - 1).f_code is not entry:
                    continue
                found = sys._getframe(depth + jump)
            except ValueError:  # a shallower stack than that path's
                continue
            if cache.get(id(found.f_code)):
                return found
    frame: FrameType | None = sys._getframe(depth)
    inner: FrameType | None = None
    walked = 0
    while frame is not None:
        known = _known(frame)
        if known:
            if inner is not None:  # (classified on the way: its code object is kept alive)
                known_paths = {(n, id(c)): (n, c) for n, c in (*(paths or ()), (walked, inner.f_code))}
                order = sorted(known_paths)
                while len(order) > MAX_JUMPS:  # the longest other than this one goes
                    order.remove(max(p for p in order if p[0] != walked))
                _jumps[key] = [known_paths[p] for p in order]
            return frame
        if _task_root(frame):  # what runs the task is the event loop, not the call's caller
            return None
        inner = frame
        frame = frame.f_back
        walked += 1
    return None


#: A coroutine's code, an async generator's, or a generator-based coroutine's (``types.coroutine``).
_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _task_root(frame: FrameType) -> bool:
    """Whether ``frame`` is the outermost coroutine of an asyncio task (or of any coroutine runner):
    a coroutine's frame not resumed by another coroutine. Out from it come the event loop and whatever
    started the loop (an application's ``asyncio.run(main())``), none of them the call's caller: the
    frames that ask for the task's result are on the stacks of the tasks that await it."""
    if not frame.f_code.co_flags & _ASYNC_CODE:
        return False
    back = frame.f_back
    return back is None or not back.f_code.co_flags & _ASYNC_CODE


#: id of a code object -> instruction offset -> that call site's code attributes (function, file,
#: line), ready to be merged into a span's attributes: ``f_lineno`` decodes the code's line table up
#: to the offset on every read (0.4 µs for a short function, more for a long one), a call site's
#: line never changes, and one merge of a prepared mapping costs less than three stores. For the
#: frames ``application_frame`` found (their code objects are kept alive by ``_codes``), so a code
#: object here is the application's. Bounded by the call sites that issue client calls; emptied if
#: it holds ``_MAX_SITES``.
_sites: dict[int, dict[int, dict[str, str | int]]] = {}
_site_count = 0
_MAX_SITES = 65536


def site_attributes(frame: FrameType) -> dict[str, str | int]:
    """The code attributes of a frame ``application_frame`` found (``code.function.name``,
    ``code.file.path``, ``code.line.number``), remembered by code object and instruction offset.
    The mapping is shared: merged into a span's attributes, never handed out."""
    global _site_count
    offset = frame.f_lasti
    of_code = _sites.get(id(frame.f_code))
    if of_code is not None:
        attributes = of_code.get(offset)
        if attributes is not None:
            return attributes
    elif _site_count >= _MAX_SITES:
        _sites.clear()
        _site_count = 0
    if of_code is None:
        of_code = _sites[id(frame.f_code)] = {}
    name, filename = _cache[id(frame.f_code)]  # type: ignore[misc]  # an application frame's
    attributes = of_code[offset] = {_FUNCTION: name, _FILE: filename, _LINE: frame.f_lineno}
    _site_count += 1
    return attributes


def describe(frame: FrameType) -> tuple[str, str, int]:
    """``(function name, file, line)`` of ``frame``."""
    known = _known(frame)
    if known:
        return known[0], known[1], frame.f_lineno
    code = frame.f_code
    return getattr(code, "co_qualname", code.co_name), code.co_filename, frame.f_lineno


def awaiting_frame() -> FrameType | None:
    """The innermost application frame that awaits the running asyncio task, or None: where a call
    issued as a task of its own (``asyncio.gather(*(client.get(u) for u in urls))``) was asked for,
    when the task's own stack holds no application frame (``task_origin``)."""
    frames = awaiting_frames(is_application)
    return frames[-1] if frames else None


def application_stack(depth: int = 1, limit: int = MAX_STACK_FRAMES, max_chars: int = 4096) -> str:
    """The application's frames of the caller's stack, innermost last, as Python prints a traceback
    (``File "app.py", line 12, in orders``); at most ``limit`` frames and ``max_chars`` characters,
    the outermost frames dropped first. In an asyncio task, the application's frames that await it
    (``task_origin``) come outside the task's own: the coroutine that gathered it, at its ``await``."""
    lines: list[str] = []
    size = 0
    stack: FrameType | None = sys._getframe(depth)
    frames: Iterator[FrameType] = itertools.chain(_outward(stack), reversed(awaiting_frames(is_application)))
    for frame in frames:
        if len(lines) >= limit:
            break
        known = _known(frame)
        if known:
            name, filename = known
            line = f'  File "{filename}", line {frame.f_lineno}, in {name}'
            size += len(line) + 1
            if size > max_chars + 1:
                break
            lines.append(line)
    lines.reverse()
    return "\n".join(lines)


def _outward(frame: FrameType | None) -> Iterator[FrameType]:
    """The frames from ``frame`` out, up to the outermost coroutine of the running task."""
    while frame is not None:
        yield frame
        if _task_root(frame):
            return
        frame = frame.f_back


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
        try:
            kind = span._kind  # the property costs 3x the attribute, on every span
        except AttributeError:  # another layout of the SDK's
            kind = span.kind
        if kind is not _CLIENT:
            return
        # Out from here: the provider's span processors, the SDK's span start, then the
        # instrumentation, then the libraries. Those frames are the same for every span of one
        # instrumentation scope up to its call path: the scope keys the learned distance.
        try:
            scope: Hashable = span._instrumentation_scope._name  # type: ignore[union-attr]
        except AttributeError:  # no scope, or another layout of the SDK's: keyed by the frame
            scope = None
        # application_frame(2, scope)'s learned paths, inline (a call less on every client span),
        # with its checks in its order; its own call when none is taken or the frame is new.
        for jump, entry in _jumps.get(scope, ()):
            try:  # frame ``jump`` from here is application_frame's ``depth + jump - 1``
                inner = _getframe(jump)
            except ValueError:  # a shallower stack than that path's
                continue
            if inner.f_code is not entry:
                continue
            found = inner.f_back
            if found is None:
                continue
            of_code = _sites.get(id(found.f_code))
            if of_code is not None:  # an application call site's code
                try:
                    attributes = of_code[found.f_lasti]
                except KeyError:  # a new call site of that code
                    attributes = site_attributes(found)
                break
            if _cache.get(id(found.f_code)):
                attributes = site_attributes(found)
                break
        else:
            frame = application_frame(2, scope)
            if frame is None:
                frame = awaiting_frame()  # a call issued as a task of its own: where it is awaited
                if frame is None:
                    return
            attributes = site_attributes(frame)
        try:
            bounded: Any = span._attributes
            store = bounded._dict
            maxlen = bounded.maxlen
            # (a span being started: its mapping is never immutable yet)
            if bounded.max_value_len is None and (maxlen is None or len(store) + 3 <= maxlen):
                if _FUNCTION not in store:
                    store |= attributes  # in the order of set_attributes: function, file, line
                return
        except AttributeError:  # another SDK's span, or another layout of the SDK's
            pass
        if not (span.attributes or {}).get(_FUNCTION):
            span.set_attributes(dict(attributes))

    # on_end: the base class's, empty; the agent's provider does not call it (providers.span_processors)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
