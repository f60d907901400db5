"""Engines and sessions: SQLite gets WAL and serialised writers (BEGIN IMMEDIATE); PostgreSQL as is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from app import client_gone
from app.errors import Unavailable

if TYPE_CHECKING:
    from app.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
WRITE_WAIT_S = 30.0
_GATE_KEY = "boxal_write_gate"
_GATES: WeakKeyDictionary[Engine, WriteGate] = WeakKeyDictionary()


class WriteBusy(Unavailable):
    """SQLite's write lock stayed taken for longer than this process waits; nothing was written."""


class BlockingCallOnEventLoop(RuntimeError):
    """A database transaction was opened on a thread that runs an event loop (a bug in the caller)."""


class WriteGate:
    """The in-process queue of SQLite writers: one transaction at a time, a bounded wait for it.

    A ticket is handed to the connection record that opened the transaction and is taken back by
    whichever way the transaction ends: COMMIT, ROLLBACK, the pool's reset or check-in of the
    connection, its invalidation or its close. Waiting is bounded by ``wait_s``: a writer that cannot
    get in answers 503 (``WriteBusy``) naming how long the current holder has had it. A writer whose
    client has gone while it waits leaves the queue (``ClientGone``), so abandoned requests never
    hold up the ones still wanted.
    """

    POLL_S = 0.05  # how often a waiting writer looks whether its client is still there

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._holder: tuple[str, float] | None = None  # the thread that began it, since when

    def acquire(self, info: dict[str, Any]) -> None:
        # No check for "this thread holds it already": a request's transaction may be rolled back by
        # its dependency's exit on another thread while its endpoint's thread serves the next request.
        if not self._wait():
            held = self._holder
            since = f" for {time.monotonic() - held[1]:.1f} s (begun by {held[0]})" if held else ""
            raise WriteBusy(
                f"the database is busy: SQLite's write lock has been held{since}; waited "
                f"{self.wait_s:.0f} s, nothing was saved, retry shortly"
            )
        self._holder = (threading.current_thread().name, time.monotonic())
        info[_GATE_KEY] = self

    def _wait(self) -> bool:
        gone = client_gone.event()
        if gone is None:
            return self._lock.acquire(timeout=self.wait_s)
        deadline = time.monotonic() + self.wait_s
        while True:
            client_gone.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._lock.acquire(timeout=min(self.POLL_S, left)):
                if gone.is_set():  # went while this writer waited: hand the turn to the next one
                    self._lock.release()
                    client_gone.check()
                return True

    def release(self, info: dict[str, Any] | None) -> None:
        """Give the ticket back if ``info`` (a connection record's) holds it; idempotent."""
        if info is not None and info.pop(_GATE_KEY, None) is self:
            self._holder = None
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.locked()


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


def make_engine(url: str, *, write_wait_s: float = WRITE_WAIT_S, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # Connections are cheap on SQLite: enough to keep one for each of the API's 40 threads (a
        # request may hold two), so a burst never pays for opening and closing overflow connections.
        kwargs.setdefault("pool_size", 60)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs)
        _configure_sqlite(engine, WriteGate(write_wait_s))
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", 10)
    return create_engine(url, connect_args={"connect_timeout": 5}, **kwargs)


def _configure_sqlite(engine: Engine, gate: WriteGate) -> None:
    """Writers take SQLite's write lock when their transaction starts, queueing on ``gate``.

    pysqlite's own handling defers BEGIN and upgrades the lock at the first write, which makes two
    concurrent read-then-write transactions deadlock (SQLITE_BUSY that no timeout resolves): so every
    transaction is ``BEGIN IMMEDIATE`` unless opened with ``sqlite_begin="DEFERRED"`` (read-only
    requests, which read concurrently under WAL). Writers of this process first queue on the gate:
    SQLite's busy handler polls with sleeps of up to 100 ms and favours no one, which under 16
    concurrent writers gave second-long tails. Between processes (API and worker) the busy timeout
    still arbitrates.
    """
    _GATES[engine] = gate

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
            gate.acquire(connection.info)
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            gate.release(connection.info)
            raise

    def _end(dbapi_connection: Any, info: dict[str, Any] | None, statement: str) -> None:
        # End the transaction here, so that the gate opens only once it has really ended
        # (the dialect's own commit/rollback, or the pool's reset, then find nothing left to do).
        try:
            if dbapi_connection is not None and dbapi_connection.in_transaction:
                dbapi_connection.execute(statement)
        finally:
            gate.release(info)

    @event.listens_for(engine, "commit")
    def _on_commit(connection: Any) -> None:
        _end(connection.connection.dbapi_connection, connection.info, "COMMIT")

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Any) -> None:
        _end(connection.connection.dbapi_connection, connection.info, "ROLLBACK")

    # Every way a connection can leave its user without COMMIT/ROLLBACK events: returned to the pool
    # (its reset, then check-in: a garbage-collected session, a connection closed mid-transaction),
    # invalidated after an error, closed, or detached from the pool.
    @event.listens_for(engine, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, _state: Any = None) -> None:
        if record is not None and record.info.get(_GATE_KEY) is gate:
            _end(dbapi_connection, record.info, "ROLLBACK")

    for name in ("checkin", "invalidate", "soft_invalidate", "close", "detach"):

        def _on_exit(_dbapi_connection: Any, record: Any, *_: Any) -> None:
            if record is not None:
                gate.release(record.info)

        event.listen(engine, name, _on_exit)


def write_gate(engine: Engine) -> WriteGate | None:
    """The SQLite write gate of an engine made by ``make_engine`` (None for other databases)."""
    return _GATES.get(engine)


class Database:
    """One engine and its session factories: read-write (serialised on SQLite) and read-only."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._read_bind = self.engine.execution_options(sqlite_begin="DEFERRED")
        self._reader = sessionmaker(self._read_bind, expire_on_commit=False)
        self._loop_threads: set[int] = set()
        event.listen(self.engine, "begin", self._refuse_event_loop_thread, insert=True)
        event.listen(self.engine, "begin", lambda _connection: client_gone.check(), insert=True)

    @classmethod
    def for_settings(cls, settings: Settings, **engine_kwargs: Any) -> Database:
        return cls(settings.sqlalchemy_url, write_wait_s=settings.db_write_wait_s, **engine_kwargs)

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

    def ping(self) -> None:
        """One round trip on a read-only connection (it never queues behind writers)."""
        with self._read_bind.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    @contextmanager
    def no_blocking_calls_on_this_thread(self) -> Iterator[None]:
        """While inside, a transaction opened on this thread raises ``BlockingCallOnEventLoop``.

        The app enters it on its event-loop thread: a transaction there would stall every request,
        and on SQLite hold the write lock across awaits, where nothing else can release it.
        """
        ident = threading.get_ident()
        self._loop_threads.add(ident)
        try:
            yield
        finally:
            self._loop_threads.discard(ident)

    def _refuse_event_loop_thread(self, _connection: Any) -> None:
        if threading.get_ident() in self._loop_threads:
            raise BlockingCallOnEventLoop(
                "a database transaction was opened on the event loop's thread; run it in a worker "
                "thread (a sync endpoint, or run_in_threadpool)"
            )

    def dispose(self) -> None:
        self.engine.dispose()
