"""The HTTP side of the Prometheus source: one ``/api/v1/query_range`` call, checked and bounded.

Why a module of its own: what the API is asked, how credentials stay with their origin, how much of
an answer is read and how each failure becomes one ``TelemetryInputError`` line are one concern;
``prometheus_source`` turns the matrices answered into records. Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Final

from amqadf_agent.errors import TelemetryInputError

#: The most of an HTTP error's body read for Prometheus' own message.
_ERROR_BODY_BYTES: Final = 64 * 1024


def check_url(url: str, shown: str) -> tuple[str, dict[str, str]]:
    """The base URL of the API without user info, and the Basic auth header the user info stands for."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here, not in the first request
    except ValueError as error:
        raise TelemetryInputError(
            f"not a valid URL of a Prometheus-compatible API: {shown!r}: {error}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryInputError(f"not an http(s) URL of a Prometheus-compatible API: {shown!r}")
    userinfo, at, host = parts.netloc.rpartition("@")
    sent: dict[str, str] = {}
    if at:
        user, colon, password = (urllib.parse.unquote(p) for p in userinfo.partition(":"))
        token = base64.b64encode(f"{user}{colon}{password}".encode()).decode("ascii")
        sent["Authorization"] = f"Basic {token}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")), sent


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url`` (the default port of the scheme when it names none)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port if port is not None else default


class _SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, but a redirect to another origin gets no header of the caller
    (credentials), only ``Accept``; once dropped they stay dropped on every later hop."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            for name in [name for name in new.headers if name.lower() != "accept"]:
                del new.headers[name]
        return new


class Query:
    """How to ask the API: where, with which headers, how long to wait and how much to read."""

    def __init__(
        self,
        base: str,
        shown: str,
        timeout: float,
        headers: dict[str, str],
        max_bytes: int,
        deadline: float,
    ) -> None:
        self.base = base
        #: The URL as messages show it (password redacted).
        self.shown = shown
        self.timeout = timeout
        self.headers = headers
        self.max_bytes = max_bytes
        self.deadline = deadline
        #: The sockets of the query under way (one per redirect hop), for the deadline to shut.
        self.sockets: list[socket.socket] = []
        track = self.sockets.append
        self.opener = urllib.request.build_opener(
            _SameOriginCredentials(), _TrackedHTTPHandler(track), _TrackedHTTPSHandler(track)
        )

    def cut(self) -> None:
        """The deadline passed: shut the query's sockets, which ends any read or wait on them."""
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _tracking(cls: type[http.client.HTTPConnection], track: Callable[[Any], None]) -> Any:
    """``cls`` telling ``track`` of each socket it connects. The socket, not the connection: urllib
    drops the connection's hold on it once the headers are in, and the body is read through it."""

    class Tracked(cls):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    return Tracked


class _TrackedHTTPHandler(urllib.request.HTTPHandler):
    """urllib's HTTP handler, telling ``track`` of each socket it connects."""

    def __init__(self, track: Callable[[Any], None]) -> None:
        super().__init__()
        self._track = track

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_tracking(http.client.HTTPConnection, self._track), req)


class _TrackedHTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's HTTPS handler (default TLS context), telling ``track`` of each socket it connects."""

    def __init__(self, track: Callable[[Any], None]) -> None:
        super().__init__()
        self._track = track

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        context = getattr(self, "_context", None)
        return self.do_open(_tracking(http.client.HTTPSConnection, self._track), req, context=context)


