"""SQL statements as the database rules see them: normalized, classified, and never with raw literals.

``analyze(statement)`` works in two stages:

1. a single regular-expression pass over the raw text removes comments, turns every string and number
   literal and every bind placeholder (``?``, ``$1``, ``%s``, ``%(name)s``, ``:name``) into ``?``,
   collapses ``IN (?, ?, …)`` to ``IN (?)`` and squeezes whitespace. It also hashes the literal values
   (the hash, never the values, tells two executions with the same literals apart);
2. the literal-free text is parsed by sqlglot (imported lazily) to render it canonically (keywords
   upper case, unquoted identifiers lower case) and to find the statement kind, tables, filter and sort
   columns, ``SELECT *``, ``LIMIT`` and ``WHERE``. What sqlglot cannot parse is classified by regular
   expressions instead (``SqlInfo.parsed`` is then False).

Stage 2 is cached by the literal-free text (``functools.lru_cache``), so its cost is paid once per
distinct statement shape, not once per execution.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SqlInfo", "analyze", "normalize", "normalize_call", "shape"]


@dataclass(frozen=True, slots=True)
class SqlInfo:
    """What the rules need to know about one statement. Holds no literal value."""

    #: The normalized statement: literals and placeholders as ``?``, ``IN`` lists collapsed.
    normalized: str
    #: ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``WITH`` … (upper case), or ``""`` when empty.
    kind: str
    #: Tables read or written, lower case, in order of appearance.
    tables: tuple[str, ...]
    #: Columns of the ``WHERE`` clause (index candidates), lower case, in order of appearance.
    filter_columns: tuple[str, ...]
    #: Columns of the ``ORDER BY`` clause, lower case.
    sort_columns: tuple[str, ...]
    select_star: bool
    has_limit: bool
    has_where: bool
    #: True when the statement had bind placeholders (its parameters are unknown).
    has_placeholders: bool
    #: Blake2b digest of the literal values in order (``""`` when there were none). Never exported.
    literal_digest: str
    #: True when sqlglot parsed the statement; False when the regex fallback classified it.
    parsed: bool


# The lookahead in front names every character a token can start with: without it the regex engine
# tries all six alternatives at every position of the statement (~4x slower on typical statements);
# with it, a position that cannot start a token costs one character-class test.
_TOKEN = re.compile(
    r"""
    (?=[-/'"`\[?$%:.\d]|[NnEeBbXx]')
    (?:
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[NnEeBbXx]?'(?:[^'\\]|''|\\.)*')
  | (?P<dollar>\$\$.*?\$\$)
  | (?P<ident>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
  | (?P<placeholder>\?|\$\d+|%s|%\([^)]*\)s|(?<![:\w]):[A-Za-z_]\w*)
  | (?P<number>(?<![\w$.])(?:0[xX][0-9A-Fa-f]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.]))
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)
_VALUES_ROWS = re.compile(r"(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))+")
_KEYWORDS = re.compile(
    r"\b(select|from|where|and|or|not|in|is|null|like|between|join|inner|left|right|outer|full|cross|"
    r"on|as|group|by|order|having|limit|offset|union|all|distinct|insert|into|values|update|set|delete|"
    r"create|drop|alter|table|index|with|case|when|then|else|end|asc|desc|exists|returning|count|sum|"
    r"min|max|avg)\b",
    re.IGNORECASE,
)


def shape(statement: str) -> tuple[str, bool, str]:
    """Stage 1: ``(literal-free text, had placeholders, literal digest)``; cheap, not cached."""
    literals: list[str] = []
    placeholders = False

    def replace(match: re.Match[str]) -> str:
        nonlocal placeholders
        group = match.lastgroup
        if group == "comment":
            return " "
        if group == "ident":
            return match.group()
        if group == "placeholder":
            placeholders = True
            return "?"
        literals.append(match.group())
        return "?"

    text = _TOKEN.sub(replace, statement)
    # str.split() and the regex \s agree on what whitespace is (both Py_UNICODE_ISSPACE).
    text = " ".join(text.split()).rstrip(";").strip()
    # Whitespace is now single spaces: both patterns below need "(?" or "( ?" somewhere.
    if "(?" in text or "( ?" in text:
        text = _IN_LIST.sub("IN (?)", text)
        text = _VALUES_ROWS.sub(r"\1", text)
    digest = ""
    if literals:
        digest = hashlib.blake2b("\x00".join(literals).encode(), digest_size=8).hexdigest()
    return text, placeholders, digest


def normalize(statement: str) -> str:
    """The normalized text of ``statement`` (see the module docstring)."""
    return analyze(statement).normalized


#: Statements without literals (bind placeholders, or none at all) repeat verbatim, call after call:
#: their ``normalize_call`` result is kept, up to this many (then the memo starts afresh).
_CALL_MEMO_MAX = 4096
_call_memo: dict[str, tuple[str, bool, str]] = {}


