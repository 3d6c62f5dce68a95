"""Private by default: a span processor that takes literals, parameters and URL secrets out of spans.

Upstream instrumentations export ``db.statement``/``db.query.text`` as the application wrote it and
``url.full`` with its signed query string; the semantic conventions ask for both to be sanitized by
default. ``SanitizingSpanProcessor`` runs first among the tracer provider's processors and rewrites
a span when it ends (instrumentations set these attributes after the span starts, so ``on_start``
would see none of them); every processor after it, the exporters' included, sees only the result:

* the statement with its literals as ``?`` (``statements.sanitize``: the tokenizer the analyzer
  uses), bind placeholders kept, marked ``amqadf.db.query.sanitized``, and a ``db.query.summary``
  (``SELECT orders``, ``statements.summary``) when the span has none of its own; the values that were taken
  out, and the bind parameters the instrumentation captured (dropped unless ``keep_db_parameters``),
  survive only as ``amqadf.db.query.values_digest``: a keyed digest, so the analyzer can still
  tell identical repeats apart, and a short value (an id, a PIN) cannot be found back by hashing
  every candidate (the key is random per process and never leaves it);
* ``url.full``/``http.url``/``http.target`` with the password and every query value replaced,
  ``url.query`` likewise (``redaction.redact_url_full``);
* ``db.mongo.filter``/``db.mongo.pipeline`` (the older ext-pymongo instrumentation's) with every
  value as ``?``, the keys and operators kept (``statements.sanitize_document``);
* the attributes the user names (``redact_attributes``): an exact key (``user.email``), a glob
  (``http.request.header.*``) or a bare name that matches the key's last part (``authorization``
  matches ``http.request.header.authorization``), their values replaced by ``[secure]``.

* the attributes of every span event and every span link by the same rules (a statement's text
  only: no mark, digest or summary is added to an event or a link);
* exception events (``exception.message``, ``exception.stacktrace``) and the span's status
  description, by the rule of ``sanitize_message``: a database error that shows a statement or a
  key's value (``Key (email)=(a@b.c) already exists``) keeps its words, not its values;
* the span's name, when it is a statement with literals or holds a URL with a password or a query
  (``sanitize_name``): read at ``on_end``, so a name changed by ``update_name`` is the one checked.

Under a span attribute limit the attributes the processor adds give way first (the summary, then
the digest, then the mark), counted as dropped: never the statement they came from.

``SanitizingLogProcessor`` does the same for the log records exported with ``capture_logs``: the
user's ``redact_attributes`` and the default keys on their attributes, ``sanitize_message`` on the
body and on the exception attributes.

A span without any of these keys costs one set look-up per attribute and one dictionary look-up of
its name (a bounded memo of the names seen, each looked at once). A statement's whole rewrite (its
text, and the mark, summary and digest it adds) is memoized by its text (bounded), and so is a URL's
redaction, so a statement or URL seen before costs a dictionary hit and a copy of the attributes
(``tests/bench/bench_sanitize.py``). A failure here never reaches the application's ``span.end()``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Status

from amqadf_agent import semconv
from amqadf_agent.redaction import REDACTED, redact_query, redact_url_full
from amqadf_agent.statements import (
    SANITIZE_MEMO_MAX_CHARS,
    is_document_command,
    sanitize,
    sanitize_document,
    sanitize_values,
    summary,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from amqadf_agent.runtime.log_export import SanitizingLogProcessor as SanitizingLogProcessor

__all__ = [
    "SanitizingLogProcessor",
    "SanitizingSpanProcessor",
    "sanitize_message",
    "sanitize_name",
    "values_digest",
]

logger = logging.getLogger(__name__)

STATEMENT_KEYS = (semconv.ATTR_DB_QUERY_TEXT, semconv.ATTR_DB_STATEMENT_OLD)
#: Attributes that hold a URL (or a path with its query): password and query values go.
URL_KEYS = ("url.full", "http.url", "http.target")
#: Attributes that hold a query string alone.
QUERY_KEYS = ("url.query",)
#: Attributes that hold a MongoDB document alone (``str()`` of a filter or a pipeline, as the older
#: ext-pymongo instrumentation wrote them beside a ``db.statement`` without one): values go, keys stay.
DOCUMENT_KEYS = ("db.mongo.filter", "db.mongo.pipeline")
_STATEMENT, _URL, _QUERY, _DOCUMENT = 0, 1, 2, 3
#: The attributes sanitized by default, and what each holds.
_KINDS: dict[str, int] = (
    dict.fromkeys(STATEMENT_KEYS, _STATEMENT)
    | dict.fromkeys(URL_KEYS, _URL)
    | dict.fromkeys(QUERY_KEYS, _QUERY)
    | dict.fromkeys(DOCUMENT_KEYS, _DOCUMENT)
)
_PARAMETERS = semconv.ATTR_DB_STATEMENT_PARAMETERS_OLD
_PARAMETER_PREFIX = semconv.ATTR_DB_QUERY_PARAMETER_PREFIX

#: The key of the values digest: random per process, inherited by forked workers, never exported.
_KEY = os.urandom(16)


def values_digest(literals: Iterable[str], parameters: str = "") -> str:
    """A short keyed digest of a statement's literals and bound parameters (16 hex digits)."""
    import hashlib  # here: its import loads OpenSSL (~5 ms), which a start without SQL never needs

    text = "\x00".join(literals) + "\x01" + parameters
    return hashlib.blake2b(text.encode(), digest_size=8, key=_KEY).hexdigest()


