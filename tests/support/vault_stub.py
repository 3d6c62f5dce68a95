"""A loopback stand-in for HashiCorp Vault (which cannot be installed here), for the tests of ``hvac``.

It answers the few endpoints the Vault provider uses, as Vault's HTTP API documentation specifies:

- ``GET /v1/{mount}/data/{path}`` (KV version 2, read secret version): 200 with
  ``{"data": {"data": {...}, "metadata": {...}}, ...}``; 404 with ``{"errors": []}`` for a missing
  path; 403 with ``{"errors": ["permission denied"]}`` for a missing or unknown ``X-Vault-Token``.
- ``POST /v1/auth/{mount}/login`` (AppRole login, body ``{"role_id", "secret_id"}``): 200 with
  ``{"auth": {"client_token": ..., "lease_duration": ..., ...}}``; 400 with
  ``{"errors": ["invalid role or secret ID"]}`` for wrong credentials.
- ``GET /v1/auth/token/lookup-self``: 200 with ``{"data": {...}}`` for a valid token, 403 otherwise.

Secrets and tokens live per namespace (the ``X-Vault-Namespace`` header; root is ``""``), as in
Vault Enterprise. Every request's path and headers are recorded in ``requests``.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _response(data: dict[str, Any] | None = None, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    """Vault's response envelope around ``data`` (a secret read) or ``auth`` (a login)."""
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
    }


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class VaultStub:
    """The state of the stub: secrets by (namespace, mount, path), tokens and AppRoles by namespace."""

    secrets: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    approles: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    versions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    tls: bool = False
    thread: threading.Thread | None = None

    # -- setup ---------------------------------------------------------------------------------------

    def put(self, path: str, data: dict[str, Any], *, mount: str = "secret", namespace: str = "") -> None:
        key = (namespace, mount, path.strip("/"))
        with self.lock:
            self.secrets[key] = dict(data)
            self.versions[key] = self.versions.get(key, 0) + 1

    def add_token(self, token: str, namespace: str = "") -> None:
        with self.lock:
            self.tokens.setdefault(namespace, set()).add(token)

    def revoke(self, token: str, namespace: str = "") -> None:
        with self.lock:
            self.tokens.get(namespace, set()).discard(token)

    def add_approle(
        self, role_id: str, secret_id: str, *, mount: str = "approle", namespace: str = ""
    ) -> None:
        with self.lock:
            self.approles[(namespace, role_id)] = (secret_id, mount)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self, tls: tuple[str, str] | None = None) -> VaultStub:
        """Serve on a loopback port; over HTTPS with ``tls`` = (certificate file, key file)."""
        stub = self
        self.tls = tls is not None

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _record(self) -> tuple[str, str | None]:
                with stub.lock:
                    stub.requests.append(Recorded(self.command, self.path, dict(self.headers.items())))
                return self.headers.get("X-Vault-Namespace", "").strip("/"), self.headers.get("X-Vault-Token")

            def _authorized(self, namespace: str, token: str | None) -> bool:
                with stub.lock:
                    return token is not None and token in stub.tokens.get(namespace, set())

            def do_GET(self) -> None:
                namespace, token = self._record()
                path = self.path.split("?", 1)[0]
                if not self._authorized(namespace, token):
                    self._reply(403, {"errors": ["permission denied"]})
                    return
                if path == "/v1/auth/token/lookup-self":
                    self._reply(200, {"data": {"id": token, "policies": ["default"], "ttl": 3600}})
                    return
                parts = path.removeprefix("/v1/").split("/", 2)
                if len(parts) != 3 or parts[1] != "data":
                    self._reply(404, {"errors": []})
                    return
                key = (namespace, parts[0], parts[2].strip("/"))
                with stub.lock:
                    data = stub.secrets.get(key)
                    version = stub.versions.get(key, 0)
                if data is None:
                    self._reply(404, {"errors": []})
                    return
                metadata = {
                    "created_time": "2024-01-01T00:00:00.000000Z",
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": version,
                }
                self._reply(200, _response(data={"data": data, "metadata": metadata}))

            def do_POST(self) -> None:
                namespace, _ = self._record()
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._reply(400, {"errors": ["failed to parse JSON input"]})
                    return
                parts = path.removeprefix("/v1/auth/").split("/")
                if len(parts) != 2 or parts[1] != "login":
                    self._reply(404, {"errors": []})
                    return
                with stub.lock:
                    known = stub.approles.get((namespace, str(body.get("role_id"))))
                if known is None or known != (body.get("secret_id"), parts[0]):
                    self._reply(400, {"errors": ["invalid role or secret ID"]})
                    return
                client_token = "hvs." + uuid.uuid4().hex
                stub.add_token(client_token, namespace)
                auth = {
                    "client_token": client_token,
                    "accessor": uuid.uuid4().hex,
                    "policies": ["default"],
                    "token_policies": ["default"],
                    "metadata": {"role_name": "app"},
                    "lease_duration": 1200,
                    "renewable": True,
                }
                self._reply(200, _response(auth=auth))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="vault-stub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
