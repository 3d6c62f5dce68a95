"""``redact_url_full``'s quick path for the common URL gives what the general rule gives, on any text.

The reference below is the rule written plainly (the user info's password, then every value of the
query after the first ``?`` and of a ``key=value`` fragment after the first ``#`` that follows it);
the quick path (no ``@``, no ``#``) must agree with it on every URL, tricky or generated.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from amqadf_agent.redaction import REDACTED, redact_url, redact_url_full
from amqadf_agent.runtime import sanitize
from amqadf_agent.runtime.sanitize import SanitizingSpanProcessor

_VALUE = re.compile(r"=[^&;]*")


def _reference_query(query: str) -> str:
    return _VALUE.sub("=" + REDACTED, query)


def reference(url: str) -> str:
    """The rule, with no quick path."""
    url = redact_url(url)
    head, mark, query = url.partition("?")
    if mark:
        query, hash_mark, fragment = query.partition("#")
        return head + mark + _reference_query(query) + hash_mark + _reference_query(fragment)
    head, hash_mark, fragment = url.partition("#")
    return head + hash_mark + _reference_query(fragment)


TRICKY = [
    "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=abc",
    "https://b.s3.amazonaws.com/k?x-amz-signature=abc&X-AMZ-SIGNATURE=def",
    "https://h/p?%41WSAccessKeyId=AKIA&Sig%6Eature=abc%3D%3D",  # encoded names
    "https://h/p?sig=1&sig=2&sig=",  # repeated keys, an empty value
    "https://h/p?q=a%26b%3Dc&sig=d",  # an encoded "&" and "=" inside a value
    "https://h/p?q=a&b&sig=c=d",  # a name without a value between two pairs, "=" in a value
    "https://h/p?a=&b==c&=d&e",  # empty values, "=" in a value, no name, no value
    "https://h/p?a=1;b=2&c=3",  # ";" separates as "&" does
    "https://h/p;jsessionid=abc?q=1",  # a path parameter before the query
    "https://h/a=b/c?q=1",  # "=" in the path
    "https://h/a=b/c",  # "=" in the path, no query
    "https://h/p?q=1#frag",
    "https://h/p?q=1#access_token=t&state=s",
    "https://h/p#access_token=t?x=1",  # "?" inside the fragment
    "https://h/p#section",
    "https://h/p?",
    "https://h/p?&&",
    "https://[2001:db8::1]:8443/p?token=abc",  # IPv6 host
    "https://user:p@ss@[2001:db8::1]/p?sig=1",  # "@" in the password
    "https://user:pw@h/p?sig=1#k=v",
    "https://token@h/p?sig=1",
    "https://h/p?next=https://u:pw@evil/x",  # a URL with user info inside a value
    "/search?q=ann%40example.com&debug",  # http.target
    "/search?q=a@b.c",
    "mailto:ann@example.com?subject=hi",
    "https://h/p?q=1\n2&r=3",
    "",
    "?",
    "=",
    "?=",
    "=?=",
]


@pytest.mark.parametrize("url", TRICKY)
def test_redact_url_full_agrees_with_the_rule_on_tricky_urls(url: str) -> None:
    assert redact_url_full(url) == reference(url)


def test_signature_values_go_whatever_the_case_or_encoding_of_their_names() -> None:
    redacted = redact_url_full(TRICKY[1]) + redact_url_full(TRICKY[2])
    for secret in ("abc", "def", "AKIA", "%3D"):
        assert secret not in redacted
    assert "X-AMZ-SIGNATURE=" in redacted and "Sig%6Eature=" in redacted


#: Text built from what a URL's parts are made of, so that generated examples hit every branch.
_PIECES = st.sampled_from(["?", "#", "@", "=", "&", ";", ":", "/", "://", "%41", "[::1]", "a", "Z", "9", " "])
_URLS = st.lists(_PIECES, max_size=24).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.one_of(_URLS, st.text(max_size=40)))
@example("https://h/a=b?c=d")
@example("h?a=b=c&d")
def test_redact_url_full_agrees_with_the_rule_on_any_text(url: str) -> None:
    assert redact_url_full(url) == reference(url)


@settings(max_examples=200, deadline=None)
@given(_URLS)
def test_the_processors_memo_gives_what_redact_url_full_gives(url: str) -> None:
    processor = SanitizingSpanProcessor()
    first = processor.rewrite({"url.full": url})
    again = processor.rewrite({"url.full": url})  # a memo hit when the first was memoized
    expected = redact_url_full(url)
    for result in (first, again):
        assert (url if result is None else result["url.full"]) == expected


def test_the_url_memo_is_bounded_and_skips_long_urls() -> None:
    processor = SanitizingSpanProcessor()
    for n in range(sanitize.URL_MEMO_MAX_ENTRIES + 10):
        processor.rewrite({"url.full": f"https://h/p?n={n}"})
    assert 0 < len(sanitize._url_memo) <= sanitize.URL_MEMO_MAX_ENTRIES
    long_url = "https://h/p?sig=" + "x" * sanitize.URL_MEMO_MAX_CHARS
    assert processor.rewrite({"url.full": long_url}) == {"url.full": f"https://h/p?sig={REDACTED}"}
    assert long_url not in sanitize._url_memo