#: What in an error message shows a database's values (besides a line that quotes a statement).
#: Every pattern here and below takes time linear in the text: it runs in ``span.end()``.
_MESSAGE_TRIGGER = re.compile(
    r"[\w)]=\(|\[SQL: |\[parameters: |^LINE \d+: |DETAIL: |constraint failed: ", re.MULTILINE
)
#: Words every trigger holds: a text without any of them is passed by one quick scan.
_TRIGGER_WORDS = re.compile(r"=\(|\[SQL|\[par|LINE |DETAIL|constraint failed|SELECT|INSERT|UPDATE|DELETE")
#: The keywords that make a line a quoted statement (upper-case, as SQL is written in code).
_STATEMENT_WORD = re.compile(r"\b(?:SELECT|FROM|INSERT\s+INTO|UPDATE|SET|DELETE\s+FROM)\b")
#: SQLite's ``CHECK constraint failed: <expression>``: its literals go.
_CONSTRAINT_FAILED = re.compile(r"(constraint failed: )(.*)$", re.MULTILINE)
#: ``Key (email)=(a@b.c)``, ``key=(value)``: where a value starts.
_KEY_VALUE = re.compile(r"[\w)]=\(")
#: PostgreSQL's ``LINE 1: SELECT ...`` quote of the statement.
_LINE_QUOTE = re.compile(r"^(LINE \d+: )(.*)$", re.MULTILINE)
#: What is left: single-quoted literals and e-mail addresses.
_QUOTED = re.compile(r"'(?:[^'\n\\]|''|\\.)*'")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MESSAGE_MAX_CHARS = 16_384
#: A statement quoted in a message longer than this is replaced whole: the tokenizer's time grows
#: faster than its text for some inputs (a long run of ``[``).
QUOTED_STATEMENT_MAX_CHARS = SANITIZE_MEMO_MAX_CHARS


