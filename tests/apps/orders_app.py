"""A small shop on Flask and SQLAlchemy 2.0 (SQLite or PostgreSQL) with the faults the analyzer looks for.

* ``GET /orders``: the latest ``PAGE`` orders with their items, one query per order (an N+1);
* ``GET /orders/batched``: the same page fixed, one ``IN`` query for the items of all its orders;
* ``GET /customers/<id>/orders``: a customer's orders, on ``orders.customer_id``, which has no index
  (the index that helps);
* ``GET /orders/count/<status>``: orders with a status, of which there are two (an index on
  ``orders.status`` would not help);
* ``GET /health``: no database at all.

``seed(dsn)`` creates and fills the tables. Run as a script, it serves a fixed series of requests
through Flask's test client under the agent (file exporter) and exits::

    python tests/apps/orders_app.py OUT_DIR DSN REQUESTS [WARMUP [BATCHED]]

Each series asks every route but ``/orders/batched`` once; ``BATCHED`` more requests to the fixed
page are spread among the series, beside the N+1 (both ways in one run: a busy machine slows both
alike, where two runs one after the other would each see another load). ``WARMUP`` series go first
(the first connection, SQLAlchemy's statement cache, the planner's caches: a cold request is an
outlier, of the kind a p95 of a few dozen requests is made); it then prints ``measured from <ISO
8601>``, the moment the measured series start, for ``amqadf-analyze --since``.
"""

from __future__ import annotations

import datetime
import sqlite3
import sys
import time

from flask import Flask, jsonify
from sqlalchemy import ForeignKey, Index, create_engine, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

#: Orders on the /orders page: one query each in the N+1, well above its 50 ms run floor on a fast machine.
PAGE = 400
#: What a statement waits on SQLite, standing in for the round trip to a database across a network: an
#: indexed SQLite lookup alone takes about 60 us, so 400 of them sat at the N+1's 50 ms floor.
ROUND_TRIP_S = 0.00025
CUSTOMERS = 2_000
ORDERS = 60_000
ITEMS_PER_ORDER = 3


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int]
    status: Mapped[str]
    total: Mapped[float]


class Item(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str]
    qty: Mapped[int]
    __table_args__ = (Index("order_items_by_order", "order_id"),)


class _RoundTripCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        time.sleep(ROUND_TRIP_S)
        return super().execute(sql, parameters)  # type: ignore[arg-type]


class _RoundTripConnection(sqlite3.Connection):
    def cursor(self, factory: type[sqlite3.Cursor] = _RoundTripCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


def engine_for(dsn: str) -> Engine:
    """``sqlite:///path`` (each statement waiting ``ROUND_TRIP_S``) or ``postgresql://...`` (psycopg 3)."""
    if dsn.startswith("postgresql://"):
        return create_engine("postgresql+psycopg://" + dsn.removeprefix("postgresql://"))
    return create_engine(dsn, connect_args={"factory": _RoundTripConnection})


def seed(dsn: str) -> None:
    """Create the tables and fill them (then ANALYZE, so the planner knows the data)."""
    engine = engine_for(dsn)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Order),
            [
                {"id": i, "customer_id": i % CUSTOMERS, "status": "paid" if i % 2 else "open", "total": i}
                for i in range(1, ORDERS + 1)
            ],
        )
        conn.execute(
            insert(Item),
            [
                {"order_id": i, "sku": f"sku-{i % 97}-{n}", "qty": n + 1}
                for i in range(ORDERS - 4 * PAGE, ORDERS + 1)
                for n in range(ITEMS_PER_ORDER)
            ],
        )
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def create_app(engine: Engine) -> Flask:
    app = Flask("orders")
    page = select(Order.id, Order.total).order_by(Order.id.desc()).limit(PAGE)

    @app.get("/orders")
    def recent_orders() -> object:
        with Session(engine) as session:
            orders = session.execute(page).all()
            items = {}
            for order in orders:
                rows = load_items(session, order.id)
                items[order.id] = [(row.sku, row.qty) for row in rows]
        return jsonify([{"id": o.id, "total": o.total, "items": items.get(o.id, [])} for o in orders])

    @app.get("/orders/batched")
    def recent_orders_batched() -> object:
        with Session(engine) as session:
            orders = session.execute(page).all()
            ids = [order.id for order in orders]
            rows = session.execute(
                select(Item.order_id, Item.sku, Item.qty).where(Item.order_id.in_(ids))
            ).all()
            items: dict[int, list[tuple[str, int]]] = {}
            for row in rows:
                items.setdefault(row.order_id, []).append((row.sku, row.qty))
        return jsonify([{"id": o.id, "total": o.total, "items": items.get(o.id, [])} for o in orders])

    @app.get("/customers/<int:customer>/orders")
    def customer_orders(customer: int) -> object:
        with Session(engine) as session:
            rows = session.execute(select(Order.id, Order.total).where(Order.customer_id == customer)).all()
        return jsonify([{"id": row.id, "total": row.total} for row in rows])

    @app.get("/orders/count/<status>")
    def count_by_status(status: str) -> object:
        with Session(engine) as session:
            count = session.execute(select(func.count()).select_from(Order).where(Order.status == status))
            return jsonify({"status": status, "count": count.scalar_one()})

    @app.get("/health")
    def health() -> object:
        return jsonify({"ok": True})

    return app


def load_items(session: Session, order_id: int) -> list[object]:
    """The N+1: called once per order of the page."""
    return list(
        session.execute(select(Item.sku, Item.qty).where(Item.order_id == order_id)).all()  # N+1 here
    )


def main(argv: list[str]) -> None:
    out_dir, dsn, count = argv[0], argv[1], int(argv[2])
    warmup = int(argv[3]) if len(argv) > 3 else 0
    batched = int(argv[4]) if len(argv) > 4 else 0
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    import amqadf_agent

    agent = amqadf_agent.start(
        exporters=["file"], output_dir=out_dir, service_name="orders", self_metrics=False
    )
    engine = engine_for(dsn)
    SQLAlchemyInstrumentor().instrument(engine=engine)
    app = create_app(engine)
    FlaskInstrumentor().instrument_app(app)
    client = app.test_client()

    def serve(first: int, series: int, batched: int) -> None:
        done = 0
        for i in range(first, first + series):
            paths = ["/orders", f"/customers/{i % CUSTOMERS}/orders", "/orders/count/paid", "/health"]
            due = batched * (i - first + 1) // series - done  # batched requests spread evenly
            paths[i % 2 : i % 2] = ["/orders/batched"] * due  # before or after the N+1, in turn
            done += due
            for path in paths:
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)

    serve(count, warmup, warmup if batched else 0)  # other customers than the measured series ask for
    measured_from = datetime.datetime.now(datetime.timezone.utc)
    serve(0, count, batched)
    engine.dispose()
    assert agent.shutdown()
    print("served", count, "measured from", measured_from.isoformat())


if __name__ == "__main__":
    main(sys.argv[1:])