def normalize_call(statement: str) -> tuple[str, bool, str]:
    """``(normalized, has_placeholders, literal_digest)`` of ``analyze(statement)``, without building its
    ``SqlInfo``: what the database rules need per execution (the structure stays cached)."""
    known = _call_memo.get(statement)
    if known is not None:
        return known
    text, placeholders, digest = shape(statement)
    result = (_structure(text).normalized, placeholders, digest)
    if not digest:  # no literal in it: the same text will come again (a literal-bearing one rarely)
        if len(_call_memo) >= _CALL_MEMO_MAX:
            _call_memo.clear()
        _call_memo[statement] = result
    return result


def analyze(statement: str) -> SqlInfo:
    """Normalize and classify ``statement``; the result holds no literal of it."""
    text, placeholders, digest = shape(statement)
    base = _structure(text)
    return SqlInfo(
        normalized=base.normalized,
        kind=base.kind,
        tables=base.tables,
        filter_columns=base.filter_columns,
        sort_columns=base.sort_columns,
        select_star=base.select_star,
        has_limit=base.has_limit,
        has_where=base.has_where,
        has_placeholders=placeholders,
        literal_digest=digest,
        parsed=base.parsed,
    )


@functools.lru_cache(maxsize=4096)
def _structure(text: str) -> SqlInfo:
    """Stage 2 on literal-free text: sqlglot, else the regex fallback. Cached by ``text``."""
    if not text:
        return SqlInfo("", "", (), (), (), False, False, False, False, "", False)
    try:
        return _with_sqlglot(text)
    except Exception:  # sqlglot raises ParseError, TokenError and others on what it cannot read
        return _with_regex(text)


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def _with_sqlglot(text: str) -> SqlInfo:
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(text)
    if tree is None or isinstance(tree, exp.Command):
        raise ValueError("not parsed")

    def canonical(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Literal):
            return exp.Placeholder()
        if isinstance(node, exp.Neg) and isinstance(node.this, (exp.Literal, exp.Placeholder)):
            return exp.Placeholder()
        if isinstance(node, exp.Identifier) and not node.quoted:
            return exp.Identifier(this=node.name.lower(), quoted=False)
        if (
            isinstance(node, exp.In)
            and len(node.expressions) > 1
            and all(isinstance(e, (exp.Literal, exp.Placeholder)) for e in node.expressions)
        ):
            node.set("expressions", [exp.Placeholder()])
        return node

    tree = tree.transform(canonical)
    normalized = tree.sql()
    kind = _kind(tree, text)
    tables = _unique([t.name.lower() for t in tree.find_all(exp.Table)])
    where: Any = tree.args.get("where")
    filters = _unique([c.name.lower() for c in where.find_all(exp.Column)]) if where is not None else ()
    order: Any = tree.args.get("order")
    sorts = _unique([c.name.lower() for c in order.find_all(exp.Column)]) if order is not None else ()
    star = False
    for select in tree.find_all(exp.Select):
        if any(
            isinstance(e, exp.Star) or (isinstance(e, exp.Column) and e.is_star) for e in select.expressions
        ):
            star = True
    has_limit = tree.args.get("limit") is not None or tree.args.get("fetch") is not None
    return SqlInfo(
        normalized=normalized,
        kind=kind,
        tables=tables,
        filter_columns=filters,
        sort_columns=sorts,
        select_star=star,
        has_limit=has_limit,
        has_where=where is not None,
        has_placeholders=False,
        literal_digest="",
        parsed=True,
    )


def _kind(tree: Any, text: str) -> str:
    from sqlglot import exp

    if isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        return "SELECT"
    for cls, name in ((exp.Insert, "INSERT"), (exp.Update, "UPDATE"), (exp.Delete, "DELETE")):
        if isinstance(tree, cls):
            return name
    first = text.split(None, 1)[0] if text.split() else ""
    return first.upper()


_TABLE_RE = re.compile(r"\b(?:from|join|update|into)\s+([A-Za-z_][\w.]*)", re.IGNORECASE)


def _with_regex(text: str) -> SqlInfo:
    normalized = _KEYWORDS.sub(lambda m: m.group().upper(), text)
    words = normalized.split(None, 1)
    kind = words[0].upper() if words else ""
    return SqlInfo(
        normalized=normalized,
        kind=kind,
        tables=_unique([t.lower() for t in _TABLE_RE.findall(text)]),
        filter_columns=(),
        sort_columns=(),
        select_star=re.search(r"\bselect\s+(?:distinct\s+)?(?:\w+\.)?\*", text, re.IGNORECASE) is not None,
        has_limit=re.search(r"\b(?:limit|fetch\s+first|top)\b", text, re.IGNORECASE) is not None,
        has_where=re.search(r"\bwhere\b", text, re.IGNORECASE) is not None,
        has_placeholders=False,
        literal_digest="",
        parsed=False,
    )