def sanitize_message(text: str) -> str:
    """An exception message or log line without the values a database error put in it.

    The rule, conservative on purpose: a text that shows no statement and no key's value (none of
    ``x=(``, ``[SQL: ``, ``[parameters: ``, ``LINE n: ``, ``DETAIL: ``, ``constraint failed: ``,
    a line with ``SELECT`` and ``FROM``, ``INSERT INTO``, ``UPDATE`` and ``SET`` or ``DELETE FROM``
    in capitals) is returned unchanged. One that does loses, everywhere in it: the value of
    ``key=(value)`` (``=(?)``, to the last ``)`` of its line), the literals of the statement in
    ``[SQL: ...]``, ``LINE n: ...``, ``constraint failed: ...`` and of a line with those keywords
    (``statements.sanitize``), the whole of ``[parameters: ...]`` (``[secure]``), every
    single-quoted literal (``'?'``) and every e-mail-like value (``?``). Identifiers in double
    quotes (constraint and table names) stay. A text longer than ``MESSAGE_MAX_CHARS`` that
    qualifies is cut to it first; a block without its closing ``]`` runs to the end of the text; a
    statement longer than ``QUOTED_STATEMENT_MAX_CHARS`` becomes ``[secure]``.
    """
    if not _TRIGGER_WORDS.search(text):
        return text
    if not _MESSAGE_TRIGGER.search(text) and not any(map(_quotes_statement, text.split("\n"))):
        return text
    text = text[:MESSAGE_MAX_CHARS]
    text = _replace_blocks(text, "[parameters: ", lambda _body: REDACTED)
    text = _replace_blocks(text, "[SQL: ", _statement)
    text = _LINE_QUOTE.sub(lambda m: m.group(1) + _statement(m.group(2)), text)
    text = _CONSTRAINT_FAILED.sub(lambda m: m.group(1) + _statement(m.group(2)), text)
    text = "\n".join(_sanitize_line(line) for line in text.split("\n"))
    text = _QUOTED.sub("'?'", text)
    return _EMAIL.sub("?", text)


def _statement(text: str) -> str:
    return sanitize(text) if len(text) <= QUOTED_STATEMENT_MAX_CHARS else REDACTED


def _quotes_statement(line: str) -> bool:
    words = {" ".join(word.split()) for word in _STATEMENT_WORD.findall(line)}
    return (
        ("SELECT" in words and "FROM" in words)
        or "INSERT INTO" in words
        or ("UPDATE" in words and "SET" in words)
        or "DELETE FROM" in words
    )


def _sanitize_line(line: str) -> str:
    """A quoted statement with its literals as ``?``; a ``key=(value)``'s value as ``?``."""
    if _quotes_statement(line):
        line = _statement(line)
    found = _KEY_VALUE.search(line)
    if found is None:
        return line
    start = found.end()
    end = line.rfind(")")
    return line[:start] + "?" + (line[end:] if end >= start else ")")


def _replace_blocks(text: str, opener: str, replace: Callable[[str], str]) -> str:
    """Each ``opener...]`` block (its ``]`` at the end of a line; it may span lines) with its body
    replaced."""
    out: list[str] = []
    position = 0
    while (start := text.find(opener, position)) != -1:
        body = start + len(opener)
        end = text.find("]\n", body)
        if end == -1:
            end = len(text) - 1 if text.endswith("]") and len(text) - 1 >= body else len(text)
        closing = "]" if end < len(text) else ""
        out.append(text[position:start] + opener + replace(text[body:end]) + closing)
        position = end + len(closing)
    out.append(text[position:])
    return "".join(out)


#: A span name that starts as a statement does (``DELETE /users/7`` is an HTTP method and a path).
_STATEMENT_NAME = re.compile(
    r"\s*(?:SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE|MERGE|UPSERT|CALL|EXEC)\s+(?!/)", re.IGNORECASE
).match
#: What a literal in a statement starts with (a quote, a digit): a statement name without one is kept.
_NAME_LITERAL = re.compile(r"['\d]").search
#: The first letters of the keywords ``_STATEMENT_NAME`` knows, in both cases, and leading whitespace.
_STATEMENT_INITIALS = frozenset("SIUDWRMCEsiudwrmce \n\t\r")


def sanitize_name(name: str) -> str:
    """A span name without the literals of a statement or the secrets of a URL in it.

    Instrumentations of the past named spans after the whole statement (the DB-API instrumentation
    before open-telemetry/opentelemetry-python-contrib#246, asyncpg's before #1324), and applications
    still write ``tracer.start_span(sql)`` or ``start_span(url)``. A name that starts with a
    statement's keyword (``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``WITH``, ...; any case) and
    holds a quote or a digit goes through ``statements.sanitize``, and so does a command followed by
    a document (``find {'email': 'a@b.c'}``, as MongoDB instrumentations wrote it: its values as
    ``?``, its keys kept); then each space-separated word with
    ``://`` and a user info, query or fragment, or a path with a query (``/search?q=...``), through
    ``redaction.redact_url_full``. Any other name is returned as it is.
    """
    if (" " in name and _NAME_LITERAL(name) and _STATEMENT_NAME(name)) or (
        "{" in name and is_document_command(name)
    ):
        name = _statement(name)
    if "://" in name or ("?" in name and "/" in name):  # a URL, or a path with a query
        words = name.split(" ")
        changed = False
        for index, word in enumerate(words):
            if ("://" in word and ("@" in word or "?" in word or "#" in word)) or (
                word.startswith("/") and "?" in word
            ):
                redacted = redact_url_full(word)
                if redacted != word:
                    words[index], changed = redacted, True
        if changed:
            name = " ".join(words)
    return name


