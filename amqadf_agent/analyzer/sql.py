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
distinct statement shape, not once per execution. ``normalize_call``, the database rules' per-execution
path, also keeps the result of stage 2 by the statement's skeleton (each literal as ``?``, before the
whitespace is squeezed), so a statement with literals costs one ``re.split`` and a digest; and, for a
statement that ends with an integer (``... WHERE id = 42``), by the text before it, which spares even
the split. Both memos are there because the database rules call this once per db span, the
analyzer's most common kind (tests/bench/bench_analyzer.py); tests/test_sql.py checks that they give
what the regex path gives on random text.
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


# The tokens of an ASCII statement: one per literal, comment, quoted identifier or placeholder. Every
# alternative starts with one literal character (a token's kind is told by its first character, see
# _KIND_OF), so the compiled pattern carries the set of those characters and the engine skips, in C,
# every position that cannot start a token. A lookbehind on the character before a token is written
# after its first character, as a two-character lookbehind. re.split with the one capturing group
# returns [text, token, text, token, ..., text]: the tokens without a Python call per token. Together
# about 30% faster than re.sub with a callback over the pattern _TOKEN below (the path non-ASCII
# statements take).
_NUMBER_REST = r"\d*\.?\d*(?:[eE][+-]?\d+)?(?![\w.])"
_STRING_BODY = r"'(?:[^'\\]|''|\\.)*'"
_TOKEN_ALTERNATIVES = (
    # comments
    r"--[^\n]*",
    r"/\*.*?\*/",
    # strings, with the prefixes N'', E'', B'', X''
    _STRING_BODY,
    *(prefix + _STRING_BODY for prefix in "NnEeBbXx"),
    # dollar-quoted strings (before the $1 placeholder)
    r"\$\$.*?\$\$",
    # quoted identifiers
    r'"(?:[^"]|"")*"',
    r"`[^`]*`",
    r"\[[^\]]*\]",
    # bind placeholders
    r"\?",
    r"\$\d+",
    r"%s",
    r"%\([^)]*\)s",
    r":(?<![:\w]:)[A-Za-z_]\w*",
    # numbers: not inside a word, a $n or a dotted name; hexadecimal, decimal, exponent
    r"0(?<![\w$.]0)(?:[xX][0-9A-Fa-f]+(?![\w.])|" + _NUMBER_REST + ")",
    *(digit + rf"(?<![\w$.]{digit})" + _NUMBER_REST for digit in "123456789"),
    r"\.(?<![\w$.]\.)\d+(?:[eE][+-]?\d+)?(?![\w.])",
)
_SPLIT = re.compile("(" + "|".join(_TOKEN_ALTERNATIVES) + ")", re.DOTALL).split
#: Token kinds by first character; "$" is told apart by the second ("$$" string, "$1" placeholder).
_COMMENT, _IDENT, _PLACEHOLDER, _LITERAL = 0, 1, 2, 3
_KIND_OF: dict[str, int] = (
    dict.fromkeys("-/", _COMMENT)
    | dict.fromkeys('"`[', _IDENT)
    | dict.fromkeys("?%:", _PLACEHOLDER)
    | dict.fromkeys("'NnEeBbXx0123456789.", _LITERAL)
)
#: First characters of the tokens that are not literals ("$" too: "$1" is a placeholder).
_NOT_LITERAL = frozenset('-/"`[?%:$')
# The same tokens for a statement that is not ASCII: \d also matches other digits (Arabic-Indic ...),
# which no set of literal first characters covers. The lookahead in front names every character a
# token can start with: without it the engine tries all six alternatives at every position.
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
    if not statement.isascii():
        return _shape_unicode(statement)
    parts = _SPLIT(statement)
    tokens = parts[1::2]
    for token in tokens:
        if token[0] in _NOT_LITERAL:
            return _shape_tokens(parts)
    return _squeeze("?".join(parts[0::2])), False, _digest(tokens)


def _shape_tokens(parts: list[str]) -> tuple[str, bool, str]:
    """``shape`` of a statement with comments, quoted identifiers or placeholders among its tokens."""
    literals: list[str] = []
    placeholders = False
    for index in range(1, len(parts), 2):
        token = parts[index]
        kind = _KIND_OF.get(token[0])
        if kind is None:  # "$": "$$...$$" is a string, "$1" a placeholder
            kind = _LITERAL if token[1] == "$" else _PLACEHOLDER
        if kind == _COMMENT:
            parts[index] = " "
        elif kind == _PLACEHOLDER:
            placeholders = True
            parts[index] = "?"
        elif kind == _LITERAL:
            literals.append(token)
            parts[index] = "?"
    return _squeeze("".join(parts)), placeholders, _digest(literals)


def _shape_unicode(statement: str) -> tuple[str, bool, str]:
    """``shape`` of a statement that is not ASCII (with the ``_TOKEN`` pattern)."""
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
    return _squeeze(text), placeholders, _digest(literals)


def _squeeze(text: str) -> str:
    """Whitespace to single spaces, no trailing ``;``, ``IN`` lists and ``VALUES`` rows collapsed."""
    # str.split() and the regex \s agree on what whitespace is (both Py_UNICODE_ISSPACE).
    text = " ".join(text.split()).rstrip(";").strip()
    # Whitespace is now single spaces: both patterns below need "(?" or "( ?" somewhere.
    if "(?" in text or "( ?" in text:
        text = _IN_LIST.sub("IN (?)", text)
        text = _VALUES_ROWS.sub(r"\1", text)
    return text


def _digest(literals: list[str]) -> str:
    return _hash("\x00".join(literals)) if literals else ""


def _hash(joined: str) -> str:
    return hashlib.blake2b(joined.encode(), digest_size=8).hexdigest()


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
            return tail[0], False, _hash(tail[1] + statement[len(head) :])
    result = _call(statement, head)
    if not result[2]:  # no literal in it: the same text will come again (a literal-bearing one rarely)
        if len(_call_memo) >= _CALL_MEMO_MAX:
            _call_memo.clear()
        _call_memo[statement] = result
    return result


def _call(statement: str, head: str) -> tuple[str, bool, str]:
    """``normalize_call`` past its memos (``head``: ``statement`` without its trailing digits)."""
    if not statement.isascii():
        text, placeholders, digest = _shape_unicode(statement)
        return _structure(text).normalized, placeholders, digest
    parts = _SPLIT(statement)
    tokens = parts[1::2]
    for token in tokens:
        if token[0] in _NOT_LITERAL:
            text, placeholders, digest = _shape_tokens(parts)
            return _structure(text).normalized, placeholders, digest
    skeleton = "?".join(parts[0::2])
    normalized = _skeleton_memo.get(skeleton)
    if normalized is None:
        if len(_skeleton_memo) >= _CALL_MEMO_MAX:
            _skeleton_memo.clear()
        normalized = _skeleton_memo[skeleton] = _structure(_squeeze(skeleton)).normalized
    # The last token is exactly the trailing digits: keep the head (see _tail_memo).
    if tokens and not parts[-1] and head and len(tokens[-1]) == len(statement) - len(head):
        if len(_tail_memo) >= _CALL_MEMO_MAX:
            _tail_memo.clear()
        _tail_memo[head] = (normalized, "\x00".join(tokens[:-1]) + "\x00" if len(tokens) > 1 else "")
    return normalized, False, _digest(tokens)


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