@contextlib.contextmanager
def _within_deadline(api: Query) -> Iterator[threading.Event]:
    """Shut the query's connections at ``api.deadline``; what fails after that is the deadline's error.

    The event it gives is set once the deadline passed: an answer without a length then simply ends
    early, and the caller checks it after reading.
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        api.cut()

    timer = threading.Timer(api.deadline, expire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    except Exception:
        if expired.is_set():
            raise _past_deadline(api) from None
        raise
    finally:
        timer.cancel()
        api.sockets.clear()


def _past_deadline(api: Query) -> TelemetryInputError:
    return TelemetryInputError(
        f"Prometheus at {api.shown} did not answer a query in full within {api.deadline:g} s: "
        "ask for less (a larger step, a shorter time range, one service) or check the server"
    )


def query_range(
    api: Query, query: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """The matrix ``query`` answers: ``(labels, [(time_ns, value), …])`` per series, NaN dropped."""
    url, timeout = api.shown, api.timeout
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    )
    request = urllib.request.Request(
        f"{api.base}/api/v1/query_range?{params}", headers={"Accept": "application/json", **api.headers}
    )
    with _within_deadline(api) as expired:
        try:
            with api.opener.open(request, timeout=timeout) as response:
                content_type = response.headers.get("Content-Type", "")
                raw = _read_at_most(response, api)
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if detail:
                raise TelemetryInputError(
                    f"Prometheus at {url} refused the query (HTTP {error.code}): {detail}"
                ) from None
            raise TelemetryInputError(
                f"{url} answered HTTP {error.code} {error.reason} to /api/v1/query_range: "
                "is it a Prometheus-compatible API?"
            ) from None
        except urllib.error.URLError as error:
            reason = error.reason
            text = getattr(reason, "strerror", None) or str(reason)
            if isinstance(reason, TimeoutError):
                text = f"no answer within {timeout:g} s"
            raise TelemetryInputError(f"cannot reach Prometheus at {url}: {text}") from None
        except TimeoutError:
            raise TelemetryInputError(
                f"cannot reach Prometheus at {url}: no answer within {timeout:g} s"
            ) from None
        except (http.client.HTTPException, OSError) as error:
            raise TelemetryInputError(
                f"cannot read the answer of {url}: {type(error).__name__}: {error}".rstrip(": ")
            ) from None
        if expired.is_set():  # an answer without a length ends early when cut, without an error
            raise _past_deadline(api)
    try:
        body = json.loads(raw)
    except ValueError:
        kind = content_type.split(";")[0].strip() or "no content type"
        raise TelemetryInputError(
            f"{url} does not answer like a Prometheus-compatible API (got {kind}, not JSON, "
            "from /api/v1/query_range)"
        ) from None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise TelemetryInputError(
            f"{url} does not answer like a Prometheus-compatible API "
            "(JSON without a status from /api/v1/query_range)"
        )
    if body["status"] == "error":
        raise TelemetryInputError(
            f"Prometheus at {url} refused the query: "
            f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        )
    data = body.get("data")
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "matrix"
        or not isinstance(data.get("result"), list)
    ):
        raise TelemetryInputError(
            f"{url} does not answer like a Prometheus-compatible API "
            "(no matrix result from /api/v1/query_range)"
        )
    out: list[tuple[dict[str, str], list[tuple[int, float]]]] = []
    for item in data["result"]:
        if not isinstance(item, dict):
            continue
        labels = item.get("metric")
        values = item.get("values")
        if not isinstance(labels, dict) or not isinstance(values, list):
            continue
        samples: list[tuple[int, float]] = []
        for pair in values:
            try:
                t, v = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if not math.isnan(v):
                samples.append((round(t * 1000) * 1_000_000, v))
        if samples:
            out.append(({str(k): str(v) for k, v in labels.items()}, samples))
    return out


def _read_at_most(response: http.client.HTTPResponse, api: Query) -> bytes:
    """The body of ``response``; a ``TelemetryInputError`` rather than more than ``api.max_bytes``."""
    declared = response.headers.get("Content-Length", "")
    raw = b""
    too_large = declared.isdigit() and int(declared) > api.max_bytes  # refused before reading it
    if not too_large:
        raw = response.read(api.max_bytes + 1)
        too_large = len(raw) > api.max_bytes
    if too_large:
        limit = f"{api.max_bytes / 1024**2:g} MiB"
        raise TelemetryInputError(
            f"the answer of {api.shown} to /api/v1/query_range is larger than {limit}: ask for less "
            "(a larger step, a shorter time range, one service)"
        )
    return raw


def _error_detail(error: urllib.error.HTTPError) -> str:
    """Prometheus' own message of an HTTP error (``errorType: error``), or ``""`` when it has none."""
    try:
        body = json.loads(error.read(_ERROR_BODY_BYTES))
    except (ValueError, OSError):
        return ""
    if isinstance(body, dict) and body.get("status") == "error":
        return f"{body.get('errorType', 'error')}: {body.get('error', '')}"
    return ""