#: The attributes of an exception event (and of a log record with an exception) that carry text.
EXCEPTION_TEXT_KEYS = ("exception.message", "exception.stacktrace")


def _rewrite(statement: str) -> _Rewrite:
    """What a statement becomes: its sanitized text, the digest of its literals (``""``: none), whether
    it had bind placeholders, and the attributes a span's statement adds when nothing else is in play
    (no captured parameters, no summary or digest of its own): the mark, the summary, the digest."""
    text, literals, placeholders = sanitize_values(statement)
    digest = values_digest(literals) if literals else ""
    label = summary(text)
    added: dict[str, Any] = {}
    if digest:  # literals were taken out (a statement of bind placeholders only lost nothing)
        added[semconv.ATTR_DB_QUERY_SANITIZED] = True
    if label:
        added[semconv.ATTR_DB_QUERY_SUMMARY] = label
    if digest and not placeholders:  # placeholders whose values were not captured: no digest
        added[semconv.ATTR_DB_QUERY_VALUES_DIGEST] = digest
    return text, digest, placeholders, label, added


_Rewrite = tuple[str, str, bool, str, dict[str, Any]]
_T = TypeVar("_T")


def _memoized(
    memo: dict[str, _T], compute: Callable[[str], _T], text: str, max_chars: int, entries: int
) -> _T:
    """``compute(text)``, kept in ``memo`` when ``text`` is at most ``max_chars`` long (a miss; the hit is
    read inline by the caller). A plain dict emptied when full: a miss costs a look-up and an
    insertion, where an ``lru_cache`` also keeps its order and evicts an entry on every miss; a
    statement or URL used again after the memo was emptied costs one miss more."""
    result = compute(text)
    if len(text) <= max_chars:
        if len(memo) >= entries:
            memo.clear()
        memo[text] = result
    return result


#: A statement repeats (one code path, one text): its whole rewrite is kept by its text, so a repeat
#: is a dictionary hit and a merge of the attributes it adds. Longer statements are not kept: a bulk
#: ``INSERT`` of thousands of rows would keep its values (and megabytes) alive.
STATEMENT_MEMO_MAX_ENTRIES = 4096
_statement_memo: dict[str, _Rewrite] = {}
#: A URL repeats as a statement does (a paged API, a health check, a presigned URL reused until it
#: expires). A URL signed afresh for each request misses it and pays the redaction (``new signed
#: url.full`` in tests/bench/bench_sanitize.py).
URL_MEMO_MAX_CHARS = 2048
URL_MEMO_MAX_ENTRIES = 1024
_url_memo: dict[str, str] = {}
#: Span names repeat most of all (``GET /orders``, ``SELECT``): the name a span ends with is looked
#: up here first, and only a name not seen before is looked at (``sanitize_name``'s first tests).
NAME_MEMO_MAX_CHARS = 256
NAME_MEMO_MAX_ENTRIES = 1024
_name_memo: dict[str, str] = {}

_SANITIZED = semconv.ATTR_DB_QUERY_SANITIZED
_SUMMARY = semconv.ATTR_DB_QUERY_SUMMARY
_DIGEST = semconv.ATTR_DB_QUERY_VALUES_DIGEST
_QUERY_TEXT = semconv.ATTR_DB_QUERY_TEXT
#: What ``_kinds`` gives a key the user named: its value becomes ``[secure]``.
_EXACT = -1


