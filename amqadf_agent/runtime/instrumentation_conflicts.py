"""One clear line when an installed instrumentation does not support the installed library, and
none when another installed configurator is rightly skipped.

An instrumentation supports a range of its library's versions; outside it (SQLAlchemy 2.1 under
the SQLAlchemy instrumentation 0.66b1) it instruments nothing and the library's calls make no spans
at all. OpenTelemetry says so in one error record whose text quotes a requirement with its extra
marker (``"sqlalchemy<2.1.0,>=1.0.0; extra == "instruments""``) and names no fix. The agent
rewrites that record, in place and only that record, into a line that says what is installed,
what is supported, what it costs (no spans) and what to do. Nothing is imported for this: the
filter sits on the two loggers by name and reads the record it is given.

With ``opentelemetry-distro`` installed too (``opentelemetry-bootstrap`` suggests it), every start
through our distro warned "Configuration of configurator not loaded because amqadf is set by
OTEL_PYTHON_CONFIGURATOR" (or "..., amqadf already loaded"): the user chose ours, so those records
are dropped (the distro installs the filter before the configurators load); another choice still warns.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

#: The loggers that report a conflict: the zero-code loader's (one record per instrumentation)
#: and an instrumentor's own, when the application calls ``instrument()`` itself.
LOGGERS = (
    "opentelemetry.instrumentation.auto_instrumentation._load",
    "opentelemetry.instrumentation.instrumentor",
)
_LOADER_TEXT = re.compile(
    r'^(?P<name>\S+) only instruments "(?P<required>.+)", but currently installed version '
    r'\("(?P<found>.+)"\) falls outside of that range'
)
_PREFIX = "amqadf-agent: "
#: Our configurator's entry-point name (``distro.NAME``; not imported: that module loads the SDK).
_OURS = "amqadf"


class ConflictLine(logging.Filter):
    """Rewrites a version-conflict record; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):  # a record we cannot read stays as it was
            if _skipped_for_ours(record):
                return False
            line = _line_for(record)
            if line is not None:
                record.msg, record.args = line, ()
        return True


def install() -> None:
    """Put the filter on the conflict loggers (idempotent)."""
    for name in LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, ConflictLine) for f in target.filters):
            target.addFilter(ConflictLine())


def _skipped_for_ours(record: logging.LogRecord) -> bool:
    """Another configurator not loaded because ours was chosen: expected, not a warning."""
    args = record.args
    return (
        isinstance(record.msg, str)
        and record.msg.startswith("Configuration of %s not loaded")  # "because ... is set", "already loaded"
        and isinstance(args, tuple)
        and len(args) >= 2
        and args[1] == _OURS
    )


def _line_for(record: logging.LogRecord) -> str | None:
    if record.levelno < logging.ERROR:  # "not installed at all" is logged at debug: not a problem
        return None
    msg: Any = record.msg
    if isinstance(msg, str) and msg.startswith(_PREFIX):
        return None
    instrumentation = ""
    if hasattr(msg, "required") and hasattr(msg, "found"):  # the instrumentor logs the conflict itself
        required, found = msg.required, msg.found
    else:
        match = _LOADER_TEXT.match(str(msg))
        if match is None:
            return None
        instrumentation, required, found = match["name"], match["required"], match["found"]
    if not required or not found:
        return None
    return describe(str(required), str(found), instrumentation)


def describe(required: str, found: str, instrumentation: str = "") -> str:
    """The line for a requirement such as ``sqlalchemy<2.1.0,>=1.0.0; extra == "instruments"`` that
    the installed ``found`` (``sqlalchemy 2.1.0``) does not meet."""
    library, _, version = found.partition(" ")
    supported = required.split(";", 1)[0].strip()
    with contextlib.suppress(Exception):
        from packaging.requirements import Requirement  # (a dependency of the instrumentations)

        parsed = Requirement(required)
        library = parsed.name
        bounds = sorted(parsed.specifier, key=lambda s: (not s.operator.startswith(">"), s.version))
        supported = f"{parsed.name} {', '.join(str(s) for s in bounds)}".strip()
    package = _distribution_of(instrumentation) if instrumentation else ""
    who = f"{package} (entry point {instrumentation!r})" if package else f"the {library} instrumentation"
    return (
        f"{_PREFIX}{library} {version or found} is installed, but {who} supports only {supported}: "
        f"{library}'s calls make no spans. Install a {library} version in that range, or a release of "
        f"the instrumentation that supports {version or found}."
    )


def _distribution_of(entry_point_name: str) -> str:
    """``opentelemetry-instrumentation-sqlalchemy 0.66b1`` for the entry point ``sqlalchemy``."""
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="opentelemetry_instrumentor", name=entry_point_name):
        dist = getattr(entry_point, "dist", None)
        if dist is not None:
            return f"{dist.name} {dist.version}"
    return ""
