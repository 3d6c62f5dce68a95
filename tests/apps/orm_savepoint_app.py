"""An application for the N+1 tests: a SQLAlchemy 2.0 ORM loop on SQLite that lazy-loads each
order's items inside its own SAVEPOINT (``Session.begin_nested``), so that transaction statements
come between the N+1 queries, as the ORM issues them.

The first import starts the agent and every installed instrumentation (SQLAlchemy's and sqlite3's
among them). The request is a manual SERVER span with an ``http.route``.
"""

import amqadf_agent.auto  # noqa: F401, I001 - the first import: starts the agent and the instrumentations

import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

ORDERS = 8
ROUTE = "/orders"


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    items: Mapped[list["Item"]] = relationship(lazy="select")


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    sku: Mapped[str]


def main(database: Path) -> None:
    engine = create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(Order(items=[Item(sku=f"sku-{o}-{i}") for i in range(3)]) for o in range(ORDERS))
        session.commit()
    tracer = trace.get_tracer("orm-savepoint-app")
    counted = 0
    request = tracer.start_as_current_span(
        f"GET {ROUTE}", kind=SpanKind.SERVER, attributes={"http.route": ROUTE}
    )
    with request, Session(engine) as session:
        for order in session.scalars(select(Order)).all():
            with session.begin_nested():  # SAVEPOINT ... RELEASE SAVEPOINT around each lazy load
                counted += len(order.items)
    engine.dispose()
    print(f"items={counted}")
    print("app finished")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