def _name_of(name: str) -> str:
    """``name`` as a span may end with it (``sanitize_name``, after its cheap first tests)."""
    # A URL worth redacting has a "?" or "://", a MongoDB filter a "{"; a statement with literals
    # starts with one of a statement's initials and has a space and a quote or a digit.
    if (
        "?" in name
        or "://" in name
        or "{" in name
        or (name[:1] in _STATEMENT_INITIALS and " " in name and _NAME_LITERAL(name))
    ):
        return sanitize_name(name)
    return name


class SanitizingSpanProcessor(SpanProcessor):
    """Rewrites ended spans in place before the processors after it (the exporters) see them.

    Args:
        sanitize: statements and URLs are rewritten (false: only ``redact_attributes`` apply).
        keep_db_parameters: keep the bind parameters an instrumentation captured, as captured.
        redact_attributes: keys, globs or bare names whose values become ``[secure]``.
    """

    def __init__(
        self,
        *,
        sanitize: bool = True,
        keep_db_parameters: bool = False,
        redact_attributes: Iterable[str] = (),
    ) -> None:
        self.sanitize = sanitize
        self.keep_db_parameters = keep_db_parameters
        exact: set[str] = set()
        patterns: list[str] = []
        for name in redact_attributes:
            name = name.strip()
            if not name:
                continue
            if any(mark in name for mark in "*?["):
                patterns.append(fnmatch.translate(name))
            elif "." in name:
                exact.add(name)
            else:  # a bare name (lower-case, as header attributes are): the key or its last part
                exact.add(name.lower())
                patterns.append(r"(?s:.*\." + re.escape(name.lower()) + r")\Z")
        self._pattern = re.compile("|".join(patterns)) if patterns else None
        #: What each watched key holds (a key the user named is redacted whatever it holds).
        self._kinds: dict[str, int] = (dict(_KINDS) if sanitize else {}) | dict.fromkeys(exact, _EXACT)
        self._watched = frozenset(self._kinds)

    # on_start: the base class's, empty; the agent's provider does not call it (providers.span_processors)

    def on_end(self, span: ReadableSpan) -> None:
        # on_end, not on_start: the name is the one the span ends with (after any update_name), and
        # instrumentations set their attributes and events after the span starts.
        if self.sanitize:
            name = span._name
            sanitized = _name_memo.get(name)
            if sanitized is None and isinstance(name, str):
                try:  # a name that failed is not kept: it is tried again on the next span
                    sanitized = _memoized(
                        _name_memo, _name_of, name, NAME_MEMO_MAX_CHARS, NAME_MEMO_MAX_ENTRIES
                    )
                except Exception:  # never into the application's span.end()
                    logger.debug("could not sanitize the name of a span", exc_info=True)
            if sanitized is not name and sanitized is not None:
                span._name = sanitized
        # The SDK's containers are read through what they hold (an ended span's do not change): their
        # Python-level __len__ and __iter__ (a copy under a lock) cost more than the rest of a span's
        # rewrite. A ReadableSpan built by hand holds plain sequences and dicts. The events' and the
        # links' blocks are written out, not looped over: a tuple of bound methods per span costs more
        # than either test, and each keeps its own try so one's failure does not skip the other.
        events = span._events
        if events._dq if type(events) is BoundedList else events:  # type: ignore[attr-defined]
            try:
                self._sanitize_events(span)
            except Exception:  # never into the application's span.end()
                logger.debug("could not sanitize the events of span %r", span.name, exc_info=True)
        links = span._links
        if links._dq if type(links) is BoundedList else links:  # type: ignore[attr-defined]
            try:
                self._sanitize_links(span)
            except Exception:  # never into the application's span.end()
                logger.debug("could not sanitize the links of span %r", span.name, exc_info=True)
        container = span._attributes
        attributes = container._dict if type(container) is BoundedAttributes else container
        if not attributes or (self._pattern is None and self._watched.isdisjoint(attributes)):
            return  # the common span: nothing to look at
        try:
            changed = self.rewrite(attributes)
        except Exception:  # never into the application's span.end()
            logger.debug("could not sanitize span %r", span.name, exc_info=True)
            return
        if changed is None:
            return
        if type(container) is BoundedAttributes and (
            container.maxlen is None or len(changed) <= container.maxlen
        ):
            container._dict = changed  # _replace_attributes' common case, without its call
        else:
            _replace_attributes(span, changed)

    def _sanitize_events(self, span: ReadableSpan) -> None:
        """Every event's attributes by the span's rules (a statement's text only, no marks added),
        ``sanitize_message`` on exception events and on the span's status description."""
        for event in span._events:
            attributes = event._attributes
            if not attributes:
                continue
            changed: dict[str, Any] | None = None
            if not self._watched.isdisjoint(attributes) or self._pattern is not None:
                changed = self.rewrite(attributes, marks=False)
            if self.sanitize and event.name == "exception":
                for key in EXCEPTION_TEXT_KEYS:
                    value = (attributes if changed is None else changed).get(key)
                    if isinstance(value, str):
                        sanitized = sanitize_message(value)
                        if sanitized != value:
                            changed = dict(attributes) if changed is None else changed
                            changed[key] = sanitized
            if changed is not None and changed != dict(attributes):
                event._attributes = _bounded_like(attributes, changed)
        if not self.sanitize:
            return
        status = span._status
        if status.description:
            description = sanitize_message(status.description)
            if description != status.description:
                span._status = Status(status.status_code, description)

    def _sanitize_links(self, span: ReadableSpan) -> None:
        """Every link's attributes by the span's rules (a statement's text only, no marks added)."""
        for link in span._links:
            attributes = link._attributes
            if not attributes or (self._watched.isdisjoint(attributes) and self._pattern is None):
                continue
            changed = self.rewrite(attributes, marks=False)
            if changed is not None:
                link._attributes = _bounded_like(attributes, changed)

    def rewrite(self, attributes: Mapping[str, Any], marks: bool = True) -> dict[str, Any] | None:
        """The attributes as they may be exported, or None when nothing needs to change.

        ``marks`` false (a span event's or link's attributes): a statement's text is sanitized,
        nothing added.
        """
        out: dict[str, Any] | None = None
        kinds = self._kinds
        for key in self._watched.intersection(attributes):
            kind = kinds[key]
            if kind == _EXACT:
                out = dict(attributes) if out is None else out
                out[key] = REDACTED
                continue
            value = attributes[key]
            if not isinstance(value, str):
                continue
            if kind == _STATEMENT:
                rewritten = _statement_memo.get(value)
                if rewritten is None:
                    rewritten = _memoized(
                        _statement_memo, _rewrite, value, SANITIZE_MEMO_MAX_CHARS, STATEMENT_MEMO_MAX_ENTRIES
                    )
                if (
                    out is None
                    and marks
                    and type(attributes) is dict
                    and _SUMMARY not in attributes
                    and _DIGEST not in attributes
                    and _PARAMETERS not in attributes
                    and not (_QUERY_TEXT in attributes and _PARAMETER_PREFIX in "\n".join(attributes))
                ):
                    # The common statement (the first key changed, no parameters, no marks yet): one
                    # copy with what it adds, the general case's result.
                    out = attributes | rewritten[4]
                    out[key] = rewritten[0]
                else:
                    out = dict(attributes) if out is None else out
                    out[key] = rewritten[0]
                    self._statement(attributes, rewritten, out, marks)
            elif kind == _URL:
                if "?" in value or "@" in value or "#" in value:
                    redacted = _url_memo.get(value)
                    if redacted is None:
                        redacted = _memoized(
                            _url_memo, redact_url_full, value, URL_MEMO_MAX_CHARS, URL_MEMO_MAX_ENTRIES
                        )
                    if redacted != value:
                        out = dict(attributes) if out is None else out
                        out[key] = redacted
            elif kind == _QUERY:
                if "=" in value:
                    out = dict(attributes) if out is None else out
                    out[key] = redact_query(value)
            else:  # _DOCUMENT
                document = sanitize_document(value)
                if document != value:
                    out = dict(attributes) if out is None else out
                    out[key] = document
        pattern = self._pattern
        if pattern is not None:
            for key in attributes:
                if pattern.match(key):
                    out = dict(attributes) if out is None else out
                    out[key] = REDACTED
        return out

    def _statement(
        self, attributes: Mapping[str, Any], rewritten: _Rewrite, out: dict[str, Any], marks: bool
    ) -> None:
        """Into ``out`` (with the statement's text in it already): the captured parameters dropped or
        kept and, with ``marks``, the sanitized mark, the ``db.query.summary`` (when the span has
        none) and the values digest. The general case of ``rewrite``'s statement."""
        _text, digest, placeholders, label, _added = rewritten
        if not marks:  # a span event's or link's statement: its text alone
            if not self.keep_db_parameters:
                _parameters(attributes, drop_from=out)
            return
        if digest:  # literals were taken out (a statement of bind placeholders only lost nothing)
            out[_SANITIZED] = True
        if label and _SUMMARY not in out:  # an instrumentation's own stays
            out[_SUMMARY] = label
        if _DIGEST in out:
            return  # the other statement key of the same span was seen first
        parameters = _parameters(attributes, drop_from=None if self.keep_db_parameters else out)
        if parameters:
            out[_DIGEST] = values_digest((digest,), parameters)
        elif digest and not placeholders:
            out[_DIGEST] = digest
        # bind placeholders whose values were not captured: the values are unknown, no digest

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _parameters(attributes: Mapping[str, Any], drop_from: dict[str, Any] | None) -> str:
    """The captured bind parameters as one text (``""``: none), removed from ``drop_from``."""
    found = attributes.get(_PARAMETERS)
    # One attribute per parameter came with db.query.text: spans of the older names need no scan.
    named = (
        [key for key in attributes if key.startswith(_PARAMETER_PREFIX)]
        if semconv.ATTR_DB_QUERY_TEXT in attributes
        else []
    )
    if found is None and not named:
        return ""  # the common case, on the hot path
    if drop_from is not None:
        drop_from.pop(_PARAMETERS, None)
        for key in named:
            drop_from.pop(key, None)
    text = "" if found is None else str(found)
    if named:
        text += "\x00" + "\x00".join(f"{key}\x01{attributes[key]}" for key in sorted(named))
    return text


