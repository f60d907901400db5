"""Engines and sessions: SQLite gets WAL and serialised writers (BEGIN IMMEDIATE); PostgreSQL as is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 60_000


def is_sqlite(engine_or_session: Engine | Session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "sqlite"


def load(session: Session, model: type[Any], ident: object, *, for_update: bool = False) -> Any:
    """The row with this primary key, or None; ``for_update`` locks it and refreshes a cached copy.

    Every row lock in boxal is ``FOR NO KEY UPDATE`` (``key_share=True``): no key ever changes, and a
    plain ``FOR UPDATE`` conflicts with the ``FOR KEY SHARE`` lock that inserting a referencing row
    takes (a lease inserting queries that point at images deadlocked with an answer locking them).
    """
    if not for_update:
        return session.get(model, ident)
    pk = model.__mapper__.primary_key[0]
    stmt = (
        select(model)
        .where(pk == ident)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 40)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", 10)
    return create_engine(url, connect_args={"connect_timeout": 5}, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    """Writers take SQLite's write lock when their transaction starts, queueing on an in-process lock.

    pysqlite's own handling defers BEGIN and upgrades the lock at the first write, which makes two
    concurrent read-then-write transactions deadlock (SQLITE_BUSY that no timeout resolves): so every
    transaction is ``BEGIN IMMEDIATE`` unless opened with ``sqlite_begin="DEFERRED"`` (read-only
    requests, which read concurrently under WAL). Writers of this process first queue on a lock held
    exactly from BEGIN to COMMIT/ROLLBACK: SQLite's busy handler polls with sleeps of up to 100 ms and
    favours no one, which under 16 concurrent writers gave second-long tails. Between processes (API
    and worker) the busy timeout still arbitrates.
    """
    write_lock = threading.Lock()

    def release(conn: Any) -> None:
        if conn.info.pop("boxal_write_lock", False):
            write_lock.release()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            write_lock.acquire()
            connection.info["boxal_write_lock"] = True
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            release(connection)
            raise

    def _finish(connection: Any, statement: str) -> None:
        # End the transaction here, so that the lock is released only once it has really ended
        # (the dialect's own commit/rollback then finds nothing left to do).
        try:
            dbapi_connection = connection.connection.dbapi_connection
            if dbapi_connection is not None and dbapi_connection.in_transaction:
                dbapi_connection.execute(statement)
        finally:
            release(connection)

    @event.listens_for(engine, "commit")
    def _on_commit(connection: Any) -> None:
        _finish(connection, "COMMIT")

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Any) -> None:
        _finish(connection, "ROLLBACK")

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("boxal_write_lock", False):  # a connection returned mid-transaction
            write_lock.release()


class Database:
    """One engine and its session factories: read-write (serialised on SQLite) and read-only."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        reader_bind = self.engine.execution_options(sqlite_begin="DEFERRED")
        self._reader = sessionmaker(reader_bind, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, write: bool = True) -> Session:
        return (self._writer if write else self._reader)()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """The one place a unit of work commits or rolls back."""
        session = self.session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
