"""What a secret looks like wherever it is shown, and URLs with their credentials taken out.

A leaf module (standard library only): the settings, the resilience stores and the analyzer's
Prometheus source all show URLs a user gave, and the analyzer may import it without importing the
agent's runtime or its configuration (docs/design.md, the walls).
"""

from __future__ import annotations

__all__ = ["REDACTED", "redact_url"]

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