def _bounded_like(old: Mapping[str, Any], attributes: dict[str, Any]) -> BoundedAttributes:
    """``attributes`` as immutable ``BoundedAttributes`` with the limits of ``old`` (an event's or a
    link's: the processor adds nothing to them, so nothing can go over the limit), and the count of
    those the SDK dropped."""
    bounded = BoundedAttributes(
        getattr(old, "maxlen", None),
        attributes,
        immutable=True,
        max_value_len=getattr(old, "max_value_len", None),
    )
    bounded.dropped = getattr(old, "dropped", 0)
    return bounded


#: The attributes the processor adds, in the order they give way to the span's attribute limit.
_ADDED = (
    semconv.ATTR_DB_QUERY_SUMMARY,
    semconv.ATTR_DB_QUERY_VALUES_DIGEST,
    semconv.ATTR_DB_QUERY_SANITIZED,
)


def _replace_attributes(span: ReadableSpan, attributes: dict[str, Any]) -> None:
    """Give ``span`` its rewritten attributes within its attribute limit, keeping the count of those
    the SDK dropped. What the processor added gives way first: never the statement it came from.

    An SDK span keeps its ``BoundedAttributes`` (its limits and dropped count) with the new dict in
    it: replacing the container would free it, its lock and its dict inside ``span.end()``."""
    old = span._attributes
    if type(old) is not BoundedAttributes:  # a ReadableSpan built by hand: a plain mapping
        span._attributes = attributes
        return
    maxlen = old.maxlen
    if maxlen is not None and len(attributes) > maxlen:
        for key in _ADDED:
            if len(attributes) <= maxlen:
                break
            if key in attributes and key not in old._dict:
                del attributes[key]
                old.dropped += 1
    old._dict = attributes


def __getattr__(name: str) -> Any:
    """``SanitizingLogProcessor`` is built on the log SDK: it lives in ``log_export``, imported
    when first used."""
    if name == "SanitizingLogProcessor":
        from amqadf_agent.runtime import log_export

        return log_export.SanitizingLogProcessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
