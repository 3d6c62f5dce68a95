"""Statement shapes: the one tokenizer of SQL text that the agent and the analyzer share.

A statement's *shape* is its text with every literal (string, number, hex, dollar-quoted) and every
bind placeholder as ``?``, comments removed, whitespace squeezed, and ``IN (?, ?, …)`` lists and
multi-row ``VALUES`` collapsed; beside it, a digest of the literal values (so two executions with the
same literals can be told apart without keeping the values). It is a leaf module: standard library
only, so the analyzer may import it without importing the agent's runtime (docs/design.md, the walls).
The analyzer's ``analyzer.sql`` adds the structure (kind, tables, columns) on top of it.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "NOT_LITERAL",
    "digest",
    "hash_literals",
    "is_document_command",
    "sanitize",
    "sanitize_document",
    "sanitize_values",
    "shape",
    "shape_tokens",
    "shape_unicode",
    "split",
    "squeeze",
    "summary",
]


# The tokens of an ASCII statement: one per literal, comment, quoted identifier or placeholder. Every
# alternative starts with one literal character (a token's kind is told by its first character, see
# _KIND_OF), so the compiled pattern carries the set of those characters and the engine skips, in C,
# every position that cannot start a token. A lookbehind on the character before a token is written
# after its first character, as a two-character lookbehind. re.split with the one capturing group
# returns [text, token, text, token, ..., text]: the tokens without a Python call per token. Together
# about 30% faster than re.sub with a callback over the pattern _TOKEN below (the path non-ASCII
# statements take).
_NUMBER_REST = r"\d*\.?\d*(?:[eE][+-]?\d+)?(?![\w.])"
# A string cut off by an attribute length limit has no closing quote: it runs to the end of the text
# and is a literal all the same (its first part must not leak).
_STRING_BODY = r"'(?:[^'\\]|''|\\.)*(?:'|\\?\Z)"
_TOKEN_ALTERNATIVES = (
    # comments
    r"--[^\n]*",
    r"/\*.*?\*/",
    # strings, with the prefixes N'', E'', B'', X''
    _STRING_BODY,
    *(prefix + _STRING_BODY for prefix in "NnEeBbXx"),
    # dollar-quoted strings (before the $1 placeholder)
    r"\$\$.*?(?:\$\$|\Z)",
    # quoted identifiers
    r'"(?:[^"]|"")*"',
    r"`[^`]*`",
    # (no "[" inside: each unclosed "[" would otherwise scan to the end, quadratic in "[[[[")
    r"\[[^\][]*\]",
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
split = re.compile("(" + "|".join(_TOKEN_ALTERNATIVES) + ")", re.DOTALL).split
#: Token kinds by first character; "$" is told apart by the second ("$$" string, "$1" placeholder).
_COMMENT, _IDENT, _PLACEHOLDER, _LITERAL = 0, 1, 2, 3
_KIND_OF: dict[str, int] = (
    dict.fromkeys("-/", _COMMENT)
    | dict.fromkeys('"`[', _IDENT)
    | dict.fromkeys("?%:", _PLACEHOLDER)
    | dict.fromkeys("'NnEeBbXx0123456789.", _LITERAL)
)
#: First characters of the tokens that are not literals ("$" too: "$1" is a placeholder).
NOT_LITERAL = frozenset('-/"`[?%:$')
# The same tokens for a statement that is not ASCII: \d also matches other digits (Arabic-Indic ...),
# which no set of literal first characters covers. The lookahead in front names every character a
# token can start with: without it the engine tries all six alternatives at every position.
_TOKEN = re.compile(
    r"""
    (?=[-/'"`\[?$%:.\d]|[NnEeBbXx]')
    (?:
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[NnEeBbXx]?'(?:[^'\\]|''|\\.)*(?:'|\\?\Z))
  | (?P<dollar>\$\$.*?(?:\$\$|\Z))
  | (?P<ident>"(?:[^"]|"")*"|`[^`]*`|\[[^\][]*\])
  | (?P<placeholder>\?|\$\d+|%s|%\([^)]*\)s|(?<![:\w]):[A-Za-z_]\w*)
  | (?P<number>(?<![\w$.])(?:0[xX][0-9A-Fa-f]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.]))
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)
_VALUES_ROWS = re.compile(r"(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))+")


def shape(statement: str) -> tuple[str, bool, str]:
    """``(literal-free text, had placeholders, literal digest)`` of ``statement``; cheap, not cached."""
    if not statement.isascii():
        return shape_unicode(statement)
    parts = split(statement)
    tokens = parts[1::2]
    for token in tokens:
        if token[0] in NOT_LITERAL:
            return shape_tokens(parts)
    return squeeze("?".join(parts[0::2])), False, digest(tokens)


