"""The Prometheus source keeps its credentials and its memory: redirects to another host get no
``Authorization``/``X-Scope-OrgID``, an answer too large is one clear error, a ``user:pass@`` password
never shows. Real HTTP servers on 127.0.0.1 (two ports: two origins), no mocks."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, suppress
from typing import Any

import pytest
from support import free_port

from amqadf_agent.analyzer.prometheus_source import read_prometheus
from amqadf_agent.cli.analyze import main
from amqadf_agent.errors import TelemetryInputError
from amqadf_agent.redaction import redact_url

EMPTY_MATRIX = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode()
CREDENTIALS = {"Authorization": "Bearer token-4242", "X-Scope-OrgID": "tenant-4242"}


class Server:
    """An HTTP server on 127.0.0.1 that records each request's path and headers and answers with
    ``handle(handler)`` (the default: an empty Prometheus matrix)."""

    def __init__(self, handle: Callable[[http.server.BaseHTTPRequestHandler], None] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                (handle or answer_empty)(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def answer_empty(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(EMPTY_MATRIX)))
    handler.end_headers()
    handler.wfile.write(EMPTY_MATRIX)


def redirect_to(target: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    """Answer 302 to ``target``/moved + the path asked for; answer a path under /moved."""

    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/moved"):
            answer_empty(handler)
            return
        handler.send_response(302)
        handler.send_header("Location", f"{target}/moved{handler.path}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return handle


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(handle: Callable[[http.server.BaseHTTPRequestHandler], None] | None = None) -> Server:
        made.append(Server(handle))
        return made[-1]

    yield make
    for server in made:
        server.close()


def read_all(url: str, **kwargs: Any) -> list[Any]:
    return list(read_prometheus(url, start=100, end=160, step=15, **kwargs))


# --- redirects ----------------------------------------------------------------------------------------
def test_a_redirect_to_another_origin_gets_no_credentials(servers: Callable[..., Server]) -> None:
    # GIVEN an API that redirects every query to a server on another port (another origin)
    elsewhere = servers()
    api = servers(redirect_to(elsewhere.origin))
    # WHEN read with credentials
    assert read_all(api.origin, headers=CREDENTIALS) == []
    # THEN the API saw them, the other origin never did (on every one of its requests)
    assert api.requests and all(h["authorization"] == "Bearer token-4242" for _, h in api.requests)
    assert len(elsewhere.requests) == len(api.requests)
    for _path, headers in elsewhere.requests:
        assert "authorization" not in headers and "x-scope-orgid" not in headers
        assert headers["accept"] == "application/json"


def test_a_redirect_within_the_origin_keeps_the_credentials(servers: Callable[..., Server]) -> None:
    # GIVEN an API that redirects to a path of its own (a relative Location: the same origin)
    api = servers(redirect_to(""))
    assert read_all(api.origin + "/prom", headers=CREDENTIALS) == []
    # THEN both hops of every query carry the credentials
    paths = [path.split("?")[0] for path, _ in api.requests]
    assert "/prom/api/v1/query_range" in paths and "/moved/prom/api/v1/query_range" in paths
    for _path, headers in api.requests:
        assert headers["authorization"] == "Bearer token-4242" and headers["x-scope-orgid"] == "tenant-4242"


def test_the_password_of_the_url_is_basic_auth_and_never_crosses_origins(
    servers: Callable[..., Server],
) -> None:
    # GIVEN an API at user:pass@ that redirects to another origin
    elsewhere = servers()
    api = servers(redirect_to(elsewhere.origin))
    url = api.origin.replace("http://", "http://alice:s3cret-4242@")
    assert read_all(url) == []
    expected = "Basic " + base64.b64encode(b"alice:s3cret-4242").decode()
    assert all(h.get("authorization") == expected for _, h in api.requests)
    assert elsewhere.requests and all("authorization" not in h for _, h in elsewhere.requests)


# --- the password of a user:pass@ URL -------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:s3cret@prom:9090/api", "http://alice:[secure]@prom:9090/api"),
        ("https://s3cret@prom", "https://[secure]@prom"),
        ("http://alice:s3cret@prom?x=1", "http://alice:[secure]@prom?x=1"),
        ("http://prom:9090/a@b", "http://prom:9090/a@b"),  # an @ in the path is no user info
        ("http://prom:9090", "http://prom:9090"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_error_shows_the_password() -> None:
    url = f"http://alice:s3cret-4242@127.0.0.1:{free_port()}"
    with pytest.raises(TelemetryInputError) as info:
        read_all(url)
    message = str(info.value)
    assert "s3cret" not in message and "alice:[secure]@127.0.0.1" in message
    for bad in ("ftp://alice:s3cret-4242@host", "http://alice:s3cret-4242@[::1"):
        with pytest.raises(TelemetryInputError) as info:
            read_all(bad)
        assert "s3cret" not in str(info.value) and "alice:[secure]@" in str(info.value)


def test_the_command_never_shows_the_password(servers: Callable[..., Server]) -> None:
    unreachable = f"http://alice:s3cret-4242@127.0.0.1:{free_port()}"
    empty = servers().origin.replace("http://", "http://alice:s3cret-4242@")
    for url in (unreachable, empty):  # cannot reach it; no series in it
        err = io.StringIO()
        with redirect_stderr(err):
            assert main(["--prometheus", url, "--since", "10m"]) == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and "s3cret" not in lines[0] and "alice:[secure]@127.0.0.1" in lines[0]


# --- the size of an answer ------------------------------------------------------------------------
def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
    """200 with no length, then bytes until the client goes away."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    chunk = b" " * 65536
    try:
        while True:
            handler.wfile.write(chunk)
    except OSError:
        pass


def announced_huge(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(50 * 1024**3))
    handler.end_headers()
    with suppress(OSError):
        handler.wfile.write(b"{" * 65536)


@pytest.mark.parametrize("handle", [endless, announced_huge])
def test_an_answer_larger_than_the_cap_is_one_clear_error(
    servers: Callable[..., Server], handle: Callable[[http.server.BaseHTTPRequestHandler], None]
) -> None:
    api = servers(handle)
    url = api.origin.replace("http://", "http://alice:s3cret-4242@")
    started = time.monotonic()
    with pytest.raises(TelemetryInputError) as info:
        read_all(url, max_answer_bytes=1024 * 1024)
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "\n" not in message and "larger than 1 MiB" in message
    assert "alice:[secure]@127.0.0.1" in message and "s3cret" not in message


def test_the_default_cap_holds_an_endless_answer(servers: Callable[..., Server]) -> None:
    import resource

    api = servers(endless)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TelemetryInputError, match="larger than"):
        read_all(api.origin)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 400
