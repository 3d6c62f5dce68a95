"""An ASGI application for the trace-shape tests: FastAPI on uvicorn calling a local HTTP service with
``httpx.AsyncClient``.

It knows nothing of the agent: run it as a user would, under the zero-code start,

    amqadf-agent run --exporter file -- python -m uvicorn fastapi_app:app --app-dir tests/apps

(the FastAPI, ASGI and httpx instrumentations come with it). The called service, ``inventory.start``'s
(uninstrumented), starts with the app (its lifespan) on a free port, which the app prints on stdout
(``inventory port=N``); its answers take ``DELAY_S`` seconds so that the calls take measurable time.
The routes:

* ``GET /orders/{order_id}``: 12 stock calls awaited one after another (an N+1), then three
  independent calls one after another (pricing, reviews, shipping), and a GET made twice (flags);
* ``GET /catalog``: 12 availability calls issued at once with ``asyncio.gather`` (an N+1 whose calls
  overlap);
* ``GET /health``: one call, the healthy control.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import inventory
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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    server = inventory.start(DELAY_S)
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
