"""What a secret looks like wherever it is shown, and URLs with their credentials taken out.

A leaf module (standard library only): the settings, the resilience stores and the analyzer's
Prometheus source all show URLs a user gave, and the analyzer may import it without importing the
agent's runtime or its configuration (docs/design.md, the walls).
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_query", "redact_url", "redact_url_full"]

#: What a secret looks like wherever it is shown.
REDACTED = "[secure]"


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced: ``https://user:[secure]@host``.

    A user info without a colon (``redis://token@host``) is taken for a password: it is all replaced.
    The user info ends at the last ``@`` before the path, query or fragment, so a password that holds
    an ``@`` is replaced whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1 and found < end:
            end = found
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{REDACTED}" if colon else REDACTED
    return f"{scheme}://{shown}@{host}{tail}"


def redact_url_full(url: str) -> str:
    """``url`` with its password *and* every query-parameter value replaced, the names kept.

    A signed URL (``Signature``, ``X-Amz-Credential``, ``sig``, a token) carries its secret in a
    value, and which parameters are secrets is the server's business: all values go, so the shape of
    the request (``?user=[secure]&sig=[secure]``) is still there to read. A fragment in ``key=value``
    form (OAuth's ``#access_token=``) is treated as a query. Works on a path with a query as well
    (``http.target``: ``/search?q=...``).
    """
    # The common URL (no user info, no fragment): its query alone, with no more tests than that. It
    # runs in ``span.end()`` for every URL signed afresh (a memo miss).
    if "@" not in url and "#" not in url:
        head, mark, query = url.partition("?")
        if "=" not in query:
            return url
        return head + mark + _SHOWN_VALUE.join(_QUERY_VALUES(query))
    if "@" in url:
        url = redact_url(url)
    head, mark, query = url.partition("?")
    if mark:
        query, hash_mark, fragment = query.partition("#")
        url = head + mark + redact_query(query) + hash_mark + _redact_fragment(fragment)
    else:
        head, hash_mark, fragment = url.partition("#")
        if hash_mark:
            url = head + hash_mark + _redact_fragment(fragment)
    return url


def redact_query(query: str) -> str:
    """A query string (``a=1&b=2``, no ``?``) with every value replaced: ``a=[secure]&b=[secure]``.

    A parameter without ``=`` (``?debug``) is a name and stays; ``;`` separates as ``&`` does.
    """
    return _SHOWN_VALUE.join(_QUERY_VALUES(query)) if "=" in query else query


#: The text around the values of a query string, each value from its ``=`` to the next separator (an
#: ``=`` inside it included): joined again by ``_SHOWN_VALUE``, it is the query with every value
#: replaced, as ``re.sub`` would give it, with no template to read and about a tenth faster.
_QUERY_VALUES = re.compile(r"=[^&;]*").split
_SHOWN_VALUE = "=" + REDACTED


def _redact_fragment(fragment: str) -> str:
    return redact_query(fragment) if "=" in fragment else fragment
