"""A Flask + SQLAlchemy 2.0 ORM application with a lazy-load N+1, for the count-each-call-once tests.

It knows nothing of the agent. ``GET /authors`` loads the authors, then each author's books through
a lazy relationship: one query for the authors and one per author (the N+1). ``main`` seeds
``AUTHORS`` authors and serves ``REQUESTS`` requests through Flask's WSGI test client, so that
``REQUESTS * AUTHORS`` lazy loads run (600). The database is ``DATABASE_URL`` (default: SQLite in
the working directory; ``postgresql+psycopg://...`` for PostgreSQL).

``--keep-dbapi-spans`` removes the agent's suppression of DB-API spans inside SQLAlchemy spans, so
that both instrumentations record every query (what other agents export) for the analyzer's side.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from flask import Flask, jsonify
from sqlalchemy import ForeignKey, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

AUTHORS = 30
REQUESTS = 20
#: The statement of the lazy load (SQLAlchemy 2.0 on SQLite), as the spans carry it.
LAZY_LOAD_PREFIX = "SELECT books.id AS books_id"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author", lazy="select")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def _slow_disk(dbapi_connection: Any, _record: Any) -> None:
    """SQLite answers from the page cache in microseconds; a database over a network or a busy disk
    takes milliseconds a query, what makes an N+1 cost time: every 40 VM steps wait 1 ms (a lazy load
    runs about 200: some 5 ms, so that the 30 of a request take well over the N+1 rule's 50 ms)."""
    dbapi_connection.set_progress_handler(lambda: time.sleep(0.001) or 0, 40)


def make_app(url: str) -> Flask:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _slow_disk)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for number in range(AUTHORS):
            session.add(
                Author(name=f"author {number}", books=[Book(title=f"book {number}-{i}") for i in range(2)])
            )
        session.commit()
    app = Flask(__name__)

    @app.get("/authors")
    def authors() -> object:
        with Session(engine) as session:
            rows = session.scalars(select(Author).order_by(Author.id)).all()
            return jsonify([{"name": a.name, "books": len(a.books)} for a in rows])  # lazy: N+1

    return app


def main() -> None:
    if "--keep-dbapi-spans" in sys.argv:
        from amqadf_agent.runtime.instrumentation_dedup import uninstall

        uninstall()
    app = make_app(os.environ.get("DATABASE_URL", "sqlite:///orm_app.db"))
    client = app.test_client()
    for _ in range(REQUESTS):
        response = client.get("/authors")
        assert response.status_code == 200 and len(response.get_json()) == AUTHORS, response.data
    print("app finished")


if __name__ == "__main__":
    main()
