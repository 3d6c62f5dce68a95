"""The one set of parsers behind every setting, and the one "did you mean".

Each parser turns a raw value (a string from a file or a variable, or a Python value given to
``start()``) into its typed value or raises ``ValueError``, and says in words what it expects, so a
message reads ``exporter.endpoint: must be a URL, got 'foo'`` wherever the value came from.
``ProductionConfig`` (``config.schema``) and ``start()`` (``runtime.settings``) both use these.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from amqadf_agent.config.secrets import Secret

T = TypeVar("T")

#: Levels of the agent's logger (``log_level``), as the ``logging`` module names them.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Names other OpenTelemetry SDKs give levels in ``OTEL_LOG_LEVEL`` (and ``WARN``), as ours.
LOG_LEVEL_ALIASES = {
    "WARN": "WARNING",
    "VERBOSE": "DEBUG",
    "TRACE": "DEBUG",
    "ALL": "DEBUG",
    "FATAL": "CRITICAL",
}


class Parser(Generic[T]):
    """A parse function and the words for what it accepts (``"a positive number"``)."""

    __slots__ = ("expected", "parse")

    def __init__(self, parse: Callable[[Any], T], expected: str) -> None:
        self.parse = parse
        self.expected = expected

    def __call__(self, value: Any) -> T:
        return self.parse(value)

    def expecting(self, expected: str) -> Parser[T]:
        """The same parser with other words (``"a directory path"`` for a path)."""
        return Parser(self.parse, expected)

    def __repr__(self) -> str:
        return f"Parser({self.expected!r})"


class PartlyKnown(ValueError):
    """Some names of a list are unknown: ``known`` holds the others, ``unknown`` the first bad one."""

    def __init__(self, known: tuple[str, ...], unknown: str) -> None:
        super().__init__(unknown)
        self.known, self.unknown = known, unknown


def did_you_mean(word: str, options: Iterable[str], *, cutoff: float = 0.6, prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``word``, or ``""`` when none is close."""
    import difflib  # only for a mistake: not at every start

    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=cutoff)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def log_level(value: object) -> str | None:
    """The level ``value`` names (``"warn"`` -> ``"WARNING"``), or None when it names none of ours."""
    text = str(value).strip().upper()
    text = LOG_LEVEL_ALIASES.get(text, text)
    return text if text in LOG_LEVELS else None


def parse_headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` syntax: ``key1=value1,key2=value2`` (URL-encoded)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(item)
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


# -- the parsers -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError


def _log_level(value: Any) -> str:
    level = log_level(value)
    if level is None:
        raise ValueError
    return level


def _path(value: Any) -> Path:
    return Path(_text(os.fspath(value) if isinstance(value, os.PathLike) else value))


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


def _url(value: Any) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    return text


text: Parser[str] = Parser(_text, "a non-empty string")
boolean: Parser[bool] = Parser(_bool, "true or false")
level: Parser[str] = Parser(_log_level, "one of " + ", ".join(LOG_LEVELS))
path: Parser[Path] = Parser(_path, "a path")
prefix: Parser[str] = Parser(_prefix, "a string")
url: Parser[str] = Parser(_url, "a URL")


def optional(parser: Parser[T]) -> Parser[T | None]:
    """``parser``, with None accepted as "not set"."""
    return Parser(lambda value: None if value is None else parser(value), parser.expected)


def number(low: float, high: float = math.inf, *, low_open: bool = False) -> Parser[float]:
    """A finite number from ``low`` (excluded when ``low_open``) to ``high``; never a bool."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        result = float(value)
        if not math.isfinite(result) or result > high or result < low or (low_open and result == low):
            raise ValueError
        return result

    if high == math.inf:
        expected = "a positive number" if low == 0 and low_open else f"a number >= {low:g}"
    elif low_open:
        expected = f"a number above {low:g}, at most {high:g}"
    else:
        expected = f"a number from {low:g} to {high:g}"
    return Parser(parse, expected)


def integer(low: int, high: int | None = None) -> Parser[int]:
    """A whole number from ``low`` to ``high``: an int or its digits, never a bool or a float."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError
        result = int(value)
        if result < low or (high is not None and result > high):
            raise ValueError
        return result

    if high is not None:
        expected = f"a whole number from {low} to {high}"
    else:
        expected = "a positive whole number" if low == 1 else f"a whole number >= {low}"
    return Parser(parse, expected)


port = integer(1, 65535).expecting("a port number from 1 to 65535")


def choice(*options: str, upper: bool = False) -> Parser[str]:
    """One of ``options``, compared case-insensitively."""

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError
        result = value.strip().upper() if upper else value.strip().lower()
        if result not in options:
            raise ValueError
        return result

    return Parser(parse, "one of " + ", ".join(options))


def _strings(value: Any) -> tuple[str, ...]:
    """The words of a list or a comma-separated string, stripped, empty ones and duplicates dropped."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError
    if not all(isinstance(item, str) for item in items):
        raise ValueError
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def names(*options: str) -> Parser[tuple[str, ...]]:
    """A list of ``options`` (or a comma-separated string), lower-cased, duplicates dropped.

    Raises ``PartlyKnown`` (a ``ValueError``) when some are known and some are not, so a caller
    that keeps going can use the known ones.
    """

    def parse(value: Any) -> tuple[str, ...]:
        found = tuple(dict.fromkeys(item.lower() for item in _strings(value)))
        known = tuple(name for name in found if name in options)
        unknown = [name for name in found if name not in options]
        if not known:
            raise ValueError
        if unknown:
            raise PartlyKnown(known, unknown[0])
        return found

    return Parser(parse, "a list of " + ", ".join(options))


#: A list of free words (or a comma-separated string), duplicates dropped; empty is allowed.
strings = Parser(_strings, "a list of names (or a comma-separated string)")


#: RFC 9110 ``token``: the characters a header (and a gRPC metadata key) name may use.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"{str(value)[:40]!r} is not a header name")
    return value.lower()


header_name: Parser[str] = Parser(_header_name, "a header name such as x-api-key")


def headers_with(value_parser: Callable[[str, Any], T], *, text: bool) -> Parser[dict[str, T]]:
    """Header name -> value, names lower-cased; with ``text``, a string in
    ``OTEL_EXPORTER_OTLP_HEADERS`` syntax is read too.

    ``value_parser(name, value)`` makes each value (a ``Secret``); a message never shows a value.
    """

    def parse(value: Any) -> dict[str, T]:
        if text and isinstance(value, str):
            value = parse_headers(value)
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of header names to values")
        result: dict[str, T] = {}
        for key, item in value.items():
            name = _header_name(key)
            result[name] = value_parser(name, item)
        return result

    return Parser(parse, "a mapping of header names to values")


def _plain_secret(name: str, value: Any) -> Secret:
    if isinstance(value, str):
        return Secret(value, name)
    if not isinstance(value, Secret):
        raise ValueError(f"the value of {name!r} must be a string or a Secret")
    return value


#: Headers whose values are literal strings or ``Secret``s, given as a mapping (what ``start()`` takes).
headers = headers_with(_plain_secret, text=False)
