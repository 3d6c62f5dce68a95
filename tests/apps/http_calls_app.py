"""An application for the trace-shape tests: a Flask endpoint calling a local HTTP service with
``requests``, with an N+1 loop, three independent calls one after another and a repeated GET.

It knows nothing of the agent beyond the first import (``amqadf_agent.auto``: the agent and every
installed instrumentation, Flask's and requests' among them). The local service is
``inventory.start``'s, uninstrumented; its answers take ``DELAY_S`` seconds so that the calls
take measurable time. ``/health`` is the healthy control: one call.
"""

import amqadf_agent.auto  # noqa: F401, I001 - the first import: starts the agent and the instrumentations

import inventory
import requests
from flask import Flask

#: Items of an order: one stock call each (the N+1).
ITEMS = tuple(range(101, 113))
DELAY_S = {"stock": 0.03, "pricing": 0.08, "reviews": 0.08, "shipping": 0.08, "flags": 0.01, "ping": 0.001}
ORDERS = (1, 2)
HEALTH_CHECKS = 3

app = Flask(__name__)


@app.route("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, object]:
    base = app.config["INVENTORY"]
    with requests.Session() as http:
        flags = http.get(f"{base}/flags?app=shop", timeout=5).json()
        stock = [http.get(f"{base}/stock/{item}", timeout=5).json() for item in ITEMS]
        price = http.get(f"{base}/pricing/{order_id}", timeout=5).json()
        reviews = http.get(f"{base}/reviews?order={order_id}", timeout=5).json()
        shipping = http.get(f"{base}/shipping/{order_id}/quote", timeout=5).json()
        again = http.get(f"{base}/flags?app=shop", timeout=5).json()
    return {"stock": len(stock), "parts": [flags, price, reviews, shipping, again]}


@app.route("/health")
def health() -> str:
    requests.get(f"{app.config['INVENTORY']}/ping", timeout=5).raise_for_status()
    return "ok"


def main() -> None:
    server = inventory.start(DELAY_S)
    app.config["INVENTORY"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = app.test_client()
        for order_id in ORDERS:
            assert client.get(f"/orders/{order_id}").status_code == 200
        for _ in range(HEALTH_CHECKS):
            assert client.get("/health").status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    print(f"inventory port={server.server_address[1]}")
    print("app finished")


if __name__ == "__main__":
    main()
