"""SQLite writers queue on an in-process lock held from BEGIN to COMMIT/ROLLBACK; it must never leak."""

from __future__ import annotations

import threading
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
