"""A Flask + SQLAlchemy 2.0 application whose N+1 loop sits at a known line (``N_PLUS_ONE_LINE``).

It knows nothing of the agent. ``/orders`` loads the orders, then each order's items lazily, one
query per order: the N+1. ``/orders/joined`` loads the same in one query (the healthy way).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from sqlalchemy import ForeignKey, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer: Mapped[str] = mapped_column(String(40))
    items: Mapped[list[Item]] = relationship(back_populates="order", lazy="select")


class Item(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str] = mapped_column(String(20))
    order: Mapped[Order] = relationship(back_populates="items")


def make_engine(url: str = "sqlite://", orders: int = 300) -> Engine:
    """An engine on a database with ``orders`` orders of two items each."""
    from sqlalchemy.pool import StaticPool

    engine = create_engine(url, poolclass=StaticPool) if url == "sqlite://" else create_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for number in range(orders):
            session.add(Order(customer=f"c{number}", items=[Item(sku="a"), Item(sku="b")]))
        session.commit()
    return engine


def item_counts(session: Session) -> dict[int, int]:
    counts = {}
    for order in session.scalars(select(Order)).all():
        counts[order.id] = len(order.items)  # the N+1: one query per order, from this line
    return counts


def item_counts_joined(session: Session) -> dict[int, int]:
    orders = session.scalars(select(Order).options(selectinload(Order.items))).all()
    return {order.id: len(order.items) for order in orders}


def create_app(engine: Engine) -> Flask:
    app = Flask(__name__)

    @app.get("/orders")
    def orders() -> Any:
        with Session(engine) as session:
            return jsonify(total=sum(item_counts(session).values()))

    @app.get("/orders/joined")
    def orders_joined() -> Any:
        with Session(engine) as session:
            return jsonify(total=sum(item_counts_joined(session).values()))

    return app


def _line_of(text: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(item_counts)
    return first + next(i for i, line in enumerate(lines) if text in line)


#: The line of the N+1 loop, and its function.
N_PLUS_ONE_LINE = _line_of("the N+1: one query per order")
N_PLUS_ONE_FUNCTION = "item_counts"