def shape_tokens(parts: list[str]) -> tuple[str, bool, str]:
    """``shape`` of a statement with comments, quoted identifiers or placeholders among its tokens."""
    literals, placeholders, _comments = _take_literals(parts, "?")
    return squeeze("".join(parts)), placeholders, digest(literals)


def shape_unicode(statement: str) -> tuple[str, bool, str]:
    """``shape`` of a statement that is not ASCII (with the ``_TOKEN`` pattern)."""
    text, literals, placeholders, _comments = _take_literals_unicode(statement, "?")
    return squeeze(text), placeholders, digest(literals)


def _take_literals(parts: list[str], placeholder: str | None) -> tuple[list[str], bool, bool]:
    """Rewrites ``parts`` (from ``split``) in place: each literal as ``?``, each comment as a space,
    each bind placeholder as ``placeholder`` (None: as written), quoted identifiers as written.
    Returns ``(the literals, had placeholders, had comments)``."""
    literals: list[str] = []
    placeholders = comments = False
    for index in range(1, len(parts), 2):
        token = parts[index]
        kind = _KIND_OF.get(token[0])
        if kind is None:  # "$": "$$...$$" is a string, "$1" a placeholder
            kind = _LITERAL if token[1] == "$" else _PLACEHOLDER
        if kind == _LITERAL:
            literals.append(token)
            parts[index] = "?"
        elif kind == _PLACEHOLDER:
            placeholders = True
            if placeholder is not None:
                parts[index] = placeholder
        elif kind == _COMMENT:
            comments = True
            parts[index] = " "
    return literals, placeholders, comments


def _take_literals_unicode(statement: str, placeholder: str | None) -> tuple[str, list[str], bool, bool]:
    """``_take_literals`` for a statement that is not ASCII: ``(text, literals, had placeholders,
    had comments)``."""
    literals: list[str] = []
    placeholders = comments = False

    def replace(match: re.Match[str]) -> str:
        nonlocal placeholders, comments
        group = match.lastgroup
        if group == "comment":
            comments = True
            return " "
        if group == "ident":
            return match.group()
        if group == "placeholder":
            placeholders = True
            return match.group() if placeholder is None else placeholder
        literals.append(match.group())
        return "?"

    return _TOKEN.sub(replace, statement), literals, placeholders, comments


def squeeze(text: str) -> str:
    """Whitespace to single spaces, no trailing ``;``, ``IN`` lists and ``VALUES`` rows collapsed."""
    # str.split() and the regex \s agree on what whitespace is (both Py_UNICODE_ISSPACE).
    text = " ".join(text.split()).rstrip(";").strip()
    # Whitespace is now single spaces: both patterns below need "(?" or "( ?" somewhere.
    if "(?" in text or "( ?" in text:
        text = _IN_LIST.sub("IN (?)", text)
        text = _VALUES_ROWS.sub(r"\1", text)
    return text


def digest(literals: list[str]) -> str:
    return hash_literals("\x00".join(literals)) if literals else ""


_DIGEST_MASK = (1 << 64) - 1


def hash_literals(joined: str) -> str:
    """A 16-hex-digit digest of literal values joined by NUL: equal for equal values, within one process.

    Only compared inside the process that made it (the analyzer's repeated-call check runs in one
    process; the agent keeps only the shape), never exported or stored: so it is Python's keyed string hash
    (SipHash, its key random per interpreter), about six times cheaper than blake2b here, where the
    analyzer computes one for every db call with literals."""
    return f"{hash(joined) & _DIGEST_MASK:016x}"


#: Statements longer than this are sanitized without the memo: a bulk ``INSERT`` of thousands of rows
#: would otherwise keep its values (and megabytes) alive in it.
SANITIZE_MEMO_MAX_CHARS = 4096


def sanitize(statement: str) -> str:
    """``statement`` with every literal as ``?``: what may leave the process when values may not.

    Unlike ``shape`` it keeps the statement as written otherwise: bind placeholders (``%s``, ``$1``,
    ``:name``) and quoted identifiers stay, only comments (which may carry anything) are removed and
    ``IN (?, ?, …)`` lists and multi-row ``VALUES`` are collapsed.
    """
    return sanitize_values(statement)[0]


def sanitize_values(statement: str) -> tuple[str, tuple[str, ...], bool]:
    """``(sanitized text, the literals taken out, had bind placeholders)``; memoized, bounded.

    The same statement text comes again and again from one code path: a bounded LRU by text makes
    a repeat a dictionary hit.
    """
    if len(statement) > SANITIZE_MEMO_MAX_CHARS:
        return _sanitize(statement)
    return _sanitize_memo(statement)


