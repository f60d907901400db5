"""SQLite writers queue on an in-process lock held from BEGIN to COMMIT/ROLLBACK; it must never leak."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import Database


def test_sqlite_writers_never_deadlock_or_leak_the_write_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.transaction() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(20):
                if j % 5 == 0:  # a failing unit of work rolls back and must release the lock
                    with pytest.raises(ZeroDivisionError), db.transaction() as session:
                        session.execute(text("INSERT INTO t VALUES (-1)"))
                        _ = 1 / 0
                elif j % 5 == 1:  # a session closed without commit
                    session = db.session()
                    session.execute(text("INSERT INTO t VALUES (-2)"))
                    session.close()
                else:
                    with db.transaction() as session:
                        count = session.execute(text("SELECT count(*) FROM t")).scalar_one()
                        session.execute(text("INSERT INTO t VALUES (:n)"), {"n": count})
                with db.transaction(write=False) as session:  # readers do not take the lock
                    session.execute(text("SELECT count(*) FROM t")).scalar_one()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck: the lock leaked"
    assert errors == []
    with db.transaction(write=False) as session:
        values = [row[0] for row in session.execute(text("SELECT n FROM t ORDER BY n"))]
    # 8 writers x 12 committed inserts, each reading the count under the write lock: no lost update
    assert values == list(range(96))
    db.dispose()


def _table(db: Database) -> None:
    with db.transaction() as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))


def _rows(db: Database) -> list[int]:
    with db.transaction(write=False) as session:
        return [row[0] for row in session.execute(text("SELECT n FROM t ORDER BY n"))]


@pytest.mark.parametrize("leave", ["garbage_collected", "invalidated", "closed_session", "pool_disposed"])
def test_every_way_out_of_a_transaction_gives_the_write_lock_back(tmp_path: Path, leave: str) -> None:
    """Connections that leave without COMMIT/ROLLBACK events (the pool's reset and check-in of a
    forgotten connection, invalidation, disposal) release the lock, and what they wrote is not kept."""
    import gc

    from app.db import write_gate

    db = Database(f"sqlite:///{tmp_path / 'x.db'}", write_wait_s=2)
    _table(db)
    gate = write_gate(db.engine)
    assert gate is not None and not gate.held
    if leave == "closed_session":
        session = db.session()
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert gate.held
        session.close()
    else:
        conn = db.engine.connect()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert gate.held
        if leave == "garbage_collected":
            del conn
            gc.collect()
        elif leave == "invalidated":
            conn.invalidate()
        else:
            conn.connection.dbapi_connection.rollback()  # what the pool's own reset does
            db.engine.pool.dispose()
            conn.invalidate()
    assert not gate.held
    with db.transaction() as session:  # the next writer gets in at once
        session.execute(text("INSERT INTO t VALUES (2)"))
    assert _rows(db) == [2]
    db.dispose()


def test_a_writer_waits_a_bounded_time_and_is_told_why(tmp_path: Path) -> None:
    from app.db import WriteBusy

    db = Database(f"sqlite:///{tmp_path / 'x.db'}", write_wait_s=0.3)
    _table(db)
    holder = db.session()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    outcome: list[BaseException] = []

    def other_writer() -> None:
        try:
            with db.transaction() as session:
                session.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=other_writer, name="second-writer")
    started = time.monotonic()
    thread.start()
    thread.join(timeout=10)
    waited = time.monotonic() - started
    assert len(outcome) == 1 and isinstance(outcome[0], WriteBusy)
    assert outcome[0].status_code == 503
    assert "busy" in outcome[0].detail and "MainThread" in outcome[0].detail
    assert 0.25 <= waited < 5
    holder.commit()
    holder.close()
    assert _rows(db) == [1]  # the refused writer wrote nothing
    db.dispose()


def test_work_of_a_client_that_has_gone_leaves_the_write_queue(tmp_path: Path) -> None:
    """A request's thread waiting for the write lock stops when its client goes (it would otherwise
    take its turn for nobody), and no transaction begins for a client already gone."""
    import contextvars

    from app import client_gone
    from app.errors import ClientGone

    db = Database(f"sqlite:///{tmp_path / 'x.db'}", write_wait_s=30)
    _table(db)
    holder = db.session()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    outcome: list[BaseException] = []

    def abandoned_writer() -> None:
        try:
            with db.transaction() as session:
                session.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:
            outcome.append(exc)

    with client_gone.watching() as gone:
        context = contextvars.copy_context()  # what anyio hands the request's worker thread
    thread = threading.Thread(target=context.run, args=(abandoned_writer,))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and not outcome  # queued behind the holder
    started = time.monotonic()
    gone.set()
    thread.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], ClientGone), outcome
    assert time.monotonic() - started < 1  # left the queue, did not wait out write_wait_s (30 s)
    holder.commit()
    holder.close()
    outcome.clear()
    for write in (True, False):  # gone before anything began: neither a writer nor a reader starts
        context.run(lambda w=write: outcome.append(_try(db, w)))  # type: ignore[misc]
    assert all(isinstance(o, ClientGone) for o in outcome), outcome
    assert _rows(db) == [1]
    from app.db import write_gate

    assert not write_gate(db.engine).held
    db.dispose()


def _try(db: Database, write: bool) -> BaseException | None:
    try:
        with db.transaction(write=write) as session:
            session.execute(text("INSERT INTO t VALUES (3)") if write else text("SELECT 1"))
    except BaseException as exc:
        return exc
    return None


def test_no_transaction_opens_on_an_event_loop_thread(tmp_path: Path) -> None:
    import asyncio

    from app.db import BlockingCallOnEventLoop

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    _table(db)

    async def endpoint_that_blocks() -> None:
        with db.no_blocking_calls_on_this_thread(), db.transaction(write=False) as session:
            session.execute(text("SELECT 1"))

    with pytest.raises(BlockingCallOnEventLoop, match="event loop"):
        asyncio.run(endpoint_that_blocks())
    from app.db import write_gate

    assert not write_gate(db.engine).held
    with db.transaction() as session:  # other threads, and this one afterwards, are unaffected
        session.execute(text("INSERT INTO t VALUES (1)"))
    db.dispose()


def test_a_write_that_cannot_get_the_lock_answers_503_and_changes_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.auth.service import create_token
    from app.main import create_app
    from app.settings import Settings
    from tests.conftest import ADMIN_TOKEN, auth
    from tests.factories import db_state

    settings = Settings(data_dir=tmp_path / "data", db_write_wait_s=0.3, _env_file=None)  # type: ignore[call-arg]
    from app.migrate import upgrade

    settings.resolved_data_dir.mkdir(parents=True)
    db = Database.for_settings(settings)
    upgrade(db.engine)
    with db.transaction() as session:
        create_token(session, "admin", "admin", token=ADMIN_TOKEN)
    with TestClient(create_app(settings, database=db), headers=auth(ADMIN_TOKEN)) as client:
        before = db_state(db)
        holder = db.session()
        holder.execute(text("SELECT 1"))  # a write transaction: holds SQLite's write lock
        try:
            busy = client.post("/v1/projects", json={"name": "p", "classes": ["a"]})
            health = client.get("/health")  # a read: never waits for the write lock
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"] == "unavailable" and "write lock" in busy.json()["detail"]
        assert health.status_code == 200
        assert db_state(db) == before
        assert client.post("/v1/projects", json={"name": "p", "classes": ["a"]}).status_code == 201
    db.dispose()
