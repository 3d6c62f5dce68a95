"""SQL statements as the database rules see them: normalized, classified, and never with raw literals.

``analyze(statement)`` works in two stages:

1. ``amqadf_agent.statements.shape`` (the tokenizer the agent shares), one regular-expression pass
   over the raw text, removes comments, turns every string and number literal and every bind
   placeholder (``?``, ``$1``, ``%s``, ``%(name)s``, ``:name``) into ``?``, collapses ``IN (?, ?, …)``
   to ``IN (?)`` and squeezes whitespace. It also hashes the literal values (the hash, never the
   values, tells two executions with the same literals apart);
2. the literal-free text is parsed by sqlglot (imported lazily) to render it canonically (keywords
   upper case, unquoted identifiers lower case) and to find the statement kind, tables, filter and sort
   columns, ``SELECT *``, ``LIMIT`` and ``WHERE``. What sqlglot cannot parse is classified by regular
   expressions instead (``SqlInfo.parsed`` is then False).

Stage 2 is cached by the literal-free text (``functools.lru_cache``), so its cost is paid once per
distinct statement shape, not once per execution. sqlglot takes about 1 ms a shape: at most
``MAX_PARSED_TEXTS`` shapes of at most ``MAX_PARSED_CHARS`` characters are read with it in one
analysis (``reset``), each kept, the rest by the regular expressions (a table per tenant gives
hundreds of thousands of shapes: 300 000 took five minutes). ``normalize_call``, the database rules'
per-execution path, also keeps the result of stage 2 by the statement's skeleton (each literal as
``?``, before the whitespace is squeezed), so a statement with literals costs one ``re.split`` and a
digest; and, for a statement that ends with an integer (``... WHERE id = 42``), by the text before
it, which spares even the split. Both memos are there because the database rules call this once per
db span, the analyzer's most common kind (tests/bench/bench_analyzer.py); tests/test_sql.py checks
that they give what the regex path gives on random text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from amqadf_agent.statements import (
    NOT_LITERAL,
    digest,
    hash_literals,
    shape,
    shape_tokens,
    shape_unicode,
    split,
    squeeze,
)

__all__ = ["MAX_PARSED_TEXTS", "SqlInfo", "analyze", "normalize", "normalize_call", "reset", "shape"]


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


#: Words the regex fallback writes in upper case (what sqlglot does to every keyword).
# fmt: off
_KEYWORDS = frozenset({
    "select", "from", "where", "and", "or", "not", "in", "is", "null", "like", "between", "join",
    "inner", "left", "right", "outer", "full", "cross", "on", "as", "group", "by", "order", "having",
    "limit", "offset", "union", "all", "distinct", "insert", "into", "values", "update", "set",
    "delete", "create", "drop", "alter", "table", "index", "with", "case", "when", "then", "else",
    "end", "asc", "desc", "exists", "returning", "count", "sum", "min", "max", "avg"
})
# fmt: on
_WORD = re.compile(r"(\w+)")


def _upper_keywords(text: str) -> str:
    """``text`` with the ``_KEYWORDS`` upper case: a split and a set look-up a word (an alternation of
    the keywords in one pattern took five times as long)."""
    parts = _WORD.split(text)
    for index in range(1, len(parts), 2):
        word = parts[index]
        if word.lower() in _KEYWORDS:
            parts[index] = word.upper()
    return "".join(parts)


def normalize(statement: str) -> str:
    """The normalized text of ``statement`` (see the module docstring)."""
    return analyze(statement).normalized


#: Statements without literals (bind placeholders, or none at all) repeat verbatim, call after call:
#: their ``normalize_call`` result is kept, up to this many (then the memo starts afresh).
_CALL_MEMO_MAX = 4096
_call_memo: dict[str, tuple[str, bool, str]] = {}
#: Statements whose tokens are all literals, by their text with each literal replaced by "?" (before
#: whitespace is squeezed): the normalized text. Statements with literals rarely repeat verbatim, but
#: their skeletons do (one per statement in the code, a few per IN-list length): a hit skips the
#: squeezing and the structure cache. Emptied when it holds ``_CALL_MEMO_MAX`` skeletons.
_skeleton_memo: dict[str, str] = {}
#: Statements that end with an integer literal (``... WHERE id = 42``, the commonest kind), by their
#: text before it (``head``): ``(normalized, literals before it joined with "\x00" and ending in one,
#: or "")``. Whatever the digits after a given head, the statement splits into the same tokens (the
#: literals of the head, then the digits: no token of the head ends on or reaches into digits that
#: follow it, or the last token would not be exactly those digits, which is checked before a head is
#: kept), so a hit only hashes the literals. Emptied when it holds ``_CALL_MEMO_MAX`` heads. Like the
#: statement cache of the structure, it holds text of statements in memory only: nothing of it is output.
_tail_memo: dict[str, tuple[str, str]] = {}
_DIGITS = "0123456789"


def normalize_call(statement: str) -> tuple[str, bool, str]:
    """``(normalized, has_placeholders, literal_digest)`` of ``analyze(statement)``, without building its
    ``SqlInfo``: what the database rules need per execution (the structure stays cached)."""
    known = _call_memo.get(statement)
    if known is not None:
        return known
    head = statement.rstrip(_DIGITS)
    if len(head) < len(statement):
        tail = _tail_memo.get(head)
        if tail is not None:
            return tail[0], False, hash_literals(tail[1] + statement[len(head) :])
    result = _call(statement, head)
    if not result[2]:  # no literal in it: the same text will come again (a literal-bearing one rarely)
        if len(_call_memo) >= _CALL_MEMO_MAX:
            _call_memo.clear()
        _call_memo[statement] = result
    return result


def _call(statement: str, head: str) -> tuple[str, bool, str]:
    """``normalize_call`` past its memos (``head``: ``statement`` without its trailing digits)."""
    if not statement.isascii():
        text, placeholders, literals = shape_unicode(statement)
        return _structure(text).normalized, placeholders, literals
    parts = split(statement)
    tokens = parts[1::2]
    for token in tokens:
        if token[0] in NOT_LITERAL:
            text, placeholders, literals = shape_tokens(parts)
            return _structure(text).normalized, placeholders, literals
    skeleton = "?".join(parts[0::2])
    normalized = _skeleton_memo.get(skeleton)
    if normalized is None:
        if len(_skeleton_memo) >= _CALL_MEMO_MAX:
            _skeleton_memo.clear()
        normalized = _skeleton_memo[skeleton] = _structure(squeeze(skeleton)).normalized
    # The last token is exactly the trailing digits: keep the head (see _tail_memo).
    if tokens and not parts[-1] and head and len(tokens[-1]) == len(statement) - len(head):
        if len(_tail_memo) >= _CALL_MEMO_MAX:
            _tail_memo.clear()
        _tail_memo[head] = (normalized, "\x00".join(tokens[:-1]) + "\x00" if len(tokens) > 1 else "")
    return normalized, False, digest(tokens)


def analyze(statement: str) -> SqlInfo:
    """Normalize and classify ``statement``; the result holds no literal of it."""
    text, placeholders, literals = shape(statement)
    base = _structure(text)
    # Every field spelled out rather than dataclasses.replace(): this runs once per db span, and
    # replace() costs about half as much again (measured here).
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
        literal_digest=literals,
        parsed=base.parsed,
    )


#: Literal-free texts read with sqlglot in one analysis, kept (a text read once reads the same after).
MAX_PARSED_TEXTS = 10_000
#: Longer texts are read by the regular expressions: sqlglot took 18 s and 300 MB for a generated
#: UNION of 20,000 SELECTs (1 MB).
MAX_PARSED_CHARS = 20_000
_parsed: dict[str, SqlInfo] = {}


def reset() -> None:
    """Forget every statement seen (an analysis starts with the whole ``MAX_PARSED_TEXTS`` budget)."""
    _parsed.clear()
    _structure.cache_clear()
    _call_memo.clear()
    _skeleton_memo.clear()
    _tail_memo.clear()


@functools.lru_cache(maxsize=4096)
def _structure(text: str) -> SqlInfo:
    """Stage 2 on literal-free text: sqlglot (within the budget), else the regex fallback. Cached by
    ``text``."""
    if not text:
        return SqlInfo("", "", (), (), (), False, False, False, False, "", False)
    info = _parsed.get(text)
    if info is None:
        if len(_parsed) >= MAX_PARSED_TEXTS or len(text) > MAX_PARSED_CHARS:
            return _with_regex(text)
        info = _parsed[text] = _read(text)
    return info


def _read(text: str) -> SqlInfo:
    try:
        return _with_sqlglot(text)
    except Exception:  # sqlglot raises ParseError, TokenError and others on what it cannot read
        pass
    if "?::" in text:  # PostgreSQL casts of placeholders (SQLAlchemy's psycopg dialect): sqlglot
        try:  # cannot read ``?::INTEGER``, but reads the same cast written ``CAST(? AS INTEGER)``
            return _with_sqlglot(_PLACEHOLDER_CAST.sub(r"CAST(? AS \1)", text))
        except Exception:
            pass
    return _with_regex(text)


_PLACEHOLDER_CAST = re.compile(r"\?::([A-Za-z_][\w ]*?(?:\[\])?)(?=$|[\s,)])")


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
            and all(_is_value(e) for e in node.expressions)
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


def _is_value(node: Any) -> bool:
    """A literal or placeholder, or the cast of one (``CAST(? AS INT)``): one value of an IN list."""
    from sqlglot import exp

    if isinstance(node, exp.Cast):
        node = node.this
    return isinstance(node, (exp.Literal, exp.Placeholder))


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
    normalized = _upper_keywords(text)
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
