"""The service the HTTP-calling test apps call: a plain ``http.server`` in a thread, uninstrumented,
answering JSON after a delay that depends on the first path segment of the request, so that the calls
take measurable time. ``start(delays)`` serves on a free loopback port; ``server.server_address[1]`` is
the port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Inventory(BaseHTTPRequestHandler):
    delays: Mapping[str, float] = {}

    def do_GET(self) -> None:
        kind = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        time.sleep(self.delays.get(kind, 0.0))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read stdout."""


class _Server(ThreadingHTTPServer):
    """A listen backlog for a dozen connections at once (``asyncio.gather``): with the default 5, the
    kernel drops the others' SYNs and the client sends them again a second later."""

    request_queue_size = 64


def start(delays: Mapping[str, float]) -> ThreadingHTTPServer:
    """Serve on ``127.0.0.1`` and a free port in a daemon thread; ``shutdown()`` ends it."""
    handler = type("Inventory", (_Inventory,), {"delays": dict(delays)})
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