def _sanitize(statement: str) -> tuple[str, tuple[str, ...], bool]:
    if "{" in statement and is_document_command(statement):
        return _sanitize_document(statement)
    if statement.isascii():
        parts = split(statement)
        literals, placeholders, comments = _take_literals(parts, None)
        text = "".join(parts)
    else:
        text, literals, placeholders, comments = _take_literals_unicode(statement, None)
    if literals and "?" in text:
        text = _IN_LIST.sub("IN (?)", text)
        text = _VALUES_ROWS.sub(r"\1", text)
    return (text.strip() if comments else text), tuple(literals), placeholders


_sanitize_memo = functools.lru_cache(maxsize=4096)(_sanitize)

#: A command followed by a document or a list of documents, as MongoDB instrumentations write a
#: statement (``find {'email': 'a@b.c'}``: the command's name and ``str()`` of its filter) or a span
#: name (``mydb.find.{...}``, ``aggregate [{'$match': ...}]``). No SQL statement starts so.
#: Linear in the text: each part of the dotted name starts with a letter, so no two ways to match.
is_document_command = re.compile(r"\s*([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*)\.?\s*(?:\{|\[\s*\{)").match
# A MongoDB filter is no SQL: a quoted string is a key when a ":" follows it and a value otherwise,
# both quote styles are strings (Python's repr uses either, JSON double quotes) with backslash
# escapes, and "[...]" is a list of values, not a name: the SQL tokens cannot tell these apart. A
# string cut short (by an attribute length limit) runs to the end of the text.
_DOCUMENT_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^'\\]|\\.)*(?:'|\Z)|"(?:[^"\\]|\\.)*(?:"|\Z))(?P<key>\s*:)?
  | (?<![\w.$])-?(?:0[xX][0-9A-Fa-f]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)(?![\w.])
  | (?<![\w.$])(?:true|false|null|True|False|None)(?![\w.$])
  | /(?:(?<=[:,\[]/)|(?<=[:,\[]\s/))(?:[^/\\\n]|\\.)+/[a-z]*
    """,
    re.VERBOSE | re.DOTALL,
)


def sanitize_document(document: str) -> str:
    """A MongoDB document or list of documents as ``str()`` or JSON writes it (a filter, a pipeline:
    ``{'email': 'a@b.c'}``, no command in front) with every value as ``?``, every key and operator
    as written."""
    return _sanitize_document(document)[0]


def _sanitize_document(statement: str) -> tuple[str, tuple[str, ...], bool]:
    """``_sanitize`` of a command with a document: every value (string, number, boolean, null, a
    shell's ``/regex/``) as ``?``, every key and operator (``'email':``, ``$gt``) as written."""
    literals: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group("key"):
            return match.group()
        literals.append(match.group())
        return "?"

    return _DOCUMENT_TOKEN.sub(replace, statement), tuple(literals), False


#: ``db.query.summary`` is at most this long (the database conventions), cut between two of its words.
SUMMARY_MAX_CHARS = 255
#: The words of the text between ``split``'s tokens: a plain name or any other character (a ``.``
#: joins two parts of a name; ``(``, ``)``, ``,`` and ``;`` structure a statement; the rest are
#: operators). A quoted name is one of ``split``'s tokens.
_PLAIN_WORD = re.compile(r"[^\W\d][\w$]*|\S")
#: The operations a summary names, each followed by its targets.
_OPERATIONS = frozenset(
    [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "REPLACE",
        "UPSERT",
        "CALL",
        "EXEC",
        "EXECUTE",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
    ]
)
#: The words after which a target (a table, a procedure) is named.
_BEFORE_TARGET = frozenset(["FROM", "JOIN", "INTO", "UPDATE", "TABLE", "CALL", "EXEC", "EXECUTE", "TRUNCATE"])
#: Words between a target word and its target.
_SKIPPED = frozenset(["ONLY", "LATERAL", "IF", "NOT", "EXISTS"])
#: ``UPDATE`` after these is no operation (``FOR UPDATE``, ``ON DUPLICATE KEY UPDATE``, ``DO UPDATE``).
_NOT_UPDATE_AFTER = frozenset(["FOR", "KEY", "DO", "ON"])
#: Words inside a ``FROM`` list that are never a target or an alias: after ``ON a = b`` or
#: ``USING (id)`` a comma still names the next table (``FROM a JOIN b ON a.id = b.id, c``).
_JOIN_WORDS = frozenset(
    ["ON", "USING", "INNER", "LEFT", "RIGHT", "FULL", "OUTER", "CROSS", "NATURAL", "STRAIGHT_JOIN"]
)
#: Words that end a list of targets and are never an alias.
_END_WORDS = frozenset(
    [
        "WHERE",
        "SET",
        "VALUES",
        "VALUE",
        "DEFAULT",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FETCH",
        "HAVING",
        "WINDOW",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "RETURNING",
        "FOR",
        "WITH",
        "SELECT",
    ]
)
_NOT_TARGET = _JOIN_WORDS | _END_WORDS
_PUNCTUATION = frozenset("(),;")


def _summary_words(statement: str) -> list[str]:
    """The names (``public.orders``, ``"song list"``, ``[dbo].[t]``) and the punctuation
    (``(``, ``)``, ``,``, ``;``) of ``statement``, in order; literals, placeholders, comments and
    operators left out. The tokens are ``split``'s: a quoted name is one of them."""
    words: list[str] = []
    name: list[str] = []  # the parts of the name read so far (joined once: a long dotted chain stays linear)
    join = False  # a "." follows the name: the next name part belongs to it
    for index, part in enumerate(split(statement)):
        for word in (part,) if index % 2 else _PLAIN_WORD.findall(part):
            # a token is a name part when it is a quoted name; a plain word when it starts with a letter
            if _KIND_OF.get(word[0]) == _IDENT if index % 2 else word[0] == "_" or word[0].isalpha():
                if not join and name:
                    words.append(".".join(name))
                    name = []
                name.append(word)
                join = False
                continue
            if word == "." and name and not join:
                join = True
                continue
            if name:
                words.append(".".join(name))
                name = []
            join = False
            if word in _PUNCTUATION:
                words.append(word)
    if name:
        words.append(".".join(name))
    return words


def summary(statement: str) -> str:
    """A low-cardinality ``db.query.summary`` of a sanitized statement (``""``: none found).

    As the database semantic conventions describe it: each operation and the tables (or the
    procedure) it works on, in the order they appear and as they are written, the operation's case
    included (``SELECT orders``, ``select orders`` for ``select ... from orders``,
    ``INSERT shipping_details SELECT orders``, ``SELECT songs artists`` for a join or a comma list,
    ``SELECT SELECT orders customers`` for a subquery in ``FROM``, ``MERGE t src`` for a merge into
    ``t`` from ``src``, ``CREATE INDEX orders`` for an index on ``orders``: the index's name is left
    out, as the table's is kept); a statement without one of those operations is summarized by its
    first word as written (``BEGIN``, ``SET``), a MongoDB command with a document by the command
    (``find``). A scan of ``split``'s words that knows which ``FROM`` list each parenthesis level is
    in, not a parser: enough for a grouping label, and cheap. At most ``SUMMARY_MAX_CHARS``, cut
    between two of its words.
    """
    if "{" in statement:
        document = is_document_command(statement)
        if document:  # a MongoDB command: its name, as written (the collection is not in the text)
            return document.group(1)[:SUMMARY_MAX_CHARS]
    words: list[str] = []
    expect_target = in_list = index = False  # index: in CREATE/DROP INDEX, before its ON
    outer: list[bool] = []  # in_list of each enclosing parenthesis level
    previous = operation = ""  # operation: the last one named
    for word in _summary_words(statement):
        upper = word.upper()
        if word == "(":
            outer.append(in_list)
            expect_target = in_list = False  # FROM (SELECT ...): the target has no name
        elif word == ")":
            in_list = outer.pop() if outer else False
            expect_target = False
        elif word == ";":
            expect_target = in_list = index = False
            outer.clear()
        elif upper in _OPERATIONS and not (upper == "UPDATE" and previous in _NOT_UPDATE_AFTER):
            words.append(word)  # as written: the conventions keep the operation's case
            operation = upper
            expect_target, in_list = upper in _BEFORE_TARGET, False
        elif upper == "INDEX" and words and words[-1].upper() in ("CREATE", "DROP"):
            # CREATE [UNIQUE] INDEX name ON t: the operation on t; the index's own name is left out
            words[-1] += " " + word
            expect_target, index = False, True
        elif upper == "ON" and index:
            expect_target, index = True, False
        elif upper in _BEFORE_TARGET and upper != "UPDATE":
            expect_target, in_list = True, upper in ("FROM", "JOIN")
        elif upper == "USING":
            # DELETE FROM t USING u, v and MERGE INTO t USING src name tables; JOIN u USING (id)
            # and CREATE INDEX ... USING btree do not
            expect_target = in_list or operation == "MERGE"
        elif expect_target:
            if upper not in _SKIPPED:
                expect_target = False
                if word == ",":
                    expect_target = in_list
                elif upper not in _NOT_TARGET:
                    words.append(word)
                elif upper in _END_WORDS:
                    in_list = False
        elif word == ",":
            expect_target = in_list
        elif upper in _END_WORDS:
            in_list = False
        previous = upper
    if not words:
        first = statement.split(None, 1)
        return first[0] if first and first[0].isalpha() and len(first[0]) <= 32 else ""
    text = " ".join(words)
    if len(text) > SUMMARY_MAX_CHARS:
        cut = text.rfind(" ", 0, SUMMARY_MAX_CHARS + 1)
        text = text[: cut if cut > 0 else SUMMARY_MAX_CHARS]
    return text
