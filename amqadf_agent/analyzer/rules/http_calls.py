"""Outbound HTTP calls as the trace-shape rules compare them: a method, a peer and a URL *template*.

Two calls to ``/api/users/17`` and ``/api/users/42`` are the same call with a different id, so the
path is templated: a segment that is a number, a UUID, a long hex string (a hash, an object id) or a
token mixing letters and at least three digits becomes ``{id}``. The query string is left out of the
template (its keys and values vary by caller); it only tells identical calls apart, through a digest.

The URL comes from ``url.full`` (stable HTTP conventions) or ``http.url`` (older ones), else from
``url.path``/``http.target`` with the peer in ``server.address``/``net.peer.name``. User info and query
values never leave this module: the template holds the host and the templated path only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from amqadf_agent.semconv import (
    ATTR_HTTP_METHOD_OLD,
    ATTR_HTTP_REQUEST_METHOD,
    ATTR_HTTP_TARGET_OLD,
    ATTR_HTTP_URL_OLD,
    ATTR_NET_PEER_NAME_OLD,
    ATTR_SERVER_ADDRESS,
    ATTR_SERVER_PORT,
    ATTR_URL_FULL,
    ATTR_URL_PATH,
)

__all__ = ["HttpCall", "describe", "http_call", "http_target", "template_path", "url_template"]

#: What an id segment becomes in a template.
ID: Final = "{id}"
_NUMBER: Final = re.compile(r"[0-9]+(?:[.,][0-9]+)?").fullmatch
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
).fullmatch
#: A hash or an object id: 8 hex digits or more with at least one decimal digit (not a word like
#: ``deadbeef``… which is rare in a path, but ``accepted`` is not hex anyway).
_HEX: Final = re.compile(r"(?=[a-fA-F]*[0-9])[0-9a-fA-F]{8,}").fullmatch
#: A token with letters and at least three digits (``ord_8f3k29x``, ``A12345``).
_TOKEN: Final = re.compile(r"(?=(?:[^0-9]*[0-9]){3})[A-Za-z0-9_\-]{6,}").fullmatch


class HttpCall(NamedTuple):
    """An outbound HTTP call as the rules compare it."""

    #: Upper-case method (``GET``), ``_OTHER`` when unknown.
    method: str
    #: ``host[:port]``, or ``""`` when the span names no peer.
    peer: str
    #: ``host[:port]/templated/path``: the key calls are grouped by.
    template: str
    #: A digest of the whole URL (query included): equal for identical calls; the URL is not kept.
    identity: str


def template_path(path: str) -> str:
    """``/users/17/orders/5f2b…`` -> ``/users/{id}/orders/{id}``."""
    if not path:
        return "/"
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment and (_NUMBER(segment) or _UUID(segment) or _HEX(segment) or _TOKEN(segment)):
            segments[index] = ID
    return "/".join(segments)


def url_template(url: str) -> tuple[str, str]:
    """``(peer, template)`` of an absolute or a path-only URL; user info and query dropped."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        rest, authority = url, ""
    else:
        end = len(rest)
        for mark in "/?#":
            found = rest.find(mark)
            if found != -1 and found < end:
                end = found
        authority, rest = rest[:end], rest[end:]
        authority = authority.rpartition("@")[2].lower()
    path = rest.split("#", 1)[0].split("?", 1)[0]
    return authority, authority + template_path(path)


def http_call(attributes: Mapping[str, object]) -> HttpCall | None:
    """The call a CLIENT span's attributes describe, or ``None`` when it is not an HTTP call."""
    target = http_target(attributes)
    return None if target is None else describe(*target)


def http_target(attributes: Mapping[str, object]) -> tuple[str, str] | None:
    """``(method, url)`` of an HTTP client span, cheaply (the hot path: once per client span); the
    URL is absolute, or ``//peer/path`` when the span carries the path and the peer apart."""
    url = attributes.get(ATTR_URL_FULL) or attributes.get(ATTR_HTTP_URL_OLD)
    if not isinstance(url, str) or not url:
        path = attributes.get(ATTR_URL_PATH) or attributes.get(ATTR_HTTP_TARGET_OLD)
        if not isinstance(path, str) or not path:
            return None
        url = f"//{_peer(attributes)}{path}"
    method = attributes.get(ATTR_HTTP_REQUEST_METHOD) or attributes.get(ATTR_HTTP_METHOD_OLD)
    return (method.upper() if isinstance(method, str) and method else "_OTHER"), url


def describe(method: str, url: str) -> HttpCall:
    """The ``HttpCall`` of an ``http_target``."""
    if url.startswith("//"):
        url = "http:" + url
    peer, template = url_template(url)
    identity = hashlib.blake2b(f"{method} {url}".encode(), digest_size=8).hexdigest()
    return HttpCall(method, peer, template, identity)


def _peer(attributes: Mapping[str, object]) -> str:
    host = attributes.get(ATTR_SERVER_ADDRESS) or attributes.get(ATTR_NET_PEER_NAME_OLD)
    if not isinstance(host, str) or not host:
        return ""
    port = attributes.get(ATTR_SERVER_PORT)
    return f"{host.lower()}:{port}" if isinstance(port, int) and not isinstance(port, bool) else host.lower()
