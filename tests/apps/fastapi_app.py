"""An ASGI application for the trace-shape tests: FastAPI on uvicorn calling a local HTTP service with
``httpx.AsyncClient``.

It knows nothing of the agent: run it as a user would, under the zero-code start,

    amqadf-agent run --exporter file -- python -m uvicorn fastapi_app:app --app-dir tests/apps

(the FastAPI, ASGI and httpx instrumentations come with it). The called service is a plain
``http.server`` in a thread, uninstrumented, started with the app (its lifespan) on a free port, which
the app prints on stdout (``inventory port=N``); its answers take ``DELAY_S`` seconds so that the
calls take measurable time. The routes:

* ``GET /orders/{order_id}``: 12 stock calls awaited one after another (an N+1), then three
  independent calls one after another (pricing, reviews, shipping), and a GET made twice (flags);
* ``GET /catalog``: 12 availability calls issued at once with ``asyncio.gather`` (an N+1 whose calls
  overlap);
* ``GET /health``: one call, the healthy control.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from fastapi import FastAPI

#: Items of an order or of the catalog page: one call each (the N+1).
ITEMS = tuple(range(101, 113))
DELAY_S = {
    "stock": 0.03,
    "availability": 0.03,
    "pricing": 0.08,
    "reviews": 0.08,
    "shipping": 0.08,
    "flags": 0.01,
    "ping": 0.001,
}


class Inventory(BaseHTTPRequestHandler):
    """The called service: JSON after a delay that depends on the first path segment."""

    def do_GET(self) -> None:
        kind = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        time.sleep(DELAY_S.get(kind, 0.0))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads stdout."""


class InventoryServer(ThreadingHTTPServer):
    """A listen backlog for the catalog's 12 connections at once: with the default 5, the kernel drops
    the others' SYNs and the client sends them again a second later."""

    request_queue_size = 64


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    server = InventoryServer(("127.0.0.1", 0), Inventory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.state.inventory = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"inventory port={server.server_address[1]}", flush=True)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


app = FastAPI(lifespan=lifespan)


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=app.state.inventory, timeout=5) as http:
        flags = (await http.get("/flags?app=shop")).json()
        stock = [(await http.get(f"/stock/{item}")).json() for item in ITEMS]
        price = (await http.get(f"/pricing/{order_id}")).json()
        reviews = (await http.get(f"/reviews?order={order_id}")).json()
        shipping = (await http.get(f"/shipping/{order_id}/quote")).json()
        again = (await http.get("/flags?app=shop")).json()
    return {"stock": len(stock), "parts": [flags, price, reviews, shipping, again]}


@app.get("/catalog")
async def catalog() -> dict[str, object]:
    async with httpx.AsyncClient(base_url=app.state.inventory, timeout=5) as http:
        answers = await asyncio.gather(*(http.get(f"/availability/{item}") for item in ITEMS))
    return {"items": [answer.json() for answer in answers]}


@app.get("/health")
async def health() -> str:
    async with httpx.AsyncClient(base_url=app.state.inventory, timeout=5) as http:
        (await http.get("/ping")).raise_for_status()
    return "ok"
